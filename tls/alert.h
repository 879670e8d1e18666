/* tls/alert.h: alerts sent before any TLS state exists.
 *
 * When the router rejects a ClientHello there is no SSL object: the alert
 * is a plaintext record built here (RFC 8446 6, RFC 5246 7.2).
 */
#ifndef VMGATE_TLS_ALERT_H
#define VMGATE_TLS_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_ALERT_RECORD_LEN 7

/* Alert descriptions used by vmgate (RFC 8446 6.2). */
enum tls_alert_desc {
	TLS_ALERT_UNEXPECTED_MESSAGE = 10,
	TLS_ALERT_RECORD_OVERFLOW = 22,
	TLS_ALERT_HANDSHAKE_FAILURE = 40,
	TLS_ALERT_ILLEGAL_PARAMETER = 47,
	TLS_ALERT_DECODE_ERROR = 50,
	TLS_ALERT_PROTOCOL_VERSION = 70,
	TLS_ALERT_INTERNAL_ERROR = 80,
	TLS_ALERT_MISSING_EXTENSION = 109,
	TLS_ALERT_UNRECOGNIZED_NAME = 112,
};

/* tls_alert_build writes a fatal alert record with |desc| into |out|
 * (|out_cap| >= TLS_ALERT_RECORD_LEN), with record version
 * |record_version| (use the client's legacy_version, at most 0x0303; the
 * peer reads it before any version is agreed). Returns false only if
 * |out_cap| is too small. */
bool tls_alert_build(uint8_t *out, size_t *out_len, size_t out_cap,
		     uint16_t record_version, uint8_t desc);

#endif
