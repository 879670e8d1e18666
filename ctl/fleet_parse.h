/* ctl/fleet_parse.h: pure parsers of what etcd sends (fuzz/fleet.c).
 *
 * Everything here reads bytes from the network or from a store other
 * people write to, so nothing is trusted: every function checks every
 * field, does no I/O, and either succeeds or returns false with nothing
 * to free. Strings from etcd's gRPC gateway are JSON with keys and values
 * in base64 and 64-bit integers as decimal strings (proto3's JSON
 * mapping); both integer forms are accepted.
 */
#ifndef VMGATE_CTL_FLEET_PARSE_H
#define VMGATE_CTL_FLEET_PARSE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route/route.h"

/* The largest VM value accepted, and the largest key: a bigger one is
 * skipped (FLEET_VM_TOO_BIG), so one bad writer cannot grow the table. */
#define FLEET_VALUE_MAX 1024
#define FLEET_KEY_MAX 512

/* A VM's value under {prefix}vms/{id}:
 *   {"address": "fd00::10", "ports": [3000, "8000-8100"]}
 * address: IPv6 (as in appliance.yaml's vms); ports: optional (absent or
 * null: every port), a non-empty list as fleet_parse_ports reads it, the
 * VM's port policy as vms[].ports is. Unknown keys are ignored so that
 * newer writers can add some. */
enum fleet_vm_status {
	FLEET_VM_OK,
	FLEET_VM_BAD_ID,      /* the key's last segment is not a DNS label */
	FLEET_VM_TOO_BIG,     /* over FLEET_VALUE_MAX */
	FLEET_VM_BAD_JSON,    /* not a JSON object */
	FLEET_VM_BAD_ADDRESS, /* missing, not a string, not IPv6 */
	FLEET_VM_BAD_PORTS,   /* not a list of ports and ranges */
};

const char *fleet_vm_status_str(enum fleet_vm_status s);

/* On FLEET_VM_OK |*out_ports| is the value's ports (malloc'd, free()
 * them) or NULL for every port; on anything else it is NULL. */
enum fleet_vm_status fleet_vm_parse(struct in6_addr *out_addr,
				    struct config_vm_ports **out_ports,
				    const uint8_t *val, size_t val_len);

/* fleet_parse_ports reads a VM's ports wherever they are JSON (an etcd
 * value, the admin API's PUT body, the state and snapshot files): a
 * non-empty list of ports 1..65535, as integers or decimal strings with
 * no sign, space or leading zero, and "from-to" strings with from <= to.
 * On success |*out| holds them as sorted, disjoint, non-adjacent ranges
 * (malloc'd; free() frees them). On failure |*out| is NULL and
 * |*out_bad| the index of the first bad entry (0 for a list that is not
 * one or is empty; SIZE_MAX when out of memory). */
struct config_vm_ports;
struct json_t;
bool fleet_parse_ports(struct config_vm_ports **out, size_t *out_bad,
		       const struct json_t *list);

/* fleet_key_under: the part of key |key| (|key_len| bytes) after |dir|,
 * its length in |*rest_len|; NULL unless the key starts with |dir| and
 * has more after it. etcd's answers are not trusted to hold only the
 * keys of the range asked for. */
const uint8_t *fleet_key_under(const uint8_t *key, size_t key_len,
			       const char *dir, size_t *rest_len);

/* fleet_vm_key takes key |key| (|key_len| bytes) under |dir| (the
 * "{prefix}vms/" string) and writes the VM id, normalised, to |out_id|.
 * False when the key is not directly under |dir| or its last segment is
 * not one DNS label. */
bool fleet_vm_key(char out_id[ROUTE_VM_ID_MAX + 1], const uint8_t *key,
		  size_t key_len, const char *dir);

/* One key-value from the gateway: key and value decoded from base64
 * (each NUL-terminated for convenience), revisions as numbers. */
struct fleet_kv {
	uint8_t *key;
	size_t key_len;
	uint8_t *value;
	size_t value_len;
	int64_t mod_revision;
	bool deleted; /* a watch event of type DELETE */
	/* The key was longer than FLEET_KEY_MAX: key holds its first
	 * FLEET_KEY_MAX bytes. Never a VM's. */
	bool key_truncated;
};

void fleet_kvs_free(struct fleet_kv *kvs, size_t n); /* NULL is fine */

/* fleet_next_key: where a range read goes on after the page that ended
 * with |last|, into |key| (FLEET_KEY_MAX + 1 bytes), its length in
 * |*key_len|: |last|'s key and a NUL, its smallest successor; after a
 * truncated key, the first key that does not begin with its
 * FLEET_KEY_MAX bytes (all that do are longer than any VM's): that
 * prefix with its last byte below 0xff raised by one and what follows
 * dropped. False if there is none (a prefix of 0xff bytes only). */
bool fleet_next_key(char *key, size_t *key_len, const struct fleet_kv *last);

/* /v3/kv/range's answer. */
struct fleet_range {
	int64_t revision; /* header.revision: the store's, at the read */
	bool more;
	struct fleet_kv *kvs;
	size_t kvs_len;
};

bool fleet_parse_range(struct fleet_range *out, const char *json,
		       size_t len);
void fleet_range_free(struct fleet_range *r);

/* One line of the /v3/watch stream. */
enum fleet_watch_kind {
	FLEET_WATCH_CREATED,   /* the watch started */
	FLEET_WATCH_EVENTS,    /* changes (events_len > 0) */
	FLEET_WATCH_PROGRESS,  /* a progress notification: no events */
	FLEET_WATCH_COMPACTED, /* canceled: start_revision was compacted */
	FLEET_WATCH_CANCELED,  /* canceled for another reason */
	FLEET_WATCH_ERROR,     /* the gateway's {"error": ...} */
};

struct fleet_watch_msg {
	enum fleet_watch_kind kind;
	int64_t revision;         /* header.revision, 0 when absent */
	int64_t compact_revision; /* FLEET_WATCH_COMPACTED */
	struct fleet_kv *events;
	size_t events_len;
	/* A part of a large response that etcd split (the watch asks for
	 * it: create_request's fragment): more of it follows, up to a
	 * part without. A revision's events may be in several parts. */
	bool fragment;
	char reason[128];         /* cancel_reason or the error's message */
};

bool fleet_parse_watch(struct fleet_watch_msg *out, const char *line,
		       size_t len);
void fleet_watch_msg_free(struct fleet_watch_msg *m);

/* The watch stream's framing: the gateway sends one JSON object per line,
 * in chunks that end anywhere. fleet_lines_feed takes the next chunk and
 * calls |on_line| with each whole non-empty line (without its '\n'),
 * from the chunk itself where it can; what follows the last '\n' is kept
 * for the next chunk. Each byte is looked at once however the chunks
 * fall (scanning the kept part again for every chunk made a long line
 * cost its length squared). A kept part over |max| bytes is
 * FLEET_LINES_TOO_LONG, |on_line| returning false FLEET_LINES_STOP; after
 * either, or FLEET_LINES_NOMEM, the stream is not to be fed again.
 * fleet_lines_free frees what is kept; a zero struct is an empty one. */
struct fleet_lines {
	char *buf;
	size_t len, cap;
};

enum fleet_lines_status {
	FLEET_LINES_OK,
	FLEET_LINES_STOP,
	FLEET_LINES_TOO_LONG,
	FLEET_LINES_NOMEM,
};

enum fleet_lines_status fleet_lines_feed(struct fleet_lines *l,
					 const char *data, size_t len,
					 size_t max,
					 bool (*on_line)(void *arg,
							 const char *line,
							 size_t len),
					 void *arg);
void fleet_lines_free(struct fleet_lines *l);

/* The other answers: a txn (succeeded, header.revision), a lease grant or
 * keep-alive (ID, TTL; a keep-alive of an expired lease has TTL 0 or
 * none), an authenticate (token), and the gateway's error object (the
 * message, for logs and the admin API's 503). */
bool fleet_parse_txn(bool *out_succeeded, int64_t *out_revision,
		     const char *json, size_t len);
bool fleet_parse_lease(int64_t *out_id, int64_t *out_ttl, const char *json,
		       size_t len);
bool fleet_parse_token(char *out, size_t out_cap, const char *json,
		       size_t len);
/* fleet_text_fit: how many of the |len| bytes of |s| fit in |cap| - 1
 * (a NUL after them), cut between UTF-8 characters: text kept for the
 * admin API's answers, where jansson refuses a broken character. */
size_t fleet_text_fit(const char *s, size_t len, size_t cap);
bool fleet_parse_error(char *out, size_t out_cap, const char *json,
		       size_t len);

/* A session-ticket key under {prefix}stek/keys/ (written by the rotating
 * appliance, ctl/fleet.c):
 *   {"name": "<32 hex>", "key": "<base64 of 64 bytes: AES-256 key, then
 *    HMAC-SHA256 key>", "not_before": <Unix s>, "not_after": <Unix s>}
 * with not_before < not_after. */
struct tls_ticket_key;
bool fleet_parse_stek(struct tls_ticket_key *out, const uint8_t *val,
		      size_t val_len);

/* fleet_stek_keep adds |k| to |keys|, which holds |*n| of at most |cap|.
 * When full, |k| takes the place of the key with the oldest not_before if
 * it is newer: whatever order keys come in, the |cap| newest are kept. */
void fleet_stek_keep(struct tls_ticket_key *keys, size_t *n, size_t cap,
		     const struct tls_ticket_key *k);

/* fleet_stek_bound holds a key read from etcd to what this appliance's
 * own rotator would have written (ctl/fleet.c: each key encrypts for
 * |rotation_s| from its not_before and decrypts for |lifetime_s| more):
 * a not_after later than that is brought back to it, and a key whose
 * not_before is more than two rotations after |now| is refused (false):
 * one that would stand in for the next key for years and keep the rotator
 * from minting it. Says whether |k| is to be kept; |*out_clamped| whether
 * its not_after was brought back. */
bool fleet_stek_bound(struct tls_ticket_key *k, int64_t now,
		      int64_t rotation_s, int64_t lifetime_s,
		      bool *out_clamped);

/* fleet_b64 encodes |len| bytes to base64 in |out| (NUL-terminated);
 * false if |out_cap| is too small. */
bool fleet_b64(char *out, size_t out_cap, const void *in, size_t len);

#endif
