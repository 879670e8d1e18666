/* core/answer.h: the HTTP answer to a client whose VM cannot be reached.
 *
 * On a connection whose ALPN is http/1.1, or that negotiated none and
 * whose first bytes are an HTTP/1.x request line, a failed VM connect is
 * answered over the established TLS connection with a short plain-text
 * 502 (503 while vmgate drains) that names the VM, the port and the
 * cause, instead of an internal_error alert the client cannot explain.
 * Both functions are pure: core/backend.c does the I/O.
 */
#ifndef VMGATE_CORE_ANSWER_H
#define VMGATE_CORE_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum answer_http {
	ANSWER_HTTP,      /* an HTTP/1.x request line */
	ANSWER_NOT_HTTP,  /* anything else */
	ANSWER_NEED_MORE, /* a prefix of a request line: wait for more */
};

/* The most bytes answer_http_line looks at: a request line longer than
 * this (a long URL) is HTTP when its start is, without waiting for its
 * end. */
#define ANSWER_LINE_MAX 1024

/* answer_http_line tells whether |in| (|len| bytes, the client's first
 * plaintext) starts with a request line: a method of 3-16 uppercase
 * letters, a space, a target of visible characters, a space and
 * "HTTP/1.0" or "HTTP/1.1", then CRLF (or LF). */
enum answer_http answer_http_line(const uint8_t *in, size_t len);

/* The failure to explain. */
struct answer_vm {
	const char *vm_id;
	uint16_t port;          /* on the VM */
	int err;                /* the connect's errno */
	uint32_t timeout_ms;    /* limits.connect_timeout_ms, for ETIMEDOUT */
	bool draining;          /* 503 instead of 502 */
};

/* answer_vm_error writes the whole HTTP/1.1 response (status line,
 * headers with Content-Length and Connection: close, the text) into
 * |out| and returns its length; 0 if it does not fit |cap| (1 KiB
 * always does for a VM id of up to 63 bytes). */
#define ANSWER_MAX 1024
size_t answer_vm_error(char *out, size_t cap, const struct answer_vm *in);

#endif
