/*
 * libFuzzer target for the enrollment request body of vigil-server (proto_parse_enroll).
 * What parses holds a token and NUL-terminated fields within their sizes; what fails says
 * why on one non-empty line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_enroll e;
	char err[256] = "";

	if (proto_parse_enroll((const char *)data, size, &e, err, sizeof(err)) == 0) {
		if (!memchr(e.token, '\0', sizeof(e.token)) || e.token[0] == '\0' ||
		    !memchr(e.hostname, '\0', sizeof(e.hostname)) ||
		    !memchr(e.sensor_version, '\0', sizeof(e.sensor_version)))
			abort();
	} else if (err[0] == '\0' || !memchr(err, '\0', sizeof(err)) || strchr(err, '\n')) {
		abort();
	}
	return 0;
}
