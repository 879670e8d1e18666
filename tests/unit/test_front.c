/* tests/unit/test_front.c: core/front.c, the front path's decision.
 *
 * front_decide is run against a route table and a certificate store
 * loaded from an in-memory appliance.yaml (a P-256 certificate for
 * *.vm.vers.sh and an RSA one for host.vm.test, made at start-up with
 * fuzz/testcert.c) and ClientHellos written by a BoringSSL client in this
 * process. Cases: every reject reason with its alert, detail and record
 * version; the HTTP 400 for plain HTTP; NEED_MORE for every prefix of a
 * good hello; the hello split at every byte and fed through a kept state,
 * as one record and re-framed into 1-byte and 50-byte records, ending in
 * TERMINATE with the VM, port and certificate; a hello of exactly
 * max_len in 1-byte records (the most input the bound allows) and one
 * byte over max_len; the input bound itself.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/front.h"
#include "ctl/config.h"
#include "route/route.h"
#include "tls/alert.h"
#include "tls/ctx.h"
#include "tls/hello.h"

/* The test certificates' maker is the fuzz targets'; it is not part of
 * the library the unit tests link. */
#include "fuzz/testcert.c"

#define MAX_LEN 16384

static const char http_400[] =
	"HTTP/1.1 400 Bad Request\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Length: 67\r\n"
	"Connection: close\r\n"
	"\r\n"
	"This port speaks TLS: use https:// instead of http:// to reach it.\n";

static struct config cfg;
static struct route_table *routes;
static struct tls_ctx *store;
static SSL_CTX *ec_ctx, *rsa_ctx; /* the store's, by the names they cover */
static uint8_t scratch[TLS_HELLO_SCRATCH_LEN(MAX_LEN)];

struct buf {
	uint8_t *p;
	size_t len;
};

/* ---- set-up ------------------------------------------------------------ */

static int setup(void **state)
{
	static const char *const ec_sans[] = { "*.vm.vers.sh" };
	static const char *const rsa_sans[] = { "host.vm.test" };
	static const char yaml[] =
		"listen: { ports: [443, 8080, 9000] }\n"
		"tls:\n"
		"  certificates:\n"
		"    - { cert: ec.pem, key: ec.key }\n"
		"    - { cert: rsa.pem, key: rsa.key }\n"
		"domains:\n"
		"  - suffix: vm.vers.sh\n"
		"    port_map: { 443: 22 }\n"
		"    allowed_ports: [443, 8080]\n"
		"  - { suffix: vm.test }\n"
		"  - suffix: pass.test\n"
		"    tls: passthrough\n"
		"    port_map: { 443: 8443 }\n"
		"    allowed_ports: [443, 8080]\n"
		"    proxy_protocol: v2\n"
		"vms:\n"
		"  - { id: vm1, address: \"fd00::1\" }\n"
		"  - { id: host, address: \"fd00::2\" }\n";
	struct config_errors errs;
	const char *dir;
	char err[256], tag[32];

	snprintf(tag, sizeof(tag), "unit-front-%d", (int)getpid());
	dir = testcert_tmpdir(tag);
	assert_non_null(dir);
	assert_true(testcert_make_files(dir, "ec", false, "vm.vers.sh",
					ec_sans, 1));
	assert_true(testcert_make_files(dir, "rsa", true, "host.vm.test",
					rsa_sans, 1));
	if (!config_load_buf(&cfg, &errs, "front.yaml", dir,
			     (const uint8_t *)yaml, sizeof(yaml) - 1)) {
		config_errors_print(stderr, &errs);
		fail_msg("test config does not load");
	}
	config_errors_free(&errs);
	routes = route_table_new(&cfg);
	store = tls_ctx_new(&cfg, err, sizeof(err));
	if (!routes || !store)
		fail_msg("route table or store: %s", err);
	testcert_tmpdir_remove();
	ec_ctx = tls_ctx_get0_for_name(store, "vm1.vm.vers.sh");
	rsa_ctx = tls_ctx_get0_for_name(store, "host.vm.test");
	assert_true(ec_ctx != rsa_ctx);
	return 0;
}

static int teardown(void **state)
{
	route_table_free(routes);
	tls_ctx_free(store);
	config_free(&cfg);
	return 0;
}

/* ---- ClientHellos ------------------------------------------------------ */

enum hello_opt {
	HELLO_TLS12 = 1,      /* a TLS 1.2-only client */
	HELLO_ED25519 = 2,    /* offers only ed25519 to sign with */
};

/* What a BoringSSL client sends first for server name |name| (NULL: no
 * SNI): its ClientHello records. */
static void make_hello(struct buf *out, const char *name, unsigned opts)
{
	static const uint16_t ed25519[] = { SSL_SIGN_ED25519 };
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
	const uint8_t *data;
	size_t len;
	SSL *ssl;

	assert_true(ctx && rbio && wbio);
	if (opts & HELLO_TLS12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	if (opts & HELLO_ED25519)
		assert_true(SSL_CTX_set_verify_algorithm_prefs(ctx, ed25519,
							       1));
	ssl = SSL_new(ctx);
	assert_non_null(ssl);
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_connect_state(ssl);
	if (name)
		assert_true(SSL_set_tlsext_host_name(ssl, name));
	assert_int_equal(SSL_get_error(ssl, SSL_do_handshake(ssl)),
			 SSL_ERROR_WANT_READ);
	assert_true(BIO_mem_contents(wbio, &data, &len));
	out->p = malloc(len);
	assert_non_null(out->p);
	memcpy(out->p, data, len);
	out->len = len;
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	ERR_clear_error();
}

/* The handshake message carried by |in|, re-framed into records of
 * |frag| bytes each (the last one shorter), with the first record's
 * version. */
static void reframe(struct buf *out, const struct buf *in, size_t frag)
{
	const uint8_t *msg = in->p + 5;
	size_t msg_len = in->len - 5, n, o = 0;

	/* BoringSSL writes its hello in one record. */
	assert_int_equal((size_t)in->p[3] << 8 | in->p[4], msg_len);
	out->p = malloc(msg_len + 5 * ((msg_len + frag - 1) / frag));
	assert_non_null(out->p);
	for (size_t off = 0; off < msg_len; off += n) {
		n = msg_len - off < frag ? msg_len - off : frag;
		out->p[o++] = 22;
		out->p[o++] = in->p[1];
		out->p[o++] = in->p[2];
		out->p[o++] = (uint8_t)(n >> 8);
		out->p[o++] = (uint8_t)n;
		memcpy(out->p + o, msg + off, n);
		o += n;
	}
	out->len = o;
}

/* The ClientHello body's length: the handshake header's uint24. */
static size_t body_len(const struct buf *b)
{
	return (size_t)b->p[6] << 16 | (size_t)b->p[7] << 8 | b->p[8];
}

/* ---- running it -------------------------------------------------------- */

static enum front_verdict decide_max(struct front_decision *d,
				     struct tls_hello_state *st,
				     size_t max_len, const uint8_t *in,
				     size_t in_len, uint16_t port)
{
	struct tls_hello_state fresh = { 0 };

	return front_decide(d, st ? st : &fresh, scratch,
			    TLS_HELLO_SCRATCH_LEN(max_len), max_len, in,
			    in_len, port, routes, store);
}

static enum front_verdict decide(struct front_decision *d,
				 const uint8_t *in, size_t in_len,
				 uint16_t port)
{
	return decide_max(d, NULL, MAX_LEN, in, in_len, port);
}

static const char *verdict_str(enum front_verdict v)
{
	switch (v) {
	case FRONT_NEED_MORE:
		return "need_more";
	case FRONT_REJECT:
		return "reject";
	case FRONT_TERMINATE:
		return "terminate";
	case FRONT_PASS:
		return "pass";
	}
	return "?";
}

#define expect_verdict(got, want, ...)                                     \
	do {                                                               \
		enum front_verdict g_ = (got);                             \
		if (g_ != (want)) {                                        \
			print_error(__VA_ARGS__);                          \
			fail_msg(": got %s, want %s", verdict_str(g_),     \
				 verdict_str(want));                       \
		}                                                          \
	} while (0)

/* A rejection, all of it: reason, alert, detail (NULL: none), what is
 * sent outside TLS, and the record version an alert goes out with. */
static void expect_reject(const char *what, const struct front_decision *d,
			  enum front_verdict v, const char *reason,
			  uint8_t alert, const char *detail,
			  uint16_t hello_version)
{
	expect_verdict(v, FRONT_REJECT, "%s", what);
	if (!reason_name(d->reason) || strcmp(reason_name(d->reason), reason))
		fail_msg("%s: reason %s, want %s", what,
			 reason_name(d->reason), reason);
	if (d->alert != alert)
		fail_msg("%s: alert %u, want %u", what, d->alert, alert);
	if (detail && (!d->detail || strcmp(d->detail, detail) != 0))
		fail_msg("%s: detail \"%s\", want \"%s\"", what,
			 d->detail ? d->detail : "(null)", detail);
	if (!detail && d->detail)
		fail_msg("%s: detail \"%s\", want none", what, d->detail);
	if (d->hello_version != hello_version)
		fail_msg("%s: hello_version %04x, want %04x", what,
			 d->hello_version, hello_version);
	if (strcmp(reason, "not_tls") != 0 && (d->send || d->send_len))
		fail_msg("%s: raw bytes to send with an alert", what);
}

static void expect_vm(const char *what, const struct front_decision *d,
		      const char *name, const char *addr, uint16_t vm_port,
		      SSL_CTX *ctx)
{
	struct in6_addr want;

	assert_int_equal(inet_pton(AF_INET6, addr, &want), 1);
	if (strcmp(d->name, name) != 0 || d->name_len != strlen(name))
		fail_msg("%s: name %s, want %s", what, d->name, name);
	if (!d->vm_addr || memcmp(d->vm_addr, &want, sizeof(want)) != 0)
		fail_msg("%s: VM address is not %s", what, addr);
	if (d->vm_port != vm_port)
		fail_msg("%s: vm_port %u, want %u", what, d->vm_port,
			 vm_port);
	if (d->ctx != ctx)
		fail_msg("%s: not the certificate that covers %s", what,
			 name);
	if (!d->reason && d->alert == 0 && d->hello_version == 0x0303)
		return;
	fail_msg("%s: terminate with reject fields set", what);
}

/* ---- rejections -------------------------------------------------------- */

static void test_not_tls(void **state)
{
	static const char ssh[] = "SSH-2.0-OpenSSH_9.6\r\n";
	static const char get[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	static const char lower[] = "get / HTTP/1.1\r\n\r\n";
	struct front_decision d;
	enum front_verdict v;

	v = decide(&d, (const uint8_t *)ssh, sizeof(ssh) - 1, 443);
	expect_reject("ssh banner", &d, v, "not_tls", 0,
		      "first bytes are not a TLS handshake", 0);
	assert_null(d.send);
	assert_int_equal(d.send_len, 0);

	/* Plain HTTP gets a 400 in plain text, and no alert. */
	v = decide(&d, (const uint8_t *)get, sizeof(get) - 1, 443);
	expect_reject("GET", &d, v, "not_tls", 0, "plain HTTP request", 0);
	assert_int_equal(d.send_len, sizeof(http_400) - 1);
	assert_memory_equal(d.send, http_400, sizeof(http_400) - 1);

	/* "G", "GE", "GET": not yet decided either way (the next byte may
	 * be the space), whatever segments the request came in; nine
	 * capitals are no method BoringSSL's peers send. A lowercase method
	 * is not a request line. */
	for (size_t n = 1; n <= 3; n++) {
		v = decide(&d, (const uint8_t *)get, n, 443);
		assert_int_equal(v, FRONT_NEED_MORE);
		assert_int_equal(d.need, n + 1);
	}
	v = decide(&d, (const uint8_t *)"GETTINGXX", 9, 443);
	expect_reject("nine capitals", &d, v, "not_tls", 0,
		      "first bytes are not a TLS handshake", 0);
	assert_int_equal(d.send_len, 0);
	v = decide(&d, (const uint8_t *)lower, sizeof(lower) - 1, 443);
	expect_reject("lowercase get", &d, v, "not_tls", 0,
		      "first bytes are not a TLS handshake", 0);
	assert_int_equal(d.send_len, 0);
}

static void test_bad_hello(void **state)
{
	struct front_decision d;
	enum front_verdict v;
	struct buf b;

	make_hello(&b, "vm1.vm.vers.sh", 0);
	/* A handshake message that is not a ClientHello. */
	b.p[5] = 2;
	v = decide(&d, b.p, b.len, 443);
	expect_reject("ServerHello type", &d, v, "bad_hello",
		      TLS_ALERT_UNEXPECTED_MESSAGE,
		      "handshake message is not a ClientHello", 0);
	b.p[5] = 1;
	/* legacy_session_id longer than the message (record header 5,
	 * handshake header 4, version 2, random 32): whatever the parser
	 * names it, it is a bad hello with the parser's alert. */
	b.p[43] = 0xff;
	v = decide(&d, b.p, b.len, 443);
	expect_verdict(v, FRONT_REJECT, "session id length 255");
	assert_int_equal(d.reason, REASON_BAD_HELLO);
	assert_non_null(d.detail);
	assert_int_not_equal(d.alert, 0);
	assert_int_equal(d.hello_version, 0);
	assert_null(d.sni);
	free(b.p);
}

static void test_too_large(void **state)
{
	struct tls_hello_state st = { 0 };
	struct front_decision d;
	enum front_verdict v;
	struct buf b, one;
	size_t max, small = 10, n;

	make_hello(&b, "vm1.vm.vers.sh", 0);
	max = body_len(&b);

	/* One byte over max_len: the parser's too_large. */
	v = decide_max(&d, NULL, max - 1, b.p, b.len, 443);
	expect_reject("body over max_len", &d, v, "too_large",
		      TLS_ALERT_DECODE_ERROR,
		      "ClientHello longer than max_len", 0);

	/* The input bound. The parser never waits on more than
	 * TLS_HELLO_RECORDS_MAX(max_len) bytes, so the bound is reached
	 * here by breaking its contract on purpose: the records are walked
	 * under a larger max_len, then the hello continues under a max_len
	 * whose bound it has passed. front_decide must refuse rather than
	 * wait. */
	reframe(&one, &b, 1);
	n = TLS_HELLO_RECORDS_MAX(small) + 6;
	assert_true(n < one.len);
	v = decide_max(&d, &st, max, one.p, n - 6, 443);
	expect_verdict(v, FRONT_NEED_MORE, "1-byte records, %zu bytes", n - 6);
	v = decide_max(&d, &st, small, one.p, n, 443);
	expect_reject("past the input bound", &d, v, "too_large",
		      TLS_ALERT_DECODE_ERROR, "ClientHello records too large",
		      0);
	free(one.p);
	free(b.p);
}

static void test_no_sni(void **state)
{
	struct front_decision d;
	enum front_verdict v;
	struct buf b;

	make_hello(&b, NULL, 0);
	v = decide(&d, b.p, b.len, 443);
	expect_reject("no SNI", &d, v, "no_sni", TLS_ALERT_MISSING_EXTENSION,
		      NULL, 0);
	assert_null(d.sni);
	free(b.p);
}

static void test_route_verdicts(void **state)
{
	static const struct {
		const char *name;
		uint16_t port;
		const char *reason;
	} cases[] = {
		{ "bad_host.vm.vers.sh", 443, "bad_host" },
		{ "-vm1.vm.vers.sh", 443, "bad_host" },
		{ "vm1.vm.vers.sh.", 443, "bad_host" },
		{ "vm1.unknown.example", 443, "unknown_domain" },
		{ "a.vm1.vm.vers.sh", 443, "unknown_domain" },
		{ "vm.vers.sh", 443, "unknown_domain" },
		{ "nope.vm.vers.sh", 443, "unknown_vm" },
		{ "vm1.vm.vers.sh", 9000, "port_denied" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct front_decision d;
		enum front_verdict v;
		char what[128];
		struct buf b;

		snprintf(what, sizeof(what), "%s port %u", cases[i].name,
			 cases[i].port);
		make_hello(&b, cases[i].name, 0);
		v = decide(&d, b.p, b.len, cases[i].port);
		expect_reject(what, &d, v, cases[i].reason,
			      TLS_ALERT_UNRECOGNIZED_NAME, NULL, 0x0303);
		/* The log shows the SNI as sent. */
		if (d.sni_len != strlen(cases[i].name) ||
		    memcmp(d.sni, cases[i].name, d.sni_len) != 0)
			fail_msg("%s: sni view is not the name sent", what);
		free(b.p);
	}
}

static void test_no_common_sigalg(void **state)
{
	struct front_decision d;
	enum front_verdict v;
	struct buf b;

	/* Neither the P-256 nor the RSA key signs with ed25519. */
	make_hello(&b, "vm1.vm.vers.sh", HELLO_ED25519);
	v = decide(&d, b.p, b.len, 443);
	expect_reject("ed25519 only", &d, v, "no_common_sigalg",
		      TLS_ALERT_HANDSHAKE_FAILURE,
		      "no certificate can sign in a scheme offered", 0x0303);
	assert_null(d.ctx);
	free(b.p);
}

/* ---- terminate --------------------------------------------------------- */

static void test_terminate(void **state)
{
	struct front_decision d;
	enum front_verdict v;
	struct buf b;

	make_hello(&b, "vm1.vm.vers.sh", 0);
	v = decide(&d, b.p, b.len, 443);
	expect_verdict(v, FRONT_TERMINATE, "vm1 on 443");
	expect_vm("vm1 on 443", &d, "vm1.vm.vers.sh", "fd00::1", 22, ec_ctx);
	/* No port_map entry: the listener's port. */
	v = decide(&d, b.p, b.len, 8080);
	expect_verdict(v, FRONT_TERMINATE, "vm1 on 8080");
	expect_vm("vm1 on 8080", &d, "vm1.vm.vers.sh", "fd00::1", 8080,
		  ec_ctx);
	free(b.p);

	make_hello(&b, "VM1.VM.Vers.SH", HELLO_TLS12);
	v = decide(&d, b.p, b.len, 443);
	expect_verdict(v, FRONT_TERMINATE, "mixed case, TLS 1.2");
	expect_vm("mixed case, TLS 1.2", &d, "vm1.vm.vers.sh", "fd00::1", 22,
		  ec_ctx);
	free(b.p);

	make_hello(&b, "host.vm.test", 0);
	v = decide(&d, b.p, b.len, 9000);
	expect_verdict(v, FRONT_TERMINATE, "host.vm.test");
	expect_vm("host.vm.test", &d, "host.vm.test", "fd00::2", 9000,
		  rsa_ctx);
	free(b.p);
}

/* ---- passthrough ------------------------------------------------------- */

/* tls: passthrough: routed like any name, refused like any name, but no
 * certificate is looked for (none covers pass.test): the VM's TLS takes
 * the hello. */
static void test_pass(void **state)
{
	struct front_decision d;
	enum front_verdict v;
	struct buf b;

	make_hello(&b, "vm1.pass.test", 0);
	v = decide(&d, b.p, b.len, 443);
	expect_verdict(v, FRONT_PASS, "vm1.pass.test on 443");
	expect_vm("vm1.pass.test on 443", &d, "vm1.pass.test", "fd00::1",
		  8443, NULL);
	assert_int_equal(d.proxy_protocol, CFG_PROXY_V2);
	assert_false(d.vm_errors_http);
	v = decide(&d, b.p, b.len, 9000);
	expect_reject("pass.test on 9000", &d, v, "port_denied",
		      TLS_ALERT_UNRECOGNIZED_NAME, NULL, 0x0303);
	free(b.p);

	/* No scheme our keys sign with: the VM's keys may. */
	make_hello(&b, "vm1.pass.test", HELLO_ED25519);
	v = decide(&d, b.p, b.len, 8080);
	expect_verdict(v, FRONT_PASS, "ed25519 only, passthrough");
	free(b.p);

	make_hello(&b, "nope.pass.test", 0);
	v = decide(&d, b.p, b.len, 443);
	expect_reject("nope.pass.test", &d, v, "unknown_vm",
		      TLS_ALERT_UNRECOGNIZED_NAME, NULL, 0x0303);
	free(b.p);
}

/* ---- prefixes and splits ----------------------------------------------- */

/* Every proper prefix, parsed fresh, waits, with a hint past itself. */
static void check_prefixes(const char *what, const struct buf *b,
			   size_t max_len)
{
	for (size_t n = 0; n < b->len; n++) {
		struct front_decision d;

		expect_verdict(decide_max(&d, NULL, max_len, b->p, n, 443),
			       FRONT_NEED_MORE, "%s: prefix of %zu bytes", what,
			       n);
		if (d.need <= n || d.need > b->len)
			fail_msg("%s: prefix %zu: hint %zu", what, n, d.need);
	}
}

/* The whole input, fed through one kept state: first |k| bytes, then
 * the rest; and byte by byte. */
static void check_splits(const char *what, const struct buf *b,
			 size_t max_len)
{
	struct tls_hello_state st;
	struct front_decision d;
	enum front_verdict v;

	for (size_t k = 1; k < b->len; k++) {
		memset(&st, 0, sizeof(st));
		expect_verdict(decide_max(&d, &st, max_len, b->p, k, 443),
			       FRONT_NEED_MORE, "%s: split at %zu, first part",
			       what, k);
		v = decide_max(&d, &st, max_len, b->p, b->len, 443);
		expect_verdict(v, FRONT_TERMINATE, "%s: split at %zu", what,
			       k);
		expect_vm(what, &d, "vm1.vm.vers.sh", "fd00::1", 22, ec_ctx);
	}
	memset(&st, 0, sizeof(st));
	for (size_t n = 1; n < b->len; n++)
		expect_verdict(decide_max(&d, &st, max_len, b->p, n, 443),
			       FRONT_NEED_MORE, "%s: byte by byte, %zu", what,
			       n);
	v = decide_max(&d, &st, max_len, b->p, b->len, 443);
	expect_verdict(v, FRONT_TERMINATE, "%s: byte by byte, whole", what);
	expect_vm(what, &d, "vm1.vm.vers.sh", "fd00::1", 22, ec_ctx);
}

static void test_prefixes_and_splits(void **state)
{
	static const size_t frags[] = { 0, 1, 50 }; /* 0: as sent */
	struct buf b, r;

	make_hello(&b, "vm1.vm.vers.sh", 0);
	for (size_t i = 0; i < sizeof(frags) / sizeof(frags[0]); i++) {
		char what[64];

		if (frags[i])
			reframe(&r, &b, frags[i]);
		else
			r = b;
		snprintf(what, sizeof(what), "records of %zu", frags[i]);
		check_prefixes(what, &r, MAX_LEN);
		check_splits(what, &r, MAX_LEN);
		if (frags[i])
			free(r.p);
	}
	free(b.p);
}

/* A hello of exactly max_len in 1-byte records is the most input the
 * bound allows: every prefix still waits, the whole routes. */
static void test_bound_admits_max(void **state)
{
	struct front_decision d;
	struct buf b, one;
	size_t max;

	make_hello(&b, "vm1.vm.vers.sh", 0);
	max = body_len(&b);
	reframe(&one, &b, 1);
	assert_int_equal(one.len, TLS_HELLO_RECORDS_MAX(max));
	check_prefixes("max_len in 1-byte records", &one, max);
	expect_verdict(decide_max(&d, NULL, max, one.p, one.len, 443),
		       FRONT_TERMINATE, "max_len in 1-byte records");
	expect_vm("max_len in 1-byte records", &d, "vm1.vm.vers.sh",
		  "fd00::1", 22, ec_ctx);
	free(one.p);
	free(b.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_tls),
		cmocka_unit_test(test_bad_hello),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_no_sni),
		cmocka_unit_test(test_route_verdicts),
		cmocka_unit_test(test_no_common_sigalg),
		cmocka_unit_test(test_terminate),
		cmocka_unit_test(test_pass),
		cmocka_unit_test(test_prefixes_and_splits),
		cmocka_unit_test(test_bound_admits_max),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
