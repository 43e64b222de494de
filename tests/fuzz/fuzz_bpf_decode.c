/*
 * Fuzz target for the ring-buffer record decoder: arbitrary bytes as a record from the
 * kernel, decoded and written as NDJSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "agent/bpf_decode.h"
#include "lib/event_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct bpf_decoder *d;
	static struct event *ev;
	static struct buf out;
	struct bpf_decoded o;
	void *copy;

	if (!d) {
		d = malloc(sizeof(*d));
		bpf_decoder_init(d, 100);
		ev = event_new();
		buf_init(&out, 4u << 20);
	}
	/* the ring buffer hands out 8-byte aligned records */
	copy = aligned_alloc(8, size ? (size + 7) & ~7ul : 8);
	memcpy(copy, data, size);
	/* make the size field agree often, so the decoder's inner checks are reached */
	if (size >= 8 && (data[0] & 1))
		((uint32_t *)copy)[1] = (uint32_t)size;
	if (bpf_decode_record(d, copy, size, ev, &o) == 0) {
		buf_reset(&out);
		event_write_json(ev, &out);
	}
	free(copy);
	return 0;
}
