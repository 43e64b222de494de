/*
 * Private layout shared by the rule parser (rules.c), compiler (compile.c), pattern databases
 * (hsdb.c), verifier (verify.c) and engine (engine.c): the AST and the compiled ruleset.
 */
#ifndef VIGIL_COMPILE_INT_H
#define VIGIL_COMPILE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "rules.h"
#include "rx.h"

/* Defensive checks that stay in release builds: the condition is believed never to hold. */
#define NEVER(x) __builtin_expect(!!(x), 0)

/* --- a bump allocator with a byte cap: everything the parser builds lives in one --- */

struct arena_chunk;
struct arena {
	struct arena_chunk *head;
	size_t used; /* bytes handed out, all chunks */
	size_t max;
};

void arena_init(struct arena *a, size_t max);
void arena_release(struct arena *a);
/* Zeroed, 8-byte aligned memory, or NULL past the cap or on allocation failure. */
void *arena_alloc(struct arena *a, size_t size);
void *arena_array(struct arena *a, size_t n, size_t size);
/* Copy of @len bytes of @s with a NUL after them. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* --- AST (rules.c) --- */

enum rop {
	ROP_EQUALS,
	ROP_CONTAINS,
	ROP_STARTSWITH,
	ROP_ENDSWITH,
	ROP_IN,
	ROP_REGEX,
	ROP_CIDR,
	ROP_LT,
	ROP_LTE,
	ROP_GT,
	ROP_GTE,
	ROP_EXISTS,
	ROP_COUNT
};

/* Operator name as written ("icontains" when @caseless). */
const char *rop_name(enum rop op, bool caseless);

struct rval {
	const char *s; /* NUL-terminated copy; may hold NUL before len when the YAML did */
	uint32_t len;
	uint32_t line;
	bool plain; /* written without quotes */
};

enum rcond_kind { RC_ALL, RC_ANY, RC_NOT, RC_MACRO, RC_PRED };

struct rcond {
	uint8_t kind;
	uint8_t op;    /* RC_PRED: enum rop */
	bool caseless; /* RC_PRED: an i-variant */
	bool is_list;  /* RC_PRED: value written as a sequence */
	uint32_t line;
	uint32_t n;	  /* kids (RC_ALL, RC_ANY, RC_NOT) or vals (RC_PRED) */
	const char *name; /* RC_PRED: field name; RC_MACRO: macro name */
	struct rcond **kids;
	struct rval *vals;
};

struct rlist {
	const char *name;
	const char *file;
	uint32_t line;
	struct rval *items;
	uint32_t n;
};

struct rmacro {
	const char *name;
	const char *file;
	uint32_t line;
	struct rcond *cond;
	uint8_t state; /* compile.c: 0 idle, 1 being expanded (cycle check) */
};

struct rtest {
	bool match;
	uint32_t line;
	uint32_t n;  /* events */
	char **json; /* one JSON object per event, dotted keys */
	uint32_t *lens;
};

struct rstep {
	struct rcond *cond;
	const char *by; /* NULL: the sequence's key */
	uint32_t by_line;
	uint32_t line;
};

enum rule_kind { RK_PLAIN, RK_THRESHOLD, RK_SEQUENCE };

struct rrule {
	const char *file;
	uint32_t line;
	const char *id;
	const char *name;
	const char *description;
	const char *level;
	const char **tags;
	uint32_t n_tags;
	struct rcond *cond; /* NULL only for a sequence without a common condition */
	uint32_t cond_line;
	bool kill;
	uint8_t kind;
	uint32_t count;	    /* threshold */
	uint64_t within_ns; /* threshold, sequence */
	const char *by;	    /* threshold, sequence default; NULL: one key for all events */
	uint32_t by_line;
	struct rstep steps[RULES_MAX_SEQUENCE_STEPS];
	uint32_t n_steps;
	struct rtest *tests;
	uint32_t n_tests;
};

struct rules_ast {
	struct arena arena;
	struct rrule *rules;
	uint32_t n_rules, cap_rules;
	struct rlist *lists;
	uint32_t n_lists, cap_lists;
	struct rmacro *macros;
	uint32_t n_macros, cap_macros;
};

/* Parses @n sources into *@out (free with rules_ast_free). Returns 0 or -errno with @err. */
int rules_parse(const struct rules_source *src, size_t n, struct rules_ast **out, char *err,
		size_t errlen);
void rules_ast_free(struct rules_ast *ast);

/* --- compiled ruleset --- */

enum pred_kind {
	PK_SCAN,    /* string match found by the field's pattern database */
	PK_EXISTS,  /* field present */
	PK_STR_EQ,  /* string (or any list item) equals one of strs[off..off+n) */
	PK_INT_CMP, /* integer compared with num by cmp */
	PK_INT_IN,  /* integer is one of ints[off..off+n) (sorted) */
	PK_IP_IN,   /* address inside one of nets[off..off+n) */
	PK_BOOL_EQ, /* boolean equals num */
	PK_REGEX,   /* regex run on demand on its own, lazy[num] */
	PK_COUNT
};

enum pred_cmp { CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_EQ };

#define PF_CASELESS 0x01

struct cstr {
	uint32_t off; /* into ruleset.blob */
	uint32_t len;
};

struct cnet {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t prefix; /* bits compared */
	uint8_t addr[16];
};

struct cpred {
	uint16_t field;
	uint8_t kind;
	uint8_t flags;
	uint8_t op;	 /* enum rop, for PK_SCAN patterns */
	uint8_t cmp;	 /* enum pred_cmp */
	uint32_t off, n; /* value range in strs, ints or nets */
	int64_t num;
	uint32_t line;
};

enum insn_op {
	OP_PRED, /* push the result of predicate arg */
	OP_NOT,	 /* top = !top */
	OP_AND,	 /* pop two, push both */
	OP_OR,	 /* pop two, push either */
	OP_POP,	 /* drop top */
	OP_JF,	 /* when top is false jump forward arg instructions past the next, keeping top */
	OP_JT,	 /* when top is true jump likewise */
	OP_COUNT
};

struct insn {
	uint8_t op;
	uint8_t pad[3];
	uint32_t arg;
};

/* A program and the predicates it reads: what the verifier checks and the evaluator runs. */
struct prog_view {
	const struct insn *code;
	uint32_t n_code;
	const struct cpred *preds;
	uint32_t n_preds;
};

/* Sizes of the value pools predicates index into. */
struct pool_sizes {
	uint32_t n_strs, n_ints, n_nets, n_lazy;
};

/* A unit of evaluation: a rule's condition, or one step of a sequence. */
struct cprog {
	uint32_t rule;
	uint32_t step;	    /* sequence step, 0 otherwise */
	uint32_t pred_base; /* index of the first predicate in ruleset.preds */
	uint32_t n_preds;
	uint32_t code_off; /* into ruleset.code */
	uint32_t n_code;
	int32_t by_field;	 /* state key field, -1 for one key */
	bool needs_hit;		 /* cannot hold unless one of its PK_SCAN predicates matched */
	uint32_t n_req;		 /* PK_SCAN predicates that must all match (top-level conjuncts) */
	uint32_t act_off, n_act; /* event.action values required (into act_ids), 0: any */
};

struct crule {
	struct rule_info info; /* first: ruleset_rule hands out &crule.info */
	uint8_t kind;
	uint32_t count;
	uint64_t within_ns;
	uint32_t prog_first, n_progs; /* sequence steps are stored last step first */
	struct rtest *tests;	      /* into the ruleset's kept test arena */
	uint32_t n_tests;
};

/* hsdb.c: an entry of a struct rules_cache. */
struct cache_entry;

/* An equals literal of a database, found by lookup rather than by the Hyperscan scan. */
struct cexact {
	uint32_t off; /* into ruleset.blob */
	uint32_t len;
	uint32_t id; /* the database's pattern id */
};

/* Literal patterns one database holds at most: a field with more has several. */
#define HSDB_LITERAL_CHUNK 384u

/*
 * The patterns of one field for the programs of some buckets. Literals: one Hyperscan
 * database, and the equals literals, which a lookup finds without one (db is NULL when those
 * are all there is). Regexes: their RE2 set (rx), and a Hyperscan literal database of the
 * atoms the set needs (db, NULL when no regex has any); pattern id k is the set's regex k.
 */
struct cdb {
	void *db;	   /* hs_database_t, or NULL */
	struct rx_set *rx; /* regex databases: the regexes; NULL for literals */
	uint16_t field;
	uint32_t n_ids;
	uint32_t *fan_start; /* n_ids + 1 offsets into fan_preds */
	uint32_t *fan_preds; /* global predicate indices a pattern id sets */
	uint32_t n_fan;
	uint8_t *mode;	   /* literal databases: LIT_AT_* per pattern id; NULL for regexes */
	uint32_t *lit_len; /* literal databases: bytes of each literal */
	bool all_buckets;  /* holds predicates of every bucket (regexes) */
	uint32_t *key;	   /* sorted predicate indices the database was built from */
	uint32_t n_key;
	uint32_t chunk, n_chunks; /* literals: which even share of the key's patterns */
	/* equals literals: the case-sensitive ones first, then the caseless ones; found through
	 * an open-addressing table of slot_mask + 1 slots, each 0 or an index into exact plus 1 */
	struct cexact *exact;
	uint32_t n_exact, n_exact_cs;
	uint32_t *slots;
	uint32_t slot_mask;
	size_t bytes;
	struct cache_entry *cached; /* the cache entry db belongs to, or NULL: db is ours */
};

struct cbucket_db {
	uint16_t field;
	uint32_t db;
};

struct cbucket {
	uint32_t action;  /* index into actions, or UINT32_MAX for the catch-all bucket */
	uint32_t *always; /* programs evaluated for every event of the bucket */
	uint32_t n_always;
	struct cbucket_db *dbs;
	uint32_t n_dbs;
};

struct ruleset {
	struct crule *rules;
	uint32_t n_rules;
	struct cprog *progs;
	uint32_t n_progs;
	struct cpred *preds;
	uint32_t n_preds;
	uint32_t *pred_prog; /* program of each predicate */
	uint8_t *pred_req;   /* predicate is one of its program's n_req required ones */
	struct insn *code;
	uint32_t n_code;
	struct cstr *strs;
	uint32_t n_strs;
	int64_t *ints;
	uint32_t n_ints;
	struct cnet *nets;
	uint32_t n_nets;
	char *blob; /* string bytes, each value followed by NUL */
	size_t blob_len;
	/* event.action values that select buckets, sorted; bucket i + 1 is action i */
	struct cstr *actions;
	uint32_t n_actions;
	uint32_t *act_ids; /* per-program action lists */
	uint32_t n_act_ids;
	struct cbucket *buckets; /* n_actions + 1: [0] is the catch-all bucket */
	uint32_t n_buckets;
	struct cdb *dbs;
	uint32_t n_dbs;
	struct rx **lazy; /* the regex of each distinct PK_REGEX pattern (RE2) */
	uint32_t n_lazy;
	struct rules_cache *cache;	 /* where the cached databases come from, or NULL */
	struct ruleset_db_info *db_info; /* what each database of the load cost */
	uint32_t n_db_info;
	size_t n_patterns;
	size_t n_tests;
	struct arena keep; /* rule texts and test events */
	size_t bytes;
};

/* compile.c: AST to ruleset (databases built, programs verified). */
int rules_compile(struct rules_ast *ast, struct ruleset **out, char *err, size_t errlen);
/* As rules_compile, taking databases from and adding them to @cache (NULL: none). */
int rules_compile_cached(struct rules_ast *ast, struct rules_cache *cache, struct ruleset **out,
			 char *err, size_t errlen);

/*
 * hsdb.c: builds buckets and pattern databases for a compiled ruleset, through @cache when it
 * is not NULL (the ruleset then holds a reference on @cache until hsdb_free).
 */
int hsdb_build(struct ruleset *rs, struct rules_cache *cache, char *err, size_t errlen);
void hsdb_free(struct ruleset *rs);
/* A literal match counts only where its operator wants it: at the start, the end, or both. */
#define LIT_AT_START 0x01
#define LIT_AT_END   0x02
uint8_t hsdb_literal_mode(enum rop op);

/* ASCII lower case, the only folding Hyperscan's caseless matching does. */
static inline unsigned hsdb_fold(unsigned c)
{
	return c - 'A' < 26u ? c + ('a' - 'A') : c;
}

/*
 * Hash of an equals literal or of a value looked up among them: its length and three of its
 * bytes (folded when @caseless). Cheap to compute for every value scanned; comparing the bytes
 * settles every candidate (cdb.slots).
 */
static inline uint32_t hsdb_exact_hash(const char *s, size_t len, bool caseless)
{
	uint64_t a = 0, b = 0, c = 0, x;

	if (len) {
		a = (unsigned char)s[0];
		b = (unsigned char)s[len / 2];
		c = (unsigned char)s[len - 1];
		if (caseless) {
			a = hsdb_fold((unsigned)a);
			b = hsdb_fold((unsigned)b);
			c = hsdb_fold((unsigned)c);
		}
	}
	x = ((uint64_t)len << 25) ^ (a << 16) ^ (b << 8) ^ c ^ ((uint64_t)caseless << 24);
	x *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(x >> 32);
}

/* verify.c */
int program_verify(const struct prog_view *p, const struct pool_sizes *pools, char *err,
		   size_t errlen);
int ruleset_verify(const struct ruleset *rs, char *err, size_t errlen);

/* Which predicate kinds read which field types. */
bool pred_kind_fits(enum pred_kind kind, enum field_type type);

/* Error message helper: "file:line: field: reason" into @err; returns @code. */
int rules_fail(char *err, size_t errlen, int code, const char *file, unsigned line,
	       const char *field, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#endif
