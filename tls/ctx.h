/* tls/ctx.h: the certificate store.
 *
 * One SSL_CTX per configured certificate, each with the same policy: TLS
 * 1.2 and 1.3 only, AEAD suites only, X25519 then P-256, the configured
 * ALPN list (server preference; tls.alpn_ports replaces it on the ports it
 * names, chosen by tls_conn.port), session tickets with BoringSSL's
 * rotating keys (in fleet mode, keys the fleet shares: tls/ticket.h), no
 * stateful session cache. BoringSSL never renegotiates as a
 * server. Certificates are chosen by the name the router accepted: an
 * exact SAN first, then a wildcard SAN, else the first certificate; and,
 * among those, by whether the key can sign in a scheme the client offered
 * (tls/sigalg.h). Several certificates may cover one name.
 *
 * tls_ctx_new puts the SAN names in two reversed-label tries (route/trie.h),
 * exact names in one and wildcards in the other, each name with its
 * certificates in configuration order: a lookup costs O(labels) plus the
 * certificates of that one name, however many names are configured.
 *
 * The store is immutable after tls_ctx_new and shared by every worker. It
 * may be freed while handshakes that use its SSL_CTXs are still running:
 * each SSL holds a reference to its SSL_CTX, and each SSL_CTX owns all it
 * needs (certificate, key or key id, ALPN list, OCSP response).
 *
 * With CONFIG_KEY_SIGNER no private key is ever read: each SSL_CTX has the
 * certificate and tls_keyop_method, and the signer holds the keys.
 *
 * A certificate entry with ocsp: staples that DER OCSP response to every
 * handshake that asks for one (status_request).
 *
 * A domain with client_auth has its CA bundle loaded here too, into an
 * X509_STORE of its own (tls_ctx_get0_client_auth), so that it reloads
 * with the certificates, in the same snapshot.
 */
#ifndef VMGATE_TLS_CTX_H
#define VMGATE_TLS_CTX_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "route/config-t.h"
#include "tls/sigalg.h"

struct tls_ctx;

/* tls_ctx_new loads every certificate and key of |cfg|. On failure it
 * returns NULL and writes "FILE: reason" to |err|. */
struct tls_ctx *tls_ctx_new(const struct config *cfg, char *err,
			    size_t err_len);
void tls_ctx_free(struct tls_ctx *t); /* NULL is fine */

/* tls_ctx_get0_for_hello returns the SSL_CTX to serve a ClientHello for
 * |name| (NUL-terminated, lowercase, as route_host_normalize writes it;
 * SANs are compared lowercased, so a |name| with an uppercase letter
 * matches none, and a SAN with an empty label, a label over 63 bytes or a
 * trailing dot matches no name) with, borrowed from |t|: the first
 * certificate, in configuration order, with an exact SAN for |name|, else
 * with a wildcard SAN covering it (one label: "*.w.test" covers a.w.test,
 * not w.test nor a.b.w.test), whose key can sign in a scheme of
 * |sigalgs| (signature_algorithms' list contents, |sigalgs_len| bytes;
 * NULL, 0: the extension is absent) at |version| (struct tls_hello's tls_version;
 * tls_sigalg_fits says what fits). When no certificate covers |name|, the
 * first certificate that fits. NULL when certificates cover |name| but
 * none fits, or none covers it and none fits: BoringSSL would fail the
 * handshake after its ServerHello. */
SSL_CTX *tls_ctx_get0_for_hello(const struct tls_ctx *t, const char *name,
				const struct tls_sigalg_offer *offer);

/* tls_ctx_get0_for_name is tls_ctx_get0_for_hello without the signature
 * check: the first certificate that covers |name|, else the first one.
 * Never NULL. */
SSL_CTX *tls_ctx_get0_for_name(const struct tls_ctx *t, const char *name);

/* A domain's client_auth, as tls_conn_ask_client_cert applies it. */
struct tls_client_auth {
	X509_STORE *ca; /* the CA bundle: chain and validity are checked */
	bool required;  /* refuse a client that sends no certificate */
	uint8_t id[16]; /* the session id context: a hash of the domain,
	                 * required and the bundle, so a session resumes only
	                 * under the same three */
};

/* tls_ctx_get0_client_auth returns the client_auth of configuration
 * domain |domain| (an index into cfg->domains, route_match.domain), or
 * NULL when it has none. Borrowed from |t|. */
const struct tls_client_auth *
tls_ctx_get0_client_auth(const struct tls_ctx *t, uint32_t domain);

/* tls_ctx_count_names returns how many SAN names the store knows, for the
 * startup log line. */
size_t tls_ctx_count_names(const struct tls_ctx *t);

/* CONFIG_KEY_SIGNER: the store holds no private key. tls_ctx_signer_keys
 * returns how many keys the signer must hold for it (0 without
 * CONFIG_KEY_SIGNER), and tls_ctx_signer_key the |i|th: its key id
 * (signer/keyop.h's keyop_key_id of the certificate's public key) and
 * its file, borrowed from |t|. A certificate's key id is in its SSL_CTX
 * for tls_keyop_method (tls/session.h). */
size_t tls_ctx_signer_keys(const struct tls_ctx *t);
void tls_ctx_signer_key(const struct tls_ctx *t, size_t i,
			uint64_t *out_key_id, const char **out_path);

/* tls_ctx_check_keys reads the private key file of each certificate in
 * |cfg| and checks that it is that certificate's key, as tls_ctx_new does
 * without CONFIG_KEY_SIGNER. For `vmgate --check` alone: with
 * CONFIG_KEY_SIGNER tls_ctx_new never reads a key (the signer does, in a
 * running vmgate), so --check's own short-lived process reads them here;
 * each is freed before the next. False with "FILE: reason" in |err|. */
bool tls_ctx_check_keys(const struct config *cfg, char *err, size_t err_len);

#endif
