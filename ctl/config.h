/* ctl/config.h: the appliance.yaml loader (ctl/config/: load.c walks the
 * document, one file per section holds that section's keys).
 *
 * config_load() turns the file into a struct config (route/config-t.h), or
 * into a list of errors, each with the line and column (1-based) it was
 * found at. It checks everything that can be checked without TLS: types,
 * ranges, unknown keys, duplicates, hostnames, IPv6 addresses, that
 * certificate and key files are readable. A config that loaded is
 * complete: every default is filled in.
 *
 * Relative paths in the file are relative to the file's directory; the
 * loaded paths are already resolved against it.
 */
#ifndef VMGATE_CTL_CONFIG_H
#define VMGATE_CTL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "route/config-t.h"

struct config_error {
	unsigned line, col; /* 1-based; 0:0 when not tied to a place */
	char msg[320]; /* an unknown key, 64 bytes shown, and every key */
};

struct config_errors {
	const char *file; /* as given to config_load; borrowed */
	struct config_error *v;
	size_t len;
	/* Files the config names that do not exist (ENOENT), resolved: a
	 * caller may watch for their arrival. Owned. */
	char **missing;
	size_t missing_len;
};

/* config_load reads and validates |path|. On success it fills |out| and
 * returns true; on failure |out| is left all-zero, |errs| holds one entry
 * per problem found (the loader goes on after an error where it can, so
 * one run reports many) and it returns false. Free both with the
 * functions below in either case. */
bool config_load(struct config *out, struct config_errors *errs,
		 const char *path);

/* config_load_buf is config_load on bytes already in memory: |name| is used
 * in messages and |dir| resolves relative paths. For tests and fuzzing. */
bool config_load_buf(struct config *out, struct config_errors *errs,
		     const char *name, const char *dir, const uint8_t *buf,
		     size_t buf_len);

/* config_errors_print writes each error as "FILE:LINE:COL: message\n". */
void config_errors_print(FILE *f, const struct config_errors *errs);

void config_free(struct config *c);         /* NULL and zero are fine */
void config_errors_free(struct config_errors *errs);

#endif
