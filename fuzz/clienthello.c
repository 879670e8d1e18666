/* fuzz/clienthello.c: libFuzzer target for tls_hello_peek (tls/hello.c).
 *
 * Input: byte 0 is configuration, the rest depends on the mode.
 *   bits 0-5: chunk size - 1 (1..64 bytes): the bytes arrive in chunks of
 *             this size, as TCP segments would, and the parser is called
 *             on every growing prefix with one kept struct tls_hello_state,
 *             the way core/ calls it;
 *   bits 6-7: the mode:
 *     00, 01  raw mode: the rest is what a client sent; with bit 6,
 *             max_len is 512 instead of 16384 (exercises TOO_LARGE);
 *     10      template mode: the rest is only the contents of the
 *             extensions block; the harness wraps it in a fixed ClientHello
 *             (version 1.2, empty session_id, two suites, null compression)
 *             with every outer length right, in records of (chunk * 61)
 *             bytes (one record when chunk is 64). Mutations then reach
 *             the extension parsers instead of breaking outer lengths;
 *     11      framing mode: bytes 1-4 are four record sizes (each byte + 1,
 *             1..256 bytes), the rest is what a client sent. The harness
 *             takes the handshake message out of its records (the whole
 *             handshake records at the start, cut to the length the
 *             message's header announces), re-frames it into records of
 *             those sizes in turn, and runs the raw-mode checks on that
 *             (max_len 16384). Its final answer must be the one the same
 *             message gets in 2^14-byte records, parsed in one call: the
 *             same result, error, or hello.
 *
 * Invariants checked (abort on violation):
 *   - a final answer (OK, BAD, TOO_LARGE, NOT_TLS) never changes as more
 *     bytes arrive, and an OK answer stays the very same hello;
 *   - the kept state changes no answer: a fresh parse (no state) of the
 *     same prefix answers the same, with the same hint, error or hello
 *     (at the first 64 calls, at every power of two, at the first final
 *     answer and at the end: a fresh parse walks every record);
 *   - NEED_MORE is never the answer to more than TLS_HELLO_RECORDS_MAX
 *     bytes;
 *   - on OK: records_len <= bytes given, the records_len-byte prefix is
 *     also OK and one byte less is NEED_MORE; SNI and ALPN views lie
 *     inside the input (one record) or scratch; the SNI is 1..255 bytes
 *     without NUL; the ALPN list is well formed with non-empty names;
 *     max_version is legacy_version or a non-GREASE value; tls_version
 *     is 0, 0x0303 or 0x0304;
 *   - BAD and TOO_LARGE come with an error string.
 *   - differential: whenever the parser answers OK, BoringSSL parses the
 *     same records_len bytes (a server SSL object on memory BIOs with a
 *     throwaway certificate). If it gets as far as its select-certificate
 *     callback, its SSL_CLIENT_HELLO must agree with ours: legacy_version,
 *     SSL_get_servername() against our SNI, and its extension lookup of
 *     ALPN against our list; the version of the ServerHello it writes
 *     (or its refusal for the version) must be our tls_version; if it
 *     gets as far as ALPN selection, the list it hands to the callback
 *     must be ours. If BoringSSL refuses the hello
 *     before the callback, it must be for a reason that is not the SNI or
 *     the ALPN (see bssl_refusal_ok).
 * Each prefix is copied to the end of an exactly sized heap buffer (so it
 * moves from call to call: the state must hold offsets, not pointers), and
 * scratch is exactly TLS_HELLO_SCRATCH_LEN(max_len) bytes, so
 * AddressSanitizer sees any read or write past either.
 *
 * Seed corpus: fuzz/corpus/clienthello/, the real ClientHellos of
 * tests/fixtures/hello behind a configuration byte (and, as frame-*,
 * behind a framing-mode header), and hand-made seeds (fuzz/mkseeds.py).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "fuzz/testcert.h"
#include "tls/hello.h"

#define check(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "clienthello: %s:%d: %s\n",        \
				__FILE__, __LINE__, #cond);                \
			abort();                                           \
		}                                                          \
	} while (0)

/* What BoringSSL saw, filled by its callbacks. */
struct bssl_view {
	bool select_called, alpn_called;
	uint16_t version;
	bool has_sni;
	char sni[256];
	bool has_alpn_ext;
	uint8_t alpn_ext[65536];
	size_t alpn_ext_len;
	uint8_t alpn_in[65536];
	size_t alpn_in_len;
};

static SSL_CTX *bssl_ctx;
static struct bssl_view view;

static enum ssl_select_cert_result_t bssl_select(const SSL_CLIENT_HELLO *ch)
{
	const char *name = SSL_get_servername(ch->ssl, TLSEXT_NAMETYPE_host_name);
	const uint8_t *ext;
	size_t ext_len;

	view.select_called = true;
	view.version = ch->version;
	if (name) {
		view.has_sni = true;
		snprintf(view.sni, sizeof(view.sni), "%s", name);
	}
	if (SSL_early_callback_ctx_extension_get(ch, TLSEXT_TYPE_application_layer_protocol_negotiation,
						 &ext, &ext_len)) {
		view.has_alpn_ext = true;
		if (ext_len <= sizeof(view.alpn_ext)) {
			memcpy(view.alpn_ext, ext, ext_len);
			view.alpn_ext_len = ext_len;
		}
	}
	return ssl_select_cert_success;
}

static int bssl_alpn(SSL *ssl, const uint8_t **out, uint8_t *out_len,
		     const uint8_t *in, unsigned in_len, void *arg)
{
	view.alpn_called = true;
	if (in_len <= sizeof(view.alpn_in)) {
		memcpy(view.alpn_in, in, in_len);
		view.alpn_in_len = in_len;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const sans[] = { "*.vm.vers.sh", "vm.vers.sh" };
	EVP_PKEY *key;
	X509 *cert;

	bssl_ctx = SSL_CTX_new(TLS_method());
	if (!bssl_ctx || !testcert_make(&key, &cert, false, "vm.vers.sh", sans, 2) ||
	    !SSL_CTX_use_certificate(bssl_ctx, cert) ||
	    !SSL_CTX_use_PrivateKey(bssl_ctx, key)) {
		fprintf(stderr, "clienthello: cannot set up BoringSSL\n");
		abort();
	}
	X509_free(cert);
	EVP_PKEY_free(key);
	/* Everything BoringSSL can do, so that it refuses as little as
	 * possible for reasons of policy. */
	SSL_CTX_set_min_proto_version(bssl_ctx, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(bssl_ctx, TLS1_3_VERSION);
	SSL_CTX_set_select_certificate_cb(bssl_ctx, bssl_select);
	SSL_CTX_set_alpn_select_cb(bssl_ctx, bssl_alpn, NULL);
	return 0;
}

/* BoringSSL refused a hello our parser accepted, before its
 * select-certificate callback. That is fine where it is stricter than we
 * are on purpose or on something we do not look at: record-layer details
 * (we accept any 3.x record version). It is a disagreement when the
 * refusal is about the ClientHello syntax itself, its SNI, which we must
 * read exactly as it does, or its size, which we must cap no higher than
 * it does. */
static bool bssl_refusal_ok(uint32_t packed)
{
	int lib = ERR_GET_LIB(packed), reason = ERR_GET_REASON(packed);

	if (lib != ERR_LIB_SSL)
		return true;
	switch (reason) {
	case SSL_R_CLIENTHELLO_PARSE_FAILED:
	case SSL_R_PARSE_TLSEXT:
	case SSL_R_DUPLICATE_EXTENSION:
	case SSL_R_DECODE_ERROR:
	case SSL_R_UNEXPECTED_MESSAGE:
	case SSL_R_EXCESS_HANDSHAKE_DATA:
	/* max_len is at most BoringSSL's own cap, and counts what it does. */
	case SSL_R_EXCESSIVE_MESSAGE_SIZE:
		return false;
	}
	return true;
}

/* The version in the ServerHello (or HelloRetryRequest) BoringSSL wrote,
 * or 0 if it wrote none: supported_versions' when present, else
 * server_version. */
static uint16_t written_version(BIO *wbio)
{
	const uint8_t *out;
	size_t out_len;
	CBS rec, body, exts, ext, sid;
	uint8_t type, hs_type;
	uint16_t v, rec_v, ext_type;

	if (!BIO_mem_contents(wbio, &out, &out_len))
		return 0;
	CBS_init(&rec, out, out_len);
	if (!CBS_get_u8(&rec, &type) || type != 22 || !CBS_get_u16(&rec, &rec_v) ||
	    !CBS_get_u16_length_prefixed(&rec, &body) ||
	    !CBS_get_u8(&body, &hs_type) || hs_type != 2 ||
	    !CBS_skip(&body, 3) || !CBS_get_u16(&body, &v) ||
	    !CBS_skip(&body, 32) || !CBS_get_u8_length_prefixed(&body, &sid) ||
	    !CBS_skip(&body, 3))
		return 0;
	if (!CBS_get_u16_length_prefixed(&body, &exts))
		return v;
	while (CBS_get_u16(&exts, &ext_type) &&
	       CBS_get_u16_length_prefixed(&exts, &ext))
		if (ext_type == 43 && CBS_get_u16(&ext, &v))
			return v;
	return v;
}

/* tls_version is the version BoringSSL negotiates when it allows TLS 1.2
 * and 1.3 (vmgate's range; this one allows 1.0 up, so below 1.2 it may
 * agree where ours says 0). */
static void check_version(const struct tls_hello *h, BIO *wbio, uint32_t err)
{
	uint16_t v = written_version(wbio);

	if (v) {
		check(h->tls_version == (v >= TLS1_2_VERSION ? v : 0));
	} else if (ERR_GET_LIB(err) == ERR_LIB_SSL &&
		   ERR_GET_REASON(err) == SSL_R_UNSUPPORTED_PROTOCOL) {
		check(h->tls_version == 0);
	}
}

static void check_bssl(const struct tls_hello *h, const uint8_t *in,
		       size_t len)
{
	SSL *ssl = SSL_new(bssl_ctx);
	BIO *rbio = BIO_new_mem_buf(in, (long)len);
	BIO *wbio = BIO_new(BIO_s_mem());
	uint32_t err;
	int ret;

	check(ssl != NULL && rbio != NULL && wbio != NULL);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_accept_state(ssl);
	memset(&view, 0, offsetof(struct bssl_view, alpn_ext));
	ERR_clear_error();
	ret = SSL_do_handshake(ssl);
	err = ERR_peek_error();

	if (!view.select_called) {
		check(ret != 1);
		if (!bssl_refusal_ok(err)) {
			fprintf(stderr, "clienthello: BoringSSL refused a hello we "
				"accepted: %s\n", ERR_reason_error_string(err));
			abort();
		}
	} else {
		check(view.version == h->legacy_version);
		check_version(h, wbio, err);
		check(view.has_sni == (h->sni != NULL));
		if (h->sni) {
			check(strlen(view.sni) == h->sni_len);
			check(memcmp(view.sni, h->sni, h->sni_len) == 0);
		}
		check(view.has_alpn_ext == (h->alpn != NULL));
		if (h->alpn) {
			check(view.alpn_ext_len == h->alpn_len + 2);
			check(memcmp(view.alpn_ext + 2, h->alpn, h->alpn_len) == 0);
		}
		if (view.alpn_called) {
			check(h->alpn != NULL);
			check(view.alpn_in_len == h->alpn_len);
			check(memcmp(view.alpn_in, h->alpn, h->alpn_len) == 0);
		}
	}
	ERR_clear_error();
	SSL_free(ssl);
}

static int inside(const uint8_t *p, size_t len, const uint8_t *base,
		  size_t base_len)
{
	return p >= base && len <= base_len &&
	       (size_t)(p - base) <= base_len - len;
}

static void check_ok(const struct tls_hello *h, const uint8_t *in,
		     size_t in_len, const uint8_t *scratch, size_t scratch_len)
{
	CBS list, name;

	check(h->records_len >= 5 + 4 && h->records_len <= in_len);
	check(h->error == NULL);
	if (h->sni != NULL) {
		check(h->sni_len >= 1 && h->sni_len <= 255);
		check(inside(h->sni, h->sni_len, in, in_len) ||
		      inside(h->sni, h->sni_len, scratch, scratch_len));
		check(memchr(h->sni, 0, h->sni_len) == NULL);
	} else {
		check(h->sni_len == 0);
	}
	if (h->alpn != NULL) {
		check(inside(h->alpn, h->alpn_len, in, in_len) ||
		      inside(h->alpn, h->alpn_len, scratch, scratch_len));
		check(h->alpn_len >= 2);
		CBS_init(&list, h->alpn, h->alpn_len);
		while (CBS_len(&list) != 0) {
			check(CBS_get_u8_length_prefixed(&list, &name));
			check(CBS_len(&name) != 0);
		}
	} else {
		check(h->alpn_len == 0);
	}
	check(h->max_version == h->legacy_version ||
	      (h->max_version & 0x0f0f) != 0x0a0a);
	check(h->tls_version == 0 || h->tls_version == 0x0303 ||
	      h->tls_version == 0x0304);
}

/* An answer with copies of its views, which die with the next call
 * (scratch is reused). */
struct kept {
	enum tls_hello_result r;
	struct tls_hello h;
	uint8_t sni[256], alpn[65536], sigalgs[65536];
};

static void keep(struct kept *k, enum tls_hello_result r,
		 const struct tls_hello *h)
{
	k->r = r;
	k->h = *h;
	check(h->sni_len <= sizeof(k->sni));
	memcpy(k->sni, h->sni ? h->sni : k->sni, h->sni_len);
	memcpy(k->alpn, h->alpn ? h->alpn : k->alpn, h->alpn_len);
	memcpy(k->sigalgs, h->sigalgs ? h->sigalgs : k->sigalgs,
	       h->sigalgs_len);
	k->h.sni = h->sni ? k->sni : NULL;
	k->h.alpn = h->alpn ? k->alpn : NULL;
	k->h.sigalgs = h->sigalgs ? k->sigalgs : NULL;
}

static int same_view(const uint8_t *a, size_t a_len, const uint8_t *b,
		     size_t b_len)
{
	return (a == NULL) == (b == NULL) && a_len == b_len &&
	       (a_len == 0 || memcmp(a, b, a_len) == 0);
}

/* The same hello, wherever it sits and however it was framed. */
static int same_fields(const struct tls_hello *a, const struct tls_hello *b)
{
	return a->legacy_version == b->legacy_version &&
	       a->max_version == b->max_version &&
	       a->tls_version == b->tls_version &&
	       same_view(a->sni, a->sni_len, b->sni, b->sni_len) &&
	       same_view(a->alpn, a->alpn_len, b->alpn, b->alpn_len) &&
	       same_view(a->sigalgs, a->sigalgs_len, b->sigalgs,
			 b->sigalgs_len);
}

static int same_hello(const struct tls_hello *a, const struct tls_hello *b)
{
	return a->records_len == b->records_len && same_fields(a, b);
}

/* The same answer: result, and hint, error and alert, or hello. */
static int same_answer(enum tls_hello_result ra, const struct tls_hello *a,
		       enum tls_hello_result rb, const struct tls_hello *b)
{
	if (ra != rb)
		return 0;
	switch (ra) {
	case TLS_HELLO_NEED_MORE:
		return a->records_len == b->records_len;
	case TLS_HELLO_OK:
		return same_hello(a, b);
	default:
		return a->error && b->error && !strcmp(a->error, b->error) &&
		       a->alert == b->alert;
	}
}

/* A prefix the hint says cannot have an answer yet. */
static void check_need_more(const uint8_t *data, size_t len, uint8_t *scratch,
			    size_t max_len)
{
	struct tls_hello h;
	uint8_t *b = malloc(len);

	check(b != NULL);
	memcpy(b, data, len);
	check(tls_hello_peek(NULL, &h, scratch, TLS_HELLO_SCRATCH_LEN(max_len),
			     max_len, b, len) == TLS_HELLO_NEED_MORE);
	free(b);
}

/* frame_msg puts |msg| into handshake records whose fragments take
 * sizes[0], sizes[1], ... sizes[3], sizes[0]... bytes; malloc'd. */
static uint8_t *frame_msg(size_t *out_len, const uint8_t *msg, size_t msg_len,
			  const size_t sizes[4])
{
	size_t off = 0, o = 0, i = 0, n, cap = msg_len * 6 + 1;
	uint8_t *out = malloc(cap);

	check(out != NULL);
	while (off < msg_len) {
		n = sizes[i++ % 4];
		if (n > msg_len - off)
			n = msg_len - off;
		check(n >= 1 && n <= 16384 && o + 5 + n <= cap);
		out[o++] = 0x16;
		out[o++] = 0x03;
		out[o++] = 0x01;
		out[o++] = (uint8_t)(n >> 8);
		out[o++] = (uint8_t)n;
		memcpy(out + o, msg + off, n);
		o += n;
		off += n;
	}
	*out_len = o;
	return out;
}

/* Template mode: extensions block |ext| -> records of |frag| bytes,
 * malloc'd. */
static uint8_t *wrap_template(size_t *out_len, const uint8_t *ext,
			     size_t ext_len, size_t frag)
{
	static const uint8_t head[] = {
		0x03, 0x03, /* legacy_version */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* random */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0x00,                               /* session_id */
		0x00, 0x04, 0x13, 0x01, 0xc0, 0x2b, /* cipher_suites */
		0x01, 0x00,                         /* compression */
	};
	const size_t sizes[4] = { frag, frag, frag, frag };
	size_t body_len = sizeof(head) + 2 + ext_len, msg_len = 4 + body_len;
	uint8_t *msg = malloc(msg_len), *out;

	check(msg != NULL);
	msg[0] = 1;
	msg[1] = (uint8_t)(body_len >> 16);
	msg[2] = (uint8_t)(body_len >> 8);
	msg[3] = (uint8_t)body_len;
	memcpy(msg + 4, head, sizeof(head));
	msg[4 + sizeof(head)] = (uint8_t)(ext_len >> 8);
	msg[5 + sizeof(head)] = (uint8_t)ext_len;
	memcpy(msg + 6 + sizeof(head), ext, ext_len);
	out = frame_msg(out_len, msg, msg_len, sizes);
	free(msg);
	return out;
}


static int test_one(struct kept *out, const uint8_t *data, size_t size);

/* Framing mode: the message of |raw|, re-framed, must parse as it does in
 * 2^14-byte records. */
static int test_framing(const uint8_t *data, size_t size)
{
	static struct kept whole, framed;
	static const size_t big[4] = { 16384, 16384, 16384, 16384 };
	size_t sizes[4], msg_len = 0, in_len, i;
	uint8_t *msg, *in, *scratch;
	struct tls_hello h;
	enum tls_hello_result r;
	CBS raw, frag;
	uint8_t type;
	uint16_t version;

	if (size < 5)
		return 0;
	for (i = 0; i < 4; i++)
		sizes[i] = (size_t)data[1 + i] + 1;
	msg = malloc(size);
	check(msg != NULL);
	CBS_init(&raw, data + 5, size - 5);
	while (CBS_get_u8(&raw, &type) && type == 0x16 &&
	       CBS_get_u16(&raw, &version) &&
	       CBS_get_u16_length_prefixed(&raw, &frag)) {
		memcpy(msg + msg_len, CBS_data(&frag), CBS_len(&frag));
		msg_len += CBS_len(&frag);
	}
	/* Bytes past the announced message would belong to the next
	 * message in one framing and to the hello's record in another. */
	if (msg_len >= 4) {
		size_t announced = 4 + ((size_t)msg[1] << 16 |
					(size_t)msg[2] << 8 | msg[3]);

		if (msg_len > announced)
			msg_len = announced;
	}
	if (msg_len == 0) {
		free(msg);
		return 0;
	}

	/* The reference: 2^14-byte records, one call, no state. */
	in = frame_msg(&in_len, msg, msg_len, big);
	scratch = malloc(TLS_HELLO_SCRATCH_LEN(16384));
	check(scratch != NULL);
	r = tls_hello_peek(NULL, &h, scratch, TLS_HELLO_SCRATCH_LEN(16384),
			   16384, in, in_len);
	keep(&whole, r, &h);
	free(scratch);
	free(in);

	/* Re-framed, as raw input in chunks of the configured size. */
	in = frame_msg(&in_len, msg, msg_len, sizes);
	free(msg);
	msg = malloc(in_len + 1);
	check(msg != NULL);
	msg[0] = data[0] & 0x3f; /* raw mode, max_len 16384 */
	memcpy(msg + 1, in, in_len);
	free(in);
	test_one(&framed, msg, in_len + 1);
	free(msg);

	check(framed.r == whole.r);
	if (whole.r == TLS_HELLO_OK)
		check(same_fields(&framed.h, &whole.h));
	if (whole.r == TLS_HELLO_BAD || whole.r == TLS_HELLO_TOO_LARGE)
		check(!strcmp(framed.h.error, whole.h.error) &&
		      framed.h.alert == whole.h.alert);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kept final;
	uint8_t *wrapped = NULL;
	int ret;

	if (size >= 1 && (data[0] & 0xc0) == 0xc0)
		return test_framing(data, size);
	if (size >= 1 && (data[0] & 0x80)) {
		size_t chunk = (data[0] & 0x3f) + 1, len;
		uint8_t cfg = data[0] & 0x3f; /* the same, in raw mode */

		/* Keep the extensions block within its u16 length. */
		if (size - 1 > 65535 - 64)
			return 0;
		wrapped = wrap_template(&len, data + 1, size - 1,
					chunk == 64 ? 16384 : chunk * 61);
		data = wrapped;
		size = len;
		wrapped = realloc(wrapped, size + 1);
		check(wrapped != NULL);
		memmove(wrapped + 1, wrapped, size);
		wrapped[0] = cfg;
		data = wrapped;
		size++;
	}
	ret = test_one(&final, data, size);
	free(wrapped);
	return ret;
}

/* Raw mode on |data| (configuration byte first); the final answer, kept,
 * in |out|. */
static int test_one(struct kept *out, const uint8_t *data, size_t size)
{
	static struct kept first_ok;
	enum tls_hello_result r, r1, final = TLS_HELLO_NEED_MORE;
	struct tls_hello_state st;
	struct tls_hello h, h1;
	uint8_t *buf, *whole, *scratch, *scratch1, *in;
	size_t chunk, max_len, scratch_len, n, len, calls = 0, hint_checked = 0;
	size_t hint_checks = 0;
	bool sampled;

	out->r = TLS_HELLO_NEED_MORE;
	memset(&out->h, 0, sizeof(out->h));
	if (size < 1)
		return 0;
	chunk = (data[0] & 0x3f) + 1;
	max_len = (data[0] & 0x40) ? 512 : 16384;
	scratch_len = TLS_HELLO_SCRATCH_LEN(max_len);
	data++;
	size--;

	buf = malloc(size ? size : 1);
	whole = malloc(size ? size : 1);
	scratch = malloc(scratch_len);
	scratch1 = malloc(scratch_len);
	check(buf && whole && scratch && scratch1);
	memcpy(whole, data, size);
	memset(&st, 0, sizeof(st));

	for (n = 0;; n += chunk, calls++) {
		len = n < size ? n : size;
		/* Long inputs in small chunks are many calls: only some get
		 * a fresh parse to compare with, which walks every record,
		 * and on long inputs only those get the copy that moves and
		 * ends where the prefix ends. */
		sampled = calls < 64 || !(calls & (calls - 1)) || len == size;
		if (sampled || size <= 4096) {
			in = buf + (size - len);
			memcpy(in, data, len);
		} else {
			in = whole;
		}
		r = tls_hello_peek(&st, &h, scratch, scratch_len, max_len, in,
				   len);

		if (final != TLS_HELLO_NEED_MORE)
			check(r == final);
		check(strcmp(tls_hello_result_str(r), "unknown") != 0);
		if (r == TLS_HELLO_BAD || r == TLS_HELLO_TOO_LARGE)
			check(h.error != NULL);
		if (sampled ||
		    (r != TLS_HELLO_NEED_MORE && final == TLS_HELLO_NEED_MORE)) {
			r1 = tls_hello_peek(NULL, &h1, scratch1, scratch_len,
					    max_len, in, len);
			check(same_answer(r, &h, r1, &h1));
		}
		if (r == TLS_HELLO_NEED_MORE) {
			/* The hint: nothing changes before records_len. */
			check(h.records_len > len);
			check(len <= TLS_HELLO_RECORDS_MAX(max_len));
			if (h.records_len - 1 > len && h.records_len - 1 <= size &&
			    h.records_len != hint_checked &&
			    (size <= 4096 || hint_checks++ < 64)) {
				check_need_more(data, h.records_len - 1, scratch1,
						max_len);
				hint_checked = h.records_len;
			}
		}
		if (r == TLS_HELLO_OK) {
			check_ok(&h, in, len, scratch, scratch_len);
			if (final == TLS_HELLO_NEED_MORE)
				keep(&first_ok, r, &h);
			check(same_hello(&first_ok.h, &h));
		}
		final = r;
		if (len == size)
			break;
	}
	keep(out, r, &h);

	/* The hello ends exactly at records_len: one byte less is a prefix. */
	if (final == TLS_HELLO_OK) {
		len = first_ok.h.records_len;
		in = buf + (size - len);
		memcpy(in, data, len);
		check(tls_hello_peek(NULL, &h, scratch, scratch_len, max_len, in,
				     len) == TLS_HELLO_OK);
		check(same_hello(&first_ok.h, &h));
		in = buf + (size - (len - 1));
		memcpy(in, data, len - 1);
		check(tls_hello_peek(NULL, &h, scratch, scratch_len, max_len, in,
				     len - 1) == TLS_HELLO_NEED_MORE);
		/* A caller's mistakes fail closed: a scratch too small for
		 * a hello in several records (one record is viewed in place),
		 * an input shorter than what the state has walked. */
		r = tls_hello_peek(NULL, &h, scratch, 3, max_len, in, len - 1);
		check(r == TLS_HELLO_NEED_MORE);
		in = buf + (size - len);
		memcpy(in, data, len);
		r = tls_hello_peek(NULL, &h, scratch, 3, max_len, in, len);
		check(r == TLS_HELLO_OK ||
		      (r == TLS_HELLO_BAD &&
		       !strcmp(h.error, "ClientHello larger than the scratch buffer")));
		check(st.rec_off == len);
		check(tls_hello_peek(&st, &h, scratch, scratch_len, max_len, in,
				     len - 1) == TLS_HELLO_BAD);
		/* Our views are gone with those calls: parse once more. */
		check(tls_hello_peek(NULL, &h, scratch, scratch_len, max_len, in,
				     len) == TLS_HELLO_OK);
		check_bssl(&h, in, len);
	}

	free(scratch1);
	free(scratch);
	free(whole);
	free(buf);
	return 0;
}
