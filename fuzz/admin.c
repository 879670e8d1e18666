/* fuzz/admin.c: libFuzzer target for ctl/admin_parse.c, what the admin
 * API reads from a client before and after its token: requests collected
 * from http-parser, the route of each request target, the bearer token of
 * its Authorization value, /stats/vms's ?top=N, and a PUT's JSON body up
 * to its ports (ctl/fleet_parse.c's fleet_parse_ports, as ctl/overlay.c
 * calls it).
 *
 * Input: one byte that chooses how the rest is split into reads, then the
 * bytes a client sends on one connection (pipelined requests included).
 * The bytes go through twice: in the chosen reads, then in one.
 * Invariants (any breach aborts):
 *   - the outcome does not depend on the split: the same requests
 *     (method, target, Authorization, body, keep-alive, 100-continue)
 *     in the same order, then the same error status or none;
 *   - a feed takes no more than it is given, and all of it unless a
 *     request completed; an error is 400, 413, 414 or 500 with a message;
 *   - the limits hold at every step: target, Authorization value and body
 *     within ADMIN_MAX_URL, ADMIN_MAX_AUTH and ADMIN_MAX_BODY, headers
 *     within ADMIN_MAX_HEADERS unless the answer is 413 (or 414, for a
 *     request target that alone is too long);
 *   - a route's ID is one path segment taken from the target, its query
 *     lies within the target, a found endpoint names the methods it
 *     allows; ?top=N accepted only for 1..ADMIN_TOP_MAX;
 *   - a bearer token lies within the value, with no blank at either end.
 * Leaks are found by the sanitizer.
 *
 * Seed corpus: fuzz/corpus/admin/ (fuzz/mkseeds.py).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ctl/admin_parse.h"
#include "ctl/fleet_parse.h"

#define MAX_REQUESTS 16

/* What a run saw, to compare the two splits. */
struct seen {
	size_t n;
	uint64_t sum[MAX_REQUESTS];
	int status; /* the error's, or 0 */
};

static uint64_t mix(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

static void check_limits(const struct admin_req *r)
{
	if (r->url_len > ADMIN_MAX_URL || r->url[r->url_len] != '\0' ||
	    r->auth_len > ADMIN_MAX_AUTH || r->body_len > ADMIN_MAX_BODY ||
	    r->body_len > r->body_cap || r->hname_len >= sizeof(r->hname) ||
	    (r->body_cap && !r->body))
		abort();
	/* Past the header limit: 413, or 414 when the request target alone
	 * is too long. */
	if (r->header_bytes > ADMIN_MAX_HEADERS &&
	    !(r->fail_status == 413 ||
	      (r->fail_status == 414 && r->url_long)))
		abort();
}

static void check_route(const struct admin_req *r)
{
	struct admin_target t;
	size_t idlen, top;

	admin_route(&t, (enum http_method)r->parser.method, r->url,
		    r->url_len);
	if (t.ep != AEP_BAD_URL && t.ep != AEP_NOT_FOUND && !t.allow)
		abort();
	if (t.ep == AEP_VM || t.ep == AEP_VM_STATS) {
		idlen = strlen(t.id);
		if (!idlen || memchr(t.id, '/', idlen) ||
		    !memmem(r->url, r->url_len, t.id, idlen))
			abort();
	} else if (t.id[0]) {
		abort();
	}
	if (t.query_len && (t.query < r->url ||
			    t.query + t.query_len > r->url + r->url_len))
		abort();
	if (admin_parse_top(&top, t.query, t.query_len) &&
	    (top < 1 || top > ADMIN_TOP_MAX))
		abort();
}

static void check_bearer(const struct admin_req *r)
{
	const char *tok;
	size_t len;

	if (!r->auth_seen || r->auth_bad ||
	    !admin_bearer(r->auth, r->auth_len, &tok, &len))
		return;
	if (tok < r->auth || tok + len > r->auth + r->auth_len)
		abort();
	if (len && (tok[0] == ' ' || tok[0] == '\t' || tok[len - 1] == ' ' ||
		    tok[len - 1] == '\t'))
		abort();
}

/* A PUT's body as ctl/admin_api.c's do_vm_put reads it. */
static void check_body(const struct admin_req *r)
{
	struct config_vm_ports *ports = NULL;
	json_t *body, *jports;
	size_t bad;

	if (!r->body_len)
		return;
	body = json_loadb((const char *)r->body, r->body_len,
			  JSON_REJECT_DUPLICATES, NULL);
	if (!body)
		return;
	jports = json_is_object(body) ? json_object_get(body, "ports") : NULL;
	if (jports && fleet_parse_ports(&ports, &bad, jports) && !ports)
		abort();
	free(ports);
	json_decref(body);
}

static uint64_t request_sum(const struct admin_req *r, bool cont)
{
	uint64_t h = 0xcbf29ce484222325ull;
	uint8_t flags[5] = { r->parser.method, r->url_long, r->close_after,
			     cont, r->auth_seen ? 1 + r->auth_bad : 0 };

	h = mix(h, flags, sizeof(flags));
	if (!r->url_long)
		h = mix(h, r->url, r->url_len);
	if (r->auth_seen && !r->auth_bad)
		h = mix(h, r->auth, r->auth_len);
	return mix(h, r->body, r->body_len);
}

/* One connection: |data| in reads of the sizes |split| gives (0: one). */
static void run(struct seen *s, const uint8_t *data, size_t size,
		uint8_t split)
{
	uint32_t rnd = split * 2654435761u + 1;
	struct admin_req r;
	bool cont = false;
	size_t off = 0;

	memset(s, 0, sizeof(*s));
	admin_req_init(&r);
	while (off < size) {
		size_t chunk = size - off, used;
		enum admin_feed res;

		if (split) {
			rnd = rnd * 1103515245u + 12345u;
			chunk = 1 + (rnd >> 16) % (split & 0x80 ? 7 : 300);
			if (chunk > size - off)
				chunk = size - off;
		}
		res = admin_req_feed(&r, data + off, chunk, &used);
		if (used > chunk || (res == ADMIN_FEED_MORE && used != chunk))
			abort();
		off += used;
		check_limits(&r);
		cont |= r.want_continue;
		r.want_continue = r.began = false;
		if (res == ADMIN_FEED_ERROR) {
			if ((r.fail_status != 400 && r.fail_status != 413 &&
			     r.fail_status != 414 && r.fail_status != 500) ||
			    !r.fail_msg || !r.fail_msg[0])
				abort();
			s->status = r.fail_status;
			break;
		}
		if (res != ADMIN_FEED_REQUEST)
			continue;
		if (r.in_request)
			abort();
		if (!r.url_long)
			check_route(&r);
		check_bearer(&r);
		check_body(&r);
		s->sum[s->n++] = request_sum(&r, cont);
		cont = false;
		if (s->n == MAX_REQUESTS)
			break;
		admin_req_next(&r);
	}
	admin_req_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen a, b;

	if (!size)
		return 0;
	run(&a, data + 1, size - 1, data[0] | 1);
	run(&b, data + 1, size - 1, 0);
	/* A split can only end a run early at MAX_REQUESTS: the same. */
	if (a.n != b.n || a.status != b.status ||
	    memcmp(a.sum, b.sum, a.n * sizeof(a.sum[0])))
		abort();
	return 0;
}
