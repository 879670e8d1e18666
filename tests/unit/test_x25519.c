/* tests/unit/test_x25519.c: tls/x25519.c, the X25519 every handshake's
 * key agreement goes through: libsodium is chosen (the CPU this runs on
 * has AVX); it agrees with BoringSSL's own X25519 on RFC 7748's vectors,
 * on 3,000 inputs of a fixed sequence (public values with their top bit
 * set and unreduced ones among them), with the output over the peer's
 * value, and on the points of small order, which both refuse; and libssl
 * really calls it:
 * after a TLS 1.3 handshake over X25519 between two SSL objects in memory,
 * libssl's relocation for X25519 holds this program's function, not
 * libcrypto's. Key generation: libsodium's is chosen; RFC 7748 6.1's
 * public values; 3,000 private keys of a fixed sequence (and their
 * unclamped forms) give BoringSSL's public values; X25519_keypair's pairs
 * agree (each side's shared key is the same) and keep BoringSSL's masking;
 * libssl's relocation for X25519_keypair holds this program's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <openssl/curve25519.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>

#include "tls/x25519.h"

#include "fuzz/testcert.c"

static tls_x25519_fn *boringssl;

static int setup(void **state)
{
	const char *why = NULL;

	/* Before the choice X25519 is BoringSSL's: same answers. */
	boringssl = tls_x25519_boringssl();
	if (!boringssl || (void *)boringssl == (void *)X25519)
		return -1;
	if (tls_x25519_init(&why) != TLS_X25519_LIBSODIUM ||
	    tls_x25519_keygen_impl() != TLS_X25519_LIBSODIUM) {
		fprintf(stderr, "tls_x25519_init: %s\n", why);
		return -1;
	}
	return 0;
}

static void hex(uint8_t out[32], const char *s)
{
	for (int i = 0; i < 32; i++)
		assert_int_equal(sscanf(s + 2 * i, "%2hhx", &out[i]), 1);
}

static void test_rfc7748_vectors(void **state)
{
	static const char *const v[][3] = {
		{ "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
		  "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
		  "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552" },
		{ "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
		  "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
		  "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint8_t k[32], u[32], want[32], got[32];

		hex(k, v[i][0]);
		hex(u, v[i][1]);
		hex(want, v[i][2]);
		assert_int_equal(X25519(got, k, u), 1);
		assert_memory_equal(got, want, 32);
	}
}

/* RFC 7748 5.2's iterated vector, 1,000 steps: k and u feed back. */
static void test_rfc7748_iterated(void **state)
{
	uint8_t k[32] = { 9 }, u[32] = { 9 }, r[32], want[32];

	for (int i = 0; i < 1000; i++) {
		assert_int_equal(X25519(r, k, u), 1);
		memcpy(u, k, 32);
		memcpy(k, r, 32);
	}
	hex(want, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
	assert_memory_equal(k, want, 32);
}

/* Input |i| of a fixed sequence (SHA-256 of a tag and i): a failure is
 * the same input on every run. */
static void input(uint8_t out[32], char tag, uint32_t i)
{
	uint8_t in[5] = { (uint8_t)tag, (uint8_t)i, (uint8_t)(i >> 8),
			  (uint8_t)(i >> 16), (uint8_t)(i >> 24) };

	SHA256(in, sizeof(in), out);
}

static void test_many_inputs_agree(void **state)
{
	for (uint32_t i = 0; i < 3000; i++) {
		uint8_t k[32], u[32], a[32], b[32];
		int ra, rb;

		input(k, 'k', i);
		input(u, 'u', i);
		if (i % 3 == 1)
			u[31] |= 0x80;	/* top bit: ignored by both */
		if (i % 3 == 2) {	/* p = 2^255 - 19 and the 18 above it,
					 * top bit or not */
			memset(u, 0xff, 32);
			u[0] = (uint8_t)(0xed + i % 19);
			u[31] = i % 2 ? 0xff : 0x7f;
		}
		ra = X25519(a, k, u);
		rb = boringssl(b, k, u);
		if (ra != rb || (rb && memcmp(a, b, 32) != 0))
			fail_msg("input %u: libsodium %d, BoringSSL %d", i, ra,
				 rb);
	}
}

/* The output may be the peer's value itself, as BoringSSL allows. */
static void test_output_over_peer_value(void **state)
{
	for (uint32_t i = 0; i < 50; i++) {
		uint8_t k[32], u[32], want[32];

		input(k, 'K', i);
		input(u, 'U', i);
		assert_int_equal(boringssl(want, k, u), 1);
		assert_int_equal(X25519(u, k, u), 1);
		assert_memory_equal(u, want, 32);
	}
}

/* The points of order 1, 2, 4 and 8 and their unreduced encodings (the
 * list libsodium and others refuse): a shared key of zeros, refused by
 * both with 0. */
static void test_small_order_refused(void **state)
{
	static const char *const pts[] = {
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	};
	uint8_t k[32], u[32], a[32], b[32];

	RAND_bytes(k, sizeof(k));
	for (size_t i = 0; i < sizeof(pts) / sizeof(pts[0]); i++) {
		hex(u, pts[i]);
		assert_int_equal(X25519(a, k, u), 0);
		assert_int_equal(boringssl(b, k, u), 0);
		u[31] |= 0x80;
		assert_int_equal(X25519(a, k, u), 0);
		assert_int_equal(boringssl(b, k, u), 0);
	}
}

/* The address in |lib|'s relocation slot for the function |name|. */
struct slot_query {
	const char *lib;
	const char *name;
	void *value;
	bool found;
};

static int find_slot(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct slot_query *q = arg;
	const ElfW(Dyn) *dyn = NULL;
	const ElfW(Sym) *symtab = NULL;
	const char *strtab = NULL;
	const ElfW(Rela) *rel[2] = { NULL, NULL };
	size_t rel_len[2] = { 0, 0 };

	if (!strstr(info->dlpi_name, q->lib))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++)
		if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
			dyn = (const ElfW(Dyn) *)(info->dlpi_addr +
						  info->dlpi_phdr[i].p_vaddr);
	for (; dyn && dyn->d_tag != DT_NULL; dyn++) {
		/* glibc has relocated these to addresses already. */
		switch (dyn->d_tag) {
		case DT_SYMTAB:
			symtab = (const ElfW(Sym) *)dyn->d_un.d_ptr;
			break;
		case DT_STRTAB:
			strtab = (const char *)dyn->d_un.d_ptr;
			break;
		case DT_JMPREL:
			rel[0] = (const ElfW(Rela) *)dyn->d_un.d_ptr;
			break;
		case DT_PLTRELSZ:
			rel_len[0] = dyn->d_un.d_val / sizeof(ElfW(Rela));
			break;
		case DT_RELA:
			rel[1] = (const ElfW(Rela) *)dyn->d_un.d_ptr;
			break;
		case DT_RELASZ:
			rel_len[1] = dyn->d_un.d_val / sizeof(ElfW(Rela));
			break;
		}
	}
	if (!symtab || !strtab)
		return 0;
	for (int t = 0; t < 2; t++) {
		for (size_t i = 0; rel[t] && i < rel_len[t]; i++) {
			const ElfW(Sym) *s =
				&symtab[ELF64_R_SYM(rel[t][i].r_info)];

			if (strcmp(strtab + s->st_name, q->name) != 0)
				continue;
			q->value = *(void **)(info->dlpi_addr +
					      rel[t][i].r_offset);
			q->found = true;
			return 1;
		}
	}
	return 0;
}

static void handshake_x25519(void)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_method());
	EVP_PKEY *key;
	X509 *cert;
	SSL *s, *c;
	BIO *sb, *cb;
	int sr = -1, cr = -1;

	assert_true(testcert_make(&key, &cert, false, "x25519.test", NULL, 0));
	assert_true(SSL_CTX_use_certificate(sctx, cert));
	assert_true(SSL_CTX_use_PrivateKey(sctx, key));
	assert_true(SSL_CTX_set1_curves_list(sctx, "X25519"));
	assert_true(SSL_CTX_set1_curves_list(cctx, "X25519"));
	s = SSL_new(sctx);
	c = SSL_new(cctx);
	assert_true(BIO_new_bio_pair(&sb, 0, &cb, 0));
	SSL_set_bio(s, sb, sb);
	SSL_set_bio(c, cb, cb);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	for (int i = 0; i < 20 && (sr != 1 || cr != 1); i++) {
		cr = SSL_do_handshake(c);
		sr = SSL_do_handshake(s);
	}
	assert_int_equal(sr, 1);
	assert_int_equal(cr, 1);
	assert_int_equal(SSL_version(s), TLS1_3_VERSION);
	assert_int_equal(SSL_get_curve_id(s), SSL_CURVE_X25519);
	SSL_free(s);
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	EVP_PKEY_free(key);
	X509_free(cert);
}

/* RFC 7748 6.1: Alice's and Bob's public values from their private keys,
 * and their shared secret from the pairs. */
static void test_keygen_rfc7748(void **state)
{
	uint8_t a[32], b[32], pa[32], pb[32], want[32], s1[32], s2[32];

	hex(a, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
	hex(b, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
	tls_x25519_public_from_private(pa, a);
	hex(want, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
	assert_memory_equal(pa, want, 32);
	tls_x25519_public_from_private(pb, b);
	hex(want, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
	assert_memory_equal(pb, want, 32);
	assert_int_equal(X25519(s1, a, pb), 1);
	assert_int_equal(X25519(s2, b, pa), 1);
	hex(want, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
	assert_memory_equal(s1, want, 32);
	assert_memory_equal(s2, want, 32);
}

/* 3,000 private keys, each as it is and with the bits X25519 clamps
 * flipped (the same scalar for both): BoringSSL's public values. */
static void test_keygen_many_keys_agree(void **state)
{
	for (uint32_t i = 0; i < 3000; i++) {
		uint8_t k[32], a[32], b[32];

		input(k, 'g', i);
		if (i % 2) {
			k[0] ^= 7;
			k[31] ^= 0xc0;
		}
		tls_x25519_public_from_private(a, k);
		X25519_public_from_private(b, k);
		if (memcmp(a, b, 32) != 0)
			fail_msg("private key %u: not BoringSSL's public value",
				 i);
	}
}

/* X25519_keypair as libssl calls it: BoringSSL's masking (the clamped
 * bits set the wrong way), a public value that is the private key's, and
 * two pairs that agree on one shared key. */
static void test_keypair(void **state)
{
	uint8_t pa[32], ka[32], pb[32], kb[32], want[32], s1[32], s2[32];

	for (int i = 0; i < 100; i++) {
		X25519_keypair(pa, ka);
		X25519_keypair(pb, kb);
		assert_int_equal(ka[0] & 7, 7);
		assert_int_equal(ka[31] & 0xc0, 0x80);
		X25519_public_from_private(want, ka);
		assert_memory_equal(pa, want, 32);
		assert_memory_not_equal(pa, pb, 32);
		assert_int_equal(X25519(s1, ka, pb), 1);
		assert_int_equal(X25519(s2, kb, pa), 1);
		assert_memory_equal(s1, s2, 32);
	}
}

static void test_libssl_calls_it(void **state)
{
	struct slot_query q = { .lib = "libssl.so", .name = "X25519" };

	assert_ptr_equal(dlsym(RTLD_DEFAULT, "X25519"), (void *)X25519);
	handshake_x25519();	/* binds the slot if binding is lazy */
	dl_iterate_phdr(find_slot, &q);
	assert_true(q.found);
	assert_ptr_equal(q.value, (void *)X25519);
	assert_ptr_not_equal(q.value, (void *)boringssl);
}

static void test_libssl_calls_our_keypair(void **state)
{
	struct slot_query q = { .lib = "libssl.so", .name = "X25519_keypair" };

	assert_ptr_equal(dlsym(RTLD_DEFAULT, "X25519_keypair"),
			 (void *)X25519_keypair);
	handshake_x25519();
	dl_iterate_phdr(find_slot, &q);
	assert_true(q.found);
	assert_ptr_equal(q.value, (void *)X25519_keypair);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7748_vectors),
		cmocka_unit_test(test_rfc7748_iterated),
		cmocka_unit_test(test_many_inputs_agree),
		cmocka_unit_test(test_output_over_peer_value),
		cmocka_unit_test(test_small_order_refused),
		cmocka_unit_test(test_libssl_calls_it),
		cmocka_unit_test(test_keygen_rfc7748),
		cmocka_unit_test(test_keygen_many_keys_agree),
		cmocka_unit_test(test_keypair),
		cmocka_unit_test(test_libssl_calls_our_keypair),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
