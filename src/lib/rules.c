/*
 * Rule files to AST: YAML read with libyaml's event parser into a bounded tree (depth and node
 * count capped before anything recurses), then checked against docs/rules.md's shapes.
 * Field names, types and values are the compiler's business (compile.c).
 */
#include "rules.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "compile_int.h"
#include "event.h"
#include "event_json.h"

/* --- arena --- */

struct arena_chunk {
	struct arena_chunk *next;
	size_t size, used;
	max_align_t data[];
};

#define ARENA_CHUNK (64u * 1024u)

void arena_init(struct arena *a, size_t max)
{
	a->head = NULL;
	a->used = 0;
	a->max = max;
}

void arena_release(struct arena *a)
{
	if (!a)
		return;
	struct arena_chunk *c = a->head;
	while (c) {
		struct arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used = 0;
}

void *arena_alloc(struct arena *a, size_t size)
{
	struct arena_chunk *c = a->head;
	size_t need;

	if (size_add(size, 7, &need) < 0)
		return NULL;
	need &= ~(size_t)7;
	if (need == 0)
		need = 8;
	if (need > a->max || a->used > a->max - need)
		return NULL;
	if (!c || c->size - c->used < need) {
		size_t chunk = need > ARENA_CHUNK ? need : ARENA_CHUNK;
		size_t total;
		if (size_add(sizeof(*c), chunk, &total) < 0)
			return NULL;
		c = malloc(total);
		if (!c)
			return NULL;
		c->size = chunk;
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += need;
	a->used += need;
	memset(p, 0, need);
	return p;
}

void *arena_array(struct arena *a, size_t n, size_t size)
{
	size_t total;
	if (size_mul(n, size, &total) < 0)
		return NULL;
	return arena_alloc(a, total);
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
	if (len == SIZE_MAX)
		return NULL;
	char *p = arena_alloc(a, len + 1);
	if (!p)
		return NULL;
	if (len)
		memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* --- small checks --- */

bool rules_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < len) {
		unsigned c = s[i], cp, n;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i < n)
			return false;
		for (unsigned k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

bool rules_id_valid(const char *s, size_t len)
{
	if (len < 1 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!name_char(s[i]))
			return false;
	}
	return true;
}

int rules_fail(char *err, size_t errlen, int code, const char *file, unsigned line,
	       const char *field, const char *fmt, ...)
{
	char reason[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	char where[64] = "";

	if (line)
		snprintf(where, sizeof(where), ":%u", line);
	if (err && errlen) {
		if (field && *field)
			snprintf(err, errlen, "%s%s: %s: %s", file ? file : "-", where, field,
				 reason);
		else
			snprintf(err, errlen, "%s%s: %s", file ? file : "-", where, reason);
		/* one line, whatever the rule's text held (a key or value quoted in it) */
		text_one_line(err);
	}
	return code;
}

static const char *const rop_names[ROP_COUNT][2] = {
    [ROP_EQUALS] = {"equals", "iequals"},
    [ROP_CONTAINS] = {"contains", "icontains"},
    [ROP_STARTSWITH] = {"startswith", "istartswith"},
    [ROP_ENDSWITH] = {"endswith", "iendswith"},
    [ROP_IN] = {"in", "iin"},
    [ROP_REGEX] = {"regex", NULL},
    [ROP_CIDR] = {"cidr", NULL},
    [ROP_LT] = {"lt", NULL},
    [ROP_LTE] = {"lte", NULL},
    [ROP_GT] = {"gt", NULL},
    [ROP_GTE] = {"gte", NULL},
    [ROP_EXISTS] = {"exists", NULL},
};

const char *rop_name(enum rop op, bool caseless)
{
	if ((unsigned)op >= ROP_COUNT)
		return "?";
	const char *n = rop_names[op][caseless ? 1 : 0];
	return n ? n : rop_names[op][0];
}

static bool rop_lookup(const char *s, size_t len, enum rop *op, bool *caseless)
{
	for (int i = 0; i < ROP_COUNT; i++) {
		for (int k = 0; k < 2; k++) {
			const char *n = rop_names[i][k];
			if (n && strlen(n) == len && memcmp(n, s, len) == 0) {
				*op = (enum rop)i;
				*caseless = k == 1;
				return true;
			}
		}
	}
	return false;
}

/* --- YAML to a bounded tree --- */

enum ynode_kind { YN_SCALAR, YN_SEQ, YN_MAP };

struct ynode {
	uint8_t kind;
	bool plain;
	uint32_t line;
	uint32_t n; /* scalar bytes, sequence items, mapping pairs */
	char *s;
	struct ynode **kids; /* mapping: key, value, key, value ... */
};

struct yopen {
	struct ynode *node;
	size_t first;
};

struct yload {
	const char *file;
	char *err;
	size_t errlen;
	struct arena *a;
	struct ynode **pend;
	size_t n_pend, cap_pend;
	struct yopen open[RULES_MAX_YAML_DEPTH];
	unsigned depth;
	size_t nodes;
	struct ynode *root;
};

static int yl_push(struct yload *y, struct ynode *node)
{
	if (y->depth == 0) {
		y->root = node;
		return 0;
	}
	if (y->n_pend == y->cap_pend) {
		size_t cap = y->cap_pend ? y->cap_pend * 2 : 256, bytes;
		if (size_mul(cap, sizeof(*y->pend), &bytes) < 0)
			return -ENOMEM;
		struct ynode **p = realloc(y->pend, bytes);
		if (!p)
			return -ENOMEM;
		y->pend = p;
		y->cap_pend = cap;
	}
	y->pend[y->n_pend++] = node;
	return 0;
}

static struct ynode *yl_node(struct yload *y, uint8_t kind, const yaml_mark_t *mark)
{
	if (y->nodes >= RULES_MAX_YAML_NODES)
		return NULL;
	struct ynode *n = arena_alloc(y->a, sizeof(*n));
	if (!n)
		return NULL;
	y->nodes++;
	n->kind = kind;
	n->line = (uint32_t)mark->line + 1;
	return n;
}

static int cmp_key(const void *x, const void *y)
{
	const struct ynode *a = *(struct ynode *const *)x, *b = *(struct ynode *const *)y;
	if (a->n != b->n)
		return a->n < b->n ? -1 : 1;
	int c = memcmp(a->s, b->s, a->n);
	if (c)
		return c;
	return a->line < b->line ? -1 : a->line > b->line;
}

/* Checks mapping @m for non-scalar and duplicate keys. */
static int yl_check_map(struct yload *y, struct ynode *m)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct ynode *k = m->kids[2 * i];
		if (k->kind != YN_SCALAR)
			return rules_fail(y->err, y->errlen, -EINVAL, y->file, k->line, NULL,
					  "mapping keys must be plain strings");
	}
	if (m->n < 2)
		return 0;
	struct ynode **keys = malloc(m->n * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->n; i++)
		keys[i] = m->kids[2 * i];
	qsort(keys, m->n, sizeof(*keys), cmp_key);
	int ret = 0;
	for (uint32_t i = 1; i < m->n; i++) {
		if (keys[i]->n == keys[i - 1]->n &&
		    memcmp(keys[i]->s, keys[i - 1]->s, keys[i]->n) == 0) {
			ret = rules_fail(y->err, y->errlen, -EINVAL, y->file, keys[i]->line,
					 keys[i]->s, "key given twice (first on line %u)",
					 keys[i - 1]->line);
			break;
		}
	}
	free(keys);
	return ret;
}

static unsigned offset_line(const char *data, size_t len, size_t off)
{
	unsigned line = 1;
	for (size_t i = 0; i < off && i < len; i++)
		line += data[i] == '\n';
	return line;
}

/*
 * Reads @len bytes of YAML into a tree in @a. An empty document gives *@root == NULL.
 * Anchors, aliases and more than one document are refused.
 */
static int yaml_load_tree(const char *file, const char *data, size_t len, struct arena *a,
			  struct ynode **root, char *err, size_t errlen)
{
	struct yload y = {.file = file, .err = err, .errlen = errlen, .a = a};
	yaml_parser_t parser;
	yaml_event_t ev;
	int ret = 0, docs = 0;
	bool done = false;

	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	while (!done && ret == 0) {
		if (!yaml_parser_parse(&parser, &ev)) {
			unsigned line = parser.error == YAML_READER_ERROR
					    ? offset_line(data, len, parser.problem_offset)
					    : (unsigned)parser.problem_mark.line + 1;
			if (parser.error == YAML_MEMORY_ERROR)
				ret = -ENOMEM;
			else
				ret = rules_fail(err, errlen, -EINVAL, file, line, NULL,
						 "YAML: %s%s%s",
						 parser.problem ? parser.problem : "syntax error",
						 parser.context ? " " : "",
						 parser.context ? parser.context : "");
			break;
		}
		unsigned line = (unsigned)ev.start_mark.line + 1;
		struct ynode *n = NULL;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				ret = rules_fail(err, errlen, -EINVAL, file, line, NULL,
						 "more than one YAML document");
			break;
		case YAML_ALIAS_EVENT:
			ret = rules_fail(err, errlen, -EINVAL, file, line, NULL,
					 "YAML aliases are not supported");
			break;
		case YAML_SCALAR_EVENT:
			if (ev.data.scalar.anchor) {
				ret = rules_fail(err, errlen, -EINVAL, file, line, NULL,
						 "YAML anchors are not supported");
				break;
			}
			if (ev.data.scalar.length > RULES_MAX_FILE_BYTES ||
			    !(n = yl_node(&y, YN_SCALAR, &ev.start_mark)) ||
			    !(n->s = arena_strndup(a, (const char *)ev.data.scalar.value,
						   ev.data.scalar.length))) {
				ret = y.nodes >= RULES_MAX_YAML_NODES
					  ? rules_fail(err, errlen, -E2BIG, file, line, NULL,
						       "more than %u YAML nodes",
						       RULES_MAX_YAML_NODES)
					  : -ENOMEM;
				break;
			}
			n->n = (uint32_t)ev.data.scalar.length;
			n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
			ret = yl_push(&y, n);
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT: {
			bool seq = ev.type == YAML_SEQUENCE_START_EVENT;
			const yaml_char_t *anchor =
			    seq ? ev.data.sequence_start.anchor : ev.data.mapping_start.anchor;
			if (anchor) {
				ret = rules_fail(err, errlen, -EINVAL, file, line, NULL,
						 "YAML anchors are not supported");
				break;
			}
			if (y.depth >= RULES_MAX_YAML_DEPTH) {
				ret =
				    rules_fail(err, errlen, -E2BIG, file, line, NULL,
					       "YAML nested deeper than %u levels (conditions nest "
					       "at most %u deep)",
					       RULES_MAX_YAML_DEPTH, RULES_MAX_CONDITION_DEPTH);
				break;
			}
			if (!(n = yl_node(&y, seq ? YN_SEQ : YN_MAP, &ev.start_mark))) {
				ret = y.nodes >= RULES_MAX_YAML_NODES
					  ? rules_fail(err, errlen, -E2BIG, file, line, NULL,
						       "more than %u YAML nodes",
						       RULES_MAX_YAML_NODES)
					  : -ENOMEM;
				break;
			}
			if ((ret = yl_push(&y, n)) < 0)
				break;
			y.open[y.depth].node = n;
			y.open[y.depth].first = y.n_pend;
			y.depth++;
			break;
		}
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT: {
			if (NEVER(y.depth == 0)) {
				ret = -EINVAL;
				break;
			}
			struct yopen *o = &y.open[--y.depth];
			size_t count = y.n_pend - o->first;
			n = o->node;
			if (count) {
				n->kids = arena_array(a, count, sizeof(*n->kids));
				if (!n->kids) {
					ret = -ENOMEM;
					break;
				}
				memcpy(n->kids, y.pend + o->first, count * sizeof(*n->kids));
			}
			y.n_pend = o->first;
			if (n->kind == YN_MAP) {
				n->n = (uint32_t)(count / 2);
				ret = yl_check_map(&y, n);
			} else {
				n->n = (uint32_t)count;
			}
			break;
		}
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	free(y.pend);
	if (ret == 0)
		*root = y.root;
	return ret;
}

/* --- tree to AST --- */

struct pctx {
	struct rules_ast *ast;
	const char *file;
	char *err;
	size_t errlen;
	struct event *ev; /* test events are checked by parsing them */
	struct buf json;  /* test event being written */
	int schema;
	const char *rule_id; /* rule being parsed, for messages */
};

#define FAIL(c, code, line, field, ...)                                                            \
	rules_fail((c)->err, (c)->errlen, (code), (c)->file, (line), (field), __VA_ARGS__)

static const struct ynode *map_get(const struct ynode *m, const char *key)
{
	size_t len = strlen(key);
	for (uint32_t i = 0; m && m->kind == YN_MAP && i < m->n; i++) {
		const struct ynode *k = m->kids[2 * i];
		if (k->n == len && memcmp(k->s, key, len) == 0)
			return m->kids[2 * i + 1];
	}
	return NULL;
}

/* True when @k is the string @s (a mapping or list never is: their n counts children). */
static bool key_is(const struct ynode *k, const char *s)
{
	size_t len = strlen(s);
	return k->kind == YN_SCALAR && k->n == len && memcmp(k->s, s, len) == 0;
}

static const char *kind_name(const struct ynode *n)
{
	return n->kind == YN_MAP ? "a mapping" : n->kind == YN_SEQ ? "a list" : "a string";
}

/* A string value: scalar, no NUL, valid UTF-8, @min..@max bytes. */
static int get_text(struct pctx *c, const struct ynode *n, const char *field, size_t min,
		    size_t max, const char **out)
{
	if (n->kind != YN_SCALAR)
		return FAIL(c, -EINVAL, n->line, field, "expected a string, not %s", kind_name(n));
	if (memchr(n->s, '\0', n->n))
		return FAIL(c, -EINVAL, n->line, field, "value contains a NUL byte");
	if (!rules_utf8_valid(n->s, n->n))
		return FAIL(c, -EINVAL, n->line, field, "value is not valid UTF-8");
	if (n->n < min)
		return FAIL(c, -EINVAL, n->line, field, "value is empty");
	if (n->n > max)
		return FAIL(c, -E2BIG, n->line, field, "value longer than %zu bytes", max);
	*out = arena_strndup(&c->ast->arena, n->s, n->n);
	return *out ? 0 : -ENOMEM;
}

static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 20)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

static int get_uint(struct pctx *c, const struct ynode *n, const char *field, uint64_t min,
		    uint64_t max, uint64_t *out)
{
	if (n->kind != YN_SCALAR || parse_u64(n->s, n->n, UINT64_MAX, out) < 0)
		return FAIL(c, -EINVAL, n->line, field, "expected a whole number");
	if (*out < min || *out > max)
		return FAIL(c, *out > max ? -E2BIG : -EINVAL, n->line, field,
			    "expected a number from %llu to %llu", (unsigned long long)min,
			    (unsigned long long)max);
	return 0;
}

/* "10s", "5m", "2h". */
static int get_duration(struct pctx *c, const struct ynode *n, const char *field, uint64_t *ns)
{
	uint64_t v, mult;
	if (n->kind != YN_SCALAR || n->n < 2)
		return FAIL(c, -EINVAL, n->line, field,
			    "expected a duration such as 10s, 5m or 1h");
	switch (n->s[n->n - 1]) {
	case 's':
		mult = 1;
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 3600;
		break;
	default:
		return FAIL(c, -EINVAL, n->line, field,
			    "expected a duration such as 10s, 5m or 1h");
	}
	if (parse_u64(n->s, n->n - 1, RULES_MAX_WINDOW_SECONDS, &v) < 0 || v == 0 ||
	    v * mult > RULES_MAX_WINDOW_SECONDS)
		return FAIL(c, -EINVAL, n->line, field, "duration must be from 1s to %uh",
			    RULES_MAX_WINDOW_SECONDS / 3600);
	*ns = v * mult * 1000000000ull;
	return 0;
}

static int parse_cond(struct pctx *c, const struct ynode *n, unsigned depth, struct rcond **out);

static struct rcond *new_cond(struct pctx *c, uint8_t kind, uint32_t line)
{
	struct rcond *r = arena_alloc(&c->ast->arena, sizeof(*r));
	if (r) {
		r->kind = kind;
		r->line = line;
	}
	return r;
}

/* A value position: one scalar or a list of scalars. */
static int parse_values(struct pctx *c, const struct ynode *v, struct rcond *p, const char *field)
{
	const struct ynode *const *items = (const struct ynode *const *)&v;
	uint32_t n = 1;

	if (v->kind == YN_MAP)
		return FAIL(c, -EINVAL, v->line, field,
			    "%s: expected a value or a list of values, not a mapping",
			    rop_name(p->op, p->caseless));
	if (v->kind == YN_SEQ) {
		if (v->n == 0)
			return FAIL(c, -EINVAL, v->line, field, "%s: empty list",
				    rop_name(p->op, p->caseless));
		if (v->n > RULES_MAX_LIST_ITEMS)
			return FAIL(c, -E2BIG, v->line, field, "%s: more than %u values",
				    rop_name(p->op, p->caseless), RULES_MAX_LIST_ITEMS);
		items = (const struct ynode *const *)v->kids;
		n = v->n;
		p->is_list = true;
	}
	p->vals = arena_array(&c->ast->arena, n, sizeof(*p->vals));
	if (!p->vals)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		const struct ynode *it = items[i];
		if (it->kind != YN_SCALAR)
			return FAIL(c, -EINVAL, it->line, field, "%s: expected a value, not %s",
				    rop_name(p->op, p->caseless), kind_name(it));
		/* NUL, UTF-8 and length are checked by the compiler, which knows the operator */
		p->vals[i].s = arena_strndup(&c->ast->arena, it->s, it->n);
		if (!p->vals[i].s)
			return -ENOMEM;
		p->vals[i].len = it->n;
		p->vals[i].line = it->line;
		p->vals[i].plain = it->plain;
	}
	p->n = n;
	return 0;
}

static int field_name(struct pctx *c, const struct ynode *k, const char **out)
{
	if (k->n == 0 || k->n > 128 || memchr(k->s, '\0', k->n) || !rules_utf8_valid(k->s, k->n))
		return FAIL(c, -EINVAL, k->line, NULL, "condition key is not a field name");
	*out = arena_strndup(&c->ast->arena, k->s, k->n);
	return *out ? 0 : -ENOMEM;
}

/* Conjuncts of one condition mapping, grown as needed. */
struct conj {
	struct rcond **v;
	size_t n, cap;
};

static int conj_add(struct conj *j, struct rcond *r)
{
	if (j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 8;
		struct rcond **p = realloc(j->v, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		j->v = p;
		j->cap = cap;
	}
	j->v[j->n++] = r;
	return 0;
}

static int parse_field(struct pctx *c, const struct ynode *k, const struct ynode *v, struct conj *j)
{
	const char *name = NULL;
	int ret = field_name(c, k, &name);
	if (ret)
		return ret;
	if (v->kind != YN_MAP) {
		struct rcond *p = new_cond(c, RC_PRED, k->line);
		if (!p)
			return -ENOMEM;
		p->name = name;
		p->op = ROP_EQUALS;
		if ((ret = parse_values(c, v, p, name)) < 0)
			return ret;
		return conj_add(j, p);
	}
	if (v->n == 0)
		return FAIL(c, -EINVAL, v->line, name, "no operator given");
	for (uint32_t i = 0; i < v->n; i++) {
		const struct ynode *ok = v->kids[2 * i], *ov = v->kids[2 * i + 1];
		enum rop op;
		bool caseless;
		if (!rop_lookup(ok->s, ok->n, &op, &caseless))
			return FAIL(c, -EINVAL, ok->line, name,
				    "unknown operator '%.*s' (see docs/rules.md)",
				    (int)(ok->n > 64 ? 64 : ok->n), ok->s);
		struct rcond *p = new_cond(c, RC_PRED, ok->line);
		if (!p)
			return -ENOMEM;
		p->name = name;
		p->op = (uint8_t)op;
		p->caseless = caseless;
		if ((ret = parse_values(c, ov, p, name)) < 0 || (ret = conj_add(j, p)) < 0)
			return ret;
	}
	return 0;
}

static int parse_cond_map(struct pctx *c, const struct ynode *n, unsigned depth, struct conj *j)
{
	int ret = 0;
	for (uint32_t i = 0; i < n->n && ret == 0; i++) {
		const struct ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		struct rcond *r = NULL;
		if (key_is(k, "all") || key_is(k, "any")) {
			const char *what = key_is(k, "all") ? "all" : "any";
			if (v->kind != YN_SEQ)
				return FAIL(c, -EINVAL, v->line, what,
					    "expected a list of conditions, not %s", kind_name(v));
			if (v->n == 0)
				return FAIL(c, -EINVAL, v->line, what, "empty list of conditions");
			if (!(r = new_cond(c, what[1] == 'l' ? RC_ALL : RC_ANY, k->line)))
				return -ENOMEM;
			r->kids = arena_array(&c->ast->arena, v->n, sizeof(*r->kids));
			if (!r->kids)
				return -ENOMEM;
			r->n = v->n;
			for (uint32_t m = 0; m < v->n && ret == 0; m++)
				ret = parse_cond(c, v->kids[m], depth + 1, &r->kids[m]);
		} else if (key_is(k, "not")) {
			if (v->kind == YN_SEQ)
				return FAIL(
				    c, -EINVAL, v->line, "not",
				    "takes one condition, not a list (use not: {any: [...]})");
			if (!(r = new_cond(c, RC_NOT, k->line)) ||
			    !(r->kids = arena_alloc(&c->ast->arena, sizeof(*r->kids))))
				return -ENOMEM;
			r->n = 1;
			ret = parse_cond(c, v, depth + 1, &r->kids[0]);
		} else if (key_is(k, "macro")) {
			if (!(r = new_cond(c, RC_MACRO, k->line)))
				return -ENOMEM;
			ret = get_text(c, v, "macro", 1, 64, &r->name);
		} else {
			ret = parse_field(c, k, v, j);
			continue;
		}
		if (ret == 0)
			ret = conj_add(j, r);
	}
	return ret;
}

static int parse_cond(struct pctx *c, const struct ynode *n, unsigned depth, struct rcond **out)
{
	struct conj j = {0};
	int ret;

	/* checked before recursing, so no input can exhaust the C stack */
	if (depth > RULES_MAX_CONDITION_DEPTH)
		return FAIL(c, -E2BIG, n->line, "condition", "nested deeper than %u levels",
			    RULES_MAX_CONDITION_DEPTH);
	if (n->kind != YN_MAP)
		return FAIL(c, -EINVAL, n->line, "condition",
			    "expected a mapping (all:, any:, not:, macro: or FIELD:), not %s",
			    kind_name(n));
	if (n->n == 0)
		return FAIL(c, -EINVAL, n->line, "condition", "empty condition");
	if ((ret = parse_cond_map(c, n, depth, &j)) < 0)
		goto out_free;
	if (j.n == 1) {
		*out = j.v[0];
		goto out_free;
	}
	struct rcond *r = new_cond(c, RC_ALL, n->line);
	if (!r || !(r->kids = arena_array(&c->ast->arena, j.n, sizeof(*r->kids)))) {
		ret = -ENOMEM;
		goto out_free;
	}
	memcpy(r->kids, j.v, j.n * sizeof(*r->kids));
	r->n = (uint32_t)j.n;
	*out = r;
out_free:
	free(j.v);
	return ret;
}

/* --- test events: YAML mapping to one JSON object with dotted keys, typed by the registry --- */

static int int_text(const char *s, size_t len)
{
	size_t i = 0;
	if (len && s[0] == '-')
		i = 1;
	if (i == len || len - i > 19)
		return -EINVAL;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
	}
	return 0;
}

static int test_value(struct pctx *c, const struct field_info *f, const struct ynode *v)
{
	struct buf *b = &c->json;
	int ret;

	if (f->type == FT_STRLIST) {
		if (v->kind != YN_SEQ)
			return FAIL(c, -EINVAL, v->line, f->name, "test event: expected a list");
		if ((ret = buf_append_char(b, '[')) < 0)
			return ret;
		for (uint32_t i = 0; i < v->n; i++) {
			const struct ynode *it = v->kids[i];
			if (it->kind != YN_SCALAR)
				return FAIL(c, -EINVAL, it->line, f->name,
					    "test event: expected a list of strings");
			if ((i && (ret = buf_append_char(b, ',')) < 0) ||
			    (ret = json_append_string(b, it->s, it->n)) < 0)
				return ret;
		}
		return buf_append_char(b, ']');
	}
	if (v->kind != YN_SCALAR)
		return FAIL(c, -EINVAL, v->line, f->name, "test event: expected a %s, not %s",
			    registry_type_name(f->type), kind_name(v));
	switch (f->type) {
	case FT_INT:
		if (int_text(v->s, v->n) < 0)
			return FAIL(c, -EINVAL, v->line, f->name,
				    "test event: expected an integer");
		return buf_append(b, v->s, v->n);
	case FT_BOOL:
		if (v->n == 4 && memcmp(v->s, "true", 4) == 0)
			return buf_append_str(b, "true");
		if (v->n == 5 && memcmp(v->s, "false", 5) == 0)
			return buf_append_str(b, "false");
		return FAIL(c, -EINVAL, v->line, f->name, "test event: expected true or false");
	default:
		return json_append_string(b, v->s, v->n);
	}
}

static int test_fields(struct pctx *c, const struct ynode *m, char *path, size_t plen, bool *first,
		       bool *has_kind)
{
	int ret;
	for (uint32_t i = 0; i < m->n; i++) {
		const struct ynode *k = m->kids[2 * i], *v = m->kids[2 * i + 1];
		size_t at = plen;
		if (at)
			path[at++] = '.';
		if (k->n == 0 || at + k->n >= 256 || memchr(k->s, '\0', k->n))
			return FAIL(c, -EINVAL, k->line, NULL, "test event: bad field name");
		memcpy(path + at, k->s, k->n);
		path[at + k->n] = '\0';
		int id = registry_lookup(path, at + k->n);
		if (id < 0) {
			if (v->kind == YN_MAP) {
				if ((ret = test_fields(c, v, path, at + k->n, first, has_kind)) < 0)
					return ret;
				path[plen] = '\0';
				continue;
			}
			return FAIL(c, -EINVAL, k->line, path,
				    "test event: unknown field (not in the registry of schema "
				    "version %d)",
				    SCHEMA_VERSION);
		}
		const struct field_info *f = registry_field(id);
		if (id == F_EVENT_KIND)
			*has_kind = true;
		if ((!*first && (ret = buf_append_char(&c->json, ',')) < 0) ||
		    (ret = json_append_string(&c->json, f->name, strlen(f->name))) < 0 ||
		    (ret = buf_append_char(&c->json, ':')) < 0 || (ret = test_value(c, f, v)) < 0)
			return ret == -E2BIG
				   ? FAIL(c, -E2BIG, k->line, f->name, "test event too large")
				   : ret;
		*first = false;
		path[plen] = '\0';
	}
	return 0;
}

static int test_event(struct pctx *c, const struct ynode *n, char **json, uint32_t *len)
{
	char path[256] = "", why[256];
	bool first = true, has_kind = false;
	int ret;

	if (n->kind != YN_MAP)
		return FAIL(c, -EINVAL, n->line, "tests", "expected an event mapping, not %s",
			    kind_name(n));
	buf_reset(&c->json);
	if ((ret = buf_append_char(&c->json, '{')) < 0 ||
	    (ret = test_fields(c, n, path, 0, &first, &has_kind)) < 0)
		return ret;
	if (!has_kind && ((!first && (ret = buf_append_char(&c->json, ',')) < 0) ||
			  (ret = buf_append_str(&c->json, "\"event.kind\":\"event\"")) < 0))
		return ret;
	if ((ret = buf_append_char(&c->json, '}')) < 0)
		return ret;
	ret = event_parse_json(c->ev, c->json.data, c->json.len, why, sizeof(why), NULL);
	if (ret == EVENT_SKIPPED)
		return FAIL(c, -EINVAL, n->line, "tests", "test events must have event.kind event");
	if (ret < 0)
		return FAIL(c, -EINVAL, n->line, "tests", "bad test event: %s", why);
	*json = arena_strndup(&c->ast->arena, c->json.data, c->json.len);
	*len = (uint32_t)c->json.len;
	return *json ? 0 : -ENOMEM;
}

static int parse_test_item(struct pctx *c, const struct ynode *n, bool match, struct rtest *t)
{
	const struct ynode *events = NULL;
	int ret;

	t->match = match;
	t->line = n->line;
	if (n->kind == YN_MAP && n->n == 1 && key_is(n->kids[0], "events"))
		events = n->kids[1];
	if (!events) {
		t->n = 1;
		t->json = arena_alloc(&c->ast->arena, sizeof(*t->json));
		t->lens = arena_alloc(&c->ast->arena, sizeof(*t->lens));
		if (!t->json || !t->lens)
			return -ENOMEM;
		return test_event(c, n, &t->json[0], &t->lens[0]);
	}
	if (events->kind != YN_SEQ || events->n == 0)
		return FAIL(c, -EINVAL, events->line, "events",
			    "expected a non-empty list of events");
	if (events->n > RULES_MAX_TEST_EVENTS)
		return FAIL(c, -E2BIG, events->line, "events", "more than %u events",
			    RULES_MAX_TEST_EVENTS);
	t->n = events->n;
	t->json = arena_array(&c->ast->arena, t->n, sizeof(*t->json));
	t->lens = arena_array(&c->ast->arena, t->n, sizeof(*t->lens));
	if (!t->json || !t->lens)
		return -ENOMEM;
	for (uint32_t i = 0; i < t->n; i++) {
		if ((ret = test_event(c, events->kids[i], &t->json[i], &t->lens[i])) < 0)
			return ret;
	}
	return 0;
}

static int parse_tests(struct pctx *c, const struct ynode *n, struct rrule *r)
{
	const struct ynode *lists[2] = {NULL, NULL};
	uint32_t total = 0;
	int ret;

	if (n->kind != YN_MAP)
		return FAIL(c, -EINVAL, n->line, "tests",
			    "expected a mapping with match and nomatch");
	for (uint32_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		int which = key_is(k, "match") ? 0 : key_is(k, "nomatch") ? 1 : -1;
		if (which < 0)
			return FAIL(c, -EINVAL, k->line, "tests",
				    "unknown key '%.*s' (match, nomatch)",
				    (int)(k->n > 64 ? 64 : k->n), k->s);
		if (v->kind != YN_SEQ)
			return FAIL(c, -EINVAL, v->line, k->s, "expected a list of events");
		lists[which] = v;
		total += v->n;
	}
	if (total > RULES_MAX_TESTS)
		return FAIL(c, -E2BIG, n->line, "tests", "more than %u test items",
			    RULES_MAX_TESTS);
	r->tests = arena_array(&c->ast->arena, total ? total : 1, sizeof(*r->tests));
	if (!r->tests)
		return -ENOMEM;
	for (int w = 0; w < 2; w++) {
		for (uint32_t i = 0; lists[w] && i < lists[w]->n; i++) {
			ret = parse_test_item(c, lists[w]->kids[i], w == 0, &r->tests[r->n_tests]);
			if (ret < 0)
				return ret;
			r->n_tests++;
		}
	}
	return 0;
}

static int parse_by(struct pctx *c, const struct ynode *n, const char **by, uint32_t *line)
{
	*line = n->line;
	return get_text(c, n, "by", 1, 128, by);
}

static int parse_threshold(struct pctx *c, const struct ynode *n, struct rrule *r)
{
	uint64_t count = 0;
	int ret;
	if (n->kind != YN_MAP)
		return FAIL(c, -EINVAL, n->line, "threshold",
			    "expected a mapping (count, within, by)");
	r->kind = RK_THRESHOLD;
	for (uint32_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		if (key_is(k, "count"))
			ret = get_uint(c, v, "count", 1, RULES_MAX_THRESHOLD_COUNT, &count);
		else if (key_is(k, "within"))
			ret = get_duration(c, v, "within", &r->within_ns);
		else if (key_is(k, "by"))
			ret = parse_by(c, v, &r->by, &r->by_line);
		else
			ret = FAIL(c, -EINVAL, k->line, "threshold",
				   "unknown key '%.*s' (count, within, by)",
				   (int)(k->n > 64 ? 64 : k->n), k->s);
		if (ret)
			return ret;
	}
	if (!count || !r->within_ns)
		return FAIL(c, -EINVAL, n->line, "threshold", "needs count and within");
	r->count = (uint32_t)count;
	return 0;
}

static int parse_sequence(struct pctx *c, const struct ynode *n, struct rrule *r)
{
	const struct ynode *steps = NULL;
	int ret;
	if (n->kind != YN_MAP)
		return FAIL(c, -EINVAL, n->line, "sequence",
			    "expected a mapping (within, by, steps)");
	r->kind = RK_SEQUENCE;
	for (uint32_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		if (key_is(k, "within"))
			ret = get_duration(c, v, "within", &r->within_ns);
		else if (key_is(k, "by"))
			ret = parse_by(c, v, &r->by, &r->by_line);
		else if (key_is(k, "steps")) {
			steps = v;
			ret = 0;
		} else
			ret = FAIL(c, -EINVAL, k->line, "sequence",
				   "unknown key '%.*s' (within, by, steps)",
				   (int)(k->n > 64 ? 64 : k->n), k->s);
		if (ret)
			return ret;
	}
	if (!r->within_ns || !steps)
		return FAIL(c, -EINVAL, n->line, "sequence", "needs within and steps");
	if (steps->kind != YN_SEQ || steps->n < RULES_MIN_SEQUENCE_STEPS ||
	    steps->n > RULES_MAX_SEQUENCE_STEPS)
		return FAIL(c,
			    steps->kind == YN_SEQ && steps->n > RULES_MAX_SEQUENCE_STEPS ? -E2BIG
											 : -EINVAL,
			    steps->line, "steps", "expected a list of %u to %u steps",
			    RULES_MIN_SEQUENCE_STEPS, RULES_MAX_SEQUENCE_STEPS);
	for (uint32_t s = 0; s < steps->n; s++) {
		const struct ynode *st = steps->kids[s];
		struct rstep *step = &r->steps[s];
		step->line = st->line;
		if (st->kind != YN_MAP)
			return FAIL(c, -EINVAL, st->line, "steps",
				    "a step is a mapping with condition and optional by");
		for (uint32_t i = 0; i < st->n; i++) {
			const struct ynode *k = st->kids[2 * i], *v = st->kids[2 * i + 1];
			if (key_is(k, "condition"))
				ret = parse_cond(c, v, 1, &step->cond);
			else if (key_is(k, "by"))
				ret = parse_by(c, v, &step->by, &step->by_line);
			else
				ret = FAIL(c, -EINVAL, k->line, "steps",
					   "unknown key '%.*s' (condition, by)",
					   (int)(k->n > 64 ? 64 : k->n), k->s);
			if (ret)
				return ret;
		}
		if (!step->cond)
			return FAIL(c, -EINVAL, st->line, "steps", "step has no condition");
	}
	r->n_steps = steps->n;
	return 0;
}

static const char *const levels[] = {"informational", "low", "medium", "high", "critical"};
/* Keys a rule may carry as documentation only. */
static const char *const metadata_keys[] = {"author", "references", "status",
					    "date",   "modified",   "falsepositives"};

static int parse_rule(struct pctx *c, const struct ynode *n, struct rrule *r)
{
	const struct ynode *cond = NULL, *thr = NULL, *seq = NULL, *tests = NULL;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	r->file = c->file;
	r->line = n->line;
	r->description = "";
	r->level = "medium";
	c->rule_id = NULL;
	if (n->kind != YN_MAP)
		return FAIL(c, -EINVAL, n->line, "rules", "a rule is a mapping, not %s",
			    kind_name(n));
	const struct ynode *id = map_get(n, "id");
	if (!id)
		return FAIL(c, -EINVAL, n->line, "id", "rule has no id");
	if (id->kind != YN_SCALAR || !rules_id_valid(id->s, id->n))
		return FAIL(c, -EINVAL, id->line, "id", "expected [A-Za-z0-9._-]{1,64}");
	if ((ret = get_text(c, id, "id", 1, 64, &r->id)) < 0)
		return ret;
	c->rule_id = r->id;
	for (uint32_t i = 0; i < n->n && ret == 0; i++) {
		const struct ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		if (key_is(k, "id")) {
			continue;
		} else if (key_is(k, "name")) {
			ret = get_text(c, v, "name", 1, RULES_MAX_NAME_BYTES, &r->name);
		} else if (key_is(k, "description")) {
			ret = get_text(c, v, "description", 0, RULES_MAX_DESCRIPTION_BYTES,
				       &r->description);
		} else if (key_is(k, "level")) {
			size_t l;
			for (l = 0; l < 5; l++) {
				if (key_is(v, levels[l]))
					break;
			}
			if (l == 5)
				ret = FAIL(c, -EINVAL, v->line, "level",
					   "expected informational, low, medium, high or critical");
			else
				r->level = levels[l];
		} else if (key_is(k, "tags")) {
			if (v->kind != YN_SEQ)
				ret =
				    FAIL(c, -EINVAL, v->line, "tags", "expected a list of strings");
			else if (v->n > RULES_MAX_TAGS)
				ret = FAIL(c, -E2BIG, v->line, "tags", "more than %u tags",
					   RULES_MAX_TAGS);
			else if (!(r->tags = arena_array(&c->ast->arena, v->n ? v->n : 1,
							 sizeof(*r->tags))))
				ret = -ENOMEM;
			for (uint32_t t = 0; ret == 0 && t < v->n; t++)
				ret = get_text(c, v->kids[t], "tags", 1, RULES_MAX_NAME_BYTES,
					       &r->tags[r->n_tags++]);
		} else if (key_is(k, "condition")) {
			cond = v;
		} else if (key_is(k, "response")) {
			if (v->kind != YN_SCALAR || !key_is(v, "kill"))
				ret = FAIL(c, -EINVAL, v->line, "response",
					   "the only response is kill");
			r->kill = true;
		} else if (key_is(k, "tests")) {
			tests = v;
		} else if (key_is(k, "threshold")) {
			thr = v;
		} else if (key_is(k, "sequence")) {
			seq = v;
		} else {
			size_t m;
			for (m = 0; m < sizeof(metadata_keys) / sizeof(metadata_keys[0]); m++) {
				if (key_is(k, metadata_keys[m]))
					break;
			}
			if (m == sizeof(metadata_keys) / sizeof(metadata_keys[0]))
				ret = FAIL(c, -EINVAL, k->line, NULL, "unknown rule key '%.*s'",
					   (int)(k->n > 64 ? 64 : k->n), k->s);
		}
	}
	if (ret)
		return ret;
	if (!r->name)
		return FAIL(c, -EINVAL, n->line, "name", "rule %s has no name", r->id);
	if (thr && seq)
		return FAIL(c, -EINVAL, seq->line, "sequence",
			    "a rule has threshold or sequence, not both");
	if (!cond && !seq)
		return FAIL(c, -EINVAL, n->line, "condition", "rule %s has no condition", r->id);
	if (cond) {
		r->cond_line = cond->line;
		if ((ret = parse_cond(c, cond, 1, &r->cond)) < 0)
			return ret;
	}
	if (thr && (ret = parse_threshold(c, thr, r)) < 0)
		return ret;
	if (seq && (ret = parse_sequence(c, seq, r)) < 0)
		return ret;
	if (tests && (ret = parse_tests(c, tests, r)) < 0)
		return ret;
	return 0;
}

static int grow(void **v, uint32_t *cap, uint32_t need, size_t size, uint32_t max)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? (size_t)*cap * 2 : 64, bytes;
	if (ncap > max)
		ncap = max;
	if (ncap < need || size_mul(ncap, size, &bytes) < 0)
		return -E2BIG;
	void *p = realloc(*v, bytes);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = (uint32_t)ncap;
	return 0;
}

static int parse_name(struct pctx *c, const struct ynode *k, const char *what, const char **out)
{
	if (!rules_id_valid(k->s, k->n))
		return FAIL(c, -EINVAL, k->line, what, "name '%.*s' is not [A-Za-z0-9._-]{1,64}",
			    (int)(k->n > 64 ? 64 : k->n), k->s);
	*out = arena_strndup(&c->ast->arena, k->s, k->n);
	return *out ? 0 : -ENOMEM;
}

static int parse_lists(struct pctx *c, const struct ynode *n)
{
	struct rules_ast *ast = c->ast;
	int ret;
	if (n->kind != YN_MAP)
		return FAIL(c, -EINVAL, n->line, "lists", "expected a mapping of names to lists");
	for (uint32_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		if (ast->n_lists >= RULES_MAX_LISTS)
			return FAIL(c, -E2BIG, k->line, "lists", "more than %u lists",
				    RULES_MAX_LISTS);
		if ((ret = grow((void **)&ast->lists, &ast->cap_lists, ast->n_lists + 1,
				sizeof(*ast->lists), RULES_MAX_LISTS)) < 0)
			return ret;
		struct rlist *l = &ast->lists[ast->n_lists];
		memset(l, 0, sizeof(*l));
		l->file = c->file;
		l->line = k->line;
		if ((ret = parse_name(c, k, "lists", &l->name)) < 0)
			return ret;
		if (v->kind != YN_SEQ)
			return FAIL(c, -EINVAL, v->line, l->name, "expected a list of values");
		if (v->n > RULES_MAX_LIST_ITEMS)
			return FAIL(c, -E2BIG, v->line, l->name, "more than %u items",
				    RULES_MAX_LIST_ITEMS);
		l->items = arena_array(&ast->arena, v->n ? v->n : 1, sizeof(*l->items));
		if (!l->items)
			return -ENOMEM;
		for (uint32_t m = 0; m < v->n; m++) {
			const struct ynode *it = v->kids[m];
			if (it->kind != YN_SCALAR)
				return FAIL(c, -EINVAL, it->line, l->name,
					    "list items must be strings, not %s", kind_name(it));
			l->items[m].s = arena_strndup(&ast->arena, it->s, it->n);
			if (!l->items[m].s)
				return -ENOMEM;
			l->items[m].len = it->n;
			l->items[m].line = it->line;
			l->items[m].plain = it->plain;
		}
		l->n = v->n;
		ast->n_lists++;
	}
	return 0;
}

static int parse_macros(struct pctx *c, const struct ynode *n)
{
	struct rules_ast *ast = c->ast;
	int ret;
	if (n->kind != YN_MAP)
		return FAIL(c, -EINVAL, n->line, "macros",
			    "expected a mapping of names to conditions");
	for (uint32_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->kids[2 * i], *v = n->kids[2 * i + 1];
		if (ast->n_macros >= RULES_MAX_MACROS)
			return FAIL(c, -E2BIG, k->line, "macros", "more than %u macros",
				    RULES_MAX_MACROS);
		if ((ret = grow((void **)&ast->macros, &ast->cap_macros, ast->n_macros + 1,
				sizeof(*ast->macros), RULES_MAX_MACROS)) < 0)
			return ret;
		struct rmacro *m = &ast->macros[ast->n_macros];
		memset(m, 0, sizeof(*m));
		m->file = c->file;
		m->line = k->line;
		if ((ret = parse_name(c, k, "macros", &m->name)) < 0 ||
		    (ret = parse_cond(c, v, 1, &m->cond)) < 0)
			return ret;
		ast->n_macros++;
	}
	return 0;
}

static int parse_rules(struct pctx *c, const struct ynode *n)
{
	struct rules_ast *ast = c->ast;
	int ret;
	if (n->kind != YN_SEQ)
		return FAIL(c, -EINVAL, n->line, "rules", "expected a list of rules");
	for (uint32_t i = 0; i < n->n; i++) {
		if (ast->n_rules >= RULES_MAX_RULES)
			return FAIL(c, -E2BIG, n->kids[i]->line, "rules",
				    "more than %u rules in one load (RULES_MAX_RULES)",
				    RULES_MAX_RULES);
		if ((ret = grow((void **)&ast->rules, &ast->cap_rules, ast->n_rules + 1,
				sizeof(*ast->rules), RULES_MAX_RULES)) < 0)
			return ret;
		if ((ret = parse_rule(c, n->kids[i], &ast->rules[ast->n_rules])) < 0)
			return ret;
		ast->n_rules++;
	}
	return 0;
}

static int parse_source(struct pctx *c, const struct rules_source *src)
{
	struct arena tree;
	struct ynode *root = NULL;
	int ret;

	c->file = arena_strndup(&c->ast->arena, src->name ? src->name : "-",
				strlen(src->name ? src->name : "-"));
	if (!c->file)
		return -ENOMEM;
	if (src->len > RULES_MAX_FILE_BYTES)
		return FAIL(c, -E2BIG, 0, NULL, "file larger than %u bytes", RULES_MAX_FILE_BYTES);
	arena_init(&tree, (size_t)RULES_MAX_FILE_BYTES * 8);
	ret = yaml_load_tree(c->file, src->data, src->len, &tree, &root, c->err, c->errlen);
	if (ret < 0 || !root)
		goto out_tree;
	if (root->kind != YN_MAP) {
		ret = FAIL(c, -EINVAL, root->line, NULL,
			   "a rule file is a mapping with schema, lists, macros and rules");
		goto out_tree;
	}
	/* schema first: content for a newer registry fails on that, not on a field name */
	const struct ynode *schema = map_get(root, "schema");
	if (schema) {
		uint64_t v;
		if (schema->kind != YN_SCALAR ||
		    parse_u64(schema->s, schema->n, 1u << 30, &v) < 0 || v == 0) {
			ret = FAIL(c, -EINVAL, schema->line, "schema", "expected a schema version");
			goto out_tree;
		}
		if (v > SCHEMA_VERSION) {
			ret = FAIL(c, -EINVAL, schema->line, "schema",
				   "content needs schema version %llu; this build has schema "
				   "version %d",
				   (unsigned long long)v, SCHEMA_VERSION);
			goto out_tree;
		}
	}
	for (uint32_t i = 0; i < root->n; i++) {
		const struct ynode *k = root->kids[2 * i];
		if (!key_is(k, "schema") && !key_is(k, "lists") && !key_is(k, "macros") &&
		    !key_is(k, "rules")) {
			ret = FAIL(c, -EINVAL, k->line, NULL,
				   "unknown top-level key '%.*s' (schema, lists, macros, rules)",
				   (int)(k->n > 64 ? 64 : k->n), k->s);
			goto out_tree;
		}
	}
	const struct ynode *v;
	if ((v = map_get(root, "lists")) && (ret = parse_lists(c, v)) < 0)
		goto out_tree;
	if ((v = map_get(root, "macros")) && (ret = parse_macros(c, v)) < 0)
		goto out_tree;
	if ((v = map_get(root, "rules")) && (ret = parse_rules(c, v)) < 0)
		goto out_tree;
out_tree:
	arena_release(&tree);
	if (ret == -ENOMEM && c->err && c->errlen)
		FAIL(c, -ENOMEM, 0, NULL, "out of memory");
	return ret;
}

void rules_ast_free(struct rules_ast *ast)
{
	if (!ast)
		return;
	arena_release(&ast->arena);
	free(ast->rules);
	free(ast->lists);
	free(ast->macros);
	free(ast);
}

int rules_parse(const struct rules_source *src, size_t n, struct rules_ast **out, char *err,
		size_t errlen)
{
	struct pctx c = {.err = err, .errlen = errlen};
	size_t total = 0;
	int ret = 0;

	if (n > RULES_MAX_FILES)
		return rules_fail(err, errlen, -E2BIG, src[0].name, 0, NULL,
				  "more than %u rule files", RULES_MAX_FILES);
	for (size_t i = 0; i < n; i++) {
		if (src[i].len > RULES_MAX_FILE_BYTES)
			return rules_fail(err, errlen, -E2BIG, src[i].name, 0, NULL,
					  "file larger than %u bytes", RULES_MAX_FILE_BYTES);
		total += src[i].len;
		if (total > RULES_MAX_TOTAL_BYTES)
			return rules_fail(err, errlen, -E2BIG, src[i].name, 0, NULL,
					  "rule files larger than %u bytes together",
					  RULES_MAX_TOTAL_BYTES);
	}
	c.ast = calloc(1, sizeof(*c.ast));
	if (!c.ast)
		return -ENOMEM;
	arena_init(&c.ast->arena, (size_t)RULES_MAX_TOTAL_BYTES * 16);
	c.ev = event_new();
	if (!c.ev) {
		ret = -ENOMEM;
		goto out_ast;
	}
	buf_init(&c.json, EVENT_JSON_LINE_MAX);
	for (size_t i = 0; i < n && ret == 0; i++)
		ret = parse_source(&c, &src[i]);
	buf_release(&c.json);
	event_free(c.ev);
out_ast:
	if (ret < 0) {
		rules_ast_free(c.ast);
		return ret;
	}
	*out = c.ast;
	return 0;
}

/* --- loading from memory and from the file system --- */

int ruleset_load_sources(const struct rules_source *src, size_t n, struct ruleset **out, char *err,
			 size_t errlen)
{
	struct rules_ast *ast = NULL;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if ((ret = rules_parse(src, n, &ast, err, errlen)) < 0)
		return ret;
	ret = rules_compile(ast, out, err, errlen);
	rules_ast_free(ast);
	if (ret == -ENOMEM && err && errlen && !err[0])
		snprintf(err, errlen, "out of memory while compiling rules");
	return ret;
}

struct file_list {
	char **paths;
	size_t n, cap;
};

static bool yaml_name(const char *name)
{
	size_t len = strlen(name);
	return (len > 4 && strcmp(name + len - 4, ".yml") == 0) ||
	       (len > 5 && strcmp(name + len - 5, ".yaml") == 0);
}

static int list_add(struct file_list *l, const char *dir, const char *name, char *err,
		    size_t errlen)
{
	if (l->n >= RULES_MAX_FILES)
		return rules_fail(err, errlen, -E2BIG, dir, 0, NULL, "more than %u rule files",
				  RULES_MAX_FILES);
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **p = realloc(l->paths, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->paths = p;
		l->cap = cap;
	}
	size_t need = strlen(dir) + strlen(name) + 2;
	char *path = malloc(need);
	if (!path)
		return -ENOMEM;
	snprintf(path, need, "%s/%s", dir, name);
	l->paths[l->n++] = path;
	return 0;
}

static int walk_dir(const char *dir, unsigned depth, struct file_list *l, char *err, size_t errlen)
{
	DIR *d;
	struct dirent *de;
	int ret = 0;

	if (depth > RULES_MAX_DIR_DEPTH)
		return rules_fail(err, errlen, -E2BIG, dir, 0, NULL,
				  "directories nested deeper than %u", RULES_MAX_DIR_DEPTH);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return rules_fail(err, errlen, -errno, dir, 0, NULL, "cannot open: %s",
				  strerror(errno));
	if (!(d = fdopendir(fd))) {
		ret = -errno;
		close(fd);
		return rules_fail(err, errlen, ret, dir, 0, NULL, "cannot read: %s",
				  strerror(-ret));
	}
	while (ret == 0 && (de = readdir(d))) {
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			ret = rules_fail(err, errlen, -errno, dir, 0, de->d_name, "cannot stat: %s",
					 strerror(errno));
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			size_t need = strlen(dir) + strlen(de->d_name) + 2;
			char *sub = malloc(need);
			if (!sub) {
				ret = -ENOMEM;
				break;
			}
			snprintf(sub, need, "%s/%s", dir, de->d_name);
			ret = walk_dir(sub, depth + 1, l, err, errlen);
			free(sub);
		} else if (yaml_name(de->d_name)) {
			if (S_ISLNK(st.st_mode))
				ret = rules_fail(err, errlen, -ELOOP, dir, 0, de->d_name,
						 "symbolic links are not followed");
			else if (S_ISREG(st.st_mode))
				ret = list_add(l, dir, de->d_name, err, errlen);
		}
	}
	closedir(d);
	return ret;
}

static int cmp_path(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads @path whole, refusing anything larger than @max before reading it. */
static int read_capped(const char *path, size_t max, size_t *total_left, char **data, size_t *len,
		       char *err, size_t errlen)
{
	struct stat st;
	int ret = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return rules_fail(err, errlen, -errno, path, 0, NULL, "cannot open: %s",
				  strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = rules_fail(err, errlen, -errno, path, 0, NULL, "cannot stat: %s",
				 strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = rules_fail(err, errlen, -EINVAL, path, 0, NULL, "not a regular file");
		goto out_close;
	}
	if ((uint64_t)st.st_size > max) {
		ret = rules_fail(err, errlen, -E2BIG, path, 0, NULL,
				 "file of %lld bytes is larger than %zu (RULES_MAX_FILE_BYTES)",
				 (long long)st.st_size, max);
		goto out_close;
	}
	if ((size_t)st.st_size > *total_left) {
		ret = rules_fail(err, errlen, -E2BIG, path, 0, NULL,
				 "rule files larger than %u bytes together", RULES_MAX_TOTAL_BYTES);
		goto out_close;
	}
	size_t want = (size_t)st.st_size, got = 0;
	char *p = malloc(want + 1);
	if (!p) {
		ret = -ENOMEM;
		goto out_close;
	}
	/* the file may change under us: never read past what was checked */
	while (got < want) {
		ssize_t r = read(fd, p + got, want - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = rules_fail(err, errlen, -errno, path, 0, NULL, "cannot read: %s",
					 strerror(errno));
			free(p);
			goto out_close;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	p[got] = '\0';
	*data = p;
	*len = got;
	*total_left -= got;
out_close:
	close(fd);
	return ret;
}

int ruleset_load_path(const char *path, struct ruleset **out, char *err, size_t errlen)
{
	struct file_list l = {0};
	struct rules_source *src = NULL;
	struct stat st;
	size_t left = RULES_MAX_TOTAL_BYTES, n_read = 0;
	int ret;

	if (err && errlen)
		err[0] = '\0';
	if (stat(path, &st) < 0)
		return rules_fail(err, errlen, -errno, path, 0, NULL, "%s", strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		size_t plen = strlen(path);
		char *dir = strndup(path, plen);
		if (!dir)
			return -ENOMEM;
		while (plen > 1 && dir[plen - 1] == '/')
			dir[--plen] = '\0';
		ret = walk_dir(dir, 0, &l, err, errlen);
		free(dir);
		if (ret < 0)
			goto out_free;
		qsort(l.paths, l.n, sizeof(*l.paths), cmp_path);
	} else {
		if (!(l.paths = malloc(sizeof(*l.paths))) || !(l.paths[0] = strdup(path))) {
			ret = -ENOMEM;
			goto out_free;
		}
		l.n = 1;
	}
	src = calloc(l.n ? l.n : 1, sizeof(*src));
	if (!src) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (n_read = 0; n_read < l.n; n_read++) {
		char *data = NULL;
		size_t len = 0;
		ret = read_capped(l.paths[n_read], RULES_MAX_FILE_BYTES, &left, &data, &len, err,
				  errlen);
		if (ret < 0)
			goto out_free;
		src[n_read].name = l.paths[n_read];
		src[n_read].data = data;
		src[n_read].len = len;
	}
	ret = ruleset_load_sources(src, l.n, out, err, errlen);
out_free:
	for (size_t i = 0; src && i < n_read; i++)
		free((char *)src[i].data);
	free(src);
	for (size_t i = 0; i < l.n; i++)
		free(l.paths[i]);
	free(l.paths);
	return ret;
}
