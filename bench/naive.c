/*
 * The naive evaluator (naive.h): every program for every event, every predicate value tried
 * in turn with the C library's string functions or PCRE2, and a plain hash table for
 * threshold and sequence state. Written from the rule language's semantics, not from the
 * engine's code, so that a disagreement between the two points at a bug in one of them.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "naive.h"

#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/compile_int.h"

/* Threshold windows slide in this many steps (docs/rules.md, the engine's unit of time). */
#define SLOTS	      16
#define STATE_BUCKETS 65536u

struct nstate {
	struct nstate *next;
	uint32_t rule;
	uint32_t step;	  /* sequence: next step expected */
	uint64_t t_start; /* sequence: window start; threshold: newest slot number */
	uint32_t counts[SLOTS];
	size_t key_len;
	uint8_t key[];
};

struct naive {
	const struct ruleset *rs;
	pcre2_code **re; /* per string value: its compiled regex, NULL when not a regex */
	pcre2_match_data *md;
	bool *cvalue; /* per string value: holds no NUL byte, so strstr may take it */
	struct nstate **table;
	uint64_t regex_errors;
};

int naive_new(const struct ruleset *rs, struct naive **out, char *err, size_t errlen)
{
	struct naive *nv;
	int ret = -ENOMEM;

	nv = calloc(1, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	nv->rs = rs;
	nv->re = calloc(rs->n_strs ? rs->n_strs : 1, sizeof(*nv->re));
	nv->cvalue = calloc(rs->n_strs ? rs->n_strs : 1, sizeof(*nv->cvalue));
	nv->table = calloc(STATE_BUCKETS, sizeof(*nv->table));
	nv->md = pcre2_match_data_create(1, NULL);
	if (!nv->re || !nv->cvalue || !nv->table || !nv->md)
		goto out_free;
	for (uint32_t i = 0; i < rs->n_strs; i++) {
		const struct cstr *s = &rs->strs[i];
		nv->cvalue[i] = memchr(rs->blob + s->off, '\0', s->len) == NULL;
	}
	for (uint32_t p = 0; p < rs->n_preds; p++) {
		const struct cpred *cp = &rs->preds[p];
		if ((cp->kind != PK_SCAN && cp->kind != PK_REGEX) || cp->op != ROP_REGEX)
			continue;
		for (uint32_t k = 0; k < cp->n; k++) {
			const struct cstr *s = &rs->strs[cp->off + k];
			uint32_t opts = (cp->flags & PF_CASELESS) ? PCRE2_CASELESS : 0;
			int code;
			PCRE2_SIZE at;
			pcre2_code *re = pcre2_compile((PCRE2_SPTR)(rs->blob + s->off), s->len,
						       opts, &code, &at, NULL);
			if (!re) {
				PCRE2_UCHAR msg[160];
				pcre2_get_error_message(code, msg, sizeof(msg));
				snprintf(err, errlen,
					 "predicate %u: PCRE2 rejects '%.200s' at %zu: %s", p,
					 rs->blob + s->off, (size_t)at, (const char *)msg);
				ret = -EINVAL;
				goto out_free;
			}
			/* JIT where the platform has it: the baseline should be a fair one */
			(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
			nv->re[cp->off + k] = re;
		}
	}
	*out = nv;
	return 0;
out_free:
	naive_free(nv);
	return ret;
}

void naive_reset_state(struct naive *nv)
{
	for (uint32_t b = 0; b < STATE_BUCKETS; b++) {
		struct nstate *x = nv->table[b];
		while (x) {
			struct nstate *next = x->next;
			free(x);
			x = next;
		}
		nv->table[b] = NULL;
	}
}

void naive_free(struct naive *nv)
{
	if (!nv)
		return;
	if (nv->table)
		naive_reset_state(nv);
	free(nv->table);
	for (uint32_t i = 0; nv->re && i < nv->rs->n_strs; i++)
		pcre2_code_free(nv->re[i]);
	free(nv->re);
	free(nv->cvalue);
	pcre2_match_data_free(nv->md);
	free(nv);
}

uint64_t naive_regex_errors(const struct naive *nv)
{
	return nv->regex_errors;
}

/* --- literals --- */

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* @n bytes of @a and @b are equal, ASCII letters folded when @caseless. */
static bool bytes_equal(const char *a, const char *b, size_t n, bool caseless)
{
	if (!caseless)
		return memcmp(a, b, n) == 0;
	for (size_t i = 0; i < n; i++) {
		if (lower(a[i]) != lower(b[i]))
			return false;
	}
	return true;
}

/* Byte-wise substring search, for strings strstr cannot take (NUL bytes inside). */
static bool bytes_contain(const char *s, size_t len, const char *v, size_t vlen, bool caseless)
{
	if (vlen > len)
		return false;
	for (size_t i = 0; i + vlen <= len; i++) {
		if (bytes_equal(s + i, v, vlen, caseless))
			return true;
	}
	return false;
}

/* Whether string @s (@len bytes) satisfies any value of string predicate @cp. */
static bool str_match(struct naive *nv, const struct cpred *cp, const char *s, size_t len,
		      bool cstring)
{
	const struct ruleset *rs = nv->rs;
	bool caseless = cp->flags & PF_CASELESS;

	for (uint32_t k = 0; k < cp->n; k++) {
		uint32_t vi = cp->off + k;
		const char *v = rs->blob + rs->strs[vi].off;
		size_t vlen = rs->strs[vi].len;
		bool hit = false;

		if (cp->kind == PK_STR_EQ) {
			hit = len == vlen && bytes_equal(s, v, len, caseless);
		} else {
			switch (cp->op) {
			case ROP_EQUALS:
				hit = len == vlen && bytes_equal(s, v, len, caseless);
				break;
			case ROP_STARTSWITH:
				hit = len >= vlen && bytes_equal(s, v, vlen, caseless);
				break;
			case ROP_ENDSWITH:
				hit = len >= vlen && bytes_equal(s + len - vlen, v, vlen, caseless);
				break;
			case ROP_CONTAINS:
				if (cstring && nv->cvalue[vi])
					hit = (caseless ? strcasestr(s, v) : strstr(s, v)) != NULL;
				else
					hit = bytes_contain(s, len, v, vlen, caseless);
				break;
			case ROP_REGEX: {
				int rc =
				    pcre2_match(nv->re[vi], (PCRE2_SPTR)s, len, 0, 0, nv->md, NULL);
				if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
					nv->regex_errors++;
				hit = rc >= 0;
				break;
			}
			default:
				break;
			}
		}
		if (hit)
			return true;
	}
	return false;
}

/* A string predicate over a string field, or over any item of a list field. */
static bool str_pred(struct naive *nv, const struct cpred *cp, const struct event *ev,
		     bool cstrings)
{
	enum field_id f = (enum field_id)cp->field;
	size_t len;
	const char *s = event_str(ev, f, &len);

	if (s)
		return str_match(nv, cp, s, len, cstrings);
	uint32_t n = event_list_count(ev, f);
	for (uint32_t i = 0; i < n; i++) {
		const char *it = event_list_item(ev, f, i, &len);
		/* event.truncated's items are registry names: C strings */
		if (it && str_match(nv, cp, it, len, cstrings || f == F_EVENT_TRUNCATED))
			return true;
	}
	return false;
}

static bool in_net(const struct cnet *n, const struct ev_ip *ip)
{
	if (n->family != ip->family)
		return false;
	for (unsigned bit = 0; bit < n->prefix; bit++) {
		unsigned mask = 0x80u >> (bit % 8);
		if ((n->addr[bit / 8] & mask) != (ip->addr[bit / 8] & mask))
			return false;
	}
	return true;
}

static bool pred(struct naive *nv, const struct cpred *cp, const struct event *ev, bool cstrings)
{
	const struct ruleset *rs = nv->rs;
	enum field_id f = (enum field_id)cp->field;
	int64_t v;

	switch (cp->kind) {
	case PK_SCAN:
	case PK_STR_EQ:
	case PK_REGEX: /* a regex the engine runs on demand rather than in the field's database */
		return str_pred(nv, cp, ev, cstrings);
	case PK_EXISTS:
		return event_has(ev, f);
	case PK_INT_CMP:
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
	case PK_INT_IN:
		if (!event_int(ev, f, &v))
			return false;
		for (uint32_t k = 0; k < cp->n; k++) {
			if (rs->ints[cp->off + k] == v)
				return true;
		}
		return false;
	case PK_IP_IN: {
		const struct ev_ip *ip = event_ip(ev, f);
		if (!ip)
			return false;
		for (uint32_t k = 0; k < cp->n; k++) {
			if (in_net(&rs->nets[cp->off + k], ip))
				return true;
		}
		return false;
	}
	case PK_BOOL_EQ: {
		bool b;
		if (!event_bool(ev, f, &b))
			return false;
		/* num holds the accepted values as bits: 1 for false, 2 for true */
		return (cp->num & (b ? 2 : 1)) != 0;
	}
	}
	return false;
}

/*
 * Runs program @pr over @ev: a stack of booleans, predicates evaluated when the program
 * reaches them, the compiler's jumps skipping what && and || leave undecided.
 */
static bool run(struct naive *nv, const struct cprog *pr, const struct event *ev, bool cstrings)
{
	const struct ruleset *rs = nv->rs;
	const struct insn *code = rs->code + pr->code_off;
	bool st[RULES_MAX_STACK];
	uint32_t sp = 0;

	for (uint32_t pc = 0; pc < pr->n_code; pc++) {
		const struct insn *in = &code[pc];
		switch (in->op) {
		case OP_PRED:
			if (sp == RULES_MAX_STACK || in->arg >= pr->n_preds)
				return false;
			st[sp++] = pred(nv, &rs->preds[pr->pred_base + in->arg], ev, cstrings);
			break;
		case OP_NOT:
			if (sp < 1)
				return false;
			st[sp - 1] = !st[sp - 1];
			break;
		case OP_AND:
			if (sp < 2)
				return false;
			st[sp - 2] = st[sp - 2] && st[sp - 1];
			sp--;
			break;
		case OP_OR:
			if (sp < 2)
				return false;
			st[sp - 2] = st[sp - 2] || st[sp - 1];
			sp--;
			break;
		case OP_POP:
			if (sp < 1)
				return false;
			sp--;
			break;
		case OP_JF:
		case OP_JT:
			if (sp < 1 || in->arg > pr->n_code - pc - 1)
				return false;
			if (st[sp - 1] == (in->op == OP_JT))
				pc += in->arg;
			break;
		default:
			return false;
		}
	}
	return sp == 1 && st[0];
}

/* --- threshold and sequence state --- */

/* The bytes of @ev's value for @field that key the state (false when it is absent). */
static bool state_key(const struct event *ev, int32_t field, const uint8_t **key, size_t *len,
		      uint8_t tmp[24])
{
	*key = tmp;
	*len = 0;
	if (field < 0)
		return true;
	if (field >= FIELD_COUNT)
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
		*len = sizeof(v);
		return true;
	}
	case FT_IP: {
		const struct ev_ip *ip = event_ip(ev, (enum field_id)field);
		if (!ip)
			return false;
		tmp[0] = ip->family;
		memcpy(tmp + 1, ip->addr, 16);
		*len = 17;
		return true;
	}
	default:
		return false;
	}
}

static uint32_t bucket_of(uint32_t rule, const uint8_t *key, size_t len)
{
	uint32_t h = 2166136261u ^ rule;
	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % STATE_BUCKETS;
}

/* The entry of (@rule, @key), or NULL; *@link is where a new one would be chained. */
static struct nstate *state_get(struct naive *nv, uint32_t rule, const uint8_t *key, size_t len,
				struct nstate ***link)
{
	struct nstate **p = &nv->table[bucket_of(rule, key, len)];
	*link = p;
	for (struct nstate *x = *p; x; x = x->next) {
		if (x->rule == rule && x->key_len == len && memcmp(x->key, key, len) == 0)
			return x;
	}
	return NULL;
}

static struct nstate *state_add(struct nstate **link, uint32_t rule, const uint8_t *key, size_t len)
{
	struct nstate *x = calloc(1, sizeof(*x) + len);
	if (!x)
		return NULL;
	x->rule = rule;
	x->key_len = len;
	memcpy(x->key, key, len);
	x->next = *link;
	*link = x;
	return x;
}

static void state_remove(struct naive *nv, struct nstate *x)
{
	struct nstate **p = &nv->table[bucket_of(x->rule, x->key, x->key_len)];
	while (*p && *p != x)
		p = &(*p)->next;
	if (*p)
		*p = x->next;
	free(x);
}

/*
 * Threshold: matching events are counted in SLOTS sub-windows of within / SLOTS each; the
 * rule fires when the newest SLOTS sub-windows hold count events, and counting restarts.
 */
static bool threshold(struct naive *nv, const struct crule *r, uint32_t rule,
		      const struct cprog *pr, const struct event *ev, uint64_t now)
{
	const uint8_t *key;
	uint8_t tmp[24];
	size_t len;
	struct nstate **link;

	if (!state_key(ev, pr->by_field, &key, &len, tmp))
		return false;
	uint64_t width = r->within_ns / SLOTS ? r->within_ns / SLOTS : 1;
	uint64_t slot = now / width;
	struct nstate *x = state_get(nv, rule, key, len, &link);
	if (!x) {
		if (!(x = state_add(link, rule, key, len)))
			return false;
		x->t_start = slot;
	} else if (slot > x->t_start) {
		for (uint64_t s = x->t_start + 1; s <= slot && s - x->t_start <= SLOTS; s++)
			x->counts[s % SLOTS] = 0;
		x->t_start = slot;
	}
	if (x->counts[x->t_start % SLOTS] < UINT32_MAX)
		x->counts[x->t_start % SLOTS]++;
	uint64_t sum = 0;
	for (int s = 0; s < SLOTS; s++)
		sum += x->counts[s];
	if (sum < r->count)
		return false;
	memset(x->counts, 0, sizeof(x->counts));
	return true;
}

/*
 * Sequence: step 0 (re)starts the window unless later steps are under way in an unexpired
 * one; step k > 0 advances it when k is the step expected; the last step fires the rule.
 */
static bool sequence(struct naive *nv, const struct crule *r, uint32_t rule, const struct cprog *pr,
		     const struct event *ev, uint64_t now)
{
	const uint8_t *key;
	uint8_t tmp[24];
	size_t len;
	struct nstate **link;

	if (!state_key(ev, pr->by_field, &key, &len, tmp))
		return false;
	struct nstate *x = state_get(nv, rule, key, len, &link);
	bool expired = x && now > x->t_start && now - x->t_start > r->within_ns;

	if (pr->step > 0) {
		if (!x || expired || x->step != pr->step)
			return false;
		x->step++;
		if (x->step >= r->n_progs) {
			state_remove(nv, x);
			return true;
		}
		return false;
	}
	if (x && !expired && x->step > 1)
		return false;
	if (!x && !(x = state_add(link, rule, key, len)))
		return false;
	x->step = 1;
	x->t_start = now;
	return false;
}

int naive_eval(struct naive *nv, const struct event *ev, uint64_t now_ns, bool cstrings,
	       naive_alert_fn fn, void *ctx)
{
	const struct ruleset *rs = nv->rs;
	int alerts = 0;

	for (uint32_t p = 0; p < rs->n_progs; p++) {
		const struct cprog *pr = &rs->progs[p];
		if (!run(nv, pr, ev, cstrings))
			continue;
		const struct crule *r = &rs->rules[pr->rule];
		bool hit = true;
		if (r->kind == RK_THRESHOLD)
			hit = threshold(nv, r, pr->rule, pr, ev, now_ns);
		else if (r->kind == RK_SEQUENCE)
			hit = sequence(nv, r, pr->rule, pr, ev, now_ns);
		if (!hit)
			continue;
		alerts++;
		if (fn)
			fn(ctx, &r->info, ev);
	}
	return alerts;
}
