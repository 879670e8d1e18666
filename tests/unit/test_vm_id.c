/* tests/unit/test_vm_id.c: route/host.c's route_vm_id_norm and
 * route_parse_vm_addr, the one VM id check and the one VM address parser
 * that the vms: section, the admin API, the state file and the route table
 * share; and the vms: section's use of them, through config_load_buf. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ctl/config.h"
#include "route/route.h"

static void test_id_valid(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "vm1", "vm1" },
		{ "VM1", "vm1" },
		{ "a", "a" },
		{ "0", "0" },
		{ "a--b", "a--b" },
		{ "45a68069-defc-4233-9865-6298d87053af",
		  "45a68069-defc-4233-9865-6298d87053af" },
		/* 63 bytes. */
		{ "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		  "abcdefghijklmnopqrstuvwxyz0123456789x",
		  "abcdefghijklmnopqrstuvwxyz"
		  "abcdefghijklmnopqrstuvwxyz0123456789x" },
	};
	char out[ROUTE_VM_ID_MAX + 1];
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(route_vm_id_norm(out, &len, cases[i].in,
					     strlen(cases[i].in)));
		assert_string_equal(out, cases[i].out);
		assert_int_equal(len, strlen(cases[i].out));
	}
}

static void test_id_invalid(void **state)
{
	static const char *const cases[] = {
		"",
		"-vm",
		"vm-",
		"vm1.vm",
		"vm1.",
		".vm1",
		"vm_1",
		"vm 1",
		"vm\xc3\xa9",
		"../etc",
		/* 64 bytes: one more than a label holds. */
		"abcdefghijklmnopqrstuvwxyz"
		"abcdefghijklmnopqrstuvwxyz0123456789xy",
	};
	char out[ROUTE_VM_ID_MAX + 1];
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_false(route_vm_id_norm(out, &len, cases[i],
					      strlen(cases[i])));
	/* The length is the caller's: a NUL inside is not the end. */
	assert_false(route_vm_id_norm(out, &len, "vm1\0x", 5));
	assert_true(route_vm_id_norm(out, &len, "vm1\0x", 3));
	assert_string_equal(out, "vm1");
	/* A long id is refused before it is copied (|out| holds 64). */
	{
		char big[300];

		memset(big, 'a', sizeof(big));
		assert_false(route_vm_id_norm(out, &len, big, sizeof(big)));
	}
}

static void test_addr(void **state)
{
	static const struct {
		const char *in;
		enum route_addr_status want;
	} cases[] = {
		{ "fd00::10", ROUTE_ADDR_OK },
		{ "FD00::A", ROUTE_ADDR_OK },
		{ "::1", ROUTE_ADDR_OK },
		/* "::" is this host (connect reaches loopback), multicast
		 * no one host: refused (they were taken). */
		{ "::", ROUTE_ADDR_NOT_ONE },
		{ "0:0::0", ROUTE_ADDR_NOT_ONE },
		{ "ff02::1", ROUTE_ADDR_NOT_ONE },
		{ "FF05::1:3", ROUTE_ADDR_NOT_ONE },
		{ "2001:db8:0:0:0:0:0:1", ROUTE_ADDR_OK },
		/* IPv4-compatible (deprecated) is not IPv4-mapped. */
		{ "::1.2.3.4", ROUTE_ADDR_OK },
		/* 45 bytes, the longest textual form. */
		{ "fdff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
		  ROUTE_ADDR_OK },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
		  ROUTE_ADDR_NOT_ONE },
		{ "1.2.3.4", ROUTE_ADDR_V4 },
		{ "::ffff:1.2.3.4", ROUTE_ADDR_V4 },
		{ "::FFFF:102:304", ROUTE_ADDR_V4 },
		{ "0:0:0:0:0:ffff:0102:0304", ROUTE_ADDR_V4 },
		{ "", ROUTE_ADDR_BAD },
		{ "fd00::1 ", ROUTE_ADDR_BAD },
		{ " fd00::1", ROUTE_ADDR_BAD },
		{ "[fd00::1]", ROUTE_ADDR_BAD },
		{ "fd00::1%eth0", ROUTE_ADDR_BAD },
		{ "fd00::1/64", ROUTE_ADDR_BAD },
		{ "fd00:::1", ROUTE_ADDR_BAD },
		{ "1.2.3", ROUTE_ADDR_BAD },
		{ "vm1", ROUTE_ADDR_BAD },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555",
		  ROUTE_ADDR_BAD },
	};
	struct in6_addr a, want;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(route_parse_vm_addr(&a, cases[i].in,
						     strlen(cases[i].in)),
				 cases[i].want);
	assert_int_equal(route_parse_vm_addr(&a, "FD00::10", 8),
			 ROUTE_ADDR_OK);
	assert_int_equal(inet_pton(AF_INET6, "fd00::10", &want), 1);
	assert_memory_equal(&a, &want, sizeof(a));
	/* The length is the caller's: inet_pton alone would stop at the NUL
	 * and take "fd00::1\0junk" for fd00::1. */
	assert_int_equal(route_parse_vm_addr(&a, "fd00::1\0junk", 12),
			 ROUTE_ADDR_BAD);
	assert_int_equal(route_parse_vm_addr(&a, "fd00::1xx", 7),
			 ROUTE_ADDR_OK);
}

/* The vms: section says what it said before the parsers were shared; a
 * YAML "\0" is refused before them (ld_get_str). */
static bool has_error(const char *y, const char *msg)
{
	struct config_errors e;
	struct config c;
	bool found = false;

	config_load_buf(&c, &e, "t.yaml", "/nonexistent",
			(const uint8_t *)y, strlen(y));
	for (size_t i = 0; i < e.len; i++)
		if (strstr(e.v[i].msg, msg))
			found = true;
	config_free(&c);
	config_errors_free(&e);
	return found;
}

static void test_config_vms(void **state)
{
	assert_true(has_error("vms:\n  - { id: vm1, address: "
			      "\"fd00::1\\0x\" }\n",
			      "vm address: contains a NUL byte"));
	assert_true(has_error("vms:\n  - id: vm1\n    address: 10.0.0.1\n",
			      "address '10.0.0.1' is not IPv6: vmgate "
			      "reaches VMs over IPv6 only"));
	assert_true(has_error("vms:\n  - { id: vm1, address: "
			      "\"::ffff:10.0.0.1\" }\n",
			      "is not IPv6: vmgate reaches VMs over IPv6"));
	assert_true(has_error("vms:\n  - { id: vm1, address: fd00:::1 }\n",
			      "address 'fd00:::1' is not an IPv6 address"));
	assert_true(has_error("vms:\n  - { id: vm1.x, address: fd00::1 }\n",
			      "vm id 'vm1.x' is not one DNS label (1-63 "
			      "letters, digits, hyphens; no dots)"));
	assert_true(has_error("vms:\n  - { id: \"vm1\\0\", "
			      "address: fd00::1 }\n",
			      "vm id: contains a NUL byte"));
	assert_false(has_error("vms:\n  - { id: VM1, address: FD00::1 }\n",
			       "address '"));
	assert_false(has_error("vms:\n  - { id: VM1, address: FD00::1 }\n",
			       "vm id '"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_valid),
		cmocka_unit_test(test_id_invalid),
		cmocka_unit_test(test_addr),
		cmocka_unit_test(test_config_vms),
	};

	return cmocka_run_group_tests_name("vm_id", tests, NULL, NULL);
}
