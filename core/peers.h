/* core/peers.h: connections per source, across all workers.
 *
 * limits.max_connections_per_ip counts a client's connections whichever
 * worker the kernel gave them to, so the count is shared: a fixed table of
 * atomic counters, indexed by a keyed hash (SipHash, random key) of the
 * source: the /64 of an IPv6 address, the whole of an IPv4 one. Two
 * sources that share a slot share a count, which can only make the limit
 * stricter for them, never looser; with 2^16 slots that is rare. Nothing is
 * allocated per client, so a flood of sources costs nothing.
 */
#ifndef VMGATE_CORE_PEERS_H
#define VMGATE_CORE_PEERS_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define PEERS_SLOTS 65536

struct peers {
	_Atomic uint32_t *counts; /* PEERS_SLOTS */
	uint64_t key[2];
	uint32_t limit; /* 0: no limit */
};

/* peers_init allocates the table; returns 0 or -errno. */
int peers_init(struct peers *p, uint32_t limit);
void peers_free(struct peers *p);

/* peers_slot returns the slot of |sa|'s source. */
uint32_t peers_slot(const struct peers *p, const struct sockaddr_in6 *sa);

/* peers_acquire counts one more connection in |slot|, or returns false
 * (counting nothing) when the source is at its limit. */
bool peers_acquire(struct peers *p, uint32_t slot);
void peers_release(struct peers *p, uint32_t slot);

#endif
