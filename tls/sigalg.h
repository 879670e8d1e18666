/* tls/sigalg.h: will BoringSSL find a signature scheme for this key?
 *
 * The server signs the handshake with its certificate's key, in a
 * SignatureScheme the client listed in signature_algorithms (RFC 8446
 * 4.2.3 and 4.4.3; RFC 5246 7.4.1.4.1). BoringSSL picks the scheme only
 * after it has sent ServerHello, and fails the handshake there when none
 * fits. The router decides the same question earlier, from the raw
 * ClientHello, so that a hello it will refuse is refused before any
 * ServerHello or key work, and so that it can serve another certificate
 * for the name instead.
 *
 * The rules are BoringSSL's (ssl/extensions.cc
 * tls1_choose_signature_algorithm, ssl/ssl_privkey.cc), for an SSL_CTX
 * that sets no signing preferences of its own, as tls/ctx.c's do: BoringSSL
 * walks its default signing list in its order and takes the first scheme
 * the key can make that the client listed.
 *   - TLS 1.3: an RSA key signs only with rsa_pss_rsae_*, an ECDSA key only
 *     with the scheme of its own curve (P-256 ecdsa_secp256r1_sha256, ...),
 *     never with SHA-1.
 *   - TLS 1.2: an RSA key also with rsa_pkcs1_*, an ECDSA key with any
 *     ecdsa_* scheme BoringSSL knows (SHA-1, -256, -384, -512) whatever its
 *     curve. A hello without the extension is read as {rsa_pkcs1_sha1,
 *     ecdsa_sha1} (RFC 5246 7.4.1.4.1).
 *   - Both: rsa_pss_* needs a modulus of at least 2 * hash + 2 bytes (a
 *     1024-bit key cannot make rsa_pss_rsae_sha512); ed25519 for an
 *     Ed25519 key. ecdsa_sha224 and the other schemes BoringSSL does not
 *     implement never fit.
 *
 * Everything here is pure but tls_sigalg_key_init, which reads a loaded
 * key.
 */
#ifndef VMGATE_TLS_SIGALG_H
#define VMGATE_TLS_SIGALG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

enum tls_sigalg_key_type {
	TLS_SIGALG_KEY_NONE,     /* none BoringSSL signs with: nothing fits */
	TLS_SIGALG_KEY_RSA,
	TLS_SIGALG_KEY_P256,
	TLS_SIGALG_KEY_P384,
	TLS_SIGALG_KEY_P521,
	TLS_SIGALG_KEY_EC_OTHER, /* another curve: TLS 1.2 only */
	TLS_SIGALG_KEY_ED25519,
};

/* What the choice depends on in a certificate's private key. */
struct tls_sigalg_key {
	enum tls_sigalg_key_type type;
	size_t rsa_len; /* RSA: modulus bytes (EVP_PKEY_size) */
};

/* tls_sigalg_key_init describes |pkey| (NULL: TLS_SIGALG_KEY_NONE). */
void tls_sigalg_key_init(struct tls_sigalg_key *out, const EVP_PKEY *pkey);

/* tls_sigalg_choose sets |*out_sigalg| to the SignatureScheme BoringSSL
 * signs with for |key| at |version| (0x0303 or 0x0304) when the client
 * offered |sigalgs| (the list's contents, |sigalgs_len| bytes of u16
 * values; NULL, 0: no signature_algorithms extension), and returns true;
 * returns false when no scheme fits. */
bool tls_sigalg_choose(uint16_t *out_sigalg, const struct tls_sigalg_key *key,
		       uint16_t version, const uint8_t *sigalgs,
		       size_t sigalgs_len);

/* tls_sigalg_fits answers whether a certificate with |key| can serve the
 * hello: false only when BoringSSL would certainly fail for want of a
 * scheme. So it is true when |version| is 0 (BoringSSL refuses the hello
 * for its version first), and for a TLS 1.3 hello without the extension:
 * that needs no signature when BoringSSL resumes a session from a
 * pre_shared_key, and otherwise BoringSSL refuses it itself
 * (handshake_failure). */
bool tls_sigalg_fits(const struct tls_sigalg_key *key, uint16_t version,
		     const uint8_t *sigalgs, size_t sigalgs_len);

/* The key a TLS 1.2 cipher suite of tls/ctx.c's list needs: RSA, or ECDSA
 * (which Ed25519 keys use too); NONE for any other suite. */
enum tls_suite_auth { TLS_SUITE_NONE, TLS_SUITE_RSA, TLS_SUITE_ECDSA };
enum tls_suite_auth tls_sigalg_suite_auth(uint16_t suite);

/* What a ClientHello offers that a certificate's fit depends on. */
struct tls_sigalg_offer {
	uint16_t version; /* struct tls_hello's tls_version */
	const uint8_t *sigalgs; /* signature_algorithms; NULL, 0: absent */
	size_t sigalgs_len;
	/* TLS 1.2 (struct tls_hello): the cipher suites, NULL when not
	 * looked at, and supported_groups. */
	const uint8_t *suites;
	size_t suites_len;
	const uint8_t *groups;
	size_t groups_len;
	bool groups_present;
};

/* tls_sigalg_offer_fits is tls_sigalg_fits, and in TLS 1.2 also what
 * BoringSSL asks of the key besides a scheme (ssl/handshake_server.cc,
 * choosing the cipher suite): a suite of tls/ctx.c's TLS 1.2 list for the
 * key's type among the client's (ECDHE-RSA for an RSA key, ECDHE-ECDSA for
 * an ECDSA or Ed25519 one): without one BoringSSL fails the handshake
 * with no shared cipher, where another certificate of the name's would
 * have served. And an ECDSA key's curve among the client's
 * supported_groups when it sent that extension (RFC 8422 5.1: a client
 * that did not supports every curve): BoringSSL does not ask that, but a
 * client may refuse the certificate (OpenSSL's do), so tls/ctx.c prefers
 * a certificate that passes and falls back to one that does not. */
bool tls_sigalg_offer_fits(const struct tls_sigalg_key *key,
			   const struct tls_sigalg_offer *o);

#endif
