/* tests/unit/test_buf.c: struct buf keeps its invariant through every
 * operation, grows in powers of two up to its limit, and compacts rather
 * than grows when that is enough. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "tls/buf.h"

static void test_zero_is_empty(void **state)
{
	struct buf b = { 0 };

	(void)state;
	assert_true(buf_ok(&b));
	assert_int_equal(buf_room(&b), 0);
	buf_free(&b); /* a no-op on all zero */
	assert_true(buf_ok(&b));
}

static void test_invariant_catches_bad_states(void **state)
{
	uint8_t block[8];
	struct buf b = { .data = block, .off = 4, .len = 5, .cap = 8 };

	(void)state;
	assert_false(buf_ok(&b)); /* off + len > cap */
	b = (struct buf){ .off = 1 };
	assert_false(buf_ok(&b)); /* no block but an offset */
	b = (struct buf){ .data = block, .off = UINT32_MAX, .len = 2,
			  .cap = 8 };
	assert_false(buf_ok(&b)); /* the sum must not wrap */
	b = (struct buf){ .data = block, .off = 3, .len = 5, .cap = 8 };
	assert_true(buf_ok(&b));
}

static void test_append_consume(void **state)
{
	struct buf b = { 0 };

	(void)state;
	assert_true(buf_append(&b, "hello", 5, 16, 1024));
	assert_int_equal(b.cap, 16);
	assert_int_equal(b.len, 5);
	assert_memory_equal(buf_head(&b), "hello", 5);
	buf_consume(&b, 2);
	assert_true(buf_ok(&b));
	assert_int_equal(b.off, 2);
	assert_memory_equal(buf_head(&b), "llo", 3);
	assert_int_equal(buf_room(&b), 16 - 5);
	buf_consume(&b, 3);
	/* Empty: the next byte goes to the start again. */
	assert_int_equal(b.off, 0);
	assert_int_equal(b.len, 0);
	assert_non_null(b.data);
	buf_free(&b);
	assert_null(b.data);
	assert_true(buf_ok(&b));
}

static void test_compacts_before_growing(void **state)
{
	struct buf b = { 0 };
	uint8_t bytes[16];

	(void)state;
	memset(bytes, 'a', sizeof(bytes));
	assert_true(buf_append(&b, bytes, 12, 16, 1024));
	buf_consume(&b, 10); /* 2 bytes left at offset 10 */
	assert_true(buf_append(&b, "0123456789", 10, 16, 1024));
	assert_int_equal(b.cap, 16); /* moved, not grown */
	assert_int_equal(b.off, 0);
	assert_int_equal(b.len, 12);
	assert_memory_equal(buf_head(&b), "aa0123456789", 12);
	assert_true(buf_ok(&b));
	buf_free(&b);
}

static void test_grows_in_powers_of_two_to_the_limit(void **state)
{
	uint8_t bytes[300];
	struct buf b = { 0 };

	(void)state;
	memset(bytes, 'x', sizeof(bytes));
	assert_true(buf_append(&b, bytes, 17, 16, 200));
	assert_int_equal(b.cap, 32);
	assert_true(buf_append(&b, bytes, 100, 16, 200));
	assert_int_equal(b.cap, 128);
	/* 117 + 83 = 200: the limit itself, not the next power of two. */
	assert_true(buf_append(&b, bytes, 83, 16, 200));
	assert_int_equal(b.cap, 200);
	assert_int_equal(b.len, 200);
	/* Past the limit: refused, nothing changed. */
	assert_false(buf_append(&b, bytes, 1, 16, 200));
	assert_int_equal(b.len, 200);
	assert_int_equal(b.cap, 200);
	assert_true(buf_ok(&b));
	/* Room made by consuming is found by compacting. */
	buf_consume(&b, 50);
	assert_true(buf_append(&b, bytes, 50, 16, 200));
	assert_int_equal(b.len, 200);
	assert_int_equal(b.off, 0);
	assert_false(buf_reserve(&b, (size_t)UINT32_MAX + 1, 16, UINT32_MAX));
	buf_free(&b);
}

static void test_lent_block(void **state)
{
	/* core/relay.c lends a block of its own and sets cap. */
	uint8_t block[64];
	struct buf b = { .data = block, .cap = sizeof(block) };

	(void)state;
	assert_true(buf_ok(&b));
	memcpy(buf_tail(&b), "abc", 3);
	b.len += 3;
	assert_int_equal(buf_room(&b), 61);
	buf_consume(&b, 3);
	assert_int_equal(buf_room(&b), 64);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_is_empty),
		cmocka_unit_test(test_invariant_catches_bad_states),
		cmocka_unit_test(test_append_consume),
		cmocka_unit_test(test_compacts_before_growing),
		cmocka_unit_test(test_grows_in_powers_of_two_to_the_limit),
		cmocka_unit_test(test_lent_block),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
