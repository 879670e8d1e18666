/* fuzz/clienthello.c: libFuzzer target for tls_hello_peek (tls/hello.c).
 *
 * Input: byte 0 is configuration, the rest is what a client sent.
 *   bits 0-5: chunk size - 1 (1..64 bytes): the bytes arrive in chunks of
 *             this size, as TCP segments would, and the parser is called
 *             on every growing prefix, the way core/ calls it;
 *   bit 6:    max_len is 512 instead of 16384 (exercises TOO_LARGE).
 *
 * Invariants checked (abort on violation):
 *   - a final answer (OK, BAD, TOO_LARGE, NOT_TLS) never changes as more
 *     bytes arrive, and an OK answer stays the very same hello;
 *   - on OK: records_len <= bytes given, the records_len-byte prefix is
 *     also OK and one byte less is NEED_MORE; SNI and ALPN views lie
 *     inside the input (one record) or scratch; the SNI is 1..255 bytes
 *     without NUL; the ALPN list is well formed with non-empty names;
 *     max_version is legacy_version or a non-GREASE value;
 *   - BAD and TOO_LARGE come with an error string.
 * Each prefix is copied to the end of an exactly sized heap buffer, and
 * scratch is exactly max_len bytes, so AddressSanitizer sees any read or
 * write past either.
 *
 * Seed corpus: fuzz/corpus/clienthello/, the real ClientHellos of
 * tests/fixtures/hello behind a configuration byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>

#include "tls/hello.h"

#define check(cond)                                                        \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "clienthello: %s:%d: %s\n",        \
				__FILE__, __LINE__, #cond);                \
			abort();                                           \
		}                                                          \
	} while (0)

static int inside(const uint8_t *p, size_t len, const uint8_t *base,
		  size_t base_len)
{
	return p >= base && len <= base_len &&
	       (size_t)(p - base) <= base_len - len;
}

static void check_ok(const struct tls_hello *h, const uint8_t *in,
		     size_t in_len, const uint8_t *scratch, size_t max_len)
{
	CBS list, name;

	check(h->records_len >= 5 + 4 && h->records_len <= in_len);
	check(h->error == NULL);
	if (h->sni != NULL) {
		check(h->sni_len >= 1 && h->sni_len <= 255);
		check(inside(h->sni, h->sni_len, in, in_len) ||
		      inside(h->sni, h->sni_len, scratch, max_len));
		check(memchr(h->sni, 0, h->sni_len) == NULL);
	} else {
		check(h->sni_len == 0);
	}
	if (h->alpn != NULL) {
		check(inside(h->alpn, h->alpn_len, in, in_len) ||
		      inside(h->alpn, h->alpn_len, scratch, max_len));
		check(h->alpn_len >= 2);
		CBS_init(&list, h->alpn, h->alpn_len);
		while (CBS_len(&list) != 0) {
			check(CBS_get_u8_length_prefixed(&list, &name));
			check(CBS_len(&name) != 0);
		}
	} else {
		check(h->alpn_len == 0);
	}
	check(h->max_version == h->legacy_version ||
	      (h->max_version & 0x0f0f) != 0x0a0a);
}

static int same_hello(const struct tls_hello *a, const struct tls_hello *b)
{
	return a->records_len == b->records_len && a->sni_len == b->sni_len &&
	       a->alpn_len == b->alpn_len &&
	       a->legacy_version == b->legacy_version &&
	       a->max_version == b->max_version &&
	       (a->sni == NULL) == (b->sni == NULL) &&
	       (a->alpn == NULL) == (b->alpn == NULL) &&
	       (a->sni_len == 0 || memcmp(a->sni, b->sni, a->sni_len) == 0) &&
	       (a->alpn_len == 0 ||
		memcmp(a->alpn, b->alpn, a->alpn_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum tls_hello_result r, final = TLS_HELLO_NEED_MORE;
	struct tls_hello h, first_ok;
	/* Copies of the SNI and ALPN of the first OK, whose views die with
	 * the next call (scratch is reused). */
	uint8_t sni[256], alpn[16384];
	uint8_t *buf, *scratch, *in;
	size_t chunk, max_len, n, len;

	if (size < 1)
		return 0;
	chunk = (data[0] & 0x3f) + 1;
	max_len = (data[0] & 0x40) ? 512 : 16384;
	data++;
	size--;

	buf = malloc(size ? size : 1);
	scratch = malloc(max_len);
	check(buf != NULL && scratch != NULL);
	memset(&first_ok, 0, sizeof(first_ok));

	for (n = 0;; n += chunk) {
		len = n < size ? n : size;
		in = buf + (size - len);
		memcpy(in, data, len);
		r = tls_hello_peek(&h, scratch, max_len, in, len);

		if (final != TLS_HELLO_NEED_MORE)
			check(r == final);
		if (r == TLS_HELLO_BAD || r == TLS_HELLO_TOO_LARGE)
			check(h.error != NULL);
		if (r == TLS_HELLO_OK) {
			check_ok(&h, in, len, scratch, max_len);
			if (final == TLS_HELLO_NEED_MORE) {
				check(h.alpn_len <= sizeof(alpn));
				first_ok = h;
				memcpy(sni, h.sni ? h.sni : sni, h.sni_len);
				memcpy(alpn, h.alpn ? h.alpn : alpn, h.alpn_len);
				first_ok.sni = h.sni ? sni : NULL;
				first_ok.alpn = h.alpn ? alpn : NULL;
			}
			check(same_hello(&first_ok, &h));
		}
		final = r;
		if (len == size)
			break;
	}

	/* The hello ends exactly at records_len: one byte less is a prefix. */
	if (final == TLS_HELLO_OK) {
		len = first_ok.records_len;
		in = buf + (size - len);
		memcpy(in, data, len);
		check(tls_hello_peek(&h, scratch, max_len, in, len) ==
		      TLS_HELLO_OK);
		check(same_hello(&first_ok, &h));
		in = buf + (size - (len - 1));
		memcpy(in, data, len - 1);
		check(tls_hello_peek(&h, scratch, max_len, in, len - 1) ==
		      TLS_HELLO_NEED_MORE);
	}

	free(scratch);
	free(buf);
	return 0;
}
