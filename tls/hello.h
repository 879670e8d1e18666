/* tls/hello.h: ClientHello peek parser.
 *
 * Reads the first bytes a client sends on a TLS port and, once the whole
 * ClientHello handshake message is in, reports the fields the router needs:
 * SNI host_name, ALPN protocol list and the versions offered. It is pure: it
 * never allocates and never touches a socket.
 *
 * It is resumable: call it again with every byte received so far (the same
 * bytes, and more of them); until the message is complete it answers
 * TLS_HELLO_NEED_MORE. The caller keeps a small struct tls_hello_state
 * between those calls, so that each call walks only the records it has not
 * walked yet: the work over a whole hello is linear in the bytes received,
 * however finely it is framed. The state is only a memo: every answer is
 * the one a fresh parse of the same bytes would give, and once an answer
 * other than NEED_MORE is given, more bytes never change it.
 *
 * The message may be split across any number of TLS records of any
 * non-zero size, its 4-byte header included (RFC 8446 5.1), and across any
 * number of TCP segments. The input it accepts is bounded by bytes, not
 * records: see TLS_HELLO_RECORDS_MAX. When the message spans more than one
 * record, the fragments are joined in the caller's scratch buffer;
 * otherwise the result views point into the input. Either way every view
 * in struct tls_hello is valid only while both |in| and |scratch| are
 * unchanged.
 */
#ifndef VMGATE_TLS_HELLO_H
#define VMGATE_TLS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The scratch a ClientHello of up to |max_len| body bytes is joined in:
 * the message with its 4-byte handshake header. */
#define TLS_HELLO_SCRATCH_LEN(max_len) ((size_t)(max_len) + 4)

/* The most input the records of a ClientHello of up to |max_len| body
 * bytes can take: every byte of the message (header included) in a record
 * of its own, behind a 5-byte record header, is 6 bytes per message byte.
 * The parser never answers TLS_HELLO_NEED_MORE to more input than this. */
#define TLS_HELLO_RECORDS_MAX(max_len) (6 * TLS_HELLO_SCRATCH_LEN(max_len))

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

	/* cipher_suites' contents (u16 values, a non-empty even length), and
	 * supported_groups' list contents when that extension is present
	 * and well-formed (u16 NamedGroup values; groups_present then, even
	 * for an empty list): what a TLS 1.2 certificate depends on beside
	 * its signature scheme (tls/sigalg.h). */
	const uint8_t *cipher_suites;
	size_t cipher_suites_len;
	const uint8_t *groups;
	size_t groups_len;
	bool groups_present;

	/* ClientHello.legacy_version, and the highest version offered: the
	 * largest non-GREASE entry of supported_versions (RFC 8446 4.2.1) when
	 * that extension is present, else legacy_version. */
	uint16_t legacy_version;
	uint16_t max_version;
	/* The version a server of TLS 1.2 and 1.3 (vmgate's) negotiates with
	 * this hello: 0x0304 when supported_versions lists it, else 0x0303
	 * when that extension lists it or, without the extension,
	 * legacy_version is at least 0x0303; 0 when there is none in common
	 * (BoringSSL answers protocol_version). Versions it does not speak,
	 * a future 0x0305 among them, count for nothing. */
	uint16_t tls_version;

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

/* Progress through the records received so far, kept by the caller from
 * one tls_hello_peek call to the next for the same connection. Valid
 * all-zero, which is the start. Only whole records that passed every check
 * are recorded here: a record not yet whole, or one that is wrong, is read
 * again from its header by the next call, which so comes to the same
 * answer. */
struct tls_hello_state {
	uint32_t rec_off;  /* input offset of the first record not yet walked */
	uint32_t msg_seen; /* message bytes in the records walked */
	uint32_t msg_len;  /* header + body; 0 until the header is walked */
	uint8_t hdr[4];    /* the handshake header bytes walked so far */
	uint8_t hdr_len;
};

/* tls_hello_peek parses the bytes received so far, |in| of |in_len| bytes,
 * resuming from |st| (NULL: parse from the first record, keeping nothing).
 * Every call with the same |st| must see the same |max_len| and an input
 * that begins with the bytes of the previous call (one shorter than the
 * records |st| has walked is TLS_HELLO_BAD).
 *
 * |max_len| is the largest ClientHello body accepted: the value of the
 * handshake header's uint24 length, the 4-byte header not counted (what
 * BoringSSL's own cap on a handshake message counts). A longer body is
 * TLS_HELLO_TOO_LARGE, decided as soon as the length field is read.
 * |scratch| of |scratch_len| bytes is used to join a ClientHello split over
 * several records; give it TLS_HELLO_SCRATCH_LEN(max_len) bytes (a message
 * that does not fit is TLS_HELLO_BAD, never an overflow).
 *
 * |out| is zeroed first and filled on TLS_HELLO_OK; on TLS_HELLO_NEED_MORE
 * only out->records_len is set (the hint above); otherwise only out->error
 * and out->alert are set. */
enum tls_hello_result tls_hello_peek(struct tls_hello_state *st,
				     struct tls_hello *out, uint8_t *scratch,
				     size_t scratch_len, size_t max_len,
				     const uint8_t *in, size_t in_len);

/* tls_hello_result_str returns a short static name for |r| ("ok",
 * "need_more", "not_tls", "too_large", "bad"). */
const char *tls_hello_result_str(enum tls_hello_result r);

#endif
