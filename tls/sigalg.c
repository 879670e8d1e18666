/* tls/sigalg.c: see sigalg.h. */
#include "tls/sigalg.h"

#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/ssl.h>

enum { TLS12 = 0x0303, TLS13 = 0x0304 };

struct scheme {
	uint16_t sigalg;
	enum tls_sigalg_key_type key; /* for ECDSA: the curve TLS 1.3 binds */
	bool ecdsa;                   /* any EC key, in TLS 1.2 */
	bool rsa_pss;
	uint8_t hash_len;             /* bytes; 0: none (ed25519) */
};

/* BoringSSL's default signing list, in its order of preference
 * (kSignSignatureAlgorithms in ssl/extensions.cc): the first that the key
 * can make and the client offers is the one it signs with. */
static const struct scheme schemes[] = {
	{ SSL_SIGN_ED25519, TLS_SIGALG_KEY_ED25519, false, false, 0 },
	{ SSL_SIGN_ECDSA_SECP256R1_SHA256, TLS_SIGALG_KEY_P256, true, false,
	  32 },
	{ SSL_SIGN_RSA_PSS_RSAE_SHA256, TLS_SIGALG_KEY_RSA, false, true, 32 },
	{ SSL_SIGN_RSA_PKCS1_SHA256, TLS_SIGALG_KEY_RSA, false, false, 32 },
	{ SSL_SIGN_ECDSA_SECP384R1_SHA384, TLS_SIGALG_KEY_P384, true, false,
	  48 },
	{ SSL_SIGN_RSA_PSS_RSAE_SHA384, TLS_SIGALG_KEY_RSA, false, true, 48 },
	{ SSL_SIGN_RSA_PKCS1_SHA384, TLS_SIGALG_KEY_RSA, false, false, 48 },
	{ SSL_SIGN_ECDSA_SECP521R1_SHA512, TLS_SIGALG_KEY_P521, true, false,
	  64 },
	{ SSL_SIGN_RSA_PSS_RSAE_SHA512, TLS_SIGALG_KEY_RSA, false, true, 64 },
	{ SSL_SIGN_RSA_PKCS1_SHA512, TLS_SIGALG_KEY_RSA, false, false, 64 },
	/* SHA-1 has no curve: never in TLS 1.3. */
	{ SSL_SIGN_ECDSA_SHA1, TLS_SIGALG_KEY_NONE, true, false, 20 },
	{ SSL_SIGN_RSA_PKCS1_SHA1, TLS_SIGALG_KEY_RSA, false, false, 20 },
};

/* What a TLS 1.2 client without signature_algorithms accepts
 * (RFC 5246 7.4.1.4.1), as BoringSSL reads it. */
static const uint8_t tls12_default[] = { 0x02, 0x01, 0x02, 0x03 };

void tls_sigalg_key_init(struct tls_sigalg_key *out, const EVP_PKEY *pkey)
{
	out->type = TLS_SIGALG_KEY_NONE;
	out->rsa_len = 0;
	if (!pkey)
		return;
	switch (EVP_PKEY_id(pkey)) {
	case EVP_PKEY_RSA:
		out->type = TLS_SIGALG_KEY_RSA;
		out->rsa_len = (size_t)EVP_PKEY_size(pkey);
		break;
	case EVP_PKEY_ED25519:
		out->type = TLS_SIGALG_KEY_ED25519;
		break;
	case EVP_PKEY_EC:
		switch (EC_GROUP_get_curve_name(EC_KEY_get0_group(
			EVP_PKEY_get0_EC_KEY(pkey)))) {
		case NID_X9_62_prime256v1:
			out->type = TLS_SIGALG_KEY_P256;
			break;
		case NID_secp384r1:
			out->type = TLS_SIGALG_KEY_P384;
			break;
		case NID_secp521r1:
			out->type = TLS_SIGALG_KEY_P521;
			break;
		default:
			out->type = TLS_SIGALG_KEY_EC_OTHER;
			break;
		}
		break;
	}
}

static bool is_ec(enum tls_sigalg_key_type t)
{
	return t == TLS_SIGALG_KEY_P256 || t == TLS_SIGALG_KEY_P384 ||
	       t == TLS_SIGALG_KEY_P521 || t == TLS_SIGALG_KEY_EC_OTHER;
}

/* BoringSSL's ssl_private_key_supports_signature_algorithm. */
static bool key_can(const struct tls_sigalg_key *key, const struct scheme *s,
		    uint16_t version)
{
	if (s->ecdsa) {
		if (!is_ec(key->type))
			return false;
		/* TLS 1.3 binds the curve to the scheme (RFC 8446 4.2.3). */
		return version < TLS13 || key->type == s->key;
	}
	if (key->type != s->key)
		return false;
	if (s->key != TLS_SIGALG_KEY_RSA)
		return true;
	/* TLS 1.3 signs with RSA only in PSS (RFC 8446 4.2.3); PSS with
	 * salt = hash needs emLen >= 2 * hLen + 2 (RFC 8017 9.1.1). */
	if (!s->rsa_pss)
		return version < TLS13;
	return key->rsa_len >= 2 * (size_t)s->hash_len + 2;
}

static bool offered(const uint8_t *sigalgs, size_t sigalgs_len,
		    uint16_t sigalg)
{
	CBS list;
	uint16_t v;

	CBS_init(&list, sigalgs, sigalgs_len);
	while (CBS_get_u16(&list, &v))
		if (v == sigalg)
			return true;
	return false;
}

bool tls_sigalg_choose(uint16_t *out_sigalg, const struct tls_sigalg_key *key,
		       uint16_t version, const uint8_t *sigalgs,
		       size_t sigalgs_len)
{
	size_t i;

	if (!sigalgs_len && version < TLS13) {
		sigalgs = tls12_default;
		sigalgs_len = sizeof(tls12_default);
	}
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		if (key_can(key, &schemes[i], version) &&
		    offered(sigalgs, sigalgs_len, schemes[i].sigalg)) {
			*out_sigalg = schemes[i].sigalg;
			return true;
		}
	}
	return false;
}

bool tls_sigalg_fits(const struct tls_sigalg_key *key, uint16_t version,
		     const uint8_t *sigalgs, size_t sigalgs_len)
{
	uint16_t unused;

	if (version < TLS12 || (version >= TLS13 && !sigalgs_len))
		return true;
	return tls_sigalg_choose(&unused, key, version, sigalgs, sigalgs_len);
}

enum tls_suite_auth tls_sigalg_suite_auth(uint16_t suite)
{
	switch (suite) {
	case 0xc02f: /* ECDHE-RSA-AES128-GCM-SHA256 */
	case 0xc030: /* ECDHE-RSA-AES256-GCM-SHA384 */
	case 0xcca8: /* ECDHE-RSA-CHACHA20-POLY1305 */
		return TLS_SUITE_RSA;
	case 0xc02b: /* ECDHE-ECDSA-AES128-GCM-SHA256 */
	case 0xc02c: /* ECDHE-ECDSA-AES256-GCM-SHA384 */
	case 0xcca9: /* ECDHE-ECDSA-CHACHA20-POLY1305 */
		return TLS_SUITE_ECDSA;
	default:
		return TLS_SUITE_NONE;
	}
}

static bool offers_suite(const uint8_t *suites, size_t suites_len,
			 enum tls_suite_auth auth)
{
	CBS list;
	uint16_t v;

	CBS_init(&list, suites, suites_len);
	while (CBS_get_u16(&list, &v))
		if (tls_sigalg_suite_auth(v) == auth)
			return true;
	return false;
}

bool tls_sigalg_offer_fits(const struct tls_sigalg_key *key,
			   const struct tls_sigalg_offer *o)
{
	uint16_t group;

	if (!tls_sigalg_fits(key, o->version, o->sigalgs, o->sigalgs_len))
		return false;
	if (o->version != TLS12 || !o->suites)
		return true;
	if (key->type == TLS_SIGALG_KEY_RSA)
		return offers_suite(o->suites, o->suites_len, TLS_SUITE_RSA);
	if (!offers_suite(o->suites, o->suites_len, TLS_SUITE_ECDSA))
		return false;
	switch (key->type) {
	case TLS_SIGALG_KEY_P256:
		group = 23; /* secp256r1 */
		break;
	case TLS_SIGALG_KEY_P384:
		group = 24;
		break;
	case TLS_SIGALG_KEY_P521:
		group = 25;
		break;
	case TLS_SIGALG_KEY_EC_OTHER:
		return !o->groups_present;
	default:
		return true; /* Ed25519: no curve to agree on */
	}
	/* A list of u16 values like signature_algorithms': offered(). */
	return !o->groups_present || offered(o->groups, o->groups_len, group);
}
