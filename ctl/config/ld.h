/* ctl/config/ld.h: what the loader's files share (private to ctl/config/).
 *
 * load.c walks the document: struct ld is the walk's state, ld_walk_map()
 * runs one struct config_key table over a mapping, and the ld_ helpers
 * read scalars, lists, ports and files with file:line:col errors. Each
 * section's file (listen.c, tls.c, domains.c, vms.c, limits.c, admin.c)
 * holds that section's key table and handlers and exports one ld_key_*
 * handler for the top_keys table in load.c.
 */
#ifndef VMGATE_CTL_CONFIG_LD_H
#define VMGATE_CTL_CONFIG_LD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "core/kconfig.h" /* CONFIG_MAX_CLIENTHELLO_BYTES */
#include "core/log.h" /* LOG_ESCAPED_MAX */
#include "ctl/config.h"

struct vms_fast_ent;

/* The vms: list as vms.c's line scanner found it (see vms.c), which
 * load.c runs before libyaml. */
struct vms_fast {
	const uint8_t *buf;     /* the original */
	uint8_t *ybuf;          /* what libyaml reads instead */
	size_t ybuf_len;
	unsigned line;          /* of "vms:", 0-based */
	struct vms_fast_ent *e;
	size_t len;
	bool used;
};

struct ld {
	yaml_document_t *doc;
	struct vms_fast *fast; /* the vms: list read without libyaml, or NULL */
	struct config *c;
	struct config_errors *errs;
	const char *dir;
	void *obj; /* what the current mapping fills, for its key handlers */
	const yaml_node_t *key; /* the key whose handler runs */
	/* The key: values of tls.certificates whose file this user may not
	 * read, with why: an error unless tls.signer names a signer, which
	 * opens its keys itself (known once the whole tls: section is read).
	 * struct ld_unreadable is tls.c's. */
	struct ld_unreadable *unreadable_keys;
	size_t unreadable_keys_len;
	bool oom;
};

/* Errors */

__attribute__((format(printf, 4, 5)))
void ld_err_at(struct ld *ld, unsigned line, unsigned col, const char *fmt,
	       ...);
__attribute__((format(printf, 3, 4)))
void ld_err(struct ld *ld, const yaml_node_t *n, const char *fmt, ...);
void ld_oom(struct ld *ld);

/* ld_show copies at most 64 bytes of a value for a message, escaped as
 * log_escape does (an empty value stays empty), so that a hostile file
 * cannot put escape sequences or megabytes into an operator's terminal. */
struct show_buf {
	char s[LOG_ESCAPED_MAX(64) + 3];
};

const char *ld_show(struct show_buf *b, const char *s, size_t len);

/* Nodes */

yaml_node_t *ld_node(struct ld *ld, int i);
const char *ld_sval(const yaml_node_t *n);
size_t ld_slen(const yaml_node_t *n);
bool ld_is_null(const yaml_node_t *n);
const char *ld_kind(const yaml_node_t *n);
size_t ld_seq_len(const yaml_node_t *n);
bool ld_get_str(struct ld *ld, const yaml_node_t *n, const char *what,
		const char **out);
bool ld_parse_ll(const char *s, size_t len, long long *out);
bool ld_get_int(struct ld *ld, const yaml_node_t *n, const char *what,
		long long min, long long max, long long *out);
bool ld_get_seq(struct ld *ld, const yaml_node_t *n, const char *what);

/* Mappings: one handler per known key */

typedef void config_key_fn(struct ld *ld, yaml_node_t *v);

struct config_key {
	const char *name;
	config_key_fn *fn;
	bool required;
};

/* A key table has at most this many keys (ld_walk_map's seen[]). */
#define LD_KEYS_MAX 10

bool ld_walk_map(struct ld *ld, yaml_node_t *n, const char *what,
		 const struct config_key *keys, size_t nkeys, void *obj);

/* Ports */

struct port_set {
	uint64_t bits[65536 / 64];
};

void ld_port_set_add(struct port_set *s, unsigned p);
bool ld_parse_ports(struct ld *ld, const yaml_node_t *n, const char *what,
		    uint16_t **out, size_t *out_len);
/* ld_parse_port_ranges is ld_parse_ports as sorted, merged ranges (a
 * malloc'd struct config_vm_ports). */
bool ld_parse_port_ranges(struct ld *ld, const yaml_node_t *n,
			  const char *what, struct config_vm_ports **out);

/* Paths */

char *ld_resolve(const char *dir, const char *path);
/* ld_missing records |path| (copied) among the files the configuration
 * names that are not there or not readable yet: watched by the caller, a
 * reload follows their arrival or their mode put right. */
void ld_missing(struct ld *ld, const char *path);
void ld_get_file(struct ld *ld, const yaml_node_t *n, const char *what,
		 char **out);
/* ld_get_file, but a regular file this user may not read (EACCES) is
 * taken too, and *out_read_err says so: access(2)'s errno, or 0 when the
 * file is readable. */
void ld_get_file_unreadable(struct ld *ld, const yaml_node_t *n,
			    const char *what, char **out,
			    int *out_read_err);

/* A name and where it was, for ld_check_dups(). */
struct dup_ent {
	const char *name;
	unsigned line, col; /* 0-based, as in a yaml_mark_t */
	size_t idx;
};

void ld_check_dups(struct ld *ld, struct dup_ent *e, size_t n,
		   const char *what);

/* Sections: one handler per top-level key, each in its own file */

void ld_key_listen(struct ld *ld, yaml_node_t *v);  /* listen.c */
void ld_key_tls(struct ld *ld, yaml_node_t *v);     /* tls.c */
void ld_key_domains(struct ld *ld, yaml_node_t *v); /* domains.c */
void ld_key_vms(struct ld *ld, yaml_node_t *v);     /* vms.c */
void ld_key_limits(struct ld *ld, yaml_node_t *v);  /* limits.c */
void ld_key_admin(struct ld *ld, yaml_node_t *v);   /* admin.c */
void ld_key_fleet(struct ld *ld, yaml_node_t *v);   /* fleet.c */
void ld_key_metrics(struct ld *ld, yaml_node_t *v); /* metrics.c */
void ld_fleet_free(struct config_fleet *f);         /* fleet.c */

void ld_domain_free(struct config_domain *d);       /* domains.c */
bool ld_vms_fast_scan(struct vms_fast *f, const uint8_t *buf,
		      size_t buf_len);                /* vms.c */
void ld_vms_fast_free(struct vms_fast *f);          /* vms.c */

/* Each worker's ClientHello reassembly scratch is sized to the runtime
 * limit (core/worker.c), and the loader never lets that pass the build's
 * CONFIG_MAX_CLIENTHELLO_BYTES: with no limits: key, an image built with a
 * smaller cap must not get the 16 KiB default. Nor past BoringSSL's cap
 * (config.h): the default is also the largest value allowed. */
#define HELLO_DEFAULT                                                \
	(DEFAULT_MAX_CLIENTHELLO_BYTES < CONFIG_MAX_CLIENTHELLO_BYTES \
		 ? DEFAULT_MAX_CLIENTHELLO_BYTES                      \
		 : CONFIG_MAX_CLIENTHELLO_BYTES)
_Static_assert(HELLO_DEFAULT >= 512 &&
		       HELLO_DEFAULT <= CONFIG_MAX_CLIENTHELLO_BYTES,
	       "max_clienthello_bytes default outside the loader's bounds");

#endif
