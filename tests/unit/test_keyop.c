/* tests/unit/test_keyop.c: the signer wire format (signer/keyop.h): each
 * message type round-trips; every prefix of a frame is NEED_MORE and
 * every split of two frames decodes both; bounds, unknown types, trailing
 * bytes and error answers with a signature are BAD; an UNLOAD is exactly
 * a key id; the encoder refuses what the decoder would. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "signer/keyop.h"

static const uint8_t input[] = "signed content: 64 spaces, a context, a hash";

static size_t enc(uint8_t *out, size_t cap, const struct keyop_msg *m)
{
	size_t len;

	assert_true(keyop_encode(out, &len, cap, m));
	return len;
}

static void test_round_trips(void **state)
{
	const struct keyop_msg msgs[] = {
		{ .type = KEYOP_SIGN, .id = 0x0102030405060708ull,
		  .key_id = 0xfedcba9876543210ull, .sigalg = 0x0403,
		  .data = input, .data_len = sizeof(input) },
		{ .type = KEYOP_LOAD, .id = 7, .key_id = 9,
		  .data = (const uint8_t *)"/etc/k.pem", .data_len = 10 },
		{ .type = KEYOP_ANSWER, .id = 1, .status = KEYOP_STATUS_OK,
		  .data = input, .data_len = 12 },
		{ .type = KEYOP_ANSWER, .id = 2,
		  .status = KEYOP_STATUS_NO_KEY },
		{ .type = KEYOP_UNLOAD, .id = 3,
		  .key_id = 0x8877665544332211ull },
	};
	uint8_t buf[KEYOP_FRAME_MAX];
	struct keyop_msg m;
	size_t i, len, used;

	(void)state;
	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		len = enc(buf, sizeof(buf), &msgs[i]);
		assert_int_equal(keyop_decode(&m, &used, buf, len), KEYOP_OK);
		assert_int_equal(used, len);
		assert_int_equal(m.type, msgs[i].type);
		assert_true(m.id == msgs[i].id);
		assert_true(m.key_id == (msgs[i].type == KEYOP_ANSWER
						 ? 0 : msgs[i].key_id));
		assert_int_equal(m.sigalg, msgs[i].sigalg);
		assert_int_equal(m.status, msgs[i].status);
		assert_int_equal(m.data_len, msgs[i].data_len);
		if (m.data_len)
			assert_memory_equal(m.data, msgs[i].data, m.data_len);
	}
}

static void test_every_prefix_needs_more(void **state)
{
	const struct keyop_msg s = { .type = KEYOP_SIGN, .id = 3, .key_id = 4,
				     .sigalg = 0x0804, .data = input,
				     .data_len = sizeof(input) };
	uint8_t buf[KEYOP_FRAME_MAX];
	struct keyop_msg m;
	size_t len = enc(buf, sizeof(buf), &s), used, i;

	(void)state;
	for (i = 0; i < len; i++)
		assert_int_equal(keyop_decode(&m, &used, buf, i),
				 KEYOP_NEED_MORE);
}

static void test_two_frames_split_anywhere(void **state)
{
	const struct keyop_msg a = { .type = KEYOP_ANSWER, .id = 10,
				     .data = input, .data_len = 20 };
	const struct keyop_msg b = { .type = KEYOP_ANSWER, .id = 11,
				     .status = KEYOP_STATUS_FAILED };
	uint8_t buf[2 * KEYOP_FRAME_MAX];
	size_t la = enc(buf, sizeof(buf), &a), lb, cut, used;
	struct keyop_msg m;

	(void)state;
	lb = enc(buf + la, sizeof(buf) - la, &b);
	/* A reader that has |cut| bytes decodes what is whole of them. */
	for (cut = 0; cut <= la + lb; cut++) {
		enum keyop_parse p = keyop_decode(&m, &used, buf, cut);

		if (cut < la) {
			assert_int_equal(p, KEYOP_NEED_MORE);
			continue;
		}
		assert_int_equal(p, KEYOP_OK);
		assert_true(m.id == 10);
		assert_int_equal(used, la);
		p = keyop_decode(&m, &used, buf + la, cut - la);
		assert_int_equal(p, cut == la + lb ? KEYOP_OK
						   : KEYOP_NEED_MORE);
	}
	assert_true(m.id == 11);
	assert_int_equal(m.status, KEYOP_STATUS_FAILED);
}

/* A valid SIGN frame, then one byte changed or added. */
static void test_bad_frames(void **state)
{
	const struct keyop_msg s = { .type = KEYOP_SIGN, .id = 1, .key_id = 2,
				     .sigalg = 0x0403, .data = input,
				     .data_len = 8 };
	uint8_t buf[KEYOP_FRAME_MAX + 8], bad[KEYOP_FRAME_MAX + 8];
	size_t len = enc(buf, sizeof(buf), &s), used;
	struct keyop_msg m;

	(void)state;
	/* An announced body over the bound: bad before it arrives. */
	memcpy(bad, "\x00\x00\xff\xff", 4);
	assert_int_equal(keyop_decode(&m, &used, bad, 4), KEYOP_BAD);
	memcpy(bad, "\x00\x00\x00\x00", 4); /* empty body */
	assert_int_equal(keyop_decode(&m, &used, bad, 4), KEYOP_BAD);
	/* An unknown type. */
	memcpy(bad, buf, len);
	bad[4] = 9;
	assert_int_equal(keyop_decode(&m, &used, bad, len), KEYOP_BAD);
	/* A trailing byte inside the frame. */
	memcpy(bad, buf, len);
	bad[3]++;
	bad[len] = 0;
	assert_int_equal(keyop_decode(&m, &used, bad, len + 1), KEYOP_BAD);
	/* An input length that runs past the frame. */
	memcpy(bad, buf, len);
	bad[len - 8 - 1]++;
	assert_int_equal(keyop_decode(&m, &used, bad, len), KEYOP_BAD);
	/* An error answer that carries bytes; a status past the last. */
	{
		const uint8_t err_sig[] = { 0, 0, 0, 13, KEYOP_ANSWER,
					    0, 0, 0, 0, 0, 0, 0, 1,
					    KEYOP_STATUS_FAILED, 0, 1, 0xaa };
		uint8_t st[sizeof(err_sig)];

		assert_int_equal(keyop_decode(&m, &used, err_sig,
					      sizeof(err_sig)),
				 KEYOP_BAD);
		memcpy(st, err_sig, sizeof(st));
		st[13] = KEYOP_STATUS_MAX + 1;
		st[3] = 12; /* no bytes: only the status is wrong */
		assert_int_equal(keyop_decode(&m, &used, st, 16), KEYOP_BAD);
	}
	/* A LOAD without a path. */
	{
		const uint8_t load[] = { 0, 0, 0, 19, KEYOP_LOAD,
					 0, 0, 0, 0, 0, 0, 0, 1,
					 0, 0, 0, 0, 0, 0, 0, 2, 0, 0 };

		assert_int_equal(keyop_decode(&m, &used, load, sizeof(load)),
				 KEYOP_BAD);
	}
}

/* UNLOAD := type, id, key_id: 17 bytes of body, no more, no less. */
static void test_unload_frame(void **state)
{
	const struct keyop_msg u = { .type = KEYOP_UNLOAD, .id = 5,
				     .key_id = 0x0102030405060708ull };
	const uint8_t want[] = { 0, 0, 0, 17, KEYOP_UNLOAD,
				 0, 0, 0, 0, 0, 0, 0, 5,
				 1, 2, 3, 4, 5, 6, 7, 8 };
	uint8_t buf[KEYOP_FRAME_MAX], bad[sizeof(want) + 2];
	size_t len = enc(buf, sizeof(buf), &u), used, i;
	struct keyop_msg m;

	(void)state;
	assert_int_equal(len, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	for (i = 0; i < len; i++)
		assert_int_equal(keyop_decode(&m, &used, buf, i),
				 KEYOP_NEED_MORE);
	assert_int_equal(keyop_decode(&m, &used, buf, len), KEYOP_OK);
	assert_true(m.key_id == u.key_id && !m.data_len && !m.data);
	/* A LOAD's empty u16 length after the key id: a trailing field. */
	memcpy(bad, want, sizeof(want));
	bad[3] += 2;
	bad[sizeof(want)] = bad[sizeof(want) + 1] = 0;
	assert_int_equal(keyop_decode(&m, &used, bad, sizeof(bad)), KEYOP_BAD);
	/* A key id cut short inside its frame. */
	memcpy(bad, want, sizeof(want));
	bad[3] -= 1;
	assert_int_equal(keyop_decode(&m, &used, bad, sizeof(want) - 1),
			 KEYOP_BAD);
	/* Nothing to carry: the encoder refuses data. */
	m = u;
	m.data = input;
	m.data_len = 1;
	assert_false(keyop_encode(buf, &len, sizeof(buf), &m));
	assert_int_equal(len, 0);
}

static void test_encoder_bounds(void **state)
{
	static uint8_t big[KEYOP_DATA_MAX + 1];
	struct keyop_msg m = { .type = KEYOP_SIGN, .data = big,
			       .data_len = KEYOP_DATA_MAX };
	uint8_t buf[KEYOP_FRAME_MAX], one[1];
	size_t len, used;
	struct keyop_msg d;

	(void)state;
	/* The largest frame fits KEYOP_FRAME_MAX exactly, and decodes. */
	assert_true(keyop_encode(buf, &len, sizeof(buf), &m));
	assert_int_equal(len, KEYOP_FRAME_MAX);
	assert_int_equal(keyop_decode(&d, &used, buf, len), KEYOP_OK);
	m.data_len++;
	assert_false(keyop_encode(buf, &len, sizeof(buf), &m));
	assert_int_equal(len, 0);
	m.data_len = 1;
	assert_false(keyop_encode(one, &len, sizeof(one), &m));
	m = (struct keyop_msg){ .type = KEYOP_LOAD }; /* no path */
	assert_false(keyop_encode(buf, &len, sizeof(buf), &m));
	m = (struct keyop_msg){ .type = KEYOP_ANSWER,
				.status = KEYOP_STATUS_NO_KEY, .data = input,
				.data_len = 1 };
	assert_false(keyop_encode(buf, &len, sizeof(buf), &m));
	m = (struct keyop_msg){ .type = 0 };
	assert_false(keyop_encode(buf, &len, sizeof(buf), &m));
}

static void test_key_id(void **state)
{
	uint8_t d[32] = { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
			  0xff };

	(void)state;
	assert_true(keyop_key_id(d) == 0x0123456789abcdefull);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_every_prefix_needs_more),
		cmocka_unit_test(test_two_frames_split_anywhere),
		cmocka_unit_test(test_bad_frames),
		cmocka_unit_test(test_unload_frame),
		cmocka_unit_test(test_encoder_bounds),
		cmocka_unit_test(test_key_id),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
