/* tls/session.c: see session.h. */
#include "tls/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#include "tls/alert.h"

static bool ensure_bios(struct tls_conn *t)
{
	if (!t->in && !(t->in = BIO_new(BIO_s_mem())))
		return false;
	if (!t->out && !(t->out = BIO_new(BIO_s_mem())))
		return false;
	return true;
}

bool tls_conn_feed(struct tls_conn *t, const uint8_t *data, size_t len)
{
	if (!ensure_bios(t))
		return false;
	return BIO_write(t->in, data, (int)len) == (int)len;
}

void tls_conn_input(const struct tls_conn *t, const uint8_t **out,
		    size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (t->in)
		BIO_mem_contents(t->in, out, out_len);
}

size_t tls_conn_input_len(const struct tls_conn *t)
{
	return t->in ? BIO_pending(t->in) : 0;
}

bool tls_conn_start(struct tls_conn *t, SSL_CTX *ctx, const char *sni)
{
	if (!ensure_bios(t))
		return false;
	t->sni = strdup(sni);
	t->ssl = SSL_new(ctx);
	if (!t->sni || !t->ssl)
		return false;
	/* The SSL object owns the BIOs from here on; t->in and t->out stay
	 * as borrowed views for tls_conn_input and tls_conn_take_out. */
	BIO_up_ref(t->in);
	BIO_up_ref(t->out);
	SSL_set_bio(t->ssl, t->in, t->out);
	SSL_set_app_data(t->ssl, t);
	SSL_set_accept_state(t->ssl);
	/* Nothing renegotiates or re-handshakes as a server: the handshake
	 * configuration can go once the handshake is done. */
	SSL_set_shed_handshake_config(t->ssl, 1);
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

static enum tls_io io_result(struct tls_conn *t, int ret)
{
	unsigned long e;

	switch (SSL_get_error(t->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_IO_WANT_READ;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_IO_CLOSED;
	case SSL_ERROR_SSL:
		e = ERR_peek_error();
		t->error = e ? ERR_reason_error_string(e) : NULL;
		if (!t->error)
			t->error = "TLS error";
		ERR_clear_error();
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

	ERR_clear_error();
	ret = SSL_do_handshake(t->ssl);
	if (ret == 1)
		return TLS_IO_DONE;
	return io_result(t, ret);
}

enum tls_io tls_conn_read(struct tls_conn *t, size_t *out_len, uint8_t *out,
			  size_t cap)
{
	int ret;

	*out_len = 0;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	ERR_clear_error();
	ret = SSL_read(t->ssl, out, (int)cap);
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
	ERR_clear_error();
	/* A memory BIO never pushes back, so SSL_write takes it all. */
	ret = SSL_write(t->ssl, in, (int)len);
	if (ret == (int)len)
		return TLS_IO_DONE;
	return io_result(t, ret);
}

void tls_conn_close_notify(struct tls_conn *t)
{
	if (!t->ssl)
		return;
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
	if (ensure_bios(t) &&
	    tls_alert_build(rec, &len, sizeof(rec), record_version, desc))
		BIO_write(t->out, rec, (int)len);
}

size_t tls_conn_out_len(const struct tls_conn *t)
{
	return t->out ? BIO_pending(t->out) : 0;
}

size_t tls_conn_take_out(struct tls_conn *t, uint8_t *out, size_t cap)
{
	int n;

	if (!t->out || !cap)
		return 0;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	n = BIO_read(t->out, out, (int)cap);
	return n > 0 ? (size_t)n : 0;
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
	if (t->ssl) {
		SSL_free(t->ssl); /* drops its references to the BIOs */
	}
	BIO_free(t->in);
	BIO_free(t->out);
	free(t->sni);
	memset(t, 0, sizeof(*t));
}
