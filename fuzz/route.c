/* fuzz/route.c: libFuzzer target for route/trie.c and route/table.c
 * (route_table_new, route_lookup, route_host_normalize), checked against a
 * naive linear reference matcher written here from the contracts in
 * route/trie.h and route/route.h.
 *
 * Input: text, one command per line, fields separated by spaces (a field
 * is any bytes but space and newline, so hostnames may hold anything):
 *
 *   d SUFFIX [m LISTEN:VM]... [a PORT,PORT,...]   a domain (route table),
 *        also a TRIE_WILDCARD name in the stand-alone trie; "a" alone (or
 *        with no valid port) makes an allowlist that allows nothing
 *   x NAME                  a TRIE_EXACT name in the stand-alone trie
 *   w NAME                  a TRIE_WILDCARD name in the stand-alone trie
 *   v ID [ADDRBYTE]         a VM, address fd00::ADDRBYTE
 *   q HOST [PORT]           a lookup: route_lookup(HOST, PORT) on the table
 *                           and trie_lookup(HOST) on the trie
 *   + ID [ADDRBYTE]         a change for route_table_derive: VM ID added
 *                           or moved to fd00::ADDRBYTE
 *   - ID                    a change: VM ID removed
 *   f N                     the Nth allocation (from 0) route/ makes while
 *                           building (trie inserts, then the table) fails:
 *                           the insert must say -ENOMEM and leave a trie
 *                           that still answers like the reference; the
 *                           table build must return NULL and free all
 *
 * "x" or "w" alone inserts the empty name (-EINVAL). With any changes, the
 * table is also derived (route_table_derive), the base freed first or last
 * (the last change line's ADDRBYTE parity), and every query is asked of
 * the derived table too, against the reference VM set with the changes
 * applied; route_vm_get, route_vm_count and route_vm_foreach are checked on
 * both tables.
 * Up to 64 of each; unknown lines are skipped. Every lookup is compared
 * with the reference; so is every trie_insert's return value. Any
 * difference aborts. Port maps are de-duplicated (first wins) as the
 * loader guarantees; everything else goes in as written, so the table sees
 * the uppercase, invalid and duplicate names only a hand-built config has.
 *
 * Seed corpus: fuzz/corpus/route/; dictionary: fuzz/route.dict.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "route/route.h"
#include "route/trie.h"

#define MAXN 64
#define FIELD_MAX 300

/* Allocation failure injection: this target is linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc (fuzz/fuzz.mk), so route/
 * allocates through these. alloc_countdown < 0: never fail. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

static long alloc_countdown = -1;
static bool alloc_failed;

static bool alloc_fail(void)
{
	if (alloc_countdown < 0 || alloc_countdown-- != 0)
		return false;
	alloc_failed = true;
	return true;
}

void *__wrap_malloc(size_t n)
{
	return alloc_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return alloc_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return alloc_fail() ? NULL : __real_realloc(p, n);
}

#define check(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "route: %s:%d: %s\n", __FILE__,    \
				__LINE__, #cond);                          \
			abort();                                           \
		}                                                          \
	} while (0)

struct field {
	const uint8_t *p;
	size_t len;
};

/* ---- the reference ------------------------------------------------- */

/* Hostname rules of route_host_normalize, spelled out the slow way. */
static bool ref_ldh(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-';
}

static bool ref_normalize(char *out, const uint8_t *in, size_t len)
{
	size_t i, start = 0;

	if (len < 1 || len > 253)
		return false;
	for (i = 0; i <= len; i++) {
		if (i < len && in[i] != '.') {
			if (!ref_ldh(in[i]))
				return false;
			continue;
		}
		/* label in[start..i) */
		if (i == start || i - start > 63 || in[start] == '-' ||
		    in[i - 1] == '-')
			return false;
		start = i + 1;
	}
	for (i = 0; i < len; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] + 32) :
							  (char)in[i];
	out[len] = '\0';
	return true;
}

/* trie_insert's name rule: non-empty labels of at most 63 bytes. */
static bool ref_trie_name_ok(const uint8_t *p, size_t len)
{
	size_t i, start = 0;

	if (len == 0)
		return false;
	for (i = 0; i <= len; i++) {
		if (i < len && p[i] != '.')
			continue;
		if (i == start || i - start > 63)
			return false;
		start = i + 1;
	}
	return true;
}

/* Does |name| end in "." + |suf| with something in front? Returns the
 * prefix length, or -1. */
static long ref_under(const uint8_t *name, size_t len, const void *suf,
		      size_t suf_len)
{
	if (len < suf_len + 2)
		return -1;
	if (memcmp(name + len - suf_len, suf, suf_len) != 0 ||
	    name[len - suf_len - 1] != '.')
		return -1;
	return (long)(len - suf_len - 1);
}

struct ref_trie_ent {
	const uint8_t *name; /* into the input */
	size_t len;
	enum trie_kind kind;
	uint32_t value;
};

struct ref {
	struct ref_trie_ent trie[2 * MAXN];
	size_t trie_len;
};

static bool ref_trie_lookup(const struct ref *r, struct trie_match *out,
			    const uint8_t *name, size_t len)
{
	const struct ref_trie_ent *best = NULL;
	long best_prefix = -1;

	for (size_t i = 0; i < r->trie_len; i++) {
		const struct ref_trie_ent *e = &r->trie[i];

		if (e->kind == TRIE_EXACT && e->len == len &&
		    memcmp(e->name, name, len) == 0) {
			out->value = e->value;
			out->wildcard = false;
			out->prefix_len = 0;
			out->prefix_labels = 0;
			return true;
		}
	}
	for (size_t i = 0; i < r->trie_len; i++) {
		const struct ref_trie_ent *e = &r->trie[i];
		long p;

		if (e->kind != TRIE_WILDCARD)
			continue;
		p = ref_under(name, len, e->name, e->len);
		if (p > 0 && (!best || e->len > best->len)) {
			best = e;
			best_prefix = p;
		}
	}
	if (!best)
		return false;
	out->value = best->value;
	out->wildcard = true;
	out->prefix_len = (size_t)best_prefix;
	out->prefix_labels = 1;
	for (long i = 0; i < best_prefix; i++)
		if (name[i] == '.')
			out->prefix_labels++;
	return true;
}

/* ---- input parsing -------------------------------------------------- */

static bool next_field(struct field *f, const uint8_t **p, const uint8_t *end)
{
	while (*p < end && **p == ' ')
		(*p)++;
	if (*p == end)
		return false;
	f->p = *p;
	while (*p < end && **p != ' ')
		(*p)++;
	f->len = (size_t)(*p - f->p);
	return true;
}

static bool field_is(const struct field *f, const char *s)
{
	return f->len == strlen(s) && memcmp(f->p, s, f->len) == 0;
}

/* A decimal number of at most 5 digits, or -1. */
static long field_num(const uint8_t *p, size_t len)
{
	long v = 0;

	if (len == 0 || len > 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	return v;
}

/* The harness's own allocations never fail. */
static char *field_str(const struct field *f)
{
	char *s = __real_malloc(f->len + 1);

	check(s != NULL);
	memcpy(s, f->p, f->len);
	s[f->len] = '\0';
	return s;
}

static bool has_nul(const struct field *f)
{
	return memchr(f->p, '\0', f->len) != NULL;
}

struct query {
	struct field host;
	uint16_t port;
};

struct input {
	struct config cfg;
	struct query q[MAXN];
	size_t q_len;
	struct field names[2 * MAXN];
	enum trie_kind kinds[2 * MAXN];
	size_t names_len;
	long fail_at; /* -1: no injected failure */
	struct route_vm_change ch[MAXN];
	size_t ch_len;
	bool free_base_first;
};

/* The reference VM set: valid one-label ids, lowercase. */
struct ref_vm {
	char id[64];
	size_t len;
	struct in6_addr addr;
};

struct ref_vms {
	struct ref_vm v[2 * MAXN];
	size_t len;
};

static void parse_domain(struct input *in, const uint8_t **p,
			 const uint8_t *end)
{
	struct config_domain *d;
	struct field f, g;

	if (!next_field(&f, p, end) || has_nul(&f) ||
	    in->cfg.domains_len == MAXN)
		return;
	d = &in->cfg.domains[in->cfg.domains_len++];
	d->suffix = field_str(&f);
	if (in->names_len < 2 * MAXN) {
		in->names[in->names_len] = f;
		in->kinds[in->names_len++] = TRIE_WILDCARD;
	}
	d->port_map = calloc(MAXN, sizeof(*d->port_map));
	d->allowed_ports = calloc(MAXN, sizeof(uint16_t));
	check(d->port_map && d->allowed_ports);
	while (next_field(&f, p, end)) {
		if (field_is(&f, "m") && next_field(&g, p, end)) {
			const uint8_t *colon = memchr(g.p, ':', g.len);
			long l, v;
			bool dup = false;

			if (!colon || d->port_map_len == MAXN)
				continue;
			l = field_num(g.p, (size_t)(colon - g.p));
			v = field_num(colon + 1, g.len - (size_t)(colon - g.p) - 1);
			if (l < 0 || l > 65535 || v < 0 || v > 65535)
				continue;
			for (size_t i = 0; i < d->port_map_len; i++)
				dup |= d->port_map[i].listen_port == l;
			if (dup)
				continue;
			d->port_map[d->port_map_len].listen_port = (uint16_t)l;
			d->port_map[d->port_map_len++].vm_port = (uint16_t)v;
		} else if (field_is(&f, "a")) {
			d->has_allowed_ports = true;
			if (!next_field(&g, p, end))
				break;
			for (size_t i = 0; i < g.len;) {
				size_t j = i;
				long port;

				while (j < g.len && g.p[j] != ',')
					j++;
				port = field_num(g.p + i, j - i);
				if (port >= 0 && port <= 65535 &&
				    d->allowed_ports_len < MAXN)
					d->allowed_ports[d->allowed_ports_len++] =
						(uint16_t)port;
				i = j + 1;
			}
		}
	}
}

static void parse(struct input *in, const uint8_t *data, size_t size)
{
	const uint8_t *line = data, *end = data + size;

	in->fail_at = -1;
	in->cfg.domains = calloc(MAXN, sizeof(*in->cfg.domains));
	in->cfg.vms = calloc(MAXN, sizeof(*in->cfg.vms));
	check(in->cfg.domains && in->cfg.vms);

	while (line < end) {
		const uint8_t *nl = memchr(line, '\n', (size_t)(end - line));
		const uint8_t *eol = nl ? nl : end, *p = line;
		struct field op, f, g;

		if (!next_field(&op, &p, eol) || op.len != 1)
			goto next;
		switch (op.p[0]) {
		case 'd':
			parse_domain(in, &p, eol);
			break;
		case 'x':
		case 'w':
			if (!next_field(&f, &p, eol))
				f = (struct field){ p, 0 };
			if (in->names_len < 2 * MAXN) {
				in->names[in->names_len] = f;
				in->kinds[in->names_len++] =
					op.p[0] == 'x' ? TRIE_EXACT : TRIE_WILDCARD;
			}
			break;
		case 'v':
			if (next_field(&f, &p, eol) && !has_nul(&f) &&
			    in->cfg.vms_len < MAXN) {
				struct config_vm *vm = &in->cfg.vms[in->cfg.vms_len++];
				long b = 0;

				vm->id = field_str(&f);
				if (next_field(&g, &p, eol))
					b = field_num(g.p, g.len);
				vm->addr.s6_addr[0] = 0xfd;
				vm->addr.s6_addr[15] = (uint8_t)(b < 0 ? 0 : b);
			}
			break;
		case '+':
		case '-':
			if (next_field(&f, &p, eol) && !has_nul(&f) &&
			    in->ch_len < MAXN) {
				struct route_vm_change *c = &in->ch[in->ch_len++];
				long b = 0;

				c->id = field_str(&f);
				c->removed = op.p[0] == '-';
				if (next_field(&g, &p, eol))
					b = field_num(g.p, g.len);
				c->addr.s6_addr[0] = 0xfd;
				c->addr.s6_addr[15] = (uint8_t)(b < 0 ? 0 : b);
				in->free_base_first = b > 0 && (b & 1);
			}
			break;
		case 'f':
			if (next_field(&f, &p, eol))
				in->fail_at = field_num(f.p, f.len);
			break;
		case 'q':
			if (next_field(&f, &p, eol) && in->q_len < MAXN) {
				struct query *q = &in->q[in->q_len++];
				long port = 443;

				q->host = f;
				if (next_field(&g, &p, eol))
					port = field_num(g.p, g.len);
				q->port = (uint16_t)(port < 0 ? 0 : port);
			}
			break;
		}
next:
		line = nl ? nl + 1 : end;
	}
}

/* ---- the route table reference ------------------------------------- */

/* One valid DNS label, lowercased into |out| (64 bytes). */
static bool ref_label(char *out, size_t *out_len, const char *in, size_t len)
{
	if (len > 63 || !ref_normalize(out, (const uint8_t *)in, len) ||
	    memchr(out, '.', len))
		return false;
	*out_len = len;
	return true;
}

static struct ref_vm *ref_vm_find(struct ref_vms *r, const char *id,
				  size_t len)
{
	for (size_t i = 0; i < r->len; i++)
		if (r->v[i].len == len && memcmp(r->v[i].id, id, len) == 0)
			return &r->v[i];
	return NULL;
}

/* The base table's VMs: valid ids only, the first of duplicates. */
static void ref_vms_base(struct ref_vms *r, const struct config *cfg)
{
	r->len = 0;
	for (size_t i = 0; i < cfg->vms_len; i++) {
		struct ref_vm *v = &r->v[r->len];

		if (!ref_label(v->id, &v->len, cfg->vms[i].id,
			       strlen(cfg->vms[i].id)) ||
		    ref_vm_find(r, v->id, v->len))
			continue;
		v->addr = cfg->vms[i].addr;
		r->len++;
	}
}

/* Apply the changes in order; false if one has an invalid id. */
static bool ref_vms_apply(struct ref_vms *r, const struct input *in)
{
	for (size_t i = 0; i < in->ch_len; i++) {
		const struct route_vm_change *c = &in->ch[i];
		struct ref_vm v, *old;

		if (!ref_label(v.id, &v.len, c->id, strlen(c->id)))
			return false;
		old = ref_vm_find(r, v.id, v.len);
		if (c->removed) {
			if (old)
				*old = r->v[--r->len];
		} else if (old) {
			old->addr = c->addr;
		} else {
			v.addr = c->addr;
			r->v[r->len++] = v;
		}
	}
	return true;
}

static enum route_verdict ref_route(const struct config *cfg,
				    struct ref_vms *vms,
				    const struct ref_vm **out_vm,
				    uint16_t *out_port, const uint8_t *host,
				    size_t host_len, uint16_t port)
{
	char name[FIELD_MAX], suf[FIELD_MAX];
	const struct config_domain *best = NULL;
	size_t best_len = 0;
	long prefix = -1;
	bool allowed;

	if (host_len == 0)
		return ROUTE_NO_SNI;
	if (!ref_normalize(name, host, host_len))
		return ROUTE_BAD_HOST;
	for (size_t i = 0; i < cfg->domains_len; i++) {
		const struct config_domain *d = &cfg->domains[i];
		size_t len = strlen(d->suffix);
		long p;

		if (!ref_normalize(suf, (const uint8_t *)d->suffix, len))
			continue;
		p = ref_under((const uint8_t *)name, host_len, suf, len);
		/* Longest suffix; among equal ones (duplicates) the first. */
		if (p > 0 && (!best || len > best_len)) {
			best = d;
			best_len = len;
			prefix = p;
		}
	}
	if (!best || memchr(name, '.', (size_t)prefix))
		return ROUTE_UNKNOWN_DOMAIN;

	*out_vm = ref_vm_find(vms, name, (size_t)prefix);
	if (!*out_vm)
		return ROUTE_UNKNOWN_VM;

	allowed = !best->has_allowed_ports;
	for (size_t i = 0; i < best->allowed_ports_len; i++)
		allowed |= best->allowed_ports[i] == port;
	if (!allowed)
		return ROUTE_PORT_DENIED;
	*out_port = port;
	for (size_t i = 0; i < best->port_map_len; i++)
		if (best->port_map[i].listen_port == port)
			*out_port = best->port_map[i].vm_port;
	return ROUTE_OK;
}

static void input_free(struct input *in)
{
	for (size_t i = 0; i < in->cfg.domains_len; i++) {
		free(in->cfg.domains[i].suffix);
		free(in->cfg.domains[i].port_map);
		free(in->cfg.domains[i].allowed_ports);
	}
	for (size_t i = 0; i < in->cfg.vms_len; i++)
		free(in->cfg.vms[i].id);
	for (size_t i = 0; i < in->ch_len; i++)
		free((char *)in->ch[i].id);
	free(in->cfg.domains);
	free(in->cfg.vms);
}

static void check_trie(struct input *in, struct ref *ref)
{
	struct trie trie = { 0 };

	for (size_t i = 0; i < in->names_len; i++) {
		const struct field *f = &in->names[i];
		bool ok = ref_trie_name_ok(f->p, f->len), exists = false;
		char *copy = field_str(f);
		int ret;

		for (size_t j = 0; ok && j < ref->trie_len; j++)
			exists |= ref->trie[j].kind == in->kinds[i] &&
				  ref->trie[j].len == f->len &&
				  memcmp(ref->trie[j].name, f->p, f->len) == 0;
		alloc_failed = false;
		ret = trie_insert(&trie, copy, f->len, in->kinds[i],
				  (uint32_t)i);
		free(copy);
		if (alloc_failed) {
			/* The trie stays valid; the name is not in it. */
			check(ret == -ENOMEM);
		} else if (!ok) {
			check(ret == -EINVAL);
		} else if (exists) {
			check(ret == -EEXIST);
		} else {
			struct ref_trie_ent *e = &ref->trie[ref->trie_len++];

			check(ret == 0);
			e->name = f->p;
			e->len = f->len;
			e->kind = in->kinds[i];
			e->value = (uint32_t)i;
		}
	}

	for (size_t i = 0; i < in->q_len; i++) {
		struct trie_match got, want;
		const struct field *h = &in->q[i].host;
		/* An exactly sized copy: ASan sees any read past the name. */
		char *name = __real_malloc(h->len ? h->len : 1);
		bool g, w;

		check(name != NULL);
		memcpy(name, h->p, h->len);
		memset(&got, 0xa5, sizeof(got));
		g = trie_lookup(&trie, &got, name, h->len);
		w = ref_trie_lookup(ref, &want, h->p, h->len);
		free(name);
		if (g != w)
			fprintf(stderr, "route: trie_lookup query %zu: got %d, "
				"reference %d\n", i, g, w);
		check(g == w);
		if (!g)
			continue;
		check(got.value == want.value);
		check(got.wildcard == want.wildcard);
		check(got.prefix_len == want.prefix_len);
		check(got.prefix_labels == want.prefix_labels);
	}
	trie_free(&trie);
	trie_free(&trie); /* twice: a freed trie is an empty one */
	trie_free(NULL);
}

struct seen {
	struct ref_vms *vms;
	bool hit[2 * MAXN];
	size_t calls;
};

static bool foreach_cb(void *arg, const char *id, const struct in6_addr *addr)
{
	struct seen *s = arg;
	struct ref_vm *v = ref_vm_find(s->vms, id, strlen(id));

	check(v != NULL);
	check(memcmp(&v->addr, addr, sizeof(*addr)) == 0);
	check(!s->hit[v - s->vms->v]);
	s->hit[v - s->vms->v] = true;
	s->calls++;
	return true;
}

static void check_lookups(const struct route_table *t, struct input *in,
			  struct ref_vms *vms)
{
	struct seen seen = { .vms = vms };

	check(route_vm_count(t) == vms->len);
	route_vm_foreach(t, foreach_cb, &seen);
	check(seen.calls == vms->len);

	for (size_t i = 0; i < in->q_len; i++) {
		const struct query *q = &in->q[i];
		const struct ref_vm *vm = NULL, *want_vm;
		struct route_match got;
		struct in6_addr addr;
		uint16_t want_port = 0;
		enum route_verdict g, w;
		char id[64];
		size_t id_len;
		uint8_t *host = __real_malloc(q->host.len ? q->host.len : 1);
		bool found;

		check(host != NULL);
		memcpy(host, q->host.p, q->host.len);
		g = route_lookup(t, &got, host, q->host.len, q->port);
		w = ref_route(&in->cfg, vms, &vm, &want_port, q->host.p,
			      q->host.len, q->port);
		/* The query as a vm id, for route_vm_get. */
		found = route_vm_get(t, &addr, (const char *)host, q->host.len);
		free(host);
		want_vm = ref_label(id, &id_len, (const char *)q->host.p,
				    q->host.len) ?
				  ref_vm_find(vms, id, id_len) :
				  NULL;
		check(found == (want_vm != NULL));
		if (found)
			check(memcmp(&addr, &want_vm->addr, sizeof(addr)) == 0);
		if (g != w)
			fprintf(stderr, "route: route_lookup query %zu: got %s, "
				"reference %s\n", i, route_verdict_str(g),
				route_verdict_str(w));
		check(g == w);
		check(strcmp(route_verdict_str(g), "unknown") != 0);
		if (g != ROUTE_OK)
			continue;
		check(got.vm_port == want_port);
		check(memcmp(got.addr, &vm->addr, sizeof(vm->addr)) == 0);
		check(strcmp(got.vm_id, vm->id) == 0);
	}
}

static void check_table(struct input *in)
{
	static struct ref_vms base_vms, derived_vms;
	struct route_table *t, *d;
	bool valid;

	alloc_failed = false;
	t = route_table_new(&in->cfg);
	if (alloc_failed) {
		alloc_countdown = -1;
		check(t == NULL); /* and nothing leaked */
		return;
	}
	check(t != NULL);
	ref_vms_base(&base_vms, &in->cfg);
	check_lookups(t, in, &base_vms);
	if (!in->ch_len) {
		alloc_countdown = -1;
		route_table_free(t);
		route_table_free(NULL);
		return;
	}

	derived_vms = base_vms;
	valid = ref_vms_apply(&derived_vms, in);
	alloc_failed = false;
	d = route_table_derive(t, in->ch, in->ch_len);
	alloc_countdown = -1;
	if (alloc_failed || !valid) {
		check(d == NULL);
		route_table_free(t);
		return;
	}
	check(d != NULL);
	if (in->free_base_first)
		route_table_free(t);
	check_lookups(d, in, &derived_vms);
	if (!in->free_base_first) {
		check_lookups(t, in, &base_vms); /* untouched by the derive */
		route_table_free(t);
	}
	route_table_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ref ref;
	struct input *in = calloc(1, sizeof(*in));

	check(in != NULL);
	parse(in, data, size);
	ref.trie_len = 0;
	alloc_countdown = in->fail_at;
	check_trie(in, &ref);
	check_table(in);
	input_free(in);
	free(in);
	return 0;
}
