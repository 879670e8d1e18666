/* ctl/config/admin.c: the admin: section (listen, unix, token_file,
 * state_file). */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/config/ld.h"

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

	if (!ld_get_str(ld, v, "admin.listen", &s))
		return;
	colon = strrchr(s, ':');
	hlen = colon ? (size_t)(colon - s) : 0;
	if (!colon || hlen == 0 || hlen >= sizeof(host) ||
	    !ld_parse_ll(colon + 1, strlen(colon + 1), &port) || port < 1 ||
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
	       "\"a.b.c.d:port\", got '%s'", ld_show(&b, s, ld_slen(v)));
}

static void key_admin_unix(struct ld *ld, yaml_node_t *v)
{
	const char *s;

	if (!ld_get_str(ld, v, "admin.unix", &s))
		return;
	free(ld->c->admin.unix_path);
	ld->c->admin.unix_path = ld_resolve(ld->dir, s);
	if (!ld->c->admin.unix_path)
		ld_oom(ld);
}

static void key_admin_token_file(struct ld *ld, yaml_node_t *v)
{
	ld_get_file(ld, v, "admin.token_file", &ld->c->admin.token_file);
}

static void key_admin_state_file(struct ld *ld, yaml_node_t *v)
{
	const char *s;

	if (!ld_get_str(ld, v, "admin.state_file", &s))
		return;
	free(ld->c->admin.state_file);
	ld->c->admin.state_file = ld_resolve(ld->dir, s);
	if (!ld->c->admin.state_file)
		ld_oom(ld);
}

static const struct config_key admin_keys[] = {
	{ "listen", key_admin_listen, false },
	{ "unix", key_admin_unix, false },
	{ "token_file", key_admin_token_file, false },
	{ "state_file", key_admin_state_file, false },
};

void ld_key_admin(struct ld *ld, yaml_node_t *v)
{
	struct config_admin *a = &ld->c->admin;

	if (!ld_walk_map(ld, v, "admin", admin_keys,
			 sizeof(admin_keys) / sizeof(admin_keys[0]), NULL))
		return;
	a->enabled = true;
	if (!a->has_listen && !a->unix_path)
		ld_err(ld, v, "admin: needs listen or unix (or both)");
	if (a->has_listen && !a->token_file)
		ld_err(ld, v, "admin: a TCP listener needs token_file; without "
		       "a token the admin API is only offered on a unix socket");
	if (!a->state_file) {
		a->state_file = ld_resolve(ld->dir, DEFAULT_STATE_FILE);
		if (!a->state_file)
			ld_oom(ld);
	}
}
