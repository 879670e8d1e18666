/* core/log.h: levelled log lines on stderr.
 *
 * One line per event: "<UTC time> <LEVEL> <event> key=value ...". Lines
 * are built in a stack buffer and written with one write(2), so lines from
 * different workers never interleave. A line longer than LOG_LINE_MAX is
 * cut.
 */
#ifndef VMGATE_CORE_LOG_H
#define VMGATE_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>

#include "core/kconfig.h"

enum log_level {
	LOG_ERROR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

#define LOG_LINE_MAX 1024

/* log_set_level sets the most verbose level printed (default LOG_INFO). */
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* log_msg prints "<time> <LEVEL> <event> " followed by |fmt|. */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(ev, ...) log_msg(LOG_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_msg(LOG_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...) log_msg(LOG_INFO, ev, __VA_ARGS__)
#define log_debug(ev, ...)                                                   \
	do {                                                                 \
		if (IS_ENABLED(CONFIG_DEBUG_LOG) && log_enabled(LOG_DEBUG))  \
			log_msg(LOG_DEBUG, ev, __VA_ARGS__);                 \
	} while (0)

/* log_escape writes |len| bytes of untrusted |in| into |out| (|cap| >= 5)
 * so that they stay one token of one line: bytes outside 0x21..0x7e, '"'
 * and '\\' become \xNN; nothing becomes "-". What does not fit in |cap|
 * is cut at a whole byte and marked "...". Returns |out|. The one escaper
 * for log lines and for values quoted in error messages. */
#define LOG_ESCAPED_MAX(len) (4 * (len) + 4)
char *log_escape(char *out, size_t cap, const void *in, size_t len);

/* log_fmt_addr writes "[v6]:port", or "a.b.c.d:port" for a v4-mapped
 * address, into |out| and returns |out|. */
#define LOG_ADDR_MAX 64
char *log_fmt_addr(char out[LOG_ADDR_MAX], const struct sockaddr_in6 *sa);

#endif
