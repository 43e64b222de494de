/*
 * Keys and the root of trust: Ed25519 key files, and the signed root document (root.json)
 * that agents pin. The root names the content-signing keys, how many of them must sign a
 * bundle, and the root keys (with their own threshold) that sign the root and its successors.
 * Byte layouts and rules: docs/bundles.md.
 */
#ifndef VIGIL_TRUST_H
#define VIGIL_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TRUST_KEYID_BYTES  8
#define TRUST_PUBLIC_BYTES 32
#define TRUST_SECRET_BYTES 64
#define TRUST_SIG_BYTES	   64
#define TRUST_HASH_BYTES   32

/* Key files: a comment line and one base64 line; anything longer is refused unread. */
#define TRUST_KEYFILE_MAX_BYTES 1024u
/* Binary layouts inside the base64 line: "Ed" | key id | public key, and
 * "Ed" | key id | checksum (8 bytes of BLAKE2b-256 of the secret key) | secret key. */
#define TRUST_PUBFILE_BYTES (2 + TRUST_KEYID_BYTES + TRUST_PUBLIC_BYTES)
#define TRUST_SECFILE_BYTES (2 + TRUST_KEYID_BYTES + 8 + TRUST_SECRET_BYTES)

/* root.json: bytes, keys per role, signature entries. */
#define TRUST_ROOT_MAX_BYTES	  (64u * 1024u)
#define TRUST_ROOT_MAX_KEYS	  32u
#define TRUST_ROOT_MAX_SIGNATURES 64u

/* Domain-separation strings: what a signature is over is BLAKE2b-256(context || NUL || bytes). */
#define TRUST_CONTEXT_ROOT     "vigil root v1"
#define TRUST_CONTEXT_MANIFEST "vigil bundle manifest v1"

/* Seconds since the epoch; every clock the library uses is passed in as one of these. */
typedef int64_t trust_time_t;

struct trust_key {
	uint8_t id[TRUST_KEYID_BYTES];
	uint8_t pk[TRUST_PUBLIC_BYTES];
};

/* A secret key. Whoever holds one wipes it with trust_secret_wipe() when done. */
struct trust_secret {
	uint8_t id[TRUST_KEYID_BYTES];
	uint8_t sk[TRUST_SECRET_BYTES]; /* libsodium layout: seed then public key */
};

/* --- keys --- */

/* The key id of @pk: the first 8 bytes of BLAKE2b-256(pk). */
void trust_key_id(const uint8_t pk[TRUST_PUBLIC_BYTES], uint8_t id[TRUST_KEYID_BYTES]);

/* Makes a new key pair. Returns 0 or -errno (-EIO when libsodium cannot start). */
int trust_keygen(struct trust_key *pub, struct trust_secret *sec);

/* Overwrites @sec with zeros. Accepts NULL. */
void trust_secret_wipe(struct trust_secret *sec);

/* The public half of @sec. */
void trust_secret_public(const struct trust_secret *sec, struct trust_key *pub);

/*
 * Key files as text: "untrusted comment: ...\n" then the base64 of the binary layout and
 * "\n". The encoders write a NUL-terminated file body into @out (@outlen bytes) and return
 * its length, or -ENOSPC when it does not fit; a secret's text is the caller's to wipe.
 */
int trust_public_encode(const struct trust_key *pub, char *out, size_t outlen);
int trust_secret_encode(const struct trust_secret *sec, char *out, size_t outlen);

/*
 * Parse a key file's bytes. Return 0, or -EINVAL with a one-line reason in @err; the key id
 * must match the key, and a secret key's checksum and public half must match too. On error
 * *@out is left zeroed.
 */
int trust_public_decode(const char *data, size_t len, struct trust_key *out, char *err,
			size_t errlen);
int trust_secret_decode(const char *data, size_t len, struct trust_secret *out, char *err,
			size_t errlen);

/* True when @s (@len bytes) is a hash as vigil writes it: 2 * TRUST_HASH_BYTES lowercase hex
 * digits. */
bool trust_hash_hex_ok(const char *s, size_t len);

/* Writes the 16 lowercase hex digits of @id and a NUL into @out. */
void trust_key_id_hex(const uint8_t id[TRUST_KEYID_BYTES], char out[2 * TRUST_KEYID_BYTES + 1]);

/* The domain-separated digest that signatures are over: BLAKE2b-256(@context || NUL || @msg). */
void trust_digest(const char *context, const void *msg, size_t len,
		  uint8_t digest[TRUST_HASH_BYTES]);

/* Signs the digest of (@context, @msg). */
void trust_sign(const struct trust_secret *sec, const char *context, const void *msg, size_t len,
		uint8_t sig[TRUST_SIG_BYTES]);

/* True when @sig is @key's signature over the digest of (@context, @msg). */
bool trust_sig_valid(const struct trust_key *key, const char *context, const void *msg, size_t len,
		     const uint8_t sig[TRUST_SIG_BYTES]);

/* --- time --- */

/* Formats @t as "YYYY-MM-DDTHH:MM:SSZ" (20 characters and a NUL). Returns 0 or -EINVAL. */
int trust_time_format(trust_time_t t, char out[21]);

/* Parses exactly that form (years 1970 to 9999). Returns 0 or -EINVAL. */
int trust_time_parse(const char *s, size_t len, trust_time_t *out);

/* Parses a duration "N" followed by s, m, h, d or w (N > 0, at most 100 years). 0 or -EINVAL. */
int trust_duration_parse(const char *s, trust_time_t *out);

/* --- files (the one place here that does I/O; the agent uses it for bundles and roots) --- */

/*
 * Reads the regular file @path (opened with O_NOFOLLOW: a symbolic link is refused; and with
 * O_NONBLOCK: a FIFO or device is refused without waiting on it), refusing one larger than @max
 * before reading, into @out (reset first; one allocation, so a caller holding a secret can wipe
 * out->data whole). Returns 0, -E2BIG past @max, -EINVAL when not a
 * regular file, -EBUSY when it grew while read, or another -errno.
 */
int trust_file_read(const char *path, size_t max, struct buf *out);

/*
 * Writes @len bytes to @path with mode @mode and fsync. @exclusive: create it (O_EXCL,
 * O_NOFOLLOW), never replacing anything. Otherwise write a temporary file beside it and rename
 * it into place. Returns 0 or -errno; on error nothing is left at @path that was not there.
 */
int trust_file_write(const char *path, const void *data, size_t len, unsigned mode, bool exclusive);

/*
 * Read and decode a key file or a pinned root document (trust_file_read, then the decoder).
 * Return 0 or -errno with a one-line reason in @err; a secret's file bytes are wiped.
 */
int trust_secret_load(const char *path, struct trust_secret *out, char *err, size_t errlen);
int trust_public_load(const char *path, struct trust_key *out, char *err, size_t errlen);

/* --- the root of trust --- */

struct trust_root;

struct trust_root_params {
	uint64_t version; /* >= 1 */
	bool has_expires;
	trust_time_t expires;
	const struct trust_key *root_keys;
	size_t n_root_keys;
	unsigned root_threshold;
	const struct trust_key *content_keys;
	size_t n_content_keys;
	unsigned content_threshold;
};

/*
 * Writes a root document for @p signed by each of @signers (root keys of this root, and for a
 * rotation the previous root's keys too) into @out as pretty-printed JSON with a final newline.
 * Checks what a reader would: thresholds within 1..number of keys, no key listed twice, no key
 * in both roles, every signer is a key of this root unless @allow_foreign_signers. Returns 0, or
 * -EINVAL / -E2BIG with a reason in @err, or -ENOMEM.
 */
int trust_root_create(const struct trust_root_params *p, const struct trust_secret *signers,
		      size_t n_signers, bool allow_foreign_signers, struct buf *out, char *err,
		      size_t errlen);

/*
 * Parses a root document that is to be pinned (trusted because an operator installed it) and
 * checks it is signed by its own root-key threshold. Expiry is not checked here (see
 * trust_root_expired). Returns 0 and a new root in *@out (free with trust_root_free), or
 * -EINVAL / -E2BIG / -EBADMSG (signatures) / -ENOMEM with a one-line reason in @err.
 */
int trust_root_parse(const void *data, size_t len, struct trust_root **out, char *err,
		     size_t errlen);

/*
 * Rotation: accepts @candidate (a root document's bytes) to replace @current only when it is
 * signed by @current's root-key threshold (checked before its content is read), by its own
 * root-key threshold, its version is higher than @current's, and it has not expired at @now.
 * Returns 0 and the new root in *@out, or a negative errno with the reason in @err (-ESTALE
 * for a version not higher, -EKEYEXPIRED for an expired candidate, -EBADMSG for signatures).
 * @current is never changed.
 */
int trust_root_update(const struct trust_root *current, const void *candidate, size_t len,
		      trust_time_t now, struct trust_root **out, char *err, size_t errlen);

/* trust_root_parse() of the file @path. */
int trust_root_load(const char *path, struct trust_root **out, char *err, size_t errlen);

void trust_root_free(struct trust_root *root);

uint64_t trust_root_version(const struct trust_root *root);

/* True when @root carries an expiry time and @now has reached it. */
bool trust_root_expired(const struct trust_root *root, trust_time_t now);

/* Expiry time, or false when the root has none. */
bool trust_root_expires(const struct trust_root *root, trust_time_t *expires);

unsigned trust_root_content_threshold(const struct trust_root *root);
size_t trust_root_content_key_count(const struct trust_root *root);
const struct trust_key *trust_root_content_key(const struct trust_root *root, size_t i);

unsigned trust_root_root_threshold(const struct trust_root *root);
size_t trust_root_root_key_count(const struct trust_root *root);
const struct trust_key *trust_root_root_key(const struct trust_root *root, size_t i);

/* The content-signing key with id @id, or NULL. */
const struct trust_key *trust_root_find_content_key(const struct trust_root *root,
						    const uint8_t id[TRUST_KEYID_BYTES]);

/* BLAKE2b-256 of the root's signed part in canonical form: names this exact root. */
const uint8_t *trust_root_digest(const struct trust_root *root);

/* Appends a one-line JSON summary of @root (version, expiry, keys, thresholds, digest). */
int trust_root_summary_json(const struct trust_root *root, struct buf *out);

#endif
