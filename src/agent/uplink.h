/*
 * The agent's link to vigil-server: a thread that enrolls once (credentials kept in the state
 * directory), heartbeats on the server's interval with jitter, downloads the content the
 * server names into the activation inbox, and uploads alerts (and events when asked) from an
 * on-disk spool bounded in bytes, resending after an outage with no loss and no duplicates.
 * The main loop only hands records to the spool; it never waits on the network.
 */
#ifndef VIGIL_AGENT_UPLINK_H
#define VIGIL_AGENT_UPLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

struct agent;
struct uplink;

#define UPLINK_DEFAULT_SPOOL_BYTES (64ull * 1024 * 1024)
/* Records and bytes of one upload batch. */
#define UPLINK_BATCH_RECORDS 500u
#define UPLINK_BATCH_BYTES   (4u * 1024u * 1024u)
/* Seconds between heartbeats until the server says otherwise. */
#define UPLINK_DEFAULT_HEARTBEAT 60.0
/* Longest wait between two attempts after failures (and never much more than the heartbeat
 * interval, see uplink.c). */
#define UPLINK_MAX_BACKOFF 60.0

struct uplink_options {
	const char *server;	       /* base URL: http://HOST:PORT or https://... */
	const char *enroll_token_file; /* read once, for the first enrollment */
	const char *cacert;	       /* CA bundle for https, or NULL for the system's */
	const char *state_dir;	       /* credentials and spools */
	const char *content_dir;       /* inbox for downloaded bundles, or NULL: no downloads */
	uint64_t spool_bytes;	       /* per spool */
	bool events;		       /* upload events as well as alerts */
	double heartbeat;	       /* seconds until the server gives its interval; 0: default */
};

/*
 * Opens the spools and the stored credentials (or reads the enrollment token) and starts the
 * thread. Returns 0 and *@out, or -errno with a one-line reason in @err.
 */
int uplink_open(struct agent *agent, const struct uplink_options *opt, struct uplink **out,
		char *err, size_t errlen);

/* Queues an alert (@alert) or an event for upload: @json is one line of @len bytes. */
void uplink_record(struct uplink *u, bool alert, const char *json, size_t len);

/*
 * Hands the thread the agent's counters for the next heartbeat, and gives the agent the id
 * the server enrolled it under once it has one (main thread).
 */
void uplink_publish(struct uplink *u, struct agent *agent);

/*
 * True while the server says the content the agent runs is a release still baking in the
 * agent's step: kill responses then stay in audit mode (main thread, cheap).
 */
bool uplink_audit_mode(struct uplink *u);

/*
 * The release version the server last said it pulled (halted), once: 0 when none since the
 * last call (main thread; the updater quarantines it and leaves it).
 */
uint64_t uplink_take_pulled(struct uplink *u);

/* True when events are uploaded too. */
bool uplink_wants_events(const struct uplink *u);

/* Appends ,"uplink":{...} (enrolled, heartbeats, spool counts, evictions) to a metric line. */
int uplink_metrics(struct uplink *u, struct buf *out);

/*
 * Stops the thread after one last upload attempt (a few seconds at most), records a clean
 * stop, frees @u. What was not acknowledged stays in the spool for the next start. Accepts
 * NULL.
 */
void uplink_close(struct uplink *u);

#endif
