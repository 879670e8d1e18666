/* tests/unit/test_reason.c: the one table of close and reject reasons
 * (core/reason.h).
 *
 * Cases: every reason has a unique, non-empty name of [a-z_] and a family;
 * names round-trip through reason_from_name; the names logged before the
 * table existed are in it, byte for byte and in their family (tests and
 * operators grep them); every route verdict's name is a reject reason;
 * metrics_count counts each reason in its own slot and REASON_NONE in
 * none; README.md's Logs section lists every name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"
#include "core/reason.h"
#include "route/route.h"

static void test_names_unique(void **state)
{
	enum conn_reason r, q;

	(void)state;
	assert_null(reason_name(REASON_NONE));
	assert_null(reason_name(REASON_COUNT));
	for (r = REASON_NONE + 1; r < REASON_COUNT; r++) {
		const char *n = reason_name(r);

		if (!n || !*n)
			fail_msg("reason %d has no name", r);
		if (strspn(n, "abcdefghijklmnopqrstuvwxyz_") != strlen(n))
			fail_msg("reason %s: not one log token of [a-z_]", n);
		if (reason_family(r) != REASON_CLOSE &&
		    reason_family(r) != REASON_REJECT)
			fail_msg("reason %s: no family", n);
		for (q = REASON_NONE + 1; q < r; q++)
			if (!strcmp(reason_name(q), n))
				fail_msg("reason %s twice (%d and %d)", n, q,
					 r);
	}
}

static void test_round_trip(void **state)
{
	enum conn_reason r, got;

	(void)state;
	for (r = REASON_NONE + 1; r < REASON_COUNT; r++) {
		got = REASON_NONE;
		if (!reason_from_name(&got, reason_name(r),
				      strlen(reason_name(r))) ||
		    got != r)
			fail_msg("%s does not round-trip (got %d)",
				 reason_name(r), got);
	}
	/* A prefix or an extension of a name is not the name. */
	assert_false(reason_from_name(&got, "client_eof_in", 13));
	assert_false(reason_from_name(&got, "done_", 5));
	assert_false(reason_from_name(&got, "", 0));
	assert_false(reason_from_name(&got, "other", 5));
}

/* Every reason= value the code logged before the table, with its family:
 * the table must keep each one byte for byte. */
static void test_old_names_kept(void **state)
{
	static const struct {
		const char *name;
		enum reason_family family;
	} old[] = {
		{ "done", REASON_CLOSE },
		{ "idle_timeout", REASON_CLOSE },
		{ "handshake_timeout", REASON_CLOSE },
		{ "tls_error", REASON_CLOSE },
		{ "client_reset", REASON_CLOSE },
		{ "client_error", REASON_CLOSE },
		{ "client_eof", REASON_CLOSE },
		{ "client_eof_in_handshake", REASON_CLOSE },
		{ "vm_reset", REASON_CLOSE },
		{ "vm_error", REASON_CLOSE },
		{ "out_of_memory", REASON_CLOSE },
		{ "no_sni", REASON_REJECT },
		{ "bad_host", REASON_REJECT },
		{ "unknown_domain", REASON_REJECT },
		{ "unknown_vm", REASON_REJECT },
		{ "port_denied", REASON_REJECT },
		{ "not_tls", REASON_REJECT },
		{ "bad_hello", REASON_REJECT },
		{ "too_large", REASON_REJECT },
		{ "no_common_sigalg", REASON_REJECT },
		{ "max_connections", REASON_REJECT },
		{ "max_connections_per_ip", REASON_REJECT },
	};
	enum conn_reason r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(old) / sizeof(old[0]); i++) {
		if (!reason_from_name(&r, old[i].name, strlen(old[i].name)))
			fail_msg("%s is no longer a reason", old[i].name);
		if (reason_family(r) != old[i].family)
			fail_msg("%s changed family", old[i].name);
	}
	/* Only TLS errors close at WARN; rejects are all WARN. */
	for (r = REASON_NONE + 1; r < REASON_COUNT; r++)
		if (reason_level(r) !=
		    (reason_family(r) == REASON_REJECT || r == REASON_TLS_ERROR
			     ? LOG_WARN
			     : LOG_INFO))
			fail_msg("%s: unexpected log level", reason_name(r));
}

/* core/front.c maps each route verdict to a reason; the names are the
 * same as route's own. */
static void test_route_verdicts(void **state)
{
	static const enum route_verdict v[] = {
		ROUTE_NO_SNI, ROUTE_BAD_HOST, ROUTE_UNKNOWN_DOMAIN,
		ROUTE_UNKNOWN_VM, ROUTE_PORT_DENIED,
	};
	enum conn_reason r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		const char *n = route_verdict_str(v[i]);

		if (!reason_from_name(&r, n, strlen(n)) ||
		    reason_family(r) != REASON_REJECT)
			fail_msg("route verdict %s is not a reject reason", n);
	}
}

static void test_metrics_count_each(void **state)
{
	struct metrics *m = calloc(1, sizeof(*m));
	enum conn_reason r;
	unsigned k;

	(void)state;
	assert_non_null(m);
	/* Reason r counted r times: each lands in its own slot. */
	for (r = REASON_NONE + 1; r < REASON_COUNT; r++)
		for (k = 0; k < (unsigned)r; k++)
			metrics_count(m, r);
	metrics_count(m, REASON_NONE);
	metrics_count(m, REASON_COUNT);
	assert_int_equal(metric_get(&m->reasons[REASON_NONE]), 0);
	for (r = REASON_NONE + 1; r < REASON_COUNT; r++)
		if (metric_get(&m->reasons[r]) != (uint64_t)r)
			fail_msg("%s counted %llu times, want %d",
				 reason_name(r),
				 (unsigned long long)metric_get(
					 &m->reasons[r]),
				 r);
	free(m);
}

/* The README's Logs section names every reason, as `name`. Unit tests run
 * from tests/unit. */
static void test_readme_lists_all(void **state)
{
	char *buf, *logs, *end, want[64];
	enum conn_reason r;
	FILE *f;
	long n;

	(void)state;
	f = fopen("../../README.md", "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	logs = strstr(buf, "\n## Logs\n");
	if (!logs)
		fail_msg("README.md has no \"## Logs\" section");
	end = strstr(logs + 1, "\n## ");
	if (end)
		*end = '\0';
	for (r = REASON_NONE + 1; r < REASON_COUNT; r++) {
		snprintf(want, sizeof(want), "`%s`", reason_name(r));
		if (!strstr(logs, want))
			fail_msg("README.md's Logs section does not list %s",
				 want);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_unique),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_old_names_kept),
		cmocka_unit_test(test_route_verdicts),
		cmocka_unit_test(test_metrics_count_each),
		cmocka_unit_test(test_readme_lists_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
