/* tests/unit/test_fleet.c: ctl/fleet_parse.c, the parsers of what etcd
 * sends a fleet appliance (VM values and keys, the gRPC gateway's range,
 * watch, txn, lease, authenticate and error answers, the watch stream's
 * framing into lines), and the fleet:
 * section of appliance.yaml (ctl/config/fleet.c). */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "ctl/config.h"
#include "ctl/fleet_parse.h"
#include "route/route.h"
#include "tls/ticket.h"

static enum fleet_vm_status vm(const char *s, struct in6_addr *a)
{
	struct config_vm_ports *ports;
	enum fleet_vm_status st;
	struct in6_addr dummy;

	st = fleet_vm_parse(a ? a : &dummy, &ports, (const uint8_t *)s,
			    strlen(s));
	free(ports);
	return st;
}

static void test_vm_values(void **state)
{
	static const struct {
		const char *in;
		enum fleet_vm_status want;
	} cases[] = {
		{ "{\"address\": \"fd00::10\", \"ports\": [3000, \"8000-8100\"]}",
		  FLEET_VM_OK },
		{ "{\"address\":\"FD00::10\"}", FLEET_VM_OK },
		{ "{\"address\":\"fd00::10\",\"ports\":null}", FLEET_VM_OK },
		{ "{\"address\":\"fd00::10\",\"future\":{\"x\":1}}",
		  FLEET_VM_OK },
		/* As vms[].ports: an empty list would be no port at all. */
		{ "{\"address\":\"fd00::10\",\"ports\":[]}",
		  FLEET_VM_BAD_PORTS },
		{ "{\"address\":\"fd00::10\",\"ports\":[\"22\"]}", FLEET_VM_OK },
		{ "", FLEET_VM_BAD_JSON },
		{ "{not json", FLEET_VM_BAD_JSON },
		{ "[\"fd00::1\"]", FLEET_VM_BAD_JSON },
		{ "\"fd00::1\"", FLEET_VM_BAD_JSON },
		{ "{\"address\":\"fd00::1\",\"address\":\"fd00::2\"}",
		  FLEET_VM_BAD_JSON },
		{ "{\"address\":\"fd00::1\"} trailing", FLEET_VM_BAD_JSON },
		{ "{}", FLEET_VM_BAD_ADDRESS },
		{ "{\"address\":7}", FLEET_VM_BAD_ADDRESS },
		{ "{\"address\":\"10.0.0.1\"}", FLEET_VM_BAD_ADDRESS },
		{ "{\"address\":\"::ffff:10.0.0.1\"}", FLEET_VM_BAD_ADDRESS },
		/* jansson refuses \u0000 unless asked: a NUL never gets in. */
		{ "{\"address\":\"fd00::1\\u0000\"}", FLEET_VM_BAD_JSON },
		{ "{\"address\":\"fd00::1\",\"ports\":[0]}", FLEET_VM_BAD_PORTS },
		{ "{\"address\":\"fd00::1\",\"ports\":[65536]}",
		  FLEET_VM_BAD_PORTS },
		{ "{\"address\":\"fd00::1\",\"ports\":[\"9-1\"]}",
		  FLEET_VM_BAD_PORTS },
		{ "{\"address\":\"fd00::1\",\"ports\":[\"01\"]}",
		  FLEET_VM_BAD_PORTS },
		{ "{\"address\":\"fd00::1\",\"ports\":[\"1-\"]}",
		  FLEET_VM_BAD_PORTS },
		{ "{\"address\":\"fd00::1\",\"ports\":[1.5]}",
		  FLEET_VM_BAD_PORTS },
		{ "{\"address\":\"fd00::1\",\"ports\":3000}",
		  FLEET_VM_BAD_PORTS },
	};
	struct config_vm_ports *ports;
	struct in6_addr a, want;
	char big[FLEET_VALUE_MAX + 64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (vm(cases[i].in, NULL) != cases[i].want)
			fail_msg("%s: got %s, want %s", cases[i].in,
				 fleet_vm_status_str(vm(cases[i].in, NULL)),
				 fleet_vm_status_str(cases[i].want));
	assert_int_equal(vm("{\"address\":\"FD00::10\"}", &a), FLEET_VM_OK);
	inet_pton(AF_INET6, "fd00::10", &want);
	assert_memory_equal(&a, &want, sizeof(a));

	/* The size limit counts the raw value, whatever is in it. */
	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"address\":\"fd00::1\"}", 21);
	assert_int_equal(fleet_vm_parse(&a, &ports, (uint8_t *)big,
					FLEET_VALUE_MAX),
			 FLEET_VM_OK);
	assert_null(ports);
	assert_int_equal(fleet_vm_parse(&a, &ports, (uint8_t *)big,
					FLEET_VALUE_MAX + 1),
			 FLEET_VM_TOO_BIG);
	assert_null(ports);
}

/* A value's ports come out as the ranges route/table.c keeps beside the
 * VM: merged, sorted, whatever order and overlap the writer used. */
static void test_vm_ports(void **state)
{
	static const char val[] =
		"{\"address\":\"fd00::10\",\"ports\":[\"8000-8100\",3000,"
		"\"8050-8200\",3001,\"22\",8201]}";
	struct config_vm_ports *p;
	struct in6_addr a;
	size_t bad;
	json_t *j;

	(void)state;
	assert_int_equal(fleet_vm_parse(&a, &p, (const uint8_t *)val,
					strlen(val)),
			 FLEET_VM_OK);
	assert_non_null(p);
	assert_int_equal(p->len, 3);
	assert_int_equal(p->r[0].from, 22);
	assert_int_equal(p->r[0].to, 22);
	assert_int_equal(p->r[1].from, 3000);
	assert_int_equal(p->r[1].to, 3001);
	assert_int_equal(p->r[2].from, 8000);
	assert_int_equal(p->r[2].to, 8201);
	assert_true(route_vm_ports_allow(p, 8201));
	assert_false(route_vm_ports_allow(p, 8202));
	assert_false(route_vm_ports_allow(p, 443));
	free(p);

	/* No ports, or null: every port (NULL). */
	assert_int_equal(vm("{\"address\":\"fd00::10\",\"ports\":null}",
			    NULL), FLEET_VM_OK);
	assert_int_equal(fleet_vm_parse(&a, &p,
					(const uint8_t *)"{\"address\":\"::1\"}",
					17),
			 FLEET_VM_OK);
	assert_null(p);
	/* Refused: no ports handed back. */
	p = (void *)1;
	assert_int_equal(fleet_vm_parse(&a, &p,
					(const uint8_t *)"{\"address\":\"::1\","
					"\"ports\":[1,0]}", 31),
			 FLEET_VM_BAD_PORTS);
	assert_null(p);

	/* The one parser the admin API and the state file use too: the
	 * index of the first bad entry, for their error message. */
	j = json_loads("[22, \"80\", \"90-80\", 7]", 0, NULL);
	assert_false(fleet_parse_ports(&p, &bad, j));
	assert_null(p);
	assert_int_equal(bad, 2);
	json_decref(j);
	j = json_loads("[65535, \"1-2\"]", 0, NULL);
	assert_true(fleet_parse_ports(&p, &bad, j));
	assert_int_equal(p->len, 2);
	assert_int_equal(p->r[0].from, 1);
	assert_int_equal(p->r[1].to, 65535);
	free(p);
	json_decref(j);
	/* A NUL inside a string (allowed by JSON_ALLOW_NUL) is no port. */
	j = json_loadb("[\"80\\u0000x\"]", 13, JSON_ALLOW_NUL, NULL);
	assert_non_null(j);
	assert_false(fleet_parse_ports(&p, &bad, j));
	json_decref(j);
}

static bool key(char *id, const char *k)
{
	return fleet_vm_key(id, (const uint8_t *)k, strlen(k), "/p/vms/");
}

static void test_vm_keys(void **state)
{
	char id[ROUTE_VM_ID_MAX + 1];

	(void)state;
	assert_true(key(id, "/p/vms/web-1"));
	assert_string_equal(id, "web-1");
	/* One VM, one key: etcd's keys are case-sensitive, names not. */
	assert_false(key(id, "/p/vms/Web-1"));
	assert_true(key(id, "/p/vms/45a68069-defc-4233-9865-6298d87053af"));
	assert_false(key(id, "/p/vms/"));
	assert_false(key(id, "/p/vms/a/b"));
	assert_false(key(id, "/p/vms/a.b"));
	assert_false(key(id, "/p/vms/bad_id!"));
	assert_false(key(id, "/p/vms/-a"));
	assert_false(key(id, "/q/vms/a"));
	assert_false(key(id, "/p/vm"));
	assert_false(fleet_vm_key(id, (const uint8_t *)"/p/vms/a\0b", 10,
				  "/p/vms/"));
}

/* What GET /fleet lists from etcd's answer: only keys under the
 * directory asked for, whatever the answer holds (a short key once made
 * it read before its start). */
static void test_key_under(void **state)
{
	static const char dir[] = "/p/appliances/";
	const uint8_t *rest;
	size_t n = 99;

	(void)state;
	rest = fleet_key_under((const uint8_t *)"/p/appliances/a-1", 17, dir,
			       &n);
	assert_non_null(rest);
	assert_int_equal(n, 3);
	assert_memory_equal(rest, "a-1", 3);
	assert_null(fleet_key_under((const uint8_t *)"/p/", 3, dir, &n));
	assert_null(fleet_key_under((const uint8_t *)"", 0, dir, &n));
	assert_null(fleet_key_under((const uint8_t *)dir, strlen(dir), dir,
				    &n));
	assert_null(fleet_key_under((const uint8_t *)"/q/appliances/a", 15,
				    dir, &n));
	assert_int_equal(n, 3); /* untouched when NULL */
}

#define HDR "\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\"," \
	    "\"revision\":\"42\",\"raft_term\":\"3\"}"
/* base64 of /p/vms/vm1 and {"address":"fd00::1"} */
#define K1 "L3Avdm1zL3ZtMQ=="
#define V1 "eyJhZGRyZXNzIjoiZmQwMDo6MSJ9"

static void test_range(void **state)
{
	static const char ok[] =
		"{" HDR ",\"kvs\":[{\"key\":\"" K1 "\",\"create_revision\":"
		"\"5\",\"mod_revision\":\"40\",\"version\":\"1\",\"value\":\""
		V1 "\"},{\"key\":\"" K1 "\",\"mod_revision\":41}],"
		"\"more\":true,\"count\":\"3\"}";
	static const char *const bad[] = {
		"", "[]", "{}", "{\"header\":{}}",
		"{" HDR ",\"kvs\":{}}",
		"{" HDR ",\"kvs\":[{\"key\":\"!!\"}]}",
		"{" HDR ",\"kvs\":[{\"value\":\"" V1 "\"}]}",
		"{" HDR ",\"kvs\":[{\"key\":\"" K1 "\",\"mod_revision\":\"x\"}]}",
		"{" HDR ",\"kvs\":[{\"key\":\"" K1 "\",\"mod_revision\":\"-1\"}]}",
		"{" HDR ",\"more\":\"yes\"}",
		"{\"header\":{\"revision\":\"99999999999999999999999\"}}",
		"{\"error\":\"etcdserver: mvcc: required revision has been "
		"compacted\",\"code\":11}",
	};
	struct fleet_range r;

	(void)state;
	assert_true(fleet_parse_range(&r, ok, strlen(ok)));
	assert_int_equal(r.revision, 42);
	assert_true(r.more);
	assert_int_equal(r.kvs_len, 2);
	assert_int_equal(r.kvs[0].key_len, 10);
	assert_memory_equal(r.kvs[0].key, "/p/vms/vm1", 10);
	assert_string_equal((char *)r.kvs[0].value,
			    "{\"address\":\"fd00::1\"}");
	assert_int_equal(r.kvs[0].mod_revision, 40);
	assert_int_equal(r.kvs[1].value_len, 0);
	assert_int_equal(r.kvs[1].mod_revision, 41);
	fleet_range_free(&r);

	assert_true(fleet_parse_range(&r, "{" HDR "}", strlen("{" HDR "}")));
	assert_int_equal(r.kvs_len, 0);
	assert_false(r.more);
	fleet_range_free(&r);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (fleet_parse_range(&r, bad[i], strlen(bad[i])))
			fail_msg("accepted: %s", bad[i]);
}

/* A key of |n| bytes ("/p/vms/" and 'k's) in base64, in |out|. */
static void long_key_b64(char *out, size_t cap, size_t n)
{
	char *k = malloc(n);

	assert_non_null(k);
	memcpy(k, "/p/vms/", 7);
	memset(k + 7, 'k', n - 7);
	assert_true(fleet_b64(out, cap, k, n));
	free(k);
}

/* Keys longer than FLEET_KEY_MAX: kept truncated and marked, and the
 * page or watch line they came in is still read (it used to be refused
 * whole, which stopped the fleet at that revision for good). */
static void test_long_keys(void **state)
{
	static const size_t lens[] = { FLEET_KEY_MAX, FLEET_KEY_MAX + 1,
				       FLEET_KEY_MAX + 3, FLEET_KEY_MAX + 4,
				       600, 100000 };
	size_t i, cap = 140000;
	char *b64 = malloc(cap), *msg = malloc(cap + 512);
	struct fleet_watch_msg m;
	struct fleet_range r;

	(void)state;
	assert_non_null(b64);
	assert_non_null(msg);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		bool cut = lens[i] > FLEET_KEY_MAX;

		long_key_b64(b64, cap, lens[i]);
		snprintf(msg, cap + 512, "{" HDR ",\"kvs\":[{\"key\":\"%s\","
			 "\"mod_revision\":\"40\",\"value\":\"" V1 "\"},"
			 "{\"key\":\"" K1 "\",\"mod_revision\":41}],"
			 "\"more\":true}", b64);
		assert_true(fleet_parse_range(&r, msg, strlen(msg)));
		assert_int_equal(r.kvs_len, 2);
		assert_int_equal(r.kvs[0].key_truncated, cut);
		assert_int_equal(r.kvs[0].key_len,
				 cut ? FLEET_KEY_MAX : lens[i]);
		assert_memory_equal(r.kvs[0].key, "/p/vms/kkk", 10);
		assert_int_equal(r.kvs[0].key[r.kvs[0].key_len], '\0');
		assert_false(r.kvs[1].key_truncated);
		fleet_range_free(&r);

		snprintf(msg, cap + 512, "{\"result\":{" HDR ",\"events\":["
			 "{\"type\":\"DELETE\",\"kv\":{\"key\":\"%s\","
			 "\"mod_revision\":\"43\"}},{\"kv\":{\"key\":\""
			 K1 "\",\"mod_revision\":\"43\",\"value\":\"" V1
			 "\"}}]}}", b64);
		assert_true(fleet_parse_watch(&m, msg, strlen(msg)));
		assert_int_equal(m.events_len, 2);
		assert_int_equal(m.events[0].key_truncated, cut);
		assert_true(m.events[0].deleted);
		assert_false(m.events[1].key_truncated);
		fleet_watch_msg_free(&m);
	}
	free(b64);
	free(msg);
}

/* Where a full read's next page starts. */
static void test_next_key(void **state)
{
	uint8_t k[FLEET_KEY_MAX + 1];
	struct fleet_kv kv = { .key = k, .key_len = 10 };
	char next[FLEET_KEY_MAX + 1];
	size_t len;

	(void)state;
	memcpy(k, "/p/vms/vm1", 10);
	assert_true(fleet_next_key(next, &len, &kv));
	assert_int_equal(len, 11);
	assert_memory_equal(next, "/p/vms/vm1\0", 11);
	/* A full-length key that is not cut: the same. */
	memset(k, 'a', FLEET_KEY_MAX);
	kv.key_len = FLEET_KEY_MAX;
	assert_true(fleet_next_key(next, &len, &kv));
	assert_int_equal(len, FLEET_KEY_MAX + 1);
	/* Cut: past every key that begins the same. */
	kv.key_truncated = true;
	assert_true(fleet_next_key(next, &len, &kv));
	assert_int_equal(len, FLEET_KEY_MAX);
	assert_int_equal(next[FLEET_KEY_MAX - 1], 'b');
	assert_memory_equal(next, k, FLEET_KEY_MAX - 1);
	k[FLEET_KEY_MAX - 1] = (uint8_t)0xff;
	k[FLEET_KEY_MAX - 2] = (uint8_t)0xff;
	assert_true(fleet_next_key(next, &len, &kv));
	assert_int_equal(len, FLEET_KEY_MAX - 2);
	assert_int_equal(next[FLEET_KEY_MAX - 3], 'b');
	memset(k, 0xff, FLEET_KEY_MAX);
	assert_false(fleet_next_key(next, &len, &kv));
}

static struct fleet_watch_msg watch_ok(const char *line)
{
	struct fleet_watch_msg m;

	if (!fleet_parse_watch(&m, line, strlen(line)))
		fail_msg("refused: %s", line);
	return m;
}

static void test_watch(void **state)
{
	struct fleet_watch_msg m;
	char big[8192];
	int n;

	(void)state;
	m = watch_ok("{\"result\":{" HDR ",\"created\":true}}");
	assert_int_equal(m.kind, FLEET_WATCH_CREATED);
	assert_int_equal(m.revision, 42);
	fleet_watch_msg_free(&m);

	m = watch_ok("{\"result\":{" HDR "}}");
	assert_int_equal(m.kind, FLEET_WATCH_PROGRESS);
	fleet_watch_msg_free(&m);

	m = watch_ok("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\""
		     K1 "\",\"mod_revision\":\"41\",\"value\":\"" V1 "\"}},"
		     "{\"type\":\"DELETE\",\"kv\":{\"key\":\"" K1 "\","
		     "\"mod_revision\":\"42\"}}]}}");
	assert_int_equal(m.kind, FLEET_WATCH_EVENTS);
	assert_int_equal(m.events_len, 2);
	assert_false(m.events[0].deleted);
	assert_int_equal(m.events[0].mod_revision, 41);
	assert_true(m.events[1].deleted);
	assert_int_equal(m.events[1].mod_revision, 42);
	assert_false(m.fragment);
	fleet_watch_msg_free(&m);

	/* A part of a split response: more of it follows. */
	m = watch_ok("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\""
		     K1 "\",\"mod_revision\":\"41\",\"value\":\"" V1 "\"}}],"
		     "\"fragment\":true}}");
	assert_int_equal(m.kind, FLEET_WATCH_EVENTS);
	assert_true(m.fragment);
	fleet_watch_msg_free(&m);
	assert_false(fleet_parse_watch(&m, "{\"result\":{" HDR ",\"fragment\":"
				       "\"yes\"}}", strlen("{\"result\":{" HDR
				       ",\"fragment\":\"yes\"}}")));

	m = watch_ok("{\"result\":{" HDR ",\"canceled\":true,"
		     "\"compact_revision\":\"30\"}}");
	assert_int_equal(m.kind, FLEET_WATCH_COMPACTED);
	assert_int_equal(m.compact_revision, 30);
	fleet_watch_msg_free(&m);

	m = watch_ok("{\"result\":{" HDR ",\"canceled\":true,"
		     "\"cancel_reason\":\"no leader\"}}");
	assert_int_equal(m.kind, FLEET_WATCH_CANCELED);
	assert_string_equal(m.reason, "no leader");
	fleet_watch_msg_free(&m);

	m = watch_ok("{\"error\":{\"grpc_code\":14,\"http_code\":503,"
		     "\"message\":\"etcdserver: no leader\"}}");
	assert_int_equal(m.kind, FLEET_WATCH_ERROR);
	assert_string_equal(m.reason, "etcdserver: no leader");
	fleet_watch_msg_free(&m);

	/* A value too big to decode is kept as "too big", not refused. */
	n = snprintf(big, sizeof(big), "{\"result\":{" HDR ",\"events\":[{"
		     "\"kv\":{\"key\":\"" K1 "\",\"mod_revision\":\"41\","
		     "\"value\":\"");
	memset(big + n, 'A', 4000);
	strcpy(big + n + 4000, "\"}}]}}");
	m = watch_ok(big);
	assert_int_equal(m.events[0].value_len, FLEET_VALUE_MAX + 1);
	fleet_watch_msg_free(&m);

	assert_false(fleet_parse_watch(&m, "", 0));
	assert_false(fleet_parse_watch(&m, "{\"result\":[]}", 13));
	assert_false(fleet_parse_watch(&m, "{\"result\":{\"events\":[{\"type\":"
				       "\"MOVE\",\"kv\":{\"key\":\"" K1 "\"}}]}}",
				       strlen("{\"result\":{\"events\":[{\"type\":"
					      "\"MOVE\",\"kv\":{\"key\":\"" K1
					      "\"}}]}}")));
	/* Half a line, as a chunk boundary would cut it. */
	assert_false(fleet_parse_watch(&m, "{\"result\":{" HDR,
				       strlen("{\"result\":{" HDR)));
}

/* What fleet_lines_feed hands on: the lines, each followed by '|'. */
struct got_lines {
	char s[256];
	size_t len, calls, stop_after;
};

static bool got_line(void *arg, const char *line, size_t len)
{
	struct got_lines *g = arg;

	assert_true(len > 0 && !memchr(line, '\n', len));
	assert_true(g->len + len + 1 < sizeof(g->s));
	memcpy(g->s + g->len, line, len);
	g->len += len;
	g->s[g->len++] = '|';
	g->s[g->len] = '\0';
	return ++g->calls != g->stop_after;
}

/* |in| fed in chunks of |step| bytes. */
static enum fleet_lines_status feed_steps(struct fleet_lines *l,
					  struct got_lines *g, const char *in,
					  size_t step, size_t max)
{
	size_t len = strlen(in), off, n;
	enum fleet_lines_status st = FLEET_LINES_OK;

	for (off = 0; off < len && st == FLEET_LINES_OK; off += n) {
		n = len - off < step ? len - off : step;
		st = fleet_lines_feed(l, in + off, n, max, got_line, g);
	}
	return st;
}

static void test_lines(void **state)
{
	static const char in[] = "{\"a\":1}\n\n{\"b\":22}\n{\"c\":333}\n{\"d\"";
	struct fleet_lines l = { 0 };
	struct got_lines g;
	size_t step;

	(void)state;
	/* Every chunking gives the same lines; the tail is kept. */
	for (step = 1; step <= sizeof(in); step++) {
		g = (struct got_lines){ .stop_after = 0 };
		assert_int_equal(feed_steps(&l, &g, in, step, 1024),
				 FLEET_LINES_OK);
		assert_string_equal(g.s, "{\"a\":1}|{\"b\":22}|{\"c\":333}|");
		assert_int_equal(l.len, 4);
		assert_memory_equal(l.buf, "{\"d\"", 4);
		/* The kept part ends with the next chunk's first '\n'. */
		assert_int_equal(fleet_lines_feed(&l, ":4}\nx", 5, 1024,
						  got_line, &g), FLEET_LINES_OK);
		assert_string_equal(g.s, "{\"a\":1}|{\"b\":22}|{\"c\":333}|"
				    "{\"d\":4}|");
		assert_int_equal(l.len, 1);
		fleet_lines_free(&l);
		assert_null(l.buf);
	}

	/* A kept part over max, whether it grows byte by byte or comes
	 * whole; a line of exactly max is fine. */
	g = (struct got_lines){ .stop_after = 0 };
	assert_int_equal(feed_steps(&l, &g, "0123456789", 1, 10),
			 FLEET_LINES_OK);
	assert_int_equal(fleet_lines_feed(&l, "\n", 1, 10, got_line, &g),
			 FLEET_LINES_OK);
	assert_string_equal(g.s, "0123456789|");
	assert_int_equal(feed_steps(&l, &g, "0123456789A", 1, 10),
			 FLEET_LINES_TOO_LONG);
	fleet_lines_free(&l);
	assert_int_equal(fleet_lines_feed(&l, "0123456789A", 11, 10, got_line,
					  &g), FLEET_LINES_TOO_LONG);
	fleet_lines_free(&l);
	/* A whole line in one chunk is not kept, so not bounded here: the
	 * chunk is curl's, at most CURL_MAX_WRITE_SIZE. */
	assert_int_equal(fleet_lines_feed(&l, "0123456789AB\n", 13, 10,
					  got_line, &g), FLEET_LINES_OK);
	assert_null(l.buf);

	/* on_line saying stop stops at once. */
	g = (struct got_lines){ .stop_after = 2 };
	assert_int_equal(feed_steps(&l, &g, "a\nb\nc\n", 64, 10),
			 FLEET_LINES_STOP);
	assert_string_equal(g.s, "a|b|");
	fleet_lines_free(&l);
}

static void test_small_answers(void **state)
{
	char tok[64];
	bool ok;
	int64_t rev, id, ttl;

	(void)state;
	assert_true(fleet_parse_txn(&ok, &rev, "{" HDR ",\"succeeded\":true}",
				    strlen("{" HDR ",\"succeeded\":true}")));
	assert_true(ok);
	assert_int_equal(rev, 42);
	assert_true(fleet_parse_txn(&ok, &rev, "{" HDR "}", strlen("{" HDR "}")));
	assert_false(ok);
	assert_false(fleet_parse_txn(&ok, &rev, "{}", 2));

	assert_true(fleet_parse_lease(&id, &ttl, "{" HDR ",\"ID\":\"7\","
				      "\"TTL\":\"10\"}",
				      strlen("{" HDR ",\"ID\":\"7\","
					     "\"TTL\":\"10\"}")));
	assert_int_equal(id, 7);
	assert_int_equal(ttl, 10);
	/* A keep-alive of an expired lease: TTL absent. */
	assert_true(fleet_parse_lease(&id, &ttl, "{\"result\":{" HDR
				      ",\"ID\":\"7\"}}",
				      strlen("{\"result\":{" HDR
					     ",\"ID\":\"7\"}}")));
	assert_int_equal(ttl, 0);
	assert_false(fleet_parse_lease(&id, &ttl, "{" HDR "}",
				       strlen("{" HDR "}")));

	assert_true(fleet_parse_token(tok, sizeof(tok), "{\"token\":\"ab.1\"}",
				      16));
	assert_string_equal(tok, "ab.1");
	assert_false(fleet_parse_token(tok, sizeof(tok),
				       "{\"token\":\"a\\r\\nX-Evil: 1\"}",
				       strlen("{\"token\":\"a\\r\\nX-Evil: 1\"}")));
	assert_false(fleet_parse_token(tok, 4, "{\"token\":\"abcd\"}", 16));

	assert_true(fleet_parse_error(tok, sizeof(tok),
				      "{\"error\":\"x\",\"code\":9,"
				      "\"message\":\"etcdserver: no leader\"}",
				      strlen("{\"error\":\"x\",\"code\":9,"
					     "\"message\":\"etcdserver: no "
					     "leader\"}")));
	assert_string_equal(tok, "etcdserver: no leader");
	assert_false(fleet_parse_error(tok, sizeof(tok), "<html>", 6));
	/* Whoever answers for etcd writes no line or field of our log: a
	 * newline, a quote, a backslash, a NUL become '?'; a cut falls
	 * between UTF-8 characters (it made one broken, and the admin API's
	 * answer with it a 500). */
	{
		static const char evil[] =
			"{\"message\":\"x\\\"\\n2026 INFO fleet_up \\\\ \\ty\"}";
		char small[6];

		assert_true(fleet_parse_error(tok, sizeof(tok), evil,
					      strlen(evil)));
		assert_string_equal(tok, "x??2026 INFO fleet_up ? ?y");
		assert_true(fleet_parse_error(small, sizeof(small),
					      "{\"message\":\"abcd\u00e9\"}",
					      strlen("{\"message\":\"abcd\u00e9\"}")));
		assert_string_equal(small, "abcd");
	}
}

static bool stek(struct tls_ticket_key *k, const char *s)
{
	return fleet_parse_stek(k, (const uint8_t *)s, strlen(s));
}

/* base64 of the bytes 0..63 */
#define KEY64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKiss" \
	      "LS4vMDEyMzQ1Njc4OTo7PD0+Pw=="

static void test_stek(void **state)
{
	struct tls_ticket_key k, zero;
	static const char *const bad[] = {
		"{\"name\":\"00112233445566778899aabbccddeef\",\"key\":\"" KEY64
		"\",\"not_before\":1,\"not_after\":2}",
		"{\"name\":\"00112233445566778899aabbccddeefg\",\"key\":\"" KEY64
		"\",\"not_before\":1,\"not_after\":2}",
		"{\"name\":\"00112233445566778899AABBCCDDEEFF\",\"key\":\"" KEY64
		"\",\"not_before\":1,\"not_after\":2}",
		"{\"name\":\"00112233445566778899aabbccddeeff\",\"key\":\"AAEC\","
		"\"not_before\":1,\"not_after\":2}",
		"{\"name\":\"00112233445566778899aabbccddeeff\",\"key\":\"" KEY64
		"\",\"not_before\":2,\"not_after\":2}",
		"{\"name\":\"00112233445566778899aabbccddeeff\",\"key\":\"" KEY64
		"\",\"not_after\":2}",
		"[]",
	};

	(void)state;
	memset(&zero, 0, sizeof(zero));
	assert_true(stek(&k, "{\"name\":\"00112233445566778899aabbccddeeff\","
			 "\"key\":\"" KEY64 "\",\"not_before\":100,"
			 "\"not_after\":\"200\"}"));
	assert_int_equal(k.name[0], 0x00);
	assert_int_equal(k.name[15], 0xff);
	assert_int_equal(k.aes[0], 0);
	assert_int_equal(k.aes[31], 31);
	assert_int_equal(k.hmac[0], 32);
	assert_int_equal(k.hmac[31], 63);
	assert_int_equal(k.not_before, 100);
	assert_int_equal(k.not_after, 200);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (stek(&k, bad[i]))
			fail_msg("accepted: %s", bad[i]);
		assert_memory_equal(&k, &zero, sizeof(k));
	}
}

/* More valid keys than there is room for, in every order: the newest are
 * kept (the first older key was replaced before, not the oldest). */
static void test_stek_keep_newest(void **state)
{
	enum { CAP = 32, ALL = 40 };
	static const unsigned steps[] = { 1, 7, 9, 11, 13, 17, 39 };
	struct tls_ticket_key keys[CAP], k;

	(void)state;
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		size_t n = 0;
		unsigned seen[ALL] = { 0 };

		/* not_before 1..ALL, in the order i * step mod ALL (a
		 * permutation: each step is prime to ALL) */
		for (unsigned i = 0; i < ALL; i++) {
			memset(&k, 0, sizeof(k));
			k.not_before = 1 + (i * steps[s]) % ALL;
			k.not_after = k.not_before + 1000;
			k.name[0] = (uint8_t)k.not_before;
			fleet_stek_keep(keys, &n, CAP, &k);
		}
		assert_int_equal(n, CAP);
		for (size_t i = 0; i < n; i++) {
			assert_true(keys[i].not_before > ALL - CAP);
			assert_int_equal(keys[i].name[0], keys[i].not_before);
			seen[keys[i].not_before - 1]++;
		}
		for (unsigned v = ALL - CAP; v < ALL; v++)
			assert_int_equal(seen[v], 1);
	}
	/* An older key than all of a full set changes nothing. */
	memset(&k, 0, sizeof(k));
	k.not_before = 0;
	{
		size_t n = CAP;

		for (size_t i = 0; i < CAP; i++)
			keys[i].not_before = 100 + (int64_t)i;
		fleet_stek_keep(keys, &n, CAP, &k);
		assert_int_equal(n, CAP);
		for (size_t i = 0; i < CAP; i++)
			assert_int_equal(keys[i].not_before, 100 + (int64_t)i);
	}
}

/* A key from etcd is held to what a rotator of this appliance writes:
 * rotation 3600 s, lifetime 7200 s, now 1,000,000. */
static void test_stek_bound(void **state)
{
	const int64_t now = 1000000, rot = 3600, life = 7200;
	struct tls_ticket_key k = { .not_before = now - 10,
				    .not_after = now - 10 + rot + life };
	bool clamped;

	/* As minted: kept as it is. */
	assert_true(fleet_stek_bound(&k, now, rot, life, &clamped));
	assert_false(clamped);
	assert_int_equal(k.not_after, now - 10 + rot + life);
	/* Decrypting for years: brought back. */
	k.not_after = INT64_MAX;
	assert_true(fleet_stek_bound(&k, now, rot, life, &clamped));
	assert_true(clamped);
	assert_int_equal(k.not_after, now - 10 + rot + life);
	/* Shorter than ours (another appliance's settings): as it is. */
	k.not_after = now + 60;
	assert_true(fleet_stek_bound(&k, now, rot, life, &clamped));
	assert_false(clamped);
	assert_int_equal(k.not_after, now + 60);
	/* The next key, a rotation ahead, and up to two: kept. */
	k.not_before = now + 2 * rot;
	k.not_after = k.not_before + rot + life;
	assert_true(fleet_stek_bound(&k, now, rot, life, &clamped));
	/* Further ahead: refused, whatever its not_after. */
	k.not_before = now + 2 * rot + 1;
	assert_false(fleet_stek_bound(&k, now, rot, life, &clamped));
	k.not_before = INT64_MAX - 1;
	k.not_after = INT64_MAX;
	assert_false(fleet_stek_bound(&k, now, rot, life, &clamped));
}

/* The fleet: section. */

static bool load(struct config *c, struct config_errors *e, const char *y)
{
	return config_load_buf(c, e, "t.yaml", ".", (const uint8_t *)y,
			       strlen(y));
}

/* The loader only checks that certificate files are readable: this file
 * is one (the tests run from tests/unit). */
#define BASE "listen: { ports: [443] }\n" \
	     "tls: { certificates: [ { cert: test_fleet.c, key: test_fleet.c } ] }\n"

static const char *first_error(const char *y)
{
	static char msg[512];
	struct config c;
	struct config_errors e;

	if (load(&c, &e, y)) {
		config_free(&c);
		return NULL;
	}
	snprintf(msg, sizeof(msg), "%u:%u: %s", e.v[0].line, e.v[0].col,
		 e.v[0].msg);
	config_free(&c);
	config_errors_free(&e);
	return msg;
}

static void test_config(void **state)
{
	static const struct {
		const char *yaml, *err;
	} errs[] = {
		{ "fleet: {}\n", "missing required key 'etcd'" },
		{ "fleet: { etcd: {} }\n", "missing required key 'endpoints'" },
		{ "fleet: { etcd: { endpoints: [] } }\n",
		  "needs at least one endpoint" },
		{ "fleet: { etcd: { endpoints: [\"ftp://a:1\"] } }\n",
		  "expected \"http://host:port\"" },
		{ "fleet: { etcd: { endpoints: [\"http://a\"] } }\n",
		  "expected \"http://host:port\"" },
		{ "fleet: { etcd: { endpoints: [\"http://[::1:2379\"] } }\n",
		  "expected \"http://host:port\"" },
		{ "fleet: { etcd: { endpoints: [\"http://a:0\"] } }\n",
		  "expected \"http://host:port\"" },
		{ "fleet: { etcd: { endpoints: [\"http://a:1\"], prefix: /x } }\n",
		  "must end in '/'" },
		{ "fleet: { etcd: { endpoints: [\"http://a:1\"], "
		  "timeout_ms: 5 } }\n", "timeout_ms" },
		{ "fleet: { etcd: { endpoints: [\"http://a:1\"], "
		  "username: u } }\n", "username and password_file go together" },
		{ "fleet: { etcd: { endpoints: [\"http://a:1\"], "
		  "password_file: /nonexistent/pw, username: u } }\n",
		  "No such file" },
		{ "fleet: { etcd: { endpoints: [\"http://a:1\"] }, "
		  "appliance_id: \"a/b\" }\n", "fleet.appliance_id 'a/b'" },
		{ "fleet: { etcd: { endpoints: [\"http://a:1\"], bogus: 1 } }\n",
		  "unknown key 'bogus'" },
		{ "fleet: { etcd: { endpoints: [\"http://a:1\"] }, "
		  "ticket_rotation_s: 60, ticket_lifetime_s: 3600 }\n",
		  "at most 32 keys are held at once" },
	};
	struct config c;
	struct config_errors e;
	char host[256];

	(void)state;
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		char y[1024];
		const char *got;

		snprintf(y, sizeof(y), BASE "%s", errs[i].yaml);
		got = first_error(y);
		if (!got || !strstr(got, errs[i].err))
			fail_msg("%s: got \"%s\", want \"%s\"", errs[i].yaml,
				 got ? got : "(loaded)", errs[i].err);
	}

	if (!load(&c, &e, BASE "fleet:\n  etcd:\n    endpoints: "
		  "[\"http://[::1]:2379\", \"https://etcd.example:2379\"]\n"
		  "    timeout_ms: 700\n    progress_interval_ms: 900\n"
		  "  appliance_id: edge-a\n  snapshot_file: snap.json\n"))
		fail_msg("refused: %s", e.v[0].msg);
	assert_true(c.fleet.enabled);
	assert_int_equal(c.fleet.endpoints_len, 2);
	assert_string_equal(c.fleet.endpoints[0], "http://[::1]:2379");
	assert_string_equal(c.fleet.prefix, DEFAULT_FLEET_PREFIX);
	assert_int_equal(c.fleet.timeout_ms, 700);
	assert_int_equal(c.fleet.progress_ms, 900);
	assert_string_equal(c.fleet.appliance_id, "edge-a");
	assert_string_equal(c.fleet.snapshot_file, "snap.json");
	assert_null(c.fleet.username);
	config_free(&c);
	config_errors_free(&e);

	/* Defaults: the host name, the snapshot next to the config. */
	{
		char y[2 * PATH_MAX + 256], cwd[PATH_MAX];

		assert_non_null(getcwd(cwd, sizeof(cwd)));
		snprintf(y, sizeof(y), "listen: { ports: [443] }\n"
			 "tls: { certificates: [ { cert: %s/test_fleet.c, "
			 "key: %s/test_fleet.c } ] }\n"
			 "fleet: { etcd: { endpoints: [\"http://a:1\"], "
			 "prefix: /fleet/ } }\n", cwd, cwd);
		if (!config_load_buf(&c, &e, "t.yaml", "/etc/vmgate",
				     (const uint8_t *)y, strlen(y)))
			fail_msg("refused: %s", e.v[0].msg);
	}
	assert_string_equal(c.fleet.prefix, "/fleet/");
	assert_string_equal(c.fleet.snapshot_file,
			    "/etc/vmgate/" DEFAULT_FLEET_SNAPSHOT_FILE);
	assert_int_equal(c.fleet.timeout_ms, DEFAULT_FLEET_TIMEOUT_MS);
	gethostname(host, sizeof(host));
	host[sizeof(host) - 1] = '\0';
	assert_int_equal(strncmp(c.fleet.appliance_id, host,
				 strlen(c.fleet.appliance_id)), 0);
	config_free(&c);
	config_errors_free(&e);

	/* No fleet: section, no fleet mode. */
	assert_true(load(&c, &e, BASE));
	assert_false(c.fleet.enabled);
	config_free(&c);
	config_errors_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vm_values),
		cmocka_unit_test(test_vm_ports),
		cmocka_unit_test(test_vm_keys),
		cmocka_unit_test(test_key_under),
		cmocka_unit_test(test_long_keys),
		cmocka_unit_test(test_next_key),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_small_answers),
		cmocka_unit_test(test_stek),
		cmocka_unit_test(test_stek_keep_newest),
		cmocka_unit_test(test_stek_bound),
		cmocka_unit_test(test_config),
	};

	return cmocka_run_group_tests_name("fleet", tests, NULL, NULL);
}
