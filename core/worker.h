/* core/worker.h: one thread, one io_uring, one pool of connections.
 *
 * Workers share nothing on the data path but struct shared, which is
 * read-only while they run.
 */
#ifndef VMGATE_CORE_WORKER_H
#define VMGATE_CORE_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/conn-t.h"
#include "core/ring.h"
#include "core/timer.h"
#include "route/config.h"

struct route_table;
struct tls_ctx;

/* What every worker reads: built before the workers start. */
struct shared {
	const struct config *cfg;
	struct route_table *_Atomic routes;
	struct tls_ctx *tls;
	atomic_bool stop;
};

struct listener {
	int fd;
	uint16_t port;
	bool armed; /* a multishot accept is in flight */
	uint64_t retry_ms;        /* do not re-arm before (after errors) */
	uint64_t error_logged_ms; /* rate limit of accept_error lines */
};

/* A free list of equal-sized buffers for the relay directions. */
struct bufpool {
	void *free;
	uint32_t size;
	uint32_t cached, max_cached;
};

struct worker {
	unsigned id;
	struct shared *shared;
	pthread_t thread;

	struct io_uring ring;
	struct buf_ring bufs; /* provided receive buffers */
	struct bufpool pool;  /* relay direction buffers */

	struct conn *conns; /* the pool: conns_cap slots */
	uint32_t conns_cap;
	uint32_t conns_used; /* slots ever handed out (high-water mark) */
	uint32_t conns_live;
	struct conn *free_conns;
	struct conn *starved; /* recvs to re-post once buffers return */

	struct listener *listeners;
	unsigned listeners_len;

	struct timer_list hs_timers;   /* handshake_timeout_ms */
	struct timer_list idle_timers; /* idle_timeout_ms */
	struct timer_list linger_timers; /* CONN_LINGER_MS */
	struct __kernel_timespec connect_ts;
	uint64_t now_ms;
	uint64_t full_logged_ms; /* rate limit of "pool full" lines */
	uint64_t dropped_full;

	uint8_t *hello_scratch; /* CONFIG_MAX_CLIENTHELLO_BYTES */
};

/* worker_init prepares |w| (pool, timers) for |listeners_len| listener
 * fds, which it takes ownership of. The ring is made by the thread
 * itself. Returns 0 or -errno. */
int worker_init(struct worker *w, unsigned id, struct shared *shared,
		uint32_t conns_cap, const int *listen_fds,
		const uint16_t *ports, unsigned listeners_len);
int worker_start(struct worker *w);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

/* Buffers of the relay directions. */
uint8_t *bufpool_get(struct bufpool *p);
void bufpool_put(struct bufpool *p, uint8_t *buf);

#endif
