/* ctl/config/limits.c: the limits: section (connection counts, timeouts,
 * buffer and ClientHello sizes). */
#include "ctl/config/ld.h"

#include <stddef.h>
#include <string.h>

/* Every limit is an integer in a range, kept as a uint32_t field of
 * struct config_limits named like its key. */
#define LIMITS(X)                                       \
	X(max_connections, 1, 10000000)                 \
	X(max_connections_per_ip, 0, 10000000)          \
	X(max_clienthello_bytes, 512, HELLO_DEFAULT)    \
	X(drain_timeout_ms, 0, 86400000)                \
	X(handshake_timeout_ms, 1, 86400000)            \
	X(connect_timeout_ms, 1, 86400000)              \
	X(idle_timeout_ms, 1, 86400000)                 \
	X(buffer_bytes, 4096, 16777216)

static const struct limit_range {
	const char *name;
	size_t off;
	long long min, max;
} ranges[] = {
/* _Generic makes a field that is not a uint32_t a compile error. */
#define RANGE(field, lo, hi)                                              \
	{ #field,                                                         \
	  _Generic(((struct config_limits *)0)->field,                    \
		   uint32_t: offsetof(struct config_limits, field)),       \
	  lo, hi },
	LIMITS(RANGE)
#undef RANGE
};

static void key_limit(struct ld *ld, yaml_node_t *v)
{
	const char *name = ld_sval(ld->key);
	const struct limit_range *r = ranges;
	long long n;

	while (strcmp(r->name, name))
		r++; /* ld_walk_map calls this only for the keys below */
	if (ld_get_int(ld, v, r->name, r->min, r->max, &n))
		*(uint32_t *)((char *)&ld->c->limits + r->off) = (uint32_t)n;
}

static const struct config_key limits_keys[] = {
#define KEY(field, lo, hi) { #field, key_limit, false },
	LIMITS(KEY)
#undef KEY
};

void ld_key_limits(struct ld *ld, yaml_node_t *v)
{
	ld_walk_map(ld, v, "limits", limits_keys,
		    sizeof(limits_keys) / sizeof(limits_keys[0]), NULL);
}
