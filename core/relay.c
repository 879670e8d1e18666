/* core/relay.c: the two directions of an established connection.
 *
 *   up:   client --recv--> TLS input --SSL_read--> up.data --send--> VM
 *   down: VM --recv--> SSL_write --> TLS output --send--> client
 *
 * Receives land in the worker's provided buffers and are handed to TLS at
 * once, so the buffer goes back to the ring in the same batch. What waits
 * is bounded per direction by limits.buffer_bytes: a side is read only
 * while the other side's pending bytes are under the cap, so a slow
 * reader pauses its peer instead of growing memory. At most one recv and
 * one send are in flight per direction.
 *
 * A VM receive that leaves more in the socket (IORING_CQE_F_SOCK_NONEMPTY:
 * bytes, or the FIN) is followed by another receive before less than a
 * receive buffer's worth goes to the client, so a short answer and the
 * FIN behind it leave in one send, with the close_notify, not in two;
 * bulk data is sent as it comes.
 *
 * A VM's reset or error ends "down" as cut short, not finished: what the
 * VM sent before still goes to the client, then a FIN without a
 * close_notify (conn_vm_failed). Seen on a send to the VM, it ends "up"
 * at once (the client's bytes are read and dropped from then on) and
 * "down" goes on until the receives have taken what the VM sent before
 * the reset (CF_VM_GONE).
 *
 * Half-close: the client's close_notify or FIN ends "up" (shutdown toward
 * the VM once up.data is sent); the VM's FIN ends "down" (close_notify,
 * then shutdown toward the client once everything is sent). The
 * connection is done when both are. The sends after the close_notify are
 * the last of "down" and carry MSG_MORE: the kernel keeps their tail
 * unsent until the shutdown (or close) that follows their completion
 * sets the FIN on it, so the client gets the last records and the FIN in
 * one segment, not two.
 */
#include "core/conn.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/kconfig.h"
#include "core/log.h"

static uint32_t buffer_cap(const struct worker *w)
{
	return w->shared->cfg->limits.buffer_bytes;
}

static void put_dirbuf(struct worker *w, struct buf *d)
{
	if (d->data)
		bufpool_put(&w->pool, d->data);
	*d = (struct buf){ 0 };
}

void relay_release_buffers(struct worker *w, struct conn *c)
{
	put_dirbuf(w, &c->up);
}

static void starve(struct worker *w, struct conn *c)
{
	if (c->flags & CF_STARVED)
		return;
	c->flags |= CF_STARVED;
	c->next = w->starved;
	w->starved = c;
}

/* Hands a provided buffer back; returns its bytes' address for |res|. */
static const uint8_t *cqe_buffer(struct worker *w,
				 const struct io_uring_cqe *cqe,
				 unsigned *bid)
{
	if (!(cqe->flags & IORING_CQE_F_BUFFER))
		return NULL;
	*bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
	return ring_buf_addr(&w->bufs, *bid);
}

static enum conn_reason error_reason(int res, enum conn_reason reset,
				     enum conn_reason other)
{
	return res == -ECONNRESET || res == -EPIPE ? reset : other;
}

#define HELLO_READ_MIN 4096

void relay_arm_client_recv(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;
	unsigned len = w->bufs.buf_size;

	if (c->flags & (CF_CLIENT_RECV | CF_CLIENT_FIN | CF_STARVED))
		return;
	/* While a hello is collected, not much further than the parser
	 * said the answer can change: its last bytes and a receive buffer
	 * behind them in one read held far more than a hello may cost
	 * (README, limits.max_clienthello_bytes). At least HELLO_READ_MIN:
	 * the parser's next step may be one header byte away, and a hello
	 * in 1-byte records would cost a receive per byte. What follows
	 * stays in the socket until the handshake reads it. */
	if (c->state == CONN_HELLO) {
		size_t have = tls_conn_input_len(&c->tls), want;

		if (c->hello_need > have) {
			want = c->hello_need - have;
			if (want < HELLO_READ_MIN)
				want = HELLO_READ_MIN;
			if (want < len)
				len = (unsigned)want;
		}
	}
	sqe = conn_sqe(w, c, OP_CLIENT_RECV);
	io_uring_prep_recv(sqe, c->cfd, NULL, len, 0);
	ring_sock(sqe);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RING_BGID;
	c->flags |= CF_CLIENT_RECV;
}

static void arm_vm_recv(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->flags & (CF_VM_RECV | CF_VM_EOF | CF_STARVED))
		return;
	sqe = conn_sqe(w, c, OP_VM_RECV);
	io_uring_prep_recv(sqe, c->vfd, NULL, w->bufs.buf_size, 0);
	ring_sock(sqe);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RING_BGID;
	c->flags |= CF_VM_RECV;
}

void relay_on_client_recv(struct worker *w, struct conn *c,
			  const struct io_uring_cqe *cqe)
{
	const uint8_t *buf;
	unsigned bid = 0;
	bool fed = true;

	buf = cqe_buffer(w, cqe, &bid);
	if (buf) {
		/* A lingering connection only drains what the client sends,
		 * and so does one whose VM is gone. */
		if (cqe->res > 0 && c->state != CONN_LINGER &&
		    !(c->flags & CF_VM_GONE))
			fed = tls_conn_feed(&c->tls, buf, (size_t)cqe->res);
		ring_buf_put(&w->bufs, bid);
	}
	if (cqe->res > 0) {
		c->active_ms = w->now_ms;
		if (!fed)
			conn_close(w, c, REASON_OUT_OF_MEMORY);
	} else if (cqe->res == 0) {
		c->flags |= CF_CLIENT_FIN;
	} else if (cqe->res == -ENOBUFS) {
		starve(w, c);
	} else {
		conn_close(w, c, error_reason(cqe->res, REASON_CLIENT_RESET,
					      REASON_CLIENT_ERROR));
	}
}

void relay_on_vm_recv(struct worker *w, struct conn *c,
		      const struct io_uring_cqe *cqe)
{
	enum tls_io r = TLS_IO_DONE;
	const uint8_t *buf;
	unsigned bid = 0;

	buf = cqe_buffer(w, cqe, &bid);
	if (buf) {
		if (cqe->res > 0 && (c->flags & CF_PASSTHROUGH))
			r = tls_conn_queue_raw(&c->tls, buf, (size_t)cqe->res)
				    ? TLS_IO_DONE
				    : TLS_IO_ERROR;
		else if (cqe->res > 0)
			r = tls_conn_write(&c->tls, buf, (size_t)cqe->res);
		ring_buf_put(&w->bufs, bid);
	}
	c->flags &= ~CF_VM_MORE;
	if (cqe->res > 0) {
		if (cqe->flags & IORING_CQE_F_SOCK_NONEMPTY)
			c->flags |= CF_VM_MORE;
		c->active_ms = w->now_ms;
		c->down_bytes += (uint64_t)cqe->res;
		metric_add(&w->metrics.bytes_down, (uint64_t)cqe->res);
		metric_add(&c->vms->bytes_down, (uint64_t)cqe->res);
		/* No alert of ours in the middle of the VM's own TLS. */
		if (r != TLS_IO_DONE && (c->flags & CF_PASSTHROUGH))
			conn_close(w, c, REASON_OUT_OF_MEMORY);
		else if (r != TLS_IO_DONE)
			conn_tls_failed(w, c);
	} else if (cqe->res == 0 && !(c->flags & CF_VM_GONE)) {
		c->flags |= CF_VM_EOF;
	} else if (cqe->res == -ENOBUFS) {
		starve(w, c);
	} else {
		/* After a failed send the socket's error is taken and its
		 * receives end as if at a FIN. A real one only if the reset
		 * came after it: then the send failed with EPIPE, as the
		 * kernel says of a reset in CLOSE_WAIT, and the VM's stream
		 * ended cleanly. */
		int err = c->flags & CF_VM_GONE ? -c->vm_errno : cqe->res;

		if (cqe->res == 0 && err == -EPIPE) {
			tls_conn_close_notify(&c->tls);
			c->flags |= CF_VM_EOF | CF_NOTIFY;
		}
		conn_vm_failed(w, c, error_reason(err, REASON_VM_RESET,
						  REASON_VM_ERROR));
	}
}

static void on_sent(struct worker *w, struct conn *c, struct buf *d,
		    int res)
{
	buf_consume(d, (size_t)res);
	c->active_ms = w->now_ms;
	if (!d->len)
		put_dirbuf(w, d);
}

void relay_on_client_send(struct worker *w, struct conn *c, int res)
{
	if (res <= 0) {
		conn_close(w, c, error_reason(res, REASON_CLIENT_RESET,
					      REASON_CLIENT_ERROR));
		return;
	}
	tls_conn_out_consume(&c->tls, (size_t)res);
	c->active_ms = w->now_ms;
	/* A lingering client that takes bytes has the linger time again. */
	if (c->state == CONN_LINGER)
		timer_arm(&w->linger_timers, &c->timer, w->now_ms);
}

void relay_on_vm_send(struct worker *w, struct conn *c, int res)
{
	if (res > 0) {
		on_sent(w, c, &c->up, res);
	} else if (c->flags & CF_VM_EOF) {
		conn_vm_failed(w, c, error_reason(res, REASON_VM_RESET,
						  REASON_VM_ERROR));
	} else {
		/* What the VM sent before its reset may still wait in our
		 * socket: up ends here, down goes on (see the top), and the
		 * close line is written at its end, with all it took. */
		c->vm_errno = res < 0 ? -res : EIO;
		c->flags |= CF_VM_GONE | CF_VM_SHUT | CF_CLIENT_EOF;
		put_dirbuf(w, &c->up);
	}
}

/* Make sure |d| has a buffer; false (and the connection closed) if the
 * pool cannot give one. */
static bool hold_dirbuf(struct worker *w, struct conn *c, struct buf *d)
{
	if (d->data)
		return true;
	d->data = bufpool_get(&w->pool);
	if (!d->data) {
		conn_close(w, c, REASON_OUT_OF_MEMORY);
		return false;
	}
	d->off = d->len = 0;
	d->cap = w->pool.size;
	return true;
}

/* Every TLS record waiting goes out in one send, straight from the TLS
 * output buffer, which stays pinned until the send completes. Once the
 * close_notify is queued, relay_run shuts the client side when the send
 * completes: MSG_MORE holds the tail for that FIN (see the top). */
void relay_flush_client(struct worker *w, struct conn *c)
{
	bool last = (c->flags & CF_NOTIFY) && c->state == CONN_RELAY;
	struct io_uring_sqe *sqe;
	const uint8_t *data;
	size_t len;

	if (c->flags & CF_CLIENT_SEND)
		return;
	tls_conn_out_peek(&c->tls, &data, &len);
	if (!len)
		return;
	sqe = conn_sqe(w, c, OP_CLIENT_SEND);
	io_uring_prep_send(sqe, c->cfd, data, len,
			   MSG_NOSIGNAL | (last ? MSG_MORE : 0));
	ring_sock(sqe);
	c->flags |= CF_CLIENT_SEND;
}

static void flush_vm(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if ((c->flags & CF_VM_SEND) || !c->up.len)
		return;
	sqe = conn_sqe(w, c, OP_VM_SEND);
	io_uring_prep_send(sqe, c->vfd, buf_head(&c->up), c->up.len,
			   MSG_NOSIGNAL);
	ring_sock(sqe);
	c->flags |= CF_VM_SEND;
}

/* IORING_OP_SHUTDOWN(SHUT_WR) on direct descriptor |fd| of |c|. */
static void shut_wr_ring(struct worker *w, struct conn *c, int fd)
{
	struct io_uring_sqe *sqe = conn_sqe(w, c, OP_SHUTDOWN);

	io_uring_prep_shutdown(sqe, fd, SHUT_WR);
	ring_sock(sqe);
}

/* shutdown(SHUT_WR) on socket |fd| of |c|. shutdown(2) on a TCP socket
 * only queues a FIN and never blocks, so it is the one socket call made
 * outside the ring; the kernel would run every IORING_OP_SHUTDOWN on an
 * io-wq worker thread (measured: one thread hand-off per half-close). A
 * direct descriptor is first installed as an fd for the call
 * (relay_on_shut); IORING_OP_SHUTDOWN is the fallback if that fails, and
 * the only way on a kernel without IORING_OP_FIXED_FD_INSTALL (before
 * 6.8). Both count as in flight: io-wq looks the descriptor up only when
 * it runs, and the connection's table slots must not be handed on before.
 * An error (the peer is gone) shows up on the next receive or send. */
static void shut_wr(struct worker *w, struct conn *c, int fd)
{
	struct io_uring_sqe *sqe;

	if (!ring_direct) {
		shutdown(fd, SHUT_WR);
		return;
	}
	if (!ring_fd_install) {
		shut_wr_ring(w, c, fd);
		return;
	}
	sqe = conn_sqe(w, c, fd == c->cfd ? OP_SHUT_CLIENT : OP_SHUT_VM);
	ring_prep_fd_install(sqe, fd);
}

void relay_on_shut(struct worker *w, struct conn *c, enum ring_op op,
		   int res)
{
	if (res >= 0) {
		if (c->state != CONN_CLOSING)
			shutdown(res, SHUT_WR);
		close(res);
		return;
	}
	if (c->state == CONN_CLOSING)
		return;
	/* No fd to spare: the slow way. */
	shut_wr_ring(w, c, op == OP_SHUT_CLIENT ? c->cfd : c->vfd);
}

/* The relay's half-close of one direction: |flag| (CF_VM_SHUT or
 * CF_CLIENT_SHUT) on socket |fd|. When the other direction is already
 * shut the connection closes at once, and close() sends the FIN: no
 * shutdown then. */
static void half_close(struct worker *w, struct conn *c, int fd,
		       uint32_t flag)
{
	uint32_t other = flag == CF_VM_SHUT ? CF_CLIENT_SHUT : CF_VM_SHUT;

	if (!(c->flags & other))
		shut_wr(w, c, fd);
	c->flags |= flag;
}

/* The client's next bytes for the VM: decrypted, or as they came. */
static enum tls_io read_up(struct conn *c, size_t *out_len, uint8_t *out,
			   size_t cap)
{
	if (!(c->flags & CF_PASSTHROUGH))
		return tls_conn_read(&c->tls, out_len, out, cap);
	*out_len = tls_conn_input_take(&c->tls, out, cap);
	return *out_len ? TLS_IO_DONE : TLS_IO_WANT_READ;
}

/* Client -> VM: decrypt into up.data while there is room. Returns false
 * if the connection was closed. */
static bool pump_up(struct worker *w, struct conn *c)
{
	size_t n;

	while (!(c->flags & CF_CLIENT_EOF)) {
		if (!hold_dirbuf(w, c, &c->up))
			return false;
		if (!buf_room(&c->up))
			break;
		switch (read_up(c, &n, buf_tail(&c->up), buf_room(&c->up))) {
		case TLS_IO_DONE:
			c->up.len += (uint32_t)n;
			c->up_bytes += n;
			metric_add(&w->metrics.bytes_up, n);
			metric_add(&c->vms->bytes_up, n);
			continue;
		case TLS_IO_WANT_READ:
			/* A FIN without close_notify also ends the stream:
			 * many clients never send close_notify. */
			if (c->flags & CF_CLIENT_FIN)
				c->flags |= CF_CLIENT_EOF;
			break;
		case TLS_IO_CLOSED:
			c->flags |= CF_CLIENT_EOF;
			break;
		case TLS_IO_ERROR:
		case TLS_IO_WANT_KEY: /* no key operation after the handshake */
			conn_tls_failed(w, c);
			return false;
		}
		break;
	}
	if (!c->up.len && !(c->flags & CF_VM_SEND))
		put_dirbuf(w, &c->up);
	/* A KeyUpdate with update_requested is answered now, not when the
	 * VM next speaks. */
	if (tls_conn_flush(&c->tls) != TLS_IO_DONE) {
		conn_tls_failed(w, c);
		return false;
	}
	return true;
}

bool relay_start(struct worker *w, struct conn *c)
{
	size_t len;

	if (!c->proxy)
		return true;
	if (!hold_dirbuf(w, c, &c->up))
		return false;
	/* The header is the first thing the VM reads; the client's bytes
	 * follow it in the same buffer, often in the same send. */
	if (!backend_proxy_header(c, c->up.data, &len, buffer_cap(w))) {
		conn_close(w, c, REASON_OUT_OF_MEMORY);
		return false;
	}
	c->up.len = (uint32_t)len;
	return true;
}

/* Lingering close: send the last bytes (an alert), shut our side, and read
 * and drop whatever the client still sends until its FIN or the linger
 * timer. Closing with unread bytes would send a reset, and a reset can
 * destroy the alert before the client reads it. Returns true when the
 * connection can be closed. */
bool relay_linger(struct worker *w, struct conn *c)
{
	relay_flush_client(w, c);
	if ((c->flags & CF_CLIENT_SEND) || tls_conn_out_len(&c->tls)) {
		/* Drained meanwhile too: a client blocked in its own send
		 * would never take the last bytes. */
		relay_arm_client_recv(w, c);
		return c->state != CONN_LINGER;
	}
	if (!(c->flags & CF_CLIENT_SHUT)) {
		shut_wr(w, c, c->cfd);
		c->flags |= CF_CLIENT_SHUT;
		timer_arm(&w->linger_timers, &c->timer, w->now_ms);
	}
	if (c->flags & CF_CLIENT_FIN)
		return true;
	relay_arm_client_recv(w, c);
	return false;
}

void relay_run(struct worker *w, struct conn *c)
{
	uint32_t cap = buffer_cap(w);

	if (!pump_up(w, c))
		return;
	flush_vm(w, c);
	if ((c->flags & CF_CLIENT_EOF) && !c->up.len &&
	    !(c->flags & (CF_VM_SEND | CF_VM_SHUT)))
		half_close(w, c, c->vfd, CF_VM_SHUT);
	if (!(c->flags & CF_CLIENT_EOF) && c->up.len < cap &&
	    tls_conn_input_len(&c->tls) < cap)
		relay_arm_client_recv(w, c);
	/* Read to drop: a client blocked in its own send would never read
	 * what is still on its way to it. */
	if (c->flags & CF_VM_GONE)
		relay_arm_client_recv(w, c);

	if ((c->flags & CF_VM_EOF) && !(c->flags & CF_NOTIFY)) {
		tls_conn_close_notify(&c->tls);
		c->flags |= CF_NOTIFY;
	}
	/* One more receive adds at most one buffer's worth of records: the
	 * TLS output has room for that past the cap (see conn_accept). */
	if (!(c->flags & CF_VM_EOF) && tls_conn_out_len(&c->tls) < cap)
		arm_vm_recv(w, c);
	/* A short piece the VM has already sent more behind waits for that
	 * receive, which completes at once. */
	if (!(c->flags & CF_VM_MORE) || !(c->flags & CF_VM_RECV) ||
	    tls_conn_out_len(&c->tls) >= CONFIG_RECV_BUF_SIZE)
		relay_flush_client(w, c);
	if (c->state != CONN_RELAY)
		return;
	if ((c->flags & CF_NOTIFY) && !tls_conn_out_len(&c->tls) &&
	    !(c->flags & (CF_CLIENT_SEND | CF_CLIENT_SHUT)))
		half_close(w, c, c->cfd, CF_CLIENT_SHUT);

	if ((c->flags & (CF_VM_SHUT | CF_CLIENT_SHUT)) ==
	    (CF_VM_SHUT | CF_CLIENT_SHUT))
		conn_close(w, c, REASON_DONE);
}
