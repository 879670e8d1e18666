/* ctl/etcd.h: a small client of etcd's v3 HTTP gateway (/v3/...), over
 * libcurl, for the fleet (ctl/fleet.c) and the admin API's writes.
 * libcurl is not linked: etcd_init loads it (etcd_curl_load), so only a
 * gate in fleet mode has it mapped.
 *
 * Control plane only: calls block their thread for at most the configured
 * timeout (every unary request has one; a stale or forged token can
 * otherwise hold a gateway request for minutes), and the data path never
 * waits on any of this.
 *
 * Endpoints are tried in turn: a request that cannot reach one moves the
 * client to the next, so every caller shares one idea of "the endpoint
 * that works". With a username, a token from /v3/auth/authenticate is
 * sent with every request and taken again when etcd refuses it (simple
 * tokens live in a member's memory and die with a restart). https
 * endpoints use the configured CA and optional client certificate.
 *
 * Thread-safe: the client's state is under its own mutex, and each call
 * uses its own curl handle.
 *
 * A stopping vmgate does not wait on etcd: etcd_cancel makes every call,
 * running or to come, fail at once with -ECANCELED.
 */
#ifndef VMGATE_CTL_ETCD_H
#define VMGATE_CTL_ETCD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl/fleet_parse.h"

struct config_fleet;

struct etcd {
	const struct config_fleet *cfg; /* borrowed: the startup config's */
	pthread_mutex_t lock;
	size_t ep;       /* the endpoint to try first */
	char token[512]; /* "" until authenticated */
	char password[256];
	size_t answer_max; /* ETCD_ANSWER_MAX (the tests may lower it) */
	atomic_bool cancel; /* etcd_cancel was called */
};

/* The largest answer taken (base64 and JSON included): a 10,000-key page
 * of VMs is a few MB. */
#define ETCD_ANSWER_MAX (256u << 20)

/* What a cancelled call says (in |err|, a watch's error). */
#define ETCD_CANCELLED "cancelled: vmgate is stopping"

/* etcd_curl_load loads libcurl-gnutls.so.4 (dlopen, RTLD_DEEPBIND: its
 * dependencies bring OpenSSL's libcrypto.so.3, which must not bind to
 * BoringSSL) and runs curl_global_init, once per process; later calls
 * give the first one's answer. etcd_init calls it; vmgate --check of a
 * fleet configuration too. 0, or -ELIBACC with |err| naming the library,
 * dlerror()'s text and the Debian package. */
int etcd_curl_load(char *err, size_t err_len);

/* etcd_init loads libcurl (etcd_curl_load) and reads the password file,
 * if any. 0 or -errno with |err|. */
int etcd_init(struct etcd *e, const struct config_fleet *cfg, char *err,
	      size_t err_len);
void etcd_free(struct etcd *e);

/* etcd_endpoint copies the endpoint tried first into |out|. */
void etcd_endpoint(struct etcd *e, char *out, size_t out_cap);

/* etcd_call POSTs JSON |body| to /v3/|path| (e.g. "kv/range"), trying each
 * endpoint once, and returns the answer in |*out| (malloc'd, NUL-
 * terminated). Errors: -EHOSTUNREACH when no endpoint answered (refused,
 * timed out, no leader: the caller says "etcd unreachable"), -EACCES when
 * authentication failed, -EPROTO when etcd answered with an error (its
 * message in |err|), -E2BIG when the answer is over e->answer_max (a
 * page of fewer keys may not be; no other endpoint is tried: each
 * would say the same), -ECANCELED when etcd_cancel was called before or
 * during the call (|err| is ETCD_CANCELLED; no other endpoint is tried). */
int etcd_call(struct etcd *e, char **out, size_t *out_len, const char *path,
	      const char *body, char *err, size_t err_len);

/* A watch: one long POST /v3/watch whose answer is a stream of JSON
 * objects, one a line. Lines are handed to |on_line| whole, however the
 * bytes were chunked; a line over 64 MiB ends the stream. The stream asks
 * for a member with a leader (Grpc-Metadata-hasleader), so a partitioned
 * member ends it. |error| says what curl saw when it failed ("" if
 * nothing), e.g. which certificate check. */
struct etcd_watch {
	void *multi, *easy, *hdrs; /* CURLM, CURL, curl_slist */
	char *body;
	struct fleet_lines lines; /* the stream cut into lines */
	uint64_t last_rx_ms; /* when bytes last arrived */
	bool done, too_long;
	int result; /* CURLcode once done */
	long http_status;
	char error[256]; /* curl's words for a failure (CURL_ERROR_SIZE) */
	bool (*on_line)(void *arg, const char *line, size_t len);
	void *arg;
};

/* etcd_watch_start connects to the first endpoint that takes the request
 * (the client's current one first). |on_line| returning false ends the
 * stream. 0 or -EHOSTUNREACH / -ENOMEM / -ECANCELED (w->error says
 * why). A stream running when etcd_cancel is called ends with
 * CURLE_ABORTED_BY_CALLBACK and w->error ETCD_CANCELLED. */
int etcd_watch_start(struct etcd *e, struct etcd_watch *w, const char *body,
		     bool (*on_line)(void *arg, const char *line, size_t len),
		     void *arg);

/* etcd_watch_step runs the stream for up to |wait_ms|: 1 while it runs, 0
 * when it ended (w->result, w->http_status say how). */
int etcd_watch_step(struct etcd_watch *w, int wait_ms);

/* etcd_watch_stop ends and frees the stream; a zero one is fine. */
void etcd_watch_stop(struct etcd_watch *w);

/* etcd_forget_token drops the token after etcd refused it (a watch's
 * cancel reason; etcd_call's own retry) and logs that: the next request
 * authenticates. */
void etcd_forget_token(struct etcd *e);

/* etcd_cancel: shutdown has begun. Every call of |e| fails from now on
 * with -ECANCELED and ETCD_CANCELLED, without trying another endpoint; a
 * transfer already running is cut short within about a second (see
 * xfer_cancel in etcd.c), whatever fleet.etcd.timeout_ms is. Any thread;
 * not undone. etcd_cancelled says whether it was called. */
void etcd_cancel(struct etcd *e);
bool etcd_cancelled(struct etcd *e);

/* etcd_next_endpoint moves to the next endpoint (after a watch failed). */
void etcd_next_endpoint(struct etcd *e);

#endif
