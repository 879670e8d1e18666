/* tests/unit/test_signer_sandbox.c: signer/sandbox.c, the seccomp filter
 * vmgate-signer puts on itself. Each test forks a child, which puts the
 * filter on and tries something; the child's exit status says what it
 * saw (0: as expected). Every call on the deny list is refused with EPERM
 * under the filter and answers otherwise without it (bad arguments: an
 * error of the kernel's own); the ones that matter most are also made
 * for real, with and without the filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "signer/sandbox.h"

enum { OK = 0, NO_FILTER = 100, WRONG = 101 };

/* In a child of in_child: whether the filter is on. */
static bool filter_on;

/* Runs |fn| in a child, with the filter on if |filtered|; its status. */
static int in_child(int (*fn)(void), bool filtered)
{
	pid_t child = fork();
	int status;

	assert_true(child >= 0);
	if (child == 0) {
		if (filtered && (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
				 !signer_seccomp()))
			_exit(NO_FILTER);
		filter_on = filtered;
		_exit(fn());
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* -1 with |err|: OK; success: 1 (allowed); another error: WRONG. */
static int denied_with(long ret, int err)
{
	if (ret >= 0)
		return 1;
	return errno == err ? OK : WRONG;
}

/* |fn| is refused under the filter and allowed without it. */
static void refused(int (*fn)(void))
{
	assert_int_equal(in_child(fn, true), OK);
	assert_int_equal(in_child(fn, false), 1);
}

static int try_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	return denied_with(fd, EPERM);
}

/* Each call of the deny list with arguments no kernel accepts: 0 if each
 * answered as the filter being on or off says it should (EPERM, or
 * anything else), else 1 + the index of the first that did not. fork and
 * vfork take no arguments: made only under the filter (a child would
 * _exit at once). */
static int every_denied_call(void)
{
	bool filtered = filter_on;
	size_t n, i;
	const int *nr = signer_seccomp_denied(&n);

	if (!n || n > 90)
		return WRONG;
	for (i = 0; i < n; i++) {
		bool forks = nr[i] == SYS_fork || nr[i] == SYS_vfork;
		long r;

		if (forks && !filtered)
			continue;
		errno = 0;
		r = syscall(nr[i], -1L, 0L, 0L, 0L, 0L, 0L);
		if (r == 0 && forks)
			_exit(0);
		if (filtered != (r == -1 && errno == EPERM))
			return 1 + (int)i;
	}
	return OK;
}

/* A thread in a new namespace: refused before the kernel sees it
 * (without the filter this child would crash: no stack). */
static int try_thread_in_new_namespace(void)
{
	long r = syscall(SYS_clone, CLONE_VM | CLONE_FS | CLONE_FILES |
			 CLONE_SIGHAND | CLONE_THREAD | CLONE_NEWUTS, 0L, 0L,
			 0L, 0L);

	return denied_with(r, EPERM);
}

/* What a call that makes a process answered: a child made exits at
 * once (and is waited for); then as denied_with. */
static int child_made(long p, int err)
{
	if (p == 0)
		_exit(0);
	if (p > 0)
		waitpid((pid_t)p, NULL, 0);
	return denied_with(p, err);
}

static int try_fork(void)
{
	return child_made(fork(), EPERM);
}

static int try_raw_clone(void)
{
	return child_made(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0), EPERM);
}

static int try_clone3(void)
{
	struct clone_args args = { .exit_signal = SIGCHLD };

	return child_made(syscall(SYS_clone3, &args, sizeof(args)), ENOSYS);
}

/* Allowed, /bin/false runs and exits 1, as an allowed call answers. */
static int try_exec(void)
{
	char *argv[] = { "false", NULL }, *envp[] = { NULL };

	return denied_with(execve("/bin/false", argv, envp), EPERM);
}

static int try_io_uring(void)
{
	char params[120] = { 0 };    /* struct io_uring_params */
	long fd = syscall(SYS_io_uring_setup, 4, params);

	return denied_with(fd, EPERM);
}

static int try_unshare(void)
{
	return denied_with(unshare(CLONE_NEWUSER), EPERM);
}

static void test_every_denied_call(void **state)
{
	assert_int_equal(in_child(every_denied_call, true), OK);
	assert_int_equal(in_child(every_denied_call, false), OK);
}

static void test_no_thread_in_new_namespace(void **state)
{
	assert_int_equal(in_child(try_thread_in_new_namespace, true), OK);
}

static void test_no_socket(void **state) { refused(try_socket); }
static void test_no_fork(void **state) { refused(try_fork); }
static void test_no_raw_clone(void **state) { refused(try_raw_clone); }
static void test_no_exec(void **state) { refused(try_exec); }
static void test_no_io_uring(void **state) { refused(try_io_uring); }
static void test_no_user_namespace(void **state) { refused(try_unshare); }

/* clone3 answers ENOSYS (glibc then uses clone, whose flags the filter
 * sees); without the filter it makes the child. */
static void test_clone3_is_enosys(void **state)
{
	assert_int_equal(in_child(try_clone3, true), OK);
	assert_int_equal(in_child(try_clone3, false), 1);
}

static int ran;

static void *thread_main(void *arg)
{
	ran = 1;
	return arg;
}

/* The signer's threads are made after the filter: pthread_create works
 * (clone3 refused, clone with CLONE_THREAD allowed), and so do files. */
static int threads_and_files(void)
{
	pthread_t t;
	char b;
	int fd;

	if (pthread_create(&t, NULL, thread_main, NULL) ||
	    pthread_join(t, NULL) || !ran)
		return WRONG;
	fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, &b, 1) != 1 || b != 0)
		return WRONG;
	close(fd);
	return OK;
}

static void test_threads_still_work(void **state)
{
	assert_int_equal(in_child(threads_and_files, true), OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_denied_call),
		cmocka_unit_test(test_no_thread_in_new_namespace),
		cmocka_unit_test(test_no_socket),
		cmocka_unit_test(test_no_fork),
		cmocka_unit_test(test_no_raw_clone),
		cmocka_unit_test(test_clone3_is_enosys),
		cmocka_unit_test(test_no_exec),
		cmocka_unit_test(test_no_io_uring),
		cmocka_unit_test(test_no_user_namespace),
		cmocka_unit_test(test_threads_still_work),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
