/* core/signer.c: see signer.h. */
#include "core/signer.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/log.h"
#include "signer/keyop.h"

/* Sixty-odd requests' worth of frames each way; a request that finds the
 * queue full fails at once rather than waiting. */
#define SIGNER_CHAN_IN_CAP (64 * KEYOP_FRAME_MAX)
#define SIGNER_CHAN_OUT_CAP (64 * KEYOP_FRAME_MAX)
/* A refused Unix connect costs a syscall: retry often, so that a signer
 * back is used within a tenth of a second. */
#define SIGNER_BACKOFF_MIN_MS 10
#define SIGNER_BACKOFF_MAX_MS 100
/* The probe's id: no slot's (on_answer drops its answer). */
#define SIGNER_PROBE_ID UINT64_MAX

static void backoff_grow(struct signer_chan *s)
{
	s->backoff_ms = s->backoff_ms * 2 < SIGNER_BACKOFF_MAX_MS
				? s->backoff_ms * 2
				: SIGNER_BACKOFF_MAX_MS;
}

int signer_chan_init(struct worker *w)
{
	struct signer_chan *s = &w->signer;

	s->fd = -1;
	timer_list_init(&s->waits, CONFIG_KEY_SIGNER_TIMEOUT_MS);
	if (!IS_ENABLED(CONFIG_KEY_SIGNER))
		return 0;
	s->in = malloc(SIGNER_CHAN_IN_CAP);
	s->out = malloc(SIGNER_CHAN_OUT_CAP);
	if (!s->in || !s->out) {
		signer_chan_free(w);
		return -ENOMEM;
	}
	s->backoff_ms = SIGNER_BACKOFF_MIN_MS;
	return 0;
}

void signer_chan_free(struct worker *w)
{
	struct signer_chan *s = &w->signer;

	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	free(s->in);
	free(s->out);
	s->in = s->out = NULL;
}

/* Every request in flight fails: their answers cannot come any more. */
static void fail_waits(struct worker *w, const char *why)
{
	struct timer_node *n;

	while ((n = timer_pop_expired(&w->signer.waits, UINT64_MAX)))
		conn_keyop_done(w, conn_of_key_timer(n), false, NULL, 0, why);
}

/* The socket is broken or the signer misbehaved: fail what waits, and
 * let the ring's operations on the socket end (shutdown makes them
 * complete); the last one closes it. */
static void chan_down(struct worker *w, const char *why)
{
	struct signer_chan *s = &w->signer;

	if (s->up || s->recv_armed || s->send_armed) {
		if (w->now_ms - s->failed_logged_ms >= 1000) {
			s->failed_logged_ms = w->now_ms;
			log_warn("signer", "worker=%u disconnected: %s", w->id,
				 why);
		}
	}
	s->up = false;
	s->in_len = s->out_len = s->out_sending = 0;
	if (s->fd >= 0)
		shutdown(s->fd, SHUT_RDWR);
	s->retry_ms = w->now_ms + s->backoff_ms;
	backoff_grow(s);
	fail_waits(w, why);
}

static void maybe_close(struct signer_chan *s)
{
	if (!s->up && !s->recv_armed && !s->send_armed && s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
}

static void arm_recv(struct worker *w)
{
	struct signer_chan *s = &w->signer;
	struct io_uring_sqe *sqe;

	if (!s->up || s->recv_armed || s->in_len == SIGNER_CHAN_IN_CAP)
		return;
	sqe = ring_sqe(&w->ring);
	io_uring_prep_recv(sqe, s->fd, s->in + s->in_len,
			   SIGNER_CHAN_IN_CAP - s->in_len, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(OP_KEY_RECV, 0, 0));
	s->recv_armed = true;
}

static void arm_send(struct worker *w)
{
	struct signer_chan *s = &w->signer;
	struct io_uring_sqe *sqe;

	if (!s->up || s->send_armed || !s->out_len)
		return;
	sqe = ring_sqe(&w->ring);
	/* Requests queued behind this send go after out_sending: the bytes
	 * in flight never move. */
	s->out_sending = s->out_len;
	io_uring_prep_send(sqe, s->fd, s->out, s->out_sending, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ring_ud(OP_KEY_SEND, 0, 0));
	s->send_armed = true;
}

/* |m| encoded onto the outgoing queue and a send posted; false when the
 * queue has no room for it. */
static bool queue_frame(struct worker *w, const struct keyop_msg *m)
{
	struct signer_chan *s = &w->signer;
	size_t len;

	if (!keyop_encode(s->out + s->out_len, &len,
			  SIGNER_CHAN_OUT_CAP - s->out_len, m))
		return false;
	s->out_len += (uint32_t)len;
	arm_send(w);
	return true;
}

/* A request no key answers but "key not loaded": an answer at all says
 * the signer serves again. */
static void send_probe(struct worker *w)
{
	static const uint8_t data[32];
	struct signer_chan *s = &w->signer;
	struct keyop_msg m = {
		.type = KEYOP_SIGN,
		.id = SIGNER_PROBE_ID,
		.key_id = 0,
		.sigalg = SSL_SIGN_ECDSA_SECP256R1_SHA256,
		.data = data,
		.data_len = sizeof(data),
	};

	s->probe_due_ms = w->now_ms + s->waits.duration_ms;
	queue_frame(w, &m);
}

static void chan_connect(struct worker *w)
{
	struct signer_chan *s = &w->signer;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = w->shared->signer_path;
	int fd, flags;

	s->retry_ms = w->now_ms + s->backoff_ms;
	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	/* A Unix connect does not wait: it is accepted into the backlog or
	 * refused. The socket is then the ring's, blocking, so that a recv
	 * waits in the ring rather than failing with EAGAIN. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    (flags = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		close(fd);
		backoff_grow(s);
		return;
	}
	s->fd = fd;
	s->up = true;
	s->backoff_ms = SIGNER_BACKOFF_MIN_MS;
	log_debug("signer", "worker=%u connected path=%s", w->id, path);
	arm_recv(w);
	if (s->probing)
		send_probe(w);
}

void signer_tick(struct worker *w)
{
	struct signer_chan *s = &w->signer;
	struct timer_node *n;

	if (!IS_ENABLED(CONFIG_KEY_SIGNER))
		return;
	while ((n = timer_pop_expired(&s->waits, w->now_ms))) {
		conn_keyop_done(w, conn_of_key_timer(n), false, NULL, 0,
				"signer: no answer in time");
		s->probing = true;
	}
	/* Reset at the first request it let pass its deadline, then each
	 * time a probe goes unanswered as long. */
	if (s->up && s->probing && w->now_ms >= s->probe_due_ms)
		chan_down(w, "signer: no answer in time");
	if (!s->up && s->fd < 0 && w->now_ms >= s->retry_ms)
		chan_connect(w);
}

/* Answers for connections gone or past their deadline are dropped: the
 * id names the slot and its generation. */
static void on_answer(struct worker *w, const struct keyop_msg *m)
{
	uint32_t slot = (uint32_t)m->id, gen = (uint32_t)(m->id >> 32);
	struct conn *c = slot < w->conns_cap ? &w->conns[slot] : NULL;

	if (!c || c->gen != gen || !(c->flags & CF_KEY_WAIT))
		return;
	if (m->status != KEYOP_STATUS_OK) {
		conn_keyop_done(w, c, false, NULL, 0,
				m->status == KEYOP_STATUS_NO_KEY
					? "signer: key not loaded"
					: "signer: signing failed");
		return;
	}
	conn_keyop_done(w, c, true, m->data, m->data_len, NULL);
}

static void on_recv(struct worker *w, int res)
{
	struct signer_chan *s = &w->signer;
	struct keyop_msg m;
	uint32_t off = 0;
	size_t used;

	if (res <= 0) {
		chan_down(w, res ? strerror(-res) : "signer closed");
		return;
	}
	s->in_len += (uint32_t)res;
	for (;;) {
		enum keyop_parse p = keyop_decode(&m, &used, s->in + off,
						  s->in_len - off);

		if (p == KEYOP_NEED_MORE)
			break;
		if (p == KEYOP_BAD || m.type != KEYOP_ANSWER) {
			chan_down(w, "bad frame from the signer");
			return;
		}
		off += (uint32_t)used;
		if (s->probing)
			log_info("signer", "worker=%u answers again", w->id);
		s->probing = false;
		on_answer(w, &m);
		/* An answer may run a connection that fails the channel. */
		if (!s->up)
			return;
	}
	memmove(s->in, s->in + off, s->in_len - off);
	s->in_len -= off;
	arm_recv(w);
}

static void on_send(struct worker *w, int res)
{
	struct signer_chan *s = &w->signer;

	if (res <= 0) {
		chan_down(w, res ? strerror(-res) : "signer closed");
		return;
	}
	memmove(s->out, s->out + res, s->out_len - (uint32_t)res);
	s->out_len -= (uint32_t)res;
	s->out_sending = 0;
	arm_send(w);
}

void signer_complete(struct worker *w, struct io_uring_cqe *cqe)
{
	struct signer_chan *s = &w->signer;

	switch (ring_ud_op(io_uring_cqe_get_data64(cqe))) {
	case OP_KEY_RECV:
		s->recv_armed = false;
		if (s->up)
			on_recv(w, cqe->res);
		break;
	case OP_KEY_SEND:
		s->send_armed = false;
		if (s->up)
			on_send(w, cqe->res);
		break;
	default:
		break;
	}
	maybe_close(s);
}

bool signer_request(struct worker *w, struct conn *c)
{
	struct signer_chan *s = &w->signer;
	const struct tls_keyop *k = tls_conn_keyop_take(&c->tls);
	struct keyop_msg m = { .type = KEYOP_SIGN };

	if (!k)
		return true; /* already asked */
	if (!s->up || s->probing) {
		tls_conn_keyop_done(&c->tls, false, NULL, 0,
				    s->up ? "signer: not answering"
					  : "signer: not connected");
		return false;
	}
	m.id = (uint64_t)c->gen << 32 | c->slot;
	m.key_id = k->key_id;
	m.sigalg = k->sigalg;
	m.data = k->data;
	m.data_len = k->len;
	if (!queue_frame(w, &m)) {
		tls_conn_keyop_done(&c->tls, false, NULL, 0,
				    "signer: queue full");
		return false;
	}
	c->flags |= CF_KEY_WAIT;
	timer_arm(&s->waits, &c->key_timer, w->now_ms);
	return true;
}
