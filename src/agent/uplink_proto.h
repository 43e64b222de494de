/*
 * What the agent reads from vigil-server, parsed into fixed-size structures before anything
 * acts on it: the enrollment answer, the heartbeat answer and the stored credentials. Every
 * string is checked against what the server issues (identifiers and credentials are plain
 * ASCII tokens, hashes are 64 hex digits, download paths are the server's bundle path), so
 * nothing from the network reaches a URL, a header, a file name or a JSON file unchecked.
 */
#ifndef VIGIL_AGENT_UPLINK_PROTO_H
#define VIGIL_AGENT_UPLINK_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes (with NUL) of an agent id and a credential. */
#define UPLINK_ID_BYTES	  64u
#define UPLINK_CRED_BYTES 256u
/* Bytes of a heartbeat or enrollment answer read at most. */
#define UPLINK_REPLY_MAX (1u << 20)
/* Heartbeat intervals the agent accepts from the server, in seconds. */
#define UPLINK_MIN_INTERVAL 1
#define UPLINK_MAX_INTERVAL 86400
#define UPLINK_URL_PREFIX   "/api/v1/bundles/"

struct uplink_enrollment {
	char agent_id[UPLINK_ID_BYTES];
	char credential[UPLINK_CRED_BYTES];
};

/* The "content" or the "sensor" of a heartbeat answer. */
struct uplink_content {
	bool present;	   /* false: null or absent (no release applies) */
	bool has_version;  /* false: null (pulled with no previous good version) */
	uint64_t version;  /* what to run */
	bool downloadable; /* hash, size and url given */
	char hash[65];
	int64_t size;
	char url[sizeof(UPLINK_URL_PREFIX) + 64];
	bool audit_mode; /* kill responses stay in audit while the release bakes */
	uint64_t pulled; /* the release halted and pulled, 0 none */
};

struct uplink_answer {
	unsigned heartbeat_seconds; /* 0: not given */
	struct uplink_content content;
	struct uplink_content sensor; /* a sensor build: version is the build number */
};

/* True when @s is 1..UPLINK_ID_BYTES-1 characters of [A-Za-z0-9_-]. */
bool uplink_id_valid(const char *s, size_t len);

/* True when @s is 1..UPLINK_CRED_BYTES-1 characters of [A-Za-z0-9._-]. */
bool uplink_credential_valid(const char *s, size_t len);

/*
 * Parses the enrollment answer {"agent_id": ..., "credential": ...} (@len bytes). Returns 0,
 * or -EBADMSG with a one-line reason in @err; *@out is then zeroed.
 */
int uplink_parse_enrollment(const char *data, size_t len, struct uplink_enrollment *out, char *err,
			    size_t errlen);

/*
 * Parses a heartbeat answer. Returns 0, or -EBADMSG with a one-line reason in @err (*@out is
 * then zeroed: the agent does nothing it would have been told).
 */
int uplink_parse_answer(const char *data, size_t len, struct uplink_answer *out, char *err,
			size_t errlen);

#endif
