/* signer/keyop.c: see keyop.h. */
#include "signer/keyop.h"

#include <string.h>

/* A bounds-checked cursor over untrusted bytes: every read checks what is
 * left first, and a failed read leaves the cursor unusable. */
struct rd {
	const uint8_t *p;
	size_t left;
};

static bool rd_bytes(struct rd *r, const uint8_t **out, size_t n)
{
	if (r->left < n)
		return false;
	*out = r->p;
	r->p += n;
	r->left -= n;
	return true;
}

static bool rd_u(struct rd *r, uint64_t *out, size_t n)
{
	const uint8_t *b;
	uint64_t v = 0;
	size_t i;

	if (!rd_bytes(r, &b, n))
		return false;
	for (i = 0; i < n; i++)
		v = v << 8 | b[i];
	*out = v;
	return true;
}

/* A u16 length, at most |max|, then that many bytes. */
static bool rd_prefixed(struct rd *r, const uint8_t **out, size_t *out_len,
			size_t max)
{
	uint64_t n;

	if (!rd_u(r, &n, 2) || n > max || !rd_bytes(r, out, (size_t)n))
		return false;
	*out_len = (size_t)n;
	return true;
}

enum keyop_parse keyop_decode(struct keyop_msg *out, size_t *out_used,
			      const uint8_t *in, size_t in_len)
{
	struct rd r = { in, in_len };
	uint64_t body_len, v;

	memset(out, 0, sizeof(*out));
	*out_used = 0;
	if (!rd_u(&r, &body_len, KEYOP_HDR_LEN))
		return KEYOP_NEED_MORE;
	if (body_len == 0 || body_len > KEYOP_BODY_MAX)
		return KEYOP_BAD;
	if (r.left < body_len)
		return KEYOP_NEED_MORE;
	r.left = (size_t)body_len; /* the frame, not what follows it */
	if (!rd_u(&r, &v, 1) || !rd_u(&r, &out->id, 8))
		return KEYOP_BAD;
	out->type = (uint8_t)v;
	switch (out->type) {
	case KEYOP_SIGN:
		if (!rd_u(&r, &out->key_id, 8) || !rd_u(&r, &v, 2))
			return KEYOP_BAD;
		out->sigalg = (uint16_t)v;
		if (!rd_prefixed(&r, &out->data, &out->data_len,
				 KEYOP_DATA_MAX))
			return KEYOP_BAD;
		break;
	case KEYOP_LOAD:
		if (!rd_u(&r, &out->key_id, 8) ||
		    !rd_prefixed(&r, &out->data, &out->data_len,
				 KEYOP_DATA_MAX) ||
		    !out->data_len)
			return KEYOP_BAD;
		break;
	case KEYOP_UNLOAD:
		if (!rd_u(&r, &out->key_id, 8))
			return KEYOP_BAD;
		break;
	case KEYOP_ANSWER:
		if (!rd_u(&r, &v, 1) || v > KEYOP_STATUS_MAX)
			return KEYOP_BAD;
		out->status = (uint8_t)v;
		if (!rd_prefixed(&r, &out->data, &out->data_len,
				 KEYOP_DATA_MAX) ||
		    (out->status != KEYOP_STATUS_OK && out->data_len))
			return KEYOP_BAD;
		break;
	default:
		return KEYOP_BAD;
	}
	if (r.left)
		return KEYOP_BAD;
	*out_used = KEYOP_HDR_LEN + (size_t)body_len;
	return KEYOP_OK;
}

static uint8_t *put_u(uint8_t *p, uint64_t v, size_t n)
{
	while (n--)
		*p++ = (uint8_t)(v >> (8 * n));
	return p;
}

bool keyop_encode(uint8_t *out, size_t *out_len, size_t cap,
		  const struct keyop_msg *m)
{
	size_t body = 1 + 8 + 2 + m->data_len; /* type, id, data */
	uint8_t *p = out;

	*out_len = 0;
	if (m->data_len > KEYOP_DATA_MAX || (m->data_len && !m->data))
		return false;
	switch (m->type) {
	case KEYOP_SIGN:
		body += 8 + 2;
		break;
	case KEYOP_LOAD:
		if (!m->data_len)
			return false;
		body += 8;
		break;
	case KEYOP_UNLOAD:
		if (m->data_len)
			return false;
		body += 8 - 2; /* a key id and no data */
		break;
	case KEYOP_ANSWER:
		if (m->status > KEYOP_STATUS_MAX ||
		    (m->status != KEYOP_STATUS_OK && m->data_len))
			return false;
		body += 1;
		break;
	default:
		return false;
	}
	if (cap < KEYOP_HDR_LEN + body)
		return false;
	p = put_u(p, body, KEYOP_HDR_LEN);
	p = put_u(p, m->type, 1);
	p = put_u(p, m->id, 8);
	if (m->type != KEYOP_ANSWER)
		p = put_u(p, m->key_id, 8);
	if (m->type == KEYOP_SIGN)
		p = put_u(p, m->sigalg, 2);
	if (m->type == KEYOP_ANSWER)
		p = put_u(p, m->status, 1);
	if (m->type != KEYOP_UNLOAD)
		p = put_u(p, m->data_len, 2);
	if (m->data_len)
		memcpy(p, m->data, m->data_len);
	*out_len = KEYOP_HDR_LEN + body;
	return true;
}

uint64_t keyop_key_id(const uint8_t digest[32])
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | digest[i];
	return v;
}
