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
#include <sys/socket.h>

#include "core/conn-t.h"
#include "core/metrics.h"
#include "core/peers.h"
#include "core/ring.h"
#include "core/signer.h"
#include "core/timer.h"
#include "route/config-t.h"

struct route_table;
struct tls_ctx;

/* What a worker routes new connections with: immutable once published.
 * ctl/control.c builds, publishes and frees them (see ctl/control.h). */
struct snapshot {
	struct route_table *routes;
	struct tls_ctx *tls;
	uint64_t epoch; /* publication order, from 1 */
	void *owner;    /* control's bookkeeping */
};

struct worker;

/* What every worker reads. cfg holds what a reload does not change
 * (ports, workers, limits); snap is swapped by reloads. */
struct shared {
	const struct config *cfg;
	struct snapshot *_Atomic snap;
	atomic_bool stop;
	atomic_bool draining; /* SIGTERM: stop accepting, let conns finish */
	struct worker *workers;
	unsigned nworkers;
	/* sk_lookup: the port the steering listeners are bound to on
	 * ::ffff:127.0.0.1 (0: no steering). Set before the workers start. */
	uint16_t steer_port;
	struct peers peers; /* limits.max_connections_per_ip */
	/* sk_lookup steering (core/steer.h), or NULL with per-port
	 * listeners; its maps are the control plane's to update. */
	struct steer *steer;
	const char *signer_path; /* CONFIG_KEY_SIGNER: the signer's socket */
	/* Tests only (VMGATE_TEST_VM_SETUP_FAILS): every VM socket's
	 * TCP_NODELAY is asked as an option TCP does not have, so its setup
	 * fails as a socket the kernel cannot make would (backend.c). */
	bool test_vm_setup_fails;
};

/* Accepts in flight per listener, at most. Each is a single-shot accept
 * with its own address buffer, so the peer's address comes with the
 * socket (a direct descriptor cannot be asked for it afterwards). A
 * worker keeps at most WORKER_ACCEPTS in flight over all its listeners
 * (each may take a file table slot at once), so hundreds of ports get
 * fewer each, and at least one. */
#define LISTENER_ACCEPTS 16
#define WORKER_ACCEPTS 256

struct listener {
	int fd;
	uint16_t port;
	uint32_t busy; /* bit j: accept j is in flight */
	uint64_t retry_ms;        /* do not re-arm before (after errors) */
	struct {
		struct sockaddr_in6 peer;
		socklen_t len;
	} acc[LISTENER_ACCEPTS];
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

	/* The snapshot this worker routes with, taken at the top of each
	 * loop; seen_epoch tells control it is done with older ones. */
	struct snapshot *snap;
	_Atomic uint64_t seen_epoch;
	_Atomic uint64_t turned_ms; /* last loop, for /health */
	_Atomic uint32_t live;      /* conns_live, for the drain */
	bool drained;               /* listeners closed for the drain */
	_Atomic int wake_fd;        /* the ring's fd while it runs, or -1 */
	struct metrics metrics;
	struct vmstats vmstats; /* per VM; control sums them too */

	struct io_uring ring;
	struct buf_ring bufs; /* provided receive buffers */
	struct bufpool pool;  /* relay direction buffers */
	struct signer_chan signer; /* CONFIG_KEY_SIGNER */

	struct conn *conns; /* the pool: conns_cap slots */
	uint32_t conns_cap;
	/* Direct descriptors: [0, vm_base) go to accepts, the VM socket of
	 * slot s is vm_base + s. */
	uint32_t vm_base;
	uint32_t conns_used; /* slots ever handed out (high-water mark) */
	uint32_t conns_live;
	struct conn *free_conns;
	struct conn *starved; /* recvs to re-post once buffers return */

	struct listener *listeners;
	unsigned listeners_len;
	unsigned accepts; /* in flight per listener (1..LISTENER_ACCEPTS) */

	struct timer_list hs_timers;   /* handshake_timeout_ms */
	struct timer_list idle_timers; /* a quarter of idle_timeout_ms */
	uint64_t idle_ms;              /* idle_timeout_ms */
	struct timer_list linger_timers; /* CONN_LINGER_MS */
	struct timer_list ticket_timers; /* CONN_TICKET_HOLD_MS, on
	                                  * conn.key_timer */
	struct __kernel_timespec connect_ts;
	uint64_t now_ms;
	uint64_t overload_logged_ms; /* rate limit of "overload" lines */
	/* accept_error lines: one a second per worker, however many of its
	 * listeners fail (hundreds of ports fail together at EMFILE), and
	 * how many were not written since the last. */
	uint64_t accept_logged_ms;
	uint32_t accept_errors_unlogged;
	/* "reject" lines: REJECT_LOG_PER_S a second, as a bucket refilled
	 * once a second; those over it are counted, and said. */
	uint64_t reject_log_s;
	uint32_t reject_log_left, reject_log_dropped;
	uint64_t overload_dropped;   /* since the last such line */
	/* The next routed connection's id: counts up from a random start,
	 * so ids differ across workers and restarts. */
	uint64_t next_conn_id;

	uint8_t *hello_scratch;   /* where tls_hello_peek joins a hello */
	size_t hello_scratch_len; /* TLS_HELLO_SCRATCH_LEN(max_clienthello_bytes) */
};

/* worker_init prepares |w| (pool, timers) for |listeners_len| listener
 * fds, which it takes ownership of. The ring is made by the thread
 * itself. Returns 0 or -errno. */
int worker_init(struct worker *w, unsigned id, struct shared *shared,
		uint32_t conns_cap, const int *listen_fds,
		const uint16_t *ports, unsigned listeners_len);
int worker_start(struct worker *w);

/* worker_wake makes |w| turn its loop now instead of at its next tick
 * (a completion posted into its ring through |from|, submitted by the
 * caller): SIGTERM's drain closes the listeners at once. */
void worker_wake(struct worker *w, struct io_uring *from);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

/* Buffers of the relay directions. */
uint8_t *bufpool_get(struct bufpool *p);
void bufpool_put(struct bufpool *p, uint8_t *buf);

#endif
