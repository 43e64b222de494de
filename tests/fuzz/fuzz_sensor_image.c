/*
 * libFuzzer target for the checks of an agent executable carried by a sensor build (ELF header
 * and build stamp, src/lib/sensor_image.c), which see bytes from a downloaded bundle.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sensor_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "";
	uint64_t build = 0;

	for (int any = 0; any < 2; any++) {
		err[0] = '\0';
		int ret = sensor_image_check(data, size, any, &build, err, sizeof(err));
		if (ret < 0 && (!err[0] || strchr(err, '\n')))
			abort(); /* a refusal says why, on one line */
		if (ret == 0 && (build == 0 || build > SENSOR_BUILD_MAX))
			abort();
	}
	if (sensor_stamp_parse((const char *)data, size, &build) == 0 &&
	    (build == 0 || build > SENSOR_BUILD_MAX))
		abort();
	return 0;
}
