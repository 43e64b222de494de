/*
 * Detection content: YAML rule files loaded and compiled against this build's field
 * registry into verified programs. One loader and compiler serve the publisher's lint and
 * the agent; the language is docs/rules.md. Every limit below is a clean load error.
 */
#ifndef VIGIL_RULES_H
#define VIGIL_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* --- limits: exceeding any of them is a load error naming file, line and field --- */

/* Bytes of one rule file; a larger file is refused before it is read. */
#define RULES_MAX_FILE_BYTES (16u * 1024u * 1024u)
/* Bytes of all rule files of one load together. */
#define RULES_MAX_TOTAL_BYTES (32u * 1024u * 1024u)
/* Rule files in one load, and directory levels searched for them. */
#define RULES_MAX_FILES	    4096u
#define RULES_MAX_DIR_DEPTH 16u
/* YAML nodes of one file, and how deep YAML collections may nest. */
#define RULES_MAX_YAML_NODES 2000000u
#define RULES_MAX_YAML_DEPTH (2u * RULES_MAX_CONDITION_DEPTH + 8u)
/* Rules in one load. */
#define RULES_MAX_RULES 20000u
/* Nesting of all/any/not (macros included) in one condition. */
#define RULES_MAX_CONDITION_DEPTH 64u
/* Predicates (one field with one operator) of one rule, macros expanded, all steps. */
#define RULES_MAX_PREDICATES_PER_RULE 1024u
/* Predicates of all rules together. */
#define RULES_MAX_PREDICATES 262144u
/* Items of one named list, and values of one predicate once lists are expanded. */
#define RULES_MAX_LIST_ITEMS 4096u
/* Values (patterns, numbers, addresses) of all predicates together, lists expanded. */
#define RULES_MAX_VALUES 1000000u
/* Bytes of all string values together, lists expanded. */
#define RULES_MAX_VALUE_TOTAL_BYTES (64u * 1024u * 1024u)
/* Named lists and macros in one load. */
#define RULES_MAX_LISTS	 4096u
#define RULES_MAX_MACROS 4096u
/* Bytes of one value, pattern or list item. */
#define RULES_MAX_VALUE_BYTES 4096u
/* Largest bound of a regex repeat such as {2,1000}: big bounds make compiling slow. */
#define RULES_MAX_REGEX_REPEAT 1000u
/* Bytes of a rule's name, description and tags. */
#define RULES_MAX_NAME_BYTES	    256u
#define RULES_MAX_DESCRIPTION_BYTES 4096u
#define RULES_MAX_TAGS		    64u
/* Test items per rule and events per test item. */
#define RULES_MAX_TESTS	      256u
#define RULES_MAX_TEST_EVENTS 256u
/* Steps of a sequence. */
#define RULES_MIN_SEQUENCE_STEPS 2u
#define RULES_MAX_SEQUENCE_STEPS 4u
/* Largest threshold count and longest window of a stateful clause. */
#define RULES_MAX_THRESHOLD_COUNT 100000u
#define RULES_MAX_WINDOW_SECONDS  (24u * 3600u)
/* Distinct event.action values rules select on (each is one bucket of rules). */
#define RULES_MAX_ACTIONS 256u
/* Instructions of one compiled program (each rule or sequence step is one program). */
#define RULES_MAX_PROGRAM_INSNS 16384u
/* Evaluation stack of one program. */
#define RULES_MAX_STACK 64u
/* State entries (threshold counters, sequence progress) one engine keeps; past it the least
 * recently used entry is evicted and counted. */
#define RULES_MAX_STATE_ENTRIES 32768u

/* One rule file held in memory: a name for messages and its bytes (need not end in NUL). */
struct rules_source {
	const char *name;
	const char *data;
	size_t len;
};

/* What the agent and the alert writer know of a loaded rule. Owned by the ruleset. */
struct rule_info {
	const char *id;
	const char *name;
	const char *description;       /* "" when absent */
	const char *level;	       /* informational, low, medium, high or critical */
	const char *const *techniques; /* "T1059.004" from tags attack.t1059.004 */
	size_t n_techniques;
	bool kill;	  /* `response: kill`: the agent may kill the process; off by default */
	const char *file; /* source name the rule came from */
	unsigned line;
	size_t index; /* position in the ruleset, in load order */
};

struct ruleset;

/*
 * Loads every *.yml / *.yaml file under directory @path (recursively, sorted by path; symbolic
 * links inside it are refused), or the single file @path, and compiles the rules. On success
 * stores a new ruleset in *@out (free with ruleset_free) and returns 0. On failure returns
 * -EINVAL (bad content), -E2BIG (a limit), -ENOMEM or another -errno, writes one line
 * "file:line: field: reason" to @err, and leaves *@out unchanged.
 */
int ruleset_load_path(const char *path, struct ruleset **out, char *err, size_t errlen);

/*
 * As ruleset_load_path, for @n files held in memory (a bundle's payload), in the given order.
 * The ruleset keeps no pointer into @src.
 */
int ruleset_load_sources(const struct rules_source *src, size_t n, struct ruleset **out, char *err,
			 size_t errlen);

/*
 * A cache of compiled pattern databases shared by successive loads, so that content which
 * changed a little recompiles only the databases whose patterns changed. An entry is keyed by
 * a BLAKE2b hash of the exact compile input (literal, multi-regex or single-regex mode, every
 * pattern's bytes, length, flags and id, the Hyperscan version and the platform); a ruleset
 * compiled through the cache shares the entry's database and holds a reference on it until
 * ruleset_free. Bounded: past its entry or byte limit (at most RULES_CACHE_MAX_ENTRIES and
 * RULES_CACHE_MAX_BYTES), the least recently used entries no ruleset uses are dropped; a
 * database that does not fit even then is kept by its ruleset alone. Safe to use from several
 * threads.
 */
#define RULES_CACHE_MAX_ENTRIES 2048u
#define RULES_CACHE_MAX_BYTES	(256u * 1024u * 1024u)

struct rules_cache;

struct rules_cache_stats {
	size_t entries;
	size_t bytes;  /* database bytes the cache holds */
	size_t in_use; /* entries a ruleset holds */
	uint64_t hits;
	uint64_t misses;
	uint64_t evictions;
};

/*
 * Stores a new empty cache holding at most @max_entries databases of @max_bytes bytes together
 * in *@out and returns 0, or returns -ENOMEM (*@out unchanged). 0, or a value past
 * RULES_CACHE_MAX_ENTRIES or RULES_CACHE_MAX_BYTES, stands for that maximum.
 */
int rules_cache_new(size_t max_entries, size_t max_bytes, struct rules_cache **out);

/*
 * Drops the caller's hold on @c and every entry no ruleset uses. Rulesets loaded through @c
 * stay valid: the cache's memory goes when the last of them is freed. Accepts NULL.
 */
void rules_cache_free(struct rules_cache *c);

/* Fills @out with @c's counters (zeroes for NULL). */
void rules_cache_get_stats(struct rules_cache *c, struct rules_cache_stats *out);

/*
 * As ruleset_load_sources, reusing and filling @cache (NULL: no cache). The ruleset compiled
 * is the same, database for database, as without a cache.
 */
int ruleset_load_sources_cached(const struct rules_source *src, size_t n, struct rules_cache *cache,
				struct ruleset **out, char *err, size_t errlen);

/* Frees @rs. Accepts NULL. No engine created from @rs may be used afterwards. */
void ruleset_free(struct ruleset *rs);

/* Number of rules in @rs. */
size_t ruleset_count(const struct ruleset *rs);

/* Rule @i (load order), or NULL when out of range. */
const struct rule_info *ruleset_rule(const struct ruleset *rs, size_t i);

/* The rule with id @id, or NULL. */
const struct rule_info *ruleset_find(const struct ruleset *rs, const char *id);

struct ruleset_stats {
	size_t rules;
	size_t programs; /* one per rule, one per sequence step */
	size_t predicates;
	size_t patterns;     /* string values compiled into pattern databases */
	size_t databases;    /* pattern databases (one per event.action bucket and field) */
	size_t buckets;	     /* event.action buckets, the catch-all bucket included */
	size_t tests;	     /* test items (match and nomatch) */
	size_t memory_bytes; /* compiled programs, pools and databases */
};

void ruleset_get_stats(const struct ruleset *rs, struct ruleset_stats *out);

/* How the strings of one field are matched: what a load built and what it cost. */
enum ruleset_db_kind {
	RDB_LITERAL,	     /* Hyperscan literal database (contains, startswith, endswith) */
	RDB_REGEX,	     /* a field's regex set (RE2), run behind its atoms for every event */
	RDB_REGEX_ATOMS,     /* Hyperscan literal database of the atoms a regex set needs */
	RDB_REGEX_ON_DEMAND, /* one regex (RE2), run when its rule is evaluated */
	RDB_LOOKUP,	     /* equals literals, found by a table lookup: nothing compiled */
};

struct ruleset_db_info {
	const char *field; /* registry name */
	enum ruleset_db_kind kind;
	size_t patterns;
	bool compiled; /* false: taken from the cache or from an identical database of the load */
	double cpu_ms; /* CPU time of the compile on the thread that ran it; 0 when not compiled */
	size_t bytes;  /* the Hyperscan database, the lookup table, or the regexes' programs
			* (RE2's instruction count times 16, an estimate) */
};

/* Number of pattern databases and lookup tables of @rs, Hyperscan compiles first. */
size_t ruleset_db_count(const struct ruleset *rs);

/* Fills @out for database @i (< ruleset_db_count) and returns 0, or returns -ERANGE. */
int ruleset_db_get(const struct ruleset *rs, size_t i, struct ruleset_db_info *out);

/* Line-oriented checks used by the loader, exposed for the tests and the Sigma converter. */
bool rules_utf8_valid(const char *s, size_t len);
bool rules_id_valid(const char *s, size_t len);

#endif
