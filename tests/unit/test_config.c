/* tests/unit/test_config.c: ctl/config/, appliance.yaml loading: the
 * shipped file, defaults, normalisation, and every error path with its
 * line:col and message, table-driven.
 *
 * Runs from tests/unit (like `make unit`). Certificate paths must name
 * readable files, so the group setup makes a scratch directory with dummy
 * cert.pem/key.pem (and build/demo/ for the shipped appliance.yaml) and
 * the cases load with that directory as their base. */
#include <arpa/inet.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ctl/config.h"
#include "route/route.h"

#define SHIPPED "../../appliance.yaml"

static char tmpdir[] = "/tmp/vmgate-test-config-XXXXXX";
static const char *self; /* argv[0], to re-exec for the leak check */

static const char *const scratch_files[] = {
	"cert.pem", "key.pem", "build/demo/fullchain.pem", "build/demo/key.pem",
	"appliance.yaml", "missing.yaml",
};
static const char *const scratch_dirs[] = {
	"build/demo", "build", "adir",
};

static char *tmp_path(char *buf, size_t cap, const char *rel)
{
	snprintf(buf, cap, "%s/%s", tmpdir, rel);
	return buf;
}

static int write_file(const char *rel, const void *data, size_t len)
{
	char p[512];
	FILE *f = fopen(tmp_path(p, sizeof(p), rel), "wb");

	if (!f)
		return -1;
	if (len && fwrite(data, 1, len, f) != len) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

static int group_setup(void **state)
{
	char p[512];

	(void)state;
	if (!mkdtemp(tmpdir))
		return -1;
	if (mkdir(tmp_path(p, sizeof(p), "build"), 0700) ||
	    mkdir(tmp_path(p, sizeof(p), "build/demo"), 0700) ||
	    mkdir(tmp_path(p, sizeof(p), "adir"), 0700))
		return -1;
	for (size_t i = 0; i < 4; i++)
		if (write_file(scratch_files[i], "-----\n", 6))
			return -1;
	return 0;
}

static int group_teardown(void **state)
{
	char p[512];

	(void)state;
	for (size_t i = 0; i < sizeof(scratch_files) / sizeof(*scratch_files);
	     i++)
		unlink(tmp_path(p, sizeof(p), scratch_files[i]));
	for (size_t i = 0; i < sizeof(scratch_dirs) / sizeof(*scratch_dirs);
	     i++)
		rmdir(tmp_path(p, sizeof(p), scratch_dirs[i]));
	rmdir(tmpdir);
	return 0;
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf) {
		buf[n] = '\0';
		*len = (size_t)n;
	}
	return buf;
}

static bool load(struct config *c, struct config_errors *e, const char *y)
{
	return config_load_buf(c, e, "t.yaml", tmpdir, (const uint8_t *)y,
			       strlen(y));
}

static void dump_errors(const struct config_errors *e)
{
	config_errors_print(stderr, e);
}

#define LISTEN "listen:\n  ports: [443]\n"
#define TLS "tls:\n  certificates:\n    - { cert: cert.pem, key: key.pem }\n"
#define MIN LISTEN TLS

/* The shipped file */

static void check_shipped(const struct config *c, const char *base)
{
	struct in6_addr fd10, any = IN6ADDR_ANY_INIT;
	char p[512];

	assert_int_equal(c->workers, 0);
	assert_int_equal(c->log_level, CFG_LOG_INFO);
	assert_memory_equal(&c->listen_addr, &any, sizeof(any));
	assert_int_equal(c->ports_len, 3);
	assert_int_equal(c->ports[0], 443);
	assert_int_equal(c->ports[1], 3000);
	assert_int_equal(c->ports[2], 8080);

	assert_int_equal(c->certs_len, 1);
	snprintf(p, sizeof(p), "%s/build/demo/fullchain.pem", base);
	assert_string_equal(c->certs[0].cert_path, p);
	snprintf(p, sizeof(p), "%s/build/demo/key.pem", base);
	assert_string_equal(c->certs[0].key_path, p);
	assert_int_equal(c->certs[0].line, 16);
	assert_int_equal(c->certs[0].col, 7);
	assert_int_equal(c->alpn_len, 2);
	assert_string_equal(c->alpn[0], "h2");
	assert_string_equal(c->alpn[1], "http/1.1");
	assert_int_equal(c->alpn_ports_len, 2);
	assert_int_equal(c->alpn_ports[0].port, 3000);
	assert_int_equal(c->alpn_ports[0].alpn_len, 1);
	assert_string_equal(c->alpn_ports[0].alpn[0], "http/1.1");
	assert_int_equal(c->alpn_ports[1].port, 8080);

	assert_int_equal(c->domains_len, 1);
	assert_string_equal(c->domains[0].suffix, "vm.vers.sh");
	assert_int_equal(c->domains[0].port_map_len, 1);
	assert_int_equal(c->domains[0].port_map[0].listen_port, 443);
	assert_int_equal(c->domains[0].port_map[0].vm_port, 22);
	assert_true(c->domains[0].has_allowed_ports);
	assert_int_equal(c->domains[0].allowed_ports_len, 3);

	assert_int_equal(c->vms_len, 1);
	assert_string_equal(c->vms[0].id,
			    "45a68069-defc-4233-9865-6298d87053af");
	assert_int_equal(inet_pton(AF_INET6, "fd00::10", &fd10), 1);
	assert_memory_equal(&c->vms[0].addr, &fd10, sizeof(fd10));

	assert_int_equal(c->limits.max_connections, 100000);
	assert_int_equal(c->limits.handshake_timeout_ms, 10000);
	assert_int_equal(c->limits.connect_timeout_ms, 5000);
	assert_int_equal(c->limits.idle_timeout_ms, 300000);
	assert_int_equal(c->limits.buffer_bytes, 65536);
}

static void test_shipped_buf(void **state)
{
	struct config c;
	struct config_errors e;
	size_t len;
	char *y = read_all(SHIPPED, &len);

	(void)state;
	if (!y)
		fail_msg("cannot read %s (run from tests/unit)", SHIPPED);
	if (!config_load_buf(&c, &e, SHIPPED, tmpdir, (const uint8_t *)y,
			     len)) {
		dump_errors(&e);
		fail_msg("the shipped appliance.yaml does not load");
	}
	assert_int_equal(e.len, 0);
	assert_string_equal(c.dir, tmpdir);
	check_shipped(&c, tmpdir);
	config_free(&c);
	config_errors_free(&e);
	free(y);
}

/* config_load: reads the file and resolves paths against its directory. */
static void test_shipped_file(void **state)
{
	struct config c;
	struct config_errors e;
	char p[512];
	size_t len;
	char *y = read_all(SHIPPED, &len);

	(void)state;
	assert_non_null(y);
	assert_int_equal(write_file("appliance.yaml", y, len), 0);
	free(y);
	tmp_path(p, sizeof(p), "appliance.yaml");
	if (!config_load(&c, &e, p)) {
		dump_errors(&e);
		fail_msg("%s does not load", p);
	}
	assert_string_equal(c.path, p);
	assert_string_equal(c.dir, tmpdir);
	check_shipped(&c, tmpdir);
	/* The route table builds from it and routes as documented. */
	{
		struct route_table *t = route_table_new(&c);
		static const char host[] =
			"45A68069-defc-4233-9865-6298d87053af.vm.vers.sh";
		struct route_match m;

		assert_non_null(t);
		assert_int_equal(route_lookup(t, &m, (const uint8_t *)host,
					      strlen(host), 443), ROUTE_OK);
		assert_int_equal(m.vm_port, 22);
		assert_int_equal(route_lookup(t, &m, (const uint8_t *)host,
					      strlen(host), 9000),
				 ROUTE_PORT_DENIED);
		route_table_free(t);
	}
	config_free(&c);
	config_errors_free(&e);
}

static void test_load_missing_file(void **state)
{
	struct config c;
	struct config_errors e;
	static const struct config zero;

	(void)state;
	assert_false(config_load(&c, &e, "/nonexistent/vmgate.yaml"));
	assert_int_equal(e.len, 1);
	assert_int_equal(e.v[0].line, 0);
	assert_non_null(strstr(e.v[0].msg, "No such file"));
	assert_memory_equal(&c, &zero, sizeof(c));
	config_free(&c);
	config_errors_free(&e);
}

/* What startup refuses, --check refuses: an empty token, one over 4 KiB,
 * a unix socket path longer than sun_path holds (all passed --check and
 * then failed vmgate's start, over and over under systemd). */
static void test_admin_token_and_unix(void **state)
{
	static const char big[5000] = { 'x' };
	struct config c;
	struct config_errors e;
	char y[512], name[200];

	(void)state;
	assert_int_equal(write_file("empty.token", " \n\t\n", 4), 0);
	assert_int_equal(write_file("big.token", big, sizeof(big)), 0);
	assert_int_equal(write_file("ok.token", "t0ken\n", 6), 0);

	assert_false(load(&c, &e, MIN "admin: { unix: a.sock, token_file: "
			  "empty.token }\n"));
	assert_int_equal(e.len, 1);
	assert_non_null(strstr(e.v[0].msg, "admin.token_file 'empty.token': "
				     "empty"));
	config_free(&c);
	config_errors_free(&e);

	assert_false(load(&c, &e, MIN "admin: { unix: a.sock, token_file: "
			  "big.token }\n"));
	assert_int_equal(e.len, 1);
	assert_non_null(strstr(e.v[0].msg, "larger than 4096 bytes"));
	config_free(&c);
	config_errors_free(&e);

	memset(name, 'a', 110);
	name[110] = '\0';
	snprintf(y, sizeof(y), MIN "admin: { unix: %s, token_file: ok.token "
		 "}\n", name);
	assert_false(load(&c, &e, y));
	assert_int_equal(e.len, 1);
	assert_non_null(strstr(e.v[0].msg, "longer than the 107 a Unix "
				     "socket's name holds"));
	config_free(&c);
	config_errors_free(&e);

	if (!load(&c, &e, MIN "admin: { unix: a.sock, token_file: ok.token "
		  "}\n")) {
		dump_errors(&e);
		fail_msg("a good token refused");
	}
	config_free(&c);
	config_errors_free(&e);
	for (const char *f = "empty.token"; f; f = NULL) {
		char p[512];

		unlink(tmp_path(p, sizeof(p), f));
		unlink(tmp_path(p, sizeof(p), "big.token"));
		unlink(tmp_path(p, sizeof(p), "ok.token"));
	}
}

/* Loaded as an unprivileged user (nobody) in a child: 0 when |y| loads
 * and |want| is NULL, or when it fails with |want| in its first error
 * and |missing| (if not NULL) among the files to watch; else 1. */
static int load_as_nobody(const char *dir, const char *y, const char *want,
			  const char *missing)
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return 1;
	if (pid == 0) {
		struct config c;
		struct config_errors e;
		bool ok, seen = missing == NULL;

		if (setgid(65534) || setuid(65534))
			_exit(2);
		ok = config_load_buf(&c, &e, "t.yaml", dir, (const uint8_t *)y,
				     strlen(y));
		if (!ok)
			config_errors_print(stderr, &e);
		for (size_t i = 0; !ok && i < e.missing_len; i++)
			seen = seen || !strcmp(e.missing[i], missing);
		if (want)
			_exit(!ok && e.len && strstr(e.v[0].msg, want) && seen
				      ? 0 : 1);
		_exit(ok ? 0 : 1);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return 1;
	return WEXITSTATUS(st);
}

/* A key in a folder vmgate's user may not enter (0700 here, as 0750
 * root:vmgate-signer would be): with a signer, the signer's to open (it
 * was refused as "not a regular file"); without one, an error that says
 * why, and the key is watched so that its mode put right reloads (it was
 * not). Needs root, to make the files and become nobody. */
static void test_key_folder_not_enterable(void **state)
{
	char dir[] = "/tmp/vmgate-test-keys-XXXXXX", p[512], key[512];
	const char *base = "listen:\n  ports: [443]\n"
			   "tls:\n  certificates:\n"
			   "    - { cert: cert.pem, key: keys/key.pem }\n";
	char y[512];

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	snprintf(p, sizeof(p), "%s/cert.pem", dir);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs("-----\n", f);
	fclose(f);
	assert_int_equal(chmod(p, 0644), 0);
	snprintf(p, sizeof(p), "%s/keys", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(key, sizeof(key), "%s/keys/key.pem", dir);
	f = fopen(key, "w");
	assert_non_null(f);
	fputs("-----\n", f);
	fclose(f);

	snprintf(y, sizeof(y), "%s  signer: /run/vmgate-signer/signer.sock\n",
		 base);
	assert_int_equal(load_as_nobody(dir, y, NULL, NULL), 0);
	assert_int_equal(load_as_nobody(dir, base, "Permission denied", key),
			 0);

	unlink(key);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/cert.pem", dir);
	unlink(p);
	rmdir(dir);
}

/* A directory named as the file: the reason, not "read error". */
static void test_load_directory(void **state)
{
	struct config c;
	struct config_errors e;

	(void)state;
	assert_false(config_load(&c, &e, "/tmp/"));
	assert_int_equal(e.len, 1);
	assert_non_null(strstr(e.v[0].msg, "Is a directory"));
	config_free(&c);
	config_errors_free(&e);
}

/* The files a config names that do not exist are listed, resolved, for a
 * caller to watch for; one that exists, or that exists and is not a
 * regular file, is not. */
static void test_load_lists_missing_files(void **state)
{
	static const char y[] =
		"listen:\n  ports: [443]\n"
		"tls:\n  certificates:\n"
		"    - { cert: later/new.pem, key: key.pem }\n"
		"    - { cert: cert.pem, key: adir }\n"
		"    - { cert: cert.pem, key: /nonexistent-vmgate/k.pem }\n";
	struct config c;
	struct config_errors e;
	char p[512], want[512];

	(void)state;
	assert_int_equal(write_file("missing.yaml", y, sizeof(y) - 1), 0);
	assert_false(config_load(&c, &e, tmp_path(p, sizeof(p),
						   "missing.yaml")));
	assert_int_equal(e.missing_len, 2);
	assert_string_equal(e.missing[0], tmp_path(want, sizeof(want),
						   "later/new.pem"));
	assert_string_equal(e.missing[1], "/nonexistent-vmgate/k.pem");
	assert_int_equal(e.len, 3);
	config_free(&c);
	config_errors_free(&e);
	assert_int_equal(e.missing_len, 0);
	assert_null(e.missing);
}

/* Defaults and normalisation */

static void test_defaults(void **state)
{
	struct config c;
	struct config_errors e;
	struct in6_addr any = IN6ADDR_ANY_INIT;

	(void)state;
	if (!load(&c, &e, MIN)) {
		dump_errors(&e);
		fail_msg("minimal config refused");
	}
	assert_int_equal(c.workers, 0);
	assert_int_equal(c.log_level, CFG_LOG_INFO);
	assert_memory_equal(&c.listen_addr, &any, sizeof(any));
	assert_int_equal(c.alpn_len, 0);
	assert_int_equal(c.domains_len, 0);
	assert_int_equal(c.vms_len, 0);
	assert_int_equal(c.limits.max_connections,
			 DEFAULT_MAX_CONNECTIONS);
	assert_int_equal(c.limits.handshake_timeout_ms,
			 DEFAULT_HANDSHAKE_TIMEOUT_MS);
	assert_int_equal(c.limits.connect_timeout_ms,
			 DEFAULT_CONNECT_TIMEOUT_MS);
	assert_int_equal(c.limits.idle_timeout_ms,
			 DEFAULT_IDLE_TIMEOUT_MS);
	assert_int_equal(c.limits.buffer_bytes, DEFAULT_BUFFER_BYTES);
	assert_false(c.metrics.per_vm);
	assert_int_equal(c.metrics.per_vm_max, DEFAULT_METRICS_PER_VM_MAX);
	config_free(&c);
	config_errors_free(&e);
}

static void test_values(void **state)
{
	static const char y[] =
		"workers: 8\n"
		"log_level: debug\n"
		"listen:\n"
		"  address: \"2001:db8::1\"\n"
		"  ports: [8080, \"3000-3002\", 443, 3001, \"443\", 1-2]\n"
		"tls:\n"
		"  certificates:\n"
		"    - { cert: cert.pem, key: /" "%s/key.pem }\n"
		"    - cert: adir/../cert.pem\n"
		"      key: key.pem\n"
		"  alpn: []\n"
		"  signer: run/signer.sock\n"
		"domains:\n"
		"  - suffix: \"*.VM.Vers.sh\"\n"
		"    port_map: { 443: 22, 80: 8080 }\n"
		"    proxy_protocol: v2\n"
		"    proxy_protocol_ports: [3000, 22]\n"
		"    vm_errors: http\n"
		"    tls: terminate\n"
		"    client_auth: { ca: cert.pem, required: false }\n"
		"  - { suffix: .Other.Example, proxy_protocol: v1, tls: passthrough }\n"
		"vms:\n"
		"  - { id: Web-1, address: \"FD00::1\" }\n"
		"  - { id: \"2\", address: \"fd00::2\" }\n"
		"limits:\n"
		"  max_connections: 1\n"
		"  handshake_timeout_ms: 86400000\n"
		"  buffer_bytes: 4096\n"
		"metrics: { per_vm: true, per_vm_max: 7 }\n";
	static const uint16_t ports[] = { 1, 2, 443, 3000, 3001, 3002, 8080 };
	struct config c;
	struct config_errors e;
	struct in6_addr a;
	char buf[1024], p[512];

	(void)state;
	snprintf(buf, sizeof(buf), y, tmpdir);
	if (!load(&c, &e, buf)) {
		dump_errors(&e);
		fail_msg("config refused");
	}
	assert_int_equal(c.workers, 8);
	assert_int_equal(c.log_level, CFG_LOG_DEBUG);
	inet_pton(AF_INET6, "2001:db8::1", &a);
	assert_memory_equal(&c.listen_addr, &a, sizeof(a));
	assert_int_equal(c.ports_len, sizeof(ports) / sizeof(ports[0]));
	for (size_t i = 0; i < c.ports_len; i++)
		if (c.ports[i] != ports[i])
			fail_msg("ports[%zu] = %u, want %u", i, c.ports[i],
				 ports[i]);
	assert_int_equal(c.certs_len, 2);
	/* Absolute paths are kept; "/" "//tmp/..." is still absolute. */
	snprintf(p, sizeof(p), "/%s/key.pem", tmpdir);
	assert_string_equal(c.certs[0].key_path, p);
	snprintf(p, sizeof(p), "%s/adir/../cert.pem", tmpdir);
	assert_string_equal(c.certs[1].cert_path, p);
	assert_int_equal(c.certs[1].line, 9);
	assert_int_equal(c.certs[1].col, 7);
	assert_int_equal(c.alpn_len, 0);
	/* Relative to the file; it need not exist yet. */
	snprintf(p, sizeof(p), "%s/run/signer.sock", tmpdir);
	assert_string_equal(c.signer_path, p);
	assert_int_equal(c.domains_len, 2);
	assert_string_equal(c.domains[0].suffix, "vm.vers.sh");
	assert_false(c.domains[0].has_allowed_ports);
	assert_int_equal(c.domains[0].port_map_len, 2);
	assert_int_equal(c.domains[0].proxy_protocol, CFG_PROXY_V2);
	assert_true(c.domains[0].has_proxy_protocol_ports);
	assert_int_equal(c.domains[0].proxy_protocol_ports_len, 2);
	assert_string_equal(c.domains[1].suffix, "other.example");
	assert_int_equal(c.domains[1].proxy_protocol, CFG_PROXY_V1);
	assert_true(c.domains[0].vm_errors_http);
	assert_false(c.domains[1].vm_errors_http);
	assert_false(c.domains[0].tls_passthrough);
	assert_true(c.domains[1].tls_passthrough);
	snprintf(p, sizeof(p), "%s/cert.pem", tmpdir);
	assert_string_equal(c.domains[0].client_ca_path, p);
	assert_false(c.domains[0].client_auth_required);
	assert_null(c.domains[1].client_ca_path);
	assert_false(c.domains[1].has_proxy_protocol_ports);
	assert_int_equal(c.vms_len, 2);
	assert_string_equal(c.vms[0].id, "web-1");
	inet_pton(AF_INET6, "fd00::1", &a);
	assert_memory_equal(&c.vms[0].addr, &a, sizeof(a));
	assert_string_equal(c.vms[1].id, "2");
	assert_true(c.metrics.per_vm);
	assert_int_equal(c.metrics.per_vm_max, 7);
	assert_int_equal(c.limits.max_connections, 1);
	assert_int_equal(c.limits.handshake_timeout_ms, 86400000);
	assert_int_equal(c.limits.buffer_bytes, 4096);
	assert_int_equal(c.limits.idle_timeout_ms,
			 DEFAULT_IDLE_TIMEOUT_MS);
	config_free(&c);
	config_errors_free(&e);
}

/* listen: any-port keys, and vms[].ports. */
static void test_anyport(void **state)
{
	static const char y[] =
		"listen:\n"
		"  addresses: [\"2001:db8::10\", 203.0.113.10, \"::\"]\n"
		"  ports: all\n"
		"  exclude_ports: [22, \"100-199\", 65535]\n"
		"  steering: sk_lookup\n"
		TLS
		"domains:\n"
		"  - { suffix: vm.test, port_map: { 443: 8100 } }\n"
		"vms:\n"
		"  - { id: a, address: \"fd00::1\", ports: [22, \"8000-8099\", "
		"8100, 443, \"1-65535\"] }\n"
		"  - { id: b, address: \"fd00::2\", ports: [22, \"8000-8099\", "
		"8101, 443] }\n"
		"  - { id: c, address: \"fd00::3\" }\n";
	struct config c;
	struct config_errors e;
	struct in6_addr a;
	char buf[64];

	(void)state;
	if (!load(&c, &e, y)) {
		dump_errors(&e);
		fail_msg("any-port config refused");
	}
	assert_int_equal(c.steering, CFG_STEER_SK_LOOKUP);
	assert_true(c.ports_all);
	assert_true(c.ports_wide);
	/* 65,535 ports less 22, 100..199 and 65535. */
	assert_int_equal(c.ports_len, 65535 - 1 - 100 - 1);
	assert_int_equal(c.ports[0], 1);
	assert_int_equal(c.ports[21], 23);
	assert_int_equal(c.ports[c.ports_len - 1], 65534);
	assert_int_equal(c.exclude_ports_len, 102);
	assert_int_equal(c.addrs_len, 3);
	inet_pton(AF_INET6, "2001:db8::10", &a);
	assert_memory_equal(&c.addrs[0], &a, sizeof(a));
	inet_pton(AF_INET6, "::ffff:203.0.113.10", &a);
	assert_memory_equal(&c.addrs[1], &a, sizeof(a));
	inet_pton(AF_INET6, "::", &a);
	assert_memory_equal(&c.addrs[2], &a, sizeof(a));

	/* Ranges merged: adjacent and overlapping ones become one. */
	assert_non_null(c.vms[0].ports);
	assert_int_equal(c.vms[0].ports->len, 1);
	assert_string_equal(route_vm_ports_fmt(buf, sizeof(buf),
					       c.vms[0].ports), "1-65535");
	assert_string_equal(route_vm_ports_fmt(buf, sizeof(buf),
					       c.vms[1].ports),
			    "22,443,8000-8099,8101");
	assert_true(route_vm_ports_allow(c.vms[1].ports, 22));
	assert_true(route_vm_ports_allow(c.vms[1].ports, 8000));
	assert_true(route_vm_ports_allow(c.vms[1].ports, 8099));
	assert_false(route_vm_ports_allow(c.vms[1].ports, 8100));
	assert_true(route_vm_ports_allow(c.vms[1].ports, 8101));
	assert_false(route_vm_ports_allow(c.vms[1].ports, 21));
	assert_false(route_vm_ports_allow(c.vms[1].ports, 65535));
	assert_null(c.vms[2].ports);
	assert_true(route_vm_ports_allow(c.vms[2].ports, 1));
	/* The route table applies them to the VM port, after port_map. */
	{
		struct route_table *t = route_table_new(&c);
		struct route_match m;

#define LOOK(host, port) \
	route_lookup(t, &m, (const uint8_t *)(host), strlen(host), (port))
		assert_non_null(t);
		assert_int_equal(LOOK("b.vm.test", 8101), ROUTE_OK);
		assert_int_equal(m.vm_port, 8101);
		assert_int_equal(LOOK("b.vm.test", 8100), ROUTE_VM_PORT_DENIED);
		/* 443 is VM port 8100: denied, though 443 is in the list. */
		assert_int_equal(LOOK("b.vm.test", 443), ROUTE_VM_PORT_DENIED);
		assert_int_equal(LOOK("a.vm.test", 443), ROUTE_OK);
		assert_int_equal(m.vm_port, 8100);
		assert_int_equal(LOOK("c.vm.test", 5), ROUTE_OK);
		assert_int_equal(LOOK("d.vm.test", 5), ROUTE_UNKNOWN_VM);
#undef LOOK
		route_table_free(t);
	}
	config_free(&c);
	config_errors_free(&e);

	/* Defaults: listen.address is the one address, auto steering, and
	 * a wide range is fine unless per-port listeners are asked for. */
	if (!load(&c, &e, "listen:\n  ports: [\"1-5000\"]\n" TLS)) {
		dump_errors(&e);
		fail_msg("a wide range refused");
	}
	assert_int_equal(c.steering, CFG_STEER_AUTO);
	assert_false(c.ports_all);
	assert_true(c.ports_wide);
	assert_int_equal(c.ports_len, 5000);
	assert_int_equal(c.addrs_len, 1);
	assert_memory_equal(&c.addrs[0], &c.listen_addr, sizeof(a));
	config_free(&c);
	config_errors_free(&e);
	if (!load(&c, &e, "listen:\n  ports: [\"1-1023\", 2000]\n"
		       "  steering: listeners\n" TLS)) {
		dump_errors(&e);
		fail_msg("1,024 ports refused with listeners");
	}
	assert_int_equal(c.steering, CFG_STEER_LISTENERS);
	assert_false(c.ports_wide);
	assert_int_equal(c.ports_len, 1024);
	config_free(&c);
	config_errors_free(&e);

	/* What exclude_ports leaves is what counts: 1,024 ports out of a
	 * range of 2,000 are fine for per-port listeners (refused before,
	 * the range being judged whole). */
	if (!load(&c, &e, "listen:\n  ports: [\"1-2000\"]\n"
		  "  exclude_ports: [\"1025-2000\"]\n  steering: listeners\n"
		  TLS)) {
		dump_errors(&e);
		fail_msg("1,024 ports after exclusion refused");
	}
	assert_int_equal(c.ports_len, 1024);
	assert_false(c.ports_wide);
	config_free(&c);
	config_errors_free(&e);
}

/* Null lists mean empty lists: "vms:" with nothing after it is how a
 * fleet without VMs reads. */
static void test_null_lists(void **state)
{
	struct config c;
	struct config_errors e;

	(void)state;
	if (!load(&c, &e, MIN "domains:\nvms: ~\n")) {
		dump_errors(&e);
		fail_msg("null lists refused");
	}
	assert_int_equal(c.domains_len, 0);
	assert_int_equal(c.vms_len, 0);
	config_free(&c);
	config_errors_free(&e);
}

/* Errors: one YAML text, the first error expected, and how many. */

struct error_case {
	const char *name;
	const char *yaml;
	unsigned line, col;
	const char *msg; /* substring of the first error */
	size_t count;    /* errors expected in all */
};

static const struct error_case error_cases[] = {
	/* Whole file */
	{ "empty", "", 1, 1, "empty configuration", 1 },
	{ "comments only", "# nothing\n", 1, 1, "empty configuration", 1 },
	{ "top list", "- a\n", 1, 1, "top level must be a mapping", 1 },
	{ "top scalar", "hello\n", 1, 1, "got a plain scalar", 1 },
	{ "syntax", "listen: [443\ntls: x\n", 2, 4,
	  "YAML: did not find expected ',' or ']'", 1 },
	{ "syntax indent", "a:\n  b: 1\n c: 2\n", 3, 2,
	  "YAML: did not find expected key", 1 },
	{ "tab", "a:\n\tb: 1\n", 2, 1, "YAML: found character that cannot "
	  "start any token", 1 },
	{ "bad utf-8", "a: \"\xff\"\n", 1, 5, "YAML: invalid leading UTF-8", 1 },
	{ "undefined alias", MIN "workers: *x\n", 6, 10,
	  "YAML: found undefined alias", 1 },
	{ "two documents", MIN "---\nworkers: 1\n", 7, 1,
	  "only one YAML document is allowed", 1 },
	{ "missing listen", TLS, 1, 1, "missing required key 'listen'", 1 },
	{ "missing tls", LISTEN, 1, 1, "missing required key 'tls'", 1 },
	{ "missing both", "workers: 1\n", 1, 1,
	  "missing required key 'listen'", 2 },
	{ "unknown key", "foo: 1\n" MIN, 1, 1, "unknown key 'foo'", 1 },
	/* The longest key list, whole (it was cut at 127 bytes). */
	{ "unknown limit", MIN "limits: {buffer_byte: 1}\n", 6, 10,
	  "unknown key 'buffer_byte' in limits (expected max_connections, "
	  "max_connections_per_ip, max_clienthello_bytes, drain_timeout_ms, "
	  "handshake_timeout_ms, connect_timeout_ms, idle_timeout_ms, "
	  "buffer_bytes)", 1 },
	{ "fleet without etcd", MIN "fleet: {}\n", 6, 8,
	  "missing required key 'etcd' in fleet", 1 },
	{ "fleet bad endpoint", MIN "fleet:\n  etcd:\n    endpoints: [x]\n",
	  8, 17, "fleet.etcd endpoint 'x': expected", 1 },
	{ "duplicate key", MIN "listen: {ports: [1]}\n", 6, 1,
	  "duplicate key 'listen' (first at line 1)", 1 },
	{ "non-scalar key", "[a]: 1\n" MIN, 1, 1, "expected a key string", 1 },

	/* workers, log_level */
	{ "workers negative", "workers: -1\n" MIN, 1, 10,
	  "workers: expected an integer in 0..4096, got '-1'", 1 },
	{ "workers float", "workers: 1.5\n" MIN, 1, 10,
	  "expected an integer in 0..4096, got '1.5'", 1 },
	{ "workers hex", "workers: 0x10\n" MIN, 1, 10, "got '0x10'", 1 },
	{ "workers too big", "workers: 99999999999999999999\n" MIN, 1, 10,
	  "got '99999999999999999999'", 1 },
	{ "workers quoted", "workers: \"4\"\n" MIN, 1, 10,
	  "expected an integer in 0..4096, got a quoted string", 1 },
	{ "workers list", "workers: [1]\n" MIN, 1, 10, "got a list", 1 },
	{ "workers null", "workers:\n" MIN, 1, 9, "got null", 1 },
	{ "log_level", "log_level: loud\n" MIN, 1, 12,
	  "log_level: expected one of error, warn, info, debug, got 'loud'",
	  1 },
	{ "log_level map", "log_level: {a: 1}\n" MIN, 1, 12,
	  "log_level: expected a string, got a mapping", 1 },

	/* listen */
	{ "listen list", "listen: [1]\n" TLS, 1, 9,
	  "listen: expected a mapping, got a list", 1 },
	{ "listen no ports", "listen:\n  address: \"::\"\n" TLS, 2, 3,
	  "missing required key 'ports' in listen", 1 },
	{ "listen ipv4", "listen:\n  address: 0.0.0.0\n  ports: [1]\n" TLS,
	  2, 12, "listen.address '0.0.0.0' is not IPv6", 1 },
	{ "listen garbage", "listen:\n  address: nope\n  ports: [1]\n" TLS,
	  2, 12, "listen.address 'nope' is not an IPv6 address", 1 },
	{ "listen unknown", "listen:\n  ports: [1]\n  port: 2\n" TLS, 3, 3,
	  "unknown key 'port' in listen (expected address, addresses, ports, "
	  "exclude_ports, steering)", 1 },
	{ "ports empty", "listen:\n  ports: []\n" TLS, 2, 10,
	  "listen.ports: must not be empty", 1 },
	{ "ports scalar", "listen:\n  ports: 443\n" TLS, 2, 10,
	  "listen.ports: expected a list, got a plain scalar", 1 },
	{ "port zero", "listen:\n  ports: [443, 0]\n" TLS, 2, 16,
	  "listen.ports: expected an integer in 1..65535, got '0'", 1 },
	{ "port too big", "listen:\n  ports: [65536]\n" TLS, 2, 11,
	  "got '65536'", 1 },
	{ "port word", "listen:\n  ports: [http]\n" TLS, 2, 11,
	  "'http' is not a port or a \"from-to\" range", 1 },
	{ "port map item", "listen:\n  ports: [{a: 1}]\n" TLS, 2, 11,
	  "expected a port 1..65535 or a \"from-to\" range string, got a "
	  "mapping", 1 },
	{ "range backwards", "listen:\n  ports: [\"5-3\"]\n" TLS, 2, 11,
	  "range '5-3' must satisfy 1 <= from <= to <= 65535", 1 },
	{ "range zero", "listen:\n  ports: [\"0-3\"]\n" TLS, 2, 11,
	  "range '0-3' must satisfy", 1 },
	{ "range too high", "listen:\n  ports: [65535-65536]\n" TLS, 2, 11,
	  "range '65535-65536' must satisfy", 1 },
	{ "range open", "listen:\n  ports: [\"1-\"]\n" TLS, 2, 11,
	  "'1-' is not a port", 1 },
	{ "range signed", "listen:\n  ports: [\"1--2\"]\n" TLS, 2, 11,
	  "'1--2' is not a port", 1 },
	{ "range too large", "listen:\n  ports: [\"1000-2024\"]\n"
	  "  steering: listeners\n" TLS, 2, 10,
	  "listen.ports: 1025 ports (after listen.exclude_ports), more than "
	  "1024, the most with steering: listeners", 1 },
	/* The total counts, not each range (64 ranges of 1,024 passed). */
	{ "ranges too many", "listen:\n  ports: [\"1-1000\", \"1001-2000\"]\n"
	  "  steering: listeners\n" TLS, 2, 10,
	  "listen.ports: 2000 ports (after listen.exclude_ports), more than "
	  "1024", 1 },
	{ "all with listeners", "listen:\n  steering: listeners\n  ports: all\n"
	  TLS, 3, 10, "listen.ports: all needs steering: sk_lookup", 1 },
	{ "ports word", "listen:\n  ports: every\n" TLS, 2, 10,
	  "listen.ports: expected a list, got a plain scalar", 1 },
	{ "steering bad", "listen:\n  ports: [1]\n  steering: ebpf\n" TLS, 3,
	  13, "listen.steering: expected auto, sk_lookup or listeners, got "
	  "'ebpf'", 1 },
	{ "addresses and address", "listen:\n  address: \"::\"\n"
	  "  addresses: [\"::1\"]\n  ports: [1]\n" TLS, 3, 14,
	  "give listen.address or listen.addresses, not both", 1 },
	{ "addresses empty", "listen:\n  addresses: []\n  ports: [1]\n" TLS, 2,
	  14, "listen.addresses: expected 1 to 256 addresses, got 0", 1 },
	{ "addresses bad", "listen:\n  addresses: [\"::1\", nope]\n"
	  "  ports: [1]\n" TLS, 2, 22, "listen.addresses: 'nope' is not an "
	  "IPv6 or IPv4 address", 1 },
	{ "addresses v4 any", "listen:\n  addresses: [0.0.0.0]\n  ports: [1]\n"
	  TLS, 2, 15, "use \"::\" for every address", 1 },
	{ "addresses twice", "listen:\n  addresses: [10.0.0.1, "
	  "\"::ffff:10.0.0.1\"]\n  ports: [1]\n" TLS, 2, 25,
	  "listen.addresses: ::ffff:10.0.0.1 is listed twice", 1 },
	{ "exclude all", "listen:\n  ports: [\"5-6\"]\n  exclude_ports: [5, 6]\n"
	  TLS, 2, 10, "listen.exclude_ports leaves no port", 1 },
	{ "exclude bad", "listen:\n  ports: all\n  exclude_ports: [0]\n" TLS,
	  3, 19, "listen.exclude_ports: expected an integer in 1..65535", 1 },
	{ "ports several", "listen:\n  ports: [0, x, \"9-1\"]\n" TLS, 2, 11,
	  "got '0'", 3 },

	/* tls */
	{ "tls scalar", LISTEN "tls: yes\n", 3, 6,
	  "tls: expected a mapping, got a plain scalar", 1 },
	{ "tls no certificates", LISTEN "tls:\n  alpn: [h2]\n", 4, 3,
	  "missing required key 'certificates' in tls", 1 },
	{ "certificates empty", LISTEN "tls:\n  certificates: []\n", 4, 17,
	  "tls.certificates: must not be empty", 1 },
	{ "certificates map", LISTEN "tls:\n  certificates: {cert: a}\n", 4,
	  17, "tls.certificates: expected a list, got a mapping", 1 },
	{ "certificate scalar", LISTEN "tls:\n  certificates: [cert.pem]\n", 4,
	  18, "tls.certificates entry: expected a mapping, got a plain scalar",
	  1 },
	{ "certificate no key", LISTEN "tls:\n  certificates:\n"
	  "    - { cert: cert.pem }\n", 5, 7,
	  "missing required key 'key' in tls.certificates entry", 1 },
	{ "certificate no cert", LISTEN "tls:\n  certificates:\n"
	  "    - key: key.pem\n", 5, 7, "missing required key 'cert'", 1 },
	{ "cert missing", LISTEN "tls:\n  certificates:\n"
	  "    - { cert: nope.pem, key: key.pem }\n", 5, 15,
	  "nope.pem': No such file or directory", 1 },
	{ "key missing", LISTEN "tls:\n  certificates:\n"
	  "    - { cert: cert.pem, key: sub/none.pem }\n", 5, 30,
	  "key file '", 1 },
	{ "cert is a directory", LISTEN "tls:\n  certificates:\n"
	  "    - { cert: adir, key: key.pem }\n", 5, 15,
	  "adir': not a regular file", 1 },
	{ "cert unknown key", LISTEN "tls:\n  certificates:\n"
	  "    - { cert: cert.pem, key: key.pem, chain: x }\n", 5, 39,
	  "unknown key 'chain' in tls.certificates entry (expected cert, key, ocsp)",
	  1 },
	{ "cert null", LISTEN "tls:\n  certificates:\n"
	  "    - { cert: , key: key.pem }\n", 5, 15,
	  "cert: expected a string, got null", 1 },
	{ "cert NUL", LISTEN "tls:\n  certificates:\n"
	  "    - { cert: \"cert.pem\\0x\", key: key.pem }\n", 5, 15,
	  "cert: contains a NUL byte", 1 },
	{ "alpn empty name", MIN "  alpn: [h2, \"\"]\n", 6, 14,
	  "tls.alpn: a protocol name is 1..255 bytes, this one has 0", 1 },
	{ "alpn list item", MIN "  alpn: [[h2]]\n", 6, 10,
	  "tls.alpn: expected a string, got a list", 1 },
	{ "alpn scalar", MIN "  alpn: h2\n", 6, 9,
	  "tls.alpn: expected a list, got a plain scalar", 1 },
	{ "tls unknown", MIN "  ciphers: [x]\n", 6, 3,
	  "unknown key 'ciphers' in tls", 1 },

	/* domains */
	{ "domains map", MIN "domains: {suffix: a}\n", 6, 10,
	  "domains: expected a list, got a mapping", 1 },
	{ "domain scalar", MIN "domains: [a.b]\n", 6, 11,
	  "domains entry: expected a mapping, got a plain scalar", 1 },
	{ "domain no suffix", MIN "domains:\n  - port_map: {1: 2}\n", 7, 5,
	  "missing required key 'suffix' in domains entry", 1 },
	{ "suffix invalid", MIN "domains:\n  - suffix: bad_name.sh\n", 7, 13,
	  "suffix 'bad_name.sh' is not a valid hostname", 1 },
	{ "suffix wildcard only", MIN "domains:\n  - suffix: \"*.\"\n", 7, 13,
	  "suffix '*.' is not a valid hostname", 1 },
	{ "suffix trailing dot", MIN "domains:\n  - suffix: vm.sh.\n", 7, 13,
	  "suffix 'vm.sh.' is not a valid hostname", 1 },
	{ "suffix duplicate", MIN "domains:\n  - suffix: vm.vers.sh\n"
	  "  - suffix: other.sh\n  - suffix: \"*.VM.vers.sh\"\n", 9, 13,
	  "duplicate domain suffix 'vm.vers.sh' (first at line 7)", 1 },
	{ "domain unknown", MIN "domains:\n  - suffix: a.sh\n    ports: [1]\n",
	  8, 5, "unknown key 'ports' in domains entry (expected suffix, "
	  "port_map, allowed_ports, proxy_protocol, proxy_protocol_ports, "
	  "vm_errors, tls, client_auth)", 1 },
	{ "client_auth no ca", MIN "domains:\n  - suffix: a.sh\n"
	  "    client_auth: { required: true }\n", 8, 18,
	  "missing required key 'ca' in client_auth", 1 },
	{ "client_auth required", MIN "domains:\n  - suffix: a.sh\n"
	  "    client_auth: { ca: cert.pem, required: yes }\n", 8, 44,
	  "client_auth.required: expected true or false, got 'yes'", 1 },
	{ "client_auth ca missing", MIN "domains:\n  - suffix: a.sh\n"
	  "    client_auth: { ca: nope.pem }\n", 8, 24,
	  "client_auth.ca file", 1 },
	{ "client_auth passthrough", MIN "domains:\n  - suffix: a.sh\n"
	  "    tls: passthrough\n    client_auth: { ca: cert.pem }\n", 7, 13,
	  "domain 'a.sh': client_auth needs tls: terminate", 1 },
	{ "tls value", MIN "domains:\n  - suffix: a.sh\n"
	  "    tls: pass\n", 8, 10,
	  "tls: expected one of terminate, passthrough, got 'pass'", 1 },
	{ "vm_errors value", MIN "domains:\n  - suffix: a.sh\n"
	  "    vm_errors: html\n", 8, 16,
	  "vm_errors: expected one of alert, http, got 'html'", 1 },
	{ "proxy_protocol value", MIN "domains:\n  - suffix: a.sh\n"
	  "    proxy_protocol: v3\n", 8, 21,
	  "proxy_protocol: expected one of v1, v2, off, got 'v3'", 1 },
	{ "proxy_protocol_ports empty", MIN "domains:\n  - suffix: a.sh\n"
	  "    proxy_protocol_ports: []\n", 8, 27,
	  "proxy_protocol_ports: must not be empty", 1 },
	{ "port_map list", MIN "domains:\n  - suffix: a.sh\n"
	  "    port_map: [443]\n", 8, 15,
	  "port_map: expected a mapping of listener port to VM port, got a "
	  "list", 1 },
	{ "port_map key", MIN "domains:\n  - suffix: a.sh\n"
	  "    port_map: { ssh: 22 }\n", 8, 17,
	  "port_map key: expected an integer in 1..65535, got 'ssh'", 1 },
	{ "port_map value", MIN "domains:\n  - suffix: a.sh\n"
	  "    port_map: { 443: 0 }\n", 8, 22,
	  "port_map value: expected an integer in 1..65535, got '0'", 1 },
	{ "port_map duplicate", MIN "domains:\n  - suffix: a.sh\n"
	  "    port_map: { 443: 22, 443: 23 }\n", 8, 26,
	  "port_map: duplicate listener port 443", 1 },
	{ "allowed_ports empty", MIN "domains:\n  - suffix: a.sh\n"
	  "    allowed_ports: []\n", 8, 20, "allowed_ports: must not be empty",
	  1 },
	{ "allowed_ports range", MIN "domains:\n  - suffix: a.sh\n"
	  "    allowed_ports: [\"1-70000\"]\n", 8, 21,
	  "allowed_ports: range '1-70000' must satisfy", 1 },
	{ "allowed_ports scalar", MIN "domains:\n  - suffix: a.sh\n"
	  "    allowed_ports: 443\n", 8, 20,
	  "allowed_ports: expected a list, got a plain scalar", 1 },

	/* vms */
	{ "vms map", MIN "vms: {id: a}\n", 6, 6,
	  "vms: expected a list, got a mapping", 1 },
	{ "vm no address", MIN "vms:\n  - { id: a }\n", 7, 5,
	  "missing required key 'address' in vms entry", 1 },
	{ "vm no id", MIN "vms:\n  - { address: \"fd00::1\" }\n", 7, 5,
	  "missing required key 'id' in vms entry", 1 },
	{ "vm id dotted", MIN "vms:\n  - { id: a.b, address: \"fd00::1\" }\n",
	  7, 11, "vm id 'a.b' is not one DNS label", 1 },
	{ "vm id underscore", MIN "vms:\n  - { id: a_b, address: \"::1\" }\n",
	  7, 11, "vm id 'a_b' is not one DNS label", 1 },
	{ "vm id hyphen", MIN "vms:\n  - { id: -ab, address: \"::1\" }\n",
	  7, 11, "vm id '-ab' is not one DNS label", 1 },
	{ "vm id long", MIN "vms:\n  - { id: "
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,"
	  " address: \"::1\" }\n", 7, 11, "is not one DNS label", 1 },
	{ "vm id list", MIN "vms:\n  - { id: [a], address: \"::1\" }\n", 7,
	  11, "vm id: expected a string, got a list", 1 },
	{ "vm ipv4", MIN "vms:\n  - { id: a, address: \"10.0.0.1\" }\n", 7, 23,
	  "address '10.0.0.1' is not IPv6: vmgate reaches VMs over IPv6 only",
	  1 },
	{ "vm ipv4 plain", MIN "vms:\n  - id: a\n    address: 10.0.0.1\n", 8,
	  14, "address '10.0.0.1' is not IPv6", 1 },
	{ "vm ipv4-mapped", MIN "vms:\n  - { id: a, address: \"::ffff:10.0.0.1\""
	  " }\n", 7, 23, "address '::ffff:10.0.0.1' is not IPv6", 1 },
	{ "vm address garbage", MIN "vms:\n  - { id: a, address: \"fd00::1::2\""
	  " }\n", 7, 23, "address 'fd00::1::2' is not an IPv6 address", 1 },
	{ "vm address zone", MIN "vms:\n  - { id: a, address: \"fe80::1%eth0\""
	  " }\n", 7, 23, "is not an IPv6 address", 1 },
	{ "vm duplicate", MIN "vms:\n  - { id: web, address: \"::1\" }\n"
	  "  - { id: db, address: \"::2\" }\n  - { id: WEB, address: \"::3\" }\n",
	  9, 11, "duplicate vm id 'web' (first at line 7)", 1 },
	{ "vm duplicates", MIN "vms:\n  - { id: a, address: \"::1\" }\n"
	  "  - { id: a, address: \"::2\" }\n  - { id: a, address: \"::3\" }\n",
	  8, 11, "duplicate vm id 'a' (first at line 7)", 2 },
	{ "vm unknown", MIN "vms:\n  - { id: a, address: \"::1\", port: 1 }\n",
	  7, 30, "unknown key 'port' in vms entry (expected id, address, "
	  "ports)", 1 },
	{ "vm ports empty", MIN "vms:\n  - { id: a, address: \"::1\", ports: [] }\n",
	  7, 37, "vm ports: must not be empty", 1 },
	{ "vm ports bad", MIN "vms:\n  - { id: a, address: \"::1\", "
	  "ports: [\"9-1\"] }\n", 7, 38, "vm ports: range '9-1' must satisfy", 1 },

	/* limits */
	{ "limits list", MIN "limits: [1]\n", 6, 9,
	  "limits: expected a mapping, got a list", 1 },
	{ "max_connections 0", MIN "limits: { max_connections: 0 }\n", 6, 28,
	  "max_connections: expected an integer in 1..10000000, got '0'", 1 },
	{ "max_connections big", MIN "limits: { max_connections: 10000001 }\n",
	  6, 28, "got '10000001'", 1 },
	{ "handshake 0", MIN "limits: { handshake_timeout_ms: 0 }\n", 6, 33,
	  "handshake_timeout_ms: expected an integer in 1..86400000", 1 },
	{ "connect big", MIN "limits: { connect_timeout_ms: 86400001 }\n", 6,
	  31, "connect_timeout_ms: expected an integer in 1..86400000", 1 },
	{ "idle float", MIN "limits: { idle_timeout_ms: 1e3 }\n", 6, 28,
	  "idle_timeout_ms: expected an integer in 1..86400000, got '1e3'", 1 },
	{ "buffer small", MIN "limits: { buffer_bytes: 4095 }\n", 6, 25,
	  "buffer_bytes: expected an integer in 4096..16777216, got '4095'", 1 },
	{ "buffer big", MIN "limits: { buffer_bytes: 16777217 }\n", 6, 25,
	  "got '16777217'", 1 },
	{ "limits unknown", MIN "limits: { max_conns: 1 }\n", 6, 11,
	  "unknown key 'max_conns' in limits", 1 },
	{ "per ip negative", MIN "limits: { max_connections_per_ip: -1 }\n", 6,
	  35, "max_connections_per_ip: expected an integer in 0..10000000", 1 },
	{ "hello small", MIN "limits: { max_clienthello_bytes: 511 }\n", 6, 34,
	  "max_clienthello_bytes: expected an integer in 512..", 1 },
	{ "drain string", MIN "limits: { drain_timeout_ms: soon }\n", 6, 29,
	  "drain_timeout_ms: expected an integer", 1 },

	/* metrics */
	{ "metrics per_vm", MIN "metrics: { per_vm: on }\n", 6, 20,
	  "metrics.per_vm: expected true or false, got 'on'", 1 },
	{ "metrics per_vm_max", MIN "metrics: { per_vm_max: 0 }\n", 6, 24,
	  "metrics.per_vm_max: expected an integer in 1..100000", 1 },
	{ "metrics unknown", MIN "metrics: { per_vm_cap: 3 }\n", 6, 12,
	  "unknown key 'per_vm_cap' in metrics", 1 },

	/* admin */
	{ "admin scalar", MIN "admin: yes\n", 6, 8,
	  "admin: expected a mapping", 1 },
	{ "admin empty", MIN "admin: { state_file: s.json }\n", 6, 8,
	  "admin: needs listen or unix", 1 },
	{ "admin no token", MIN "admin: { listen: \"[::1]:9901\" }\n", 6, 8,
	  "a TCP listener needs token_file", 1 },
	{ "admin bad listen", MIN "admin: { unix: a.sock, listen: \"::1:9901\" }\n",
	  6, 32, "admin.listen: expected \"[ipv6]:port\"", 1 },
	{ "admin bad port", MIN "admin: { unix: a.sock, listen: \"[::1]:0\" }\n",
	  6, 32, "admin.listen: expected", 1 },
	{ "admin token missing", MIN "admin: { unix: a.sock, token_file: nope }\n",
	  6, 36, "admin.token_file file", 1 },
	{ "admin unknown", MIN "admin: { unix: a.sock, port: 1 }\n", 6, 24,
	  "unknown key 'port' in admin", 1 },
	{ "signer empty", MIN "  signer: \"\"\n", 6, 11,
	  "tls.signer: must not be empty", 1 },
	{ "signer list", MIN "  signer: [a]\n", 6, 11, "tls.signer: expected",
	  1 },
	{ "alpn_ports list", MIN "  alpn_ports: [1]\n", 6, 15,
	  "tls.alpn_ports: expected a mapping", 1 },
	{ "alpn_ports port", MIN "  alpn_ports: { 0: [h2] }\n", 6, 17,
	  "tls.alpn_ports port: expected an integer in 1..65535", 1 },
	{ "alpn_ports twice", MIN "  alpn_ports: { 3000: [h2], 3000: [x] }\n", 6,
	  29, "port 3000 given twice", 1 },
	{ "alpn_ports name", MIN "  alpn_ports: { 3000: [\"\"] }\n", 6, 24,
	  "tls.alpn_ports list: a protocol name is 1..255 bytes", 1 },
	{ "ocsp without key", LISTEN "tls:\n  certificates:\n    - { cert: cert.pem, "
	  "ocsp: cert.pem }\n", 5, 7, "missing required key 'key'", 1 },
	{ "ocsp missing", LISTEN "tls:\n  certificates:\n    - { cert: cert.pem, "
	  "key: key.pem, ocsp: o.der }\n", 5, 45, "ocsp file", 1 },

	/* The loader goes on after an error. */
	{ "many errors", "workers: x\nlog_level: y\nlisten: {ports: [0]}\n"
	  "tls: {certificates: []}\nlimits: {buffer_bytes: 1}\n", 1, 10,
	  "workers:", 5 },
};

static void test_errors(void **state)
{
	size_t bad = 0;

	(void)state;
	/* Report every mismatching case, not just the first. */
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]);
	     i++) {
		const struct error_case *tc = &error_cases[i];
		static const struct config zero;
		struct config_errors e;
		struct config c;
		bool ok;

		ok = load(&c, &e, tc->yaml);
		if (ok || e.len == 0) {
			print_error("case '%s': loaded, want an error\n",
				    tc->name);
			bad++;
		} else if (e.v[0].line != tc->line || e.v[0].col != tc->col ||
			   !strstr(e.v[0].msg, tc->msg) || e.len != tc->count) {
			dump_errors(&e);
			print_error("case '%s': got %zu error(s), first %u:%u "
				    "'%s'; want %zu, first %u:%u '%s'\n",
				    tc->name, e.len, e.v[0].line, e.v[0].col,
				    e.v[0].msg, tc->count, tc->line, tc->col,
				    tc->msg);
			bad++;
		} else if (memcmp(&c, &zero, sizeof(c))) {
			print_error("case '%s': config not zero on failure\n",
				    tc->name);
			bad++;
		} else if (strcmp(e.file, "t.yaml")) {
			print_error("case '%s': errs.file is '%s'\n", tc->name,
				    e.file);
			bad++;
		}
		config_free(&c);
		config_errors_free(&e);
	}
	if (bad)
		fail_msg("%zu of %zu error cases failed", bad,
			 sizeof(error_cases) / sizeof(error_cases[0]));
}

/* Errors stop at 100, whatever the file holds. */
static void test_error_cap(void **state)
{
	struct config_errors e;
	struct config c;
	size_t cap = 64 + 150 * 40, off;
	char *y = malloc(cap);

	(void)state;
	assert_non_null(y);
	off = (size_t)snprintf(y, cap, "%s", MIN "vms:\n");
	for (int i = 0; i < 150; i++)
		off += (size_t)snprintf(y + off, cap - off,
					"  - { id: a%d, address: x }\n", i);
	assert_false(load(&c, &e, y));
	assert_int_equal(e.len, 100);
	assert_int_equal(e.v[99].line, 6 + 100);
	config_free(&c);
	config_errors_free(&e);
	free(y);
}

static void test_print(void **state)
{
	struct config_errors e;
	struct config c;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	assert_false(load(&c, &e, "workers: x\n" MIN));
	f = open_memstream(&out, &len);
	assert_non_null(f);
	config_errors_print(f, &e);
	fclose(f);
	assert_string_equal(out, "t.yaml:1:10: workers: expected an integer "
			    "in 0..4096, got 'x'\n");
	free(out);
	config_free(&c);
	config_errors_free(&e);
}

/* Hostile values do not reach an operator's terminal as they are. */
static void test_message_sanitised(void **state)
{
	struct config_errors e;
	struct config c;
	char y[512];

	(void)state;
	snprintf(y, sizeof(y), "%s", MIN "log_level: \"\\e[31mred\"\n");
	assert_false(load(&c, &e, y));
	assert_int_equal(e.len, 1);
	assert_null(strchr(e.v[0].msg, '\x1b'));
	assert_non_null(strstr(e.v[0].msg, "'\\x1b[31mred'"));
	config_free(&c);
	config_errors_free(&e);
}

static void test_free_zero(void **state)
{
	struct config c = { 0 };
	struct config_errors e = { 0 };

	(void)state;
	config_free(NULL);
	config_free(&c);
	config_errors_free(NULL);
	config_errors_free(&e);
}

/* Leak check without a sanitizer: every path, many times, and the heap
 * must end where it started. glibc's tcache keeps freed chunks counted as
 * in use, so the rounds run in a child exec'd with the tcache off, where
 * mallinfo2 is exact. (Under ASan or valgrind mallinfo2 says little; they
 * check leaks themselves.) */
static int leak_rounds(void)
{
	struct mallinfo2 before = { 0 }, after;
	size_t len;
	char *y = read_all(SHIPPED, &len);

	if (!y)
		return 2;
	/* Round 0 warms up libc's own lazy allocations (stdio, strerror). */
	for (int round = 0; round < 4; round++) {
		struct config_errors e;
		struct config c;
		struct route_table *t;

		for (size_t i = 0;
		     i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
			load(&c, &e, error_cases[i].yaml);
			config_free(&c);
			config_errors_free(&e);
		}
		if (!config_load_buf(&c, &e, "a", tmpdir, (const uint8_t *)y,
				     len))
			return 3;
		t = route_table_new(&c);
		if (!t)
			return 4;
		route_table_free(t);
		config_free(&c);
		config_errors_free(&e);
		if (round == 0)
			before = mallinfo2();
	}
	after = mallinfo2();
	free(y);
	if (after.uordblks != before.uordblks) {
		fprintf(stderr, "heap grew by %zd bytes\n",
			(ssize_t)(after.uordblks - before.uordblks));
		return 1;
	}
	return 0;
}

static void test_no_leak(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0", 1);
		/* argv[0], not /proc/self/exe, which under valgrind is
		 * valgrind itself. */
		execlp(self, self, "--leak-child", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("leak check child failed (status %#x): 1 = heap "
			 "grew, 2-4 = setup, 127 = exec", status);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_buf),
		cmocka_unit_test(test_shipped_file),
		cmocka_unit_test(test_load_missing_file),
		cmocka_unit_test(test_load_directory),
		cmocka_unit_test(test_admin_token_and_unix),
		cmocka_unit_test(test_key_folder_not_enterable),
		cmocka_unit_test(test_load_lists_missing_files),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_anyport),
		cmocka_unit_test(test_null_lists),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_error_cap),
		cmocka_unit_test(test_print),
		cmocka_unit_test(test_message_sanitised),
		cmocka_unit_test(test_free_zero),
		cmocka_unit_test(test_no_leak),
	};

	self = argv[0];
	if (argc == 2 && !strcmp(argv[1], "--leak-child")) {
		int rc;

		if (group_setup(NULL))
			return 2;
		rc = leak_rounds();
		group_teardown(NULL);
		return rc;
	}
	return cmocka_run_group_tests_name("config", tests, group_setup,
					   group_teardown);
}
