/* core/sockmode.h: how connection sockets are held, chosen at startup
 * from what the running kernel offers.
 *
 * Direct descriptors (sockets in each worker ring's file table) need
 * IORING_OP_SOCKET into that table and the io_uring socket setsockopt
 * command (Linux 6.7); a half-close borrows an fd with
 * IORING_OP_FIXED_FD_INSTALL (6.8) when there is one. Without them the
 * sockets are plain fds, exactly as a build with Kconfig
 * DIRECT_DESCRIPTORS=n. What the engine cannot run without at all is a
 * startup error, never a fallback.
 *
 * ring_probe (core/ring.h) fills struct sockmode_kernel; sockmode_choose
 * is pure, so every kernel level can be unit-tested on any kernel.
 */
#ifndef VMGATE_CORE_SOCKMODE_H
#define VMGATE_CORE_SOCKMODE_H

#include <stdbool.h>

/* What the kernel offers, each with the release that brought it (the
 * io_uring features vmgate uses; sockmode_kernel_cap knows the table). */
struct sockmode_kernel {
	bool io_uring;        /* rings can be set up at all */
	bool ops;             /* the opcodes of the data path, MSG_RING
			       * the newest (5.18) */
	bool buf_ring;        /* provided buffer rings (5.19) */
	bool defer_taskrun;   /* IORING_SETUP_SINGLE_ISSUER |
			       * IORING_SETUP_DEFER_TASKRUN (6.1) */
	bool socket_direct;   /* IORING_OP_SOCKET, file alloc range (6.0) */
	bool sock_setsockopt; /* SOCKET_URING_OP_SETSOCKOPT (6.7) */
	bool fd_install;      /* IORING_OP_FIXED_FD_INSTALL (6.8) */
};

/* What the build asks for (Kconfig). */
struct sockmode_want {
	bool direct;        /* DIRECT_DESCRIPTORS: when the kernel can */
	bool defer_taskrun; /* RING_DEFER_TASKRUN: required */
};

enum sockmode {
	SOCKMODE_FDS,
	SOCKMODE_DIRECT,
};

struct sockmode_choice {
	enum sockmode mode;
	bool fd_install; /* a half-close may use IORING_OP_FIXED_FD_INSTALL */
	const char *why; /* static: why this mode, or what is missing */
};

/* sockmode_choose decides from kernel |k| and build |want|. Returns true
 * with the mode in |out|, or false when vmgate cannot run on |k|: then
 * out->why names the missing feature and the Linux release that has
 * it. */
bool sockmode_choose(struct sockmode_choice *out,
		     const struct sockmode_kernel *k,
		     const struct sockmode_want *want);

/* sockmode_kernel_cap clears from |k| what Linux |major|.|minor| does not
 * have: for tests, a newer kernel made to look like an older one. */
void sockmode_kernel_cap(struct sockmode_kernel *k, unsigned major,
			 unsigned minor);

/* sockmode_parse_version reads "MAJOR.MINOR" (decimal, nothing else) from
 * |s|. Returns false if |s| is not that. */
bool sockmode_parse_version(unsigned *out_major, unsigned *out_minor,
			    const char *s);

/* sockmode_name is "direct" or "fds". */
const char *sockmode_name(enum sockmode mode);

#endif
