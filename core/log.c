/* core/log.c: see log.h. */
#include "core/log.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = LOG_INFO;

static const char *const level_names[] = {
	[LOG_ERROR] = "ERROR",
	[LOG_WARN] = "WARN",
	[LOG_INFO] = "INFO",
	[LOG_DEBUG] = "DEBUG",
};

void log_set_level(enum log_level level)
{
	atomic_store(&log_level, level);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load_explicit(&log_level,
						  memory_order_relaxed);
}

void log_msg(enum log_level level, const char *event, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t len;
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + len, sizeof(line) - len, ".%03ldZ %s %s ",
		     ts.tv_nsec / 1000000, level_names[level], event);
	len += (size_t)n;
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len += (size_t)n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	/* One write per line keeps lines whole; a short write to a full
	 * pipe loses the rest of this line, never blocks the data path for
	 * long (stderr is blocking, but lines are rare and small). */
	(void)!write(STDERR_FILENO, line, len);
}

static size_t esc_width(uint8_t ch)
{
	return (ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\') ? 1 : 4;
}

char *log_escape(char *out, size_t cap, const void *in, size_t len)
{
	const uint8_t *p = in;
	size_t i, o = 0, need = 0, room = cap - 1;

	if (!p || !len) {
		snprintf(out, cap, "-");
		return out;
	}
	for (i = 0; i < len; i++)
		need += esc_width(p[i]);
	/* Cut: keep room for the "..." that says so. */
	if (need > room)
		room -= 3;
	for (i = 0; i < len && o + esc_width(p[i]) <= room; i++) {
		if (esc_width(p[i]) == 1)
			out[o++] = (char)p[i];
		else
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x",
					      p[i]);
	}
	if (i < len) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

char *log_fmt_addr(char out[LOG_ADDR_MAX], const struct sockaddr_in6 *sa)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sin6_family != AF_INET6) {
		snprintf(out, LOG_ADDR_MAX, "-");
		return out;
	}
	if (IN6_IS_ADDR_V4MAPPED(&sa->sin6_addr)) {
		inet_ntop(AF_INET, &sa->sin6_addr.s6_addr[12], host,
			  sizeof(host));
		snprintf(out, LOG_ADDR_MAX, "%s:%u", host,
			 ntohs(sa->sin6_port));
	} else {
		inet_ntop(AF_INET6, &sa->sin6_addr, host, sizeof(host));
		snprintf(out, LOG_ADDR_MAX, "[%s]:%u", host,
			 ntohs(sa->sin6_port));
	}
	return out;
}
