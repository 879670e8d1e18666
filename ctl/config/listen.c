/* ctl/config/listen.c: the listen: section (address, ports). */
#include <arpa/inet.h>

#include "ctl/config/ld.h"

static void key_listen_address(struct ld *ld, yaml_node_t *v)
{
	struct in_addr a4;
	struct show_buf b;
	const char *s;

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

static void key_listen_ports(struct ld *ld, yaml_node_t *v)
{
	ld_parse_ports(ld, v, "listen.ports", &ld->c->ports, &ld->c->ports_len);
}

static const struct config_key listen_keys[] = {
	{ "address", key_listen_address, false },
	{ "ports", key_listen_ports, true },
};

void ld_key_listen(struct ld *ld, yaml_node_t *v)
{
	ld_walk_map(ld, v, "listen", listen_keys,
		    sizeof(listen_keys) / sizeof(listen_keys[0]), NULL);
}
