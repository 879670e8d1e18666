/* tls/x25519.c: see x25519.h. */
#include "tls/x25519.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <gmp.h>
#include <openssl/curve25519.h>
#include <openssl/rand.h>
#include <sodium.h>

/* Written once by tls_x25519_init before any other thread exists; NULL
 * before (or in a program that never calls it): BoringSSL's. */
static tls_x25519_fn *chosen;
/* Likewise for key generation: true once libsodium's is checked. */
static bool keygen_sodium;

/* The next definition after the executable's, looked up once (a race
 * only looks it up twice). */
tls_x25519_fn *tls_x25519_boringssl(void)
{
	static tls_x25519_fn *f;
	tls_x25519_fn *g = __atomic_load_n(&f, __ATOMIC_RELAXED);

	if (!g) {
		g = (tls_x25519_fn *)dlsym(RTLD_NEXT, "X25519");
		__atomic_store_n(&f, g, __ATOMIC_RELAXED);
	}
	return g;
}

/* Same contract: 1, or 0 when the shared key is all zeros (the peer's
 * value was of small order). libsodium writes the clamped scalar to the
 * output before it reads the peer's value, so the caller's |out| may not
 * be |peer| there: the value is copied (BoringSSL allows it). */
static int sodium_x25519(uint8_t out[32], const uint8_t priv[32],
			 const uint8_t peer[32])
{
	uint8_t p[32];

	memcpy(p, peer, sizeof(p));
	return crypto_scalarmult_curve25519(out, priv, p) == 0;
}

int X25519(uint8_t out_shared_key[32], const uint8_t private_key[32],
	   const uint8_t peer_public_value[32])
{
	tls_x25519_fn *f = chosen ? chosen : tls_x25519_boringssl();

	/* Not found: no X25519 at all (libcrypto always has one). */
	if (!f)
		return 0;
	return f(out_shared_key, private_key, peer_public_value);
}

/* p = 2^255 - 19 in GMP's limbs, least significant first, for the map
 * below. */
_Static_assert(GMP_NUMB_BITS == 64, "64-bit GMP limbs");
static const mp_limb_t field_p[4] = {
	0xffffffffffffffedu, 0xffffffffffffffffu, 0xffffffffffffffffu,
	0x7fffffffffffffffu,
};

/* The public value of |priv| (clamped as X25519 clamps it), in
 * BoringSSL's contract for X25519_public_from_private, by libsodium's
 * Ed25519 base-point multiplication (a precomputed table, constant time)
 * and the birational map to Curve25519, u = (1 + y) / (1 - y) mod p: the
 * same point. The map works on y, which is as public as u itself (y =
 * (u - 1) / (u + 1)), so GMP's inversion (an extended gcd), which is not
 * constant time, sees nothing secret. false only on a failure that cannot happen (the
 * product is never the identity: the clamped scalar is a multiple of 8
 * below the group's order times 8); the caller then asks BoringSSL. */
static bool sodium_public(uint8_t out[32], const uint8_t priv[32])
{
	/* GMP's mpn layer on the stack: its mpz functions allocate, and
	 * GMP aborts the process when an allocation fails. */
	mp_limb_t y[4], num[4], den[4], u[5], v[5], g[5], s[6], prod[8],
		q[5], r[4];
	mp_size_t sn;
	uint8_t e[32], ed[32];
	bool ok;

	memcpy(e, priv, sizeof(e));
	e[0] &= 248;
	e[31] &= 127;
	e[31] |= 64;
	ok = crypto_scalarmult_ed25519_base_noclamp(ed, e) == 0;
	sodium_memzero(e, sizeof(e));
	if (!ok)
		return false;
	ed[31] &= 127; /* the sign of x: y is the rest, below p */
	for (int i = 0; i < 4; i++) {
		y[i] = 0;
		for (int b = 7; b >= 0; b--)
			y[i] = y[i] << 8 | ed[8 * i + b];
	}
	/* num = y + 1 (below 2^255: no carry); den = 1 - y mod p, which is
	 * p - y + 1 for y >= 2 and 1 for y = 0; y = 1 is the identity,
	 * which the product never is. */
	mpn_add_1(num, y, 4, 1);
	if (mpn_zero_p(y, 4)) {
		mpn_zero(den, 4);
		den[0] = 1;
	} else {
		mpn_sub_n(den, field_p, y, 4);
		mpn_add_1(den, den, 4, 1);
		if (mpn_cmp(den, field_p, 4) >= 0)
			return false; /* y = 1 */
	}
	/* 1 / den: gcdext of U = den + p (at least V, as it must be) and
	 * V = p; its cofactor S has S * U = 1 mod p, and U = den mod p. */
	mpn_add_n(u, den, field_p, 4); /* below 2^256: no carry */
	mpn_copyi(v, field_p, 4);
	if (mpn_gcdext(g, s, &sn, u, 4, v, 4) != 1 || g[0] != 1 || !sn)
		return false;
	if (sn < 0) { /* -|S| mod p = p - |S|, |S| below p */
		mp_limb_t t[4] = { 0 };

		mpn_copyi(t, s, -sn);
		mpn_sub_n(s, field_p, t, 4);
	} else if (sn < 4) {
		mpn_zero(s + sn, 4 - sn);
	}
	/* u = num / den mod p. */
	mpn_mul_n(prod, num, s, 4);
	mpn_tdiv_qr(q, r, 0, prod, 8, field_p, 4);
	for (int i = 0; i < 4; i++)
		for (int b = 0; b < 8; b++)
			out[8 * i + b] = (uint8_t)(r[i] >> (8 * b));
	return true;
}

void tls_x25519_public_from_private(uint8_t out[32],
				    const uint8_t private_key[32])
{
	if (!keygen_sodium || !sodium_public(out, private_key))
		X25519_public_from_private(out, private_key);
}

/* BoringSSL's X25519_keypair with the multiplication chosen: its random
 * private key, with its masking (the bits X25519 clamps are set the wrong
 * way, so an implementation that forgets to clamp fails at once rather
 * than now and then). */
void X25519_keypair(uint8_t out_public_value[32],
		    uint8_t out_private_key[32])
{
	RAND_bytes(out_private_key, 32);
	out_private_key[0] |= ~248;
	out_private_key[31] &= ~64;
	out_private_key[31] |= ~127;
	tls_x25519_public_from_private(out_public_value, out_private_key);
}

/* Inputs both implementations must agree on, result and return value. */
static const uint8_t checks[][2][32] = {
	/* RFC 7748 5.2, the two single-step vectors; the second public
	 * value has its top bit set, which both must ignore. */
	{ { 0xa5, 0x46, 0xe3, 0x6b, 0xf0, 0x52, 0x7c, 0x9d, 0x3b, 0x16, 0x15,
	    0x4b, 0x82, 0x46, 0x5e, 0xdd, 0x62, 0x14, 0x4c, 0x0a, 0xc1, 0xfc,
	    0x5a, 0x18, 0x50, 0x6a, 0x22, 0x44, 0xba, 0x44, 0x9a, 0xc4 },
	  { 0xe6, 0xdb, 0x68, 0x67, 0x58, 0x30, 0x30, 0xdb, 0x35, 0x94, 0xc1,
	    0xa4, 0x24, 0xb1, 0x5f, 0x7c, 0x72, 0x66, 0x24, 0xec, 0x26, 0xb3,
	    0x35, 0x3b, 0x10, 0xa9, 0x03, 0xa6, 0xd0, 0xab, 0x1c, 0x4c } },
	{ { 0x4b, 0x66, 0xe9, 0xd4, 0xd1, 0xb4, 0x67, 0x3c, 0x5a, 0xd2, 0x26,
	    0x91, 0x95, 0x7d, 0x6a, 0xf5, 0xc1, 0x1b, 0x64, 0x21, 0xe0, 0xea,
	    0x01, 0xd4, 0x2c, 0xa4, 0x16, 0x9e, 0x79, 0x18, 0xba, 0x0d },
	  { 0xe5, 0x21, 0x0f, 0x12, 0x78, 0x68, 0x11, 0xd3, 0xf4, 0xb7, 0x95,
	    0x9d, 0x05, 0x38, 0xae, 0x2c, 0x31, 0xdb, 0xe7, 0x10, 0x6f, 0xc0,
	    0x3c, 0x3e, 0xfc, 0x4c, 0xd5, 0x49, 0xc7, 0x15, 0xa4, 0x93 } },
	/* u = 1, of small order: no shared key from either. */
	{ { 0x77 }, { 0x01 } },
	/* u = 2^255 - 18, not reduced (it is 1 mod p): the same. */
	{ { 0x77 },
	  { 0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f } },
};

static bool agrees(tls_x25519_fn *ours, tls_x25519_fn *theirs)
{
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		uint8_t a[32], b[32];
		int ra = ours(a, checks[i][0], checks[i][1]);
		int rb = theirs(b, checks[i][0], checks[i][1]);

		if (ra != rb || (rb && memcmp(a, b, sizeof(a)) != 0))
			return false;
	}
	return true;
}

/* RFC 7748 6.1's private keys, and the two above: the public values of
 * both key generations must be the same. */
static const uint8_t keygen_checks[][32] = {
	{ 0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1,
	  0x72, 0x51, 0xb2, 0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0,
	  0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a },
	{ 0x5d, 0xab, 0x08, 0x7e, 0x62, 0x4a, 0x8a, 0x4b, 0x79, 0xe1, 0x7f,
	  0x8b, 0x83, 0x80, 0x0e, 0xe6, 0x6f, 0x3b, 0xb1, 0x29, 0x26, 0x18,
	  0xb6, 0xfd, 0x1c, 0x2f, 0x8b, 0x27, 0xff, 0x88, 0xe0, 0xeb },
};

static bool keygen_agrees(void)
{
	for (size_t i = 0; i < 2 * 2; i++) {
		const uint8_t *k = i < 2 ? keygen_checks[i] : checks[i - 2][0];
		uint8_t a[32], b[32];

		if (!sodium_public(a, k))
			return false;
		X25519_public_from_private(b, k);
		if (memcmp(a, b, sizeof(a)) != 0)
			return false;
	}
	return true;
}

/* Why key generation stays BoringSSL's, or NULL when it is libsodium's
 * (and then it is). */
static const char *choose_keygen(void)
{
	if (dlsym(RTLD_DEFAULT, "X25519_keypair") != (void *)X25519_keypair)
		return "this executable does not export X25519_keypair";
	if (!keygen_agrees())
		return "libsodium's disagreed with BoringSSL's on a test key";
	keygen_sodium = true;
	return NULL;
}

/* Why the key agreement stays BoringSSL's, or NULL when it is
 * libsodium's (and then it is). */
static const char *choose_agreement(tls_x25519_fn *bssl)
{
	if (dlsym(RTLD_DEFAULT, "X25519") != (void *)X25519)
		return "this executable does not export X25519, so libssl "
		       "calls BoringSSL's";
	if (!bssl)
		return "BoringSSL's X25519 was not found to check libsodium's "
		       "against";
	/* Without AVX libsodium runs its portable code, no faster than
	 * BoringSSL's (37-51 µs against 37-46 measured). */
	if (!sodium_runtime_has_avx())
		return "this CPU has no AVX: libsodium's portable X25519 is "
		       "no faster than BoringSSL's";
	if (!agrees(sodium_x25519, bssl))
		return "libsodium's X25519 disagreed with BoringSSL's on a "
		       "test input";
	chosen = sodium_x25519;
	return NULL;
}

enum tls_x25519_impl tls_x25519_init(const char **out_why)
{
	static char why[256];
	tls_x25519_fn *bssl = tls_x25519_boringssl();
	const char *agree, *keygen;

	chosen = bssl;
	keygen_sodium = false;
	if (sodium_init() < 0) {
		*out_why = "sodium_init failed: key agreement and key "
			   "generation by BoringSSL";
		return TLS_X25519_BORINGSSL;
	}
	agree = choose_agreement(bssl);
	keygen = choose_keygen();
	if (!agree && !keygen)
		*out_why = "key agreement and key generation by libsodium";
	else if (!agree)
		snprintf(why, sizeof(why), "key agreement by libsodium; key "
			 "generation by BoringSSL: %s", keygen);
	else if (!keygen)
		snprintf(why, sizeof(why), "key agreement by BoringSSL: %s; "
			 "key generation by libsodium", agree);
	else
		snprintf(why, sizeof(why), "key agreement by BoringSSL: %s; "
			 "key generation by BoringSSL: %s", agree, keygen);
	if (agree || keygen)
		*out_why = why;
	return agree ? TLS_X25519_BORINGSSL : TLS_X25519_LIBSODIUM;
}

enum tls_x25519_impl tls_x25519_keygen_impl(void)
{
	return keygen_sodium ? TLS_X25519_LIBSODIUM : TLS_X25519_BORINGSSL;
}

const char *tls_x25519_impl_name(enum tls_x25519_impl impl)
{
	return impl == TLS_X25519_LIBSODIUM ? "libsodium" : "boringssl";
}
