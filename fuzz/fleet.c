/* fuzz/fleet.c: libFuzzer target for ctl/fleet_parse.c, the parsers of
 * what etcd sends a fleet appliance: VM values and keys, and the gRPC
 * gateway's JSON (range pages, watch stream lines, txn, lease,
 * authenticate and error answers).
 *
 * Input: one selector byte, then the bytes to parse. Selector % 10:
 *   0  a VM value (fleet_vm_parse), and the same bytes as a key under
 *      "/p/vms/" (fleet_vm_key)
 *   1  a /v3/kv/range answer      2  a /v3/watch line
 *   3  a txn answer   4  a lease answer   5  an authenticate answer
 *   6  an error answer
 *   7  a VM value inside a watch event: the bytes are base64-encoded into
 *      a well-formed watch line first, so the value parser is reached
 *      through the gateway parser
 *   8  a session-ticket key value (fleet_parse_stek)
 *   9  a watch stream cut into lines (fleet_lines_feed): the next byte
 *      seeds the chunk sizes (1-64 bytes), the rest is the stream
 *
 * Invariants checked (abort on violation; LeakSanitizer checks the rest):
 *   - a VM value accepted has an IPv6 address that survives inet_ntop and
 *     route_parse_vm_addr unchanged, and ports (when it has some) that
 *     are non-empty, sorted, disjoint, non-adjacent ranges in 1..65535
 *     (route_vm_ports_allow's binary search relies on that); one refused
 *     has no ports; one over FLEET_VALUE_MAX is TOO_BIG;
 *   - a VM key accepted gives a lowercase DNS label that
 *     route_vm_id_norm accepts as itself;
 *   - a range accepted has revision > 0 and every key 1..FLEET_KEY_MAX
 *     bytes (exactly FLEET_KEY_MAX when truncated), every value at most
 *     FLEET_VALUE_MAX + 1, both NUL-terminated; the next page's start
 *     after a key (fleet_next_key) sorts after it, and after a truncated
 *     key after every key that begins with its bytes;
 *   - a watch line accepted is of one kind consistent with its fields
 *     (EVENTS has events, COMPACTED a compact_revision, reason
 *     NUL-terminated);
 *   - a token accepted is NUL-terminated with no CR or LF;
 *   - a ticket key accepted has 0 < not_before < not_after, and one
 *     refused is left all zero (no half-copied key material);
 *   - selector 7: the event parsed from a line we built carries exactly
 *     the bytes we put in it, and the value parses as it does directly;
 *   - selector 9: the lines handed on are the stream's non-empty lines,
 *     in order, and what is kept at the end is what follows the last
 *     '\n' (only a prefix of that when a kept part grew past the bound).
 *
 * Seed corpus: fuzz/corpus/fleet/ (made by fuzz/mkseeds.py).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/fleet_parse.h"
#include "route/route.h"
#include "tls/ticket.h"

#define check(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "fleet: %s:%d: %s\n", __FILE__,    \
				__LINE__, #cond);                          \
			abort();                                           \
		}                                                          \
	} while (0)

static void check_next_key(const struct fleet_kv *kv)
{
	char next[FLEET_KEY_MAX + 1];
	size_t len, n;
	int c;

	if (!fleet_next_key(next, &len, kv)) {
		check(kv->key_truncated);
		for (n = 0; n < kv->key_len; n++)
			check(kv->key[n] == 0xff);
		return;
	}
	check(len >= 1 && len <= FLEET_KEY_MAX + 1);
	n = len < kv->key_len ? len : kv->key_len;
	c = memcmp(next, kv->key, n);
	/* After the key: greater, or the key and more (a NUL). */
	check(c > 0 || (c == 0 && len > kv->key_len && !kv->key_truncated));
	/* After every key with the truncated key's bytes: differs within
	 * them, upwards. */
	if (kv->key_truncated)
		check(c > 0 && len <= kv->key_len);
}

static void check_kvs(const struct fleet_kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		check(kvs[i].key_len >= 1 && kvs[i].key_len <= FLEET_KEY_MAX);
		check(!kvs[i].key_truncated ||
		      kvs[i].key_len == FLEET_KEY_MAX);
		check(kvs[i].key[kvs[i].key_len] == '\0');
		check_next_key(&kvs[i]);
		check(kvs[i].value_len <= FLEET_VALUE_MAX + 1);
		check(kvs[i].value[kvs[i].value_len] == '\0');
		check(kvs[i].mod_revision >= 0);
	}
}

static enum fleet_vm_status vm_value(const uint8_t *p, size_t len)
{
	struct config_vm_ports *ports = (void *)1;
	enum fleet_vm_status st;
	struct in6_addr a, b;
	char s[INET6_ADDRSTRLEN];

	st = fleet_vm_parse(&a, &ports, p, len);
	if (len > FLEET_VALUE_MAX)
		check(st == FLEET_VM_TOO_BIG);
	if (st == FLEET_VM_OK) {
		check(inet_ntop(AF_INET6, &a, s, sizeof(s)) != NULL);
		check(route_parse_vm_addr(&b, s, strlen(s)) == ROUTE_ADDR_OK);
		check(!memcmp(&a, &b, sizeof(a)));
	} else {
		check(!ports);
	}
	if (ports) {
		check(ports->len > 0);
		for (size_t i = 0; i < ports->len; i++) {
			check(ports->r[i].from >= 1);
			check(ports->r[i].from <= ports->r[i].to);
			check(i == 0 ||
			      ports->r[i].from > ports->r[i - 1].to + 1);
		}
	}
	free(ports);
	check(strcmp(fleet_vm_status_str(st), "?"));
	return st;
}

static void vm_key(const uint8_t *p, size_t len)
{
	char id[ROUTE_VM_ID_MAX + 1], again[ROUTE_VM_ID_MAX + 1];
	uint8_t key[FLEET_KEY_MAX + 8];
	size_t n;

	if (len > FLEET_KEY_MAX)
		return;
	memcpy(key, "/p/vms/", 7);
	memcpy(key + 7, p, len);
	if (!fleet_vm_key(id, key, len + 7, "/p/vms/"))
		return;
	check(route_vm_id_norm(again, &n, id, strlen(id)));
	check(!strcmp(again, id));
}

/* Builds {"result":{"header":{"revision":"9"},"events":[{"kv":{...}}]}}
 * around |p| as a value and checks it comes back as it went in. */
static void through_watch(const uint8_t *p, size_t len)
{
	struct fleet_watch_msg m;
	char *b64, *line;
	size_t cap = len * 2 + 8;
	enum fleet_vm_status direct;

	if (len > FLEET_VALUE_MAX)
		return;
	b64 = malloc(cap);
	line = malloc(cap + 200);
	check(b64 && line);
	check(fleet_b64(b64, cap, p, len));
	snprintf(line, cap + 200, "{\"result\":{\"header\":{\"revision\":"
		 "\"9\"},\"events\":[{\"kv\":{\"key\":\"L3Avdm1zL3Yx\","
		 "\"mod_revision\":\"9\",\"value\":\"%s\"}}]}}", b64);
	check(fleet_parse_watch(&m, line, strlen(line)));
	check(m.kind == FLEET_WATCH_EVENTS && m.events_len == 1);
	check(m.events[0].value_len == len);
	check(!memcmp(m.events[0].value, p, len));
	check(m.events[0].mod_revision == 9 && !m.events[0].deleted);
	direct = vm_value(p, len);
	check(vm_value(m.events[0].value, m.events[0].value_len) == direct);
	fleet_watch_msg_free(&m);
	free(b64);
	free(line);
}

struct lines_out {
	char *p;
	size_t len;
};

static bool lines_collect(void *arg, const char *line, size_t len)
{
	struct lines_out *o = arg;

	check(len > 0 && !memchr(line, '\n', len));
	memcpy(o->p + o->len, line, len);
	o->len += len;
	o->p[o->len++] = '\n';
	return true;
}

/* The expected result, made the plain way: the stream's non-empty lines
 * each with its '\n', and the tail after the last '\n'. */
static void lines_through(const uint8_t *data, size_t len)
{
	const char *s = (const char *)data + 1, *tail;
	enum fleet_lines_status st = FLEET_LINES_OK;
	struct fleet_lines l = { 0 };
	struct lines_out got, want;
	unsigned seed = len ? data[0] : 0;
	size_t off = 0, n, i, start = 0;

	if (!len--)
		return;
	got = (struct lines_out){ malloc(len + 1), 0 };
	want = (struct lines_out){ malloc(len + 1), 0 };
	check(got.p && want.p);
	for (i = 0; i < len; i++) {
		if (s[i] != '\n')
			continue;
		if (i > start)
			lines_collect(&want, s + start, i - start);
		start = i + 1;
	}
	tail = s + start;
	while (off < len && st == FLEET_LINES_OK) {
		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 16) % 64;
		if (n > len - off)
			n = len - off;
		st = fleet_lines_feed(&l, s + off, n, 256, lines_collect, &got);
		off += n;
	}
	check(st == FLEET_LINES_OK || st == FLEET_LINES_TOO_LONG);
	check(got.len <= want.len && !memcmp(got.p, want.p, got.len));
	if (st == FLEET_LINES_OK) {
		check(got.len == want.len);
		check(l.len == (size_t)(s + len - tail));
		check(!l.len || !memcmp(l.buf, tail, l.len));
	}
	fleet_lines_free(&l);
	free(got.p);
	free(want.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + 1;
	size_t len = size ? size - 1 : 0;
	char buf[512];

	if (!size)
		return 0;
	switch (data[0] % 10) {
	case 0:
		vm_value(data + 1, len);
		vm_key(data + 1, len);
		break;
	case 1: {
		struct fleet_range r;

		if (fleet_parse_range(&r, s, len)) {
			check(r.revision > 0);
			check_kvs(r.kvs, r.kvs_len);
			check(!r.kvs_len == !r.kvs);
			fleet_range_free(&r);
		}
		break;
	}
	case 2: {
		struct fleet_watch_msg m;

		if (fleet_parse_watch(&m, s, len)) {
			check(memchr(m.reason, '\0', sizeof(m.reason)));
			check_kvs(m.events, m.events_len);
			check(m.kind != FLEET_WATCH_EVENTS || m.events_len);
			check(m.kind != FLEET_WATCH_COMPACTED ||
			      m.compact_revision > 0);
			check(m.revision >= 0);
			fleet_watch_msg_free(&m);
		}
		break;
	}
	case 3: {
		bool ok;
		int64_t rev;

		if (fleet_parse_txn(&ok, &rev, s, len))
			check(rev > 0);
		break;
	}
	case 4: {
		int64_t id, ttl;

		if (fleet_parse_lease(&id, &ttl, s, len))
			check(id != 0);
		break;
	}
	case 5:
		if (fleet_parse_token(buf, sizeof(buf), s, len)) {
			check(memchr(buf, '\0', sizeof(buf)));
			check(!strpbrk(buf, "\r\n") && buf[0]);
		}
		break;
	case 6:
		if (fleet_parse_error(buf, sizeof(buf), s, len)) {
			check(memchr(buf, '\0', sizeof(buf)));
			for (const char *p = buf; *p; p++)
				check((uint8_t)*p >= 0x20 && *p != 0x7f &&
				      *p != '"' && *p != '\\');
		}
		break;
	case 7:
		through_watch(data + 1, len);
		break;
	case 8: {
		struct tls_ticket_key k, zero;

		memset(&zero, 0, sizeof(zero));
		if (fleet_parse_stek(&k, data + 1, len)) {
			bool clamped;

			check(k.not_before > 0 && k.not_after > k.not_before);
			/* The bounds of ctl/fleet.c's defaults (1 h, 18 h)
			 * at a time in 2026: what is kept ends by them. */
			if (fleet_stek_bound(&k, 1796000000, 3600, 64800,
					     &clamped))
				check(k.not_after > k.not_before &&
				      k.not_after - k.not_before <= 68400 &&
				      k.not_before <= 1796000000 + 7200);
		} else
			check(!memcmp(&k, &zero, sizeof(k)));
		break;
	}
	case 9:
		lines_through(data + 1, len);
		break;
	}
	return 0;
}
