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
 *   f N                     the Nth allocation (from 0) route/ makes while
 *                           building (trie inserts, then the table) fails:
 *                           the insert must say -ENOMEM and leave a trie
 *                           that still answers like the reference; the
 *                           table build must return NULL and free all
 *
 * "x" or "w" alone inserts the empty name (-EINVAL).
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

static enum route_verdict ref_route(const struct config *cfg,
				    const struct config_vm **out_vm,
				    uint16_t *out_port, const uint8_t *host,
				    size_t host_len, uint16_t port)
{
	char name[FIELD_MAX], suf[FIELD_MAX], id[FIELD_MAX];
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

	*out_vm = NULL;
	for (size_t i = 0; i < cfg->vms_len && !*out_vm; i++) {
		size_t len = strlen(cfg->vms[i].id);

		if (len != (size_t)prefix)
			continue;
		for (size_t j = 0; j <= len; j++) {
			char c = cfg->vms[i].id[j];

			id[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
		}
		if (len == (size_t)prefix && memcmp(id, name, len) == 0)
			*out_vm = &cfg->vms[i];
	}
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

static void check_table(struct input *in)
{
	struct route_table *t;

	alloc_failed = false;
	t = route_table_new(&in->cfg);
	alloc_countdown = -1;
	if (alloc_failed) {
		check(t == NULL); /* and nothing leaked */
		return;
	}
	check(t != NULL);
	for (size_t i = 0; i < in->q_len; i++) {
		const struct query *q = &in->q[i];
		const struct config_vm *vm = NULL;
		struct route_match got;
		uint16_t want_port = 0;
		enum route_verdict g, w;
		uint8_t *host = __real_malloc(q->host.len ? q->host.len : 1);

		check(host != NULL);
		memcpy(host, q->host.p, q->host.len);
		g = route_lookup(t, &got, host, q->host.len, q->port);
		w = ref_route(&in->cfg, &vm, &want_port, q->host.p,
			      q->host.len, q->port);
		free(host);
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
		check(strcasecmp(got.vm_id, vm->id) == 0);
		for (const char *c = got.vm_id; *c; c++)
			check(!(*c >= 'A' && *c <= 'Z'));
	}
	route_table_free(t);
	route_table_free(NULL);
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
