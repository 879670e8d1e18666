/* core/vmstats.h: per-VM counters, one table per worker.
 *
 * Each worker counts, for every VM it routed a connection to (or refused
 * one for, once the VM was known), connections accepted, rejected and
 * open, bytes each way and connect errors. Like core/metrics.h, only the
 * owning worker writes an entry (relaxed load and store, no lock), and the
 * control thread sums the entries of all workers for GET /vms/ID/stats,
 * GET /stats/vms and /metrics.
 *
 * Entries live in chunks of VMSTATS_CHUNK that are never moved or freed
 * while the table lives, so a connection keeps a pointer to its VM's
 * entry from the routing decision on, and a reader can walk the entries
 * the owner appended without a lock: the owner writes the entry (id
 * first) and then publishes the count with a release store; a reader
 * loads the count with acquire and reads only entries below it. The index
 * from id to entry (open addressing, rehashed as it grows) is the owner's
 * alone: readers walk the entries instead.
 *
 * Only VMs that saw traffic take memory, and ids of unknown VMs never get
 * an entry (front_decide names a VM only once route_lookup found it). An
 * entry is kept for the life of the process, also after its VM is
 * removed, so a counter never goes back.
 */
#ifndef VMGATE_CORE_VMSTATS_H
#define VMGATE_CORE_VMSTATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"

#define VMSTATS_ID_MAX 63 /* ROUTE_VM_ID_MAX */
#define VMSTATS_CHUNK 1024
/* At most VMSTATS_CHUNKS * VMSTATS_CHUNK VMs per worker (4,194,304);
 * past it, or when memory runs out, a VM's counts go to the table's
 * |lost_entry|, which is not reported, and |lost| counts the lookups
 * that went there (vmgate_vm_stats_lost_total). */
#define VMSTATS_CHUNKS 4096

struct vmstats_entry {
	metric_t accepted;       /* routed to the VM */
	metric_t rejected;       /* refused once the VM was known */
	metric_t open;           /* accepted and not yet freed */
	metric_t bytes_up;       /* plaintext client -> VM */
	metric_t bytes_down;     /* plaintext VM -> client */
	metric_t connect_errors; /* connects to the VM that failed */
	char id[VMSTATS_ID_MAX + 1]; /* NUL-terminated, lowercase */
};

/* The sums over workers, as the control thread reports them. */
struct vmstats_sum {
	uint64_t accepted, rejected, open, bytes_up, bytes_down,
		connect_errors;
	char id[VMSTATS_ID_MAX + 1];
};

struct vmstats {
	struct vmstats_entry *chunks[VMSTATS_CHUNKS];
	_Atomic uint32_t len; /* entries published */
	/* The owner's index: entry number + 1 per slot, 0 for empty. */
	uint32_t *index;
	uint32_t index_cap; /* a power of two, or 0 */
	metric_t lost;      /* lookups that fell back to |lost_entry| */
	struct vmstats_entry lost_entry;
};

/* vmstats_get returns the entry of VM |id| (|id_len| bytes, lowercase as
 * route_lookup gives it), adding it if it is new: never NULL (|lost_entry|
 * when no entry can be made). Only the owner calls it. */
struct vmstats_entry *vmstats_get(struct vmstats *t, const char *id,
				  size_t id_len);

/* vmstats_free frees the table's memory; the table is all-zero again. */
void vmstats_free(struct vmstats *t);

/* vmstats_len is the number of entries a reader may walk;
 * vmstats_at(t, i) for i < that is one of them. Any thread. */
uint32_t vmstats_len(const struct vmstats *t);
const struct vmstats_entry *vmstats_at(const struct vmstats *t, uint32_t i);

/* vmstats_add adds the counters of |e| to |s|. Any thread. */
void vmstats_add(struct vmstats_sum *s, const struct vmstats_entry *e);

/* Counting, by the owner only. An entry's open count goes up and down
 * by one: its sum over workers is what is open. */
static inline void vmstats_open(struct vmstats_entry *e)
{
	metric_add(&e->accepted, 1);
	metric_add(&e->open, 1);
}

static inline void vmstats_closed(struct vmstats_entry *e)
{
	metric_add(&e->open, (uint64_t)-1);
}

#endif
