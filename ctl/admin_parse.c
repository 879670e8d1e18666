/* ctl/admin_parse.c: the admin API's request parser and router, pure
 * (see admin_parse.h).
 *
 * http-parser hands a request over in pieces, split wherever the reads
 * split it; the callbacks below keep what the handlers need (the
 * request target, the Authorization and Expect values, the body) and
 * count the rest against the limits, so nothing a client sends grows
 * memory past ADMIN_MAX_HEADERS and ADMIN_MAX_BODY. The parser is paused
 * at the end of each message, so that a pipelined request waits until
 * the one before it is answered.
 */
#include "ctl/admin_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct admin_req *preq(http_parser *p)
{
	return p->data;
}

static int fail(struct admin_req *r, int status, const char *msg)
{
	r->fail_status = status;
	r->fail_msg = msg;
	return -1;
}

static int count_header(struct admin_req *r, size_t len)
{
	r->header_bytes += len;
	if (r->header_bytes > ADMIN_MAX_HEADERS)
		return fail(r, 413, "request headers larger than 16 KiB");
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct admin_req *r = preq(p);

	r->in_request = r->began = true;
	r->header_bytes = 0;
	r->url_len = 0;
	r->url[0] = '\0';
	r->url_long = false;
	r->hname_len = 0;
	r->hname_long = r->in_name = r->last_was_value = r->in_auth = false;
	r->auth_len = 0;
	r->auth_bad = r->auth_seen = false;
	r->in_expect = false;
	r->expect_len = 0;
	r->body_len = 0;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct admin_req *r = preq(p);

	/* Too long: what fit stays, for the log line of the 414. */
	if (r->url_long || r->url_len + len > ADMIN_MAX_URL)
		r->url_long = true;
	else {
		memcpy(r->url + r->url_len, at, len);
		r->url_len += len;
		r->url[r->url_len] = '\0';
	}
	/* A target alone past the header limit is still too long a URI. */
	if (r->url_long && r->header_bytes + len > ADMIN_MAX_HEADERS) {
		r->header_bytes += len;
		return fail(r, 414, "request target longer than 1 KiB");
	}
	return count_header(r, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct admin_req *r = preq(p);

	size_t extra = 0;

	if (r->last_was_value) {
		r->last_was_value = false;
		r->hname_len = 0;
		r->hname_long = false;
	}
	if (!r->in_name) {
		/* A new header: its ": " and CRLF, which the parser does
		 * not hand us, count once however its name is split. */
		r->in_name = true;
		extra = 4;
	}
	if (r->hname_len + len >= sizeof(r->hname))
		r->hname_long = true;
	else {
		memcpy(r->hname + r->hname_len, at, len);
		r->hname_len += len;
	}
	return count_header(r, len + extra);
}

static bool hname_is(const struct admin_req *r, const char *name)
{
	size_t len = strlen(name);

	return !r->hname_long && r->hname_len == len &&
	       !strncasecmp(r->hname, name, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct admin_req *r = preq(p);

	r->in_name = false;
	if (!r->last_was_value) {
		r->last_was_value = true;
		r->in_auth = hname_is(r, "authorization");
		if (r->in_auth) {
			if (r->auth_seen)
				r->auth_bad = true;
			r->auth_seen = true;
			r->auth_len = 0;
		}
		r->in_expect = hname_is(r, "expect");
		if (r->in_expect)
			r->expect_len = 0;
	}
	if (r->in_expect) {
		if (r->expect_len + len < sizeof(r->expect))
			memcpy(r->expect + r->expect_len, at, len);
		r->expect_len += len;
	}
	if (r->in_auth && !r->auth_bad) {
		if (r->auth_len + len > ADMIN_MAX_AUTH)
			r->auth_bad = true;
		else {
			memcpy(r->auth + r->auth_len, at, len);
			r->auth_len += len;
		}
	}
	return count_header(r, len);
}

static int on_headers_complete(http_parser *p)
{
	struct admin_req *r = preq(p);

	/* Refuse a declared oversized body before reading any of it. */
	if ((p->flags & F_CONTENTLENGTH) && p->content_length > ADMIN_MAX_BODY)
		return fail(r, 413, "request body larger than 64 KiB");
	/* curl, for one, waits a second for this on bodies over 1 KiB. */
	r->want_continue = r->expect_len == 12 &&
			   !strncasecmp(r->expect, "100-continue", 12) &&
			   p->http_major == 1 && p->http_minor >= 1 &&
			   ((p->flags & F_CHUNKED) ||
			    ((p->flags & F_CONTENTLENGTH) && p->content_length));
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct admin_req *r = preq(p);

	if (r->body_len + len > ADMIN_MAX_BODY)
		return fail(r, 413, "request body larger than 64 KiB");
	if (r->body_len + len > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 1024;
		uint8_t *b;

		while (cap < r->body_len + len)
			cap *= 2;
		b = realloc(r->body, cap);
		if (!b)
			return fail(r, 500, "out of memory");
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct admin_req *r = preq(p);

	r->in_request = false;
	r->close_after = !http_should_keep_alive(p) || p->upgrade;
	/* Stop here: the next pipelined request waits for this answer. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void admin_req_init(struct admin_req *r)
{
	memset(r, 0, sizeof(*r));
	http_parser_init(&r->parser, HTTP_REQUEST);
	r->parser.data = r;
}

enum admin_feed admin_req_feed(struct admin_req *r, const uint8_t *in,
			       size_t len, size_t *used)
{
	*used = 0;
	if (r->fail_status)
		return ADMIN_FEED_ERROR;
	while (*used < len) {
		size_t n = http_parser_execute(&r->parser, &settings,
					       (const char *)in + *used,
					       len - *used);
		enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);

		*used += n;
		if (r->fail_status)
			return ADMIN_FEED_ERROR;
		if (err == HPE_PAUSED)
			return ADMIN_FEED_REQUEST;
		if (err != HPE_OK) {
			snprintf(r->errbuf, sizeof(r->errbuf),
				 "malformed request: %s",
				 http_errno_description(err));
			r->fail_status = err == HPE_HEADER_OVERFLOW ? 413 : 400;
			r->fail_msg = r->errbuf;
			return ADMIN_FEED_ERROR;
		}
		if (!n) /* cannot happen: the parser takes all or errs */
			break;
	}
	return ADMIN_FEED_MORE;
}

void admin_req_next(struct admin_req *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = r->body_cap = 0;
	http_parser_pause(&r->parser, 0);
}

void admin_req_free(struct admin_req *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = r->body_cap = 0;
}

/* ------------------------------------------------------------ routing */

static bool path_is(const char *path, size_t len, const char *want)
{
	return len == strlen(want) && !memcmp(path, want, len);
}

/* The ID of /vms/ID|suffix| (|suffix| "" or "/stats"): one segment. */
static bool vm_path(struct admin_target *t, const char *path, size_t len,
		    const char *suffix)
{
	size_t slen = strlen(suffix), idlen;

	if (len <= 5 + slen || memcmp(path, "/vms/", 5) ||
	    memcmp(path + len - slen, suffix, slen))
		return false;
	idlen = len - 5 - slen;
	if (memchr(path + 5, '/', idlen))
		return false;
	memcpy(t->id, path + 5, idlen);
	t->id[idlen] = '\0';
	return true;
}

static void takes(struct admin_target *t, enum admin_ep ep,
		  enum http_method m, const char *allow)
{
	t->ep = ep;
	t->allow = allow;
	if (ep == AEP_VM)
		t->allowed = m == HTTP_GET || m == HTTP_PUT ||
			     m == HTTP_DELETE;
	else if (ep == AEP_RELOAD)
		t->allowed = m == HTTP_POST;
	else
		t->allowed = m == HTTP_GET;
}

void admin_route(struct admin_target *t, enum http_method method,
		 const char *url, size_t len)
{
	struct http_parser_url u;
	const char *path;
	size_t plen;

	memset(t, 0, sizeof(*t));
	t->ep = AEP_BAD_URL;
	t->query = "";
	http_parser_url_init(&u);
	if (len > ADMIN_MAX_URL ||
	    http_parser_parse_url(url, len, method == HTTP_CONNECT, &u) ||
	    !(u.field_set & (1 << UF_PATH)))
		return;
	path = url + u.field_data[UF_PATH].off;
	plen = u.field_data[UF_PATH].len;

	if (path_is(path, plen, "/health"))
		takes(t, AEP_HEALTH, method, "GET");
	else if (vm_path(t, path, plen, "/stats"))
		takes(t, AEP_VM_STATS, method, "GET");
	else if (path_is(path, plen, "/stats/vms")) {
		takes(t, AEP_STATS_VMS, method, "GET");
		if (u.field_set & (1 << UF_QUERY)) {
			t->query = url + u.field_data[UF_QUERY].off;
			t->query_len = u.field_data[UF_QUERY].len;
		}
	} else if (path_is(path, plen, "/vms"))
		takes(t, AEP_VMS, method, "GET");
	else if (vm_path(t, path, plen, ""))
		takes(t, AEP_VM, method, "GET, PUT, DELETE");
	else if (path_is(path, plen, "/reload"))
		takes(t, AEP_RELOAD, method, "POST");
	else if (path_is(path, plen, "/fleet"))
		takes(t, AEP_FLEET, method, "GET");
	else if (path_is(path, plen, "/metrics"))
		takes(t, AEP_METRICS, method, "GET");
	else
		t->ep = AEP_NOT_FOUND;
}

static bool blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

bool admin_bearer(const char *v, size_t len, const char **tok,
		  size_t *tok_len)
{
	while (len && blank(*v))
		v++, len--;
	while (len && blank(v[len - 1]))
		len--;
	if (len < 7 || strncasecmp(v, "bearer", 6) || !blank(v[6]))
		return false;
	v += 7;
	len -= 7;
	while (len && blank(*v))
		v++, len--;
	*tok = v;
	*tok_len = len;
	return true;
}

bool admin_parse_top(size_t *out, const char *q, size_t len)
{
	size_t n = 0, i;

	*out = ADMIN_TOP_DEFAULT;
	if (!len)
		return true;
	if (len < 5 || memcmp(q, "top=", 4))
		return false;
	for (i = 4; i < len; i++) {
		if (q[i] < '0' || q[i] > '9' || n > ADMIN_TOP_MAX)
			return false;
		n = n * 10 + (size_t)(q[i] - '0');
	}
	if (n < 1 || n > ADMIN_TOP_MAX)
		return false;
	*out = n;
	return true;
}
