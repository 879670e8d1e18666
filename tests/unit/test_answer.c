/* tests/unit/test_answer.c: core/answer.c, what a client whose VM cannot
 * be reached is told: which first bytes are an HTTP/1.x request line
 * (every prefix of one waits for more, never decides wrongly), and the
 * 502/503 texts for each cause. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/answer.h"

static enum answer_http line(const char *s)
{
	return answer_http_line((const uint8_t *)s, strlen(s));
}

static void test_request_lines(void **state)
{
	static const char *const http[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\n",
		"GET /health HTTP/1.0\n",
		"OPTIONS * HTTP/1.1\r\n",
		"PROPPATCH /a?b=c HTTP/1.1\r\n",
	};
	static const char *const not_http[] = {
		"hello?\n",
		"SSH-2.0-OpenSSH_9.2\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", /* the h2 preface */
		"GET / HTTP/1.2\r\n",
		"GET / HTTP/1.1 \r\n",
		"GET / HTTP/1.1\rX",
		"GET  / HTTP/1.1\r\n",
		"get / HTTP/1.1\r\n",
		"GE / HTTP/1.1\r\n",
		"ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n",
		"GET /\x01 HTTP/1.1\r\n",
		"\x16\x03\x01",
	};
	size_t i, k;

	for (i = 0; i < sizeof(http) / sizeof(http[0]); i++) {
		assert_int_equal(line(http[i]), ANSWER_HTTP);
		/* Every prefix of the line waits. */
		for (k = 0; http[i][k] != '\n'; k++)
			if (answer_http_line((const uint8_t *)http[i], k) !=
			    ANSWER_NEED_MORE)
				fail_msg("'%s' cut at %zu did not wait",
					 http[i], k);
	}
	for (i = 0; i < sizeof(not_http) / sizeof(not_http[0]); i++)
		if (line(not_http[i]) != ANSWER_NOT_HTTP)
			fail_msg("'%s' taken for HTTP or waited on",
				 not_http[i]);
}

/* A target longer than is looked at: HTTP if it started as one; and a
 * method that never ends is not waited on. */
static void test_long_lines(void **state)
{
	uint8_t buf[ANSWER_LINE_MAX + 100];

	memset(buf, 'a', sizeof(buf));
	memcpy(buf, "GET /", 5);
	assert_int_equal(answer_http_line(buf, sizeof(buf)), ANSWER_HTTP);
	assert_int_equal(answer_http_line(buf, 500), ANSWER_NEED_MORE);
	memset(buf, 'A', sizeof(buf));
	assert_int_equal(answer_http_line(buf, sizeof(buf)), ANSWER_NOT_HTTP);
	assert_int_equal(answer_http_line(buf, 16), ANSWER_NEED_MORE);
	assert_int_equal(answer_http_line(buf, 17), ANSWER_NOT_HTTP);
	assert_int_equal(answer_http_line(buf, 0), ANSWER_NEED_MORE);
}

static void expect_answer(const struct answer_vm *a, const char *status,
			  const char *text)
{
	char out[ANSWER_MAX], want[ANSWER_MAX];
	size_t n = answer_vm_error(out, sizeof(out), a);

	snprintf(want, sizeof(want),
		 "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
		 "Content-Length: %zu\r\nCache-Control: no-store\r\n"
		 "Connection: close\r\n\r\n%s\n",
		 status, strlen(text) + 1, text);
	assert_int_equal(n, strlen(want));
	assert_string_equal(out, want);
	assert_int_equal(answer_vm_error(out, n, a), 0);
	assert_int_equal(answer_vm_error(out, n + 1, a), n);
}

static void test_texts(void **state)
{
	struct answer_vm a = {
		.vm_id = "45a68069-defc-4233-9865-6298d87053af",
		.port = 3000,
		.err = ECONNREFUSED,
		.timeout_ms = 5000,
	};

	expect_answer(&a, "502 Bad Gateway",
		      "nothing accepts on port 3000 of VM "
		      "45a68069-defc-4233-9865-6298d87053af over IPv6 "
		      "(connection refused): the service must listen on '::' "
		      "(a service bound to 0.0.0.0 only is unreachable)");
	a.draining = true;
	expect_answer(&a, "503 Service Unavailable",
		      "nothing accepts on port 3000 of VM "
		      "45a68069-defc-4233-9865-6298d87053af over IPv6 "
		      "(connection refused): the service must listen on '::' "
		      "(a service bound to 0.0.0.0 only is unreachable)");
	a.draining = false;
	a.vm_id = "vm1";
	a.err = ETIMEDOUT;
	expect_answer(&a, "502 Bad Gateway",
		      "VM vm1 did not answer a connection to port 3000 within "
		      "5000 ms (connection timed out): is the VM running?");
	a.err = EHOSTUNREACH;
	expect_answer(&a, "502 Bad Gateway",
		      "VM vm1 cannot be reached for port 3000 (No route to "
		      "host): is the VM running?");
	a.err = EMFILE;
	expect_answer(&a, "502 Bad Gateway",
		      "cannot connect to port 3000 of VM vm1 (Too many open "
		      "files)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_lines),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_texts),
	};

	return cmocka_run_group_tests_name("answer", tests, NULL, NULL);
}
