/* core/backend.c: the connection to the VM.
 *
 * One socket per connection, connected through the ring with a linked
 * timeout of limits.connect_timeout_ms: when it fires, the kernel cancels
 * the connect and it completes with -ECANCELED, which means timed out
 * (unless making the socket failed first).
 */
#include "core/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/kconfig.h"
#include "core/answer.h"
#include "core/log.h"
#include "core/proxyhdr.h"
#include "tls/alert.h"

static bool alpn_is_http11(const struct tls_facts *f)
{
	return f->alpn_len == 8 && !memcmp(f->alpn, "http/1.1", 8);
}

/* Whether a failed connect may be answered in HTTP (core/answer.h): the
 * domain asks for it (vm_errors: http) and the handshake chose http/1.1,
 * or no protocol at all, so the first bytes decide. BoringSSL has chosen
 * by now: the hello was processed when the connect started. Any other
 * protocol gets the alert at once. */
static bool may_answer_http(const struct conn *c)
{
	struct tls_facts f;

	if (!(c->flags & CF_VM_ERRORS_HTTP) || !tls_conn_started(&c->tls))
		return false;
	tls_conn_facts(&c->tls, &f);
	return !f.alpn_len || alpn_is_http11(&f);
}

/* The connect to the VM failed with errno |err|; |hs_timer|: it was the
 * handshake timeout that ran out first (its hint says so). */
static void connect_failed(struct worker *w, struct conn *c, int err,
			   bool hs_timer)
{
	char peer[LOG_ADDR_MAX], addr[INET6_ADDRSTRLEN], vm[64];

	metrics_connect_error(&w->metrics, err);
	metrics_count(&w->metrics, REASON_CONNECT_ERROR);
	metric_add(&c->vms->connect_errors, 1);
	log_fmt_addr(peer, &c->peer);
	inet_ntop(AF_INET6, &c->vm.sin6_addr, addr, sizeof(addr));
	log_warn("connect_error",
		 "peer=%s sni=%s vm=%s addr=[%s]:%u id=%016llx errno=%d "
		 "error=\"%s\"%s",
		 peer, c->tls.sni, conn_vm_id(c, vm, sizeof(vm)), addr,
		 c->vm_port, (unsigned long long)c->id, err, strerror(err),
		 err == ECONNREFUSED
			 ? " hint=\"nothing accepts on that port over IPv6: "
			   "the VM service must listen on '::' (a service "
			   "bound to 0.0.0.0 only is unreachable)\""
		 : hs_timer
			 ? " hint=\"limits.handshake_timeout_ms ran out "
			   "before the VM answered (a slow TLS handshake "
			   "leaves less of it for the connect)\""
			 : "");
	if (may_answer_http(c)) {
		/* Logged: the answer, or the alert, comes once the handshake
		 * is done (backend_answer). The client has CONN_LINGER_MS
		 * for the rest of its handshake and its first bytes, not
		 * the handshake timeout: conn_expire_timers then alerts. */
		c->vm_errno = err;
		c->flags |= CF_VM_FAILED | CF_LOGGED | CF_ANSWER_WAIT;
		timer_arm(&w->linger_timers, &c->timer, w->now_ms);
		return;
	}
	conn_linger(w, c, TLS_ALERT_INTERNAL_ERROR);
}

void backend_answer(struct worker *w, struct conn *c)
{
	const struct config *cfg = w->shared->cfg;
	enum answer_http h = ANSWER_HTTP;
	uint8_t first[ANSWER_LINE_MAX];
	char resp[ANSWER_MAX], vm[64];
	struct answer_vm a;
	struct tls_facts f;
	size_t n = 0;

	tls_conn_facts(&c->tls, &f);
	if (!f.alpn_len) {
		/* A peek sees one record: a request line split across
		 * records gets the alert. */
		switch (tls_conn_peek(&c->tls, &n, first, sizeof(first))) {
		case TLS_IO_DONE:
			/* The whole first record: a line it leaves unfinished
			 * never will be (a peek sees no further), and
			 * reading on would only pile up what follows. */
			h = answer_http_line(first, n);
			if (h == ANSWER_NEED_MORE)
				h = ANSWER_NOT_HTTP;
			break;
		case TLS_IO_WANT_READ:
			h = c->flags & CF_CLIENT_FIN ? ANSWER_NOT_HTTP
						     : ANSWER_NEED_MORE;
			break;
		case TLS_IO_CLOSED:
			h = ANSWER_NOT_HTTP;
			break;
		case TLS_IO_ERROR:
		case TLS_IO_WANT_KEY: /* no key operation after the handshake */
			conn_linger(w, c, 0);
			return;
		}
	} else if (!alpn_is_http11(&f)) {
		h = ANSWER_NOT_HTTP;
	}
	/* More of the request line to read: a read is posted (the
	 * handshake's last one may have been its end, and nothing else
	 * would read). A client that waits for the server to speak first
	 * (SSH) gets its alert when the wait armed in connect_failed ends. */
	if (h == ANSWER_NEED_MORE) {
		if (tls_conn_input_len(&c->tls) < cfg->limits.buffer_bytes)
			relay_arm_client_recv(w, c);
		return;
	}
	if (h == ANSWER_NOT_HTTP) {
		conn_linger(w, c, TLS_ALERT_INTERNAL_ERROR);
		return;
	}
	a = (struct answer_vm){
		.vm_id = conn_vm_id(c, vm, sizeof(vm)),
		.port = c->vm_port,
		.err = c->vm_errno,
		.timeout_ms = c->flags & CF_VM_HS_TIMER
				      ? cfg->limits.handshake_timeout_ms
				      : cfg->limits.connect_timeout_ms,
		.draining = atomic_load_explicit(&w->shared->draining,
						 memory_order_relaxed),
	};
	n = answer_vm_error(resp, sizeof(resp), &a);
	if (!n || tls_conn_write(&c->tls, (const uint8_t *)resp, n) !=
			  TLS_IO_DONE) {
		conn_linger(w, c, TLS_ALERT_INTERNAL_ERROR);
		return;
	}
	tls_conn_close_notify(&c->tls);
	conn_linger(w, c, 0);
}

/* TCP_NODELAY, or with VMGATE_TEST_VM_SETUP_FAILS an option TCP has
 * not, which fails the setup as a socket the kernel cannot make would. */
static int nodelay_opt(const struct worker *w)
{
	return w->shared->test_vm_setup_fails ? -1 : TCP_NODELAY;
}

/* The VM socket as a direct descriptor: socket and TCP_NODELAY go
 * through the ring, linked ahead of the connect, so the whole setup is one
 * submission and no syscall of its own. They post a completion only if
 * they fail, and a request that skips its completion on success takes
 * its link's with it when it fails: the connect and its timeout then post
 * none. OP_VM_SOCKET ends the connect (conn.c). */
static void vm_socket_direct(struct worker *w, struct conn *c)
{
	static const int one = 1;
	const uint64_t ud = ring_ud(OP_VM_SOCKET, c->slot, c->gen);
	struct io_uring_sqe *sqe;

	c->vfd = (int)(w->vm_base + c->slot);
	sqe = ring_sqe(&w->ring);
	io_uring_prep_socket_direct(sqe, AF_INET6, SOCK_STREAM, 0,
				    (unsigned)c->vfd, 0);
	sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, ud);
	sqe = ring_sqe(&w->ring);
	ring_prep_setsockopt(sqe, c->vfd, IPPROTO_TCP, nodelay_opt(w), &one,
			     sizeof(one));
	sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, ud);
}

/* The address the client dialled, for the PROXY header: the listen
 * address when it is not the wildcard; else the socket's own, by
 * getsockname(2) on a plain fd, or on a direct descriptor borrowed as an
 * fd (OP_CLIENT_FD, backend_on_local). Without IORING_OP_FIXED_FD_INSTALL
 * (a kernel before 6.8 with direct descriptors) it stays the wildcard. */
static void local_addr(struct worker *w, struct conn *c)
{
	const struct config *cfg = w->shared->cfg;
	struct io_uring_sqe *sqe;
	socklen_t len = sizeof(c->local);

	/* A steered connection's was read at accept (conn_find_port). */
	if (c->local.sin6_family == AF_INET6)
		return;
	memset(&c->local, 0, sizeof(c->local));
	c->local.sin6_family = AF_INET6;
	c->local.sin6_addr = cfg->listen_addr;
	c->local.sin6_port = htons(c->listen_port);
	if (!IN6_IS_ADDR_UNSPECIFIED(&cfg->listen_addr))
		return;
	if (!ring_direct) {
		getsockname(c->cfd, (struct sockaddr *)&c->local, &len);
		return;
	}
	if (!ring_fd_install)
		return;
	sqe = conn_sqe(w, c, OP_CLIENT_FD);
	ring_prep_fd_install(sqe, c->cfd);
	c->flags |= CF_LOCAL;
}

void backend_on_local(struct worker *w, struct conn *c, int res)
{
	struct sockaddr_in6 sa;
	socklen_t len = sizeof(sa);

	c->flags &= ~CF_LOCAL;
	if (res < 0)
		return; /* the header says the listen address */
	if (getsockname(res, (struct sockaddr *)&sa, &len) == 0 &&
	    sa.sin6_family == AF_INET6)
		c->local = sa;
	close(res);
}

bool backend_proxy_header(struct conn *c, uint8_t *out, size_t *out_len,
			  size_t cap)
{
	char id[17], subject[256], cn[65];
	struct tls_facts f;
	struct proxyhdr_info in = {
		.src = c->peer,
		.dst = c->local,
	};

	if (c->proxy == CFG_PROXY_V1)
		return proxyhdr_v1(out, out_len, cap, &in);
	tls_conn_facts(&c->tls, &f);
	snprintf(id, sizeof(id), "%016llx", (unsigned long long)c->id);
	in.authority = (const uint8_t *)c->tls.sni;
	in.authority_len = strlen(c->tls.sni);
	in.alpn = f.alpn;
	in.alpn_len = f.alpn_len;
	/* A passthrough connection's TLS is the VM's own: no PP2_TYPE_SSL. */
	in.ssl = tls_conn_started(&c->tls);
	in.ssl_version = f.version;
	in.ssl_cipher = f.cipher;
	in.ssl_sig_alg = f.sig_alg;
	in.ssl_key_alg = f.key_alg[0] ? f.key_alg : NULL;
	in.client_cert = tls_conn_client_cert(&c->tls, subject,
					      sizeof(subject), cn, sizeof(cn),
					      &in.client_cert_conn);
	in.ssl_cn = in.client_cert && cn[0] ? cn : NULL;
	in.unique_id = (const uint8_t *)id;
	in.unique_id_len = 16;
	return proxyhdr_v2(out, out_len, cap, &in);
}

void backend_connect(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;
	int one = 1;

	if (c->proxy)
		local_addr(w, c);

	/* The chain up to the connect's linked timeout must go in one
	 * submission. */
	if (io_uring_sq_space_left(&w->ring) < 4)
		io_uring_submit(&w->ring);
	if (ring_direct) {
		vm_socket_direct(w, c);
	} else {
		c->vfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->vfd < 0) {
			connect_failed(w, c, errno, false);
			return;
		}
		if (setsockopt(c->vfd, IPPROTO_TCP, nodelay_opt(w), &one,
			       sizeof(one)) && w->shared->test_vm_setup_fails) {
			int err = errno;

			close(c->vfd);
			c->vfd = -1;
			connect_failed(w, c, err, false);
			return;
		}
	}
	sqe = conn_sqe(w, c, OP_VM_CONNECT);
	io_uring_prep_connect(sqe, c->vfd, (struct sockaddr *)&c->vm,
			      sizeof(c->vm));
	ring_sock(sqe);
	sqe->flags |= IOSQE_IO_LINK;
	sqe = conn_sqe(w, c, OP_VM_TIMEOUT);
	io_uring_prep_link_timeout(sqe, &w->connect_ts, 0);
	c->flags |= CF_VM_CONNECTING;
}

void backend_on_connect(struct worker *w, struct conn *c, int res)
{
	c->flags &= ~CF_VM_CONNECTING;
	/* The handshake timer ended it already (backend_connect_expired):
	 * this is the cancelled connect, or one that won the race. */
	if (c->flags & CF_VM_FAILED)
		return;
	if (res == 0) {
		c->flags |= CF_VM_CONNECTED;
		return;
	}
	if (res == -ECANCELED)
		/* The linked timeout fired. */
		res = -ETIMEDOUT;
	connect_failed(w, c, -res, false);
}

void backend_connect_expired(struct worker *w, struct conn *c)
{
	c->flags |= CF_VM_FAILED | CF_VM_HS_TIMER;
	connect_failed(w, c, ETIMEDOUT, true);
}
