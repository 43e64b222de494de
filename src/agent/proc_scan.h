/*
 * Reading processes from /proc: one process in detail (for exec events and seeding) and the
 * whole table at start, into the process cache. Every read is capped; a process that is gone
 * before it could be read is not an error.
 */
#ifndef VIGIL_PROC_SCAN_H
#define VIGIL_PROC_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/proc_cache.h"

/* Caps on what is read of one process's files. */
#define PROC_SCAN_STAT_MAX   4096u
#define PROC_SCAN_STATUS_MAX (16u * 1024u)
#define PROC_SCAN_SMALL_MAX  64u /* loginuid */
#define PROC_SCAN_CGROUP_MAX (64u * 1024u)
/* Bytes of /proc/PID/cmdline read; more is cut and marked truncated. */
#define PROC_SCAN_CMDLINE_MAX PROC_CMDLINE_MAX

/*
 * Reads what /proc tells of process @pid into @out (cleared first): ids and start time from
 * stat, credentials from status, loginuid, executable, joined command line, working
 * directory, tty, cgroup and container id. Strings are allocated and freed by
 * proc_info_clear(); unreadable ones (kernel threads, permissions) are left NULL.
 * When @args is not NULL it receives the raw NUL-separated arguments, at most
 * PROC_SCAN_CMDLINE_MAX bytes (@args must allow that many), and *@args_truncated says
 * whether there were more.
 * Returns 0 (a zombie comes back with what is left of it: no executable, no arguments),
 * -ESRCH when the process is gone, or another -errno. On error @out holds nothing to free.
 */
int proc_read_info_args(int pid, struct proc_info *out, struct buf *args, bool *args_truncated);

/* proc_read_info_args() without the raw arguments. */
int proc_read_info(int pid, struct proc_info *out);

/*
 * Reads only /proc/PID/stat: parent and start time (what a fork event needs).
 * Returns 0, -ESRCH when the process is gone, or -EINVAL.
 */
int proc_read_start(int pid, uint32_t *ppid, uint64_t *start_ticks);

/* Frees the strings of @info and zeroes it. Accepts NULL. */
void proc_info_clear(struct proc_info *info);

/*
 * Puts every process listed in /proc into @cache; *@seeded counts those stored. Processes
 * that vanish or cannot be read meanwhile are skipped. Returns 0, or -errno when /proc
 * cannot be listed or the cache is out of memory (what was seeded so far stays).
 */
int proc_scan_seed(struct proc_cache *cache, uint64_t *seeded);

#endif
