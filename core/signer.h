/* core/signer.h: a worker's channel to vmgate-signer (CONFIG_KEY_SIGNER).
 *
 * Each worker has its own Unix stream socket to the signer
 * (shared->signer_path), with a recv always armed and at most one send in
 * flight, both through the worker's ring. A handshake that needs a
 * signature (TLS_IO_WANT_KEY) queues a SIGN frame (signer/keyop.h) whose
 * id is the connection's {generation, slot}, and waits on the channel's
 * list of deadlines; the answer, matched by that id (a stale one is
 * dropped), resumes the handshake (conn_keyop_done). Many requests are in
 * flight at once, and nothing waits: a signer that is not connected, a
 * full queue, a broken socket or a deadline past
 * CONFIG_KEY_SIGNER_TIMEOUT_MS fails that handshake (internal_error), and
 * the channel reconnects with back-off. A frame that is not a valid
 * answer closes the socket and is logged.
 *
 * The socket is made and connected with plain non-blocking syscalls (a
 * Unix connect completes or fails at once), then used only through the
 * ring; shutdown(2) ends it, as in relay.c.
 */
#ifndef VMGATE_CORE_SIGNER_H
#define VMGATE_CORE_SIGNER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/timer.h"

struct worker;
struct conn;
struct io_uring_cqe;

struct signer_chan {
	int fd;               /* -1: none */
	bool up;              /* connected: requests may be sent */
	bool recv_armed, send_armed;
	uint32_t in_len;      /* answer bytes not yet decoded */
	uint32_t out_len;     /* request bytes not yet sent */
	uint32_t out_sending; /* of which a send has in flight */
	uint8_t *in, *out;    /* SIGNER_CHAN_IN_CAP, SIGNER_CHAN_OUT_CAP */
	uint64_t retry_ms;    /* next connect attempt, when down */
	uint64_t backoff_ms;
	uint64_t failed_logged_ms;
	struct timer_list waits; /* conn.key_timer of each request */
	/* The signer let a request pass its deadline: until it answers the
	 * probe sent on each reconnection (a signature by key id 0, which no
	 * key has: "key not loaded"), requests fail at once instead of each
	 * waiting out the deadline. */
	bool probing;
	uint64_t probe_due_ms; /* while up and probing */
};

/* signer_chan_init prepares |w|'s channel (0 or -ENOMEM); it connects on
 * the worker's first signer_tick. */
int signer_chan_init(struct worker *w);
void signer_chan_free(struct worker *w);

/* signer_tick fails requests past their deadline and then resets the
 * channel (a signer that lets one pass is stopped or wedged: probing),
 * and reconnects a channel that is down, once its back-off has passed.
 * Each loop. */
void signer_tick(struct worker *w);

/* signer_complete handles a completion of an OP_KEY_* operation. */
void signer_complete(struct worker *w, struct io_uring_cqe *cqe);

/* signer_request sends |c|'s pending key operation. False when it cannot
 * (the signer is not connected, the queue is full): the operation is then
 * already answered as failed, and the handshake is to run again. */
bool signer_request(struct worker *w, struct conn *c);

#endif
