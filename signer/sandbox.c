/* signer/sandbox.c: the seccomp filter vmgate-signer puts on itself
 * before it serves.
 *
 * A deny list (glibc and OpenSSL may use any other call) of what the
 * signer never needs once it serves, refused with EPERM:
 * - making or reaching any other socket: no network;
 * - running a program, or making another process: fork, vfork, and clone
 *   without CLONE_THREAD (clone3 answers ENOSYS, as on a kernel without
 *   it: its flags are behind a pointer the filter cannot read, and
 *   glibc's pthread_create then falls back to clone, whose flags it can);
 *   threads are still made, with clone(CLONE_THREAD | ...);
 * - reading or writing another process (ptrace, process_vm_*);
 * - io_uring, whose operations (sockets, connect, open) would go around
 *   this filter, which sees system calls only;
 * - new namespaces (unshare, setns, clone's CLONE_NEW* flags: an
 *   unprivileged user namespace would hand the process capabilities in
 *   it), eBPF programs, perf events, userfaultfd, the kernel's keyrings,
 *   and another process's descriptors or memory (pidfd_getfd, kcmp,
 *   process_madvise);
 * - any x32 call (numbers with bit 30 set; ENOSYS): the deny list is of
 *   x86_64 numbers, and a kernel booted with syscall.x32=y would
 *   otherwise run the same calls under their x32 numbers.
 * The filter is put on every thread of the process (TSYNC), though the
 * signer makes its threads after it.
 */
#include "signer/sandbox.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
static const int denied[] = {
	SYS_socket, SYS_socketpair, SYS_connect, SYS_bind, SYS_listen,
	SYS_execve, SYS_execveat, SYS_ptrace, SYS_process_vm_readv,
	SYS_process_vm_writev, SYS_fork, SYS_vfork, SYS_io_uring_setup,
	SYS_io_uring_enter, SYS_io_uring_register, SYS_unshare, SYS_setns,
	SYS_bpf, SYS_perf_event_open, SYS_userfaultfd, SYS_keyctl,
	SYS_add_key, SYS_request_key, SYS_pidfd_getfd, SYS_kcmp,
	SYS_process_madvise,
};
#define DENIED_N (sizeof(denied) / sizeof(denied[0]))
#define X32_BIT 0x40000000u
#define CLONE_NEW_ANY (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | \
		       CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
		       CLONE_NEWNET)

const int *signer_seccomp_denied(size_t *n)
{
	*n = DENIED_N;
	return denied;
}

#define STMT(code, k) ((struct sock_filter)BPF_STMT(code, k))
#define JUMP(code, k, jt, jf) ((struct sock_filter)BPF_JUMP(code, k, jt, jf))
#define RET_ERRNO(e) STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (e))

bool signer_seccomp(void)
{
	struct sock_filter f[4 + 2 + 2 * DENIED_N + 2 + 6 + 1];
	struct sock_fprog prog = { .filter = f };
	size_t i, n = 0;

	f[n++] = STMT(BPF_LD | BPF_W | BPF_ABS,
		      offsetof(struct seccomp_data, arch));
	f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	f[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	f[n++] = STMT(BPF_LD | BPF_W | BPF_ABS,
		      offsetof(struct seccomp_data, nr));
	f[n++] = JUMP(BPF_JMP | BPF_JSET | BPF_K, X32_BIT, 0, 1);
	f[n++] = RET_ERRNO(ENOSYS);
	for (i = 0; i < DENIED_N; i++) {
		f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied[i],
			      0, 1);
		f[n++] = RET_ERRNO(EPERM);
	}
	f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1);
	f[n++] = RET_ERRNO(ENOSYS);
	/* clone: a thread (CLONE_THREAD in the low word of its flags, the
	 * word the kernel reads) in no new namespace, or nothing.
	 * CLONE_THREAD needs CLONE_SIGHAND, which needs CLONE_VM. */
	f[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 5);
	f[n++] = STMT(BPF_LD | BPF_W | BPF_ABS,
		      offsetof(struct seccomp_data, args[0]));
	f[n++] = JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEW_ANY, 2, 0);
	f[n++] = JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1);
	f[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	f[n++] = RET_ERRNO(EPERM);
	f[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	prog.len = (unsigned short)n;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
		       SECCOMP_FILTER_FLAG_TSYNC, &prog) == 0;
}
#else
bool signer_seccomp(void)
{
	return true;
}

const int *signer_seccomp_denied(size_t *n)
{
	*n = 0;
	return NULL;
}
#endif
