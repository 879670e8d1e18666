/* ctl/fleet_parse.c: see fleet_parse.h. JSON through jansson (whose
 * parser limits nesting depth and checks UTF-8), base64 through
 * BoringSSL; no I/O, no global state. */
#include "ctl/fleet_parse.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/base64.h>
#include <openssl/mem.h>

#include "tls/ticket.h"

const char *fleet_vm_status_str(enum fleet_vm_status s)
{
	switch (s) {
	case FLEET_VM_OK:
		return "ok";
	case FLEET_VM_BAD_ID:
		return "bad_id";
	case FLEET_VM_TOO_BIG:
		return "too_big";
	case FLEET_VM_BAD_JSON:
		return "bad_json";
	case FLEET_VM_BAD_ADDRESS:
		return "bad_address";
	case FLEET_VM_BAD_PORTS:
		return "bad_ports";
	}
	return "?";
}

/* A decimal 1..65535 with no sign, no leading zero, no spaces. */
static bool port_num(const char *s, size_t len, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	if (len == 0 || len > 5 || s[0] == '0')
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*out = v;
	return true;
}

bool fleet_parse_ports(struct config_vm_ports **out, size_t *out_bad,
		       const json_t *list)
{
	uint64_t *bits = NULL;
	const json_t *p;
	size_t i, n = 0;
	unsigned lo, hi, port;

	*out = NULL;
	*out_bad = 0;
	if (!json_is_array(list) || json_array_size(list) == 0)
		return false;
	bits = calloc(65536 / 64, sizeof(*bits));
	if (!bits)
		return false;
	json_array_foreach(list, i, p) {
		*out_bad = i;
		if (json_is_integer(p)) {
			json_int_t v = json_integer_value(p);

			if (v < 1 || v > 65535)
				goto err;
			lo = hi = (unsigned)v;
		} else if (json_is_string(p)) {
			const char *s = json_string_value(p), *dash;
			size_t len = json_string_length(p);

			dash = memchr(s, '-', len);
			if (!dash) {
				if (!port_num(s, len, &lo))
					goto err;
				hi = lo;
			} else if (!port_num(s, (size_t)(dash - s), &lo) ||
				   !port_num(dash + 1,
					     len - (size_t)(dash - s) - 1,
					     &hi) ||
				   lo > hi) {
				goto err;
			}
		} else {
			goto err;
		}
		for (port = lo; port <= hi; port++)
			bits[port / 64] |= 1ULL << (port % 64);
	}
	/* The set as sorted, disjoint, non-adjacent ranges. */
	for (port = 1; port < 65536; port++)
		if ((bits[port / 64] >> (port % 64) & 1) &&
		    !(bits[(port - 1) / 64] >> ((port - 1) % 64) & 1))
			n++;
	*out = malloc(sizeof(**out) + n * sizeof((*out)->r[0]));
	if (!*out)
		goto err_oom;
	(*out)->len = 0;
	for (port = 1; port < 65536; port++) {
		if (!(bits[port / 64] >> (port % 64) & 1))
			continue;
		if (!(bits[(port - 1) / 64] >> ((port - 1) % 64) & 1))
			(*out)->r[(*out)->len++].from = (uint16_t)port;
		(*out)->r[(*out)->len - 1].to = (uint16_t)port;
	}
	free(bits);
	return true;
err_oom:
	*out_bad = SIZE_MAX;
err:
	free(bits);
	return false;
}

enum fleet_vm_status fleet_vm_parse(struct in6_addr *out_addr,
				    struct config_vm_ports **out_ports,
				    const uint8_t *val, size_t val_len)
{
	enum fleet_vm_status st = FLEET_VM_BAD_JSON;
	const json_t *addr, *ports;
	json_error_t jerr;
	json_t *root;
	size_t bad;

	*out_ports = NULL;
	if (val_len > FLEET_VALUE_MAX)
		return FLEET_VM_TOO_BIG;
	root = json_loadb((const char *)val, val_len,
			  JSON_REJECT_DUPLICATES,
			  &jerr);
	if (!root || !json_is_object(root))
		goto out;
	addr = json_object_get(root, "address");
	st = FLEET_VM_BAD_ADDRESS;
	if (!json_is_string(addr) ||
	    route_parse_vm_addr(out_addr, json_string_value(addr),
				json_string_length(addr)) != ROUTE_ADDR_OK ||
	    strlen(json_string_value(addr)) != json_string_length(addr))
		goto out;
	ports = json_object_get(root, "ports");
	st = FLEET_VM_BAD_PORTS;
	if (ports && !json_is_null(ports) &&
	    !fleet_parse_ports(out_ports, &bad, ports))
		goto out;
	st = FLEET_VM_OK;
out:
	json_decref(root);
	return st;
}

const uint8_t *fleet_key_under(const uint8_t *key, size_t key_len,
			       const char *dir, size_t *rest_len)
{
	size_t dir_len = strlen(dir);

	if (key_len <= dir_len || memcmp(key, dir, dir_len))
		return NULL;
	*rest_len = key_len - dir_len;
	return key + dir_len;
}

bool fleet_vm_key(char out_id[ROUTE_VM_ID_MAX + 1], const uint8_t *key,
		  size_t key_len, const char *dir)
{
	const uint8_t *id = fleet_key_under(key, key_len, dir, &key_len);
	size_t len;

	if (!id || memchr(id, '\0', key_len))
		return false;
	/* Lowercase only: etcd's keys are case-sensitive, names are not,
	 * and one VM must be one key (what the admin API writes and
	 * deletes), never two that a full read and a watch could see in
	 * different orders. */
	return route_vm_id_norm(out_id, &len, (const char *)id, key_len) &&
	       !memcmp(out_id, id, len);
}

bool fleet_next_key(char *key, size_t *key_len, const struct fleet_kv *last)
{
	size_t n = last->key_len;

	memcpy(key, last->key, n);
	if (!last->key_truncated) {
		key[n] = '\0';
		*key_len = n + 1;
		return true;
	}
	while (n && (uint8_t)key[n - 1] == 0xff)
		n--;
	if (!n)
		return false;
	key[n - 1] = (char)((uint8_t)key[n - 1] + 1);
	*key_len = n;
	return true;
}

/* Integers */

/* A proto3 int64: a JSON integer, or a string of decimal digits (with an
 * optional '-'). Absent means 0, as proto3 leaves zero values out. */
static bool get_i64(int64_t *out, const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);
	const char *s;
	long long n;
	char *end;

	*out = 0;
	if (!v)
		return true;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	if (!json_is_string(v))
		return false;
	s = json_string_value(v);
	if (!s[0] || json_string_length(v) > 20 ||
	    !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9')))
		return false;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end || end == s)
		return false;
	*out = n;
	return true;
}

static bool get_bool(bool *out, const json_t *obj, const char *name)
{
	const json_t *v = json_object_get(obj, name);

	*out = false;
	if (!v)
		return true;
	if (!json_is_boolean(v))
		return false;
	*out = json_is_true(v);
	return true;
}

/* Base64 */

/* decodes the string |name| of |obj| into a malloc'd, NUL-terminated
 * buffer (absent: empty). */
static bool get_b64(uint8_t **out, size_t *out_len, const json_t *obj,
		    const char *name, size_t max)
{
	const json_t *v = json_object_get(obj, name);
	size_t cap, len = 0, slen;
	uint8_t *buf;

	*out = NULL;
	*out_len = 0;
	if (v && !json_is_string(v))
		return false;
	slen = v ? json_string_length(v) : 0;
	if (slen / 4 * 3 > max + 3 || !EVP_DecodedLength(&cap, slen))
		return false;
	buf = malloc(cap + 1);
	if (!buf)
		return false;
	if (slen && !EVP_DecodeBase64(buf, &len, cap,
				      (const uint8_t *)json_string_value(v),
				      slen)) {
		free(buf);
		return false;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	return true;
}

bool fleet_b64(char *out, size_t out_cap, const void *in, size_t len)
{
	size_t need;

	if (!EVP_EncodedLength(&need, len) || need > out_cap)
		return false;
	EVP_EncodeBlock((uint8_t *)out, in, len);
	return true;
}

/* Key-values */

void fleet_kvs_free(struct fleet_kv *kvs, size_t n)
{
	size_t i;

	if (!kvs)
		return;
	for (i = 0; i < n; i++) {
		free(kvs[i].key);
		free(kvs[i].value);
	}
	free(kvs);
}

/* A key may be any size in etcd (up to its request limit, 1.5 MiB by
 * default): one longer than FLEET_KEY_MAX keeps its first FLEET_KEY_MAX
 * bytes, marked truncated. It is no VM's (an id is one DNS label), but it
 * must not stop the message it came in, and a full read pages past it. */
static bool get_key(struct fleet_kv *kv, const json_t *j)
{
	const json_t *v = json_object_get(j, "key");
	/* base64 of FLEET_KEY_MAX + 1 to + 3 bytes, whole quanta */
	size_t head = (FLEET_KEY_MAX / 3 + 1) * 4, len = 0;
	uint8_t *buf;

	if (!json_is_string(v))
		return false;
	if (json_string_length(v) <= head) {
		if (!get_b64(&kv->key, &kv->key_len, j, "key",
			     FLEET_KEY_MAX) || !kv->key_len)
			return false;
		if (kv->key_len > FLEET_KEY_MAX) {
			kv->key_len = FLEET_KEY_MAX;
			kv->key[FLEET_KEY_MAX] = '\0';
			kv->key_truncated = true;
		}
		return true;
	}
	buf = malloc(head / 4 * 3 + 1);
	if (!buf || !EVP_DecodeBase64(buf, &len, head / 4 * 3,
				      (const uint8_t *)json_string_value(v),
				      head) ||
	    len <= FLEET_KEY_MAX) {
		free(buf);
		return false;
	}
	buf[FLEET_KEY_MAX] = '\0';
	kv->key = buf;
	kv->key_len = FLEET_KEY_MAX;
	kv->key_truncated = true;
	return true;
}

/* A value may be any size in etcd: keep at most FLEET_VALUE_MAX + 1 bytes
 * of it decoded, so that a big one is still seen as too big. */
static bool parse_kv(struct fleet_kv *kv, const json_t *j)
{
	const json_t *v;
	int64_t rev;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(j) || !get_key(kv, j) ||
	    !get_i64(&rev, j, "mod_revision") || rev < 0)
		goto err;
	kv->mod_revision = rev;
	v = json_object_get(j, "value");
	if (v && json_is_string(v) &&
	    json_string_length(v) / 4 * 3 > FLEET_VALUE_MAX + 3) {
		/* Too big to decode: a marker the caller sees as too big. */
		kv->value = calloc(1, FLEET_VALUE_MAX + 2);
		if (!kv->value)
			goto err;
		kv->value_len = FLEET_VALUE_MAX + 1;
		return true;
	}
	if (!get_b64(&kv->value, &kv->value_len, j, "value", FLEET_VALUE_MAX))
		goto err;
	return true;
err:
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
	return false;
}

static bool parse_kvs(struct fleet_kv **out, size_t *out_len,
		      const json_t *arr, bool events)
{
	struct fleet_kv *kvs;
	const json_t *e;
	size_t i, n;

	*out = NULL;
	*out_len = 0;
	if (!arr)
		return true;
	if (!json_is_array(arr))
		return false;
	n = json_array_size(arr);
	if (!n)
		return true;
	kvs = calloc(n, sizeof(*kvs));
	if (!kvs)
		return false;
	json_array_foreach(arr, i, e) {
		const json_t *kv = e, *type;

		if (events) {
			if (!json_is_object(e))
				goto err;
			type = json_object_get(e, "type");
			kv = json_object_get(e, "kv");
			if (type && !(json_is_string(type) &&
				      (!strcmp(json_string_value(type),
					       "PUT") ||
				       !strcmp(json_string_value(type),
					       "DELETE"))))
				goto err;
		}
		if (!parse_kv(&kvs[i], kv))
			goto err;
		if (events && (type = json_object_get(e, "type")) &&
		    !strcmp(json_string_value(type), "DELETE"))
			kvs[i].deleted = true;
	}
	*out = kvs;
	*out_len = n;
	return true;
err:
	fleet_kvs_free(kvs, n);
	return false;
}

static json_t *load(const char *json, size_t len)
{
	json_error_t jerr;
	json_t *root = json_loadb(json, len, 0, &jerr);

	if (root && !json_is_object(root)) {
		json_decref(root);
		return NULL;
	}
	return root;
}

static bool header_rev(int64_t *out, const json_t *obj)
{
	const json_t *h = json_object_get(obj, "header");

	*out = 0;
	if (!h)
		return true;
	return json_is_object(h) && get_i64(out, h, "revision") && *out >= 0;
}

/* Range */

void fleet_range_free(struct fleet_range *r)
{
	if (!r)
		return;
	fleet_kvs_free(r->kvs, r->kvs_len);
	memset(r, 0, sizeof(*r));
}

bool fleet_parse_range(struct fleet_range *out, const char *json,
		       size_t len)
{
	json_t *root = load(json, len);
	bool ok;

	memset(out, 0, sizeof(*out));
	if (!root)
		return false;
	ok = !json_object_get(root, "error") &&
	     header_rev(&out->revision, root) && out->revision > 0 &&
	     get_bool(&out->more, root, "more") &&
	     parse_kvs(&out->kvs, &out->kvs_len, json_object_get(root, "kvs"),
		       false);
	json_decref(root);
	if (!ok)
		fleet_range_free(out);
	return ok;
}

/* Watch */

void fleet_watch_msg_free(struct fleet_watch_msg *m)
{
	if (!m)
		return;
	fleet_kvs_free(m->events, m->events_len);
	memset(m, 0, sizeof(*m));
}

/* Appends |n| bytes to the kept part of a line. */
static enum fleet_lines_status lines_keep(struct fleet_lines *l,
					  const char *data, size_t n,
					  size_t max)
{
	size_t cap = l->cap ? l->cap : 65536;
	char *b;

	if (n > max - l->len)
		return FLEET_LINES_TOO_LONG;
	while (cap < l->len + n)
		cap *= 2;
	if (cap != l->cap) {
		b = realloc(l->buf, cap);
		if (!b)
			return FLEET_LINES_NOMEM;
		l->buf = b;
		l->cap = cap;
	}
	memcpy(l->buf + l->len, data, n);
	l->len += n;
	return FLEET_LINES_OK;
}

enum fleet_lines_status fleet_lines_feed(struct fleet_lines *l,
					 const char *data, size_t len,
					 size_t max,
					 bool (*on_line)(void *arg,
							 const char *line,
							 size_t len),
					 void *arg)
{
	enum fleet_lines_status st;
	const char *nl;

	while (len && (nl = memchr(data, '\n', len))) {
		size_t n = (size_t)(nl - data);
		const char *line = data;

		/* The kept part has no '\n': this one ends its line. */
		if (l->len) {
			st = lines_keep(l, data, n, max);
			if (st != FLEET_LINES_OK)
				return st;
			line = l->buf;
			n = l->len;
			l->len = 0;
		}
		if (n && !on_line(arg, line, n))
			return FLEET_LINES_STOP;
		len -= (size_t)(nl - data) + 1;
		data = nl + 1;
	}
	return len ? lines_keep(l, data, len, max) : FLEET_LINES_OK;
}

void fleet_lines_free(struct fleet_lines *l)
{
	free(l->buf);
	*l = (struct fleet_lines){ 0 };
}

/* Text from etcd, kept for log lines and the admin API's answers: a
 * control byte, '"' or '\\' becomes '?', so that it can start no line and
 * close no quoted field of ours, and a cut falls between UTF-8 characters
 * (jansson refuses a broken one in an answer, which then went missing). */
size_t fleet_text_fit(const char *s, size_t len, size_t cap)
{
	size_t n = len;

	if (n > cap - 1) {
		n = cap - 1;
		while (n && ((uint8_t)s[n] & 0xc0) == 0x80)
			n--;
	}
	return n;
}

static void copy_str(char *out, size_t cap, const json_t *v)
{
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	size_t n, i;

	if (!cap)
		return;
	n = fleet_text_fit(s, json_is_string(v) ? json_string_length(v) : 0,
			   cap);
	for (i = 0; i < n; i++) {
		uint8_t c = (uint8_t)s[i];

		out[i] = c < 0x20 || c == 0x7f || c == '"' || c == '\\'
				 ? '?'
				 : (char)c;
	}
	out[n] = '\0';
}

bool fleet_parse_watch(struct fleet_watch_msg *out, const char *line,
		       size_t len)
{
	json_t *root = load(line, len);
	const json_t *res, *err;
	bool created, canceled, ok = false;

	memset(out, 0, sizeof(*out));
	if (!root)
		return false;
	err = json_object_get(root, "error");
	if (err) {
		out->kind = FLEET_WATCH_ERROR;
		copy_str(out->reason, sizeof(out->reason),
			 json_is_object(err) ? json_object_get(err, "message")
					     : err);
		ok = true;
		goto out;
	}
	res = json_object_get(root, "result");
	if (!json_is_object(res) || !header_rev(&out->revision, res) ||
	    !get_bool(&created, res, "created") ||
	    !get_bool(&canceled, res, "canceled") ||
	    !get_bool(&out->fragment, res, "fragment") ||
	    !get_i64(&out->compact_revision, res, "compact_revision") ||
	    out->compact_revision < 0 ||
	    !parse_kvs(&out->events, &out->events_len,
		       json_object_get(res, "events"), true))
		goto out;
	copy_str(out->reason, sizeof(out->reason),
		 json_object_get(res, "cancel_reason"));
	if (out->compact_revision > 0)
		out->kind = FLEET_WATCH_COMPACTED;
	else if (canceled)
		out->kind = FLEET_WATCH_CANCELED;
	else if (created)
		out->kind = FLEET_WATCH_CREATED;
	else if (out->events_len)
		out->kind = FLEET_WATCH_EVENTS;
	else
		out->kind = FLEET_WATCH_PROGRESS;
	ok = true;
out:
	json_decref(root);
	if (!ok)
		fleet_watch_msg_free(out);
	return ok;
}

/* The rest */

bool fleet_parse_txn(bool *out_succeeded, int64_t *out_revision,
		     const char *json, size_t len)
{
	json_t *root = load(json, len);
	bool ok;

	*out_succeeded = false;
	*out_revision = 0;
	if (!root)
		return false;
	ok = !json_object_get(root, "error") &&
	     header_rev(out_revision, root) && *out_revision > 0 &&
	     get_bool(out_succeeded, root, "succeeded");
	json_decref(root);
	return ok;
}

bool fleet_parse_lease(int64_t *out_id, int64_t *out_ttl, const char *json,
		       size_t len)
{
	json_t *root = load(json, len);
	const json_t *r;
	bool ok;

	*out_id = 0;
	*out_ttl = 0;
	if (!root)
		return false;
	/* keep-alive answers arrive as a stream's {"result": ...} */
	r = json_object_get(root, "result");
	if (!r)
		r = root;
	ok = json_is_object(r) && !json_object_get(root, "error") &&
	     get_i64(out_id, r, "ID") && get_i64(out_ttl, r, "TTL") &&
	     *out_id != 0;
	json_decref(root);
	return ok;
}

bool fleet_parse_token(char *out, size_t out_cap, const char *json,
		       size_t len)
{
	json_t *root = load(json, len);
	const json_t *t;
	bool ok = false;

	if (!root)
		return false;
	t = json_object_get(root, "token");
	if (json_is_string(t) && json_string_length(t) > 0 &&
	    json_string_length(t) < out_cap &&
	    strlen(json_string_value(t)) == json_string_length(t) &&
	    !strpbrk(json_string_value(t), "\r\n")) {
		memcpy(out, json_string_value(t), json_string_length(t) + 1);
		ok = true;
	}
	json_decref(root);
	return ok;
}

bool fleet_parse_error(char *out, size_t out_cap, const char *json,
		       size_t len)
{
	json_t *root = load(json, len);
	const json_t *e, *m;

	if (!root)
		return false;
	e = json_object_get(root, "error");
	m = json_object_get(root, "message");
	if (json_is_object(e))
		m = json_object_get(e, "message");
	else if (!m)
		m = e;
	if (!json_is_string(m)) {
		json_decref(root);
		return false;
	}
	copy_str(out, out_cap, m);
	json_decref(root);
	return true;
}

/* Session-ticket keys */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

void fleet_stek_keep(struct tls_ticket_key *keys, size_t *n, size_t cap,
		     const struct tls_ticket_key *k)
{
	size_t i, oldest = 0;

	if (*n < cap) {
		keys[(*n)++] = *k;
		return;
	}
	for (i = 1; i < *n; i++)
		if (keys[i].not_before < keys[oldest].not_before)
			oldest = i;
	if (*n && keys[oldest].not_before < k->not_before)
		keys[oldest] = *k;
}

bool fleet_stek_bound(struct tls_ticket_key *k, int64_t now,
		      int64_t rotation_s, int64_t lifetime_s,
		      bool *out_clamped)
{
	*out_clamped = false;
	if (k->not_before > now + 2 * rotation_s)
		return false;
	if (k->not_after - k->not_before > rotation_s + lifetime_s) {
		k->not_after = k->not_before + rotation_s + lifetime_s;
		*out_clamped = true;
	}
	return true;
}

bool fleet_parse_stek(struct tls_ticket_key *out, const uint8_t *val,
		      size_t val_len)
{
	const json_t *name, *key;
	json_error_t jerr;
	json_t *root;
	uint8_t *raw = NULL;
	size_t raw_len = 0, i;
	bool ok = false;

	memset(out, 0, sizeof(*out));
	if (val_len > FLEET_VALUE_MAX)
		return false;
	root = json_loadb((const char *)val, val_len, JSON_REJECT_DUPLICATES,
			  &jerr);
	if (!json_is_object(root))
		goto out;
	name = json_object_get(root, "name");
	key = json_object_get(root, "key");
	if (!json_is_string(name) || json_string_length(name) != 32 ||
	    !json_is_string(key) ||
	    !get_b64(&raw, &raw_len, root, "key", 64) || raw_len != 64 ||
	    !get_i64(&out->not_before, root, "not_before") ||
	    !get_i64(&out->not_after, root, "not_after") ||
	    out->not_before <= 0 || out->not_after <= out->not_before)
		goto out;
	for (i = 0; i < 16; i++) {
		int hi = hexval(json_string_value(name)[2 * i]),
		    lo = hexval(json_string_value(name)[2 * i + 1]);

		if (hi < 0 || lo < 0)
			goto out;
		out->name[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(out->aes, raw, 32);
	memcpy(out->hmac, raw + 32, 32);
	ok = true;
out:
	if (raw) {
		OPENSSL_cleanse(raw, raw_len);
		free(raw);
	}
	json_decref(root);
	if (!ok)
		OPENSSL_cleanse(out, sizeof(*out));
	return ok;
}
