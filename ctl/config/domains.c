/* ctl/config/domains.c: the domains: section (suffix, port_map,
 * allowed_ports, proxy_protocol, proxy_protocol_ports, vm_errors, tls,
 * client_auth per entry). */
#include <stdlib.h>
#include <string.h>

#include "ctl/config/ld.h"
#include "route/route.h"

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

	if (!ld_get_str(ld, v, "suffix", &s))
		return;
	/* "*.vm.vers.sh" and ".vm.vers.sh" say the same as "vm.vers.sh": a
	 * domain always means every name under it. */
	if (!strncmp(s, "*.", 2))
		skip = 2;
	else if (s[0] == '.')
		skip = 1;
	if (!route_host_normalize(name, &len, sizeof(name),
				  (const uint8_t *)s + skip,
				  ld_slen(v) - skip)) {
		ld_err(ld, v, "suffix '%s' is not a valid hostname (labels of "
		       "1-63 letters, digits, hyphens; at most 253 bytes)",
		       ld_show(&b, s, ld_slen(v)));
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
		       "to VM port, got %s", ld_kind(v));
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

		ok = ld_get_int(ld, k, "port_map key", 1, 65535, &from);
		ok &= ld_get_int(ld, val, "port_map value", 1, 65535, &to);
		if (!ok)
			continue;
		if (seen->bits[from / 64] & (1ULL << (from % 64))) {
			ld_err(ld, k, "port_map: duplicate listener port %lld",
			       from);
			continue;
		}
		ld_port_set_add(seen, (unsigned)from);
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

	if (ld_parse_ports(ld, v, "allowed_ports", &d->allowed_ports,
			   &d->allowed_ports_len))
		d->has_allowed_ports = true;
}

static void key_domain_proxy(struct ld *ld, yaml_node_t *v)
{
	struct config_domain *d = &((struct domain_tmp *)ld->obj)->d;
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "proxy_protocol", &s))
		return;
	if (!strcmp(s, "v1"))
		d->proxy_protocol = CFG_PROXY_V1;
	else if (!strcmp(s, "v2"))
		d->proxy_protocol = CFG_PROXY_V2;
	else if (strcmp(s, "off"))
		ld_err(ld, v, "proxy_protocol: expected one of v1, v2, off, "
		       "got '%s'", ld_show(&b, s, ld_slen(v)));
}

static void key_domain_proxy_ports(struct ld *ld, yaml_node_t *v)
{
	struct config_domain *d = &((struct domain_tmp *)ld->obj)->d;

	if (ld_parse_ports(ld, v, "proxy_protocol_ports",
			   &d->proxy_protocol_ports,
			   &d->proxy_protocol_ports_len))
		d->has_proxy_protocol_ports = true;
}

static void key_domain_vm_errors(struct ld *ld, yaml_node_t *v)
{
	struct config_domain *d = &((struct domain_tmp *)ld->obj)->d;
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "vm_errors", &s))
		return;
	if (!strcmp(s, "http"))
		d->vm_errors_http = true;
	else if (strcmp(s, "alert"))
		ld_err(ld, v, "vm_errors: expected one of alert, http, got '%s'",
		       ld_show(&b, s, ld_slen(v)));
}

static void key_domain_tls(struct ld *ld, yaml_node_t *v)
{
	struct config_domain *d = &((struct domain_tmp *)ld->obj)->d;
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "tls", &s))
		return;
	if (!strcmp(s, "passthrough"))
		d->tls_passthrough = true;
	else if (strcmp(s, "terminate"))
		ld_err(ld, v, "tls: expected one of terminate, passthrough, "
		       "got '%s'", ld_show(&b, s, ld_slen(v)));
}

static void key_client_auth_ca(struct ld *ld, yaml_node_t *v)
{
	ld_get_file(ld, v, "client_auth.ca",
		    &((struct config_domain *)ld->obj)->client_ca_path);
}

static void key_client_auth_required(struct ld *ld, yaml_node_t *v)
{
	struct config_domain *d = ld->obj;
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "client_auth.required", &s))
		return;
	if (!strcmp(s, "true"))
		d->client_auth_required = true;
	else if (!strcmp(s, "false"))
		d->client_auth_required = false;
	else
		ld_err(ld, v, "client_auth.required: expected true or false, "
		       "got '%s'", ld_show(&b, s, ld_slen(v)));
}

static const struct config_key client_auth_keys[] = {
	{ "ca", key_client_auth_ca, true },
	{ "required", key_client_auth_required, false },
};

static void key_domain_client_auth(struct ld *ld, yaml_node_t *v)
{
	struct config_domain *d = &((struct domain_tmp *)ld->obj)->d;

	/* A client without a certificate is refused unless the file says
	 * otherwise: the safe reading of "client_auth". */
	d->client_auth_required = true;
	ld_walk_map(ld, v, "client_auth", client_auth_keys,
		    sizeof(client_auth_keys) / sizeof(client_auth_keys[0]), d);
}

static const struct config_key domain_keys[] = {
	{ "suffix", key_domain_suffix, true },
	{ "port_map", key_domain_port_map, false },
	{ "allowed_ports", key_domain_allowed, false },
	{ "proxy_protocol", key_domain_proxy, false },
	{ "proxy_protocol_ports", key_domain_proxy_ports, false },
	{ "vm_errors", key_domain_vm_errors, false },
	{ "tls", key_domain_tls, false },
	{ "client_auth", key_domain_client_auth, false },
};

void ld_domain_free(struct config_domain *d)
{
	free(d->suffix);
	free(d->port_map);
	free(d->allowed_ports);
	free(d->proxy_protocol_ports);
	free(d->client_ca_path);
	memset(d, 0, sizeof(*d));
}

void ld_key_domains(struct ld *ld, yaml_node_t *v)
{
	struct config *c = ld->c;
	struct dup_ent *dups;
	yaml_node_item_t *it;

	if (ld_is_null(v) || !ld_get_seq(ld, v, "domains") ||
	    ld_seq_len(v) == 0)
		return;
	c->domains = calloc(ld_seq_len(v), sizeof(*c->domains));
	dups = calloc(ld_seq_len(v), sizeof(*dups));
	if (!c->domains || !dups) {
		ld_oom(ld);
		goto out;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		struct domain_tmp t = { 0 };

		ld_walk_map(ld, ld_node(ld, *it), "domains entry", domain_keys,
			    sizeof(domain_keys) / sizeof(domain_keys[0]), &t);
		if (!t.d.suffix) {
			ld_domain_free(&t.d);
			continue;
		}
		if (t.d.tls_passthrough && t.d.client_ca_path)
			ld_err(ld, t.suffix_node, "domain '%s': client_auth "
			       "needs tls: terminate (with passthrough the VM "
			       "asks for client certificates itself)",
			       t.d.suffix);
		dups[c->domains_len] = (struct dup_ent){
			t.d.suffix, (unsigned)t.suffix_node->start_mark.line,
			(unsigned)t.suffix_node->start_mark.column,
			c->domains_len };
		c->domains[c->domains_len++] = t.d;
	}
	ld_check_dups(ld, dups, c->domains_len, "domain suffix");
out:
	free(dups);
}
