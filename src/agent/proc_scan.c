/*
 * Reading processes from /proc. Each process is read through one directory descriptor, so
 * every file comes from the same process even if its pid is reused while it is read.
 */
#include "proc_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/procfs.h"

/* Chunk read at a time into a growing buffer. */
#define READ_CHUNK 4096u

/* "Gone" in all the ways /proc says it: the directory or the task has vanished. */
static int gone_or(int err)
{
	return err == -ENOENT || err == -ESRCH ? -ESRCH : err;
}

static int open_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	return fd < 0 ? -errno : fd;
}

/* True when one more byte can be read from @fd: the file is longer than what was taken. */
static bool more_to_read(int fd)
{
	char extra;
	ssize_t n;

	do
		n = read(fd, &extra, 1);
	while (n < 0 && errno == EINTR);
	return n > 0;
}

/*
 * Reads file @name of process directory @dirfd into @p, at most @cap bytes. Sets *@len and,
 * when @truncated is not NULL, whether the file held more. Returns 0 or -errno.
 */
static int read_small(int dirfd, const char *name, char *p, size_t cap, size_t *len,
		      bool *truncated)
{
	int fd = open_at(dirfd, name);
	size_t got = 0;
	int err = 0;

	if (fd < 0)
		return fd;
	while (got < cap) {
		ssize_t n = read(fd, p + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto out_close;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*len = got;
	if (truncated)
		*truncated = got == cap && more_to_read(fd);
out_close:
	close(fd);
	return err;
}

/*
 * Reads file @name of @dirfd into @b (reset first), at most @cap bytes and never past the
 * buffer's own cap. Returns 0 or -errno; *@truncated says whether the file held more.
 */
static int read_into_buf(int dirfd, const char *name, struct buf *b, size_t cap, bool *truncated)
{
	int fd = open_at(dirfd, name);
	int err = 0;

	buf_reset(b);
	*truncated = false;
	if (fd < 0)
		return fd;
	if (cap > b->max)
		cap = b->max;
	while (b->len < cap) {
		size_t want = cap - b->len < READ_CHUNK ? cap - b->len : READ_CHUNK;
		ssize_t n;

		err = buf_reserve(b, want);
		if (err)
			goto out_close;
		n = read(fd, b->data + b->len, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto out_close;
		}
		if (n == 0)
			break;
		b->len += (size_t)n;
	}
	*truncated = b->len == cap && more_to_read(fd);
out_close:
	close(fd);
	return err;
}

/*
 * Resolves link @name of @dirfd ("exe", "cwd") into a new string in *@out. A target longer
 * than PROC_PATH_MAX is kept one byte over the cap, so the cache cuts it and says so.
 * Returns 0 or -errno (*@out stays NULL).
 */
static int read_link(int dirfd, const char *name, char **out)
{
	char target[PROC_PATH_MAX + 1];
	ssize_t n = readlinkat(dirfd, name, target, sizeof(target));

	*out = NULL;
	if (n < 0)
		return -errno;
	*out = strndup(target, (size_t)n);
	return *out ? 0 : -ENOMEM;
}

/* Copies @len bytes at @p into a new string in *@out; returns 0 or -ENOMEM. */
static int dup_span(const char *p, size_t len, char **out)
{
	*out = strndup(p, len);
	return *out ? 0 : -ENOMEM;
}

void proc_info_clear(struct proc_info *info)
{
	if (!info)
		return;
	free(info->executable);
	free(info->command_line);
	free(info->working_directory);
	free(info->tty);
	free(info->cgroup);
	free(info->container_id);
	memset(info, 0, sizeof(*info));
	info->loginuid = -1;
}

/* Fills the command line of @out from the raw arguments in @args. Returns 0 or -ENOMEM. */
static int set_command_line(struct proc_info *out, const struct buf *args, bool truncated)
{
	size_t len;

	out->command_line_truncated = truncated;
	if (args->len == 0)
		return 0; /* kernel thread or zombie: no arguments */
	out->command_line = malloc(args->len + 1);
	if (!out->command_line)
		return -ENOMEM;
	memcpy(out->command_line, args->data, args->len);
	len = procfs_join_cmdline(out->command_line, args->len);
	out->command_line[len] = '\0';
	return 0;
}

/* Fills cgroup and container id of @out from /proc/PID/cgroup. Returns 0 or -ENOMEM. */
static int read_cgroup(int dirfd, struct proc_info *out)
{
	struct buf b;
	bool cut;
	const char *path;
	size_t len;
	char id[CONTAINER_ID_LEN + 1];
	int err = 0;

	buf_init(&b, PROC_SCAN_CGROUP_MAX);
	if (read_into_buf(dirfd, "cgroup", &b, PROC_SCAN_CGROUP_MAX, &cut) < 0 || b.len == 0)
		goto out_release; /* no cgroup is not worth failing the process for */
	if (procfs_cgroup_path(b.data, b.len, &path, &len))
		err = dup_span(path, len, &out->cgroup);
	if (!err && procfs_cgroup_container_id(b.data, b.len, id))
		err = dup_span(id, strlen(id), &out->container_id);
out_release:
	buf_release(&b);
	return err;
}

int proc_read_info_args(int pid, struct proc_info *out, struct buf *args, bool *args_truncated)
{
	char path[32];
	char text[PROC_SCAN_STATUS_MAX];
	char tty[32];
	struct procfs_stat st;
	struct buf local;
	bool cut = false;
	size_t len;
	int dirfd, err, n;

	memset(out, 0, sizeof(*out));
	out->loginuid = -1;
	if (args_truncated)
		*args_truncated = false;
	if (pid <= 0)
		return -EINVAL;
	n = snprintf(path, sizeof(path), "/proc/%d", pid);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -EINVAL;
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dirfd < 0)
		return gone_or(-errno);
	buf_init(&local, PROC_SCAN_CMDLINE_MAX);
	if (!args)
		args = &local;

	/* stat and status are what every process has: without them it is gone */
	err = read_small(dirfd, "stat", text, PROC_SCAN_STAT_MAX, &len, NULL);
	if (err)
		goto out_clear_info;
	err = procfs_parse_stat(text, len, &st);
	if (err)
		goto out_clear_info;
	out->pid = (uint32_t)pid;
	out->ppid = st.ppid;
	out->start_ticks = st.start_ticks;

	err = read_small(dirfd, "status", text, sizeof(text), &len, NULL);
	if (err)
		goto out_clear_info;
	err = procfs_parse_status_ids(text, len, &out->uid, &out->euid, &out->gid, &out->egid);
	if (err)
		goto out_clear_info;

	/* the rest is best effort: kernel threads, zombies and permissions leave gaps */
	if (read_small(dirfd, "loginuid", text, PROC_SCAN_SMALL_MAX, &len, NULL) == 0)
		out->loginuid = procfs_parse_loginuid(text, len);
	err = read_link(dirfd, "exe", &out->executable);
	if (err == -ENOMEM)
		goto out_clear_info;
	err = read_link(dirfd, "cwd", &out->working_directory);
	if (err == -ENOMEM)
		goto out_clear_info;
	err = read_into_buf(dirfd, "cmdline", args, PROC_SCAN_CMDLINE_MAX, &cut);
	if (err == -ENOMEM)
		goto out_clear_info;
	if (err)
		buf_reset(args);
	if (args_truncated)
		*args_truncated = cut;
	err = set_command_line(out, args, cut);
	if (err)
		goto out_clear_info;
	if (procfs_tty_name(st.tty_nr, tty, sizeof(tty)) == 0) {
		err = dup_span(tty, strlen(tty), &out->tty);
		if (err)
			goto out_clear_info;
	}
	err = read_cgroup(dirfd, out);
	if (err)
		goto out_clear_info;
	buf_release(&local);
	close(dirfd);
	return 0;

out_clear_info:
	proc_info_clear(out);
	if (args_truncated)
		*args_truncated = false;
	buf_release(&local);
	close(dirfd);
	return gone_or(err);
}

int proc_read_info(int pid, struct proc_info *out)
{
	return proc_read_info_args(pid, out, NULL, NULL);
}

int proc_read_start(int pid, uint32_t *ppid, uint64_t *start_ticks)
{
	char path[32];
	char text[PROC_SCAN_STAT_MAX];
	struct procfs_stat st;
	size_t len;
	int dirfd, err, n;

	if (pid <= 0)
		return -EINVAL;
	n = snprintf(path, sizeof(path), "/proc/%d", pid);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -EINVAL;
	dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dirfd < 0)
		return gone_or(-errno);
	err = read_small(dirfd, "stat", text, sizeof(text), &len, NULL);
	if (!err)
		err = procfs_parse_stat(text, len, &st);
	if (!err) {
		*ppid = st.ppid;
		*start_ticks = st.start_ticks;
	}
	close(dirfd);
	return gone_or(err);
}

/* The pid named by a /proc directory entry, or 0 when it names something else. */
static int pid_of_name(const char *name)
{
	long v = 0;

	if (!*name)
		return 0;
	for (const char *c = name; *c; c++) {
		if (*c < '0' || *c > '9')
			return 0;
		v = v * 10 + (*c - '0');
		if (v > INT_MAX)
			return 0;
	}
	return (int)v;
}

int proc_scan_seed(struct proc_cache *cache, uint64_t *seeded)
{
	struct proc_info info;
	struct dirent *de;
	DIR *dir;
	int fd, err = 0;

	*seeded = 0;
	fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		err = -errno;
		close(fd);
		return err;
	}
	for (;;) {
		int pid;

		errno = 0;
		de = readdir(dir);
		if (!de) {
			err = errno ? -errno : 0;
			break;
		}
		pid = pid_of_name(de->d_name);
		if (pid <= 0)
			continue;
		err = proc_read_info(pid, &info);
		if (err == -ENOMEM)
			break;
		if (err) {
			err = 0; /* gone or unreadable meanwhile: nothing to know */
			continue;
		}
		err = proc_cache_put(cache, &info);
		proc_info_clear(&info);
		if (err)
			break;
		(*seeded)++;
	}
	closedir(dir);
	return err;
}
