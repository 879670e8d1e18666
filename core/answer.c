/* core/answer.c: see answer.h. */
#include "core/answer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static enum answer_http line(const uint8_t *in, size_t len)
{
	static const char version[] = "HTTP/1.";
	size_t i = 0, target, k;

	while (i < len && i < 17 && in[i] >= 'A' && in[i] <= 'Z')
		i++;
	if (i == len)
		return i <= 16 ? ANSWER_NEED_MORE : ANSWER_NOT_HTTP;
	if (i < 3 || i > 16 || in[i] != ' ')
		return ANSWER_NOT_HTTP;
	target = ++i;
	while (i < len && in[i] > 0x20 && in[i] < 0x7f)
		i++;
	if (i == len)
		return len == ANSWER_LINE_MAX ? ANSWER_HTTP : ANSWER_NEED_MORE;
	if (i == target || in[i] != ' ')
		return ANSWER_NOT_HTTP;
	i++;
	/* "HTTP/1.0" or "HTTP/1.1", compared as far as it has come. */
	for (k = 0; k < 8 && i + k < len; k++)
		if (k < 7 ? in[i + k] != version[k]
			  : in[i + k] != '0' && in[i + k] != '1')
			return ANSWER_NOT_HTTP;
	i += k;
	if (k < 8 || i == len)
		return ANSWER_NEED_MORE;
	if (in[i] == '\n')
		return ANSWER_HTTP;
	if (in[i] != '\r')
		return ANSWER_NOT_HTTP;
	if (++i == len)
		return ANSWER_NEED_MORE;
	return in[i] == '\n' ? ANSWER_HTTP : ANSWER_NOT_HTTP;
}

enum answer_http answer_http_line(const uint8_t *in, size_t len)
{
	enum answer_http r;

	if (len < ANSWER_LINE_MAX)
		return line(in, len);
	/* As much as is ever looked at: no more is worth waiting for. */
	r = line(in, ANSWER_LINE_MAX);
	return r == ANSWER_NEED_MORE ? ANSWER_NOT_HTTP : r;
}

/* The cause in words, as a VM's owner would look for it. */
static int cause(char *out, size_t cap, const struct answer_vm *in)
{
	switch (in->err) {
	case ECONNREFUSED:
		return snprintf(out, cap,
				"nothing accepts on port %u of VM %s over IPv6 "
				"(connection refused): the service must listen "
				"on '::' (a service bound to 0.0.0.0 only is "
				"unreachable)",
				in->port, in->vm_id);
	case ETIMEDOUT:
		return snprintf(out, cap,
				"VM %s did not answer a connection to port %u "
				"within %u ms (connection timed out): is the VM "
				"running?",
				in->vm_id, in->port, in->timeout_ms);
	case EHOSTUNREACH:
	case ENETUNREACH:
		return snprintf(out, cap,
				"VM %s cannot be reached for port %u (%s): is "
				"the VM running?",
				in->vm_id, in->port, strerror(in->err));
	default:
		return snprintf(out, cap,
				"cannot connect to port %u of VM %s (%s)",
				in->port, in->vm_id, strerror(in->err));
	}
}

size_t answer_vm_error(char *out, size_t cap, const struct answer_vm *in)
{
	char text[512];
	int t, n;

	t = cause(text, sizeof(text) - 1, in);
	if (t < 0 || (size_t)t >= sizeof(text) - 1)
		return 0;
	text[t++] = '\n';
	text[t] = '\0';
	n = snprintf(out, cap,
		     "HTTP/1.1 %s\r\n"
		     "Content-Type: text/plain; charset=utf-8\r\n"
		     "Content-Length: %d\r\n"
		     "Cache-Control: no-store\r\n"
		     "Connection: close\r\n"
		     "\r\n"
		     "%s",
		     in->draining ? "503 Service Unavailable" : "502 Bad Gateway",
		     t, text);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}
