/* tests/unit/test_sockmode.c: core/sockmode.c, the socket mode chosen
 * from what the kernel offers. Each kernel level is a kernel with
 * everything, capped with sockmode_kernel_cap as VMGATE_PROBE_KERNEL does;
 * the build wants what the default Kconfig wants unless a case says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/sockmode.h"

static const struct sockmode_want defaults = {
	.direct = true,
	.defer_taskrun = true,
};

static struct sockmode_kernel kernel(unsigned major, unsigned minor)
{
	struct sockmode_kernel k = {
		.io_uring = true,
		.ops = true,
		.buf_ring = true,
		.defer_taskrun = true,
		.socket_direct = true,
		.sock_setsockopt = true,
		.fd_install = true,
	};

	sockmode_kernel_cap(&k, major, minor);
	return k;
}

/* |why| mentions |what|, else the test fails saying so. */
static void says(const char *why, const char *what)
{
	if (!why || !strstr(why, what))
		fail_msg("reason \"%s\" does not mention \"%s\"",
			 why ? why : "(null)", what);
}

/* Linux 6.0: no DEFER_TASKRUN (6.1), which
 * the default build asks for: a startup error naming it and 6.1. Without
 * that wish, plain fds. */
static void test_linux_6_0(void **state)
{
	struct sockmode_kernel k = kernel(6, 0);
	struct sockmode_want want = defaults;
	struct sockmode_choice c;

	(void)state;
	assert_false(sockmode_choose(&c, &k, &want));
	says(c.why, "IORING_SETUP_DEFER_TASKRUN");
	says(c.why, "Linux 6.1");
	says(c.why, "RING_DEFER_TASKRUN=y");

	want.defer_taskrun = false;
	assert_true(sockmode_choose(&c, &k, &want));
	assert_int_equal(c.mode, SOCKMODE_FDS);
	assert_false(c.fd_install);
	says(c.why, "Linux 6.7");
}

/* Debian 12: runs, on plain fds, because the socket setsockopt command
 * (6.7) is missing. */
static void test_linux_6_1(void **state)
{
	struct sockmode_kernel k = kernel(6, 1);
	struct sockmode_choice c;

	(void)state;
	assert_false(k.sock_setsockopt);
	assert_true(k.defer_taskrun);
	assert_true(sockmode_choose(&c, &k, &defaults));
	assert_int_equal(c.mode, SOCKMODE_FDS);
	assert_false(c.fd_install);
	says(c.why, "SOCKET_URING_OP_SETSOCKOPT");
	says(c.why, "Linux 6.7");
	assert_string_equal(sockmode_name(c.mode), "fds");
}

static void test_linux_6_6(void **state)
{
	struct sockmode_kernel k = kernel(6, 6);
	struct sockmode_choice c;

	(void)state;
	assert_true(sockmode_choose(&c, &k, &defaults));
	assert_int_equal(c.mode, SOCKMODE_FDS);
	assert_false(c.fd_install);
	says(c.why, "SOCKET_URING_OP_SETSOCKOPT");
}

/* Direct descriptors, but a half-close cannot borrow an fd
 * (IORING_OP_FIXED_FD_INSTALL is 6.8): IORING_OP_SHUTDOWN. */
static void test_linux_6_7(void **state)
{
	struct sockmode_kernel k = kernel(6, 7);
	struct sockmode_choice c;

	(void)state;
	assert_true(sockmode_choose(&c, &k, &defaults));
	assert_int_equal(c.mode, SOCKMODE_DIRECT);
	assert_false(c.fd_install);
	says(c.why, "IORING_OP_SHUTDOWN");
	assert_string_equal(sockmode_name(c.mode), "direct");
}

static void test_linux_6_8_and_later(void **state)
{
	static const unsigned levels[][2] = { { 6, 8 }, { 6, 12 }, { 7, 0 } };
	struct sockmode_choice c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		struct sockmode_kernel k = kernel(levels[i][0], levels[i][1]);

		if (!sockmode_choose(&c, &k, &defaults) ||
		    c.mode != SOCKMODE_DIRECT || !c.fd_install)
			fail_msg("Linux %u.%u: not direct with fd_install (%s)",
				 levels[i][0], levels[i][1], c.why);
	}
}

/* Kconfig DIRECT_DESCRIPTORS=n: fds on every kernel that runs at all. */
static void test_kconfig_n(void **state)
{
	struct sockmode_want want = defaults;
	struct sockmode_kernel k = kernel(6, 8);
	struct sockmode_choice c;

	(void)state;
	want.direct = false;
	assert_true(sockmode_choose(&c, &k, &want));
	assert_int_equal(c.mode, SOCKMODE_FDS);
	assert_false(c.fd_install);
	says(c.why, "DIRECT_DESCRIPTORS=n");

	/* And what it cannot run without still stops it. */
	k = kernel(6, 0);
	assert_false(sockmode_choose(&c, &k, &want));
	says(c.why, "DEFER_TASKRUN");
}

/* Below what every mode needs: errors, each naming its feature. */
static void test_missing_basics(void **state)
{
	struct sockmode_want want = { .direct = true };
	struct sockmode_kernel k;
	struct sockmode_choice c;

	(void)state;
	k = kernel(5, 19);
	assert_true(sockmode_choose(&c, &k, &want));
	assert_int_equal(c.mode, SOCKMODE_FDS);
	says(c.why, "Linux 6.0");

	k = kernel(5, 18);
	assert_false(sockmode_choose(&c, &k, &want));
	says(c.why, "provided buffer rings");
	says(c.why, "Linux 5.19");

	k = kernel(5, 15);
	assert_false(sockmode_choose(&c, &k, &want));
	says(c.why, "Linux 5.18");

	/* io_uring switched off (kernel.io_uring_disabled) on a new kernel. */
	k = kernel(6, 8);
	k.io_uring = false;
	assert_false(sockmode_choose(&c, &k, &want));
	says(c.why, "io_uring is not available");

	/* A probe that saw the socket command fail on a new kernel (seccomp,
	 * a backport without it): fds, not a broken direct mode. */
	k = kernel(6, 8);
	k.sock_setsockopt = false;
	assert_true(sockmode_choose(&c, &k, &want));
	assert_int_equal(c.mode, SOCKMODE_FDS);
}

static void test_parse_version(void **state)
{
	static const char *const bad[] = {
		"", "6", "6.", ".1", "6.1.2", "6,1", " 6.1", "6.1 ", "6.1-rc1",
		"v6.1", "-6.1", "6.+1", "1234.1", "6.1234",
	};
	unsigned major = 99, minor = 99;
	size_t i;

	(void)state;
	assert_true(sockmode_parse_version(&major, &minor, "6.1"));
	assert_int_equal(major, 6);
	assert_int_equal(minor, 1);
	assert_true(sockmode_parse_version(&major, &minor, "5.19"));
	assert_int_equal(major, 5);
	assert_int_equal(minor, 19);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		major = minor = 99;
		if (sockmode_parse_version(&major, &minor, bad[i]))
			fail_msg("\"%s\" parsed as %u.%u", bad[i], major, minor);
		assert_int_equal(major, 99);
	}
	assert_false(sockmode_parse_version(&major, &minor, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_linux_6_0),
		cmocka_unit_test(test_linux_6_1),
		cmocka_unit_test(test_linux_6_6),
		cmocka_unit_test(test_linux_6_7),
		cmocka_unit_test(test_linux_6_8_and_later),
		cmocka_unit_test(test_kconfig_n),
		cmocka_unit_test(test_missing_basics),
		cmocka_unit_test(test_parse_version),
	};

	return cmocka_run_group_tests_name("sockmode", tests, NULL, NULL);
}
