/* tests/unit/test_ctx.c: tls/ctx.c finds the certificates for a name
 * through two reversed-label tries (route/trie.h), exact SANs and wildcard
 * SANs, instead of scanning every SAN. The answers must be the scan's:
 * exact SANs first, then wildcards covering exactly one label, each in
 * configuration order, the first whose key fits the client's signature
 * schemes; no certificate covers the name: the first that fits; some do
 * but none fits: NULL.
 *
 * Certificates are made here, in-process, with keys of every kind
 * tls/sigalg.h tells apart, and written to a scratch directory for
 * tls_ctx_new. ref_pick is the linear scan tls/ctx.c had, kept only here
 * as the reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ctype.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/ctx.h"
#include "tls/sigalg.h"

enum key_kind { K_P256, K_P384, K_RSA2048, K_RSA1024, K_ED25519 };

static EVP_PKEY *make_key(enum key_kind k)
{
	EVP_PKEY_CTX *pc;
	EVP_PKEY *pkey = NULL;
	int id = k == K_ED25519 ? EVP_PKEY_ED25519
		 : (k == K_RSA2048 || k == K_RSA1024) ? EVP_PKEY_RSA
						       : EVP_PKEY_EC;

	pc = EVP_PKEY_CTX_new_id(id, NULL);
	if (!pc || !EVP_PKEY_keygen_init(pc))
		goto out;
	if (k == K_P256 &&
	    !EVP_PKEY_CTX_set_ec_paramgen_curve_nid(pc, NID_X9_62_prime256v1))
		goto out;
	if (k == K_P384 &&
	    !EVP_PKEY_CTX_set_ec_paramgen_curve_nid(pc, NID_secp384r1))
		goto out;
	if ((k == K_RSA2048 || k == K_RSA1024) &&
	    !EVP_PKEY_CTX_set_rsa_keygen_bits(pc, k == K_RSA2048 ? 2048 : 1024))
		goto out;
	if (!EVP_PKEY_keygen(pc, &pkey))
		pkey = NULL;
out:
	EVP_PKEY_CTX_free(pc);
	return pkey;
}

/* write_cert makes a self-signed certificate with CN "c<idx>" and the DNS
 * SANs |sans| (as given, case included) for |key|, and writes it and the
 * key as PEM under |dir|. */
static bool write_cert(struct config_cert *out, const char *dir, unsigned idx,
		       EVP_PKEY *key, char *const *sans, size_t sans_len)
{
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	X509_NAME *nm = X509_NAME_new();
	X509 *x = X509_new();
	char cn[16];
	bool ok = false;
	FILE *f;
	size_t i;

	snprintf(cn, sizeof(cn), "c%u", idx);
	if (!gens || !nm || !x || !X509_set_version(x, 2) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(x), idx + 1) ||
	    !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
					(const uint8_t *)cn, -1, -1, 0) ||
	    !X509_set_subject_name(x, nm) || !X509_set_issuer_name(x, nm) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 86400) ||
	    !X509_set_pubkey(x, key))
		goto out;
	for (i = 0; i < sans_len; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		if (!g || !s ||
		    !ASN1_STRING_set(s, sans[i], (int)strlen(sans[i]))) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(s);
			goto out;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		if (!sk_GENERAL_NAME_push(gens, g)) {
			GENERAL_NAME_free(g);
			goto out;
		}
	}
	if (sans_len &&
	    !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
			       X509V3_ADD_DEFAULT))
		goto out;
	if (!X509_sign(x, key,
		       EVP_PKEY_id(key) == EVP_PKEY_ED25519 ? NULL
							   : EVP_sha256()))
		goto out;
	if (asprintf(&out->cert_path, "%s/%s.pem", dir, cn) < 0 ||
	    asprintf(&out->key_path, "%s/%s.key", dir, cn) < 0)
		goto out;
	f = fopen(out->cert_path, "w");
	if (!f)
		goto out;
	ok = PEM_write_X509(f, x);
	ok = !fclose(f) && ok;
	f = ok ? fopen(out->key_path, "w") : NULL;
	if (!f) {
		ok = false;
		goto out;
	}
	ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	ok = !fclose(f) && ok;
out:
	GENERAL_NAMES_free(gens);
	X509_NAME_free(nm);
	X509_free(x);
	return ok;
}

/* The reference: the SANs as tls/ctx.c's add_name reads them, and its
 * linear scan from before the tries. */
struct ref_name {
	char *name;
	bool wildcard;
	unsigned cert;
};

struct ref {
	struct ref_name *names;
	size_t names_len;
	struct tls_sigalg_key *keys;
	size_t certs_len;
};

static void ref_add(struct ref *r, const char *name, unsigned cert)
{
	size_t len = strlen(name);
	bool wildcard = len > 2 && name[0] == '*' && name[1] == '.';
	struct ref_name *n;

	if (wildcard) {
		name += 2;
		len -= 2;
	}
	if (len == 0)
		return;
	r->names = realloc(r->names, (r->names_len + 1) * sizeof(*r->names));
	assert_non_null(r->names);
	n = &r->names[r->names_len++];
	n->name = strdup(name);
	assert_non_null(n->name);
	for (size_t i = 0; i < len; i++)
		n->name[i] = (char)tolower((unsigned char)n->name[i]);
	n->wildcard = wildcard;
	n->cert = cert;
}

/* The certificate index the scan chose, or -1 for NULL. */
static int ref_pick(const struct ref *r, const char *name,
		    const uint8_t *sigalgs, size_t sigalgs_len,
		    uint16_t version)
{
	const char *dot = strchr(name, '.');
	bool covered = false;
	size_t i, pass;

	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < r->names_len; i++) {
			const struct ref_name *n = &r->names[i];

			if (pass == 0 ? n->wildcard || strcmp(n->name, name)
				      : !n->wildcard || !dot ||
						strcmp(n->name, dot + 1))
				continue;
			covered = true;
			if (tls_sigalg_fits(&r->keys[n->cert], version, sigalgs,
					    sigalgs_len))
				return (int)n->cert;
		}
	}
	if (covered)
		return -1;
	for (i = 0; i < r->certs_len; i++)
		if (tls_sigalg_fits(&r->keys[i], version, sigalgs, sigalgs_len))
			return (int)i;
	return -1;
}

static void ref_free(struct ref *r)
{
	for (size_t i = 0; i < r->names_len; i++)
		free(r->names[i].name);
	free(r->names);
	free(r->keys);
	memset(r, 0, sizeof(*r));
}

/* The index of the certificate |ctx| serves (its CN "c<idx>"), -1 for
 * NULL. */
static int cert_idx(SSL_CTX *ctx)
{
	char buf[16];

	if (!ctx)
		return -1;
	assert_true(X509_NAME_get_text_by_NID(
			    X509_get_subject_name(SSL_CTX_get0_certificate(ctx)),
			    NID_commonName, buf, sizeof(buf)) > 1);
	return atoi(buf + 1);
}

/* A store and its reference, built from one table of keys and SANs. */
struct fixture {
	struct tls_ctx *store;
	struct ref ref;
};

static void build(struct fixture *fx, const enum key_kind *kinds,
		  size_t certs_len, char **const *sans, const size_t *sans_len)
{
	char tmpdir[] = "/tmp/vmgate-test-ctx-XXXXXX", err[256];
	struct config_cert *cc = calloc(certs_len, sizeof(*cc));
	struct config cfg;
	size_t i, j;

	assert_non_null(cc);
	assert_non_null(mkdtemp(tmpdir));
	memset(&cfg, 0, sizeof(cfg));
	memset(fx, 0, sizeof(*fx));
	fx->ref.keys = calloc(certs_len, sizeof(*fx->ref.keys));
	assert_non_null(fx->ref.keys);
	fx->ref.certs_len = certs_len;
	for (i = 0; i < certs_len; i++) {
		EVP_PKEY *key = make_key(kinds[i]);

		assert_non_null(key);
		if (!write_cert(&cc[i], tmpdir, (unsigned)i, key, sans[i],
				sans_len[i]))
			fail_msg("cannot write certificate %zu", i);
		tls_sigalg_key_init(&fx->ref.keys[i], key);
		for (j = 0; j < sans_len[i]; j++)
			ref_add(&fx->ref, sans[i][j], (unsigned)i);
		EVP_PKEY_free(key);
	}
	cfg.certs = cc;
	cfg.certs_len = certs_len;
	fx->store = tls_ctx_new(&cfg, err, sizeof(err));
	for (i = 0; i < certs_len; i++) {
		unlink(cc[i].cert_path);
		unlink(cc[i].key_path);
		free(cc[i].cert_path);
		free(cc[i].key_path);
	}
	free(cc);
	rmdir(tmpdir);
	if (!fx->store)
		fail_msg("tls_ctx_new: %s", err);
	assert_int_equal(tls_ctx_count_names(fx->store), fx->ref.names_len);
}

static void fixture_free(struct fixture *fx)
{
	tls_ctx_free(fx->store);
	ref_free(&fx->ref);
}

/* The client offers: one scheme each, a mix, and none (absent). */
#define MAX_ALGS 4
static const uint16_t offers[][MAX_ALGS] = {
	{ 0x0403 },         /* ecdsa_secp256r1_sha256 */
	{ 0x0503 },         /* ecdsa_secp384r1_sha384 */
	{ 0x0804 },         /* rsa_pss_rsae_sha256 */
	{ 0x0806 },         /* rsa_pss_rsae_sha512: not RSA-1024 */
	{ 0x0401 },         /* rsa_pkcs1_sha256: TLS 1.2 only */
	{ 0x0807 },         /* ed25519 */
	{ 0x0303 },         /* ecdsa_sha224: nothing */
	{ 0x0807, 0x0503 },
	{ 0 },              /* no extension */
};
#define OFFERS (sizeof(offers) / sizeof(offers[0]))
static const uint16_t versions[] = { 0x0304, 0x0303, 0 };

static size_t wire(uint8_t *out, const uint16_t *offer)
{
	size_t n = 0;

	for (size_t i = 0; i < MAX_ALGS && offer[i]; i++) {
		out[n++] = (uint8_t)(offer[i] >> 8);
		out[n++] = (uint8_t)offer[i];
	}
	return n;
}

/* pick asks the store; |o| indexes offers[]. */
static int pick(const struct fixture *fx, const char *name, size_t o,
		uint16_t version)
{
	uint8_t buf[2 * MAX_ALGS];
	size_t len = wire(buf, offers[o]);

	const struct tls_sigalg_offer offer = {
		.version = version,
		.sigalgs = len ? buf : NULL,
		.sigalgs_len = len,
	};

	return cert_idx(tls_ctx_get0_for_hello(fx->store, name, &offer));
}

/* check_same compares the store and the scan on |name| for every offer
 * and version, and tls_ctx_get0_for_name with version 0. */
static void check_same(const struct fixture *fx, const char *name)
{
	for (size_t o = 0; o < OFFERS; o++) {
		uint8_t buf[2 * MAX_ALGS];
		size_t len = wire(buf, offers[o]);

		for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]);
		     v++) {
			int got = pick(fx, name, o, versions[v]);
			int want = ref_pick(&fx->ref, name, len ? buf : NULL,
					    len, versions[v]);

			if (got != want)
				fail_msg("%s offer %zu version 0x%04x: got "
					 "c%d, the scan chose c%d",
					 name, o, versions[v], got, want);
		}
	}
	assert_int_equal(cert_idx(tls_ctx_get0_for_name(fx->store, name)),
			 ref_pick(&fx->ref, name, NULL, 0, 0));
}

/* Four certificates, in this order:
 *   c0 Ed25519  d.test
 *   c1 P-256    *.w.test
 *   c2 P-256    a.w.test, MiXeD.test
 *   c3 RSA-2048 *.w.test, a.w.test
 */
static void test_precedence(void **state)
{
	static const enum key_kind kinds[] = { K_ED25519, K_P256, K_P256,
					       K_RSA2048 };
	static char *s0[] = { "d.test" }, *s1[] = { "*.w.test" },
		    *s2[] = { "a.w.test", "MiXeD.test" },
		    *s3[] = { "*.w.test", "a.w.test" };
	static char **const sans[] = { s0, s1, s2, s3 };
	static const size_t sans_len[] = { 1, 1, 2, 2 };
	enum { ECDSA = 0, PSS = 2, ED = 5, SHA224 = 6 };
	struct fixture fx;

	(void)state;
	build(&fx, kinds, 4, sans, sans_len);
	/* An exact SAN wins over an earlier wildcard... */
	assert_int_equal(pick(&fx, "a.w.test", ECDSA, 0x0304), 2);
	assert_int_equal(pick(&fx, "b.w.test", ECDSA, 0x0304), 1);
	/* ...and the exact ones come in configuration order... */
	assert_int_equal(pick(&fx, "a.w.test", PSS, 0x0304), 3);
	/* ...then the wildcards, when no exact one fits. */
	assert_int_equal(pick(&fx, "b.w.test", PSS, 0x0304), 3);
	/* Covered but none fits: NULL, not c0. */
	assert_int_equal(pick(&fx, "b.w.test", ED, 0x0304), -1);
	assert_int_equal(pick(&fx, "a.w.test", SHA224, 0x0304), -1);
	/* A wildcard covers one label: not two, not none. Uncovered names
	 * get the first certificate that fits. */
	assert_int_equal(pick(&fx, "x.a.w.test", ED, 0x0304), 0);
	assert_int_equal(pick(&fx, "x.b.w.test", ED, 0x0304), 0);
	assert_int_equal(pick(&fx, "w.test", ED, 0x0304), 0);
	assert_int_equal(pick(&fx, "none.test", PSS, 0x0304), 3);
	assert_int_equal(pick(&fx, "none.test", SHA224, 0x0304), -1);
	/* SANs are matched lowercased; the router asks in lowercase, and a
	 * name that is not lowercase matches nothing. */
	assert_int_equal(pick(&fx, "mixed.test", ECDSA, 0x0304), 2);
	assert_int_equal(pick(&fx, "mixed.test", PSS, 0x0304), -1);
	assert_int_equal(pick(&fx, "MIXED.TEST", PSS, 0x0304), 3);
	assert_int_equal(pick(&fx, "A.W.TEST", ED, 0x0304), 0);
	/* tls_ctx_get0_for_name: the first that covers, else the first. */
	assert_int_equal(cert_idx(tls_ctx_get0_for_name(fx.store, "b.w.test")),
			 1);
	assert_int_equal(cert_idx(tls_ctx_get0_for_name(fx.store, "x.b.w.test")),
			 0);
	fixture_free(&fx);
}

/* Deterministic pseudo-random numbers (xorshift32). */
static uint32_t rng = 2463534242u;

static uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* push adds |name| to |*v|, with its first letter uppercased half the
 * time: certificates write names in any case. */
static void push(char ***v, size_t *len, const char *name)
{
	char *s = strdup(name);

	assert_non_null(s);
	if (next() & 1)
		s[s[0] == '*' ? 2 : 0] =
			(char)toupper((unsigned char)s[s[0] == '*' ? 2 : 0]);
	*v = realloc(*v, (*len + 1) * sizeof(**v));
	assert_non_null(*v);
	(*v)[(*len)++] = s;
}

#define CERTS 8
#define DOMAINS 20
#define HOSTS 30

/* Eight certificates of five key kinds, about 1,400 SANs over 20 domains:
 * each host name in about two certificates, wildcards for a domain and
 * for its "s." subdomain in some, a few names the trie cannot hold, a
 * name listed twice. Every name asked, and names under and beside them,
 * for every offer and version, answer as the scan did. */
static void test_many_names_as_the_scan(void **state)
{
	static const enum key_kind kinds[CERTS] = {
		K_P256, K_RSA2048, K_P384, K_P256, K_ED25519, K_RSA1024,
		K_RSA2048, K_P256,
	};
	static const char *const odd[] = {
		"bad..d1.test", "trail.d1.test.", "*.", "*.trail.d2.test.",
		"x.d3.test", "x.d3.test", /* twice in one certificate */
		"a0123456789012345678901234567890123456789012345678901234567890123.d4.test",
	};
	char **sans[CERTS] = { 0 }, name[160];
	size_t sans_len[CERTS] = { 0 }, total = 0;
	struct fixture fx;
	unsigned c, d, h;

	(void)state;
	for (c = 0; c < CERTS; c++) {
		for (d = 0; d < DOMAINS; d++) {
			for (h = 0; h < HOSTS; h++) {
				if (next() % 4)
					continue;
				snprintf(name, sizeof(name), "h%u.d%u.test", h,
					 d);
				push(&sans[c], &sans_len[c], name);
			}
			if (next() % 3 == 0) {
				snprintf(name, sizeof(name), "*.d%u.test", d);
				push(&sans[c], &sans_len[c], name);
			}
			if (next() % 3 == 0) {
				snprintf(name, sizeof(name), "*.s.d%u.test", d);
				push(&sans[c], &sans_len[c], name);
			}
			if (next() % 5 == 0) {
				snprintf(name, sizeof(name), "s.d%u.test", d);
				push(&sans[c], &sans_len[c], name);
			}
		}
		if (c == 3)
			for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
				push(&sans[c], &sans_len[c], odd[i]);
		total += sans_len[c];
	}
	assert_true(total >= 1000);
	build(&fx, kinds, CERTS, sans, sans_len);
	for (d = 0; d < DOMAINS + 2; d++) {
		for (h = 0; h < HOSTS + 2; h++) {
			snprintf(name, sizeof(name), "h%u.d%u.test", h, d);
			check_same(&fx, name);
			snprintf(name, sizeof(name), "x.h%u.d%u.test", h, d);
			check_same(&fx, name);
		}
		snprintf(name, sizeof(name), "d%u.test", d);
		check_same(&fx, name);
		snprintf(name, sizeof(name), "s.d%u.test", d);
		check_same(&fx, name);
		snprintf(name, sizeof(name), "x.s.d%u.test", d);
		check_same(&fx, name);
		snprintf(name, sizeof(name), "x.y.s.d%u.test", d);
		check_same(&fx, name);
		snprintf(name, sizeof(name), "H1.D%u.TEST", d);
		check_same(&fx, name);
	}
	check_same(&fx, "test");
	check_same(&fx, "x.d3.test");
	check_same(&fx, "y.d1.test");
	check_same(&fx, "a.trail.d2.test");
	fixture_free(&fx);
	for (c = 0; c < CERTS; c++) {
		for (size_t i = 0; i < sans_len[c]; i++)
			free(sans[c][i]);
		free(sans[c]);
	}
}

/* client_auth: each domain's CA bundle, by its index in cfg->domains;
 * a bundle with no certificate fails the whole store, naming the file. */
static void test_client_auth(void **state)
{
	char tmpdir[] = "/tmp/vmgate-test-ctx-XXXXXX", err[256], bad[64];
	static char *const sans[] = { "a.test" };
	const struct tls_client_auth *a;
	uint8_t id1[16];
	struct config_domain d[3];
	struct config_cert cc;
	struct config cfg;
	struct tls_ctx *t;
	EVP_PKEY *key = make_key(K_P256);
	FILE *f;

	assert_non_null(key);
	assert_non_null(mkdtemp(tmpdir));
	memset(&cc, 0, sizeof(cc));
	memset(d, 0, sizeof(d));
	memset(&cfg, 0, sizeof(cfg));
	assert_true(write_cert(&cc, tmpdir, 0, key, sans, 1));
	EVP_PKEY_free(key);
	cfg.certs = &cc;
	cfg.certs_len = 1;
	cfg.domains = d;
	cfg.domains_len = 3;
	d[0].suffix = "a.test";
	d[1].suffix = "b.test";
	d[2].suffix = "c.test";
	d[1].client_ca_path = cc.cert_path; /* any certificate is a CA here */
	d[1].client_auth_required = true;
	d[2].client_ca_path = cc.cert_path;
	t = tls_ctx_new(&cfg, err, sizeof(err));
	if (!t)
		fail_msg("tls_ctx_new: %s", err);
	assert_null(tls_ctx_get0_client_auth(t, 0));
	a = tls_ctx_get0_client_auth(t, 1);
	assert_non_null(a);
	assert_non_null(a->ca);
	assert_true(a->required);
	memcpy(id1, a->id, sizeof(id1));
	a = tls_ctx_get0_client_auth(t, 2);
	assert_non_null(a);
	assert_false(a->required);
	/* Each domain its own session id context. */
	assert_memory_not_equal(id1, a->id, sizeof(id1));
	assert_null(tls_ctx_get0_client_auth(t, 3));
	tls_ctx_free(t);
	/* The same domain, required and bundle: the same context on another
	 * load (another appliance, a reload), so sessions resume there; not
	 * once required differs. */
	t = tls_ctx_new(&cfg, err, sizeof(err));
	assert_non_null(t);
	assert_memory_equal(tls_ctx_get0_client_auth(t, 1)->id, id1,
			    sizeof(id1));
	tls_ctx_free(t);
	d[1].client_auth_required = false;
	d[2].suffix = "b.test";
	t = tls_ctx_new(&cfg, err, sizeof(err));
	assert_non_null(t);
	assert_memory_not_equal(tls_ctx_get0_client_auth(t, 1)->id, id1,
				sizeof(id1));
	/* ... and the same three give the same context in any domain slot */
	assert_memory_equal(tls_ctx_get0_client_auth(t, 1)->id,
			    tls_ctx_get0_client_auth(t, 2)->id, sizeof(id1));
	tls_ctx_free(t);
	d[1].client_auth_required = true;
	d[2].suffix = "c.test";

	snprintf(bad, sizeof(bad), "%s/bad.pem", tmpdir);
	f = fopen(bad, "w");
	assert_non_null(f);
	fputs("not a certificate\n", f);
	fclose(f);
	d[2].client_ca_path = bad;
	assert_null(tls_ctx_new(&cfg, err, sizeof(err)));
	if (!strstr(err, bad) || !strstr(err, "no PEM certificate"))
		fail_msg("error: %s", err);
	unlink(bad);
	unlink(cc.cert_path);
	unlink(cc.key_path);
	free(cc.cert_path);
	free(cc.key_path);
	rmdir(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_many_names_as_the_scan),
		cmocka_unit_test(test_client_auth),
	};

	return cmocka_run_group_tests_name("ctx certificate names", tests,
					   NULL, NULL);
}
