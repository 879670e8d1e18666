/* core/front.c: the front path's decision (see front.h).
 *
 *   bytes so far --tls_hello_peek--> NEED_MORE (unless over the bound)
 *                                 \-> NOT_TLS, TOO_LARGE, BAD: reject
 *                                 \-> OK: no SNI: reject
 *                                         route_lookup: not ok: reject
 *                                         tls: passthrough: pass
 *                                         no certificate signs: reject
 *                                         else terminate
 */
#include "core/front.h"

#include <stdbool.h>
#include <string.h>

#include "route/route.h"
#include "tls/alert.h"
#include "tls/ctx.h"
#include "tls/sigalg.h"

/* What a client that typed http:// gets on a TLS port. */
static const char http_400[] =
	"HTTP/1.1 400 Bad Request\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Length: 67\r\n"
	"Connection: close\r\n"
	"\r\n"
	"This port speaks TLS: use https:// instead of http:// to reach it.\n";

/* A request line of plain HTTP: "GET /", "POST /", "OPTIONS *", ... */
static bool looks_like_http(const uint8_t *in, size_t len)
{
	size_t i;

	for (i = 0; i < len && i < 8 && in[i] >= 'A' && in[i] <= 'Z'; i++)
		;
	return i >= 3 && i < len && in[i] == ' ';
}

/* Could these first bytes still become a request line's "METHOD " (at
 * most 8 capital letters so far, nothing else)? Then whether it is plain
 * HTTP waits for the next byte: the 400 must not depend on how the
 * client's bytes fell into segments. */
static bool http_undecided(const uint8_t *in, size_t len)
{
	size_t i;

	if (len >= 9)
		return false;
	for (i = 0; i < len; i++)
		if (in[i] < 'A' || in[i] > 'Z')
			return false;
	return true;
}

static enum front_verdict reject(struct front_decision *out,
				 enum conn_reason reason, const char *detail,
				 uint8_t alert)
{
	out->reason = reason;
	out->detail = detail;
	out->alert = alert;
	return FRONT_REJECT;
}

/* The reject reason for a route verdict other than ROUTE_OK. */
static enum conn_reason route_reason(enum route_verdict v)
{
	switch (v) {
	case ROUTE_NO_SNI:
		return REASON_NO_SNI;
	case ROUTE_UNKNOWN_DOMAIN:
		return REASON_UNKNOWN_DOMAIN;
	case ROUTE_UNKNOWN_VM:
		return REASON_UNKNOWN_VM;
	case ROUTE_PORT_DENIED:
	case ROUTE_VM_PORT_DENIED:
		return REASON_PORT_DENIED;
	case ROUTE_OK: /* not a rejection: fail closed all the same */
	case ROUTE_BAD_HOST:
		break;
	}
	return REASON_BAD_HOST;
}

static enum front_verdict route(struct front_decision *out,
				const struct tls_hello *h,
				uint16_t listen_port,
				const struct route_table *routes,
				const struct tls_ctx *tls_ctx)
{
	struct tls_sigalg_offer offer;
	struct route_match m;
	enum route_verdict v;

	out->sni = h->sni;
	out->sni_len = h->sni_len;
	out->hello_version = h->legacy_version;
	m.vm_id = NULL;
	v = route_lookup(routes, &m, h->sni, h->sni_len, listen_port);
	out->vm_id = m.vm_id;
	if (v != ROUTE_OK)
		return reject(out, route_reason(v),
			      v == ROUTE_VM_PORT_DENIED
				      ? "the VM's ports (vms[].ports) leave "
					"it out"
				      : NULL,
			      TLS_ALERT_UNRECOGNIZED_NAME);
	/* route_lookup took the name, so it normalises: fail closed all the
	 * same, as the name it could not take. */
	if (!route_host_normalize(out->name, &out->name_len,
				  sizeof(out->name), h->sni, h->sni_len))
		return reject(out, REASON_BAD_HOST, NULL,
			      TLS_ALERT_UNRECOGNIZED_NAME);
	out->vm_addr = m.addr;
	out->vm_port = m.vm_port;
	out->proxy_protocol = m.proxy_protocol;
	/* The VM's own TLS takes the hello: no certificate of ours, and
	 * nothing of ours to answer an HTTP client with. */
	if (m.passthrough)
		return FRONT_PASS;
	out->vm_errors_http = m.vm_errors_http;
	/* BoringSSL would find no scheme to sign in only after its
	 * ServerHello: refuse here, before any key work, as it would
	 * (RFC 8446 4.4.3; handshake_failure is what BoringSSL sends). */
	offer = (struct tls_sigalg_offer){
		.version = h->tls_version,
		.sigalgs = h->sigalgs,
		.sigalgs_len = h->sigalgs_len,
		.suites = h->cipher_suites,
		.suites_len = h->cipher_suites_len,
		.groups = h->groups,
		.groups_len = h->groups_len,
		.groups_present = h->groups_present,
	};
	out->ctx = tls_ctx_get0_for_hello(tls_ctx, out->name, &offer);
	if (!out->ctx)
		return reject(out, REASON_NO_COMMON_SIGALG,
			      "no certificate can sign in a scheme offered",
			      TLS_ALERT_HANDSHAKE_FAILURE);
	out->client_auth = tls_ctx_get0_client_auth(tls_ctx, m.domain);
	return FRONT_TERMINATE;
}

enum front_verdict front_decide(struct front_decision *out,
				struct tls_hello_state *st, uint8_t *scratch,
				size_t scratch_len, size_t max_len,
				const uint8_t *in, size_t in_len,
				uint16_t listen_port,
				const struct route_table *routes,
				const struct tls_ctx *tls_ctx)
{
	struct tls_hello h;

	memset(out, 0, sizeof(*out));
	switch (tls_hello_peek(st, &h, scratch, scratch_len, max_len, in,
			       in_len)) {
	case TLS_HELLO_NEED_MORE:
		/* The parser never waits on more than this (the hello in
		 * 1-byte records, 6 bytes of input per byte of message); the
		 * check keeps the caller's input buffer bounded all the
		 * same. */
		if (in_len > TLS_HELLO_RECORDS_MAX(max_len))
			return reject(out, REASON_TOO_LARGE,
				      "ClientHello records too large",
				      TLS_ALERT_DECODE_ERROR);
		out->need = h.records_len;
		return FRONT_NEED_MORE;
	case TLS_HELLO_NOT_TLS:
		if (http_undecided(in, in_len)) {
			out->need = in_len + 1;
			return FRONT_NEED_MORE;
		}
		if (!looks_like_http(in, in_len))
			return reject(out, REASON_NOT_TLS,
				      "first bytes are not a TLS handshake", 0);
		out->send = (const uint8_t *)http_400;
		out->send_len = sizeof(http_400) - 1;
		return reject(out, REASON_NOT_TLS, "plain HTTP request", 0);
	case TLS_HELLO_TOO_LARGE:
		return reject(out, REASON_TOO_LARGE, h.error, h.alert);
	case TLS_HELLO_BAD:
		return reject(out, REASON_BAD_HELLO, h.error, h.alert);
	case TLS_HELLO_OK:
		break;
	}
	if (!h.sni) /* RFC 8446 9.2: a server that needs SNI */
		return reject(out, REASON_NO_SNI, NULL,
			      TLS_ALERT_MISSING_EXTENSION);
	return route(out, &h, listen_port, routes, tls_ctx);
}
