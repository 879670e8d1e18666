/* ctl/admin_parse.h: what the admin API reads from its clients, pure (no
 * socket, no clock, no state beyond its arguments) and fuzzed
 * (fuzz/admin.c): a request collected from http-parser's callbacks into
 * struct admin_req, within the limits below; the request target routed
 * to an endpoint (admin_route); the bearer token of an Authorization
 * value (admin_bearer); and /stats/vms's ?top=N (admin_parse_top).
 *
 * Everything a client sends before its token is checked goes through
 * here, so the admin listener's untrusted bytes meet no other code of
 * vmgate's but jansson's (a PUT's body, after the token).
 */
#ifndef VMGATE_CTL_ADMIN_PARSE_H
#define VMGATE_CTL_ADMIN_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define ADMIN_MAX_BODY (64 * 1024)
#define ADMIN_MAX_HEADERS (16 * 1024)
#define ADMIN_MAX_URL 1024
#define ADMIN_MAX_AUTH 1024 /* longer Authorization values never match */

/* One connection's parser and the request it is reading. */
struct admin_req {
	http_parser parser;

	bool in_request; /* a request has begun and is not complete */
	bool began;      /* one began since the caller last cleared this */
	/* "Expect: 100-continue" on a request with a body: the client waits
	 * for "100 Continue" before it sends the body. The caller sends it
	 * and clears this. */
	bool want_continue;
	bool close_after; /* the complete request asks to close after it */

	int fail_status; /* 400, 413 or 500: answer it, then close */
	const char *fail_msg;
	char errbuf[160];

	size_t header_bytes; /* request line and headers so far */
	char url[ADMIN_MAX_URL + 1];
	size_t url_len;
	bool url_long; /* longer than ADMIN_MAX_URL: url holds its start */
	char hname[32];
	size_t hname_len;
	bool hname_long, in_name, last_was_value, in_auth;
	char auth[ADMIN_MAX_AUTH + 1]; /* the Authorization value, as sent */
	size_t auth_len;
	bool auth_bad; /* too long, or given twice */
	bool auth_seen;
	bool in_expect;  /* in an Expect: header's value */
	char expect[16]; /* its value, if it fits */
	size_t expect_len;
	uint8_t *body; /* owned; NULL when empty */
	size_t body_len, body_cap;
};

enum admin_feed {
	ADMIN_FEED_MORE,    /* all of it parsed; more bytes are needed */
	ADMIN_FEED_REQUEST, /* a request is complete; the parser is paused */
	ADMIN_FEED_ERROR,   /* answer fail_status with fail_msg, then close */
};

/* admin_req_init readies |r| for a new connection. */
void admin_req_init(struct admin_req *r);

/* admin_req_feed parses |in|, stopping after a complete request, and
 * sets *|used| to the bytes it took (all of them, unless it returns
 * ADMIN_FEED_REQUEST with a pipelined request behind). */
enum admin_feed admin_req_feed(struct admin_req *r, const uint8_t *in,
			       size_t len, size_t *used);

/* admin_req_next frees the answered request's body and lets the parser
 * go on to the next request. */
void admin_req_next(struct admin_req *r);

/* admin_req_free frees what |r| holds; |r| may be fed no more. */
void admin_req_free(struct admin_req *r);

enum admin_ep {
	AEP_BAD_URL,   /* no path in the request target: 404 before auth */
	AEP_NOT_FOUND, /* 404, after auth */
	AEP_HEALTH,    /* GET /health: no token needed */
	AEP_VMS,       /* GET /vms */
	AEP_VM,        /* GET, PUT, DELETE /vms/ID */
	AEP_VM_STATS,  /* GET /vms/ID/stats */
	AEP_STATS_VMS, /* GET /stats/vms[?top=N] */
	AEP_RELOAD,    /* POST /reload */
	AEP_FLEET,     /* GET /fleet */
	AEP_METRICS,   /* GET /metrics */
};

struct admin_target {
	enum admin_ep ep;
	const char *allow; /* the methods |ep| takes, for 405's Allow */
	bool allowed;      /* the request's method is one of them */
	/* AEP_VM, AEP_VM_STATS: the ID as sent (one path segment, no
	 * '/'; checked as a VM id by whoever looks it up). */
	char id[ADMIN_MAX_URL + 1];
	/* AEP_STATS_VMS: the query, pointing into the url; "" if none. */
	const char *query;
	size_t query_len;
};

/* admin_route finds the endpoint of request target |url| (|len| bytes,
 * at most ADMIN_MAX_URL) for |method|. */
void admin_route(struct admin_target *t, enum http_method method,
		 const char *url, size_t len);

/* admin_bearer finds the token in Authorization value |v| ("Bearer
 * <token>", the scheme in any case, blanks around): false if |v| is not
 * of that form. */
bool admin_bearer(const char *v, size_t len, const char **tok,
		  size_t *tok_len);

/* ?top=N: 1 to ADMIN_TOP_MAX VMs; ADMIN_TOP_DEFAULT with no query. */
#define ADMIN_TOP_DEFAULT 10
#define ADMIN_TOP_MAX 10000

/* admin_parse_top reads query |q| (|len| bytes: "" or "top=N"). */
bool admin_parse_top(size_t *out, const char *q, size_t len);

#endif
