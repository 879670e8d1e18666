/* core/backend.c: the connection to the VM.
 *
 * One socket per connection, connected through the ring with a linked
 * timeout of limits.connect_timeout_ms: when it fires, the kernel cancels
 * the connect and it completes with -ECANCELED, which means timed out.
 */
#include "core/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "tls/alert.h"

static void connect_failed(struct worker *w, struct conn *c, int err)
{
	char peer[LOG_ADDR_MAX], addr[INET6_ADDRSTRLEN], vm[64];

	metrics_connect_error(&w->metrics, err);
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

void backend_connect(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;
	int one = 1;

	c->vfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->vfd < 0) {
		connect_failed(w, c, errno);
		return;
	}
	setsockopt(c->vfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* The connect and its linked timeout must go in one submission. */
	if (io_uring_sq_space_left(&w->ring) < 2)
		io_uring_submit(&w->ring);
	sqe = conn_sqe(w, c, OP_VM_CONNECT);
	io_uring_prep_connect(sqe, c->vfd, (struct sockaddr *)&c->vm,
			      sizeof(c->vm));
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
	connect_failed(w, c, res == -ECANCELED ? ETIMEDOUT : -res);
}
