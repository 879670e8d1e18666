/* ctl/config/listen.c: the listen: section (address, addresses, ports,
 * exclude_ports, steering). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/config/ld.h"

/* What the section's keys leave for the checks that need them all. */
struct listen_tmp {
	const yaml_node_t *address, *addresses, *ports;
	uint16_t *exclude;
	size_t exclude_len;
};

static void key_listen_address(struct ld *ld, yaml_node_t *v)
{
	struct listen_tmp *t = ld->obj;
	struct in_addr a4;
	struct show_buf b;
	const char *s;

	t->address = v;
	if (!ld_get_str(ld, v, "listen.address", &s))
		return;
	if (inet_pton(AF_INET6, s, &ld->c->listen_addr) == 1)
		return;
	if (inet_pton(AF_INET, s, &a4) == 1)
		ld_err(ld, v, "listen.address '%s' is not IPv6: use \"::\", "
		       "which takes IPv4 clients too",
		       ld_show(&b, s, ld_slen(v)));
	else
		ld_err(ld, v, "listen.address '%s' is not an IPv6 address",
		       ld_show(&b, s, ld_slen(v)));
}

/* One entry of listen.addresses: IPv6, or IPv4 stored v4-mapped. */
static bool listen_addr_item(struct ld *ld, struct in6_addr *out,
			     const yaml_node_t *n)
{
	struct in_addr a4;
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, n, "listen.addresses", &s))
		return false;
	if (inet_pton(AF_INET6, s, out) == 1)
		return true;
	if (inet_pton(AF_INET, s, &a4) != 1) {
		ld_err(ld, n, "listen.addresses: '%s' is not an IPv6 or IPv4 "
		       "address", ld_show(&b, s, ld_slen(n)));
		return false;
	}
	if (a4.s_addr == INADDR_ANY) {
		ld_err(ld, n, "listen.addresses: '0.0.0.0': use \"::\" for "
		       "every address");
		return false;
	}
	memset(out, 0, sizeof(*out));
	out->s6_addr[10] = out->s6_addr[11] = 0xff;
	memcpy(&out->s6_addr[12], &a4, 4);
	return true;
}

static void key_listen_addresses(struct ld *ld, yaml_node_t *v)
{
	struct listen_tmp *t = ld->obj;
	struct config *c = ld->c;
	yaml_node_item_t *it;
	size_t n, i;

	t->addresses = v;
	if (!ld_get_seq(ld, v, "listen.addresses"))
		return;
	n = ld_seq_len(v);
	if (n == 0 || n > LISTEN_ADDRS_MAX) {
		ld_err(ld, v, "listen.addresses: expected 1 to %d addresses, "
		       "got %zu", LISTEN_ADDRS_MAX, n);
		return;
	}
	c->addrs = calloc(n, sizeof(*c->addrs));
	if (!c->addrs) {
		ld_oom(ld);
		return;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		const yaml_node_t *item = ld_node(ld, *it);
		struct in6_addr a;
		char text[INET6_ADDRSTRLEN];

		if (!listen_addr_item(ld, &a, item))
			continue;
		for (i = 0; i < c->addrs_len; i++)
			if (!memcmp(&c->addrs[i], &a, sizeof(a)))
				break;
		if (i < c->addrs_len) {
			inet_ntop(AF_INET6, &a, text, sizeof(text));
			ld_err(ld, item, "listen.addresses: %s is listed twice",
			       text);
			continue;
		}
		c->addrs[c->addrs_len++] = a;
	}
}

static void key_listen_ports(struct ld *ld, yaml_node_t *v)
{
	struct listen_tmp *t = ld->obj;
	struct config *c = ld->c;
	unsigned p;

	t->ports = v;
	if (v->type == YAML_SCALAR_NODE && ld_slen(v) == 3 &&
	    !memcmp(ld_sval(v), "all", 3)) {
		c->ports = malloc(65535 * sizeof(*c->ports));
		if (!c->ports) {
			ld_oom(ld);
			return;
		}
		for (p = 1; p <= 65535; p++)
			c->ports[p - 1] = (uint16_t)p;
		c->ports_len = 65535;
		c->ports_all = c->ports_wide = true;
		return;
	}
	ld_parse_ports(ld, v, "listen.ports", &c->ports, &c->ports_len);
}

static void key_listen_exclude_ports(struct ld *ld, yaml_node_t *v)
{
	struct listen_tmp *t = ld->obj;
	struct config *c = ld->c;

	if (!ld_parse_ports(ld, v, "listen.exclude_ports", &c->exclude_ports,
			    &c->exclude_ports_len))
		return;
	t->exclude = c->exclude_ports;
	t->exclude_len = c->exclude_ports_len;
}

static void key_listen_steering(struct ld *ld, yaml_node_t *v)
{
	static const char *const names[] = {
		[CFG_STEER_AUTO] = "auto",
		[CFG_STEER_SK_LOOKUP] = "sk_lookup",
		[CFG_STEER_LISTENERS] = "listeners",
	};
	struct show_buf b;
	const char *s;
	size_t i;

	if (!ld_get_str(ld, v, "listen.steering", &s))
		return;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == ld_slen(v) &&
		    !memcmp(names[i], s, ld_slen(v))) {
			ld->c->steering = (enum config_steering)i;
			return;
		}
	ld_err(ld, v, "listen.steering: expected auto, sk_lookup or "
	       "listeners, got '%s'", ld_show(&b, s, ld_slen(v)));
}

static const struct config_key listen_keys[] = {
	{ "address", key_listen_address, false },
	{ "addresses", key_listen_addresses, false },
	{ "ports", key_listen_ports, true },
	{ "exclude_ports", key_listen_exclude_ports, false },
	{ "steering", key_listen_steering, false },
};

/* listen_exclude takes the excluded ports out of the ports. */
static void listen_exclude(struct ld *ld, const struct listen_tmp *t)
{
	struct config *c = ld->c;
	size_t i, j = 0, k = 0;

	for (i = 0; i < c->ports_len; i++) {
		while (j < t->exclude_len && t->exclude[j] < c->ports[i])
			j++;
		if (j < t->exclude_len && t->exclude[j] == c->ports[i])
			continue;
		c->ports[k++] = c->ports[i];
	}
	c->ports_len = k;
	if (!k)
		ld_err(ld, t->ports, "listen.ports: listen.exclude_ports "
		       "leaves no port");
}

void ld_key_listen(struct ld *ld, yaml_node_t *v)
{
	struct listen_tmp t = { 0 };
	struct config *c = ld->c;

	if (!ld_walk_map(ld, v, "listen", listen_keys,
			 sizeof(listen_keys) / sizeof(listen_keys[0]), &t))
		return;
	if (t.address && t.addresses)
		ld_err(ld, t.addresses, "listen.addresses: give listen.address "
		       "or listen.addresses, not both");
	if (!c->addrs && !t.addresses) {
		c->addrs = malloc(sizeof(*c->addrs));
		if (!c->addrs) {
			ld_oom(ld);
			return;
		}
		c->addrs[0] = c->listen_addr;
		c->addrs_len = 1;
	}
	if (c->ports_len)
		listen_exclude(ld, &t);
	/* Per-port listeners open a socket per port, address and worker:
	 * what counts is the ports left, however they were written. */
	if (!c->ports_all)
		c->ports_wide = c->ports_len > LISTENERS_PORTS_MAX;
	if (c->steering == CFG_STEER_LISTENERS && c->ports_wide) {
		if (c->ports_all)
			ld_err(ld, t.ports, "listen.ports: all needs steering: "
			       "sk_lookup or auto (per-port listeners cannot "
			       "hold 65,535 ports)");
		else
			ld_err(ld, t.ports, "listen.ports: %zu ports (after "
			       "listen.exclude_ports), more than %d, the most "
			       "with steering: listeners", c->ports_len,
			       LISTENERS_PORTS_MAX);
	}
}
