/*
 * Sensor builds as files: the checks an agent executable must pass before it is signed into a
 * sensor bundle or staged to run (an ELF executable for the machine reading it), and the build
 * stamp every agent carries, the integer build number it reports and a sensor bundle's version.
 */
#ifndef VIGIL_SENSOR_IMAGE_H
#define VIGIL_SENSOR_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The stamp: this prefix, then 1..SENSOR_STAMP_MAX_DIGITS decimal digits (no leading zero),
 * then a NUL, exactly once in the executable, in a field of SENSOR_STAMP_BYTES.
 */
#define SENSOR_STAMP_PREFIX	"vigil-sensor-build="
#define SENSOR_STAMP_BYTES	48u
#define SENSOR_STAMP_MAX_DIGITS 16u
/* Largest build number: the bundle version bound, 2^53 - 1. */
#define SENSOR_BUILD_MAX 9007199254740991ull

/*
 * Parses the stamp at @p (@len bytes available): SENSOR_STAMP_PREFIX, digits, NUL. Returns 0
 * and the build in *@build, or -EINVAL.
 */
int sensor_stamp_parse(const char *p, size_t len, uint64_t *build);

/*
 * Checks that @data (@len bytes) is an ELF executable for this machine (64-bit, this byte
 * order, ET_EXEC or ET_DYN, this e_machine unless @any_machine, program headers inside the
 * file) carrying exactly one build stamp. Returns 0 and the stamped build in *@build, or -EINVAL /
 * -ENOEXEC with a one-line reason in @err.
 */
int sensor_image_check(const uint8_t *data, size_t len, bool any_machine, uint64_t *build,
		       char *err, size_t errlen);

#endif
