/* tls/x25519.h: the X25519 of every handshake, from the fastest
 * implementations on the machine.
 *
 * A full or resumed TLS 1.3 handshake with an X25519 key share costs the
 * server two scalar multiplications: one by the base point for its own key
 * share (X25519_keypair) and one by the client's key share for the shared
 * secret (X25519). Debian's BoringSSL does the second in portable C, where
 * libsodium's AVX code takes about 0.7 of its time on this machine (40 µs
 * against 57 per agreement). For the first, libsodium's Ed25519 base-point
 * multiplication (a larger precomputed table than Debian's BoringSSL was
 * built with) and the map from Edwards y to Montgomery u take about 0.6
 * of BoringSSL's time (14 µs against 23).
 *
 * BoringSSL has no hook for its key shares, but libssl.so calls X25519
 * and X25519_keypair from libcrypto.so through the dynamic linker, and a
 * definition in the executable comes first in its lookup: this file
 * defines both with BoringSSL's names and contracts
 * (<openssl/curve25519.h>), and vmgate's link exports them. Those names
 * are the one exception to the module prefix.
 *
 * Until tls_x25519_init has run, and whenever libsodium cannot be used,
 * both are BoringSSL's own.
 */
#ifndef VMGATE_TLS_X25519_H
#define VMGATE_TLS_X25519_H

#include <stdint.h>

/* BoringSSL's X25519 signature (<openssl/curve25519.h>). */
typedef int tls_x25519_fn(uint8_t out_shared_key[32],
			  const uint8_t private_key[32],
			  const uint8_t peer_public_value[32]);

enum tls_x25519_impl {
	TLS_X25519_BORINGSSL,
	TLS_X25519_LIBSODIUM,
};

/* tls_x25519_init chooses the implementations behind X25519 and
 * X25519_keypair and returns the first's: libsodium, once sodium_init has
 * succeeded, the CPU has AVX (libsodium's fast code) and libsodium agrees
 * with BoringSSL on a set of inputs (RFC 7748's vectors, a public value
 * with its top bit set, one of small order), else BoringSSL. Key
 * generation is libsodium's when it gives BoringSSL's public values for
 * RFC 7748's private keys and two more (tls_x25519_keygen_impl says
 * which). When a name is not the executable's (the link did not export
 * it), libssl never calls it and that answer is BoringSSL too.
 * |*out_why| gets a sentence naming both for the startup log. Call it
 * once, before any handshake and any other thread. */
enum tls_x25519_impl tls_x25519_init(const char **out_why);

/* tls_x25519_public_from_private is X25519_public_from_private by the
 * implementation X25519_keypair uses: what tests compare with
 * BoringSSL's. */
void tls_x25519_public_from_private(uint8_t out[32],
				    const uint8_t private_key[32]);

/* tls_x25519_keygen_impl says whose X25519_keypair tls_x25519_init
 * chose. */
enum tls_x25519_impl tls_x25519_keygen_impl(void);

/* tls_x25519_boringssl returns BoringSSL's own X25519, the one this file
 * stands in front of (NULL if not found): what tests compare with. */
tls_x25519_fn *tls_x25519_boringssl(void);

/* tls_x25519_impl_name is "libsodium" or "boringssl". */
const char *tls_x25519_impl_name(enum tls_x25519_impl impl);

#endif
