/* tls/hello.h: ClientHello peek parser.
 *
 * Reads the first bytes a client sends on a TLS port and, once the whole
 * ClientHello handshake message is in, reports the fields the router needs:
 * SNI host_name, ALPN protocol list and the versions offered. It is pure: it
 * never allocates, keeps no state between calls and never touches a socket.
 * It is resumable by re-parsing: call it again with every byte received so
 * far; until the message is complete it answers TLS_HELLO_NEED_MORE.
 *
 * The message may be split across several TLS records (RFC 8446 5.1) and
 * across any number of TCP segments. When it spans more than one record, the
 * fragments are joined in the caller's scratch buffer; otherwise the result
 * views point into the input. Either way every view in struct tls_hello is
 * valid only while both |in| and |scratch| are unchanged.
 */
#ifndef VMGATE_TLS_HELLO_H
#define VMGATE_TLS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A ClientHello spread over more records than this is TLS_HELLO_BAD. */
#define TLS_HELLO_MAX_RECORDS 128

enum tls_hello_result {
	TLS_HELLO_OK,        /* whole ClientHello parsed; out is filled */
	TLS_HELLO_NEED_MORE, /* a valid prefix so far; call again with more */
	TLS_HELLO_NOT_TLS,   /* first byte is not a handshake record (0x16):
	                      * plain HTTP, SSLv2, a port scanner... */
	TLS_HELLO_TOO_LARGE, /* the handshake message is longer than max_len */
	TLS_HELLO_BAD,       /* malformed; out->error says why */
};

/* Every pointer+length pair is a view (see above); a NULL pointer with
 * length 0 means the extension was absent. */
struct tls_hello {
	/* server_name extension, host_name entry (RFC 6066 3). Never empty
	 * when present: an empty name is TLS_HELLO_BAD. Not NUL-terminated and
	 * not normalised (case as sent). */
	const uint8_t *sni;
	size_t sni_len;

	/* ALPN ProtocolNameList contents (RFC 7301 3.1), without its own
	 * u16 length: a sequence of u8-length-prefixed names, each non-empty. */
	const uint8_t *alpn;
	size_t alpn_len;

	/* signature_algorithms list contents (RFC 8446 4.2.3), without its
	 * own u16 length: a non-empty sequence of u16 SignatureScheme values,
	 * in the client's order of preference. */
	const uint8_t *sigalgs;
	size_t sigalgs_len;

	/* ClientHello.legacy_version, and the highest version offered: the
	 * largest non-GREASE entry of supported_versions (RFC 8446 4.2.1) when
	 * that extension is present, else legacy_version. */
	uint16_t legacy_version;
	uint16_t max_version;

	/* On TLS_HELLO_OK: number of input bytes that make up the records
	 * carrying the ClientHello (record headers included); bytes after it
	 * belong to the next records and are left alone.
	 * On TLS_HELLO_NEED_MORE: the input length at which the answer can
	 * next change (> in_len). Calling again with fewer bytes is wasted
	 * work: a caller receiving a hello in tiny segments waits for it. */
	size_t records_len;

	/* Static string naming the rule that failed, for TLS_HELLO_BAD and
	 * TLS_HELLO_TOO_LARGE ("empty SNI", "two host_name entries", ...). */
	const char *error;

	/* With |error|: the alert RFC 8446 6.2 names for that failure
	 * (enum tls_alert_desc: decode_error for a bad length,
	 * illegal_parameter for a field with a bad value, unexpected_message
	 * for a message out of place). */
	uint8_t alert;
};

/* tls_hello_peek parses the bytes received so far, |in| of |in_len| bytes.
 * |scratch| of |max_len| bytes is used to join a ClientHello split over
 * several records; |max_len| is also the largest handshake message accepted
 * (header included): a longer one is TLS_HELLO_TOO_LARGE, decided as soon
 * as its length field is read. |out| is zeroed first and filled on
 * TLS_HELLO_OK; on TLS_HELLO_NEED_MORE only out->records_len is set (the
 * hint above); otherwise only out->error and out->alert are set. */
enum tls_hello_result tls_hello_peek(struct tls_hello *out, uint8_t *scratch,
				     size_t max_len, const uint8_t *in,
				     size_t in_len);

/* tls_hello_result_str returns a short static name for |r| ("ok",
 * "need_more", "not_tls", "too_large", "bad"). */
const char *tls_hello_result_str(enum tls_hello_result r);

#endif
