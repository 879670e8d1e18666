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
 * a cache on a page of its own marked MADV_WIPEONFORK (Linux 4.14), which
 * the kernel hands to a forked child zeroed, however the fork was made
 * (fork, _Fork, a raw clone: BoringSSL's fork detection uses the same
 * mark): the child asks the kernel, and OpenSSL sees the fork. A cache
 * that outlived a fork would give parent and child the same random
 * numbers, ECDSA nonces among them, and with them the key. The signer
 * never forks; where the mark cannot be set, every call asks the kernel.
 */
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* The page, or NULL: no cache. Set once, before main. */
static pid_t *cached;

__attribute__((constructor)) static void getpid_init(void)
{
	size_t len = (size_t)sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return;
	if (madvise(p, len, MADV_WIPEONFORK)) {
		munmap(p, len);
		return;
	}
	cached = p;
}

pid_t getpid(void)
{
	pid_t pid;

	if (!cached)
		return (pid_t)syscall(SYS_getpid);
	pid = __atomic_load_n(cached, __ATOMIC_RELAXED);
	if (!pid) {
		pid = (pid_t)syscall(SYS_getpid);
		__atomic_store_n(cached, pid, __ATOMIC_RELAXED);
	}
	return pid;
}
