/*
 * Unit tests for the checks of an agent executable in a sensor build (src/lib/sensor_image.c):
 * the ELF header for this machine and the one build stamp.
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/sensor_image.h"

/* A minimal executable of this machine: header, one program header, then @tail. */
static size_t image(uint8_t *out, const char *tail, size_t tail_len)
{
	Elf64_Ehdr eh = {0};
	Elf64_Phdr ph = {0};

	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_DYN;
#if defined(__x86_64__)
	eh.e_machine = EM_X86_64;
#elif defined(__aarch64__)
	eh.e_machine = EM_AARCH64;
#endif
	eh.e_phoff = sizeof(eh);
	eh.e_phentsize = sizeof(ph);
	eh.e_phnum = 1;
	memcpy(out, &eh, sizeof(eh));
	memcpy(out + sizeof(eh), &ph, sizeof(ph));
	memcpy(out + sizeof(eh) + sizeof(ph), tail, tail_len);
	return sizeof(eh) + sizeof(ph) + tail_len;
}

static void test_stamp(void **state)
{
	uint64_t b = 0;
	(void)state;

	assert_int_equal(sensor_stamp_parse("vigil-sensor-build=42", 22, &b), 0);
	assert_int_equal(b, 42);
	assert_int_equal(sensor_stamp_parse("vigil-sensor-build=9007199254740991", 36, &b), 0);
	assert_int_equal(b, SENSOR_BUILD_MAX);
	assert_int_equal(sensor_stamp_parse("vigil-sensor-build=9007199254740992", 36, &b),
			 -EINVAL);
	assert_int_equal(sensor_stamp_parse("vigil-sensor-build=12345678901234567", 37, &b),
			 -EINVAL);
	assert_int_equal(sensor_stamp_parse("vigil-sensor-build=042", 23, &b), -EINVAL);
	assert_int_equal(sensor_stamp_parse("vigil-sensor-build=", 20, &b), -EINVAL);
	assert_int_equal(sensor_stamp_parse("vigil-sensor-build=4x", 22, &b), -EINVAL);
	/* the digits must end inside the bytes given */
	assert_int_equal(sensor_stamp_parse("vigil-sensor-build=42", 21, &b), -EINVAL);
}

static void test_image(void **state)
{
	static const char one[] = "..vigil-sensor-build=7\0..vigil-sensor-build=\0";
	static const char two[] = "vigil-sensor-build=7\0vigil-sensor-build=8\0";
	static const char none[] = "vigil-sensor-build=x\0";
	uint8_t img[512], bad[512];
	uint64_t b = 0;
	char err[256];
	size_t n;
	(void)state;

	n = image(img, one, sizeof(one));
	assert_int_equal(sensor_image_check(img, n, false, &b, err, sizeof(err)), 0);
	assert_int_equal(b, 7);
	n = image(img, two, sizeof(two));
	assert_int_equal(sensor_image_check(img, n, false, &b, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than one build stamp"));
	n = image(img, none, sizeof(none));
	assert_int_equal(sensor_image_check(img, n, false, &b, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no build stamp"));

	n = image(img, one, sizeof(one));
	assert_int_equal(sensor_image_check(img, 10, false, &b, err, sizeof(err)), -ENOEXEC);
	memcpy(bad, img, n);
	bad[0] = 'M';
	assert_int_equal(sensor_image_check(bad, n, false, &b, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "bad magic"));
	memcpy(bad, img, n);
	bad[EI_CLASS] = ELFCLASS32;
	assert_int_equal(sensor_image_check(bad, n, false, &b, err, sizeof(err)), -ENOEXEC);
	memcpy(bad, img, n);
	((Elf64_Ehdr *)bad)->e_type = ET_REL;
	assert_int_equal(sensor_image_check(bad, n, false, &b, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "not an executable"));
	memcpy(bad, img, n);
	((Elf64_Ehdr *)bad)->e_machine = EM_SPARCV9;
	assert_int_equal(sensor_image_check(bad, n, false, &b, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "not this machine's"));
	/* the server, which may serve other machines, checks everything but the machine */
	assert_int_equal(sensor_image_check(bad, n, true, &b, err, sizeof(err)), 0);
	memcpy(bad, img, n);
	((Elf64_Ehdr *)bad)->e_phnum = 60000;
	assert_int_equal(sensor_image_check(bad, n, false, &b, err, sizeof(err)), -ENOEXEC);
	assert_non_null(strstr(err, "program headers"));
	memcpy(bad, img, n);
	((Elf64_Ehdr *)bad)->e_phoff = UINT64_MAX;
	assert_int_equal(sensor_image_check(bad, n, false, &b, err, sizeof(err)), -ENOEXEC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stamp),
	    cmocka_unit_test(test_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
