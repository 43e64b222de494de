/*
 * Sensor updates on the agent: a new agent build, offered by the server as a signed sensor
 * bundle, is downloaded and checked by a worker thread (size cap, hash, signatures against the
 * pinned root, kind, version, an ELF executable for this machine stamped with that build),
 * staged at STATE/sensor/BUILD/vigil-agent and run in a sandboxed child with --self-test;
 * then the agent records a trial and re-executes itself into it. Every start consults the
 * sensor state first: a staged build on trial or good is exec'd into (its hash checked), a
 * build that crash-loops is quarantined and the good one before it (or the installed
 * executable) runs again, with no network and no person. See docs/sensor-update.md.
 */
#ifndef VIGIL_AGENT_SENSOR_H
#define VIGIL_AGENT_SENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../lib/buf.h"

struct agent;
struct sensor;
struct uplink_content;

/* Seconds the self-test child of a staged build may take. */
#define SENSOR_SELF_TEST_TIMEOUT 30.0
/* Bytes of the self-test child's report read at most. */
#define SENSOR_SELF_TEST_REPORT 4096u
/* The environment variables an agent passes across its own exec. */
#define SENSOR_ENV_EXEC	     "VIGIL_SENSOR_EXEC"
#define SENSOR_ENV_INSTALLED "VIGIL_SENSOR_INSTALLED"

struct sensor_options {
	const char *state_dir;
	const char *root_path; /* pinned trust root; NULL: no sensor updates */
	const char *server;    /* base URL of vigil-server; NULL: no downloads */
	const char *cacert;
	unsigned trial_starts;
	double health_window;
	double self_test_timeout;
};

/* The build number stamped into this executable (make SENSOR_BUILD=N). */
uint64_t sensor_own_build(void);

/*
 * First thing at every start (one thread, nothing opened yet): reads STATE/sensor/state.json
 * and, on a fresh start, counts it against a build on trial (quarantining it after a crash
 * loop); when a staged build is to run, re-executes into it with @argv and does not return.
 * Returns 0 to go on with this executable, or -errno with a reason in @err (it goes on then
 * too: a broken sensor state never stops the agent).
 */
int sensor_boot(const char *state_dir, unsigned trial_starts, char **argv, char *err,
		size_t errlen);

/*
 * --self-test: compiles the built-in rules, runs the built-in self-test corpus and prints one
 * JSON line {"self_test": "ok", "sensor_build": N, ...} to @out. Returns 0 or 1.
 */
int sensor_self_test(FILE *out);

/* Opens the sensor state and starts the worker thread. 0, or -errno with a reason in @err. */
int sensor_open(struct agent *agent, const struct sensor_options *opt, struct sensor **out,
		char *err, size_t errlen);

/* The heartbeat answer's "sensor" (uplink thread): a build to fetch, or one pulled. */
void sensor_offer(struct sensor *s, const struct uplink_content *c);

/* For the heartbeat (any thread): the build running, sensor crash-loop reverts, quarantined
 * builds (at most @max into @q, their number in *@n). */
void sensor_report(struct sensor *s, uint64_t *build, uint64_t *reverts, uint64_t *q, size_t max,
		   size_t *n);

/*
 * Main loop, between two events: a staged build that passed its self-test gets its trial
 * record (written durably) and an exec is requested; a pull is acted on; a build on trial
 * that ran the health window with liveness intact becomes good.
 */
void sensor_tick(struct sensor *s);

/* True when the main loop should stop cleanly and call sensor_exec(). */
bool sensor_exec_pending(const struct sensor *s);

/* Re-executes into the build the state names (after the agent has shut down cleanly).
 * Returns only on failure, with -errno. */
int sensor_exec(struct sensor *s, char **argv);

/* A stop that was asked for gives a build on trial its start back. Accepts NULL. */
void sensor_stopped_cleanly(struct sensor *s);

/* Test builds: crash now when this build is the one VIGIL_TEST_SENSOR_CRASH names. */
void sensor_started(struct sensor *s);

/* Appends ,"sensor":{...} to a metric line. */
int sensor_metrics(struct sensor *s, struct buf *out);

/* Stops the worker, frees @s. Accepts NULL. */
void sensor_close(struct sensor *s);

/* The sensor state of @state_dir as one JSON object (for --status). 0 or -errno. */
int sensor_status_json(const char *state_dir, struct buf *out, char *err, size_t errlen);

#endif
