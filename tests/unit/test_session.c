/* tests/unit/test_session.c: tls/session.c's output buffer.
 *
 * The output is sent straight from its buffer and stays pinned while the
 * send is in flight. Its limit bounds the bytes pending, not where they
 * sit: after a partial send, the pending bytes sit at an offset, and
 * appending must still take up to the limit in pending bytes (a slow
 * client once turned a partial send into "TLS output over its limit").
 * The raw path (tls_conn_queue_raw, used before any SSL object exists)
 * reaches the same buffer code as the SSL object's BIO.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tls/session.h"

#define LIMIT 1000

static uint8_t pattern[4 * LIMIT];

static void fill_pattern(void)
{
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7 + i / 251);
}

/* Pops |n| bytes as a completed send would, checking they are the next
 * |n| of pattern from *|pos|. The buffer is pinned from peek to consume. */
static void send_and_check(struct tls_conn *t, size_t n, size_t *pos)
{
	const uint8_t *data;
	size_t len;

	tls_conn_out_peek(t, &data, &len);
	assert_true(len >= n);
	assert_memory_equal(data, pattern + *pos, n);
	tls_conn_out_consume(t, n);
	*pos += n;
}

static void test_partial_send_then_fill_to_limit(void **state)
{
	struct tls_conn t = { 0 };
	const uint8_t *data, *pinned;
	size_t len, pos = 0, queued = 0;

	(void)state;
	tls_conn_init(&t, LIMIT, 443);
	assert_true(tls_conn_queue_raw(&t, pattern, 600));
	queued = 600;
	/* A send of all 600 completes with 500: 100 pending at offset 500. */
	tls_conn_out_peek(&t, &data, &len);
	assert_int_equal(len, 600);
	tls_conn_out_consume(&t, 500);
	pos = 500;
	/* The next send is posted (pinned) and the VM's bytes come in: 100
	 * pending plus 900 is exactly the limit. */
	tls_conn_out_peek(&t, &pinned, &len);
	assert_int_equal(len, 100);
	assert_true(tls_conn_queue_raw(&t, pattern + queued, 900));
	queued += 900;
	assert_int_equal(tls_conn_out_len(&t), LIMIT);
	/* The in-flight send's bytes did not move under the kernel. */
	assert_memory_equal(pinned, pattern + 500, 100);
	/* One byte more is over the limit. */
	assert_false(tls_conn_queue_raw(&t, pattern + queued, 1));
	/* The send completes; everything arrives in order. */
	tls_conn_out_consume(&t, 100);
	pos += 100;
	send_and_check(&t, 400, &pos);
	send_and_check(&t, 500, &pos);
	assert_int_equal(pos, queued);
	assert_int_equal(tls_conn_out_len(&t), 0);
	tls_conn_free(&t);
}

/* Byte |p| of the stream the rounds test sends. */
static uint8_t stream_byte(size_t p)
{
	return (uint8_t)(p * 7 + p / 251);
}

/* Many rounds of partial sends with appends while pinned: the pending
 * bytes always come out in order and the limit holds exactly. */
static void test_rounds(void **state)
{
	struct tls_conn t = { 0 };
	size_t queued = 0, pos = 0;
	unsigned seed = 1;
	uint8_t chunk[LIMIT];

	(void)state;
	tls_conn_init(&t, LIMIT, 443);
	for (int round = 0; round < 5000; round++) {
		const uint8_t *data;
		size_t len, add, sent;

		seed = seed * 1103515245 + 12345;
		/* A send is posted (pinned) for what is pending now... */
		tls_conn_out_peek(&t, &data, &len);
		sent = (seed >> 16) % (len + 1);
		/* ...more comes in while it is in flight... */
		add = (seed >> 8) % 600;
		for (size_t i = 0; i < add; i++)
			chunk[i] = stream_byte(queued + i);
		if (queued - pos + add <= LIMIT) {
			assert_true(tls_conn_queue_raw(&t, chunk, add));
			queued += add;
		} else {
			assert_false(tls_conn_queue_raw(&t, chunk, add));
		}
		/* ...and it completes with |sent| bytes. */
		tls_conn_out_peek(&t, &data, &len);
		assert_int_equal(len, queued - pos);
		for (size_t i = 0; i < len; i++)
			assert_int_equal(data[i], stream_byte(pos + i));
		tls_conn_out_consume(&t, sent);
		pos += sent;
	}
	tls_conn_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_partial_send_then_fill_to_limit),
		cmocka_unit_test(test_rounds),
	};

	fill_pattern();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
