/* tests/unit/test_sigalg.c: tls/sigalg.c, which signature scheme
 * BoringSSL will sign with for a key, and tls/ctx.c's choice among the
 * certificates that cover a name (tls_ctx_get0_for_hello).
 *
 * The scheme cases are a table: key, version, the client's list, and the
 * scheme BoringSSL picks (0: none fits). The certificate cases load real
 * keys and self-signed certificates made by the openssl command in a
 * scratch directory: ECDSA P-256 "A" (dual.test, a.w.test), RSA-2048 "B"
 * (dual.test, *.w.test), ECDSA P-256 "C" (ec.test), in that order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "tls/ctx.h"
#include "tls/sigalg.h"

#define MAX_ALGS 8

struct scheme_case {
	const char *what;
	enum tls_sigalg_key_type key;
	size_t rsa_len;
	uint16_t version;
	bool absent; /* no signature_algorithms extension */
	uint16_t offer[MAX_ALGS];
	uint16_t want; /* 0: nothing fits */
};

#define P256 TLS_SIGALG_KEY_P256
#define P384 TLS_SIGALG_KEY_P384
#define P521 TLS_SIGALG_KEY_P521
#define ECX TLS_SIGALG_KEY_EC_OTHER
#define RSA_ TLS_SIGALG_KEY_RSA
#define ED TLS_SIGALG_KEY_ED25519
#define RSA_ONLY 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201

static const struct scheme_case scheme_cases[] = {
	/* ECDSA P-256 in TLS 1.3: only its curve's scheme. */
	{ "p256 1.3 ecdsa_secp256r1_sha256", P256, 0, 0x0304, false,
	  { 0x0403 }, 0x0403 },
	{ "p256 1.3 only ecdsa_sha1", P256, 0, 0x0304, false, { 0x0203 }, 0 },
	{ "p256 1.3 only ecdsa_sha224", P256, 0, 0x0304, false, { 0x0303 },
	  0 },
	{ "p256 1.3 only RSA schemes", P256, 0, 0x0304, false, { RSA_ONLY },
	  0 },
	{ "p256 1.3 only other curves", P256, 0, 0x0304, false,
	  { 0x0503, 0x0603 }, 0 },
	{ "p256 1.3 grease and unknown skipped", P256, 0, 0x0304, false,
	  { 0x0a0a, 0x0808, 0x0403 }, 0x0403 },
	/* ECDSA in TLS 1.2: any hash BoringSSL knows, whatever the curve. */
	{ "p256 1.2 only ecdsa_sha1", P256, 0, 0x0303, false, { 0x0203 },
	  0x0203 },
	{ "p256 1.2 only ecdsa_sha224", P256, 0, 0x0303, false, { 0x0303 },
	  0 },
	{ "p256 1.2 P-384 scheme", P256, 0, 0x0303, false, { 0x0503 },
	  0x0503 },
	{ "p256 1.2 only RSA schemes", P256, 0, 0x0303, false, { RSA_ONLY },
	  0 },
	{ "p256 1.2 absent: sha1 pairs", P256, 0, 0x0303, true, { 0 },
	  0x0203 },
	{ "p256 1.3 absent: nothing", P256, 0, 0x0304, true, { 0 }, 0 },
	{ "p384 1.3", P384, 0, 0x0304, false, { 0x0403, 0x0503 }, 0x0503 },
	{ "p384 1.3 P-256 scheme", P384, 0, 0x0304, false, { 0x0403 }, 0 },
	{ "p521 1.3", P521, 0, 0x0304, false, { 0x0603 }, 0x0603 },
	{ "other curve 1.3", ECX, 0, 0x0304, false, { 0x0403, 0x0503, 0x0603 },
	  0 },
	{ "other curve 1.2", ECX, 0, 0x0303, false, { 0x0503, 0x0403 },
	  0x0403 },
	/* RSA: PSS only in 1.3; PKCS#1 too in 1.2. */
	{ "rsa 1.3 pss", RSA_, 256, 0x0304, false, { 0x0401, 0x0804 },
	  0x0804 },
	{ "rsa 1.3 only pkcs1", RSA_, 256, 0x0304, false,
	  { 0x0201, 0x0401, 0x0501, 0x0601 }, 0 },
	{ "rsa 1.3 only ecdsa", RSA_, 256, 0x0304, false, { 0x0403, 0x0203 },
	  0 },
	{ "rsa 1.3 pss_pss is not pss_rsae", RSA_, 256, 0x0304, false,
	  { 0x0809, 0x080a, 0x080b }, 0 },
	{ "rsa 1.2 pkcs1", RSA_, 256, 0x0303, false, { 0x0401 }, 0x0401 },
	{ "rsa 1.2 pkcs1 sha1", RSA_, 256, 0x0303, false, { 0x0201 }, 0x0201 },
	{ "rsa 1.2 absent: sha1 pairs", RSA_, 256, 0x0303, true, { 0 },
	  0x0201 },
	{ "rsa 1.2 server order, not the client's", RSA_, 256, 0x0303, false,
	  { 0x0601, 0x0401, 0x0804 }, 0x0804 },
	/* PSS needs emLen >= 2 * hLen + 2: 1024-bit keys lack SHA-512. */
	{ "rsa-1024 1.3 pss sha512", RSA_, 128, 0x0304, false, { 0x0806 }, 0 },
	{ "rsa-1024 1.3 pss sha384", RSA_, 128, 0x0304, false,
	  { 0x0806, 0x0805 }, 0x0805 },
	{ "rsa-1024 1.2 falls to pkcs1", RSA_, 128, 0x0303, false,
	  { 0x0806, 0x0601 }, 0x0601 },
	{ "ed25519 1.3", ED, 0, 0x0304, false, { 0x0403, 0x0807 }, 0x0807 },
	{ "ed25519 1.3 no ed25519", ED, 0, 0x0304, false, { 0x0403, 0x0804 },
	  0 },
	{ "ed25519 1.2 absent", ED, 0, 0x0303, true, { 0 }, 0 },
	{ "no key", TLS_SIGALG_KEY_NONE, 0, 0x0304, false,
	  { 0x0403, 0x0804, 0x0807 }, 0 },
};

static size_t wire(uint8_t *out, const uint16_t *offer)
{
	size_t n = 0;

	for (size_t i = 0; i < MAX_ALGS && offer[i]; i++) {
		out[n++] = (uint8_t)(offer[i] >> 8);
		out[n++] = (uint8_t)offer[i];
	}
	return n;
}

static void test_schemes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(scheme_cases) / sizeof(scheme_cases[0]);
	     i++) {
		const struct scheme_case *c = &scheme_cases[i];
		struct tls_sigalg_key key = { c->key, c->rsa_len };
		uint8_t buf[2 * MAX_ALGS];
		size_t len = c->absent ? 0 : wire(buf, c->offer);
		uint16_t got = 0;
		bool ok = tls_sigalg_choose(&got, &key, c->version,
					    c->absent ? NULL : buf, len);

		if (ok != (c->want != 0) || (ok && got != c->want))
			fail_msg("%s: got %s 0x%04x, want 0x%04x", c->what,
				 ok ? "true" : "false", got, c->want);
		/* fits is choose, but where BoringSSL decides otherwise. */
		if (tls_sigalg_fits(&key, c->version, c->absent ? NULL : buf,
				    len) != (ok || (c->absent &&
						    c->version == 0x0304)))
			fail_msg("%s: tls_sigalg_fits disagrees", c->what);
	}
}

static void test_fits_leaves_version_failures_to_boringssl(void **state)
{
	struct tls_sigalg_key key = { TLS_SIGALG_KEY_NONE, 0 };
	const uint8_t sha224[] = { 0x03, 0x03 };

	(void)state;
	/* Version 0: BoringSSL refuses the version (protocol_version). */
	assert_true(tls_sigalg_fits(&key, 0, sha224, sizeof(sha224)));
	/* TLS 1.3 with no extension may resume with a PSK. */
	assert_true(tls_sigalg_fits(&key, 0x0304, NULL, 0));
	assert_false(tls_sigalg_fits(&key, 0x0304, sha224, sizeof(sha224)));
	assert_false(tls_sigalg_fits(&key, 0x0303, NULL, 0));
}

/* tls_sigalg_key_init on keys BoringSSL makes. */
static void test_key_init(void **state)
{
	struct tls_sigalg_key k;
	EVP_PKEY *pkey;
	EC_KEY *ec;
	RSA *rsa;
	BIGNUM *e;
	static const struct {
		int nid;
		enum tls_sigalg_key_type want;
	} curves[] = {
		{ NID_X9_62_prime256v1, TLS_SIGALG_KEY_P256 },
		{ NID_secp384r1, TLS_SIGALG_KEY_P384 },
		{ NID_secp521r1, TLS_SIGALG_KEY_P521 },
		{ NID_secp224r1, TLS_SIGALG_KEY_EC_OTHER },
	};

	(void)state;
	tls_sigalg_key_init(&k, NULL);
	assert_int_equal(k.type, TLS_SIGALG_KEY_NONE);
	for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
		ec = EC_KEY_new_by_curve_name(curves[i].nid);
		assert_non_null(ec);
		assert_true(EC_KEY_generate_key(ec));
		pkey = EVP_PKEY_new();
		assert_true(EVP_PKEY_assign_EC_KEY(pkey, ec));
		tls_sigalg_key_init(&k, pkey);
		assert_int_equal(k.type, curves[i].want);
		EVP_PKEY_free(pkey);
	}
	rsa = RSA_new();
	e = BN_new();
	assert_true(BN_set_word(e, RSA_F4));
	assert_true(RSA_generate_key_ex(rsa, 1024, e, NULL));
	BN_free(e);
	pkey = EVP_PKEY_new();
	assert_true(EVP_PKEY_assign_RSA(pkey, rsa));
	tls_sigalg_key_init(&k, pkey);
	assert_int_equal(k.type, TLS_SIGALG_KEY_RSA);
	assert_int_equal(k.rsa_len, 128);
	EVP_PKEY_free(pkey);
}

/* Certificate selection. */

static char tmpdir[] = "/tmp/vmgate-test-sigalg-XXXXXX";
static struct tls_ctx *store;

static const struct {
	const char *name, *keyopt, *san;
} certs[] = {
	{ "A", "ec -pkeyopt ec_paramgen_curve:P-256", "DNS:dual.test,DNS:a.w.test" },
	{ "B", "rsa:2048", "DNS:dual.test,DNS:*.w.test" },
	{ "C", "ec -pkeyopt ec_paramgen_curve:P-256", "DNS:ec.test" },
};

static int ctx_setup(void **state)
{
	struct config_cert cc[3];
	struct config cfg;
	char cmd[1024], err[256];
	size_t i;

	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	memset(&cfg, 0, sizeof(cfg));
	memset(cc, 0, sizeof(cc));
	for (i = 0; i < 3; i++) {
		snprintf(cmd, sizeof(cmd),
			 "openssl req -x509 -nodes -days 2 -newkey %s "
			 "-keyout %s/%s.key -out %s/%s.pem -subj /CN=%s "
			 "-addext subjectAltName=%s 2>/dev/null",
			 certs[i].keyopt, tmpdir, certs[i].name, tmpdir,
			 certs[i].name, certs[i].name, certs[i].san);
		if (system(cmd) != 0) {
			fprintf(stderr, "failed: %s\n", cmd);
			return -1;
		}
		if (asprintf(&cc[i].cert_path, "%s/%s.pem", tmpdir,
			     certs[i].name) < 0 ||
		    asprintf(&cc[i].key_path, "%s/%s.key", tmpdir,
			     certs[i].name) < 0)
			return -1;
	}
	cfg.certs = cc;
	cfg.certs_len = 3;
	store = tls_ctx_new(&cfg, err, sizeof(err));
	if (!store)
		fprintf(stderr, "tls_ctx_new: %s\n", err);
	for (i = 0; i < 3; i++) {
		unlink(cc[i].cert_path);
		unlink(cc[i].key_path);
		free(cc[i].cert_path);
		free(cc[i].key_path);
	}
	rmdir(tmpdir);
	return store ? 0 : -1;
}

static int ctx_teardown(void **state)
{
	(void)state;
	tls_ctx_free(store);
	return 0;
}

/* The CN of the certificate |ctx| serves, or "-" for NULL. */
static const char *cn(SSL_CTX *ctx)
{
	static char buf[16];

	if (!ctx)
		return "-";
	if (X509_NAME_get_text_by_NID(
		    X509_get_subject_name(SSL_CTX_get0_certificate(ctx)),
		    NID_commonName, buf, sizeof(buf)) <= 0)
		return "?";
	return buf;
}

static const char *pick(const char *name, uint16_t version,
			const uint16_t *offer)
{
	uint8_t buf[2 * MAX_ALGS];
	size_t len = offer ? wire(buf, offer) : 0;

	const struct tls_sigalg_offer o = {
		.version = version,
		.sigalgs = offer ? buf : NULL,
		.sigalgs_len = len,
	};

	return cn(tls_ctx_get0_for_hello(store, name, &o));
}

static void test_two_certificates_one_name(void **state)
{
	static const uint16_t ecdsa[MAX_ALGS] = { 0x0403 };
	static const uint16_t pss[MAX_ALGS] = { 0x0804 };
	static const uint16_t both[MAX_ALGS] = { 0x0804, 0x0403 };
	static const uint16_t sha224[MAX_ALGS] = { 0x0303 };
	static const uint16_t pkcs1[MAX_ALGS] = { 0x0401 };

	(void)state;
	/* The names of both are known. */
	assert_int_equal(tls_ctx_count_names(store), 5);
	/* dual.test: the first that fits, in configuration order. */
	assert_string_equal(pick("dual.test", 0x0304, ecdsa), "A");
	assert_string_equal(pick("dual.test", 0x0304, both), "A");
	assert_string_equal(pick("dual.test", 0x0304, pss), "B");
	assert_string_equal(pick("dual.test", 0x0303, pkcs1), "B");
	assert_string_equal(pick("dual.test", 0x0304, pkcs1), "-");
	assert_string_equal(pick("dual.test", 0x0304, sha224), "-");
	/* A TLS 1.2 hello without the extension: A signs ecdsa_sha1. */
	assert_string_equal(pick("dual.test", 0x0303, NULL), "A");
	/* An exact SAN that cannot sign gives way to a wildcard that can. */
	assert_string_equal(pick("a.w.test", 0x0304, ecdsa), "A");
	assert_string_equal(pick("a.w.test", 0x0304, pss), "B");
	assert_string_equal(pick("b.w.test", 0x0304, pss), "B");
	assert_string_equal(pick("b.w.test", 0x0304, ecdsa), "-");
	/* Only certificates that cover the name, when any does. */
	assert_string_equal(pick("ec.test", 0x0304, ecdsa), "C");
	assert_string_equal(pick("ec.test", 0x0304, pss), "-");
	/* None covers it: the first certificate that fits. */
	assert_string_equal(pick("none.test", 0x0304, ecdsa), "A");
	assert_string_equal(pick("none.test", 0x0304, pss), "B");
	assert_string_equal(pick("none.test", 0x0304, sha224), "-");
	/* No signature check: as before. */
	assert_string_equal(pick("ec.test", 0, pss), "C");
	assert_string_equal(cn(tls_ctx_get0_for_name(store, "ec.test")), "C");
	assert_string_equal(cn(tls_ctx_get0_for_name(store, "b.w.test")), "B");
	assert_string_equal(cn(tls_ctx_get0_for_name(store, "none.test")),
			    "A");
	/* A TLS 1.3 hello without the extension: BoringSSL decides. */
	assert_string_equal(pick("ec.test", 0x0304, NULL), "C");
}

/* TLS 1.2: a cipher suite for the key's type, and an ECDSA key's curve in
 * supported_groups when the client sent it (dual.test: A is P-256, B is
 * RSA). */
static const char *pick12(const char *name, const uint16_t *suites,
			  size_t nsuites, const uint16_t *groups,
			  size_t ngroups, bool groups_present)
{
	static const uint8_t sigalgs[] = { 0x04, 0x03, 0x04, 0x01 };
	uint8_t sb[16], gb[16];
	struct tls_sigalg_offer o = {
		.version = 0x0303,
		.sigalgs = sigalgs,
		.sigalgs_len = sizeof(sigalgs),
		.suites = sb,
		.suites_len = 2 * nsuites,
		.groups = gb,
		.groups_len = 2 * ngroups,
		.groups_present = groups_present,
	};

	for (size_t i = 0; i < nsuites; i++) {
		sb[2 * i] = (uint8_t)(suites[i] >> 8);
		sb[2 * i + 1] = (uint8_t)suites[i];
	}
	for (size_t i = 0; i < ngroups; i++) {
		gb[2 * i] = (uint8_t)(groups[i] >> 8);
		gb[2 * i + 1] = (uint8_t)groups[i];
	}
	return cn(tls_ctx_get0_for_hello(store, name, &o));
}

static void test_tls12_suites_and_groups(void **state)
{
	static const uint16_t rsa_gcm[] = { 0xc02f };
	static const uint16_t ecdsa_chacha[] = { 0xcca9 };
	static const uint16_t both[] = { 0xc02f, 0xc02b };
	static const uint16_t neither[] = { 0x009c, 0x1301 };
	static const uint16_t p256[] = { 0x001d, 0x0017 };
	static const uint16_t no_p256[] = { 0x001d, 0x0018 };

	(void)state;
	assert_string_equal(pick12("dual.test", both, 2, p256, 2, true), "A");
	/* Only ECDHE-RSA suites: the RSA certificate, though the client
	 * also signs ECDSA. */
	assert_string_equal(pick12("dual.test", rsa_gcm, 1, p256, 2, true),
			    "B");
	assert_string_equal(pick12("dual.test", ecdsa_chacha, 1, p256, 2,
				   true), "A");
	/* P-256 not among the client's groups: not the P-256 key. */
	assert_string_equal(pick12("dual.test", both, 2, no_p256, 2, true),
			    "B");
	/* ... a preference: with no other, the P-256 one all the same. */
	assert_string_equal(pick12("ec.test", both, 2, no_p256, 2, true),
			    "C");
	/* No supported_groups at all: every curve (RFC 8422 5.1). */
	assert_string_equal(pick12("ec.test", both, 2, NULL, 0, false), "C");
	/* An empty list names none: the RSA one where there is one. */
	assert_string_equal(pick12("dual.test", both, 2, NULL, 0, true), "B");
	/* No suite of ours: nothing fits. */
	assert_string_equal(pick12("dual.test", neither, 2, p256, 2, true),
			    "-");
}

/* tls_sigalg_suite_auth knows every TLS 1.2 suite the contexts enable,
 * and by the key type BoringSSL authenticates it with. */
static void test_suite_table_matches_contexts(void **state)
{
	STACK_OF(SSL_CIPHER) *list =
		SSL_CTX_get_ciphers(tls_ctx_get0_for_name(store, "ec.test"));
	size_t tls12 = 0;

	(void)state;
	for (size_t i = 0; i < sk_SSL_CIPHER_num(list); i++) {
		const SSL_CIPHER *c = sk_SSL_CIPHER_value(list, i);
		enum tls_suite_auth want;

		if (SSL_CIPHER_get_min_version(c) > TLS1_2_VERSION)
			continue;
		tls12++;
		want = SSL_CIPHER_get_auth_nid(c) == NID_auth_rsa
			       ? TLS_SUITE_RSA
			       : SSL_CIPHER_get_auth_nid(c) == NID_auth_ecdsa
					 ? TLS_SUITE_ECDSA
					 : TLS_SUITE_NONE;
		assert_int_not_equal(want, TLS_SUITE_NONE);
		assert_int_equal(tls_sigalg_suite_auth(
					 SSL_CIPHER_get_protocol_id(c)),
				 want);
	}
	assert_int_equal(tls12, 6);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_schemes),
		cmocka_unit_test(test_fits_leaves_version_failures_to_boringssl),
		cmocka_unit_test(test_key_init),
	};
	const struct CMUnitTest ctx[] = {
		cmocka_unit_test(test_two_certificates_one_name),
		cmocka_unit_test(test_tls12_suites_and_groups),
		cmocka_unit_test(test_suite_table_matches_contexts),
	};
	int failed = cmocka_run_group_tests_name("sigalg", pure, NULL, NULL);

	return failed | cmocka_run_group_tests_name("ctx certificate choice",
						     ctx, ctx_setup,
						     ctx_teardown);
}
