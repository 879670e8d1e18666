/* core/metrics.c: see metrics.h. */
#include "core/metrics.h"

#include <errno.h>

static const char *const connect_names[METRIC_CONNECT_ERRORS] = {
	[METRIC_CONNECT_REFUSED] = "refused",
	[METRIC_CONNECT_TIMEOUT] = "timeout",
	[METRIC_CONNECT_UNREACHABLE] = "unreachable",
	[METRIC_CONNECT_OTHER] = "other",
};

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

const char *metrics_connect_error_name(size_t i)
{
	return i < METRIC_CONNECT_ERRORS ? connect_names[i] : NULL;
}
