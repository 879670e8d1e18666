/* tests/unit/test_log.c: core/log.c's log_escape, the one escaper for
 * untrusted bytes in log lines (reject sni=, admin path=) and in the
 * values config errors quote (ld_show). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/log.h"

static void test_escape(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
		{ "vm1.vm.test", 11, "vm1.vm.test" },
		{ "", 0, "-" },
		{ "a b", 3, "a\\x20b" },
		{ "a\"b\\c", 5, "a\\x22b\\x5cc" },
		{ "\x1b[31m\n", 6, "\\x1b[31m\\x0a" },
		{ "\x00\x7f\x80\xff", 4, "\\x00\\x7f\\x80\\xff" },
		{ "!~", 2, "!~" },
		{ "-", 1, "-" },
	};
	char out[64];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(log_escape(out, sizeof(out), cases[i].in,
					       cases[i].len),
				    cases[i].out);
	assert_string_equal(log_escape(out, sizeof(out), NULL, 3), "-");
}

/* A buffer of LOG_ESCAPED_MAX(n) holds any n bytes whole; a smaller one
 * cuts at a whole byte (never half an escape), says "...", stays in cap. */
static void test_escape_cut(void **state)
{
	uint8_t in[255];
	char big[LOG_ESCAPED_MAX(255)], small[12];
	size_t i;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)i;
	log_escape(big, sizeof(big), in, sizeof(in));
	assert_null(strstr(big, "..."));
	/* 92 bytes print as themselves (0x21..0x7e but '"', '\\'). */
	assert_int_equal(strlen(big), 92 + 4 * (255 - 92));
	memset(in, 0, sizeof(in));
	log_escape(big, sizeof(big), in, sizeof(in));
	assert_int_equal(strlen(big), 4 * 255);

	/* 11 chars: two escapes (8) and "...". */
	assert_string_equal(log_escape(small, sizeof(small), in, 3),
			    "\\x00\\x00...");
	assert_string_equal(log_escape(small, sizeof(small), "abcdefghijk",
				       11),
			    "abcdefghijk");
	assert_string_equal(log_escape(small, sizeof(small), "abcdefghijkl",
				       12),
			    "abcdefgh...");
	assert_string_equal(log_escape(small, 5, "ab", 2), "ab");
	assert_string_equal(log_escape(small, 5, "abcde", 5), "a...");
	assert_string_equal(log_escape(small, 5, "\n", 1), "\\x0a");
	assert_string_equal(log_escape(small, 5, "\n\n", 2), "...");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_escape_cut),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
