/* tests/unit/test_config_vms.c: the vms: fast path (ctl/config/vms.c).
 *
 * A vms: list of one-line flow mappings is read without libyaml's node
 * tree; everything else goes through libyaml. The two must agree exactly:
 * each case here is loaded as written (fast path where it applies) and
 * again with a non-ASCII comment at the end of its first entry line,
 * which keeps every line and column but sends the file down the slow
 * path. The configs and the error lists (line, column, message, order)
 * must be the same. The cases cover the shapes the fast path takes, the
 * errors its entries can have, and texts that look like it but are not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ctl/config.h"

static char tmpdir[] = "/tmp/vmgate-test-config-vms-XXXXXX";
static char cert_path[64];

#define MIN "listen: { ports: [443] }\n" \
	    "tls: { certificates: [ { cert: c.pem, key: c.pem } ] }\n"

static const char *const cases[] = {
	/* What the fast path takes. */
	MIN "vms:\n  - { id: web, address: \"fd00::1\" }\n"
	    "  - { id: 45a68069-defc-4233-9865-6298d87053af, address: 'fd00::2' }\n",
	MIN "vms:\n- {id: a, address: fd00::1}\n- { address: \"fd00::2\", id: B }\n"
	    "limits: { max_connections: 5 }\n",
	MIN "vms:   # the fleet\n\n  # first\n  - { id: a, address: \"fd00::1\" }  # x\n"
	    "\n    # indented comment\n  -   {  id:   b ,  address:  \"fd00::3\"  }\n"
	    "workers: 2\n",
	MIN "vms:\n  - { id: \"quoted\", address: \"fd00::1\" }",  /* no newline */
	/* Errors in entries, several per run. */
	MIN "vms:\n  - { id: a.b, address: \"fd00::1\" }\n"
	    "  - { id: a_b, address: \"10.0.0.1\" }\n"
	    "  - { id: ok, address: \"::ffff:10.0.0.1\" }\n"
	    "  - { id: null, address: \"fd00::1::2\" }\n"
	    "  - { id: 'Null', address: \"fe80::1%eth0\" }\n"
	    "  - { address: nope, id: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa }\n",
	MIN "vms:\n  - { id: x, address: \"fd00::1\" }\n  - { id: y, address: \"fd00::1\" }\n"
	    "  - { id: X, address: \"fd00::2\" }\n  - { id: y, address: \"zz\" }\n"
	    "  - { id: b, address: \"fd00::1\" }\n  - { id: x, address: \"fd00::3\" }\n",
	/* Errors elsewhere, before and after the list. */
	"workers: -1\n" MIN "vms:\n  - { id: a, address: \"fd00::1\" }\nlog_level: loud\n",
	MIN "vms:\n  - { id: a, address: \"fd00::1\" }\nvms:\n  - { id: b, address: \"fd00::2\" }\n",
	MIN "vms: [ { id: z, address: \"fd00::9\" } ]\nvms:\n  - { id: b, address: \"fd00::2\" }\n",
	/* Look alike, but not the shape: libyaml decides. */
	MIN "vms:\n  - { id: a, address: \"fd00::1\" }\n  - id: b\n    address: \"fd00::2\"\n",
	MIN "vms:\n  - { id: a, address: \"fd00::1\", port: 1 }\n",
	MIN "vms:\n  - { id: a, id: b }\n",
	MIN "vms:\n  - { id: a, address: \"fd00::1\" }\n   - { id: b, address: \"fd00::2\" }\n",
	MIN "vms:\n  - { id: a, address: \"fd00::1\" }\n- { id: b, address: \"fd00::2\" }\n",
	MIN "vms:\n  - { id: -a, address: \"fd00::1\" }\n",
	MIN "vms:\n  - { id: a, address: fd00:: }\n",
	MIN "vms:\n  - { id: a, address: \"a\\x41\" }\n",
	MIN "vms:\n  - { id: a, address: 'it''s' }\n",
	MIN "vms:\n  - { id: a, address: \"fd00::1\" }\n  - { id: b, address: \"fd00::2\"\n",
	MIN "vms:\n\t- { id: a, address: \"fd00::1\" }\n",
	MIN "vms:\r\n  - { id: a, address: \"fd00::1\" }\r\n",
	MIN "x: |\n  text\nvms:\n  - { id: a, address: \"fd00::1\" }\n",
	MIN "x: \"a\nvms:\n  - { id: a, address: \"fd00::1\" }\n\"\n",
	"--- |\nvms:\n  - { id: a, address: \"fd00::1\" }\n",
	"{ listen: { ports: [443] },\nvms:\n  - { id: a, address: \"fd00::1\" }\n}\n",
	MIN "vms:\n  - { id: a, address: \"fd00::1\" }\n---\nvms:\n  - { id: b, address: \"fd00::2\" }\n",
	"vms:\n  - { id: a, address: \"fd00::1\" }\n" MIN,
	"# \xc3\xa9\n" MIN "vms:\n  - { id: a, address: \"fd00::1\" }\n",
	MIN "vms: &v\n  - { id: a, address: \"fd00::1\" }\nother: *v\n",
	MIN "vms:\n  - { id: a, address: \"fd00::1\" }\n  - { id: *x, address: \"fd00::1\" }\n",
};

static int group_setup(void **state)
{
	FILE *f;

	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	snprintf(cert_path, sizeof(cert_path), "%s/c.pem", tmpdir);
	f = fopen(cert_path, "w");
	if (!f)
		return -1;
	fputs("-----\n", f);
	return fclose(f);
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(cert_path);
	rmdir(tmpdir);
	return 0;
}

/* slow_copy puts " # \xc3\xa9" at the end of the first "- {" line. */
static char *slow_copy(const char *y)
{
	const char *p = strstr(y, "- {");
	size_t n = strlen(y), at;
	char *out = malloc(n + 8);

	assert_non_null(out);
	if (!p) {
		memcpy(out, y, n + 1);
		return out;
	}
	at = (size_t)(strchrnul(p, '\n') - y);
	if (at && y[at - 1] == '\r')
		at--;
	memcpy(out, y, at);
	memcpy(out + at, " # \xc3\xa9", 5);
	memcpy(out + at + 5, y + at, n - at + 1);
	return out;
}

static void same(const char *y, size_t idx)
{
	struct config c1, c2;
	struct config_errors e1, e2;
	char *slow = slow_copy(y);
	bool ok1, ok2;

	ok1 = config_load_buf(&c1, &e1, "t.yaml", tmpdir, (const uint8_t *)y,
			      strlen(y));
	ok2 = config_load_buf(&c2, &e2, "t.yaml", tmpdir,
			      (const uint8_t *)slow, strlen(slow));
	if (ok1 != ok2)
		fail_msg("case %zu: fast %d, slow %d", idx, ok1, ok2);
	if (e1.len != e2.len)
		fail_msg("case %zu: %zu errors fast, %zu slow (first: %s)",
			 idx, e1.len, e2.len,
			 e1.len ? e1.v[0].msg : e2.v[0].msg);
	for (size_t i = 0; i < e1.len; i++)
		if (e1.v[i].line != e2.v[i].line ||
		    e1.v[i].col != e2.v[i].col ||
		    strcmp(e1.v[i].msg, e2.v[i].msg))
			fail_msg("case %zu error %zu: fast %u:%u %s, slow "
				 "%u:%u %s", idx, i, e1.v[i].line,
				 e1.v[i].col, e1.v[i].msg, e2.v[i].line,
				 e2.v[i].col, e2.v[i].msg);
	assert_int_equal(c1.vms_len, c2.vms_len);
	for (size_t i = 0; i < c1.vms_len; i++) {
		assert_string_equal(c1.vms[i].id, c2.vms[i].id);
		assert_memory_equal(&c1.vms[i].addr, &c2.vms[i].addr,
				    sizeof(c1.vms[i].addr));
	}
	assert_int_equal(c1.ports_len, c2.ports_len);
	assert_int_equal(c1.workers, c2.workers);
	assert_int_equal(c1.limits.max_connections,
			 c2.limits.max_connections);
	config_free(&c1);
	config_free(&c2);
	config_errors_free(&e1);
	config_errors_free(&e2);
	free(slow);
}

static void test_same_as_libyaml(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		same(cases[i], i);
}

/* The fast path reads what it should: values, order, count. */
static void test_values(void **state)
{
	static const char y[] = MIN
		"vms:\n  - { id: Web, address: \"fd00::1\" }\n"
		"  - { address: 'fd00::2', id: \"b-2\" }\n";
	struct config c;
	struct config_errors e;

	(void)state;
	assert_true(config_load_buf(&c, &e, "t.yaml", tmpdir,
				    (const uint8_t *)y, strlen(y)));
	assert_int_equal(c.vms_len, 2);
	assert_string_equal(c.vms[0].id, "web");
	assert_int_equal(c.vms[0].addr.s6_addr[15], 1);
	assert_string_equal(c.vms[1].id, "b-2");
	assert_int_equal(c.vms[1].addr.s6_addr[15], 2);
	config_free(&c);
	config_errors_free(&e);
}

/* Many bad entries: the error cap and the order of what is kept. */
static void test_many_errors(void **state)
{
	size_t cap = 256 + 300 * 48, off;
	char *y = malloc(cap);

	(void)state;
	assert_non_null(y);
	off = (size_t)snprintf(y, cap, "%s", MIN "vms:\n");
	for (int i = 0; i < 300; i++)
		off += (size_t)snprintf(y + off, cap - off,
					"  - { id: %s%d, address: x%d }\n",
					i % 7 ? "a" : "a_", i % 50, i);
	same(y, 1000);
	free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_as_libyaml),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_many_errors),
	};

	return cmocka_run_group_tests_name("config_vms", tests, group_setup,
					   group_teardown);
}
