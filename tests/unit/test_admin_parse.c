/* tests/unit/test_admin_parse.c: ctl/admin_parse.c, what the admin API
 * reads from a client: requests whole and split into reads of every size
 * (the same outcome either way, the header limit included), pipelined
 * requests, the limits and their statuses, 100-continue, Authorization
 * given twice or too long, the routes of request targets, bearer tokens
 * and ?top=N. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ctl/admin_parse.h"

/* Feeds |s| in reads of |step| bytes (0: whole) until a request completes
 * or an error; returns that, with what was left over in *|rest|. */
static enum admin_feed feed(struct admin_req *r, const char *s, size_t len,
			    size_t step, size_t *rest)
{
	size_t off = 0, used;
	enum admin_feed res = ADMIN_FEED_MORE;

	while (off < len) {
		size_t n = step && step < len - off ? step : len - off;

		res = admin_req_feed(r, (const uint8_t *)s + off, n, &used);
		assert_true(used <= n);
		off += used;
		if (res != ADMIN_FEED_MORE)
			break;
		assert_int_equal(used, n);
	}
	*rest = len - off;
	return res;
}

static enum admin_feed feed_str(struct admin_req *r, const char *s,
				size_t step)
{
	size_t rest;

	return feed(r, s, strlen(s), step, &rest);
}

static void test_request_in_any_split(void **state)
{
	static const char req[] =
		"PUT /vms/vm1 HTTP/1.1\r\n"
		"Host: admin\r\n"
		"Authorization:  Bearer tok en \r\n"
		"Expect: 100-continue\r\n"
		"Content-Length: 24\r\n"
		"\r\n"
		"{\"address\": \"fd00::10\"}\n";
	size_t step;

	for (step = 0; step <= sizeof(req); step++) {
		struct admin_req r;

		admin_req_init(&r);
		assert_int_equal(feed_str(&r, req, step), ADMIN_FEED_REQUEST);
		assert_int_equal(r.parser.method, HTTP_PUT);
		assert_string_equal(r.url, "/vms/vm1");
		assert_true(r.auth_seen && !r.auth_bad);
		assert_int_equal(r.auth_len, strlen("Bearer tok en "));
		assert_memory_equal(r.auth, "Bearer tok en ", r.auth_len);
		assert_true(r.want_continue);
		assert_false(r.close_after);
		assert_false(r.in_request);
		assert_int_equal(r.body_len, 24);
		assert_memory_equal(r.body, "{\"address\": \"fd00::10\"}\n", 24);
		admin_req_free(&r);
	}
}

/* Headers just under 16 KiB: taken whole and byte by byte alike. The
 * ": " and CRLF of a header count once, however its name is split. */
static void test_header_limit_any_split(void **state)
{
	size_t cap = ADMIN_MAX_HEADERS + 1024, len, steps[] = { 0, 1, 3 }, i;
	size_t counted = 4; /* the target, "/vms" */
	char *req = malloc(cap);

	assert_non_null(req);
	len = (size_t)snprintf(req, cap, "GET /vms HTTP/1.1\r\n");
	/* 57 bytes per header, and 57 counted: name, value, ": ", CRLF */
	while (counted + 57 <= ADMIN_MAX_HEADERS) {
		len += (size_t)snprintf(req + len, cap - len,
					"X-Some-Longish-Header-Name-%05zu: %s\r\n",
					len, "value-value-value-val");
		counted += 57;
	}
	assert_true(counted > ADMIN_MAX_HEADERS - 57);
	memcpy(req + len, "\r\n", 3);
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct admin_req r;

		admin_req_init(&r);
		assert_int_equal(feed_str(&r, req, steps[i]),
				 ADMIN_FEED_REQUEST);
		assert_true(r.header_bytes <= ADMIN_MAX_HEADERS);
		admin_req_free(&r);
	}
	/* One more header is over: 413, whole or split. */
	len += (size_t)snprintf(req + len, cap - len, "X-One-More: %s\r\n\r\n",
				"value-value-value-value-value-value-value-v");
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		struct admin_req r;

		admin_req_init(&r);
		assert_int_equal(feed_str(&r, req, steps[i]),
				 ADMIN_FEED_ERROR);
		assert_int_equal(r.fail_status, 413);
		assert_string_equal(r.fail_msg,
				    "request headers larger than 16 KiB");
		admin_req_free(&r);
	}
	free(req);
}

static void test_pipelined(void **state)
{
	static const char two[] = "GET /health HTTP/1.1\r\n\r\n"
				  "DELETE /vms/a HTTP/1.1\r\n"
				  "Connection: close\r\n\r\n";
	struct admin_req r;
	size_t rest, used;

	admin_req_init(&r);
	assert_int_equal(feed(&r, two, strlen(two), 0, &rest),
			 ADMIN_FEED_REQUEST);
	assert_string_equal(r.url, "/health");
	assert_true(r.began);
	r.began = false;
	assert_int_equal(rest, strlen(two) - 24);
	/* Paused until the answer: nothing is taken. */
	assert_int_equal(admin_req_feed(&r, (const uint8_t *)two + 24, rest,
					&used),
			 ADMIN_FEED_REQUEST);
	assert_int_equal(used, 0);
	assert_false(r.began);
	admin_req_next(&r);
	assert_int_equal(feed(&r, two + 24, rest, 0, &rest),
			 ADMIN_FEED_REQUEST);
	assert_int_equal(rest, 0);
	assert_int_equal(r.parser.method, HTTP_DELETE);
	assert_string_equal(r.url, "/vms/a");
	assert_true(r.close_after);
	admin_req_free(&r);
}

static void test_limits(void **state)
{
	struct admin_req r;
	char *big;
	size_t n;

	/* A declared body over 64 KiB is refused before any of it. */
	admin_req_init(&r);
	assert_int_equal(feed_str(&r, "PUT /vms/a HTTP/1.1\r\n"
				  "Content-Length: 65537\r\n\r\n", 0),
			 ADMIN_FEED_ERROR);
	assert_int_equal(r.fail_status, 413);
	assert_string_equal(r.fail_msg, "request body larger than 64 KiB");
	assert_null(r.body);
	admin_req_free(&r);

	/* A chunked one, once it gets there. */
	n = ADMIN_MAX_BODY + 4096;
	big = malloc(n + 64);
	assert_non_null(big);
	n = (size_t)snprintf(big, 64, "PUT /vms/a HTTP/1.1\r\n"
			     "Transfer-Encoding: chunked\r\n\r\n%zx\r\n",
			     (size_t)ADMIN_MAX_BODY + 1);
	memset(big + n, 'x', ADMIN_MAX_BODY + 1);
	admin_req_init(&r);
	assert_int_equal(feed(&r, big, n + ADMIN_MAX_BODY + 1, 4000, &n),
			 ADMIN_FEED_ERROR);
	assert_int_equal(r.fail_status, 413);
	assert_true(r.body_len <= ADMIN_MAX_BODY);
	admin_req_free(&r);
	free(big);

	/* A request target over 1 KiB: kept short, flagged for the 414. */
	big = malloc(2048);
	assert_non_null(big);
	memcpy(big, "GET /", 5);
	memset(big + 5, 'a', 1100);
	strcpy(big + 1105, " HTTP/1.1\r\n\r\n");
	for (n = 0; n <= 7; n += 7) {
		admin_req_init(&r);
		assert_int_equal(feed_str(&r, big, n), ADMIN_FEED_REQUEST);
		assert_true(r.url_long);
		assert_true(r.url_len <= ADMIN_MAX_URL);
		assert_int_equal(r.url[r.url_len], '\0');
		admin_req_free(&r);
	}
	free(big);

	/* One past the header limit too: still 414, not 413, whole or in
	 * reads of 7 or 4,000 bytes. */
	big = malloc(ADMIN_MAX_HEADERS + 64);
	assert_non_null(big);
	memcpy(big, "GET /", 5);
	memset(big + 5, 'a', ADMIN_MAX_HEADERS);
	strcpy(big + 5 + ADMIN_MAX_HEADERS, " HTTP/1.1\r\n\r\n");
	for (size_t i = 0; i < 3; i++) {
		static const size_t steps[] = { 0, 7, 4000 };

		admin_req_init(&r);
		assert_int_equal(feed_str(&r, big, steps[i]),
				 ADMIN_FEED_ERROR);
		assert_int_equal(r.fail_status, 414);
		admin_req_free(&r);
	}
	free(big);

	/* Malformed: 400, with http-parser's words. */
	admin_req_init(&r);
	assert_int_equal(feed_str(&r, "GET /vms HTTP/1.1\r\nBad Header\r\n\r\n",
				  0),
			 ADMIN_FEED_ERROR);
	assert_int_equal(r.fail_status, 400);
	assert_non_null(strstr(r.fail_msg, "malformed request: "));
	/* and stays failed */
	assert_int_equal(feed_str(&r, "GET / HTTP/1.1\r\n\r\n", 0),
			 ADMIN_FEED_ERROR);
	admin_req_free(&r);
}

static void test_continue_and_auth(void **state)
{
	struct admin_req r;
	char *long_auth;

	/* No body, or HTTP/1.0: no 100 Continue. */
	admin_req_init(&r);
	assert_int_equal(feed_str(&r, "POST /reload HTTP/1.1\r\n"
				  "Expect: 100-continue\r\n"
				  "Content-Length: 0\r\n\r\n", 0),
			 ADMIN_FEED_REQUEST);
	assert_false(r.want_continue);
	admin_req_free(&r);
	admin_req_init(&r);
	assert_int_equal(feed_str(&r, "PUT /vms/a HTTP/1.0\r\n"
				  "Expect: 100-continue\r\n"
				  "Content-Length: 2\r\n\r\n{}", 0),
			 ADMIN_FEED_REQUEST);
	assert_false(r.want_continue);
	assert_true(r.close_after);
	admin_req_free(&r);

	/* Given twice: bad, whatever the values. */
	admin_req_init(&r);
	assert_int_equal(feed_str(&r, "GET /vms HTTP/1.1\r\n"
				  "authorization: Bearer a\r\n"
				  "AUTHORIZATION: Bearer a\r\n\r\n", 1),
			 ADMIN_FEED_REQUEST);
	assert_true(r.auth_seen && r.auth_bad);
	admin_req_free(&r);

	/* Too long: bad, not cut short into a match. */
	long_auth = malloc(ADMIN_MAX_AUTH + 128);
	assert_non_null(long_auth);
	strcpy(long_auth, "GET /vms HTTP/1.1\r\nAuthorization: Bearer ");
	memset(long_auth + strlen(long_auth), 't', ADMIN_MAX_AUTH);
	strcpy(long_auth + strlen("GET /vms HTTP/1.1\r\nAuthorization: "
				  "Bearer ") + ADMIN_MAX_AUTH, "\r\n\r\n");
	admin_req_init(&r);
	assert_int_equal(feed_str(&r, long_auth, 100), ADMIN_FEED_REQUEST);
	assert_true(r.auth_seen && r.auth_bad);
	admin_req_free(&r);
	free(long_auth);
}

static void expect_route(enum http_method m, const char *url,
			 enum admin_ep ep, bool allowed, const char *id)
{
	struct admin_target t;

	admin_route(&t, m, url, strlen(url));
	if (t.ep != ep || t.allowed != allowed || strcmp(t.id, id)) {
		print_error("%s %s: ep %d allowed %d id '%s'\n",
			    http_method_str(m), url, t.ep, t.allowed, t.id);
		fail();
	}
}

static void test_routes(void **state)
{
	struct admin_target t;

	expect_route(HTTP_GET, "/health", AEP_HEALTH, true, "");
	expect_route(HTTP_POST, "/health", AEP_HEALTH, false, "");
	expect_route(HTTP_GET, "/vms", AEP_VMS, true, "");
	expect_route(HTTP_PUT, "/vms", AEP_VMS, false, "");
	expect_route(HTTP_GET, "/vms/vm1", AEP_VM, true, "vm1");
	expect_route(HTTP_PUT, "/vms/vm1?x=1", AEP_VM, true, "vm1");
	expect_route(HTTP_DELETE, "/vms/VM-2", AEP_VM, true, "VM-2");
	expect_route(HTTP_POST, "/vms/vm1", AEP_VM, false, "vm1");
	expect_route(HTTP_GET, "/vms/vm1/stats", AEP_VM_STATS, true, "vm1");
	expect_route(HTTP_PUT, "/vms/vm1/stats", AEP_VM_STATS, false, "vm1");
	/* "stats" alone is an ID; two segments are nothing. */
	expect_route(HTTP_GET, "/vms/stats", AEP_VM, true, "stats");
	expect_route(HTTP_GET, "/vms//stats", AEP_NOT_FOUND, false, "");
	expect_route(HTTP_GET, "/vms/a/b", AEP_NOT_FOUND, false, "");
	expect_route(HTTP_GET, "/vms/a/b/stats", AEP_NOT_FOUND, false, "");
	expect_route(HTTP_GET, "/vms/", AEP_NOT_FOUND, false, "");
	expect_route(HTTP_POST, "/reload", AEP_RELOAD, true, "");
	expect_route(HTTP_GET, "/reload", AEP_RELOAD, false, "");
	expect_route(HTTP_GET, "/fleet", AEP_FLEET, true, "");
	expect_route(HTTP_GET, "/metrics", AEP_METRICS, true, "");
	expect_route(HTTP_GET, "/metrics/", AEP_NOT_FOUND, false, "");
	expect_route(HTTP_GET, "http://admin:9901/vms/x", AEP_VM, true, "x");
	expect_route(HTTP_OPTIONS, "*", AEP_NOT_FOUND, false, "");
	expect_route(HTTP_GET, "http://admin:9901", AEP_BAD_URL, false, "");
	expect_route(HTTP_CONNECT, "admin:9901", AEP_BAD_URL, false, "");

	admin_route(&t, HTTP_GET, "/stats/vms?top=7", 16);
	assert_int_equal(t.ep, AEP_STATS_VMS);
	assert_int_equal(t.query_len, 5);
	assert_memory_equal(t.query, "top=7", 5);
	admin_route(&t, HTTP_GET, "/stats/vms", 10);
	assert_int_equal(t.query_len, 0);
	assert_string_equal(t.query, "");
	assert_string_equal(t.allow, "GET");
	admin_route(&t, HTTP_PATCH, "/vms/a", 6);
	assert_string_equal(t.allow, "GET, PUT, DELETE");
}

static void expect_bearer(const char *v, const char *tok)
{
	const char *t;
	size_t len;
	bool ok = admin_bearer(v, strlen(v), &t, &len);

	if (!tok) {
		assert_false(ok);
		return;
	}
	assert_true(ok);
	assert_int_equal(len, strlen(tok));
	assert_memory_equal(t, tok, len);
}

static void test_bearer_and_top(void **state)
{
	size_t n;

	expect_bearer("Bearer abc", "abc");
	expect_bearer("  bearer\t abc def \t", "abc def");
	expect_bearer("BEARER x", "x");
	expect_bearer("Bearer ", NULL); /* trailing blank trimmed: "Bearer" */
	expect_bearer("Bearer  \t", NULL);
	expect_bearer("Bearerabc", NULL);
	expect_bearer("Basic abc", NULL);
	expect_bearer("", NULL);

	assert_true(admin_parse_top(&n, "", 0));
	assert_int_equal(n, ADMIN_TOP_DEFAULT);
	assert_true(admin_parse_top(&n, "top=1", 5));
	assert_int_equal(n, 1);
	assert_true(admin_parse_top(&n, "top=10000", 9));
	assert_int_equal(n, ADMIN_TOP_MAX);
	assert_false(admin_parse_top(&n, "top=10001", 9));
	assert_false(admin_parse_top(&n, "top=0", 5));
	assert_false(admin_parse_top(&n, "top=", 4));
	assert_false(admin_parse_top(&n, "top=-1", 6));
	assert_false(admin_parse_top(&n, "top=99999999999999999999999", 27));
	assert_false(admin_parse_top(&n, "x=5", 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_in_any_split),
		cmocka_unit_test(test_header_limit_any_split),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_continue_and_auth),
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_bearer_and_top),
	};

	return cmocka_run_group_tests_name("admin_parse", tests, NULL, NULL);
}
