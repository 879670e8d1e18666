/* core/ring.h: io_uring helpers shared by the engine.
 *
 * Every SQE vmgate submits carries user_data = {op, generation, slot}: the
 * operation, the connection's pool slot (or listener index) and the
 * connection's generation when it was submitted. A completion whose
 * generation no longer matches its slot belongs to a connection that is
 * gone, and is dropped.
 *
 * Receives use one registered provided-buffer ring per worker: the kernel
 * picks a buffer when data arrives, so an idle connection holds none.
 */
#ifndef VMGATE_CORE_RING_H
#define VMGATE_CORE_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/kconfig.h"
#include "core/sockmode.h"

enum ring_op {
	OP_NONE,
	OP_ACCEPT,      /* slot = listener index x LISTENER_ACCEPTS + accept */
	OP_CLIENT_RECV,
	OP_CLIENT_SEND,
	OP_VM_SOCKET,   /* socket + setsockopt before the connect (direct
			 * descriptors): completes only if it fails */
	OP_VM_CONNECT,
	OP_VM_TIMEOUT,  /* the connect's linked timeout */
	OP_VM_RECV,
	OP_VM_SEND,
	OP_SHUT_CLIENT, /* a direct descriptor installed as an fd, for */
	OP_SHUT_VM,     /* shutdown(2): see relay.c's shut_wr */
	OP_SHUTDOWN,    /* IORING_OP_SHUTDOWN, when that failed */
	OP_PORT_FD,     /* a direct descriptor installed as an fd, for
			 * getsockname(2): see conn.c's conn_accept */
	OP_CANCEL,
	OP_CLOSE,       /* fire and forget: the completion is ignored */
	OP_CLIENT_FD,   /* the client's direct descriptor installed as an
			 * fd, for getsockname(2): see backend.c */
	OP_KEY_RECV,    /* the worker's signer channel (core/signer.h) */
	OP_KEY_SEND,
};

static inline uint64_t ring_ud(enum ring_op op, uint32_t slot, uint32_t gen)
{
	return (uint64_t)op << 56 | (uint64_t)(gen & 0xffffff) << 32 | slot;
}

static inline enum ring_op ring_ud_op(uint64_t ud)
{
	return (enum ring_op)(ud >> 56);
}

static inline uint32_t ring_ud_slot(uint64_t ud)
{
	return (uint32_t)ud;
}

static inline uint32_t ring_ud_gen(uint64_t ud)
{
	return (uint32_t)(ud >> 32) & 0xffffff;
}

/* ring_setup creates |ring| for the calling thread, with SINGLE_ISSUER and
 * DEFER_TASKRUN when CONFIG_RING_DEFER_TASKRUN (startup has checked that
 * the kernel has them, see sockmode_choose). Returns 0 or -errno. */
int ring_setup(struct io_uring *ring, unsigned entries);

/* ring_sqe returns a free SQE, submitting what is queued to make room
 * when the submission queue is full. Never NULL. */
struct io_uring_sqe *ring_sqe(struct io_uring *ring);

/* How connection sockets are held (core/sockmode.h), set by main once
 * before any worker starts and read-only after: with ring_direct an int
 * naming a connection socket is an index into the worker ring's
 * registered file table (a direct descriptor), not an fd; ring_fd_install
 * says a half-close may borrow an fd with IORING_OP_FIXED_FD_INSTALL.
 * Both false (plain fds) until set. */
extern bool ring_direct;
extern bool ring_fd_install;

/* ring_probe fills |out_k| with what the running kernel offers: the probe
 * opcode list, and real submissions on a scratch ring where the list
 * cannot tell (setup flags, buffer rings, the socket commands). */
void ring_probe(struct sockmode_kernel *out_k);

/* Every SQE on a connection socket needs ring_sock(). */
static inline void ring_sock(struct io_uring_sqe *sqe)
{
	if (ring_direct)
		sqe->flags |= IOSQE_FIXED_FILE;
}

/* ring_prep_close_sock closes connection socket |fd|, fire and forget:
 * a close that succeeds posts no completion, so it never ends the
 * worker's wait by itself (in W1 one turn of the loop in fourteen had
 * nothing else to do). */
static inline void ring_prep_close_sock(struct io_uring_sqe *sqe, int fd)
{
	if (ring_direct)
		io_uring_prep_close_direct(sqe, (unsigned)fd);
	else
		io_uring_prep_close(sqe, fd);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

/* ring_prep_fd_install: IORING_OP_FIXED_FD_INSTALL (Linux 6.8; liburing
 * 2.3 has no helper) of direct descriptor |fixed|: completes with a new
 * O_CLOEXEC fd for the same file, which the caller closes. */
void ring_prep_fd_install(struct io_uring_sqe *sqe, int fixed);

/* ring_prep_setsockopt: setsockopt(2) on direct descriptor |fixed|
 * through the ring (SOCKET_URING_OP_SETSOCKOPT, Linux 6.7; liburing 2.3
 * has no helper). |optval| must stay valid until the SQE is submitted. */
void ring_prep_setsockopt(struct io_uring_sqe *sqe, int fixed, int level,
			  int optname, const void *optval, uint32_t optlen);

/* The kernel's IORING_MAX_FIXED_FILES. */
#define RING_MAX_FILES (1u << 20)

/* ring_files_setup registers a table of |total| direct descriptors, the
 * first |alloc_len| of which the kernel hands out to accepts
 * (IORING_FILE_INDEX_ALLOC). Returns 0 or -errno. */
int ring_files_setup(struct io_uring *ring, unsigned total,
		     unsigned alloc_len);

struct buf_ring {
	struct io_uring_buf_ring *br;
	uint8_t *bufs;
	unsigned entries;   /* power of two */
	unsigned buf_size;
	unsigned unpublished; /* buffers added but not yet made visible */
	int bgid;
};

#define RING_BGID 0

/* ring_buf_setup registers a ring of |entries| buffers of |buf_size|
 * bytes as buffer group |bgid|. Returns 0 or -errno. */
int ring_buf_setup(struct io_uring *ring, struct buf_ring *b,
		   unsigned entries, unsigned buf_size, int bgid);
void ring_buf_free(struct io_uring *ring, struct buf_ring *b);

static inline uint8_t *ring_buf_addr(const struct buf_ring *b, unsigned bid)
{
	return b->bufs + (size_t)bid * b->buf_size;
}

/* ring_buf_put gives buffer |bid| back; ring_buf_publish makes every
 * buffer put since the last call visible to the kernel at once. */
void ring_buf_put(struct buf_ring *b, unsigned bid);
void ring_buf_publish(struct buf_ring *b);

#endif
