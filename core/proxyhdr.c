/* core/proxyhdr.c: see proxyhdr.h. The grammar, from haproxy's
 * proxy-protocol.txt section 2.2:
 *
 *   struct proxy_hdr_v2 {
 *       uint8_t sig[12];  "\r\n\r\n\0\r\nQUIT\n"
 *       uint8_t ver_cmd;  0x21: version 2, PROXY
 *       uint8_t fam;      0x11: TCP over IPv4, 0x21: TCP over IPv6
 *       uint16_t len;     bytes after this field, addresses and TLVs
 *   };
 *   addresses: src_addr, dst_addr (4 or 16 bytes each), src_port,
 *              dst_port (2 bytes each), all in network order
 *   struct pp2_tlv { uint8_t type; uint16_t length; uint8_t value[]; };
 *   PP2_TYPE_SSL's value: { uint8_t client; uint32_t verify;
 *                           struct pp2_tlv sub_tlv[]; }
 *
 * CBB's u16 length prefixes are exactly the header's and the TLVs'
 * length fields, so every length is computed, never counted by hand.
 */
#include "core/proxyhdr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bytestring.h>

static const uint8_t pp2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				     0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

static bool both_v4(const struct proxyhdr_info *in)
{
	return IN6_IS_ADDR_V4MAPPED(&in->src.sin6_addr) &&
	       IN6_IS_ADDR_V4MAPPED(&in->dst.sin6_addr);
}

/* A TLV of |type| holding |len| bytes of |val|; nothing when |len| is 0. */
static bool add_tlv(CBB *cbb, uint8_t type, const void *val, size_t len)
{
	CBB v;

	if (!val || !len)
		return true;
	return CBB_add_u8(cbb, type) && CBB_add_u16_length_prefixed(cbb, &v) &&
	       CBB_add_bytes(&v, val, len) && CBB_flush(cbb);
}

static bool add_str_tlv(CBB *cbb, uint8_t type, const char *s)
{
	return !s || add_tlv(cbb, type, s, strlen(s));
}

static bool add_addrs(CBB *body, const struct proxyhdr_info *in, bool v4)
{
	size_t off = v4 ? 12 : 0, n = v4 ? 4 : 16;

	return CBB_add_bytes(body, in->src.sin6_addr.s6_addr + off, n) &&
	       CBB_add_bytes(body, in->dst.sin6_addr.s6_addr + off, n) &&
	       CBB_add_u16(body, ntohs(in->src.sin6_port)) &&
	       CBB_add_u16(body, ntohs(in->dst.sin6_port));
}

static bool add_ssl(CBB *body, const struct proxyhdr_info *in)
{
	uint8_t client = PP2_CLIENT_SSL;
	CBB v;

	if (!in->ssl)
		return true;
	if (in->client_cert)
		client |= PP2_CLIENT_CERT_SESS |
			  (in->client_cert_conn ? PP2_CLIENT_CERT_CONN : 0);
	/* verify 0: a client certificate is only passed on verified, and
	 * with none asked for, none failed. */
	return CBB_add_u8(body, PP2_TYPE_SSL) &&
	       CBB_add_u16_length_prefixed(body, &v) &&
	       CBB_add_u8(&v, client) && CBB_add_u32(&v, 0) &&
	       add_str_tlv(&v, PP2_SUBTYPE_SSL_VERSION, in->ssl_version) &&
	       (!in->client_cert ||
		add_str_tlv(&v, PP2_SUBTYPE_SSL_CN, in->ssl_cn)) &&
	       add_str_tlv(&v, PP2_SUBTYPE_SSL_CIPHER, in->ssl_cipher) &&
	       add_str_tlv(&v, PP2_SUBTYPE_SSL_SIG_ALG, in->ssl_sig_alg) &&
	       add_str_tlv(&v, PP2_SUBTYPE_SSL_KEY_ALG, in->ssl_key_alg) &&
	       CBB_flush(body);
}

bool proxyhdr_v2(uint8_t *out, size_t *out_len, size_t cap,
		 const struct proxyhdr_info *in)
{
	bool v4 = both_v4(in);
	CBB cbb, body;

	*out_len = 0;
	if (in->unique_id_len > PROXYHDR_UNIQUE_ID_MAX)
		return false;
	if (!CBB_init_fixed(&cbb, out, cap))
		return false;
	if (!CBB_add_bytes(&cbb, pp2_sig, sizeof(pp2_sig)) ||
	    !CBB_add_u8(&cbb, 0x21) || !CBB_add_u8(&cbb, v4 ? 0x11 : 0x21) ||
	    !CBB_add_u16_length_prefixed(&cbb, &body) ||
	    !add_addrs(&body, in, v4) ||
	    !add_tlv(&body, PP2_TYPE_ALPN, in->alpn, in->alpn_len) ||
	    !add_tlv(&body, PP2_TYPE_AUTHORITY, in->authority,
		     in->authority_len) ||
	    !add_ssl(&body, in) ||
	    !add_tlv(&body, PP2_TYPE_UNIQUE_ID, in->unique_id,
		     in->unique_id_len) ||
	    !CBB_finish(&cbb, NULL, out_len)) {
		CBB_cleanup(&cbb);
		*out_len = 0;
		return false;
	}
	return true;
}

bool proxyhdr_v1(uint8_t *out, size_t *out_len, size_t cap,
		 const struct proxyhdr_info *in)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	bool v4 = both_v4(in);
	int n;

	*out_len = 0;
	if (v4) {
		inet_ntop(AF_INET, in->src.sin6_addr.s6_addr + 12, src,
			  sizeof(src));
		inet_ntop(AF_INET, in->dst.sin6_addr.s6_addr + 12, dst,
			  sizeof(dst));
	} else {
		inet_ntop(AF_INET6, &in->src.sin6_addr, src, sizeof(src));
		inet_ntop(AF_INET6, &in->dst.sin6_addr, dst, sizeof(dst));
	}
	n = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n",
		     v4 ? "TCP4" : "TCP6", src, dst, ntohs(in->src.sin6_port),
		     ntohs(in->dst.sin6_port));
	if (n < 0 || (size_t)n >= cap)
		return false;
	*out_len = (size_t)n;
	return true;
}
