/* Unit tests for ctl/sdnotify.c: the watchdog interval from systemd's
 * environment, and a notification reaching a real datagram socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/sdnotify.h"

static void test_watchdog_ms(void **state)
{
	(void)state;
	assert_int_equal(sdnotify_watchdog_ms("30000000", NULL, 7), 15000);
	assert_int_equal(sdnotify_watchdog_ms("30000000", "7", 7), 15000);
	/* another process is the one watched */
	assert_int_equal(sdnotify_watchdog_ms("30000000", "8", 7), 0);
	assert_int_equal(sdnotify_watchdog_ms(NULL, NULL, 7), 0);
	assert_int_equal(sdnotify_watchdog_ms("0", NULL, 7), 0);
	assert_int_equal(sdnotify_watchdog_ms("", NULL, 7), 0);
	assert_int_equal(sdnotify_watchdog_ms("-5", NULL, 7), 0);
	assert_int_equal(sdnotify_watchdog_ms("12x", NULL, 7), 0);
	assert_int_equal(sdnotify_watchdog_ms("99999999999999999999999", NULL, 7), 0);
	assert_int_equal(sdnotify_watchdog_ms("1000", NULL, 7), 1);
	assert_int_equal(sdnotify_watchdog_ms("30000000", "x", 7), 0);
}

static void recv_one(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	assert_true(n >= 0);
	buf[n] = '\0';
	assert_string_equal(buf, want);
}

static void test_send_path_and_abstract(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[64], env[80];
	int fd;

	(void)state;
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(sdnotify_send("READY=1"), 0); /* not under systemd */

	snprintf(path, sizeof(path), "/tmp/vmgate-sdnotify-%d", (int)getpid());
	unlink(path);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	assert_int_equal(sdnotify_send("READY=1\nSTATUS=serving"), 0);
	recv_one(fd, "READY=1\nSTATUS=serving");
	close(fd);
	unlink(path);
	/* nobody listens there any more */
	assert_int_equal(sdnotify_send("WATCHDOG=1"), -ENOENT);

	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	memset(sa.sun_path, 0, sizeof(sa.sun_path));
	snprintf(env, sizeof(env), "@vmgate-sdnotify-%d", (int)getpid());
	memcpy(sa.sun_path + 1, env + 1, strlen(env) - 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
					  strlen(env))), 0);
	setenv("NOTIFY_SOCKET", env, 1);
	assert_int_equal(sdnotify_send("STOPPING=1"), 0);
	recv_one(fd, "STOPPING=1");
	close(fd);

	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(sdnotify_send("READY=1"), -EINVAL);
	unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_watchdog_ms),
		cmocka_unit_test(test_send_path_and_abstract),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
