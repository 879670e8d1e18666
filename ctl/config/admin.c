/* ctl/config/admin.c: the admin: section (listen, unix, token_file,
 * state_file). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "ctl/admin_http.h"
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
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "admin.unix", &s))
		return;
	free(ld->c->admin.unix_path);
	ld->c->admin.unix_path = ld_resolve(ld->dir, s);
	if (!ld->c->admin.unix_path) {
		ld_oom(ld);
		return;
	}
	/* sun_path holds 107 bytes and a NUL: bind would fail at startup. */
	if (strlen(ld->c->admin.unix_path) >=
	    sizeof(((struct sockaddr_un *)0)->sun_path))
		ld_err(ld, v, "admin.unix: '%s' is %zu bytes, longer than the "
		       "%zu a Unix socket's name holds",
		       ld_show(&b, ld->c->admin.unix_path,
			       strlen(ld->c->admin.unix_path)),
		       strlen(ld->c->admin.unix_path),
		       sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
}

/* What the admin API takes as a token (ctl/admin_http.c's read_token):
 * at most ADMIN_MAX_TOKEN bytes, not empty once trailing whitespace is
 * off. Checked here so that --check refuses what startup would. */
static void key_admin_token_file(struct ld *ld, yaml_node_t *v)
{
	uint8_t buf[ADMIN_MAX_TOKEN + 1];
	struct show_buf b;
	size_t len;
	FILE *f;

	ld_get_file(ld, v, "admin.token_file", &ld->c->admin.token_file);
	if (!ld->c->admin.token_file)
		return;
	f = fopen(ld->c->admin.token_file, "rb");
	if (!f)
		return; /* ld_get_file said why */
	/* The file's size counts, trailing newline and all, as at startup. */
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (len > ADMIN_MAX_TOKEN)
		ld_err(ld, v, "admin.token_file '%s': larger than %d bytes",
		       ld_show(&b, ld_sval(v), ld_slen(v)), ADMIN_MAX_TOKEN);
	else if (!admin_token_len(buf, len))
		ld_err(ld, v, "admin.token_file '%s': empty",
		       ld_show(&b, ld_sval(v), ld_slen(v)));
	explicit_bzero(buf, sizeof(buf));
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
