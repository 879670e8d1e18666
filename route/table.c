/* route/table.c: the route table: domains in a trie, VMs in a hash table,
 * the port policy of each domain, and overlays of VM changes.
 *
 * What scales is the VM table (10^6 VMs), and what it is asked most is
 * "is there a VM with this id" for a random id, so a lookup should cost one
 * cache miss. Each VM is one 64-byte slot, one cache line: its address, its
 * id's length, the id itself inline (NUL-terminated; UUIDs are 36
 * bytes) and the index of its port ranges (vms[].ports; 0 for all ports,
 * most VMs), kept beside the hash in the table that holds the slot. An id of ROUTE_ID_INLINE bytes or more (labels go up to 63) is
 * kept in a side arena and the slot holds a pointer to it. The slots are
 * one array, 64-byte aligned, with linear probing at a load factor of at
 * most 1/2 (slots = 2 * VMs exactly, not a power of two: the hash is mapped
 * to a slot by a multiply, so memory does not jump by 2x at a power of
 * two). That is 128 bytes per VM. Big arrays are mapped with
 * MADV_HUGEPAGE: 2 MiB pages keep a random probe from also missing the
 * TLB.
 *
 * A table is a shared, reference counted core (trie, domains, the VM hash)
 * plus a small overlay hash of changed VMs, empty for a table made by
 * route_table_new(). route_table_derive() takes a new reference on the
 * core and builds only the overlay, so it costs O(changes). An overlay slot
 * is either a VM (new or with a new address) or a tombstone (removed);
 * lookups look in the overlay first and only then in the core.
 *
 * Deriving from a derived table flattens: the new overlay is the old
 * overlay's entries followed by the new changes, over the same core. So
 * there is never a chain to walk, at the price of copying the old overlay
 * (O(overlay + changes)); a caller that accumulates many changes should
 * build a fresh table with route_table_new() now and then.
 */
#include <errno.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "route/route.h"
#include "route/trie.h"

#define ROUTE_HOST_CAP 254
#define ROUTE_LABEL_MAX 63
#define ROUTE_ID_INLINE 42 /* id bytes in a slot, its NUL included */
#define ROUTE_HUGE (2u << 20)

struct route_domain {
	struct config_port_map *port_map; /* sorted by listen_port */
	size_t port_map_len;
	uint16_t *allowed;                /* sorted */
	size_t allowed_len;
	bool has_allowed;
	uint8_t proxy;                    /* enum config_proxy_protocol */
	uint16_t *proxy_ports;            /* sorted; VM ports */
	size_t proxy_ports_len;
	bool has_proxy_ports;
	bool vm_errors_http;
	bool passthrough;
};

enum {
	ROUTE_SLOT_REMOVED = 1, /* an overlay's tombstone */
};

struct route_slot {
	struct in6_addr addr;
	uint8_t len;   /* id length; 0 = empty slot */
	uint8_t flags; /* ROUTE_SLOT_* */
	/* The id, NUL-terminated, when len < ROUTE_ID_INLINE; otherwise
	 * the first sizeof(char *) bytes are a pointer to it. */
	char id[ROUTE_ID_INLINE];
	/* 0: every port; else ports[ports - 1] of the struct route_vms
	 * holding the slot. */
	uint32_t ports;
};

_Static_assert(sizeof(struct route_slot) == 64, "a slot is a cache line");

/* An open-addressing hash of VMs. All-zero is a valid empty one. */
struct route_vms {
	struct route_slot *slots;
	size_t cap;      /* slots; 0 = empty */
	size_t len;      /* slots in use */
	size_t map_len;  /* bytes mapped with mmap, or 0 if from malloc */
	char *long_ids;  /* arena of ids too long to be inline */
	size_t long_len, long_cap;
	struct config_vm_ports **ports; /* owned; slots' port ranges */
	size_t ports_len, ports_cap;
};

/* What derived tables share. */
struct route_core {
	atomic_size_t refs;
	struct trie trie;
	struct route_domain *domains;
	size_t domains_len;
	struct route_vms vms;
};

struct route_table {
	struct route_core *core;
	struct route_vms over; /* changes to core->vms; empty when not derived */
	size_t vm_count;
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

/* The first slot to probe: h scaled to [0, cap) by a multiply, which uses
 * the high bits of h and works for any cap. */
static size_t route_home(const struct route_vms *v, uint64_t h)
{
	return (size_t)(((unsigned __int128)h * v->cap) >> 64);
}

static const char *route_slot_id(const struct route_slot *s)
{
	const char *p;

	if (s->len < ROUTE_ID_INLINE)
		return s->id;
	memcpy(&p, s->id, sizeof(p));
	return p;
}

static const struct route_slot *route_vms_find(const struct route_vms *v,
					       const char *id, size_t len,
					       uint64_t h)
{
	size_t i;

	if (v->cap == 0)
		return NULL;
	/* Linear probing; the load factor keeps the runs short and the
	 * table always has empty slots, so this ends. */
	for (i = route_home(v, h);; i = i + 1 == v->cap ? 0 : i + 1) {
		const struct route_slot *s = &v->slots[i];

		if (s->len == 0)
			return NULL;
		if (s->len == len && memcmp(route_slot_id(s), id, len) == 0)
			return s;
	}
}

/* route_vms_init allocates |cap| empty slots and an arena of |long_cap|
 * bytes. */
static int route_vms_init(struct route_vms *v, size_t cap, size_t long_cap)
{
	size_t bytes = cap * sizeof(struct route_slot);

	if (cap == 0)
		return 0;
	if (cap > SIZE_MAX / 2 / sizeof(struct route_slot))
		return -ENOMEM;
	if (bytes >= 4 * ROUTE_HUGE) {
		/* Map 2 MiB more than needed and trim to a 2 MiB boundary,
		 * so that the whole array can be backed by huge pages. */
		size_t map = (bytes + ROUTE_HUGE - 1) & ~(size_t)(ROUTE_HUGE - 1);
		uint8_t *p, *a;

		p = mmap(NULL, map + ROUTE_HUGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		a = (uint8_t *)(((uintptr_t)p + ROUTE_HUGE - 1) &
				~(uintptr_t)(ROUTE_HUGE - 1));
		if (a > p)
			munmap(p, (size_t)(a - p));
		munmap(a + map, (size_t)(p + ROUTE_HUGE - a));
		madvise(a, map, MADV_HUGEPAGE); /* a hint; fine if refused */
		v->slots = (struct route_slot *)a;
		v->map_len = map;
	} else {
		v->slots = aligned_alloc(64, bytes);
		if (!v->slots)
			return -ENOMEM;
		memset(v->slots, 0, bytes);
	}
	v->cap = cap;
	if (long_cap) {
		v->long_ids = malloc(long_cap);
		if (!v->long_ids)
			return -ENOMEM;
		v->long_cap = long_cap;
	}
	return 0;
}

static void route_vms_free(struct route_vms *v)
{
	for (size_t i = 0; i < v->ports_len; i++)
		free(v->ports[i]);
	free(v->ports);
	if (v->map_len)
		munmap(v->slots, v->map_len);
	else
		free(v->slots);
	free(v->long_ids);
	memset(v, 0, sizeof(*v));
}

/* route_vms_put finds |id|'s slot, or the empty one where it goes. The
 * caller sized the table so there is always an empty slot. */
static struct route_slot *route_vms_put(struct route_vms *v, bool *found,
					const char *id, size_t len, uint64_t h)
{
	size_t i;

	for (i = route_home(v, h);; i = i + 1 == v->cap ? 0 : i + 1) {
		struct route_slot *s = &v->slots[i];

		if (s->len == 0) {
			*found = false;
			return s;
		}
		if (s->len == len && memcmp(route_slot_id(s), id, len) == 0) {
			*found = true;
			return s;
		}
	}
}

/* route_vms_fill writes |id| into the empty slot |s| (its arena was sized
 * for every long id by the caller). */
static void route_vms_fill(struct route_vms *v, struct route_slot *s,
			   const char *id, size_t len)
{
	s->len = (uint8_t)len;
	if (len < ROUTE_ID_INLINE) {
		memcpy(s->id, id, len);
		s->id[len] = '\0';
	} else {
		char *p = v->long_ids + v->long_len;

		memcpy(p, id, len);
		p[len] = '\0';
		v->long_len += len + 1;
		memcpy(s->id, &p, sizeof(p));
	}
	v->len++;
}

static size_t route_vm_ports_size(const struct config_vm_ports *p)
{
	return sizeof(*p) + p->len * sizeof(p->r[0]);
}

/* route_vms_set_ports gives slot |s| of |v| a copy of |p| (NULL: every
 * port). Returns 0 or -ENOMEM. */
static int route_vms_set_ports(struct route_vms *v, struct route_slot *s,
			       const struct config_vm_ports *p)
{
	struct config_vm_ports *copy;

	s->ports = 0;
	if (!p)
		return 0;
	if (v->ports_len == v->ports_cap) {
		size_t cap = v->ports_cap ? v->ports_cap * 2 : 16;
		struct config_vm_ports **n = realloc(v->ports,
						     cap * sizeof(*n));

		if (!n || cap > UINT32_MAX - 1) {
			free(n == v->ports ? NULL : n);
			return -ENOMEM;
		}
		v->ports = n;
		v->ports_cap = cap;
	}
	copy = malloc(route_vm_ports_size(p));
	if (!copy)
		return -ENOMEM;
	memcpy(copy, p, route_vm_ports_size(p));
	v->ports[v->ports_len++] = copy;
	s->ports = (uint32_t)v->ports_len;
	return 0;
}

static const struct config_vm_ports *
route_slot_ports(const struct route_vms *v, const struct route_slot *s)
{
	return s->ports ? v->ports[s->ports - 1] : NULL;
}

/* route_id_norm lowercases |in| into |out| if it is a valid VM id. */
static bool route_id_norm(char *out, size_t *out_len, const char *in)
{
	return route_vm_id_norm(out, out_len, in,
				strnlen(in, ROUTE_LABEL_MAX + 1));
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
	d->proxy = (uint8_t)cd->proxy_protocol;
	d->vm_errors_http = cd->vm_errors_http;
	d->passthrough = cd->tls_passthrough;
	d->has_proxy_ports = cd->has_proxy_protocol_ports;
	if (cd->proxy_protocol_ports_len) {
		d->proxy_ports = malloc(cd->proxy_protocol_ports_len *
					sizeof(uint16_t));
		if (!d->proxy_ports)
			return -ENOMEM;
		memcpy(d->proxy_ports, cd->proxy_protocol_ports,
		       cd->proxy_protocol_ports_len * sizeof(uint16_t));
		d->proxy_ports_len = cd->proxy_protocol_ports_len;
		qsort(d->proxy_ports, d->proxy_ports_len, sizeof(uint16_t),
		      cmp_u16);
	}
	return 0;
}

static int route_add_domains(struct route_core *c, const struct config *cfg)
{
	char name[ROUTE_HOST_CAP];
	size_t len;

	if (cfg->domains_len == 0)
		return 0;
	c->domains = calloc(cfg->domains_len, sizeof(*c->domains));
	if (!c->domains)
		return -ENOMEM;
	c->domains_len = cfg->domains_len;

	for (size_t i = 0; i < cfg->domains_len; i++) {
		const struct config_domain *cd = &cfg->domains[i];
		int ret;

		if (route_domain_copy(&c->domains[i], cd))
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
		ret = trie_insert(&c->trie, name, len, TRIE_WILDCARD,
				  (uint32_t)i);
		if (ret == -ENOMEM)
			return ret;
	}
	return 0;
}

/* An id that is not one valid label (only a hand-built config has one)
 * could never be looked up, so it is left out.
 *
 * Each VM's home slot is a cache miss; the ids are normalised and hashed
 * ROUTE_AHEAD VMs before they go in, and their home slots prefetched, so
 * that the misses overlap instead of coming one after the other. */
#define ROUTE_AHEAD 16

struct route_pending {
	char id[ROUTE_LABEL_MAX + 1];
	size_t len;
	uint64_t h;
	bool ok;
};

static int route_add_vms(struct route_core *c, const struct config *cfg)
{
	struct route_pending ring[ROUTE_AHEAD];
	struct route_vms *v = &c->vms;
	size_t long_cap = 0, len;

	for (size_t i = 0; i < cfg->vms_len; i++) {
		if (!cfg->vms[i].id)
			continue;
		len = strnlen(cfg->vms[i].id, ROUTE_LABEL_MAX + 1);
		if (len >= ROUTE_ID_INLINE)
			long_cap += len + 1;
	}
	if (cfg->vms_len > SIZE_MAX / 4 ||
	    route_vms_init(v, cfg->vms_len * 2, long_cap))
		return -ENOMEM;

	for (size_t i = 0; i < cfg->vms_len + ROUTE_AHEAD; i++) {
		struct route_pending *p = &ring[i % ROUTE_AHEAD];
		struct route_slot *s;
		bool found;

		if (i >= ROUTE_AHEAD && p->ok) {
			s = route_vms_put(v, &found, p->id, p->len, p->h);
			/* A duplicate: the first one wins. */
			if (!found) {
				route_vms_fill(v, s, p->id, p->len);
				s->addr = cfg->vms[i - ROUTE_AHEAD].addr;
				if (route_vms_set_ports(
					    v, s, cfg->vms[i - ROUTE_AHEAD].ports))
					return -ENOMEM;
			}
		}
		if (i >= cfg->vms_len)
			continue;
		p->ok = cfg->vms[i].id &&
			route_id_norm(p->id, &p->len, cfg->vms[i].id);
		if (p->ok) {
			p->h = route_hash(p->id, p->len);
			__builtin_prefetch(&v->slots[route_home(v, p->h)], 1);
		}
	}
	return 0;
}

static void route_core_put(struct route_core *c)
{
	if (!c || atomic_fetch_sub_explicit(&c->refs, 1,
					    memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < c->domains_len; i++) {
		free(c->domains[i].port_map);
		free(c->domains[i].allowed);
		free(c->domains[i].proxy_ports);
	}
	free(c->domains);
	trie_free(&c->trie);
	route_vms_free(&c->vms);
	free(c);
}

struct route_table *route_table_new(const struct config *cfg)
{
	struct route_table *t;

	t = calloc(1, sizeof(*t));
	if (!t)
		goto err;
	t->core = calloc(1, sizeof(*t->core));
	if (!t->core)
		goto err_table;
	atomic_init(&t->core->refs, 1);
	if (route_add_domains(t->core, cfg))
		goto err_table;
	if (route_add_vms(t->core, cfg))
		goto err_table;
	t->vm_count = t->core->vms.len;
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
	route_vms_free(&t->over);
	route_core_put(t->core);
	free(t);
}

/* route_over_set records "|id| is now |s|" (a VM or a tombstone) in the
 * overlay being built, replacing an earlier entry for the same id. */
static int route_over_set(struct route_vms *o, const char *id, size_t len,
			  const struct in6_addr *addr,
			  const struct config_vm_ports *ports, bool removed)
{
	struct route_slot *s;
	bool found;

	s = route_vms_put(o, &found, id, len, route_hash(id, len));
	if (!found)
		route_vms_fill(o, s, id, len);
	s->flags = removed ? ROUTE_SLOT_REMOVED : 0;
	if (removed)
		memset(&s->addr, 0, sizeof(s->addr));
	else
		s->addr = *addr;
	/* A replaced entry's old ranges stay in the array until the table
	 * goes: a derive copies each only once. */
	return route_vms_set_ports(o, s, removed ? NULL : ports);
}

struct route_table *route_table_derive(struct route_table *base,
				       const struct route_vm_change *changes,
				       size_t changes_len)
{
	const struct route_vms *old, *core_vms;
	size_t n, long_cap = 0, len;
	char id[ROUTE_HOST_CAP];
	struct route_table *t;

	/* &base->over on NULL is already undefined behaviour (UBSan). */
	if (!base)
		goto err;
	old = &base->over;
	/* Check every id first, and size the overlay for the old entries
	 * plus the changes (duplicates only make it emptier). */
	for (size_t i = 0; i < changes_len; i++) {
		if (!changes[i].id || !route_id_norm(id, &len, changes[i].id))
			goto err;
		if (len >= ROUTE_ID_INLINE)
			long_cap += len + 1;
	}
	long_cap += old->long_len;
	if (changes_len > SIZE_MAX / 4 - old->len)
		goto err;
	n = old->len + changes_len;

	t = calloc(1, sizeof(*t));
	if (!t)
		goto err;
	if (route_vms_init(&t->over, n ? n * 2 : 0, long_cap))
		goto err_table;
	t->core = base->core;
	atomic_fetch_add_explicit(&t->core->refs, 1, memory_order_relaxed);

	/* Flatten: the old overlay first, the new changes over it. */
	for (size_t i = 0; i < old->cap; i++) {
		const struct route_slot *s = &old->slots[i];

		if (s->len &&
		    route_over_set(&t->over, route_slot_id(s), s->len,
				   &s->addr, route_slot_ports(old, s),
				   s->flags & ROUTE_SLOT_REMOVED))
			goto err_table;
	}
	for (size_t i = 0; i < changes_len; i++) {
		route_id_norm(id, &len, changes[i].id);
		if (route_over_set(&t->over, id, len, &changes[i].addr,
				   changes[i].ports, changes[i].removed))
			goto err_table;
	}

	/* Count what the overlay adds to and takes from the core's VMs. */
	core_vms = &t->core->vms;
	t->vm_count = core_vms->len;
	for (size_t i = 0; i < t->over.cap; i++) {
		const struct route_slot *s = &t->over.slots[i];
		bool in_core;

		if (s->len == 0)
			continue;
		in_core = route_vms_find(core_vms, route_slot_id(s), s->len,
					 route_hash(route_slot_id(s), s->len));
		if (!(s->flags & ROUTE_SLOT_REMOVED) && !in_core)
			t->vm_count++;
		else if ((s->flags & ROUTE_SLOT_REMOVED) && in_core)
			t->vm_count--;
	}
	return t;

err_table:
	route_table_free(t);
err:
	return NULL;
}

/* route_vm_find answers for a normalised id: the overlay decides if it
 * has the id (a tombstone means "no such VM"), the core otherwise. */
static const struct route_slot *route_vm_find(const struct route_table *t,
					      const char *id, size_t len,
					      const struct route_vms **out_v)
{
	uint64_t h = route_hash(id, len);
	const struct route_slot *s;

	if (t->over.cap) {
		s = route_vms_find(&t->over, id, len, h);
		if (s) {
			*out_v = &t->over;
			return (s->flags & ROUTE_SLOT_REMOVED) ? NULL : s;
		}
	}
	*out_v = &t->core->vms;
	return route_vms_find(&t->core->vms, id, len, h);
}

/* VM |id| (|id_len| bytes, any case) in |t|, or NULL. */
static const struct route_slot *vm_by_id(const struct route_table *t,
					 const struct route_vms **v,
					 const char *id, size_t id_len)
{
	char name[ROUTE_HOST_CAP];
	size_t len;

	if (!route_vm_id_norm(name, &len, id, id_len))
		return NULL;
	return route_vm_find(t, name, len, v);
}

bool route_vm_get(const struct route_table *t, struct in6_addr *out,
		  const char *id, size_t id_len)
{
	const struct route_vms *v;
	const struct route_slot *s = vm_by_id(t, &v, id, id_len);

	if (s)
		*out = s->addr;
	return s != NULL;
}

bool route_vm_ports_get(const struct route_table *t,
			const struct config_vm_ports **out, const char *id,
			size_t id_len)
{
	const struct route_vms *v;
	const struct route_slot *s = vm_by_id(t, &v, id, id_len);

	if (s)
		*out = route_slot_ports(v, s);
	return s != NULL;
}

struct config_vm_ports *route_vm_ports_new(const uint16_t *ports, size_t len)
{
	struct config_vm_ports *p;
	size_t n = 0, i;

	for (i = 0; i < len; i++)
		if (i == 0 || ports[i] != ports[i - 1] + 1)
			n++;
	p = malloc(sizeof(*p) + n * sizeof(p->r[0]));
	if (!p)
		return NULL;
	p->len = 0;
	for (i = 0; i < len; i++) {
		if (i == 0 || ports[i] != ports[i - 1] + 1)
			p->r[p->len++].from = ports[i];
		p->r[p->len - 1].to = ports[i];
	}
	return p;
}

bool route_vm_ports_allow(const struct config_vm_ports *p, uint16_t port)
{
	size_t lo = 0, hi;

	if (!p)
		return true;
	/* The first range ending at or after |port|. */
	for (hi = p->len; lo < hi;) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->r[mid].to < port)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->len && p->r[lo].from <= port;
}

char *route_vm_ports_fmt(char *out, size_t cap, const struct config_vm_ports *p)
{
	size_t o = 0, i;
	int n;

	out[0] = '\0';
	if (!p) {
		snprintf(out, cap, "all");
		return out;
	}
	for (i = 0; i < p->len && o < cap; i++) {
		if (p->r[i].from == p->r[i].to)
			n = snprintf(out + o, cap - o, "%s%u", i ? "," : "",
				     p->r[i].from);
		else
			n = snprintf(out + o, cap - o, "%s%u-%u",
				     i ? "," : "", p->r[i].from, p->r[i].to);
		if (n < 0)
			break;
		o += (size_t)n;
	}
	return out;
}

size_t route_vm_count(const struct route_table *t)
{
	return t->vm_count;
}

void route_vm_foreach(const struct route_table *t,
		      bool (*fn)(void *arg, const char *id,
				 const struct in6_addr *addr),
		      void *arg)
{
	const struct route_vms *o = &t->over, *v = &t->core->vms;

	for (size_t i = 0; i < o->cap; i++) {
		const struct route_slot *s = &o->slots[i];

		if (s->len && !(s->flags & ROUTE_SLOT_REMOVED) &&
		    !fn(arg, route_slot_id(s), &s->addr))
			return;
	}
	for (size_t i = 0; i < v->cap; i++) {
		const struct route_slot *s = &v->slots[i];
		const char *id = route_slot_id(s);

		if (s->len == 0)
			continue;
		/* Shadowed by the overlay: visited above, or removed. */
		if (o->cap && route_vms_find(o, id, s->len,
					     route_hash(id, s->len)))
			continue;
		if (!fn(arg, id, &s->addr))
			return;
	}
}

static bool route_port_allowed(const struct route_domain *d, uint16_t port)
{
	if (d->allowed_len == 0)
		return false;
	return bsearch(&port, d->allowed, d->allowed_len, sizeof(uint16_t),
		       cmp_u16) != NULL;
}

/* The PROXY header for a connection to VM port |vm_port|. */
static uint8_t route_proxy(const struct route_domain *d, uint16_t vm_port)
{
	if (d->has_proxy_ports &&
	    !bsearch(&vm_port, d->proxy_ports, d->proxy_ports_len,
		     sizeof(uint16_t), cmp_u16))
		return CFG_PROXY_NONE;
	return d->proxy;
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
	const struct route_core *c = t->core;
	const struct route_vms *v;
	char name[ROUTE_HOST_CAP];
	const struct route_domain *d;
	const struct route_slot *s;
	struct trie_match m;
	uint16_t vm_port;
	size_t len;

	if (host_len == 0)
		return ROUTE_NO_SNI;
	if (!route_host_normalize(name, &len, sizeof(name), host, host_len))
		return ROUTE_BAD_HOST;
	if (!trie_lookup(&c->trie, &m, name, len) || !m.wildcard ||
	    m.prefix_labels != 1)
		return ROUTE_UNKNOWN_DOMAIN;

	s = route_vm_find(t, name, m.prefix_len, &v);
	if (!s)
		return ROUTE_UNKNOWN_VM;
	d = &c->domains[m.value];
	/* The VM is known from here on: its refusals are its to count. */
	out->vm_id = route_slot_id(s);
	if (d->has_allowed && !route_port_allowed(d, listen_port))
		return ROUTE_PORT_DENIED;
	vm_port = route_port_map(d, listen_port);
	if (!route_vm_ports_allow(route_slot_ports(v, s), vm_port))
		return ROUTE_VM_PORT_DENIED;

	out->addr = &s->addr;
	out->vm_port = vm_port;
	out->proxy_protocol = route_proxy(d, out->vm_port);
	out->vm_errors_http = d->vm_errors_http;
	out->passthrough = d->passthrough;
	out->domain = m.value;
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
	case ROUTE_VM_PORT_DENIED:
		return "vm_port_denied";
	}
	return "unknown";
}
