/* ctl/config/load.c: appliance.yaml -> struct config, with file:line:col
 * errors.
 *
 * libyaml's document API loads the whole file into nodes that keep their
 * start marks, so every check can point at the exact key or value. The
 * schema is walked by hand, one handler per key (struct config_key
 * tables): there is no generic recursion, so the depth of the walk is the
 * depth of the schema whatever the input (aliases included). The loader
 * goes on after a semantic error so that one run reports as much as it
 * can, and only a complete, error-free config is handed out.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "core/kconfig.h" /* CONFIG_MAX_CLIENTHELLO_BYTES */
#include "ctl/config.h"
#include "route/route.h"

#define CONFIG_ERRORS_MAX 100
#define CONFIG_FILE_MAX (256u << 20)
#define CONFIG_WORKERS_MAX 4096
#define CONFIG_RANGE_MAX 1024
#define CONFIG_ALPN_MAX 255
#define CONFIG_KEYS_MAX 10

struct vms_fast;

struct ld {
	yaml_document_t *doc;
	struct vms_fast *fast; /* the vms: list read without libyaml, or NULL */
	struct config *c;
	struct config_errors *errs;
	const char *dir;
	void *obj; /* what the current mapping fills, for its key handlers */
	const yaml_node_t *key; /* the key whose handler runs */
	bool oom;
};

/* Errors */

static void ld_verr(struct ld *ld, unsigned line, unsigned col,
		    const char *fmt, va_list ap)
{
	struct config_errors *e = ld->errs;
	struct config_error *err;

	/* The array is allocated once at its cap, so recording an error never
	 * reallocates and a full list just stops growing. */
	if (!e->v) {
		e->v = calloc(CONFIG_ERRORS_MAX, sizeof(*e->v));
		if (!e->v) {
			ld->oom = true;
			return;
		}
	}
	if (e->len == CONFIG_ERRORS_MAX)
		return;
	err = &e->v[e->len++];
	err->line = line;
	err->col = col;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

__attribute__((format(printf, 4, 5)))
static void ld_err_at(struct ld *ld, unsigned line, unsigned col,
		      const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_verr(ld, line, col, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 3, 4)))
static void ld_err(struct ld *ld, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_verr(ld, (unsigned)n->start_mark.line + 1,
		(unsigned)n->start_mark.column + 1, fmt, ap);
	va_end(ap);
}

static void ld_oom(struct ld *ld)
{
	if (!ld->oom)
		ld_err_at(ld, 0, 0, "out of memory");
	ld->oom = true;
}

/* show copies at most 64 bytes of a value for a message, with anything
 * unprintable replaced, so that a hostile file cannot put escape
 * sequences or megabytes into an operator's terminal. */
struct show_buf {
	char s[72];
};

static const char *show(struct show_buf *b, const char *s, size_t len)
{
	size_t i, n = len > 64 ? 64 : len;

	for (i = 0; i < n; i++)
		b->s[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (n < len) {
		memcpy(&b->s[n], "...", 3);
		n += 3;
	}
	b->s[n] = '\0';
	return b->s;
}

/* Nodes */

static yaml_node_t *ld_node(struct ld *ld, int i)
{
	return yaml_document_get_node(ld->doc, i);
}

static const char *sval(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static size_t slen(const yaml_node_t *n)
{
	return n->data.scalar.length;
}

/* A plain empty, "~" or "null" scalar is YAML's null (core schema). */
static bool is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = sval(n);
	return slen(n) == 0 || !strcmp(s, "~") || !strcmp(s, "null") ||
	       !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static const char *kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_SCALAR_NODE:
		if (is_null(n))
			return "null";
		if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			return "a plain scalar";
		return "a quoted string";
	default:
		return "nothing";
	}
}

static size_t seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top -
			n->data.sequence.items.start);
}

/* get_str accepts any scalar that is not null and holds no NUL byte (a
 * double-quoted "\0" would otherwise cut a path or name short). */
static bool get_str(struct ld *ld, const yaml_node_t *n, const char *what,
		    const char **out)
{
	if (n->type != YAML_SCALAR_NODE || is_null(n)) {
		ld_err(ld, n, "%s: expected a string, got %s", what, kind(n));
		return false;
	}
	if (strlen(sval(n)) != slen(n)) {
		ld_err(ld, n, "%s: contains a NUL byte", what);
		return false;
	}
	*out = sval(n);
	return true;
}

/* parse_ll accepts [+-]?[0-9]+ and nothing else: no spaces, no hex, no
 * exponent. Magnitudes past 10^15 saturate, which every range here
 * rejects. */
static bool parse_ll(const char *s, size_t len, long long *out)
{
	long long v = 0;
	bool neg = false;
	size_t i = 0;

	if (len && (s[0] == '+' || s[0] == '-')) {
		neg = s[0] == '-';
		i = 1;
	}
	if (i == len)
		return false;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v < 1000000000000000LL)
			v = v * 10 + (s[i] - '0');
	}
	*out = neg ? -v : v;
	return true;
}

/* get_int wants a plain scalar: "4" in quotes is a string in YAML, and a
 * config that says so is probably not saying what its author meant. */
static bool get_int(struct ld *ld, const yaml_node_t *n, const char *what,
		    long long min, long long max, long long *out)
{
	struct show_buf b;
	long long v;

	if (n->type != YAML_SCALAR_NODE || is_null(n) ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
		ld_err(ld, n, "%s: expected an integer in %lld..%lld, got %s",
		       what, min, max, kind(n));
		return false;
	}
	if (!parse_ll(sval(n), slen(n), &v) || v < min || v > max) {
		ld_err(ld, n, "%s: expected an integer in %lld..%lld, got '%s'",
		       what, min, max, show(&b, sval(n), slen(n)));
		return false;
	}
	*out = v;
	return true;
}

static bool get_seq(struct ld *ld, const yaml_node_t *n, const char *what)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return true;
	ld_err(ld, n, "%s: expected a list, got %s", what, kind(n));
	return false;
}

/* Mappings: one handler per known key */

typedef void config_key_fn(struct ld *ld, yaml_node_t *v);

struct config_key {
	const char *name;
	config_key_fn *fn;
	bool required;
};

static bool walk_map(struct ld *ld, yaml_node_t *n, const char *what,
		     const struct config_key *keys, size_t nkeys, void *obj)
{
	const yaml_node_t *seen[CONFIG_KEYS_MAX] = { NULL };
	yaml_node_pair_t *p;
	struct show_buf b;
	void *saved;
	size_t i;

	if (n->type != YAML_MAPPING_NODE) {
		ld_err(ld, n, "%s: expected a mapping, got %s", what, kind(n));
		return false;
	}
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ld_node(ld, p->key);
		yaml_node_t *v = ld_node(ld, p->value);

		if (k->type != YAML_SCALAR_NODE) {
			ld_err(ld, k, "%s: expected a key string, got %s",
			       what, kind(k));
			continue;
		}
		for (i = 0; i < nkeys; i++)
			if (strlen(keys[i].name) == slen(k) &&
			    !memcmp(keys[i].name, sval(k), slen(k)))
				break;
		if (i == nkeys) {
			char list[128] = "";
			size_t off = 0;

			for (size_t j = 0; j < nkeys && off < sizeof(list); j++)
				off += snprintf(list + off, sizeof(list) - off,
						"%s%s", j ? ", " : "",
						keys[j].name);
			ld_err(ld, k, "unknown key '%s' in %s (expected %s)",
			       show(&b, sval(k), slen(k)), what, list);
			continue;
		}
		if (seen[i]) {
			ld_err(ld, k, "duplicate key '%s' (first at line %u)",
			       keys[i].name,
			       (unsigned)seen[i]->start_mark.line + 1);
			continue;
		}
		seen[i] = k;
		saved = ld->obj;
		ld->obj = obj;
		ld->key = k;
		keys[i].fn(ld, v);
		ld->obj = saved;
	}
	for (i = 0; i < nkeys; i++)
		if (keys[i].required && !seen[i])
			ld_err(ld, n, "missing required key '%s' in %s",
			       keys[i].name, what);
	return true;
}

/* Ports: lists of ints and "from-to" strings, merged through a bitmap */

struct port_set {
	uint64_t bits[65536 / 64];
};

static void port_set_add(struct port_set *s, unsigned p)
{
	s->bits[p / 64] |= 1ULL << (p % 64);
}

static bool port_item(struct ld *ld, struct port_set *s, const yaml_node_t *n,
		      const char *what)
{
	struct show_buf b;
	const char *v, *dash;
	long long from, to;
	size_t len;

	if (n->type != YAML_SCALAR_NODE || is_null(n)) {
		ld_err(ld, n, "%s: expected a port 1..65535 or a \"from-to\" "
		       "range string, got %s", what, kind(n));
		return false;
	}
	v = sval(n);
	len = slen(n);
	/* A lone port may be quoted here: the list mixes ints and strings. */
	if (parse_ll(v, len, &from)) {
		if (from < 1 || from > 65535) {
			ld_err(ld, n, "%s: expected an integer in 1..65535, "
			       "got '%s'", what, show(&b, v, len));
			return false;
		}
		port_set_add(s, (unsigned)from);
		return true;
	}
	dash = memchr(v, '-', len);
	if (!dash || dash == v || !parse_ll(v, (size_t)(dash - v), &from) ||
	    !parse_ll(dash + 1, len - (size_t)(dash - v) - 1, &to) ||
	    v[0] == '+' || dash[1] == '+' || dash[1] == '-') {
		ld_err(ld, n, "%s: '%s' is not a port or a \"from-to\" range",
		       what, show(&b, v, len));
		return false;
	}
	if (from < 1 || to > 65535 || from > to) {
		ld_err(ld, n, "%s: range '%s' must satisfy 1 <= from <= to "
		       "<= 65535", what, show(&b, v, len));
		return false;
	}
	if (to - from + 1 > CONFIG_RANGE_MAX) {
		ld_err(ld, n, "%s: range '%s' has %lld ports, at most %d",
		       what, show(&b, v, len), to - from + 1,
		       CONFIG_RANGE_MAX);
		return false;
	}
	for (long long p = from; p <= to; p++)
		port_set_add(s, (unsigned)p);
	return true;
}

/* parse_ports fills a sorted, duplicate-free array, or leaves *out alone
 * and returns false after reporting. */
static bool parse_ports(struct ld *ld, const yaml_node_t *n, const char *what,
			uint16_t **out, size_t *out_len)
{
	struct port_set *s;
	yaml_node_item_t *it;
	size_t count = 0, k = 0;
	bool ok = true;
	uint16_t *v;

	if (!get_seq(ld, n, what))
		return false;
	if (seq_len(n) == 0) {
		ld_err(ld, n, "%s: must not be empty", what);
		return false;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto err_oom;
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++)
		ok &= port_item(ld, s, ld_node(ld, *it), what);
	if (!ok)
		goto err_set;

	for (size_t i = 0; i < 65536 / 64; i++)
		count += (size_t)__builtin_popcountll(s->bits[i]);
	v = malloc(count * sizeof(*v));
	if (!v)
		goto err_set_oom;
	for (unsigned p = 1; p < 65536; p++)
		if (s->bits[p / 64] & (1ULL << (p % 64)))
			v[k++] = (uint16_t)p;
	free(s);
	*out = v;
	*out_len = count;
	return true;

err_set_oom:
	free(s);
err_oom:
	ld_oom(ld);
	return false;
err_set:
	free(s);
	return false;
}

/* Paths */

static char *resolve(const char *dir, const char *path)
{
	char *out;

	if (path[0] == '/' || !dir || !dir[0] || !strcmp(dir, "."))
		return strdup(path);
	if (asprintf(&out, "%s/%s", dir, path) < 0)
		return NULL;
	return out;
}

static void get_file(struct ld *ld, const yaml_node_t *n, const char *what,
		     char **out)
{
	struct show_buf b;
	const char *v;
	struct stat st;
	char *path;

	if (!get_str(ld, n, what, &v))
		return;
	path = resolve(ld->dir, v);
	if (!path) {
		ld_oom(ld);
		return;
	}
	if (access(path, R_OK) != 0) {
		ld_err(ld, n, "%s file '%s': %s", what,
		       show(&b, path, strlen(path)), strerror(errno));
		goto err_path;
	}
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
		ld_err(ld, n, "%s file '%s': not a regular file", what,
		       show(&b, path, strlen(path)));
		goto err_path;
	}
	free(*out); /* not reached twice: walk_map refuses duplicate keys */
	*out = path;
	return;

err_path:
	free(path);
}

/* Top-level scalars */

static void key_workers(struct ld *ld, yaml_node_t *v)
{
	long long n;

	if (get_int(ld, v, "workers", 0, CONFIG_WORKERS_MAX, &n))
		ld->c->workers = (unsigned)n;
}

static void key_log_level(struct ld *ld, yaml_node_t *v)
{
	static const char *const names[] = {
		[CONFIG_LOG_ERROR] = "error",
		[CONFIG_LOG_WARN] = "warn",
		[CONFIG_LOG_INFO] = "info",
		[CONFIG_LOG_DEBUG] = "debug",
	};
	struct show_buf b;
	const char *s;

	if (!get_str(ld, v, "log_level", &s))
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i])) {
			ld->c->log_level = (enum config_log_level)i;
			return;
		}
	}
	ld_err(ld, v, "log_level: expected one of error, warn, info, debug, "
	       "got '%s'", show(&b, s, slen(v)));
}

/* listen */

static void key_listen_address(struct ld *ld, yaml_node_t *v)
{
	struct in_addr a4;
	struct show_buf b;
	const char *s;

	if (!get_str(ld, v, "listen.address", &s))
		return;
	if (inet_pton(AF_INET6, s, &ld->c->listen_addr) == 1)
		return;
	if (inet_pton(AF_INET, s, &a4) == 1)
		ld_err(ld, v, "listen.address '%s' is not IPv6: use \"::\", "
		       "which takes IPv4 clients too", show(&b, s, slen(v)));
	else
		ld_err(ld, v, "listen.address '%s' is not an IPv6 address",
		       show(&b, s, slen(v)));
}

static void key_listen_ports(struct ld *ld, yaml_node_t *v)
{
	parse_ports(ld, v, "listen.ports", &ld->c->ports, &ld->c->ports_len);
}

static const struct config_key listen_keys[] = {
	{ "address", key_listen_address, false },
	{ "ports", key_listen_ports, true },
};

static void key_listen(struct ld *ld, yaml_node_t *v)
{
	walk_map(ld, v, "listen", listen_keys,
		 sizeof(listen_keys) / sizeof(listen_keys[0]), NULL);
}

/* tls */

static void key_cert_cert(struct ld *ld, yaml_node_t *v)
{
	get_file(ld, v, "cert", &((struct config_cert *)ld->obj)->cert_path);
}

static void key_cert_key(struct ld *ld, yaml_node_t *v)
{
	get_file(ld, v, "key", &((struct config_cert *)ld->obj)->key_path);
}

static void key_cert_ocsp(struct ld *ld, yaml_node_t *v)
{
	get_file(ld, v, "ocsp", &((struct config_cert *)ld->obj)->ocsp_path);
}

static const struct config_key cert_keys[] = {
	{ "cert", key_cert_cert, true },
	{ "key", key_cert_key, true },
	{ "ocsp", key_cert_ocsp, false },
};

static void key_tls_certificates(struct ld *ld, yaml_node_t *v)
{
	struct config *c = ld->c;
	yaml_node_item_t *it;

	if (!get_seq(ld, v, "tls.certificates"))
		return;
	if (seq_len(v) == 0) {
		ld_err(ld, v, "tls.certificates: must not be empty");
		return;
	}
	c->certs = calloc(seq_len(v), sizeof(*c->certs));
	if (!c->certs) {
		ld_oom(ld);
		return;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *n = ld_node(ld, *it);
		struct config_cert *cc = &c->certs[c->certs_len];

		walk_map(ld, n, "tls.certificates entry", cert_keys,
			 sizeof(cert_keys) / sizeof(cert_keys[0]), cc);
		if (!cc->cert_path || !cc->key_path) {
			free(cc->cert_path);
			free(cc->key_path);
			free(cc->ocsp_path);
			memset(cc, 0, sizeof(*cc));
			continue;
		}
		cc->line = (unsigned)n->start_mark.line + 1;
		cc->col = (unsigned)n->start_mark.column + 1;
		c->certs_len++;
	}
}

static void alpn_list(struct ld *ld, yaml_node_t *v, const char *what,
		      char ***out, size_t *out_len)
{
	yaml_node_item_t *it;

	if (is_null(v) || !get_seq(ld, v, what) || seq_len(v) == 0)
		return;
	*out = calloc(seq_len(v), sizeof(**out));
	if (!*out) {
		ld_oom(ld);
		return;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *n = ld_node(ld, *it);
		const char *s;

		if (!get_str(ld, n, what, &s))
			continue;
		/* RFC 7301 3.1: a protocol name is 1..255 bytes. */
		if (slen(n) == 0 || slen(n) > CONFIG_ALPN_MAX) {
			ld_err(ld, n, "%s: a protocol name is 1..%d bytes, this "
			       "one has %zu", what, CONFIG_ALPN_MAX, slen(n));
			continue;
		}
		(*out)[*out_len] = strdup(s);
		if (!(*out)[*out_len]) {
			ld_oom(ld);
			return;
		}
		(*out_len)++;
	}
}

static void key_tls_alpn(struct ld *ld, yaml_node_t *v)
{
	alpn_list(ld, v, "tls.alpn", &ld->c->alpn, &ld->c->alpn_len);
}

static int alpn_port_cmp(const void *a, const void *b)
{
	const struct config_alpn_port *x = a, *y = b;

	return (int)x->port - (int)y->port;
}

static void key_tls_alpn_ports(struct ld *ld, yaml_node_t *v)
{
	struct config *c = ld->c;
	yaml_node_pair_t *p;
	size_t i;

	if (v->type != YAML_MAPPING_NODE) {
		ld_err(ld, v, "tls.alpn_ports: expected a mapping of port to "
		       "list, got %s", kind(v));
		return;
	}
	c->alpn_ports = calloc((size_t)(v->data.mapping.pairs.top -
					v->data.mapping.pairs.start) + 1,
			       sizeof(*c->alpn_ports));
	if (!c->alpn_ports) {
		ld_oom(ld);
		return;
	}
	for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ld_node(ld, p->key);
		struct config_alpn_port *ap = &c->alpn_ports[c->alpn_ports_len];
		long long port;

		if (!get_int(ld, k, "tls.alpn_ports port", 1, 65535, &port))
			continue;
		for (i = 0; i < c->alpn_ports_len; i++)
			if (c->alpn_ports[i].port == port)
				break;
		if (i < c->alpn_ports_len) {
			ld_err(ld, k, "tls.alpn_ports: port %lld given twice",
			       port);
			continue;
		}
		ap->port = (uint16_t)port;
		c->alpn_ports_len++;
		alpn_list(ld, ld_node(ld, p->value), "tls.alpn_ports list",
			  &ap->alpn, &ap->alpn_len);
	}
	qsort(c->alpn_ports, c->alpn_ports_len, sizeof(*c->alpn_ports),
	      alpn_port_cmp);
}

static const struct config_key tls_keys[] = {
	{ "certificates", key_tls_certificates, true },
	{ "alpn", key_tls_alpn, false },
	{ "alpn_ports", key_tls_alpn_ports, false },
};

static void key_tls(struct ld *ld, yaml_node_t *v)
{
	walk_map(ld, v, "tls", tls_keys, sizeof(tls_keys) / sizeof(tls_keys[0]),
		 NULL);
}

/* domains */

struct domain_tmp {
	struct config_domain d;
	const yaml_node_t *suffix_node;
};

static void key_domain_suffix(struct ld *ld, yaml_node_t *v)
{
	struct domain_tmp *t = ld->obj;
	char name[254];
	struct show_buf b;
	const char *s;
	size_t len, skip = 0;

	if (!get_str(ld, v, "suffix", &s))
		return;
	/* "*.vm.vers.sh" and ".vm.vers.sh" say the same as "vm.vers.sh": a
	 * domain always means every name under it. */
	if (!strncmp(s, "*.", 2))
		skip = 2;
	else if (s[0] == '.')
		skip = 1;
	if (!route_host_normalize(name, &len, sizeof(name),
				  (const uint8_t *)s + skip, slen(v) - skip)) {
		ld_err(ld, v, "suffix '%s' is not a valid hostname (labels of "
		       "1-63 letters, digits, hyphens; at most 253 bytes)",
		       show(&b, s, slen(v)));
		return;
	}
	t->d.suffix = strdup(name);
	if (!t->d.suffix) {
		ld_oom(ld);
		return;
	}
	t->suffix_node = v;
}

static void key_domain_port_map(struct ld *ld, yaml_node_t *v)
{
	struct config_domain *d = &((struct domain_tmp *)ld->obj)->d;
	struct port_set *seen;
	yaml_node_pair_t *p;
	size_t n;

	if (v->type != YAML_MAPPING_NODE) {
		ld_err(ld, v, "port_map: expected a mapping of listener port "
		       "to VM port, got %s", kind(v));
		return;
	}
	n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
	if (n == 0)
		return;
	d->port_map = calloc(n, sizeof(*d->port_map));
	seen = calloc(1, sizeof(*seen));
	if (!d->port_map || !seen) {
		ld_oom(ld);
		goto out;
	}
	for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ld_node(ld, p->key);
		yaml_node_t *val = ld_node(ld, p->value);
		long long from, to;
		bool ok;

		ok = get_int(ld, k, "port_map key", 1, 65535, &from);
		ok &= get_int(ld, val, "port_map value", 1, 65535, &to);
		if (!ok)
			continue;
		if (seen->bits[from / 64] & (1ULL << (from % 64))) {
			ld_err(ld, k, "port_map: duplicate listener port %lld",
			       from);
			continue;
		}
		port_set_add(seen, (unsigned)from);
		d->port_map[d->port_map_len].listen_port = (uint16_t)from;
		d->port_map[d->port_map_len].vm_port = (uint16_t)to;
		d->port_map_len++;
	}
out:
	free(seen);
}

static void key_domain_allowed(struct ld *ld, yaml_node_t *v)
{
	struct config_domain *d = &((struct domain_tmp *)ld->obj)->d;

	if (parse_ports(ld, v, "allowed_ports", &d->allowed_ports,
			&d->allowed_ports_len))
		d->has_allowed_ports = true;
}

static const struct config_key domain_keys[] = {
	{ "suffix", key_domain_suffix, true },
	{ "port_map", key_domain_port_map, false },
	{ "allowed_ports", key_domain_allowed, false },
};

static void domain_free(struct config_domain *d)
{
	free(d->suffix);
	free(d->port_map);
	free(d->allowed_ports);
	memset(d, 0, sizeof(*d));
}

/* Duplicates among names: sort (name, position) and compare neighbours, so
 * a million VMs cost n log n, and the first of a run is the earliest. */
struct dup_ent {
	const char *name;
	unsigned line, col; /* 0-based, as in a yaml_mark_t */
	size_t idx;
};

static int dup_cmp(const void *a, const void *b)
{
	const struct dup_ent *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* dups_none says, in O(n), that there is no duplicate (the usual case
 * for a million VMs), so that the sort is left for when there is one. It
 * answers false when unsure (out of memory). */
static bool dups_none(const struct dup_ent *e, size_t n)
{
	size_t cap = 16, i;
	uint64_t *set;
	bool none = true;

	while (cap < n * 2)
		cap *= 2;
	set = calloc(cap, sizeof(*set)); /* (hash << 32) | (index + 1) */
	if (!set)
		return false;
	for (i = 0; i < n && none; i++) {
		uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
		size_t j;

		for (const char *p = e[i].name; *p; p++)
			h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
		h ^= h >> 32;
		for (j = (size_t)h & (cap - 1); set[j];
		     j = (j + 1) & (cap - 1)) {
			if ((uint32_t)(set[j] >> 32) == (uint32_t)h &&
			    !strcmp(e[(uint32_t)set[j] - 1].name, e[i].name)) {
				none = false;
				break;
			}
		}
		set[j] = (h << 32) | (uint32_t)(i + 1);
	}
	free(set);
	return none;
}

static void check_dups(struct ld *ld, struct dup_ent *e, size_t n,
		       const char *what)
{
	struct show_buf b;
	size_t first = 0;

	if (n < UINT32_MAX && dups_none(e, n))
		return;
	qsort(e, n, sizeof(*e), dup_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(e[i].name, e[first].name)) {
			first = i;
			continue;
		}
		ld_err_at(ld, e[i].line + 1, e[i].col + 1,
			  "duplicate %s '%s' (first at line %u)", what,
			  show(&b, e[i].name, strlen(e[i].name)),
			  e[first].line + 1);
	}
}

static void key_domains(struct ld *ld, yaml_node_t *v)
{
	struct config *c = ld->c;
	struct dup_ent *dups;
	yaml_node_item_t *it;

	if (is_null(v) || !get_seq(ld, v, "domains") || seq_len(v) == 0)
		return;
	c->domains = calloc(seq_len(v), sizeof(*c->domains));
	dups = calloc(seq_len(v), sizeof(*dups));
	if (!c->domains || !dups) {
		ld_oom(ld);
		goto out;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		struct domain_tmp t = { 0 };

		walk_map(ld, ld_node(ld, *it), "domains entry", domain_keys,
			 sizeof(domain_keys) / sizeof(domain_keys[0]), &t);
		if (!t.d.suffix) {
			domain_free(&t.d);
			continue;
		}
		dups[c->domains_len] = (struct dup_ent){
			t.d.suffix, (unsigned)t.suffix_node->start_mark.line,
			(unsigned)t.suffix_node->start_mark.column,
			c->domains_len };
		c->domains[c->domains_len++] = t.d;
	}
	check_dups(ld, dups, c->domains_len, "domain suffix");
out:
	free(dups);
}

/* vms */

struct vm_tmp {
	struct config_vm vm;
	const yaml_node_t *id_node;
	bool has_addr;
};

static void key_vm_id(struct ld *ld, yaml_node_t *v)
{
	struct vm_tmp *t = ld->obj;
	char name[254];
	struct show_buf b;
	const char *s;
	size_t len;

	if (!get_str(ld, v, "vm id", &s))
		return;
	if (!route_host_normalize(name, &len, sizeof(name),
				  (const uint8_t *)s, slen(v)) ||
	    memchr(name, '.', len)) {
		ld_err(ld, v, "vm id '%s' is not one DNS label (1-63 letters, "
		       "digits, hyphens; no dots)", show(&b, s, slen(v)));
		return;
	}
	t->vm.id = strdup(name);
	if (!t->vm.id) {
		ld_oom(ld);
		return;
	}
	t->id_node = v;
}

static void key_vm_address(struct ld *ld, yaml_node_t *v)
{
	struct vm_tmp *t = ld->obj;
	struct in_addr a4;
	struct show_buf b;
	const char *s;

	if (!get_str(ld, v, "vm address", &s))
		return;
	/* An IPv4-mapped address is IPv4 in disguise: the VM would be
	 * reached over IPv4, which vmgate does not do. */
	if (inet_pton(AF_INET, s, &a4) == 1 ||
	    (inet_pton(AF_INET6, s, &t->vm.addr) == 1 &&
	     IN6_IS_ADDR_V4MAPPED(&t->vm.addr))) {
		ld_err(ld, v, "address '%s' is not IPv6: vmgate reaches VMs "
		       "over IPv6 only", show(&b, s, slen(v)));
		return;
	}
	if (inet_pton(AF_INET6, s, &t->vm.addr) != 1) {
		ld_err(ld, v, "address '%s' is not an IPv6 address",
		       show(&b, s, slen(v)));
		return;
	}
	t->has_addr = true;
}

static const struct config_key vm_keys[] = {
	{ "id", key_vm_id, true },
	{ "address", key_vm_address, true },
};

/* The vms: fast path.
 *
 * A fleet's appliance.yaml is mostly its vms: list, and libyaml takes
 * seconds and a gigabyte to turn a million entries into nodes. So before
 * libyaml sees the file, vms_fast_scan() looks for the common shape of a
 * big list, a top-level "vms:" line followed by one flow mapping per line:
 *
 *   vms:
 *     - { id: 45a68069-defc-4233-9865-6298d87053af, address: "fd00::10" }
 *
 * (keys id and address once each, in either order; values plain, "double"
 * or 'single' quoted without escapes; blank and comment lines between;
 * ASCII only). It records where each value is and hands libyaml the file
 * with those lines emptied, so every other line and column is unchanged.
 * The recorded entries are used only if libyaml then reports "vms" as a
 * key of a block-style top-level mapping at exactly that line, with
 * nothing after it; they then go through the same handlers as nodes
 * would (key_vm_id, key_vm_address), with the same marks, so a config
 * loads with the same result and the same errors either way. Anything
 * that does not fit the shape, and any doubt (a YAML error, the entries
 * not used), means the whole file is loaded again the slow way. */

struct vms_fast_val {
	uint32_t off;       /* into the original buffer */
	uint16_t len, col;  /* col is 0-based, of the first byte or quote */
	uint8_t style;      /* yaml_scalar_style_t */
};

struct vms_fast_ent {
	uint32_t line;            /* 0-based, relative to the vms: line */
	struct vms_fast_val v[2]; /* in file order */
	bool addr_first;          /* v[0] is the address */
};

struct vms_fast {
	const uint8_t *buf;     /* the original */
	uint8_t *ybuf;          /* what libyaml reads instead */
	size_t ybuf_len;
	unsigned line;          /* of "vms:", 0-based */
	struct vms_fast_ent *e;
	size_t len;
	bool used;
};

#define VMS_FAST_VAL_MAX 255

static bool vf_plain(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == ':';
}

/* vf_value reads one scalar at |*p| (in a flow mapping, one line). */
static bool vf_value(struct vms_fast_val *out, const uint8_t *buf,
		     const uint8_t **p, const uint8_t *end,
		     const uint8_t *line)
{
	const uint8_t *s = *p, *q;

	if (s == end)
		return false;
	if (*s == '"' || *s == '\'') {
		for (q = s + 1; q < end && *q != *s; q++)
			if (*q < 0x20 || *q > 0x7e || *q == '\\')
				return false;
		/* '' inside single quotes is an escaped quote: not here. */
		if (q == end || (q + 1 < end && q[1] == *s))
			return false;
		out->style = *s == '"' ? YAML_DOUBLE_QUOTED_SCALAR_STYLE :
					 YAML_SINGLE_QUOTED_SCALAR_STYLE;
		out->off = (uint32_t)(s + 1 - buf);
		out->len = (uint16_t)(q - s - 1);
		*p = q + 1;
	} else {
		/* Plain: not starting with an indicator ('-' and ':' can be
		 * one), and not ending in ':' (":," and ": " end a key). */
		if (*s == '-' || *s == ':')
			return false;
		for (q = s; q < end && vf_plain(*q); q++)
			;
		if (q == s || q[-1] == ':')
			return false;
		out->style = YAML_PLAIN_SCALAR_STYLE;
		out->off = (uint32_t)(s - buf);
		out->len = (uint16_t)(q - s);
		*p = q;
	}
	if ((size_t)(*p - s) > VMS_FAST_VAL_MAX)
		return false;
	out->col = (uint16_t)(s - line);
	return true;
}

static const uint8_t *vf_spaces(const uint8_t *p, const uint8_t *end)
{
	while (p < end && *p == ' ')
		p++;
	return p;
}

/* vf_entry parses "INDENT- { K: V, K: V }" plus an optional comment;
 * |line|..|end| is one line without its newline. */
static bool vf_entry(struct vms_fast_ent *e, const uint8_t *buf,
		     const uint8_t *line, const uint8_t *end, size_t indent)
{
	const uint8_t *p = line + indent;
	bool seen[2] = { false, false };

	if (p + 2 > end || p[0] != '-' || p[1] != ' ')
		return false;
	p = vf_spaces(p + 1, end);
	if (p == end || *p != '{')
		return false;
	p = vf_spaces(p + 1, end);
	for (int i = 0; i < 2; i++) {
		int k;

		if ((size_t)(end - p) >= 4 && !memcmp(p, "id: ", 4)) {
			k = 0;
			p += 3;
		} else if ((size_t)(end - p) >= 9 &&
			   !memcmp(p, "address: ", 9)) {
			k = 1;
			p += 8;
		} else {
			return false;
		}
		if (seen[k])
			return false;
		seen[k] = true;
		if (i == 0)
			e->addr_first = k == 1;
		p = vf_spaces(p, end);
		if (!vf_value(&e->v[i], buf, &p, end, line))
			return false;
		p = vf_spaces(p, end);
		if (p == end || *p != (i == 0 ? ',' : '}'))
			return false;
		p = vf_spaces(p + 1, end);
	}
	/* A comment needs a space in front of its '#'. */
	return p == end || (p[-1] == ' ' && *p == '#');
}

static bool vf_blank(const uint8_t *p, const uint8_t *end)
{
	p = vf_spaces(p, end);
	return p == end || *p == '#';
}

static void vms_fast_free(struct vms_fast *f)
{
	free(f->ybuf);
	free(f->e);
	memset(f, 0, sizeof(*f));
}

/* vms_fast_scan fills |f| and returns true when |buf| has a vms: list of
 * the shape above. */
static bool vms_fast_scan(struct vms_fast *f, const uint8_t *buf,
			  size_t buf_len)
{
	const uint8_t *p = buf, *end = buf + buf_len, *nl, *block, *q;
	size_t cap = 0, indent = SIZE_MAX, newlines = 0;
	unsigned rel = 0;

	memset(f, 0, sizeof(*f));
	f->buf = buf;
	if (buf_len > UINT32_MAX)
		return false;
	/* The "vms:" line. Lines are counted as libyaml counts them only
	 * if '\n' is the one line break before it. */
	for (;;) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return false;
		if ((size_t)(nl - p) >= 4 && !memcmp(p, "vms:", 4) &&
		    vf_blank(p + 4, nl) && (p + 4 == nl || p[4] == ' '))
			break;
		f->line++;
		p = nl + 1;
	}
	for (q = buf; q < p; q++)
		if (*q == '\r' || *q == 0xc2 || *q == 0xe2)
			return false;

	block = nl + 1;
	for (p = block; p < end; p = nl + 1, rel++) {
		struct vms_fast_ent *e;
		size_t sp;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		for (q = p; q < nl; q++)
			if (*q < 0x20 || *q > 0x7e)
				goto fail;
		sp = (size_t)(vf_spaces(p, nl) - p);
		if (p + sp == nl || p[sp] == '#')
			goto next; /* blank or comment */
		if (sp == 0 && (p[0] != '-' || (indent != SIZE_MAX &&
						indent != 0)))
			break;     /* the next top-level key */
		if (indent == SIZE_MAX)
			indent = sp;
		if (sp != indent)
			goto fail;
		if (f->len == cap) {
			struct vms_fast_ent *ne;

			cap = cap ? cap * 2 : 1024;
			ne = realloc(f->e, cap * sizeof(*ne));
			if (!ne)
				goto fail;
			f->e = ne;
		}
		e = &f->e[f->len];
		memset(e, 0, sizeof(*e));
		e->line = rel + 1;
		if (!vf_entry(e, buf, p, nl, indent))
			goto fail;
		f->len++;
next:
		newlines += nl < end;
		if (nl == end) {
			p = end;
			break;
		}
	}
	if (f->len == 0)
		goto fail;

	/* Before the list, its lines' newlines, then the rest. */
	f->ybuf_len = (size_t)(block - buf) + newlines + (size_t)(end - p);
	f->ybuf = malloc(f->ybuf_len ? f->ybuf_len : 1);
	if (!f->ybuf)
		goto fail;
	memcpy(f->ybuf, buf, (size_t)(block - buf));
	memset(f->ybuf + (block - buf), '\n', newlines);
	memcpy(f->ybuf + (block - buf) + newlines, p, (size_t)(end - p));
	return true;

fail:
	vms_fast_free(f);
	return false;
}

/* vms_fast_take says whether the recorded entries are this vms: key's. */
static bool vms_fast_take(struct ld *ld, const yaml_node_t *v)
{
	const yaml_node_t *root = yaml_document_get_root_node(ld->doc);
	struct vms_fast *f = ld->fast;

	if (!f || f->used || !ld->key || !root ||
	    root->data.mapping.style != YAML_BLOCK_MAPPING_STYLE ||
	    ld->key->start_mark.line != f->line ||
	    ld->key->start_mark.column != 0 ||
	    ld->key->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
	    !is_null(v) || slen(v) != 0)
		return false;
	f->used = true;
	return true;
}

/* vms_fast_node makes the node libyaml would have made for |fv|, its
 * value copied to |s| and NUL-terminated. */
static void vms_fast_node(yaml_node_t *n, char *s, const struct vms_fast *f,
			  const struct vms_fast_ent *e,
			  const struct vms_fast_val *fv)
{
	memcpy(s, f->buf + fv->off, fv->len);
	s[fv->len] = '\0';
	memset(n, 0, sizeof(*n));
	n->type = YAML_SCALAR_NODE;
	n->data.scalar.value = (yaml_char_t *)s;
	n->data.scalar.length = fv->len;
	n->data.scalar.style = (yaml_scalar_style_t)fv->style;
	n->start_mark.line = f->line + e->line;
	n->start_mark.column = fv->col;
}

static void key_vms(struct ld *ld, yaml_node_t *v)
{
	struct config *c = ld->c;
	struct vms_fast *f = ld->fast;
	struct dup_ent *dups;
	yaml_node_item_t *it;
	bool fast;
	size_t n;

	fast = vms_fast_take(ld, v);
	if (fast) {
		n = f->len;
	} else {
		if (is_null(v) || !get_seq(ld, v, "vms") || seq_len(v) == 0)
			return;
		n = seq_len(v);
	}
	c->vms = calloc(n, sizeof(*c->vms));
	dups = calloc(n, sizeof(*dups));
	if (!c->vms || !dups) {
		ld_oom(ld);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct vm_tmp t = { 0 };
		yaml_node_t nodes[2];

		if (fast) {
			char s[2][VMS_FAST_VAL_MAX + 1];
			const struct vms_fast_ent *e = &f->e[i];
			void *saved = ld->obj;

			ld->obj = &t;
			for (int j = 0; j < 2; j++) {
				vms_fast_node(&nodes[j], s[j], f, e, &e->v[j]);
				if ((j == 0) == e->addr_first)
					key_vm_address(ld, &nodes[j]);
				else
					key_vm_id(ld, &nodes[j]);
			}
			ld->obj = saved;
		} else {
			it = &v->data.sequence.items.start[i];
			walk_map(ld, ld_node(ld, *it), "vms entry", vm_keys,
				 sizeof(vm_keys) / sizeof(vm_keys[0]), &t);
		}
		if (!t.vm.id) {
			continue;
		}
		/* An id without a valid address still takes part in the
		 * duplicate check, so both problems show up in one run. */
		dups[c->vms_len] = (struct dup_ent){
			t.vm.id, (unsigned)t.id_node->start_mark.line,
			(unsigned)t.id_node->start_mark.column, c->vms_len };
		c->vms[c->vms_len++] = t.vm;
	}
	check_dups(ld, dups, c->vms_len, "vm id");
out:
	free(dups);
}

/* limits */

static void limit(struct ld *ld, yaml_node_t *v, const char *what,
		  long long min, long long max, uint32_t *out)
{
	long long n;

	if (get_int(ld, v, what, min, max, &n))
		*out = (uint32_t)n;
}

static void key_max_connections(struct ld *ld, yaml_node_t *v)
{
	limit(ld, v, "max_connections", 1, 10000000,
	      &ld->c->limits.max_connections);
}

static void key_handshake_timeout(struct ld *ld, yaml_node_t *v)
{
	limit(ld, v, "handshake_timeout_ms", 1, 86400000,
	      &ld->c->limits.handshake_timeout_ms);
}

static void key_connect_timeout(struct ld *ld, yaml_node_t *v)
{
	limit(ld, v, "connect_timeout_ms", 1, 86400000,
	      &ld->c->limits.connect_timeout_ms);
}

static void key_idle_timeout(struct ld *ld, yaml_node_t *v)
{
	limit(ld, v, "idle_timeout_ms", 1, 86400000,
	      &ld->c->limits.idle_timeout_ms);
}

static void key_buffer_bytes(struct ld *ld, yaml_node_t *v)
{
	limit(ld, v, "buffer_bytes", 4096, 16777216,
	      &ld->c->limits.buffer_bytes);
}

static void key_max_connections_per_ip(struct ld *ld, yaml_node_t *v)
{
	limit(ld, v, "max_connections_per_ip", 0, 10000000,
	      &ld->c->limits.max_connections_per_ip);
}

/* Each worker's ClientHello reassembly scratch is sized to the runtime
 * limit (core/worker.c), and the loader never lets that pass the build's
 * CONFIG_MAX_CLIENTHELLO_BYTES: with no limits: key, an image built with a
 * smaller cap must not get the 16 KiB default. Nor past BoringSSL's cap
 * (config.h): the default is also the largest value allowed. */
#define HELLO_DEFAULT                                                       \
	(CONFIG_DEFAULT_MAX_CLIENTHELLO_BYTES < CONFIG_MAX_CLIENTHELLO_BYTES \
		 ? CONFIG_DEFAULT_MAX_CLIENTHELLO_BYTES                        \
		 : CONFIG_MAX_CLIENTHELLO_BYTES)
_Static_assert(HELLO_DEFAULT >= 512 &&
		       HELLO_DEFAULT <= CONFIG_MAX_CLIENTHELLO_BYTES,
	       "max_clienthello_bytes default outside the loader's bounds");

static void key_max_clienthello_bytes(struct ld *ld, yaml_node_t *v)
{
	limit(ld, v, "max_clienthello_bytes", 512, HELLO_DEFAULT,
	      &ld->c->limits.max_clienthello_bytes);
}

static void key_drain_timeout(struct ld *ld, yaml_node_t *v)
{
	limit(ld, v, "drain_timeout_ms", 0, 86400000,
	      &ld->c->limits.drain_timeout_ms);
}

static const struct config_key limits_keys[] = {
	{ "max_connections", key_max_connections, false },
	{ "max_connections_per_ip", key_max_connections_per_ip, false },
	{ "max_clienthello_bytes", key_max_clienthello_bytes, false },
	{ "drain_timeout_ms", key_drain_timeout, false },
	{ "handshake_timeout_ms", key_handshake_timeout, false },
	{ "connect_timeout_ms", key_connect_timeout, false },
	{ "idle_timeout_ms", key_idle_timeout, false },
	{ "buffer_bytes", key_buffer_bytes, false },
};

static void key_limits(struct ld *ld, yaml_node_t *v)
{
	walk_map(ld, v, "limits", limits_keys,
		 sizeof(limits_keys) / sizeof(limits_keys[0]), NULL);
}

/* admin */

/* "[v6]:port" or "a.b.c.d:port" */
static void key_admin_listen(struct ld *ld, yaml_node_t *v)
{
	struct sockaddr_in6 *sa = &ld->c->admin.listen;
	char host[INET6_ADDRSTRLEN + 2];
	const char *s, *colon;
	struct in_addr a4;
	struct show_buf b;
	long long port;
	size_t hlen;

	if (!get_str(ld, v, "admin.listen", &s))
		return;
	colon = strrchr(s, ':');
	hlen = colon ? (size_t)(colon - s) : 0;
	if (!colon || hlen == 0 || hlen >= sizeof(host) ||
	    !parse_ll(colon + 1, strlen(colon + 1), &port) || port < 1 ||
	    port > 65535)
		goto bad;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	memset(sa, 0, sizeof(*sa));
	sa->sin6_family = AF_INET6;
	sa->sin6_port = htons((uint16_t)port);
	if (host[0] == '[' && host[hlen - 1] == ']') {
		host[hlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &sa->sin6_addr) != 1)
			goto bad;
	} else if (inet_pton(AF_INET, host, &a4) == 1) {
		sa->sin6_addr.s6_addr[10] = 0xff;
		sa->sin6_addr.s6_addr[11] = 0xff;
		memcpy(&sa->sin6_addr.s6_addr[12], &a4, 4);
	} else {
		goto bad;
	}
	ld->c->admin.has_listen = true;
	return;
bad:
	ld_err(ld, v, "admin.listen: expected \"[ipv6]:port\" or "
	       "\"a.b.c.d:port\", got '%s'", show(&b, s, slen(v)));
}

static void key_admin_unix(struct ld *ld, yaml_node_t *v)
{
	const char *s;

	if (!get_str(ld, v, "admin.unix", &s))
		return;
	free(ld->c->admin.unix_path);
	ld->c->admin.unix_path = resolve(ld->dir, s);
	if (!ld->c->admin.unix_path)
		ld_oom(ld);
}

static void key_admin_token_file(struct ld *ld, yaml_node_t *v)
{
	get_file(ld, v, "admin.token_file", &ld->c->admin.token_file);
}

static void key_admin_state_file(struct ld *ld, yaml_node_t *v)
{
	const char *s;

	if (!get_str(ld, v, "admin.state_file", &s))
		return;
	free(ld->c->admin.state_file);
	ld->c->admin.state_file = resolve(ld->dir, s);
	if (!ld->c->admin.state_file)
		ld_oom(ld);
}

static const struct config_key admin_keys[] = {
	{ "listen", key_admin_listen, false },
	{ "unix", key_admin_unix, false },
	{ "token_file", key_admin_token_file, false },
	{ "state_file", key_admin_state_file, false },
};

static void key_admin(struct ld *ld, yaml_node_t *v)
{
	struct config_admin *a = &ld->c->admin;

	if (!walk_map(ld, v, "admin", admin_keys,
		      sizeof(admin_keys) / sizeof(admin_keys[0]), NULL))
		return;
	a->enabled = true;
	if (!a->has_listen && !a->unix_path)
		ld_err(ld, v, "admin: needs listen or unix (or both)");
	if (a->has_listen && !a->token_file)
		ld_err(ld, v, "admin: a TCP listener needs token_file; without "
		       "a token the admin API is only offered on a unix socket");
	if (!a->state_file) {
		a->state_file = resolve(ld->dir, CONFIG_DEFAULT_STATE_FILE);
		if (!a->state_file)
			ld_oom(ld);
	}
}

static const struct config_key top_keys[] = {
	{ "workers", key_workers, false },
	{ "log_level", key_log_level, false },
	{ "listen", key_listen, true },
	{ "tls", key_tls, true },
	{ "domains", key_domains, false },
	{ "vms", key_vms, false },
	{ "limits", key_limits, false },
	{ "admin", key_admin, false },
};

/* libyaml's own errors */

static void ld_yaml_error(struct ld *ld, const yaml_parser_t *p,
			  const uint8_t *buf, size_t buf_len)
{
	unsigned line = (unsigned)p->problem_mark.line + 1;
	unsigned col = (unsigned)p->problem_mark.column + 1;
	const char *problem = p->problem ? p->problem : "unknown error";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		ld_oom(ld);
		return;
	case YAML_READER_ERROR:
		/* The reader reports a byte offset, not a mark. */
		line = 1;
		col = 1;
		for (size_t i = 0; i < p->problem_offset && i < buf_len; i++) {
			if (buf[i] == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
		ld_err_at(ld, line, col, "YAML: %s", problem);
		return;
	default:
		break;
	}
	if (p->context)
		ld_err_at(ld, line, col, "YAML: %s (%s at line %u)", problem,
			  p->context, (unsigned)p->context_mark.line + 1);
	else
		ld_err_at(ld, line, col, "YAML: %s", problem);
}

static void config_defaults(struct config *c)
{
	c->log_level = CONFIG_LOG_INFO;
	c->limits.max_connections = CONFIG_DEFAULT_MAX_CONNECTIONS;
	c->limits.handshake_timeout_ms = CONFIG_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	c->limits.connect_timeout_ms = CONFIG_DEFAULT_CONNECT_TIMEOUT_MS;
	c->limits.idle_timeout_ms = CONFIG_DEFAULT_IDLE_TIMEOUT_MS;
	c->limits.buffer_bytes = CONFIG_DEFAULT_BUFFER_BYTES;
	c->limits.max_connections_per_ip = CONFIG_DEFAULT_MAX_CONNECTIONS_PER_IP;
	c->limits.max_clienthello_bytes = HELLO_DEFAULT;
	c->limits.drain_timeout_ms = CONFIG_DEFAULT_DRAIN_TIMEOUT_MS;
}

/* config_parse loads |buf|; with |fast|, a buffer made by
 * vms_fast_scan(). It returns false, with |out| and |errs| to be thrown
 * away, when |fast| was not usable. */
static bool config_parse(struct config *out, struct config_errors *errs,
			 const char *name, const char *dir,
			 const uint8_t *buf, size_t buf_len,
			 struct vms_fast *fast)
{
	yaml_document_t doc, extra;
	yaml_parser_t parser;
	yaml_node_t *root;
	struct ld ld = { .c = out, .errs = errs, .doc = &doc, .fast = fast };
	bool yaml_ok = false;

	if (!name)
		name = "<buffer>";
	if (!dir)
		dir = ".";
	memset(out, 0, sizeof(*out));
	memset(errs, 0, sizeof(*errs));
	errs->file = name;
	ld.dir = dir;
	config_defaults(out);

	out->path = strdup(name);
	out->dir = strdup(dir);
	if (!out->path || !out->dir) {
		ld_oom(&ld);
		goto out;
	}
	if (!yaml_parser_initialize(&parser)) {
		ld_oom(&ld);
		goto out;
	}
	yaml_parser_set_input_string(&parser, buf, buf_len);
	if (!yaml_parser_load(&parser, &doc)) {
		ld_yaml_error(&ld, &parser, buf, buf_len);
		goto out_parser;
	}
	yaml_ok = true;

	root = yaml_document_get_root_node(&doc);
	if (!root) {
		ld_err_at(&ld, 1, 1, "empty configuration: expected a mapping "
			  "with at least 'listen' and 'tls'");
	} else if (root->type != YAML_MAPPING_NODE) {
		ld_err(&ld, root, "the top level must be a mapping (listen:, "
		       "tls:, ...), got %s", kind(root));
	} else {
		walk_map(&ld, root, "the top level", top_keys,
			 sizeof(top_keys) / sizeof(top_keys[0]), NULL);
	}

	/* A second document would be silently ignored; say so instead. */
	if (root && !yaml_parser_load(&parser, &extra)) {
		ld_yaml_error(&ld, &parser, buf, buf_len);
		yaml_ok = false;
	} else if (root) {
		yaml_node_t *r2 = yaml_document_get_root_node(&extra);

		if (r2)
			ld_err(&ld, r2, "only one YAML document is allowed");
		yaml_document_delete(&extra);
	}

	yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
out:
	if (fast && (!yaml_ok || !fast->used))
		return false;
	if (errs->len || ld.oom)
		config_free(out);
	return true;
}

bool config_load_buf(struct config *out, struct config_errors *errs,
		     const char *name, const char *dir, const uint8_t *buf,
		     size_t buf_len)
{
	struct vms_fast fast;
	bool done = false;

	if (vms_fast_scan(&fast, buf, buf_len)) {
		done = config_parse(out, errs, name, dir, fast.ybuf,
				    fast.ybuf_len, &fast);
		vms_fast_free(&fast);
		if (!done) {
			config_free(out);
			config_errors_free(errs);
		}
	}
	if (!done)
		config_parse(out, errs, name, dir, buf, buf_len, NULL);
	return errs->len == 0 && out->path != NULL;
}

bool config_load(struct config *out, struct config_errors *errs,
		 const char *path)
{
	struct ld ld = { .c = out, .errs = errs };
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	char *dir, *slash;
	bool ok = false;
	FILE *f;

	memset(out, 0, sizeof(*out));
	memset(errs, 0, sizeof(*errs));
	errs->file = path;

	f = fopen(path, "rb");
	if (!f) {
		ld_err_at(&ld, 0, 0, "cannot open: %s", strerror(errno));
		goto err;
	}
	for (;;) {
		size_t n;

		if (len == cap) {
			uint8_t *nb;

			if (cap >= CONFIG_FILE_MAX) {
				ld_err_at(&ld, 0, 0, "larger than %u MiB",
					  CONFIG_FILE_MAX >> 20);
				goto err_buf;
			}
			cap = cap ? cap * 2 : 65536;
			nb = realloc(buf, cap);
			if (!nb) {
				ld_oom(&ld);
				goto err_buf;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		ld_err_at(&ld, 0, 0, "read error");
		goto err_buf;
	}

	dir = strdup(path);
	if (!dir) {
		ld_oom(&ld);
		goto err_buf;
	}
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';

	ok = config_load_buf(out, errs, path, dir, buf, len);
	free(dir);
err_buf:
	free(buf);
	fclose(f);
err:
	return ok;
}

void config_errors_print(FILE *f, const struct config_errors *errs)
{
	const char *file = errs->file ? errs->file : "<config>";

	for (size_t i = 0; i < errs->len; i++) {
		const struct config_error *e = &errs->v[i];

		if (e->line)
			fprintf(f, "%s:%u:%u: %s\n", file, e->line, e->col,
				e->msg);
		else
			fprintf(f, "%s: %s\n", file, e->msg);
	}
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->dir);
	free(c->ports);
	for (size_t i = 0; i < c->certs_len; i++) {
		free(c->certs[i].cert_path);
		free(c->certs[i].key_path);
		free(c->certs[i].ocsp_path);
	}
	free(c->certs);
	for (size_t i = 0; i < c->alpn_len; i++)
		free(c->alpn[i]);
	free(c->alpn);
	for (size_t i = 0; i < c->alpn_ports_len; i++) {
		for (size_t j = 0; j < c->alpn_ports[i].alpn_len; j++)
			free(c->alpn_ports[i].alpn[j]);
		free(c->alpn_ports[i].alpn);
	}
	free(c->alpn_ports);
	for (size_t i = 0; i < c->domains_len; i++)
		domain_free(&c->domains[i]);
	free(c->domains);
	for (size_t i = 0; i < c->vms_len; i++)
		free(c->vms[i].id);
	free(c->vms);
	free(c->admin.unix_path);
	free(c->admin.token_file);
	free(c->admin.state_file);
	memset(c, 0, sizeof(*c));
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	free(errs->v);
	memset(errs, 0, sizeof(*errs));
}
