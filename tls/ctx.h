/* tls/ctx.h: the certificate store.
 *
 * One SSL_CTX per configured certificate, each with the same policy: TLS
 * 1.2 and 1.3 only, AEAD suites only, X25519 then P-256, the configured
 * ALPN list (server preference; tls.alpn_ports replaces it on the ports it
 * names, chosen by tls_conn.port), session tickets with BoringSSL's
 * rotating keys, no stateful session cache. BoringSSL never renegotiates as a
 * server. Certificates are chosen by the name the router accepted: an
 * exact SAN first, then a wildcard SAN, else the first certificate.
 *
 * The store is immutable after tls_ctx_new and shared by every worker. It
 * may be freed while handshakes that use its SSL_CTXs are still running:
 * each SSL holds a reference to its SSL_CTX, and each SSL_CTX owns all it
 * needs (certificate, key, ALPN list, OCSP response).
 *
 * A certificate entry with ocsp: staples that DER OCSP response to every
 * handshake that asks for one (status_request).
 */
#ifndef VMGATE_TLS_CTX_H
#define VMGATE_TLS_CTX_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "route/config.h"

struct tls_ctx;

/* tls_ctx_new loads every certificate and key of |cfg|. On failure it
 * returns NULL and writes "FILE: reason" to |err|. */
struct tls_ctx *tls_ctx_new(const struct config *cfg, char *err,
			    size_t err_len);
void tls_ctx_free(struct tls_ctx *t); /* NULL is fine */

/* tls_ctx_get0_for_name returns the SSL_CTX whose certificate covers
 * |name| (lowercase, NUL-terminated), borrowed from |t|. Never NULL. */
SSL_CTX *tls_ctx_get0_for_name(const struct tls_ctx *t, const char *name);

/* tls_ctx_count_names returns how many SAN names the store knows, for the
 * startup log line. */
size_t tls_ctx_count_names(const struct tls_ctx *t);

#endif
