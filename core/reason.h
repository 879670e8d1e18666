/* core/reason.h: every way a client connection ends, in one table.
 *
 * A connection ends with exactly one reason. Its name is the reason= of
 * the log line (byte for byte: tests and operators grep them) and the
 * label of its counter in /metrics; its family says which line and which
 * counter:
 *
 *   REASON_CLOSE   the `close` line (its level below), and
 *                  vmgate_connections_closed_total{outcome="NAME"};
 *   REASON_REJECT  refused before the handshake: the `reject` line, or
 *                  for connect_error the `connect_error` line and for
 *                  max_connections* the `overload` line, all WARN; and
 *                  vmgate_rejects_total{reason="NAME"}.
 *
 * Whoever logs a reason counts it in the same place (metrics_count), so
 * nothing is logged and not counted. README.md's Logs section lists every
 * name here; tests/unit/test_reason.c checks that it does.
 */
#ifndef VMGATE_CORE_REASON_H
#define VMGATE_CORE_REASON_H

#include <stdbool.h>
#include <stddef.h>

#include "core/log.h"

enum reason_family {
	REASON_CLOSE,
	REASON_REJECT,
};

/* X(ENUM, "name", family, level of its line) */
#define CONN_REASONS(X)                                                      \
	X(DONE, "done", REASON_CLOSE, LOG_INFO)                              \
	X(IDLE_TIMEOUT, "idle_timeout", REASON_CLOSE, LOG_INFO)              \
	X(HANDSHAKE_TIMEOUT, "handshake_timeout", REASON_CLOSE, LOG_INFO)    \
	X(TLS_ERROR, "tls_error", REASON_CLOSE, LOG_WARN)                    \
	X(CLIENT_RESET, "client_reset", REASON_CLOSE, LOG_INFO)              \
	X(CLIENT_ERROR, "client_error", REASON_CLOSE, LOG_INFO)              \
	X(CLIENT_EOF, "client_eof", REASON_CLOSE, LOG_INFO)                  \
	X(CLIENT_EOF_IN_HANDSHAKE, "client_eof_in_handshake", REASON_CLOSE,  \
	  LOG_INFO)                                                          \
	X(VM_RESET, "vm_reset", REASON_CLOSE, LOG_INFO)                      \
	X(VM_ERROR, "vm_error", REASON_CLOSE, LOG_INFO)                      \
	X(OUT_OF_MEMORY, "out_of_memory", REASON_CLOSE, LOG_INFO)            \
	X(SHUTDOWN, "shutdown", REASON_CLOSE, LOG_INFO)                      \
	X(NO_SNI, "no_sni", REASON_REJECT, LOG_WARN)                         \
	X(BAD_HOST, "bad_host", REASON_REJECT, LOG_WARN)                     \
	X(UNKNOWN_DOMAIN, "unknown_domain", REASON_REJECT, LOG_WARN)         \
	X(UNKNOWN_VM, "unknown_vm", REASON_REJECT, LOG_WARN)                 \
	X(PORT_DENIED, "port_denied", REASON_REJECT, LOG_WARN)               \
	X(NOT_TLS, "not_tls", REASON_REJECT, LOG_WARN)                       \
	X(BAD_HELLO, "bad_hello", REASON_REJECT, LOG_WARN)                   \
	X(TOO_LARGE, "too_large", REASON_REJECT, LOG_WARN)                   \
	X(NO_COMMON_SIGALG, "no_common_sigalg", REASON_REJECT, LOG_WARN)     \
	X(CONNECT_ERROR, "connect_error", REASON_REJECT, LOG_WARN)           \
	X(MAX_CONNECTIONS, "max_connections", REASON_REJECT, LOG_WARN)       \
	X(MAX_CONNECTIONS_PER_IP, "max_connections_per_ip", REASON_REJECT,   \
	  LOG_WARN)

/* REASON_NONE (0) is no reason: a decision that is not a rejection, a
 * zeroed struct. It has no name and no counter. */
enum conn_reason {
	REASON_NONE,
#define REASON_ENUM(e, name, family, level) REASON_##e,
	CONN_REASONS(REASON_ENUM)
#undef REASON_ENUM
	REASON_COUNT,
};

/* The name, or NULL for REASON_NONE and values past the last. */
const char *reason_name(enum conn_reason r);
enum reason_family reason_family(enum conn_reason r);
enum log_level reason_level(enum conn_reason r);

/* reason_from_name finds the reason named by the |len| bytes at |name|;
 * false if none is. */
bool reason_from_name(enum conn_reason *out, const char *name, size_t len);

#endif
