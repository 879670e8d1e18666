/* ctl/admin_http.c: the admin API's HTTP server (see admin.h); the
 * handlers behind it are in admin_api.c (see admin_http.h).
 *
 * One thread, one io_uring. Listeners take multishot accepts; every
 * connection is a slot in a fixed table of ADMIN_CONN_SLOTS with a
 * generation, and its recv, send and shutdown go through the ring with
 * user_data {op, generation, slot} (core/ring.h's encoding). A connection
 * has one operation of each kind in flight at most, and is freed when the
 * last one has completed.
 *
 * Requests are parsed by nodejs' http_parser through admin_parse.c (pure,
 * fuzzed), fed whatever arrived; it is paused at the end of each message so that a pipelined request waits
 * until the answer to the one before it is sent. A fleet write is
 * answered later (admin_write.c): its connection waits in AC_WAIT, with
 * only a poll for the client's close in flight, while the others are
 * served. JSON goes through
 * jansson both ways. Answers are built whole in memory (the VM listing
 * too: ~70 bytes per VM) with room reserved in front for the status line
 * and headers, so a large body is never copied.
 *
 * Limits, because the API may face a network: a request must be complete
 * within ADMIN_REQUEST_MS of the connection opening or of the previous
 * answer (408 otherwise, and an idle keep-alive connection is closed
 * silently), headers are capped at 16 KiB and bodies at 64 KiB (413), at
 * most ADMIN_MAX_CONNS connections are open at once (a new one past that
 * closes the one idle the longest, one that never sent a byte first, and
 * is closed on accept when none is idle: requests under way are never
 * cut), and answers held in memory across connections are capped (503
 * while over).
 */
#include "ctl/admin.h"
#include "ctl/admin_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <http_parser.h>
#include <jansson.h>
#include <openssl/sha.h>

#include "core/listener.h"
#include "core/log.h"
#include "core/ring.h"
#include "core/timer.h"

/* ------------------------------------------------------------ buffers */

/* An answer's buffer starts with ADMIN_HDR_RESERVE bytes kept for the
 * status line and headers, which admin_respond writes in front of the
 * body once its length is known. */
static bool obuf_reserve(struct buf *b, size_t more)
{
	if (!b->data) {
		if (!buf_reserve(b, ADMIN_HDR_RESERVE, 1024, UINT32_MAX))
			return false;
		b->len = ADMIN_HDR_RESERVE;
	}
	return buf_reserve(b, more, 1024, UINT32_MAX);
}

bool admin_obuf_add(struct buf *b, const void *data, size_t len)
{
	if (!obuf_reserve(b, len))
		return false;
	memcpy(buf_tail(b), data, len);
	b->len += (uint32_t)len;
	return true;
}

bool admin_obuf_json(struct buf *b, const json_t *j)
{
	size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);

	if (!n || !obuf_reserve(b, n))
		return false;
	json_dumpb(j, (char *)buf_tail(b), n, JSON_COMPACT | JSON_ENCODE_ANY);
	b->len += (uint32_t)n;
	return true;
}

/* ------------------------------------------------------------ ring */

static void post_recv(struct admin *a, struct aconn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&a->ring);
	uint32_t slot = (uint32_t)(c - a->conns);

	io_uring_prep_recv(sqe, c->fd, c->in + c->in_len,
			   sizeof(c->in) - c->in_len, 0);
	io_uring_sqe_set_data64(sqe, aud(AOP_RECV, slot, c->gen));
	c->recv_posted = true;
	c->inflight++;
}

static void post_send(struct admin *a, struct aconn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&a->ring);
	uint32_t slot = (uint32_t)(c - a->conns);
	size_t left = c->out.len;

	/* A send of more than 1 GiB at once is short anyway. */
	if (left > (1u << 30))
		left = 1u << 30;
	io_uring_prep_send(sqe, c->fd, buf_head(&c->out), left,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, aud(AOP_SEND, slot, c->gen));
	c->send_posted = true;
	c->inflight++;
}

static void out_free(struct admin *a, struct aconn *c)
{
	a->out_bytes -= c->out_held;
	c->out_held = 0;
	buf_free(&c->out);
}

static void conn_release(struct admin *a, struct aconn *c)
{
	out_free(a, c);
	admin_req_free(&c->req);
	c->state = AC_FREE;
	c->gen++;
	a->live--;
}

/* conn_close closes the socket now (through the ring) and frees the slot
 * once nothing of it is in flight. */
static void conn_close(struct admin *a, struct aconn *c)
{
	struct io_uring_sqe *sqe;

	if (c->state == AC_CLOSING || c->state == AC_FREE)
		return;
	if (c->inflight) {
		sqe = ring_sqe(&a->ring);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, aud(AOP_IGNORE, 0, 0));
	}
	sqe = ring_sqe(&a->ring);
	io_uring_prep_close(sqe, c->fd);
	io_uring_sqe_set_data64(sqe, aud(AOP_IGNORE, 0, 0));
	c->fd = -1;
	c->state = AC_CLOSING;
	if (!c->inflight)
		conn_release(a, c);
}

/* ------------------------------------------------------------ waiting */

/* Only a close is watched for (POLLRDHUP; POLLHUP and POLLERR come
 * anyway): a pipelined request behind this one stays in the socket. */
static void post_poll(struct admin *a, struct aconn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(&a->ring);
	uint32_t slot = (uint32_t)(c - a->conns);

	io_uring_prep_poll_add(sqe, c->fd, POLLRDHUP);
	io_uring_sqe_set_data64(sqe, aud(AOP_POLL, slot, c->gen));
	c->poll_posted = true;
	c->inflight++;
}

static void remove_poll(struct admin *a, struct aconn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->poll_posted)
		return;
	sqe = ring_sqe(&a->ring);
	io_uring_prep_poll_remove(sqe, aud(AOP_POLL,
					   (uint32_t)(c - a->conns), c->gen));
	io_uring_sqe_set_data64(sqe, aud(AOP_IGNORE, 0, 0));
}

void admin_wait(struct admin *a, struct aconn *c)
{
	c->state = AC_WAIT;
	if (!c->poll_posted)
		post_poll(a, c);
}

struct aconn *admin_conn_waiting(struct admin *a, uint32_t slot, uint32_t gen)
{
	struct aconn *c;

	if (slot >= ADMIN_CONN_SLOTS)
		return NULL;
	c = &a->conns[slot];
	return c->state == AC_WAIT && c->gen == gen ? c : NULL;
}

/* A client gone while its write waits: like nginx's 499, the connection
 * is closed at once (a client that only shut its sending side loses the
 * answer too; HTTP/1.1 clients do not do that), and the answer dropped
 * when it comes. */
static void on_poll(struct admin *a, struct aconn *c, int res)
{
	char path[256];

	c->poll_posted = false;
	if (c->state != AC_WAIT)
		return;
	/* Removed after an earlier answer, and waiting again since. */
	if (res == -ECANCELED) {
		post_poll(a, c);
		return;
	}
	log_info("admin", "method=%s path=%s status=- ms=%llu peer=%s: the "
		 "client closed the connection while its write waited",
		 http_method_str((enum http_method)c->req.parser.method),
		 log_escape(path, sizeof(path), c->req.url, c->req.url_len),
		 (unsigned long long)(a->now_ms - c->started_ms), c->peer);
	conn_close(a, c);
}

/* ------------------------------------------------------------ answers */

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 408: return "Request Timeout";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 422: return "Unprocessable Entity";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

/* respond sends |c->out| (body already in it, possibly empty) with a
 * status line and headers in front, and logs the request. */
void admin_respond(struct admin *a, struct aconn *c, int status,
			  const char *ctype, const char *extra)
{
	char head[ADMIN_HDR_RESERVE], path[256];
	const char *method = "-";
	size_t body_len, head_len;
	int n;

	/* An answer from the writer: stop watching for a close; recv
	 * sees it from here on. */
	remove_poll(a, c);
	if (!obuf_reserve(&c->out, 0)) {
		conn_close(a, c);
		return;
	}
	body_len = c->out.len - ADMIN_HDR_RESERVE;
	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\n"
		     "Content-Type: %s\r\n"
		     "Content-Length: %zu\r\n"
		     "Cache-Control: no-store\r\n"
		     "%s%s\r\n",
		     status, status_text(status), ctype, body_len,
		     extra ? extra : "",
		     c->close_after ? "Connection: close\r\n" : "");
	head_len = (size_t)n;
	if (n < 0 || head_len >= sizeof(head)) {
		conn_close(a, c);
		return;
	}
	buf_consume(&c->out, ADMIN_HDR_RESERVE - head_len);
	memcpy(buf_head(&c->out), head, head_len);
	/* An answer to HEAD says how long the body is, without it. */
	if (c->req.url_len && c->req.parser.method == HTTP_HEAD)
		c->out.len = (uint32_t)head_len;
	c->out_held = c->out.cap;
	a->out_bytes += c->out_held;

	/* The method is known once the request line has begun. */
	if (c->req.url_len)
		method = http_method_str((enum http_method)c->req.parser.method);
	log_info("admin", "method=%s path=%s status=%d ms=%llu peer=%s",
		 method, log_escape(path, sizeof(path), c->req.url, c->req.url_len),
		 status,
		 (unsigned long long)(a->now_ms - c->started_ms), c->peer);

	c->state = AC_WRITE;
	c->deadline_ms = a->now_ms + ADMIN_SEND_MS;
	post_send(a, c);
}

void admin_respond_json(struct admin *a, struct aconn *c, int status,
			       json_t *j, const char *extra)
{
	if (!j || !admin_obuf_json(&c->out, j)) {
		json_decref(j);
		buf_free(&c->out);
		c->close_after = true;
		admin_respond(a, c, 500, "text/plain", NULL);
		return;
	}
	json_decref(j);
	admin_respond(a, c, status, "application/json", extra);
}

void admin_respond_error(struct admin *a, struct aconn *c, int status,
				const char *msg, const char *extra)
{
	admin_respond_json(a, c, status, json_pack("{s:s}", "error", msg),
			   extra);
}

/* ------------------------------------------------------------ parsing */

/* "Expect: 100-continue": the client waits for this before it sends the
 * body. Written at once, so it goes out before any answer: 25 bytes on a
 * connection with nothing else in flight (HTTP/1.1 sends no second
 * request before the body). If the socket cannot take them, the client
 * sends the body after its own timeout anyway. */
static void send_continue(struct aconn *c)
{
	static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";

	if (c->send_posted)
		return;
	(void)!send(c->fd, msg, sizeof(msg) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* conn_parse feeds the parser what is buffered; it answers a complete
 * request or an error, or asks for more bytes. */
static void conn_parse(struct admin *a, struct aconn *c)
{
	struct admin_req *r = &c->req;

	while (c->in_off < c->in_len) {
		size_t used;
		enum admin_feed res = admin_req_feed(r, c->in + c->in_off,
						     c->in_len - c->in_off,
						     &used);

		c->in_off += used;
		if (r->began) {
			r->began = false;
			c->started_ms = a->now_ms;
		}
		if (res == ADMIN_FEED_ERROR) {
			c->close_after = true;
			admin_respond_error(a, c, r->fail_status, r->fail_msg,
					    NULL);
			return;
		}
		if (r->want_continue) {
			r->want_continue = false;
			send_continue(c);
		}
		if (res == ADMIN_FEED_REQUEST) {
			c->close_after = r->close_after;
			admin_handle_request(a, c);
			return;
		}
	}
	c->in_off = c->in_len = 0;
	post_recv(a, c);
}

/* ------------------------------------------------------------ events */

static void conn_linger(struct admin *a, struct aconn *c)
{
	/* FIN first, then read until the client closes: closing with unread
	 * bytes would send a reset that can destroy our answer in flight.
	 * shutdown(2) here, not IORING_OP_SHUTDOWN: the kernel always runs
	 * that on an io-wq thread, which looks the fd number up only when it
	 * gets to it, and a cancel by fd cannot find it before then. A client
	 * that closed at once let its fd be closed and reused by the next
	 * accept, whose connection then got the FIN before its answer (CI:
	 * test_admin_errors_do_not_disturb_the_data_path, RemoteDisconnected
	 * on the PUT after a lingering 400). */
	shutdown(c->fd, SHUT_WR);
	c->state = AC_LINGER;
	c->deadline_ms = a->now_ms + ADMIN_LINGER_MS;
	c->in_off = c->in_len = 0;
	if (!c->recv_posted)
		post_recv(a, c);
}

/* idle_victim is the connection to close for a new one when
 * ADMIN_MAX_CONNS are open: one waiting for a request with nothing of one
 * read, never served before (it has not spoken) ahead of a kept-alive one,
 * the longest waiting of them (the earliest deadline: both wait
 * ADMIN_REQUEST_MS for a request); NULL when every one is busy. */
static struct aconn *idle_victim(struct admin *a)
{
	struct aconn *best = NULL;
	unsigned i;

	for (i = 0; i < ADMIN_CONN_SLOTS; i++) {
		struct aconn *c = &a->conns[i];
		/* Since its accept or its last answer. */
		uint64_t idle = a->now_ms + ADMIN_REQUEST_MS - c->deadline_ms;

		if (c->state != AC_READ || c->req.in_request ||
		    c->in_off < c->in_len || c->send_posted)
			continue;
		/* A client's next request may be on its way: only one idle
		 * for a while is taken (the usual keep-alive race, kept
		 * small), and a new one gets a moment to speak. */
		if (idle < (c->served ? ADMIN_EVICT_SERVED_MS
				      : ADMIN_EVICT_SILENT_MS))
			continue;
		if (!best || (!c->served && best->served) ||
		    (c->served == best->served &&
		     c->deadline_ms < best->deadline_ms))
			best = c;
	}
	return best;
}

/* free_slot is a free slot for a new connection, closing an idle one to
 * make room when ADMIN_MAX_CONNS are open; NULL when there is none. */
static struct aconn *free_slot(struct admin *a)
{
	struct aconn *c = NULL, *victim;
	unsigned i, open = 0;

	for (i = 0; i < ADMIN_CONN_SLOTS; i++) {
		if (a->conns[i].state == AC_FREE) {
			if (!c)
				c = &a->conns[i];
		} else if (a->conns[i].state != AC_CLOSING) {
			open++;
		}
	}
	if (!c || open < ADMIN_MAX_CONNS)
		return c;
	victim = idle_victim(a);
	if (!victim)
		return NULL;
	if (a->now_ms - a->evict_logged_ms >= 1000) {
		a->evict_logged_ms = a->now_ms;
		log_warn("admin_overload", "connections=%u: closing idle admin "
			 "connections for new ones (peer=%s %s)", open,
			 victim->peer, victim->served ? "kept alive" :
			 "never sent a request");
	}
	conn_close(a, victim);
	return c;
}

static void on_accept(struct admin *a, struct admin_listener *l, int fd)
{
	struct aconn *c = free_slot(a);
	struct sockaddr_in6 sa;
	socklen_t sa_len = sizeof(sa);

	if (!c) {
		struct io_uring_sqe *sqe = ring_sqe(&a->ring);

		io_uring_prep_close(sqe, fd);
		io_uring_sqe_set_data64(sqe, aud(AOP_IGNORE, 0, 0));
		if (a->now_ms - a->overload_logged_ms >= 1000) {
			a->overload_logged_ms = a->now_ms;
			log_warn("admin_overload", "connections=%u, none "
				 "idle: closing new admin connections",
				 a->live);
		}
		return;
	}
	a->live++;
	c->a = a;
	c->fd = fd;
	c->state = AC_READ;
	c->inflight = 0;
	c->recv_posted = c->send_posted = c->poll_posted = false;
	c->served = c->close_after = false;
	c->in_off = c->in_len = 0;
	c->discarded = 0;
	c->started_ms = a->now_ms;
	c->deadline_ms = a->now_ms + ADMIN_REQUEST_MS;
	if (!strcmp(l->name, "unix"))
		snprintf(c->peer, sizeof(c->peer), "unix");
	else if (getpeername(fd, (struct sockaddr *)&sa, &sa_len) == 0)
		log_fmt_addr(c->peer, &sa);
	else
		snprintf(c->peer, sizeof(c->peer), "-");
	admin_req_init(&c->req);
	post_recv(a, c);
}

static void on_recv(struct admin *a, struct aconn *c, int res)
{
	c->recv_posted = false;
	if (c->state == AC_CLOSING)
		return;
	if (res <= 0) {
		/* EOF between requests or mid-request, a reset: nothing
		 * to answer. While an answer is being sent, let it finish
		 * (the client may have only shut its side). */
		if (c->state == AC_WRITE && res == 0)
			c->close_after = true;
		else
			conn_close(a, c);
		return;
	}
	switch (c->state) {
	case AC_READ:
		c->in_len += (size_t)res;
		conn_parse(a, c);
		break;
	case AC_LINGER:
		c->discarded += (size_t)res;
		if (c->discarded > ADMIN_LINGER_BYTES)
			conn_close(a, c);
		else
			post_recv(a, c);
		break;
	default:
		/* A timed-out request still sending: dropped. */
		break;
	}
}

static void on_send(struct admin *a, struct aconn *c, int res)
{
	c->send_posted = false;
	if (c->state == AC_CLOSING)
		return;
	if (res <= 0) {
		conn_close(a, c);
		return;
	}
	buf_consume(&c->out, (size_t)res);
	if (c->out.len) {
		c->deadline_ms = a->now_ms + ADMIN_SEND_MS;
		post_send(a, c);
		return;
	}
	out_free(a, c);
	if (c->close_after) {
		conn_linger(a, c);
		return;
	}
	c->served = true;
	c->state = AC_READ;
	c->deadline_ms = a->now_ms + ADMIN_REQUEST_MS;
	admin_req_next(&c->req);
	if (c->recv_posted) /* cannot happen; never two recvs at once */
		return;
	conn_parse(a, c);
}

static void on_conn_cqe(struct admin *a, enum admin_op op, uint32_t slot,
			uint32_t gen, int res)
{
	struct aconn *c;

	if (slot >= ADMIN_CONN_SLOTS)
		return;
	c = &a->conns[slot];
	if (c->state == AC_FREE || (c->gen & 0xffffff) != gen ||
	    !c->inflight)
		return;
	c->inflight--;
	if (op == AOP_RECV)
		on_recv(a, c, res);
	else if (op == AOP_SEND)
		on_send(a, c, res);
	else if (op == AOP_POLL)
		on_poll(a, c, res);
	if (c->state == AC_CLOSING && !c->inflight)
		conn_release(a, c);
}

static void expire(struct admin *a)
{
	unsigned i;

	for (i = 0; i < ADMIN_CONN_SLOTS; i++) {
		struct aconn *c = &a->conns[i];

		/* AC_WAIT: the request is in; the writer thread answers
		 * within its own timeouts. */
		if (c->state == AC_FREE || c->state == AC_CLOSING ||
		    c->state == AC_WAIT || c->deadline_ms > a->now_ms)
			continue;
		if (c->state == AC_READ && (c->req.in_request || !c->served)) {
			/* slowloris, or a client that never spoke */
			c->close_after = true;
			c->started_ms = a->now_ms - ADMIN_REQUEST_MS;
			admin_respond_error(a, c, 408, "request not complete "
					    "within 10 s", NULL);
		} else {
			conn_close(a, c);
		}
	}
}

static void arm_listeners(struct admin *a)
{
	unsigned i;

	for (i = 0; i < a->ls_len; i++) {
		struct admin_listener *l = &a->ls[i];
		struct io_uring_sqe *sqe;

		if (l->armed || a->now_ms < l->retry_ms)
			continue;
		sqe = ring_sqe(&a->ring);
		io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL,
					       SOCK_CLOEXEC);
		io_uring_sqe_set_data64(sqe, aud(AOP_ACCEPT, i, 0));
		l->armed = true;
	}
}

static void post_wake(struct admin *a)
{
	struct io_uring_sqe *sqe = ring_sqe(&a->ring);

	io_uring_prep_read(sqe, a->efd, &a->efd_val, sizeof(a->efd_val), 0);
	io_uring_sqe_set_data64(sqe, aud(AOP_WAKE, 0, 0));
}

static void dispatch(struct admin *a, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum admin_op op = (enum admin_op)ring_ud_op(ud);
	uint32_t slot = ring_ud_slot(ud);

	switch (op) {
	case AOP_ACCEPT: {
		struct admin_listener *l;

		if (slot >= a->ls_len)
			break;
		l = &a->ls[slot];
		if (!(cqe->flags & IORING_CQE_F_MORE))
			l->armed = false;
		if (cqe->res >= 0) {
			on_accept(a, l, cqe->res);
		} else if (cqe->res != -ECANCELED) {
			l->retry_ms = a->now_ms + ADMIN_ACCEPT_BACKOFF_MS;
			if (l->armed) {
				struct io_uring_sqe *sqe = ring_sqe(&a->ring);

				io_uring_prep_cancel64(sqe, ud, 0);
				io_uring_sqe_set_data64(sqe,
							aud(AOP_IGNORE, 0, 0));
			}
			log_warn("admin_accept_error", "listener=%s errno=%d "
				 "error=\"%s\"", l->name, -cqe->res,
				 strerror(-cqe->res));
		}
		break;
	}
	case AOP_RECV:
	case AOP_SEND:
	case AOP_POLL:
		on_conn_cqe(a, op, slot, ring_ud_gen(ud), cqe->res);
		break;
	case AOP_WAKE:
		if (atomic_load(&a->stop))
			break;
		admin_write_reap(a);
		post_wake(a);
		break;
	default:
		break;
	}
}

static uint64_t next_deadline(const struct admin *a)
{
	uint64_t next = a->now_ms + 1000;
	unsigned i;

	for (i = 0; i < a->ls_len; i++)
		if (!a->ls[i].armed && a->ls[i].retry_ms < next)
			next = a->ls[i].retry_ms;
	for (i = 0; i < ADMIN_CONN_SLOTS; i++) {
		const struct aconn *c = &a->conns[i];

		if (c->state != AC_FREE && c->state != AC_CLOSING &&
		    c->state != AC_WAIT && c->deadline_ms < next)
			next = c->deadline_ms;
	}
	return next;
}

/* teardown: wake every pending recv (shutdown) and give the ring a moment
 * to complete them, so no operation outlives the buffers it points to. */
static void teardown_conns(struct admin *a)
{
	uint64_t until = timer_now_ms() + 500;
	unsigned i, pending;

	for (;;) {
		struct __kernel_timespec ts = { .tv_nsec = 20 * 1000000 };
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		pending = 0;
		for (i = 0; i < ADMIN_CONN_SLOTS; i++) {
			struct aconn *c = &a->conns[i];

			if (c->state == AC_FREE)
				continue;
			if (c->fd >= 0) {
				/* A poll holds the file: shutdown does not
				 * always end it. */
				remove_poll(a, c);
				shutdown(c->fd, SHUT_RDWR);
				close(c->fd);
				c->fd = -1;
				c->state = AC_CLOSING;
			}
			if (!c->inflight)
				conn_release(a, c);
			else
				pending++;
		}
		if (!pending || timer_now_ms() > until)
			break;
		io_uring_submit_and_wait_timeout(&a->ring, &cqe, 1, &ts, NULL);
		io_uring_for_each_cqe(&a->ring, head, cqe) {
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			enum admin_op op = (enum admin_op)ring_ud_op(ud);

			if (op == AOP_RECV || op == AOP_SEND ||
			    op == AOP_POLL)
				on_conn_cqe(a, op, ring_ud_slot(ud),
					    ring_ud_gen(ud), cqe->res);
			n++;
		}
		io_uring_cq_advance(&a->ring, n);
	}
}

static bool writing(const struct admin *a)
{
	unsigned i;

	for (i = 0; i < ADMIN_CONN_SLOTS; i++)
		if (a->conns[i].state == AC_WRITE)
			return true;
	return false;
}

/* One turn of the admin ring: submit, wait at most |wait_ms| for a
 * completion, and dispatch what completed. Returns 0, or io_uring_enter's
 * error (nothing dispatched then). */
static int turn(struct admin *a, uint64_t wait_ms)
{
	struct __kernel_timespec ts = {
		.tv_sec = (long long)(wait_ms / 1000),
		.tv_nsec = (long long)(wait_ms % 1000) * 1000000,
	};
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int ret;

	ret = io_uring_submit_and_wait_timeout(&a->ring, &cqe, 1, &ts, NULL);
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY &&
	    ret != -EAGAIN)
		return ret;
	a->now_ms = timer_now_ms();
	io_uring_for_each_cqe(&a->ring, head, cqe) {
		dispatch(a, cqe);
		n++;
	}
	io_uring_cq_advance(&a->ring, n);
	return 0;
}

/* Stopping: the writer was joined before a->stop was set, so the answers
 * to its jobs (a cancelled etcd call's 503) are all on its done list, or
 * already being sent. They go out, for at most ADMIN_STOP_FLUSH_MS, before
 * teardown_conns closes the connections; a client too slow for that has
 * its connection closed. */
static void flush_answers(struct admin *a)
{
	uint64_t until = timer_now_ms() + ADMIN_STOP_FLUSH_MS;

	a->now_ms = timer_now_ms();
	admin_write_reap(a);
	while (writing(a) && timer_now_ms() < until)
		turn(a, 20);
}

static void *admin_main(void *arg)
{
	struct admin *a = arg;
	int ret;

	ret = ring_setup(&a->ring, ADMIN_RING_ENTRIES);
	a->setup_err = ret;
	a->ring_ok = ret == 0;
	sem_post(&a->ready);
	if (ret)
		return NULL;
	a->now_ms = timer_now_ms();
	post_wake(a);
	while (!atomic_load(&a->stop)) {
		uint64_t wait_ms;

		arm_listeners(a);
		wait_ms = next_deadline(a);
		/* +1: wake just after a deadline, not just before it */
		wait_ms = (wait_ms > a->now_ms ? wait_ms - a->now_ms : 0) + 1;
		ret = turn(a, wait_ms);
		if (ret) {
			log_error("admin_error", "io_uring_enter: %s; the "
				  "admin API stops", strerror(-ret));
			break;
		}
		expire(a);
	}
	flush_answers(a);
	teardown_conns(a);
	/* Here: the ring's fd was registered by this thread. */
	io_uring_queue_exit(&a->ring);
	a->ring_ok = false;
	return NULL;
}

/* ------------------------------------------------------------ setup */

/* read_token reads the token in |path| (trailing whitespace removed) into
 * its SHA-256 |digest|; 0, or -errno having logged why. */
static int read_token(uint8_t digest[SHA256_DIGEST_LENGTH], const char *path)
{
	uint8_t buf[ADMIN_MAX_TOKEN + 1];
	size_t len = 0;
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		log_error("admin", "token_file %s: %s", path, strerror(errno));
		return err;
	}
	while (len < sizeof(buf) &&
	       (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	if (!err && len > ADMIN_MAX_TOKEN)
		err = -EFBIG;
	if (!err)
		len = admin_token_len(buf, len);
	if (!err && !len)
		err = -EINVAL;
	if (err) {
		log_error("admin", "token_file %s: %s", path,
			  err == -EINVAL ? "empty" : strerror(-err));
		OPENSSL_cleanse(buf, sizeof(buf));
		return err;
	}
	SHA256(buf, len, digest);
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

/* control_on_reload's hook: the token file is read again (another path
 * too), and a token that reads well replaces the one in use; one that
 * does not leaves it. Whether there is a token at all (and so whether
 * the Unix socket asks for one) changes with a restart only. */
static void admin_token_reload(void *arg, const struct config *cfg)
{
	struct admin *a = arg;
	uint8_t digest[SHA256_DIGEST_LENGTH];
	bool changed;

	if (!a->have_token || !cfg->admin.enabled || !cfg->admin.token_file)
		return;
	if (read_token(digest, cfg->admin.token_file)) {
		log_warn("admin", "token_file %s unreadable: the token in use "
			 "stays", cfg->admin.token_file);
		return;
	}
	pthread_mutex_lock(&a->tlock);
	changed = CRYPTO_memcmp(digest, a->token_digest, sizeof(digest)) != 0;
	memcpy(a->token_digest, digest, sizeof(digest));
	pthread_mutex_unlock(&a->tlock);
	OPENSSL_cleanse(digest, sizeof(digest));
	if (changed)
		log_info("admin", "token_file %s: a new token is in use, the "
			 "old one refused", cfg->admin.token_file);
}

static int open_tcp(const struct sockaddr_in6 *sa)
{
	int fd, one = 1, zero = 0, err;

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		goto errno_close;
	/* "::" and v4-mapped addresses take IPv4 clients too. */
	if ((IN6_IS_ADDR_UNSPECIFIED(&sa->sin6_addr) ||
	     IN6_IS_ADDR_V4MAPPED(&sa->sin6_addr)) &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)))
		goto errno_close;
	/* No SO_REUSEPORT: a second vmgate must not share the API. After a
	 * crash the port stays in use for a moment; listener_listen waits
	 * it out (see there). */
	err = listener_listen(fd, sa, 128, "listener=admin");
	if (err)
		goto close_fd;
	return fd;
errno_close:
	err = -errno;
close_fd:
	close(fd);
	return err;
}

static int open_unix(const char *path)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, err;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	/* A socket left by a previous run is stale; anything else at that
	 * path is not ours to remove. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (unlink(path))
			return -errno;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		err = -errno;
		goto close_fd;
	}
	/* chmod before listen: nobody can connect in between. */
	if (chmod(path, 0600) || listen(fd, 128)) {
		err = -errno;
		goto unlink_path;
	}
	return fd;
unlink_path:
	unlink(path);
close_fd:
	close(fd);
	return err;
}

static void admin_free(struct admin *a)
{
	unsigned i;

	/* First: the writer may still wake the ring's eventfd. */
	admin_write_free(a);
	if (a->ring_ok)
		io_uring_queue_exit(&a->ring);
	for (i = 0; i < ADMIN_CONN_SLOTS; i++) {
		if (a->conns[i].state != AC_FREE && a->conns[i].fd >= 0)
			close(a->conns[i].fd);
		buf_free(&a->conns[i].out);
		admin_req_free(&a->conns[i].req);
	}
	for (i = 0; i < a->ls_len; i++)
		close(a->ls[i].fd);
	if (a->unix_path) {
		struct stat st;

		/* After an upgrade (--takeover) the path is the new
		 * process's socket: not ours to remove. */
		if (!lstat(a->unix_path, &st) && st.st_ino == a->unix_ino)
			unlink(a->unix_path);
		free(a->unix_path);
	}
	if (a->efd >= 0)
		close(a->efd);
	sem_destroy(&a->ready);
	pthread_cond_destroy(&a->wcond);
	pthread_mutex_destroy(&a->wlock);
	pthread_mutex_destroy(&a->tlock);
	OPENSSL_cleanse(a->token_digest, sizeof(a->token_digest));
	free(a);
}

int admin_start(struct admin **out, const struct config_admin *cfg,
		struct control *ctl)
{
	char addr[LOG_ADDR_MAX] = "-";
	struct admin *a;
	int ret;

	*out = NULL;
	if (!cfg->enabled)
		return 0;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->ctl = ctl;
	a->efd = -1;
	sem_init(&a->ready, 0, 0);
	pthread_mutex_init(&a->wlock, NULL);
	pthread_mutex_init(&a->tlock, NULL);
	pthread_cond_init(&a->wcond, NULL);

	if (cfg->token_file) {
		ret = read_token(a->token_digest, cfg->token_file);
		if (ret)
			goto err;
		a->have_token = true;
	} else if (cfg->has_listen) {
		log_error("admin", "a TCP listener needs a token_file");
		ret = -EINVAL;
		goto err;
	}
	if (cfg->has_listen) {
		ret = open_tcp(&cfg->listen);
		log_fmt_addr(addr, &cfg->listen);
		if (ret < 0) {
			log_error("admin", "cannot listen on %s: %s", addr,
				  strerror(-ret));
			goto err;
		}
		a->ls[a->ls_len++] = (struct admin_listener){ .fd = ret,
							      .name = "tcp" };
	}
	if (cfg->unix_path) {
		ret = open_unix(cfg->unix_path);
		if (ret < 0) {
			log_error("admin", "cannot listen on %s: %s",
				  cfg->unix_path, strerror(-ret));
			goto err;
		}
		a->ls[a->ls_len++] = (struct admin_listener){ .fd = ret,
							      .name = "unix" };
		a->unix_path = strdup(cfg->unix_path);
		{
			struct stat st;

			if (!lstat(cfg->unix_path, &st))
				a->unix_ino = st.st_ino;
		}
	}
	if (!a->ls_len) {
		log_error("admin", "admin: has neither listen nor unix");
		ret = -EINVAL;
		goto err;
	}
	a->efd = eventfd(0, EFD_CLOEXEC);
	if (a->efd < 0) {
		ret = -errno;
		goto err;
	}
	ret = admin_write_start(a);
	if (ret) {
		log_error("admin", "cannot start the fleet writer thread: %s",
			  strerror(-ret));
		goto err;
	}
	ret = -pthread_create(&a->thread, NULL, admin_main, a);
	if (ret)
		goto err;
	a->thread_started = true;
	sem_wait(&a->ready);
	if (a->setup_err) {
		ret = a->setup_err;
		log_error("admin", "io_uring setup: %s", strerror(-ret));
		pthread_join(a->thread, NULL);
		goto err;
	}
	log_info("admin_ready", "listen=%s unix=%s auth=%s", addr,
		 cfg->unix_path ? cfg->unix_path : "-",
		 a->have_token ? "token" : "none");
	control_on_reload(ctl, admin_token_reload, a);
	*out = a;
	return 0;
err:
	admin_free(a);
	return ret;
}

void admin_stop(struct admin *a)
{
	uint64_t one = 1;

	if (!a)
		return;
	control_on_reload(a->ctl, NULL, NULL);
	/* The writer takes no new job from here on, and is joined while the
	 * admin thread still serves: the job running ends within about a
	 * second (control_stopping cancelled the etcd calls), and its
	 * answer and the queued jobs' 503 are on the done list before the
	 * admin thread is told to stop (flush_answers sends them). */
	admin_write_stop(a);
	atomic_store(&a->stop, true);
	(void)!write(a->efd, &one, sizeof(one));
	pthread_join(a->thread, NULL);
	admin_free(a);
}
