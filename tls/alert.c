/* tls/alert.c: see alert.h. */
#include "tls/alert.h"

#include <openssl/bytestring.h>

/*
 *   struct {
 *       ContentType type = alert(21);
 *       ProtocolVersion legacy_record_version;
 *       uint16 length = 2;
 *       struct { AlertLevel level = fatal(2); AlertDescription desc; };
 *   } TLSPlaintext;                          RFC 8446 5.1 and 6
 */
bool tls_alert_build(uint8_t *out, size_t *out_len, size_t out_cap,
		     uint16_t record_version, uint8_t desc)
{
	CBB cbb, body;

	if (record_version < 0x0301 || record_version > 0x0303)
		record_version = 0x0301;
	if (!CBB_init_fixed(&cbb, out, out_cap))
		return false;
	if (!CBB_add_u8(&cbb, 21) || !CBB_add_u16(&cbb, record_version) ||
	    !CBB_add_u16_length_prefixed(&cbb, &body) ||
	    !CBB_add_u8(&body, 2) || !CBB_add_u8(&body, desc) ||
	    !CBB_finish(&cbb, NULL, out_len)) {
		CBB_cleanup(&cbb);
		return false;
	}
	return true;
}
