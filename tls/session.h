/* tls/session.h: one connection's TLS, through memory BIOs.
 *
 * struct tls_conn turns ciphertext into plaintext and back; it never sees
 * a socket. core/ feeds it what the client sent (tls_conn_feed), asks it
 * for what to send to the client (tls_conn_take_out), and moves plaintext
 * with tls_conn_read / tls_conn_write. Each call says what it needs next
 * as an enum tls_io.
 *
 * Before the handshake starts, the bytes fed are only collected, so core/
 * can peek at the ClientHello (tls_conn_input) and route; tls_conn_start
 * then replays them into a new SSL object. An all-zero tls_conn is valid,
 * and tls_conn_free on it is a no-op.
 *
 * Memory: the SSL object reads and writes through two BIOs over buffers
 * the tls_conn owns, each allocated when bytes arrive and freed as soon as
 * it is empty, so an idle connection holds no buffer at all. The output
 * buffer is also what core/ sends from (tls_conn_out_peek), so ciphertext
 * is copied once on its way out. A tls_conn must not move in memory once
 * started (the BIOs point at it).
 */
#ifndef VMGATE_TLS_SESSION_H
#define VMGATE_TLS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "tls/buf.h"

/* signer/keyop.h's KEYOP_DATA_MAX: the largest input and signature. */
#define TLS_KEYOP_DATA_MAX 1024

enum tls_io {
	TLS_IO_DONE,      /* the call did all it could do */
	TLS_IO_WANT_READ, /* needs more bytes from the client first */
	TLS_IO_CLOSED,    /* the client sent close_notify: no more input */
	TLS_IO_ERROR,     /* fatal; tls_conn_error_str() says why; an alert
	                   * may be waiting in the output */
	TLS_IO_WANT_KEY,  /* the handshake waits for a signature from the
	                   * signer: tls_conn_keyop_take says what to ask,
	                   * tls_conn_keyop_done gives the answer */
};

/* A signature the handshake waits for (CONFIG_KEY_SIGNER): what to sign
 * and, once the signer answered, the signature. */
struct tls_keyop {
	uint64_t key_id;
	uint16_t sigalg;
	bool taken;     /* core/ has sent it */
	bool done;      /* the answer is in */
	bool ok;
	uint16_t len;   /* bytes of data: the input, then the signature */
	uint8_t data[TLS_KEYOP_DATA_MAX];
};

struct tls_conn {
	SSL *ssl;
	struct buf in;      /* ciphertext from the client, not yet read */
	struct buf out;     /* bytes for the client, not yet sent */
	uint32_t out_cap;   /* most bytes out may hold (tls_conn_init) */
	uint16_t port;      /* listener port: picks the ALPN list */
	bool out_pinned;    /* a send from out is in flight: it must not
	                     * move or be freed */
	bool held_back;     /* TLS holds output back until the next write
	                     * (a KeyUpdate answer): flush it */
	bool tickets_held;  /* a finished TLS 1.3 handshake's session
	                     * tickets wait in TLS for the next write */
	uint8_t *out_old;   /* out's previous block, moved from while
	                     * pinned: freed when the send completes */
	char *sni; /* the name the router accepted; checked by the
	            * select-certificate callback */
	struct tls_keyop *keyop; /* a signature asked for, until the
	                          * handshake takes it; else NULL */
	const char *error; /* static reason of the last TLS_IO_ERROR */
	const char *key_error; /* static: why the signer gave no signature */
};

/* tls_conn_init sets the most bytes that may wait for the client: the
 * output grows as needed up to |out_max|, and a write that would pass it
 * fails (the connection then ends with a TLS error). core/'s backpressure
 * keeps below it: it must leave room for one more receive's worth of
 * records and for what TLS writes on its own (tickets, alerts). |port| is
 * the listener port the client came to (tls.alpn_ports). Call on an
 * all-zero tls_conn. */
void tls_conn_init(struct tls_conn *t, uint32_t out_max, uint16_t port);

/* tls_conn_feed appends |len| bytes received from the client. Returns
 * false when out of memory. */
bool tls_conn_feed(struct tls_conn *t, const uint8_t *data, size_t len);

/* tls_conn_input returns a view of the bytes fed and not yet consumed by
 * TLS; valid until the next call on |t|. */
void tls_conn_input(const struct tls_conn *t, const uint8_t **out,
		    size_t *out_len);
size_t tls_conn_input_len(const struct tls_conn *t);

/* tls_conn_start creates the SSL object from |ctx| for a client the router
 * accepted under |sni| (NUL-terminated, lowercase; copied). The bytes fed
 * so far are its first input. Returns false when out of memory. */
bool tls_conn_start(struct tls_conn *t, SSL_CTX *ctx, const char *sni);

/* tls_conn_pass is tls_conn_start for a domain with tls: passthrough: it
 * records |sni| (copied) and makes no SSL object, so the bytes fed stay
 * the client's own, taken with tls_conn_input_take, and the VM's go back
 * with tls_conn_queue_raw. Returns false when out of memory. */
bool tls_conn_pass(struct tls_conn *t, const char *sni);

/* tls_conn_input_take moves up to |cap| bytes fed into |out|, as they
 * came, and returns how many; 0 once a handshake started (they are TLS's
 * then). */
size_t tls_conn_input_take(struct tls_conn *t, uint8_t *out, size_t cap);

/* tls_conn_ask_client_cert makes the started handshake ask for a client
 * certificate and verify it against |a|'s CA bundle (chain, validity;
 * names are the VM's business), refusing a missing one when |a| requires
 * it: BoringSSL then sends certificate_required (TLS 1.3) or
 * handshake_failure, and a bad one gets the alert of its verify error
 * (certificate_expired, unknown_ca, ...). |a| must outlive the
 * handshake. Returns false when out of memory. */
struct tls_client_auth;
bool tls_conn_ask_client_cert(struct tls_conn *t,
			      const struct tls_client_auth *a);

/* tls_conn_client_cert writes the verified client certificate's subject
 * (OpenSSL's one-line form, "/O=acme/CN=alice") into |subject| and its
 * common name, in UTF-8, into |cn| ("" without exactly one, or when it
 * does not fit |cn_cap| or holds a NUL), and says in |*fresh| whether it
 * was sent on this connection rather than in a resumed session. False,
 * with nothing written, when the client sent none. */
bool tls_conn_client_cert(const struct tls_conn *t, char *subject,
			  size_t subject_cap, char *cn, size_t cn_cap,
			  bool *fresh);

static inline bool tls_conn_started(const struct tls_conn *t)
{
	return t->ssl != NULL;
}

/* tls_conn_handshake advances the handshake: TLS_IO_DONE once complete. */
enum tls_io tls_conn_handshake(struct tls_conn *t);

/* The signer (CONFIG_KEY_SIGNER). After TLS_IO_WANT_KEY,
 * tls_conn_keyop_take returns the request once (NULL after, and when
 * there is none): key |key_id|, SignatureScheme |sigalg|, |len| bytes of
 * |data| to sign, borrowed from |t|. tls_conn_keyop_done gives the answer:
 * |ok| with |sig_len| bytes of |sig|, or !ok (no answer in time, signer
 * gone, signer refused) with |why| (static), which fails the handshake
 * with internal_error. Then call tls_conn_handshake again. */
const struct tls_keyop *tls_conn_keyop_take(struct tls_conn *t);
void tls_conn_keyop_done(struct tls_conn *t, bool ok, const uint8_t *sig,
			 size_t sig_len, const char *why);

/* tls_keyop_method is the SSL_PRIVATE_KEY_METHOD tls/ctx.c installs on
 * every SSL_CTX whose key is in the signer; the key id comes from the
 * SSL_CTX (tls_ctx_key_id). */
extern const SSL_PRIVATE_KEY_METHOD tls_keyop_method;

/* tls_conn_read decrypts up to |cap| bytes of application data into |out|;
 * |*out_len| is how many (0 with TLS_IO_WANT_READ/CLOSED/ERROR). */
enum tls_io tls_conn_read(struct tls_conn *t, size_t *out_len, uint8_t *out,
			  size_t cap);

/* tls_conn_peek is tls_conn_read without consuming: the same bytes are
 * read again by the next peek or read. */
enum tls_io tls_conn_peek(struct tls_conn *t, size_t *out_len, uint8_t *out,
			  size_t cap);

/* tls_conn_write encrypts all |len| bytes of |in| into the output. */
enum tls_io tls_conn_write(struct tls_conn *t, const uint8_t *in, size_t len);

/* tls_conn_flush moves into the output what TLS holds back until the next
 * write when a KeyUpdate that answers a client's update_requested is
 * among it (the session tickets too, if still held). Call it after
 * reading; it costs a flag test unless a KeyUpdate was read. */
enum tls_io tls_conn_flush(struct tls_conn *t);

/* The session tickets of a finished TLS 1.3 handshake stay in TLS until
 * the next write, so they leave with the first bytes for the client (the
 * VM's answer, a close_notify) rather than in a send of their own.
 * tls_conn_tickets_held says whether they still wait; tls_conn_flush_tickets
 * moves them into the output now. */
static inline bool tls_conn_tickets_held(const struct tls_conn *t)
{
	return t->tickets_held;
}

enum tls_io tls_conn_flush_tickets(struct tls_conn *t);

/* tls_conn_close_notify queues a close_notify alert, after the tickets
 * if they still wait; reading goes on. */
void tls_conn_close_notify(struct tls_conn *t);

/* tls_conn_alert queues a fatal alert |desc| (RFC 8446 6.2): a plaintext
 * record if no handshake was started (|record_version| then gives its
 * version), else through the SSL object. Nothing more is written after. */
void tls_conn_alert(struct tls_conn *t, uint8_t desc, uint16_t record_version);

/* Output for the client. tls_conn_out_peek returns the bytes waiting
 * (|*out_len| 0: none) and pins them: they stay where they are until
 * tls_conn_out_consume says how many were sent, while TLS may append more
 * behind them. One pin at a time. */
size_t tls_conn_out_len(const struct tls_conn *t);
void tls_conn_out_peek(struct tls_conn *t, const uint8_t **out,
		       size_t *out_len);
void tls_conn_out_consume(struct tls_conn *t, size_t n);

/* tls_conn_queue_raw queues |len| bytes for the client outside TLS (the
 * HTTP 400 for plain HTTP, a passthrough VM's bytes); only without
 * tls_conn_start. False if they do not fit or memory is short. */
bool tls_conn_queue_raw(struct tls_conn *t, const uint8_t *data, size_t len);

/* tls_conn_describe writes "TLSv1.3 TLS_AES_128_GCM_SHA256 alpn=h2
 * resumed=0" style facts of a finished handshake into |out|. */
void tls_conn_describe(const struct tls_conn *t, char *out, size_t cap);

/* What a finished handshake agreed, for the PROXY v2 header's TLVs
 * (core/proxyhdr.h). The strings are static or live as long as the
 * connection; NULL (alpn: length 0) where there is nothing to say. */
struct tls_facts {
	const char *version;  /* "TLSv1.3" */
	const char *cipher;   /* "TLS_AES_128_GCM_SHA256" */
	const char *sig_alg;  /* our certificate's signature: OpenSSL's short
	                       * name, "ecdsa-with-SHA256" */
	char key_alg[16];     /* our certificate's key: "EC256", "RSA2048",
	                       * "ED25519"; "" when unknown */
	const uint8_t *alpn;
	size_t alpn_len;
};

void tls_conn_facts(const struct tls_conn *t, struct tls_facts *out);

const char *tls_conn_error_str(const struct tls_conn *t);

/* tls_conn_resumed tells whether the finished handshake resumed a
 * session (a ticket). */
bool tls_conn_resumed(const struct tls_conn *t);

void tls_conn_free(struct tls_conn *t);

/* Internal to tls/: the key id tls/ctx.c keeps in an SSL_CTX for
 * tls_keyop_method; false when it has none. */
bool tls_ctx_key_id(const SSL_CTX *ctx, uint64_t *out);

/* Internal to tls/: the select-certificate callback ctx.c installs. It
 * checks that the SNI BoringSSL parsed is the name the router used. */
enum ssl_select_cert_result_t
tls_session_select_cert(const SSL_CLIENT_HELLO *hello);

#endif
