/* ctl/config/load.c: appliance.yaml -> struct config, with file:line:col
 * errors: the walker and its helpers (ld.h), the top-level scalars, and
 * parse, load, print and free. Each section's keys are in its own file
 * (listen.c, tls.c, domains.c, vms.c, limits.c, admin.c, metrics.c).
 *
 * libyaml's document API loads the whole file into nodes that keep their
 * start marks, so every check can point at the exact key or value. The
 * schema is walked by hand, one handler per key (struct config_key
 * tables): there is no generic recursion, so the depth of the walk is the
 * depth of the schema whatever the input (aliases included). The loader
 * goes on after a semantic error so that one run reports as much as it
 * can, and only a complete, error-free config is handed out.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "ctl/config.h"
#include "ctl/config/ld.h"
#include "route/route.h"

#define LD_ERRORS_MAX 100
#define LD_FILE_MAX (256u << 20)
#define LD_WORKERS_MAX 4096

/* Errors */

static void ld_verr(struct ld *ld, unsigned line, unsigned col,
		    const char *fmt, va_list ap)
{
	struct config_errors *e = ld->errs;
	struct config_error *err;

	/* The array is allocated once at its cap, so recording an error never
	 * reallocates and a full list just stops growing. */
	if (!e->v) {
		e->v = calloc(LD_ERRORS_MAX, sizeof(*e->v));
		if (!e->v) {
			ld->oom = true;
			return;
		}
	}
	if (e->len == LD_ERRORS_MAX)
		return;
	err = &e->v[e->len++];
	err->line = line;
	err->col = col;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

__attribute__((format(printf, 4, 5)))
void ld_err_at(struct ld *ld, unsigned line, unsigned col,
	       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_verr(ld, line, col, fmt, ap);
	va_end(ap);
}

__attribute__((format(printf, 3, 4)))
void ld_err(struct ld *ld, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ld_verr(ld, (unsigned)n->start_mark.line + 1,
		(unsigned)n->start_mark.column + 1, fmt, ap);
	va_end(ap);
}

void ld_oom(struct ld *ld)
{
	if (!ld->oom)
		ld_err_at(ld, 0, 0, "out of memory");
	ld->oom = true;
}

const char *ld_show(struct show_buf *b, const char *s, size_t len)
{
	size_t n = len > 64 ? 64 : len;

	if (!len)
		return "";
	log_escape(b->s, sizeof(b->s) - 3, s, n);
	if (n < len)
		strcat(b->s, "...");
	return b->s;
}

/* Nodes */

yaml_node_t *ld_node(struct ld *ld, int i)
{
	return yaml_document_get_node(ld->doc, i);
}

const char *ld_sval(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

size_t ld_slen(const yaml_node_t *n)
{
	return n->data.scalar.length;
}

/* A plain empty, "~" or "null" scalar is YAML's null (core schema). */
bool ld_is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = ld_sval(n);
	return ld_slen(n) == 0 || !strcmp(s, "~") || !strcmp(s, "null") ||
	       !strcmp(s, "Null") || !strcmp(s, "NULL");
}

const char *ld_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_SCALAR_NODE:
		if (ld_is_null(n))
			return "null";
		if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			return "a plain scalar";
		return "a quoted string";
	default:
		return "nothing";
	}
}

size_t ld_seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top -
			n->data.sequence.items.start);
}

/* ld_get_str accepts any scalar that is not null and holds no NUL byte (a
 * double-quoted "\0" would otherwise cut a path or name short). */
bool ld_get_str(struct ld *ld, const yaml_node_t *n, const char *what,
		const char **out)
{
	if (n->type != YAML_SCALAR_NODE || ld_is_null(n)) {
		ld_err(ld, n, "%s: expected a string, got %s", what,
		       ld_kind(n));
		return false;
	}
	if (strlen(ld_sval(n)) != ld_slen(n)) {
		ld_err(ld, n, "%s: contains a NUL byte", what);
		return false;
	}
	*out = ld_sval(n);
	return true;
}

/* ld_parse_ll accepts [+-]?[0-9]+ and nothing else: no spaces, no hex, no
 * exponent. Magnitudes past 10^15 saturate, which every range here
 * rejects. */
bool ld_parse_ll(const char *s, size_t len, long long *out)
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

/* ld_get_int wants a plain scalar: "4" in quotes is a string in YAML, and a
 * config that says so is probably not saying what its author meant. */
bool ld_get_int(struct ld *ld, const yaml_node_t *n, const char *what,
		long long min, long long max, long long *out)
{
	struct show_buf b;
	long long v;

	if (n->type != YAML_SCALAR_NODE || ld_is_null(n) ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
		ld_err(ld, n, "%s: expected an integer in %lld..%lld, got %s",
		       what, min, max, ld_kind(n));
		return false;
	}
	if (!ld_parse_ll(ld_sval(n), ld_slen(n), &v) || v < min || v > max) {
		ld_err(ld, n, "%s: expected an integer in %lld..%lld, got '%s'",
		       what, min, max, ld_show(&b, ld_sval(n), ld_slen(n)));
		return false;
	}
	*out = v;
	return true;
}

bool ld_get_seq(struct ld *ld, const yaml_node_t *n, const char *what)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return true;
	ld_err(ld, n, "%s: expected a list, got %s", what, ld_kind(n));
	return false;
}

/* Mappings: one handler per known key */

bool ld_walk_map(struct ld *ld, yaml_node_t *n, const char *what,
		 const struct config_key *keys, size_t nkeys, void *obj)
{
	const yaml_node_t *seen[LD_KEYS_MAX] = { NULL };
	yaml_node_pair_t *p;
	struct show_buf b;
	void *saved;
	size_t i;

	/* A key table longer than |seen| is a programming error: every
	 * table is walked by the unit tests, which this stops. */
	assert(nkeys <= LD_KEYS_MAX);
	if (n->type != YAML_MAPPING_NODE) {
		ld_err(ld, n, "%s: expected a mapping, got %s", what,
		       ld_kind(n));
		return false;
	}
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = ld_node(ld, p->key);
		yaml_node_t *v = ld_node(ld, p->value);

		if (k->type != YAML_SCALAR_NODE) {
			ld_err(ld, k, "%s: expected a key string, got %s",
			       what, ld_kind(k));
			continue;
		}
		for (i = 0; i < nkeys; i++)
			if (strlen(keys[i].name) == ld_slen(k) &&
			    !memcmp(keys[i].name, ld_sval(k), ld_slen(k)))
				break;
		if (i == nkeys) {
			/* Room for the longest table (limits: 153 bytes). */
			char list[256] = "";
			size_t off = 0;

			for (size_t j = 0; j < nkeys && off < sizeof(list); j++)
				off += snprintf(list + off, sizeof(list) - off,
						"%s%s", j ? ", " : "",
						keys[j].name);
			ld_err(ld, k, "unknown key '%s' in %s (expected %s)",
			       ld_show(&b, ld_sval(k), ld_slen(k)), what, list);
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

void ld_port_set_add(struct port_set *s, unsigned p)
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

	if (n->type != YAML_SCALAR_NODE || ld_is_null(n)) {
		ld_err(ld, n, "%s: expected a port 1..65535 or a \"from-to\" "
		       "range string, got %s", what, ld_kind(n));
		return false;
	}
	v = ld_sval(n);
	len = ld_slen(n);
	/* A lone port may be quoted here: the list mixes ints and strings. */
	if (ld_parse_ll(v, len, &from)) {
		if (from < 1 || from > 65535) {
			ld_err(ld, n, "%s: expected an integer in 1..65535, "
			       "got '%s'", what, ld_show(&b, v, len));
			return false;
		}
		ld_port_set_add(s, (unsigned)from);
		return true;
	}
	dash = memchr(v, '-', len);
	if (!dash || dash == v || !ld_parse_ll(v, (size_t)(dash - v), &from) ||
	    !ld_parse_ll(dash + 1, len - (size_t)(dash - v) - 1, &to) ||
	    v[0] == '+' || dash[1] == '+' || dash[1] == '-') {
		ld_err(ld, n, "%s: '%s' is not a port or a \"from-to\" range",
		       what, ld_show(&b, v, len));
		return false;
	}
	if (from < 1 || to > 65535 || from > to) {
		ld_err(ld, n, "%s: range '%s' must satisfy 1 <= from <= to "
		       "<= 65535", what, ld_show(&b, v, len));
		return false;
	}
	for (long long p = from; p <= to; p++)
		ld_port_set_add(s, (unsigned)p);
	return true;
}

/* ld_parse_ports fills a sorted, duplicate-free array, or leaves *out alone
 * and returns false after reporting. */
bool ld_parse_ports(struct ld *ld, const yaml_node_t *n, const char *what,
		    uint16_t **out, size_t *out_len)
{
	struct port_set *s;
	yaml_node_item_t *it;
	size_t count = 0, k = 0;
	bool ok = true;
	uint16_t *v;

	if (!ld_get_seq(ld, n, what))
		return false;
	if (ld_seq_len(n) == 0) {
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

bool ld_parse_port_ranges(struct ld *ld, const yaml_node_t *n,
			  const char *what, struct config_vm_ports **out)
{
	uint16_t *v;
	size_t len;

	if (!ld_parse_ports(ld, n, what, &v, &len))
		return false;
	*out = route_vm_ports_new(v, len);
	free(v);
	if (!*out) {
		ld_oom(ld);
		return false;
	}
	return true;
}

/* Paths */

char *ld_resolve(const char *dir, const char *path)
{
	char *out;

	if (path[0] == '/' || !dir || !dir[0] || !strcmp(dir, "."))
		return strdup(path);
	if (asprintf(&out, "%s/%s", dir, path) < 0)
		return NULL;
	return out;
}

void ld_get_file(struct ld *ld, const yaml_node_t *n, const char *what,
		 char **out)
{
	ld_get_file_unreadable(ld, n, what, out, NULL);
}

/* Records |path| (copied) in the errors' files that do not exist. */
void ld_missing(struct ld *ld, const char *path)
{
	struct config_errors *e = ld->errs;
	char **m = realloc(e->missing, (e->missing_len + 1) * sizeof(*m));

	if (!m || !(m[e->missing_len] = strdup(path))) {
		if (m)
			e->missing = m;
		ld_oom(ld);
		return;
	}
	e->missing = m;
	e->missing_len++;
}

void ld_get_file_unreadable(struct ld *ld, const yaml_node_t *n,
			    const char *what, char **out,
			    int *out_read_err)
{
	struct show_buf b;
	int read_err = 0;
	const char *v;
	struct stat st;
	char *path;

	if (!ld_get_str(ld, n, what, &v))
		return;
	path = ld_resolve(ld->dir, v);
	if (!path) {
		ld_oom(ld);
		return;
	}
	/* One access(2), kept: asking again could answer differently (the
	 * mode may change meanwhile) from what the error path went by. */
	if (access(path, R_OK) != 0)
		read_err = errno;
	if (read_err && !(out_read_err && read_err == EACCES)) {
		/* Watched for either way: its arrival, or its mode put
		 * right (IN_ATTRIB), reloads. */
		if (read_err == ENOENT || read_err == EACCES)
			ld_missing(ld, path);
		ld_err(ld, n, "%s file '%s': %s", what,
		       ld_show(&b, path, strlen(path)), strerror(read_err));
		goto err_path;
	}
	if (stat(path, &st) != 0) {
		/* A key in a folder this user may not even enter (0750
		 * root:vmgate-signer): the signer's to open, as an unreadable
		 * key is; anything else says why. */
		if (!(out_read_err && read_err == EACCES && errno == EACCES)) {
			ld_err(ld, n, "%s file '%s': %s", what,
			       ld_show(&b, path, strlen(path)),
			       strerror(errno));
			goto err_path;
		}
	} else if (!S_ISREG(st.st_mode)) {
		ld_err(ld, n, "%s file '%s': not a regular file", what,
		       ld_show(&b, path, strlen(path)));
		goto err_path;
	}
	if (out_read_err)
		*out_read_err = read_err;
	free(*out); /* not reached twice: ld_walk_map refuses duplicate keys */
	*out = path;
	return;

err_path:
	free(path);
}

/* Duplicates among names: sort (name, position) and compare neighbours, so
 * a million VMs cost n log n, and the first of a run is the earliest. */
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

void ld_check_dups(struct ld *ld, struct dup_ent *e, size_t n,
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
			  ld_show(&b, e[i].name, strlen(e[i].name)),
			  e[first].line + 1);
	}
}

/* Top-level scalars */

static void key_workers(struct ld *ld, yaml_node_t *v)
{
	long long n;

	if (ld_get_int(ld, v, "workers", 0, LD_WORKERS_MAX, &n))
		ld->c->workers = (unsigned)n;
}

static void key_log_level(struct ld *ld, yaml_node_t *v)
{
	static const char *const names[] = {
		[CFG_LOG_ERROR] = "error",
		[CFG_LOG_WARN] = "warn",
		[CFG_LOG_INFO] = "info",
		[CFG_LOG_DEBUG] = "debug",
	};
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "log_level", &s))
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i])) {
			ld->c->log_level = (enum config_log_level)i;
			return;
		}
	}
	ld_err(ld, v, "log_level: expected one of error, warn, info, debug, "
	       "got '%s'", ld_show(&b, s, ld_slen(v)));
}

static const struct config_key top_keys[] = {
	{ "workers", key_workers, false },
	{ "log_level", key_log_level, false },
	{ "listen", ld_key_listen, true },
	{ "tls", ld_key_tls, true },
	{ "domains", ld_key_domains, false },
	{ "vms", ld_key_vms, false },
	{ "limits", ld_key_limits, false },
	{ "admin", ld_key_admin, false },
	{ "fleet", ld_key_fleet, false },
	{ "metrics", ld_key_metrics, false },
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
	c->log_level = CFG_LOG_INFO;
	c->limits.max_connections = DEFAULT_MAX_CONNECTIONS;
	c->limits.handshake_timeout_ms = DEFAULT_HANDSHAKE_TIMEOUT_MS;
	c->limits.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	c->limits.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
	c->limits.buffer_bytes = DEFAULT_BUFFER_BYTES;
	c->limits.max_connections_per_ip = DEFAULT_MAX_CONNECTIONS_PER_IP;
	c->limits.max_clienthello_bytes = HELLO_DEFAULT;
	c->limits.drain_timeout_ms = DEFAULT_DRAIN_TIMEOUT_MS;
	c->metrics.per_vm_max = DEFAULT_METRICS_PER_VM_MAX;
}

/* config_parse loads |buf|; with |fast|, a buffer made by
 * ld_vms_fast_scan(). It returns false, with |out| and |errs| to be thrown
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
		       "tls:, ...), got %s", ld_kind(root));
	} else {
		ld_walk_map(&ld, root, "the top level", top_keys,
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

	if (ld_vms_fast_scan(&fast, buf, buf_len)) {
		done = config_parse(out, errs, name, dir, fast.ybuf,
				    fast.ybuf_len, &fast);
		ld_vms_fast_free(&fast);
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
	errno = 0;
	for (;;) {
		size_t n;

		if (len == cap) {
			uint8_t *nb;

			if (cap >= LD_FILE_MAX) {
				ld_err_at(&ld, 0, 0, "larger than %u MiB",
					  LD_FILE_MAX >> 20);
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
		/* A directory opens, and its first read says EISDIR. */
		ld_err_at(&ld, 0, 0, "cannot read: %s",
			  strerror(errno ? errno : EIO));
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
	free(c->exclude_ports);
	free(c->addrs);
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
	free(c->signer_path);
	for (size_t i = 0; i < c->domains_len; i++)
		ld_domain_free(&c->domains[i]);
	free(c->domains);
	for (size_t i = 0; i < c->vms_len; i++) {
		free(c->vms[i].id);
		free(c->vms[i].ports);
	}
	free(c->vms);
	free(c->admin.unix_path);
	free(c->admin.token_file);
	free(c->admin.state_file);
	ld_fleet_free(&c->fleet);
	memset(c, 0, sizeof(*c));
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	free(errs->v);
	while (errs->missing_len)
		free(errs->missing[--errs->missing_len]);
	free(errs->missing);
	memset(errs, 0, sizeof(*errs));
}
