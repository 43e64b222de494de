/*
 * Checks of an agent executable carried by a sensor build: ELF header for this machine and the
 * build stamp. See sensor_image.h.
 */
#include "sensor_image.h"

#include "buf.h"

#include <elf.h>
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__)
#define SENSOR_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define SENSOR_MACHINE EM_AARCH64
#elif defined(__riscv) && __riscv_xlen == 64
#define SENSOR_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define SENSOR_MACHINE EM_PPC64
#elif defined(__s390x__)
#define SENSOR_MACHINE EM_S390
#else
#error "sensor_image: unknown machine"
#endif

#if __BYTE_ORDER == __LITTLE_ENDIAN
#define SENSOR_DATA ELFDATA2LSB
#else
#define SENSOR_DATA ELFDATA2MSB
#endif

int sensor_stamp_parse(const char *p, size_t len, uint64_t *build)
{
	const size_t plen = sizeof(SENSOR_STAMP_PREFIX) - 1;
	uint64_t v = 0;
	size_t i;

	if (len < plen + 2 || memcmp(p, SENSOR_STAMP_PREFIX, plen) != 0)
		return -EINVAL;
	for (i = plen; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
		if (i - plen >= SENSOR_STAMP_MAX_DIGITS)
			return -EINVAL;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (i == plen || i == len || p[i] != '\0' || p[plen] == '0' || v > SENSOR_BUILD_MAX)
		return -EINVAL;
	*build = v;
	return 0;
}

int sensor_image_check(const uint8_t *data, size_t len, bool any_machine, uint64_t *build,
		       char *err, size_t errlen)
{
	const size_t plen = sizeof(SENSOR_STAMP_PREFIX) - 1;
	Elf64_Ehdr eh;
	uint64_t found = 0, v;
	size_t n = 0;

	if (len < sizeof(eh))
		return err_set(err, errlen, -ENOEXEC, "not an ELF file (%zu bytes)", len);
	memcpy(&eh, data, sizeof(eh));
	if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
		return err_set(err, errlen, -ENOEXEC, "not an ELF file (bad magic)");
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != SENSOR_DATA ||
	    eh.e_ident[EI_VERSION] != EV_CURRENT)
		return err_set(err, errlen, -ENOEXEC,
			       "ELF class or byte order is not this machine's (64-bit, native)");
	if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
		return err_set(err, errlen, -ENOEXEC, "ELF type %u is not an executable",
			       (unsigned)eh.e_type);
	if (!any_machine && eh.e_machine != SENSOR_MACHINE)
		return err_set(err, errlen, -ENOEXEC, "ELF machine %u is not this machine's (%u)",
			       (unsigned)eh.e_machine, (unsigned)SENSOR_MACHINE);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phoff > len ||
	    (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return err_set(err, errlen, -ENOEXEC,
			       "ELF program headers are not inside the file");
	for (size_t i = 0; i + plen < len;) {
		const uint8_t *hit = memmem(data + i, len - i, SENSOR_STAMP_PREFIX, plen);
		if (!hit)
			break;
		size_t at = (size_t)(hit - data);
		size_t room = len - at < SENSOR_STAMP_BYTES ? len - at : SENSOR_STAMP_BYTES;
		if (sensor_stamp_parse((const char *)hit, room, &v) == 0) {
			found = v;
			if (++n > 1)
				return err_set(err, errlen, -EINVAL,
					       "more than one build stamp (" SENSOR_STAMP_PREFIX
					       "N) in the executable");
		}
		i = at + 1;
	}
	if (n == 0)
		return err_set(err, errlen, -EINVAL,
			       "no build stamp (" SENSOR_STAMP_PREFIX
			       "N): not a vigil-agent build");
	*build = found;
	return 0;
}
