/* signer/getpid.c: getpid(2) from a cache, for OpenSSL's fork check.
 *
 * OpenSSL 3.0's random generators compare getpid() with the pid they were
 * seeded in on every draw, to reseed in a forked child: ten times per
 * ECDSA signature (its nonce), each a system call since glibc 2.25 stopped
 * caching the pid (1.2 µs each in a loop on the machine the benchmark
 * runs on; in the signer under W1, with its other saved system call,
 * about 1% of vmgate's and the signer's CPU per full handshake).
 *
 * vmgate-signer defines getpid itself; the dynamic linker binds
 * libcrypto's calls to the executable's definition first. It answers from
 * a cache that is cleared in the child of a fork (pthread_atfork), so
 * OpenSSL still sees every fork: the signer never forks, but a cache that
 * outlived one would give parent and child the same random numbers, ECDSA
 * nonces among them, and with them the key.
 */
#include <pthread.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static pid_t cached;
static bool usable; /* the fork handler is in place */

static void forget(void)
{
	__atomic_store_n(&cached, 0, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void getpid_init(void)
{
	usable = pthread_atfork(NULL, NULL, forget) == 0;
}

pid_t getpid(void)
{
	pid_t pid = __atomic_load_n(&cached, __ATOMIC_RELAXED);

	if (!pid) {
		pid = (pid_t)syscall(SYS_getpid);
		if (usable)
			__atomic_store_n(&cached, pid, __ATOMIC_RELAXED);
	}
	return pid;
}
