/* core/worker.c: the worker thread: submit, wait, dispatch completions in
 * batches, then run timers. */
#include "core/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/kconfig.h"
#include "core/listener.h"
#include "core/log.h"

uint8_t *bufpool_get(struct bufpool *p)
{
	void *b = p->free;

	if (b) {
		p->free = *(void **)b;
		p->cached--;
		return b;
	}
	return malloc(p->size);
}

void bufpool_put(struct bufpool *p, uint8_t *buf)
{
	/* Keep enough for a busy moment; give the rest back, so a burst
	 * does not pin its peak memory for ever. */
	if (p->cached >= p->max_cached) {
		free(buf);
		return;
	}
	*(void **)buf = p->free;
	p->free = buf;
	p->cached++;
}

static void bufpool_drain(struct bufpool *p)
{
	void *b;

	while ((b = p->free)) {
		p->free = *(void **)b;
		free(b);
	}
	p->cached = 0;
}

/* The kernel caps a ring's file table at RLIMIT_NOFILE (and at
 * IORING_MAX_FIXED_FILES): 2 per connection and one per accept in flight.
 * Returns how many connections fit; sets w->vm_base. */
static uint32_t files_plan(struct worker *w, uint32_t conns_cap,
			   unsigned listeners_len)
{
	const uint64_t accepts = (uint64_t)listeners_len * w->accepts;
	uint64_t most = RING_MAX_FILES;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < most)
		most = rl.rlim_cur;
	if (2 * (uint64_t)conns_cap + accepts > most) {
		uint32_t fit = most > accepts + 2 ? (uint32_t)((most - accepts) / 2)
						  : 1;

		if (w->id == 0)
			log_info("startup",
				 "each worker holds at most %u of its %u "
				 "connections: a ring's direct descriptor "
				 "table is capped by the open-file limit "
				 "(%llu); more workers hold more",
				 fit, conns_cap, (unsigned long long)most);
		conns_cap = fit;
	}
	w->vm_base = (uint32_t)(conns_cap + accepts);
	return conns_cap;
}

int worker_init(struct worker *w, unsigned id, struct shared *shared,
		uint32_t conns_cap, const int *listen_fds,
		const uint16_t *ports, unsigned listeners_len)
{
	const struct config_limits *lim = &shared->cfg->limits;
	unsigned i;

	memset(w, 0, sizeof(*w));
	w->id = id;
	w->shared = shared;
	if (getrandom(&w->next_conn_id, sizeof(w->next_conn_id), 0) !=
	    sizeof(w->next_conn_id))
		w->next_conn_id = (uint64_t)id << 56 | (uint64_t)getpid() << 24;
	atomic_init(&w->wake_fd, -1);
	w->accepts = listeners_len ? WORKER_ACCEPTS / listeners_len : 1;
	if (w->accepts > LISTENER_ACCEPTS)
		w->accepts = LISTENER_ACCEPTS;
	if (w->accepts < 1)
		w->accepts = 1;
	if (ring_direct)
		conns_cap = files_plan(w, conns_cap, listeners_len);
	w->conns_cap = conns_cap;
	/* calloc: the kernel backs the pool with memory only as slots are
	 * first used. */
	w->conns = calloc(conns_cap, sizeof(*w->conns));
	w->listeners = calloc(listeners_len, sizeof(*w->listeners));
	/* The parser joins a hello of at most max_clienthello_bytes of body
	 * into it, header included, and is handed this length with it
	 * (core/conn.c). */
	w->hello_scratch_len = TLS_HELLO_SCRATCH_LEN(lim->max_clienthello_bytes);
	w->hello_scratch = malloc(w->hello_scratch_len);
	if (!w->conns || !w->listeners || !w->hello_scratch ||
	    signer_chan_init(w)) {
		worker_free(w);
		return -ENOMEM;
	}
	for (i = 0; i < listeners_len; i++) {
		w->listeners[i].fd = listen_fds[i];
		w->listeners[i].port = ports[i];
	}
	w->listeners_len = listeners_len;
	w->pool.size = lim->buffer_bytes;
	/* Enough for a busy moment; past it buffers go back to malloc, so
	 * idle connections do not keep a burst's peak. */
	w->pool.max_cached = 16;
	timer_list_init(&w->hs_timers, lim->handshake_timeout_ms);
	w->idle_ms = lim->idle_timeout_ms;
	timer_list_init(&w->idle_timers, lim->idle_timeout_ms / 4 ?
					 lim->idle_timeout_ms / 4 : 1);
	timer_list_init(&w->linger_timers, CONN_LINGER_MS);
	timer_list_init(&w->ticket_timers, CONN_TICKET_HOLD_MS);
	/* Healthy from the start: /health may be asked before the first
	 * loop has turned. */
	atomic_store(&w->turned_ms, timer_now_ms());
	w->connect_ts.tv_sec = lim->connect_timeout_ms / 1000;
	w->connect_ts.tv_nsec = (long long)(lim->connect_timeout_ms % 1000) *
				1000000;
	return 0;
}

static void dispatch(struct worker *w, struct io_uring_cqe *cqe)
{
	switch (ring_ud_op(io_uring_cqe_get_data64(cqe))) {
	case OP_ACCEPT:
		listener_complete(w, cqe);
		break;
	case OP_CLOSE:
	case OP_NONE:
		break;
	case OP_KEY_RECV:
	case OP_KEY_SEND:
		signer_complete(w, cqe);
		break;
	default:
		conn_complete(w, cqe);
		break;
	}
}

static void fail(struct worker *w, const char *what, int err)
{
	log_error("worker_error", "worker=%u %s: %s", w->id, what,
		  strerror(-err));
	/* The appliance cannot run short of a worker: stop it all. */
	atomic_store(&w->shared->stop, true);
	kill(getpid(), SIGTERM);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct __kernel_timespec tick = {
		.tv_nsec = (long long)CONFIG_TIMER_TICK_MS * 1000000,
	};
	int ret;

	ret = ring_setup(&w->ring, CONFIG_RING_ENTRIES);
	if (ret) {
		fail(w, "io_uring setup", ret);
		return NULL;
	}
	if (ring_direct) {
		ret = ring_files_setup(&w->ring, w->vm_base + w->conns_cap,
				       w->vm_base);
		if (ret) {
			fail(w, "direct descriptor table", ret);
			goto out_ring;
		}
	}
	ret = ring_buf_setup(&w->ring, &w->bufs, CONFIG_BUF_RING_ENTRIES,
			     CONFIG_RECV_BUF_SIZE, RING_BGID);
	if (ret) {
		fail(w, "provided buffer ring", ret);
		goto out_ring;
	}
	w->now_ms = timer_now_ms();
	w->snap = atomic_load(&w->shared->snap);
	atomic_store(&w->wake_fd, w->ring.ring_fd);
	while (!atomic_load_explicit(&w->shared->stop, memory_order_relaxed)) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		listener_arm(w);
		ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1,
						       &tick, NULL);
		if (ret < 0 && ret != -ETIME && ret != -EINTR &&
		    ret != -EBUSY && ret != -EAGAIN) {
			fail(w, "io_uring_enter", ret);
			break;
		}
		w->now_ms = timer_now_ms();
		/* Quiescent point: nothing from the previous snapshot is
		 * held across it (connections copy what they route with). */
		w->snap = atomic_load_explicit(&w->shared->snap,
					       memory_order_acquire);
		atomic_store_explicit(&w->seen_epoch, w->snap->epoch,
				      memory_order_release);
		atomic_store_explicit(&w->turned_ms, w->now_ms,
				      memory_order_relaxed);
		if (!w->drained && atomic_load_explicit(&w->shared->draining,
							memory_order_relaxed)) {
			listener_close_all(w);
			w->drained = true;
		}
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			dispatch(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		ring_buf_publish(&w->bufs);
		conn_retry_starved(w);
		conn_expire_timers(w);
		signer_tick(w);
		atomic_store_explicit(&w->live, w->conns_live,
				      memory_order_relaxed);
	}
	atomic_store(&w->wake_fd, -1);
	conn_abort_all(w);
	ring_buf_free(&w->ring, &w->bufs);
out_ring:
	io_uring_queue_exit(&w->ring);
	return NULL;
}

void worker_wake(struct worker *w, struct io_uring *from)
{
	int fd = atomic_load(&w->wake_fd);
	struct io_uring_sqe *sqe;

	/* A ring gone meanwhile (or its fd reused) only fails the message.
	 * The sender's ring may be smaller than the number of workers:
	 * ring_sqe submits it when full. */
	if (fd < 0)
		return;
	sqe = ring_sqe(from);
	io_uring_prep_msg_ring(sqe, fd, 0, ring_ud(OP_NONE, 0, 0), 0);
	io_uring_sqe_set_data64(sqe, 0);
}

int worker_start(struct worker *w)
{
	return -pthread_create(&w->thread, NULL, worker_main, w);
}

void worker_join(struct worker *w)
{
	pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
	unsigned i;

	for (i = 0; i < w->listeners_len; i++)
		if (w->listeners[i].fd >= 0)
			close(w->listeners[i].fd);
	bufpool_drain(&w->pool);
	signer_chan_free(w);
	free(w->listeners);
	free(w->conns);
	free(w->hello_scratch);
	vmstats_free(&w->vmstats);
	memset(w, 0, sizeof(*w));
}
