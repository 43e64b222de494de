/*
 * Pattern databases: every string predicate of the rules one event.action bucket considers,
 * per field, compiled into one Hyperscan multi-pattern database, so that an event costs one
 * scan per field. Literal values are escaped; a pattern Hyperscan rejects is a load error.
 */
#include <errno.h>
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile_int.h"

size_t hsdb_pattern(enum rop op, const char *val, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (op == ROP_REGEX) {
		memcpy(out, val, len);
		out[len] = '\0';
		return len;
	}
	if (op == ROP_EQUALS || op == ROP_STARTSWITH) {
		out[n++] = '\\';
		out[n++] = 'A';
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)val[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
			out[n++] = (char)ch;
		} else {
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		}
	}
	if (op == ROP_EQUALS || op == ROP_ENDSWITH) {
		out[n++] = '\\';
		out[n++] = 'z';
	}
	out[n] = '\0';
	return n;
}

static unsigned pattern_flags(const struct cpred *cp)
{
	if (cp->op == ROP_REGEX)
		return HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
	return HS_FLAG_SINGLEMATCH | HS_FLAG_DOTALL |
	       ((cp->flags & PF_CASELESS) ? HS_FLAG_CASELESS : 0);
}

struct entry {
	size_t off; /* pattern text in the build buffer */
	uint32_t len;
	unsigned flags;
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
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	int c = memcmp(pat + a->off, pat + b->off, a->len);
	if (c)
		return c;
	return a->pred < b->pred ? -1 : a->pred > b->pred;
}

static int add_entries(struct hb *h, uint32_t pred)
{
	const struct ruleset *rs = h->rs;
	const struct cpred *cp = &rs->preds[pred];
	for (uint32_t i = 0; i < cp->n; i++) {
		const struct cstr *s = &rs->strs[cp->off + i];
		size_t need = h->pat_len + 4 * (size_t)s->len + 8;
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
		e->len = (uint32_t)hsdb_pattern((enum rop)cp->op, rs->blob + s->off, s->len,
						h->pat + h->pat_len);
		e->flags = pattern_flags(cp);
		e->pred = pred;
		h->pat_len += e->len + 1;
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

/* Database for @field over sorted predicates @preds; reuses an identical one. */
static int build_db(struct hb *h, uint16_t field, const uint32_t *preds, uint32_t n,
		    uint32_t *index)
{
	struct ruleset *rs = h->rs;
	const char **exprs = NULL;
	unsigned *flags = NULL, *ids = NULL;
	uint32_t *fan_start = NULL, *fan_preds = NULL, *key = NULL;
	hs_compile_error_t *cerr = NULL;
	hs_database_t *db = NULL;
	int ret = 0;

	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		const struct cdb *d = &rs->dbs[i];
		if (d->field == field && d->n_key == n && memcmp(d->key, preds, n * sizeof(*preds)) == 0) {
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
	size_t n_ids = 0;
	exprs = malloc(h->n_ent * sizeof(*exprs));
	flags = malloc(h->n_ent * sizeof(*flags));
	ids = malloc(h->n_ent * sizeof(*ids));
	fan_start = malloc((h->n_ent + 1) * sizeof(*fan_start));
	fan_preds = malloc(h->n_ent * sizeof(*fan_preds));
	key = malloc(n * sizeof(*key));
	if (!exprs || !flags || !ids || !fan_start || !fan_preds || !key) {
		ret = -ENOMEM;
		goto out_free;
	}
	memcpy(key, preds, n * sizeof(*key));
	size_t n_fan = 0;
	for (size_t i = 0; i < h->n_ent; i++) {
		const struct entry *e = &h->ent[i], *prev = i ? &h->ent[i - 1] : NULL;
		bool same = prev && prev->flags == e->flags && prev->len == e->len &&
			    memcmp(h->pat + prev->off, h->pat + e->off, e->len) == 0;
		if (!same) {
			exprs[n_ids] = h->pat + e->off;
			flags[n_ids] = e->flags;
			ids[n_ids] = (unsigned)n_ids;
			fan_start[n_ids] = (uint32_t)n_fan;
			n_ids++;
		}
		if (!same || fan_preds[n_fan - 1] != e->pred)
			fan_preds[n_fan++] = e->pred;
	}
	fan_start[n_ids] = (uint32_t)n_fan;
	if (hs_compile_multi(exprs, flags, ids, (unsigned)n_ids, HS_MODE_BLOCK, NULL, &db, &cerr) !=
	    HS_SUCCESS) {
		int at = cerr ? cerr->expression : -1;
		const char *why = cerr && cerr->message ? cerr->message : "compile failed";
		if (at >= 0 && (size_t)at < n_ids) {
			/* the first entry with that pattern names the rule */
			size_t k = 0;
			while (k < h->n_ent && h->pat + h->ent[k].off != exprs[at])
				k++;
			ret = reject(h, &h->ent[k < h->n_ent ? k : 0], why);
		} else {
			ret = rules_fail(h->err, h->errlen, -EINVAL, "rules", 0,
					 registry_field(field)->name,
					 "pattern database rejected by the linear-time engine: %s", why);
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
	size_t size = 0;
	hs_database_size(db, &size);
	d->bytes = size + (n_ids + 1 + n_fan + n) * sizeof(uint32_t);
	rs->n_patterns += n_ids;
	*index = rs->n_dbs++;
	db = NULL;
	fan_start = fan_preds = key = NULL;
out_free:
	hs_free_database(db);
	free(exprs);
	free(flags);
	free(ids);
	free(fan_start);
	free(fan_preds);
	free(key);
	return ret;
}

struct field_pred {
	uint16_t field;
	uint32_t pred;
};

static int cmp_field_pred(const void *x, const void *y)
{
	const struct field_pred *a = x, *b = y;
	if (a->field != b->field)
		return a->field < b->field ? -1 : 1;
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
		n_fields += i == 0 || fp[i].field != fp[i - 1].field;
	bk->dbs = calloc(n_fields ? n_fields : 1, sizeof(*bk->dbs));
	if (!bk->dbs)
		return -ENOMEM;
	for (size_t i = 0; i < n_fp;) {
		size_t j = i;
		while (j < n_fp && fp[j].field == fp[i].field) {
			scratch[j - i] = fp[j].pred;
			j++;
		}
		uint32_t db = 0;
		if ((ret = build_db(h, fp[i].field, scratch, (uint32_t)(j - i), &db)) < 0)
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
