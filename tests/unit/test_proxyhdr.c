/* tests/unit/test_proxyhdr.c: core/proxyhdr.c's PROXY protocol headers,
 * against bytes written out by hand from haproxy's proxy-protocol.txt
 * (section 2.1 for version 1, 2.2 for version 2's header, address block
 * and TLVs), not from the encoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "core/proxyhdr.h"

static struct sockaddr_in6 sa(const char *addr, uint16_t port)
{
	struct sockaddr_in6 s;
	char mapped[64];

	memset(&s, 0, sizeof(s));
	s.sin6_family = AF_INET6;
	s.sin6_port = htons(port);
	if (!strchr(addr, ':')) {
		snprintf(mapped, sizeof(mapped), "::ffff:%s", addr);
		addr = mapped;
	}
	assert_int_equal(inet_pton(AF_INET6, addr, &s.sin6_addr), 1);
	return s;
}

static void expect_v2(const struct proxyhdr_info *in, const uint8_t *want,
		      size_t want_len)
{
	uint8_t out[PROXYHDR_MAX];
	size_t len, cap;

	assert_true(proxyhdr_v2(out, &len, sizeof(out), in));
	assert_int_equal(len, want_len);
	assert_memory_equal(out, want, want_len);
	/* Exactly its length fits; one byte less never does. */
	assert_true(proxyhdr_v2(out, &len, want_len, in));
	for (cap = 0; cap < want_len; cap++) {
		assert_false(proxyhdr_v2(out, &len, cap, in));
		assert_int_equal(len, 0);
	}
}

/* An IPv4 client, no TLVs: section 2.2's smallest PROXY header. */
static void test_v2_ipv4(void **state)
{
	static const uint8_t want[] = {
		/* signature */
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
		0x54, 0x0a,
		0x21,       /* version 2, PROXY */
		0x11,       /* AF_INET, STREAM */
		0x00, 0x0c, /* 12 bytes follow */
		192, 0, 2, 1,     /* src_addr */
		198, 51, 100, 7,  /* dst_addr */
		0xdc, 0x04, /* src_port 56324 */
		0x01, 0xbb, /* dst_port 443 */
	};
	struct proxyhdr_info in = {
		.src = sa("192.0.2.1", 56324),
		.dst = sa("198.51.100.7", 443),
	};

	expect_v2(&in, want, sizeof(want));
}

/* An IPv6 client with every TLV vmgate sends. */
static void test_v2_ipv6_tlvs(void **state)
{
	static const uint8_t want[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
		0x54, 0x0a,
		0x21,
		0x21,       /* AF_INET6, STREAM */
		0x00, 0x56, /* 36 + 5 + 6 + 34 + 5 = 86 bytes follow */
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
		0x9c, 0x40, /* 40000 */
		0x01, 0xbb, /* 443 */
		0x01, 0x00, 0x02, 'h', '2',            /* PP2_TYPE_ALPN */
		0x02, 0x00, 0x03, 'a', '.', 'b',       /* PP2_TYPE_AUTHORITY */
		0x20, 0x00, 0x1f,                      /* PP2_TYPE_SSL, 31 */
		0x01,                                  /* PP2_CLIENT_SSL */
		0x00, 0x00, 0x00, 0x00,                /* verify: ok */
		0x21, 0x00, 0x07, 'T', 'L', 'S', 'v', '1', '.', '3',
		0x23, 0x00, 0x01, 'X',                 /* _CIPHER */
		0x24, 0x00, 0x01, 'Y',                 /* _SIG_ALG */
		0x25, 0x00, 0x05, 'E', 'C', '2', '5', '6', /* _KEY_ALG */
		0x05, 0x00, 0x02, 0x01, 0x02,          /* PP2_TYPE_UNIQUE_ID */
	};
	static const uint8_t id[] = { 0x01, 0x02 };
	struct proxyhdr_info in = {
		.src = sa("2001:db8::1", 40000),
		.dst = sa("2001:db8::2", 443),
		.authority = (const uint8_t *)"a.b",
		.authority_len = 3,
		.alpn = (const uint8_t *)"h2",
		.alpn_len = 2,
		.ssl = true,
		.ssl_version = "TLSv1.3",
		.ssl_cipher = "X",
		.ssl_sig_alg = "Y",
		.ssl_key_alg = "EC256",
		.unique_id = id,
		.unique_id_len = sizeof(id),
	};

	expect_v2(&in, want, sizeof(want));
}

/* An IPv4 client reached over an IPv6 address (a v4-mapped peer, a
 * native local address) is not AF_INET: both must be IPv4 for that. An
 * absent ALPN, an SSL TLV with no sub-TLVs. */
static void test_v2_mixed_family(void **state)
{
	static const uint8_t want[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
		0x54, 0x0a,
		0x21, 0x21,
		0x00, 0x2c, /* 36 + 8 */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		0x00, 0x50, 0x01, 0xbb,
		0x20, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00,
	};
	struct proxyhdr_info in = {
		.src = sa("10.0.0.1", 80),
		.dst = sa("::1", 443),
		.ssl = true,
	};

	expect_v2(&in, want, sizeof(want));
}

/* A verified client certificate (proxy-protocol.txt 2.2.5): client
 * PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS, verify 0,
 * its CN after the version; a resumed session's: _SESS only. */
static void test_v2_client_cert(void **state)
{
	static const uint8_t want[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49,
		0x54, 0x0a,
		0x21, 0x11,
		0x00, 0x24,                       /* 12 + 3 + 21 */
		192, 0, 2, 1, 192, 0, 2, 2,       /* src, dst */
		0x9c, 0x40, 0x01, 0xbb,           /* 40000, 443 */
		0x20, 0x00, 0x15,                 /* PP2_TYPE_SSL, 21 */
		0x07,                             /* SSL | CERT_CONN | SESS */
		0x00, 0x00, 0x00, 0x00,           /* verify: ok */
		0x21, 0x00, 0x07, 'T', 'L', 'S', 'v', '1', '.', '3',
		0x22, 0x00, 0x03, 'b', 'o', 'b',  /* _CN */
	};
	uint8_t resumed[sizeof(want)];
	struct proxyhdr_info in = {
		.src = sa("::ffff:192.0.2.1", 40000),
		.dst = sa("::ffff:192.0.2.2", 443),
		.ssl = true,
		.ssl_version = "TLSv1.3",
		.client_cert = true,
		.client_cert_conn = true,
		.ssl_cn = "bob",
	};

	expect_v2(&in, want, sizeof(want));
	memcpy(resumed, want, sizeof(want));
	resumed[31] = 0x05;
	in.client_cert_conn = false;
	expect_v2(&in, resumed, sizeof(resumed));
	/* No certificate: no CN, whatever the field holds. */
	in.client_cert = false;
	resumed[15] = 0x1e;
	resumed[30] = 0x0f;
	resumed[31] = 0x01;
	expect_v2(&in, resumed, sizeof(resumed) - 6);
}

static void test_v2_limits(void **state)
{
	uint8_t out[PROXYHDR_MAX], id[PROXYHDR_UNIQUE_ID_MAX + 1], name[255];
	struct proxyhdr_info in = {
		.src = sa("2001:db8::1", 1),
		.dst = sa("2001:db8::2", 2),
		.unique_id = id,
		.unique_id_len = sizeof(id),
	};
	size_t len = 1;

	memset(id, 'i', sizeof(id));
	memset(name, 'n', sizeof(name));
	assert_false(proxyhdr_v2(out, &len, sizeof(out), &in));
	assert_int_equal(len, 0);
	in.unique_id_len = PROXYHDR_UNIQUE_ID_MAX;
	assert_true(proxyhdr_v2(out, &len, sizeof(out), &in));
	assert_int_equal(len, 16 + 36 + 3 + 128);
	/* The largest names and the longest TLS strings fit PROXYHDR_MAX. */
	in.authority = name;
	in.authority_len = sizeof(name);
	in.alpn = name;
	in.alpn_len = sizeof(name);
	in.ssl = true;
	in.ssl_version = in.ssl_cipher = in.ssl_sig_alg = in.ssl_key_alg =
		in.ssl_cn =
		"0123456789012345678901234567890123456789012345678901234567890123";
	in.client_cert = true;
	assert_true(proxyhdr_v2(out, &len, sizeof(out), &in));
	assert_int_equal(len, PROXYHDR_MAX);
}

static void test_v1(void **state)
{
	static const struct {
		const char *src, *dst;
		uint16_t sport, dport;
		const char *want;
	} cases[] = {
		{ "192.0.2.1", "198.51.100.7", 56324, 443,
		  "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n" },
		{ "2001:db8::1", "2001:db8::2", 40000, 443,
		  "PROXY TCP6 2001:db8::1 2001:db8::2 40000 443\r\n" },
		{ "10.0.0.1", "::1", 80, 443,
		  "PROXY TCP6 ::ffff:10.0.0.1 ::1 80 443\r\n" },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535, 65535,
		  "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n" },
	};
	uint8_t out[PROXYHDR_V1_MAX];
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proxyhdr_info in = {
			.src = sa(cases[i].src, cases[i].sport),
			.dst = sa(cases[i].dst, cases[i].dport),
		};

		assert_true(proxyhdr_v1(out, &len, sizeof(out), &in));
		assert_int_equal(len, strlen(cases[i].want));
		assert_memory_equal(out, cases[i].want, len);
		assert_false(proxyhdr_v1(out, &len, 10, &in));
		assert_int_equal(len, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v2_ipv4),
		cmocka_unit_test(test_v2_ipv6_tlvs),
		cmocka_unit_test(test_v2_mixed_family),
		cmocka_unit_test(test_v2_client_cert),
		cmocka_unit_test(test_v2_limits),
		cmocka_unit_test(test_v1),
	};

	return cmocka_run_group_tests_name("proxyhdr", tests, NULL, NULL);
}
