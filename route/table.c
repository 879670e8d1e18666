/* route/table.c: the route table: domains in a trie, VMs in a hash table,
 * and the port policy of each domain.
 *
 * Memory for the VM table is what scales (10^6 VMs): ids live back to back
 * in one string arena and the hash table is one array of 24-byte slots
 * {address, id offset, hash tag} at a load factor of at most 1/2, so a VM
 * costs its id plus about 48 bytes, with two allocations for all of them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "route/route.h"
#include "route/trie.h"

#define ROUTE_HOST_CAP 254

struct route_domain {
	struct config_port_map *port_map; /* sorted by listen_port */
	size_t port_map_len;
	uint16_t *allowed;                /* sorted */
	size_t allowed_len;
	bool has_allowed;
};

struct route_slot {
	struct in6_addr addr;
	uint32_t id_off; /* into ids; 0 = empty slot (ids[0] is a dummy) */
	uint32_t tag;    /* upper hash bits: most misses skip the memcmp */
};

struct route_table {
	struct trie trie;
	struct route_domain *domains;
	size_t domains_len;
	char *ids;                /* arena of NUL-terminated vmIds */
	struct route_slot *slots;
	size_t mask;              /* slots - 1, a power of two minus one */
};

/* A 64-bit multiply-xorshift hash over 8-byte words. The keys are the
 * operator's vmIds; a client can only choose which key to look up, not
 * where keys land, so no secret seed is needed against flooding. */
static uint64_t route_hash(const char *s, size_t len)
{
	const uint64_t m = 0xff51afd7ed558ccdULL;
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (len * m);
	uint64_t w;

	while (len >= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * m;
		h ^= h >> 29;
		s += 8;
		len -= 8;
	}
	w = 0;
	memcpy(&w, s, len);
	h = (h ^ w) * m;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static const struct route_slot *route_vm_find(const struct route_table *t,
					      const char *id, size_t len)
{
	uint64_t h = route_hash(id, len);
	uint32_t tag = (uint32_t)(h >> 32);
	size_t i = (size_t)h & t->mask;

	/* Linear probing; the load factor keeps the runs short and the table
	 * always has empty slots, so this ends. */
	for (;; i = (i + 1) & t->mask) {
		const struct route_slot *s = &t->slots[i];

		if (s->id_off == 0)
			return NULL;
		/* strncmp, not memcmp: it stops at the stored id's NUL, so a
		 * shorter id never makes it read past the arena. */
		if (s->tag == tag && strncmp(t->ids + s->id_off, id, len) == 0 &&
		    t->ids[s->id_off + len] == '\0')
			return s;
	}
}

static int cmp_port_map(const void *a, const void *b)
{
	const struct config_port_map *x = a, *y = b;

	return (int)x->listen_port - (int)y->listen_port;
}

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static int route_domain_copy(struct route_domain *d,
			     const struct config_domain *cd)
{
	if (cd->port_map_len) {
		d->port_map = malloc(cd->port_map_len * sizeof(*d->port_map));
		if (!d->port_map)
			return -ENOMEM;
		memcpy(d->port_map, cd->port_map,
		       cd->port_map_len * sizeof(*d->port_map));
		d->port_map_len = cd->port_map_len;
		qsort(d->port_map, d->port_map_len, sizeof(*d->port_map),
		      cmp_port_map);
	}
	d->has_allowed = cd->has_allowed_ports;
	if (cd->allowed_ports_len) {
		d->allowed = malloc(cd->allowed_ports_len * sizeof(uint16_t));
		if (!d->allowed)
			return -ENOMEM;
		memcpy(d->allowed, cd->allowed_ports,
		       cd->allowed_ports_len * sizeof(uint16_t));
		d->allowed_len = cd->allowed_ports_len;
		qsort(d->allowed, d->allowed_len, sizeof(uint16_t), cmp_u16);
	}
	return 0;
}

static int route_add_domains(struct route_table *t, const struct config *cfg)
{
	char name[ROUTE_HOST_CAP];
	size_t len;

	if (cfg->domains_len == 0)
		return 0;
	t->domains = calloc(cfg->domains_len, sizeof(*t->domains));
	if (!t->domains)
		return -ENOMEM;
	t->domains_len = cfg->domains_len;

	for (size_t i = 0; i < cfg->domains_len; i++) {
		const struct config_domain *cd = &cfg->domains[i];
		int ret;

		if (route_domain_copy(&t->domains[i], cd))
			return -ENOMEM;
		/* The loader validated suffixes; normalising again costs
		 * nothing and keeps a hand-built config (tests, fuzzing) from
		 * putting uppercase into the trie. A duplicate keeps the
		 * first, as the loader would have refused it anyway. */
		if (!cd->suffix ||
		    !route_host_normalize(name, &len, sizeof(name),
					  (const uint8_t *)cd->suffix,
					  strlen(cd->suffix)))
			continue;
		ret = trie_insert(&t->trie, name, len, TRIE_WILDCARD,
				  (uint32_t)i);
		if (ret == -ENOMEM)
			return ret;
	}
	return 0;
}

static int route_add_vms(struct route_table *t, const struct config *cfg)
{
	size_t arena = 1, cap = 8, off = 1;

	for (size_t i = 0; i < cfg->vms_len; i++)
		arena += strlen(cfg->vms[i].id) + 1;
	if (arena > UINT32_MAX)
		return -ENOMEM;
	while (cap < cfg->vms_len * 2)
		cap *= 2;

	t->ids = malloc(arena);
	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->ids || !t->slots)
		return -ENOMEM;
	t->ids[0] = '\0';
	t->mask = cap - 1;

	for (size_t i = 0; i < cfg->vms_len; i++) {
		const char *id = cfg->vms[i].id;
		size_t len = strlen(id), j;
		uint64_t h;

		for (j = 0; j < len; j++) {
			char c = id[j];

			t->ids[off + j] = (c >= 'A' && c <= 'Z') ?
					  c + ('a' - 'A') : c;
		}
		t->ids[off + len] = '\0';
		if (route_vm_find(t, t->ids + off, len))
			continue; /* duplicate: the first one wins */

		h = route_hash(t->ids + off, len);
		for (j = (size_t)h & t->mask; t->slots[j].id_off;
		     j = (j + 1) & t->mask)
			;
		t->slots[j].addr = cfg->vms[i].addr;
		t->slots[j].id_off = (uint32_t)off;
		t->slots[j].tag = (uint32_t)(h >> 32);
		off += len + 1;
	}
	return 0;
}

struct route_table *route_table_new(const struct config *cfg)
{
	struct route_table *t;

	t = calloc(1, sizeof(*t));
	if (!t)
		goto err;
	if (route_add_domains(t, cfg))
		goto err_table;
	if (route_add_vms(t, cfg))
		goto err_table;
	return t;

err_table:
	route_table_free(t);
err:
	return NULL;
}

void route_table_free(struct route_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->domains_len; i++) {
		free(t->domains[i].port_map);
		free(t->domains[i].allowed);
	}
	free(t->domains);
	trie_free(&t->trie);
	free(t->ids);
	free(t->slots);
	free(t);
}

static bool route_port_allowed(const struct route_domain *d, uint16_t port)
{
	if (d->allowed_len == 0)
		return false;
	return bsearch(&port, d->allowed, d->allowed_len, sizeof(uint16_t),
		       cmp_u16) != NULL;
}

static uint16_t route_port_map(const struct route_domain *d, uint16_t port)
{
	struct config_port_map key = { .listen_port = port };
	const struct config_port_map *m;

	if (d->port_map_len == 0)
		return port;
	m = bsearch(&key, d->port_map, d->port_map_len, sizeof(*m),
		    cmp_port_map);
	return m ? m->vm_port : port;
}

enum route_verdict route_lookup(const struct route_table *t,
				struct route_match *out, const uint8_t *host,
				size_t host_len, uint16_t listen_port)
{
	char name[ROUTE_HOST_CAP];
	const struct route_domain *d;
	const struct route_slot *s;
	struct trie_match m;
	size_t len;

	if (host_len == 0)
		return ROUTE_NO_SNI;
	if (!route_host_normalize(name, &len, sizeof(name), host, host_len))
		return ROUTE_BAD_HOST;
	if (!trie_lookup(&t->trie, &m, name, len) || !m.wildcard ||
	    m.prefix_labels != 1)
		return ROUTE_UNKNOWN_DOMAIN;

	s = route_vm_find(t, name, m.prefix_len);
	if (!s)
		return ROUTE_UNKNOWN_VM;
	d = &t->domains[m.value];
	if (d->has_allowed && !route_port_allowed(d, listen_port))
		return ROUTE_PORT_DENIED;

	out->vm_id = t->ids + s->id_off;
	out->addr = &s->addr;
	out->vm_port = route_port_map(d, listen_port);
	return ROUTE_OK;
}

const char *route_verdict_str(enum route_verdict v)
{
	switch (v) {
	case ROUTE_OK:
		return "ok";
	case ROUTE_NO_SNI:
		return "no_sni";
	case ROUTE_BAD_HOST:
		return "bad_host";
	case ROUTE_UNKNOWN_DOMAIN:
		return "unknown_domain";
	case ROUTE_UNKNOWN_VM:
		return "unknown_vm";
	case ROUTE_PORT_DENIED:
		return "port_denied";
	}
	return "unknown";
}
