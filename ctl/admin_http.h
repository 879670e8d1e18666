/* ctl/admin_http.h: between the admin API's HTTP server (admin_http.c:
 * accept, parse, answer, linger, expire) and its handlers (admin_api.c:
 * /health, /vms, /reload, /metrics). Nothing outside ctl/admin_*.c
 * includes it.
 *
 * The server parses a request into its struct aconn and calls
 * admin_handle_request once the request is complete; the handler answers
 * it exactly once through admin_respond*(), with the body (if any) built
 * in c->out first.
 */
#ifndef VMGATE_CTL_ADMIN_HTTP_H
#define VMGATE_CTL_ADMIN_HTTP_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <jansson.h>
#include <openssl/sha.h>

#include "core/log.h"
#include "core/ring.h"
#include "tls/buf.h"

struct control;

#define ADMIN_MAX_CONNS 64
#define ADMIN_MAX_BODY (64 * 1024)
#define ADMIN_MAX_HEADERS (16 * 1024)
#define ADMIN_MAX_URL 1024
#define ADMIN_MAX_AUTH 1024    /* longer Authorization values never match */
#define ADMIN_MAX_TOKEN 4096
#define ADMIN_IN_BUF 8192
#define ADMIN_REQUEST_MS 10000 /* to send a whole request */
#define ADMIN_SEND_MS 10000    /* without any send progress */
#define ADMIN_LINGER_MS 2000   /* reading after our FIN, before close */
#define ADMIN_LINGER_BYTES (1024 * 1024)
#define ADMIN_ACCEPT_BACKOFF_MS 100
#define ADMIN_RING_ENTRIES 256
#define ADMIN_HDR_RESERVE 512  /* room for the status line and headers */
/* Answers held at once across connections: a new VM listing waits (503)
 * while more than this is queued. */
#define ADMIN_OUT_BUDGET ((size_t)128 << 20)
#define ADMIN_LIST_MAX ((size_t)1 << 30)

enum admin_op {
	AOP_NONE,
	AOP_ACCEPT, /* slot = listener index */
	AOP_RECV,
	AOP_SEND,
	AOP_WAKE,   /* the eventfd admin_stop writes */
	AOP_IGNORE, /* close, cancel: nothing to do on completion */
};

static inline uint64_t aud(enum admin_op op, uint32_t slot, uint32_t gen)
{
	return ring_ud((enum ring_op)op, slot, gen);
}

enum aconn_state {
	AC_FREE,
	AC_READ,    /* reading and parsing a request */
	AC_WRITE,   /* sending an answer */
	AC_LINGER,  /* answer sent, FIN sent: drain until EOF, then close */
	AC_CLOSING, /* fd closed; waiting for in-flight operations */
};

struct admin;

struct aconn {
	struct admin *a;
	enum aconn_state state;
	int fd;
	uint32_t gen;
	unsigned inflight;
	bool recv_posted, send_posted;
	bool served;      /* an answer went out: idle now, not slow */
	bool close_after; /* close once the answer is sent */
	uint64_t deadline_ms;
	uint64_t started_ms;
	char peer[LOG_ADDR_MAX];

	http_parser parser;
	uint8_t in[ADMIN_IN_BUF];
	size_t in_off, in_len; /* unparsed bytes are in[in_off, in_len) */
	size_t discarded;      /* while lingering */

	/* the request being parsed */
	bool in_request;
	int fail_status;
	const char *fail_msg;
	size_t header_bytes;
	char url[ADMIN_MAX_URL + 1];
	size_t url_len;
	bool url_long;
	char hname[32];
	size_t hname_len;
	bool hname_long, last_was_value, in_auth;
	char auth[ADMIN_MAX_AUTH + 1];
	size_t auth_len;
	bool auth_bad; /* too long, or given twice */
	bool auth_seen;
	bool in_expect;      /* in an Expect: header's value */
	char expect[16];     /* its value, if it fits */
	size_t expect_len;
	uint8_t *body;
	size_t body_len, body_cap;

	struct buf out;
	size_t out_held; /* counted in admin.out_bytes */
};

struct admin_listener {
	int fd;
	bool armed;
	uint64_t retry_ms;
	const char *name; /* "tcp" or "unix" */
};

struct admin {
	struct control *ctl;
	pthread_t thread;
	bool thread_started;
	sem_t ready;
	int setup_err;
	atomic_bool stop;
	int efd;
	uint64_t efd_val;

	struct io_uring ring;
	bool ring_ok;
	uint64_t now_ms;

	struct admin_listener ls[2];
	unsigned ls_len;
	char *unix_path; /* to unlink on stop; NULL when none was made */
	ino_t unix_ino;  /* its inode: a newer vmgate's (--takeover) stays */

	bool have_token;
	uint8_t token_digest[SHA256_DIGEST_LENGTH];

	struct aconn conns[ADMIN_MAX_CONNS];
	unsigned live;
	size_t out_bytes; /* answer bytes held by every connection */
	uint64_t overload_logged_ms;
};

/* The answer buffer: admin_obuf_add and admin_obuf_json append (false when
 * out of memory), buf_free empties it. */
bool admin_obuf_add(struct buf *b, const void *data, size_t len);
bool admin_obuf_json(struct buf *b, const json_t *j);

/* admin_respond sends c->out (the body, possibly empty) with a status line
 * and headers in front, and logs the request. admin_respond_json sends
 * |j| (taken; NULL: a 500), admin_respond_error {"error": msg}. |extra|:
 * more header lines, each ending in CRLF, or NULL. */
void admin_respond(struct admin *a, struct aconn *c, int status,
		   const char *ctype, const char *extra);
void admin_respond_json(struct admin *a, struct aconn *c, int status,
			json_t *j, const char *extra);
void admin_respond_error(struct admin *a, struct aconn *c, int status,
			 const char *msg, const char *extra);

/* admin_handle_request (admin_api.c) answers the complete request in |c|:
 * checks the token, routes by method and path, calls into ctl/control.h. */
void admin_handle_request(struct admin *a, struct aconn *c);

#endif
