/*
 * The agent's persisted content state: DIR/state.json (active, last-known-good and trial
 * versions, quarantined versions, recent rejections, the activation in progress) and
 * DIR/bundles/VERSION.bundle, the copies of the bundles it names. Every file is replaced
 * atomically (temporary file, fsync, rename, fsync of the directory), so a power loss leaves
 * either the old or the new state, never a mix.
 */
#ifndef VIGIL_AGENT_STATE_H
#define VIGIL_AGENT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/buf.h"

#define STATE_FILE	   "state.json"
#define STATE_CORRUPT_FILE "state.json.corrupt"
#define STATE_BUNDLE_DIR   "bundles"
#define STATE_FORMAT	   1

/* Bytes of state.json; a larger file is treated as corrupt, unread. */
#define STATE_MAX_BYTES (256u * 1024u)
/* Quarantined versions kept (the oldest is forgotten past it) and rejections remembered. */
#define STATE_MAX_QUARANTINED 64u
#define STATE_MAX_REJECTIONS  64u
/* Bytes (with NUL) of a recorded reason, file name and step name. */
#define STATE_REASON_BYTES 384u
#define STATE_NAME_BYTES   160u
#define STATE_STEP_BYTES   16u

/* The steps of an activation, in order; each is recorded in state.json as it starts. */
#define STATE_STEPS(X) X(read) X(verify) X(version) X(compile) X(test_load) X(trial) X(swap)

enum state_step {
#define X(name) STEP_##name,
	STATE_STEPS(X)
#undef X
	    STEP_COUNT
};

/* "read", "verify", ... ("test-load" for STEP_test_load). */
const char *state_step_name(enum state_step step);

struct state_quarantine {
	uint64_t version;
	int64_t at; /* seconds since the epoch */
	char reason[STATE_REASON_BYTES];
};

struct state_rejection {
	char file[STATE_NAME_BYTES];
	bool has_version;
	uint64_t version;
	char step[STATE_STEP_BYTES];
	char reason[STATE_REASON_BYTES];
	int64_t at;
};

/* The activation in progress, or the last one. */
struct state_activation {
	bool present;
	char file[STATE_NAME_BYTES];
	bool has_version;
	uint64_t version;
	char step[STATE_STEP_BYTES];   /* the step reached */
	char result[STATE_STEP_BYTES]; /* "in-progress", "trial", "good", "rejected", "interrupted"
					*/
	int64_t started;	       /* seconds since the epoch */
	int64_t step_us[STEP_COUNT];   /* time spent in each step; -1 when not reached */
	int64_t total_us;	       /* first byte read to swap; -1 until swapped */
};

struct agent_state {
	bool has_active;
	uint64_t active;
	bool has_lkg;
	uint64_t lkg;
	/* the last-known-good version before lkg, kept so that a release the server pulls after
	 * it became last-known-good here can still be left for what ran before it */
	bool has_prev_good;
	uint64_t prev_good;
	bool has_trial;
	uint64_t trial_version;
	unsigned trial_starts_left;
	int64_t trial_activated_at;
	size_t n_quarantined;
	struct state_quarantine quarantined[STATE_MAX_QUARANTINED];
	size_t n_rejections; /* oldest first */
	struct state_rejection rejections[STATE_MAX_REJECTIONS];
	struct state_activation activation;
	uint64_t crash_loop_reverts;
	/* detection liveness as last recorded */
	uint64_t liveness_ok;
	uint64_t liveness_failed;
	int liveness_last; /* -1 never probed, 0 failed, 1 ok */
	int64_t liveness_at;
};

/* Empties @st (no versions, nothing quarantined, no liveness yet). */
void state_init(struct agent_state *st);

/*
 * Opens the state directory @path, creating it (mode 0700) and its bundles/ subdirectory
 * when missing. Refuses a symbolic link, a directory owned by another user, or one that is
 * group- or world-writable (-EPERM). Stores directory descriptors in *@dirfd and, unless
 * @bundlefd is NULL, *@bundlefd (O_CLOEXEC; the caller closes them). Returns 0, or -errno
 * with a one-line reason in @err.
 */
int state_dir_open(const char *path, bool create, int *dirfd, int *bundlefd, char *err,
		   size_t errlen);

/*
 * The same ownership and permission checks for a directory descriptor, for directories such
 * as the inbox. Returns 0 or -EPERM / -ENOTDIR with a reason in @err.
 */
int state_dir_check(int fd, const char *path, char *err, size_t errlen);

/*
 * Reads DIR/state.json into @st. A missing file gives an empty state and returns 0. A file
 * that is too large, not JSON or not in this format returns -EBADMSG with the reason in @err
 * and leaves @st empty; with @move_aside it is renamed to state.json.corrupt first, so the
 * agent can start over while a person can still read what was there.
 */
int state_load(int dirfd, bool move_aside, struct agent_state *st, char *err, size_t errlen);

/*
 * Parses the text of a state.json (@len bytes, at most STATE_MAX_BYTES) into @st. Returns 0,
 * or -EBADMSG with the reason in @err and @st empty.
 */
int state_parse(const char *data, size_t len, struct agent_state *st, char *err, size_t errlen);

/*
 * Replaces DIR/state.json with @st atomically: after a power loss it holds the old or the
 * new state, whole. @durable also fsyncs the directory, so the new state is the one that
 * survives (needed for the trial record; a step record may be lost). Returns 0 or -errno.
 */
int state_save(int dirfd, const struct agent_state *st, bool durable);

/* Appends @st as one JSON object (indented when @pretty) to @out. Returns 0 or -errno. */
int state_write_json(const struct agent_state *st, bool pretty, struct buf *out);

/* Writes BUNDLES/VERSION.bundle atomically and durably. Returns 0 or -errno. */
int state_bundle_store(int bundlefd, uint64_t version, const void *data, size_t len);

/* Reads BUNDLES/VERSION.bundle, at most @max bytes, into @out. Returns 0 or -errno. */
int state_bundle_read(int bundlefd, uint64_t version, size_t max, struct buf *out);

/*
 * Removes every file of BUNDLES that is not the copy of the active, last-known-good, previous
 * good or trial version (left-over temporary files included). Returns the number removed or -errno.
 */
int state_bundle_prune(int bundlefd, const struct agent_state *st);

/*
 * Reads the regular file @name of directory @dirfd, refusing a symbolic link, anything that
 * is not a regular file (without blocking on a FIFO) and more than @max bytes, before reading
 * it. Returns 0, -E2BIG, -ELOOP, -EINVAL (not a regular file), -EBUSY (changed while read) or
 * another -errno.
 */
int state_read_file_at(int dirfd, const char *name, size_t max, struct buf *out);

/* Copies @src (@len bytes) into @dst (@size bytes, NUL-terminated), replacing every byte
 * that is not printable ASCII with '?' and cutting it to fit. */
void state_copy_text(char *dst, size_t size, const char *src, size_t len);

/* Records @version as quarantined (once) with @reason; past the cap the oldest is dropped. */
void state_quarantine(struct agent_state *st, uint64_t version, const char *reason, int64_t at);

/* The quarantine entry of @version, or NULL. */
const struct state_quarantine *state_quarantined(const struct agent_state *st, uint64_t version);

/* Appends a rejection; past STATE_MAX_REJECTIONS the oldest is dropped. */
void state_reject(struct agent_state *st, const char *file, bool has_version, uint64_t version,
		  const char *step, const char *reason, int64_t at);

#endif
