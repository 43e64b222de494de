/*
 * The agent's persisted sensor state, STATE/sensor/state.json: the staged sensor build it runs
 * (on trial or good) with the hash of its executable, the good build to return to, quarantined
 * builds and the last sensor activation. Pure: parsing, writing and the start-up decision are
 * here; files and processes are sensor.c's.
 */
#ifndef VIGIL_AGENT_SENSOR_STATE_H
#define VIGIL_AGENT_SENSOR_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

#define SENSOR_STATE_FORMAT 1
/* Bytes of the state file; a larger one is corrupt, unread. */
#define SENSOR_STATE_MAX_BYTES (64u * 1024u)
/* Quarantined builds kept (the oldest is forgotten past it). */
#define SENSOR_MAX_QUARANTINED 32u
/* Bytes (with NUL) of a recorded reason and of a step or result name. */
#define SENSOR_REASON_BYTES 256u
#define SENSOR_WORD_BYTES   16u
/* Hex digits (with NUL) of the BLAKE2b-256 of a staged executable. */
#define SENSOR_HASH_HEX 65u

/* A staged build: STATE/sensor/BUILD/vigil-agent, whose BLAKE2b-256 is hash. */
struct sensor_slot {
	bool present;
	uint64_t build;
	char hash[SENSOR_HASH_HEX];
};

struct sensor_quarantine {
	uint64_t build;
	int64_t at;
	char reason[SENSOR_REASON_BYTES];
};

struct sensor_state {
	/* the staged build to run; absent: the installed executable */
	struct sensor_slot current;
	bool trial;		     /* current is on trial (else good) */
	unsigned starts_left;	     /* trial: starts before a crash loop is declared */
	int64_t since;		     /* when current was activated */
	struct sensor_slot previous; /* the good staged build before current; absent: installed */
	size_t n_quarantined;
	struct sensor_quarantine quarantined[SENSOR_MAX_QUARANTINED];
	uint64_t crash_loop_reverts;
	/* the last sensor activation, or what happened to it */
	bool has_last;
	uint64_t last_build;
	char last_step[SENSOR_WORD_BYTES];   /* download, verify, stage, self-test, switch, ... */
	char last_result[SENSOR_WORD_BYTES]; /* trial, good, rejected, reverted, pulled */
	char last_reason[SENSOR_REASON_BYTES];
	int64_t last_at;
};

void sensor_state_init(struct sensor_state *st);

/*
 * Parses a state file (@len bytes, at most SENSOR_STATE_MAX_BYTES; strict schema, duplicate
 * keys refused). Returns 0, or -EBADMSG with a one-line reason in @err and @st empty.
 */
int sensor_state_parse(const char *data, size_t len, struct sensor_state *st, char *err,
		       size_t errlen);

/* Appends @st as one JSON object to @out. Returns 0 or a buf error. */
int sensor_state_write_json(const struct sensor_state *st, struct buf *out);

/* Records @build as quarantined (once) with @reason; past the cap the oldest is dropped. */
void sensor_state_quarantine(struct sensor_state *st, uint64_t build, const char *reason,
			     int64_t at);
bool sensor_state_quarantined(const struct sensor_state *st, uint64_t build);

/* Records what happened to the sensor activation of @build. */
void sensor_state_note(struct sensor_state *st, uint64_t build, const char *step,
		       const char *result, const char *reason, int64_t at);

/*
 * The start-up decision of an agent started afresh (not by its own exec) whose own build is
 * @own: a staged build no newer than @own is dropped (the installed executable was upgraded);
 * a build on trial has this start counted against it, and with no start left it is quarantined
 * and the good build before it (or the installed executable) runs instead. Returns the build
 * to run, 0 meaning the running executable; *@changed tells whether @st must be saved
 * (durably) before that.
 */
uint64_t sensor_state_boot(struct sensor_state *st, uint64_t own, unsigned trial_starts,
			   int64_t now, bool *changed);

#endif
