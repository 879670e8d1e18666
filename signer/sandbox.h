/* signer/sandbox.h: the seccomp filter vmgate-signer puts on itself. */
#ifndef VMGATE_SIGNER_SANDBOX_H
#define VMGATE_SIGNER_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/* What the filter refuses, as the signer's startup line says it. */
#define SIGNER_SECCOMP_WHAT \
	"no_sockets,no_exec,no_ptrace,no_fork,no_io_uring,no_namespaces,no_bpf"

/* Puts the filter on the calling thread, which all threads it creates
 * afterwards inherit (PR_SET_NO_NEW_PRIVS must be set first). false with
 * errno set if the kernel refused it; true without a filter on an
 * architecture it does not know. */
bool signer_seccomp(void);

/* The system calls the filter refuses with EPERM whatever their
 * arguments (for tests): |*n| of them. */
const int *signer_seccomp_denied(size_t *n);

#endif
