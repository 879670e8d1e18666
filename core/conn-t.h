/* core/conn-t.h: the connection object (types only).
 *
 * A connection is one client socket, at most one VM socket, one TLS
 * session and two directions of pending bytes:
 *   up:   client ciphertext -> TLS -> up.data -> send to the VM
 *   down: VM bytes -> TLS -> ciphertext in the TLS output -> send to the
 *         client
 * Each direction holds a buffer only while it has bytes to send (up.data
 * from the worker's pool, the TLS output from tls/), and a side is read
 * only while the other side's pending bytes are under limits.buffer_bytes.
 *
 * Progress that is independent (the VM connect beside the TLS handshake,
 * the two directions of the relay) is kept as CF_* flags; the state says
 * which do_<state>() decides what to do next.
 */
#ifndef VMGATE_CORE_CONN_T_H
#define VMGATE_CORE_CONN_T_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "core/timer.h"
#include "core/vmstats.h"
#include "tls/hello.h"
#include "tls/session.h"

enum conn_state {
	CONN_FREE,
	CONN_HELLO,     /* collecting the ClientHello, then routing */
	CONN_HANDSHAKE, /* TLS handshake and VM connect under way */
	CONN_RELAY,     /* relaying, possibly half-closed */
	CONN_LINGER,    /* flushing a last alert to the client, then close */
	CONN_CLOSING,   /* cancelled; waiting for in-flight operations */
};

enum conn_flag {
	CF_CLIENT_RECV = 1u << 0, /* operations in flight */
	CF_CLIENT_SEND = 1u << 1,
	CF_VM_RECV = 1u << 2,
	CF_VM_SEND = 1u << 3,
	CF_VM_CONNECTING = 1u << 4,
	CF_VM_CONNECTED = 1u << 5,
	CF_HS_DONE = 1u << 6,
	CF_CLIENT_FIN = 1u << 7,  /* the client's TCP stream ended */
	CF_CLIENT_EOF = 1u << 8,  /* no more plaintext from the client */
	CF_VM_EOF = 1u << 9,      /* the VM's TCP stream ended */
	CF_VM_SHUT = 1u << 10,    /* shutdown(SHUT_WR) toward the VM done */
	CF_NOTIFY = 1u << 11,     /* close_notify queued toward the client */
	CF_CLIENT_SHUT = 1u << 12, /* shutdown(SHUT_WR) toward the client */
	CF_STARVED = 1u << 13,    /* a recv found no buffer; retry later */
	CF_LOGGED = 1u << 14,     /* the connection's one line is written */
	CF_PEER = 1u << 15,       /* counted in shared->peers */
	CF_LOCAL = 1u << 16,      /* the dialled address is being read */
	CF_VM_FAILED = 1u << 17,  /* the connect failed (vm_errno), logged;
	                           * answered once the handshake is done */
	CF_ANSWER_WAIT = 1u << 18, /* waiting for a request line to answer */
	CF_VM_ERRORS_HTTP = 1u << 19, /* the domain's vm_errors: http */
	CF_PORT_WAIT = 1u << 20,  /* the dialled port is being read */
	CF_KEY_WAIT = 1u << 21,   /* a signature asked of the signer */
	CF_PASSTHROUGH = 1u << 22, /* tls: passthrough: the client's bytes
	                            * go to the VM as they are, and back */
	CF_VM_MORE = 1u << 23,    /* the VM's socket held more (bytes or its
	                           * FIN) after the last receive */
	CF_VM_GONE = 1u << 24,    /* a send to the VM failed (vm_errno): up
	                           * is over, down goes on to its end */
	CF_VM_HS_TIMER = 1u << 25, /* the handshake timer ended the VM's
	                            * connect (backend_connect_expired) */
};

struct conn {
	struct timer_node timer; /* handshake or idle deadline */
	struct timer_node key_timer; /* with CF_KEY_WAIT: on the signer
	                              * channel's deadlines */
	struct conn *next;       /* free list or starved list */
	uint32_t slot;
	uint32_t gen;
	enum conn_state state;
	uint32_t flags;
	uint32_t inflight; /* SQEs submitted and not yet completed */
	int cfd;           /* client socket */
	int vfd;           /* VM socket, or -1 */
	uint16_t listen_port;
	uint16_t vm_port;
	uint16_t hello_version; /* record version for pre-TLS alerts */
	uint8_t proxy;          /* enum config_proxy_protocol of the route */
	uint32_t hello_need;    /* input length worth parsing the hello at */
	struct tls_hello_state hello; /* the records of it walked so far */
	uint32_t peer_slot;     /* in shared->peers, with CF_PEER */
	int vm_errno;           /* why the VM connect failed, or with
	                         * CF_VM_GONE why a send to it did */
	struct tls_conn tls;
	/* The worker's counters of the routed VM (core/vmstats.h), from
	 * route() on; NULL before. Counted open while set. */
	struct vmstats_entry *vms;
	struct buf up;          /* plaintext for the VM: a block of the
	                         * worker's pool (cap: buffer_bytes), or none */
	uint64_t up_bytes, down_bytes; /* plaintext relayed each way */
	uint64_t start_ms, active_ms;
	uint64_t id; /* of a routed connection: log lines, PROXY v2 */
	struct sockaddr_in6 peer;
	struct sockaddr_in6 vm;
	struct sockaddr_in6 local; /* what the client dialled: read at accept
	                            * when steered, else with proxy */
};

/* The connection whose key_timer is |n| (the signer's wait, then the
 * tickets' hold). */
static inline struct conn *conn_of_key_timer(struct timer_node *n)
{
	return (struct conn *)((char *)n - offsetof(struct conn, key_timer));
}

#endif
