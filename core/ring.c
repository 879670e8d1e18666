/* core/ring.c: see ring.h. */
#include "core/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/kconfig.h"

int ring_setup(struct io_uring *ring, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	/* Completions far outnumber submissions under load (multishot
	 * accept, cancels): give the CQ room so it does not overflow. */
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
	p.cq_entries = entries * 4;
	if (IS_ENABLED(CONFIG_RING_DEFER_TASKRUN)) {
		p.flags |= IORING_SETUP_SINGLE_ISSUER |
			   IORING_SETUP_DEFER_TASKRUN;
		ret = io_uring_queue_init_params(entries, ring, &p);
		if (ret != -EINVAL)
			goto out;
		/* An older kernel: fall back to the plain setup. */
		p.flags &= ~(IORING_SETUP_SINGLE_ISSUER |
			     IORING_SETUP_DEFER_TASKRUN);
	}
	ret = io_uring_queue_init_params(entries, ring, &p);
out:
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

void ring_prep_setsockopt(struct io_uring_sqe *sqe, int fd, int level,
			  int optname, const void *optval, uint32_t optlen)
{
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = fd;
	ring_sock(sqe);
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
