/* route/route.h: the route table and the one question core/ asks of it.
 *
 * A route table is built from a loaded config and is immutable afterwards:
 * any number of threads may call route_lookup() on it at once. Lookup walks
 * a trie of reversed DNS labels to the longest matching domain suffix, takes
 * the label in front of it as the vmId, finds that VM and applies the
 * domain's port policy. It never allocates and is O(labels).
 */
#ifndef VMGATE_ROUTE_ROUTE_H
#define VMGATE_ROUTE_ROUTE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route/config-t.h"

struct route_table;

enum route_verdict {
	ROUTE_OK,
	ROUTE_NO_SNI,         /* host_len == 0 */
	ROUTE_BAD_HOST,       /* not a valid hostname (route_host_normalize) */
	ROUTE_UNKNOWN_DOMAIN, /* no configured suffix matches, or nothing or
	                       * more than one label in front of it */
	ROUTE_UNKNOWN_VM,     /* the suffix matches, the vmId is not known */
	ROUTE_PORT_DENIED,    /* the domain does not allow the listener port */
	ROUTE_VM_PORT_DENIED, /* the VM's ports (vms[].ports) leave out the
	                       * VM port */
};

struct route_match {
	const char *vm_id;           /* NUL-terminated, owned by the table */
	const struct in6_addr *addr; /* owned by the table */
	uint16_t vm_port;            /* port_map[listen_port] or listen_port */
	uint8_t proxy_protocol;      /* enum config_proxy_protocol: the
	                              * domain's, if it covers vm_port */
	bool vm_errors_http;         /* the domain's vm_errors: http */
	bool passthrough;            /* the domain's tls: passthrough */
	uint32_t domain;             /* the domain's index in cfg->domains */
};

/* route_table_new builds a table from |cfg| (domains and vms). It returns
 * NULL only when out of memory; |cfg| was validated by config_load, and the
 * table does not keep pointers into it. */
struct route_table *route_table_new(const struct config *cfg);
void route_table_free(struct route_table *t); /* NULL is fine */

/* A change to the VMs of a table: set |id|'s address and ports, or
 * remove it. */
struct route_vm_change {
	const char *id; /* NUL-terminated; valid DNS label (any case) */
	struct in6_addr addr;
	const struct config_vm_ports *ports; /* borrowed, copied; NULL: all */
	bool removed;
};

/* route_table_derive returns a new table with the domains and VMs of
 * |base| changed by |changes| (later entries win over earlier ones for the
 * same id). It costs O(changes), not O(VMs): the new table shares |base|'s
 * VMs (reference counted; |base| may be freed before or after the derived
 * table). Used for changes made through the admin API. Returns NULL when
 * out of memory or when a change's id is not a valid label. */
struct route_table *route_table_derive(struct route_table *base,
				       const struct route_vm_change *changes,
				       size_t changes_len);

/* route_vm_ports_new makes the ranges of |ports| (|len| > 0 ports,
 * sorted, no duplicates); free() frees them. NULL when out of memory. */
struct config_vm_ports *route_vm_ports_new(const uint16_t *ports, size_t len);

/* route_vm_ports_allow tells whether |p| (NULL: every port) has |port|. */
bool route_vm_ports_allow(const struct config_vm_ports *p, uint16_t port);

/* route_vm_ports_fmt writes |p| as "22,8000-8099" (NUL-terminated, cut to
 * |cap|) and returns |out|; NULL |p| is "all". */
char *route_vm_ports_fmt(char *out, size_t cap, const struct config_vm_ports *p);

/* route_vm_ports_get is the ports of VM |id| (borrowed from |t|, NULL
 * for every port), or false when |id| is not routed. */
bool route_vm_ports_get(const struct route_table *t,
			const struct config_vm_ports **out, const char *id,
			size_t id_len);

/* route_vm_get finds VM |id| (|id_len| bytes, any case); on success it
 * writes its address to |out| and returns true. */
bool route_vm_get(const struct route_table *t, struct in6_addr *out,
		  const char *id, size_t id_len);

/* route_vm_count returns the number of VMs; route_vm_foreach calls |fn|
 * once per VM (in no particular order) until it returns false. */
size_t route_vm_count(const struct route_table *t);
void route_vm_foreach(const struct route_table *t,
		      bool (*fn)(void *arg, const char *id,
				 const struct in6_addr *addr),
		      void *arg);

/* route_lookup answers for a client that sent SNI |host| (|host_len| bytes,
 * as received: any case, not NUL-terminated) to listener port
 * |listen_port|. On ROUTE_OK |out| is filled and its pointers live as long
 * as |t|; on ROUTE_PORT_DENIED and ROUTE_VM_PORT_DENIED only out->vm_id is
 * (the VM was found, for its refusals to be counted); otherwise |out| is
 * untouched. */
enum route_verdict route_lookup(const struct route_table *t,
				struct route_match *out, const uint8_t *host,
				size_t host_len, uint16_t listen_port);

/* route_verdict_str returns a static reason for logs: "ok", "no_sni",
 * "bad_host", "unknown_domain", "unknown_vm", "port_denied",
 * "vm_port_denied". */
const char *route_verdict_str(enum route_verdict v);

/* route_host_normalize validates |in| as a hostname (RFC 1123 labels of
 * letters, digits and hyphens, 1-63 bytes each, no leading or trailing
 * hyphen, at most 253 bytes, no trailing dot, no NUL) and writes it
 * lowercased to |out| (|out_cap| >= 254 holds any valid name), NUL-
 * terminated, length in |*out_len|. Returns false, writing nothing
 * meaningful, if it is not valid. Also used by the config loader. */
bool route_host_normalize(char *out, size_t *out_len, size_t out_cap,
			  const uint8_t *in, size_t in_len);

/* route_vm_id_norm validates |in| (|in_len| bytes) as a VM id, one
 * hostname label: 1-63 letters, digits and hyphens, no leading or trailing
 * hyphen, no dot. It writes the id lowercased to |out|, NUL-terminated,
 * length in |*out_len|. The one check of an id, wherever it comes from:
 * the vms: section, the admin API, the state file, a table change. */
#define ROUTE_VM_ID_MAX 63
bool route_vm_id_norm(char out[ROUTE_VM_ID_MAX + 1], size_t *out_len,
		      const char *in, size_t in_len);

/* route_parse_vm_addr parses |s| (|len| bytes, no NUL among them) as a
 * VM's address: textual IPv6, not IPv4-mapped, one host's. ROUTE_ADDR_V4
 * is IPv4 written either way (vmgate reaches VMs over IPv6 only), so that
 * callers can say so; |*out| is meaningful only on ROUTE_ADDR_OK. Loopback
 * (::1) stays allowed: a backend on the appliance itself, as benchmarks
 * and development use. */
enum route_addr_status {
	ROUTE_ADDR_OK,
	ROUTE_ADDR_V4,      /* a.b.c.d or ::ffff:a.b.c.d */
	ROUTE_ADDR_BAD,     /* not an address */
	ROUTE_ADDR_NOT_ONE, /* "::" (a connect to it reaches this host
			     * itself) or multicast: no one host */
};

enum route_addr_status route_parse_vm_addr(struct in6_addr *out,
					   const char *s, size_t len);

#endif
