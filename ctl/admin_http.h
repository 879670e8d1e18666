/* ctl/admin_http.h: between the admin API's HTTP server (admin_http.c:
 * accept, parse, answer, linger, expire) and its handlers (admin_api.c:
 * /health, /vms, /reload, /metrics). Nothing outside ctl/admin_*.c
 * includes it.
 *
 * The server parses a request into its connection's struct admin_req
 * (admin_parse.h) and calls admin_handle_request once the request is
 * complete; the handler answers
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

#include <jansson.h>
#include <openssl/sha.h>

#include "core/log.h"
#include "core/ring.h"
#include "ctl/admin_parse.h"
#include "tls/buf.h"

struct control;

#define ADMIN_MAX_CONNS 64 /* open at once, but for those being closed */
/* Slots beyond it: an idle connection closed to make room for a new one
 * holds its slot until its receive is cancelled. */
#define ADMIN_CONN_SLOTS (ADMIN_MAX_CONNS + 16)
/* How long a connection must have been idle to be closed for a new one:
 * kept alive after an answer, or silent since its accept. */
#define ADMIN_EVICT_SERVED_MS 1000
#define ADMIN_EVICT_SILENT_MS 100
#define ADMIN_MAX_TOKEN 4096
/* admin_token_len: the length of the token in the |len| bytes of a token
 * file, trailing whitespace off (the admin API's and the loader's rule). */
static inline size_t admin_token_len(const uint8_t *buf, size_t len)
{
	while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\t' ||
		       buf[len - 1] == '\r' || buf[len - 1] == '\n'))
		len--;
	return len;
}
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
/* Fleet writes waiting for the writer thread (the one running is not
 * counted); one more is refused with a 503. */
#define ADMIN_WRITE_QUEUE 64
/* Stopping: how long the answers to the writer's jobs (503, vmgate is
 * stopping) may take to go out before the connections are closed. */
#define ADMIN_STOP_FLUSH_MS 500

enum admin_op {
	AOP_NONE,
	AOP_ACCEPT, /* slot = listener index */
	AOP_RECV,
	AOP_SEND,
	AOP_WAKE,   /* the eventfd admin_stop and the writer thread write */
	AOP_POLL,   /* a waiting connection's peer closed (POLLRDHUP) */
	AOP_IGNORE, /* close, cancel: nothing to do on completion */
};

static inline uint64_t aud(enum admin_op op, uint32_t slot, uint32_t gen)
{
	return ring_ud((enum ring_op)op, slot, gen);
}

enum aconn_state {
	AC_FREE,
	AC_READ,    /* reading and parsing a request */
	AC_WAIT,    /* its answer is pending on the writer thread */
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
	bool recv_posted, send_posted, poll_posted;
	bool served;      /* an answer went out: idle now, not slow */
	bool close_after; /* close once the answer is sent */
	uint64_t deadline_ms;
	uint64_t started_ms;
	char peer[LOG_ADDR_MAX];

	struct admin_req req; /* its parser and the request being read */
	uint8_t in[ADMIN_IN_BUF];
	size_t in_off, in_len; /* unparsed bytes are in[in_off, in_len) */
	size_t discarded;      /* while lingering */

	struct buf out;
	size_t out_held; /* counted in admin.out_bytes */
};

struct config_vm_ports;

/* A fleet write (PUT or DELETE /vms/ID) for the writer thread
 * (admin_write.c): what it needs, copied out of the request, since the
 * connection may be gone when it is done; then what it answered. */
/* What a job asks of etcd: a VM's PUT or DELETE, or GET /fleet (which
 * lists the other appliances from etcd). */
enum admin_job_kind { JOB_PUT, JOB_DELETE, JOB_FLEET };

struct admin_job {
	struct admin_job *next;
	uint32_t slot, gen; /* the connection that asked */
	enum admin_job_kind kind;
	char id[ADMIN_MAX_URL + 1];
	char *address;                 /* PUT: owned */
	struct config_vm_ports *ports; /* PUT: owned; NULL: every port */

	int ret;
	bool created;
	bool applied; /* PUT, DELETE: by this appliance, not only etcd */
	char err[512];
	json_t *status;                /* JOB_FLEET's answer: owned */
};

struct admin_jobs {
	struct admin_job *head, *tail;
	size_t len;
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

	/* Under tlock: a reload (admin_token_reload, on the reloading
	 * thread) replaces the digest. have_token does not change. */
	pthread_mutex_t tlock;
	bool have_token;
	uint8_t token_digest[SHA256_DIGEST_LENGTH];

	struct aconn conns[ADMIN_CONN_SLOTS];
	unsigned live;
	size_t out_bytes; /* answer bytes held by every connection */
	uint64_t overload_logged_ms; /* "none idle", once a second */
	uint64_t evict_logged_ms;    /* "closing idle", once a second */

	/* The fleet writer thread (admin_write.c), in fleet mode only. Under
	 * wlock: */
	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	struct admin_jobs wqueue; /* waiting to run */
	struct admin_jobs wdone;  /* answered, for the admin thread */
	bool wstop;
	bool wrunning;     /* a job is out of wqueue, not yet in wdone */
	uint64_t wrefused; /* 503s for a full queue */
	pthread_t writer;
	bool writer_started;
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

/* admin_wait (admin_http.c) parks |c| until its answer comes from the
 * writer thread: its parser stays paused, no request timeout applies,
 * and a peer that closes meanwhile gets its connection closed (the
 * answer is then dropped). admin_conn_waiting is the connection that
 * asked for job |slot|, |gen| if it still waits, else NULL. */
void admin_wait(struct admin *a, struct aconn *c);
struct aconn *admin_conn_waiting(struct admin *a, uint32_t slot, uint32_t gen);

/* The fleet writer (admin_write.c). admin_write_start starts its thread
 * when |a| is in fleet mode (0 or -errno); admin_write_stop stops it: the
 * write running finishes (within about a second once control_stopping
 * cancelled the etcd calls, else within its etcd timeouts), and the jobs
 * still queued become cancelled ones (-ECANCELED, ETCD_CANCELLED) on the
 * done list, the eventfd written, for admin_write_reap to answer; safe
 * when never started, and twice. admin_write_free stops it and frees
 * what is left on both lists.
 * admin_write_submit queues |j| (taken) for connection |c| and parks |c|,
 * or returns -EBUSY (the queue is full) or -ESHUTDOWN (stopping); |j|
 * then stays the caller's.
 * admin_write_reap, on the admin thread when its eventfd fired (and once
 * more when it stops), answers the connections whose jobs are done; once
 * the writer is stopping, with Connection: close. */
int admin_write_start(struct admin *a);
void admin_write_stop(struct admin *a);
void admin_write_free(struct admin *a);
int admin_write_submit(struct admin *a, struct aconn *c, struct admin_job *j);
void admin_write_reap(struct admin *a);
void admin_job_free(struct admin_job *j);
/* For /metrics: the queue's length, whether a write is running, and the
 * count of writes refused as the queue was full. */
void admin_write_stats(struct admin *a, size_t *out_queued,
		       bool *out_running, uint64_t *out_refused);

/* admin_write_answer (admin_api.c) answers |c| with the result of |j|,
 * exactly as a synchronous write would have. */
void admin_write_answer(struct admin *a, struct aconn *c,
			struct admin_job *j);

/* admin_handle_request (admin_api.c) answers the complete request in |c|:
 * checks the token, routes by method and path, calls into ctl/control.h. */
void admin_handle_request(struct admin *a, struct aconn *c);

#endif
