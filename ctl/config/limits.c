/* ctl/config/limits.c: the limits: section (connection counts, timeouts,
 * buffer and ClientHello sizes). */
#include "ctl/config/ld.h"

static void limit(struct ld *ld, yaml_node_t *v, const char *what,
		  long long min, long long max, uint32_t *out)
{
	long long n;

	if (ld_get_int(ld, v, what, min, max, &n))
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

void ld_key_limits(struct ld *ld, yaml_node_t *v)
{
	ld_walk_map(ld, v, "limits", limits_keys,
		    sizeof(limits_keys) / sizeof(limits_keys[0]), NULL);
}
