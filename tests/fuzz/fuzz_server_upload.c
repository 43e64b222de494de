/*
 * libFuzzer target for alert and event batches uploaded to vigil-server (proto_parse_batch).
 * What parses is sorted by distinct positive sequence numbers, each record re-serialized as
 * a JSON object within the size cap; what fails says why on one line.
 */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_batch b = {0};
	char err[256] = "";
	int ret = proto_parse_batch((const char *)data, size, &b, err, sizeof(err));

	if (ret == 0) {
		if (b.n == 0 || b.n > PROTO_MAX_BATCH)
			abort();
		for (size_t i = 0; i < b.n; i++) {
			const struct proto_record *r = &b.records[i];
			if (r->seq < 1 || (i && r->seq <= b.records[i - 1].seq) ||
			    r->json_len > PROTO_MAX_RECORD_BYTES ||
			    strlen(r->json) != r->json_len ||
			    !memchr(r->rule_id, '\0', sizeof(r->rule_id)))
				abort();
			json_t *j = json_loadb(r->json, r->json_len, 0, NULL);
			if (!json_is_object(j))
				abort();
			json_decref(j);
		}
		proto_batch_free(&b);
	} else if (ret != -ENOMEM &&
		   (err[0] == '\0' || !memchr(err, '\0', sizeof(err)) || strchr(err, '\n'))) {
		abort();
	}
	return 0;
}
