/*
 * Parsers of /proc/PID text (stat, status, cgroup, cmdline, loginuid) and the tty name of a
 * device number. Pure: callers read the files and hand over the bytes, so the same code
 * serves the proc scanner, the tests and the fuzzer.
 */
#ifndef VIGIL_PROCFS_H
#define VIGIL_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "container.h"

/* Longest comm the kernel prints (kernel threads may carry more than TASK_COMM_LEN). */
#define PROCFS_COMM_MAX 64

struct procfs_stat {
	uint32_t pid;
	uint32_t ppid;
	uint32_t tty_nr;      /* encoded device number, 0 without a controlling terminal */
	uint64_t start_ticks; /* field 22: clock ticks after boot */
	char state;
	char comm[PROCFS_COMM_MAX + 1]; /* cut at PROCFS_COMM_MAX bytes */
};

/*
 * Parses /proc/PID/stat (@len bytes). comm may hold spaces and parentheses: it runs from the
 * first '(' to the last ')'. Returns 0, or -EINVAL when a field is missing or malformed
 * (@out is then unspecified).
 */
int procfs_parse_stat(const char *p, size_t len, struct procfs_stat *out);

/*
 * Reads the real and effective ids from the Uid: and Gid: lines of /proc/PID/status.
 * Returns 0 or -EINVAL when a line is missing or malformed.
 */
int procfs_parse_status_ids(const char *p, size_t len, uint32_t *uid, uint32_t *euid, uint32_t *gid,
			    uint32_t *egid);

/* Parses /proc/PID/loginuid: the id, or -1 when it is unset (4294967295) or malformed. */
int64_t procfs_parse_loginuid(const char *p, size_t len);

/*
 * Writes the name of the terminal with encoded device number @tty_nr ("pts/3", "tty1",
 * "ttyS0", "console", or "MAJOR:MINOR" for other devices) to @out. Returns 0, -ENOENT when
 * @tty_nr is 0 (no terminal), or -ENAMETOOLONG when @size is too small.
 */
int procfs_tty_name(uint32_t tty_nr, char *out, size_t size);

/*
 * Finds the cgroup path in /proc/PID/cgroup: the cgroup v2 line ("0::PATH"), or the
 * name=systemd line on a v1-only host. Returns true with *@path / *@path_len pointing into
 * @p, or false when there is no such line.
 */
bool procfs_cgroup_path(const char *p, size_t len, const char **path, size_t *path_len);

/*
 * Finds a container id on any line of /proc/PID/cgroup (hybrid hosts keep the runtime's
 * cgroups on the v1 lines only). Returns true and writes @out, or false.
 */
bool procfs_cgroup_container_id(const char *p, size_t len, char out[CONTAINER_ID_LEN + 1]);

/*
 * Turns /proc/PID/cmdline (arguments each ending in NUL) into one line in place: trailing
 * NULs are dropped and the others become spaces. Returns the new length.
 */
size_t procfs_join_cmdline(char *p, size_t len);

#endif
