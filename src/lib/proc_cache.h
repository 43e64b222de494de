/*
 * The process cache: what the agent knows of every live process, keyed by pid, so that
 * each event gets its process and parent fields and an entity id that survives pid reuse.
 * Bounded: past the cap the least recently used entry is evicted and counted. Pure: no I/O.
 */
#ifndef VIGIL_PROC_CACHE_H
#define VIGIL_PROC_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define PROC_CACHE_DEFAULT_MAX 65536u
/* Ancestors walked for process.ancestors. */
#define PROC_ANCESTORS_MAX 16u
#define PROC_ENTITY_ID_LEN 32
/* Longest path (executable, working directory, cgroup) an entry keeps; longer ones are cut. */
#define PROC_PATH_MAX 4096u
/* Longest command line an entry keeps; longer ones are cut and enrich marks them truncated. */
#define PROC_CMDLINE_MAX (32u * 1024u)
/* Longest tty name or container id an entry keeps. */
#define PROC_SHORT_STR_MAX 256u
/* Default budget for the string bytes of all entries together (see proc_cache_set_max_bytes). */
#define PROC_CACHE_DEFAULT_MAX_BYTES (64u * 1024u * 1024u)

struct proc_info {
	uint32_t pid;
	uint32_t ppid;
	uint64_t start_ticks; /* start time in clock ticks since boot, as /proc/PID/stat field 22 */
	uint32_t uid, euid, gid, egid;
	int64_t loginuid; /* -1 when unset */
	/* strings are NUL-terminated; NULL when unknown. The cache owns its copies. */
	char *executable;
	char *command_line;
	char *working_directory;
	char *tty;
	char *cgroup;
	char *container_id;
	char entity_id[PROC_ENTITY_ID_LEN + 1];
	bool exited;
	/* command_line was cut before it reached the cache (or by the cache's own cap) */
	bool command_line_truncated;
};

struct proc_cache_stats {
	size_t entries;
	size_t max_entries;
	uint64_t evictions;  /* live entries pushed out by the cap */
	uint64_t reaped;     /* exited entries removed */
	uint64_t pid_reuse;  /* entries replaced because a pid came back with a new start time */
	uint64_t misses;     /* lookups for pids the cache did not know */
	size_t string_bytes; /* bytes held by the strings of all entries */
	size_t max_bytes;
};

struct proc_cache;

/* Returns a cache of at most @max_entries, or NULL with errno set. @boot_id salts entity ids. */
struct proc_cache *proc_cache_new(size_t max_entries, const char *boot_id);
void proc_cache_free(struct proc_cache *cache);

/*
 * Sets the budget for the string bytes of all entries together (PROC_CACHE_DEFAULT_MAX_BYTES
 * until called). Entries are evicted like at the entry cap when a put would pass it.
 */
void proc_cache_set_max_bytes(struct proc_cache *cache, size_t max_bytes);

/* Computes the entity id of (@pid, @start_ticks) on the boot @boot_id into @out. */
void proc_entity_id(const char *boot_id, uint32_t pid, uint64_t start_ticks,
		    char out[PROC_ENTITY_ID_LEN + 1]);

/*
 * Returns the entry for @pid or NULL (a miss is counted). The pointer is valid until the
 * next call that changes the cache.
 */
const struct proc_info *proc_cache_get(struct proc_cache *cache, uint32_t pid);

/*
 * Inserts or replaces the entry for @info->pid, copying its strings and computing its
 * entity id. A known pid with another start time is pid reuse: the old entry is replaced.
 * Returns 0 or -ENOMEM (the cache is then unchanged).
 */
int proc_cache_put(struct proc_cache *cache, const struct proc_info *info);

/*
 * Records a fork: the child inherits the parent's image and credentials. When the parent is
 * unknown the child is recorded with what is given. Returns 0 or -ENOMEM.
 */
int proc_cache_fork(struct proc_cache *cache, uint32_t parent, uint32_t child,
		    uint64_t child_start_ticks);

/* Marks @pid exited; it is kept for late events until the cache needs room. */
void proc_cache_exit(struct proc_cache *cache, uint32_t pid);

/*
 * Sets process.* (pid, entity_id, executable, name, command_line, working directory, tty,
 * cgroup, user and group ids, container.id), process.parent.* and process.ancestors on @ev
 * from the entry for @pid, leaving fields the event already carries untouched.
 * process.ancestors holds the known executables of up to PROC_ANCESTORS_MAX ancestors,
 * parent first, ending with pid 1 when the chain reaches it. A cached "parent" that started
 * after its child is a reused pid and is ignored. Allocates nothing beyond the event's own
 * storage. Returns true when @pid was known.
 */
bool proc_cache_enrich(struct proc_cache *cache, struct event *ev, uint32_t pid);

void proc_cache_get_stats(const struct proc_cache *cache, struct proc_cache_stats *out);

#endif
