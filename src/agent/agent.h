/*
 * vigil-agent's state: options, process cache, output and counters, hanging off one
 * struct that every part receives explicitly.
 */
#ifndef VIGIL_AGENT_H
#define VIGIL_AGENT_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/buf.h"
#include "../lib/event.h"
#include "../lib/proc_cache.h"
#include "source.h"

struct updater;
struct uplink;
struct sensor;

#define AGENT_VERSION "0.1.0"

/* Event actions the agent counts separately in its metric lines. */
/* clang-format off */
#define AGENT_ACTIONS(X) \
	X(exec) \
	X(fork) \
	X(exit) \
	X(create) \
	X(write) \
	X(rename) \
	X(delete) \
	X(chmod) \
	X(connect) \
	X(accept) \
	X(bind) \
	X(setuid) \
	X(setgid) \
	X(module_load) \
	X(ptrace) \
	X(memfd_create) \
	X(other)
/* clang-format on */

enum agent_action {
#define X(name) ACT_##name,
	AGENT_ACTIONS(X)
#undef X
	    ACT_COUNT
};

struct agent_options {
	bool print;
	double duration;	/* seconds; 0 runs until stopped */
	const char *source;	/* "bpf", "proc", "replay:FILE" or NULL for best available */
	double metric_interval; /* seconds between metric lines */
	size_t cache_max;
	unsigned int categories; /* SOURCE_CAT_* to observe; 0 means all */
	const char *rules_path;	 /* rules directory or file to evaluate, or NULL */
	bool alerts_only;	 /* print alerts and metric lines, not events */
	bool response_audit;	 /* report kill responses instead of acting on them */
	/* content activation (updater.h): bundles from content_dir, state in state_dir */
	const char *root_path;
	const char *state_dir;
	const char *content_dir;
	double health_window;
	unsigned trial_starts;
	double liveness_interval;
	double test_load_timeout;
	bool status; /* --status: print the state of state_dir and exit */
	/* the uplink to vigil-server (uplink.h), state in state_dir */
	const char *server;
	const char *enroll_token_file;
	const char *cacert;
	unsigned long long spool_bytes;
	bool upload_events;
	bool self_test; /* --self-test: check this build and exit (sensor.h) */
};

struct agent_counters {
	uint64_t emitted[ACT_COUNT];
	uint64_t write_errors;	  /* events that could not be written to stdout */
	uint64_t oversize_events; /* events whose JSON passed the line cap */
	uint64_t alerts;
	uint64_t responses[5]; /* by enum response_result */
};

/* Counters of engines that content activations replaced, so metric lines stay cumulative. */
struct engine_totals {
	uint64_t events;
	uint64_t alerts;
	uint64_t errors;
	uint64_t state_evictions;
};

#define USER_NAME_CACHE 64

/* One remembered getpwuid_r answer; name is empty when the uid has no entry. */
struct user_name_slot {
	bool used;
	uint32_t uid;
	char name[64];
};

struct agent {
	struct agent_options opt;
	const struct source_ops *source_ops;
	struct source *source;
	struct proc_cache *cache;
	struct agent_counters counters;
	uint64_t sequence;
	uint64_t boot_epoch_ns; /* CLOCK_REALTIME minus CLOCK_BOOTTIME at start */
	pid_t self_pid;
	char host_name[256];
	char agent_id[256];
	char boot_id[64];
	struct ruleset *rules;
	struct engine *engine;
	struct event *alert_scratch;
	struct updater *updater; /* content activation, or NULL */
	struct uplink *uplink;	 /* the link to vigil-server, or NULL */
	struct sensor *sensor;	 /* sensor updates (sensor.h), or NULL */
	bool content_on_trial;	 /* the active content is on trial: responses are audited */
	struct engine_totals engine_retired;
	uint64_t engine_probe_events; /* the agent's own liveness probes, not source events */
	uint64_t engine_probe_alerts;
	struct user_name_slot user_names[USER_NAME_CACHE];
	struct buf line; /* output line being built */
	FILE *out;
};

/* Maps an event.action string to its counter slot. */
enum agent_action agent_action_of(const char *action, size_t len);

/*
 * Completes @ev (sequence, timestamp when missing, host and agent fields, process fields
 * from the cache) and writes it. Sources call this once per event; @ev stays theirs.
 * Returns 0 or -errno (a write failure is also counted).
 */
int agent_emit(struct agent *agent, struct event *ev);

/* Converts a CLOCK_BOOTTIME timestamp (BPF's bpf_ktime_get_boot_ns) to epoch nanoseconds. */
uint64_t agent_boot_to_epoch(const struct agent *agent, uint64_t boot_ns);

#endif
