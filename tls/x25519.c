/* tls/x25519.c: see x25519.h. */
#include "tls/x25519.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <openssl/curve25519.h>
#include <sodium.h>

/* Written once by tls_x25519_init before any other thread exists; NULL
 * before (or in a program that never calls it): BoringSSL's. */
static tls_x25519_fn *chosen;

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

enum tls_x25519_impl tls_x25519_init(const char **out_why)
{
	tls_x25519_fn *bssl = tls_x25519_boringssl();

	chosen = bssl;
	if (dlsym(RTLD_DEFAULT, "X25519") != (void *)X25519) {
		*out_why = "this executable does not export X25519, so "
			   "libssl calls BoringSSL's";
		return TLS_X25519_BORINGSSL;
	}
	if (!bssl) {
		*out_why = "BoringSSL's X25519 was not found to check "
			   "libsodium's against";
		return TLS_X25519_BORINGSSL;
	}
	if (sodium_init() < 0) {
		*out_why = "sodium_init failed";
		return TLS_X25519_BORINGSSL;
	}
	/* Without AVX libsodium runs its portable code, no faster than
	 * BoringSSL's (37-51 µs against 37-46 measured). */
	if (!sodium_runtime_has_avx()) {
		*out_why = "this CPU has no AVX: libsodium's portable X25519 "
			   "is no faster than BoringSSL's";
		return TLS_X25519_BORINGSSL;
	}
	if (!agrees(sodium_x25519, bssl)) {
		*out_why = "libsodium's X25519 disagreed with BoringSSL's "
			   "on a test input";
		return TLS_X25519_BORINGSSL;
	}
	chosen = sodium_x25519;
	*out_why = "key agreement by libsodium, key generation by "
		   "BoringSSL";
	return TLS_X25519_LIBSODIUM;
}

const char *tls_x25519_impl_name(enum tls_x25519_impl impl)
{
	return impl == TLS_X25519_LIBSODIUM ? "libsodium" : "boringssl";
}
