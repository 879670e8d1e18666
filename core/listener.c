/* core/listener.c: see listener.h. */
#include "core/listener.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/kconfig.h"
#include "core/log.h"
#include "core/timer.h"

/* After an accept error such as EMFILE, wait this long before accepting
 * again, so a full fd table does not spin the worker. */
#define ACCEPT_BACKOFF_MS 100

/* How long listener_listen waits for a port in use, and its back-off. */
#define LISTEN_WAIT_MS 5000
#define LISTEN_RETRY_MIN_MS 10
#define LISTEN_RETRY_MAX_MS 200

/* The process that has a socket listening on |port| open, from
 * /proc/net/tcp{6,} and /proc/[pid]/fd, written as a phrase for the log. A
 * listening socket no process has open is one the kernel is still closing
 * (a killed process's io_uring). Best effort: only for the log. */
static void port_holder(char *out, size_t out_len, uint16_t port)
{
	static const char *const tables[] = { "/proc/net/tcp6",
					      "/proc/net/tcp" };
	char line[512], link[64], want[64], comm[32], path[560];
	unsigned long inode = 0, ino;
	unsigned lport, st, uid = 0, u;
	struct dirent *p, *f;
	DIR *procs, *fds;
	size_t t;
	FILE *fp;
	ssize_t n;

	for (t = 0; t < 2 && !inode; t++) {
		fp = fopen(tables[t], "re");
		if (!fp)
			continue;
		while (!inode && fgets(line, sizeof(line), fp))
			if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x "
				   "%x %*x:%*x %*x:%*x %*x %u %*u %lu", &lport,
				   &st, &u, &ino) == 4 &&
			    lport == port && st == 0x0A /* TCP_LISTEN */) {
				inode = ino;
				uid = u;
			}
		fclose(fp);
	}
	if (!inode) {
		snprintf(out, out_len, "no listening socket seen");
		return;
	}
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	procs = opendir("/proc");
	while (procs && (p = readdir(procs))) {
		if (p->d_name[0] < '1' || p->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", p->d_name);
		fds = opendir(path);
		while (fds && (f = readdir(fds))) {
			snprintf(path, sizeof(path), "/proc/%s/fd/%s",
				 p->d_name, f->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (strcmp(link, want))
				continue;
			snprintf(path, sizeof(path), "/proc/%s/comm", p->d_name);
			fp = fopen(path, "re");
			if (!fp || !fgets(comm, sizeof(comm), fp))
				snprintf(comm, sizeof(comm), "?");
			if (fp)
				fclose(fp);
			comm[strcspn(comm, "\n")] = 0;
			snprintf(out, out_len, "pid %.16s (%s), uid %u",
				 p->d_name, comm, uid);
			closedir(fds);
			closedir(procs);
			return;
		}
		if (fds)
			closedir(fds);
	}
	if (procs)
		closedir(procs);
	snprintf(out, out_len, "no process (uid %u): a socket still being "
		 "closed, such as a killed process's io_uring", uid);
}

int listener_listen(int fd, const struct sockaddr_in6 *sa, int backlog,
		    const char *what)
{
	char addr[LOG_ADDR_MAX], holder[160];
	unsigned delay = LISTEN_RETRY_MIN_MS;
	uint64_t start = 0, now;
	struct timespec ts;
	bool bound = false;

	/* A supervisor restarts vmgate at once after a crash, while the
	 * kernel still tears down the dead process's io_uring: until then
	 * the accepts it held keep its listening sockets open and in
	 * LISTEN. SO_REUSEADDR only lets a bind pass sockets that are not
	 * listening (TIME_WAIT), so such a port is EADDRINUSE for a moment.
	 * SO_REUSEPORT lets the data listeners bind beside the dying ones
	 * (both sockets have it, same effective UID; until those close, the
	 * connections the kernel hands them are reset, unless the sysctl
	 * net.ipv4.tcp_migrate_req moves them over), but the admin socket
	 * must not share its port (a second vmgate would answer half the
	 * API calls with state of its own), and a previous owner of another
	 * UID or without the option blocks the data ports too. So a port in
	 * use is tried again with a back-off, for a bounded time. A listen()
	 * may fail the same way after a bind passed (the bind check is
	 * redone there), so both are retried. */
	for (;;) {
		if (!bound && !bind(fd, (const struct sockaddr *)sa,
				    sizeof(*sa)))
			bound = true;
		if (bound && !listen(fd, backlog))
			break;
		if (errno != EADDRINUSE)
			return -errno;
		now = timer_now_ms();
		if (!start) {
			start = now;
			port_holder(holder, sizeof(holder), ntohs(sa->sin6_port));
			log_warn("listen_wait", "%s addr=%s held_by=\"%s\" "
				 "wait_ms=%d", what, log_fmt_addr(addr, sa),
				 holder, LISTEN_WAIT_MS);
		} else if (now - start >= LISTEN_WAIT_MS) {
			port_holder(holder, sizeof(holder), ntohs(sa->sin6_port));
			log_error("listen_busy", "%s addr=%s held_by=\"%s\" "
				  "waited_ms=%llu: the address is still in use",
				  what, log_fmt_addr(addr, sa), holder,
				  (unsigned long long)(now - start));
			return -EADDRINUSE;
		}
		if (delay > LISTEN_WAIT_MS - (now - start))
			delay = LISTEN_WAIT_MS - (now - start);
		ts.tv_sec = 0;
		ts.tv_nsec = delay * 1000000L;
		nanosleep(&ts, NULL);
		delay = delay * 2 < LISTEN_RETRY_MAX_MS ? delay * 2
							: LISTEN_RETRY_MAX_MS;
	}
	if (start)
		log_info("listen_bound", "%s addr=%s waited_ms=%llu", what,
			 log_fmt_addr(addr, sa),
			 (unsigned long long)(timer_now_ms() - start));
	return 0;
}

bool listener_admin_covers(const struct config *cfg,
			   const struct in6_addr *addr)
{
	static const struct in6_addr v4_any = { .s6_addr = { [10] = 0xff,
							    [11] = 0xff } };
	const struct in6_addr *a = &cfg->admin.listen.sin6_addr;

	return cfg->admin.has_listen &&
	       (IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_UNSPECIFIED(addr) ||
		!memcmp(a, &v4_any, sizeof(*a)) ||
		!memcmp(a, addr, sizeof(*a)));
}

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
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero))) {
		err = errno;
		close(fd);
		return -err;
	}
	err = listener_listen(fd, &sa, 4096, "listener=data");
	if (err) {
		close(fd);
		return err;
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
	if (ring_direct)
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
	if (w->now_ms - w->accept_logged_ms < 1000) {
		w->accept_errors_unlogged++;
		return;
	}
	w->accept_logged_ms = w->now_ms;
	log_warn("accept_error", "worker=%u port=%u errno=%d error=\"%s\" "
		 "unlogged=%u", w->id, l->port, -cqe->res, strerror(-cqe->res),
		 w->accept_errors_unlogged);
	w->accept_errors_unlogged = 0;
}
