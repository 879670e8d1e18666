/* ctl/config/tls.c: the tls: section (certificates, alpn, alpn_ports). */
#include <stdlib.h>
#include <string.h>

#include "ctl/config/ld.h"

#define LD_ALPN_MAX 255

static void key_cert_cert(struct ld *ld, yaml_node_t *v)
{
	ld_get_file(ld, v, "cert", &((struct config_cert *)ld->obj)->cert_path);
}

/* A key file this user may not read, as first seen: what its error says
 * if no signer opens it, so that the error needs no second look at the
 * file system (which could answer differently by then). */
struct ld_unreadable {
	const yaml_node_t *n;
	int err;		/* access(2)'s errno */
	struct show_buf path;	/* the resolved path, as messages show it */
	const char *full;	/* the resolved path (the certificate's) */
};

static void key_cert_key(struct ld *ld, yaml_node_t *v)
{
	struct config_cert *cert = ld->obj;
	struct ld_unreadable *u;
	int read_err = 0;

	ld_get_file_unreadable(ld, v, "key", &cert->key_path, &read_err);
	if (!read_err)
		return;
	/* Judged at the end of tls:, where tls.signer is known. */
	u = realloc(ld->unreadable_keys,
		    (ld->unreadable_keys_len + 1) * sizeof(*u));
	if (!u) {
		ld_oom(ld);
		return;
	}
	ld->unreadable_keys = u;
	u += ld->unreadable_keys_len++;
	u->n = v;
	u->err = read_err;
	u->full = cert->key_path;
	ld_show(&u->path, cert->key_path, strlen(cert->key_path));
}

static void key_cert_ocsp(struct ld *ld, yaml_node_t *v)
{
	ld_get_file(ld, v, "ocsp", &((struct config_cert *)ld->obj)->ocsp_path);
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

	if (!ld_get_seq(ld, v, "tls.certificates"))
		return;
	if (ld_seq_len(v) == 0) {
		ld_err(ld, v, "tls.certificates: must not be empty");
		return;
	}
	c->certs = calloc(ld_seq_len(v), sizeof(*c->certs));
	if (!c->certs) {
		ld_oom(ld);
		return;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *n = ld_node(ld, *it);
		struct config_cert *cc = &c->certs[c->certs_len];

		ld_walk_map(ld, n, "tls.certificates entry", cert_keys,
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

	if (ld_is_null(v) || !ld_get_seq(ld, v, what) || ld_seq_len(v) == 0)
		return;
	*out = calloc(ld_seq_len(v), sizeof(**out));
	if (!*out) {
		ld_oom(ld);
		return;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *n = ld_node(ld, *it);
		const char *s;

		if (!ld_get_str(ld, n, what, &s))
			continue;
		/* RFC 7301 3.1: a protocol name is 1..255 bytes. */
		if (ld_slen(n) == 0 || ld_slen(n) > LD_ALPN_MAX) {
			ld_err(ld, n, "%s: a protocol name is 1..%d bytes, this "
			       "one has %zu", what, LD_ALPN_MAX,
			       ld_slen(n));
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
		       "list, got %s", ld_kind(v));
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

		if (!ld_get_int(ld, k, "tls.alpn_ports port", 1, 65535, &port))
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

/* The socket need not exist yet: the signer may start after vmgate. */
static void key_tls_signer(struct ld *ld, yaml_node_t *v)
{
	const char *s;

	if (!ld_get_str(ld, v, "tls.signer", &s))
		return;
	if (!*s) {
		ld_err(ld, v, "tls.signer: must not be empty");
		return;
	}
	free(ld->c->signer_path);
	ld->c->signer_path = ld_resolve(ld->dir, s);
	if (!ld->c->signer_path)
		ld_oom(ld);
}

static const struct config_key tls_keys[] = {
	{ "certificates", key_tls_certificates, true },
	{ "alpn", key_tls_alpn, false },
	{ "alpn_ports", key_tls_alpn_ports, false },
	{ "signer", key_tls_signer, false },
};

void ld_key_tls(struct ld *ld, yaml_node_t *v)
{
	size_t i;

	ld_walk_map(ld, v, "tls", tls_keys,
		    sizeof(tls_keys) / sizeof(tls_keys[0]), NULL);
	/* A key file vmgate cannot read is how it should be with an
	 * external signer: that signer opens it by path, as its own user
	 * (ctl/signerd.c). Otherwise vmgate (or the signer it starts, which
	 * gets the file from vmgate) must read it: the error any other
	 * file gets, from what key_cert_key saw. */
	if (!ld->c->signer_path || !IS_ENABLED(CONFIG_KEY_SIGNER))
		for (i = 0; i < ld->unreadable_keys_len; i++) {
			const struct ld_unreadable *u = &ld->unreadable_keys[i];

			ld_err(ld, u->n, "key file '%s': %s", u->path.s,
			       strerror(u->err));
			/* Its mode put right reloads, as for any file. */
			ld_missing(ld, u->full);
		}
	free(ld->unreadable_keys);
	ld->unreadable_keys = NULL;
	ld->unreadable_keys_len = 0;
}
