/*
 * The rule engine: per event, picks the rules of its event.action bucket, scans each field
 * once with that bucket's pattern database, evaluates the triggered programs over the
 * predicate results, and keeps bounded threshold and sequence state. Also the alert writer
 * and the rule-test runner that lint and the agent share.
 */
#include "engine.h"

#include <errno.h>
#include <hs/hs.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "compile_int.h"
#include "event_json.h"

/* Bytes of a state key kept for comparison; longer keys are told apart by hash and length. */
#define STATE_KEY_INLINE 40
/* A threshold window slides in this many steps. */
#define THRESHOLD_SLOTS 16
#define NIL		UINT32_MAX

struct sentry {
	uint64_t hash;
	uint64_t t_last;  /* last update */
	uint64_t t_start; /* sequence: window start; threshold: newest slot number */
	uint32_t rule;
	uint32_t key_len;
	uint32_t chain;	     /* next in the hash chain, or in the free list */
	uint32_t prev, next; /* recency list, most recent first */
	uint32_t step;	     /* sequence: next step expected */
	uint32_t slots[THRESHOLD_SLOTS];
	uint8_t key[STATE_KEY_INLINE];
};

struct state {
	struct sentry *ent;
	uint32_t n_ent, cap_ent; /* entries allocated, and room for them */
	uint32_t max;		 /* entries allowed */
	uint32_t *heads;
	uint32_t mask;
	uint32_t live;
	uint32_t free_list;
	uint32_t mru, lru;
};

struct engine {
	const struct ruleset *rs;
	hs_scratch_t *scratch;
	uint32_t gen;
	uint32_t *pred_gen; /* predicate matched this event iff pred_gen == gen */
	uint32_t *prog_gen; /* program already a candidate this event */
	uint32_t *id_gen;   /* pattern id (all databases, from id_base) already reported */
	uint32_t *id_base;  /* per database: its first slot in id_gen */
	uint32_t cur_base;
	size_t n_ids;
	uint32_t *req_gen; /* req_cnt counts this event's required hits iff req_gen == gen */
	uint32_t *req_cnt;
	uint32_t *cand;
	uint32_t n_cand;
	const struct cdb *cur_db;
	unsigned *atoms; /* atoms of the regex set being scanned found in the value */
	size_t n_atoms, cap_atoms;
	uint32_t cur_action;	/* action of the event's bucket, UINT32_MAX for the catch-all */
	size_t cur_len;		/* bytes of the value being scanned */
	uint32_t *action_order; /* action indices sorted by text */
	uint64_t seed;
	struct state st;
	struct engine_stats stats;
	size_t bytes;
};

static int cmp_action(const void *a, const void *b, void *ctx)
{
	const struct ruleset *rs = ctx;
	const struct cstr *x = &rs->actions[*(const uint32_t *)a];
	const struct cstr *y = &rs->actions[*(const uint32_t *)b];
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(rs->blob + x->off, rs->blob + y->off, n);
	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

static bool has_state(const struct ruleset *rs)
{
	for (uint32_t i = 0; i < rs->n_rules; i++) {
		if (rs->rules[i].kind != RK_PLAIN)
			return true;
	}
	return false;
}

int engine_new(const struct ruleset *rs, const struct engine_options *opt, struct engine **out)
{
	struct engine *e;
	int ret = -ENOMEM;

	if (!rs || !out)
		return -EINVAL;
	uint32_t max = opt && opt->state_entries ? opt->state_entries : RULES_MAX_STATE_ENTRIES;
	if (max > RULES_MAX_STATE_ENTRIES)
		return -EINVAL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->rs = rs;
	e->gen = 1;
	e->seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)e;
	e->pred_gen = calloc(rs->n_preds ? rs->n_preds : 1, sizeof(*e->pred_gen));
	e->prog_gen = calloc(rs->n_progs ? rs->n_progs : 1, sizeof(*e->prog_gen));
	e->cand = calloc(rs->n_progs ? rs->n_progs : 1, sizeof(*e->cand));
	e->req_gen = calloc(rs->n_progs ? rs->n_progs : 1, sizeof(*e->req_gen));
	e->id_base = calloc(rs->n_dbs ? rs->n_dbs : 1, sizeof(*e->id_base));
	size_t n_ids = 0, n_atoms = 0;
	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		e->id_base[i] = (uint32_t)n_ids;
		n_ids += rs->dbs[i].n_ids;
		if (rs->dbs[i].rx && rx_set_atom_count(rs->dbs[i].rx) > n_atoms)
			n_atoms = rx_set_atom_count(rs->dbs[i].rx);
	}
	e->n_ids = n_ids;
	e->id_gen = calloc(n_ids ? n_ids : 1, sizeof(*e->id_gen));
	/* each atom is reported once per scan: room for all of the largest set's */
	e->cap_atoms = n_atoms;
	e->atoms = calloc(n_atoms ? n_atoms : 1, sizeof(*e->atoms));
	e->req_cnt = calloc(rs->n_progs ? rs->n_progs : 1, sizeof(*e->req_cnt));
	e->action_order = calloc(rs->n_actions ? rs->n_actions : 1, sizeof(*e->action_order));
	if (!e->pred_gen || !e->prog_gen || !e->cand || !e->action_order || !e->req_gen ||
	    !e->req_cnt || !e->id_base || !e->id_gen || !e->atoms)
		goto out_free;
	for (uint32_t i = 0; i < rs->n_actions; i++)
		e->action_order[i] = i;
	qsort_r(e->action_order, rs->n_actions, sizeof(*e->action_order), cmp_action, (void *)rs);
	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		if (rs->dbs[i].db && hs_alloc_scratch(rs->dbs[i].db, &e->scratch) != HS_SUCCESS)
			goto out_free;
	}
	e->st.max = max;
	e->st.free_list = e->st.mru = e->st.lru = NIL;
	if (has_state(rs)) {
		uint32_t heads = 64;
		while (heads < max)
			heads *= 2;
		e->st.heads = malloc(heads * sizeof(*e->st.heads));
		if (!e->st.heads)
			goto out_free;
		memset(e->st.heads, 0xff, heads * sizeof(*e->st.heads));
		e->st.mask = heads - 1;
	}
	size_t scratch = 0;
	if (e->scratch)
		hs_scratch_size(e->scratch, &scratch);
	e->bytes = sizeof(*e) + scratch + (size_t)rs->n_preds * 4 + (size_t)rs->n_progs * 16 +
		   (size_t)rs->n_actions * 4 + e->n_ids * 4 + (size_t)rs->n_dbs * 4 +
		   e->cap_atoms * sizeof(*e->atoms) +
		   (e->st.heads ? ((size_t)e->st.mask + 1) * 4 : 0);
	*out = e;
	return 0;
out_free:
	engine_free(e);
	return ret;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	if (e->scratch)
		hs_free_scratch(e->scratch);
	free(e->pred_gen);
	free(e->prog_gen);
	free(e->cand);
	free(e->req_gen);
	free(e->id_gen);
	free(e->id_base);
	free(e->atoms);
	free(e->req_cnt);
	free(e->action_order);
	free(e->st.ent);
	free(e->st.heads);
	free(e);
}

/* --- state table: hash chains plus a recency list; past the cap the oldest entry goes --- */

static void lru_unlink(struct state *s, uint32_t i)
{
	struct sentry *x = &s->ent[i];
	if (x->prev != NIL)
		s->ent[x->prev].next = x->next;
	else
		s->mru = x->next;
	if (x->next != NIL)
		s->ent[x->next].prev = x->prev;
	else
		s->lru = x->prev;
}

static void lru_front(struct state *s, uint32_t i)
{
	struct sentry *x = &s->ent[i];
	x->prev = NIL;
	x->next = s->mru;
	if (s->mru != NIL)
		s->ent[s->mru].prev = i;
	s->mru = i;
	if (s->lru == NIL)
		s->lru = i;
}

static void chain_unlink(struct state *s, uint32_t i)
{
	uint32_t *p = &s->heads[s->ent[i].hash & s->mask];
	while (*p != NIL && *p != i)
		p = &s->ent[*p].chain;
	if (*p == i)
		*p = s->ent[i].chain;
}

static void state_delete(struct state *s, uint32_t i)
{
	chain_unlink(s, i);
	lru_unlink(s, i);
	s->ent[i].chain = s->free_list;
	s->free_list = i;
	s->live--;
}

static bool entry_expired(const struct ruleset *rs, const struct sentry *x, uint64_t now)
{
	const struct crule *r = &rs->rules[x->rule];
	uint64_t since = r->kind == RK_SEQUENCE ? x->t_start : x->t_last;
	return now > since && now - since > r->within_ns;
}

static uint64_t key_hash(uint64_t seed, uint32_t rule, const uint8_t *k, size_t len)
{
	uint64_t h = seed ^ (0xcbf29ce484222325ull + rule);
	for (size_t i = 0; i < len; i++) {
		h ^= k[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 31;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 29;
	return h;
}

static uint32_t state_find(const struct engine *e, uint32_t rule, uint64_t h, const uint8_t *key,
			   size_t len)
{
	const struct state *s = &e->st;
	size_t cmp = len < STATE_KEY_INLINE ? len : STATE_KEY_INLINE;
	if (!s->heads)
		return NIL;
	for (uint32_t i = s->heads[h & s->mask]; i != NIL; i = s->ent[i].chain) {
		const struct sentry *x = &s->ent[i];
		if (x->hash == h && x->rule == rule && x->key_len == len &&
		    memcmp(x->key, key, cmp) == 0)
			return i;
	}
	return NIL;
}

/* A new zeroed entry for (@rule, @key), evicting the least recently used one at the cap. */
static uint32_t state_insert(struct engine *e, uint32_t rule, uint64_t h, const uint8_t *key,
			     size_t len, uint64_t now)
{
	struct state *s = &e->st;
	uint32_t i;

	if (!s->heads)
		return NIL;
	if (s->free_list != NIL) {
		i = s->free_list;
		s->free_list = s->ent[i].chain;
	} else if (s->n_ent < s->max) {
		if (s->n_ent == s->cap_ent) {
			uint32_t cap = s->cap_ent ? s->cap_ent * 2 : 64;
			if (cap > s->max)
				cap = s->max;
			struct sentry *p = realloc(s->ent, (size_t)cap * sizeof(*p));
			if (!p)
				return NIL;
			e->bytes += (size_t)(cap - s->cap_ent) * sizeof(*p);
			s->ent = p;
			s->cap_ent = cap;
		}
		i = s->n_ent++;
	} else {
		i = s->lru;
		if (NEVER(i == NIL))
			return NIL;
		if (entry_expired(e->rs, &s->ent[i], now))
			e->stats.state_expired++;
		else
			e->stats.state_evictions++;
		state_delete(s, i);
		i = s->free_list;
		s->free_list = s->ent[i].chain;
	}
	struct sentry *x = &s->ent[i];
	memset(x, 0, sizeof(*x));
	x->hash = h;
	x->rule = rule;
	x->key_len = (uint32_t)len;
	memcpy(x->key, key, len < STATE_KEY_INLINE ? len : STATE_KEY_INLINE);
	x->chain = s->heads[h & s->mask];
	s->heads[h & s->mask] = i;
	lru_front(s, i);
	s->live++;
	return i;
}

static void state_touch(struct state *s, uint32_t i)
{
	if (s->mru == i)
		return;
	lru_unlink(s, i);
	lru_front(s, i);
}

void engine_reset_state(struct engine *e)
{
	struct state *s = &e->st;
	if (s->heads)
		memset(s->heads, 0xff, ((size_t)s->mask + 1) * sizeof(*s->heads));
	s->n_ent = 0;
	s->live = 0;
	s->free_list = s->mru = s->lru = NIL;
}

/* --- carrying state across a content swap --- */

#define RULE_DIGEST_BYTES crypto_generichash_BYTES

static void digest_u64(crypto_generichash_state *st, uint64_t v)
{
	unsigned char b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
	crypto_generichash_update(st, b, sizeof(b));
}

static void digest_str(crypto_generichash_state *st, const struct ruleset *rs, const struct cstr *v)
{
	digest_u64(st, v->len);
	crypto_generichash_update(st, (const unsigned char *)rs->blob + v->off, v->len);
}

static void digest_pred(crypto_generichash_state *st, const struct ruleset *rs,
			const struct cpred *cp)
{
	digest_u64(st, (uint64_t)cp->field << 32 | (uint64_t)cp->kind << 24 |
			   (uint64_t)cp->flags << 16 | (uint64_t)cp->op << 8 | cp->cmp);
	digest_u64(st, cp->n);
	/* a regex run on demand keeps its database index in num: its pattern stands for it */
	digest_u64(st, cp->kind == PK_REGEX ? 0 : (uint64_t)cp->num);
	for (uint32_t i = 0; i < cp->n; i++) {
		switch (cp->kind) {
		case PK_INT_IN:
			digest_u64(st, (uint64_t)rs->ints[cp->off + i]);
			break;
		case PK_IP_IN:
			crypto_generichash_update(st, (const unsigned char *)&rs->nets[cp->off + i],
						  sizeof(rs->nets[0]));
			break;
		case PK_SCAN:
		case PK_STR_EQ:
		case PK_REGEX:
			digest_str(st, rs, &rs->strs[cp->off + i]);
			break;
		default:
			break;
		}
	}
}

/*
 * A digest of rule @r's definition as compiled (kind, count, window, and per program its step,
 * key field, event.action values, instructions and predicates with their values): two rules
 * with the same digest keep state with the same meaning.
 */
static void rule_digest(const struct ruleset *rs, uint32_t r, uint8_t out[RULE_DIGEST_BYTES])
{
	const struct crule *cr = &rs->rules[r];
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, RULE_DIGEST_BYTES);
	digest_u64(&st, cr->kind);
	digest_u64(&st, cr->count);
	digest_u64(&st, cr->within_ns);
	digest_u64(&st, cr->n_progs);
	for (uint32_t p = cr->prog_first; p < cr->prog_first + cr->n_progs; p++) {
		const struct cprog *pr = &rs->progs[p];
		digest_u64(&st, pr->step);
		digest_u64(&st, (uint64_t)(int64_t)pr->by_field);
		digest_u64(&st, pr->n_act);
		for (uint32_t k = 0; k < pr->n_act; k++)
			digest_str(&st, rs, &rs->actions[rs->act_ids[pr->act_off + k]]);
		digest_u64(&st, pr->n_code);
		for (uint32_t k = 0; k < pr->n_code; k++)
			digest_u64(&st, (uint64_t)rs->code[pr->code_off + k].op << 32 |
					    rs->code[pr->code_off + k].arg);
		digest_u64(&st, pr->n_preds);
		for (uint32_t k = 0; k < pr->n_preds; k++)
			digest_pred(&st, rs, &rs->preds[pr->pred_base + k]);
	}
	crypto_generichash_final(&st, out, RULE_DIGEST_BYTES);
}

/* The index in @to of the stateful rule of @from with @r's id and definition, or NIL. */
static uint32_t same_rule(const struct ruleset *to, const struct ruleset *from, uint32_t r)
{
	uint8_t a[RULE_DIGEST_BYTES], b[RULE_DIGEST_BYTES];

	for (uint32_t i = 0; i < to->n_rules; i++) {
		if (to->rules[i].kind != from->rules[r].kind ||
		    strcmp(to->rules[i].info.id, from->rules[r].info.id) != 0)
			continue;
		rule_digest(from, r, a);
		rule_digest(to, i, b);
		return memcmp(a, b, sizeof(a)) == 0 ? i : NIL;
	}
	return NIL;
}

int engine_carry_state(struct engine *to, const struct engine *from)
{
	const struct state *s;
	uint32_t *map;
	int carried = 0;

	if (!to || !from || to->st.live || to->stats.events)
		return -EINVAL;
	s = &from->st;
	if (!s->heads || !s->live || !to->st.heads)
		return 0;
	map = malloc(from->rs->n_rules * sizeof(*map));
	if (!map)
		return -ENOMEM;
	for (uint32_t r = 0; r < from->rs->n_rules; r++)
		map[r] = from->rs->rules[r].kind == RK_PLAIN ? NIL : same_rule(to->rs, from->rs, r);
	/* keys are hashed as @from hashed them; oldest first, so that recency is kept */
	to->seed = from->seed;
	for (uint32_t i = s->lru; i != NIL; i = s->ent[i].prev) {
		const struct sentry *x = &s->ent[i];
		uint32_t r = x->rule < from->rs->n_rules ? map[x->rule] : NIL;
		/* a key longer than what is kept of it cannot be hashed again for a new index */
		if (r == NIL || (r != x->rule && x->key_len > STATE_KEY_INLINE))
			continue;
		uint64_t h = r == x->rule ? x->hash : key_hash(to->seed, r, x->key, x->key_len);
		uint32_t k = state_insert(to, r, h, x->key, x->key_len, x->t_last);
		if (k == NIL)
			break;
		struct sentry *y = &to->st.ent[k];
		y->t_last = x->t_last;
		y->t_start = x->t_start;
		y->step = x->step;
		memcpy(y->slots, x->slots, sizeof(y->slots));
		carried++;
	}
	free(map);
	return carried;
}

/* The state key of @ev for @field: its value's bytes. False when the field is absent. */
static bool state_key(const struct event *ev, int32_t field, const uint8_t **key, size_t *len,
		      uint8_t tmp[24])
{
	if (field < 0) {
		*key = tmp;
		*len = 0;
		return true;
	}
	if (NEVER(field >= FIELD_COUNT))
		return false;
	switch (registry_field(field)->type) {
	case FT_STRING: {
		const char *s = event_str(ev, (enum field_id)field, len);
		*key = (const uint8_t *)s;
		return s != NULL;
	}
	case FT_INT: {
		int64_t v;
		if (!event_int(ev, (enum field_id)field, &v))
			return false;
		memcpy(tmp, &v, sizeof(v));
		*key = tmp;
		*len = sizeof(v);
		return true;
	}
	case FT_IP: {
		const struct ev_ip *ip = event_ip(ev, (enum field_id)field);
		if (!ip)
			return false;
		tmp[0] = ip->family;
		memcpy(tmp + 1, ip->addr, 16);
		*key = tmp;
		*len = 17;
		return true;
	}
	default:
		return false;
	}
}

static bool threshold_update(struct engine *e, uint32_t rule, const struct cprog *pr,
			     const struct event *ev, uint64_t now)
{
	const struct crule *r = &e->rs->rules[rule];
	const uint8_t *key;
	uint8_t tmp[24];
	size_t len;

	if (!state_key(ev, pr->by_field, &key, &len, tmp))
		return false;
	uint64_t h = key_hash(e->seed, rule, key, len);
	uint64_t width = r->within_ns / THRESHOLD_SLOTS ? r->within_ns / THRESHOLD_SLOTS : 1;
	uint64_t slot = now / width;
	uint32_t i = state_find(e, rule, h, key, len);
	struct sentry *x;
	if (i == NIL) {
		if ((i = state_insert(e, rule, h, key, len, now)) == NIL)
			return false;
		x = &e->st.ent[i];
		x->t_start = slot;
	} else {
		x = &e->st.ent[i];
		state_touch(&e->st, i);
		if (slot > x->t_start) {
			/* slide: slots older than the window are emptied */
			uint64_t d = slot - x->t_start;
			if (d >= THRESHOLD_SLOTS)
				memset(x->slots, 0, sizeof(x->slots));
			else
				for (uint64_t k = 1; k <= d; k++)
					x->slots[(x->t_start + k) % THRESHOLD_SLOTS] = 0;
			x->t_start = slot;
		}
	}
	x->t_last = now;
	uint32_t *cell = &x->slots[x->t_start % THRESHOLD_SLOTS];
	if (*cell < UINT32_MAX)
		(*cell)++;
	uint64_t sum = 0;
	for (int k = 0; k < THRESHOLD_SLOTS; k++)
		sum += x->slots[k];
	if (sum < r->count)
		return false;
	/* re-arm: the next alert needs count new events */
	memset(x->slots, 0, sizeof(x->slots));
	return true;
}

static bool sequence_update(struct engine *e, uint32_t rule, const struct cprog *pr,
			    const struct event *ev, uint64_t now)
{
	const struct crule *r = &e->rs->rules[rule];
	const uint8_t *key;
	uint8_t tmp[24];
	size_t len;

	if (!state_key(ev, pr->by_field, &key, &len, tmp))
		return false;
	uint64_t h = key_hash(e->seed, rule, key, len);
	uint32_t i = state_find(e, rule, h, key, len);
	struct sentry *x = i == NIL ? NULL : &e->st.ent[i];
	bool expired = x && entry_expired(e->rs, x, now);

	if (pr->step > 0) {
		if (!x || expired || x->step != pr->step)
			return false;
		x->step++;
		x->t_last = now;
		if (x->step >= r->n_progs) {
			state_delete(&e->st, i);
			return true;
		}
		state_touch(&e->st, i);
		return false;
	}
	/* the most recent first step starts the window, unless later steps are under way */
	if (x && !expired && x->step > 1) {
		state_touch(&e->st, i);
		return false;
	}
	if (!x) {
		if ((i = state_insert(e, rule, h, key, len, now)) == NIL)
			return false;
		x = &e->st.ent[i];
	} else {
		state_touch(&e->st, i);
	}
	x->step = 1;
	x->t_start = now;
	x->t_last = now;
	return false;
}

/* --- predicates and programs --- */

static bool bytes_eq_lower(const char *lower, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != lower[i])
			return false;
	}
	return true;
}

static bool str_in(const struct ruleset *rs, const struct cpred *cp, const char *s, size_t len)
{
	for (uint32_t i = 0; i < cp->n; i++) {
		const struct cstr *v = &rs->strs[cp->off + i];
		if (v->len != len)
			continue;
		if ((cp->flags & PF_CASELESS) ? bytes_eq_lower(rs->blob + v->off, s, len)
					      : memcmp(rs->blob + v->off, s, len) == 0)
			return true;
	}
	return false;
}

static bool net_match(const struct cnet *n, const struct ev_ip *ip)
{
	if (n->family != ip->family)
		return false;
	unsigned full = n->prefix / 8, rest = n->prefix % 8;
	if (NEVER(full > 16 || (full == 16 && rest)))
		return false;
	if (memcmp(n->addr, ip->addr, full) != 0)
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (n->addr[full] & mask) == (ip->addr[full] & mask);
}

/* Runs regex predicate @cp's own regex over @s. */
static bool regex_match(struct engine *e, const struct cpred *cp, const char *s, size_t len)
{
	if (NEVER(cp->num < 0 || cp->num >= (int64_t)e->rs->n_lazy))
		return false;
	e->stats.scans++;
	return rx_search(e->rs->lazy[cp->num], s, len);
}

static bool eval_pred(struct engine *e, uint32_t gi, const struct event *ev)
{
	const struct ruleset *rs = e->rs;
	const struct cpred *cp = &rs->preds[gi];
	enum field_id f = (enum field_id)cp->field;
	size_t len;

	if (NEVER(cp->field >= FIELD_COUNT))
		return false;
	switch (cp->kind) {
	case PK_SCAN:
		return e->pred_gen[gi] == e->gen;
	case PK_EXISTS:
		return event_has(ev, f);
	case PK_REGEX: {
		const char *s = event_str(ev, f, &len);
		if (s)
			return regex_match(e, cp, s, len);
		uint32_t n = event_list_count(ev, f);
		for (uint32_t i = 0; i < n; i++) {
			const char *it = event_list_item(ev, f, i, &len);
			if (it && regex_match(e, cp, it, len))
				return true;
		}
		return false;
	}
	case PK_STR_EQ: {
		const char *s = event_str(ev, f, &len);
		if (s)
			return str_in(rs, cp, s, len);
		uint32_t n = event_list_count(ev, f);
		for (uint32_t i = 0; i < n; i++) {
			const char *it = event_list_item(ev, f, i, &len);
			if (it && str_in(rs, cp, it, len))
				return true;
		}
		return false;
	}
	case PK_INT_CMP: {
		int64_t v;
		if (!event_int(ev, f, &v))
			return false;
		switch (cp->cmp) {
		case CMP_LT:
			return v < cp->num;
		case CMP_LE:
			return v <= cp->num;
		case CMP_GT:
			return v > cp->num;
		case CMP_GE:
			return v >= cp->num;
		case CMP_EQ:
			return v == cp->num;
		}
		return false;
	}
	case PK_INT_IN: {
		int64_t v;
		if (!event_int(ev, f, &v))
			return false;
		const int64_t *a = rs->ints + cp->off;
		size_t lo = 0, hi = cp->n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (a[mid] == v)
				return true;
			if (a[mid] < v)
				lo = mid + 1;
			else
				hi = mid;
		}
		return false;
	}
	case PK_IP_IN: {
		const struct ev_ip *ip = event_ip(ev, f);
		if (!ip)
			return false;
		for (uint32_t i = 0; i < cp->n; i++) {
			if (net_match(&rs->nets[cp->off + i], ip))
				return true;
		}
		return false;
	}
	case PK_BOOL_EQ: {
		bool v;
		if (!event_bool(ev, f, &v))
			return false;
		return (cp->num >> (v ? 1 : 0)) & 1;
	}
	}
	return false;
}

/* Runs a verified program; every access is still bounds-checked. */
static bool run_prog(struct engine *e, const struct cprog *pr, const struct event *ev)
{
	const struct insn *code = e->rs->code + pr->code_off;
	bool st[RULES_MAX_STACK];
	uint32_t sp = 0, pc = 0, n = pr->n_code;

	while (pc < n) {
		const struct insn in = code[pc];
		switch (in.op) {
		case OP_PRED:
			if (NEVER(sp >= RULES_MAX_STACK || in.arg >= pr->n_preds))
				return false;
			st[sp++] = eval_pred(e, pr->pred_base + in.arg, ev);
			break;
		case OP_NOT:
			if (NEVER(sp < 1))
				return false;
			st[sp - 1] = !st[sp - 1];
			break;
		case OP_AND:
		case OP_OR:
			if (NEVER(sp < 2))
				return false;
			st[sp - 2] = in.op == OP_AND ? (st[sp - 2] && st[sp - 1])
						     : (st[sp - 2] || st[sp - 1]);
			sp--;
			break;
		case OP_POP:
			if (NEVER(sp < 1))
				return false;
			sp--;
			break;
		case OP_JF:
		case OP_JT:
			if (NEVER(sp < 1 || in.arg > n - pc - 1))
				return false;
			if (st[sp - 1] == (in.op == OP_JT))
				pc += in.arg;
			break;
		default:
			return false;
		}
		pc++;
	}
	return sp == 1 && st[0];
}

static bool prog_in_bucket(const struct ruleset *rs, const struct cprog *pr, uint32_t action)
{
	if (pr->n_act == 0)
		return true;
	for (uint32_t k = 0; k < pr->n_act; k++) {
		if (rs->act_ids[pr->act_off + k] == action)
			return true;
	}
	return false;
}

/* Pattern @id of the database being scanned matched where its operator wants it. */
static void pattern_hit(struct engine *e, uint32_t id)
{
	const struct cdb *d = e->cur_db;

	/* a pattern found again in the same event has nothing new to say */
	if (NEVER(id >= d->n_ids) || NEVER(e->cur_base + id >= e->n_ids) ||
	    e->id_gen[e->cur_base + id] == e->gen)
		return;
	e->id_gen[e->cur_base + id] = e->gen;
	for (uint32_t k = d->fan_start[id]; k < d->fan_start[id + 1]; k++) {
		uint32_t p = d->fan_preds[k];
		if (e->pred_gen[p] == e->gen)
			continue;
		e->pred_gen[p] = e->gen;
		uint32_t prog = e->rs->pred_prog[p];
		const struct cprog *pr = &e->rs->progs[prog];
		if (d->all_buckets && !prog_in_bucket(e->rs, pr, e->cur_action))
			continue;
		uint32_t need = pr->n_req;
		if (need) {
			/* evaluate only once every required pattern has matched */
			if (!e->rs->pred_req[p])
				continue;
			if (e->req_gen[prog] != e->gen) {
				e->req_gen[prog] = e->gen;
				e->req_cnt[prog] = 0;
			}
			if (++e->req_cnt[prog] != need)
				continue;
		}
		if (e->prog_gen[prog] != e->gen) {
			e->prog_gen[prog] = e->gen;
			e->cand[e->n_cand++] = prog;
		}
	}
}

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		    void *ctx)
{
	struct engine *e = ctx;
	const struct cdb *d = e->cur_db;
	(void)from;
	(void)flags;
	if (NEVER(id >= d->n_ids))
		return 0;
	if (d->mode && d->mode[id]) {
		/* a literal for startswith or endswith: only where it must sit counts */
		if ((d->mode[id] & LIT_AT_START) && to != d->lit_len[id])
			return 0;
		if ((d->mode[id] & LIT_AT_END) && to != e->cur_len)
			return 0;
	}
	pattern_hit(e, id);
	return 0;
}

/* An atom of the regex set being scanned, found in the value (once: HS_FLAG_SINGLEMATCH). */
static int on_atom(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		   void *ctx)
{
	struct engine *e = ctx;
	(void)from;
	(void)to;
	(void)flags;
	if (NEVER(e->n_atoms >= e->cap_atoms))
		return 1;
	e->atoms[e->n_atoms++] = id;
	return 0;
}

static void on_regex(void *ctx, unsigned id)
{
	struct engine *e = ctx;
	if (!NEVER(id >= e->cur_db->n_ids))
		pattern_hit(e, id);
}

/*
 * Runs regex database @d over @s: its atoms found by one Hyperscan scan, then the regexes
 * those atoms let through (and any without atoms).
 */
static void scan_regexes(struct engine *e, const struct cdb *d, const char *s, size_t len)
{
	e->n_atoms = 0;
	if (d->db) {
		e->stats.scans++;
		hs_error_t r = hs_scan(d->db, s, (unsigned)len, 0, e->scratch, on_atom, e);
		if (r != HS_SUCCESS && r != HS_SCAN_TERMINATED)
			e->stats.errors++;
	}
	if (e->n_atoms == 0 && !rx_set_has_unfiltered(d->rx))
		return;
	if (rx_set_match(d->rx, s, len, e->atoms, e->n_atoms, on_regex, e) < 0)
		e->stats.errors++;
}

/* Whether equals literal @x is @s, ignoring ASCII case when @caseless. */
static bool exact_equal(const struct cexact *x, const char *blob, const char *s, size_t len,
			bool caseless)
{
	const char *t = blob + x->off;

	if (x->len != len)
		return false;
	if (!caseless)
		return memcmp(t, s, len) == 0;
	for (size_t i = 0; i < len; i++) {
		if (hsdb_fold((unsigned char)t[i]) != hsdb_fold((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* Reports every equals literal of the database being scanned, of one case kind, equal to @s. */
static void exact_find(struct engine *e, const struct cdb *d, const char *s, size_t len,
		       bool caseless)
{
	uint32_t i = hsdb_exact_hash(s, len, caseless) & d->slot_mask;

	/* the table has more slots than entries: every probe ends at an empty one */
	for (uint32_t k; (k = d->slots[i]) != 0; i = (i + 1) & d->slot_mask) {
		const struct cexact *x = &d->exact[k - 1];
		if ((k - 1 >= d->n_exact_cs) == caseless &&
		    exact_equal(x, e->rs->blob, s, len, caseless))
			pattern_hit(e, x->id);
	}
}

static void scan(struct engine *e, uint32_t db, const char *s, size_t len)
{
	const struct cdb *d = &e->rs->dbs[db];
	e->cur_db = d;
	e->cur_base = e->id_base[db];
	e->cur_len = len;
	if (d->n_exact_cs)
		exact_find(e, d, s ? s : "", len, false);
	if (d->n_exact > d->n_exact_cs)
		exact_find(e, d, s ? s : "", len, true);
	if (d->rx) {
		scan_regexes(e, d, s ? s : "", len);
		return;
	}
	if (!d->db)
		return;
	e->stats.scans++;
	/* Hyperscan wants a valid pointer even for an empty string */
	if (hs_scan(d->db, s ? s : "", (unsigned)len, 0, e->scratch, on_match, e) != HS_SUCCESS)
		e->stats.errors++;
}

static const struct cbucket *select_bucket(const struct engine *e, const struct event *ev)
{
	const struct ruleset *rs = e->rs;
	size_t len;
	const char *a = event_str(ev, F_EVENT_ACTION, &len);
	if (!a)
		return &rs->buckets[0];
	size_t lo = 0, hi = rs->n_actions;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		uint32_t id = e->action_order[mid];
		const struct cstr *x = &rs->actions[id];
		size_t n = x->len < len ? x->len : len;
		int c = memcmp(rs->blob + x->off, a, n);
		if (c == 0)
			c = x->len < len ? -1 : x->len > len;
		if (c == 0)
			return &rs->buckets[id + 1];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return &rs->buckets[0];
}

static void sort_cand(uint32_t *v, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		uint32_t x = v[i], j = i;
		while (j > 0 && v[j - 1] > x) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int engine_eval(struct engine *e, const struct event *ev, uint64_t now_ns, engine_alert_fn fn,
		void *ctx)
{
	const struct ruleset *rs;
	int alerts = 0;

	if (!e || !ev)
		return -EINVAL;
	rs = e->rs;
	e->stats.events++;
	if (++e->gen == 0) {
		memset(e->pred_gen, 0, (rs->n_preds ? rs->n_preds : 1) * sizeof(*e->pred_gen));
		memset(e->prog_gen, 0, (rs->n_progs ? rs->n_progs : 1) * sizeof(*e->prog_gen));
		memset(e->req_gen, 0, (rs->n_progs ? rs->n_progs : 1) * sizeof(*e->req_gen));
		memset(e->id_gen, 0, (e->n_ids ? e->n_ids : 1) * sizeof(*e->id_gen));
		e->gen = 1;
	}
	const struct cbucket *b = select_bucket(e, ev);
	e->cur_action = b->action;
	e->n_cand = 0;
	for (uint32_t i = 0; i < b->n_always; i++) {
		uint32_t p = b->always[i];
		if (NEVER(p >= rs->n_progs))
			continue;
		e->prog_gen[p] = e->gen;
		e->cand[e->n_cand++] = p;
	}
	for (uint32_t i = 0; i < b->n_dbs; i++) {
		enum field_id f = (enum field_id)b->dbs[i].field;
		uint32_t d = b->dbs[i].db;
		size_t len;
		if (NEVER(d >= rs->n_dbs))
			continue;
		if (!event_has(ev, f))
			continue;
		const char *s = event_str(ev, f, &len);
		if (s) {
			scan(e, d, s, len);
			continue;
		}
		uint32_t n = event_list_count(ev, f);
		for (uint32_t k = 0; k < n; k++) {
			const char *it = event_list_item(ev, f, k, &len);
			if (it)
				scan(e, d, it, len);
		}
	}
	if (e->n_cand < 32)
		sort_cand(e->cand, e->n_cand);
	else
		qsort(e->cand, e->n_cand, sizeof(*e->cand), cmp_u32);
	for (uint32_t i = 0; i < e->n_cand; i++) {
		const struct cprog *pr = &rs->progs[e->cand[i]];
		e->stats.evaluations++;
		if (!run_prog(e, pr, ev))
			continue;
		const struct crule *r = &rs->rules[pr->rule];
		bool hit;
		switch (r->kind) {
		case RK_THRESHOLD:
			hit = threshold_update(e, pr->rule, pr, ev, now_ns);
			break;
		case RK_SEQUENCE:
			hit = sequence_update(e, pr->rule, pr, ev, now_ns);
			break;
		default:
			hit = true;
			break;
		}
		if (!hit)
			continue;
		alerts++;
		e->stats.alerts++;
		if (fn)
			fn(ctx, &r->info, ev);
	}
	return alerts;
}

void engine_get_stats(const struct engine *e, struct engine_stats *out)
{
	*out = e->stats;
	out->state_entries = e->st.live;
	out->state_capacity = e->st.heads ? e->st.max : 0;
}

size_t engine_memory(const struct engine *e)
{
	return e ? e->bytes : 0;
}

/* --- alerts --- */

int alert_fill_event(const struct rule_info *rule, const struct event *ev, struct event *out)
{
	int ret;
	if ((ret = event_copy(out, ev)) < 0 ||
	    (ret = event_set_cstr(out, F_EVENT_KIND, "alert")) < 0 ||
	    (ret = event_set_cstr(out, F_RULE_ID, rule->id)) < 0 ||
	    (ret = event_set_cstr(out, F_RULE_NAME, rule->name)) < 0 ||
	    (ret = event_set_cstr(out, F_RULE_LEVEL, rule->level)) < 0)
		return ret;
	event_unset(out, F_THREAT_TECHNIQUE_ID);
	for (size_t i = 0; i < rule->n_techniques; i++) {
		const char *t = rule->techniques[i];
		if ((ret = event_list_append(out, F_THREAT_TECHNIQUE_ID, t, strlen(t))) < 0)
			return ret;
	}
	return 0;
}

int alert_write_json(const struct rule_info *rule, const struct event *ev, struct event *scratch,
		     struct buf *out)
{
	int ret = alert_fill_event(rule, ev, scratch);
	if (ret < 0)
		return ret;
	return event_write_json(scratch, out);
}

/* --- time --- */

static int digits(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

int timestamp_parse(const char *s, size_t len, uint64_t *ns)
{
	unsigned y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0;
	size_t i = 19;
	int sign = 0;

	if (len < 20 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
		return -EINVAL;
	if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
	    digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
		return -EINVAL;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	if (i < len && s[i] == '.') {
		unsigned nd = 0;
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (nd < 9) {
				frac = frac * 10 + (unsigned)(s[i] - '0');
				nd++;
			}
			i++;
		}
		if (nd == 0)
			return -EINVAL;
		while (nd++ < 9)
			frac *= 10;
	}
	if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < len && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '+' ? 1 : -1;
		if (len - i != 6 || s[i + 3] != ':' || digits(s + i + 1, 2, &oh) ||
		    digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
			return -EINVAL;
		i += 6;
	} else {
		return -EINVAL;
	}
	if (i != len)
		return -EINVAL;
	int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	secs -= sign * (int64_t)(oh * 3600 + om * 60);
	if (secs < 0 || secs > (int64_t)(UINT64_MAX / 1000000000ull) - 1)
		return -EINVAL;
	*ns = (uint64_t)secs * 1000000000ull + frac;
	return 0;
}

/* --- rule tests --- */

/* Test events without @timestamp start here, one second apart. */
#define TEST_BASE_NS (1700000000ull * 1000000000ull)

struct test_hit {
	const struct rule_info *want;
	bool hit;
};

static void on_test_alert(void *ctx, const struct rule_info *rule, const struct event *ev)
{
	struct test_hit *t = ctx;
	(void)ev;
	if (rule == t->want)
		t->hit = true;
}

int ruleset_run_tests(const struct ruleset *rs, struct buf *report, struct rules_test_result *res)
{
	struct rules_test_result r = {0};
	struct engine *e = NULL;
	struct event *ev = NULL;
	char why[256];
	int ret;

	if ((ret = engine_new(rs, NULL, &e)) < 0)
		return ret;
	if (!(ev = event_new())) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (uint32_t ri = 0; ri < rs->n_rules; ri++) {
		const struct crule *cr = &rs->rules[ri];
		if (cr->n_tests == 0) {
			r.untested++;
			continue;
		}
		r.rules++;
		for (uint32_t t = 0; t < cr->n_tests; t++) {
			const struct rtest *test = &cr->tests[t];
			struct test_hit th = {.want = &cr->info};
			uint64_t now = TEST_BASE_NS;
			const char *fail = NULL;
			engine_reset_state(e);
			for (uint32_t k = 0; k < test->n && !fail; k++) {
				int pr = event_parse_json(ev, test->json[k], test->lens[k], why,
							  sizeof(why), NULL);
				if (pr != EVENT_PARSED) {
					fail = pr < 0 ? why : "test event is not an event";
					break;
				}
				size_t tl;
				const char *ts = event_str(ev, F_TIMESTAMP, &tl);
				uint64_t at;
				if (ts && timestamp_parse(ts, tl, &at) == 0)
					now = at;
				else if (k > 0)
					now += 1000000000ull;
				engine_eval(e, ev, now, on_test_alert, &th);
			}
			if (!fail && th.hit != test->match)
				fail = test->match ? "match test raised no alert"
						   : "nomatch test raised an alert";
			if (!fail) {
				r.passed++;
				continue;
			}
			r.failed++;
			if (report) {
				char line[512];
				snprintf(line, sizeof(line), "%s:%u: rule %s: %s\n", cr->info.file,
					 test->line, cr->info.id, fail);
				if (buf_append_str(report, line) == -ENOMEM) {
					ret = -ENOMEM;
					goto out_free;
				}
			}
		}
	}
	ret = r.failed ? -EINVAL : 0;
out_free:
	if (res)
		*res = r;
	event_free(ev);
	engine_free(e);
	return ret;
}
