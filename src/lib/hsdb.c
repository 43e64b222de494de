/*
 * Pattern databases: the string predicates of the rules one event.action bucket considers,
 * per field, compiled into one Hyperscan literal database (equals, contains, startswith,
 * endswith and their i-variants) and, when there are any, one regex database, so that an
 * event costs one or two scans per field. A pattern Hyperscan rejects is a load error.
 */
#include <errno.h>
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile_int.h"

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

static unsigned pattern_flags(const struct cpred *cp)
{
	if (cp->op == ROP_REGEX)
		return HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
	return (cp->flags & PF_CASELESS) ? HS_FLAG_CASELESS : 0;
}

struct entry {
	size_t off; /* pattern text in the build buffer, NUL-terminated */
	uint32_t len;
	unsigned flags;
	uint8_t mode;
	uint32_t pred;
};

struct hb {
	struct ruleset *rs;
	char *err;
	size_t errlen;
	char *pat;
	size_t pat_len, pat_cap;
	struct entry *ent;
	size_t n_ent, cap_ent;
	uint32_t cap_dbs;
};

static int cmp_entry(const void *x, const void *y, void *ctx)
{
	const struct entry *a = x, *b = y;
	const char *pat = ctx;
	if (a->flags != b->flags)
		return a->flags < b->flags ? -1 : 1;
	if (a->mode != b->mode)
		return a->mode < b->mode ? -1 : 1;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	int c = memcmp(pat + a->off, pat + b->off, a->len);
	if (c)
		return c;
	return a->pred < b->pred ? -1 : a->pred > b->pred;
}

static bool same_pattern(const struct hb *h, const struct entry *a, const struct entry *b)
{
	return a->flags == b->flags && a->mode == b->mode && a->len == b->len &&
	       memcmp(h->pat + a->off, h->pat + b->off, a->len) == 0;
}

/* Adds predicate @pred's values: raw bytes for literals, the pattern for a regex. */
static int add_entries(struct hb *h, uint32_t pred)
{
	const struct ruleset *rs = h->rs;
	const struct cpred *cp = &rs->preds[pred];
	for (uint32_t i = 0; i < cp->n; i++) {
		const struct cstr *s = &rs->strs[cp->off + i];
		size_t need = h->pat_len + (size_t)s->len + 1;
		if (need > h->pat_cap) {
			size_t cap = h->pat_cap ? h->pat_cap * 2 : 65536;
			while (cap < need)
				cap *= 2;
			char *p = realloc(h->pat, cap);
			if (!p)
				return -ENOMEM;
			h->pat = p;
			h->pat_cap = cap;
		}
		if (h->n_ent == h->cap_ent) {
			size_t cap = h->cap_ent ? h->cap_ent * 2 : 1024;
			struct entry *e = realloc(h->ent, cap * sizeof(*e));
			if (!e)
				return -ENOMEM;
			h->ent = e;
			h->cap_ent = cap;
		}
		struct entry *e = &h->ent[h->n_ent++];
		e->off = h->pat_len;
		e->len = s->len;
		memcpy(h->pat + h->pat_len, rs->blob + s->off, s->len);
		h->pat[h->pat_len + s->len] = '\0';
		e->flags = pattern_flags(cp);
		e->mode = hsdb_literal_mode((enum rop)cp->op);
		e->pred = pred;
		h->pat_len += (size_t)s->len + 1;
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

static int reject(struct hb *h, const struct entry *e, const char *why)
{
	const struct ruleset *rs = h->rs;
	const struct cpred *cp = &rs->preds[e->pred];
	const struct crule *r = &rs->rules[rs->progs[rs->pred_prog[e->pred]].rule];
	return rules_fail(h->err, h->errlen, -EINVAL, r->info.file, cp->line,
			  registry_field(cp->field)->name,
			  "%s: pattern '%.200s' rejected by the linear-time engine: %s (rule %s)",
			  rop_name((enum rop)cp->op, cp->flags & PF_CASELESS), h->pat + e->off, why,
			  r->info.id);
}

/*
 * Database for @field over sorted predicates @preds, all literal or all regex; reuses an
 * identical one. Literals go through Hyperscan's literal compiler (no anchors: where the
 * literal must sit is checked in the match callback from its end offset and length).
 */
static int build_db(struct hb *h, uint16_t field, bool literal, const uint32_t *preds,
		    uint32_t n, uint32_t *index)
{
	struct ruleset *rs = h->rs;
	const char **exprs = NULL;
	unsigned *flags = NULL, *ids = NULL;
	size_t *lens = NULL;
	uint32_t *fan_start = NULL, *fan_preds = NULL, *key = NULL, *lit_len = NULL;
	uint8_t *mode = NULL;
	hs_compile_error_t *cerr = NULL;
	hs_database_t *db = NULL;
	int ret = 0;

	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		const struct cdb *d = &rs->dbs[i];
		if (d->field == field && (d->mode != NULL) == literal && d->n_key == n &&
		    memcmp(d->key, preds, n * sizeof(*preds)) == 0) {
			*index = i;
			return 0;
		}
	}
	h->pat_len = 0;
	h->n_ent = 0;
	for (uint32_t i = 0; i < n; i++) {
		if ((ret = add_entries(h, preds[i])) < 0)
			return ret;
	}
	qsort_r(h->ent, h->n_ent, sizeof(*h->ent), cmp_entry, h->pat);
	size_t n_ids = 0, n_fan = 0, cnt = h->n_ent;
	exprs = malloc(cnt * sizeof(*exprs));
	flags = malloc(cnt * sizeof(*flags));
	ids = malloc(cnt * sizeof(*ids));
	lens = malloc(cnt * sizeof(*lens));
	fan_start = malloc((cnt + 1) * sizeof(*fan_start));
	fan_preds = malloc(cnt * sizeof(*fan_preds));
	key = malloc(n * sizeof(*key));
	if (literal) {
		mode = malloc(cnt);
		lit_len = malloc(cnt * sizeof(*lit_len));
	}
	if (!exprs || !flags || !ids || !lens || !fan_start || !fan_preds || !key ||
	    (literal && (!mode || !lit_len))) {
		ret = -ENOMEM;
		goto out_free;
	}
	memcpy(key, preds, n * sizeof(*key));
	for (size_t i = 0; i < cnt; i++) {
		const struct entry *e = &h->ent[i];
		bool same = i && same_pattern(h, &h->ent[i - 1], e);
		if (!same) {
			exprs[n_ids] = h->pat + e->off;
			flags[n_ids] = e->flags;
			ids[n_ids] = (unsigned)n_ids;
			lens[n_ids] = e->len;
			if (literal) {
				mode[n_ids] = e->mode;
				lit_len[n_ids] = e->len;
			}
			fan_start[n_ids] = (uint32_t)n_fan;
			n_ids++;
		}
		if (!same || fan_preds[n_fan - 1] != e->pred)
			fan_preds[n_fan++] = e->pred;
	}
	fan_start[n_ids] = (uint32_t)n_fan;
	hs_error_t rc = literal ? hs_compile_lit_multi(exprs, flags, ids, lens, (unsigned)n_ids,
						       HS_MODE_BLOCK, NULL, &db, &cerr)
				: hs_compile_multi(exprs, flags, ids, (unsigned)n_ids, HS_MODE_BLOCK,
						   NULL, &db, &cerr);
	if (rc != HS_SUCCESS) {
		int at = cerr ? cerr->expression : -1;
		const char *why = cerr && cerr->message ? cerr->message : "compile failed";
		if (at >= 0 && (size_t)at < n_ids) {
			/* the first entry with that pattern names the rule */
			size_t k = 0;
			while (k < cnt && h->pat + h->ent[k].off != exprs[at])
				k++;
			ret = reject(h, &h->ent[k < cnt ? k : 0], why);
		} else {
			ret = reject(h, &h->ent[0], why);
		}
		hs_free_compile_error(cerr);
		goto out_free;
	}
	if ((ret = grow_db(rs, &h->cap_dbs)) < 0)
		goto out_free;
	struct cdb *d = &rs->dbs[rs->n_dbs];
	memset(d, 0, sizeof(*d));
	d->db = db;
	d->field = field;
	d->n_ids = (uint32_t)n_ids;
	d->fan_start = fan_start;
	d->fan_preds = fan_preds;
	d->n_fan = (uint32_t)n_fan;
	d->key = key;
	d->n_key = n;
	d->mode = mode;
	d->lit_len = lit_len;
	d->all_buckets = !literal;
	size_t size = 0;
	hs_database_size(db, &size);
	d->bytes = size + (n_ids + 1 + n_fan + n) * sizeof(uint32_t) +
		   (literal ? n_ids * (1 + sizeof(uint32_t)) : 0);
	rs->n_patterns += n_ids;
	*index = rs->n_dbs++;
	db = NULL;
	fan_start = fan_preds = key = lit_len = NULL;
	mode = NULL;
out_free:
	hs_free_database(db);
	free(exprs);
	free(flags);
	free(ids);
	free(lens);
	free(fan_start);
	free(fan_preds);
	free(key);
	free(mode);
	free(lit_len);
	return ret;
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
	uint32_t n_fields = 0;
	for (size_t i = 0; i < n_fp; i++)
		n_fields += i == 0 || fp[i].field != fp[i - 1].field || fp[i].regex != fp[i - 1].regex;
	bk->dbs = calloc(n_fields ? n_fields : 1, sizeof(*bk->dbs));
	if (!bk->dbs)
		return -ENOMEM;
	for (size_t i = 0; i < n_fp;) {
		size_t j = i;
		uint32_t n_key = 0;
		while (j < n_fp && fp[j].field == fp[i].field && fp[j].regex == fp[i].regex) {
			scratch[n_key++] = fp[j].pred;
			j++;
		}
		if (fp[i].regex) {
			/*
			 * Regex databases compile slowly and superlinearly: one per field holds the
			 * regexes of every bucket, built once; the engine ignores what it reports
			 * for rules outside the event's bucket.
			 */
			n_key = 0;
			for (uint32_t p = 0; p < rs->n_preds; p++) {
				const struct cpred *cp = &rs->preds[p];
				if (cp->kind == PK_SCAN && cp->op == ROP_REGEX && cp->field == fp[i].field)
					scratch[n_key++] = p;
			}
		}
		uint32_t db = 0;
		if ((ret = build_db(h, fp[i].field, !fp[i].regex, scratch, n_key, &db)) < 0)
			return ret;
		bk->dbs[bk->n_dbs].field = fp[i].field;
		bk->dbs[bk->n_dbs].db = db;
		bk->n_dbs++;
		i = j;
	}
	return 0;
}

/* One database per regex that runs on demand (PK_REGEX). */
static int build_lazy(struct hb *h)
{
	struct ruleset *rs = h->rs;
	uint32_t n = 0;
	int ret;

	for (uint32_t p = 0; p < rs->n_preds; p++)
		n += rs->preds[p].kind == PK_REGEX;
	if (!n)
		return 0;
	rs->lazy = calloc(n, sizeof(*rs->lazy));
	if (!rs->lazy)
		return -ENOMEM;
	for (uint32_t p = 0; p < rs->n_preds; p++) {
		struct cpred *cp = &rs->preds[p];
		hs_compile_error_t *cerr = NULL;
		hs_database_t *db = NULL;
		if (cp->kind != PK_REGEX)
			continue;
		h->pat_len = 0;
		h->n_ent = 0;
		if ((ret = add_entries(h, p)) < 0)
			return ret;
		if (hs_compile(h->pat, pattern_flags(cp), HS_MODE_BLOCK, NULL, &db, &cerr) !=
		    HS_SUCCESS) {
			ret = reject(h, &h->ent[0], cerr && cerr->message ? cerr->message : "compile failed");
			hs_free_compile_error(cerr);
			return ret;
		}
		size_t size = 0;
		hs_database_size(db, &size);
		rs->bytes += size;
		cp->num = rs->n_lazy;
		rs->lazy[rs->n_lazy++] = db;
		rs->n_patterns++;
	}
	return 0;
}

int hsdb_build(struct ruleset *rs, char *err, size_t errlen)
{
	struct hb h = {.rs = rs, .err = err, .errlen = errlen};
	size_t n = rs->n_preds > rs->n_progs ? rs->n_preds : rs->n_progs;
	struct field_pred *fp = malloc((rs->n_preds ? rs->n_preds : 1) * sizeof(*fp));
	uint32_t *scratch = malloc((n ? n : 1) * sizeof(*scratch));
	int ret = 0;

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
out_free:
	free(fp);
	free(scratch);
	free(h.pat);
	free(h.ent);
	return ret;
}

void hsdb_free(struct ruleset *rs)
{
	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		hs_free_database(rs->dbs[i].db);
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
		hs_free_database(rs->lazy[i]);
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
}
