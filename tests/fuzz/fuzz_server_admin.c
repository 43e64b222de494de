/*
 * libFuzzer target for the small admin request bodies of vigil-server: the first byte picks
 *   'G'  a group reference (approve, moving an agent): proto_parse_group_ref;
 *   'E'  an enrollment token request;
 *   else an admin token request (proto_parse_token_request).
 * What parses holds safe names and a known role; what fails says why on one line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/proto.h"

static void one_line(const char *err, size_t len)
{
	if (err[0] == '\0' || !memchr(err, '\0', len) || strchr(err, '\n'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + (size ? 1 : 0);
	size_t len = size ? size - 1 : 0;
	char err[256] = "";

	if (size && data[0] == 'G') {
		char g[STORE_NAME_BYTES];
		if (proto_parse_group_ref(in, len, g, err, sizeof(err)) == 0) {
			if (!proto_name_ok(g, strlen(g)))
				abort();
		} else {
			one_line(err, sizeof(err));
		}
		return 0;
	}
	bool enrollment = size && data[0] == 'E';
	struct proto_token_request t;
	if (proto_parse_token_request(in, len, enrollment, &t, err, sizeof(err)) == 0) {
		if (enrollment ? (!proto_name_ok(t.group, strlen(t.group)) || t.uses < 0 ||
				  t.expires_seconds < 0)
			       : (!proto_name_ok(t.name, strlen(t.name)) ||
				  strcmp(proto_role_name(t.role), "none") == 0))
			abort();
	} else {
		one_line(err, sizeof(err));
	}
	return 0;
}
