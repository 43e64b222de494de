/*
 * Signed content bundles: one file holding a canonical JSON manifest, the content-signing keys'
 * signatures over it, and the payload (the rule files in a bounded archive). Built by the
 * publisher (vigil content build), verified from memory by `vigil content verify` and the
 * agent. Byte layout, limits and the order of checks: docs/bundles.md.
 */
#ifndef VIGIL_BUNDLE_H
#define VIGIL_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "rules.h"
#include "trust.h"

/* --- layout --- */

#define BUNDLE_MAGIC	      "VIGILBDL" /* 8 bytes, no NUL */
#define BUNDLE_MAGIC_BYTES    8
#define BUNDLE_FORMAT_VERSION 1u
/* magic | format u32 | reserved u32 | manifest length u32 | signatures u32 | payload length u64 */
#define BUNDLE_HEADER_BYTES 32u
/* one signature entry: key id | Ed25519 signature */
#define BUNDLE_SIG_ENTRY_BYTES (TRUST_KEYID_BYTES + TRUST_SIG_BYTES)

/* --- limits: each is checked before the bytes it guards are read or allocated --- */

/* Bytes of a whole bundle file. */
#define BUNDLE_MAX_BYTES (64u * 1024u * 1024u)
/* Bytes of the manifest (a full file list of BUNDLE_MAX_FILES names fits). */
#define BUNDLE_MAX_MANIFEST_BYTES (4u * 1024u * 1024u)
/* Signature entries. */
#define BUNDLE_MAX_SIGNATURES 32u
/* Files in the payload. */
#define BUNDLE_MAX_FILES 20000u
/* Bytes of one file name, and '/'-separated components in it. */
#define BUNDLE_MAX_NAME_BYTES 128u
#define BUNDLE_MAX_NAME_DEPTH 8u
/* Bytes of one file. */
#define BUNDLE_MAX_FILE_BYTES (16u * 1024u * 1024u)
/* Bytes of the bundle's name and of the minimum agent version. */
#define BUNDLE_MAX_LABEL_BYTES 64u
/* Versions (bundle version, downgrade bound) stay exact in every JSON reader: 2^53 - 1. */
#define BUNDLE_MAX_VERSION 9007199254740991ull

/* One payload file: a '/'-separated relative name and its bytes (not NUL-terminated). */
struct bundle_file {
	const char *name;
	const uint8_t *data;
	size_t len;
};

/*
 * What a bundle carries, a signed manifest field: content (rules; the field is absent, so
 * every bundle made before sensor builds existed stays valid) or a sensor build (one file, the
 * agent executable, BUNDLE_SENSOR_FILE; its version is the integer sensor build number).
 */
enum bundle_kind { BUNDLE_CONTENT = 0, BUNDLE_SENSOR = 1 };
#define BUNDLE_SENSOR_FILE "vigil-agent"

/* "content" or "sensor". */
const char *bundle_kind_name(enum bundle_kind kind);

/* The signed manifest, as read and checked. */
struct bundle_manifest {
	enum bundle_kind kind;
	char name[BUNDLE_MAX_LABEL_BYTES + 1];
	uint64_t version;
	trust_time_t created;
	trust_time_t expires;
	uint32_t schema_version;
	char min_agent_version[BUNDLE_MAX_LABEL_BYTES + 1];
	uint64_t payload_size;
	uint8_t payload_hash[TRUST_HASH_BYTES]; /* BLAKE2b-256 of the payload bytes */
	uint32_t n_files;
	/* The signed downgrade instruction: this bundle may replace an active version A with
	 * version < A <= allow_downgrade_from. */
	bool has_allow_downgrade;
	uint64_t allow_downgrade_from;
};

/* What the reader of a bundle compares against: its clock and its own versions. */
struct bundle_verify_options {
	trust_time_t now;	   /* seconds since the epoch */
	uint32_t schema_version;   /* the reader's SCHEMA_VERSION */
	const char *agent_version; /* the reader's "MAJOR.MINOR.PATCH" */
	enum bundle_kind kind;	   /* the kind expected (zero: content) */
	bool any_kind;		   /* accept either kind (the server's release upload) */
};

struct bundle;

/*
 * Verifies the bundle in @data (@len bytes) against @root and, on success, stores in *@out a
 * bundle that owns copies of the manifest and payload (free with bundle_free) and returns 0.
 * @data is not kept and is read once per byte used: what is checked is what is kept.
 * Checks, in order: size caps, header (magic, format, lengths consistent with @len); the trust
 * root not expired; every signature's key id is a content key of @root; every signature valid
 * and at least the root's threshold of distinct keys; only then the manifest (canonical JSON,
 * every field bounded); expiry, schema version and minimum agent version against @opt; the
 * payload's size and hash; the payload archive (bounds, safe names, sorted, as the manifest
 * lists). The manifest's kind must be @opt->kind unless @opt->any_kind; a sensor build is not
 * held to the reader's schema version (its rules are not loaded by the reader). On failure
 * returns a negative errno and writes one line to @err:
 *   -E2BIG a size cap, -EINVAL malformed, -ENOKEY unknown key id, -EBADMSG bad signature,
 *   threshold not met or payload hash mismatch, -EKEYEXPIRED bundle or root expired,
 *   -ENOTSUP schema or agent version too new, -EMEDIUMTYPE another kind, -ENOMEM.
 * *@out is unchanged on failure.
 */
int bundle_verify(const struct trust_root *root, const void *data, size_t len,
		  const struct bundle_verify_options *opt, struct bundle **out, char *err,
		  size_t errlen);

void bundle_free(struct bundle *b);

const struct bundle_manifest *bundle_manifest(const struct bundle *b);

/* The manifest exactly as signed (canonical JSON, NUL-terminated); its length in *@len. */
const char *bundle_manifest_json(const struct bundle *b, size_t *len);

/* Payload files in archive order (sorted by name). Pointers live as long as @b. */
size_t bundle_file_count(const struct bundle *b);
const struct bundle_file *bundle_file(const struct bundle *b, size_t i);

/*
 * The payload's files as rule sources for ruleset_load_sources(), in archive order: stores a
 * new array of bundle_file_count() entries in *@out (free() it; names and bytes stay owned by
 * @b). Returns 0 or -ENOMEM.
 */
int bundle_rules_sources(const struct bundle *b, struct rules_source **out);

/* Distinct content keys whose valid signatures the bundle carries. */
size_t bundle_signer_count(const struct bundle *b);
const uint8_t *bundle_signer(const struct bundle *b, size_t i);

/*
 * The activation rule on versions: 0 when @m may replace the active version @active (none
 * when !@has_active): its version is higher, or lower with a downgrade instruction covering
 * @active. Otherwise -EALREADY (same version) or -ESTALE (lower), with the reason in @err.
 * Falling back to a last-known-good copy the agent holds itself does not go through here.
 */
int bundle_check_version(const struct bundle_manifest *m, bool has_active, uint64_t active,
			 char *err, size_t errlen);

/*
 * Parses an agent version "MAJOR.MINOR.PATCH" (each 0..999999, no leading zeros) into a number
 * that orders like the versions. Returns 0 or -EINVAL.
 */
int bundle_agent_version_parse(const char *s, size_t len, uint64_t *out);

/*
 * A payload file name is 1..BUNDLE_MAX_NAME_BYTES bytes of [A-Za-z0-9._-] in 1..
 * BUNDLE_MAX_NAME_DEPTH '/'-separated components; no component is empty or starts with '.'
 * (so no "..", no hidden files), no leading or trailing '/'. Returns true, or false with a
 * static reason in *@why.
 */
bool bundle_name_safe(const char *name, size_t len, const char **why);

/* --- building --- */

struct bundle_params {
	enum bundle_kind kind; /* a sensor build holds exactly BUNDLE_SENSOR_FILE */
	const char *name;      /* [A-Za-z0-9._-]{1,64} */
	uint64_t version;      /* 1..BUNDLE_MAX_VERSION */
	trust_time_t created;
	trust_time_t expires; /* after created */
	uint32_t schema_version;
	const char *min_agent_version;
	bool has_allow_downgrade;
	uint64_t allow_downgrade_from; /* > version */
};

/*
 * Writes a bundle of @files (any order; sorted by name in the archive) signed by each of
 * @keys into @out, which should be capped at BUNDLE_MAX_BYTES or more. Refuses what a reader
 * would refuse (names, limits, a key given twice). Returns 0, or -EINVAL / -E2BIG / -ENOMEM
 * with a reason in @err; on error @out may hold a partial bundle.
 */
int bundle_build(const struct bundle_params *p, const struct bundle_file *files, size_t n,
		 const struct trust_secret *keys, size_t n_keys, struct buf *out, char *err,
		 size_t errlen);

#endif
