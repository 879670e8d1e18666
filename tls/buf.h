/* tls/buf.h: the byte buffer every part of vmgate uses.
 *
 * A struct buf holds bytes [off, off + len) of a block of cap bytes at
 * data: bytes are appended at the tail and taken from the head. All zero
 * is a valid empty buffer that holds no block, and buf_free on it is a
 * no-op. The invariant, checked by buf_ok (and asserted by the functions
 * below): off + len <= cap, and no block means all zero.
 *
 * It lives in tls/, the lowest layer that needs it, and includes nothing
 * of vmgate's: core/ and ctl/ may include tls/, never the reverse. Who
 * owns the block is the user's business: tls/session.c and the admin
 * server grow theirs with buf_reserve (malloc), core/relay.c lends its
 * from the worker's pool and sets cap to the pool's block size.
 */
#ifndef VMGATE_TLS_BUF_H
#define VMGATE_TLS_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	uint32_t off, len, cap;
};

static inline bool buf_ok(const struct buf *b)
{
	if (!b->data)
		return !b->off && !b->len && !b->cap;
	return (uint64_t)b->off + b->len <= b->cap;
}

static inline uint8_t *buf_head(const struct buf *b)
{
	return b->data + b->off;
}

static inline uint8_t *buf_tail(const struct buf *b)
{
	return b->data + b->off + b->len;
}

/* Bytes that fit behind the tail without moving or growing. */
static inline uint32_t buf_room(const struct buf *b)
{
	return b->cap - b->off - b->len;
}

/* buf_consume drops |n| (<= len) bytes from the head; once empty, the
 * next byte goes to the start of the block again. */
void buf_consume(struct buf *b, size_t n);

/* buf_compact moves the bytes to the start of the block. */
void buf_compact(struct buf *b);

/* buf_reserve makes room for |more| bytes behind the tail: by compacting
 * when that is enough, else by growing the block (realloc) to a power of
 * two times |min_cap|. False, with the bytes kept, if that would pass
 * |max_cap| bytes or memory is short. Only for blocks from malloc. */
bool buf_reserve(struct buf *b, size_t more, uint32_t min_cap,
		 uint32_t max_cap);

/* buf_append copies |len| bytes behind the tail (buf_reserve first). */
bool buf_append(struct buf *b, const void *data, size_t len,
		uint32_t min_cap, uint32_t max_cap);

/* buf_free frees a block from malloc and leaves |b| all zero. */
void buf_free(struct buf *b);

#endif
