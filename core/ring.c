/* core/ring.c: see ring.h. */
#include "core/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "core/kconfig.h"

bool ring_direct;
bool ring_fd_install;

int ring_setup(struct io_uring *ring, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	/* Completions far outnumber submissions under load (multishot
	 * accept, cancels): give the CQ room so it does not overflow. */
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
	p.cq_entries = entries * 4;
	/* No fallback without them: a kernel that lacks them stops startup
	 * (sockmode_choose), so this build runs as configured or not at all. */
	if (IS_ENABLED(CONFIG_RING_DEFER_TASKRUN))
		p.flags |= IORING_SETUP_SINGLE_ISSUER |
			   IORING_SETUP_DEFER_TASKRUN;
	ret = io_uring_queue_init_params(entries, ring, &p);
	if (ret == 0)
		io_uring_register_ring_fd(ring);
	return ret;
}

struct io_uring_sqe *ring_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(ring)))
		io_uring_submit(ring);
	return sqe;
}

/* include/uapi/linux/io_uring.h, Linux 6.7: the socket commands of
 * IORING_OP_URING_CMD, and where setsockopt's arguments sit in the SQE. */
#define RING_SOCKET_OP_SETSOCKOPT 3

void ring_prep_setsockopt(struct io_uring_sqe *sqe, int fixed, int level,
			  int optname, const void *optval, uint32_t optlen)
{
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fixed;
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->cmd_op = RING_SOCKET_OP_SETSOCKOPT;
	sqe->addr = (uint64_t)(uint32_t)level | (uint64_t)(uint32_t)optname
							  << 32;
	sqe->file_index = optlen;                  /* optlen */
	sqe->addr3 = (uint64_t)(uintptr_t)optval;  /* optval */
}

#define RING_OP_FIXED_FD_INSTALL 54

void ring_prep_fd_install(struct io_uring_sqe *sqe, int fixed)
{
	io_uring_prep_rw(RING_OP_FIXED_FD_INSTALL, sqe, fixed, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
}

int ring_files_setup(struct io_uring *ring, unsigned total,
		     unsigned alloc_len)
{
	int ret = io_uring_register_files_sparse(ring, total);

	if (ret == 0)
		ret = io_uring_register_file_alloc_range(ring, 0, alloc_len);
	return ret;
}

int ring_buf_setup(struct io_uring *ring, struct buf_ring *b,
		   unsigned entries, unsigned buf_size, int bgid)
{
	struct io_uring_buf_reg reg;
	size_t ring_len = entries * sizeof(struct io_uring_buf);
	unsigned i;
	int ret;

	memset(b, 0, sizeof(*b));
	b->br = mmap(NULL, ring_len, PROT_READ | PROT_WRITE,
		     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (b->br == MAP_FAILED) {
		b->br = NULL;
		return -errno;
	}
	b->bufs = malloc((size_t)entries * buf_size);
	if (!b->bufs) {
		ret = -ENOMEM;
		goto err_unmap;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)b->br;
	reg.ring_entries = entries;
	reg.bgid = (uint16_t)bgid;
	ret = io_uring_register_buf_ring(ring, &reg, 0);
	if (ret)
		goto err_free;
	b->entries = entries;
	b->buf_size = buf_size;
	b->bgid = bgid;
	io_uring_buf_ring_init(b->br);
	for (i = 0; i < entries; i++)
		ring_buf_put(b, i);
	ring_buf_publish(b);
	return 0;

err_free:
	free(b->bufs);
	b->bufs = NULL;
err_unmap:
	munmap(b->br, ring_len);
	b->br = NULL;
	return ret;
}

void ring_buf_free(struct io_uring *ring, struct buf_ring *b)
{
	if (!b->br)
		return;
	io_uring_unregister_buf_ring(ring, b->bgid);
	munmap(b->br, b->entries * sizeof(struct io_uring_buf));
	free(b->bufs);
	memset(b, 0, sizeof(*b));
}

void ring_buf_put(struct buf_ring *b, unsigned bid)
{
	io_uring_buf_ring_add(b->br, ring_buf_addr(b, bid), b->buf_size,
			      (unsigned short)bid,
			      io_uring_buf_ring_mask(b->entries),
			      (int)b->unpublished);
	b->unpublished++;
}

void ring_buf_publish(struct buf_ring *b)
{
	if (!b->unpublished)
		return;
	io_uring_buf_ring_advance(b->br, (int)b->unpublished);
	b->unpublished = 0;
}

/* The opcodes of the data path, admin and control threads; IORING_OP_SOCKET,
 * URING_CMD and FIXED_FD_INSTALL are probed on their own. */
static const int probe_ops[] = {
	IORING_OP_ACCEPT, IORING_OP_CONNECT, IORING_OP_RECV, IORING_OP_SEND,
	IORING_OP_READ, IORING_OP_CLOSE, IORING_OP_ASYNC_CANCEL,
	IORING_OP_LINK_TIMEOUT, IORING_OP_SHUTDOWN, IORING_OP_MSG_RING,
};

static bool probe_buf_ring(struct io_uring *ring)
{
	struct io_uring_buf_reg reg;
	void *br;
	int ret;

	br = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		  MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		return false;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)br;
	reg.ring_entries = 8;
	reg.bgid = 0;
	ret = io_uring_register_buf_ring(ring, &reg, 0);
	if (ret == 0)
		io_uring_unregister_buf_ring(ring, 0);
	munmap(br, 4096);
	return ret == 0;
}

/* A direct socket in slot 1 of the probe's table, then TCP_NODELAY on it
 * through the ring, linked, as backend.c sets up every VM socket. Kernels
 * before 6.7 have no uring_cmd on sockets: -EOPNOTSUPP (or -EINVAL). */
static bool probe_sock_setsockopt(struct io_uring *ring)
{
	static const int one = 1;
	struct __kernel_timespec ts = { .tv_sec = 1 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	bool ok = false;

	sqe = ring_sqe(ring);
	io_uring_prep_socket_direct(sqe, AF_INET6, SOCK_STREAM, 0, 1, 0);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, 1);
	sqe = ring_sqe(ring);
	ring_prep_setsockopt(sqe, 1, IPPROTO_TCP, TCP_NODELAY, &one,
			     sizeof(one));
	io_uring_sqe_set_data64(sqe, 2);
	if (io_uring_submit_and_wait_timeout(ring, &cqe, 2, &ts, NULL) < 0)
		return false;
	io_uring_for_each_cqe(ring, head, cqe) {
		if (io_uring_cqe_get_data64(cqe) == 2)
			ok = cqe->res == 0;
		n++;
	}
	io_uring_cq_advance(ring, n);
	return ok;
}

void ring_probe(struct sockmode_kernel *out_k)
{
	struct io_uring_probe *probe;
	struct io_uring_params p;
	struct io_uring ring;
	bool uring_cmd;
	size_t i;
	int ret;

	memset(out_k, 0, sizeof(*out_k));
	probe = io_uring_get_probe();
	if (!probe)
		return;
	out_k->io_uring = true;
	out_k->ops = true;
	for (i = 0; i < sizeof(probe_ops) / sizeof(probe_ops[0]); i++)
		if (!io_uring_opcode_supported(probe, probe_ops[i]))
			out_k->ops = false;
	out_k->socket_direct = io_uring_opcode_supported(probe, IORING_OP_SOCKET);
	uring_cmd = io_uring_opcode_supported(probe, IORING_OP_URING_CMD);
	out_k->fd_install = io_uring_opcode_supported(probe,
						      RING_OP_FIXED_FD_INSTALL);
	io_uring_free_probe(probe);

	/* The flags ring_setup asks for; the plain ring for the rest. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	ret = io_uring_queue_init_params(4, &ring, &p);
	out_k->defer_taskrun = ret == 0;
	if (ret)
		ret = io_uring_queue_init(4, &ring, 0);
	if (ret) {
		out_k->io_uring = false;
		return;
	}
	out_k->buf_ring = probe_buf_ring(&ring);
	/* A file table as workers set it up: slot 0 for the kernel to hand
	 * out (the alloc range, 6.0), slot 1 for the test socket. */
	if (out_k->socket_direct)
		out_k->socket_direct = ring_files_setup(&ring, 2, 1) == 0;
	if (out_k->socket_direct && uring_cmd)
		out_k->sock_setsockopt = probe_sock_setsockopt(&ring);
	io_uring_queue_exit(&ring);
}
