/* fuzz/front.c: libFuzzer target for the whole pre-relay path, without
 * sockets: what core/conn.c does (do_hello -> route -> do_handshake, then
 * relay's first tls_conn_read) for every stranger that connects.
 *
 *   bytes, in fuzzer-chosen chunks -> tls_conn_feed -> tls_conn_input ->
 *   front_decide (core/front.c, the function core/conn.c calls:
 *   tls_hello_peek resumed from a kept state, only once hello_need bytes
 *   are in, as core/ does; route_lookup on a fixed table loaded from an
 *   in-memory appliance.yaml; tls_ctx_get0_for_hello on the tls_ctx_new
 *   certificate store, a P-256 and an RSA certificate made at start-up)
 *   -> tls_conn_start -> tls_conn_handshake / tls_conn_out_peek+consume
 *   -> tls_conn_read, tls_conn_write, close_notify. Rejections go through
 *   tls_conn_alert and tls_conn_queue_raw, like conn.c's reject. A name
 *   under pass.test (tls: passthrough) goes through tls_conn_pass and
 *   tls_conn_input_take instead, as core/relay.c's passthrough does.
 *
 * Input: byte 0 chooses the mode and the listener port, byte 1 the chunk
 * size, the rest depends on the mode.
 *   byte 0 bits 0-1: listener port 443 / 3000 / 8080 / 9000 (9000 is a
 *                    listener the vm.vers.sh domain does not allow)
 *          bit 2:    client mode (below) instead of raw mode
 *   byte 1 bits 0-5: chunk size - 1 (1..64 bytes per "TCP segment");
 *          bit 6:    chunks of 4096 instead
 *   Raw mode: the rest is everything the client sends. Real ClientHellos
 *     route and start a real handshake; whatever follows is handshake
 *     records BoringSSL will most likely refuse.
 *   Client mode: a BoringSSL client in this process talks to the path
 *     above, so handshakes complete and application data flows. Byte 2:
 *     bits 0-3 the server name (a table below), bit 4 TLS 1.2 only, bit 5
 *     offer ALPN h2,http/1.1 (else http/1.1 only), bit 6 corrupt one byte
 *     of the client's stream; bytes 3-4 that byte's offset, byte 5 the XOR
 *     mask (not 0). The rest is the application data the client writes.
 *
 * Invariants checked (abort on violation):
 *   - a rejected client gets exactly one alert record (7 bytes: 21, the
 *     hello's record version, length 2, level fatal, the description the
 *     engine uses), or for NOT_TLS the HTTP 400 text (plain HTTP) or
 *     nothing; every reject reason is one of front.h's, with its alert;
 *     a routed name is the SNI normalised, at the mapped port; a failed
 *     handshake leaves no TLS_IO_DONE behind; SNI the router accepted is
 *     what the store and BoringSSL's select-certificate callback see;
 *   - client mode, nothing corrupted and the route accepted: the handshake
 *     completes on both sides, the client's bytes arrive intact through
 *     tls_conn_read, a reply written with tls_conn_write arrives intact at
 *     the client, and close_notify reads as TLS_IO_CLOSED; a route that
 *     rejects produces the alert the client then reads;
 *   - passthrough: what tls_conn_input_take hands on is every byte the
 *     client sent, from the first, in order, and nothing goes back;
 *   - memory: everything is freed (LeakSanitizer); before the hello is
 *     complete the parser never waits on more than TLS_HELLO_RECORDS_MAX
 *     bytes of input, the bound core/ holds it to.
 *
 * Seed corpus: fuzz/corpus/front/ (real ClientHellos in raw mode, and
 * client-mode inputs for every name, version and ALPN choice).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/front.h"
#include "core/kconfig.h"
#include "fuzz/testcert.h"
#include "ctl/config.h"
#include "route/route.h"
#include "tls/alert.h"
#include "tls/ctx.h"
#include "tls/hello.h"
#include "tls/session.h"

#define check(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "front: %s:%d: %s\n", __FILE__,    \
				__LINE__, #cond);                          \
			abort();                                           \
		}                                                          \
	} while (0)

#define VM_ID "45a68069-defc-4233-9865-6298d87053af"

static const uint16_t ports[4] = { 443, 3000, 8080, 9000 };

/* Server names a client-mode input picks from: routed ones (both
 * certificates, exact and wildcard SANs), and every kind of rejection. */
static const char *const names[16] = {
	VM_ID ".vm.vers.sh",      /* ok, P-256 wildcard SAN */
	"vm1.vm.vers.sh",         /* ok */
	"VM1.VM.Vers.SH",         /* ok, mixed case */
	"host.vm.test",           /* ok, RSA certificate */
	"vm1.alt.test",           /* ok, no SAN covers it: first cert */
	"nope.vm.vers.sh",        /* unknown vm */
	"vm1.unknown.example",    /* unknown domain */
	"a.vm1.vm.vers.sh",       /* two labels in front */
	"vm.vers.sh",             /* the suffix itself */
	"bad_host.vm.vers.sh",    /* not a hostname */
	"-vm1.vm.vers.sh",        /* not a hostname */
	NULL,                     /* no SNI */
	"vm1.pass.test",          /* ok, tls: passthrough */
	"host.vm.test",
	"x.y.z",
	"vm1.vm.vers.sh.",        /* trailing dot */
};

static struct config cfg;
static struct route_table *routes;
static struct tls_ctx *store;
static SSL_CTX *client_ctx_13, *client_ctx_12;
/* As core/worker.c sizes it, for the largest limit the loader allows. */
static uint8_t hello_scratch[TLS_HELLO_SCRATCH_LEN(CONFIG_MAX_CLIENTHELLO_BYTES)];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const ec_sans[] = { "*.vm.vers.sh", "vm.vers.sh" };
	static const char *const rsa_sans[] = { "host.vm.test",
						"*.other.test" };
	static const char yaml[] =
		"listen: { ports: [443, 3000, 8080, 9000] }\n"
		"tls:\n"
		"  certificates:\n"
		"    - { cert: ec.pem, key: ec.key }\n"
		"    - { cert: rsa.pem, key: rsa.key }\n"
		"  alpn: [h2, http/1.1]\n"
		"domains:\n"
		"  - suffix: vm.vers.sh\n"
		"    port_map: { 443: 22 }\n"
		"    allowed_ports: [443, 3000, 8080]\n"
		"  - { suffix: vm.test }\n"
		"  - { suffix: alt.test }\n"
		"  - { suffix: pass.test, tls: passthrough }\n"
		"vms:\n"
		"  - { id: " VM_ID ", address: \"fd00::10\" }\n"
		"  - { id: vm1, address: \"fd00::1\" }\n"
		"  - { id: host, address: \"fd00::2\" }\n";
	struct config_errors errs;
	const char *dir;
	char err[256], tag[32];

	/* Per process: removed as soon as the certificates are loaded. */
	snprintf(tag, sizeof(tag), "front-%d", (int)getpid());
	dir = testcert_tmpdir(tag);

	check(dir != NULL);
	check(testcert_make_files(dir, "ec", false, "vm.vers.sh", ec_sans,
				  2));
	check(testcert_make_files(dir, "rsa", true, "host.vm.test", rsa_sans,
				  2));
	if (!config_load_buf(&cfg, &errs, "front.yaml", dir,
			     (const uint8_t *)yaml, sizeof(yaml) - 1)) {
		config_errors_print(stderr, &errs);
		abort();
	}
	config_errors_free(&errs);
	routes = route_table_new(&cfg);
	store = tls_ctx_new(&cfg, err, sizeof(err));
	if (!routes || !store) {
		fprintf(stderr, "front: %s\n", err);
		abort();
	}
	/* Everything is loaded: the files are not needed any more. */
	testcert_tmpdir_remove();

	client_ctx_13 = SSL_CTX_new(TLS_method());
	client_ctx_12 = SSL_CTX_new(TLS_method());
	check(client_ctx_13 && client_ctx_12);
	SSL_CTX_set_max_proto_version(client_ctx_12, TLS1_2_VERSION);
	/* Each run is a fresh client: no session to resume. */
	SSL_CTX_set_session_cache_mode(client_ctx_13, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_session_cache_mode(client_ctx_12, SSL_SESS_CACHE_OFF);
	return 0;
}

/* ---- the server side: core/conn.c without the ring ------------------ */

enum state { S_HELLO, S_HANDSHAKE, S_RELAY, S_LINGER, S_CLOSED, S_PASS };

struct server {
	struct tls_conn tls;
	enum state state;
	uint16_t port;
	size_t hello_need;
	struct tls_hello_state hello;
	uint16_t hello_version;
	uint8_t alert; /* the alert rejected with; 0 = none */
	size_t send_len; /* raw bytes rejected with (the HTTP 400) */
	bool routed;
	bool hs_done;
	bool closed_by_client;
	bool pass;              /* routed with tls: passthrough */
	const uint8_t *stream;  /* everything the client sends, from byte 0 */
	size_t passed_len;      /* of it, handed on as it came */
	uint8_t plain[65536]; /* application data read so far */
	size_t plain_len;
};

/* The reasons front_decide gives, each with the one alert it goes with
 * (-1: the hello's own, never 0). */
static const struct {
	enum conn_reason reason;
	int alert;
} reasons[] = {
	{ REASON_NOT_TLS, 0 },
	{ REASON_TOO_LARGE, -1 },
	{ REASON_BAD_HELLO, -1 },
	{ REASON_NO_SNI, TLS_ALERT_MISSING_EXTENSION },
	{ REASON_BAD_HOST, TLS_ALERT_UNRECOGNIZED_NAME },
	{ REASON_UNKNOWN_DOMAIN, TLS_ALERT_UNRECOGNIZED_NAME },
	{ REASON_UNKNOWN_VM, TLS_ALERT_UNRECOGNIZED_NAME },
	{ REASON_PORT_DENIED, TLS_ALERT_UNRECOGNIZED_NAME },
	{ REASON_NO_COMMON_SIGALG, TLS_ALERT_HANDSHAKE_FAILURE },
};

static void reject(struct server *s, const struct front_decision *d)
{
	size_t i;

	for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (d->reason == reasons[i].reason)
			break;
	check(i < sizeof(reasons) / sizeof(reasons[0]));
	if (reasons[i].alert < 0)
		check(d->detail != NULL && d->alert != 0);
	else
		check(d->alert == reasons[i].alert);
	/* Only plain HTTP gets bytes outside TLS, and never an alert. */
	check(!d->send_len || (d->reason == REASON_NOT_TLS && d->send));
	/* conn_linger: an alert if there is one, nothing more after it. */
	s->hello_version = d->hello_version;
	if (d->alert)
		tls_conn_alert(&s->tls, d->alert, s->hello_version);
	if (d->send_len)
		check(tls_conn_queue_raw(&s->tls, d->send, d->send_len));
	s->alert = d->alert;
	s->send_len = d->send_len;
	s->state = S_LINGER;
}

static void route(struct server *s, const struct front_decision *d)
{
	char name[256];
	size_t name_len;

	s->hello_version = d->hello_version;
	/* The name is the SNI, normalised. */
	check(route_host_normalize(name, &name_len, sizeof(name), d->sni,
				   d->sni_len));
	check(name_len == d->name_len && !strcmp(name, d->name));
	/* Only vm.vers.sh maps a port: 443 -> 22. */
	if (name_len > 11 && !strcmp(name + name_len - 11, ".vm.vers.sh") &&
	    s->port == 443)
		check(d->vm_port == 22);
	else
		check(d->vm_port == s->port);
	check(d->vm_addr != NULL);
	if (!d->ctx) {
		/* FRONT_PASS: only pass.test passes, and never with an
		 * answer of its own. */
		check(name_len > 10 && !strcmp(name + name_len - 10,
						".pass.test"));
		check(!d->vm_errors_http);
		check(tls_conn_pass(&s->tls, d->name));
		check(!tls_conn_started(&s->tls));
		check(strcmp(s->tls.sni, name) == 0);
		s->pass = true;
		s->state = S_PASS;
		return;
	}
	check(tls_conn_start(&s->tls, d->ctx, d->name));
	check(tls_conn_started(&s->tls));
	check(strcmp(s->tls.sni, name) == 0);
	s->routed = true;
	s->state = S_HANDSHAKE;
}

/* core/conn.c's do_hello: the decision is front_decide's. */
static void do_hello(struct server *s)
{
	uint32_t max_len = cfg.limits.max_clienthello_bytes;
	struct front_decision d;
	const uint8_t *in;
	size_t in_len;

	tls_conn_input(&s->tls, &in, &in_len);
	check(in_len == tls_conn_input_len(&s->tls));
	if (!in_len || in_len < s->hello_need)
		return;
	check(TLS_HELLO_SCRATCH_LEN(max_len) <= sizeof(hello_scratch));
	switch (front_decide(&d, &s->hello, hello_scratch,
			     TLS_HELLO_SCRATCH_LEN(max_len), max_len, in,
			     in_len, s->port, routes, store)) {
	case FRONT_NEED_MORE:
		check(d.need > in_len);
		check(in_len <= TLS_HELLO_RECORDS_MAX(max_len));
		s->hello_need = d.need;
		return;
	case FRONT_REJECT:
		reject(s, &d);
		return;
	case FRONT_TERMINATE:
		check(d.ctx != NULL);
		route(s, &d);
		return;
	case FRONT_PASS:
		check(d.ctx == NULL);
		route(s, &d);
		return;
	}
	check(!"front_decide: not a verdict");
}

static void do_handshake(struct server *s)
{
	switch (tls_conn_handshake(&s->tls)) {
	case TLS_IO_DONE:
		s->hs_done = true;
		s->state = S_RELAY;
		break;
	case TLS_IO_WANT_READ:
		break;
	case TLS_IO_CLOSED:
	case TLS_IO_ERROR:
		check(tls_conn_error_str(&s->tls) != NULL);
		s->state = S_LINGER; /* BoringSSL queued its alert */
		break;
	case TLS_IO_WANT_KEY:
		/* The fuzz build holds its key in process (fuzz.mk): a
		 * handshake never waits on a key operation. */
		check(!"handshake waits on a key operation");
		break;
	}
}

static void do_relay(struct server *s)
{
	for (;;) {
		size_t n = 0, cap = sizeof(s->plain) - s->plain_len;

		if (cap == 0)
			return;
		switch (tls_conn_read(&s->tls, &n, s->plain + s->plain_len,
				      cap)) {
		case TLS_IO_DONE:
			check(n > 0 && n <= cap);
			s->plain_len += n;
			continue;
		case TLS_IO_WANT_READ:
			check(n == 0);
			return;
		case TLS_IO_CLOSED:
			check(n == 0);
			s->closed_by_client = true;
			s->state = S_CLOSED;
			return;
		case TLS_IO_ERROR:
			check(n == 0);
			s->state = S_LINGER;
			return;
		case TLS_IO_WANT_KEY:
			check(!"a key operation after the handshake");
			return;
		}
	}
}

/* core/relay.c's passthrough: the client's bytes, as they came. */
static void do_pass(struct server *s)
{
	uint8_t buf[1000];
	size_t n;

	while ((n = tls_conn_input_take(&s->tls, buf, sizeof(buf)))) {
		check(n <= sizeof(buf));
		check(memcmp(buf, s->stream + s->passed_len, n) == 0);
		s->passed_len += n;
	}
	check(tls_conn_input_len(&s->tls) == 0);
}

/* Run the state machine as far as the bytes fed so far allow. */
static void server_run(struct server *s)
{
	enum state before;

	do {
		before = s->state;
		switch (s->state) {
		case S_HELLO:
			do_hello(s);
			break;
		case S_HANDSHAKE:
			do_handshake(s);
			break;
		case S_RELAY:
			do_relay(s);
			break;
		case S_PASS:
			do_pass(s);
			break;
		case S_LINGER:
		case S_CLOSED:
			break;
		}
	} while (s->state != before);
}

/* Feed |len| bytes in chunks; the server's answer accumulates in |out|. */
/* What core/ does with the output: send (here: copy) what is pinned, then
 * consume what was sent. */
static size_t take_out(struct tls_conn *t, uint8_t *out, size_t cap)
{
	const uint8_t *data;
	size_t len;

	tls_conn_out_peek(t, &data, &len);
	if (len > cap)
		len = cap;
	if (len)
		memcpy(out, data, len);
	tls_conn_out_consume(t, len);
	return len;
}

static void server_feed(struct server *s, const uint8_t *p, size_t len,
			size_t chunk, uint8_t *out, size_t *out_len,
			size_t out_cap)
{
	for (size_t off = 0; off < len || len == 0;) {
		size_t n = len - off < chunk ? len - off : chunk;

		/* A lingering connection only drains what the client sends. */
		if (n && s->state != S_LINGER && s->state != S_CLOSED)
			check(tls_conn_feed(&s->tls, p + off, n));
		off += n;
		server_run(s);
		for (;;) {
			size_t got = take_out(&s->tls, out + *out_len,
					      out_cap - *out_len);
			if (!got)
				break;
			*out_len += got;
			if (*out_len == out_cap)
				*out_len = 0; /* raw mode: keep the tail only */
		}
		if (len == 0)
			break;
	}
}

static void check_alert(const struct server *s, const uint8_t *out,
			size_t out_len)
{
	if (s->state != S_LINGER || s->routed)
		return;
	if (!s->alert) {
		/* NOT_TLS: the HTTP 400 for plain HTTP, else just close. */
		check(out_len == s->send_len);
		return;
	}
	check(out_len == TLS_ALERT_RECORD_LEN);
	check(out[0] == 21 && out[3] == 0 && out[4] == 2 && out[5] == 2 &&
	      out[6] == s->alert);
}

/* ---- raw mode --------------------------------------------------------- */

static void run_raw(uint16_t port, size_t chunk, const uint8_t *p, size_t len)
{
	struct server *s = calloc(1, sizeof(*s));
	static uint8_t out[1 << 16];
	size_t out_len = 0;
	char desc[128];

	check(s != NULL);
	s->port = port;
	s->stream = p;
	server_feed(s, p, len, chunk, out, &out_len, sizeof(out));
	check_alert(s, out, out_len);
	if (s->pass)
		check(s->passed_len == len && out_len == 0);
	/* Pre-relay states never have plaintext. */
	if (!s->hs_done)
		check(s->plain_len == 0);
	tls_conn_describe(&s->tls, desc, sizeof(desc));
	check(memchr(desc, '\0', sizeof(desc)) != NULL);
	if (s->state == S_RELAY) {
		check(tls_conn_write(&s->tls, (const uint8_t *)"ok", 2) ==
		      TLS_IO_DONE);
		tls_conn_close_notify(&s->tls);
	}
	tls_conn_free(&s->tls);
	tls_conn_free(&s->tls); /* all-zero again: a no-op */
	free(s);
}

/* ---- client mode ------------------------------------------------------ */

struct client {
	SSL *ssl;
	BIO *rbio, *wbio; /* borrowed: owned by ssl */
	uint8_t sent[1 << 16]; /* client -> server stream so far */
	size_t sent_len, delivered;
	size_t corrupt_at; /* stream offset, or SIZE_MAX */
	uint8_t corrupt_mask;
};

/* Move what the client wrote to the server, corrupting one byte on the
 * way if asked, in chunks; then what the server wrote back to the client. */
static void pump(struct client *c, struct server *s, size_t chunk,
		 uint8_t *reply, size_t reply_cap)
{
	uint8_t buf[4096];
	size_t out_len;
	int n;

	while ((n = BIO_read(c->wbio, buf, sizeof(buf))) > 0) {
		check(c->sent_len + (size_t)n <= sizeof(c->sent));
		memcpy(c->sent + c->sent_len, buf, (size_t)n);
		c->sent_len += (size_t)n;
	}
	if (c->corrupt_at >= c->delivered && c->corrupt_at < c->sent_len)
		c->sent[c->corrupt_at] ^= c->corrupt_mask;
	out_len = 0;
	server_feed(s, c->sent + c->delivered, c->sent_len - c->delivered,
		    chunk, reply, &out_len, reply_cap);
	c->delivered = c->sent_len;
	if (out_len)
		check(BIO_write(c->rbio, reply, (int)out_len) == (int)out_len);
}

static void run_client(uint16_t port, size_t chunk, const uint8_t *p,
		       size_t len)
{
	static const uint8_t alpn_both[] = "\x02h2\x08http/1.1";
	static const uint8_t alpn_h1[] = "\x08http/1.1";
	static uint8_t reply[1 << 17], got[1 << 16];
	struct server *s = calloc(1, sizeof(*s));
	struct client *c = calloc(1, sizeof(*c));
	const char *name;
	const uint8_t *alpn;
	unsigned alpn_len;
	uint8_t opts;
	bool corrupt, client_done = false;
	size_t app_len, got_len = 0;
	int ret;

	check(s != NULL && c != NULL);
	if (len < 4) {
		free(s);
		free(c);
		return;
	}
	opts = p[0];
	name = names[opts & 0x0f];
	corrupt = (opts & 0x40) && p[3] != 0;
	c->corrupt_at = corrupt ? (size_t)p[1] << 8 | p[2] : SIZE_MAX;
	c->corrupt_mask = p[3];
	p += 4;
	len -= 4;
	app_len = len < 16384 ? len : 16384;

	s->port = port;
	s->stream = c->sent;
	c->ssl = SSL_new((opts & 0x10) ? client_ctx_12 : client_ctx_13);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	check(c->ssl && c->rbio && c->wbio);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_connect_state(c->ssl);
	if (name)
		check(SSL_set_tlsext_host_name(c->ssl, name));
	if (opts & 0x20)
		check(SSL_set_alpn_protos(c->ssl, alpn_both,
					  sizeof(alpn_both) - 1) == 0);
	else
		check(SSL_set_alpn_protos(c->ssl, alpn_h1,
					  sizeof(alpn_h1) - 1) == 0);

	/* Handshake: a few round trips at most. */
	for (int round = 0; round < 8; round++) {
		ret = SSL_do_handshake(c->ssl);
		if (ret == 1)
			client_done = true;
		else if (SSL_get_error(c->ssl, ret) != SSL_ERROR_WANT_READ)
			break;
		pump(c, s, chunk, reply, sizeof(reply));
		if (client_done)
			break;
	}
	ERR_clear_error();

	if (client_done && app_len) {
		check(SSL_write(c->ssl, p, (int)app_len) == (int)app_len);
		pump(c, s, chunk, reply, sizeof(reply));
	}

	/* Only what was delivered counts as corrupted. */
	corrupt = c->corrupt_at < c->delivered;
	if (s->pass) {
		/* Whatever it was, corrupted or not, it went on as it was,
		 * and no answer came back. */
		check(s->state == S_PASS && !client_done);
		check(s->passed_len == c->delivered);
	} else if (!corrupt) {
		if (!s->routed) {
			/* Rejected by the router: the client reads the
			 * alert and fails. */
			check(s->state == S_LINGER && s->alert);
			check(!client_done);
		} else {
			check(client_done && s->hs_done);
			check(s->state == S_RELAY);
			check(s->plain_len == app_len);
			check(memcmp(s->plain, p, app_len) == 0);
			/* Server preference: h2 if offered. */
			SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
			if (opts & 0x20)
				check(alpn_len == 2 && !memcmp(alpn, "h2", 2));
			else
				check(alpn_len == 8 &&
				      !memcmp(alpn, "http/1.1", 8));
		}
	}

	if (client_done && s->state == S_RELAY) {
		/* VM -> client: what the relay would write back. */
		const uint8_t *resp = app_len ? p : (const uint8_t *)"pong";
		size_t resp_len = app_len ? app_len : 4, out_len;

		check(tls_conn_write(&s->tls, resp, resp_len) == TLS_IO_DONE);
		tls_conn_close_notify(&s->tls);
		out_len = take_out(&s->tls, reply, sizeof(reply));
		check(tls_conn_out_len(&s->tls) == 0);
		check(BIO_write(c->rbio, reply, (int)out_len) == (int)out_len);
		while ((ret = SSL_read(c->ssl, got + got_len,
				       (int)(sizeof(got) - got_len))) > 0)
			got_len += (size_t)ret;
		if (!corrupt) {
			check(got_len == resp_len);
			check(memcmp(got, resp, resp_len) == 0);
			check(SSL_get_error(c->ssl, ret) == SSL_ERROR_ZERO_RETURN);
		}
		/* And the client's close_notify ends the server's reading. */
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		pump(c, s, chunk, reply, sizeof(reply));
		corrupt = c->corrupt_at < c->delivered;
		if (!corrupt)
			check(s->closed_by_client);
	}
	ERR_clear_error();

	SSL_free(c->ssl);
	tls_conn_free(&s->tls);
	free(s);
	free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint16_t port;
	size_t chunk;

	if (size < 2)
		return 0;
	port = ports[data[0] & 3];
	chunk = (data[1] & 0x40) ? 4096 : (size_t)(data[1] & 0x3f) + 1;
	if (data[0] & 4)
		run_client(port, chunk, data + 2, size - 2);
	else
		run_raw(port, chunk, data + 2, size - 2);
	ERR_clear_error();
	return 0;
}
