/* tls/buf.c: see buf.h. */
#include "tls/buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void buf_consume(struct buf *b, size_t n)
{
	assert(buf_ok(b) && n <= b->len);
	b->off += (uint32_t)n;
	b->len -= (uint32_t)n;
	if (!b->len)
		b->off = 0;
}

void buf_compact(struct buf *b)
{
	assert(buf_ok(b));
	if (!b->off)
		return;
	memmove(b->data, b->data + b->off, b->len);
	b->off = 0;
}

bool buf_reserve(struct buf *b, size_t more, uint32_t min_cap,
		 uint32_t max_cap)
{
	size_t need, cap;
	uint8_t *n;

	assert(buf_ok(b) && min_cap);
	if (more <= buf_room(b))
		return true;
	need = (size_t)b->len + more;
	if (need > max_cap)
		return false;
	if (need <= b->cap) {
		buf_compact(b);
		return true;
	}
	for (cap = b->cap ? b->cap : min_cap; cap < need; cap *= 2)
		;
	if (cap > max_cap)
		cap = max_cap;
	/* Compact first, so realloc copies only what is kept. */
	buf_compact(b);
	n = realloc(b->data, cap);
	if (!n)
		return false;
	b->data = n;
	b->cap = (uint32_t)cap;
	return true;
}

bool buf_append(struct buf *b, const void *data, size_t len,
		uint32_t min_cap, uint32_t max_cap)
{
	if (!buf_reserve(b, len, min_cap, max_cap))
		return false;
	if (len)
		memcpy(buf_tail(b), data, len);
	b->len += (uint32_t)len;
	return true;
}

void buf_free(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}
