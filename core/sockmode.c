/* core/sockmode.c: see sockmode.h. */
#include "core/sockmode.h"

#include <stddef.h>

#define KV(major, minor) ((major) * 1000u + (minor))

bool sockmode_choose(struct sockmode_choice *out,
		     const struct sockmode_kernel *k,
		     const struct sockmode_want *want)
{
	out->mode = SOCKMODE_FDS;
	out->fd_install = false;
	/* What every mode needs: no fallback would run. */
	if (!k->io_uring) {
		out->why = "io_uring is not available (kernel.io_uring_disabled "
			   "set, or a kernel without io_uring)";
		return false;
	}
	if (!k->ops) {
		out->why = "kernel lacks io_uring operations the engine uses "
			   "(IORING_OP_MSG_RING and older, Linux 5.18)";
		return false;
	}
	if (!k->buf_ring) {
		out->why = "kernel lacks io_uring provided buffer rings "
			   "(IORING_REGISTER_PBUF_RING, Linux 5.19)";
		return false;
	}
	/* Asked for by the build: running without it would not be the
	 * configuration that was asked for. */
	if (want->defer_taskrun && !k->defer_taskrun) {
		out->why = "kernel lacks IORING_SETUP_DEFER_TASKRUN (Linux 6.1), "
			   "which this build asks for (Kconfig "
			   "RING_DEFER_TASKRUN=y)";
		return false;
	}
	if (!want->direct) {
		out->why = "built with Kconfig DIRECT_DESCRIPTORS=n";
		return true;
	}
	if (!k->socket_direct) {
		out->why = "kernel lacks IORING_OP_SOCKET into a direct "
			   "descriptor table (Linux 6.0)";
		return true;
	}
	if (!k->sock_setsockopt) {
		out->why = "kernel lacks the io_uring socket setsockopt command "
			   "(SOCKET_URING_OP_SETSOCKOPT, Linux 6.7)";
		return true;
	}
	out->mode = SOCKMODE_DIRECT;
	out->fd_install = k->fd_install;
	out->why = k->fd_install
			   ? "kernel has the io_uring socket setsockopt command "
			     "(Linux 6.7) and IORING_OP_FIXED_FD_INSTALL (6.8)"
			   : "kernel has the io_uring socket setsockopt command "
			     "(Linux 6.7) but not IORING_OP_FIXED_FD_INSTALL "
			     "(6.8): a half-close uses IORING_OP_SHUTDOWN";
	return true;
}

void sockmode_kernel_cap(struct sockmode_kernel *k, unsigned major,
			 unsigned minor)
{
	const unsigned v = KV(major, minor);

	/* The release each feature first appeared in (io_uring itself in
	 * 5.1). */
	if (v < KV(5, 1))
		k->io_uring = false;
	if (v < KV(5, 18))
		k->ops = false;
	if (v < KV(5, 19))
		k->buf_ring = false;
	if (v < KV(6, 0))
		k->socket_direct = false;
	if (v < KV(6, 1))
		k->defer_taskrun = false;
	if (v < KV(6, 7))
		k->sock_setsockopt = false;
	if (v < KV(6, 8))
		k->fd_install = false;
}

/* Decimal digits from *p, at most 3 of them, advancing *p. */
static bool get_num(unsigned *out, const char **p)
{
	unsigned n = 0, digits = 0;

	while (**p >= '0' && **p <= '9') {
		if (++digits > 3)
			return false;
		n = n * 10 + (unsigned)(**p - '0');
		(*p)++;
	}
	*out = n;
	return digits > 0;
}

bool sockmode_parse_version(unsigned *out_major, unsigned *out_minor,
			    const char *s)
{
	unsigned major, minor;

	if (!s || !get_num(&major, &s) || *s++ != '.' ||
	    !get_num(&minor, &s) || *s != '\0')
		return false;
	*out_major = major;
	*out_minor = minor;
	return true;
}

const char *sockmode_name(enum sockmode mode)
{
	return mode == SOCKMODE_DIRECT ? "direct" : "fds";
}
