/* core/front.h: the front path's one decision, without I/O.
 *
 * From the bytes a client has sent so far on listener port |listen_port|,
 * the route table and the certificate store of a snapshot, front_decide
 * answers what becomes of the connection: wait for more bytes, reject it
 * (a reason for the log and the metrics, an alert, maybe raw bytes to send
 * first), terminate TLS for a VM, or pass the client's bytes to a VM that
 * terminates TLS itself (domains[].tls: passthrough). It is pure: no ring, no allocation,
 * no logging, no metrics. core/conn.c's do_hello acts on the answer, and
 * fuzz/front.c and tests/unit/test_front.c call the same function, so the
 * decisions are made in one place.
 *
 * What stays with the caller is I/O: when not to call (fewer bytes than
 * the last NEED_MORE hint), the client's FIN, sending, closing.
 */
#ifndef VMGATE_CORE_FRONT_H
#define VMGATE_CORE_FRONT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "core/reason.h"
#include "tls/hello.h"

struct route_table;
struct tls_ctx;

enum front_verdict {
	FRONT_NEED_MORE, /* a valid prefix: wait for |need| bytes of input */
	FRONT_REJECT,    /* refuse: reason, detail, alert, send */
	FRONT_TERMINATE, /* route found: ctx, name, vm_addr, vm_port */
	FRONT_PASS,      /* route found, tls: passthrough: name, vm_addr,
	                  * vm_port, proxy_protocol; no ctx */
};

/* Every view here (sni, send, detail when not static) is valid while the
 * input, the scratch and the snapshot front_decide was given are. */
struct front_decision {
	/* FRONT_NEED_MORE: the input length at which the answer can next
	 * change (> the input given); calling with fewer bytes is wasted
	 * work. */
	size_t need;

	/* FRONT_REJECT: |reason| for logs and metrics (REASON_NOT_TLS,
	 * _TOO_LARGE, _BAD_HELLO, _NO_SNI, one per route verdict, or
	 * _NO_COMMON_SIGALG; REASON_NONE otherwise); |detail| says more, or
	 * is NULL; |alert| is the enum tls_alert_desc to send, 0 for none;
	 * |send|, |send_len| are raw bytes to send outside TLS (the HTTP 400
	 * for plain HTTP), NULL, 0 for none. */
	enum conn_reason reason;
	const char *detail;
	uint8_t alert;
	const uint8_t *send;
	size_t send_len;

	/* FRONT_REJECT, FRONT_TERMINATE and FRONT_PASS: the SNI as received (a view, any
	 * bytes; NULL, 0 when there is none or the hello was not parsed), and
	 * the hello's legacy_version once the hello was routed (0 before):
	 * the record version of an alert sent without TLS. */
	const uint8_t *sni;
	size_t sni_len;
	uint16_t hello_version;
	/* The VM route_lookup found (lowercase, NUL-terminated, borrowed
	 * from the route table), for its counters (core/vmstats.h): set on
	 * FRONT_TERMINATE and FRONT_PASS, and on a FRONT_REJECT once the VM
	 * was known (its ports refused, or no certificate signs); NULL
	 * otherwise. */
	const char *vm_id;

	/* FRONT_TERMINATE: the certificate's SSL_CTX (borrowed from the
	 * store), the normalised server name (lowercase, NUL-terminated), the
	 * VM's address (borrowed from the route table) and port, and the
	 * PROXY header the VM wants first (route_match's). FRONT_PASS: the
	 * same but ctx (NULL) and vm_errors_http (false). */
	SSL_CTX *ctx;
	char name[256];
	size_t name_len;
	const struct in6_addr *vm_addr;
	uint16_t vm_port;
	uint8_t proxy_protocol; /* enum config_proxy_protocol */
	bool vm_errors_http;    /* the domain's vm_errors: http */
	/* FRONT_TERMINATE: the domain's client_auth (borrowed from the
	 * store), NULL when it asks for no client certificate. */
	const struct tls_client_auth *client_auth;
};

/* front_decide fills |out| (zeroed first) and returns the verdict for the
 * input |in| of |in_len| bytes. |st|, |scratch|, |scratch_len| and
 * |max_len| are tls_hello_peek's: the state kept for this connection from
 * one call to the next (the same bytes and more each time), its join
 * buffer (TLS_HELLO_SCRATCH_LEN(max_len) bytes) and the largest
 * ClientHello body accepted. Input still short of a whole hello beyond
 * TLS_HELLO_RECORDS_MAX(max_len) bytes is rejected as too_large, which
 * bounds what the caller buffers. */
enum front_verdict front_decide(struct front_decision *out,
				struct tls_hello_state *st, uint8_t *scratch,
				size_t scratch_len, size_t max_len,
				const uint8_t *in, size_t in_len,
				uint16_t listen_port,
				const struct route_table *routes,
				const struct tls_ctx *tls_ctx);

#endif
