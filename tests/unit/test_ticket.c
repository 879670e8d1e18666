/* tests/unit/test_ticket.c: tls/ticket.c's own keys, used while no key
 * shared by a fleet is current: they rotate as BoringSSL rotates its own
 * (each encrypts for half the ticket lifetime, decrypts for all of it),
 * where one key used to serve the whole life of the process. TLS 1.2
 * handshakes in memory, a client resuming what the server issued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <openssl/ssl.h>

#include "fuzz/testcert.c"
#include "tls/ticket.h"

/* A lifetime of 2 s: a key encrypts for 1 s and decrypts for 2. */
#define LIFE_S 2

static SSL_CTX *sctx, *cctx;

/* One TLS 1.2 handshake offering |in| (NULL: none); its session in |*out|
 * (NULL: not wanted). Returns whether it resumed. */
static bool handshake(SSL_SESSION *in, SSL_SESSION **out)
{
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	int sr = -1, cr = -1;
	BIO *sb, *cb;
	bool resumed;

	assert_true(BIO_new_bio_pair(&sb, 0, &cb, 0));
	SSL_set_bio(s, sb, sb);
	SSL_set_bio(c, cb, cb);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	if (in)
		assert_true(SSL_set_session(c, in));
	for (int i = 0; i < 20 && (sr != 1 || cr != 1); i++) {
		cr = SSL_do_handshake(c);
		sr = SSL_do_handshake(s);
	}
	assert_int_equal(sr, 1);
	assert_int_equal(cr, 1);
	resumed = SSL_session_reused(c);
	if (out)
		*out = SSL_get1_session(c);
	SSL_free(s);
	SSL_free(c);
	return resumed;
}

/* The local key's name once it differs from |old| (within 4 s). */
static void next_name(const uint8_t old[16], uint8_t out[16])
{
	time_t deadline = time(NULL) + 4;

	do {
		assert_false(tls_ticket_current(out));
		if (memcmp(out, old, 16))
			return;
		struct timespec ts = { 0, 20 * 1000000 };
		nanosleep(&ts, NULL);
	} while (time(NULL) <= deadline);
	fail_msg("the local ticket key did not rotate");
}

static void test_local_key_rotates(void **state)
{
	uint8_t a[16], b[16], c[16];
	SSL_SESSION *sa, *sb = NULL;
	EVP_PKEY *key;
	X509 *cert;

	(void)state;
	sctx = SSL_CTX_new(TLS_method());
	cctx = SSL_CTX_new(TLS_method());
	assert_true(testcert_make(&key, &cert, false, "ticket.test", NULL, 0));
	assert_true(SSL_CTX_use_certificate(sctx, cert));
	assert_true(SSL_CTX_use_PrivateKey(sctx, key));
	assert_true(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION));
	tls_ticket_enable(sctx, LIFE_S);
	/* The sessions themselves outlive the keys here: what ends a
	 * resumption below is its key. */
	SSL_CTX_set_timeout(sctx, 60);

	assert_false(tls_ticket_current(a)); /* no shared key: the local one */
	assert_false(handshake(NULL, &sa));
	assert_true(SSL_SESSION_has_ticket(sa));
	/* Its key rotates; a ticket under the one before still resumes
	 * (and is renewed under the new one). */
	next_name(a, b);
	assert_true(handshake(sa, &sb));
	/* Rotated again: a third name, not the first back; the second's
	 * tickets still resume, the first's no longer (its lifetime over). */
	next_name(b, c);
	assert_memory_not_equal(a, c, 16);
	assert_true(handshake(sb, NULL));
	assert_false(handshake(sa, NULL));
	SSL_SESSION_free(sa);
	SSL_SESSION_free(sb);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	EVP_PKEY_free(key);
	X509_free(cert);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_local_key_rotates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
