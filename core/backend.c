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
#include <string.h>
#include <sys/socket.h>

#include "core/kconfig.h"
#include "core/log.h"
#include "tls/alert.h"

static void connect_failed(struct worker *w, struct conn *c, int err)
{
	char peer[LOG_ADDR_MAX], addr[INET6_ADDRSTRLEN], vm[64];

	metrics_connect_error(&w->metrics, err);
	metrics_count(&w->metrics, REASON_CONNECT_ERROR);
	log_fmt_addr(peer, &c->peer);
	inet_ntop(AF_INET6, &c->vm.sin6_addr, addr, sizeof(addr));
	log_warn("connect_error",
		 "peer=%s sni=%s vm=%s addr=[%s]:%u errno=%d error=\"%s\"%s",
		 peer, c->tls.sni, conn_vm_id(c, vm, sizeof(vm)), addr,
		 c->vm_port, err, strerror(err),
		 err == ECONNREFUSED
			 ? " hint=\"nothing accepts on that port over IPv6: "
			   "the VM service must listen on '::' (a service "
			   "bound to 0.0.0.0 only is unreachable)\""
			 : "");
	conn_linger(w, c, TLS_ALERT_INTERNAL_ERROR);
}

/* The VM socket as a direct descriptor: socket and TCP_NODELAY go
 * through the ring, linked ahead of the connect, so the whole setup is one
 * submission and no syscall of its own. They post a completion only if
 * they fail (OP_VM_SOCKET records why; the connect then fails too). */
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
	ring_prep_setsockopt(sqe, c->vfd, IPPROTO_TCP, TCP_NODELAY, &one,
			     sizeof(one));
	sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, ud);
}

void backend_connect(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;
	int one = 1;

	/* The chain up to the connect's linked timeout must go in one
	 * submission. */
	if (io_uring_sq_space_left(&w->ring) < 4)
		io_uring_submit(&w->ring);
	if (ring_direct) {
		vm_socket_direct(w, c);
	} else {
		c->vfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->vfd < 0) {
			connect_failed(w, c, errno);
			return;
		}
		setsockopt(c->vfd, IPPROTO_TCP, TCP_NODELAY, &one,
			   sizeof(one));
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
	if (res == 0) {
		c->flags |= CF_VM_CONNECTED;
		return;
	}
	if (res == -ECANCELED)
		/* The linked timeout fired, or the socket was never made. */
		res = c->vm_errno ? -c->vm_errno : -ETIMEDOUT;
	connect_failed(w, c, -res);
}
