/* core/conn.c: the connection state machine (see conn.h).
 *
 *   HELLO ----route ok----> HANDSHAKE --tls done + vm connected--> RELAY
 *     |  \--reject--> LINGER --alert flushed--> CLOSING <----done---/
 *     |                 ^                           ^
 *     \--timeout--------+--connect error / tls error+--- errors, timeouts
 *
 * CLOSING cancels what is in flight and frees the slot when the last
 * completion is in; a completion that names an older generation of the
 * slot is dropped by conn_complete.
 */
#include "core/conn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/front.h"
#include "core/kconfig.h"
#include "core/log.h"
#include "core/signer.h"
#include "core/steer.h"
#include "tls/alert.h"
#include "tls/ctx.h"
#include "tls/hello.h"

struct io_uring_sqe *conn_sqe(struct worker *w, struct conn *c,
			      enum ring_op op)
{
	struct io_uring_sqe *sqe = ring_sqe(&w->ring);

	io_uring_sqe_set_data64(sqe, ring_ud(op, c->slot, c->gen));
	c->inflight++;
	return sqe;
}

const char *conn_vm_id(const struct conn *c, char *out, size_t cap)
{
	const char *sni = c->tls.sni;
	size_t n;

	if (!sni)
		return "-";
	n = strcspn(sni, ".");
	if (n >= cap)
		n = cap - 1;
	memcpy(out, sni, n);
	out[n] = '\0';
	return out;
}

/* The connection's one line, and its count. |detail| (or NULL) says more
 * about |reason|. */
static void log_close(struct worker *w, struct conn *c,
		      enum conn_reason reason, const char *detail)
{
	char peer[LOG_ADDR_MAX], vm[64], tlsinfo[128];
	char subject[256], cn[65], client[LOG_ESCAPED_MAX(255) + 16] = "";
	bool fresh;

	c->flags |= CF_LOGGED;
	metrics_count(&w->metrics, reason);
	log_fmt_addr(peer, &c->peer);
	if (!c->tls.sni) {
		/* Never got as far as a routed hello: scanners and probes.
		 * Keep them out of the default log. */
		log_debug("close", "peer=%s port=%u ms=%llu reason=%s", peer,
			  c->listen_port,
			  (unsigned long long)(w->now_ms - c->start_ms),
			  reason_name(reason));
		return;
	}
	if (c->flags & CF_PASSTHROUGH)
		snprintf(tlsinfo, sizeof(tlsinfo), "tls=passthrough");
	else
		tls_conn_describe(&c->tls, tlsinfo, sizeof(tlsinfo));
	/* The subject is the CA's word, but escaped all the same: it is
	 * bytes a client chose. */
	if (tls_conn_client_cert(&c->tls, subject, sizeof(subject), cn,
				 sizeof(cn), &fresh)) {
		char esc[LOG_ESCAPED_MAX(255)];

		snprintf(client, sizeof(client), " client_cert=\"%s\"",
			 log_escape(esc, sizeof(esc), (const uint8_t *)subject,
				    strnlen(subject, 255)));
	}
	log_msg(reason_level(reason), "close",
		"peer=%s sni=%s vm=%s vm_port=%u id=%016llx up=%llu down=%llu "
		"ms=%llu reason=%s%s%s%s %s%s",
		peer, c->tls.sni, conn_vm_id(c, vm, sizeof(vm)), c->vm_port,
		(unsigned long long)c->id,
		(unsigned long long)c->up_bytes,
		(unsigned long long)c->down_bytes,
		(unsigned long long)(w->now_ms - c->start_ms),
		reason_name(reason), detail ? " detail=\"" : "",
		detail ? detail : "", detail ? "\"" : "", tlsinfo, client);
}

static void conn_release(struct worker *w, struct conn *c)
{
	uint32_t slot = c->slot, gen = c->gen;
	struct io_uring_sqe *sqe;

	/* Nothing is in flight on the fds any more: close them through the
	 * ring; those completions are not the connection's. */
	if (c->cfd >= 0) {
		sqe = ring_sqe(&w->ring);
		ring_prep_close_sock(sqe, c->cfd);
		io_uring_sqe_set_data64(sqe, ring_ud(OP_CLOSE, 0, 0));
	}
	if (c->vfd >= 0) {
		sqe = ring_sqe(&w->ring);
		ring_prep_close_sock(sqe, c->vfd);
		io_uring_sqe_set_data64(sqe, ring_ud(OP_CLOSE, 0, 0));
	}
	timer_disarm(&c->timer);
	timer_disarm(&c->key_timer);
	if (c->flags & CF_PEER)
		peers_release(&w->shared->peers, c->peer_slot);
	if (c->vms)
		vmstats_closed(c->vms);
	tls_conn_free(&c->tls);
	relay_release_buffers(w, c);
	memset(c, 0, sizeof(*c));
	c->slot = slot;
	c->gen = (gen + 1) & 0xffffff;
	c->state = CONN_FREE;
	c->next = w->free_conns;
	w->free_conns = c;
	w->conns_live--;
}

/* Cancels operation |op| of |c|, if it is in flight. By exact user_data:
 * the kernel finds it in a hash, where cancelling by fd walks every
 * request in the ring (9,000 closes at once took seconds that way). A
 * shutdown is never cancelled: it completes at once. */
static void cancel_op(struct worker *w, struct conn *c, uint32_t flag,
		      enum ring_op op)
{
	struct io_uring_sqe *sqe;

	if (!(c->flags & flag))
		return;
	sqe = conn_sqe(w, c, OP_CANCEL);
	io_uring_prep_cancel64(sqe, ring_ud(op, c->slot, c->gen), 0);
}

static void cancel_vm(struct worker *w, struct conn *c)
{
	/* Cancelling the connect also ends its linked timeout. */
	cancel_op(w, c, CF_VM_CONNECTING, OP_VM_CONNECT);
	cancel_op(w, c, CF_VM_RECV, OP_VM_RECV);
	cancel_op(w, c, CF_VM_SEND, OP_VM_SEND);
}

/* The end of a connection whose line is logged. */
static void teardown(struct worker *w, struct conn *c)
{
	if (c->state == CONN_CLOSING || c->state == CONN_FREE)
		return;
	c->state = CONN_CLOSING;
	timer_disarm(&c->timer);
	timer_disarm(&c->key_timer); /* a late answer finds no CF_KEY_WAIT */
	c->flags &= ~CF_KEY_WAIT;
	cancel_op(w, c, CF_CLIENT_RECV, OP_CLIENT_RECV);
	cancel_op(w, c, CF_CLIENT_SEND, OP_CLIENT_SEND);
	cancel_vm(w, c);
}

void conn_close(struct worker *w, struct conn *c, enum conn_reason reason)
{
	if (c->state == CONN_CLOSING || c->state == CONN_FREE)
		return;
	if (!(c->flags & CF_LOGGED))
		log_close(w, c, reason, NULL);
	teardown(w, c);
}

void conn_linger(struct worker *w, struct conn *c, uint8_t desc)
{
	/* No tickets after an alert, and no signature waited for: a late
	 * answer finds no CF_KEY_WAIT (conn-t.h: the flag and the timer go
	 * together). */
	timer_disarm(&c->key_timer);
	c->flags &= ~CF_KEY_WAIT;
	if (desc)
		tls_conn_alert(&c->tls, desc, c->hello_version);
	c->flags |= CF_LOGGED;
	c->state = CONN_LINGER;
	/* The linger timer from here: a client that never takes the last
	 * bytes (a zero window) or trickles bytes after our FIN is closed
	 * all the same. relay_linger arms it again once they are sent. */
	timer_arm(&w->linger_timers, &c->timer, w->now_ms);
	cancel_vm(w, c);
}

/* A line per refused stranger is a blocking write per connection to
 * whoever floods the ports: REJECT_LOG_PER_S a second per worker, and a
 * count of the rest (the metrics count every one). Whether this one may
 * be logged. */
#define REJECT_LOG_PER_S 100
static bool reject_log_ok(struct worker *w)
{
	uint64_t s = w->now_ms / 1000;

	if (s != w->reject_log_s) {
		if (w->reject_log_dropped)
			log_warn("reject", "suppressed=%u: more than %u "
				 "rejects a second (a worker's); counted in "
				 "the metrics", w->reject_log_dropped,
				 REJECT_LOG_PER_S);
		w->reject_log_s = s;
		w->reject_log_left = REJECT_LOG_PER_S;
		w->reject_log_dropped = 0;
	}
	if (!w->reject_log_left) {
		w->reject_log_dropped++;
		return false;
	}
	w->reject_log_left--;
	return true;
}

static void reject(struct worker *w, struct conn *c,
		   const struct front_decision *d)
{
	/* An SNI that failed validation may hold any byte: escaped, at
	 * most 512 characters ("..." past them), so that the reason after
	 * it stays on the line (255 escaped bytes are 1,020: the line was
	 * cut before reason=). A valid name, 253 bytes at most, is whole. */
	char peer[LOG_ADDR_MAX], sni[512];

	metrics_count(&w->metrics, d->reason);
	if (d->vm_id)
		metric_add(&vmstats_get(&w->vmstats, d->vm_id,
					strlen(d->vm_id))->rejected, 1);
	if (!reject_log_ok(w))
		goto out;
	log_fmt_addr(peer, &c->peer);
	log_warn("reject", "peer=%s port=%u sni=%s reason=%s%s%s%s", peer,
		 c->listen_port,
		 log_escape(sni, sizeof(sni), d->sni, d->sni_len),
		 reason_name(d->reason), d->detail ? " detail=\"" : "",
		 d->detail ? d->detail : "", d->detail ? "\"" : "");
out:
	conn_linger(w, c, d->alert);
	if (d->send_len)
		tls_conn_queue_raw(&c->tls, d->send, d->send_len);
}

static void route(struct worker *w, struct conn *c,
		  const struct front_decision *d)
{
	bool ok;

	/* Counted from here on: the VM is known, and the table copies its
	 * id (the snapshot's route table may go before the connection). */
	c->vms = vmstats_get(&w->vmstats, d->vm_id, strlen(d->vm_id));
	vmstats_open(c->vms);
	if (!d->ctx) {
		/* FRONT_PASS: no handshake of ours to wait for; the hello
		 * buffered so far is the first thing relayed. */
		ok = tls_conn_pass(&c->tls, d->name);
		c->flags |= CF_PASSTHROUGH | CF_HS_DONE;
	} else {
		ok = tls_conn_start(&c->tls, d->ctx, d->name) &&
		     (!d->client_auth ||
		      tls_conn_ask_client_cert(&c->tls, d->client_auth));
	}
	if (!ok) {
		conn_close(w, c, REASON_OUT_OF_MEMORY);
		return;
	}
	memset(&c->vm, 0, sizeof(c->vm));
	c->vm.sin6_family = AF_INET6;
	c->vm.sin6_port = htons(d->vm_port);
	c->vm.sin6_addr = *d->vm_addr;
	c->vm_port = d->vm_port;
	c->proxy = d->proxy_protocol;
	if (d->vm_errors_http)
		c->flags |= CF_VM_ERRORS_HTTP;
	c->id = w->next_conn_id++;
	c->state = CONN_HANDSHAKE;
	backend_connect(w, c);
}

/* The decision is core/front.c's; here is what it costs in I/O. */
static void do_hello(struct worker *w, struct conn *c)
{
	const struct snapshot *snap = w->snap;
	struct front_decision d;
	const uint8_t *in;
	size_t in_len;

	tls_conn_input(&c->tls, &in, &in_len);
	if (c->flags & CF_PORT_WAIT) {
		/* Routing needs the dialled port: take the first bytes
		 * meanwhile, decide once the port is in. */
		if (!in_len)
			relay_arm_client_recv(w, c);
		return;
	}
	if (!in_len || in_len < c->hello_need) {
		/* The parser said nothing can change before hello_need bytes:
		 * a hello trickling in byte by byte is parsed once per
		 * record, not once per byte. */
		if (c->flags & CF_CLIENT_FIN)
			conn_close(w, c, REASON_CLIENT_EOF);
		else
			relay_arm_client_recv(w, c);
		return;
	}
	switch (front_decide(&d, &c->hello, w->hello_scratch,
			     w->hello_scratch_len,
			     w->shared->cfg->limits.max_clienthello_bytes, in,
			     in_len, c->listen_port, snap->routes, snap->tls)) {
	case FRONT_NEED_MORE:
		c->hello_need = (uint32_t)d.need;
		if (c->flags & CF_CLIENT_FIN)
			conn_close(w, c, REASON_CLIENT_EOF);
		else
			relay_arm_client_recv(w, c);
		return;
	case FRONT_REJECT:
		c->hello_version = d.hello_version;
		reject(w, c, &d);
		return;
	case FRONT_TERMINATE:
	case FRONT_PASS:
		c->hello_version = d.hello_version;
		route(w, c, &d);
		return;
	}
}

void conn_tls_failed(struct worker *w, struct conn *c)
{
	/* Logged already when a failed VM connect waits to be answered. */
	if (!(c->flags & CF_LOGGED))
		log_close(w, c, REASON_TLS_ERROR, tls_conn_error_str(&c->tls));
	/* BoringSSL queued its alert: send it, then close. */
	conn_linger(w, c, 0);
}

void conn_vm_failed(struct worker *w, struct conn *c,
		    enum conn_reason reason)
{
	if (!(c->flags & CF_LOGGED))
		log_close(w, c, reason, NULL);
	/* No alert, no close_notify: a FIN after the last bytes. */
	conn_linger(w, c, 0);
}

static void do_handshake(struct worker *w, struct conn *c)
{
	uint32_t cap = w->shared->cfg->limits.buffer_bytes;

	/* While the signer signs, the handshake has nothing to do. */
	if (!(c->flags & (CF_HS_DONE | CF_KEY_WAIT))) {
		enum tls_io io = tls_conn_handshake(&c->tls);

		/* The signer cannot be asked: the handshake fails now. */
		if (io == TLS_IO_WANT_KEY && !signer_request(w, c))
			io = tls_conn_handshake(&c->tls);
		switch (io) {
		case TLS_IO_WANT_KEY:
			/* The answer or its deadline runs us again. */
			break;
		case TLS_IO_DONE:
			c->flags |= CF_HS_DONE;
			metric_add(tls_conn_resumed(&c->tls)
					   ? &w->metrics.handshakes_resumed
					   : &w->metrics.handshakes_full,
				   1);
			/* The tickets wait for the VM's first answer, for
			 * CONN_TICKET_HOLD_MS at most (the signer's wait,
			 * over now, had the same timer). */
			if (tls_conn_tickets_held(&c->tls))
				timer_arm(&w->ticket_timers, &c->key_timer,
					  w->now_ms);
			break;
		case TLS_IO_WANT_READ:
			if (c->flags & CF_CLIENT_FIN) {
				conn_close(w, c,
					   REASON_CLIENT_EOF_IN_HANDSHAKE);
				return;
			}
			relay_arm_client_recv(w, c);
			break;
		case TLS_IO_CLOSED:
		case TLS_IO_ERROR:
			conn_tls_failed(w, c);
			return;
		}
	} else if (tls_conn_input_len(&c->tls) < cap) {
		/* Waiting for the VM: take what the client sends meanwhile,
		 * up to one buffer. */
		relay_arm_client_recv(w, c);
	}
	relay_flush_client(w, c);
	if ((c->flags & (CF_HS_DONE | CF_VM_FAILED)) ==
	    (CF_HS_DONE | CF_VM_FAILED)) {
		backend_answer(w, c);
		return;
	}
	if ((c->flags & (CF_HS_DONE | CF_VM_CONNECTED | CF_LOCAL)) ==
	    (CF_HS_DONE | CF_VM_CONNECTED)) {
		if (!relay_start(w, c))
			return;
		c->state = CONN_RELAY;
		c->active_ms = w->now_ms;
		timer_arm(&w->idle_timers, &c->timer, w->now_ms);
	}
}

static void do_linger(struct worker *w, struct conn *c)
{
	if (relay_linger(w, c))
		teardown(w, c);
}

static void conn_run(struct worker *w, struct conn *c)
{
	enum conn_state s;

	do {
		s = c->state;
		switch (s) {
		case CONN_HELLO:
			do_hello(w, c);
			break;
		case CONN_HANDSHAKE:
			do_handshake(w, c);
			break;
		case CONN_RELAY:
			relay_run(w, c);
			break;
		case CONN_LINGER:
			do_linger(w, c);
			break;
		case CONN_CLOSING:
			/* A starved connection is still on the starved list:
			 * conn_retry_starved takes it off, then frees it. */
			if (!c->inflight && !(c->flags & CF_STARVED))
				conn_release(w, c);
			return;
		case CONN_FREE:
			return;
		}
	} while (c->state != s);
}

void conn_keyop_done(struct worker *w, struct conn *c, bool ok,
		     const uint8_t *sig, size_t sig_len, const char *why)
{
	if (!(c->flags & CF_KEY_WAIT))
		return;
	c->flags &= ~CF_KEY_WAIT;
	timer_disarm(&c->key_timer);
	tls_conn_keyop_done(&c->tls, ok, sig, sig_len, why);
	conn_run(w, c);
}

/* Over a limit: counted every time, logged at most once a second per
 * worker with how many were dropped since the last line. */
static void log_overload(struct worker *w, enum conn_reason reason,
			 const struct sockaddr_in6 *peer)
{
	char addr[LOG_ADDR_MAX];

	w->overload_dropped++;
	metric_add(&w->metrics.overload_drops, 1);
	metrics_count(&w->metrics, reason);
	if (w->now_ms - w->overload_logged_ms < 1000)
		return;
	w->overload_logged_ms = w->now_ms;
	log_warn("overload", "worker=%u reason=%s peer=%s live=%u dropped=%llu",
		 w->id, reason_name(reason),
		 peer ? log_fmt_addr(addr, peer) : "-", w->conns_live,
		 (unsigned long long)w->overload_dropped);
	w->overload_dropped = 0;
}

static struct conn *conn_alloc(struct worker *w)
{
	struct conn *c = w->free_conns;

	if (c) {
		w->free_conns = c->next;
		c->next = NULL;
	} else if (w->conns_used < w->conns_cap) {
		/* Slots are handed out in order the first time, so the pool
		 * touches no memory it has not needed yet. */
		c = &w->conns[w->conns_used];
		c->slot = w->conns_used++;
	} else {
		return NULL;
	}
	w->conns_live++;
	return c;
}

/* The local address of socket |fd| (a plain fd) into c->local: with
 * sk_lookup steering, the address and port the client dialled. Returns
 * that port, 0 if it cannot be read. */
static uint16_t sock_local(struct conn *c, int fd)
{
	socklen_t len = sizeof(c->local);

	if (getsockname(fd, (struct sockaddr *)&c->local, &len) ||
	    c->local.sin6_family != AF_INET6) {
		memset(&c->local, 0, sizeof(c->local));
		return 0;
	}
	return ntohs(c->local.sin6_port);
}

/* A connection to the steering listeners' own address and port, which
 * only a local client dialling them directly makes (the ephemeral port
 * is there for anyone to read): no port of listen.ports was dialled, and
 * it reached the VM on that port whatever listen.ports said. Refused. (A
 * steered connection to 127.0.0.1 on that very port, when ports: all
 * and "::" steer it, is refused with it.) */
static bool dialled_listener(const struct worker *w, const struct conn *c)
{
	return w->shared->steer_port &&
	       ntohs(c->local.sin6_port) == w->shared->steer_port &&
	       !memcmp(&c->local.sin6_addr, &steer_listener_ip,
		       sizeof(steer_listener_ip));
}

static const char *port_error(const struct worker *w, const struct conn *c)
{
	return dialled_listener(w, c) ? "dialled the steering listener itself, "
					"no port of listen.ports"
				      : "cannot read the dialled port";
}

/* The dialled port of a steered connection: one listener takes every
 * port, so the accepted socket's local address says which was dialled
 * (never the client's address: a client reuses its source port for
 * other destinations). A direct descriptor has no getsockname here
 * (io_uring's command for it is EOPNOTSUPP on Linux 6.18): it is
 * installed as an fd for the moment of getsockname(2), through the ring,
 * and routing waits for it (CF_PORT_WAIT). main only chooses direct
 * descriptors with steering when IORING_OP_FIXED_FD_INSTALL is there. */
static bool conn_find_port(struct worker *w, struct conn *c)
{
	struct io_uring_sqe *sqe;

	if (!ring_direct) {
		c->listen_port = sock_local(c, c->cfd);
		if (dialled_listener(w, c))
			c->listen_port = 0;
		c->tls.port = c->listen_port;
		return c->listen_port != 0;
	}
	sqe = conn_sqe(w, c, OP_PORT_FD);
	ring_prep_fd_install(sqe, c->cfd);
	c->flags |= CF_PORT_WAIT;
	return true;
}

/* OP_PORT_FD's completion: |res| is the installed fd or -errno. */
static void conn_on_port_fd(struct worker *w, struct conn *c, int res)
{
	c->flags &= ~CF_PORT_WAIT;
	if (res >= 0) {
		c->listen_port = sock_local(c, res);
		if (dialled_listener(w, c))
			c->listen_port = 0;
		c->tls.port = c->listen_port;
		close(res);
	}
	if (c->state == CONN_HELLO && !c->listen_port) {
		log_close(w, c, REASON_CLIENT_ERROR, port_error(w, c));
		teardown(w, c);
	}
}

void conn_accept(struct worker *w, int fd, uint16_t listen_port,
		 const struct sockaddr_in6 *peer)
{
	struct conn *c = conn_alloc(w);
	struct io_uring_sqe *sqe;

	if (!c) {
		log_overload(w, REASON_MAX_CONNECTIONS, peer);
		sqe = ring_sqe(&w->ring);
		ring_prep_close_sock(sqe, fd);
		io_uring_sqe_set_data64(sqe, ring_ud(OP_CLOSE, 0, 0));
		return;
	}
	metric_add(&w->metrics.accepted, 1);
	c->state = CONN_HELLO;
	/* The relay reads the VM while fewer than buffer_bytes wait for the
	 * client; one read adds at most a receive buffer's worth of records
	 * (5 + 17 bytes of framing each, 16 KiB of data each), and TLS adds
	 * tickets and alerts of its own: room for all of that. */
	tls_conn_init(&c->tls,
		      w->shared->cfg->limits.buffer_bytes +
			      CONFIG_RECV_BUF_SIZE + 4096,
		      listen_port);
	c->cfd = fd;
	c->vfd = -1;
	c->listen_port = listen_port;
	c->start_ms = c->active_ms = w->now_ms;
	c->peer = *peer;
	timer_arm(&w->hs_timers, &c->timer, w->now_ms);
	if (!listen_port && !conn_find_port(w, c)) {
		log_close(w, c, REASON_CLIENT_ERROR, port_error(w, c));
		teardown(w, c);
		conn_run(w, c);
		return;
	}
	c->peer_slot = peers_slot(&w->shared->peers, &c->peer);
	if (!peers_acquire(&w->shared->peers, c->peer_slot)) {
		/* Answer before any work: an alert the client reads after its
		 * hello, then the lingering close. */
		log_overload(w, REASON_MAX_CONNECTIONS_PER_IP, &c->peer);
		c->flags |= CF_LOGGED;
		conn_linger(w, c, TLS_ALERT_INTERNAL_ERROR);
		conn_run(w, c);
		return;
	}
	c->flags |= CF_PEER;
	conn_run(w, c);
}

void conn_complete(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	uint32_t slot = ring_ud_slot(ud);
	struct conn *c = slot < w->conns_cap ? &w->conns[slot] : NULL;

	if (!c || c->state == CONN_FREE || c->gen != ring_ud_gen(ud)) {
		/* Stale: the connection is gone. Only its buffer matters. */
		if (cqe->flags & IORING_CQE_F_BUFFER)
			ring_buf_put(&w->bufs,
				     cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	if (ring_ud_op(ud) == OP_VM_SOCKET) {
		/* Not counted in flight: it completes only when it fails,
		 * and then the connect and its timeout linked after it post
		 * nothing (backend.c): they are over, the connect failed. */
		c->inflight -= 2;
		if ((c->flags & CF_VM_CONNECTING) &&
		    c->state != CONN_LINGER && c->state != CONN_CLOSING)
			backend_on_connect(w, c, cqe->res);
		c->flags &= ~CF_VM_CONNECTING;
		goto run;
	}
	c->inflight--;
	switch (ring_ud_op(ud)) {
	case OP_SHUT_CLIENT:
	case OP_SHUT_VM:
		/* In any state: an fd installed for it must be closed. */
		relay_on_shut(w, c, ring_ud_op(ud), cqe->res);
		goto run;
	case OP_CLIENT_FD:
		backend_on_local(w, c, cqe->res);
		goto run;
	case OP_PORT_FD:
		conn_on_port_fd(w, c, cqe->res);
		goto run;
	default:
		break;
	}
	if (c->state == CONN_CLOSING) {
		if (cqe->flags & IORING_CQE_F_BUFFER)
			ring_buf_put(&w->bufs,
				     cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		conn_run(w, c);
		return;
	}
	if (c->state == CONN_LINGER) {
		/* The VM side was cancelled for the linger: its completions
		 * (-ECANCELED) are no error of the VM's, only bookkeeping. */
		switch (ring_ud_op(ud)) {
		case OP_VM_CONNECT:
			c->flags &= ~CF_VM_CONNECTING;
			goto run;
		case OP_VM_RECV:
			c->flags &= ~CF_VM_RECV;
			if (cqe->flags & IORING_CQE_F_BUFFER)
				ring_buf_put(&w->bufs, cqe->flags >>
						       IORING_CQE_BUFFER_SHIFT);
			goto run;
		case OP_VM_SEND:
			c->flags &= ~CF_VM_SEND;
			goto run;
		default:
			break;
		}
	}
	switch (ring_ud_op(ud)) {
	case OP_CLIENT_RECV:
		c->flags &= ~CF_CLIENT_RECV;
		relay_on_client_recv(w, c, cqe);
		break;
	case OP_CLIENT_SEND:
		c->flags &= ~CF_CLIENT_SEND;
		relay_on_client_send(w, c, cqe->res);
		break;
	case OP_VM_RECV:
		c->flags &= ~CF_VM_RECV;
		relay_on_vm_recv(w, c, cqe);
		break;
	case OP_VM_SEND:
		c->flags &= ~CF_VM_SEND;
		relay_on_vm_send(w, c, cqe->res);
		break;
	case OP_VM_CONNECT:
		backend_on_connect(w, c, cqe->res);
		break;
	default: /* timeouts and cancels: only counted */
		break;
	}
run:
	conn_run(w, c);
}

void conn_expire_timers(struct worker *w)
{
	struct timer_node *n;

	while ((n = timer_pop_expired(&w->hs_timers, w->now_ms))) {
		struct conn *c = (struct conn *)n;

		if (c->flags & CF_VM_CONNECTING) {
			/* What is late is the VM: a connect_error, and the
			 * client's alert or answer, not a silent close. */
			cancel_op(w, c, CF_VM_CONNECTING, OP_VM_CONNECT);
			c->flags &= ~CF_VM_CONNECTING;
			backend_connect_expired(w, c);
		} else {
			conn_close(w, c, REASON_HANDSHAKE_TIMEOUT);
		}
		conn_run(w, c);
	}
	while ((n = timer_pop_expired(&w->idle_timers, w->now_ms))) {
		struct conn *c = (struct conn *)n;

		if (w->now_ms - c->active_ms < w->idle_ms) {
			/* Active in the last idle_timeout_ms: looked at again
			 * a quarter of it later, rather than touching the
			 * list on every byte. Armed from now, so the list
			 * stays in deadline order; an idle connection closes
			 * 1 to 1.25 idle_timeout_ms after its last byte. */
			timer_arm(&w->idle_timers, n, w->now_ms);
			continue;
		}
		conn_close(w, c, REASON_IDLE_TIMEOUT);
		conn_run(w, c);
	}
	while ((n = timer_pop_expired(&w->ticket_timers, w->now_ms))) {
		struct conn *c = conn_of_key_timer(n);

		/* The VM has not answered in time: the tickets go alone. */
		if (tls_conn_flush_tickets(&c->tls) != TLS_IO_DONE) {
			conn_tls_failed(w, c);
			conn_run(w, c);
			continue;
		}
		relay_flush_client(w, c);
	}
	while ((n = timer_pop_expired(&w->linger_timers, w->now_ms))) {
		struct conn *c = (struct conn *)n;

		if (c->state == CONN_HANDSHAKE) {
			/* After a failed connect, the rest of the handshake
			 * or a request line to answer did not come in time
			 * (backend_answer). */
			conn_linger(w, c, TLS_ALERT_INTERNAL_ERROR);
			conn_run(w, c);
			continue;
		}
		/* Only a lingering connection is on this list: logged. */
		teardown(w, c);
		conn_run(w, c);
	}
}

void conn_retry_starved(struct worker *w)
{
	struct conn *list = w->starved, *c;

	w->starved = NULL;
	while ((c = list)) {
		list = c->next;
		c->next = NULL;
		c->flags &= ~CF_STARVED;
		conn_run(w, c);
	}
}

void conn_abort_all(struct worker *w)
{
	uint32_t i;

	/* The process is exiting: close and free without the ring. */
	for (i = 0; i < w->conns_used; i++) {
		struct conn *c = &w->conns[i];

		if (c->state == CONN_FREE)
			continue;
		if (!(c->flags & CF_LOGGED))
			log_close(w, c, REASON_SHUTDOWN, NULL);
		/* Direct descriptors go with the ring's file table. */
		if (c->vms)
			vmstats_closed(c->vms);
		c->vms = NULL;
		if (c->cfd >= 0 && !ring_direct)
			close(c->cfd);
		if (c->vfd >= 0 && !ring_direct)
			close(c->vfd);
		c->cfd = c->vfd = -1;
		tls_conn_free(&c->tls);
		relay_release_buffers(w, c);
		c->state = CONN_FREE;
	}
}
