/* core/metrics.c: see metrics.h. */
#include "core/metrics.h"

#include <errno.h>
#include <string.h>

/* The last slot of each table collects reasons not listed. */
static const char *const close_names[METRIC_CLOSE_REASONS] = {
	"done", "idle_timeout", "handshake_timeout", "tls_error",
	"client_reset", "client_error", "client_eof", "vm_reset", "vm_error",
	"out_of_memory", "shutdown", "other",
};

static const char *const reject_names[METRIC_REJECT_REASONS] = {
	"no_sni", "bad_host", "unknown_domain", "unknown_vm", "port_denied",
	"not_tls", "bad_hello", "too_large", "connect_error", "overload",
	"no_common_sigalg", "other",
};

static const char *const connect_names[METRIC_CONNECT_ERRORS] = {
	[METRIC_CONNECT_REFUSED] = "refused",
	[METRIC_CONNECT_TIMEOUT] = "timeout",
	[METRIC_CONNECT_UNREACHABLE] = "unreachable",
	[METRIC_CONNECT_OTHER] = "other",
};

static size_t slot(const char *const *names, size_t n, const char *reason)
{
	size_t i, last = 0;

	for (i = 0; i < n && names[i]; i++) {
		last = i;
		if (!strcmp(names[i], reason))
			return i;
	}
	return last; /* "other" */
}

void metrics_close(struct metrics *m, const char *reason)
{
	/* Closes during the handshake carry their own detail in the log;
	 * here they count with their family. */
	if (!strncmp(reason, "client_eof", 10))
		reason = "client_eof";
	metric_add(&m->closes[slot(close_names, METRIC_CLOSE_REASONS,
				   reason)], 1);
}

void metrics_reject(struct metrics *m, const char *reason)
{
	metric_add(&m->rejects[slot(reject_names, METRIC_REJECT_REASONS,
				    reason)], 1);
}

void metrics_connect_error(struct metrics *m, int err)
{
	enum metric_connect_error e;

	switch (err) {
	case ECONNREFUSED:
		e = METRIC_CONNECT_REFUSED;
		break;
	case ETIMEDOUT:
		e = METRIC_CONNECT_TIMEOUT;
		break;
	case EHOSTUNREACH:
	case ENETUNREACH:
		e = METRIC_CONNECT_UNREACHABLE;
		break;
	default:
		e = METRIC_CONNECT_OTHER;
		break;
	}
	metric_add(&m->connect_errors[e], 1);
}

const char *metrics_close_name(size_t i)
{
	return i < METRIC_CLOSE_REASONS ? close_names[i] : NULL;
}

const char *metrics_reject_name(size_t i)
{
	return i < METRIC_REJECT_REASONS ? reject_names[i] : NULL;
}

const char *metrics_connect_error_name(size_t i)
{
	return i < METRIC_CONNECT_ERRORS ? connect_names[i] : NULL;
}
