/* route/config-t.h: appliance.yaml, parsed and validated (types only).
 *
 * What the data plane reads of a loaded config: the route table, the
 * certificate store and the workers take a const struct config. The
 * loader that makes one (config_load, config_free) is the control plane's,
 * declared in ctl/config.h. A config that loaded is complete: every
 * default is filled in, and its paths are resolved against the file's
 * directory.
 */
#ifndef VMGATE_ROUTE_CONFIG_T_H
#define VMGATE_ROUTE_CONFIG_T_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults, documented in README.md. Runtime values that a config may
 * change, so DEFAULT_ and not CONFIG_: only Kconfig symbols (build
 * choices, core/kconfig.h) start with CONFIG_. */
#define DEFAULT_MAX_CONNECTIONS 100000
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_IDLE_TIMEOUT_MS 300000
#define DEFAULT_BUFFER_BYTES 65536
#define DEFAULT_MAX_CONNECTIONS_PER_IP 1000
/* limits.max_clienthello_bytes counts the ClientHello's body: the value of
 * its handshake header's uint24 length, the 4-byte header not counted.
 * That is what BoringSSL caps (ssl_max_handshake_message_len: 16384 for a
 * server that asks for no client certificate, compared with the body
 * length), so the default and the largest value allowed are that cap, or
 * the build's CONFIG_MAX_CLIENTHELLO_BYTES when that is smaller
 * (ctl/config/): the router never accepts a hello that BoringSSL then refuses
 * for its size, and at the default refuses none that BoringSSL takes. */
#define DEFAULT_MAX_CLIENTHELLO_BYTES 16384
#define DEFAULT_DRAIN_TIMEOUT_MS 30000
#define DEFAULT_STATE_FILE "vmgate-state.json"
/* With per-port listeners (listen.steering: listeners) listen.ports may
 * hold at most this many ports in all, after listen.exclude_ports: each
 * is a socket per address and worker. */
#define LISTENERS_PORTS_MAX 1024
/* listen.addresses holds at most this many (sk_lookup's address map). */
#define LISTEN_ADDRS_MAX 256
#define DEFAULT_FLEET_PREFIX "/vmgate/v1/"
#define DEFAULT_FLEET_TIMEOUT_MS 2000
#define DEFAULT_FLEET_PROGRESS_MS 10000
#define DEFAULT_FLEET_SNAPSHOT_FILE "fleet-snapshot.json"
#define DEFAULT_TICKET_ROTATION_S 3600    /* a new key every hour ... */
#define DEFAULT_TICKET_LIFETIME_S 64800   /* ... each kept for 18 hours */
#include <sys/socket.h>

enum config_log_level {
	CFG_LOG_ERROR,
	CFG_LOG_WARN,
	CFG_LOG_INFO, /* default */
	CFG_LOG_DEBUG,
};

struct config_cert {
	char *cert_path; /* PEM chain, leaf first; resolved path */
	char *key_path;  /* PEM private key (ECDSA or RSA); resolved path */
	char *ocsp_path; /* DER OCSP response to staple, or NULL */
	unsigned line, col; /* where the entry starts, for later errors */
};

struct config_port_map {
	uint16_t listen_port;
	uint16_t vm_port;
};

/* domains[].proxy_protocol: the PROXY header sent to the VM first. */
enum config_proxy_protocol {
	CFG_PROXY_NONE, /* default */
	CFG_PROXY_V1,
	CFG_PROXY_V2,
};

struct config_domain {
	char *suffix; /* lowercase, validated, no leading "*." or dot */
	struct config_port_map *port_map;
	size_t port_map_len;
	/* allowed listener ports; only meaningful when has_allowed_ports */
	uint16_t *allowed_ports;
	size_t allowed_ports_len;
	bool has_allowed_ports;
	enum config_proxy_protocol proxy_protocol;
	/* VM ports that get the header; only meaningful when
	 * has_proxy_protocol_ports (without: every port) */
	uint16_t *proxy_protocol_ports;
	size_t proxy_protocol_ports_len;
	bool has_proxy_protocol_ports;
	/* vm_errors: http: a failed VM connect is answered with an HTTP 502
	 * that says why, for HTTP/1.x clients (default: the alert only) */
	bool vm_errors_http;
	/* tls: passthrough: route by the SNI, then relay the client's bytes
	 * as they are, its TLS and all (default: terminate) */
	bool tls_passthrough;
	/* client_auth: { ca, required }: ask for a client certificate and
	 * verify it against the PEM bundle at client_ca_path (resolved; NULL:
	 * no client_auth); refuse a client without one when required */
	char *client_ca_path;
	bool client_auth_required;
};

/* tls.alpn_ports: the ALPN list offered on one listener port, in place of
 * tls.alpn (empty: offer none there). */
struct config_alpn_port {
	uint16_t port;
	char **alpn;
	size_t alpn_len;
};

/* A range of ports, from <= to. */
struct config_port_range {
	uint16_t from, to;
};

/* vms[].ports: the VM ports routed to a VM, as sorted, disjoint,
 * non-adjacent ranges (non-empty). */
struct config_vm_ports {
	size_t len;
	struct config_port_range r[];
};

struct config_vm {
	char *id; /* lowercase, one valid DNS label */
	struct in6_addr addr;
	struct config_vm_ports *ports; /* NULL: every port */
};

/* listen.steering: how connections reach the workers. */
enum config_steering {
	CFG_STEER_AUTO,      /* sk_lookup if it attaches, else listeners */
	CFG_STEER_SK_LOOKUP, /* one listener per worker, eBPF sk_lookup */
	CFG_STEER_LISTENERS, /* one SO_REUSEPORT listener per port per worker */
};

struct config_limits {
	uint32_t max_connections;
	uint32_t handshake_timeout_ms;
	uint32_t connect_timeout_ms;
	uint32_t idle_timeout_ms;
	uint32_t buffer_bytes;
	uint32_t max_connections_per_ip; /* IPv6 by /64; 0 = no limit */
	uint32_t max_clienthello_bytes;  /* body bytes (see above) */
	uint32_t drain_timeout_ms;       /* SIGTERM: time to finish */
};

/* The operators' API (admin: in appliance.yaml). Without a token it may
 * only listen on a Unix socket: the loader refuses a TCP listener with no
 * token_file. */
struct config_admin {
	bool enabled;               /* an admin: section is present */
	bool has_listen;
	struct sockaddr_in6 listen; /* from "[addr]:port" (or "a.b.c.d:port",
	                             * stored v4-mapped) */
	char *unix_path;            /* resolved, or NULL */
	char *token_file;           /* resolved and readable, or NULL */
	char *state_file;           /* resolved; where API changes persist.
	                             * Default: DEFAULT_STATE_FILE next
	                             * to the config file. Need not exist. */
};

/* metrics: what /metrics adds to its totals. */
#define DEFAULT_METRICS_PER_VM_MAX 1000
struct config_metrics {
	bool per_vm;         /* per-VM series (vmgate_vm_*) */
	uint32_t per_vm_max; /* at most this many VMs in them, by bytes */
};

/* fleet: (README "Fleet mode"): VMs from etcd, merged over vms:. */
struct config_fleet {
	bool enabled;         /* a fleet: section is present */
	char **endpoints;     /* "http://host:port" or https://; non-empty */
	size_t endpoints_len;
	char *prefix;         /* ends in '/' */
	char *username;       /* or NULL */
	char *password_file;  /* resolved and readable, or NULL */
	char *ca_file;        /* https endpoints: CA bundle, or NULL */
	char *cert_file;      /* https: client certificate, or NULL */
	char *key_file;       /* https: its key, or NULL */
	uint32_t timeout_ms;  /* every request but the watch stream */
	uint32_t progress_ms; /* etcd's watch-progress-notify-interval */
	char *appliance_id;   /* default: the host name */
	char *snapshot_file;  /* resolved; default next to the config */
	uint32_t ticket_rotation_s; /* a new session-ticket key this often */
	uint32_t ticket_lifetime_s; /* a ticket (and its key) lasts this */
};

struct config {
	char *path; /* the file as given */
	char *dir;  /* its directory, base of relative paths */

	unsigned workers; /* 0 = one per CPU */
	enum config_log_level log_level;

	struct in6_addr listen_addr; /* "::" by default */
	/* listen.ports without listen.exclude_ports: sorted, no duplicates,
	 * non-empty. */
	uint16_t *ports;
	size_t ports_len;
	uint16_t *exclude_ports; /* sorted, as written; may be empty */
	size_t exclude_ports_len;
	/* listen.addresses (IPv4 v4-mapped), or listen.address alone;
	 * non-empty, no duplicates. What sk_lookup steers ("::" steers
	 * every address); per-port listeners bind listen_addr. */
	struct in6_addr *addrs;
	size_t addrs_len;
	enum config_steering steering;
	bool ports_all;  /* listen.ports: all */
	bool ports_wide; /* all, or over LISTENERS_PORTS_MAX ports:
			  * per-port listeners cannot serve it */

	struct config_cert *certs; /* non-empty */
	size_t certs_len;
	char **alpn; /* protocol names in preference order; may be empty */
	size_t alpn_len;
	struct config_alpn_port *alpn_ports; /* sorted by port */
	size_t alpn_ports_len;
	char *signer_path; /* tls.signer: an external vmgate-signer's
	                    * socket, resolved; NULL: vmgate runs its own */

	struct config_domain *domains;
	size_t domains_len;
	struct config_vm *vms;
	size_t vms_len;

	struct config_limits limits;
	struct config_admin admin;
	struct config_fleet fleet;
	struct config_metrics metrics;
};

#endif
