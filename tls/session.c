/* tls/session.c: see session.h. */
#include "tls/session.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#include "core/kconfig.h" /* TLS_SESSION_TICKETS: build-time only */
#include "tls/alert.h"
#include "tls/ctx.h"

/* Buffers: allocated when the first byte comes, sized to what is pending,
 * and freed when the last byte goes, so an idle connection holds none. */
#define TLS_BUF_MIN 4096
#define TLS_IN_MIN 512

/* Sized to what is pending: a hello trickling in from 8,000 slow clients
 * must not cost 8,000 full buffers. */
static bool in_append(struct buf *b, const uint8_t *data, size_t len)
{
	return buf_append(b, data, len, TLS_IN_MIN, UINT32_MAX);
}

static size_t in_take(struct buf *b, uint8_t *out, size_t cap)
{
	size_t n = b->len < cap ? b->len : cap;

	memcpy(out, buf_head(b), n);
	buf_consume(b, n);
	if (!b->len)
		buf_free(b);
	return n;
}

static bool out_reserve(struct tls_conn *t, size_t len)
{
	struct buf *b = &t->out;
	size_t limit = t->out_cap ? t->out_cap : 65536 + 65536;
	size_t need = (size_t)b->len + len, cap;
	uint8_t *n;

	if (len <= buf_room(b))
		return true;
	/* A pinned block is the kernel's until the send completes: it may
	 * neither move its bytes nor be realloc'd. */
	if (!t->out_pinned && need <= b->cap) {
		buf_compact(b);
		return true;
	}
	if (need > limit)
		return false;
	for (cap = b->cap ? b->cap : TLS_BUF_MIN; cap < need; cap *= 2)
		;
	if (cap > limit)
		cap = limit;
	n = malloc(cap);
	if (!n)
		return false;
	if (b->len)
		memcpy(n, buf_head(b), b->len);
	b->off = 0;
	/* Only the block current when the send was posted is the kernel's;
	 * one moved to since can go at once. */
	if (t->out_pinned && !t->out_old)
		t->out_old = b->data;
	else
		free(b->data);
	b->data = n;
	b->cap = (uint32_t)cap;
	return true;
}

/* Appends to the output; returns how many bytes fitted. */
static size_t out_append(struct tls_conn *t, const uint8_t *data, size_t len)
{
	struct buf *b = &t->out;
	size_t room;

	if (!out_reserve(t, len) && !b->data)
		return 0;
	room = buf_room(b);
	if (len > room)
		len = room;
	memcpy(buf_tail(b), data, len);
	b->len += (uint32_t)len;
	return len;
}

void tls_conn_init(struct tls_conn *t, uint32_t out_max, uint16_t port)
{
	t->out_cap = out_max;
	t->port = port;
}

/* The two BIOs the SSL object sees: reads come from t->in, writes go to
 * t->out. Neither touches a socket. */
static int bio_in_read(BIO *bio, char *out, int len)
{
	struct tls_conn *t = BIO_get_data(bio);

	BIO_clear_retry_flags(bio);
	if (len <= 0)
		return 0;
	if (!t->in.len) {
		BIO_set_retry_read(bio);
		return -1;
	}
	return (int)in_take(&t->in, (uint8_t *)out, (size_t)len);
}

static int bio_out_write(BIO *bio, const char *in, int len)
{
	struct tls_conn *t = BIO_get_data(bio);
	size_t n;

	BIO_clear_retry_flags(bio);
	if (len <= 0)
		return 0;
	n = out_append(t, (const uint8_t *)in, (size_t)len);
	if (!n) {
		/* core/'s backpressure keeps this from happening; if it
		 * does, TLS keeps the record and reports WANT_WRITE. */
		BIO_set_retry_write(bio);
		return -1;
	}
	return (int)n;
}

static long bio_ctrl(BIO *bio, int cmd, long larg, void *parg)
{
	struct tls_conn *t = BIO_get_data(bio);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return t ? (long)t->in.len : 0;
	case BIO_CTRL_WPENDING:
		return t ? (long)t->out.len : 0;
	default:
		return 0;
	}
}

static BIO_METHOD *bio_in_method, *bio_out_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_methods_init(void)
{
	bio_in_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				     "vmgate-in");
	bio_out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
				      "vmgate-out");
	if (!bio_in_method || !bio_out_method)
		return;
	BIO_meth_set_read(bio_in_method, bio_in_read);
	BIO_meth_set_ctrl(bio_in_method, bio_ctrl);
	BIO_meth_set_write(bio_out_method, bio_out_write);
	BIO_meth_set_ctrl(bio_out_method, bio_ctrl);
}

static BIO *bio_new(BIO_METHOD *method, struct tls_conn *t)
{
	BIO *bio = method ? BIO_new(method) : NULL;

	if (bio) {
		BIO_set_data(bio, t);
		BIO_set_init(bio, 1);
	}
	return bio;
}

bool tls_conn_feed(struct tls_conn *t, const uint8_t *data, size_t len)
{
	return in_append(&t->in, data, len);
}

void tls_conn_input(const struct tls_conn *t, const uint8_t **out,
		    size_t *out_len)
{
	*out = t->in.len ? buf_head(&t->in) : NULL;
	*out_len = t->in.len;
}

size_t tls_conn_input_len(const struct tls_conn *t)
{
	return t->in.len;
}

/* A client's KeyUpdate (RFC 8446 4.6.3) with update_requested makes
 * BoringSSL queue its own KeyUpdate, which it sends only with the next
 * write; the VM may have nothing to say. Note it, so tls_conn_flush writes
 * only then and not after every read (an empty SSL_write costs about 800
 * instructions, a fifth of them clearing the error queue). */
static void on_message(int is_write, int version, int content_type,
		       const void *buf, size_t len, SSL *ssl, void *arg)
{
	struct tls_conn *t = arg;

	(void)version;
	(void)ssl;
	if (!is_write && content_type == SSL3_RT_HANDSHAKE && len &&
	    *(const uint8_t *)buf == SSL3_MT_KEY_UPDATE)
		t->held_back = true;
}

bool tls_conn_start(struct tls_conn *t, SSL_CTX *ctx, const char *sni)
{
	BIO *in, *out;

	pthread_once(&bio_once, bio_methods_init);
	t->sni = strdup(sni);
	t->ssl = SSL_new(ctx);
	if (!t->sni || !t->ssl)
		return false;
	in = bio_new(bio_in_method, t);
	out = bio_new(bio_out_method, t);
	if (!in || !out) {
		BIO_free(in);
		BIO_free(out);
		return false;
	}
	SSL_set_bio(t->ssl, in, out); /* the SSL object owns them */
	SSL_set_app_data(t->ssl, t);
	SSL_set_msg_callback(t->ssl, on_message);
	SSL_set_msg_callback_arg(t->ssl, t);
	SSL_set_accept_state(t->ssl);
	/* Nothing renegotiates or re-handshakes as a server: the handshake
	 * configuration can go once the handshake is done. */
	SSL_set_shed_handshake_config(t->ssl, 1);
	return true;
}

bool tls_conn_pass(struct tls_conn *t, const char *sni)
{
	t->sni = strdup(sni);
	return t->sni != NULL;
}

size_t tls_conn_input_take(struct tls_conn *t, uint8_t *out, size_t cap)
{
	if (t->ssl || !t->in.len)
		return 0;
	return in_take(&t->in, out, cap);
}

bool tls_conn_ask_client_cert(struct tls_conn *t,
			      const struct tls_client_auth *a)
{
	int mode = SSL_VERIFY_PEER;

	if (a->required)
		mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	if (!SSL_set1_verify_cert_store(t->ssl, a->ca) ||
	    !SSL_set_session_id_context(t->ssl, a->id, sizeof(a->id)))
		return false;
	SSL_set_verify(t->ssl, mode, NULL);
	return true;
}

/* The one common name of |name| in UTF-8 into |cn| (|cap| bytes with the
 * NUL), or "": none, more than one, one that does not fit, or one with a
 * NUL in it. A VM may authorise on it: never a part of a name, and never
 * the first of two. */
static void common_name(const X509_NAME *name, char *cn, size_t cap)
{
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1), len;
	unsigned char *utf8 = NULL;

	cn[0] = '\0';
	if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
		return;
	len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(
						 X509_NAME_get_entry(name, i)));
	if (len > 0 && (size_t)len < cap && !memchr(utf8, '\0', (size_t)len)) {
		memcpy(cn, utf8, (size_t)len);
		cn[len] = '\0';
	}
	OPENSSL_free(utf8);
}

bool tls_conn_client_cert(const struct tls_conn *t, char *subject,
			  size_t subject_cap, char *cn, size_t cn_cap,
			  bool *fresh)
{
	X509 *x;
	X509_NAME *name;

	/* A certificate that failed verification failed the handshake, but
	 * it is still there to see: only a verified one is passed on. */
	if (!t->ssl || SSL_get_verify_result(t->ssl) != X509_V_OK ||
	    !(x = SSL_get_peer_certificate(t->ssl)))
		return false;
	name = X509_get_subject_name(x);
	X509_NAME_oneline(name, subject, (int)subject_cap);
	common_name(name, cn, cn_cap);
	X509_free(x);
	*fresh = !SSL_session_reused(t->ssl);
	return true;
}

/* The second opinion: BoringSSL parsed the same ClientHello the router
 * did, and must have found the same name in it. */
enum ssl_select_cert_result_t
tls_session_select_cert(const SSL_CLIENT_HELLO *hello)
{
	const struct tls_conn *t = SSL_get_app_data(hello->ssl);
	const char *name = SSL_get_servername(hello->ssl,
					      TLSEXT_NAMETYPE_host_name);

	if (!t || !t->sni || !name || strcasecmp(name, t->sni) != 0)
		return ssl_select_cert_error;
	return ssl_select_cert_success;
}

/* The private key lives in the signer: |sign| only notes what to sign
 * and answers retry; core/ sends it, and when the answer is in, the
 * handshake resumes in |complete|. */
static enum ssl_private_key_result_t keyop_sign(SSL *ssl, uint8_t *out,
						size_t *out_len,
						size_t max_out,
						uint16_t sigalg,
						const uint8_t *in,
						size_t in_len)
{
	struct tls_conn *t = SSL_get_app_data(ssl);
	struct tls_keyop *k;
	uint64_t key_id;

	if (!t || t->keyop || in_len > TLS_KEYOP_DATA_MAX ||
	    !tls_ctx_key_id(SSL_get_SSL_CTX(ssl), &key_id))
		return ssl_private_key_failure;
	k = calloc(1, sizeof(*k));
	if (!k)
		return ssl_private_key_failure;
	k->key_id = key_id;
	k->sigalg = sigalg;
	k->len = (uint16_t)in_len;
	memcpy(k->data, in, in_len);
	t->keyop = k;
	return ssl_private_key_retry;
}

static enum ssl_private_key_result_t keyop_decrypt(SSL *ssl, uint8_t *out,
						   size_t *out_len,
						   size_t max_out,
						   const uint8_t *in,
						   size_t in_len)
{
	/* RSA key exchange: not among tls/ctx.c's suites. */
	return ssl_private_key_failure;
}

static enum ssl_private_key_result_t keyop_complete(SSL *ssl, uint8_t *out,
						    size_t *out_len,
						    size_t max_out)
{
	struct tls_conn *t = SSL_get_app_data(ssl);
	struct tls_keyop *k = t ? t->keyop : NULL;
	bool ok;

	if (!k)
		return ssl_private_key_failure;
	if (!k->done)
		return ssl_private_key_retry;
	ok = k->ok && k->len <= max_out;
	if (ok) {
		memcpy(out, k->data, k->len);
		*out_len = k->len;
	} else if (k->ok) {
		t->key_error = "signer: a signature of a wrong length";
	}
	free(k);
	t->keyop = NULL;
	return ok ? ssl_private_key_success : ssl_private_key_failure;
}

const SSL_PRIVATE_KEY_METHOD tls_keyop_method = {
	.sign = keyop_sign,
	.decrypt = keyop_decrypt,
	.complete = keyop_complete,
};

const struct tls_keyop *tls_conn_keyop_take(struct tls_conn *t)
{
	if (!t->keyop || t->keyop->taken || t->keyop->done)
		return NULL;
	t->keyop->taken = true;
	return t->keyop;
}

void tls_conn_keyop_done(struct tls_conn *t, bool ok, const uint8_t *sig,
			 size_t sig_len, const char *why)
{
	struct tls_keyop *k = t->keyop;

	if (!k || k->done)
		return;
	k->done = true;
	/* The signer is not trusted to answer well: no signature, or one
	 * longer than any of this key's, is its failure, said as such. */
	if (ok && (!sig_len || sig_len > sizeof(k->data))) {
		ok = false;
		why = "signer: a signature of a wrong length";
	}
	k->ok = ok;
	k->len = ok ? (uint16_t)sig_len : 0;
	if (ok)
		memcpy(k->data, sig, sig_len);
	else
		t->key_error = why ? why : "signer failed";
}

static enum tls_io io_result(struct tls_conn *t, int ret)
{
	unsigned long e;

	switch (SSL_get_error(t->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_IO_WANT_READ;
	case SSL_ERROR_WANT_PRIVATE_KEY_OPERATION:
		return TLS_IO_WANT_KEY;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_IO_CLOSED;
	case SSL_ERROR_WANT_WRITE:
		/* The output is at its limit: core/'s backpressure is
		 * meant to make this impossible. */
		t->error = "TLS output over its limit";
		ERR_clear_error();
		return TLS_IO_ERROR;
	case SSL_ERROR_SSL:
		e = ERR_peek_error();
		/* The signer's failure says more than BoringSSL's
		 * PRIVATE_KEY_OPERATION_FAILED. */
		t->error = t->key_error ? t->key_error
			   : e		? ERR_reason_error_string(e)
					: NULL;
		if (!t->error)
			t->error = "TLS error";
		ERR_clear_error();
		/* BoringSSL fails a handshake whose key operation failed
		 * without a word to the client: tell it (RFC 8446 6.2). */
		if (t->key_error) {
			SSL_send_fatal_alert(t->ssl, SSL_AD_INTERNAL_ERROR);
			ERR_clear_error();
		}
		return TLS_IO_ERROR;
	default:
		t->error = "unexpected TLS state";
		ERR_clear_error();
		return TLS_IO_ERROR;
	}
}

enum tls_io tls_conn_handshake(struct tls_conn *t)
{
	int ret;

	/* SSL_do_handshake, SSL_read and SSL_write clear the thread's error
	 * queue themselves, and every path here leaves it empty. */
	ret = SSL_do_handshake(t->ssl);
	if (ret == 1) {
		/* TLS 1.3 tickets wait for the next write (TLS 1.2 sends its
		 * ticket inside the handshake). */
		t->tickets_held = IS_ENABLED(CONFIG_TLS_SESSION_TICKETS) &&
				  SSL_version(t->ssl) == TLS1_3_VERSION;
		return TLS_IO_DONE;
	}
	return io_result(t, ret);
}

enum tls_io tls_conn_read(struct tls_conn *t, size_t *out_len, uint8_t *out,
			  size_t cap)
{
	int ret;

	*out_len = 0;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	ret = SSL_read(t->ssl, out, (int)cap);
	if (ret > 0) {
		*out_len = (size_t)ret;
		return TLS_IO_DONE;
	}
	return io_result(t, ret);
}

enum tls_io tls_conn_peek(struct tls_conn *t, size_t *out_len, uint8_t *out,
			  size_t cap)
{
	int ret;

	*out_len = 0;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	ret = SSL_peek(t->ssl, out, (int)cap);
	if (ret > 0) {
		*out_len = (size_t)ret;
		return TLS_IO_DONE;
	}
	return io_result(t, ret);
}

enum tls_io tls_conn_write(struct tls_conn *t, const uint8_t *in, size_t len)
{
	int ret;

	if (!len)
		return TLS_IO_DONE;
	/* The output BIO pushes back only at its limit, which core/'s
	 * backpressure keeps clear of, so SSL_write takes it all. */
	ret = SSL_write(t->ssl, in, (int)len);
	if (ret == (int)len) {
		/* What TLS held back went out first. */
		t->tickets_held = false;
		return TLS_IO_DONE;
	}
	return io_result(t, ret);
}

enum tls_io tls_conn_flush(struct tls_conn *t)
{
	int ret;

	/* After close_notify nothing more may be written, and there is
	 * nothing to answer. */
	if (!t->held_back)
		return TLS_IO_DONE;
	t->held_back = false;
	t->tickets_held = false;
	if (!t->ssl || (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
		return TLS_IO_DONE;
	/* BoringSSL keeps what it writes after the handshake (TLS 1.3
	 * NewSessionTicket, the KeyUpdate answering update_requested) until
	 * the next write: a write of nothing sends it now. */
	ret = SSL_write(t->ssl, "", 0);
	if (ret >= 0 && !ERR_peek_error())
		return TLS_IO_DONE;
	return io_result(t, ret);
}

enum tls_io tls_conn_flush_tickets(struct tls_conn *t)
{
	if (!t->tickets_held)
		return TLS_IO_DONE;
	t->held_back = true;
	return tls_conn_flush(t);
}

void tls_conn_close_notify(struct tls_conn *t)
{
	if (!t->ssl)
		return;
	/* An alert does not take what TLS holds back along: the tickets
	 * would be lost. (A failure here fails the close_notify too.) */
	(void)tls_conn_flush_tickets(t);
	ERR_clear_error();
	/* The first call sends close_notify and returns 0: it does not wait
	 * for the client's, so client -> VM keeps flowing. */
	SSL_shutdown(t->ssl);
	ERR_clear_error();
}

void tls_conn_alert(struct tls_conn *t, uint8_t desc, uint16_t record_version)
{
	uint8_t rec[TLS_ALERT_RECORD_LEN];
	size_t len;

	if (t->ssl) {
		ERR_clear_error();
		SSL_send_fatal_alert(t->ssl, desc);
		ERR_clear_error();
		return;
	}
	if (tls_alert_build(rec, &len, sizeof(rec), record_version, desc))
		out_append(t, rec, len);
}

bool tls_conn_queue_raw(struct tls_conn *t, const uint8_t *data, size_t len)
{
	/* All or nothing: a partial HTTP answer or alert is worse than none. */
	return !t->ssl && out_reserve(t, len) &&
	       out_append(t, data, len) == len;
}

size_t tls_conn_out_len(const struct tls_conn *t)
{
	return t->out.len;
}

void tls_conn_out_peek(struct tls_conn *t, const uint8_t **out,
		       size_t *out_len)
{
	*out = t->out.len ? buf_head(&t->out) : NULL;
	*out_len = t->out.len;
	t->out_pinned = t->out.len != 0;
}

void tls_conn_out_consume(struct tls_conn *t, size_t n)
{
	if (n > t->out.len)
		n = t->out.len;
	buf_consume(&t->out, n);
	t->out_pinned = false;
	free(t->out_old);
	t->out_old = NULL;
	if (!t->out.len)
		buf_free(&t->out);
}

void tls_conn_describe(const struct tls_conn *t, char *out, size_t cap)
{
	const SSL_CIPHER *cipher;
	const uint8_t *alpn;
	unsigned alpn_len;

	if (!t->ssl) {
		snprintf(out, cap, "-");
		return;
	}
	cipher = SSL_get_current_cipher(t->ssl);
	SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
	snprintf(out, cap, "tls=%s cipher=%s alpn=%.*s resumed=%d",
		 SSL_get_version(t->ssl),
		 cipher ? SSL_CIPHER_standard_name(cipher) : "-",
		 alpn_len ? (int)alpn_len : 1,
		 alpn_len ? (const char *)alpn : "-",
		 SSL_session_reused(t->ssl));
}

void tls_conn_facts(const struct tls_conn *t, struct tls_facts *out)
{
	const SSL_CIPHER *cipher;
	EVP_PKEY *key;
	SSL_CTX *ctx;
	const uint8_t *alpn;
	unsigned alpn_len;
	X509 *leaf;
	int nid;

	memset(out, 0, sizeof(*out));
	if (!t->ssl)
		return;
	out->version = SSL_get_version(t->ssl);
	cipher = SSL_get_current_cipher(t->ssl);
	if (cipher)
		out->cipher = SSL_CIPHER_standard_name(cipher);
	SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
	out->alpn = alpn;
	out->alpn_len = alpn_len;
	/* The SSL's own certificate config is shed after the handshake
	 * (tls_conn_start); its SSL_CTX is the one the router chose, with
	 * exactly one certificate. */
	ctx = SSL_get_SSL_CTX(t->ssl);
	leaf = SSL_CTX_get0_certificate(ctx);
	nid = leaf ? X509_get_signature_nid(leaf) : NID_undef;
	if (nid != NID_undef)
		out->sig_alg = OBJ_nid2sn(nid);
	/* The certificate's public key: with the signer (KEY_SIGNER) the
	 * SSL_CTX holds no private key. */
	key = leaf ? X509_get_pubkey(leaf) : NULL;
	if (!key)
		return;
	switch (EVP_PKEY_id(key)) {
	case EVP_PKEY_RSA:
		snprintf(out->key_alg, sizeof(out->key_alg), "RSA%d",
			 EVP_PKEY_bits(key));
		break;
	case EVP_PKEY_EC:
		snprintf(out->key_alg, sizeof(out->key_alg), "EC%d",
			 EVP_PKEY_bits(key));
		break;
	case EVP_PKEY_ED25519:
		snprintf(out->key_alg, sizeof(out->key_alg), "ED25519");
		break;
	}
	EVP_PKEY_free(key);
}

bool tls_conn_resumed(const struct tls_conn *t)
{
	return t->ssl && SSL_session_reused(t->ssl);
}

const char *tls_conn_error_str(const struct tls_conn *t)
{
	return t->error ? t->error : "TLS error";
}

void tls_conn_free(struct tls_conn *t)
{
	SSL_free(t->ssl); /* and its BIOs */
	buf_free(&t->in);
	buf_free(&t->out);
	free(t->out_old);
	free(t->sni);
	free(t->keyop);
	memset(t, 0, sizeof(*t));
}
