/* fuzz/keyop.c: libFuzzer target for the signer wire format's decoder
 * (signer/keyop.c), which both vmgate and vmgate-signer run on bytes from
 * the other side.
 *
 * The input is a byte stream as a socket would deliver it: frames are
 * decoded one after the other until NEED_MORE or BAD. Aborts when a
 * decoded message's data is not inside its frame, when a frame is longer
 * than KEYOP_FRAME_MAX or than the input, or when re-encoding a decoded
 * message does not give back the very bytes of its frame (the format has
 * one encoding per message). The stream is also decoded a second time
 * delivered in two pieces (the first input byte says where to cut): every
 * frame whole in the first piece must decode the same.
 *
 * Seed corpus: fuzz/corpus/keyop/ (each frame type, UNLOAD among them, and
 * streams of several).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "signer/keyop.h"

static void check_frame(const uint8_t *f, size_t used, size_t left,
			const struct keyop_msg *m)
{
	uint8_t again[KEYOP_FRAME_MAX];
	size_t len;

	if (used > KEYOP_FRAME_MAX || used > left || used <= KEYOP_HDR_LEN)
		abort();
	if (m->data_len && (m->data < f || m->data + m->data_len > f + used))
		abort();
	if (!keyop_encode(again, &len, sizeof(again), m) || len != used ||
	    memcmp(again, f, used) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct keyop_msg m, m2;
	size_t off = 0, used, used2, cut;

	if (!size)
		return 0;
	cut = data[0] % (size + 1);
	while (off < size) {
		enum keyop_parse p = keyop_decode(&m, &used, data + off,
						  size - off);

		if (p != KEYOP_OK)
			break;
		check_frame(data + off, used, size - off, &m);
		/* The same frame, seen by a reader that has only |cut|
		 * bytes of the stream: whole means the same message. */
		if (off + used <= cut) {
			if (keyop_decode(&m2, &used2, data + off, cut - off) !=
				    KEYOP_OK ||
			    used2 != used || m2.id != m.id ||
			    m2.type != m.type)
				abort();
		} else if (off < cut &&
			   keyop_decode(&m2, &used2, data + off, cut - off) ==
				   KEYOP_OK) {
			abort();
		}
		off += used;
	}
	return 0;
}
