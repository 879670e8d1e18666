/* core/listener.c: see listener.h. */
#include "core/listener.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/kconfig.h"
#include "core/log.h"

/* After an accept error such as EMFILE, wait this long before accepting
 * again, so a full fd table does not spin the worker. */
#define ACCEPT_BACKOFF_MS 100

int listener_open(const struct in6_addr *addr, uint16_t port)
{
	struct sockaddr_in6 sa;
	int fd, one = 1, zero = 0, err;

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_addr = *addr;
	sa.sin6_port = htons(port);
	/* TCP_NODELAY here is inherited by every accepted socket: TLS
	 * records go out as soon as they are ready, at no syscall per
	 * connection. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(fd, 4096)) {
		err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

static void arm_accept(struct worker *w, struct listener *l, unsigned i,
		       unsigned j)
{
	struct io_uring_sqe *sqe = ring_sqe(&w->ring);
	struct sockaddr *peer = (struct sockaddr *)&l->acc[j].peer;

	l->acc[j].len = sizeof(l->acc[j].peer);
	/* liburing 2.3 adds 1 to the index it is given, ALLOC included
	 * (its multishot variant passes ALLOC - 1 for that reason). */
	if (IS_ENABLED(CONFIG_DIRECT_DESCRIPTORS))
		io_uring_prep_accept_direct(sqe, l->fd, peer, &l->acc[j].len,
					    0, IORING_FILE_INDEX_ALLOC - 1);
	else
		io_uring_prep_accept(sqe, l->fd, peer, &l->acc[j].len,
				     SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe,
				ring_ud(OP_ACCEPT, i * LISTENER_ACCEPTS + j, 0));
	l->busy |= 1u << j;
}

void listener_arm(struct worker *w)
{
	const uint32_t all = (uint32_t)((1ull << w->accepts) - 1);
	unsigned i, j;

	for (i = 0; i < w->listeners_len; i++) {
		struct listener *l = &w->listeners[i];

		if (l->busy == all || l->fd < 0 || w->now_ms < l->retry_ms)
			continue;
		for (j = 0; j < w->accepts; j++)
			if (!(l->busy & (1u << j)))
				arm_accept(w, l, i, j);
	}
}

void listener_close_all(struct worker *w)
{
	unsigned i;

	for (i = 0; i < w->listeners_len; i++) {
		struct listener *l = &w->listeners[i];
		struct io_uring_sqe *sqe;

		if (l->fd < 0)
			continue;
		if (l->busy) {
			sqe = ring_sqe(&w->ring);
			io_uring_prep_cancel_fd(sqe, l->fd,
						IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, ring_ud(OP_CLOSE, 0, 0));
		}
		/* The kernel refuses new connections once the last socket
		 * of the port is closed; the accepts in flight keep their
		 * own references until they are cancelled. */
		sqe = ring_sqe(&w->ring);
		io_uring_prep_close(sqe, l->fd);
		io_uring_sqe_set_data64(sqe, ring_ud(OP_CLOSE, 0, 0));
		l->fd = -1;
	}
}

void listener_complete(struct worker *w, const struct io_uring_cqe *cqe)
{
	uint32_t id = ring_ud_slot(io_uring_cqe_get_data64(cqe));
	uint32_t i = id / LISTENER_ACCEPTS, j = id % LISTENER_ACCEPTS;
	struct listener *l;

	if (i >= w->listeners_len)
		return;
	l = &w->listeners[i];
	l->busy &= ~(1u << j);
	if (cqe->res >= 0) {
		conn_accept(w, cqe->res, l->port, &l->acc[j].peer);
		return;
	}
	if (cqe->res == -ECANCELED)
		return;
	/* The others in flight fail the same way if the cause lasts; none
	 * is re-armed before the backoff is over. */
	l->retry_ms = w->now_ms + ACCEPT_BACKOFF_MS;
	if (w->now_ms - l->error_logged_ms >= 1000) {
		l->error_logged_ms = w->now_ms;
		log_warn("accept_error", "worker=%u port=%u errno=%d error=\"%s\"",
			 w->id, l->port, -cqe->res, strerror(-cqe->res));
	}
}
