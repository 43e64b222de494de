/*
 * The agent's upload spool: records (alerts, or events) waiting for the server, kept on disk
 * in a directory of segment files, bounded in bytes. Every record gets the next sequence
 * number, which the server deduplicates on, so a record sent twice is stored once; a record
 * leaves the spool only once the server acknowledged it. When the spool is full the oldest
 * segment is evicted and its unsent records are counted, never dropped silently.
 *
 * Layout: DIR/SEQ.seg (SEQ: the first sequence number in it, 20 digits), lines
 * "SEQ<TAB>JSON\n"; DIR/acked holds the highest sequence number acknowledged.
 * One thread appends while another reads and acknowledges: every call takes the spool's lock.
 */
#ifndef VIGIL_AGENT_SPOOL_H
#define VIGIL_AGENT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

/* Bytes of one segment file before the next one starts. */
#define SPOOL_SEGMENT_BYTES (1u << 20)
/* Bytes of one record's JSON. */
#define SPOOL_MAX_RECORD (64u * 1024u)
/* Segment files of one spool. */
#define SPOOL_MAX_SEGMENTS 4096u
/* Sequence numbers stay below this bound, exact in every JSON reader (2^53 - 1); a number on
 * disk at or above it is damage, not a record. */
#define SPOOL_MAX_SEQ 9007199254740991ull

struct spool;

struct spool_stats {
	uint64_t next_seq; /* the number the next record gets */
	uint64_t acked;	   /* every record up to this one is acknowledged */
	uint64_t pending;  /* records waiting */
	uint64_t bytes;	   /* bytes on disk */
	uint64_t evicted;  /* records evicted unsent because the spool was full */
	uint64_t rejected; /* records refused (larger than SPOOL_MAX_RECORD) */
};

/*
 * Opens (creating, mode 0700) the spool directory @path, holding at most @max_bytes (at
 * least two segments' worth). Recovers what a previous run left: a last line cut short by a
 * crash is dropped. Returns 0 and *@out, or -errno with a one-line reason in @err.
 */
int spool_open(const char *path, uint64_t max_bytes, struct spool **out, char *err, size_t errlen);

/* Closes @s, keeping what is pending on disk. Accepts NULL. */
void spool_close(struct spool *s);

/*
 * Appends one record (@json, @len bytes, one line: no newline in it). Returns its sequence
 * number (> 0), or -E2BIG (too large, counted as rejected), -EOVERFLOW (past SPOOL_MAX_SEQ,
 * counted as rejected) or -EIO. May evict the oldest
 * segment first (counted).
 */
int64_t spool_append(struct spool *s, const char *json, size_t len);

/*
 * Appends to @out a JSON batch {"records":[{"seq":N,"data":JSON},...]} of up to @max_records
 * pending records, oldest first, at most @max_bytes of JSON. Stores the last sequence number
 * in the batch in *@last. Returns the number of records (0: nothing pending) or -errno.
 */
int spool_batch(struct spool *s, size_t max_records, size_t max_bytes, struct buf *out,
		uint64_t *last);

/* Records that every record up to @seq is acknowledged; removes segments wholly acked. */
int spool_ack(struct spool *s, uint64_t seq);

void spool_get_stats(struct spool *s, struct spool_stats *st);

#endif
