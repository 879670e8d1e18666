/* tests/unit/test_signer_getpid.c: signer/getpid.c, the getpid that
 * vmgate-signer gives OpenSSL 3's libcrypto (built as the signer is: no
 * BoringSSL). It is the one the dynamic linker binds; it answers the
 * kernel's pid, also in a forked child; and OpenSSL's random generators
 * still see the fork through it: a parent and its child draw different
 * bytes, public and private (ECDSA's nonces come from the private one),
 * whether the child came from fork(), from _Fork() (no fork handlers) or
 * from the fork system call itself. With a cache the fork did not clear,
 * the two would draw the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

static void test_answers_the_kernels_pid(void **state)
{
	assert_int_equal(getpid(), (pid_t)syscall(SYS_getpid));
	assert_int_equal(getpid(), (pid_t)syscall(SYS_getpid));
}

static void test_is_the_one_bound(void **state)
{
	assert_ptr_equal(dlsym(RTLD_DEFAULT, "getpid"), (void *)getpid);
}

static void test_child_gets_its_own_pid(void **state)
{
	pid_t parent = getpid(), child;
	int status;

	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(getpid() == (pid_t)syscall(SYS_getpid) &&
		      getpid() != parent ? 0 : 1);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(getpid(), parent);
}

static pid_t raw_fork(void)
{
	return (pid_t)syscall(SYS_fork);
}

/* |priv|: RAND_priv_bytes, else RAND_bytes; the child made by |fork_fn|. */
static void draw_after_fork(int priv, pid_t (*fork_fn)(void))
{
	uint8_t warm[16], mine[32], theirs[32];
	int fds[2], status;
	pid_t child;

	/* Seeded (and the pid cached) before the fork. */
	assert_int_equal(priv ? RAND_priv_bytes(warm, sizeof(warm))
			      : RAND_bytes(warm, sizeof(warm)), 1);
	assert_int_equal(pipe(fds), 0);
	child = fork_fn();
	assert_true(child >= 0);
	if (child == 0) {
		int ok = priv ? RAND_priv_bytes(mine, sizeof(mine))
			      : RAND_bytes(mine, sizeof(mine));

		_exit(getpid() == (pid_t)syscall(SYS_getpid) && ok == 1 &&
		      write(fds[1], mine, sizeof(mine)) ==
			      (ssize_t)sizeof(mine) ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(priv ? RAND_priv_bytes(mine, sizeof(mine))
			      : RAND_bytes(mine, sizeof(mine)), 1);
	assert_int_equal(read(fds[0], theirs, sizeof(theirs)),
			 (ssize_t)sizeof(theirs));
	close(fds[0]);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_memory_not_equal(mine, theirs, sizeof(mine));
}

static void test_openssl_public_random_forks(void **state)
{
	draw_after_fork(0, fork);
}

static void test_openssl_private_random_forks(void **state)
{
	draw_after_fork(1, fork);
}

static void test_openssl_random_forks_without_handlers(void **state)
{
	draw_after_fork(1, _Fork);
	draw_after_fork(0, _Fork);
}

static void test_openssl_random_forks_by_system_call(void **state)
{
	draw_after_fork(1, raw_fork);
	draw_after_fork(0, raw_fork);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers_the_kernels_pid),
		cmocka_unit_test(test_is_the_one_bound),
		cmocka_unit_test(test_child_gets_its_own_pid),
		cmocka_unit_test(test_openssl_public_random_forks),
		cmocka_unit_test(test_openssl_private_random_forks),
		cmocka_unit_test(test_openssl_random_forks_without_handlers),
		cmocka_unit_test(test_openssl_random_forks_by_system_call),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
