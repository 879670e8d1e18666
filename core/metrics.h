/* core/metrics.h: per-worker counters.
 *
 * Each worker writes only its own struct metrics; the control thread reads
 * all of them to answer GET /metrics. Counters are relaxed atomics written
 * by one thread, so an update is a plain load and store: no lock, no
 * read-modify-write on the data path. Closes and rejects count by enum
 * conn_reason (core/reason.h), one slot per reason.
 */
#ifndef VMGATE_CORE_METRICS_H
#define VMGATE_CORE_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "core/reason.h"

enum metric_connect_error {
	METRIC_CONNECT_REFUSED,
	METRIC_CONNECT_TIMEOUT,
	METRIC_CONNECT_UNREACHABLE,
	METRIC_CONNECT_OTHER,
	METRIC_CONNECT_ERRORS,
};

typedef _Atomic uint64_t metric_t;

struct metrics {
	metric_t accepted;
	metric_t reasons[REASON_COUNT]; /* closes and rejects */
	metric_t connect_errors[METRIC_CONNECT_ERRORS];
	metric_t bytes_up, bytes_down;
	metric_t handshakes_full, handshakes_resumed;
	metric_t overload_drops;
};

/* Only the owning worker calls these. */
static inline void metric_add(metric_t *m, uint64_t n)
{
	atomic_store_explicit(m,
			      atomic_load_explicit(m, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

static inline uint64_t metric_get(const metric_t *m)
{
	return atomic_load_explicit(m, memory_order_relaxed);
}

/* One connection ended (or was refused) for |r|: the line that says so
 * is logged where this is called. */
static inline void metrics_count(struct metrics *m, enum conn_reason r)
{
	if (r > REASON_NONE && r < REASON_COUNT)
		metric_add(&m->reasons[r], 1);
}

void metrics_connect_error(struct metrics *m, int err);

/* The names behind the connect error slots, for the exposition. NULL
 * past the last. */
const char *metrics_connect_error_name(size_t i);

#endif
