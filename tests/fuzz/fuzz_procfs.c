/*
 * Fuzz target for the /proc text parsers and the cgroup container-id parser. The first byte
 * picks the parser; the rest is the file content, in a buffer of exactly its size.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/container.h"
#include "lib/procfs.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_id(const char *id)
{
	check(strlen(id) == CONTAINER_ID_LEN);
	for (size_t i = 0; i < CONTAINER_ID_LEN; i++)
		check((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *p;
	size_t len;

	if (size < 1)
		return 0;
	len = size - 1;
	p = malloc(len ? len : 1);
	if (!p)
		return 0;
	memcpy(p, data + 1, len);

	switch (data[0] % 6) {
	case 0: {
		struct procfs_stat st;
		if (procfs_parse_stat(p, len, &st) == 0) {
			check(st.pid > 0);
			check(strlen(st.comm) <= PROCFS_COMM_MAX);
		}
		break;
	}
	case 1: {
		uint32_t u, eu, g, eg;
		procfs_parse_status_ids(p, len, &u, &eu, &g, &eg);
		check(procfs_parse_loginuid(p, len) >= -1);
		break;
	}
	case 2: {
		const char *path;
		size_t n;
		char id[CONTAINER_ID_LEN + 1];
		if (procfs_cgroup_path(p, len, &path, &n))
			check(path >= p && path + n <= p + len);
		if (procfs_cgroup_container_id(p, len, id))
			check_id(id);
		break;
	}
	case 3: {
		char id[CONTAINER_ID_LEN + 1];
		if (container_id_from_cgroup(p, len, id))
			check_id(id);
		break;
	}
	case 4: {
		size_t n = procfs_join_cmdline(p, len);
		check(n <= len);
		check(memchr(p, '\0', n) == NULL);
		break;
	}
	default: {
		char name[16];
		uint32_t nr = 0;
		memcpy(&nr, p, len < sizeof(nr) ? len : sizeof(nr));
		if (procfs_tty_name(nr, name, sizeof(name)) == 0)
			check(strlen(name) < sizeof(name));
		break;
	}
	}
	free(p);
	return 0;
}
