/*
 * Event sources of vigil-agent: eBPF (main), netlink proc connector (fallback) and replay
 * of the agent's own NDJSON. Each source turns what it reads into struct event and hands
 * it to agent_emit().
 */
#ifndef VIGIL_SOURCE_H
#define VIGIL_SOURCE_H

#include <stddef.h>

#include "../lib/buf.h"

struct agent;
struct source;

/* Event categories a source can be asked to observe (agent_options.categories, 0 = all). */
#define SOURCE_CAT_PROCESS 0x01u /* exec, fork, exit, ptrace */
#define SOURCE_CAT_FILE	   0x02u /* create, write, rename, delete, chmod, memfd-create */
#define SOURCE_CAT_NETWORK 0x04u /* connect, accept, bind, addressed UDP sends */
#define SOURCE_CAT_HOST	   0x08u /* setuid, setgid */
#define SOURCE_CAT_DRIVER  0x10u /* module-load */
#define SOURCE_CAT_ALL	   0x1fu

struct source_ops {
	const char *name; /* "bpf", "proc" or "replay" */
	/*
	 * Starts the source. @arg is the replay file for "replay", NULL otherwise. Returns 0, or
	 * -errno with a one-line reason in @err (what is missing, for a kernel that lacks it).
	 */
	int (*open)(struct agent *agent, const char *arg, struct source **out, char *err,
		    size_t errlen);
	/*
	 * Waits up to @timeout_ms for events and hands each to agent_emit(). Returns the number
	 * handled, -ENODATA when a finite source is exhausted, or another -errno on failure.
	 */
	int (*poll)(struct source *src, int timeout_ms);
	/*
	 * Appends the source's own counters (drops by cause and event type, what it lacks) as
	 * JSON members, each preceded by a comma, to the metric line being built in @out.
	 */
	int (*metrics)(struct source *src, struct buf *out);
	/* Stops the source and frees it. Accepts NULL. */
	void (*close)(struct source *src);
};

extern const struct source_ops source_bpf_ops;
extern const struct source_ops source_proc_ops;
extern const struct source_ops source_replay_ops;

/* Lines the replay source rejected as malformed so far. */
unsigned long source_replay_rejected(const struct source *src);

#endif
