/* tests/unit/test_route.c: route/host.c and route/table.c: hostname
 * normalisation, every route_lookup() verdict, port policy, nested
 * domains, a table of 100k VMs, and overlays (route_table_derive and the
 * route_vm_* accessors), freed in every order. Tables are built from hand-made
 * struct config values, so no YAML is involved here. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "route/route.h"

/* Host normalisation */

static bool norm(char *out, size_t *len, const char *in)
{
	return route_host_normalize(out, len, 254, (const uint8_t *)in,
				    strlen(in));
}

static void test_host_valid(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "a", "a" },
		{ "A.B.C", "a.b.c" },
		{ "Vm-1.VM.Vers.SH", "vm-1.vm.vers.sh" },
		{ "45a68069-defc-4233-9865-6298d87053af.vm.vers.sh",
		  "45a68069-defc-4233-9865-6298d87053af.vm.vers.sh" },
		{ "0.1.2.3", "0.1.2.3" },
		{ "a--b.c", "a--b.c" },
		{ "xn--bcher-kva.example", "xn--bcher-kva.example" },
	};
	char out[254];
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!norm(out, &len, cases[i].in))
			fail_msg("'%s' refused", cases[i].in);
		assert_string_equal(out, cases[i].out);
		assert_int_equal(len, strlen(cases[i].out));
	}
}

static void test_host_lengths(void **state)
{
	char in[300], out[300];
	size_t len;

	(void)state;
	/* A 63-byte label is fine, 64 is not. */
	memset(in, 'a', 63);
	in[63] = '\0';
	assert_true(norm(out, &len, in));
	memset(in, 'a', 64);
	in[64] = '\0';
	assert_false(norm(out, &len, in));

	/* 253 bytes in total is fine, 254 is not: 4 x 63 + 3 dots = 255,
	 * so build 63.63.63.61 = 253 and 63.63.63.62 = 254. */
	memset(in, 'a', sizeof(in));
	in[63] = in[127] = in[191] = '.';
	in[253] = '\0';
	assert_true(norm(out, &len, in));
	assert_int_equal(len, 253);
	in[253] = 'a';
	in[254] = '\0';
	assert_false(norm(out, &len, in));

	/* The output buffer must hold the name and its NUL. */
	assert_false(route_host_normalize(out, &len, 3,
					  (const uint8_t *)"abc", 3));
	assert_true(route_host_normalize(out, &len, 4,
					 (const uint8_t *)"abc", 3));
}

static void test_host_invalid(void **state)
{
	static const char *const cases[] = {
		"", ".", "a.", ".a", "a..b", "-a", "a-", "a.-b", "a.b-",
		"a_b", "a b", "a/b", "a:443", "*.a", "a*", "\xc3\xa9.com",
		"a\tb", "[::1]", "10.0.0.1.", "a.b.", "@",
	};
	char out[254];
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (norm(out, &len, cases[i]))
			fail_msg("'%s' accepted", cases[i]);

	/* A NUL inside the name. */
	assert_false(route_host_normalize(out, &len, sizeof(out),
					  (const uint8_t *)"a\0b", 3));
}

/* Tables built from a hand-made config */

struct fixture {
	struct config cfg;
	struct route_table *t;
};

static struct config_port_map ssh_map[] = { { 443, 22 }, { 8443, 8080 } };
static uint16_t allowed[] = { 8080, 443, 3000 };
static uint16_t proxy_ports[] = { 3000, 22 };

static struct config_domain domains[] = {
	{ .suffix = "vm.vers.sh", .port_map = ssh_map, .port_map_len = 2,
	  .allowed_ports = allowed, .allowed_ports_len = 3,
	  .has_allowed_ports = true, .proxy_protocol = CFG_PROXY_V2,
	  .proxy_protocol_ports = proxy_ports, .proxy_protocol_ports_len = 2,
	  .has_proxy_protocol_ports = true, .vm_errors_http = true },
	{ .suffix = "vers.sh", .proxy_protocol = CFG_PROXY_V1 }, /* every port,
								   * no mapping */
	{ .suffix = "Open.Example.COM" },  /* normalised by the table */
	{ .suffix = "locked.example", .has_allowed_ports = true },
	{ .suffix = "pass.example", .tls_passthrough = true },
};

static struct config_vm vms[] = {
	{ .id = "45a68069-defc-4233-9865-6298d87053af" },
	{ .id = "web" },
	{ .id = "vm" },
	{ .id = "Upper" },
	{ .id = "web" }, /* duplicate: the first one wins */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	for (size_t i = 0; i < sizeof(vms) / sizeof(vms[0]); i++) {
		memset(&vms[i].addr, 0, sizeof(vms[i].addr));
		vms[i].addr.s6_addr[0] = 0xfd;
		vms[i].addr.s6_addr[15] = (uint8_t)(i + 1);
	}
	f->cfg.domains = domains;
	f->cfg.domains_len = sizeof(domains) / sizeof(domains[0]);
	f->cfg.vms = vms;
	f->cfg.vms_len = sizeof(vms) / sizeof(vms[0]);
	f->t = route_table_new(&f->cfg);
	if (!f->t) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	route_table_free(f->t);
	free(f);
	return 0;
}

static enum route_verdict look(const struct route_table *t,
			       struct route_match *m, const char *host,
			       uint16_t port)
{
	return route_lookup(t, m, (const uint8_t *)host, strlen(host), port);
}

#define assert_verdict(t, m, host, port, want)                               \
	do {                                                                  \
		enum route_verdict got_ = look(t, m, host, port);             \
		if (got_ != (want))                                           \
			fail_msg("%s:%u: got %s, want %s", host,              \
				 (unsigned)(port), route_verdict_str(got_),   \
				 route_verdict_str(want));                    \
	} while (0)

static void test_verdicts(void **state)
{
	struct fixture *f = *state;
	struct route_match m;

	assert_int_equal(route_lookup(f->t, &m, (const uint8_t *)"x", 0, 443),
			 ROUTE_NO_SNI);
	assert_verdict(f->t, &m, "bad_host.vm.vers.sh", 443, ROUTE_BAD_HOST);
	assert_verdict(f->t, &m, "web.vm.vers.sh.", 443, ROUTE_BAD_HOST);
	assert_verdict(f->t, &m, "web.example.org", 443,
		       ROUTE_UNKNOWN_DOMAIN);
	assert_verdict(f->t, &m, "web.vm.vers.sh", 443, ROUTE_OK);
	assert_verdict(f->t, &m, "nope.vm.vers.sh", 443, ROUTE_UNKNOWN_VM);
	assert_verdict(f->t, &m, "web.vm.vers.sh", 9999, ROUTE_PORT_DENIED);
	/* Unknown VM is answered before the port policy. */
	assert_verdict(f->t, &m, "nope.vm.vers.sh", 9999, ROUTE_UNKNOWN_VM);
	/* Nothing, or more than one label, in front of the suffix. */
	assert_verdict(f->t, &m, "open.example.com", 443,
		       ROUTE_UNKNOWN_DOMAIN);
	assert_verdict(f->t, &m, "a.web.open.example.com", 443,
		       ROUTE_UNKNOWN_DOMAIN);
	assert_verdict(f->t, &m, "sh", 443, ROUTE_UNKNOWN_DOMAIN);

	assert_string_equal(route_verdict_str(ROUTE_OK), "ok");
	assert_string_equal(route_verdict_str(ROUTE_NO_SNI), "no_sni");
	assert_string_equal(route_verdict_str(ROUTE_BAD_HOST), "bad_host");
	assert_string_equal(route_verdict_str(ROUTE_UNKNOWN_DOMAIN),
			    "unknown_domain");
	assert_string_equal(route_verdict_str(ROUTE_UNKNOWN_VM), "unknown_vm");
	assert_string_equal(route_verdict_str(ROUTE_PORT_DENIED),
			    "port_denied");
}

static void test_match_fields(void **state)
{
	struct fixture *f = *state;
	struct route_match m;

	assert_verdict(f->t, &m,
		       "45a68069-defc-4233-9865-6298d87053af.vm.vers.sh", 3000,
		       ROUTE_OK);
	assert_string_equal(m.vm_id, "45a68069-defc-4233-9865-6298d87053af");
	assert_memory_equal(m.addr, &vms[0].addr, sizeof(vms[0].addr));
	assert_int_equal(m.vm_port, 3000);

	/* The duplicate "web" kept the first address. */
	assert_verdict(f->t, &m, "web.vers.sh", 5, ROUTE_OK);
	assert_memory_equal(m.addr, &vms[1].addr, sizeof(vms[1].addr));
}

static void test_untouched_on_failure(void **state)
{
	struct fixture *f = *state;
	struct route_match m, zero;

	memset(&m, 0xa5, sizeof(m));
	memcpy(&zero, &m, sizeof(m));
	assert_verdict(f->t, &m, "nope.vm.vers.sh", 443, ROUTE_UNKNOWN_VM);
	assert_memory_equal(&m, &zero, sizeof(m));
	/* A refused port names the VM (its counters take the refusal), and
	 * nothing else. */
	assert_verdict(f->t, &m, "web.vm.vers.sh", 1, ROUTE_PORT_DENIED);
	assert_string_equal(m.vm_id, "web");
	zero.vm_id = m.vm_id;
	assert_memory_equal(&m, &zero, sizeof(m));
}

static void test_case_insensitive(void **state)
{
	struct fixture *f = *state;
	struct route_match m;

	assert_verdict(f->t, &m, "WEB.VM.VERS.SH", 3000, ROUTE_OK);
	assert_string_equal(m.vm_id, "web");
	assert_verdict(f->t, &m, "wEb.Open.example.Com", 1, ROUTE_OK);
	assert_string_equal(m.vm_id, "web");
	/* The config said "Upper"; the table stores it lowercase. */
	assert_verdict(f->t, &m, "uPPER.vers.sh", 1, ROUTE_OK);
	assert_string_equal(m.vm_id, "upper");
}

static void test_ports(void **state)
{
	struct fixture *f = *state;
	struct route_match m;

	/* vm.vers.sh: 443 -> 22, allowlist 443, 3000, 8080. */
	assert_verdict(f->t, &m, "web.vm.vers.sh", 443, ROUTE_OK);
	assert_int_equal(m.vm_port, 22);
	assert_verdict(f->t, &m, "web.vm.vers.sh", 3000, ROUTE_OK);
	assert_int_equal(m.vm_port, 3000);
	assert_verdict(f->t, &m, "web.vm.vers.sh", 8080, ROUTE_OK);
	assert_int_equal(m.vm_port, 8080);
	/* Mapped but not allowed: the allowlist is about listener ports. */
	assert_verdict(f->t, &m, "web.vm.vers.sh", 8443, ROUTE_PORT_DENIED);
	assert_verdict(f->t, &m, "web.vm.vers.sh", 22, ROUTE_PORT_DENIED);

	/* vers.sh: every port, to itself. */
	assert_verdict(f->t, &m, "web.vers.sh", 443, ROUTE_OK);
	assert_int_equal(m.vm_port, 443);
	assert_verdict(f->t, &m, "web.vers.sh", 65535, ROUTE_OK);
	assert_int_equal(m.vm_port, 65535);

	/* has_allowed_ports with an empty list denies everything. */
	assert_verdict(f->t, &m, "web.locked.example", 443, ROUTE_PORT_DENIED);
}

/* proxy_protocol_ports name VM ports, after port_map. */
static void test_proxy_protocol(void **state)
{
	struct fixture *f = *state;
	struct route_match m;

	assert_verdict(f->t, &m, "web.vm.vers.sh", 443, ROUTE_OK); /* 22 */
	assert_int_equal(m.proxy_protocol, CFG_PROXY_V2);
	assert_verdict(f->t, &m, "web.vm.vers.sh", 3000, ROUTE_OK);
	assert_int_equal(m.proxy_protocol, CFG_PROXY_V2);
	assert_verdict(f->t, &m, "web.vm.vers.sh", 8080, ROUTE_OK);
	assert_int_equal(m.proxy_protocol, CFG_PROXY_NONE);
	assert_verdict(f->t, &m, "web.vers.sh", 8080, ROUTE_OK);
	assert_int_equal(m.proxy_protocol, CFG_PROXY_V1);
	assert_verdict(f->t, &m, "web.open.example.com", 3000, ROUTE_OK);
	assert_int_equal(m.proxy_protocol, CFG_PROXY_NONE);
	assert_false(m.vm_errors_http);
	assert_verdict(f->t, &m, "web.vm.vers.sh", 8080, ROUTE_OK);
	assert_true(m.vm_errors_http);
	assert_false(m.passthrough);
	assert_verdict(f->t, &m, "web.pass.example", 443, ROUTE_OK);
	assert_true(m.passthrough);
	assert_false(m.vm_errors_http);
}

static void test_nested(void **state)
{
	struct fixture *f = *state;
	struct route_match m;

	/* "vm" is both a VM and a label of the vm.vers.sh suffix. */
	assert_verdict(f->t, &m, "vm.vers.sh", 443, ROUTE_OK);
	assert_string_equal(m.vm_id, "vm");
	assert_int_equal(m.vm_port, 443); /* vers.sh's policy, not vm's */
	assert_verdict(f->t, &m, "vm.vm.vers.sh", 443, ROUTE_OK);
	assert_int_equal(m.vm_port, 22);
	/* The longest suffix decides; a shorter one is not a fallback. */
	assert_verdict(f->t, &m, "web.x.vm.vers.sh", 443,
		       ROUTE_UNKNOWN_DOMAIN);
	assert_verdict(f->t, &m, "web.vm2.vers.sh", 443,
		       ROUTE_UNKNOWN_DOMAIN);
	assert_verdict(f->t, &m, "vm2.vers.sh", 443, ROUTE_UNKNOWN_VM);
}

static void test_empty_table(void **state)
{
	struct config cfg = { 0 };
	struct route_table *t = route_table_new(&cfg);
	struct route_match m;

	(void)state;
	assert_non_null(t);
	assert_verdict(t, &m, "web.vm.vers.sh", 443, ROUTE_UNKNOWN_DOMAIN);
	assert_verdict(t, &m, "", 443, ROUTE_NO_SNI);
	route_table_free(t);
	route_table_free(NULL);
}

/* Overlays: route_table_derive, route_vm_get, route_vm_count and
 * route_vm_foreach. */

static struct in6_addr addr_n(unsigned n)
{
	struct in6_addr a = { .s6_addr = { 0xfd, 0x01 } };

	a.s6_addr[14] = (uint8_t)(n >> 8);
	a.s6_addr[15] = (uint8_t)n;
	return a;
}

/* The effective set a table should have, for checking foreach: up to 16
 * ids, each visited exactly once with its address. */
struct want_set {
	const char *id[16];
	struct in6_addr addr[16];
	unsigned seen[16];
	size_t len;
	size_t visits;
	size_t stop_after; /* 0 = never stop */
};

static bool visit(void *arg, const char *id, const struct in6_addr *addr)
{
	struct want_set *w = arg;
	size_t i;

	w->visits++;
	for (i = 0; i < w->len; i++)
		if (!strcmp(w->id[i], id))
			break;
	if (i == w->len)
		fail_msg("foreach visited '%s', which should not be there", id);
	if (memcmp(addr, &w->addr[i], sizeof(*addr)))
		fail_msg("foreach: '%s' has the wrong address", id);
	w->seen[i]++;
	return w->stop_after == 0 || w->visits < w->stop_after;
}

static void check_set(const struct route_table *t, struct want_set *w)
{
	struct in6_addr a;

	memset(w->seen, 0, sizeof(w->seen));
	w->visits = 0;
	route_vm_foreach(t, visit, w);
	for (size_t i = 0; i < w->len; i++) {
		if (w->seen[i] != 1)
			fail_msg("foreach visited '%s' %u times", w->id[i],
				 w->seen[i]);
		if (!route_vm_get(t, &a, w->id[i], strlen(w->id[i])))
			fail_msg("route_vm_get('%s') failed", w->id[i]);
		assert_memory_equal(&a, &w->addr[i], sizeof(a));
	}
	assert_int_equal(route_vm_count(t), w->len);
}

static void want(struct want_set *w, const char *id, struct in6_addr a)
{
	w->id[w->len] = id;
	w->addr[w->len++] = a;
}

static void test_vm_get_count(void **state)
{
	struct fixture *f = *state;
	struct in6_addr a;

	/* Five entries, one a duplicate. */
	assert_int_equal(route_vm_count(f->t), 4);
	assert_true(route_vm_get(f->t, &a, "web", 3));
	assert_memory_equal(&a, &vms[1].addr, sizeof(a));
	assert_true(route_vm_get(f->t, &a, "WEB", 3));
	assert_true(route_vm_get(f->t, &a, "upper", 5));
	assert_memory_equal(&a, &vms[3].addr, sizeof(a));
	/* |id_len| bytes, not up to a NUL. */
	assert_true(route_vm_get(f->t, &a, "webx", 3));
	assert_false(route_vm_get(f->t, &a, "nope", 4));
	assert_false(route_vm_get(f->t, &a, "", 0));
	assert_false(route_vm_get(f->t, &a, "web.vm", 6));
	assert_false(route_vm_get(f->t, &a, "we_b", 4));
}

static void test_derive(void **state)
{
	struct fixture *f = *state;
	const char *uuid = "45a68069-defc-4233-9865-6298d87053af";
	struct route_vm_change ch[] = {
		{ .id = "new-1", .addr = addr_n(1) },         /* added */
		{ .id = "WEB", .addr = addr_n(2) },           /* moved */
		{ .id = "vm", .removed = true },              /* removed */
		{ .id = "ghost", .removed = true },           /* never there */
		{ .id = "new-2", .addr = addr_n(3) },
		{ .id = "new-2", .removed = true },           /* later wins */
		{ .id = "upper", .removed = true },
		{ .id = "Upper", .addr = addr_n(4) },         /* back again */
	};
	struct want_set w = { .len = 0 };
	struct route_table *d;
	struct route_match m;

	d = route_table_derive(f->t, ch, sizeof(ch) / sizeof(ch[0]));
	assert_non_null(d);

	want(&w, uuid, vms[0].addr);
	want(&w, "web", addr_n(2));
	want(&w, "upper", addr_n(4));
	want(&w, "new-1", addr_n(1));
	check_set(d, &w);

	/* Lookups see the overlay first, then the base. */
	assert_verdict(d, &m, "new-1.vm.vers.sh", 443, ROUTE_OK);
	assert_string_equal(m.vm_id, "new-1");
	assert_memory_equal(m.addr, &ch[0].addr, sizeof(*m.addr));
	assert_int_equal(m.vm_port, 22);
	assert_verdict(d, &m, "Web.vers.sh", 80, ROUTE_OK);
	assert_memory_equal(m.addr, &ch[1].addr, sizeof(*m.addr));
	assert_verdict(d, &m, "vm.vm.vers.sh", 443, ROUTE_UNKNOWN_VM);
	assert_verdict(d, &m, "new-2.vm.vers.sh", 443, ROUTE_UNKNOWN_VM);
	assert_verdict(d, &m, "ghost.vm.vers.sh", 443, ROUTE_UNKNOWN_VM);
	assert_verdict(d, &m, "new-1.vm.vers.sh", 9999, ROUTE_PORT_DENIED);
	assert_verdict(d, &m, "45a68069-defc-4233-9865-6298d87053af.vers.sh",
		       1, ROUTE_OK);
	assert_memory_equal(m.addr, &vms[0].addr, sizeof(*m.addr));

	/* The base is unchanged. */
	assert_int_equal(route_vm_count(f->t), 4);
	assert_verdict(f->t, &m, "vm.vm.vers.sh", 443, ROUTE_OK);
	assert_verdict(f->t, &m, "new-1.vm.vers.sh", 443, ROUTE_UNKNOWN_VM);
	assert_verdict(f->t, &m, "web.vers.sh", 1, ROUTE_OK);
	assert_memory_equal(m.addr, &vms[1].addr, sizeof(*m.addr));

	/* foreach stops when told to. */
	w.stop_after = 2;
	w.visits = 0;
	route_vm_foreach(d, visit, &w);
	assert_int_equal(w.visits, 2);

	route_table_free(d);
}

static void test_derive_bad_id(void **state)
{
	struct fixture *f = *state;
	struct route_vm_change ok = { .id = "fine" };
	static const char *const bad[] = {
		"", "a.b", "a_b", "-a", "a-",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	struct route_vm_change ch[2];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ch[0] = ok;
		ch[1] = (struct route_vm_change){ .id = bad[i] };
		if (route_table_derive(f->t, ch, 2))
			fail_msg("derive accepted id '%s'", bad[i]);
	}
	ch[1] = (struct route_vm_change){ .id = NULL };
	assert_null(route_table_derive(f->t, ch, 2));
	assert_null(route_table_derive(NULL, ch, 1));
}

static void test_derive_empty(void **state)
{
	struct fixture *f = *state;
	struct route_table *d = route_table_derive(f->t, NULL, 0);
	struct want_set w = { .len = 0 };
	struct route_match m;

	assert_non_null(d);
	for (size_t i = 0; i < 4; i++)
		want(&w, i == 3 ? "upper" : vms[i].id, vms[i].addr);
	check_set(d, &w);
	assert_verdict(d, &m, "web.vm.vers.sh", 443, ROUTE_OK);
	route_table_free(d);
}

/* Derived of derived: changes pile up, the latest winning, and every
 * table stays valid whatever order they are freed in. */
static void test_derive_chain(void **state)
{
	struct fixture *f = *state;
	const char *uuid = "45a68069-defc-4233-9865-6298d87053af";
	struct route_vm_change c1[] = {
		{ .id = "a", .addr = addr_n(1) },
		{ .id = "web", .removed = true },
	};
	struct route_vm_change c2[] = {
		{ .id = "b", .addr = addr_n(2) },
		{ .id = "web", .addr = addr_n(3) },   /* back */
		{ .id = "a", .removed = true },       /* gone again */
		{ .id = uuid, .removed = true },
	};
	struct route_vm_change c3[] = {
		{ .id = "a", .addr = addr_n(4) },
	};
	struct route_table *d1, *d2, *d3;
	struct want_set w1 = { .len = 0 }, w2 = { .len = 0 },
			w3 = { .len = 0 };
	struct route_match m;

	for (int order = 0; order < 3; order++) {
		struct route_table *base;

		assert_int_equal(setup((void **)&f), 0);
		base = f->t;
		d1 = route_table_derive(base, c1, 2);
		d2 = route_table_derive(d1, c2, 4);
		d3 = route_table_derive(d2, c3, 1);
		assert_non_null(d1);
		assert_non_null(d2);
		assert_non_null(d3);

		w1.len = w2.len = w3.len = 0;
		want(&w1, uuid, vms[0].addr);
		want(&w1, "vm", vms[2].addr);
		want(&w1, "upper", vms[3].addr);
		want(&w1, "a", addr_n(1));
		want(&w2, "vm", vms[2].addr);
		want(&w2, "upper", vms[3].addr);
		want(&w2, "b", addr_n(2));
		want(&w2, "web", addr_n(3));
		want(&w3, "vm", vms[2].addr);
		want(&w3, "upper", vms[3].addr);
		want(&w3, "b", addr_n(2));
		want(&w3, "web", addr_n(3));
		want(&w3, "a", addr_n(4));

		/* Free in three orders: base first, derived first, mixed;
		 * the survivors must still answer (ASan checks the rest). */
		if (order == 0) {
			route_table_free(base);
			f->t = NULL;
			check_set(d1, &w1);
			check_set(d2, &w2);
			check_set(d3, &w3);
			route_table_free(d2);
			check_set(d3, &w3);
			assert_verdict(d3, &m, "a.vm.vers.sh", 443, ROUTE_OK);
			route_table_free(d1);
			check_set(d3, &w3);
			route_table_free(d3);
		} else if (order == 1) {
			check_set(d1, &w1);
			check_set(d2, &w2);
			check_set(d3, &w3);
			route_table_free(d3);
			route_table_free(d2);
			route_table_free(d1);
			assert_int_equal(route_vm_count(base), 4);
			assert_verdict(base, &m, "web.vm.vers.sh", 443,
				       ROUTE_OK);
			assert_memory_equal(m.addr, &vms[1].addr,
					    sizeof(*m.addr));
		} else {
			route_table_free(d2);
			route_table_free(base);
			f->t = NULL;
			check_set(d1, &w1);
			check_set(d3, &w3);
			route_table_free(d1);
			check_set(d3, &w3);
			assert_verdict(d3, &m, "web.vers.sh", 1, ROUTE_OK);
			assert_memory_equal(m.addr, &c2[1].addr,
					    sizeof(*m.addr));
			route_table_free(d3);
		}
		teardown((void **)&f);
	}
}

/* vms[].ports through API changes: a derived table applies them, a
 * derive from a derived table keeps them, and a later change replaces
 * them. */
static void test_derive_ports(void **state)
{
	struct fixture *f = *state;
	static const uint16_t list[] = { 22, 8080, 8081, 8082, 9000 };
	struct config_vm_ports *p = route_vm_ports_new(list, 5);
	const struct config_vm_ports *got;
	struct route_table *d1, *d2, *d3;
	struct route_vm_change ch = { .id = "Web", .addr = addr_n(7) };
	struct route_match m;
	char buf[64];

	(void)state;
	assert_non_null(p);
	assert_int_equal(p->len, 3);
	assert_string_equal(route_vm_ports_fmt(buf, sizeof(buf), p),
			    "22,8080-8082,9000");
	ch.ports = p;
	d1 = route_table_derive(f->t, &ch, 1);
	free(p); /* the table keeps its own copy */
	assert_non_null(d1);
	/* vm.vers.sh maps 443 to 22, allowed; 3000 is allowed, not the VM's. */
	assert_verdict(d1, &m, "web.vm.vers.sh", 443, ROUTE_OK);
	assert_int_equal(m.vm_port, 22);
	assert_verdict(d1, &m, "web.vm.vers.sh", 3000, ROUTE_VM_PORT_DENIED);
	assert_verdict(d1, &m, "web.vers.sh", 8081, ROUTE_OK);
	assert_verdict(d1, &m, "web.vers.sh", 8083, ROUTE_VM_PORT_DENIED);
	assert_verdict(f->t, &m, "web.vers.sh", 8083, ROUTE_OK);
	assert_true(route_vm_ports_get(d1, &got, "WEB", 3));
	assert_non_null(got);
	assert_true(route_vm_ports_get(f->t, &got, "web", 3));
	assert_null(got);
	assert_false(route_vm_ports_get(d1, &got, "nope", 4));

	ch = (struct route_vm_change){ .id = "vm", .addr = addr_n(8) };
	d2 = route_table_derive(d1, &ch, 1);
	assert_non_null(d2);
	route_table_free(d1);
	assert_verdict(d2, &m, "web.vers.sh", 8083, ROUTE_VM_PORT_DENIED);
	assert_verdict(d2, &m, "web.vers.sh", 9000, ROUTE_OK);
	assert_verdict(d2, &m, "vm.vers.sh", 8083, ROUTE_OK);

	ch = (struct route_vm_change){ .id = "web", .addr = addr_n(9) };
	d3 = route_table_derive(d2, &ch, 1);
	assert_non_null(d3);
	route_table_free(d2);
	assert_verdict(d3, &m, "web.vers.sh", 8083, ROUTE_OK);
	route_table_free(d3);
}

/* Ids of every length up to 63, some kept inline in a slot and some not,
 * in a base and in overlays. */
static void test_long_ids(void **state)
{
	struct config_domain d = { .suffix = "vm.vers.sh" };
	struct config_vm v[63];
	char ids[63][64], host[80];
	struct route_vm_change ch[63];
	struct config cfg = { .domains = &d, .domains_len = 1, .vms = v };
	struct route_table *t, *dt;
	struct route_match m;
	struct in6_addr a;

	(void)state;
	for (size_t i = 0; i < 63; i++) {
		memset(ids[i], 'a' + (char)(i % 26), i + 1);
		ids[i][i + 1] = '\0';
		ids[i][0] = 'A';
		v[i].id = ids[i];
		v[i].addr = addr_n((unsigned)i);
		v[i].ports = NULL;
	}
	cfg.vms_len = 63;
	t = route_table_new(&cfg);
	assert_non_null(t);
	assert_int_equal(route_vm_count(t), 63);
	for (size_t i = 0; i < 63; i++) {
		ch[i] = (struct route_vm_change){ .id = ids[i],
						  .addr = addr_n(100 + (unsigned)i),
						  .removed = i % 2 };
	}
	dt = route_table_derive(t, ch, 63);
	assert_non_null(dt);
	route_table_free(t);
	assert_int_equal(route_vm_count(dt), 32); /* odd ones removed */
	for (size_t i = 0; i < 63; i++) {
		memcpy(host, ids[i], i + 1);
		memcpy(host + i + 1, ".vm.vers.sh", sizeof(".vm.vers.sh"));
		if (i % 2) {
			assert_verdict(dt, &m, host, 443, ROUTE_UNKNOWN_VM);
			assert_false(route_vm_get(dt, &a, ids[i], i + 1));
			continue;
		}
		assert_verdict(dt, &m, host, 443, ROUTE_OK);
		assert_int_equal(strlen(m.vm_id), i + 1);
		assert_true(m.vm_id[0] == 'a');
		assert_memory_equal(m.vm_id + 1, ids[i] + 1, i);
		assert_int_equal(m.addr->s6_addr[15], 100 + i);
	}
	route_table_free(dt);
}

/* 100k VMs: every one is found with its own address, none that is not
 * there is found. */
#define MANY 100000

static void test_many_vms(void **state)
{
	struct config_domain d = { .suffix = "vm.vers.sh" };
	struct config cfg = { .domains = &d, .domains_len = 1 };
	struct config_vm *v = calloc(MANY, sizeof(*v));
	char *ids = calloc(MANY, 40);
	struct route_table *t;
	struct route_match m;
	char host[128];

	(void)state;
	assert_non_null(v);
	assert_non_null(ids);
	for (uint32_t i = 0; i < MANY; i++) {
		v[i].id = ids + (size_t)i * 40;
		snprintf(v[i].id, 40, "%08x-%04x-vm", i * 2654435761u, i);
		v[i].addr.s6_addr[0] = 0xfd;
		memcpy(&v[i].addr.s6_addr[12], &i, 4);
	}
	cfg.vms = v;
	cfg.vms_len = MANY;
	t = route_table_new(&cfg);
	assert_non_null(t);

	for (uint32_t i = 0; i < MANY; i++) {
		snprintf(host, sizeof(host), "%s.vm.vers.sh", v[i].id);
		if (look(t, &m, host, 443) != ROUTE_OK)
			fail_msg("vm %u (%s) not found", i, v[i].id);
		if (memcmp(m.addr, &v[i].addr, sizeof(v[i].addr)))
			fail_msg("vm %u (%s): wrong address", i, v[i].id);
		assert_string_equal(m.vm_id, v[i].id);

		snprintf(host, sizeof(host), "%s-x.vm.vers.sh", v[i].id);
		if (look(t, &m, host, 443) != ROUTE_UNKNOWN_VM)
			fail_msg("%s found", host);
	}
	route_table_free(t);
	free(ids);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_valid),
		cmocka_unit_test(test_host_lengths),
		cmocka_unit_test(test_host_invalid),
		cmocka_unit_test_setup_teardown(test_verdicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_match_fields, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_untouched_on_failure,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_case_insensitive, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_proxy_protocol, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_ports, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nested, setup, teardown),
		cmocka_unit_test(test_empty_table),
		cmocka_unit_test(test_many_vms),
		cmocka_unit_test_setup_teardown(test_vm_get_count, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_derive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_derive_bad_id, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_derive_empty, setup,
						teardown),
		cmocka_unit_test(test_derive_chain),
		cmocka_unit_test(test_long_ids),
		cmocka_unit_test_setup_teardown(test_derive_ports, setup,
						teardown),
	};

	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
