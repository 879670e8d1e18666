/* core/proxyhdr.h: the PROXY protocol header sent to a VM (haproxy's
 * proxy-protocol.txt, versions 1 and 2).
 *
 * With domains[].proxy_protocol, the first bytes the VM reads on a
 * connection are this header, before any byte of the client's: the
 * client's address and port and the address and port it dialled, and in
 * version 2 TLVs for the SNI, the ALPN protocol, the TLS facts and the
 * connection's id. The encoders are pure: no I/O, no allocation; they
 * write into the caller's buffer (core/relay.c: the start of the up
 * direction's buffer, so the header and the first plaintext leave in
 * one send).
 */
#ifndef VMGATE_CORE_PROXYHDR_H
#define VMGATE_CORE_PROXYHDR_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The TLV types of proxy-protocol.txt section 2.2 that vmgate sends. */
enum {
	PP2_TYPE_ALPN = 0x01,
	PP2_TYPE_AUTHORITY = 0x02,
	PP2_TYPE_UNIQUE_ID = 0x05,
	PP2_TYPE_SSL = 0x20,
	PP2_SUBTYPE_SSL_VERSION = 0x21,
	PP2_SUBTYPE_SSL_CN = 0x22,
	PP2_SUBTYPE_SSL_CIPHER = 0x23,
	PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
	PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
	PP2_CLIENT_SSL = 0x01,
	PP2_CLIENT_CERT_CONN = 0x02,
	PP2_CLIENT_CERT_SESS = 0x04,
};

/* A PP2_TYPE_UNIQUE_ID is at most 128 bytes (section 2.2.5). */
#define PROXYHDR_UNIQUE_ID_MAX 128

/* Room for any header proxyhdr_v2 writes: 16 fixed bytes, 36 of IPv6
 * addresses, and each TLV at its largest (3 bytes of type and length, an
 * SNI of 255, an ALPN protocol of 255, the SSL TLV's 5 bytes and four
 * sub-TLVs of up to 64 bytes each, a client certificate's CN of up to 64
 * (RFC 5280's ub-common-name), a unique id of 128). */
#define PROXYHDR_MAX (16 + 36 + 3 + 255 + 3 + 255 + 3 + 5 + 5 * (3 + 64) + \
		      3 + PROXYHDR_UNIQUE_ID_MAX)
/* "PROXY TCP6 " + two addresses of at most 39 characters (inet_ntop's
 * longest), two ports of at most 5, three spaces and CRLF: 104 (section
 * 2.1 says at most 107). */
#define PROXYHDR_V1_MAX 107

/* What the header says. Addresses are AF_INET6 (an IPv4 client as its
 * v4-mapped form, as a dual-stack socket reports it). Every pointer may
 * be NULL (or a length 0): its TLV is then left out. */
struct proxyhdr_info {
	struct sockaddr_in6 src; /* the client */
	struct sockaddr_in6 dst; /* what the client dialled */
	const uint8_t *authority; /* the SNI */
	size_t authority_len;
	const uint8_t *alpn; /* the protocol negotiated */
	size_t alpn_len;
	bool ssl; /* send PP2_TYPE_SSL with the strings below */
	const char *ssl_version; /* "TLSv1.3" */
	const char *ssl_cipher;  /* "TLS_AES_128_GCM_SHA256" */
	const char *ssl_sig_alg; /* the certificate's: "ecdsa-with-SHA256" */
	const char *ssl_key_alg; /* the certificate's key: "EC256" */
	/* A verified client certificate: PP2_CLIENT_CERT_SESS, and
	 * PP2_CLIENT_CERT_CONN when it was sent on this connection (not a
	 * resumed session's); its subject's CN in PP2_SUBTYPE_SSL_CN. */
	bool client_cert;
	bool client_cert_conn;
	const char *ssl_cn;
	const uint8_t *unique_id;
	size_t unique_id_len;
};

/* proxyhdr_v2 writes the binary header for |in| into |out| (|cap| bytes;
 * PROXYHDR_MAX always suffices) and its length to |*out_len|. Both
 * addresses v4-mapped: sent as AF_INET (TCP over IPv4), else AF_INET6.
 * Returns false, with |*out_len| 0, if it does not fit or a TLV is longer
 * than its field allows (a unique id over 128 bytes, a string over
 * 65535). */
bool proxyhdr_v2(uint8_t *out, size_t *out_len, size_t cap,
		 const struct proxyhdr_info *in);

/* proxyhdr_v1 writes the text header ("PROXY TCP4 ... \r\n") for |in|'s
 * addresses and ports; TLVs have no place in it. TCP4 when both are
 * v4-mapped, else TCP6. Returns false (|*out_len| 0) if it does not fit. */
bool proxyhdr_v1(uint8_t *out, size_t *out_len, size_t cap,
		 const struct proxyhdr_info *in);

#endif
