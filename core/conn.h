/* core/conn.h: the connection state machine.
 *
 * conn_accept() takes a new client socket; every completion of one of the
 * connection's operations goes to conn_complete(), which updates buffers
 * and flags and then runs the connection: one do_<state>() per state,
 * called until the state stops changing, each deciding which operations
 * to put in flight next. relay.c and backend.c hold the per-direction
 * pumps and the VM connect; they are part of this state machine.
 */
#ifndef VMGATE_CORE_CONN_H
#define VMGATE_CORE_CONN_H

#include "core/worker.h"

/* |fd| is a socket (a direct descriptor when ring_direct, see
 * core/sockmode.h) accepted on |listen_port| from |peer|. */
void conn_accept(struct worker *w, int fd, uint16_t listen_port,
		 const struct sockaddr_in6 *peer);
void conn_complete(struct worker *w, struct io_uring_cqe *cqe);
void conn_expire_timers(struct worker *w);
void conn_retry_starved(struct worker *w);
void conn_abort_all(struct worker *w);

/* Internal to the state machine (conn.c, relay.c, backend.c). */

/* conn_sqe returns an SQE whose user_data names |op| on |c|, and counts
 * it in flight. */
struct io_uring_sqe *conn_sqe(struct worker *w, struct conn *c,
			      enum ring_op op);

/* conn_close logs and counts the connection's close line with |reason|
 * and tears it down: in-flight operations are cancelled and the slot is
 * freed when the last one completes. A connection has one line: if it was
 * logged already (rejected, tls_error, connect_error, overload: they
 * linger), the first reason stands and |reason| is dropped. */
void conn_close(struct worker *w, struct conn *c, enum conn_reason reason);

/* conn_linger queues alert |desc| (0: none) for the client, sends what is
 * pending, then closes without logging again: a lingering close, so the
 * client reads the alert instead of a reset (see relay_linger). It ends
 * CONN_LINGER_MS after the client last took bytes, or after our FIN. */
#define CONN_LINGER_MS 1000
void conn_linger(struct worker *w, struct conn *c, uint8_t desc);

/* A finished TLS 1.3 handshake's session tickets wait for the first bytes
 * to the client (the VM's answer), to share its send, at most this long:
 * a VM that says nothing does not keep them from the client. */
#define CONN_TICKET_HOLD_MS 100

/* conn_tls_failed logs the close with TLS's reason and lingers, so the
 * alert BoringSSL queued reaches the client. */
void conn_tls_failed(struct worker *w, struct conn *c);

/* conn_vm_failed: the VM's stream ended in a reset or an error in the
 * relay. Logged with |reason| (vm_reset, vm_error) unless it was already,
 * then a lingering close: what the VM sent before is in the TLS output
 * and still reaches the client, then our FIN without a close_notify
 * (unless the VM had ended its side cleanly before), so the client can
 * tell the stream was cut short; the client's further bytes are read and
 * dropped, since a close with them unread would reset the client, and a
 * reset can destroy what the client has not read yet. */
void conn_vm_failed(struct worker *w, struct conn *c,
		    enum conn_reason reason);

/* conn_keyop_done ends |c|'s wait for the signer (CF_KEY_WAIT) with its
 * answer (tls_conn_keyop_done) and runs |c|. core/signer.c calls it. */
void conn_keyop_done(struct worker *w, struct conn *c, bool ok,
		     const uint8_t *sig, size_t sig_len, const char *why);

/* conn_vm_id writes the VM id of |c| (the first label of its SNI). */
const char *conn_vm_id(const struct conn *c, char *out, size_t cap);

/* relay.c */
void relay_arm_client_recv(struct worker *w, struct conn *c);
void relay_flush_client(struct worker *w, struct conn *c);
void relay_run(struct worker *w, struct conn *c);
/* relay_start: the handshake is done and the VM connected; queues the
 * PROXY header (if any) ahead of the client's bytes. False if the
 * connection was closed. */
bool relay_start(struct worker *w, struct conn *c);
void relay_release_buffers(struct worker *w, struct conn *c);
bool relay_linger(struct worker *w, struct conn *c);
void relay_on_client_recv(struct worker *w, struct conn *c,
			  const struct io_uring_cqe *cqe);
void relay_on_client_send(struct worker *w, struct conn *c, int res);
void relay_on_vm_recv(struct worker *w, struct conn *c,
		      const struct io_uring_cqe *cqe);
void relay_on_vm_send(struct worker *w, struct conn *c, int res);
void relay_on_shut(struct worker *w, struct conn *c, enum ring_op op,
		   int res);

/* backend.c */
void backend_connect(struct worker *w, struct conn *c);
void backend_on_connect(struct worker *w, struct conn *c, int res);
/* backend_connect_expired: the handshake timer ran out while the VM's
 * connect was still running (CF_VM_CONNECTING, which the caller has
 * cleared, the connect cancelled): the connect ends as timed out, logged
 * and answered as one, its late completion ignored. */
void backend_connect_expired(struct worker *w, struct conn *c);
/* backend_answer: the VM connect failed (CF_VM_FAILED) and the handshake
 * is done: a 502 over TLS for an HTTP/1.x client, else the alert. It may
 * wait for the client's first bytes, up to the linger timer armed when
 * the connect failed (CF_ANSWER_WAIT). */
void backend_answer(struct worker *w, struct conn *c);
/* OP_CLIENT_FD's completion, in any state: the borrowed fd is closed. */
void backend_on_local(struct worker *w, struct conn *c, int res);
/* backend_proxy_header writes the PROXY header |c| sends its VM first
 * (c->proxy: v1 or v2) into |out|; false if it does not fit |cap|. */
bool backend_proxy_header(struct conn *c, uint8_t *out, size_t *out_len,
			  size_t cap);

#endif
