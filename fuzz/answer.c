/* fuzz/answer.c: libFuzzer target for core/answer.c's answer_http_line,
 * which reads the first plaintext bytes of a client whose VM connect
 * failed, and answer_vm_error.
 *
 * Input: any bytes, the client's first plaintext. Invariants (any breach
 * aborts):
 *   - a decision is final: once a prefix answers ANSWER_HTTP or
 *     ANSWER_NOT_HTTP, every longer prefix answers the same (the caller
 *     acts on the first decision it sees);
 *   - ANSWER_LINE_MAX bytes or more never answer ANSWER_NEED_MORE (the
 *     caller never waits for more than it looks at);
 *   - ANSWER_HTTP only for input that starts with an uppercase method and
 *     a space;
 *   - answer_vm_error, with the input's first bytes as the VM id (a label
 *     of up to 63 bytes), fits ANSWER_MAX and writes a Content-Length that
 *     matches its body.
 *
 * Seed corpus: fuzz/corpus/answer/.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/answer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum answer_http first = ANSWER_NEED_MORE, r;
	char id[64], out[ANSWER_MAX];
	const char *body;
	struct answer_vm a;
	size_t n, i, id_len;
	long clen;

	for (n = 0; n <= size && n <= ANSWER_LINE_MAX + 8; n++) {
		r = answer_http_line(data, n);
		if (first != ANSWER_NEED_MORE && r != first)
			abort();
		if (n >= ANSWER_LINE_MAX && r == ANSWER_NEED_MORE)
			abort();
		first = r;
	}
	if (first == ANSWER_HTTP) {
		for (i = 0; i < size && data[i] >= 'A' && data[i] <= 'Z'; i++)
			;
		if (i < 3 || i >= size || data[i] != ' ')
			abort();
	}

	id_len = size < 63 ? size : 63;
	for (i = 0; i < id_len; i++)
		id[i] = (char)(data[i] ? data[i] : 'x');
	id[id_len] = '\0';
	a = (struct answer_vm){
		.vm_id = id,
		.port = size ? (uint16_t)(data[0] << 8 | data[size - 1]) : 0,
		.err = size ? data[size / 2] % 140 : ECONNREFUSED,
		.timeout_ms = 0xffffffffu,
		.draining = size & 1,
	};
	n = answer_vm_error(out, sizeof(out), &a);
	if (!n || n >= sizeof(out))
		abort();
	body = strstr(out, "\r\n\r\n");
	if (!body || !strstr(out, "Content-Length: "))
		abort();
	clen = strtol(strstr(out, "Content-Length: ") + 16, NULL, 10);
	if ((size_t)clen != n - (size_t)(body + 4 - out))
		abort();
	return 0;
}
