/* ctl/etcd.c: see etcd.h. */
#include "ctl/etcd.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/timer.h"
#include "ctl/fleet_parse.h"
#include "route/config-t.h"

#define LINE_MAX_BYTES (64u << 20)

/* libcurl is loaded when fleet mode starts, never linked: its GnuTLS
 * build's dependencies (libssh2, krb5) bring OpenSSL's libcrypto.so.3,
 * whose versioned EVP_* references glibc would bind to BoringSSL's
 * unversioned definitions in a process that has both, and a gate without
 * a fleet: section has no use for the dozen libraries. RTLD_DEEPBIND
 * makes libcurl's tree resolve within itself before the global scope
 * (vmgate and BoringSSL). The sanitizers' runtimes refuse RTLD_DEEPBIND
 * (their malloc would be bypassed): those builds go without it, as they
 * did when libcurl was linked. */
#define CURL_LIB "libcurl-gnutls.so.4"
#define CURL_DEB "libcurl3-gnutls"
#if defined(__SANITIZE_ADDRESS__)
#define CURL_DEEPBIND 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CURL_DEEPBIND 0
#endif
#endif
#ifndef CURL_DEEPBIND
#define CURL_DEEPBIND RTLD_DEEPBIND
#endif

#define ETCD_WHY_LEN 256 /* the watch's error[] and the fleet's last error */

_Static_assert(sizeof(((struct etcd_watch *)0)->error) >= CURL_ERROR_SIZE &&
	       sizeof(((struct etcd_watch *)0)->error) == ETCD_WHY_LEN,
	       "etcd_watch.error is curl's error buffer and a why");

/* The libcurl functions used here, typed by <curl/curl.h>'s prototypes:
 * curl.easy_setopt is curl_easy_setopt. (curl.h's check of setopt's value
 * types is a macro on the name curl_easy_setopt: calls through the
 * pointer go without it.) */
#define CURL_FUNCS(X)                                                       \
	X(global_init) X(easy_init) X(easy_setopt) X(easy_perform)          \
	X(easy_getinfo) X(easy_cleanup) X(slist_append) X(slist_free_all)   \
	X(multi_init) X(multi_add_handle) X(multi_perform) X(multi_poll)    \
	X(multi_info_read) X(multi_remove_handle) X(multi_cleanup)

static struct curl_api {
#define CURL_FUNC_PTR(name) typeof(curl_##name) *name;
	CURL_FUNCS(CURL_FUNC_PTR)
#undef CURL_FUNC_PTR
} curl;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static char curl_err[512]; /* why loading failed; "" when it did not */

static void curl_load_once(void)
{
	void *lib = dlopen(CURL_LIB, RTLD_NOW | RTLD_LOCAL | CURL_DEEPBIND);
	CURLcode rc;

	if (!lib)
		goto fail;
#define CURL_FUNC_SYM(name)                                                 \
	if (!(curl.name = (typeof(curl.name))dlsym(lib, "curl_" #name)))    \
		goto fail;
	CURL_FUNCS(CURL_FUNC_SYM)
#undef CURL_FUNC_SYM
	rc = curl.global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		snprintf(curl_err, sizeof(curl_err), "fleet mode: "
			 "curl_global_init of " CURL_LIB " failed (CURLcode %d)",
			 (int)rc);
	return;

fail:
	/* dlerror() names the file, or the symbol it lacks. */
	snprintf(curl_err, sizeof(curl_err), "fleet mode needs " CURL_LIB
		 " (Debian package " CURL_DEB "): %s", dlerror());
	if (lib)
		dlclose(lib);
	memset(&curl, 0, sizeof(curl));
}

int etcd_curl_load(char *err, size_t err_len)
{
	pthread_once(&curl_once, curl_load_once);
	if (!curl_err[0])
		return 0;
	snprintf(err, err_len, "%s", curl_err);
	return -ELIBACC;
}

int etcd_init(struct etcd *e, const struct config_fleet *cfg, char *err,
	      size_t err_len)
{
	int ret;

	memset(e, 0, sizeof(*e));
	ret = etcd_curl_load(err, err_len);
	if (ret)
		return ret;
	e->cfg = cfg;
	e->answer_max = ETCD_ANSWER_MAX;
	if (getenv("VMGATE_TEST_ETCD_ANSWER_MAX"))
		e->answer_max = strtoul(getenv("VMGATE_TEST_ETCD_ANSWER_MAX"),
					NULL, 10);
	pthread_mutex_init(&e->lock, NULL);
	if (cfg->password_file) {
		FILE *f = fopen(cfg->password_file, "r");
		size_t n;

		if (!f) {
			snprintf(err, err_len, "fleet.etcd.password_file %s: "
				 "%s", cfg->password_file, strerror(errno));
			return -errno;
		}
		n = fread(e->password, 1, sizeof(e->password) - 1, f);
		fclose(f);
		e->password[n] = '\0';
		/* One line: the trailing newline editors add is not part of
		 * the password. */
		e->password[strcspn(e->password, "\r\n")] = '\0';
	}
	return 0;
}

void etcd_free(struct etcd *e)
{
	if (!e->cfg)
		return;
	explicit_bzero(e->password, sizeof(e->password));
	pthread_mutex_destroy(&e->lock);
	memset(e, 0, sizeof(*e));
}

void etcd_endpoint(struct etcd *e, char *out, size_t out_cap)
{
	pthread_mutex_lock(&e->lock);
	snprintf(out, out_cap, "%s", e->cfg->endpoints[e->ep]);
	pthread_mutex_unlock(&e->lock);
}

void etcd_forget_token(struct etcd *e)
{
	pthread_mutex_lock(&e->lock);
	e->token[0] = '\0';
	pthread_mutex_unlock(&e->lock);
	/* Simple tokens live in a member's memory: a restart forgets them.
	 * Whichever request meets that first (a watch, a range, a lease
	 * keep-alive) comes here. */
	log_info("etcd_auth", "user=%s token refused: logging in again",
		 e->cfg->username ? e->cfg->username : "-");
}

void etcd_cancel(struct etcd *e)
{
	atomic_store(&e->cancel, true);
}

bool etcd_cancelled(struct etcd *e)
{
	return atomic_load(&e->cancel);
}

void etcd_next_endpoint(struct etcd *e)
{
	pthread_mutex_lock(&e->lock);
	e->ep = (e->ep + 1) % e->cfg->endpoints_len;
	pthread_mutex_unlock(&e->lock);
}

struct answer {
	char *p;
	size_t len;
	size_t max;
	bool too_big;
};

static size_t answer_write(char *data, size_t size, size_t n, void *arg)
{
	struct answer *a = arg;
	size_t len = size * n;
	char *p;

	if (a->len + len > a->max) {
		a->too_big = true;
		return 0;
	}
	p = realloc(a->p, a->len + len + 1);
	if (!p)
		return 0;
	memcpy(p + a->len, data, len);
	a->len += len;
	p[a->len] = '\0';
	a->p = p;
	return len;
}

/* libcurl's progress callback, on every handle: non-zero aborts the
 * transfer (CURLE_ABORTED_BY_CALLBACK). It is called on every turn of the
 * transfer's loop, and a transfer waiting (on a connect, on an answer)
 * turns at least once a second: curl_easy_perform polls for at most 1000
 * ms at a time, and a watch turns on every etcd_watch_step. So a call
 * running when etcd_cancel comes ends within about a second, not after
 * fleet.etcd.timeout_ms. */
static int xfer_cancel(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct etcd *e = arg;

	return atomic_load(&e->cancel);
}

/* The options every request shares: TLS files, no signals (threads), no
 * proxy from the environment (etcd is reached directly), and the cancel
 * check. */
static void common_opts(struct etcd *e, CURL *c, const char *url,
			struct curl_slist *h, const char *body)
{
	const struct config_fleet *f = e->cfg;

	curl.easy_setopt(c, CURLOPT_URL, url);
	curl.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl.easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl.easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl.easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl.easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)f->timeout_ms);
	curl.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl.easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl.easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_cancel);
	curl.easy_setopt(c, CURLOPT_XFERINFODATA, e);
	if (f->ca_file)
		curl.easy_setopt(c, CURLOPT_CAINFO, f->ca_file);
	if (f->cert_file) {
		curl.easy_setopt(c, CURLOPT_SSLCERT, f->cert_file);
		curl.easy_setopt(c, CURLOPT_SSLKEY, f->key_file);
	}
}

static struct curl_slist *headers(struct etcd *e, bool watch)
{
	struct curl_slist *h = NULL, *n;
	char auth[600];

	h = curl.slist_append(h, "Content-Type: application/json");
	if (h && watch && (n = curl.slist_append(h, "Grpc-Metadata-hasleader: "
						  "true")))
		h = n;
	pthread_mutex_lock(&e->lock);
	if (e->token[0])
		snprintf(auth, sizeof(auth), "Authorization: %s", e->token);
	else
		auth[0] = '\0';
	pthread_mutex_unlock(&e->lock);
	if (h && auth[0] && (n = curl.slist_append(h, auth)))
		h = n;
	return h;
}

/* What curl says went wrong, for a message: its error buffer |buf| names
 * the TLS problem ("server certificate verification failed"), where the
 * code alone would say only "SSL connect error". A refused client
 * certificate it cannot name: in TLS 1.3 the client's handshake may be
 * over before the server has checked that certificate, and the refusal
 * (an alert, or a reset) meets whatever the client does next: "Send
 * failure: Broken pipe" in the handshake's last flight, "getpeername()
 * failed" or "Connection reset by peer" on the request, an HTTP/2 error
 * when ALPN chose h2. An https connection that died so, with no HTTP
 * answer, is that sign. |f| is NULL where the configuration is not at
 * hand. */
static void curl_why(char *out, size_t out_len, CURL *c, CURLcode rc,
		     const char *buf, const struct config_fleet *f)
{
	const char *hint = "", *scheme = NULL;
	long status = 0;
	bool dropped = rc == CURLE_SSL_CONNECT_ERROR ||
		       rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
		       rc == CURLE_GOT_NOTHING || rc == CURLE_HTTP2 ||
		       rc == CURLE_HTTP2_STREAM;

	curl.easy_getinfo(c, CURLINFO_SCHEME, &scheme);
	curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (dropped && !status && scheme && !strcasecmp(scheme, "https"))
		hint = !f ? "etcd closed the TLS connection: it may not accept "
			    "the client certificate, or want one; curl: " :
		       f->cert_file ? "etcd closed the TLS connection: it may "
				      "not accept the client certificate; "
				      "curl: " :
		       "etcd closed the TLS connection: it may want a client "
		       "certificate (none configured: fleet.etcd.cert_file); "
		       "curl: ";
	if (buf[0])
		snprintf(out, out_len, "%s%.*s", hint,
			 (int)strcspn(buf, "\r\n"), buf);
	else
		snprintf(out, out_len, "%scurl error %d", hint, rc);
}

/* One request to one endpoint. On a failure to get an answer, |why| (of
 * ETCD_WHY_LEN bytes) says what curl saw: -EHOSTUNREACH, or -ECANCELED
 * when etcd_cancel cut it short. */
static int call_one(struct etcd *e, struct answer *a, long *status,
		    char *why, const char *ep, const char *path,
		    const char *body, bool with_token)
{
	struct curl_slist *h = with_token ? headers(e, false) :
			       curl.slist_append(NULL, "Content-Type: "
						 "application/json");
	char url[512], buf[CURL_ERROR_SIZE] = "";
	CURL *c = curl.easy_init();
	CURLcode rc;

	memset(a, 0, sizeof(*a));
	a->max = e->answer_max;
	*status = 0;
	snprintf(why, ETCD_WHY_LEN, "out of memory");
	if (!c || !h) {
		curl.easy_cleanup(c);
		curl.slist_free_all(h);
		return -ENOMEM;
	}
	snprintf(url, sizeof(url), "%s/v3/%s", ep, path);
	common_opts(e, c, url, h, body);
	curl.easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->cfg->timeout_ms);
	curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, answer_write);
	curl.easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl.easy_setopt(c, CURLOPT_ERRORBUFFER, buf);
	rc = curl.easy_perform(c);
	curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (rc == CURLE_ABORTED_BY_CALLBACK)
		snprintf(why, ETCD_WHY_LEN, ETCD_CANCELLED);
	else if (rc != CURLE_OK)
		curl_why(why, ETCD_WHY_LEN, c, rc, buf, e->cfg);
	else if (!a->p)
		snprintf(why, ETCD_WHY_LEN, "an empty answer");
	else
		why[0] = '\0';
	curl.easy_cleanup(c);
	curl.slist_free_all(h);
	if (a->too_big)
		snprintf(why, ETCD_WHY_LEN, "an answer over %zu bytes",
			 a->max);
	if (rc != CURLE_OK || !a->p) {
		free(a->p);
		a->p = NULL;
		return rc == CURLE_ABORTED_BY_CALLBACK ? -ECANCELED :
		       a->too_big ? -E2BIG : -EHOSTUNREACH;
	}
	return 0;
}

/* etcd's answers to a missing or stale token. */
static bool auth_refused(const char *msg)
{
	return strstr(msg, "auth token") || strstr(msg, "user name is empty");
}

/* Answers that mean "this member cannot serve now": try another. */
static bool member_unavailable(long status, const char *msg)
{
	return status == 503 || status == 504 || status == 502 ||
	       strstr(msg, "no leader") || strstr(msg, "leader changed") ||
	       strstr(msg, "timed out") || strstr(msg, "not capable") ||
	       strstr(msg, "unhealthy");
}

static bool need_token(struct etcd *e)
{
	bool need;

	if (!e->cfg->username)
		return false;
	pthread_mutex_lock(&e->lock);
	need = !e->token[0];
	pthread_mutex_unlock(&e->lock);
	return need;
}

static int authenticate(struct etcd *e, char *why, const char *ep)
{
	char body[1024], u[300], p[300];
	struct answer a;
	long status;
	int ret;

	/* user and password are JSON strings: escape the two that matter. */
	{
		const char *src[2] = { e->cfg->username, e->password };
		char *dst[2] = { u, p };

		for (int k = 0; k < 2; k++) {
			size_t j = 0;

			for (const char *s = src[k]; *s && j + 3 < sizeof(u);
			     s++) {
				if (*s == '"' || *s == '\\')
					dst[k][j++] = '\\';
				if ((unsigned char)*s >= 0x20)
					dst[k][j++] = *s;
			}
			dst[k][j] = '\0';
		}
	}
	snprintf(body, sizeof(body), "{\"name\":\"%s\",\"password\":\"%s\"}",
		 u, p);
	explicit_bzero(p, sizeof(p));
	ret = call_one(e, &a, &status, why, ep, "auth/authenticate", body,
		       false);
	explicit_bzero(body, sizeof(body));
	if (ret)
		return ret;
	pthread_mutex_lock(&e->lock);
	if (!fleet_parse_token(e->token, sizeof(e->token), a.p, a.len)) {
		e->token[0] = '\0';
		/* Refused: a 4xx (a wrong user or password). Anything else
		 * without a token (a 503 in a leader election, a learner
		 * that serves no authenticate) is this endpoint's: the next
		 * one is tried. */
		if (status >= 400 && status < 500) {
			char msg[200];

			if (!fleet_parse_error(msg, sizeof(msg), a.p, a.len))
				snprintf(msg, sizeof(msg), "HTTP %ld", status);
			snprintf(why, ETCD_WHY_LEN, "etcd refused user '%s': %s",
				 e->cfg->username, msg);
			ret = -EACCES;
		} else {
			snprintf(why, ETCD_WHY_LEN, "auth/authenticate: HTTP "
				 "%ld without a token", status);
			ret = -EAGAIN;
		}
	}
	pthread_mutex_unlock(&e->lock);
	free(a.p);
	return ret;
}

/* A cancelled call's answer. */
static int cancelled(char *err, size_t err_len)
{
	snprintf(err, err_len, ETCD_CANCELLED);
	return -ECANCELED;
}

int etcd_call(struct etcd *e, char **out, size_t *out_len, const char *path,
	      const char *body, char *err, size_t err_len)
{
	size_t n = e->cfg->endpoints_len, i, start;
	int ret = -EHOSTUNREACH;
	char ep[300], msg[256], why[ETCD_WHY_LEN];

	*out = NULL;
	*out_len = 0;
	snprintf(err, err_len, "no etcd endpoint answered");
	pthread_mutex_lock(&e->lock);
	start = e->ep;
	pthread_mutex_unlock(&e->lock);
	for (i = 0; i < n; i++) {
		size_t k = (start + i) % n;
		struct answer a;
		long status;
		bool retried = false;

		snprintf(ep, sizeof(ep), "%s", e->cfg->endpoints[k]);
again:
		/* Stopping: no endpoint is tried, not even the next one; and
		 * the endpoint that works stays the one it was. */
		if (atomic_load(&e->cancel))
			return cancelled(err, err_len);
		if (need_token(e)) {
			ret = authenticate(e, why, ep);
			if (ret == -ECANCELED)
				return cancelled(err, err_len);
			if (ret == -EACCES || ret == -ENOMEM) {
				snprintf(err, err_len, "%s", why);
				return ret;
			}
			if (ret) {
				/* This member's trouble (authenticate without
				 * a token, no answer): the next one is tried,
				 * and -EAGAIN is no answer of etcd_call's. */
				snprintf(err, err_len, "etcd %s: %s", ep, why);
				ret = -EHOSTUNREACH;
				continue;
			}
		}
		ret = call_one(e, &a, &status, why, ep, path, body, true);
		if (ret == -ECANCELED)
			return cancelled(err, err_len);
		if (ret == -ENOMEM || ret == -E2BIG) {
			snprintf(err, err_len, "etcd %s: %s", ep, why);
			return ret;
		}
		if (ret) {
			snprintf(err, err_len, "etcd %s: %s", ep, why);
			continue;
		}
		if (status == 200) {
			pthread_mutex_lock(&e->lock);
			e->ep = k;
			pthread_mutex_unlock(&e->lock);
			*out = a.p;
			*out_len = a.len;
			return 0;
		}
		if (!fleet_parse_error(msg, sizeof(msg), a.p, a.len))
			snprintf(msg, sizeof(msg), "HTTP %ld", status);
		free(a.p);
		if (e->cfg->username && !retried && auth_refused(msg)) {
			/* The member restarted and forgot the token. */
			etcd_forget_token(e);
			retried = true;
			goto again;
		}
		snprintf(err, err_len, "etcd %s: %s", ep, msg);
		if (member_unavailable(status, msg)) {
			ret = -EHOSTUNREACH;
			continue;
		}
		return -EPROTO;
	}
	/* Nobody answered: next time start with the next one. */
	pthread_mutex_lock(&e->lock);
	e->ep = (start + 1) % n;
	pthread_mutex_unlock(&e->lock);
	return ret;
}

/* Watch */

static size_t watch_write(char *data, size_t size, size_t n, void *arg)
{
	struct etcd_watch *w = arg;
	size_t len = size * n;

	w->last_rx_ms = timer_now_ms();
	switch (fleet_lines_feed(&w->lines, data, len, LINE_MAX_BYTES,
				 w->on_line, w->arg)) {
	case FLEET_LINES_OK:
		return len;
	case FLEET_LINES_TOO_LONG:
		w->too_long = true;
		return 0;
	default:
		return 0; /* curl ends the stream: CURLE_WRITE_ERROR */
	}
}

int etcd_watch_start(struct etcd *e, struct etcd_watch *w, const char *body,
		     bool (*on_line)(void *arg, const char *line, size_t len),
		     void *arg)
{
	char url[512], ep[300];

	memset(w, 0, sizeof(*w));
	if (atomic_load(&e->cancel))
		return cancelled(w->error, sizeof(w->error));
	if (need_token(e)) {
		int ret;

		etcd_endpoint(e, ep, sizeof(ep));
		ret = authenticate(e, w->error, ep);
		if (ret)
			return ret == -ECANCELED ? ret : -EHOSTUNREACH;
	}
	etcd_endpoint(e, ep, sizeof(ep));
	w->on_line = on_line;
	w->arg = arg;
	w->body = strdup(body);
	w->hdrs = headers(e, true);
	w->easy = curl.easy_init();
	w->multi = curl.multi_init();
	if (!w->body || !w->hdrs || !w->easy || !w->multi) {
		etcd_watch_stop(w);
		return -ENOMEM;
	}
	snprintf(url, sizeof(url), "%s/v3/watch", ep);
	common_opts(e, w->easy, url, w->hdrs, w->body);
	curl.easy_setopt(w->easy, CURLOPT_WRITEFUNCTION, watch_write);
	curl.easy_setopt(w->easy, CURLOPT_WRITEDATA, w);
	curl.easy_setopt(w->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl.easy_setopt(w->easy, CURLOPT_ERRORBUFFER, w->error);
	curl.multi_add_handle(w->multi, w->easy);
	w->last_rx_ms = timer_now_ms();
	return 0;
}

int etcd_watch_step(struct etcd_watch *w, int wait_ms)
{
	int running = 0, q;
	CURLMsg *m;

	if (w->done)
		return 0;
	curl.multi_perform(w->multi, &running);
	if (running)
		curl.multi_poll(w->multi, NULL, 0, wait_ms, NULL);
	curl.multi_perform(w->multi, &running);
	while ((m = curl.multi_info_read(w->multi, &q))) {
		if (m->msg == CURLMSG_DONE) {
			char buf[sizeof(w->error)];

			w->done = true;
			w->result = m->data.result;
			curl.easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE,
					  &w->http_status);
			/* curl writes there no more: it becomes the why. */
			curl.easy_setopt(w->easy, CURLOPT_ERRORBUFFER, NULL);
			memcpy(buf, w->error, sizeof(buf));
			if (w->result == CURLE_ABORTED_BY_CALLBACK)
				snprintf(w->error, sizeof(w->error),
					 ETCD_CANCELLED);
			else if (w->result != CURLE_OK)
				curl_why(w->error, sizeof(w->error), w->easy,
					 w->result, buf, NULL);
		}
	}
	if (!running)
		w->done = true;
	return w->done ? 0 : 1;
}

void etcd_watch_stop(struct etcd_watch *w)
{
	if (w->multi && w->easy)
		curl.multi_remove_handle(w->multi, w->easy);
	curl.easy_cleanup(w->easy);
	curl.multi_cleanup(w->multi);
	curl.slist_free_all(w->hdrs);
	free(w->body);
	fleet_lines_free(&w->lines);
	memset(w, 0, sizeof(*w));
}
