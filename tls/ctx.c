/* tls/ctx.c: see ctx.h. */
#include "tls/ctx.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "core/kconfig.h" /* TLS_SESSION_TICKETS: build-time only */
#include "route/trie.h"
#include "signer/keyop.h"
#include "tls/session.h"
#include "tls/sigalg.h"
#include "tls/ticket.h"

/* TLS 1.2 suites: ECDHE + AEAD only. TLS 1.3 suites are all AEAD and not
 * configurable in BoringSSL. */
/* (tls_sigalg_suite_auth knows these by their numbers: keep both.) */
static const char tls12_ciphers[] =
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char curves[] = "X25519:P-256:P-384";

/* A SAN as tls_ctx_new collects it, before it builds the tries. */
struct tls_name {
	char *name;     /* lowercase; for a wildcard, the part after "*." */
	bool wildcard;
	uint32_t cert;  /* index into tls_ctx.ctxs */
};

/* The certificates one name is served by: cands[off] to cands[off + len
 * - 1], certificate indices in configuration order. */
struct tls_cands {
	uint32_t off, len;
};

struct tls_ctx {
	SSL_CTX **ctxs;
	struct tls_sigalg_key *keys; /* keys[i]: ctxs[i]'s private key */
	/* CONFIG_KEY_SIGNER: ctxs[i]'s key is in the signer, as key_ids[i]
	 * (also in the SSL_CTX's ex_data), read from key_paths[i]. */
	uint64_t *key_ids;
	char **key_paths;
	size_t ctxs_len;
	struct tls_name *names;      /* only while tls_ctx_new runs */
	size_t names_len;            /* SANs read: tls_ctx_count_names */
	/* Exact SANs in one trie, wildcard SANs ("*.w.test" as w.test) in
	 * another, so that a name can have both; a value is an index into
	 * runs. */
	struct trie exact, wild;
	struct tls_cands *runs;
	uint32_t *cands;
	struct alpn_set *alpn; /* copied into each SSL_CTX; NULL: no ALPN */
	bool fleet_tickets;    /* fleet: keys from tls/ticket.h */
	uint32_t ticket_lifetime_s;
	struct tls_client_auth *client_auth; /* per domain; ca NULL: none */
	size_t client_auth_len;
};

/* Each SSL_CTX carries its own copy of the ALPN list in ex_data, freed
 * with the SSL_CTX: a handshake still running after a reload freed the
 * store holds a reference to its SSL_CTX, never to the store. */
struct alpn_port {
	uint16_t port;
	uint32_t off, len; /* into the wire bytes */
};

/* The default list and the per-port ones (tls.alpn_ports), as one block:
 * the header, ports[nports] sorted by port, then the wire bytes (each list
 * a run of u8-prefixed names). Offsets are relative, so a copy is a
 * memcpy. */
struct alpn_set {
	size_t size;
	uint32_t def_off, def_len;
	size_t nports;
	struct alpn_port ports[];
};

static const uint8_t *alpn_wire(const struct alpn_set *s)
{
	return (const uint8_t *)&s->ports[s->nports];
}

static int alpn_index = -1, key_id_index = -1;
static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int index,
		      long argl, void *argp)
{
	free(ptr);
}

static void alpn_init(void)
{
	alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
	key_id_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
						alpn_free);
}

bool tls_ctx_key_id(const SSL_CTX *ctx, uint64_t *out)
{
	const uint64_t *id = key_id_index >= 0
				     ? SSL_CTX_get_ex_data(ctx, key_id_index)
				     : NULL;

	if (!id)
		return false;
	*out = *id;
	return true;
}


/* Server preference: the first of our protocols that the client offers. */
static int select_alpn(SSL *ssl, const uint8_t **out, uint8_t *out_len,
		       const uint8_t *in, unsigned in_len, void *arg)
{
	const struct alpn_set *l =
		SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_index);
	const struct tls_conn *conn = SSL_get_app_data(ssl);
	uint32_t off, len;
	CBS ours, theirs, want, have;
	size_t i;

	if (!l)
		return SSL_TLSEXT_ERR_NOACK;
	off = l->def_off;
	len = l->def_len;
	for (i = 0; conn && i < l->nports; i++) {
		if (l->ports[i].port == conn->port) {
			off = l->ports[i].off;
			len = l->ports[i].len;
			break;
		}
	}
	CBS_init(&ours, alpn_wire(l) + off, len);
	while (CBS_get_u8_length_prefixed(&ours, &want)) {
		CBS_init(&theirs, in, in_len);
		while (CBS_get_u8_length_prefixed(&theirs, &have)) {
			if (CBS_len(&have) == CBS_len(&want) &&
			    memcmp(CBS_data(&have), CBS_data(&want),
				   CBS_len(&want)) == 0) {
				*out = CBS_data(&want);
				*out_len = (uint8_t)CBS_len(&want);
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

static void add_error(char *err, size_t err_len, const char *file,
		      const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char reason[160] = "";

	if (e)
		ERR_error_string_n(e, reason, sizeof(reason));
	snprintf(err, err_len, "%s: %s%s%s", file, what, e ? ": " : "",
		 reason);
	ERR_clear_error();
}

/* Puts where the certificate's entry is in appliance.yaml in front of
 * |err| ("FILE:LINE:COL: "), as every configuration error says it. */
static void add_where(char *err, size_t err_len, const struct config *cfg,
		      const struct config_cert *c)
{
	char tmp[1024];

	if (!cfg->path || !c->line || !err_len)
		return;
	snprintf(tmp, sizeof(tmp), "%s:%u:%u: %s", cfg->path, c->line,
		 c->col, err);
	snprintf(err, err_len, "%s", tmp);
}

static bool add_name(struct tls_ctx *t, const char *name, size_t len,
		     size_t idx)
{
	struct tls_name *n, *names;
	bool wildcard = len > 2 && name[0] == '*' && name[1] == '.';
	size_t i;

	if (wildcard) {
		name += 2;
		len -= 2;
	}
	if (len == 0 || memchr(name, '\0', len))
		return true; /* not a usable DNS name: ignore it */
	names = realloc(t->names, (t->names_len + 1) * sizeof(*names));
	if (!names)
		return false;
	t->names = names;
	n = &names[t->names_len];
	n->name = strndup(name, len);
	if (!n->name)
		return false;
	for (i = 0; i < len; i++)
		n->name[i] = (char)tolower((unsigned char)n->name[i]);
	n->wildcard = wildcard;
	n->cert = (uint32_t)idx;
	t->names_len++;
	return true;
}

/* The names a certificate serves: its DNS SANs, or its CN if it has none.
 * Two certificates may serve the same name (an ECDSA one, and an RSA one
 * for clients that cannot verify ECDSA): tls_ctx_get0_for_hello chooses. */
static bool add_cert_names(struct tls_ctx *t, size_t idx)
{
	X509 *x = SSL_CTX_get0_certificate(t->ctxs[idx]);
	GENERAL_NAMES *sans;
	bool ok = true;
	size_t i;

	sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	if (sans) {
		for (i = 0; ok && i < sk_GENERAL_NAME_num(sans); i++) {
			GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

			if (g->type != GEN_DNS)
				continue;
			ok = add_name(t, (const char *)ASN1_STRING_get0_data(
						 g->d.dNSName),
				      (size_t)ASN1_STRING_length(g->d.dNSName),
				      idx);
		}
		GENERAL_NAMES_free(sans);
	} else {
		char cn[256];
		int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x),
						  NID_commonName, cn,
						  sizeof(cn));
		if (n > 0)
			ok = add_name(t, cn, (size_t)n, idx);
	}
	return ok;
}

static bool load_ocsp(SSL_CTX *ctx, const char *path, char *err,
		      size_t err_len)
{
	uint8_t *der = NULL;
	size_t len = 0, cap = 0;
	FILE *f = fopen(path, "rb");
	bool ok = false;

	if (!f) {
		snprintf(err, err_len, "%s: cannot open OCSP response: %s",
			 path, strerror(errno));
		return false;
	}
	for (;;) {
		if (len == cap) {
			uint8_t *n = cap < (1u << 20) ? realloc(der, cap + 4096)
						      : NULL;
			if (!n) {
				snprintf(err, err_len,
					 "%s: OCSP response too large", path);
				goto out;
			}
			der = n;
			cap += 4096;
		}
		size_t got = fread(der + len, 1, cap - len, f);
		if (!got)
			break;
		len += got;
	}
	if (!len || !SSL_CTX_set_ocsp_response(ctx, der, len)) {
		add_error(err, err_len, path, "not a usable OCSP response");
		goto out;
	}
	ok = true;
out:
	free(der);
	fclose(f);
	return ok;
}

/* The signer knows a key by the SHA-256 of its public half's DER
 * (signer/keyop.h); the certificate has that half. The id goes into the
 * SSL_CTX, and the private key method with it: BoringSSL then reads the
 * key's type and size from the certificate and asks the signer to sign. */
static bool use_signer_key(SSL_CTX *ctx, uint64_t *out_id, char *err,
			   size_t err_len, const char *cert_path)
{
	EVP_PKEY *pub = X509_get_pubkey(SSL_CTX_get0_certificate(ctx));
	uint8_t *der = NULL, digest[SHA256_DIGEST_LENGTH];
	uint64_t *id = malloc(sizeof(*id));
	size_t der_len;
	CBB cbb;
	bool ok = false;

	pthread_once(&alpn_once, alpn_init);
	if (!pub || !id || !CBB_init(&cbb, 512) ||
	    !EVP_marshal_public_key(&cbb, pub) ||
	    !CBB_finish(&cbb, &der, &der_len)) {
		add_error(err, err_len, cert_path, "cannot read public key");
		goto out;
	}
	SHA256(der, der_len, digest);
	*id = keyop_key_id(digest);
	if (key_id_index < 0 || !SSL_CTX_set_ex_data(ctx, key_id_index, id)) {
		snprintf(err, err_len, "out of memory setting the key id");
		goto out;
	}
	*out_id = *id;
	id = NULL;
	SSL_CTX_set_private_key_method(ctx, &tls_keyop_method);
	ok = true;
out:
	free(id);
	OPENSSL_free(der);
	EVP_PKEY_free(pub);
	return ok;
}

/* The key file of |c| into |ctx|, which has its certificate: it must be
 * that certificate's key. */
static bool use_key_file(SSL_CTX *ctx, const struct config_cert *c,
			 char *err, size_t err_len)
{
	if (!SSL_CTX_use_PrivateKey_file(ctx, c->key_path, SSL_FILETYPE_PEM)) {
		/* BoringSSL compares the key with the certificate as it
		 * takes it. */
		unsigned long e = ERR_peek_last_error();
		bool other = ERR_GET_LIB(e) == ERR_LIB_X509 &&
			     (ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH ||
			      ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH);

		add_error(err, err_len, c->key_path,
			  other ? "private key does not match the certificate"
				: "cannot load private key (PEM)");
		return false;
	}
	if (!SSL_CTX_check_private_key(ctx)) {
		add_error(err, err_len, c->key_path,
			  "private key does not match the certificate");
		return false;
	}
	return true;
}

static SSL_CTX *new_ssl_ctx(struct tls_ctx *t, const struct config_cert *c,
			    uint64_t *out_key_id, char *err, size_t err_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());

	if (!ctx) {
		add_error(err, err_len, c->cert_path, "SSL_CTX_new failed");
		return NULL;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_strict_cipher_list(ctx, tls12_ciphers) ||
	    !SSL_CTX_set1_curves_list(ctx, curves)) {
		add_error(err, err_len, c->cert_path, "TLS policy rejected");
		goto err_ctx;
	}
	if (!SSL_CTX_use_certificate_chain_file(ctx, c->cert_path)) {
		add_error(err, err_len, c->cert_path,
			  "cannot load certificate chain (PEM)");
		goto err_ctx;
	}
	if (IS_ENABLED(CONFIG_KEY_SIGNER)) {
		/* vmgate never reads the key file: the signer does, and
		 * checks it against this certificate (ctl/signerd.c). */
		if (!use_signer_key(ctx, out_key_id, err, err_len,
				    c->cert_path))
			goto err_ctx;
	} else if (!use_key_file(ctx, c, err, err_len)) {
		goto err_ctx;
	}
	if (c->ocsp_path && !load_ocsp(ctx, c->ocsp_path, err, err_len))
		goto err_ctx;
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (IS_ENABLED(CONFIG_TLS_SESSION_TICKETS)) {
		SSL_CTX_set_num_tickets(ctx, 1);
		/* A fleet shares its ticket keys (tls/ticket.h). */
		if (t->fleet_tickets)
			tls_ticket_enable(ctx, t->ticket_lifetime_s);
	} else
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	if (t->alpn) {
		struct alpn_set *l = malloc(t->alpn->size);

		pthread_once(&alpn_once, alpn_init);
		if (!l || alpn_index < 0 ||
		    !SSL_CTX_set_ex_data(ctx, alpn_index, l)) {
			free(l);
			snprintf(err, err_len, "out of memory setting ALPN");
			goto err_ctx;
		}
		memcpy(l, t->alpn, t->alpn->size);
		SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	}
	SSL_CTX_set_select_certificate_cb(ctx, tls_session_select_cert);
	return ctx;

err_ctx:
	SSL_CTX_free(ctx);
	return NULL;
}

static size_t wire_len(char *const *names, size_t n)
{
	size_t i, len = 0;

	for (i = 0; i < n; i++)
		len += 1 + strlen(names[i]);
	return len;
}

static uint32_t put_wire(uint8_t *wire, uint32_t off, char *const *names,
			 size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		size_t len = strlen(names[i]);

		wire[off++] = (uint8_t)len;
		memcpy(wire + off, names[i], len);
		off += (uint32_t)len;
	}
	return off;
}

static bool build_alpn(struct tls_ctx *t, const struct config *cfg)
{
	size_t i, wlen = wire_len(cfg->alpn, cfg->alpn_len), size;
	struct alpn_set *s;
	uint8_t *wire;
	uint32_t off;

	for (i = 0; i < cfg->alpn_ports_len; i++)
		wlen += wire_len(cfg->alpn_ports[i].alpn,
				 cfg->alpn_ports[i].alpn_len);
	if (!cfg->alpn_len && !cfg->alpn_ports_len)
		return true;
	size = sizeof(*s) + cfg->alpn_ports_len * sizeof(s->ports[0]) + wlen;
	s = calloc(1, size);
	if (!s)
		return false;
	s->size = size;
	s->nports = cfg->alpn_ports_len;
	wire = (uint8_t *)&s->ports[s->nports];
	s->def_len = put_wire(wire, 0, cfg->alpn, cfg->alpn_len);
	off = s->def_len;
	for (i = 0; i < cfg->alpn_ports_len; i++) {
		const struct config_alpn_port *ap = &cfg->alpn_ports[i];

		s->ports[i].port = ap->port;
		s->ports[i].off = off;
		off = put_wire(wire, off, ap->alpn, ap->alpn_len);
		s->ports[i].len = off - s->ports[i].off;
	}
	t->alpn = s;
	return true;
}

static void free_names(struct tls_ctx *t)
{
	size_t i;

	for (i = 0; t->names && i < t->names_len; i++)
		free(t->names[i].name);
	free(t->names);
	t->names = NULL;
}

/* Wildcards after exact names, then by name, then in configuration order:
 * each name's certificates end up together and in order. */
static int cmp_names(const void *a, const void *b)
{
	const struct tls_name *x = *(const struct tls_name *const *)a;
	const struct tls_name *y = *(const struct tls_name *const *)b;
	int c;

	if (x->wildcard != y->wildcard)
		return x->wildcard ? 1 : -1;
	c = strcmp(x->name, y->name);
	if (c)
		return c;
	return x->cert < y->cert ? -1 : x->cert > y->cert;
}

/* build_tries turns names[] into the two tries and their candidate lists,
 * then frees names[]. A name the trie refuses (an empty label, one over
 * 63 bytes, a trailing dot) is no name route_host_normalize lets through,
 * so it could never be asked for: it is left out. */
static bool build_tries(struct tls_ctx *t)
{
	const struct tls_name **order = NULL, *prev = NULL;
	struct tls_cands *cur = NULL;
	uint32_t run = 0;
	bool ok = false;
	size_t i;

	if (t->names_len > UINT32_MAX)
		goto out;
	/* + 1: malloc(0) may return NULL. */
	order = malloc(t->names_len * sizeof(*order) + 1);
	t->runs = malloc(t->names_len * sizeof(*t->runs) + 1);
	t->cands = malloc(t->names_len * sizeof(*t->cands) + 1);
	if (!order || !t->runs || !t->cands)
		goto out;
	for (i = 0; i < t->names_len; i++)
		order[i] = &t->names[i];
	qsort(order, t->names_len, sizeof(*order), cmp_names);
	for (i = 0; i < t->names_len; i++) {
		const struct tls_name *n = order[i];

		if (!prev || n->wildcard != prev->wildcard ||
		    strcmp(n->name, prev->name)) {
			int rc = trie_insert(n->wildcard ? &t->wild : &t->exact,
					     n->name, strlen(n->name),
					     n->wildcard ? TRIE_WILDCARD
							 : TRIE_EXACT,
					     run);

			if (rc == -ENOMEM)
				goto out;
			prev = n;
			cur = NULL;
			if (rc) /* -EINVAL: never asked for, leave it out */
				continue;
			cur = &t->runs[run++];
			cur->off = (uint32_t)i;
			cur->len = 0;
		}
		/* A certificate that lists a name twice is tried once. */
		if (!cur || (cur->len &&
			     t->cands[cur->off + cur->len - 1] == n->cert))
			continue;
		t->cands[cur->off + cur->len++] = n->cert;
	}
	ok = true;
out:
	free(order);
	free_names(t);
	return ok;
}

/* The PEM certificates of |path| into a new store, and into |h| their
 * DER, in order; NULL (and |err|) when the file has none or cannot be
 * read. */
static X509_STORE *load_ca(const char *path, SHA256_CTX *h, char *err,
			   size_t err_len)
{
	X509_STORE *store = X509_STORE_new();
	BIO *bio = BIO_new_file(path, "r");
	size_t n = 0;
	X509 *x;

	if (!store || !bio)
		goto err;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		uint8_t *der = NULL;
		int len = i2d_X509(x, &der);
		int ok = len > 0 && X509_STORE_add_cert(store, x);

		if (ok)
			SHA256_Update(h, der, (size_t)len);
		OPENSSL_free(der);
		X509_free(x);
		if (!ok)
			goto err;
		n++;
	}
	/* The loop ends on the end of the file (PEM_R_NO_START_LINE) or on
	 * a certificate that does not parse: that one is an error. */
	if (!n || ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE)
		goto err;
	ERR_clear_error();
	BIO_free(bio);
	return store;

err:
	add_error(err, err_len, path,
		  n ? "a certificate in the CA bundle does not parse"
		    : "no PEM certificate in the CA bundle");
	ERR_clear_error();
	BIO_free(bio);
	X509_STORE_free(store);
	return NULL;
}

static bool load_client_auth(struct tls_ctx *t, const struct config *cfg,
			     char *err, size_t err_len)
{
	size_t i;

	if (!cfg->domains_len)
		return true;
	t->client_auth = calloc(cfg->domains_len, sizeof(*t->client_auth));
	if (!t->client_auth) {
		snprintf(err, err_len, "out of memory loading certificates");
		return false;
	}
	t->client_auth_len = cfg->domains_len;
	for (i = 0; i < cfg->domains_len; i++) {
		const struct config_domain *d = &cfg->domains[i];
		struct tls_client_auth *a = &t->client_auth[i];

		uint8_t md[SHA256_DIGEST_LENGTH];
		SHA256_CTX h;

		if (!d->client_ca_path)
			continue;
		/* The session id context: the domain, required or not, and
		 * the bundle's certificates. A session resumes where all
		 * three are the same (another appliance of a fleet, a reload
		 * of something else), never under a bundle that changed. */
		SHA256_Init(&h);
		SHA256_Update(&h, d->suffix, strlen(d->suffix) + 1);
		SHA256_Update(&h, d->client_auth_required ? "r" : "o", 1);
		a->ca = load_ca(d->client_ca_path, &h, err, err_len);
		if (!a->ca)
			return false;
		SHA256_Final(md, &h);
		memcpy(a->id, md, sizeof(a->id));
		a->required = d->client_auth_required;
	}
	return true;
}

const struct tls_client_auth *
tls_ctx_get0_client_auth(const struct tls_ctx *t, uint32_t domain)
{
	if (domain >= t->client_auth_len || !t->client_auth[domain].ca)
		return NULL;
	return &t->client_auth[domain];
}

struct tls_ctx *tls_ctx_new(const struct config *cfg, char *err,
			    size_t err_len)
{
	struct tls_ctx *t = calloc(1, sizeof(*t));
	size_t i;

	if (!t || !build_alpn(t, cfg))
		goto err_oom;
	t->fleet_tickets = cfg->fleet.enabled;
	/* A ticket lasts as long as its key may decrypt: the key's expiry
	 * (tls/ticket.c) is the limit that counts. */
	t->ticket_lifetime_s = cfg->fleet.ticket_rotation_s +
			       cfg->fleet.ticket_lifetime_s;
	t->ctxs = calloc(cfg->certs_len, sizeof(*t->ctxs));
	t->keys = calloc(cfg->certs_len, sizeof(*t->keys));
	t->key_ids = calloc(cfg->certs_len, sizeof(*t->key_ids));
	t->key_paths = calloc(cfg->certs_len, sizeof(*t->key_paths));
	if ((!t->ctxs || !t->keys || !t->key_ids || !t->key_paths) &&
	    cfg->certs_len)
		goto err_oom;
	for (i = 0; i < cfg->certs_len; i++) {
		uint64_t key_id = 0;
		SSL_CTX *ctx = new_ssl_ctx(t, &cfg->certs[i], &key_id, err,
					   err_len);
		EVP_PKEY *pub;

		if (!ctx) {
			add_where(err, err_len, cfg, &cfg->certs[i]);
			goto err_free;
		}
		if (IS_ENABLED(CONFIG_KEY_SIGNER)) {
			/* What BoringSSL can sign with depends on the key's
			 * public half alone. */
			pub = X509_get_pubkey(SSL_CTX_get0_certificate(ctx));
			tls_sigalg_key_init(&t->keys[t->ctxs_len], pub);
			EVP_PKEY_free(pub);
			t->key_ids[t->ctxs_len] = key_id;
			t->key_paths[t->ctxs_len] = strdup(cfg->certs[i].key_path);
			if (!t->key_paths[t->ctxs_len]) {
				SSL_CTX_free(ctx);
				goto err_oom;
			}
		} else {
			tls_sigalg_key_init(&t->keys[t->ctxs_len],
					    SSL_CTX_get0_privatekey(ctx));
		}
		t->ctxs[t->ctxs_len++] = ctx;
		if (!add_cert_names(t, t->ctxs_len - 1))
			goto err_oom;
	}
	if (!t->ctxs_len) {
		snprintf(err, err_len, "%s: no certificate configured",
			 cfg->path ? cfg->path : "config");
		goto err_free;
	}
	if (!build_tries(t))
		goto err_oom;
	if (!load_client_auth(t, cfg, err, err_len))
		goto err_free;
	return t;

err_oom:
	snprintf(err, err_len, "out of memory loading certificates");
err_free:
	tls_ctx_free(t);
	return NULL;
}

void tls_ctx_free(struct tls_ctx *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->ctxs_len; i++) {
		SSL_CTX_free(t->ctxs[i]);
		free(t->key_paths ? t->key_paths[i] : NULL);
	}
	free(t->key_paths);
	free(t->key_ids);
	free_names(t);
	trie_free(&t->exact);
	trie_free(&t->wild);
	free(t->runs);
	free(t->cands);
	free(t->ctxs);
	free(t->keys);
	free(t->alpn);
	for (i = 0; i < t->client_auth_len; i++)
		X509_STORE_free(t->client_auth[i].ca);
	free(t->client_auth);
	free(t);
}

/* fit_in returns the first certificate of |trie|'s entry for |name| that
 * fits, NULL when there is none; |*covered| says whether |name| has an
 * entry. In the wildcard trie only the entry for the name's parent counts:
 * a wildcard covers exactly one label (RFC 6125 6.4.3), and the longest
 * suffix trie_lookup finds is the parent if any entry is. */
static SSL_CTX *fit_in(const struct tls_ctx *t, bool *covered,
		       const struct trie *trie, const char *name,
		       size_t name_len, const struct tls_sigalg_offer *offer)
{
	const struct tls_cands *r;
	struct trie_match m;
	uint32_t i;

	if (!trie_lookup(trie, &m, name, name_len) ||
	    (m.wildcard && m.prefix_labels != 1))
		return NULL;
	*covered = true;
	r = &t->runs[m.value];
	for (i = 0; i < r->len; i++) {
		uint32_t c = t->cands[r->off + i];

		if (tls_sigalg_offer_fits(&t->keys[c], offer))
			return t->ctxs[c];
	}
	return NULL;
}

static SSL_CTX *get0_fitting(const struct tls_ctx *t, const char *name,
			     const struct tls_sigalg_offer *offer);

SSL_CTX *tls_ctx_get0_for_hello(const struct tls_ctx *t, const char *name,
				const struct tls_sigalg_offer *offer)
{
	SSL_CTX *ctx = get0_fitting(t, name, offer);
	struct tls_sigalg_offer any_curve;

	if (ctx || !offer->groups_present)
		return ctx;
	/* No certificate on a curve the client lists: BoringSSL signs with
	 * one all the same, and some clients take it (OpenSSL's do not). A
	 * preference, then, not a refusal. */
	any_curve = *offer;
	any_curve.groups_present = false;
	return get0_fitting(t, name, &any_curve);
}

static SSL_CTX *get0_fitting(const struct tls_ctx *t, const char *name,
			     const struct tls_sigalg_offer *offer)
{
	size_t i, name_len = strlen(name);
	bool covered = false;
	SSL_CTX *ctx;

	/* Exact SANs first, then wildcards. Each in configuration order. */
	ctx = fit_in(t, &covered, &t->exact, name, name_len, offer);
	if (!ctx)
		ctx = fit_in(t, &covered, &t->wild, name, name_len, offer);
	if (ctx)
		return ctx;
	/* A certificate for the name that cannot sign for this client is
	 * not traded for one the client would refuse for its name. */
	if (covered)
		return NULL;
	for (i = 0; i < t->ctxs_len; i++)
		if (tls_sigalg_offer_fits(&t->keys[i], offer))
			return t->ctxs[i];
	return NULL;
}

SSL_CTX *tls_ctx_get0_for_name(const struct tls_ctx *t, const char *name)
{
	/* Version 0: every certificate fits. */
	const struct tls_sigalg_offer any = { 0 };

	return tls_ctx_get0_for_hello(t, name, &any);
}

size_t tls_ctx_count_names(const struct tls_ctx *t)
{
	return t->names_len;
}

size_t tls_ctx_signer_keys(const struct tls_ctx *t)
{
	return IS_ENABLED(CONFIG_KEY_SIGNER) ? t->ctxs_len : 0;
}

void tls_ctx_signer_key(const struct tls_ctx *t, size_t i,
			uint64_t *out_key_id, const char **out_path)
{
	*out_key_id = t->key_ids[i];
	*out_path = t->key_paths[i];
}

bool tls_ctx_check_keys(const struct config *cfg, char *err, size_t err_len)
{
	size_t i;

	for (i = 0; i < cfg->certs_len; i++) {
		const struct config_cert *c = &cfg->certs[i];
		SSL_CTX *ctx = SSL_CTX_new(TLS_method());
		bool ok = ctx && SSL_CTX_use_certificate_chain_file(
					 ctx, c->cert_path);

		if (!ok)
			add_error(err, err_len, c->cert_path,
				  "cannot load certificate chain (PEM)");
		else
			ok = use_key_file(ctx, c, err, err_len);
		/* Frees the key: nothing of it outlives the check. */
		SSL_CTX_free(ctx);
		if (!ok) {
			add_where(err, err_len, cfg, c);
			return false;
		}
	}
	return true;
}
