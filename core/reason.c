/* core/reason.c: the table behind core/reason.h. */
#include "core/reason.h"

#include <string.h>

static const struct {
	const char *name;
	enum reason_family family;
	enum log_level level;
} reasons[REASON_COUNT] = {
#define REASON_ROW(e, n, f, l) [REASON_##e] = { n, f, l },
	CONN_REASONS(REASON_ROW)
#undef REASON_ROW
};

const char *reason_name(enum conn_reason r)
{
	return (unsigned)r < REASON_COUNT ? reasons[r].name : NULL;
}

enum reason_family reason_family(enum conn_reason r)
{
	return (unsigned)r < REASON_COUNT ? reasons[r].family : REASON_CLOSE;
}

enum log_level reason_level(enum conn_reason r)
{
	return (unsigned)r < REASON_COUNT ? reasons[r].level : LOG_INFO;
}

bool reason_from_name(enum conn_reason *out, const char *name, size_t len)
{
	size_t i;

	for (i = REASON_NONE + 1; i < REASON_COUNT; i++) {
		if (strlen(reasons[i].name) == len &&
		    !memcmp(reasons[i].name, name, len)) {
			*out = (enum conn_reason)i;
			return true;
		}
	}
	return false;
}
