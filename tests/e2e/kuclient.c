/* tests/e2e/kuclient.c: a TLS 1.3 client on BoringSSL that puts KeyUpdate
 * messages where a test wants them, for tests/e2e/test_keyupdate.py.
 *
 *   kuclient PORT SNI CAFILE SCRIPT [CHUNK]
 *
 * Connects to 127.0.0.1:PORT, completes a TLS 1.3 handshake through memory
 * BIOs, then turns SCRIPT into records without sending any of them: each
 * comma-separated word is either "K" (a KeyUpdate with update_requested),
 * "k" (one without), "=N" (N bytes of a counting pattern) or data to
 * write. With a SCRIPT starting "@", the
 * client's Finished is held back too, so the first word lands in the same
 * segment as the Finished (a KeyUpdate as the very first record after the
 * handshake). Everything is then written at once (CHUNK 0, the default:
 * one send) or CHUNK bytes per send. The client reads until every data byte
 * has been echoed back in order and, when the script requested a KeyUpdate
 * answer, one KeyUpdate has come back (BoringSSL answers requests that
 * arrive together with one), and prints one line:
 *
 *   echoed=N keyupdates_received=N
 *
 * Exit status 0 when the echo matched, 1 on a mismatch or a TLS error, 2
 * when 10 s pass first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int keyupdates_received;

static void on_msg(int write_p, int version, int content_type,
		   const void *buf, size_t len, SSL *ssl, void *arg)
{
	const unsigned char *p = buf;

	/* Handshake message type 24 = key_update (RFC 8446 4.6.3). */
	if (!write_p && content_type == SSL3_RT_HANDSHAKE && len >= 1 &&
	    p[0] == 24)
		keyupdates_received++;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(const char *what)
{
	fprintf(stderr, "kuclient: %s\n", what);
	ERR_print_errors_fp(stderr);
	return 1;
}

/* Sends everything the client's BIO holds, |chunk| bytes per send (0: all
 * at once). */
static int flush_out(int fd, BIO *out, size_t chunk)
{
	const uint8_t *p;
	size_t len, off = 0;

	if (!BIO_mem_contents(out, &p, &len))
		return -1;
	while (off < len) {
		size_t n = chunk && len - off > chunk ? chunk : len - off;
		ssize_t w = send(fd, p + off, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return BIO_reset(out) == 1 ? 0 : -1;
}

/* Moves what the socket has into the client's input BIO, waiting up to
 * |ms|. Returns bytes read, 0 at EOF, -1 on error or time-out. */
static int fill_in(int fd, BIO *in, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint8_t buf[16384];
	ssize_t r;

	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	r = recv(fd, buf, sizeof(buf), 0);
	if (r < 0)
		return -1;
	if (r > 0 && BIO_write(in, buf, (int)r) != r)
		return -1;
	return (int)r;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	static char expect[4 << 20], got[4 << 20];
	char *script, *word, *save;
	size_t expect_len = 0, got_len = 0, chunk = 0, n, off;
	long long deadline = now_ms() + 10000;
	int hold_finished, want_ku = 0;
	SSL_CTX *ctx;
	BIO *in, *out;
	SSL *ssl;
	int fd, one = 1, r;

	if (argc < 5) {
		fprintf(stderr, "usage: kuclient PORT SNI CAFILE SCRIPT [CHUNK]\n");
		return 1;
	}
	if (argc > 5)
		chunk = (size_t)strtoul(argv[5], NULL, 10);
	script = argv[4];
	hold_finished = script[0] == '@';
	if (hold_finished)
		script++;

	ctx = SSL_CTX_new(TLS_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_load_verify_locations(ctx, argv[3], NULL))
		return fail("context");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_msg_callback(ctx, on_msg);
	ssl = SSL_new(ctx);
	in = BIO_new(BIO_s_mem());
	out = BIO_new(BIO_s_mem());
	if (!ssl || !in || !out || !SSL_set_tlsext_host_name(ssl, argv[2]))
		return fail("ssl");
	BIO_set_mem_eof_return(in, -1);
	SSL_set_bio(ssl, in, out);
	SSL_set_connect_state(ssl);

	fd = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		return fail("connect");

	/* The handshake; the Finished stays in |out| when it is to share a
	 * segment with what follows. */
	while ((r = SSL_do_handshake(ssl)) != 1) {
		if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ)
			return fail("handshake");
		if (flush_out(fd, out, 0) || fill_in(fd, in, 5000) <= 0)
			return fail("handshake I/O");
	}
	if (!hold_finished && flush_out(fd, out, 0))
		return fail("send Finished");

	for (word = strtok_r(script, ",", &save); word;
	     word = strtok_r(NULL, ",", &save)) {
		if (!strcmp(word, "K") || !strcmp(word, "k")) {
			int type = word[0] == 'K' ? SSL_KEY_UPDATE_REQUESTED
						  : SSL_KEY_UPDATE_NOT_REQUESTED;

			want_ku |= word[0] == 'K';

			/* One KeyUpdate may be queued at a time: a zero-byte
			 * write puts it into |out| so the next one can go. */
			if (!SSL_key_update(ssl, type) || SSL_write(ssl, "", 0) < 0)
				return fail("key_update");
			continue;
		}
		if (word[0] == '=') {
			size_t i, n = (size_t)strtoul(word + 1, NULL, 10);

			if (n > sizeof(expect) - expect_len)
				return fail("script too long");
			for (i = 0; i < n; i++)
				expect[expect_len + i] = (char)('a' + i % 23);
		} else {
			if (strlen(word) > sizeof(expect) - expect_len)
				return fail("script too long");
			memcpy(expect + expect_len, word, strlen(word));
		}
		n = word[0] == '=' ? strtoul(word + 1, NULL, 10) : strlen(word);
		for (off = 0; off < n;) {
			size_t part = n - off > 16384 ? 16384 : n - off;

			if (SSL_write(ssl, expect + expect_len + off, (int)part) !=
			    (int)part)
				return fail("write");
			off += part;
		}
		expect_len += n;
	}
	if (flush_out(fd, out, chunk))
		return fail("send");

	while (got_len < expect_len || keyupdates_received < want_ku) {
		long long left = deadline - now_ms();

		r = SSL_read(ssl, got + got_len, (int)(sizeof(got) - got_len));
		if (r > 0) {
			got_len += (size_t)r;
			continue;
		}
		if (SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ)
			return fail("read");
		/* Our own KeyUpdate answers (if any) go out as we read. */
		if (flush_out(fd, out, 0))
			return fail("send");
		if (got_len == expect_len && keyupdates_received >= want_ku)
			break; /* the read took just the KeyUpdate */
		if (left <= 0) {
			printf("echoed=%zu keyupdates_received=%d timeout\n",
			       got_len, keyupdates_received);
			return 2;
		}
		if (fill_in(fd, in, (int)left) == 0)
			return fail("EOF before the echo");
	}
	printf("echoed=%zu keyupdates_received=%d\n", got_len,
	       keyupdates_received);
	if (got_len != expect_len || memcmp(got, expect, expect_len))
		return fail("echo differs from what was sent");
	close(fd);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return 0;
}
