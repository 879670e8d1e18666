/* core/peers.c: see peers.h. */
#include "core/peers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/siphash.h>

int peers_init(struct peers *p, uint32_t limit)
{
	memset(p, 0, sizeof(*p));
	p->limit = limit;
	if (!limit)
		return 0;
	p->counts = calloc(PEERS_SLOTS, sizeof(*p->counts));
	if (!p->counts)
		return -ENOMEM;
	/* A secret key: a client cannot pick sources that collide with a
	 * victim's slot to exhaust its limit. */
	RAND_bytes((uint8_t *)p->key, sizeof(p->key));
	return 0;
}

void peers_free(struct peers *p)
{
	free(p->counts);
	memset(p, 0, sizeof(*p));
}

uint32_t peers_slot(const struct peers *p, const struct sockaddr_in6 *sa)
{
	const uint8_t *a = sa->sin6_addr.s6_addr;

	/* A v4-mapped address is one IPv4 host; otherwise the /64 is one
	 * site (RFC 6177): a host can have all of it. */
	if (IN6_IS_ADDR_V4MAPPED(&sa->sin6_addr))
		return (uint32_t)SIPHASH_24(p->key, a + 12, 4) &
		       (PEERS_SLOTS - 1);
	return (uint32_t)SIPHASH_24(p->key, a, 8) & (PEERS_SLOTS - 1);
}

bool peers_acquire(struct peers *p, uint32_t slot)
{
	if (!p->limit)
		return true;
	if (atomic_fetch_add_explicit(&p->counts[slot], 1,
				      memory_order_relaxed) >= p->limit) {
		atomic_fetch_sub_explicit(&p->counts[slot], 1,
					  memory_order_relaxed);
		return false;
	}
	return true;
}

void peers_release(struct peers *p, uint32_t slot)
{
	if (p->limit)
		atomic_fetch_sub_explicit(&p->counts[slot], 1,
					  memory_order_relaxed);
}
