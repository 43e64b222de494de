/*
 * Parsers of /proc/PID text files. Every input is treated as hostile: lengths are explicit,
 * nothing needs a terminating NUL, numbers are range-checked.
 */
#include "procfs.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Parses an unsigned decimal at *@pos (after optional blanks); advances *@pos past it. */
static int parse_u64(const char *p, size_t len, size_t *pos, uint64_t *out)
{
	size_t i = *pos;
	uint64_t v = 0;
	size_t digits = 0;

	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	for (; i < len && p[i] >= '0' && p[i] <= '9'; i++, digits++) {
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (!digits)
		return -EINVAL;
	*pos = i;
	*out = v;
	return 0;
}

/* Like parse_u64 with an optional leading '-'; the value must fit in int64_t. */
static int parse_i64(const char *p, size_t len, size_t *pos, int64_t *out)
{
	size_t i = *pos;
	bool neg = false;
	uint64_t v;

	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	if (i < len && p[i] == '-') {
		neg = true;
		i++;
	}
	if (parse_u64(p, len, &i, &v) < 0 || v > (uint64_t)INT64_MAX)
		return -EINVAL;
	*pos = i;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* Steps over one decimal number, signed or not, of any size. */
static int skip_number(const char *p, size_t len, size_t *pos)
{
	size_t i = *pos, start;

	while (i < len && p[i] == ' ')
		i++;
	if (i < len && p[i] == '-')
		i++;
	start = i;
	while (i < len && p[i] >= '0' && p[i] <= '9')
		i++;
	if (i == start)
		return -EINVAL;
	*pos = i;
	return 0;
}

int procfs_parse_stat(const char *p, size_t len, struct procfs_stat *out)
{
	const char *open = memchr(p, '(', len);
	const char *close = NULL;
	size_t pos = 0, comm_len;
	uint64_t pid;
	int64_t v;

	memset(out, 0, sizeof(*out));
	for (size_t i = len; i > 0; i--) {
		if (p[i - 1] == ')') {
			close = p + i - 1;
			break;
		}
	}
	if (!open || !close || close < open)
		return -EINVAL;
	if (parse_u64(p, (size_t)(open - p), &pos, &pid) < 0 || pid == 0 || pid > UINT32_MAX)
		return -EINVAL;
	out->pid = (uint32_t)pid;
	comm_len = (size_t)(close - open - 1);
	if (comm_len > PROCFS_COMM_MAX)
		comm_len = PROCFS_COMM_MAX;
	memcpy(out->comm, open + 1, comm_len);
	out->comm[comm_len] = '\0';

	/* fields from 3 on, numbered as in proc(5) */
	pos = (size_t)(close - p) + 1;
	if (pos + 2 > len || p[pos] != ' ')
		return -EINVAL;
	out->state = p[pos + 1];
	pos += 2;
	for (int field = 4; field <= 22; field++) {
		if (field == 22) {
			uint64_t start;
			if (parse_u64(p, len, &pos, &start) < 0)
				return -EINVAL;
			out->start_ticks = start;
			break;
		}
		if (field != 4 && field != 7) {
			if (skip_number(p, len, &pos) < 0)
				return -EINVAL;
			continue;
		}
		if (parse_i64(p, len, &pos, &v) < 0)
			return -EINVAL;
		if (field == 4) {
			if (v < 0 || v > UINT32_MAX)
				return -EINVAL;
			out->ppid = (uint32_t)v;
		} else {
			/* printed as a signed int; the encoding is 32 bits */
			if (v < INT32_MIN || v > UINT32_MAX)
				return -EINVAL;
			out->tty_nr = (uint32_t)v;
		}
	}
	return 0;
}

/* Finds the line starting with @key; returns the offset just past the key, or -1. */
static long find_line(const char *p, size_t len, const char *key)
{
	size_t klen = strlen(key);
	size_t i = 0;

	while (i < len) {
		const char *nl = memchr(p + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (p + i)) : len - i;
		if (n >= klen && memcmp(p + i, key, klen) == 0)
			return (long)(i + klen);
		i += n + 1;
	}
	return -1;
}

/* Parses the first two numbers after @key (real and effective id). */
static int parse_id_pair(const char *p, size_t len, const char *key, uint32_t *real, uint32_t *eff)
{
	long at = find_line(p, len, key);
	size_t pos;
	uint64_t r, e;

	if (at < 0)
		return -EINVAL;
	pos = (size_t)at;
	if (parse_u64(p, len, &pos, &r) < 0 || parse_u64(p, len, &pos, &e) < 0 || r > UINT32_MAX ||
	    e > UINT32_MAX)
		return -EINVAL;
	*real = (uint32_t)r;
	*eff = (uint32_t)e;
	return 0;
}

int procfs_parse_status_ids(const char *p, size_t len, uint32_t *uid, uint32_t *euid, uint32_t *gid,
			    uint32_t *egid)
{
	uint32_t u, eu, g, eg;

	if (parse_id_pair(p, len, "Uid:", &u, &eu) < 0 ||
	    parse_id_pair(p, len, "Gid:", &g, &eg) < 0)
		return -EINVAL;
	*uid = u;
	*euid = eu;
	*gid = g;
	*egid = eg;
	return 0;
}

int64_t procfs_parse_loginuid(const char *p, size_t len)
{
	size_t pos = 0;
	uint64_t v;

	if (parse_u64(p, len, &pos, &v) < 0 || v >= UINT32_MAX)
		return -1;
	return (int64_t)v;
}

int procfs_tty_name(uint32_t tty_nr, char *out, size_t size)
{
	unsigned major = (tty_nr >> 8) & 0xfff;
	unsigned minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
	int n;

	if (tty_nr == 0)
		return -ENOENT;
	if (major >= 136 && major <= 143)
		n = snprintf(out, size, "pts/%u", (major - 136) * 256 + minor);
	else if (major == 4 && minor < 64)
		n = snprintf(out, size, "tty%u", minor);
	else if (major == 4)
		n = snprintf(out, size, "ttyS%u", minor - 64);
	else if (major == 5 && minor == 0)
		n = snprintf(out, size, "tty");
	else if (major == 5 && minor == 1)
		n = snprintf(out, size, "console");
	else if (major == 188)
		n = snprintf(out, size, "ttyUSB%u", minor);
	else if (major == 166)
		n = snprintf(out, size, "ttyACM%u", minor);
	else
		n = snprintf(out, size, "%u:%u", major, minor);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	return 0;
}

struct cgroup_line {
	const char *id, *ctl, *path;
	size_t id_len, ctl_len, path_len;
};

/*
 * Calls @fn on every line "ID:CONTROLLERS:PATH" of a cgroup file; stops when @fn returns
 * true. Returns whether it did. Lines without two colons are skipped.
 */
static bool each_cgroup_line(const char *p, size_t len,
			     bool (*fn)(const struct cgroup_line *line, void *arg), void *arg)
{
	size_t i = 0;

	while (i < len) {
		const char *nl = memchr(p + i, '\n', len - i);
		size_t n = nl ? (size_t)(nl - (p + i)) : len - i;
		const char *start = p + i;
		const char *c1 = memchr(start, ':', n);
		const char *c2 = c1 ? memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - start)) : NULL;

		i += n + 1;
		if (!c2)
			continue;
		struct cgroup_line line = {
		    .id = start,
		    .id_len = (size_t)(c1 - start),
		    .ctl = c1 + 1,
		    .ctl_len = (size_t)(c2 - c1 - 1),
		    .path = c2 + 1,
		    .path_len = n - (size_t)(c2 + 1 - start),
		};
		if (fn(&line, arg))
			return true;
	}
	return false;
}

struct path_pick {
	const char *path;
	size_t len;
};

static bool pick_path(const struct cgroup_line *line, void *arg)
{
	static const char systemd[] = "name=systemd";
	struct path_pick *pick = arg;

	if (line->id_len == 1 && line->id[0] == '0' && line->ctl_len == 0) {
		/* the unified hierarchy: what every current host uses */
		pick->path = line->path;
		pick->len = line->path_len;
		return true;
	}
	if (!pick->path && line->ctl_len == sizeof(systemd) - 1 &&
	    memcmp(line->ctl, systemd, sizeof(systemd) - 1) == 0) {
		pick->path = line->path;
		pick->len = line->path_len;
	}
	return false;
}

bool procfs_cgroup_path(const char *p, size_t len, const char **path, size_t *path_len)
{
	struct path_pick pick = {0};

	each_cgroup_line(p, len, pick_path, &pick);
	if (!pick.path)
		return false;
	*path = pick.path;
	*path_len = pick.len;
	return true;
}

static bool line_container(const struct cgroup_line *line, void *arg)
{
	return container_id_from_cgroup(line->path, line->path_len, arg);
}

bool procfs_cgroup_container_id(const char *p, size_t len, char out[CONTAINER_ID_LEN + 1])
{
	return each_cgroup_line(p, len, line_container, out);
}

size_t procfs_join_cmdline(char *p, size_t len)
{
	while (len > 0 && p[len - 1] == '\0')
		len--;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\0')
			p[i] = ' ';
	}
	return len;
}
