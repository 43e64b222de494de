/*
 * Content activation on the agent: bundles dropped into the inbox are read (size-capped),
 * verified against the pinned trust root, checked against the active version, compiled with
 * the agent's built-in rules, test-loaded in a sandboxed child, and swapped into the live
 * engine between two events. A new version runs on trial: a crash loop reverts it to the
 * last-known-good copy and quarantines it, a health window with detection liveness makes it
 * the new last-known-good. Every step is recorded in the state directory.
 */
#ifndef VIGIL_AGENT_UPDATER_H
#define VIGIL_AGENT_UPDATER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/buf.h"

struct agent;
struct updater;

#define UPDATER_DEFAULT_HEALTH_WINDOW	  600.0
#define UPDATER_DEFAULT_TRIAL_STARTS	  3u
#define UPDATER_DEFAULT_LIVENESS_INTERVAL 60.0
#define UPDATER_DEFAULT_TEST_LOAD_TIMEOUT 30.0
/* Seconds between two scans of the inbox when no inotify event arrives. */
#define UPDATER_SCAN_INTERVAL 0.5
/* Compiled pattern databases kept across activations: about two versions of a large set
 * (SigmaHQ plus default content holds ~2 MB), unused ones dropped first. */
#define UPDATER_CACHE_MAX_ENTRIES 1024u
#define UPDATER_CACHE_MAX_BYTES	  (16u * 1024u * 1024u)
/* Address space and CPU seconds the test-load child may use. */
#define UPDATER_TEST_LOAD_MEMORY      (2ull * 1024 * 1024 * 1024)
#define UPDATER_TEST_LOAD_CPU_SECONDS 20u

struct updater_options {
	const char *root_path; /* pinned trust root (root.json) */
	const char *state_dir;
	const char *content_dir; /* the inbox */
	double health_window;	 /* seconds on trial, with liveness, before last-known-good */
	unsigned trial_starts;	 /* starts on trial before a crash loop is declared */
	double liveness_interval;
	double test_load_timeout;
};

/*
 * Opens the trust root, the state directory and the inbox; counts this start against a
 * version on trial (reverting and quarantining it when its starts are used up); loads the
 * active version from its held copy (re-verified; the last-known-good one, then the built-in
 * rules alone, when that fails) and installs its ruleset and engine in @agent. Returns 0, or
 * -errno with a one-line reason in @err when the agent cannot run (bad root, unsafe or
 * unusable directories); *@out is then unchanged. Sets the process's allocator to serve blocks
 * up to 32 MiB from its arenas and to keep up to 64 MiB free in each (mallopt
 * M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), for the compile's memory.
 */
int updater_open(struct agent *agent, const struct updater_options *opt, struct updater **out,
		 char *err, size_t errlen);

/*
 * One turn of the activation machine, called by the main loop between source polls (so a
 * swap falls between two events): takes a new bundle from the inbox, advances the activation
 * in progress without blocking, probes liveness when due, ends a trial. Never blocks for long.
 */
void updater_tick(struct updater *u);

/*
 * The server pulled release @version (halted its rollout). When it runs here (on trial or as
 * last-known-good) or is kept as a good version to return to, it is quarantined, never to be
 * activated again, and the agent returns to the good version it ran before, from its own held
 * copy; a version that never ran here is left alone. Nothing older than what this host
 * already ran is taken on the server's word alone. Acted on at the next idle tick.
 */
void updater_pull(struct updater *u, uint64_t version);

/* True while an activation is in progress: the main loop then polls its source briefly. */
bool updater_busy(const struct updater *u);

/* Appends ,"content":{...},"liveness":{...} to a metric line being built. */
int updater_metrics(const struct updater *u, struct buf *out);

/*
 * Called when the agent stops because it was asked to (a signal, --duration), not because it
 * failed: the start it counted against a version on trial is given back, so restarts and
 * reboots during a trial are not taken for a crash loop. Accepts NULL.
 */
void updater_stopped_cleanly(struct updater *u);

/* Stops what is in progress (recording it), frees @u. Accepts NULL. */
void updater_close(struct updater *u);

/*
 * vigil-agent --status: prints the state of @state_dir as JSON to @out. Returns 0, or -errno
 * with a reason in @err (no such directory, unsafe, corrupt state).
 */
int updater_status(const char *state_dir, FILE *out, char *err, size_t errlen);

#endif
