/*
 * Pattern databases: the string predicates of the rules one event.action bucket considers,
 * per field, compiled into one Hyperscan literal database (contains, startswith, endswith and
 * their i-variants; equals literals are found by a table lookup instead) and, when there are
 * any, one regex set (RE2, rx.h) run behind a Hyperscan literal database of the fragments its
 * regexes need, so that an event costs one or two scans per field. A load plans every database
 * first, then compiles the Hyperscan ones on two threads, each distinct input once. A pattern
 * either engine rejects is a load error.
 */
#include <errno.h>
#include <hs/hs.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "compile_int.h"

/* --- the database cache (rules.h): shared across loads, reference-counted entries --- */

#define CACHE_KEY_BYTES crypto_generichash_BYTES

/* What a cached database was compiled with: part of its key. */
enum cache_kind { CK_LITERAL = 1, CK_ATOMS = 2 };

struct cache_entry {
	uint8_t key[CACHE_KEY_BYTES];
	hs_database_t *db;
	size_t bytes;
	uint32_t refs; /* rulesets holding the database */
	uint64_t used; /* cache tick of the last lookup, for least-recently-used eviction */
};

struct rules_cache {
	pthread_mutex_t lock;	   /* guards everything below */
	struct cache_entry **ents; /* max_entries slots */
	uint32_t n, max_entries;
	size_t bytes, max_bytes;
	size_t holds; /* the owner's (until rules_cache_free) plus one per ruleset */
	bool closed;  /* the owner let go: entries go as soon as no ruleset holds them */
	uint64_t tick, hits, misses, evictions;
	uint8_t env[CACHE_KEY_BYTES]; /* hash of the Hyperscan version and the platform */
};

int rules_cache_new(size_t max_entries, size_t max_bytes, struct rules_cache **out)
{
	static const char domain[] = "vigil pattern database cache 1";
	struct rules_cache *c;
	crypto_generichash_state st;
	hs_platform_info_t plat;
	const char *ver = hs_version();

	if (sodium_init() < 0)
		return -ENOMEM;
	if (max_entries == 0 || max_entries > RULES_CACHE_MAX_ENTRIES)
		max_entries = RULES_CACHE_MAX_ENTRIES;
	if (max_bytes == 0 || max_bytes > RULES_CACHE_MAX_BYTES)
		max_bytes = RULES_CACHE_MAX_BYTES;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ents = calloc(max_entries, sizeof(*c->ents));
	if (!c->ents || pthread_mutex_init(&c->lock, NULL) != 0) {
		free(c->ents);
		free(c);
		return -ENOMEM;
	}
	c->max_entries = (uint32_t)max_entries;
	c->max_bytes = max_bytes;
	memset(&plat, 0, sizeof(plat));
	if (hs_populate_platform(&plat) != HS_SUCCESS)
		memset(&plat, 0xff, sizeof(plat));
	crypto_generichash_init(&st, NULL, 0, sizeof(c->env));
	crypto_generichash_update(&st, (const unsigned char *)domain, sizeof(domain));
	crypto_generichash_update(&st, (const unsigned char *)ver, strlen(ver) + 1);
	crypto_generichash_update(&st, (const unsigned char *)&plat, sizeof(plat));
	crypto_generichash_final(&st, c->env, sizeof(c->env));
	c->holds = 1;
	*out = c;
	return 0;
}

static void cache_destroy(struct rules_cache *c)
{
	for (uint32_t i = 0; i < c->n; i++) {
		hs_free_database(c->ents[i]->db);
		free(c->ents[i]);
	}
	pthread_mutex_destroy(&c->lock);
	free(c->ents);
	free(c);
}

/* Removes entry @i (held by no ruleset) from @c and frees it. Called locked. */
static void cache_drop(struct rules_cache *c, uint32_t i)
{
	struct cache_entry *e = c->ents[i];

	c->bytes -= e->bytes;
	c->ents[i] = c->ents[--c->n];
	hs_free_database(e->db);
	free(e);
}

/* Drops one hold on @c; returns true when it was the last (the caller then destroys @c). */
static bool cache_unhold(struct rules_cache *c)
{
	return --c->holds == 0;
}

void rules_cache_free(struct rules_cache *c)
{
	bool last;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	c->closed = true;
	for (uint32_t i = c->n; i-- > 0;) {
		if (c->ents[i]->refs == 0)
			cache_drop(c, i);
	}
	last = cache_unhold(c);
	pthread_mutex_unlock(&c->lock);
	if (last)
		cache_destroy(c);
}

void rules_cache_get_stats(struct rules_cache *c, struct rules_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	out->entries = c->n;
	out->bytes = c->bytes;
	for (uint32_t i = 0; i < c->n; i++)
		out->in_use += c->ents[i]->refs > 0;
	out->hits = c->hits;
	out->misses = c->misses;
	out->evictions = c->evictions;
	pthread_mutex_unlock(&c->lock);
}

static void put_le(unsigned char *p, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* The key of one compile: everything Hyperscan is given, in a fixed byte order. */
static void cache_key(const struct rules_cache *c, enum cache_kind kind, const char *const *exprs,
		      const unsigned *flags, const unsigned *ids, const size_t *lens, unsigned n,
		      uint8_t key[CACHE_KEY_BYTES])
{
	crypto_generichash_state st;
	unsigned char hdr[16];

	crypto_generichash_init(&st, NULL, 0, CACHE_KEY_BYTES);
	crypto_generichash_update(&st, c->env, sizeof(c->env));
	put_le(hdr, (uint64_t)kind, 4);
	put_le(hdr + 4, HS_MODE_BLOCK, 4);
	put_le(hdr + 8, n, 8);
	crypto_generichash_update(&st, hdr, sizeof(hdr));
	for (unsigned i = 0; i < n; i++) {
		put_le(hdr, lens[i], 8);
		put_le(hdr + 8, flags[i], 4);
		put_le(hdr + 12, ids[i], 4);
		crypto_generichash_update(&st, hdr, sizeof(hdr));
		crypto_generichash_update(&st, (const unsigned char *)exprs[i], lens[i]);
	}
	crypto_generichash_final(&st, key, CACHE_KEY_BYTES);
}

/* The entry with @key, or -1. Called locked. */
static int64_t cache_find(const struct rules_cache *c, const uint8_t *key)
{
	for (uint32_t i = 0; i < c->n; i++) {
		if (memcmp(c->ents[i]->key, key, CACHE_KEY_BYTES) == 0)
			return i;
	}
	return -1;
}

/* The entry with @key, with a reference taken for the caller's ruleset, or NULL. */
static struct cache_entry *cache_get(struct rules_cache *c, const uint8_t *key)
{
	struct cache_entry *e = NULL;
	int64_t i;

	pthread_mutex_lock(&c->lock);
	i = cache_find(c, key);
	if (i >= 0) {
		e = c->ents[i];
		e->refs++;
		e->used = ++c->tick;
		c->hits++;
	} else {
		c->misses++;
	}
	pthread_mutex_unlock(&c->lock);
	return e;
}

/*
 * Adds *@db under @key with a reference for the caller's ruleset and returns the entry, which
 * now owns the database. When another load added the same key meanwhile, frees *@db, points
 * it at that entry's database and returns that entry. Returns NULL when the database does not
 * fit (every entry that could make room is in use) or on allocation failure: *@db stays the
 * caller's.
 */
static struct cache_entry *cache_put(struct rules_cache *c, const uint8_t *key, hs_database_t **db)
{
	struct cache_entry *e = NULL;
	size_t size = 0;
	int64_t i;

	if (hs_database_size(*db, &size) != HS_SUCCESS || size > c->max_bytes)
		return NULL;
	pthread_mutex_lock(&c->lock);
	if (c->closed)
		goto out_unlock;
	i = cache_find(c, key);
	if (i >= 0) {
		e = c->ents[i];
		e->refs++;
		e->used = ++c->tick;
		hs_free_database(*db);
		*db = e->db;
		goto out_unlock;
	}
	while (c->n >= c->max_entries || size > c->max_bytes - c->bytes) {
		int64_t lru = -1;
		for (uint32_t k = 0; k < c->n; k++) {
			if (c->ents[k]->refs == 0 &&
			    (lru < 0 || c->ents[k]->used < c->ents[lru]->used))
				lru = k;
		}
		if (lru < 0)
			goto out_unlock;
		cache_drop(c, (uint32_t)lru);
		c->evictions++;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out_unlock;
	memcpy(e->key, key, CACHE_KEY_BYTES);
	e->db = *db;
	e->bytes = size;
	e->refs = 1;
	e->used = ++c->tick;
	c->ents[c->n++] = e;
	c->bytes += size;
out_unlock:
	pthread_mutex_unlock(&c->lock);
	return e;
}

/* Gives back @e's reference. Called locked. */
static void cache_unref(struct rules_cache *c, struct cache_entry *e)
{
	if (NEVER(e->refs == 0))
		return;
	if (--e->refs == 0 && c->closed) {
		for (uint32_t i = 0; i < c->n; i++) {
			if (c->ents[i] == e) {
				cache_drop(c, i);
				break;
			}
		}
	}
}

/* Gives back every database @rs holds from its cache, and its hold on the cache. */
static void cache_release_ruleset(struct ruleset *rs)
{
	struct rules_cache *c = rs->cache;
	bool last;

	pthread_mutex_lock(&c->lock);
	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		if (rs->dbs[i].cached)
			cache_unref(c, rs->dbs[i].cached);
	}
	last = cache_unhold(c);
	pthread_mutex_unlock(&c->lock);
	rs->cache = NULL;
	if (last)
		cache_destroy(c);
}

/* --- building a ruleset's databases --- */

/* Threads that compile the databases of one load, the caller's included (the agent has two
 * cores to spare for it at most). */
#define HSDB_COMPILE_THREADS 2
/* Memory a compiling thread prepares for its compiles (see heap_prepare), and the size of a
 * transparent huge page. */
#define HSDB_HEAP_RESERVE (24u << 20)
#define HSDB_HUGE_PAGE	  (2u << 20)
/* Built with AddressSanitizer, whose allocator heap_prepare has nothing to do with. */
#if defined(__SANITIZE_ADDRESS__)
#define HSDB_SANITIZER_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HSDB_SANITIZER_HEAP 1
#endif
#endif

/* Where a literal must sit in the value: checked in the match callback (see engine.c). */
uint8_t hsdb_literal_mode(enum rop op)
{
	switch (op) {
	case ROP_EQUALS:
		return LIT_AT_START | LIT_AT_END;
	case ROP_STARTSWITH:
		return LIT_AT_START;
	case ROP_ENDSWITH:
		return LIT_AT_END;
	default:
		return 0;
	}
}

/* A literal's Hyperscan flags; a regex carries its own flags in its text. */
static unsigned pattern_flags(const struct cpred *cp)
{
	if (cp->op == ROP_REGEX)
		return 0;
	return (cp->flags & PF_CASELESS) ? HS_FLAG_CASELESS : 0;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One value of a predicate going into a database. */
struct entry {
	size_t off; /* pattern text in the ruleset's blob, NUL-terminated */
	uint32_t len;
	unsigned flags;
	uint8_t mode;
	uint32_t pred;
};

/*
 * One Hyperscan compile of a load: its input (pattern texts point into the ruleset's blob) and
 * its result, found in the cache or compiled, until it is installed in its slot.
 */
struct compile_job {
	enum cache_kind kind;
	const char **exprs;
	unsigned *flags;
	unsigned *ids;
	size_t *lens;
	unsigned n;
	uint32_t *blame; /* per pattern id, the first predicate with it: names the rule on error */
	uint32_t dst;	 /* the slot: rs->dbs[dst] */
	uint64_t cost;	 /* estimated, for the order of the compiles */
	bool follower;	 /* an earlier job of this load has the same key: compiled once */
	bool compiled;	 /* run_job ran: neither the cache nor an earlier job had it */
	uint64_t cpu_ns; /* CPU time of the compile, on the thread that ran it */
	uint8_t key[CACHE_KEY_BYTES];
	hs_database_t *db;
	struct cache_entry *ce; /* the cache entry owning db, or NULL: db is ours */
	hs_error_t rc;
	hs_compile_error_t *cerr;
};

struct hb {
	struct ruleset *rs;
	char *err;
	size_t errlen;
	char why[256]; /* the regex engine's reason for a refusal */
	struct entry *ent;
	size_t n_ent, cap_ent;
	uint32_t cap_dbs;
	struct compile_job *jobs;
	uint32_t n_jobs, cap_jobs;
	uint64_t *rx_ns;     /* per database: CPU time of its regex set's compile */
	uint64_t *lazy_ns;   /* per on-demand regex: CPU time of its compile */
	uint32_t *lazy_pred; /* per on-demand regex: its first predicate */
};

static int cmp_entry(const void *x, const void *y, void *ctx)
{
	const struct entry *a = x, *b = y;
	const char *blob = ctx;
	if (a->flags != b->flags)
		return a->flags < b->flags ? -1 : 1;
	if (a->mode != b->mode)
		return a->mode < b->mode ? -1 : 1;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	int c = memcmp(blob + a->off, blob + b->off, a->len);
	if (c)
		return c;
	return a->pred < b->pred ? -1 : a->pred > b->pred;
}

static bool same_pattern(const struct hb *h, const struct entry *a, const struct entry *b)
{
	const char *blob = h->rs->blob;
	return a->flags == b->flags && a->mode == b->mode && a->len == b->len &&
	       memcmp(blob + a->off, blob + b->off, a->len) == 0;
}

/* Adds predicate @pred's values: raw bytes for literals, the pattern for a regex. */
static int add_entries(struct hb *h, uint32_t pred)
{
	const struct ruleset *rs = h->rs;
	const struct cpred *cp = &rs->preds[pred];
	for (uint32_t i = 0; i < cp->n; i++) {
		const struct cstr *s = &rs->strs[cp->off + i];
		if (h->n_ent == h->cap_ent) {
			size_t cap = h->cap_ent ? h->cap_ent * 2 : 1024;
			struct entry *e = realloc(h->ent, cap * sizeof(*e));
			if (!e)
				return -ENOMEM;
			h->ent = e;
			h->cap_ent = cap;
		}
		struct entry *e = &h->ent[h->n_ent++];
		e->off = s->off;
		e->len = s->len;
		e->flags = pattern_flags(cp);
		e->mode = hsdb_literal_mode((enum rop)cp->op);
		e->pred = pred;
	}
	return 0;
}

static int grow_db(struct ruleset *rs, uint32_t *cap)
{
	if (rs->n_dbs < *cap)
		return 0;
	uint32_t ncap = *cap ? *cap * 2 : 16;
	struct cdb *d = realloc(rs->dbs, ncap * sizeof(*d));
	if (!d)
		return -ENOMEM;
	rs->dbs = d;
	*cap = ncap;
	return 0;
}

/*
 * Adds a job for up to @n patterns, its result going to slot @dst, and stores its index in
 * *@index. Returns 0 or -ENOMEM.
 */
static int new_job(struct hb *h, enum cache_kind kind, size_t n, uint32_t dst, uint32_t *index)
{
	struct compile_job *j;

	if (h->n_jobs == h->cap_jobs) {
		uint32_t cap = h->cap_jobs ? h->cap_jobs * 2 : 64;
		j = realloc(h->jobs, cap * sizeof(*j));
		if (!j)
			return -ENOMEM;
		h->jobs = j;
		h->cap_jobs = cap;
	}
	j = &h->jobs[h->n_jobs++];
	memset(j, 0, sizeof(*j));
	j->kind = kind;
	j->dst = dst;
	j->exprs = malloc(n * sizeof(*j->exprs));
	j->flags = malloc(n * sizeof(*j->flags));
	j->ids = malloc(n * sizeof(*j->ids));
	j->lens = malloc(n * sizeof(*j->lens));
	j->blame = malloc(n * sizeof(*j->blame));
	if (!j->exprs || !j->flags || !j->ids || !j->lens || !j->blame)
		return -ENOMEM;
	*index = h->n_jobs - 1;
	return 0;
}

static void jobs_free(struct hb *h)
{
	for (uint32_t i = 0; i < h->n_jobs; i++) {
		struct compile_job *j = &h->jobs[i];
		free(j->exprs);
		free(j->flags);
		free(j->ids);
		free(j->lens);
		free(j->blame);
		hs_free_compile_error(j->cerr);
	}
	free(h->jobs);
}

/* An equals literal: found by lookup, not by the Hyperscan scan. */
static bool is_exact(bool literal, const struct entry *e)
{
	return literal && e->mode == (LIT_AT_START | LIT_AT_END);
}

/*
 * Builds @d's open-addressing table over its lookup entries: at least twice as many slots as
 * entries, so that every probe sequence ends at an empty slot. Returns 0 or -ENOMEM.
 */
static int exact_index(const struct ruleset *rs, struct cdb *d)
{
	uint32_t n = 8;

	while (n < 2 * d->n_exact)
		n *= 2;
	d->slots = calloc(n, sizeof(*d->slots));
	if (!d->slots)
		return -ENOMEM;
	d->slot_mask = n - 1;
	for (uint32_t k = 0; k < d->n_exact; k++) {
		const struct cexact *x = &d->exact[k];
		uint32_t i =
		    hsdb_exact_hash(rs->blob + x->off, x->len, k >= d->n_exact_cs) & d->slot_mask;
		while (d->slots[i])
			i = (i + 1) & d->slot_mask;
		d->slots[i] = k + 1;
	}
	return 0;
}

/*
 * Compiles regex database @db's set, which names predicate @blame when refused, and plans the
 * Hyperscan database of its atoms: each atom found once per scan, ignoring case (the set's
 * atoms are lower case). @t0 is the thread's CPU time when the set was started. Returns 0, a
 * load error, or -ENOMEM.
 */
static int reject(struct hb *h, uint32_t pred, const char *pattern, const char *why);

static int regex_atoms(struct hb *h, uint32_t db, uint32_t blame, uint64_t t0)
{
	struct cdb *d = &h->rs->dbs[db];
	struct compile_job *j;
	size_t n;
	uint32_t ji;
	int ret;

	if ((ret = rx_set_compile(d->rx)) == -E2BIG) {
		const struct cpred *cp = &h->rs->preds[blame];
		return reject(h, blame, h->rs->blob + h->rs->strs[cp->off].off,
			      "the regexes of this field need too many atoms");
	}
	if (ret < 0)
		return ret;
	h->rx_ns[db] = thread_cpu_ns() - t0;
	d->bytes += rx_set_bytes(d->rx);
	if ((n = rx_set_atom_count(d->rx)) == 0)
		return 0;
	if ((ret = new_job(h, CK_ATOMS, n, db, &ji)) < 0)
		return ret;
	j = &h->jobs[ji];
	for (size_t k = 0; k < n; k++) {
		j->exprs[k] = rx_set_atom(d->rx, k, &j->lens[k]);
		j->flags[k] = HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH;
		j->ids[k] = (unsigned)k;
		j->blame[k] = blame;
	}
	j->n = (unsigned)n;
	j->cost = n;
	return 0;
}

/*
 * Plans the database for @field over sorted predicates @preds, all literal or all regex,
 * reusing an identical one: its slot and bookkeeping now, its compile as a job. Literals go
 * through Hyperscan's literal compiler (no anchors: where the literal must sit is checked in
 * the match callback from its end offset and length).
 */
/*
 * Collects the values of predicates @preds into h->ent, sorted so that equal patterns are
 * neighbours; returns the number of distinct patterns a Hyperscan database would hold (the
 * equals literals are looked up instead), or -ENOMEM.
 */
static int64_t collect_entries(struct hb *h, bool literal, const uint32_t *preds, uint32_t n)
{
	int64_t scanned = 0;
	int ret;

	h->n_ent = 0;
	for (uint32_t i = 0; i < n; i++) {
		if ((ret = add_entries(h, preds[i])) < 0)
			return ret;
	}
	qsort_r(h->ent, h->n_ent, sizeof(*h->ent), cmp_entry, h->rs->blob);
	for (size_t i = 0; i < h->n_ent; i++) {
		if ((i == 0 || !same_pattern(h, &h->ent[i - 1], &h->ent[i])) &&
		    !is_exact(literal, &h->ent[i]))
			scanned++;
	}
	return scanned;
}

/*
 * Keeps in h->ent (as collect_entries left it, @scanned patterns to scan) the entries of
 * chunk @chunk of @n_chunks: an even share of the patterns to scan, whole patterns only,
 * and the equals literals in chunk 0 alone.
 */
static void select_chunk(struct hb *h, bool literal, int64_t scanned, uint32_t chunk,
			 uint32_t n_chunks)
{
	uint64_t lo = (uint64_t)scanned * chunk / n_chunks;
	uint64_t hi = (uint64_t)scanned * (chunk + 1) / n_chunks;
	uint64_t k = 0; /* index of the current pattern among those to scan */
	size_t out = 0;

	for (size_t i = 0; i < h->n_ent; i++) {
		const struct entry *e = &h->ent[i];
		bool keep;
		if (is_exact(literal, e)) {
			keep = chunk == 0;
		} else {
			if (i > 0 && !same_pattern(h, &h->ent[i - 1], e) &&
			    !is_exact(literal, &h->ent[i - 1]))
				k++;
			keep = k >= lo && k < hi;
		}
		if (keep)
			h->ent[out++] = *e;
	}
	h->n_ent = out;
}

static int build_db(struct hb *h, uint16_t field, bool literal, const uint32_t *preds, uint32_t n,
		    uint32_t chunk, uint32_t n_chunks, uint32_t *index)
{
	struct ruleset *rs = h->rs;
	struct compile_job *j;
	struct cdb *d;
	uint32_t ji;
	int64_t scanned;
	int ret;

	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		d = &rs->dbs[i];
		if (d->field == field && (d->mode != NULL) == literal && d->n_key == n &&
		    d->chunk == chunk && d->n_chunks == n_chunks &&
		    memcmp(d->key, preds, n * sizeof(*preds)) == 0) {
			*index = i;
			return 0;
		}
	}
	if ((scanned = collect_entries(h, literal, preds, n)) < 0)
		return (int)scanned;
	if (n_chunks > 1)
		select_chunk(h, literal, scanned, chunk, n_chunks);
	size_t n_ids = 0, n_fan = 0, n_job = 0, cnt = h->n_ent;
	for (size_t i = 0; i < cnt; i++) {
		if ((i == 0 || !same_pattern(h, &h->ent[i - 1], &h->ent[i])) &&
		    !is_exact(literal, &h->ent[i]))
			n_job++;
	}
	/* the slot first, so that whatever is allocated below is freed with the ruleset */
	if ((ret = grow_db(rs, &h->cap_dbs)) < 0)
		return ret;
	if (!literal) {
		uint64_t *ns = realloc(h->rx_ns, h->cap_dbs * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		h->rx_ns = ns;
	}
	d = &rs->dbs[rs->n_dbs++];
	memset(d, 0, sizeof(*d));
	d->field = field;
	d->chunk = chunk;
	d->n_chunks = n_chunks;
	d->all_buckets = !literal;
	d->fan_start = malloc((cnt + 1) * sizeof(*d->fan_start));
	d->fan_preds = malloc((cnt ? cnt : 1) * sizeof(*d->fan_preds));
	d->key = malloc((n ? n : 1) * sizeof(*d->key));
	if (literal) {
		d->mode = malloc(cnt ? cnt : 1);
		d->lit_len = malloc((cnt ? cnt : 1) * sizeof(*d->lit_len));
		d->exact = malloc((cnt - n_job ? cnt - n_job : 1) * sizeof(*d->exact));
	}
	if (!d->fan_start || !d->fan_preds || !d->key ||
	    (literal && (!d->mode || !d->lit_len || !d->exact)))
		return -ENOMEM;
	j = NULL;
	if (n_job && literal) {
		if ((ret = new_job(h, CK_LITERAL, n_job, rs->n_dbs - 1, &ji)) < 0)
			return ret;
		j = &h->jobs[ji];
	}
	uint64_t t0 = thread_cpu_ns();
	if (!literal && (ret = rx_set_new(&d->rx)) < 0)
		return ret;
	memcpy(d->key, preds, n * sizeof(*d->key));
	d->n_key = n;
	n_job = 0;
	for (size_t i = 0; i < cnt; i++) {
		const struct entry *e = &h->ent[i];
		bool same = i && same_pattern(h, &h->ent[i - 1], e);
		if (!same) {
			if (is_exact(literal, e)) {
				/* entries come sorted by flags: the case-sensitive ones first */
				struct cexact *x = &d->exact[d->n_exact++];
				x->off = (uint32_t)e->off;
				x->len = e->len;
				x->id = (uint32_t)n_ids;
				d->n_exact_cs += !(e->flags & HS_FLAG_CASELESS);
			} else if (!literal) {
				ret = rx_set_add(d->rx, rs->blob + e->off, e->len, h->why,
						 sizeof(h->why));
				if (ret == -EINVAL || ret == -E2BIG)
					return reject(h, e->pred, rs->blob + e->off,
						      ret == -EINVAL
							  ? h->why
							  : "too many regexes for one field");
				if (ret < 0)
					return ret;
			} else if (!NEVER(!j)) {
				j->exprs[n_job] = rs->blob + e->off;
				j->flags[n_job] = e->flags;
				j->ids[n_job] = (unsigned)n_ids;
				j->lens[n_job] = e->len;
				j->blame[n_job] = e->pred;
				n_job++;
			}
			if (literal) {
				d->mode[n_ids] = e->mode;
				d->lit_len[n_ids] = e->len;
			}
			d->fan_start[n_ids] = (uint32_t)n_fan;
			n_ids++;
		}
		if (!same || d->fan_preds[n_fan - 1] != e->pred)
			d->fan_preds[n_fan++] = e->pred;
	}
	d->fan_start[n_ids] = (uint32_t)n_fan;
	d->n_ids = (uint32_t)n_ids;
	d->n_fan = (uint32_t)n_fan;
	if (d->n_exact && (ret = exact_index(rs, d)) < 0)
		return ret;
	d->bytes = (d->n_ids + 1 + d->n_fan + d->n_key) * sizeof(uint32_t) +
		   (d->mode ? d->n_ids * (1 + sizeof(uint32_t)) : 0) +
		   d->n_exact * sizeof(*d->exact) +
		   (d->slots ? (d->slot_mask + 1) * sizeof(uint32_t) : 0);
	if (j) {
		j->n = (unsigned)n_job;
		j->cost = n_job;
	}
	if (!literal && (ret = regex_atoms(h, rs->n_dbs - 1, preds[0], t0)) < 0)
		return ret;
	rs->n_patterns += n_ids;
	*index = rs->n_dbs - 1;
	return 0;
}

struct field_pred {
	uint16_t field;
	bool regex;
	uint32_t pred;
};

static int cmp_field_pred(const void *x, const void *y)
{
	const struct field_pred *a = x, *b = y;
	if (a->field != b->field)
		return a->field < b->field ? -1 : 1;
	if (a->regex != b->regex)
		return a->regex ? 1 : -1;
	return a->pred < b->pred ? -1 : a->pred > b->pred;
}

static bool prog_in_bucket(const struct ruleset *rs, const struct cprog *p, uint32_t b)
{
	if (p->n_act == 0)
		return true;
	if (b == 0)
		return false;
	for (uint32_t k = 0; k < p->n_act; k++) {
		if (rs->act_ids[p->act_off + k] == b - 1)
			return true;
	}
	return false;
}

static int build_bucket(struct hb *h, uint32_t b, struct field_pred *fp, uint32_t *scratch)
{
	struct ruleset *rs = h->rs;
	struct cbucket *bk = &rs->buckets[b];
	size_t n_fp = 0;
	uint32_t n_always = 0;
	int ret;

	bk->action = b == 0 ? UINT32_MAX : b - 1;
	for (uint32_t p = 0; p < rs->n_progs; p++) {
		const struct cprog *pr = &rs->progs[p];
		if (!prog_in_bucket(rs, pr, b))
			continue;
		if (!pr->needs_hit)
			scratch[n_always++] = p;
		for (uint32_t k = 0; k < pr->n_preds; k++) {
			const struct cpred *cp = &rs->preds[pr->pred_base + k];
			if (cp->kind == PK_SCAN) {
				fp[n_fp].field = cp->field;
				fp[n_fp].regex = cp->op == ROP_REGEX;
				fp[n_fp].pred = pr->pred_base + k;
				n_fp++;
			}
		}
	}
	bk->always = malloc((n_always ? n_always : 1) * sizeof(*bk->always));
	if (!bk->always)
		return -ENOMEM;
	memcpy(bk->always, scratch, n_always * sizeof(*scratch));
	bk->n_always = n_always;
	qsort(fp, n_fp, sizeof(*fp), cmp_field_pred);
	uint32_t cap = 0;
	for (size_t i = 0; i < n_fp;) {
		size_t j = i;
		uint32_t n_key = 0;
		while (j < n_fp && fp[j].field == fp[i].field && fp[j].regex == fp[i].regex) {
			scratch[n_key++] = fp[j].pred;
			j++;
		}
		if (fp[i].regex) {
			/*
			 * One regex set per field holds the regexes of every bucket, built once;
			 * the engine ignores what it reports for rules outside the event's bucket.
			 */
			n_key = 0;
			for (uint32_t p = 0; p < rs->n_preds; p++) {
				const struct cpred *cp = &rs->preds[p];
				if (cp->kind == PK_SCAN && cp->op == ROP_REGEX &&
				    cp->field == fp[i].field)
					scratch[n_key++] = p;
			}
		}
		/*
		 * A regex set is one database. Literals: Hyperscan's literal compile grows faster
		 * than their number (512 took 41 ms here, two databases of 256 15 ms together),
		 * so more than HSDB_LITERAL_CHUNK are split evenly into chunks, which compile on
		 * the two threads, for one more scan of the value each (about 50 ns for a command
		 * line). A pattern is never split: the engine marks a predicate once per event,
		 * whichever chunk finds it.
		 */
		uint32_t n_chunks = 1;
		if (!fp[i].regex) {
			int64_t scanned = collect_entries(h, true, scratch, n_key);
			if (scanned < 0)
				return (int)scanned;
			n_chunks =
			    (uint32_t)((scanned + HSDB_LITERAL_CHUNK - 1) / HSDB_LITERAL_CHUNK);
			if (n_chunks == 0)
				n_chunks = 1;
		}
		if (bk->n_dbs + n_chunks > cap) {
			uint32_t ncap = (bk->n_dbs + n_chunks) * 2;
			struct cbucket_db *v = realloc(bk->dbs, ncap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			/* zeroed, padding included, so that equal plans compare equal */
			memset(v + cap, 0, (ncap - cap) * sizeof(*v));
			bk->dbs = v;
			cap = ncap;
		}
		for (uint32_t c = 0; c < n_chunks; c++) {
			uint32_t db = 0;
			if ((ret = build_db(h, fp[i].field, !fp[i].regex, scratch, n_key, c,
					    n_chunks, &db)) < 0)
				return ret;
			bk->dbs[bk->n_dbs].field = fp[i].field;
			bk->dbs[bk->n_dbs].db = db;
			bk->n_dbs++;
		}
		i = j;
	}
	return 0;
}

/* Orders on-demand regex predicates by pattern, then by index. */
static int cmp_lazy(const void *x, const void *y, void *ctx)
{
	const struct ruleset *rs = ctx;
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	const struct cstr *sa = &rs->strs[rs->preds[a].off], *sb = &rs->strs[rs->preds[b].off];

	if (sa->len != sb->len)
		return sa->len < sb->len ? -1 : 1;
	int c = memcmp(rs->blob + sa->off, rs->blob + sb->off, sa->len);
	if (c)
		return c;
	return a < b ? -1 : a > b;
}

static bool lazy_same_pattern(const struct ruleset *rs, uint32_t a, uint32_t b)
{
	const struct cstr *sa = &rs->strs[rs->preds[a].off], *sb = &rs->strs[rs->preds[b].off];

	return sa->len == sb->len && memcmp(rs->blob + sa->off, rs->blob + sb->off, sa->len) == 0;
}

/*
 * One compiled regex per distinct regex that runs on demand (PK_REGEX): predicates with the
 * same pattern share it (cpred.num), in the order of their first predicate.
 */
static int build_lazy(struct hb *h)
{
	struct ruleset *rs = h->rs;
	uint32_t n = 0, *order = NULL, *first = NULL;
	int ret = 0;

	for (uint32_t p = 0; p < rs->n_preds; p++)
		n += rs->preds[p].kind == PK_REGEX;
	if (!n)
		return 0;
	rs->lazy = calloc(n, sizeof(*rs->lazy));
	h->lazy_ns = calloc(n, sizeof(*h->lazy_ns));
	h->lazy_pred = calloc(n, sizeof(*h->lazy_pred));
	order = malloc(n * sizeof(*order));
	first = malloc(rs->n_preds * sizeof(*first)); /* per predicate, its group's first */
	if (!rs->lazy || !h->lazy_ns || !h->lazy_pred || !order || !first) {
		ret = -ENOMEM;
		goto out_free;
	}
	n = 0;
	for (uint32_t p = 0; p < rs->n_preds; p++) {
		if (rs->preds[p].kind == PK_REGEX)
			order[n++] = p;
	}
	qsort_r(order, n, sizeof(*order), cmp_lazy, rs);
	for (uint32_t i = 0; i < n; i++) {
		if (i && lazy_same_pattern(rs, order[i - 1], order[i]))
			first[order[i]] = first[order[i - 1]];
		else
			first[order[i]] = order[i];
	}
	for (uint32_t p = 0; p < rs->n_preds; p++) {
		struct cpred *cp = &rs->preds[p];
		if (cp->kind != PK_REGEX)
			continue;
		if (first[p] != p) {
			cp->num = rs->preds[first[p]].num;
			continue;
		}
		const struct cstr *s = &rs->strs[cp->off];
		uint64_t t0 = thread_cpu_ns();
		ret = rx_new(rs->blob + s->off, s->len, &rs->lazy[rs->n_lazy], h->why,
			     sizeof(h->why));
		if (ret == -EINVAL)
			ret = reject(h, p, rs->blob + s->off, h->why);
		if (ret < 0)
			goto out_free;
		h->lazy_ns[rs->n_lazy] = thread_cpu_ns() - t0;
		h->lazy_pred[rs->n_lazy] = p;
		cp->num = rs->n_lazy++;
		rs->n_patterns++;
	}
out_free:
	free(order);
	free(first);
	return ret;
}

/* --- compiling the planned databases --- */

static void run_job(struct compile_job *j)
{
	uint64_t t0 = thread_cpu_ns();

	/* literals and atoms alike: every Hyperscan database of a load is a literal one */
	j->rc = hs_compile_lit_multi(j->exprs, j->flags, j->ids, j->lens, j->n, HS_MODE_BLOCK, NULL,
				     &j->db, &j->cerr);
	j->compiled = true;
	j->cpu_ns = thread_cpu_ns() - t0;
}

/* The jobs to compile, most expensive first, shared by the compiling threads. */
struct compile_queue {
	struct compile_job *jobs;
	const uint32_t *order;
	uint32_t n;
	atomic_uint next;
};

/*
 * Asks for transparent huge pages under the memory this thread's compiles are about to use.
 * Hyperscan's compiler allocates and frees tens of MB per thread for a large load; in 4 KiB
 * pages that is thousands of page faults (costly in a virtual machine), and after the agent's
 * test-load fork, which write-protects the whole heap, thousands more on the next compile. In
 * 2 MiB pages it is a few dozen. The block is taken from this thread's allocator arena and
 * given back to it, so the advice stays on memory the arena hands out again. Where the
 * allocator serves a block this large with mmap (glibc's default threshold is lower; the agent
 * raises it, updater.c), the advice goes with the block and nothing changes. Best effort: the
 * kernel may have no huge pages to give.
 */
static void heap_prepare(void)
{
#ifdef HSDB_SANITIZER_HEAP
	/* the sanitizer's allocator: nothing to advise, and a block this large costs it */
	return;
#else
	char *p = malloc(HSDB_HEAP_RESERVE);
	uintptr_t from, to;

	if (!p)
		return;
	from = ((uintptr_t)p + HSDB_HUGE_PAGE - 1) & ~(uintptr_t)(HSDB_HUGE_PAGE - 1);
	to = ((uintptr_t)p + HSDB_HEAP_RESERVE) & ~(uintptr_t)(HSDB_HUGE_PAGE - 1);
	if (to > from)
		(void)madvise((void *)from, to - from, MADV_HUGEPAGE);
	free(p);
#endif
}

static void *compile_worker(void *arg)
{
	struct compile_queue *q = arg;

	if (q->n)
		heap_prepare();
	for (unsigned i; (i = atomic_fetch_add(&q->next, 1)) < q->n;)
		run_job(&q->jobs[q->order[i]]);
	return NULL;
}

static int cmp_cost(const void *x, const void *y, void *ctx)
{
	const struct compile_job *jobs = ctx;
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;

	if (jobs[a].cost != jobs[b].cost)
		return jobs[a].cost > jobs[b].cost ? -1 : 1;
	return a < b ? -1 : a > b;
}

static int cmp_key(const void *x, const void *y, void *ctx)
{
	const struct compile_job *jobs = ctx;
	uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
	int c = memcmp(jobs[a].key, jobs[b].key, CACHE_KEY_BYTES);

	if (c)
		return c;
	return a < b ? -1 : a > b;
}

/*
 * Takes what the cache holds, and compiles the rest on up to HSDB_COMPILE_THREADS threads,
 * each distinct input once: a job whose input an earlier job of the load has is a follower,
 * given that job's database when installed. Every other job ends with rc set. Returns 0 or
 * -ENOMEM (nothing compiled then).
 */
static int compile_jobs(struct hb *h, struct rules_cache *c)
{
	struct compile_queue q = {.jobs = h->jobs};
	pthread_t helpers[HSDB_COMPILE_THREADS - 1];
	uint32_t *order = malloc((h->n_jobs ? h->n_jobs : 1) * sizeof(*order));
	unsigned n_helpers = 0, want = 0;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (!order)
		return -ENOMEM;
	for (uint32_t i = 0; i < h->n_jobs; i++) {
		struct compile_job *j = &h->jobs[i];
		cache_key(c, j->kind, j->exprs, j->flags, j->ids, j->lens, j->n, j->key);
		order[i] = i;
	}
	qsort_r(order, h->n_jobs, sizeof(*order), cmp_key, h->jobs);
	for (uint32_t i = 1; i < h->n_jobs; i++) {
		const struct compile_job *prev = &h->jobs[order[i - 1]];
		struct compile_job *j = &h->jobs[order[i]];
		j->follower = memcmp(prev->key, j->key, CACHE_KEY_BYTES) == 0;
	}
	/* one lookup per database: a follower's is made when it is installed */
	for (uint32_t i = 0; i < h->n_jobs; i++) {
		struct compile_job *j = &h->jobs[i];
		if (j->follower)
			continue;
		j->ce = cache_get(c, j->key);
		if (j->ce) {
			j->db = j->ce->db;
			j->rc = HS_SUCCESS;
		} else {
			order[q.n++] = i;
		}
	}
	qsort_r(order, q.n, sizeof(*order), cmp_cost, h->jobs);
	q.order = order;
	atomic_init(&q.next, 0);
	if (cpus > 1 && q.n > 1)
		want = cpus - 1 < HSDB_COMPILE_THREADS - 1 ? (unsigned)cpus - 1
							   : HSDB_COMPILE_THREADS - 1;
	while (n_helpers < want &&
	       pthread_create(&helpers[n_helpers], NULL, compile_worker, &q) == 0)
		n_helpers++;
	compile_worker(&q);
	while (n_helpers > 0)
		pthread_join(helpers[--n_helpers], NULL);
	free(order);
	return 0;
}

static int reject(struct hb *h, uint32_t pred, const char *pattern, const char *why)
{
	const struct ruleset *rs = h->rs;
	const struct cpred *cp = &rs->preds[pred];
	const struct crule *r = &rs->rules[rs->progs[rs->pred_prog[pred]].rule];
	return rules_fail(
	    h->err, h->errlen, -EINVAL, r->info.file, cp->line, registry_field(cp->field)->name,
	    "%s: pattern '%.200s' rejected by the linear-time engine: %s (rule %s)",
	    rop_name((enum rop)cp->op, cp->flags & PF_CASELESS), pattern, why, r->info.id);
}

static void record(struct ruleset *rs, uint16_t field, enum ruleset_db_kind kind, size_t patterns,
		   bool compiled, uint64_t cpu_ns, size_t bytes)
{
	struct ruleset_db_info *x;

	if (NEVER(!rs->db_info))
		return;
	x = &rs->db_info[rs->n_db_info++];
	x->field = registry_field(field)->name;
	x->kind = kind;
	x->patterns = patterns;
	x->compiled = compiled;
	x->cpu_ms = (double)cpu_ns / 1e6;
	x->bytes = bytes;
}

/* Adds installed job @j, whose database is of @size bytes, to the ruleset's db_info. */
static void record_job(struct hb *h, const struct compile_job *j, size_t size)
{
	enum ruleset_db_kind kind = j->kind == CK_LITERAL ? RDB_LITERAL : RDB_REGEX_ATOMS;

	record(h->rs, h->rs->dbs[j->dst].field, kind, j->n, j->compiled, j->cpu_ns, size);
}

/*
 * Puts job @j's database in its slot, added to cache @c when compiled (a follower takes the
 * database of the job it follows from there, or compiles its own when that one did not fit).
 * Cannot fail: a compile that fails leaves rc set and the slot empty.
 */
static void install(struct hb *h, struct rules_cache *c, struct compile_job *j)
{
	struct ruleset *rs = h->rs;
	size_t size = 0;

	if (j->follower) {
		j->ce = cache_get(c, j->key);
		if (j->ce) {
			j->db = j->ce->db;
			j->rc = HS_SUCCESS;
		} else {
			run_job(j);
		}
	}
	if (j->rc != HS_SUCCESS)
		return;
	if (!j->ce)
		j->ce = cache_put(c, j->key, &j->db);
	hs_database_size(j->db, &size);
	struct cdb *d = &rs->dbs[j->dst];
	d->db = j->db;
	d->cached = j->ce;
	d->bytes += size;
	record_job(h, j, size);
	j->db = NULL;
	j->ce = NULL;
}

int hsdb_build(struct ruleset *rs, struct rules_cache *cache, char *err, size_t errlen)
{
	struct hb h = {.rs = rs, .err = err, .errlen = errlen};
	size_t n = rs->n_preds > rs->n_progs ? rs->n_preds : rs->n_progs;
	struct field_pred *fp = malloc((rs->n_preds ? rs->n_preds : 1) * sizeof(*fp));
	uint32_t *scratch = malloc((n ? n : 1) * sizeof(*scratch));
	struct rules_cache *own = NULL;
	int ret = 0;

	/* without a cache, one of this load's own finds what the load compiles twice */
	if (!cache) {
		if ((ret = rules_cache_new(0, 0, &own)) < 0)
			goto out_free;
		cache = own;
	}
	pthread_mutex_lock(&cache->lock);
	cache->holds++;
	pthread_mutex_unlock(&cache->lock);
	rs->cache = cache;

	rs->n_buckets = rs->n_actions + 1;
	rs->buckets = calloc(rs->n_buckets, sizeof(*rs->buckets));
	if (!fp || !scratch || !rs->buckets) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (uint32_t b = 0; b < rs->n_buckets && ret == 0; b++)
		ret = build_bucket(&h, b, fp, scratch);
	if (ret == 0)
		ret = build_lazy(&h);
	/* a record per compile job, per database (its lookup table or regex set), per regex */
	if (ret == 0 && !(rs->db_info = calloc((size_t)h.n_jobs + rs->n_dbs + rs->n_lazy + 1,
					       sizeof(*rs->db_info))))
		ret = -ENOMEM;
	if (ret == 0)
		ret = compile_jobs(&h, cache);
	if (ret < 0)
		goto out_free;
	/* every result goes to its slot (and is freed with the ruleset); the first failure, in
	 * the order the databases were planned, is the one reported */
	for (uint32_t i = 0; i < h.n_jobs; i++)
		install(&h, cache, &h.jobs[i]);
	for (uint32_t i = 0; i < h.n_jobs && ret == 0; i++) {
		const struct compile_job *j = &h.jobs[i];
		if (j->rc == HS_SUCCESS)
			continue;
		int at = j->cerr ? j->cerr->expression : -1;
		unsigned k = at >= 0 && (unsigned)at < j->n ? (unsigned)at : 0;
		ret = reject(&h, j->blame[k], j->exprs[k],
			     j->cerr && j->cerr->message ? j->cerr->message : "compile failed");
	}
	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		const struct cdb *d = &rs->dbs[i];
		if (d->n_exact)
			record(rs, d->field, RDB_LOOKUP, d->n_exact, false, 0,
			       d->n_exact * sizeof(*d->exact) +
				   (d->slot_mask + 1) * sizeof(*d->slots));
		if (d->rx)
			record(rs, d->field, RDB_REGEX, rx_set_count(d->rx), true, h.rx_ns[i],
			       rx_set_bytes(d->rx));
	}
	for (uint32_t i = 0; i < rs->n_lazy; i++) {
		size_t bytes = rx_bytes(rs->lazy[i]);
		rs->bytes += bytes;
		record(rs, rs->preds[h.lazy_pred[i]].field, RDB_REGEX_ON_DEMAND, 1, true,
		       h.lazy_ns[i], bytes);
	}
out_free:
	/* a cache of the load's own goes with the ruleset */
	rules_cache_free(own);
	jobs_free(&h);
	free(fp);
	free(scratch);
	free(h.ent);
	free(h.rx_ns);
	free(h.lazy_ns);
	free(h.lazy_pred);
	return ret;
}

void hsdb_free(struct ruleset *rs)
{
	if (rs->cache)
		cache_release_ruleset(rs);
	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		if (!rs->dbs[i].cached && rs->dbs[i].db)
			hs_free_database(rs->dbs[i].db);
		rx_set_free(rs->dbs[i].rx);
		free(rs->dbs[i].exact);
		free(rs->dbs[i].slots);
		free(rs->dbs[i].fan_start);
		free(rs->dbs[i].fan_preds);
		free(rs->dbs[i].key);
		free(rs->dbs[i].mode);
		free(rs->dbs[i].lit_len);
	}
	free(rs->dbs);
	rs->dbs = NULL;
	rs->n_dbs = 0;
	for (uint32_t i = 0; i < rs->n_lazy; i++)
		rx_free(rs->lazy[i]);
	free(rs->lazy);
	rs->lazy = NULL;
	rs->n_lazy = 0;
	for (uint32_t b = 0; rs->buckets && b < rs->n_buckets; b++) {
		free(rs->buckets[b].always);
		free(rs->buckets[b].dbs);
	}
	free(rs->buckets);
	rs->buckets = NULL;
	rs->n_buckets = 0;
	free(rs->db_info);
	rs->db_info = NULL;
	rs->n_db_info = 0;
}

size_t ruleset_db_count(const struct ruleset *rs)
{
	return rs ? rs->n_db_info : 0;
}

int ruleset_db_get(const struct ruleset *rs, size_t i, struct ruleset_db_info *out)
{
	if (!rs || i >= rs->n_db_info)
		return -ERANGE;
	*out = rs->db_info[i];
	return 0;
}
