/* bench/tlsload.c: a small TLS load client for the benchmark (bench/run.py).
 *
 * Built against the same BoringSSL as vmgate (android-libboringssl-dev).
 * One thread, epoll, non-blocking sockets. Connects to [ADDR]:PORT and sends
 * SNI separately, so no name resolution is involved.
 *
 *   tlsload hs     -a ADDR -p PORT -s SNI [-c CONC] [-d SECONDS] [-P PATH]
 *                  [-r RATE]
 *       Each connection: TCP connect, full TLS handshake, one request
 *       ("Connection: close"), read the whole response, close. Repeat until
 *       the duration is over with CONC connections in flight. With -r, at
 *       most RATE connections start per second (evenly paced; still at
 *       most CONC in flight), so proxies can be compared at one offered
 *       load instead of each at the client's limit.
 *   tlsload resume ... (same options)
 *       Same, but every connection offers the newest session ticket the
 *       client has received, so handshakes are resumed (PSK + X25519).
 *   tlsload idle   -a ADDR -p PORT -s SNI [-c CONC] [-T SECONDS] [-g SECONDS]
 *       Reads target counts from stdin, one per line: opens connections
 *       (handshake + one keep-alive request + its response, CONC at a time)
 *       until that many are established (or -g SECONDS, default 60, have
 *       passed for that line), prints one JSON line, and holds them. "q",
 *       EOF or -T SECONDS (total bound) closes everything.
 *
 * The hs/resume modes print one JSON line at the end:
 *   {"ok":N,"errors":N,"resumed":N,"seconds":S,"rate":R,"first_error":"..."}
 *
 * Client side: TLS 1.3 only, X25519 only (BoringSSL offers AES-128-GCM
 * first on AES-NI machines), no certificate validation (the CertificateVerify
 * signature is still checked, as TLS 1.3 requires).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum mode { M_HS, M_RESUME, M_IDLE };
enum state { S_FREE, S_CONNECT, S_HANDSHAKE, S_WRITE, S_READ, S_IDLE };

struct conn {
	int fd;
	enum state st;
	SSL *ssl;
	size_t got;         /* response bytes read */
	long need;          /* total response bytes, -1 until headers parsed */
	char hdr[2048];
	size_t hdr_len;
};

static enum mode mode;
static struct sockaddr_in6 dst;
static const char *sni = "vm1.bench.internal";
static const char *path = "/tiny";
static int conc = 32;
static double duration = 5, hold_max = 120, step_max = 60;
static double rate_max; /* -r: connection starts per second, 0 = no limit */
static SSL_CTX *ctx;
static SSL_SESSION *latest; /* newest ticket (resume mode) */
static int ep;
static struct conn *conns;
static int nconns;
static char req[512];
static size_t req_len;
static long n_ok, n_err, n_resumed, n_established, n_inflight;
static char first_error[200];
static char negotiated[200]; /* version/cipher/group of the first success */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *s)
{
	(void)ssl;
	if (latest)
		SSL_SESSION_free(latest);
	latest = s; /* we take the reference */
	return 1;
}

static void note_error(const char *what)
{
	unsigned long e = ERR_peek_last_error();

	n_err++;
	if (!first_error[0]) {
		if (e)
			snprintf(first_error, sizeof(first_error), "%s: %s",
				 what, ERR_reason_error_string(e));
		else
			snprintf(first_error, sizeof(first_error), "%s: %s",
				 what, errno ? strerror(errno) : "eof");
	}
	ERR_clear_error();
}

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->st != S_IDLE && c->st != S_FREE)
		n_inflight--;
	else if (c->st == S_IDLE)
		n_established--;
	c->st = S_FREE;
}

static void want(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static bool conn_open(struct conn *c)
{
	struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
	int one = 1;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->need = -1;
	c->fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		note_error("socket");
		return false;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	n_inflight++;
	c->st = S_CONNECT;
	if (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 &&
	    errno != EINPROGRESS) {
		note_error("connect");
		conn_close(c);
		return false;
	}
	epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e);
	return true;
}

/* Parse the response headers once they are all in: Content-Length. */
static void parse_headers(struct conn *c)
{
	char *end, *cl;

	c->hdr[c->hdr_len < sizeof(c->hdr) ? c->hdr_len : sizeof(c->hdr) - 1] = 0;
	end = strstr(c->hdr, "\r\n\r\n");
	if (!end)
		return;
	cl = strcasestr(c->hdr, "\r\ncontent-length:");
	c->need = (end - c->hdr) + 4 + (cl ? atol(cl + 17) : 0);
}

static void finish(struct conn *c)
{
	if (mode == M_IDLE) {
		n_inflight--;
		n_established++;
		c->st = S_IDLE;
		want(c, EPOLLIN); /* only to notice a close by the proxy */
		return;
	}
	n_ok++;
	if (!negotiated[0]) {
		const uint8_t *alpn;
		unsigned alpn_len;

		SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
		snprintf(negotiated, sizeof(negotiated),
			 "\"version\":\"%s\",\"cipher\":\"%s\","
			 "\"group\":\"%s\",\"alpn\":\"%.*s\",",
			 SSL_get_version(c->ssl),
			 SSL_CIPHER_standard_name(SSL_get_current_cipher(c->ssl)),
			 SSL_get_curve_name(SSL_get_curve_id(c->ssl)),
			 (int)alpn_len, alpn ? (const char *)alpn : "");
	}
	if (SSL_session_reused(c->ssl))
		n_resumed++;
	SSL_shutdown(c->ssl); /* send close_notify, do not wait for one */
	conn_close(c);
}

/* An SSL call on |c| returned |r| (not done): wait for what it wants, or
 * count the error |what| and close. */
static void ssl_stalled(struct conn *c, int r, const char *what)
{
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		want(c, EPOLLIN);
		return;
	case SSL_ERROR_WANT_WRITE:
		want(c, EPOLLOUT);
		return;
	default:
		note_error(what);
		conn_close(c);
	}
}

static void step(struct conn *c, uint32_t ev)
{
	int r, err;

	if (c->st == S_IDLE) {
		char b[512];

		r = SSL_read(c->ssl, b, sizeof(b));
		if (r > 0)
			return;
		err = SSL_get_error(c->ssl, r);
		if (err == SSL_ERROR_WANT_READ)
			return;
		note_error("idle connection closed by peer");
		conn_close(c);
		return;
	}
	if (c->st == S_CONNECT) {
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
		if (soerr) {
			errno = soerr;
			note_error("connect");
			conn_close(c);
			return;
		}
		c->ssl = SSL_new(ctx);
		SSL_set_fd(c->ssl, c->fd);
		SSL_set_connect_state(c->ssl);
		SSL_set_tlsext_host_name(c->ssl, sni);
		if (mode == M_RESUME && latest)
			SSL_set_session(c->ssl, latest);
		c->st = S_HANDSHAKE;
	}
	if (c->st == S_HANDSHAKE) {
		r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			ssl_stalled(c, r, "handshake");
			return;
		}
		c->st = S_WRITE;
	}
	if (c->st == S_WRITE) {
		r = SSL_write(c->ssl, req, (int)req_len);
		if (r <= 0) {
			ssl_stalled(c, r, "write");
			return;
		}
		c->st = S_READ;
		want(c, EPOLLIN);
	}
	if (c->st == S_READ) {
		char b[16384];

		for (;;) {
			r = SSL_read(c->ssl, b, sizeof(b));
			if (r <= 0) {
				err = SSL_get_error(c->ssl, r);
				if (err == SSL_ERROR_WANT_READ)
					return;
				note_error("read");
				conn_close(c);
				return;
			}
			if (c->hdr_len < sizeof(c->hdr) - 1) {
				size_t n = sizeof(c->hdr) - 1 - c->hdr_len;

				if (n > (size_t)r)
					n = (size_t)r;
				memcpy(c->hdr + c->hdr_len, b, n);
				c->hdr_len += n;
			}
			c->got += (size_t)r;
			if (c->need < 0)
				parse_headers(c);
			if (c->need >= 0 && (long)c->got >= c->need) {
				if (strncmp(c->hdr, "HTTP/1.1 200", 12) &&
				    strncmp(c->hdr, "HTTP/1.0 200", 12)) {
					if (!first_error[0])
						snprintf(first_error,
							 sizeof(first_error),
							 "bad response: %.40s",
							 c->hdr);
					n_err++;
					conn_close(c);
					return;
				}
				finish(c);
				return;
			}
		}
	}
	(void)ev;
}

static struct conn *free_slot(void)
{
	for (int i = 0; i < nconns; i++)
		if (conns[i].st == S_FREE)
			return &conns[i];
	return NULL;
}

static void poll_once(int timeout_ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(ep, evs, 256, timeout_ms);

	for (int i = 0; i < n; i++)
		step(evs[i].data.ptr, evs[i].events);
}

/* May another connection start at |t|? Under -r, only while fewer than
 * RATE x elapsed have started. */
static bool may_start(double t0, double t, long started)
{
	return rate_max <= 0 || started < (long)(rate_max * (t - t0)) + 1;
}

static void run_load(void)
{
	double t0 = now(), t1 = t0 + duration, t;
	long started = 0;
	int i;

	for (i = 0; i < conc && may_start(t0, now(), started); i++, started++)
		conn_open(&conns[i]);
	while ((t = now()) < t1) {
		poll_once(rate_max > 0 ? 1 : 10);
		for (i = 0; i < conc && (t = now()) < t1; i++)
			if (conns[i].st == S_FREE &&
			    may_start(t0, t, started)) {
				conn_open(&conns[i]);
				started++;
			}
		if (n_err > 1000 && n_ok == 0)
			break;
	}
	t = now() - t0;
	printf("{%s\"ok\":%ld,\"errors\":%ld,\"resumed\":%ld,\"seconds\":%.4f,"
	       "\"rate\":%.1f,\"first_error\":\"%s\"}\n",
	       negotiated, n_ok, n_err, n_resumed, t, n_ok / t, first_error);
}

static void run_idle(void)
{
	double deadline = now() + hold_max;
	char line[64];
	long target;

	while (fgets(line, sizeof(line), stdin)) {
		double t0 = now(), give_up;
		long err0 = n_err;

		if (line[0] == 'q')
			break;
		target = atol(line);
		if (target > nconns)
			target = nconns;
		give_up = t0 + step_max;
		while (n_established < target && now() < give_up &&
		       now() < deadline) {
			while (n_established + n_inflight < target &&
			       n_inflight < conc) {
				struct conn *c = free_slot();

				if (!c || !conn_open(c))
					break;
			}
			poll_once(10);
			if (n_err - err0 > target / 10 + 100)
				break;
		}
		/* let late closes by the proxy show up */
		for (int k = 0; k < 20; k++)
			poll_once(10);
		printf("{\"target\":%ld,\"established\":%ld,\"errors\":%ld,"
		       "\"seconds\":%.3f,\"first_error\":\"%s\"}\n",
		       target, n_established, n_err - err0, now() - t0,
		       first_error);
		fflush(stdout);
		if (now() >= deadline)
			break;
	}
	for (int i = 0; i < nconns; i++)
		if (conns[i].st != S_FREE)
			conn_close(&conns[i]);
}

int main(int argc, char **argv)
{
	const char *addr = "::1";
	int port = 0, opt;
	struct rlimit rl;

	if (argc < 2) {
		fprintf(stderr, "usage: tlsload hs|resume|idle -a ADDR -p PORT "
				"-s SNI [-c N] [-d S] [-r RATE] [-T S] [-g S] "
				"[-P PATH]\n");
		return 2;
	}
	if (!strcmp(argv[1], "hs"))
		mode = M_HS;
	else if (!strcmp(argv[1], "resume"))
		mode = M_RESUME;
	else if (!strcmp(argv[1], "idle"))
		mode = M_IDLE;
	else {
		fprintf(stderr, "tlsload: unknown mode %s\n", argv[1]);
		return 2;
	}
	optind = 2;
	while ((opt = getopt(argc, argv, "a:p:s:c:d:r:T:g:P:")) != -1) {
		switch (opt) {
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 's': sni = optarg; break;
		case 'c': conc = atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'r': rate_max = atof(optarg); break;
		case 'T': hold_max = atof(optarg); break;
		case 'g': step_max = atof(optarg); break;
		case 'P': path = optarg; break;
		default: return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	memset(&dst, 0, sizeof(dst));
	dst.sin6_family = AF_INET6;
	dst.sin6_port = htons((uint16_t)port);
	if (inet_pton(AF_INET6, addr, &dst.sin6_addr) != 1) {
		fprintf(stderr, "tlsload: bad IPv6 address %s\n", addr);
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	req_len = (size_t)snprintf(req, sizeof(req),
		"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, sni,
		mode == M_IDLE ? "" : "Connection: close\r\n");

	ctx = SSL_CTX_new(TLS_method());
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	if (!SSL_CTX_set1_curves_list(ctx, "X25519")) {
		fprintf(stderr, "tlsload: cannot set X25519\n");
		return 1;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_alpn_protos(ctx, (const uint8_t *)"\x08http/1.1", 9);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
					    SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (mode == M_IDLE) {
		nconns = (int)(rl.rlim_cur > 64 ? rl.rlim_cur - 32 : 32);
		if (nconns > 19000)
			nconns = 19000;
	} else {
		nconns = conc;
	}
	conns = calloc((size_t)nconns, sizeof(*conns));
	for (int i = 0; i < nconns; i++)
		conns[i].fd = -1;
	if (mode == M_IDLE)
		run_idle();
	else
		run_load();
	return 0;
}
