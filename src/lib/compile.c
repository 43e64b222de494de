/*
 * The rule compiler: resolves every field against this build's registry, type-checks every
 * operator and value, expands lists and macros, and emits one flat program per rule (or per
 * sequence step): a predicate table and a boolean bytecode with forward-only jumps.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "compile_int.h"

/* Condition tree after macro and list expansion, before emission. */
struct ct {
	uint8_t kind; /* RC_ALL, RC_ANY, RC_NOT, RC_PRED */
	uint32_t n;
	struct ct **kids;
	uint32_t pred; /* global predicate index */
};

struct cc {
	struct rules_ast *ast;
	struct ruleset *rs;
	char *err;
	size_t errlen;
	const struct rrule *rule;
	struct arena tmp; /* per rule */
	uint32_t cap_preds, cap_code, cap_strs, cap_ints, cap_nets, cap_progs, cap_act;
	size_t cap_blob;
	uint32_t cap_actions;
	uint32_t rule_preds; /* predicates of the rule being compiled */
	uint32_t rule_nodes;
	size_t n_values, value_bytes;
	struct rlist **lists; /* sorted by name */
	struct rmacro **macros;
	uint8_t req[RULES_MAX_PREDICATES_PER_RULE]; /* required predicates of the program */
	uint8_t *pred_req;
	uint32_t cap_req;
	/* action set of the program being compiled (indices into rs->actions) */
	uint32_t act[RULES_MAX_ACTIONS];
	uint32_t n_act;
	bool act_constrained;
	bool act_empty;
};

#define CFAIL(c, code, line, field, ...)                                                           \
	rules_fail((c)->err, (c)->errlen, (code), (c)->rule ? (c)->rule->file : NULL, (line),      \
		   (field), __VA_ARGS__)

static int grow_arr(void **v, uint32_t *cap, size_t need, size_t size, size_t max)
{
	if (need <= *cap)
		return 0;
	if (need > max)
		return -E2BIG;
	size_t ncap = *cap ? (size_t)*cap * 2 : 256, bytes;
	while (ncap < need)
		ncap *= 2;
	if (ncap > max)
		ncap = max;
	if (size_mul(ncap, size, &bytes) < 0)
		return -E2BIG;
	void *p = realloc(*v, bytes);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = (uint32_t)ncap;
	return 0;
}

/* Appends @len bytes and a NUL to the blob; stores the offset. */
static int blob_add(struct cc *c, const char *s, size_t len, bool lower, uint32_t *off)
{
	struct ruleset *rs = c->rs;
	size_t need = rs->blob_len + len + 1;
	if (need > (size_t)RULES_MAX_VALUE_TOTAL_BYTES + RULES_MAX_RULES * 64u)
		return -E2BIG;
	if (need > c->cap_blob) {
		size_t cap = c->cap_blob ? c->cap_blob * 2 : 65536;
		while (cap < need)
			cap *= 2;
		char *p = realloc(rs->blob, cap);
		if (!p)
			return -ENOMEM;
		rs->blob = p;
		c->cap_blob = cap;
	}
	*off = (uint32_t)rs->blob_len;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (lower && ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		rs->blob[rs->blob_len + i] = ch;
	}
	rs->blob[rs->blob_len + len] = '\0';
	rs->blob_len = need;
	return 0;
}

static int cmp_list(const void *a, const void *b)
{
	return strcmp((*(struct rlist *const *)a)->name, (*(struct rlist *const *)b)->name);
}

static int cmp_macro(const void *a, const void *b)
{
	return strcmp((*(struct rmacro *const *)a)->name, (*(struct rmacro *const *)b)->name);
}

static const struct rlist *find_list(const struct cc *c, const char *name, size_t len)
{
	size_t lo = 0, hi = c->ast->n_lists;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const char *m = c->lists[mid]->name;
		int r = strncmp(m, name, len);
		if (r == 0 && m[len] != '\0')
			r = 1;
		if (r == 0)
			return c->lists[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static struct rmacro *find_macro(const struct cc *c, const char *name)
{
	size_t lo = 0, hi = c->ast->n_macros;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(c->macros[mid]->name, name);
		if (r == 0)
			return c->macros[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int check_names(struct cc *c)
{
	struct rules_ast *ast = c->ast;
	c->lists = malloc((ast->n_lists ? ast->n_lists : 1) * sizeof(*c->lists));
	c->macros = malloc((ast->n_macros ? ast->n_macros : 1) * sizeof(*c->macros));
	if (!c->lists || !c->macros)
		return -ENOMEM;
	for (uint32_t i = 0; i < ast->n_lists; i++)
		c->lists[i] = &ast->lists[i];
	for (uint32_t i = 0; i < ast->n_macros; i++)
		c->macros[i] = &ast->macros[i];
	qsort(c->lists, ast->n_lists, sizeof(*c->lists), cmp_list);
	qsort(c->macros, ast->n_macros, sizeof(*c->macros), cmp_macro);
	for (uint32_t i = 1; i < ast->n_lists; i++) {
		const struct rlist *a = c->lists[i - 1], *b = c->lists[i];
		if (strcmp(a->name, b->name) == 0)
			return rules_fail(c->err, c->errlen, -EINVAL, b->file, b->line, "lists",
					  "list '%s' defined twice (also %s:%u)", b->name, a->file,
					  a->line);
	}
	for (uint32_t i = 1; i < ast->n_macros; i++) {
		const struct rmacro *a = c->macros[i - 1], *b = c->macros[i];
		if (strcmp(a->name, b->name) == 0)
			return rules_fail(c->err, c->errlen, -EINVAL, b->file, b->line, "macros",
					  "macro '%s' defined twice (also %s:%u)", b->name, a->file,
					  a->line);
	}
	return 0;
}

static int cmp_rule_id(const void *a, const void *b)
{
	const struct rrule *x = *(const struct rrule *const *)a,
			   *y = *(const struct rrule *const *)b;
	int r = strcmp(x->id, y->id);
	if (r)
		return r;
	return x < y ? -1 : x > y;
}

static int check_ids(struct cc *c)
{
	struct rules_ast *ast = c->ast;
	int ret = 0;
	if (ast->n_rules < 2)
		return 0;
	const struct rrule **v = malloc(ast->n_rules * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < ast->n_rules; i++)
		v[i] = &ast->rules[i];
	qsort(v, ast->n_rules, sizeof(*v), cmp_rule_id);
	for (uint32_t i = 1; i < ast->n_rules; i++) {
		if (strcmp(v[i - 1]->id, v[i]->id) == 0) {
			ret = rules_fail(c->err, c->errlen, -EINVAL, v[i]->file, v[i]->line, "id",
					 "duplicate rule id '%s' (also %s:%u)", v[i]->id,
					 v[i - 1]->file, v[i - 1]->line);
			break;
		}
	}
	free(v);
	return ret;
}

/* --- values --- */

static bool is_list_ref(const struct rval *v)
{
	return v->len > 1 && v->s[0] == '@';
}

struct vals {
	const struct rval **v;
	uint32_t n;
};

/* Expands "@name" references of @p into @out (in the tmp arena). */
static int expand_values(struct cc *c, const struct rcond *p, bool refs, struct vals *out)
{
	size_t total = 0;
	for (uint32_t i = 0; i < p->n; i++) {
		const struct rval *v = &p->vals[i];
		if (refs && is_list_ref(v)) {
			const struct rlist *l = find_list(c, v->s + 1, v->len - 1);
			if (!l)
				return CFAIL(c, -EINVAL, v->line, p->name, "unknown list '%s'",
					     v->s);
			total += l->n;
		} else {
			total++;
		}
	}
	if (total == 0)
		return CFAIL(c, -EINVAL, p->line, p->name, "%s: no values (empty list)",
			     rop_name(p->op, p->caseless));
	if (total > RULES_MAX_LIST_ITEMS)
		return CFAIL(c, -E2BIG, p->line, p->name, "%s: more than %u values",
			     rop_name(p->op, p->caseless), RULES_MAX_LIST_ITEMS);
	out->v = arena_array(&c->tmp, total, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	out->n = 0;
	for (uint32_t i = 0; i < p->n; i++) {
		const struct rval *v = &p->vals[i];
		if (refs && is_list_ref(v)) {
			const struct rlist *l = find_list(c, v->s + 1, v->len - 1);
			for (uint32_t k = 0; k < l->n; k++)
				out->v[out->n++] = &l->items[k];
		} else {
			out->v[out->n++] = v;
		}
	}
	c->n_values += total;
	if (c->n_values > RULES_MAX_VALUES)
		return CFAIL(c, -E2BIG, p->line, p->name, "more than %u values in all rules",
			     RULES_MAX_VALUES);
	return 0;
}

static int check_string(struct cc *c, const struct rcond *p, const struct rval *v, bool empty_ok)
{
	const char *op = rop_name(p->op, p->caseless);
	if (memchr(v->s, '\0', v->len))
		return CFAIL(c, -EINVAL, v->line, p->name, "%s: value contains a NUL byte", op);
	if (!rules_utf8_valid(v->s, v->len))
		return CFAIL(c, -EINVAL, v->line, p->name, "%s: value is not valid UTF-8", op);
	if (v->len == 0 && !empty_ok)
		return CFAIL(c, -EINVAL, v->line, p->name,
			     "%s: empty value (it would match everything)", op);
	if (v->len > RULES_MAX_VALUE_BYTES)
		return CFAIL(c, -E2BIG, v->line, p->name, "%s: value longer than %u bytes", op,
			     RULES_MAX_VALUE_BYTES);
	c->value_bytes += v->len;
	if (c->value_bytes > RULES_MAX_VALUE_TOTAL_BYTES)
		return CFAIL(c, -E2BIG, v->line, p->name, "values larger than %u bytes together",
			     RULES_MAX_VALUE_TOTAL_BYTES);
	return 0;
}

/* The largest repeat bound ({n}, {n,}, {n,m}) written in regex @s, outside classes. */
static uint64_t regex_max_repeat(const char *s, size_t len)
{
	uint64_t max = 0;
	bool in_class = false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\') {
			i++;
		} else if (in_class) {
			in_class = s[i] != ']';
		} else if (s[i] == '[') {
			in_class = true;
			if (i + 1 < len && s[i + 1] == ']')
				i++; /* "[]...]": the first ] is a member */
		} else if (s[i] == '{') {
			uint64_t v = 0;
			for (size_t k = i + 1;
			     k < len && ((s[k] >= '0' && s[k] <= '9') || s[k] == ','); k++) {
				if (s[k] == ',') {
					v = 0;
					continue;
				}
				if (v < UINT32_MAX)
					v = v * 10 + (uint64_t)(s[k] - '0');
				if (v > max)
					max = v;
			}
		}
	}
	return max;
}

static int parse_i64(const char *s, size_t len, int64_t *out)
{
	size_t i = 0;
	bool neg = false;
	uint64_t v = 0, lim;
	if (len && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i = 1;
	}
	if (i == len)
		return -EINVAL;
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (lim - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* "10.0.0.1", "::1", with "/N" when @cidr. */
static int parse_net(const char *s, size_t len, bool cidr, struct cnet *out)
{
	char text[INET6_ADDRSTRLEN + 8];
	const char *slash;
	uint64_t bits = 0;
	size_t alen = len;

	if (len == 0 || len >= sizeof(text))
		return -EINVAL;
	memcpy(text, s, len);
	text[len] = '\0';
	slash = memchr(text, '/', len);
	if (slash && !cidr)
		return -EINVAL;
	if (cidr && !slash)
		return -EINVAL;
	if (slash) {
		alen = (size_t)(slash - text);
		size_t blen = len - alen - 1;
		if (blen == 0 || blen > 3)
			return -EINVAL;
		for (size_t i = 0; i < blen; i++) {
			if (slash[1 + i] < '0' || slash[1 + i] > '9')
				return -EINVAL;
			bits = bits * 10 + (uint64_t)(slash[1 + i] - '0');
		}
		text[alen] = '\0';
	}
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, out->addr) == 1) {
		out->family = AF_INET;
		if (!slash)
			bits = 32;
		if (bits > 32)
			return -EINVAL;
	} else if (inet_pton(AF_INET6, text, out->addr) == 1) {
		out->family = AF_INET6;
		if (!slash)
			bits = 128;
		if (bits > 128)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	out->prefix = (uint8_t)bits;
	return 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* --- predicates --- */

static int new_pred(struct cc *c, const struct rcond *p, struct cpred **out, uint32_t *index)
{
	struct ruleset *rs = c->rs;
	int ret;
	if (++c->rule_preds > RULES_MAX_PREDICATES_PER_RULE)
		return CFAIL(c, -E2BIG, p->line, p->name,
			     "more than %u predicates in one rule (macros expanded)",
			     RULES_MAX_PREDICATES_PER_RULE);
	if (rs->n_preds >= RULES_MAX_PREDICATES)
		return CFAIL(c, -E2BIG, p->line, p->name, "more than %u predicates in all rules",
			     RULES_MAX_PREDICATES);
	if ((ret = grow_arr((void **)&rs->preds, &c->cap_preds, rs->n_preds + 1, sizeof(*rs->preds),
			    RULES_MAX_PREDICATES)) < 0)
		return ret;
	*index = rs->n_preds++;
	*out = &rs->preds[*index];
	memset(*out, 0, sizeof(**out));
	(*out)->line = p->line;
	return 0;
}

static bool op_fits(enum rop op, enum field_type t)
{
	switch (op) {
	case ROP_EQUALS:
		return true;
	case ROP_CONTAINS:
	case ROP_STARTSWITH:
	case ROP_ENDSWITH:
	case ROP_REGEX:
		return t == FT_STRING || t == FT_STRLIST;
	case ROP_IN:
		return t == FT_STRING || t == FT_STRLIST || t == FT_INT || t == FT_IP;
	case ROP_CIDR:
		return t == FT_IP;
	case ROP_LT:
	case ROP_LTE:
	case ROP_GT:
	case ROP_GTE:
		return t == FT_INT;
	case ROP_EXISTS:
		return true;
	default:
		return false;
	}
}

static struct ct *ct_new(struct cc *c, uint8_t kind)
{
	if (++c->rule_nodes > 4 * RULES_MAX_PREDICATES_PER_RULE)
		return NULL;
	struct ct *t = arena_alloc(&c->tmp, sizeof(*t));
	if (t)
		t->kind = kind;
	return t;
}

static int ct_fail_alloc(struct cc *c, uint32_t line)
{
	if (c->rule_nodes > 4 * RULES_MAX_PREDICATES_PER_RULE)
		return CFAIL(c, -E2BIG, line, "condition",
			     "more than %u condition nodes in one rule (macros expanded)",
			     4 * RULES_MAX_PREDICATES_PER_RULE);
	return -ENOMEM;
}

static int add_strs(struct cc *c, const struct vals *vs, bool lower, struct cpred *cp)
{
	struct ruleset *rs = c->rs;
	int ret;
	if ((ret = grow_arr((void **)&rs->strs, &c->cap_strs, (size_t)rs->n_strs + vs->n,
			    sizeof(*rs->strs), RULES_MAX_VALUES)) < 0)
		return ret;
	cp->off = rs->n_strs;
	cp->n = vs->n;
	for (uint32_t i = 0; i < vs->n; i++) {
		struct cstr *s = &rs->strs[rs->n_strs + i];
		if ((ret = blob_add(c, vs->v[i]->s, vs->v[i]->len, lower, &s->off)) < 0)
			return ret;
		s->len = vs->v[i]->len;
	}
	rs->n_strs += vs->n;
	return 0;
}

static int action_intern(struct cc *c, const char *s, size_t len, uint32_t *id)
{
	struct ruleset *rs = c->rs;
	int ret;
	for (uint32_t i = 0; i < rs->n_actions; i++) {
		const struct cstr *a = &rs->actions[i];
		if (a->len == len && memcmp(rs->blob + a->off, s, len) == 0) {
			*id = i;
			return 0;
		}
	}
	if (rs->n_actions >= RULES_MAX_ACTIONS)
		return -E2BIG;
	if ((ret = grow_arr((void **)&rs->actions, &c->cap_actions, rs->n_actions + 1,
			    sizeof(*rs->actions), RULES_MAX_ACTIONS)) < 0)
		return ret;
	struct cstr *a = &rs->actions[rs->n_actions];
	if ((ret = blob_add(c, s, len, false, &a->off)) < 0)
		return ret;
	a->len = (uint32_t)len;
	*id = rs->n_actions++;
	return 0;
}

static int compile_pred(struct cc *c, const struct rcond *p, struct ct **out)
{
	const char *op = rop_name(p->op, p->caseless);
	int id = registry_lookup(p->name, strlen(p->name));
	struct vals vs = {0};
	struct cpred *cp = NULL;
	uint32_t index = 0;
	int ret;

	if (id < 0)
		return CFAIL(c, -EINVAL, p->line, p->name,
			     "unknown field (not in the registry of schema version %d)",
			     SCHEMA_VERSION);
	enum field_type type = registry_field(id)->type;
	if (!op_fits((enum rop)p->op, type))
		return CFAIL(c, -EINVAL, p->line, p->name,
			     "%s does not apply to a field of type %s", op,
			     registry_type_name(type));
	if (p->caseless && (type != FT_STRING && type != FT_STRLIST))
		return CFAIL(c, -EINVAL, p->line, p->name,
			     "%s does not apply to a field of type %s", op,
			     registry_type_name(type));

	/* shape: how many values the operator takes */
	bool single =
	    p->op == ROP_REGEX || p->op == ROP_EXISTS || (p->op >= ROP_LT && p->op <= ROP_GTE);
	if (single && (p->is_list || p->n != 1))
		return CFAIL(c, -EINVAL, p->line, p->name, "%s takes one value, not a list of %u",
			     op, p->n);
	if (p->op == ROP_IN && !p->is_list && !(p->n == 1 && is_list_ref(&p->vals[0])))
		return CFAIL(c, -EINVAL, p->line, p->name,
			     "%s takes a list or \"@listname\", not a single value", op);

	if ((ret = expand_values(c, p, p->op != ROP_REGEX && !single, &vs)) < 0)
		return ret;
	if ((ret = new_pred(c, p, &cp, &index)) < 0)
		return ret;
	cp->field = (uint16_t)id;
	cp->op = p->op;
	cp->flags = p->caseless ? PF_CASELESS : 0;

	struct ct *t = ct_new(c, RC_PRED);
	if (!t)
		return ct_fail_alloc(c, p->line);
	t->pred = index;
	*out = t;

	if (p->op == ROP_EXISTS) {
		const struct rval *v = vs.v[0];
		bool want;
		if (v->len == 4 && memcmp(v->s, "true", 4) == 0)
			want = true;
		else if (v->len == 5 && memcmp(v->s, "false", 5) == 0)
			want = false;
		else
			return CFAIL(c, -EINVAL, v->line, p->name, "exists takes true or false");
		cp->kind = PK_EXISTS;
		if (!want) {
			struct ct *nt = ct_new(c, RC_NOT);
			if (!nt || !(nt->kids = arena_alloc(&c->tmp, sizeof(*nt->kids))))
				return ct_fail_alloc(c, p->line);
			nt->n = 1;
			nt->kids[0] = t;
			*out = nt;
		}
		return 0;
	}

	switch (type) {
	case FT_STRING:
	case FT_STRLIST: {
		bool eq = p->op == ROP_EQUALS || p->op == ROP_IN;
		bool has_empty = false;
		for (uint32_t i = 0; i < vs.n; i++) {
			if ((ret = check_string(c, p, vs.v[i], eq)) < 0)
				return ret;
			has_empty |= vs.v[i]->len == 0;
			uint64_t rep;
			if (p->op == ROP_REGEX &&
			    (rep = regex_max_repeat(vs.v[i]->s, vs.v[i]->len)) >
				RULES_MAX_REGEX_REPEAT)
				return CFAIL(c, -E2BIG, vs.v[i]->line, p->name,
					     "regex: repeat bound %llu above %u",
					     (unsigned long long)rep, RULES_MAX_REGEX_REPEAT);
		}
		/* event.action selects buckets; it and "" are compared directly, not scanned */
		if (eq && (has_empty || (id == F_EVENT_ACTION && !p->caseless)))
			cp->kind = PK_STR_EQ;
		else
			cp->kind = PK_SCAN;
		cp->op = eq ? ROP_EQUALS : p->op;
		return add_strs(c, &vs, cp->kind == PK_STR_EQ && p->caseless, cp);
	}
	case FT_INT: {
		struct ruleset *rs = c->rs;
		if (p->op >= ROP_LT && p->op <= ROP_GTE) {
			if (parse_i64(vs.v[0]->s, vs.v[0]->len, &cp->num) < 0)
				return CFAIL(c, -EINVAL, vs.v[0]->line, p->name,
					     "%s takes an integer", op);
			cp->kind = PK_INT_CMP;
			cp->cmp = p->op == ROP_LT    ? CMP_LT
				  : p->op == ROP_LTE ? CMP_LE
				  : p->op == ROP_GT  ? CMP_GT
						     : CMP_GE;
			return 0;
		}
		if ((ret = grow_arr((void **)&rs->ints, &c->cap_ints, (size_t)rs->n_ints + vs.n,
				    sizeof(*rs->ints), RULES_MAX_VALUES)) < 0)
			return ret;
		int64_t *iv = rs->ints + rs->n_ints;
		for (uint32_t i = 0; i < vs.n; i++) {
			if (parse_i64(vs.v[i]->s, vs.v[i]->len, &iv[i]) < 0)
				return CFAIL(c, -EINVAL, vs.v[i]->line, p->name,
					     "%s: '%.64s' is not an integer", op, vs.v[i]->s);
		}
		qsort(iv, vs.n, sizeof(*iv), cmp_i64);
		uint32_t u = 0;
		for (uint32_t i = 0; i < vs.n; i++) {
			if (u == 0 || iv[u - 1] != iv[i])
				iv[u++] = iv[i];
		}
		cp->kind = PK_INT_IN;
		cp->off = rs->n_ints;
		cp->n = u;
		rs->n_ints += u;
		return 0;
	}
	case FT_IP: {
		struct ruleset *rs = c->rs;
		bool cidr = p->op == ROP_CIDR;
		if ((ret = grow_arr((void **)&rs->nets, &c->cap_nets, (size_t)rs->n_nets + vs.n,
				    sizeof(*rs->nets), RULES_MAX_VALUES)) < 0)
			return ret;
		for (uint32_t i = 0; i < vs.n; i++) {
			if (parse_net(vs.v[i]->s, vs.v[i]->len, cidr, &rs->nets[rs->n_nets + i]) <
			    0)
				return CFAIL(c, -EINVAL, vs.v[i]->line, p->name,
					     cidr ? "%s: '%.64s' is not a CIDR such as 10.0.0.0/8"
						  : "%s: '%.64s' is not an IP address",
					     op, vs.v[i]->s);
		}
		cp->kind = PK_IP_IN;
		cp->off = rs->n_nets;
		cp->n = vs.n;
		rs->n_nets += vs.n;
		return 0;
	}
	case FT_BOOL:
		cp->kind = PK_BOOL_EQ;
		for (uint32_t i = 0; i < vs.n; i++) {
			const struct rval *v = vs.v[i];
			if (v->len == 4 && memcmp(v->s, "true", 4) == 0)
				cp->num |= 2;
			else if (v->len == 5 && memcmp(v->s, "false", 5) == 0)
				cp->num |= 1;
			else
				return CFAIL(c, -EINVAL, v->line, p->name, "%s takes true or false",
					     op);
		}
		return 0;
	}
	return CFAIL(c, -EINVAL, p->line, p->name, "unsupported field type");
}

static int build(struct cc *c, const struct rcond *r, unsigned depth, struct ct **out);

static int build_kids(struct cc *c, const struct rcond *r, unsigned depth, struct ct **out)
{
	struct ct **kids = arena_array(&c->tmp, r->n, sizeof(*kids));
	uint32_t total = 0;
	int ret;
	if (!kids)
		return -ENOMEM;
	for (uint32_t i = 0; i < r->n; i++) {
		if ((ret = build(c, r->kids[i], depth + 1, &kids[i])) < 0)
			return ret;
		total += kids[i]->kind == r->kind ? kids[i]->n : 1;
	}
	if (total == 1) {
		*out = kids[0]->kind == r->kind ? kids[0]->kids[0] : kids[0];
		return 0;
	}
	struct ct *t = ct_new(c, r->kind);
	if (!t || !(t->kids = arena_array(&c->tmp, total, sizeof(*t->kids))))
		return ct_fail_alloc(c, r->line);
	/* all inside all (and any inside any) is one level */
	for (uint32_t i = 0; i < r->n; i++) {
		if (kids[i]->kind == r->kind) {
			memcpy(t->kids + t->n, kids[i]->kids, kids[i]->n * sizeof(*t->kids));
			t->n += kids[i]->n;
		} else {
			t->kids[t->n++] = kids[i];
		}
	}
	*out = t;
	return 0;
}

static int build(struct cc *c, const struct rcond *r, unsigned depth, struct ct **out)
{
	int ret;
	/* checked before recursing: macros can nest, and they count */
	if (depth > RULES_MAX_CONDITION_DEPTH)
		return CFAIL(c, -E2BIG, r->line, "condition",
			     "nested deeper than %u levels (macros expanded)",
			     RULES_MAX_CONDITION_DEPTH);
	switch (r->kind) {
	case RC_ALL:
	case RC_ANY:
		return build_kids(c, r, depth, out);
	case RC_NOT: {
		struct ct *kid;
		if ((ret = build(c, r->kids[0], depth + 1, &kid)) < 0)
			return ret;
		if (kid->kind == RC_NOT) {
			*out = kid->kids[0];
			return 0;
		}
		struct ct *t = ct_new(c, RC_NOT);
		if (!t || !(t->kids = arena_alloc(&c->tmp, sizeof(*t->kids))))
			return ct_fail_alloc(c, r->line);
		t->n = 1;
		t->kids[0] = kid;
		*out = t;
		return 0;
	}
	case RC_MACRO: {
		struct rmacro *m = find_macro(c, r->name);
		if (!m)
			return CFAIL(c, -EINVAL, r->line, "macro", "unknown macro '%s'", r->name);
		if (m->state == 1)
			return CFAIL(c, -EINVAL, r->line, "macro", "macro '%s' refers to itself",
				     r->name);
		m->state = 1;
		ret = build(c, m->cond, depth + 1, out);
		m->state = 0;
		return ret;
	}
	case RC_PRED:
		return compile_pred(c, r, out);
	}
	return CFAIL(c, -EINVAL, r->line, "condition", "bad condition node");
}

/* --- analysis and emission --- */

/* Whether @t can hold when no PK_SCAN predicate matched (other predicates unknown). */
static bool can_hold_without_hits(const struct ruleset *rs, const struct ct *t)
{
	switch (t->kind) {
	case RC_PRED:
		return rs->preds[t->pred].kind != PK_SCAN;
	case RC_ALL:
		for (uint32_t i = 0; i < t->n; i++) {
			if (!can_hold_without_hits(rs, t->kids[i]))
				return false;
		}
		return true;
	case RC_ANY:
		for (uint32_t i = 0; i < t->n; i++) {
			if (can_hold_without_hits(rs, t->kids[i]))
				return true;
		}
		return false;
	default:
		return true;
	}
}

/* As can_hold_without_hits, with regex predicates counted as unknown. */
static bool can_hold_without_literals(const struct ruleset *rs, const struct ct *t)
{
	switch (t->kind) {
	case RC_PRED:
		return rs->preds[t->pred].kind != PK_SCAN || rs->preds[t->pred].op == ROP_REGEX;
	case RC_ALL:
		for (uint32_t i = 0; i < t->n; i++) {
			if (!can_hold_without_literals(rs, t->kids[i]))
				return false;
		}
		return true;
	case RC_ANY:
		for (uint32_t i = 0; i < t->n; i++) {
			if (can_hold_without_literals(rs, t->kids[i]))
				return true;
		}
		return false;
	default:
		return true;
	}
}

/*
 * The PK_SCAN predicates among the top-level conjuncts must all match for the program to
 * hold: the engine evaluates it only once they have.
 */
static void mark_required(struct cc *c, struct cprog *pr, const struct ct *root)
{
	struct ruleset *rs = c->rs;
	const struct ct *const *kids = &root;
	uint32_t n = 1;
	if (root->kind == RC_ALL) {
		kids = (const struct ct *const *)root->kids;
		n = root->n;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (kids[i]->kind == RC_PRED && rs->preds[kids[i]->pred].kind == PK_SCAN &&
		    !c->req[kids[i]->pred - pr->pred_base]) {
			c->req[kids[i]->pred - pr->pred_base] = 1;
			pr->n_req++;
		}
	}
}

/* Narrows the program's action set by a top-level event.action equality. */
static int constrain_actions(struct cc *c, const struct cpred *cp)
{
	struct ruleset *rs = c->rs;
	uint32_t next[RULES_MAX_ACTIONS], n = 0;
	int ret;

	if (cp->n > RULES_MAX_ACTIONS)
		return CFAIL(c, -E2BIG, cp->line, "event.action",
			     "more than %u event.action values", RULES_MAX_ACTIONS);
	for (uint32_t i = 0; i < cp->n; i++) {
		const struct cstr *s = &rs->strs[cp->off + i];
		uint32_t id;
		if ((ret = action_intern(c, rs->blob + s->off, s->len, &id)) < 0)
			return ret == -E2BIG ? CFAIL(c, -E2BIG, cp->line, "event.action",
						     "more than %u distinct event.action values",
						     RULES_MAX_ACTIONS)
					     : ret;
		bool keep = !c->act_constrained;
		for (uint32_t k = 0; !keep && k < c->n_act; k++)
			keep = c->act[k] == id;
		bool dup = false;
		for (uint32_t k = 0; k < n; k++)
			dup |= next[k] == id;
		if (keep && !dup)
			next[n++] = id;
	}
	memcpy(c->act, next, n * sizeof(*next));
	c->n_act = n;
	c->act_constrained = true;
	c->act_empty = n == 0;
	return 0;
}

static int find_actions(struct cc *c, const struct ct *root)
{
	const struct ct *const *kids = &root;
	uint32_t n = 1;
	int ret;

	c->n_act = 0;
	c->act_constrained = false;
	c->act_empty = false;
	if (root->kind == RC_ALL) {
		kids = (const struct ct *const *)root->kids;
		n = root->n;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (kids[i]->kind != RC_PRED)
			continue;
		const struct cpred *cp = &c->rs->preds[kids[i]->pred];
		if (cp->field == F_EVENT_ACTION && cp->kind == PK_STR_EQ &&
		    !(cp->flags & PF_CASELESS))
			if ((ret = constrain_actions(c, cp)) < 0)
				return ret;
	}
	return 0;
}

struct emit {
	struct cc *c;
	uint32_t base; /* first instruction of the program */
	uint32_t pred_base;
	uint32_t line;
};

static int emit_insn(struct emit *e, uint8_t op, uint32_t arg, uint32_t *at)
{
	struct ruleset *rs = e->c->rs;
	int ret;
	if (rs->n_code - e->base >= RULES_MAX_PROGRAM_INSNS)
		return CFAIL(e->c, -E2BIG, e->line, "condition",
			     "program longer than %u instructions", RULES_MAX_PROGRAM_INSNS);
	if ((ret = grow_arr((void **)&rs->code, &e->c->cap_code, (size_t)rs->n_code + 1,
			    sizeof(*rs->code), UINT32_MAX / sizeof(*rs->code))) < 0)
		return ret;
	if (at)
		*at = rs->n_code;
	rs->code[rs->n_code].op = op;
	rs->code[rs->n_code].arg = arg;
	rs->n_code++;
	return 0;
}

static int emit(struct emit *e, const struct ct *t)
{
	struct ruleset *rs = e->c->rs;
	int ret;
	switch (t->kind) {
	case RC_PRED:
		return emit_insn(e, OP_PRED, t->pred - e->pred_base, NULL);
	case RC_NOT:
		if ((ret = emit(e, t->kids[0])) < 0)
			return ret;
		return emit_insn(e, OP_NOT, 0, NULL);
	case RC_ALL:
	case RC_ANY: {
		uint32_t *jumps = arena_array(&e->c->tmp, t->n, sizeof(*jumps)), nj = 0;
		if (!jumps)
			return -ENOMEM;
		for (uint32_t i = 0; i < t->n; i++) {
			if ((ret = emit(e, t->kids[i])) < 0)
				return ret;
			if (i + 1 == t->n)
				break;
			/* short circuit: the first false (all) or true (any) is the answer */
			if ((ret = emit_insn(e, t->kind == RC_ALL ? OP_JF : OP_JT, 0,
					     &jumps[nj++])) < 0 ||
			    (ret = emit_insn(e, OP_POP, 0, NULL)) < 0)
				return ret;
		}
		for (uint32_t i = 0; i < nj; i++)
			rs->code[jumps[i]].arg = rs->n_code - (jumps[i] + 1);
		return 0;
	}
	}
	return -EINVAL;
}

static int resolve_by(struct cc *c, const char *by, uint32_t line, int32_t *out)
{
	*out = -1;
	if (!by)
		return 0;
	int id = registry_lookup(by, strlen(by));
	if (id < 0)
		return CFAIL(c, -EINVAL, line, by,
			     "unknown field (not in the registry of schema version %d)",
			     SCHEMA_VERSION);
	enum field_type t = registry_field(id)->type;
	if (t == FT_STRLIST || t == FT_BOOL)
		return CFAIL(c, -EINVAL, line, by, "a field of type %s cannot be a state key",
			     registry_type_name(t));
	*out = id;
	return 0;
}

/* Compiles @cond (and @extra, ANDed, when not NULL) into one program. */
static int compile_prog(struct cc *c, uint32_t rule, uint32_t step, const struct rcond *cond,
			const struct rcond *extra, uint32_t line, const char *by, uint32_t by_line,
			struct cprog *pr)
{
	struct ruleset *rs = c->rs;
	struct ct *root, *more;
	int ret;

	memset(pr, 0, sizeof(*pr));
	pr->rule = rule;
	pr->step = step;
	pr->pred_base = rs->n_preds;
	pr->code_off = rs->n_code;
	c->rule_nodes = 0;
	if ((ret = build(c, cond, 1, &root)) < 0)
		return ret;
	if (extra) {
		if ((ret = build(c, extra, 1, &more)) < 0)
			return ret;
		struct ct *t = ct_new(c, RC_ALL);
		if (!t || !(t->kids = arena_array(&c->tmp, 2, sizeof(*t->kids))))
			return ct_fail_alloc(c, line);
		t->n = 2;
		t->kids[0] = root;
		t->kids[1] = more;
		root = t;
		/* flatten, so event.action constraints of both are found at the top */
		uint32_t total = 0;
		for (uint32_t i = 0; i < 2; i++)
			total += t->kids[i]->kind == RC_ALL ? t->kids[i]->n : 1;
		struct ct **kids = arena_array(&c->tmp, total, sizeof(*kids));
		if (!kids)
			return -ENOMEM;
		uint32_t k = 0;
		for (uint32_t i = 0; i < 2; i++) {
			if (t->kids[i]->kind == RC_ALL) {
				memcpy(kids + k, t->kids[i]->kids, t->kids[i]->n * sizeof(*kids));
				k += t->kids[i]->n;
			} else {
				kids[k++] = t->kids[i];
			}
		}
		t->kids = kids;
		t->n = total;
	}
	pr->n_preds = rs->n_preds - pr->pred_base;
	memset(c->req, 0, pr->n_preds);
	struct emit e = {.c = c, .base = rs->n_code, .pred_base = pr->pred_base, .line = line};
	if ((ret = emit(&e, root)) < 0)
		return ret;
	pr->n_code = rs->n_code - pr->code_off;
	/*
	 * A program that needs a literal hit anyway runs its regexes only when it is evaluated
	 * (and its short circuit reaches them); the others' regexes join the field's database.
	 */
	if (!can_hold_without_literals(rs, root)) {
		for (uint32_t k = pr->pred_base; k < rs->n_preds; k++) {
			if (rs->preds[k].kind == PK_SCAN && rs->preds[k].op == ROP_REGEX)
				rs->preds[k].kind = PK_REGEX;
		}
	}
	pr->needs_hit = !can_hold_without_hits(rs, root);
	mark_required(c, pr, root);
	if ((ret = find_actions(c, root)) < 0)
		return ret;
	if (c->act_empty)
		return CFAIL(c, -EINVAL, line, "event.action",
			     "the condition requires event.action to have two different values "
			     "at once");
	if ((ret = grow_arr((void **)&c->pred_req, &c->cap_req, rs->n_preds, 1,
			    RULES_MAX_PREDICATES)) < 0)
		return ret;
	memcpy(c->pred_req + pr->pred_base, c->req, pr->n_preds);
	if ((ret = grow_arr((void **)&rs->act_ids, &c->cap_act, (size_t)rs->n_act_ids + c->n_act,
			    sizeof(*rs->act_ids), UINT32_MAX / 8)) < 0)
		return ret;
	pr->act_off = rs->n_act_ids;
	pr->n_act = c->n_act;
	if (c->n_act) {
		memcpy(rs->act_ids + rs->n_act_ids, c->act, c->n_act * sizeof(*c->act));
		rs->n_act_ids += c->n_act;
	}
	return resolve_by(c, by, by_line, &pr->by_field);
}

/* "attack.t1059.004" -> "T1059.004"; NULL for any other tag. */
static char *technique_of(struct arena *a, const char *tag)
{
	size_t len = strlen(tag);
	if (len < 12 || strncmp(tag, "attack.", 7) != 0 || (tag[7] != 't' && tag[7] != 'T'))
		return NULL;
	const char *d = tag + 8;
	for (int i = 0; i < 4; i++) {
		if (d[i] < '0' || d[i] > '9')
			return NULL;
	}
	if (len != 12) {
		if (len != 16 || d[4] != '.')
			return NULL;
		for (int i = 5; i < 8; i++) {
			if (d[i] < '0' || d[i] > '9')
				return NULL;
		}
	}
	char *t = arena_strndup(a, tag + 7, len - 7);
	if (t)
		t[0] = 'T';
	return t;
}

static int keep_rule_texts(struct cc *c, const struct rrule *r, struct crule *cr, size_t index)
{
	struct arena *a = &c->rs->keep;
	struct rule_info *info = &cr->info;
	const char **tech = arena_array(a, r->n_tags ? r->n_tags : 1, sizeof(*tech));
	if (!tech || !(info->id = arena_strndup(a, r->id, strlen(r->id))) ||
	    !(info->name = arena_strndup(a, r->name, strlen(r->name))) ||
	    !(info->description = arena_strndup(a, r->description, strlen(r->description))) ||
	    !(info->level = arena_strndup(a, r->level, strlen(r->level))) ||
	    !(info->file = arena_strndup(a, r->file, strlen(r->file))))
		return -ENOMEM;
	for (uint32_t i = 0; i < r->n_tags; i++) {
		char *t = technique_of(a, r->tags[i]);
		bool dup = false;
		for (size_t k = 0; t && k < info->n_techniques; k++)
			dup |= strcmp(tech[k], t) == 0;
		if (t && !dup)
			tech[info->n_techniques++] = t;
	}
	info->techniques = tech;
	info->kill = r->kill;
	info->line = r->line;
	info->index = index;
	cr->kind = r->kind;
	cr->count = r->count;
	cr->within_ns = r->within_ns;
	/* test events move to the ruleset: the agent runs them before activating content */
	cr->n_tests = r->n_tests;
	cr->tests = arena_array(a, r->n_tests ? r->n_tests : 1, sizeof(*cr->tests));
	if (!cr->tests)
		return -ENOMEM;
	for (uint32_t t = 0; t < r->n_tests; t++) {
		const struct rtest *src = &r->tests[t];
		struct rtest *dst = &cr->tests[t];
		*dst = *src;
		dst->json = arena_array(a, src->n, sizeof(*dst->json));
		dst->lens = arena_array(a, src->n, sizeof(*dst->lens));
		if (!dst->json || !dst->lens)
			return -ENOMEM;
		for (uint32_t e = 0; e < src->n; e++) {
			dst->json[e] = arena_strndup(a, src->json[e], src->lens[e]);
			dst->lens[e] = src->lens[e];
			if (!dst->json[e])
				return -ENOMEM;
		}
	}
	c->rs->n_tests += r->n_tests;
	return 0;
}

static int compile_rule(struct cc *c, uint32_t index)
{
	const struct rrule *r = &c->ast->rules[index];
	struct ruleset *rs = c->rs;
	struct crule *cr = &rs->rules[index];
	uint32_t n_progs = r->kind == RK_SEQUENCE ? r->n_steps : 1;
	int ret;

	c->rule = r;
	c->rule_preds = 0;
	arena_release(&c->tmp);
	if ((ret = keep_rule_texts(c, r, cr, index)) < 0)
		return ret;
	if ((ret = grow_arr((void **)&rs->progs, &c->cap_progs, (size_t)rs->n_progs + n_progs,
			    sizeof(*rs->progs),
			    (size_t)RULES_MAX_RULES * RULES_MAX_SEQUENCE_STEPS)) < 0)
		return ret;
	cr->prog_first = rs->n_progs;
	cr->n_progs = n_progs;
	if (r->kind != RK_SEQUENCE) {
		ret = compile_prog(c, index, 0, r->cond, NULL, r->cond_line, r->by, r->by_line,
				   &rs->progs[rs->n_progs]);
		if (ret < 0)
			return ret;
		rs->n_progs++;
		return 0;
	}
	/* last step first: an event is offered to later steps before it can start a sequence */
	for (uint32_t k = 0; k < r->n_steps; k++) {
		uint32_t s = r->n_steps - 1 - k;
		const struct rstep *st = &r->steps[s];
		ret =
		    compile_prog(c, index, s, st->cond, r->cond, st->line, st->by ? st->by : r->by,
				 st->by ? st->by_line : r->by_line, &rs->progs[rs->n_progs]);
		if (ret < 0)
			return ret;
		rs->n_progs++;
	}
	return 0;
}

void ruleset_free(struct ruleset *rs)
{
	if (!rs)
		return;
	hsdb_free(rs);
	free(rs->rules);
	free(rs->progs);
	free(rs->preds);
	free(rs->pred_prog);
	free(rs->pred_req);
	free(rs->code);
	free(rs->strs);
	free(rs->ints);
	free(rs->nets);
	free(rs->blob);
	free(rs->actions);
	free(rs->act_ids);
	arena_release(&rs->keep);
	free(rs);
}

int rules_compile(struct rules_ast *ast, struct ruleset **out, char *err, size_t errlen)
{
	return rules_compile_cached(ast, NULL, out, err, errlen);
}

int ruleset_load_sources_cached(const struct rules_source *src, size_t n, struct rules_cache *cache,
				struct ruleset **out, char *err, size_t errlen)
{
	struct rules_ast *ast = NULL;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if ((ret = rules_parse(src, n, &ast, err, errlen)) < 0)
		return ret;
	ret = rules_compile_cached(ast, cache, out, err, errlen);
	rules_ast_free(ast);
	if (ret == -ENOMEM && err && errlen && !err[0])
		snprintf(err, errlen, "out of memory while compiling rules");
	return ret;
}

int rules_compile_cached(struct rules_ast *ast, struct rules_cache *cache, struct ruleset **out,
			 char *err, size_t errlen)
{
	struct cc c = {.ast = ast, .err = err, .errlen = errlen};
	struct ruleset *rs;
	int ret;

	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	c.rs = rs;
	arena_init(&rs->keep, (size_t)RULES_MAX_TOTAL_BYTES * 4);
	arena_init(&c.tmp, (size_t)256 * 1024 * 1024);
	if ((ret = check_names(&c)) < 0 || (ret = check_ids(&c)) < 0)
		goto out_fail;
	rs->rules = calloc(ast->n_rules ? ast->n_rules : 1, sizeof(*rs->rules));
	if (!rs->rules) {
		ret = -ENOMEM;
		goto out_fail;
	}
	rs->n_rules = ast->n_rules;
	for (uint32_t i = 0; i < ast->n_rules; i++) {
		if ((ret = compile_rule(&c, i)) < 0)
			goto out_fail;
	}
	c.rule = NULL;
	rs->pred_prog = malloc((rs->n_preds ? rs->n_preds : 1) * sizeof(*rs->pred_prog));
	if (!rs->pred_prog) {
		ret = -ENOMEM;
		goto out_fail;
	}
	for (uint32_t p = 0; p < rs->n_progs; p++) {
		for (uint32_t k = 0; k < rs->progs[p].n_preds; k++)
			rs->pred_prog[rs->progs[p].pred_base + k] = p;
	}
	rs->pred_req = c.pred_req;
	c.pred_req = NULL;
	if (!rs->pred_req && !(rs->pred_req = calloc(1, 1))) {
		ret = -ENOMEM;
		goto out_fail;
	}
	if ((ret = hsdb_build(rs, cache, err, errlen)) < 0)
		goto out_fail;
	/* nothing runs that the verifier has not passed */
	if ((ret = ruleset_verify(rs, err, errlen)) < 0)
		goto out_fail;
	/* hsdb_build counted the on-demand regexes, which no database holds */
	rs->bytes += sizeof(*rs) + rs->n_rules * sizeof(*rs->rules) +
		     rs->n_progs * sizeof(*rs->progs) +
		     rs->n_preds * (sizeof(*rs->preds) + sizeof(*rs->pred_prog)) +
		     rs->n_code * sizeof(*rs->code) + rs->n_strs * sizeof(*rs->strs) +
		     rs->n_ints * sizeof(*rs->ints) + rs->n_nets * sizeof(*rs->nets) +
		     rs->blob_len + rs->keep.used;
	for (uint32_t i = 0; i < rs->n_dbs; i++)
		rs->bytes += rs->dbs[i].bytes;
	*out = rs;
	goto out_tmp;
out_fail:
	if (ret == -ENOMEM && err && errlen)
		snprintf(err, errlen, "out of memory while compiling rules");
	ruleset_free(rs);
out_tmp:
	arena_release(&c.tmp);
	free(c.lists);
	free(c.macros);
	free(c.pred_req);
	return ret;
}

size_t ruleset_count(const struct ruleset *rs)
{
	return rs ? rs->n_rules : 0;
}

const struct rule_info *ruleset_rule(const struct ruleset *rs, size_t i)
{
	if (!rs || i >= rs->n_rules)
		return NULL;
	return &rs->rules[i].info;
}

const struct rule_info *ruleset_find(const struct ruleset *rs, const char *id)
{
	for (uint32_t i = 0; rs && id && i < rs->n_rules; i++) {
		if (strcmp(rs->rules[i].info.id, id) == 0)
			return &rs->rules[i].info;
	}
	return NULL;
}

void ruleset_get_stats(const struct ruleset *rs, struct ruleset_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!rs)
		return;
	out->rules = rs->n_rules;
	out->programs = rs->n_progs;
	out->predicates = rs->n_preds;
	out->patterns = rs->n_patterns;
	out->databases = rs->n_dbs;
	out->buckets = rs->n_buckets;
	out->tests = rs->n_tests;
	out->memory_bytes = rs->bytes;
}
