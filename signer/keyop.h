/* signer/keyop.h: the key operation wire format between vmgate and
 * vmgate-signer (a Unix stream socket; both sides build it).
 *
 * Every message is one frame, all integers big-endian:
 *
 *   frame  := u32 body_len (1..KEYOP_BODY_MAX)  body[body_len]
 *   body   := u8 type  u64 id  rest
 *   SIGN   (vmgate -> signer), rest := u64 key_id  u16 sigalg
 *                                      u16 in_len  in[in_len]
 *   LOAD   (vmgate -> signer), rest := u64 key_id  u16 path_len
 *                                      path[path_len]
 *   UNLOAD (vmgate -> signer), rest := u64 key_id
 *   ANSWER (signer -> vmgate), rest := u8 status  u16 out_len
 *                                      out[out_len]
 *
 * id is the sender's: an answer carries the id of the request it answers,
 * in any order, so many requests may be in flight on one socket. key_id
 * names a key by its public half (keyop_key_id). sigalg is a TLS
 * SignatureScheme; in is the unhashed message to sign (the signer
 * hashes). A LOAD may carry the key file's descriptor as SCM_RIGHTS
 * ancillary data (vmgate opens the file, never reads it); without one,
 * the signer opens path itself. out is the signature, empty unless status
 * is KEYOP_STATUS_OK. UNLOAD drops a key that no certificate of vmgate's
 * names any more (its answer: OK, or NO_KEY when the signer had none).
 * A length over its bound, an unknown type, a zero
 * length path, or a byte after the last field is KEYOP_BAD: whoever reads
 * it closes the socket (each side treats the other as untrusted).
 *
 * This file links into vmgate (BoringSSL) and into vmgate-signer (OpenSSL
 * 3), which cannot share a library, so it reads through its own small
 * bounds-checked cursor instead of CBS. Pure: no allocation, no I/O.
 */
#ifndef VMGATE_SIGNER_KEYOP_H
#define VMGATE_SIGNER_KEYOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum keyop_type {
	KEYOP_SIGN = 1,
	KEYOP_LOAD = 2,
	KEYOP_ANSWER = 3,
	KEYOP_UNLOAD = 4,
};

enum keyop_status {
	KEYOP_STATUS_OK = 0,
	KEYOP_STATUS_NO_KEY = 1,   /* SIGN, UNLOAD: no key with that key_id */
	KEYOP_STATUS_BAD_ALG = 2,  /* SIGN: the key cannot make that scheme */
	KEYOP_STATUS_FAILED = 3,   /* the operation failed */
	KEYOP_STATUS_MISMATCH = 4, /* LOAD: the file's key is not key_id */
	KEYOP_STATUS_MAX = 4,
};

/* Bounds. A SIGN input is at most ~200 bytes in TLS 1.2 (two randoms and
 * an ECDHE ServerKeyExchange) and 1.3 (RFC 8446 4.4.3: 64 spaces, a
 * context string, a transcript hash); an RSA-8192 signature is 1024. */
/* vmgate-signer's --threads bound; vmgate gives its own signer one
 * thread per worker, up to this many. */
#define SIGNER_THREADS_MAX 64

#define KEYOP_DATA_MAX 1024
#define KEYOP_HDR_LEN 4
#define KEYOP_BODY_MAX (1 + 8 + 8 + 2 + 2 + KEYOP_DATA_MAX)
#define KEYOP_FRAME_MAX (KEYOP_HDR_LEN + KEYOP_BODY_MAX)

struct keyop_msg {
	uint8_t type;      /* enum keyop_type */
	uint64_t id;
	uint64_t key_id;   /* SIGN, LOAD, UNLOAD */
	uint16_t sigalg;   /* SIGN */
	uint8_t status;    /* ANSWER: enum keyop_status */
	const uint8_t *data; /* SIGN: in; LOAD: path; ANSWER: out; UNLOAD:
			      * none */
	size_t data_len;
};

enum keyop_parse {
	KEYOP_OK,        /* one message decoded: *out_used bytes */
	KEYOP_NEED_MORE, /* a frame's prefix: read more */
	KEYOP_BAD,       /* not a valid frame: close the socket */
};

/* keyop_decode reads the first frame of |in| (|in_len| bytes) into |out|,
 * whose data points into |in|, and sets |*out_used| to the frame's length
 * on KEYOP_OK. A frame whose header announces a length over
 * KEYOP_BODY_MAX is KEYOP_BAD at once, before its body arrives. */
enum keyop_parse keyop_decode(struct keyop_msg *out, size_t *out_used,
			      const uint8_t *in, size_t in_len);

/* keyop_encode writes |m| as one frame into |out| (|cap| bytes) and sets
 * |*out_len|. False, writing nothing, when |m| breaks a bound or does not
 * fit. */
bool keyop_encode(uint8_t *out, size_t *out_len, size_t cap,
		  const struct keyop_msg *m);

/* keyop_key_id names a key by the first 8 bytes of the SHA-256 of its
 * public key's DER SubjectPublicKeyInfo, |digest| (32 bytes), read
 * big-endian: vmgate computes it from the certificate, the signer from
 * the key file, and a LOAD whose two do not agree fails. */
uint64_t keyop_key_id(const uint8_t digest[32]);

#endif
