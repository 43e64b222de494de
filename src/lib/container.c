/*
 * Container ids parsed from cgroup path components.
 */
#include "container.h"

#include <string.h>

/* Prefixes runtimes put before the id in a systemd scope name. */
static const char *const scope_prefixes[] = {
    "docker-",
    "cri-containerd-",
    "crio-",
    "libpod-",
};

static bool is_container_id(const char *p, size_t n)
{
	if (n != CONTAINER_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

static bool has_prefix(const char *p, size_t n, const char *prefix, size_t plen)
{
	return n >= plen && memcmp(p, prefix, plen) == 0;
}

/* The id named by one path component, or NULL. */
static const char *component_id(const char *p, size_t n)
{
	static const char scope[] = ".scope";
	const size_t slen = sizeof(scope) - 1;

	if (is_container_id(p, n))
		return p;
	if (n <= slen || memcmp(p + n - slen, scope, slen) != 0)
		return NULL;
	n -= slen;
	for (size_t k = 0; k < sizeof(scope_prefixes) / sizeof(scope_prefixes[0]); k++) {
		size_t plen = strlen(scope_prefixes[k]);
		if (has_prefix(p, n, scope_prefixes[k], plen) &&
		    is_container_id(p + plen, n - plen))
			return p + plen;
	}
	return NULL;
}

bool container_id_from_cgroup(const char *path, size_t len, char out[CONTAINER_ID_LEN + 1])
{
	const char *found = NULL;
	size_t i = 0;

	while (i < len) {
		const char *slash = memchr(path + i, '/', len - i);
		size_t n = slash ? (size_t)(slash - (path + i)) : len - i;
		const char *id = component_id(path + i, n);

		if (id)
			found = id;
		i += n + 1;
	}
	if (!found)
		return false;
	memcpy(out, found, CONTAINER_ID_LEN);
	out[CONTAINER_ID_LEN] = '\0';
	return true;
}
