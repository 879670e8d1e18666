/* fuzz/x25519.c: libFuzzer target for tls/x25519.c, the X25519 libssl
 * calls for every handshake's key agreement, on the client's key share:
 * bytes a stranger chose; and its key generation.
 *
 * Differential: the input's first 32 bytes are the private scalar, the
 * next 32 the peer's public value (shorter inputs are zero-padded). The
 * X25519 tls_x25519_init chose (libsodium) and BoringSSL's own must return
 * the same, and on success write the same shared key; the public value of
 * the scalar must be BoringSSL's. Aborts otherwise, and if either choice
 * was not libsodium (the target would compare BoringSSL with itself).
 *
 * Seed corpus: fuzz/corpus/x25519/ (RFC 7748's vectors, points of small
 * order, public values at and above p, with the top bit set).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/curve25519.h>

#include "tls/x25519.h"

static tls_x25519_fn *boringssl;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *why;

	boringssl = tls_x25519_boringssl();
	if (!boringssl || tls_x25519_init(&why) != TLS_X25519_LIBSODIUM ||
	    tls_x25519_keygen_impl() != TLS_X25519_LIBSODIUM)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t in[64] = { 0 }, a[32], b[32];
	int ra, rb;

	memcpy(in, data, size < sizeof(in) ? size : sizeof(in));
	ra = X25519(a, in, in + 32);
	rb = boringssl(b, in, in + 32);
	if (ra != rb || (rb && memcmp(a, b, sizeof(a)) != 0))
		abort();
	tls_x25519_public_from_private(a, in);
	X25519_public_from_private(b, in);
	if (memcmp(a, b, sizeof(a)) != 0)
		abort();
	return 0;
}
