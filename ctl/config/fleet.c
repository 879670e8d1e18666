/* ctl/config/fleet.c: the fleet: section (etcd: endpoints, prefix,
 * credentials, TLS files, timeouts; appliance_id; snapshot_file). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/config/ld.h"
#include "tls/ticket.h" /* TLS_TICKET_KEYS_MAX */

#define FLEET_STR_MAX 256

/* A string of printable ASCII, 1..FLEET_STR_MAX bytes: these end up in
 * URLs, etcd keys and log lines. */
static bool get_plain(struct ld *ld, const yaml_node_t *v, const char *what,
		      const char **out)
{
	struct show_buf b;
	size_t len, i;

	if (!ld_get_str(ld, v, what, out))
		return false;
	len = ld_slen(v);
	for (i = 0; i < len; i++)
		if ((unsigned char)(*out)[i] <= 0x20 ||
		    (unsigned char)(*out)[i] >= 0x7f)
			break;
	if (len == 0 || len > FLEET_STR_MAX || i != len) {
		ld_err(ld, v, "%s '%s': expected 1-%d printable ASCII "
		       "characters, no spaces", what,
		       ld_show(&b, *out, len), FLEET_STR_MAX);
		return false;
	}
	return true;
}

static char *dup_or_oom(struct ld *ld, const char *s)
{
	char *d = strdup(s);

	if (!d)
		ld_oom(ld);
	return d;
}

/* "http://HOST:PORT" or "https://HOST:PORT", HOST a name, an IPv4
 * address or "[IPv6]"; nothing after the port (the gateway's paths are
 * fixed). */
static bool endpoint_ok(const char *s)
{
	const char *host, *colon;
	long long port;

	if (!strncmp(s, "http://", 7))
		host = s + 7;
	else if (!strncmp(s, "https://", 8))
		host = s + 8;
	else
		return false;
	if (*host == '[') {
		const char *end = strchr(host, ']');

		if (!end || end == host + 1 || end[1] != ':')
			return false;
		colon = end + 1;
	} else {
		colon = strrchr(host, ':');
		if (!colon || colon == host || memchr(host, '/', (size_t)(colon - host)))
			return false;
	}
	return ld_parse_ll(colon + 1, strlen(colon + 1), &port) && port >= 1 &&
	       port <= 65535;
}

static void key_etcd_endpoints(struct ld *ld, yaml_node_t *v)
{
	struct config_fleet *f = &ld->c->fleet;
	yaml_node_item_t *it;
	struct show_buf b;

	if (!ld_get_seq(ld, v, "fleet.etcd.endpoints"))
		return;
	if (ld_seq_len(v) == 0) {
		ld_err(ld, v, "fleet.etcd.endpoints: needs at least one "
		       "endpoint");
		return;
	}
	f->endpoints = calloc(ld_seq_len(v), sizeof(*f->endpoints));
	if (!f->endpoints) {
		ld_oom(ld);
		return;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *n = ld_node(ld, *it);
		const char *s;

		if (!get_plain(ld, n, "fleet.etcd endpoint", &s))
			continue;
		if (!endpoint_ok(s)) {
			ld_err(ld, n, "fleet.etcd endpoint '%s': expected "
			       "\"http://host:port\" or \"https://host:port\"",
			       ld_show(&b, s, ld_slen(n)));
			continue;
		}
		f->endpoints[f->endpoints_len] = dup_or_oom(ld, s);
		if (f->endpoints[f->endpoints_len])
			f->endpoints_len++;
	}
}

static void key_etcd_prefix(struct ld *ld, yaml_node_t *v)
{
	struct show_buf b;
	const char *s;

	if (!get_plain(ld, v, "fleet.etcd.prefix", &s))
		return;
	if (s[ld_slen(v) - 1] != '/') {
		ld_err(ld, v, "fleet.etcd.prefix '%s': must end in '/'",
		       ld_show(&b, s, ld_slen(v)));
		return;
	}
	free(ld->c->fleet.prefix);
	ld->c->fleet.prefix = dup_or_oom(ld, s);
}

static void key_etcd_username(struct ld *ld, yaml_node_t *v)
{
	const char *s;

	if (get_plain(ld, v, "fleet.etcd.username", &s))
		ld->c->fleet.username = dup_or_oom(ld, s);
}

static void key_etcd_password_file(struct ld *ld, yaml_node_t *v)
{
	ld_get_file(ld, v, "fleet.etcd.password_file",
		    &ld->c->fleet.password_file);
}

static void key_etcd_ca_file(struct ld *ld, yaml_node_t *v)
{
	ld_get_file(ld, v, "fleet.etcd.ca_file", &ld->c->fleet.ca_file);
}

static void key_etcd_cert_file(struct ld *ld, yaml_node_t *v)
{
	ld_get_file(ld, v, "fleet.etcd.cert_file", &ld->c->fleet.cert_file);
}

static void key_etcd_key_file(struct ld *ld, yaml_node_t *v)
{
	ld_get_file(ld, v, "fleet.etcd.key_file", &ld->c->fleet.key_file);
}

static void key_etcd_timeout_ms(struct ld *ld, yaml_node_t *v)
{
	long long n;

	if (ld_get_int(ld, v, "fleet.etcd.timeout_ms", 100, 600000, &n))
		ld->c->fleet.timeout_ms = (uint32_t)n;
}

static void key_etcd_progress_ms(struct ld *ld, yaml_node_t *v)
{
	long long n;

	if (ld_get_int(ld, v, "fleet.etcd.progress_interval_ms", 100,
		       3600000, &n))
		ld->c->fleet.progress_ms = (uint32_t)n;
}

static const struct config_key etcd_keys[] = {
	{ "endpoints", key_etcd_endpoints, true },
	{ "prefix", key_etcd_prefix, false },
	{ "username", key_etcd_username, false },
	{ "password_file", key_etcd_password_file, false },
	{ "timeout_ms", key_etcd_timeout_ms, false },
	{ "progress_interval_ms", key_etcd_progress_ms, false },
	{ "ca_file", key_etcd_ca_file, false },
	{ "cert_file", key_etcd_cert_file, false },
	{ "key_file", key_etcd_key_file, false },
};

static void key_fleet_etcd(struct ld *ld, yaml_node_t *v)
{
	struct config_fleet *f = &ld->c->fleet;

	if (!ld_walk_map(ld, v, "fleet.etcd", etcd_keys,
			 sizeof(etcd_keys) / sizeof(etcd_keys[0]), NULL))
		return;
	if (!!f->username != !!f->password_file)
		ld_err(ld, v, "fleet.etcd: username and password_file go "
		       "together");
	if (!!f->cert_file != !!f->key_file)
		ld_err(ld, v, "fleet.etcd: cert_file and key_file go "
		       "together");
}

/* An appliance id is one etcd key segment: letters, digits, '.', '_' and
 * '-' (a host name fits). */
static bool appliance_id_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 128)
		return false;
	for (i = 0; i < len; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '.' || s[i] == '_'))
			return false;
	return true;
}

static void key_fleet_appliance_id(struct ld *ld, yaml_node_t *v)
{
	struct show_buf b;
	const char *s;

	if (!ld_get_str(ld, v, "fleet.appliance_id", &s))
		return;
	if (!appliance_id_ok(s, ld_slen(v))) {
		ld_err(ld, v, "fleet.appliance_id '%s': expected 1-128 "
		       "letters, digits, '.', '_' or '-'",
		       ld_show(&b, s, ld_slen(v)));
		return;
	}
	ld->c->fleet.appliance_id = dup_or_oom(ld, s);
}

static void key_fleet_snapshot_file(struct ld *ld, yaml_node_t *v)
{
	const char *s;

	if (!ld_get_str(ld, v, "fleet.snapshot_file", &s))
		return;
	ld->c->fleet.snapshot_file = ld_resolve(ld->dir, s);
	if (!ld->c->fleet.snapshot_file)
		ld_oom(ld);
}

static void key_fleet_ticket_rotation_s(struct ld *ld, yaml_node_t *v)
{
	long long n;

	if (ld_get_int(ld, v, "fleet.ticket_rotation_s", 1, 7 * 86400, &n))
		ld->c->fleet.ticket_rotation_s = (uint32_t)n;
}

static void key_fleet_ticket_lifetime_s(struct ld *ld, yaml_node_t *v)
{
	long long n;

	if (ld_get_int(ld, v, "fleet.ticket_lifetime_s", 1, 7 * 86400, &n))
		ld->c->fleet.ticket_lifetime_s = (uint32_t)n;
}

static const struct config_key fleet_keys[] = {
	{ "etcd", key_fleet_etcd, true },
	{ "appliance_id", key_fleet_appliance_id, false },
	{ "snapshot_file", key_fleet_snapshot_file, false },
	{ "ticket_rotation_s", key_fleet_ticket_rotation_s, false },
	{ "ticket_lifetime_s", key_fleet_ticket_lifetime_s, false },
};

void ld_key_fleet(struct ld *ld, yaml_node_t *v)
{
	struct config_fleet *f = &ld->c->fleet;
	char host[256];

	f->timeout_ms = DEFAULT_FLEET_TIMEOUT_MS;
	f->progress_ms = DEFAULT_FLEET_PROGRESS_MS;
	f->ticket_rotation_s = DEFAULT_TICKET_ROTATION_S;
	f->ticket_lifetime_s = DEFAULT_TICKET_LIFETIME_S;
	if (!ld_walk_map(ld, v, "fleet", fleet_keys,
			 sizeof(fleet_keys) / sizeof(fleet_keys[0]), NULL))
		return;
	f->enabled = true;
	/* Keys alive at once: the one encrypting, the next, and those
	 * still decrypting (lifetime / rotation of them, plus one). */
	if (f->ticket_lifetime_s / f->ticket_rotation_s + 3 >
	    TLS_TICKET_KEYS_MAX)
		ld_err(ld, v, "fleet: ticket_lifetime_s / ticket_rotation_s "
		       "is %u: at most %d keys are held at once, so at most "
		       "%d", f->ticket_lifetime_s / f->ticket_rotation_s,
		       TLS_TICKET_KEYS_MAX, TLS_TICKET_KEYS_MAX - 3);
	if (!f->prefix)
		f->prefix = dup_or_oom(ld, DEFAULT_FLEET_PREFIX);
	if (!f->snapshot_file) {
		f->snapshot_file = ld_resolve(ld->dir,
					      DEFAULT_FLEET_SNAPSHOT_FILE);
		if (!f->snapshot_file)
			ld_oom(ld);
	}
	if (!f->appliance_id) {
		/* The host name, cut at a character an id cannot hold. */
		size_t n = 0;

		if (gethostname(host, sizeof(host)))
			host[0] = '\0';
		host[sizeof(host) - 1] = '\0';
		while (host[n] && n < 128 && appliance_id_ok(host + n, 1))
			n++;
		host[n] = '\0';
		f->appliance_id = dup_or_oom(ld, n ? host : "vmgate");
	}
}

void ld_fleet_free(struct config_fleet *f)
{
	size_t i;

	for (i = 0; i < f->endpoints_len; i++)
		free(f->endpoints[i]);
	free(f->endpoints);
	free(f->prefix);
	free(f->username);
	free(f->password_file);
	free(f->ca_file);
	free(f->cert_file);
	free(f->key_file);
	free(f->appliance_id);
	free(f->snapshot_file);
	memset(f, 0, sizeof(*f));
}
