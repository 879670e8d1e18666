/* fuzz/config.c: libFuzzer target for the appliance.yaml loader
 * (config_load_buf in ctl/config/, libyaml underneath), and for
 * route_table_new on whatever it accepts.
 *
 * Input: the YAML bytes, as they would be in the file. Relative paths in
 * it resolve against a scratch directory holding the readable files c.pem,
 * k.pem, cert.pem and key.pem and a directory sub/, so that the success
 * path is reachable (the loader only checks that the files are readable).
 *
 * Invariants checked (abort on violation; LeakSanitizer checks the rest):
 *   - the loader either succeeds with no errors, or fails with at least
 *     one; on failure the config is all-zero;
 *   - every error has a message, and a line:col inside the input (1-based,
 *     at most one past its last line or column); only "out of memory" may
 *     have no place;
 *   - a loaded config is complete and valid: ports sorted, unique and
 *     non-empty, certificates non-empty with both paths, ALPN names 1..255
 *     bytes, suffixes and vm ids valid lowercase hostnames, vm ids one
 *     label, the defaults or values in range in limits;
 *   - the route table builds from it, and every vm is found under every
 *     domain as itself (unless the domain's policy denies the port).
 *
 * Seed corpus: fuzz/corpus/config/ (appliance.yaml and variants, every
 * error the unit tests provoke); dictionary: fuzz/config.dict.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz/testcert.h"
#include "ctl/config.h"
#include "route/route.h"

#define check(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "config: %s:%d: %s\n", __FILE__,   \
				__LINE__, #cond);                          \
			abort();                                           \
		}                                                          \
	} while (0)

static const char *dir;
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const files[] = { "c.pem", "k.pem", "cert.pem",
					     "key.pem" };
	char path[256];

	dir = testcert_tmpdir("config");
	devnull = fopen("/dev/null", "w");
	check(dir != NULL && devnull != NULL);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		f = fopen(path, "w");
		check(f != NULL);
		fputs("not checked by the loader\n", f);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/sub", dir);
	check(mkdir(path, 0700) == 0 || errno == EEXIST);
	return 0;
}

static bool is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static bool valid_host(const char *s, bool one_label)
{
	char out[256];
	size_t len;

	return route_host_normalize(out, &len, sizeof(out), (const uint8_t *)s,
				    strlen(s)) &&
	       strcmp(out, s) == 0 && (!one_label || !strchr(s, '.'));
}

static void check_loaded(const struct config *c)
{
	check(c->path && c->dir);
	check(c->log_level <= CFG_LOG_DEBUG);
	check(c->ports && c->ports_len > 0);
	for (size_t i = 0; i < c->ports_len; i++)
		check(c->ports[i] >= 1 && (i == 0 || c->ports[i - 1] < c->ports[i]));
	check(c->certs && c->certs_len > 0);
	for (size_t i = 0; i < c->certs_len; i++)
		check(c->certs[i].cert_path && c->certs[i].key_path &&
		      c->certs[i].line >= 1 && c->certs[i].col >= 1);
	for (size_t i = 0; i < c->alpn_len; i++)
		check(strlen(c->alpn[i]) >= 1 && strlen(c->alpn[i]) <= 255);
	for (size_t i = 0; i < c->domains_len; i++) {
		const struct config_domain *d = &c->domains[i];

		check(d->suffix && valid_host(d->suffix, false));
		for (size_t j = 0; j < d->port_map_len; j++)
			check(d->port_map[j].listen_port >= 1 &&
			      d->port_map[j].vm_port >= 1);
		if (d->has_allowed_ports)
			check(d->allowed_ports_len > 0);
		for (size_t j = 0; j < d->allowed_ports_len; j++)
			check(d->allowed_ports[j] >= 1);
		check(d->proxy_protocol <= CFG_PROXY_V2);
		if (d->has_proxy_protocol_ports)
			check(d->proxy_protocol_ports_len > 0);
		for (size_t j = 0; j < d->proxy_protocol_ports_len; j++)
			check(d->proxy_protocol_ports[j] >= 1);
		for (size_t j = 0; j < i; j++)
			check(strcmp(c->domains[j].suffix, d->suffix) != 0);
	}
	for (size_t i = 0; i < c->vms_len; i++) {
		check(c->vms[i].id && valid_host(c->vms[i].id, true));
		/* Bounded: the duplicate check is the loader's to do fast. */
		for (size_t j = 0; j < i && j < 64; j++)
			check(strcmp(c->vms[j].id, c->vms[i].id) != 0);
	}
	check(c->limits.max_connections >= 1);
	check(c->limits.handshake_timeout_ms >= 1);
	check(c->limits.connect_timeout_ms >= 1);
	check(c->limits.idle_timeout_ms >= 1);
	check(c->limits.buffer_bytes >= 4096);
}

static void check_table(const struct config *c)
{
	struct route_table *t = route_table_new(c);
	char host[600];

	check(t != NULL);
	for (size_t i = 0; i < c->vms_len && i < 16; i++) {
		for (size_t j = 0; j < c->domains_len && j < 16; j++) {
			const struct config_domain *d = &c->domains[j];
			uint16_t port = c->ports[0];
			struct route_match m;
			enum route_verdict v;
			int n;

			n = snprintf(host, sizeof(host), "%s.%s", c->vms[i].id,
				     d->suffix);
			check(n > 0 && (size_t)n < sizeof(host));
			v = route_lookup(t, &m, (const uint8_t *)host,
					 (size_t)n, port);
			if (n > 253) {
				check(v == ROUTE_BAD_HOST);
				continue;
			}
			/* No other suffix can be longer and still match
			 * "id.suffix": the prefix is exactly the vm id. */
			check(v == ROUTE_OK || v == ROUTE_PORT_DENIED ||
			      v == ROUTE_VM_PORT_DENIED);
			if (v == ROUTE_OK)
				check(strcmp(m.vm_id, c->vms[i].id) == 0);
		}
	}
	route_table_free(t);
}

/* Lines and the longest line, counting every byte libyaml might take as a
 * break: the bound a line:col must stay within. */
static void extent(const uint8_t *data, size_t size, size_t *lines,
		   size_t *cols)
{
	size_t col = 0;

	*lines = 1;
	*cols = 0;
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\n' || data[i] == '\r' || data[i] >= 0x80) {
			(*lines)++;
			col = 0;
		} else {
			col++;
		}
		if (col > *cols)
			*cols = col;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	struct config_errors e;
	size_t lines, cols;
	bool ok;

	ok = config_load_buf(&c, &e, "fuzz.yaml", dir, data, size);
	check(e.file != NULL && strcmp(e.file, "fuzz.yaml") == 0);
	if (ok) {
		check(e.len == 0);
		check_loaded(&c);
		check_table(&c);
	} else {
		check(e.len >= 1 && e.v != NULL);
		check(is_zero(&c, sizeof(c)));
		extent(data, size, &lines, &cols);
		for (size_t i = 0; i < e.len; i++) {
			const struct config_error *er = &e.v[i];

			check(memchr(er->msg, '\0', sizeof(er->msg)) != NULL);
			check(er->msg[0] != '\0');
			if (er->line == 0) {
				check(er->col == 0);
				check(strcmp(er->msg, "out of memory") == 0);
				continue;
			}
			check(er->col >= 1);
			/* libyaml counts columns in characters: a byte bound
			 * is looser but always holds. */
			check(er->line <= lines + 1);
			check(er->col <= size + 2);
		}
		config_errors_print(devnull, &e);
	}
	config_errors_free(&e);
	config_free(&c);
	return 0;
}
