/* tests/unit/test_hello.c: tls/hello.c, the ClientHello peek parser.
 *
 * Real ClientHellos from tests/fixtures/hello (see its README.md) must parse
 * to the expected SNI, ALPN and version, whole, as every prefix (NEED_MORE),
 * and re-framed into records of any size down to one byte, fed as a socket
 * would (split at every byte, byte by byte, in segments) through a kept
 * struct tls_hello_state, each answer the same as a fresh parse of the same
 * bytes. Malformed hellos are built with CBB from a valid template, one
 * defect at a time. Run from tests/unit (fixtures are opened as
 * ../fixtures/hello/NAME).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>

#include "tls/hello.h"

#define FIXTURE_DIR "../fixtures/hello/"
#define VM_NAME "45a68069-defc-4233-9865-6298d87053af.vm.vers.sh"
#define MAX_LEN 16384
/* Alert descriptions, RFC 8446 6.2. */
#define UNEXPECTED_MESSAGE 10
#define RECORD_OVERFLOW 22
#define DECODE_ERROR 50
#define ILLEGAL_PARAMETER 47
#define PROTOCOL_VERSION 70

/* Where multi-record hellos are joined; MAX_LEN is the default max_len. */
static uint8_t scratch[TLS_HELLO_SCRATCH_LEN(MAX_LEN)];

struct buf {
	uint8_t *data;
	size_t len;
};

static void buf_free(struct buf *b)
{
	OPENSSL_free(b->data);
	b->data = NULL;
	b->len = 0;
}

/* ---- helpers -------------------------------------------------------- */

static const char *res(enum tls_hello_result r)
{
	return tls_hello_result_str(r);
}

#define expect_result(got, want, ...)                                      \
	do {                                                               \
		enum tls_hello_result got_ = (got), want_ = (want);        \
		if (got_ != want_) {                                       \
			print_error(__VA_ARGS__);                          \
			fail_msg(" -> got %s (error: %s), want %s",        \
				 res(got_), last.error ? last.error : "-", \
				 res(want_));                              \
		}                                                          \
	} while (0)

/* The result of the last peek(), for failure messages. */
static struct tls_hello last;

static enum tls_hello_result peek_max(struct tls_hello *out, size_t max_len,
				      const uint8_t *in, size_t in_len)
{
	enum tls_hello_result r;

	assert_true(TLS_HELLO_SCRATCH_LEN(max_len) <= sizeof(scratch));
	r = tls_hello_peek(NULL, out, scratch, sizeof(scratch), max_len, in,
			   in_len);
	last = *out;
	return r;
}

/* The same, resuming from |st| (a caller's kept state). */
static enum tls_hello_result peek_st(struct tls_hello_state *st,
				     struct tls_hello *out, size_t max_len,
				     const uint8_t *in, size_t in_len)
{
	enum tls_hello_result r;

	r = tls_hello_peek(st, out, scratch, sizeof(scratch), max_len, in,
			   in_len);
	last = *out;
	return r;
}

static enum tls_hello_result peek(struct tls_hello *out, const uint8_t *in,
				  size_t in_len)
{
	return peek_max(out, MAX_LEN, in, in_len);
}

static enum tls_hello_result peek_buf(struct tls_hello *out,
				      const struct buf *b)
{
	return peek(out, b->data, b->len);
}

/* alpn_str renders an ALPN list view as "a,b,c" (or "" when absent) into
 * a malloc'd string. */
static char *alpn_str(const struct tls_hello *h)
{
	char *s = calloc(1, h->alpn_len + 1);
	size_t n = 0;
	CBS list, name;

	assert_non_null(s);
	CBS_init(&list, h->alpn, h->alpn_len);
	while (CBS_len(&list) != 0) {
		assert_true(CBS_get_u8_length_prefixed(&list, &name));
		if (n != 0)
			s[n++] = ',';
		memcpy(s + n, CBS_data(&name), CBS_len(&name));
		n += CBS_len(&name);
	}
	return s;
}

static char *sni_str(const struct tls_hello *h)
{
	char *s = calloc(1, h->sni_len + 1);

	assert_non_null(s);
	if (h->sni_len != 0)
		memcpy(s, h->sni, h->sni_len);
	return s;
}

static bool inside(const uint8_t *p, size_t len, const uint8_t *base,
		   size_t base_len)
{
	return p >= base && len <= base_len &&
	       (size_t)(p - base) <= base_len - len;
}

/* records_to_msg joins the handshake fragments of the records in |in| (a
 * fixture) into one message. */
static void records_to_msg(struct buf *out, const uint8_t *in, size_t in_len)
{
	CBB cbb;
	CBS recs, frag;
	uint8_t type;
	uint16_t version;

	CBS_init(&recs, in, in_len);
	assert_true(CBB_init(&cbb, in_len));
	while (CBS_len(&recs) != 0) {
		assert_true(CBS_get_u8(&recs, &type));
		assert_int_equal(type, 22);
		assert_true(CBS_get_u16(&recs, &version));
		assert_true(CBS_get_u16_length_prefixed(&recs, &frag));
		assert_true(CBB_add_bytes(&cbb, CBS_data(&frag), CBS_len(&frag)));
	}
	assert_true(CBB_finish(&cbb, &out->data, &out->len));
}

/* frame puts handshake bytes |msg| into handshake records: fragment i
 * holds sizes[i] bytes (the last one takes the rest); frag_size != 0
 * instead cuts every fragment to that size. */
static void frame(struct buf *out, const uint8_t *msg, size_t msg_len,
		  const size_t *sizes, size_t nsizes, size_t frag_size)
{
	CBB cbb, frag;
	CBS rest, part;
	size_t i = 0, n;

	CBS_init(&rest, msg, msg_len);
	assert_true(CBB_init(&cbb, msg_len + 64));
	do {
		if (frag_size != 0)
			n = frag_size;
		else if (i < nsizes)
			n = sizes[i];
		else
			n = CBS_len(&rest);
		if (n > CBS_len(&rest))
			n = CBS_len(&rest);
		i++;
		assert_true(CBS_get_bytes(&rest, &part, n));
		assert_true(CBB_add_u8(&cbb, 22));
		assert_true(CBB_add_u16(&cbb, 0x0301));
		assert_true(CBB_add_u16_length_prefixed(&cbb, &frag));
		assert_true(CBB_add_bytes(&frag, CBS_data(&part), CBS_len(&part)));
		assert_true(CBB_flush(&cbb));
	} while (CBS_len(&rest) != 0);
	assert_true(CBB_finish(&cbb, &out->data, &out->len));
}

static void frame_one(struct buf *out, const struct buf *msg)
{
	frame(out, msg->data, msg->len, NULL, 0, 0);
}

/* ---- fixtures ------------------------------------------------------- */

struct fixture {
	const char *file;
	const char *sni;       /* "" when the client sent none */
	const char *alpn;      /* "a,b"; "" when none; NULL: big_alpn() */
	uint16_t legacy_version;
	uint16_t max_version;
	size_t records;
};

static const struct fixture fixtures[] = {
	{ "curl-h1.bin", VM_NAME, "http/1.1", 0x0303, 0x0304, 1 },
	{ "curl-h2.bin", VM_NAME, "h2,http/1.1", 0x0303, 0x0304, 1 },
	{ "curl-tls12.bin", "host.vm.test", "h2,http/1.1", 0x0303, 0x0303, 1 },
	{ "openssl-alpn.bin", VM_NAME, "h2,http/1.1", 0x0303, 0x0304, 1 },
	{ "openssl-tls12.bin", "host.vm.test", "", 0x0303, 0x0303, 1 },
	{ "openssl-noservername.bin", "", "", 0x0303, 0x0304, 1 },
	{ "openssl-curves.bin", "host.vm.test", "", 0x0303, 0x0304, 1 },
	{ "openssl-resume.bin", "host.vm.test", "", 0x0303, 0x0304, 1 },
	{ "openssl-big-alpn.bin", VM_NAME, NULL, 0x0303, 0x0304, 1 },
	{ "openssl-fragmented.bin", VM_NAME, NULL, 0x0303, 0x0304, 8 },
	{ "python-ssl.bin", VM_NAME, "h2,http/1.1", 0x0303, 0x0304, 1 },
	{ "gnutls-cli.bin", VM_NAME, "h2,http/1.1", 0x0303, 0x0304, 1 },
	{ "bssl-grease.bin", VM_NAME, "h2,http/1.1", 0x0303, 0x0304, 1 },
};
#define NFIXTURES (sizeof(fixtures) / sizeof(fixtures[0]))

/* The ALPN list of the big fixtures (README.md): 110 long names, then
 * h2 and http/1.1. */
static const char *big_alpn(void)
{
	static char s[8192];
	size_t n = 0;
	int i;

	if (s[0] != '\0')
		return s;
	for (i = 0; i < 110; i++)
		n += snprintf(s + n, sizeof(s) - n,
			      "proto-%03d-xxxxxxxxxxxxxxxxxxxx,", i);
	snprintf(s + n, sizeof(s) - n, "h2,http/1.1");
	return s;
}

static void load(struct buf *out, const char *file)
{
	char path[256];
	FILE *f;
	long n;

	snprintf(path, sizeof(path), FIXTURE_DIR "%s", file);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open fixture %s (run from tests/unit)", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	out->data = OPENSSL_malloc(n);
	assert_non_null(out->data);
	out->len = n;
	assert_int_equal(fread(out->data, 1, n, f), (size_t)n);
	fclose(f);
}

/* check_fields compares a parsed hello with the fixture's expectations. */
static void check_fields(const struct fixture *fx, const char *how,
			 const struct tls_hello *h)
{
	const char *want_alpn = fx->alpn ? fx->alpn : big_alpn();
	char *sni = sni_str(h), *alpn = alpn_str(h);

	if (strcmp(sni, fx->sni) != 0)
		fail_msg("%s (%s): SNI \"%s\", want \"%s\"", fx->file, how,
			 sni, fx->sni);
	if (strcmp(alpn, want_alpn) != 0)
		fail_msg("%s (%s): ALPN \"%s\", want \"%s\"", fx->file, how,
			 alpn, want_alpn);
	if ((h->sni == NULL) != (fx->sni[0] == '\0'))
		fail_msg("%s (%s): sni pointer/absence mismatch", fx->file, how);
	if ((h->alpn == NULL) != (want_alpn[0] == '\0'))
		fail_msg("%s (%s): alpn pointer/absence mismatch", fx->file,
			 how);
	if (h->legacy_version != fx->legacy_version ||
	    h->max_version != fx->max_version)
		fail_msg("%s (%s): versions %04x/%04x, want %04x/%04x",
			 fx->file, how, h->legacy_version, h->max_version,
			 fx->legacy_version, fx->max_version);
	free(sni);
	free(alpn);
}

/* Each fixture parses whole, with views into the input for one record and
 * into scratch for several, and ignores the bytes after its records. */
static void test_fixtures_parse(void **state)
{
	static const uint8_t app_data[] = { 0x17, 0x03, 0x03, 0x00, 0x01, 0x00 };
	struct tls_hello h;
	struct buf b, more;
	const uint8_t *base;
	size_t i, base_len;

	for (i = 0; i < NFIXTURES; i++) {
		const struct fixture *fx = &fixtures[i];

		load(&b, fx->file);
		expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "%s whole\n",
			      fx->file);
		check_fields(fx, "whole", &h);
		if (h.records_len != b.len)
			fail_msg("%s: records_len %zu, want %zu", fx->file,
				 h.records_len, b.len);
		base = fx->records == 1 ? b.data : scratch;
		base_len = fx->records == 1 ? b.len : sizeof(scratch);
		if (h.sni && !inside(h.sni, h.sni_len, base, base_len))
			fail_msg("%s: SNI view outside %s", fx->file,
				 fx->records == 1 ? "input" : "scratch");
		if (h.alpn && !inside(h.alpn, h.alpn_len, base, base_len))
			fail_msg("%s: ALPN view outside %s", fx->file,
				 fx->records == 1 ? "input" : "scratch");

		/* The next record (here early application data) is not ours. */
		more.len = b.len + sizeof(app_data);
		more.data = OPENSSL_malloc(more.len);
		assert_non_null(more.data);
		memcpy(more.data, b.data, b.len);
		memcpy(more.data + b.len, app_data, sizeof(app_data));
		expect_result(peek_buf(&h, &more), TLS_HELLO_OK,
			      "%s + app data record\n", fx->file);
		check_fields(fx, "with next record", &h);
		if (h.records_len != b.len)
			fail_msg("%s + next record: records_len %zu, want %zu",
				 fx->file, h.records_len, b.len);
		buf_free(&more);
		buf_free(&b);
	}
}

/* Every strict prefix of a valid hello, i.e. every way TCP may have cut
 * it so far, answers NEED_MORE. */
static void check_prefixes(const char *what, const struct buf *b)
{
	struct tls_hello h;
	size_t n;

	for (n = 0; n < b->len; n++) {
		expect_result(peek(&h, b->data, n), TLS_HELLO_NEED_MORE,
			      "%s: prefix of %zu/%zu bytes\n", what, n, b->len);
		/* The "come back with this many bytes" hint is past what
		 * was given and never past the point the answer changes. */
		if (h.records_len <= n || h.records_len > b->len)
			fail_msg("%s: prefix %zu/%zu: need hint %zu out of range",
				 what, n, b->len, h.records_len);
	}
}

static void test_fixtures_prefixes(void **state)
{
	struct buf b;
	size_t i;

	for (i = 0; i < NFIXTURES; i++) {
		load(&b, fixtures[i].file);
		check_prefixes(fixtures[i].file, &b);
		buf_free(&b);
	}
}

/* Re-framed into two records split at every byte, the message parses the
 * same (from scratch). */
static void test_fixtures_two_records(void **state)
{
	struct tls_hello h;
	struct buf b, msg, framed;
	size_t i, k;
	char how[64];

	for (i = 0; i < NFIXTURES; i++) {
		load(&b, fixtures[i].file);
		records_to_msg(&msg, b.data, b.len);
		for (k = 1; k < msg.len; k++) {
			frame(&framed, msg.data, msg.len, &k, 1, 0);
			snprintf(how, sizeof(how), "split at %zu", k);
			expect_result(peek_buf(&h, &framed), TLS_HELLO_OK,
				      "%s: %s\n", fixtures[i].file, how);
			check_fields(&fixtures[i], how, &h);
			if (h.records_len != framed.len)
				fail_msg("%s: %s: records_len %zu, want %zu",
					 fixtures[i].file, how, h.records_len,
					 framed.len);
			if (h.sni &&
			    !inside(h.sni, h.sni_len, scratch, sizeof(scratch)))
				fail_msg("%s: %s: SNI not in scratch",
					 fixtures[i].file, how);
			buf_free(&framed);
		}
		buf_free(&msg);
		buf_free(&b);
	}
}

/* ---- incremental parsing ------------------------------------------- */

/* An answer, with copies of what its views pointed at: scratch is reused
 * by the next call. */
struct answer {
	enum tls_hello_result r;
	size_t records_len;
	const char *error;
	uint8_t alert;
	uint16_t legacy_version, max_version;
	bool has_sni, has_alpn, has_sigalgs;
	size_t sni_len, alpn_len, sigalgs_len;
	uint8_t sni[256], alpn[65536], sigalgs[65536];
};

static void take(struct answer *a, enum tls_hello_result r,
		 const struct tls_hello *h)
{
	a->r = r;
	a->records_len = h->records_len;
	a->error = h->error;
	a->alert = h->alert;
	a->legacy_version = h->legacy_version;
	a->max_version = h->max_version;
	a->has_sni = h->sni != NULL;
	a->has_alpn = h->alpn != NULL;
	a->has_sigalgs = h->sigalgs != NULL;
	a->sni_len = h->sni_len;
	a->alpn_len = h->alpn_len;
	a->sigalgs_len = h->sigalgs_len;
	assert_true(h->sni_len <= sizeof(a->sni));
	if (h->sni_len)
		memcpy(a->sni, h->sni, h->sni_len);
	if (h->alpn_len)
		memcpy(a->alpn, h->alpn, h->alpn_len);
	if (h->sigalgs_len)
		memcpy(a->sigalgs, h->sigalgs, h->sigalgs_len);
}

static bool same_view(bool has, const uint8_t *want, size_t want_len,
		      const uint8_t *got, size_t got_len)
{
	return has == (got != NULL) && want_len == got_len &&
	       (want_len == 0 || memcmp(want, got, want_len) == 0);
}

/* expect_same fails unless |r|, |h| is answer |a|: the same result, the
 * same hint, the same error and alert, or the very same hello. */
static void expect_same(const char *what, size_t n, const struct answer *a,
			enum tls_hello_result r, const struct tls_hello *h)
{
	if (r != a->r)
		fail_msg("%s, %zu bytes: %s (error: %s), a fresh parse says %s",
			 what, n, res(r), h->error ? h->error : "-", res(a->r));
	switch (r) {
	case TLS_HELLO_NEED_MORE:
		if (h->records_len != a->records_len)
			fail_msg("%s, %zu bytes: hint %zu, a fresh parse says %zu",
				 what, n, h->records_len, a->records_len);
		break;
	case TLS_HELLO_OK:
		if (h->records_len != a->records_len ||
		    h->legacy_version != a->legacy_version ||
		    h->max_version != a->max_version ||
		    !same_view(a->has_sni, a->sni, a->sni_len, h->sni,
			       h->sni_len) ||
		    !same_view(a->has_alpn, a->alpn, a->alpn_len, h->alpn,
			       h->alpn_len) ||
		    !same_view(a->has_sigalgs, a->sigalgs, a->sigalgs_len,
			       h->sigalgs, h->sigalgs_len))
			fail_msg("%s, %zu bytes: not the hello a fresh parse sees",
				 what, n);
		break;
	default:
		if (!h->error || strcmp(h->error, a->error) != 0 ||
		    h->alert != a->alert)
			fail_msg("%s, %zu bytes: error \"%s\" alert %u, a fresh "
				 "parse says \"%s\" alert %u", what, n,
				 h->error ? h->error : "-", h->alert, a->error,
				 a->alert);
		break;
	}
}

/* The prefixes of an input that check_incremental compares: all of them
 * up to 4 KiB (a 600-byte hello in 1-byte records); beyond, the first and
 * the last 512 bytes and every 61st byte, since each costs a walk of the
 * records (1-byte records of a 4 KiB hello are 24 KiB). */
static bool probed(size_t n, size_t in_len)
{
	return in_len <= 4096 || n < 512 || in_len - n < 512 || n % 61 == 0;
}

/* A fresh parse of every probed prefix of the input: the reference
 * answers. Only the first final answer is kept whole: the ones after it
 * must be the same (an answer other than NEED_MORE never changes). */
struct refs {
	enum tls_hello_result *r;
	size_t *hint;
	size_t in_len;
	size_t final_at; /* first prefix with a final answer, or SIZE_MAX */
	struct answer final;
};

static struct answer ref_final;

static void refs_make(struct refs *rf, const char *what, size_t max_len,
		      const uint8_t *in, size_t in_len)
{
	struct tls_hello h;
	enum tls_hello_result r;
	size_t n;

	rf->r = calloc(in_len + 1, sizeof(*rf->r));
	rf->hint = calloc(in_len + 1, sizeof(*rf->hint));
	assert_true(rf->r && rf->hint);
	rf->in_len = in_len;
	rf->final_at = SIZE_MAX;
	for (n = 0; n <= in_len; n++) {
		if (!probed(n, in_len))
			continue;
		r = peek_max(&h, max_len, in, n);
		rf->r[n] = r;
		rf->hint[n] = h.records_len;
		if (rf->final_at != SIZE_MAX)
			expect_same(what, n, &ref_final, r, &h);
		else if (r != TLS_HELLO_NEED_MORE) {
			rf->final_at = n;
			take(&ref_final, r, &h);
		}
	}
}

static void refs_free(struct refs *rf)
{
	free(rf->r);
	free(rf->hint);
}

static void expect_ref(const char *what, const struct refs *rf, size_t n,
		       enum tls_hello_result r, const struct tls_hello *h)
{
	static struct answer a;

	if (n < rf->final_at && !probed(n, rf->in_len)) {
		/* No fresh parse to compare with: NEED_MORE with a hint
		 * ahead, or the final answer the fresh parses came to. */
		if (r == TLS_HELLO_NEED_MORE && h->records_len <= n)
			fail_msg("%s, %zu bytes: hint %zu is not ahead", what,
				 n, h->records_len);
		if (r != TLS_HELLO_NEED_MORE && rf->final_at == SIZE_MAX)
			fail_msg("%s, %zu bytes: %s, a fresh parse never is",
				 what, n, res(r));
		if (r != TLS_HELLO_NEED_MORE)
			expect_same(what, n, &ref_final, r, h);
		return;
	}
	if (n >= rf->final_at) {
		expect_same(what, n, &ref_final, r, h);
		return;
	}
	a.r = rf->r[n];
	a.records_len = rf->hint[n];
	expect_same(what, n, &a, r, h);
}

/* check_incremental feeds |in| to the parser as a socket would, keeping a
 * struct tls_hello_state, and checks every answer against a fresh parse of
 * the same bytes:
 *   - byte by byte, calling on every prefix (and on after a final answer);
 *   - split at every (probed) byte: one call with the first k bytes, then
 *     one with all of them;
 *   - in segments of a few sizes, calling only once the hint is reached,
 *     as core/conn.c does. */
static void check_incremental(const char *what, size_t max_len,
			      const uint8_t *in, size_t in_len)
{
	static const size_t segs[] = { 2, 5, 7, 61, 1460 };
	struct tls_hello_state st;
	struct tls_hello h;
	struct refs rf;
	enum tls_hello_result r;
	size_t n, k, i, need;
	char how[160];

	refs_make(&rf, what, max_len, in, in_len);
	/* A whole hello: every strict prefix answers NEED_MORE, its hint
	 * past what was given and never past the point the answer changes
	 * (check_prefixes, without parsing every prefix again). */
	if (rf.final_at != SIZE_MAX && ref_final.r == TLS_HELLO_OK &&
	    ref_final.records_len == in_len)
		for (n = 0; n < in_len; n++)
			if (probed(n, in_len) &&
			    (rf.hint[n] <= n || rf.hint[n] > in_len))
				fail_msg("%s: prefix %zu/%zu: need hint %zu out "
					 "of range", what, n, in_len, rf.hint[n]);

	memset(&st, 0, sizeof(st));
	snprintf(how, sizeof(how), "%s, byte by byte", what);
	for (n = 0; n <= in_len; n++) {
		r = peek_st(&st, &h, max_len, in, n);
		expect_ref(how, &rf, n, r, &h);
	}

	for (k = 1; k < in_len; k++) {
		if (!probed(k, in_len))
			continue;
		memset(&st, 0, sizeof(st));
		snprintf(how, sizeof(how), "%s, split at %zu", what, k);
		r = peek_st(&st, &h, max_len, in, k);
		expect_ref(how, &rf, k, r, &h);
		r = peek_st(&st, &h, max_len, in, in_len);
		expect_ref(how, &rf, in_len, r, &h);
	}

	for (i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
		memset(&st, 0, sizeof(st));
		snprintf(how, sizeof(how), "%s, %zu-byte segments", what,
			 segs[i]);
		need = 0;
		for (n = 0;; n += segs[i]) {
			if (n > in_len)
				n = in_len;
			if (n >= need) {
				r = peek_st(&st, &h, max_len, in, n);
				expect_ref(how, &rf, n, r, &h);
				if (r != TLS_HELLO_NEED_MORE)
					break;
				need = h.records_len;
			}
			if (n == in_len)
				break;
		}
	}
	refs_free(&rf);
}

/* Every fixture re-framed into records of 1, 2, 3, 16, 100 and 1,000
 * bytes (the handshake header itself split four ways in 1-byte records),
 * and as captured: it parses the same, every strict prefix answers
 * NEED_MORE with a hint within the input, and fed through a kept state
 * every answer is a fresh parse's (check_incremental). */
static void test_fixtures_reframed(void **state)
{
	static const size_t frags[] = { 0, 1, 2, 3, 16, 100, 1000 };
	struct tls_hello h;
	struct buf b, msg, framed;
	size_t i, j;
	char how[128];

	for (i = 0; i < NFIXTURES; i++) {
		load(&b, fixtures[i].file);
		records_to_msg(&msg, b.data, b.len);
		for (j = 0; j < sizeof(frags) / sizeof(frags[0]); j++) {
			if (frags[j] == 0) {
				framed.data = OPENSSL_memdup(b.data, b.len);
				assert_non_null(framed.data);
				framed.len = b.len;
				snprintf(how, sizeof(how), "%s as captured",
					 fixtures[i].file);
			} else {
				frame(&framed, msg.data, msg.len, NULL, 0,
				      frags[j]);
				snprintf(how, sizeof(how), "%s in %zu-byte records",
					 fixtures[i].file, frags[j]);
			}
			if (frags[j] == 1)
				assert_int_equal(framed.len, 6 * msg.len);
			expect_result(peek_buf(&h, &framed), TLS_HELLO_OK,
				      "%s\n", how);
			check_fields(&fixtures[i], how, &h);
			assert_int_equal(h.records_len, framed.len);
			check_incremental(how, MAX_LEN, framed.data, framed.len);
			buf_free(&framed);
		}
		buf_free(&msg);
		buf_free(&b);
	}
}

/* ---- length fields of real hellos ----------------------------------- */

struct len_field {
	size_t off;   /* in the message */
	size_t width; /* 1, 2 or 3 bytes */
	const char *name;
	bool alpn_name;
};

struct len_fields {
	struct len_field f[512];
	size_t n;
};

static void add_field(struct len_fields *lf, const struct buf *msg,
		      const CBS *at, size_t width, const char *name)
{
	assert_true(lf->n < sizeof(lf->f) / sizeof(lf->f[0]));
	lf->f[lf->n].off = CBS_data(at) - msg->data;
	lf->f[lf->n].width = width;
	lf->f[lf->n].name = name;
	lf->f[lf->n].alpn_name = strcmp(name, "protocol_name") == 0;
	lf->n++;
}

/* find_len_fields lists every length field the parser reads in a valid
 * ClientHello message, except the handshake length itself. */
static void find_len_fields(struct len_fields *lf, const struct buf *msg)
{
	CBS c, body, v, exts, ext, list, item;
	uint16_t type;

	lf->n = 0;
	CBS_init(&c, msg->data, msg->len);
	assert_true(CBS_skip(&c, 4 + 2 + 32));
	add_field(lf, msg, &c, 1, "session_id");
	assert_true(CBS_get_u8_length_prefixed(&c, &v));
	add_field(lf, msg, &c, 2, "cipher_suites");
	assert_true(CBS_get_u16_length_prefixed(&c, &v));
	add_field(lf, msg, &c, 1, "compression_methods");
	assert_true(CBS_get_u8_length_prefixed(&c, &v));
	add_field(lf, msg, &c, 2, "extensions");
	assert_true(CBS_get_u16_length_prefixed(&c, &exts));
	while (CBS_len(&exts) != 0) {
		assert_true(CBS_get_u16(&exts, &type));
		add_field(lf, msg, &exts, 2, "extension_data");
		assert_true(CBS_get_u16_length_prefixed(&exts, &ext));
		body = ext;
		switch (type) {
		case 0:
			add_field(lf, msg, &body, 2, "server_name_list");
			assert_true(CBS_get_u16_length_prefixed(&body, &list));
			assert_true(CBS_skip(&list, 1));
			add_field(lf, msg, &list, 2, "host_name");
			break;
		case 16:
			add_field(lf, msg, &body, 2, "protocol_name_list");
			assert_true(CBS_get_u16_length_prefixed(&body, &list));
			while (CBS_len(&list) != 0) {
				add_field(lf, msg, &list, 1, "protocol_name");
				assert_true(CBS_get_u8_length_prefixed(&list,
								       &item));
			}
			break;
		case 43:
			add_field(lf, msg, &body, 1, "supported_versions");
			break;
		}
	}
}

static void patch_len(struct buf *msg, const struct len_field *f, int delta)
{
	uint32_t v = 0;
	size_t i;

	for (i = 0; i < f->width; i++)
		v = v << 8 | msg->data[f->off + i];
	v += delta;
	for (i = f->width; i > 0; i--) {
		msg->data[f->off + i - 1] = v & 0xff;
		v >>= 8;
	}
}

/* Every length field of every fixture, one shorter or one longer, is
 * BAD; the record and handshake lengths are kept right so that the defect
 * is the field alone. */
static void test_fixtures_bad_lengths(void **state)
{
	static struct len_fields lf;
	static const int deltas[] = { -1, +1 };
	enum tls_hello_result r;
	struct tls_hello h;
	char *alpn;
	struct buf b, msg, framed;
	size_t i, j, d;

	for (i = 0; i < NFIXTURES; i++) {
		load(&b, fixtures[i].file);
		records_to_msg(&msg, b.data, b.len);
		find_len_fields(&lf, &msg);
		for (j = 0; j < lf.n; j++) {
			for (d = 0; d < 2; d++) {
				const struct len_field *f = &lf.f[j];
				uint32_t v = msg.data[f->off];

				if (f->width == 2)
					v = v << 8 | msg.data[f->off + 1];
				if ((v == 0 && deltas[d] < 0) ||
				    (f->width == 1 && v == 255 && deltas[d] > 0))
					continue;
				patch_len(&msg, f, deltas[d]);
				frame(&framed, msg.data, msg.len, NULL, 0, 0);
				r = peek_buf(&h, &framed);
				if (r == TLS_HELLO_OK && f->alpn_name) {
					/* ALPN names delimit themselves: a
					 * shifted name may resync into a
					 * different, valid list. */
					alpn = alpn_str(&h);
					if (strcmp(alpn, fixtures[i].alpn ?
						   fixtures[i].alpn :
						   big_alpn()) == 0)
						fail_msg("%s: ALPN name length at %zu %+d unnoticed",
							 fixtures[i].file,
							 f->off, deltas[d]);
					free(alpn);
				} else {
					expect_result(r, TLS_HELLO_BAD,
						      "%s: %s length at %zu %+d\n",
						      fixtures[i].file, f->name,
						      f->off, deltas[d]);
				}
				buf_free(&framed);
				patch_len(&msg, f, -deltas[d]);
			}
		}
		buf_free(&msg);
		buf_free(&b);
	}
}

/* The handshake and record lengths, one off, in a real hello. */
static void test_fixture_outer_lengths(void **state)
{
	const struct len_field hs_len = { 1, 3, "handshake", false };
	struct tls_hello h;
	struct buf b, msg, framed;

	load(&b, "openssl-alpn.bin");
	records_to_msg(&msg, b.data, b.len);

	/* Message claims one byte fewer than its record carries. */
	patch_len(&msg, &hs_len, -1);
	frame_one(&framed, &msg);
	expect_result(peek_buf(&h, &framed), TLS_HELLO_BAD,
		      "handshake length -1\n");
	assert_string_equal(h.error, "data after ClientHello in its record");
	assert_int_equal(h.alert, UNEXPECTED_MESSAGE);
	buf_free(&framed);

	/* One byte more: the message goes on in a record not yet received. */
	patch_len(&msg, &hs_len, +2);
	frame_one(&framed, &msg);
	expect_result(peek_buf(&h, &framed), TLS_HELLO_NEED_MORE,
		      "handshake length +1\n");
	buf_free(&framed);
	patch_len(&msg, &hs_len, -1);

	/* Record length one longer: the record would carry a byte after the
	 * message, which is known as soon as both headers are in. */
	framed.len = b.len + 1;
	framed.data = OPENSSL_malloc(framed.len);
	assert_non_null(framed.data);
	memcpy(framed.data, b.data, b.len);
	framed.data[b.len] = 0;
	framed.data[4]++;
	expect_result(peek(&h, framed.data, b.len), TLS_HELLO_BAD,
		      "record length +1, as sent\n");
	assert_string_equal(h.error, "data after ClientHello in its record");
	assert_int_equal(h.alert, UNEXPECTED_MESSAGE);
	expect_result(peek(&h, framed.data, 5 + 4), TLS_HELLO_BAD,
		      "record length +1, headers only\n");
	expect_result(peek_buf(&h, &framed), TLS_HELLO_BAD,
		      "record length +1, one more byte\n");

	/* Record length one shorter: the message's last byte is read as the
	 * start of another record: never OK. */
	framed.data[4] -= 2;
	if (peek(&h, framed.data, b.len) == TLS_HELLO_OK)
		fail_msg("record length -1 parsed OK");
	buf_free(&framed);
	buf_free(&msg);
	buf_free(&b);
}

/* ---- hellos built with CBB ------------------------------------------ */

struct ext {
	uint16_t type;
	const uint8_t *data;
	size_t len;
};

struct spec {
	const struct ext *exts;
	size_t nexts;
	bool no_extensions;          /* omit the extensions block */
	const uint8_t *trailer;      /* bytes after the extensions block */
	size_t trailer_len;
	uint16_t legacy_version;     /* 0: 0x0303 */
};

/* build_msg makes a ClientHello handshake message from |s|. */
static void build_msg(struct buf *out, const struct spec *s)
{
	static const uint8_t random[32] = { 1, 2, 3 };
	CBB cbb, body, v, exts, ext;
	size_t i;

	assert_true(CBB_init(&cbb, 512));
	assert_true(CBB_add_u8(&cbb, 1));
	assert_true(CBB_add_u24_length_prefixed(&cbb, &body));
	assert_true(CBB_add_u16(&body, s->legacy_version ? s->legacy_version
							 : 0x0303));
	assert_true(CBB_add_bytes(&body, random, sizeof(random)));
	assert_true(CBB_add_u8_length_prefixed(&body, &v));
	assert_true(CBB_add_bytes(&v, random, sizeof(random)));
	assert_true(CBB_add_u16_length_prefixed(&body, &v));
	assert_true(CBB_add_u16(&v, 0x1301));
	assert_true(CBB_add_u16(&v, 0xc02f));
	assert_true(CBB_add_u8_length_prefixed(&body, &v));
	assert_true(CBB_add_u8(&v, 0));
	if (!s->no_extensions) {
		assert_true(CBB_add_u16_length_prefixed(&body, &exts));
		for (i = 0; i < s->nexts; i++) {
			assert_true(CBB_add_u16(&exts, s->exts[i].type));
			assert_true(CBB_add_u16_length_prefixed(&exts, &ext));
			assert_true(CBB_add_bytes(&ext, s->exts[i].data,
						  s->exts[i].len));
		}
	}
	if (s->trailer_len)
		assert_true(CBB_add_bytes(&body, s->trailer, s->trailer_len));
	assert_true(CBB_finish(&cbb, &out->data, &out->len));
}

/* build makes the message of |s| framed in one record. */
static void build(struct buf *out, const struct spec *s)
{
	struct buf msg;

	build_msg(&msg, s);
	frame_one(out, &msg);
	buf_free(&msg);
}

/* sni_ext builds a server_name extension body with entries of
 * (name_type, name); |extra| bytes are appended after the list. */
struct sni_entry {
	uint8_t type;
	const uint8_t *name;
	size_t len;
};

static void sni_ext(struct buf *out, const struct sni_entry *e, size_t n,
		    const uint8_t *extra, size_t extra_len)
{
	CBB cbb, list, name;
	size_t i;

	assert_true(CBB_init(&cbb, 64));
	assert_true(CBB_add_u16_length_prefixed(&cbb, &list));
	for (i = 0; i < n; i++) {
		assert_true(CBB_add_u8(&list, e[i].type));
		assert_true(CBB_add_u16_length_prefixed(&list, &name));
		assert_true(CBB_add_bytes(&name, e[i].name, e[i].len));
	}
	assert_true(CBB_flush(&cbb));
	if (extra_len)
		assert_true(CBB_add_bytes(&cbb, extra, extra_len));
	assert_true(CBB_finish(&cbb, &out->data, &out->len));
}

static void host_ext(struct buf *out, const char *host)
{
	struct sni_entry e = { 0, (const uint8_t *)host, strlen(host) };

	sni_ext(out, &e, 1, NULL, 0);
}

static void versions_ext(struct buf *out, const uint16_t *v, size_t n)
{
	CBB cbb, list;
	size_t i;

	assert_true(CBB_init(&cbb, 16));
	assert_true(CBB_add_u8_length_prefixed(&cbb, &list));
	for (i = 0; i < n; i++)
		assert_true(CBB_add_u16(&list, v[i]));
	assert_true(CBB_finish(&cbb, &out->data, &out->len));
}

/* expect_ext builds a hello with extensions |exts| and checks the answer
 * and error string; a valid one must also pass the prefix test. */
static void expect_ext(const char *what, const struct ext *exts, size_t n,
		       enum tls_hello_result want, const char *want_err)
{
	struct spec s = { .exts = exts, .nexts = n };
	struct tls_hello h;
	struct buf b;

	build(&b, &s);
	expect_result(peek_buf(&h, &b), want, "%s\n", what);
	if (want_err && (h.error == NULL || strcmp(h.error, want_err) != 0))
		fail_msg("%s: error \"%s\", want \"%s\"", what,
			 h.error ? h.error : "(null)", want_err);
	if (want == TLS_HELLO_OK)
		check_prefixes(what, &b);
	buf_free(&b);
}

static void expect_sni(const char *what, const struct buf *sni,
		       enum tls_hello_result want, const char *want_err)
{
	struct ext e = { 0, sni->data, sni->len };

	expect_ext(what, &e, 1, want, want_err);
}

static void test_sni_valid_and_absent(void **state)
{
	struct tls_hello h;
	struct buf sni, b;
	struct ext e;
	struct spec s = { 0 };
	char name[256];

	/* No server_name extension at all: OK, and the router says no. */
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "no SNI extension\n");
	assert_null(h.sni);
	assert_int_equal(h.sni_len, 0);
	buf_free(&b);

	host_ext(&sni, "Host.VM.test");
	e = (struct ext){ 0, sni.data, sni.len };
	s = (struct spec){ .exts = &e, .nexts = 1 };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "one host_name\n");
	assert_int_equal(h.sni_len, 12);
	assert_memory_equal(h.sni, "Host.VM.test", 12); /* case kept */
	assert_null(h.alpn);
	assert_int_equal(h.max_version, 0x0303);
	buf_free(&b);
	buf_free(&sni);

	/* 255 bytes is the longest DNS name: accepted. */
	memset(name, 'a', 255);
	name[255] = '\0';
	host_ext(&sni, name);
	expect_sni("SNI of 255 bytes", &sni, TLS_HELLO_OK, NULL);
	buf_free(&sni);
}

static void test_sni_malformed(void **state)
{
	static const uint8_t nul_name[] = "a.vm.test\0.evil.test";
	static const uint8_t extra[] = { 0 };
	char name[257];
	struct buf sni;
	struct sni_entry two[2] = {
		{ 0, (const uint8_t *)"a.vm.test", 9 },
		{ 0, (const uint8_t *)"b.vm.test", 9 },
	};
	struct sni_entry other[2] = {
		{ 0, (const uint8_t *)"a.vm.test", 9 },
		{ 1, (const uint8_t *)"xyz", 3 },
	};
	struct sni_entry nul = { 0, nul_name, sizeof(nul_name) - 1 };
	struct sni_entry empty = { 0, (const uint8_t *)"", 0 };
	struct ext e = { 0, NULL, 0 };

	expect_ext("SNI extension with no body", &e, 1, TLS_HELLO_BAD,
		   "bad SNI extension length");

	sni_ext(&sni, NULL, 0, NULL, 0);
	expect_sni("empty server_name_list", &sni, TLS_HELLO_BAD,
		   "empty SNI list");
	buf_free(&sni);

	sni_ext(&sni, &empty, 1, NULL, 0);
	expect_sni("empty host_name", &sni, TLS_HELLO_BAD, "empty SNI");
	buf_free(&sni);

	memset(name, 'a', 256);
	name[256] = '\0';
	host_ext(&sni, name);
	expect_sni("SNI of 256 bytes", &sni, TLS_HELLO_BAD,
		   "SNI longer than 255 bytes");
	buf_free(&sni);

	sni_ext(&sni, &nul, 1, NULL, 0);
	expect_sni("NUL in SNI", &sni, TLS_HELLO_BAD, "SNI contains NUL");
	buf_free(&sni);

	sni_ext(&sni, two, 2, NULL, 0);
	expect_sni("two host_name entries", &sni, TLS_HELLO_BAD,
		   "two host_name entries");
	buf_free(&sni);

	sni_ext(&sni, other, 2, NULL, 0);
	expect_sni("unknown name_type", &sni, TLS_HELLO_BAD,
		   "unknown SNI name_type");
	buf_free(&sni);

	sni_ext(&sni, other + 1, 1, NULL, 0);
	expect_sni("only an unknown name_type", &sni, TLS_HELLO_BAD,
		   "unknown SNI name_type");
	buf_free(&sni);

	sni_ext(&sni, two, 1, extra, sizeof(extra));
	expect_sni("byte after server_name_list", &sni, TLS_HELLO_BAD,
		   "bad SNI extension length");
	buf_free(&sni);
}

static void test_alpn(void **state)
{
	static const uint8_t ok[] = { 0, 12, 2, 'h', '2', 8, 'h', 't', 't',
				      'p', '/', '1', '.', '1' };
	static const uint8_t empty_list[] = { 0, 0 };
	static const uint8_t empty_name[] = { 0, 4, 2, 'h', '2', 0 };
	static const uint8_t short_name[] = { 0, 3, 3, 'h', '2' };
	static const uint8_t trailing[] = { 0, 3, 2, 'h', '2', 0 };
	struct ext e = { 16, ok, sizeof(ok) };
	struct spec s = { .exts = &e, .nexts = 1 };
	struct tls_hello h;
	struct buf b;

	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "ALPN h2,http/1.1\n");
	assert_int_equal(h.alpn_len, sizeof(ok) - 2);
	assert_memory_equal(h.alpn, ok + 2, sizeof(ok) - 2);
	buf_free(&b);

	e = (struct ext){ 16, empty_list, sizeof(empty_list) };
	expect_ext("empty ALPN list", &e, 1, TLS_HELLO_BAD, "empty ALPN list");
	e = (struct ext){ 16, empty_name, sizeof(empty_name) };
	expect_ext("empty ALPN name", &e, 1, TLS_HELLO_BAD,
		   "empty ALPN protocol name");
	e = (struct ext){ 16, short_name, sizeof(short_name) };
	expect_ext("ALPN name overruns list", &e, 1, TLS_HELLO_BAD,
		   "truncated ALPN protocol name");
	e = (struct ext){ 16, trailing, sizeof(trailing) };
	expect_ext("byte after ALPN list", &e, 1, TLS_HELLO_BAD,
		   "bad ALPN extension length");
	e = (struct ext){ 16, NULL, 0 };
	expect_ext("ALPN with no body", &e, 1, TLS_HELLO_BAD,
		   "bad ALPN extension length");
}

/* cipher_suites and supported_groups, for the TLS 1.2 certificate fit
 * (tls/sigalg.h): the suites as sent; the groups when well-formed (an
 * empty list too), absent otherwise, without refusing the hello. */
static void test_suites_and_groups(void **state)
{
	static const uint8_t groups[] = { 0, 4, 0x00, 0x1d, 0x00, 0x17 };
	static const uint8_t empty[] = { 0, 0 };
	static const uint8_t odd[] = { 0, 3, 0x00, 0x1d, 0x00 };
	static const uint8_t suites[] = { 0x13, 0x01, 0xc0, 0x2f };
	struct tls_hello h;
	struct buf b;
	struct ext e = { 10, groups, sizeof(groups) };
	struct spec s = { .exts = &e, .nexts = 1 };

	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "groups\n");
	assert_int_equal(h.cipher_suites_len, sizeof(suites));
	assert_memory_equal(h.cipher_suites, suites, sizeof(suites));
	assert_true(h.groups_present);
	assert_int_equal(h.groups_len, 4);
	assert_memory_equal(h.groups, groups + 2, 4);
	buf_free(&b);

	e = (struct ext){ 10, empty, sizeof(empty) };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "empty groups\n");
	assert_true(h.groups_present);
	assert_int_equal(h.groups_len, 0);
	buf_free(&b);

	e = (struct ext){ 10, odd, sizeof(odd) };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "odd groups\n");
	assert_false(h.groups_present);
	buf_free(&b);

	s.nexts = 0;
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "no groups\n");
	assert_false(h.groups_present);
	buf_free(&b);
}

static void test_supported_versions(void **state)
{
	static const uint16_t grease_13[] = { 0x7a7a, 0x0304, 0x0303 };
	static const uint16_t grease_only[] = { 0x0a0a, 0xfafa };
	static const uint16_t low_first[] = { 0x0302, 0x0303, 0x0304 };
	static const uint16_t future_12[] = { 0x0303, 0x0305 };
	static const uint16_t none_common[] = { 0x0302, 0x0305 };
	static const uint16_t only_13[] = { 0x0304 };
	static const uint8_t odd[] = { 3, 0x03, 0x04, 0x03 };
	static const uint8_t empty[] = { 0 };
	static const uint8_t trailing[] = { 2, 0x03, 0x04, 0x00 };
	struct tls_hello h;
	struct buf v, b;
	struct ext e;
	struct spec s = { .exts = &e, .nexts = 1 };

	versions_ext(&v, grease_13, 3);
	e = (struct ext){ 43, v.data, v.len };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "GREASE + 1.3 + 1.2\n");
	assert_int_equal(h.max_version, 0x0304);
	assert_int_equal(h.tls_version, 0x0304);
	assert_int_equal(h.legacy_version, 0x0303);
	buf_free(&b);
	buf_free(&v);

	versions_ext(&v, low_first, 3);
	e = (struct ext){ 43, v.data, v.len };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "1.1, 1.2, 1.3\n");
	assert_int_equal(h.max_version, 0x0304);
	assert_int_equal(h.tls_version, 0x0304);
	buf_free(&b);
	buf_free(&v);

	/* A version vmgate does not speak counts for nothing: 1.2 and a
	 * future 0x0305 is TLS 1.2 (it was read as 1.3 by the highest). */
	versions_ext(&v, future_12, 2);
	e = (struct ext){ 43, v.data, v.len };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "1.2 + 0x0305\n");
	assert_int_equal(h.max_version, 0x0305);
	assert_int_equal(h.tls_version, 0x0303);
	buf_free(&b);
	buf_free(&v);

	/* Only versions it does not speak: none in common. */
	versions_ext(&v, none_common, 2);
	e = (struct ext){ 43, v.data, v.len };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "1.1 + 0x0305\n");
	assert_int_equal(h.tls_version, 0);
	buf_free(&b);
	buf_free(&v);

	/* With supported_versions, legacy_version decides nothing (RFC 8446
	 * forbids 0x0304 there; BoringSSL reads the extension alone). */
	versions_ext(&v, only_13, 1);
	e = (struct ext){ 43, v.data, v.len };
	s.legacy_version = 0x0304;
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "legacy 1.3 + {1.3}\n");
	assert_int_equal(h.tls_version, 0x0304);
	buf_free(&b);
	buf_free(&v);

	/* Without it, legacy_version up to TLS 1.2. */
	s = (struct spec){ .legacy_version = 0x0304, .nexts = 0 };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "legacy 1.3 alone\n");
	assert_int_equal(h.max_version, 0x0304);
	assert_int_equal(h.tls_version, 0x0303);
	buf_free(&b);
	s.legacy_version = 0x0302;
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "legacy 1.1 alone\n");
	assert_int_equal(h.tls_version, 0);
	buf_free(&b);
	s = (struct spec){ .exts = &e, .nexts = 1 };

	versions_ext(&v, grease_only, 2);
	e = (struct ext){ 43, v.data, v.len };
	expect_ext("GREASE-only supported_versions", &e, 1, TLS_HELLO_BAD,
		   "supported_versions has only GREASE");
	buf_free(&v);

	e = (struct ext){ 43, odd, sizeof(odd) };
	expect_ext("odd supported_versions", &e, 1, TLS_HELLO_BAD,
		   "bad supported_versions list");
	e = (struct ext){ 43, empty, sizeof(empty) };
	expect_ext("empty supported_versions", &e, 1, TLS_HELLO_BAD,
		   "bad supported_versions list");
	e = (struct ext){ 43, trailing, sizeof(trailing) };
	expect_ext("byte after supported_versions", &e, 1, TLS_HELLO_BAD,
		   "bad supported_versions length");
}

static void test_extensions_block(void **state)
{
	static const uint8_t two[] = { 0, 2 };
	static const uint8_t alpn[] = { 0, 3, 2, 'h', '2' };
	static const uint8_t junk[] = { 0xde, 0xad };
	struct ext dup_unknown[] = { { 0x1234, NULL, 0 }, { 0x1234, two, 2 } };
	struct ext dup_alpn[] = { { 16, alpn, 5 }, { 21, NULL, 0 },
				  { 16, alpn, 5 } };
	struct ext distinct[] = { { 0x1234, NULL, 0 }, { 0x1235, NULL, 0 },
				  { 0xffff, NULL, 0 }, { 0x0a0a, NULL, 0 } };
	struct spec s = { 0 };
	struct tls_hello h;
	struct buf b;

	expect_ext("duplicate unknown extension", dup_unknown, 2,
		   TLS_HELLO_BAD, "duplicate extension");
	expect_ext("duplicate ALPN extension", dup_alpn, 3, TLS_HELLO_BAD,
		   "duplicate extension");
	expect_ext("distinct unknown extensions", distinct, 4, TLS_HELLO_OK,
		   NULL);

	/* No extensions block: TLS 1.2-era syntax, no SNI. */
	s.no_extensions = true;
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "no extensions block\n");
	assert_null(h.sni);
	assert_int_equal(h.max_version, 0x0303);
	check_prefixes("no extensions block", &b);
	buf_free(&b);

	s = (struct spec){ .trailer = junk, .trailer_len = sizeof(junk) };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_BAD,
		      "bytes after extensions\n");
	assert_string_equal(h.error, "trailing bytes after extensions");
	buf_free(&b);

	/* One byte where the extensions length should be. */
	s = (struct spec){ .no_extensions = true, .trailer = junk,
			   .trailer_len = 1 };
	build(&b, &s);
	expect_result(peek_buf(&h, &b), TLS_HELLO_BAD,
		      "one-byte extensions length\n");
	assert_string_equal(h.error, "truncated extensions");
	buf_free(&b);
}

/* A message hand-built up to compression_methods, to break the fixed
 * fields one at a time. */
static void expect_body(const char *what, const uint8_t *sid, size_t sid_len,
			const uint8_t *cs, size_t cs_len, const uint8_t *cm,
			size_t cm_len, const char *want_err)
{
	static const uint8_t random[32];
	struct tls_hello h;
	struct buf msg, b;
	CBB cbb, body, v;

	assert_true(CBB_init(&cbb, 128));
	assert_true(CBB_add_u8(&cbb, 1));
	assert_true(CBB_add_u24_length_prefixed(&cbb, &body));
	assert_true(CBB_add_u16(&body, 0x0303));
	assert_true(CBB_add_bytes(&body, random, sizeof(random)));
	assert_true(CBB_add_u8_length_prefixed(&body, &v));
	assert_true(CBB_add_bytes(&v, sid, sid_len));
	assert_true(CBB_add_u16_length_prefixed(&body, &v));
	assert_true(CBB_add_bytes(&v, cs, cs_len));
	assert_true(CBB_add_u8_length_prefixed(&body, &v));
	assert_true(CBB_add_bytes(&v, cm, cm_len));
	assert_true(CBB_finish(&cbb, &msg.data, &msg.len));
	frame_one(&b, &msg);
	expect_result(peek_buf(&h, &b), want_err ? TLS_HELLO_BAD : TLS_HELLO_OK,
		      "%s\n", what);
	if (want_err)
		assert_string_equal(h.error, want_err);
	buf_free(&b);
	buf_free(&msg);
}

static void test_fixed_fields(void **state)
{
	static const uint8_t sid[33];
	static const uint8_t cs[] = { 0x13, 0x01, 0xc0 };
	static const uint8_t cm[] = { 0 };

	expect_body("minimal TLS 1.2 hello", sid, 32, cs, 2, cm, 1, NULL);
	expect_body("33-byte session_id", sid, 33, cs, 2, cm, 1,
		    "bad session_id");
	expect_body("no cipher suites", sid, 0, cs, 0, cm, 1,
		    "bad cipher_suites");
	expect_body("odd cipher_suites", sid, 0, cs, 3, cm, 1,
		    "bad cipher_suites");
	expect_body("no compression methods", sid, 0, cs, 2, cm, 0,
		    "bad compression_methods");
}

/* ---- framing and the size limit ---------------------------------- */

/* build_padded makes a hello whose body is |body_len| bytes (a padding
 * extension sizes it), framed in records of |frag| bytes. */
static void build_padded(struct buf *out, size_t body_len, size_t frag)
{
	static uint8_t pad[65536];
	struct ext e = { 21, pad, 0 };
	struct spec s = { .exts = &e, .nexts = 1 };
	struct buf msg;
	size_t base;

	build_msg(&msg, &s);
	base = msg.len - 4;
	buf_free(&msg);
	assert_true(body_len >= base && body_len - base <= sizeof(pad));
	e.len = body_len - base;
	build_msg(&msg, &s);
	assert_int_equal(msg.len, 4 + body_len);
	frame(out, msg.data, msg.len, NULL, 0, frag);
	buf_free(&msg);
}

/* max_len counts the body, as BoringSSL's cap does: a hello filling one
 * 2^14-byte record (16,380 bytes of body) and one of 16,384 bytes of body
 * (two records) are taken at 16384; one byte more is TOO_LARGE as soon as
 * the length is read. The scratch needs the header too. */
static void test_body_limit(void **state)
{
	struct tls_hello h;
	struct buf b;
	uint8_t *small;

	build_padded(&b, 16380, 16384);
	assert_int_equal(b.len, 5 + 16384);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "one full record\n");
	assert_int_equal(h.records_len, b.len);
	expect_result(peek_max(&h, 16379, b.data, b.len), TLS_HELLO_TOO_LARGE,
		      "one full record, max_len one short\n");
	buf_free(&b);

	build_padded(&b, 16384, 16384);
	assert_int_equal(b.len, 2 * 5 + 4 + 16384);
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "16384-byte body\n");
	buf_free(&b);

	build_padded(&b, 16385, 16384);
	expect_result(peek(&h, b.data, 5 + 4), TLS_HELLO_TOO_LARGE,
		      "16385-byte body, headers only\n");
	assert_string_equal(h.error, "ClientHello longer than max_len");
	assert_int_equal(h.alert, 50); /* decode_error */

	/* A scratch too small for the message: refused, not overflowed (an
	 * exactly sized heap block, for the sanitizers). */
	small = malloc(4 + 16384);
	assert_non_null(small);
	assert_int_equal(tls_hello_peek(NULL, &h, small, 4 + 16384, 16385,
					b.data, b.len),
			 TLS_HELLO_BAD);
	assert_string_equal(h.error, "ClientHello larger than the scratch buffer");
	free(small);
	buf_free(&b);
}

/* The largest hello in 1-byte records takes TLS_HELLO_RECORDS_MAX bytes
 * exactly. Fed byte by byte through a kept state, without following the
 * hint, each call only looks at the bytes that are new: 98,328 calls cost
 * about as much as one parse (re-parsing from the first record on every
 * call would walk 8 * 10^8 record headers). */
static void test_finest_framing_linear(void **state)
{
	struct tls_hello_state st = { 0 };
	struct tls_hello h;
	struct buf b;
	size_t n;

	build_padded(&b, MAX_LEN, 1);
	assert_int_equal(b.len, TLS_HELLO_RECORDS_MAX(MAX_LEN));
	for (n = 0; n < b.len; n++) {
		expect_result(peek_st(&st, &h, MAX_LEN, b.data, n),
			      TLS_HELLO_NEED_MORE, "%zu of %zu bytes\n", n, b.len);
		assert_true(h.records_len > n);
	}
	expect_result(peek_st(&st, &h, MAX_LEN, b.data, b.len), TLS_HELLO_OK,
		      "1-byte records, body of max_len\n");
	assert_int_equal(h.records_len, b.len);
	/* The same answer on a call after it, and from a fresh parse. */
	expect_result(peek_st(&st, &h, MAX_LEN, b.data, b.len), TLS_HELLO_OK,
		      "1-byte records, called again\n");
	expect_result(peek_buf(&h, &b), TLS_HELLO_OK,
		      "1-byte records, fresh parse\n");
	buf_free(&b);
}

/* ---- record layer --------------------------------------------------- */

static void test_not_tls(void **state)
{
	static const char get[] = "GET / HTTP/1.1\r\n";
	/* SSLv2-compatible CLIENT-HELLO: 2-byte header with the top bit set,
	 * msg_type 1, version 3.1 (RFC 5246 E.2). */
	static const uint8_t sslv2[] = { 0x80, 0x2e, 0x01, 0x03, 0x01, 0x00,
					 0x15, 0x00, 0x00, 0x00, 0x10 };
	static const uint8_t alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02,
					 0x28 };
	static const uint8_t app[] = { 0x17, 0x03, 0x03, 0x00, 0x01, 0x00 };
	static const uint8_t ccs[] = { 0x14, 0x03, 0x03, 0x00, 0x01, 0x01 };
	static const uint8_t v2[] = { 0x16, 0x02, 0x00, 0x00, 0x04 };
	static const uint8_t v4[] = { 0x16, 0x04, 0x00 };
	struct tls_hello h;
	size_t n;

	/* Decided on the first byte, and unchanged by any more. */
	for (n = 1; n <= sizeof(get) - 1; n++)
		expect_result(peek(&h, (const uint8_t *)get, n),
			      TLS_HELLO_NOT_TLS, "HTTP, %zu bytes\n", n);
	for (n = 1; n <= sizeof(sslv2); n++)
		expect_result(peek(&h, sslv2, n), TLS_HELLO_NOT_TLS,
			      "SSLv2 hello, %zu bytes\n", n);
	expect_result(peek(&h, alert, sizeof(alert)), TLS_HELLO_NOT_TLS,
		      "alert record first\n");
	expect_result(peek(&h, app, 1), TLS_HELLO_NOT_TLS,
		      "application data record first\n");
	expect_result(peek(&h, ccs, sizeof(ccs)), TLS_HELLO_NOT_TLS,
		      "change_cipher_spec record first\n");
	expect_result(peek(&h, v2, 1), TLS_HELLO_NEED_MORE, "0x16 alone\n");
	expect_result(peek(&h, v2, 2), TLS_HELLO_NOT_TLS,
		      "record version 2.x\n");
	expect_result(peek(&h, v4, sizeof(v4)), TLS_HELLO_NOT_TLS,
		      "record version 4.x\n");
	expect_result(peek(&h, NULL, 0), TLS_HELLO_NEED_MORE, "no bytes\n");
}

/* A record that is not handshake, between two fragments of a hello. */
static void test_interleaved_record(void **state)
{
	static const uint8_t types[] = { 0x15, 0x17, 0x14 };
	struct tls_hello h;
	struct buf b, msg, framed, bad;
	size_t split = 100, i;

	load(&b, "openssl-alpn.bin");
	records_to_msg(&msg, b.data, b.len);
	frame(&framed, msg.data, msg.len, &split, 1, 0);
	bad.len = framed.len;
	bad.data = OPENSSL_malloc(bad.len);
	assert_non_null(bad.data);
	for (i = 0; i < sizeof(types); i++) {
		memcpy(bad.data, framed.data, framed.len);
		bad.data[5 + split] = types[i];
		expect_result(peek(&h, bad.data, 5 + split + 1), TLS_HELLO_BAD,
			      "record type %#x after the first fragment\n",
			      types[i]);
		assert_string_equal(h.error, "record is not a handshake record");
		assert_int_equal(h.alert, UNEXPECTED_MESSAGE);
		expect_result(peek_buf(&h, &bad), TLS_HELLO_BAD,
			      "record type %#x, whole input\n", types[i]);
		check_incremental("record not handshake after the first "
				  "fragment", MAX_LEN, bad.data, bad.len);
	}
	/* Second record with version 2.x. */
	memcpy(bad.data, framed.data, framed.len);
	bad.data[5 + split + 1] = 2;
	expect_result(peek_buf(&h, &bad), TLS_HELLO_BAD,
		      "second record version 2.x\n");
	assert_int_equal(h.alert, PROTOCOL_VERSION);
	check_incremental("second record version 2.x", MAX_LEN, bad.data,
			  bad.len);
	buf_free(&bad);
	buf_free(&framed);
	buf_free(&msg);
	buf_free(&b);
}

static void test_record_lengths(void **state)
{
	static const uint8_t zero[] = { 0x16, 0x03, 0x01, 0x00, 0x00 };
	static const uint8_t big[] = { 0x16, 0x03, 0x01, 0x40, 0x01 };
	static const uint8_t max[] = { 0x16, 0x03, 0x01, 0x40, 0x00 };
	static const uint8_t zero_second[] = { 0x16, 0x03, 0x01, 0x00, 0x01,
					       0x01, 0x16, 0x03, 0x01, 0x00,
					       0x00 };
	static const uint8_t server_hello[] = { 0x16, 0x03, 0x03, 0x00, 0x04,
						0x02, 0x00, 0x00, 0x00 };
	static const uint8_t hs_split[] = { 0x16, 0x03, 0x01, 0x00, 0x02,
					    0x01, 0x00 };
	struct tls_hello h;

	expect_result(peek(&h, zero, sizeof(zero)), TLS_HELLO_BAD,
		      "zero-length record\n");
	assert_string_equal(h.error, "zero-length handshake record");
	assert_int_equal(h.alert, UNEXPECTED_MESSAGE);
	expect_result(peek(&h, zero_second, sizeof(zero_second)),
		      TLS_HELLO_BAD, "zero-length second record\n");
	expect_result(peek(&h, big, sizeof(big)), TLS_HELLO_BAD,
		      "record of 2^14+1 bytes\n");
	assert_string_equal(h.error, "record longer than 2^14");
	assert_int_equal(h.alert, RECORD_OVERFLOW);
	expect_result(peek(&h, max, sizeof(max)), TLS_HELLO_NEED_MORE,
		      "record of 2^14 bytes, header only\n");
	expect_result(peek(&h, server_hello, sizeof(server_hello)),
		      TLS_HELLO_BAD, "ServerHello instead of ClientHello\n");
	assert_string_equal(h.error, "handshake message is not a ClientHello");
	assert_int_equal(h.alert, UNEXPECTED_MESSAGE);
	/* The message type is judged on its own byte. */
	expect_result(peek(&h, server_hello, 6), TLS_HELLO_BAD,
		      "ServerHello type byte alone\n");
	expect_result(peek(&h, hs_split, sizeof(hs_split)),
		      TLS_HELLO_NEED_MORE, "half a handshake header\n");
}

static void test_too_large(void **state)
{
	struct tls_hello h;
	struct buf b, msg, framed;
	size_t body_len;

	load(&b, "openssl-big-alpn.bin");
	records_to_msg(&msg, b.data, b.len);
	body_len = msg.len - 4; /* max_len counts the body */

	expect_result(peek_max(&h, body_len, b.data, b.len), TLS_HELLO_OK,
		      "max_len == body length\n");
	expect_result(peek_max(&h, body_len - 1, b.data, b.len),
		      TLS_HELLO_TOO_LARGE, "max_len one short\n");
	assert_string_equal(h.error, "ClientHello longer than max_len");

	/* Decided as soon as the record and handshake headers are in. */
	expect_result(peek_max(&h, body_len - 1, b.data, 5 + 4),
		      TLS_HELLO_TOO_LARGE, "headers only, max_len one short\n");
	expect_result(peek_max(&h, body_len - 1, b.data, 5 + 3),
		      TLS_HELLO_NEED_MORE, "length not yet readable\n");
	expect_result(peek_max(&h, 512, b.data, 5 + 4), TLS_HELLO_TOO_LARGE,
		      "headers only, max_len 512\n");
	expect_result(peek_max(&h, 0, b.data, 5 + 4), TLS_HELLO_TOO_LARGE,
		      "max_len 0\n");

	/* With the header in 1-byte records: after its 4th record. */
	frame(&framed, msg.data, msg.len, NULL, 0, 1);
	expect_result(peek_max(&h, 512, framed.data, 4 * 6),
		      TLS_HELLO_TOO_LARGE, "1-byte records, 4 records\n");
	expect_result(peek_max(&h, 512, framed.data, 4 * 6 - 1),
		      TLS_HELLO_NEED_MORE, "1-byte records, 3 records\n");
	check_incremental("1-byte records, max_len 512", 512, framed.data,
			  framed.len);
	expect_result(peek_max(&h, body_len, framed.data, framed.len),
		      TLS_HELLO_OK, "1-byte records, max_len == body\n");
	buf_free(&framed);
	buf_free(&msg);
	buf_free(&b);
}

/* The NEED_MORE hint (records_len) is what core/ waits for before parsing
 * again, so an answer must never change before it: no prefix shorter than
 * the hint may answer anything but NEED_MORE. Found by fuzz/clienthello: a
 * long record whose first fragment byte is not ClientHello's type used to
 * hint "the whole record", so a caller following the hint only rejected it
 * once the whole record was in. */
static void check_hint(const char *what, size_t max_len, const uint8_t *in,
		       size_t in_len)
{
	struct tls_hello h;
	size_t n, m;

	for (n = 0; n < in_len; n++) {
		if (peek_max(&h, max_len, in, n) != TLS_HELLO_NEED_MORE)
			break;
		if (h.records_len <= n)
			fail_msg("%s: %zu bytes: hint %zu is not ahead", what, n,
				 h.records_len);
		for (m = n + 1; m < h.records_len && m <= in_len; m++)
			expect_result(peek_max(&h, max_len, in, m),
				      TLS_HELLO_NEED_MORE,
				      "%s: %zu bytes, before the hint of %zu "
				      "bytes\n", what, m, n);
	}
}

static void test_need_more_hint(void **state)
{
	/* Type 2 (ServerHello) in a record announcing 64 bytes. */
	static const uint8_t wrong_type[] = { 0x16, 0x03, 0x03, 0x00, 0x40,
					      0x02, 0x00, 0x00, 0x3c };
	static const uint8_t too_large[] = { 0x16, 0x03, 0x01, 0x40, 0x00,
					     0x01, 0x00, 0x3f, 0xfc };
	struct tls_hello h;
	struct buf b, msg, framed;
	size_t i;

	expect_result(peek(&h, wrong_type, 5), TLS_HELLO_NEED_MORE,
		      "record header only\n");
	assert_int_equal(h.records_len, 6);
	expect_result(peek(&h, wrong_type, 6), TLS_HELLO_BAD,
		      "wrong type byte\n");
	check_hint("wrong type", MAX_LEN, wrong_type, sizeof(wrong_type));
	expect_result(peek_max(&h, 512, too_large, 8), TLS_HELLO_NEED_MORE,
		      "three header bytes\n");
	assert_int_equal(h.records_len, 9);
	check_hint("too large", 512, too_large, sizeof(too_large));

	for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		load(&b, fixtures[i].file);
		check_hint(fixtures[i].file, MAX_LEN, b.data, b.len);
		check_hint(fixtures[i].file, 512, b.data, b.len);
		records_to_msg(&msg, b.data, b.len);
		frame(&framed, msg.data, msg.len, NULL, 0, 3);
		check_hint(fixtures[i].file, MAX_LEN, framed.data, framed.len);
		buf_free(&framed);
		buf_free(&msg);
		buf_free(&b);
	}
}

static void test_result_str(void **state)
{
	assert_string_equal(tls_hello_result_str(TLS_HELLO_OK), "ok");
	assert_string_equal(tls_hello_result_str(TLS_HELLO_NEED_MORE),
			    "need_more");
	assert_string_equal(tls_hello_result_str(TLS_HELLO_NOT_TLS), "not_tls");
	assert_string_equal(tls_hello_result_str(TLS_HELLO_TOO_LARGE),
			    "too_large");
	assert_string_equal(tls_hello_result_str(TLS_HELLO_BAD), "bad");
}

/* ---- alerts (RFC 8446 6.2) ----------------------------------------
 *
 * Each rule the parser refuses a hello by names its alert: decode_error
 * for bytes that do not fit the grammar (a length, or a vector size out of
 * its range), illegal_parameter for well-formed bytes the RFCs' prose
 * forbids or we refuse, protocol_version for no version to agree on. */

static void expect_alert(const char *what, const struct buf *b,
			 const char *want_err, uint8_t want_alert)
{
	struct tls_hello h;

	expect_result(peek_buf(&h, b), TLS_HELLO_BAD, "%s\n", what);
	if (!h.error || strcmp(h.error, want_err) != 0 ||
	    h.alert != want_alert)
		fail_msg("%s: error \"%s\" alert %u, want \"%s\" alert %u",
			 what, h.error ? h.error : "(null)", h.alert, want_err,
			 want_alert);
}

static void expect_alert_ext(const char *what, uint16_t type,
			     const uint8_t *data, size_t len,
			     const char *want_err, uint8_t want_alert)
{
	struct ext e = { type, data, len };
	struct spec s = { .exts = &e, .nexts = 1 };
	struct buf b;

	build(&b, &s);
	expect_alert(what, &b, want_err, want_alert);
	buf_free(&b);
}

static void expect_alert_sni(const char *what, const struct sni_entry *e,
			     size_t n, const char *want_err,
			     uint8_t want_alert)
{
	struct buf sni;

	sni_ext(&sni, e, n, NULL, 0);
	expect_alert_ext(what, 0, sni.data, sni.len, want_err, want_alert);
	buf_free(&sni);
}

static void test_alerts_sni(void **state)
{
	static const uint8_t nul_name[] = "a.vm.test\0.evil.test";
	static const uint8_t list_and_byte[] = { 0, 4, 0, 0, 1, 'a', 0 };
	uint8_t long_name[256];
	struct sni_entry two[2] = {
		{ 0, (const uint8_t *)"a.vm.test", 9 },
		{ 0, (const uint8_t *)"b.vm.test", 9 },
	};
	struct sni_entry other = { 1, (const uint8_t *)"xyz", 3 };
	struct sni_entry nul = { 0, nul_name, sizeof(nul_name) - 1 };
	struct sni_entry empty = { 0, (const uint8_t *)"", 0 };
	struct sni_entry longe = { 0, long_name, sizeof(long_name) };

	memset(long_name, 'a', sizeof(long_name));
	expect_alert_ext("SNI with no body", 0, NULL, 0,
			 "bad SNI extension length", DECODE_ERROR);
	expect_alert_ext("byte after server_name_list", 0, list_and_byte,
			 sizeof(list_and_byte), "bad SNI extension length",
			 DECODE_ERROR);
	expect_alert_sni("empty server_name_list", NULL, 0, "empty SNI list",
			 DECODE_ERROR);
	/* HostName<1..2^16-1>: an empty one is out of its range. */
	expect_alert_sni("empty host_name", &empty, 1, "empty SNI",
			 DECODE_ERROR);
	/* Well-formed, but forbidden (RFC 6066 3) or refused by us. */
	expect_alert_sni("two host_name entries", two, 2,
			 "two host_name entries", ILLEGAL_PARAMETER);
	expect_alert_sni("unknown name_type", &other, 1,
			 "unknown SNI name_type", ILLEGAL_PARAMETER);
	expect_alert_sni("NUL in SNI", &nul, 1, "SNI contains NUL",
			 ILLEGAL_PARAMETER);
	expect_alert_sni("SNI of 256 bytes", &longe, 1,
			 "SNI longer than 255 bytes", ILLEGAL_PARAMETER);
}

static void test_alerts_extensions(void **state)
{
#define BYTES(...) (const uint8_t[]){ __VA_ARGS__ }, \
		   sizeof((const uint8_t[]){ __VA_ARGS__ })
	const struct {
		const char *what;
		uint16_t type;
		const uint8_t *data;
		size_t len;
		const char *err;
		uint8_t alert;
	} cases[] = {
		{ "ALPN with a byte after its list", 16,
		  BYTES(0, 3, 2, 'h', '2', 0), "bad ALPN extension length",
		  DECODE_ERROR },
		{ "empty ALPN list", 16, BYTES(0, 0), "empty ALPN list",
		  DECODE_ERROR },
		{ "empty ALPN name", 16, BYTES(0, 4, 2, 'h', '2', 0),
		  "empty ALPN protocol name", DECODE_ERROR },
		{ "short signature_algorithms", 13, BYTES(0, 4, 4, 3),
		  "bad signature_algorithms length", DECODE_ERROR },
		{ "empty signature_algorithms", 13, BYTES(0, 0),
		  "bad signature_algorithms list", DECODE_ERROR },
		{ "odd signature_algorithms", 13, BYTES(0, 3, 4, 3, 5),
		  "bad signature_algorithms list", DECODE_ERROR },
		{ "short supported_versions", 43, BYTES(4, 3, 4),
		  "bad supported_versions length", DECODE_ERROR },
		{ "empty supported_versions", 43, BYTES(0),
		  "bad supported_versions list", DECODE_ERROR },
		{ "odd supported_versions", 43, BYTES(3, 3, 4, 3),
		  "bad supported_versions list", DECODE_ERROR },
		/* Well-formed, with no version in it to agree on. */
		{ "only GREASE versions", 43, BYTES(4, 0x0a, 0x0a, 0x2a, 0x2a),
		  "supported_versions has only GREASE", PROTOCOL_VERSION },
		/* BoringSSL reads an outer ECH extension before any callback
		 * (found by fuzz/clienthello's differential check). */
		{ "outer ECH without config_id", 0xfe0d,
		  BYTES(0, 0, 3, 4, 3, 8), "bad encrypted_client_hello",
		  DECODE_ERROR },
		{ "outer ECH with a byte after payload", 0xfe0d,
		  BYTES(0, 0, 1, 0, 1, 7, 0, 0, 0, 1, 9, 0),
		  "bad encrypted_client_hello", DECODE_ERROR },
	};
#undef BYTES
	static const uint8_t trailer[] = { 0 };
	struct ext dup[2] = { { 21, NULL, 0 }, { 21, NULL, 0 } };
	struct spec s = { .exts = dup, .nexts = 2 };
	struct buf b;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_alert_ext(cases[i].what, cases[i].type, cases[i].data,
				 cases[i].len, cases[i].err, cases[i].alert);
	expect_alert_ext("empty ECH", 0xfe0d, NULL, 0,
			 "empty encrypted_client_hello", DECODE_ERROR);
	{
		/* What BoringSSL lets through: an inner one (not read
		 * further) and a whole outer one (empty enc and payload). */
		static const uint8_t inner[] = { 1, 0xff };
		static const uint8_t outer[] = { 0, 0, 1, 0, 1, 7, 0, 0, 0, 0 };
		struct ext e = { 0xfe0d, inner, sizeof(inner) };
		struct spec sp = { .exts = &e, .nexts = 1 };
		struct tls_hello h;

		build(&b, &sp);
		expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "inner ECH\n");
		buf_free(&b);
		e.data = outer;
		e.len = sizeof(outer);
		build(&b, &sp);
		expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "outer ECH\n");
		buf_free(&b);
	}
	/* What BoringSSL sends for a duplicate (ssl_client_hello_init). */
	build(&b, &s);
	expect_alert("duplicate extension", &b, "duplicate extension",
		     DECODE_ERROR);
	buf_free(&b);
	s = (struct spec){ .trailer = trailer, .trailer_len = 1 };
	build(&b, &s);
	expect_alert("byte after the extensions", &b,
		     "trailing bytes after extensions", DECODE_ERROR);
	buf_free(&b);
}

/* The fixed fields, the message built as expect_body does. */
static void body_alert(const char *what, size_t sid_len, size_t cs_len,
		       const uint8_t *cm, size_t cm_len, const char *want_err,
		       uint8_t want_alert)
{
	static const uint8_t zeros[64], cs[] = { 0x13, 0x01, 0xc0 };
	struct buf msg, b;
	CBB cbb, body, v;

	assert_true(CBB_init(&cbb, 128));
	assert_true(CBB_add_u8(&cbb, 1));
	assert_true(CBB_add_u24_length_prefixed(&cbb, &body));
	assert_true(CBB_add_u16(&body, 0x0303));
	assert_true(CBB_add_bytes(&body, zeros, 32));
	assert_true(CBB_add_u8_length_prefixed(&body, &v));
	assert_true(CBB_add_bytes(&v, zeros, sid_len));
	assert_true(CBB_add_u16_length_prefixed(&body, &v));
	assert_true(CBB_add_bytes(&v, cs, cs_len));
	assert_true(CBB_add_u8_length_prefixed(&body, &v));
	assert_true(CBB_add_bytes(&v, cm, cm_len));
	assert_true(CBB_finish(&cbb, &msg.data, &msg.len));
	frame_one(&b, &msg);
	if (want_err) {
		expect_alert(what, &b, want_err, want_alert);
	} else {
		struct tls_hello h;

		expect_result(peek_buf(&h, &b), TLS_HELLO_OK, "%s\n", what);
	}
	buf_free(&b);
	buf_free(&msg);
}

static void test_alerts_fixed_fields(void **state)
{
	static const uint8_t null_only[] = { 0 };
	static const uint8_t deflate_null[] = { 1, 0 };
	static const uint8_t deflate[] = { 1 };

	body_alert("33-byte session_id", 33, 2, null_only, 1,
		   "bad session_id", DECODE_ERROR);
	body_alert("no cipher suites", 0, 0, null_only, 1,
		   "bad cipher_suites", DECODE_ERROR);
	body_alert("odd cipher_suites", 0, 3, null_only, 1,
		   "bad cipher_suites", DECODE_ERROR);
	body_alert("no compression methods", 0, 2, null_only, 0,
		   "bad compression_methods", DECODE_ERROR);
	/* RFC 5246 7.4.1.2, RFC 8446 4.1.2: null must be offered. */
	body_alert("compression without null", 0, 2, deflate, 1,
		   "compression_methods without null", ILLEGAL_PARAMETER);
	body_alert("compression with null and another", 0, 2, deflate_null,
		   2, NULL, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_parse),
		cmocka_unit_test(test_fixtures_prefixes),
		cmocka_unit_test(test_fixtures_two_records),
		cmocka_unit_test(test_fixtures_reframed),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_finest_framing_linear),
		cmocka_unit_test(test_fixtures_bad_lengths),
		cmocka_unit_test(test_fixture_outer_lengths),
		cmocka_unit_test(test_sni_valid_and_absent),
		cmocka_unit_test(test_sni_malformed),
		cmocka_unit_test(test_alpn),
		cmocka_unit_test(test_suites_and_groups),
		cmocka_unit_test(test_supported_versions),
		cmocka_unit_test(test_extensions_block),
		cmocka_unit_test(test_fixed_fields),
		cmocka_unit_test(test_not_tls),
		cmocka_unit_test(test_interleaved_record),
		cmocka_unit_test(test_record_lengths),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_need_more_hint),
		cmocka_unit_test(test_result_str),
		/* alerts (RFC 8446 6.2) */
		cmocka_unit_test(test_alerts_sni),
		cmocka_unit_test(test_alerts_extensions),
		cmocka_unit_test(test_alerts_fixed_fields),
	};

	return cmocka_run_group_tests_name("tls_hello", tests, NULL, NULL);
}
