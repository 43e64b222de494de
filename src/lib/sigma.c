/*
 * Sigma rule conversion: a bounded YAML tree, Sigma's detection and condition language
 * translated into a boolean tree over vigil fields, folded, and written as a native rule.
 */
#include "sigma.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "registry.h"
#include "rules.h"
#include "rx.h"

/* ------------------------------------------------------------------------------------ */
/* Arena: every node of one conversion, freed at once, with a cap on the total.          */

struct chunk {
	struct chunk *next;
	size_t used;
	size_t size;
	max_align_t data[];
};

struct arena {
	struct chunk *head;
	size_t total;
	size_t max;
};

#define ARENA_CHUNK (64u * 1024u)

/* Returns @n zeroed bytes, or NULL when the arena's cap is reached or malloc fails. */
static void *arena_alloc(struct arena *a, size_t n)
{
	struct chunk *c = a->head;
	size_t size;
	void *p;

	if (n > a->max)
		return NULL;
	n = (n + 15) & ~(size_t)15;
	if (!c || c->size - c->used < n) {
		size = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		if (a->total + size > a->max)
			return NULL;
		c = malloc(sizeof(*c) + size);
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->size = size;
		a->head = c;
		a->total += size;
	}
	p = (char *)c->data + c->used;
	c->used += n;
	memset(p, 0, n);
	return p;
}

static void arena_free(struct arena *a)
{
	struct chunk *c = a->head, *next;

	for (; c; c = next) {
		next = c->next;
		free(c);
	}
	a->head = NULL;
	a->total = 0;
}

/* ------------------------------------------------------------------------------------ */
/* Conversion context and errors.                                                        */

enum category { CAT_PROCESS, CAT_FILE, CAT_NETWORK };

/* What the file_event translation is producing: file.path for create/write, the rename
 * destination for rename. */
enum variant { VAR_PLAIN, VAR_RENAME };

#define NOTES_MAX 8

struct ctx {
	struct arena arena;
	int err;      /* first error (negative errno), 0 while none */
	int status;   /* enum sigma_status of the first error */
	char *reason; /* res->reason */
	size_t reasonlen;
	unsigned nodes;	  /* YAML nodes built */
	unsigned regexes; /* patterns handed to Hyperscan for checking */
	enum category cat;
	enum variant var;
	struct ynode *detection;
	const char *notes[NOTES_MAX]; /* fields whose alternatives were folded away */
	size_t nnotes;
};

/*
 * Records the first failure: @status, a one-line reason (prefixed with the YAML line when
 * @line is not 0) and @err. Always returns @err, so callers write `return fail(...)`.
 */
__attribute__((format(printf, 5, 6))) static int fail(struct ctx *c, int err, int status,
						      unsigned line, const char *fmt, ...)
{
	va_list ap;
	size_t off = 0;
	int n;

	if (c->err)
		return c->err;
	c->err = err;
	c->status = status;
	if (!c->reason || c->reasonlen == 0)
		return err;
	if (line) {
		n = snprintf(c->reason, c->reasonlen, "line %u: ", line);
		off = n > 0 && (size_t)n < c->reasonlen ? (size_t)n : 0;
	}
	va_start(ap, fmt);
	vsnprintf(c->reason + off, c->reasonlen - off, fmt, ap);
	va_end(ap);
	/* one line, whatever the rule's text held */
	text_one_line(c->reason);
	return err;
}

static int fail_nomem(struct ctx *c)
{
	if (c->arena.total + ARENA_CHUNK > c->arena.max)
		return fail(c, -E2BIG, SIGMA_INVALID, 0,
			    "rule too large: its conversion needs more than %u bytes",
			    SIGMA_WORK_MAX);
	return fail(c, -ENOMEM, SIGMA_INVALID, 0, "out of memory");
}

static void *ctx_alloc(struct ctx *c, size_t n)
{
	void *p = arena_alloc(&c->arena, n);
	if (!p)
		fail_nomem(c);
	return p;
}

static char *ctx_strndup(struct ctx *c, const char *s, size_t n)
{
	char *p;

	if (n >= SIZE_MAX - 1)
		return NULL;
	p = ctx_alloc(c, n + 1);
	if (p && n)
		memcpy(p, s, n);
	return p;
}

/* Shortens @s (@len bytes) for quoting in a reason: at most 60 bytes, on a UTF-8 boundary. */
static int shown_len(const char *s, size_t len)
{
	size_t n = len < 60 ? len : 60;
	while (n > 0 && n < len && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return (int)n;
}

/* ------------------------------------------------------------------------------------ */
/* YAML: a small tree built from libyaml's events, bounded in depth and node count.      */

enum ykind { Y_SCALAR, Y_SEQ, Y_MAP };

struct ynode {
	enum ykind kind;
	unsigned line;
	bool plain; /* an untagged plain scalar: typed as null, bool, integer or string */
	const char *s;
	size_t len;
	struct ynode *first, *last, *next; /* children; a mapping alternates key, value */
	size_t n;
};

#define YAML_MAP_KEYS_MAX 4096u

static int yaml_attach(struct ctx *c, struct ynode *parent, struct ynode *node)
{
	if (parent->kind == Y_MAP && parent->n % 2 == 0) {
		if (node->kind != Y_SCALAR)
			return fail(c, -EINVAL, SIGMA_INVALID, node->line,
				    "invalid rule: a mapping key must be a plain value");
		if (parent->n / 2 >= YAML_MAP_KEYS_MAX)
			return fail(c, -E2BIG, SIGMA_INVALID, node->line,
				    "mapping with more than %u keys", YAML_MAP_KEYS_MAX);
		for (struct ynode *k = parent->first; k; k = k->next ? k->next->next : NULL) {
			if (k->len == node->len && memcmp(k->s, node->s, k->len) == 0)
				return fail(c, -EINVAL, SIGMA_INVALID, node->line,
					    "duplicate key '%.*s'", shown_len(node->s, node->len),
					    node->s);
		}
	}
	if (parent->last)
		parent->last->next = node;
	else
		parent->first = node;
	parent->last = node;
	parent->n++;
	return 0;
}

/*
 * Parses @src into a tree in @c's arena. Returns 0 with *@root set (NULL for an empty
 * document), or a negative errno with the reason recorded in @c.
 */
static int yaml_load(struct ctx *c, const char *src, size_t len, struct ynode **root)
{
	struct ynode *stack[SIGMA_YAML_DEPTH_MAX];
	yaml_parser_t parser;
	yaml_event_t ev;
	int depth = 0, docs = 0, err = 0;
	bool done = false;

	*root = NULL;
	if (!yaml_parser_initialize(&parser))
		return fail(c, -ENOMEM, SIGMA_INVALID, 0, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)src, len);
	while (!done && !err) {
		struct ynode *node = NULL;
		unsigned line;

		if (!yaml_parser_parse(&parser, &ev)) {
			err = fail(c, -EINVAL, SIGMA_INVALID,
				   (unsigned)parser.problem_mark.line + 1, "invalid YAML: %s",
				   parser.problem ? parser.problem : "parse error");
			break;
		}
		line = (unsigned)ev.start_mark.line + 1;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (docs++ > 0)
				err = fail(
				    c, -EINVAL, SIGMA_UNCONVERTIBLE, line,
				    "several YAML documents in one file (rule collections) are "
				    "not supported");
			break;
		case YAML_ALIAS_EVENT:
			err =
			    fail(c, -EINVAL, SIGMA_INVALID, line, "YAML aliases are not supported");
			break;
		case YAML_SCALAR_EVENT:
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++c->nodes > SIGMA_YAML_NODES_MAX) {
				err =
				    fail(c, -E2BIG, SIGMA_INVALID, line,
					 "rule has more than %u YAML nodes", SIGMA_YAML_NODES_MAX);
				break;
			}
			node = ctx_alloc(c, sizeof(*node));
			if (!node) {
				err = c->err;
				break;
			}
			node->line = line;
			if (ev.type == YAML_SCALAR_EVENT) {
				node->kind = Y_SCALAR;
				node->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
					      ev.data.scalar.plain_implicit;
				node->len = ev.data.scalar.length;
				node->s =
				    ctx_strndup(c, (const char *)ev.data.scalar.value, node->len);
				if (!node->s) {
					err = c->err ? c->err : fail_nomem(c);
					break;
				}
			} else {
				node->kind = ev.type == YAML_MAPPING_START_EVENT ? Y_MAP : Y_SEQ;
			}
			if (depth > 0)
				err = yaml_attach(c, stack[depth - 1], node);
			else
				*root = node;
			if (err || node->kind == Y_SCALAR)
				break;
			if (depth >= SIGMA_YAML_DEPTH_MAX) {
				err =
				    fail(c, -E2BIG, SIGMA_INVALID, line,
					 "YAML nested deeper than %d levels", SIGMA_YAML_DEPTH_MAX);
				break;
			}
			stack[depth++] = node;
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			if (depth > 0)
				depth--;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	return err;
}

static bool ynode_is(const struct ynode *n, const char *s)
{
	return n && n->kind == Y_SCALAR && n->len == strlen(s) && memcmp(n->s, s, n->len) == 0;
}

/* Returns the value of key @key in mapping @map, or NULL. */
static struct ynode *map_get(const struct ynode *map, const char *key)
{
	if (!map || map->kind != Y_MAP)
		return NULL;
	for (struct ynode *k = map->first; k && k->next; k = k->next->next) {
		if (ynode_is(k, key))
			return k->next;
	}
	return NULL;
}

enum svtype { SV_NULL, SV_BOOL, SV_INT, SV_STR };

/* Types a scalar the way YAML's core schema does: only plain scalars can be non-strings. */
static enum svtype scalar_type(const struct ynode *n, bool *b, long long *i)
{
	const char *s = n->s;
	size_t len = n->len;

	if (!n->plain)
		return SV_STR;
	if (len == 0 || ynode_is(n, "~") || ynode_is(n, "null") || ynode_is(n, "Null") ||
	    ynode_is(n, "NULL"))
		return SV_NULL;
	if (ynode_is(n, "true") || ynode_is(n, "True") || ynode_is(n, "TRUE")) {
		*b = true;
		return SV_BOOL;
	}
	if (ynode_is(n, "false") || ynode_is(n, "False") || ynode_is(n, "FALSE")) {
		*b = false;
		return SV_BOOL;
	}
	if (len < 19) {
		size_t k = (s[0] == '-' || s[0] == '+') ? 1 : 0;
		bool digits = k < len;
		for (size_t j = k; j < len; j++)
			digits = digits && s[j] >= '0' && s[j] <= '9';
		if (digits) {
			char tmp[20];
			memcpy(tmp, s, len);
			tmp[len] = '\0';
			*i = strtoll(tmp, NULL, 10);
			return SV_INT;
		}
	}
	return SV_STR;
}

/* ------------------------------------------------------------------------------------ */
/* The boolean tree over vigil fields.                                                   */

enum ir_kind { IR_AND, IR_OR, IR_NOT, IR_PRED, IR_CONST, IR_REF };

enum ir_op {
	OP_EQUALS,
	OP_CONTAINS,
	OP_STARTSWITH,
	OP_ENDSWITH,
	OP_REGEX,
	OP_CIDR,
	OP_LT,
	OP_LTE,
	OP_GT,
	OP_GTE,
	OP_EXISTS,
};

static const char *const op_names[] = {
    [OP_EQUALS] = "equals",
    [OP_CONTAINS] = "contains",
    [OP_STARTSWITH] = "startswith",
    [OP_ENDSWITH] = "endswith",
    [OP_REGEX] = "regex",
    [OP_CIDR] = "cidr",
    [OP_LT] = "lt",
    [OP_LTE] = "lte",
    [OP_GT] = "gt",
    [OP_GTE] = "gte",
    [OP_EXISTS] = "exists",
};

/* One operand: a string (s != NULL, may hold NULs up to len) or an integer / boolean. */
struct sval {
	const char *s;
	size_t len;
	long long i;
};

struct ir {
	enum ir_kind kind;
	unsigned line;
	struct ir *first, *next; /* AND, OR, NOT: children */
	/* IR_PRED: FIELD OP any-of(vals) */
	const char *field;
	enum field_type ftype;
	enum ir_op op;
	bool ci;
	bool approx; /* matches less than Sigma would (a keyword search on some fields) */
	struct sval *vals;
	size_t nvals;
	/* IR_CONST: a predicate on a field vigil does not observe, folded to @value */
	bool value;
	const char *why;
	/* IR_REF: a selection named in the condition */
	const char *name;
	size_t namelen;
};

static struct ir *ir_new(struct ctx *c, enum ir_kind kind, unsigned line)
{
	struct ir *n = ctx_alloc(c, sizeof(*n));
	if (n) {
		n->kind = kind;
		n->line = line;
	}
	return n;
}

static struct ir *ir_const(struct ctx *c, bool value, const char *why, unsigned line)
{
	struct ir *n = ir_new(c, IR_CONST, line);
	if (n) {
		n->value = value;
		n->why = why;
	}
	return n;
}

static void ir_add(struct ir *parent, struct ir *kid)
{
	struct ir **p = &parent->first;
	while (*p)
		p = &(*p)->next;
	*p = kid;
	kid->next = NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Field mapping.                                                                         */

enum special { SP_NONE, SP_DIRECTION, SP_NETTYPE };

struct target {
	const char *field;
	enum field_type type;
	enum special sp;
};

#define C_PROC (1u << CAT_PROCESS)
#define C_FILE (1u << CAT_FILE)
#define C_NET  (1u << CAT_NETWORK)
#define C_ALL  (C_PROC | C_FILE | C_NET)

static const struct {
	const char *sigma;
	const char *vigil;
	unsigned cats;
	enum special sp;
} field_map[] = {
    {"Image", "process.executable", C_ALL, SP_NONE},
    {"CommandLine", "process.command_line", C_ALL, SP_NONE},
    {"ParentImage", "process.parent.executable", C_ALL, SP_NONE},
    {"ParentCommandLine", "process.parent.command_line", C_ALL, SP_NONE},
    {"User", "user.name", C_ALL, SP_NONE},
    {"CurrentDirectory", "process.working_directory", C_ALL, SP_NONE},
    {"ProcessId", "process.pid", C_ALL, SP_NONE},
    {"ParentProcessId", "process.parent.pid", C_ALL, SP_NONE},
    {"LogonId", "user.audit.id", C_ALL, SP_NONE},
    {"TargetFilename", "file.path", C_FILE, SP_NONE},
    {"DestinationIp", "destination.ip", C_NET, SP_NONE},
    {"DestinationPort", "destination.port", C_NET, SP_NONE},
    {"SourceIp", "source.ip", C_NET, SP_NONE},
    {"SourcePort", "source.port", C_NET, SP_NONE},
    {"Protocol", "network.transport", C_NET, SP_NONE},
    {"Initiated", "network.direction", C_NET, SP_DIRECTION},
    {"DestinationIsIpv6", "network.type", C_NET, SP_NETTYPE},
    {"SourceIsIpv6", "network.type", C_NET, SP_NETTYPE},
};

/* Resolves a Sigma field name for the current category; false when vigil does not observe it. */
static bool resolve_field(struct ctx *c, const char *name, size_t len, struct target *t)
{
	for (size_t i = 0; i < sizeof(field_map) / sizeof(field_map[0]); i++) {
		const char *vname;
		int id;

		if (strlen(field_map[i].sigma) != len || memcmp(field_map[i].sigma, name, len) != 0)
			continue;
		if (!(field_map[i].cats & (1u << c->cat)))
			return false;
		vname = field_map[i].vigil;
		if (c->var == VAR_RENAME && strcmp(vname, "file.path") == 0)
			vname = "file.target_path";
		id = registry_lookup(vname, strlen(vname));
		if (id < 0)
			return false;
		t->field = vname;
		t->type = registry_field(id)->type;
		t->sp = field_map[i].sp;
		return true;
	}
	return false;
}

/* The fields a keyword search looks in, per category. */
static const char *const keyword_fields_proc[] = {"process.command_line", NULL};
static const char *const keyword_fields_file[] = {"file.path", "process.command_line", NULL};
static const char *const keyword_fields_rename[] = {"file.target_path", "process.command_line",
						    NULL};

static const char *const *keyword_fields(struct ctx *c)
{
	if (c->cat == CAT_FILE)
		return c->var == VAR_RENAME ? keyword_fields_rename : keyword_fields_file;
	return keyword_fields_proc;
}

/* ------------------------------------------------------------------------------------ */
/* Values: Sigma strings with wildcards, encodings, and their native operators.          */

enum pel { PE_LIT, PE_STAR, PE_QMARK };

/* A Sigma string: bytes, each a literal or a wildcard. */
struct pat {
	unsigned char *b;
	unsigned char *w; /* enum pel per byte */
	size_t n;
};

static int pat_alloc(struct ctx *c, struct pat *p, size_t n)
{
	p->n = 0;
	p->b = ctx_alloc(c, n + 1);
	p->w = ctx_alloc(c, n + 1);
	return p->b && p->w ? 0 : c->err;
}

static void pat_push(struct pat *p, unsigned char b, enum pel w)
{
	p->b[p->n] = b;
	p->w[p->n] = (unsigned char)w;
	p->n++;
}

/* Parses Sigma's wildcard syntax: * and ? are wildcards; \*, \? and \\ are literals; a
 * backslash before anything else is itself. */
static int pat_parse(struct ctx *c, const char *s, size_t len, bool wildcards, struct pat *p)
{
	if (pat_alloc(c, p, len))
		return c->err;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!wildcards) {
			pat_push(p, ch, PE_LIT);
		} else if (ch == '\\' && i + 1 < len &&
			   (s[i + 1] == '*' || s[i + 1] == '?' || s[i + 1] == '\\')) {
			pat_push(p, (unsigned char)s[++i], PE_LIT);
		} else if (ch == '*') {
			if (p->n == 0 || p->w[p->n - 1] != PE_STAR)
				pat_push(p, ch, PE_STAR);
		} else if (ch == '?') {
			pat_push(p, ch, PE_QMARK);
		} else {
			pat_push(p, ch, PE_LIT);
		}
	}
	return 0;
}

static bool pat_literal(const struct pat *p)
{
	for (size_t i = 0; i < p->n; i++) {
		if (p->w[i] != PE_LIT)
			return false;
	}
	return true;
}

/* Value transformations, applied in the order the modifiers name them. */
enum xform { X_WIDE_LE, X_WIDE_BE, X_BASE64, X_BASE64OFFSET, X_WINDASH };

#define XFORMS_MAX 8

struct mods {
	bool all, cased, re, re_i, re_m, re_s, cidr, exists;
	int pos; /* 0, OP_CONTAINS, OP_STARTSWITH or OP_ENDSWITH */
	int cmp; /* -1 or OP_LT .. OP_GTE */
	enum xform xf[XFORMS_MAX];
	size_t nxf;
	bool encoded; /* an encoding made the value case-sensitive */
};

static int parse_mods(struct ctx *c, const char *key, size_t len, size_t fieldlen, unsigned line,
		      struct mods *m)
{
	size_t i = fieldlen;

	memset(m, 0, sizeof(*m));
	m->cmp = -1;
	while (i < len) {
		const char *name = key + i + 1;
		size_t n = 0;
		while (i + 1 + n < len && name[n] != '|')
			n++;
		i += 1 + n;
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(name, lit, n) == 0)
		if (IS("contains") || IS("startswith") || IS("endswith")) {
			if (m->pos)
				return fail(
				    c, -EINVAL, SIGMA_INVALID, line,
				    "'%.*s': more than one of contains, startswith, endswith",
				    shown_len(key, len), key);
			m->pos = IS("contains")	    ? OP_CONTAINS
				 : IS("startswith") ? OP_STARTSWITH
						    : OP_ENDSWITH;
		} else if (IS("all")) {
			m->all = true;
		} else if (IS("cased")) {
			m->cased = true;
		} else if (IS("re")) {
			m->re = true;
		} else if (IS("i") || IS("ignorecase") || IS("m") || IS("multiline") || IS("s") ||
			   IS("dotall")) {
			if (!m->re)
				return fail(c, -EINVAL, SIGMA_INVALID, line,
					    "'%.*s': modifier '%.*s' applies only after re",
					    shown_len(key, len), key, (int)n, name);
			if (IS("i") || IS("ignorecase"))
				m->re_i = true;
			else if (IS("m") || IS("multiline"))
				m->re_m = true;
			else
				m->re_s = true;
		} else if (IS("cidr")) {
			m->cidr = true;
		} else if (IS("exists")) {
			m->exists = true;
		} else if (IS("lt") || IS("lte") || IS("gt") || IS("gte")) {
			if (m->cmp >= 0)
				return fail(c, -EINVAL, SIGMA_INVALID, line,
					    "'%.*s': more than one comparison", shown_len(key, len),
					    key);
			m->cmp = IS("lt") ? OP_LT : IS("lte") ? OP_LTE : IS("gt") ? OP_GT : OP_GTE;
		} else if (IS("wide") || IS("utf16le") || IS("utf16be") || IS("utf16") ||
			   IS("base64") || IS("base64offset") || IS("windash")) {
			if (m->nxf >= XFORMS_MAX)
				return fail(c, -EINVAL, SIGMA_INVALID, line,
					    "'%.*s': too many modifiers", shown_len(key, len), key);
			m->xf[m->nxf++] = IS("utf16be")	       ? X_WIDE_BE
					  : IS("base64")       ? X_BASE64
					  : IS("base64offset") ? X_BASE64OFFSET
					  : IS("windash")      ? X_WINDASH
							       : X_WIDE_LE;
		} else if (IS("fieldref")) {
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, line,
				    "modifier fieldref (comparing two fields) is not supported");
		} else if (IS("expand")) {
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, line,
				    "modifier expand (placeholders) is not supported");
		} else {
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, line,
				    "modifier '%.*s' is not supported", shown_len(name, n), name);
		}
#undef IS
	}
	if ((m->re || m->cidr || m->exists || m->cmp >= 0) &&
	    (m->pos || m->nxf || (m->re + m->cidr + m->exists + (m->cmp >= 0)) > 1))
		return fail(
		    c, -EINVAL, SIGMA_INVALID, line,
		    "'%.*s': re, cidr, exists and lt/lte/gt/gte take no other value modifier",
		    shown_len(key, len), key);
	for (size_t k = 0; k < m->nxf; k++) {
		if (m->xf[k] == X_BASE64 || m->xf[k] == X_BASE64OFFSET || m->xf[k] == X_WIDE_LE ||
		    m->xf[k] == X_WIDE_BE)
			m->encoded = true;
	}
	return 0;
}

/* One alternative a value expands into: FIELD OP VALUE. */
struct atom {
	enum ir_op op;
	bool ci;
	bool approx;
	bool taken; /* grouped into a predicate already */
	struct sval v;
	struct atom *next;
};

struct atoms {
	struct atom *first, *last;
	size_t n;
};

static int atoms_add(struct ctx *c, struct atoms *l, enum ir_op op, bool ci, const char *s,
		     size_t len, long long i)
{
	struct atom *a;

	if (s && (memchr(s, 0, len) || !rules_utf8_valid(s, len)))
		return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, 0,
			    "a value holds a NUL byte or is not valid UTF-8, which vigil values "
			    "cannot be");
	a = ctx_alloc(c, sizeof(*a));
	if (!a)
		return c->err;
	if (++l->n > SIGMA_EXPANSION_MAX * 64u)
		return fail(c, -E2BIG, SIGMA_UNCONVERTIBLE, 0,
			    "a field item expands into more "
			    "than %u values",
			    SIGMA_EXPANSION_MAX * 64u);
	a->op = op;
	a->ci = ci;
	a->v.s = s;
	a->v.len = len;
	a->v.i = i;
	if (l->last)
		l->last->next = a;
	else
		l->first = a;
	l->last = a;
	return 0;
}

/* Appends @s as a regex-escaped literal. */
static int regex_lit(struct buf *b, const unsigned char *s, size_t n)
{
	int err = 0;
	for (size_t i = 0; i < n && !err; i++) {
		unsigned char ch = s[i];
		if (ch < 0x20 || ch == 0x7f)
			err = buf_printf(b, "\\x%02x", ch);
		else if (strchr("\\^$.|?*+()[]{}", ch))
			err = buf_printf(b, "\\%c", ch);
		else
			err = buf_append_char(b, (char)ch);
	}
	return err;
}

/* Regular expressions one conversion may check (each is a compile). */
#define REGEX_CHECKS_MAX 4096u

/*
 * Checks that the rules' regex engine (rx.h) accepts @pattern the way the rule compiler will
 * use it. Returns 0 or -EINVAL with the reason recorded.
 */
static int regex_check(struct ctx *c, const char *pattern, unsigned line)
{
	struct rx *r = NULL;
	char why[256];
	int ret;

	if (++c->regexes > REGEX_CHECKS_MAX)
		return fail(c, -E2BIG, SIGMA_UNCONVERTIBLE, line,
			    "rule needs more than %u regular expressions", REGEX_CHECKS_MAX);
	ret = rx_new(pattern, strlen(pattern), &r, why, sizeof(why));
	if (ret == -EINVAL)
		return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, line,
			    "regex '%.*s' is not accepted by the linear-time engine: %s",
			    shown_len(pattern, strlen(pattern)), pattern, why);
	if (ret < 0)
		return fail(c, ret, SIGMA_UNCONVERTIBLE, line, "out of memory checking a regex");
	rx_free(r);
	return 0;
}

/* Copies @b's text into the arena as the value of a new atom. */
static int atoms_add_buf(struct ctx *c, struct atoms *l, enum ir_op op, bool ci, struct buf *b)
{
	char *s = ctx_strndup(c, b->data ? b->data : "", b->len);
	if (!s)
		return c->err;
	return atoms_add(c, l, op, ci, s, b->len, 0);
}

/* Turns a wildcard pattern into the cheapest native operator on a string field. */
static int pat_to_atom(struct ctx *c, const struct pat *p, bool ci, unsigned line,
		       struct atoms *out)
{
	size_t lo = 0, hi = p->n;
	bool lead, trail, inner = false;
	enum ir_op op;
	struct buf b;
	int err;

	lead = p->n > 0 && p->w[0] == PE_STAR;
	trail = p->n > 0 && p->w[p->n - 1] == PE_STAR && (p->n > 1 || !lead);
	if (lead)
		lo++;
	if (trail)
		hi--;
	for (size_t i = lo; i < hi; i++)
		inner = inner || p->w[i] != PE_LIT;
	if (lead && p->n == 1) /* '*': any value at all */
		return atoms_add(c, out, OP_EXISTS, false, NULL, 0, 1);
	for (size_t i = lo; i < hi; i++) {
		if (p->b[i] == 0)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, line,
				    "value contains a NUL byte, which vigil values cannot hold");
	}
	if (!inner && !(hi > lo && p->b[lo] == '@')) {
		op = lead && trail ? OP_CONTAINS
		     : lead	   ? OP_ENDSWITH
		     : trail	   ? OP_STARTSWITH
				   : OP_EQUALS;
		if (hi - lo > SIGMA_VALUE_MAX)
			return fail(c, -E2BIG, SIGMA_UNCONVERTIBLE, line,
				    "value longer than %u bytes", SIGMA_VALUE_MAX);
		char *s = ctx_strndup(c, (const char *)p->b + lo, hi - lo);
		if (!s)
			return c->err;
		return atoms_add(c, out, op, ci, s, hi - lo, 0);
	}
	/* wildcards inside, or a leading '@' that would name a list: an anchored regex */
	buf_init(&b, SIGMA_VALUE_MAX);
	err = buf_append_str(&b, ci ? "(?is)" : "(?s)");
	if (!err && !lead)
		err = buf_append_str(&b, "\\A");
	for (size_t i = lo; i < hi && !err;) {
		if (p->w[i] == PE_STAR) {
			err = buf_append_str(&b, ".*");
			i++;
		} else if (p->w[i] == PE_QMARK) {
			/* one UTF-8 character: a lead byte and its continuation bytes */
			err = buf_append_str(&b, "[^\\x80-\\xbf][\\x80-\\xbf]*");
			i++;
		} else {
			size_t j = i;
			while (j < hi && p->w[j] == PE_LIT)
				j++;
			err = regex_lit(&b, p->b + i, j - i);
			i = j;
		}
	}
	if (!err && !trail)
		err = buf_append_str(&b, "\\z");
	if (err) {
		buf_release(&b);
		return fail(c, err, SIGMA_UNCONVERTIBLE, line,
			    err == -E2BIG ? "value's regex longer than %u bytes" : "out of memory",
			    SIGMA_VALUE_MAX);
	}
	err = regex_check(c, b.data, line);
	if (!err)
		err = atoms_add_buf(c, out, OP_REGEX, false, &b);
	buf_release(&b);
	return err;
}

/* Decodes one UTF-8 sequence at @s (valid UTF-8, as libyaml guarantees); returns its length. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t k = s[0] < 0x80 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	if (k > n)
		k = 1;
	*cp = k == 1 ? s[0] : s[0] & (0x7f >> k);
	for (size_t i = 1; i < k; i++)
		*cp = (*cp << 6) | (s[i] & 0x3f);
	return k;
}

/* Re-encodes the literal @p as UTF-16 (little- or big-endian). */
static int xf_wide(struct ctx *c, const struct pat *p, bool be, struct pat *out)
{
	size_t cap;

	if (size_mul(p->n, 4, &cap) || pat_alloc(c, out, cap))
		return c->err ? c->err : fail_nomem(c);
	for (size_t i = 0; i < p->n;) {
		uint32_t cp, units[2];
		size_t nu = 1;
		i += utf8_decode(p->b + i, p->n - i, &cp);
		units[0] = cp;
		if (cp >= 0x10000) {
			units[0] = 0xd800 + ((cp - 0x10000) >> 10);
			units[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
			nu = 2;
		}
		for (size_t u = 0; u < nu; u++) {
			unsigned char lo = units[u] & 0xff, hi = (units[u] >> 8) & 0xff;
			pat_push(out, be ? hi : lo, PE_LIT);
			pat_push(out, be ? lo : hi, PE_LIT);
		}
	}
	return 0;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of @n bytes at @s into @out (room for 4 * ceil(n / 3) + 1); returns the length. */
static size_t base64_encode(const unsigned char *s, size_t n, bool pad, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		out[o++] = b64chars[v >> 18];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = b64chars[(v >> 6) & 63];
		out[o++] = b64chars[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		out[o++] = b64chars[v >> 18];
		out[o++] = b64chars[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = b64chars[(v >> 6) & 63];
		else if (pad)
			out[o++] = '=';
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

/*
 * base64 / base64offset of a literal. base64offset gives the three encodings of the value
 * as it may sit at offset 0, 1 or 2 of a longer base64-encoded text: only the characters
 * that depend on the value's bytes alone are kept.
 */
static int xf_base64(struct ctx *c, const struct pat *p, bool offsets, struct pat *outs,
		     size_t *nout)
{
	size_t total, cap;

	*nout = 0;
	for (size_t off = 0; off < (offsets ? 3u : 1u); off++) {
		unsigned char *tmp;
		char *enc;
		size_t len, keep, skip;

		if (size_add(p->n, off, &total) || size_mul(total / 3 + 1, 4, &cap) ||
		    size_add(cap, 1, &cap))
			return fail_nomem(c);
		tmp = ctx_alloc(c, total + 1);
		enc = ctx_alloc(c, cap);
		if (!tmp || !enc)
			return c->err;
		memset(tmp, 'A', off);
		memcpy(tmp + off, p->b, p->n);
		len = base64_encode(tmp, total, !offsets, enc);
		if (offsets) {
			/* characters whose 6 bits all come from the buffer: floor(8 * total / 6) */
			keep = total / 3 * 4 + (total % 3 == 0 ? 0 : total % 3 == 1 ? 1 : 2);
			skip = off == 0 ? 0 : off == 1 ? 2 : 3;
			if (keep > len)
				keep = len;
			if (skip >= keep)
				continue; /* too short to leave any character of its own */
		} else {
			keep = len;
			skip = 0;
		}
		if (pat_alloc(c, &outs[*nout], keep - skip))
			return c->err;
		for (size_t i = skip; i < keep; i++)
			pat_push(&outs[*nout], (unsigned char)enc[i], PE_LIT);
		(*nout)++;
	}
	return 0;
}

static bool is_word(const struct pat *p, size_t i)
{
	unsigned char ch = p->b[i];
	return p->w[i] == PE_LIT && (ch == '_' || (ch >= '0' && ch <= '9') ||
				     ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') || ch >= 0x80);
}

static const char *const dashes[] = {"-", "/", "\xe2\x80\x93", "\xe2\x80\x94", "\xe2\x80\x95"};
#define NDASHES (sizeof(dashes) / sizeof(dashes[0]))

/*
 * windash: every - or / that starts a flag (not after a word character, before one) in
 * each of its five spellings. Appends the variants to @outs (room for SIGMA_EXPANSION_MAX).
 */
static int xf_windash(struct ctx *c, const struct pat *p, unsigned line, struct pat *outs,
		      size_t room, size_t *nout)
{
	size_t pos[16], npos = 0, variants = 1, cap;

	for (size_t i = 0; i < p->n; i++) {
		if (p->w[i] == PE_LIT && (p->b[i] == '-' || p->b[i] == '/') &&
		    (i == 0 || !is_word(p, i - 1)) && i + 1 < p->n && is_word(p, i + 1)) {
			if (npos == 16 || variants * NDASHES > room)
				return fail(c, -E2BIG, SIGMA_UNCONVERTIBLE, line,
					    "windash expands a value into more than %u variants",
					    SIGMA_EXPANSION_MAX);
			pos[npos++] = i;
			variants *= NDASHES;
		}
	}
	if (variants > room)
		return fail(c, -E2BIG, SIGMA_UNCONVERTIBLE, line,
			    "windash expands values into more than %u variants",
			    SIGMA_EXPANSION_MAX);
	if (size_mul(p->n, 3, &cap))
		return fail_nomem(c);
	for (size_t v = 0; v < variants; v++) {
		struct pat *o = &outs[(*nout)++];
		size_t k = 0, sel = v;
		if (pat_alloc(c, o, cap))
			return c->err;
		for (size_t i = 0; i < p->n; i++) {
			if (k < npos && pos[k] == i) {
				const char *d = dashes[sel % NDASHES];
				sel /= NDASHES;
				k++;
				for (; *d; d++)
					pat_push(o, (unsigned char)*d, PE_LIT);
			} else {
				pat_push(o, p->b[i], (enum pel)p->w[i]);
			}
		}
	}
	return 0;
}

/* Parses a decimal integer value (from a YAML integer or a string of digits). */
static bool parse_int(const char *s, size_t len, long long *out)
{
	char tmp[24];
	char *end;

	if (len == 0 || len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	for (size_t i = (tmp[0] == '-' || tmp[0] == '+') ? 1 : 0; i < len; i++) {
		if (tmp[i] < '0' || tmp[i] > '9')
			return false;
	}
	errno = 0;
	*out = strtoll(tmp, &end, 10);
	return errno == 0 && *end == '\0' && (tmp[0] != '+' && tmp[0] != '-' ? true : len > 1);
}

static bool valid_ip(const char *s, size_t len)
{
	unsigned char addr[16];
	char tmp[64];

	if (len == 0 || len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	return inet_pton(AF_INET, tmp, addr) == 1 || inet_pton(AF_INET6, tmp, addr) == 1;
}

static bool valid_cidr(const char *s, size_t len)
{
	unsigned char addr[16];
	char tmp[64];
	const char *slash;
	long long bits;
	int fam;

	if (len == 0 || len >= sizeof(tmp))
		return false;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	slash = strchr(tmp, '/');
	if (!slash)
		return valid_ip(s, len);
	tmp[slash - tmp] = '\0';
	fam = strchr(tmp, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(fam, tmp, addr) != 1)
		return false;
	if (!parse_int(slash + 1, strlen(slash + 1), &bits) || slash[1] == '-' || slash[1] == '+')
		return false;
	return bits >= 0 && bits <= (fam == AF_INET ? 32 : 128);
}

/*
 * An IP field matched by a prefix: whole octets ending in '.' ('10.', '192.168.') or whole
 * IPv6 groups ending in ':' ('fe80:') are CIDRs. Writes it to @out (64 bytes).
 */
static bool prefix_to_cidr(const unsigned char *s, size_t len, char *out)
{
	unsigned parts[8];
	size_t np = 0, i = 0;
	bool v6 = len > 0 && s[len - 1] == ':';
	int n;

	if (len == 0 || (s[len - 1] != '.' && !v6))
		return false;
	while (i < len) {
		unsigned v = 0, digits = 0;
		while (i < len && s[i] != (v6 ? ':' : '.')) {
			unsigned char ch = s[i];
			unsigned d = ch >= '0' && ch <= '9' ? ch - '0'
				     : v6 && (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f'
					 ? (ch | 0x20) - 'a' + 10
					 : 99;
			if (d == 99 || (!v6 && d > 9) || ++digits > (v6 ? 4u : 3u))
				return false;
			v = v * (v6 ? 16 : 10) + d;
			i++;
		}
		if (digits == 0 || (!v6 && v > 255) || np >= (v6 ? 7u : 3u))
			return false;
		parts[np++] = v;
		i++; /* the separator */
	}
	if (!v6)
		n = snprintf(out, 64, "%u.%u.%u.%u/%zu", parts[0], np > 1 ? parts[1] : 0,
			     np > 2 ? parts[2] : 0, 0u, np * 8);
	else {
		n = 0;
		for (size_t k = 0; k < np; k++)
			n += snprintf(out + n, 64 - (size_t)n, "%x:", parts[k]);
		n += snprintf(out + n, 64 - (size_t)n, ":/%zu", np * 16);
	}
	return n > 0 && n < 64;
}

/*
 * Expands one Sigma value (a scalar) of a field item into its alternatives, each an atom
 * for target @t. @m holds the item's modifiers.
 */
static int value_atoms(struct ctx *c, const struct target *t, const struct mods *m,
		       const struct ynode *v, const char *fname, struct atoms *out)
{
	struct pat cur[SIGMA_EXPANSION_MAX], next[SIGMA_EXPANSION_MAX];
	size_t ncur = 1, nnext;
	bool b = false, ci;
	long long iv = 0;
	enum svtype ty;
	const char *s;
	size_t len;
	int err;

	if (v->kind != Y_SCALAR)
		return fail(c, -EINVAL, SIGMA_INVALID, v->line,
			    "%s: a value must be a string, number, boolean or null", fname);
	ty = scalar_type(v, &b, &iv);
	s = v->s;
	len = v->len;

	if (ty == SV_NULL) {
		if (m->pos || m->nxf || m->re || m->cidr || m->exists || m->cmp >= 0)
			return fail(c, -EINVAL, SIGMA_INVALID, v->line,
				    "%s: null takes no value modifier", fname);
		return atoms_add(c, out, OP_EXISTS, false, NULL, 0, 0);
	}
	if (m->exists) {
		if (ty == SV_STR && (ynode_is(v, "true") || ynode_is(v, "false")))
			b = ynode_is(v, "true");
		else if (ty != SV_BOOL)
			return fail(c, -EINVAL, SIGMA_INVALID, v->line,
				    "%s|exists takes true or false", fname);
		return atoms_add(c, out, OP_EXISTS, false, NULL, 0, b);
	}
	if (t->sp != SP_NONE) {
		if (ty == SV_STR && (ynode_is(v, "true") || ynode_is(v, "false")))
			b = ynode_is(v, "true");
		else if (ty != SV_BOOL || m->pos || m->nxf || m->re || m->cidr || m->cmp >= 0)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
				    "%s: only 'true' or 'false' can be expressed", fname);
		if (t->sp == SP_DIRECTION)
			return atoms_add(c, out, OP_EQUALS, false, b ? "egress" : "ingress",
					 b ? 6 : 7, 0);
		return atoms_add(c, out, OP_EQUALS, false, b ? "ipv6" : "ipv4", 4, 0);
	}
	if (m->cmp >= 0) {
		if (t->type != FT_INT)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
				    "%s: numeric comparison on %s, which is not an integer field",
				    fname, t->field);
		if (ty != SV_INT && !(ty == SV_STR && parse_int(s, len, &iv)))
			return fail(c, -EINVAL, SIGMA_INVALID, v->line,
				    "%s: '%.*s' is not an integer", fname, shown_len(s, len), s);
		return atoms_add(c, out, (enum ir_op)m->cmp, false, NULL, 0, iv);
	}
	if (ty == SV_BOOL && t->type != FT_STRING)
		return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
			    "%s: a boolean cannot match %s (%s)", fname, t->field,
			    registry_type_name(t->type));
	if (m->re) {
		struct buf b2;
		if (t->type != FT_STRING)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
				    "%s: regex on %s, which is not a string field", fname,
				    t->field);
		if (memchr(s, 0, len) || len > SIGMA_VALUE_MAX - 8)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
				    "%s: regex too long or holding a NUL byte", fname);
		if (len == 0) /* matches any value */
			return atoms_add(c, out, OP_EXISTS, false, NULL, 0, 1);
		buf_init(&b2, SIGMA_VALUE_MAX);
		err = 0;
		if (m->re_i || m->re_m || m->re_s)
			err = buf_printf(&b2, "(?%s%s%s)", m->re_i ? "i" : "", m->re_m ? "m" : "",
					 m->re_s ? "s" : "");
		if (!err && len && s[0] == '@') /* a leading '@' would name a list */
			err = buf_append_char(&b2, '\\');
		if (!err)
			err = buf_append(&b2, s, len);
		if (!err)
			err = regex_check(c, b2.data, v->line);
		if (!err)
			err = atoms_add_buf(c, out, OP_REGEX, false, &b2);
		buf_release(&b2);
		return err ? (c->err ? c->err : fail_nomem(c)) : 0;
	}
	if (m->cidr) {
		if (t->type != FT_IP)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
				    "%s: cidr on %s, which is not an IP field", fname, t->field);
		if (!valid_cidr(s, len))
			return fail(c, -EINVAL, SIGMA_INVALID, v->line, "%s: '%.*s' is not a CIDR",
				    fname, shown_len(s, len), s);
		return atoms_add(c, out, OP_CIDR, false, s, len, 0);
	}

	/* a string with wildcards, through the transformations, then the position modifier */
	if (pat_parse(c, s, len, ty == SV_STR, &cur[0]))
		return c->err;
	for (size_t k = 0; k < m->nxf; k++) {
		nnext = 0;
		for (size_t j = 0; j < ncur; j++) {
			size_t got = 0;
			if (m->xf[k] != X_WINDASH && !pat_literal(&cur[j]))
				return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
					    "%s: a value with wildcards cannot be encoded", fname);
			if (nnext + 3 > SIGMA_EXPANSION_MAX)
				return fail(c, -E2BIG, SIGMA_UNCONVERTIBLE, v->line,
					    "%s: a value expands into more than %u variants", fname,
					    SIGMA_EXPANSION_MAX);
			switch (m->xf[k]) {
			case X_WIDE_LE:
			case X_WIDE_BE:
				err = xf_wide(c, &cur[j], m->xf[k] == X_WIDE_BE, &next[nnext]);
				got = 1;
				break;
			case X_BASE64:
			case X_BASE64OFFSET:
				err = xf_base64(c, &cur[j], m->xf[k] == X_BASE64OFFSET,
						&next[nnext], &got);
				break;
			case X_WINDASH:
				err = xf_windash(c, &cur[j], v->line, &next[nnext],
						 SIGMA_EXPANSION_MAX - nnext, &got);
				break;
			}
			if (err)
				return c->err ? c->err : err;
			nnext += got;
		}
		memcpy(cur, next, nnext * sizeof(cur[0]));
		ncur = nnext;
	}
	if (ncur == 0)
		return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
			    "%s: '%.*s' is too short to leave any encoded character", fname,
			    shown_len(s, len), s);
	ci = !m->cased && !m->encoded;
	for (size_t j = 0; j < ncur; j++) {
		struct pat *p = &cur[j], q;
		const char *pv = (const char *)p->b;

		if (t->type == FT_INT) {
			if (m->pos || !pat_literal(p) || !parse_int(pv, p->n, &iv))
				return fail(
				    c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
				    "%s: %s is an integer field: '%.*s' cannot be matched as "
				    "text",
				    fname, t->field, shown_len(s, len), s);
			err = atoms_add(c, out, OP_EQUALS, false, NULL, 0, iv);
		} else if (t->type == FT_IP) {
			/* an address; or a prefix (startswith, or a trailing *) as a CIDR */
			struct pat pre = *p;
			bool prefix = false;
			char cidr[64];
			if (!m->pos && pat_literal(p) && valid_ip(pv, p->n)) {
				err = atoms_add(c, out, OP_EQUALS, false, pv, p->n, 0);
				goto next_value;
			}
			if (m->pos == OP_STARTSWITH) {
				prefix = pat_literal(p);
			} else if (!m->pos && p->n >= 2 && p->w[p->n - 1] == PE_STAR) {
				pre.n--;
				prefix = pat_literal(&pre);
			}
			if (!prefix || !prefix_to_cidr(pre.b, pre.n, cidr))
				return fail(
				    c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
				    "%s: %s is an IP field: '%.*s' can only be an address, a "
				    "CIDR or a whole-octet prefix",
				    fname, t->field, shown_len(s, len), s);
			char *cs = ctx_strndup(c, cidr, strlen(cidr));
			err = cs ? atoms_add(c, out, OP_CIDR, false, cs, strlen(cidr), 0) : c->err;
		} else if (t->type == FT_STRING) {
			q = *p;
			if (m->pos == OP_CONTAINS || m->pos == OP_ENDSWITH ||
			    m->pos == OP_STARTSWITH) {
				size_t cap;
				if (size_add(p->n, 2, &cap) || pat_alloc(c, &q, cap))
					return c->err ? c->err : fail_nomem(c);
				if (m->pos != OP_STARTSWITH)
					pat_push(&q, '*', PE_STAR);
				for (size_t i = 0; i < p->n; i++) {
					if (p->w[i] == PE_STAR && q.n && q.w[q.n - 1] == PE_STAR)
						continue;
					pat_push(&q, p->b[i], (enum pel)p->w[i]);
				}
				if (m->pos != OP_ENDSWITH && !(q.n && q.w[q.n - 1] == PE_STAR))
					pat_push(&q, '*', PE_STAR);
			}
			err = pat_to_atom(c, &q, ci, v->line, out);
		} else {
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, v->line,
				    "%s: %s cannot be matched (%s)", fname, t->field,
				    registry_type_name(t->type));
		}
	next_value:
		if (err)
			return c->err ? c->err : err;
	}
	return 0;
}

/* Groups atoms that share an operator and case rule into one predicate each; OR of them. */
static struct ir *atoms_to_ir(struct ctx *c, const struct target *t, struct atoms *l, unsigned line)
{
	struct ir *any = ir_new(c, IR_OR, line);
	struct atom *a, *b;
	size_t n;

	if (!any)
		return NULL;
	for (a = l->first; a; a = a->next) {
		struct ir *p;
		if (a->taken)
			continue;
		n = 0;
		/* regex takes one pattern per predicate; other operators a list */
		for (b = a; b && n < (a->op == OP_REGEX ? 1u : RULES_MAX_LIST_ITEMS); b = b->next)
			n +=
			    !b->taken && b->op == a->op && b->ci == a->ci && b->approx == a->approx;
		p = ir_new(c, IR_PRED, line);
		if (!p)
			return NULL;
		p->field = t->field;
		p->ftype = t->type;
		p->op = a->op;
		p->ci = a->ci;
		p->approx = a->approx;
		p->vals = ctx_alloc(c, n * sizeof(*p->vals));
		if (!p->vals)
			return NULL;
		enum ir_op op = a->op;
		bool ci = a->ci, approx = a->approx;
		for (b = a; b && p->nvals < n; b = b->next) {
			if (!b->taken && b->op == op && b->ci == ci && b->approx == approx) {
				p->vals[p->nvals++] = b->v;
				b->taken = true;
			}
		}
		ir_add(any, p);
	}
	return any;
}

/* Translates one `Field|modifiers: value(s)` item of a selection. */
static struct ir *field_item(struct ctx *c, const struct ynode *key, const struct ynode *val)
{
	const char *k = key->s;
	size_t flen = 0, nvals;
	struct target t;
	struct mods m;
	struct ir *res;
	char fname[80];
	bool observed;

	while (flen < key->len && k[flen] != '|')
		flen++;
	snprintf(fname, sizeof(fname), "%.*s", shown_len(k, flen), k);
	if (flen == 0)
		return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, key->line,
			    "keyword search with modifiers ('%.*s') is not supported",
			    shown_len(k, key->len), k),
		       NULL;
	if (parse_mods(c, k, key->len, flen, key->line, &m))
		return NULL;
	if (val->kind == Y_MAP)
		return fail(c, -EINVAL, SIGMA_INVALID, val->line,
			    "%s: a value must be a scalar or a list", fname),
		       NULL;
	nvals = val->kind == Y_SEQ ? val->n : 1;
	if (nvals == 0)
		return fail(c, -EINVAL, SIGMA_INVALID, val->line, "%s: empty list of values",
			    fname),
		       NULL;

	observed = resolve_field(c, k, flen, &t);
	if (!observed) {
		/* vigil's events never carry it: each value is constant, null being true */
		char *why = ctx_alloc(c, flen + 1);
		bool any = false, all = true;
		if (!why)
			return NULL;
		memcpy(why, k, flen);
		for (const struct ynode *v = val->kind == Y_SEQ ? val->first : val; v;
		     v = val->kind == Y_SEQ ? v->next : NULL) {
			bool b = false, isnull;
			long long iv;
			if (v->kind != Y_SCALAR)
				return fail(c, -EINVAL, SIGMA_INVALID, v->line,
					    "%s: a value must be a string, number, boolean or null",
					    fname),
				       NULL;
			enum svtype ty = scalar_type(v, &b, &iv);
			isnull = ty == SV_NULL;
			if (m.exists) {
				if (ynode_is(v, "true") || ynode_is(v, "false"))
					b = ynode_is(v, "true");
				else if (ty != SV_BOOL)
					return fail(c, -EINVAL, SIGMA_INVALID, v->line,
						    "%s|exists takes true or false", fname),
					       NULL;
				isnull = !b;
			}
			any = any || isnull;
			all = all && isnull;
		}
		return ir_const(c, m.all ? all : any, why, key->line);
	}

	if (m.all && nvals > 1) {
		res = ir_new(c, IR_AND, key->line);
		if (!res)
			return NULL;
		for (const struct ynode *v = val->first; v; v = v->next) {
			struct atoms l = {0};
			struct ir *one;
			if (value_atoms(c, &t, &m, v, fname, &l))
				return NULL;
			one = atoms_to_ir(c, &t, &l, v->line);
			if (!one)
				return NULL;
			ir_add(res, one);
		}
		return res;
	}
	struct atoms l = {0};
	for (const struct ynode *v = val->kind == Y_SEQ ? val->first : val; v;
	     v = val->kind == Y_SEQ ? v->next : NULL) {
		if (value_atoms(c, &t, &m, v, fname, &l))
			return NULL;
	}
	return atoms_to_ir(c, &t, &l, key->line);
}

/* Translates an unfielded search: each keyword is searched for in the keyword fields. */
static struct ir *keyword_item(struct ctx *c, const struct ynode *v)
{
	const char *const *fields = keyword_fields(c);
	struct ir *any = ir_new(c, IR_OR, v->line);
	bool b;
	long long iv;

	if (!any)
		return NULL;
	if (v->kind != Y_SCALAR || scalar_type(v, &b, &iv) == SV_NULL)
		return fail(c, -EINVAL, SIGMA_INVALID, v->line,
			    "a keyword must be a string or a number"),
		       NULL;
	for (size_t f = 0; fields[f]; f++) {
		struct target t = {.field = fields[f], .type = FT_STRING, .sp = SP_NONE};
		struct mods m = {.pos = OP_CONTAINS, .cmp = -1};
		struct atoms l = {0};
		struct ir *one;
		if (value_atoms(c, &t, &m, v, "keyword", &l))
			return NULL;
		for (struct atom *a = l.first; a; a = a->next)
			a->approx = true;
		one = atoms_to_ir(c, &t, &l, v->line);
		if (!one)
			return NULL;
		ir_add(any, one);
	}
	return any;
}

/* Translates a selection: a mapping is the AND of its items, a list the OR of its entries. */
static struct ir *selection(struct ctx *c, const struct ynode *sel, const char *name)
{
	struct ir *n;

	if (sel->kind == Y_SCALAR)
		return keyword_item(c, sel);
	if (sel->kind == Y_MAP) {
		n = ir_new(c, IR_AND, sel->line);
		if (!n)
			return NULL;
		if (sel->n == 0)
			return fail(c, -EINVAL, SIGMA_INVALID, sel->line, "selection %s is empty",
				    name),
			       NULL;
		for (const struct ynode *k = sel->first; k && k->next; k = k->next->next) {
			struct ir *item = field_item(c, k, k->next);
			if (!item)
				return NULL;
			ir_add(n, item);
		}
		return n;
	}
	n = ir_new(c, IR_OR, sel->line);
	if (!n)
		return NULL;
	if (sel->n == 0)
		return fail(c, -EINVAL, SIGMA_INVALID, sel->line, "selection %s is empty", name),
		       NULL;
	for (const struct ynode *e = sel->first; e; e = e->next) {
		struct ir *item;
		if (e->kind == Y_SEQ)
			return fail(c, -EINVAL, SIGMA_INVALID, e->line,
				    "selection %s: a list inside a list", name),
			       NULL;
		item = e->kind == Y_MAP ? selection(c, e, name) : keyword_item(c, e);
		if (!item)
			return NULL;
		ir_add(n, item);
	}
	return n;
}

/* ------------------------------------------------------------------------------------ */
/* The condition: a recursive-descent parser with a depth bound.                          */

enum tok {
	T_END,
	T_LPAREN,
	T_RPAREN,
	T_AND,
	T_OR,
	T_NOT,
	T_OF,
	T_ALL,
	T_ANY,
	T_THEM,
	T_WORD,
	T_PIPE,
	T_BAD
};

struct cparse {
	struct ctx *c;
	const char *s;
	size_t len, pos;
	enum tok t;
	const char *ts; /* the current token's text */
	size_t tlen;
	const char *const *names;
	const size_t *namelens;
	size_t nnames;
	unsigned line;
};

static bool word_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '*' || ch == '?' || ch == '-' || ch == '.';
}

static bool tok_is(const struct cparse *p, const char *kw)
{
	size_t n = strlen(kw);
	if (p->tlen != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((p->ts[i] | 0x20) != kw[i])
			return false;
	}
	return true;
}

static void lex(struct cparse *p)
{
	while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
				   p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
		p->pos++;
	p->ts = p->s + p->pos;
	p->tlen = 0;
	if (p->pos >= p->len) {
		p->t = T_END;
		return;
	}
	char ch = p->s[p->pos];
	if (ch == '(' || ch == ')' || ch == '|') {
		p->t = ch == '(' ? T_LPAREN : ch == ')' ? T_RPAREN : T_PIPE;
		p->tlen = 1;
		p->pos++;
		return;
	}
	if (!word_char(ch)) {
		p->t = T_BAD;
		p->tlen = 1;
		return;
	}
	while (p->pos < p->len && word_char(p->s[p->pos]))
		p->pos++;
	p->tlen = (size_t)(p->s + p->pos - p->ts);
	p->t = tok_is(p, "and")	   ? T_AND
	       : tok_is(p, "or")   ? T_OR
	       : tok_is(p, "not")  ? T_NOT
	       : tok_is(p, "of")   ? T_OF
	       : tok_is(p, "all")  ? T_ALL
	       : tok_is(p, "any")  ? T_ANY
	       : tok_is(p, "them") ? T_THEM
				   : T_WORD;
}

__attribute__((format(printf, 2, 3))) static struct ir *cfail(struct cparse *p, const char *fmt,
							      ...)
{
	char msg[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail(p->c, -EINVAL, SIGMA_INVALID, p->line, "condition '%.*s': %s", shown_len(p->s, p->len),
	     p->s, msg);
	return NULL;
}

/* Glob match of a selection name against a pattern with * and ?. */
static bool glob(const char *pat, size_t pn, const char *s, size_t sn)
{
	size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;

	while (si < sn) {
		if (pi < pn && (pat[pi] == '?' || pat[pi] == s[si])) {
			pi++;
			si++;
		} else if (pi < pn && pat[pi] == '*') {
			star = pi++;
			mark = si;
		} else if (star != (size_t)-1) {
			pi = star + 1;
			si = ++mark;
		} else {
			return false;
		}
	}
	while (pi < pn && pat[pi] == '*')
		pi++;
	return pi == pn;
}

static struct ir *ref_node(struct cparse *p, size_t idx)
{
	struct ir *r = ir_new(p->c, IR_REF, p->line);
	if (r) {
		r->name = p->names[idx];
		r->namelen = p->namelens[idx];
	}
	return r;
}

static struct ir *c_or(struct cparse *p, int depth);

static struct ir *c_primary(struct cparse *p, int depth)
{
	struct ir *n;

	if (p->t == T_LPAREN) {
		if (depth >= SIGMA_COND_DEPTH_MAX)
			return cfail(p, "nested deeper than 64 levels");
		lex(p);
		n = c_or(p, depth + 1);
		if (!n)
			return NULL;
		if (p->t != T_RPAREN)
			return cfail(p, "missing ')' before '%.*s'", shown_len(p->ts, p->tlen),
				     p->ts);
		lex(p);
		return n;
	}
	if (p->t == T_ALL || p->t == T_ANY ||
	    (p->t == T_WORD && p->ts[0] >= '0' && p->ts[0] <= '9')) {
		/* a quantifier if "of" follows */
		struct cparse save = *p;
		bool all = p->t == T_ALL;
		if (p->t == T_WORD) {
			bool one = p->tlen == 1 && p->ts[0] == '1';
			lex(p);
			if (p->t != T_OF) {
				*p = save;
				goto word;
			}
			if (!one)
				return cfail(
				    p, "'%.*s of' is not supported (only 1 of, any of, all of)",
				    shown_len(save.ts, save.tlen), save.ts);
		} else {
			lex(p);
			if (p->t != T_OF)
				return cfail(p, "expected 'of' after '%.*s'",
					     shown_len(save.ts, save.tlen), save.ts);
		}
		lex(p);
		if (p->t != T_THEM && p->t != T_WORD)
			return cfail(p, "expected a name pattern or 'them' after 'of', not '%.*s'",
				     shown_len(p->ts, p->tlen), p->ts);
		n = ir_new(p->c, all ? IR_AND : IR_OR, p->line);
		if (!n)
			return NULL;
		for (size_t i = 0; i < p->nnames; i++) {
			bool hit = p->t == T_THEM
				       ? p->names[i][0] != '_'
				       : glob(p->ts, p->tlen, p->names[i], p->namelens[i]);
			if (hit) {
				struct ir *r = ref_node(p, i);
				if (!r)
					return NULL;
				ir_add(n, r);
			}
		}
		if (!n->first)
			return cfail(p, "'%.*s' matches no selection", shown_len(p->ts, p->tlen),
				     p->ts);
		lex(p);
		return n;
	}
	if (p->t == T_WORD) {
	word:
		if (memchr(p->ts, '*', p->tlen) || memchr(p->ts, '?', p->tlen))
			return cfail(p, "wildcard name '%.*s' outside '1 of' or 'all of'",
				     shown_len(p->ts, p->tlen), p->ts);
		if (tok_is(p, "near"))
			return cfail(p, "'near' is not supported");
		for (size_t i = 0; i < p->nnames; i++) {
			if (p->namelens[i] == p->tlen && memcmp(p->names[i], p->ts, p->tlen) == 0) {
				lex(p);
				return ref_node(p, i);
			}
		}
		return cfail(p, "'%.*s' names no selection", shown_len(p->ts, p->tlen), p->ts);
	}
	if (p->t == T_PIPE) {
		fail(p->c, -EINVAL, SIGMA_UNCONVERTIBLE, p->line,
		     "aggregation conditions ('| count() ...') are not supported");
		return NULL;
	}
	if (p->t == T_END)
		return cfail(p, "ends too early");
	return cfail(p, "unexpected '%.*s'", shown_len(p->ts, p->tlen), p->ts);
}

static struct ir *c_not(struct cparse *p, int depth)
{
	struct ir *n, *kid;

	if (p->t != T_NOT)
		return c_primary(p, depth);
	if (depth >= SIGMA_COND_DEPTH_MAX)
		return cfail(p, "nested deeper than 64 levels");
	lex(p);
	kid = c_not(p, depth + 1);
	if (!kid)
		return NULL;
	n = ir_new(p->c, IR_NOT, p->line);
	if (n)
		ir_add(n, kid);
	return n;
}

static struct ir *c_and(struct cparse *p, int depth)
{
	struct ir *n = c_not(p, depth), *all;

	if (!n || p->t != T_AND)
		return n;
	all = ir_new(p->c, IR_AND, p->line);
	if (!all)
		return NULL;
	ir_add(all, n);
	while (p->t == T_AND) {
		lex(p);
		n = c_not(p, depth);
		if (!n)
			return NULL;
		ir_add(all, n);
	}
	return all;
}

static struct ir *c_or(struct cparse *p, int depth)
{
	struct ir *n = c_and(p, depth), *any;

	if (!n || p->t != T_OR)
		return n;
	any = ir_new(p->c, IR_OR, p->line);
	if (!any)
		return NULL;
	ir_add(any, n);
	while (p->t == T_OR) {
		lex(p);
		n = c_and(p, depth);
		if (!n)
			return NULL;
		ir_add(any, n);
	}
	return any;
}

/* Parses one condition string into a tree whose leaves are IR_REF nodes. */
static struct ir *condition_parse(struct ctx *c, const char *s, size_t len, unsigned line,
				  const char *const *names, const size_t *namelens, size_t n)
{
	struct cparse p = {.c = c,
			   .s = s,
			   .len = len,
			   .names = names,
			   .namelens = namelens,
			   .nnames = n,
			   .line = line};
	struct ir *res;

	if (len > SIGMA_COND_MAX)
		return fail(c, -E2BIG, SIGMA_INVALID, line, "condition longer than %u bytes",
			    SIGMA_COND_MAX),
		       NULL;
	if (memchr(s, 0, len))
		return fail(c, -EINVAL, SIGMA_INVALID, line, "condition holds a NUL byte"), NULL;
	lex(&p);
	res = c_or(&p, 0);
	if (res && p.t != T_END) {
		if (p.t == T_PIPE)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, line,
				    "aggregation conditions ('| count() ...') are not supported"),
			       NULL;
		return cfail(&p, "unexpected '%.*s'", shown_len(p.ts, p.tlen), p.ts);
	}
	return res;
}

/* ------------------------------------------------------------------------------------ */
/* Folding constants, with the direction each fold moves the rule in.                     */

static void note_dropped(struct ctx *c, const char *why)
{
	for (size_t i = 0; i < c->nnotes; i++) {
		if (strcmp(c->notes[i], why) == 0)
			return;
	}
	if (c->nnotes < NOTES_MAX)
		c->notes[c->nnotes++] = why;
}

static bool same_pred(const struct ir *a, const struct ir *b)
{
	return a->kind == IR_PRED && b->kind == IR_PRED && strcmp(a->field, b->field) == 0 &&
	       a->op == b->op && a->ci == b->ci && a->approx == b->approx && a->op != OP_EXISTS &&
	       a->op != OP_REGEX;
}

/*
 * In the OR @n, merges predicates that differ only in their values into one (a value list
 * is any-of), as long as the merged list stays within the compiler's limit.
 */
static int merge_alternatives(struct ctx *c, struct ir *n)
{
	for (struct ir *a = n->first; a; a = a->next) {
		struct ir **pb = &a->next;
		while (*pb) {
			struct ir *b = *pb;
			struct sval *v;
			if (!same_pred(a, b) || a->nvals + b->nvals > RULES_MAX_LIST_ITEMS) {
				pb = &b->next;
				continue;
			}
			v = ctx_alloc(c, (a->nvals + b->nvals) * sizeof(*v));
			if (!v)
				return c->err;
			memcpy(v, a->vals, a->nvals * sizeof(*v));
			memcpy(v + a->nvals, b->vals, b->nvals * sizeof(*v));
			a->vals = v;
			a->nvals += b->nvals;
			*pb = b->next;
		}
	}
	return 0;
}

/*
 * Replaces the IR_REF leaves with their selections' translations and folds the constants
 * that fields vigil does not observe leave behind. @neg is true under an odd number of
 * nots. A fold that would widen the rule (a constraint lost) is an error; one that narrows
 * it (an alternative lost) is noted. Returns the folded tree, or NULL on error.
 */
static struct ir *fold(struct ctx *c, struct ir *n, bool neg, int depth)
{
	struct ir *kid, *out, *next;
	const char *dropped = NULL;

	if (depth > SIGMA_COND_DEPTH_MAX + 2 * SIGMA_YAML_DEPTH_MAX + 8)
		return fail(c, -E2BIG, SIGMA_INVALID, n->line, "condition nested too deeply"), NULL;
	switch (n->kind) {
	case IR_REF: {
		char name[128];
		const struct ynode *sel = NULL;
		struct ir *t;
		for (const struct ynode *k = c->detection->first; k && k->next; k = k->next->next) {
			if (k->len == n->namelen && memcmp(k->s, n->name, k->len) == 0)
				sel = k->next;
		}
		snprintf(name, sizeof(name), "%.*s", shown_len(n->name, n->namelen), n->name);
		if (!sel)
			return fail(c, -EINVAL, SIGMA_INVALID, n->line, "no selection %s", name),
			       NULL;
		t = selection(c, sel, name);
		return t ? fold(c, t, neg, depth + 1) : NULL;
	}
	case IR_PRED:
		if (n->approx && neg)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, n->line,
				    "a keyword search under 'not' cannot be expressed: vigil "
				    "searches keywords in %s only, so negating it would widen the "
				    "rule",
				    n->field),
			       NULL;
		return n;
	case IR_CONST:
		if (n->why && n->value != neg)
			return fail(
				   c, -EINVAL, SIGMA_UNCONVERTIBLE, n->line,
				   "a constraint on field '%s' cannot be expressed: vigil does not "
				   "observe it, and dropping the constraint would widen the rule",
				   n->why),
			       NULL;
		return n;
	case IR_NOT:
		kid = fold(c, n->first, !neg, depth + 1);
		if (!kid)
			return NULL;
		if (kid->kind == IR_CONST)
			return ir_const(c, !kid->value, kid->why, n->line);
		if (kid->kind == IR_NOT)
			return kid->first;
		out = ir_new(c, IR_NOT, n->line);
		if (out)
			ir_add(out, kid);
		return out;
	case IR_AND:
	case IR_OR: {
		bool is_and = n->kind == IR_AND;
		out = ir_new(c, n->kind, n->line);
		if (!out)
			return NULL;
		for (struct ir *k = n->first; k; k = next) {
			next = k->next;
			kid = fold(c, k, neg, depth + 1);
			if (!kid)
				return NULL;
			if (kid->kind == IR_CONST) {
				if (kid->value != is_and)
					return kid; /* false in an AND, true in an OR */
				if (kid->why)
					dropped = kid->why;
				continue; /* true in an AND, false in an OR: no effect */
			}
			if (kid->kind == n->kind) { /* flatten */
				for (struct ir *g = kid->first, *gn; g; g = gn) {
					gn = g->next;
					ir_add(out, g);
				}
			} else {
				ir_add(out, kid);
			}
		}
		if (!out->first)
			return ir_const(c, is_and, dropped, n->line);
		if (!is_and && merge_alternatives(c, out))
			return NULL;
		if (dropped)
			note_dropped(c, dropped);
		if (!out->first->next)
			return out->first;
		return out;
	}
	}
	return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Writing the native rule.                                                               */

/* Appends @s as a YAML double-quoted scalar. */
static int yaml_quote(struct buf *b, const char *s, size_t len)
{
	int err = buf_append_char(b, '"');
	for (size_t i = 0; i < len && !err; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\')
			err = buf_printf(b, "\\%c", ch);
		else if (ch == '\n')
			err = buf_append_str(b, "\\n");
		else if (ch == '\t')
			err = buf_append_str(b, "\\t");
		else if (ch < 0x20 || ch == 0x7f)
			err = buf_printf(b, "\\x%02x", ch);
		else
			err = buf_append_char(b, (char)ch);
	}
	return err ? err : buf_append_char(b, '"');
}

static int emit_indent(struct buf *b, int n)
{
	int err = 0;
	for (int i = 0; i < n && !err; i++)
		err = buf_append_char(b, ' ');
	return err;
}

static int emit_value(struct buf *b, const struct ir *p, const struct sval *v)
{
	if (p->op == OP_EXISTS)
		return buf_append_str(b, v->i ? "true" : "false");
	if (!v->s)
		return buf_printf(b, "%lld", v->i);
	return yaml_quote(b, v->s, v->len);
}

static int emit_pred(struct buf *b, const struct ir *p)
{
	bool ci = p->ci && p->ftype == FT_STRING && p->op <= OP_ENDSWITH;
	int err = buf_printf(b, "%s: {%s%s: ", p->field, ci ? "i" : "", op_names[p->op]);

	if (!err && p->nvals == 1) {
		err = emit_value(b, p, &p->vals[0]);
	} else if (!err) {
		err = buf_append_char(b, '[');
		for (size_t i = 0; i < p->nvals && !err; i++) {
			if (i)
				err = buf_append_str(b, ", ");
			if (!err)
				err = emit_value(b, p, &p->vals[i]);
		}
		if (!err)
			err = buf_append_char(b, ']');
	}
	return err ? err : buf_append_str(b, "}\n");
}

/*
 * Writes @n as a YAML mapping whose first key goes where the cursor is and whose other
 * lines are indented by @indent.
 */
static int emit_cond(struct buf *b, const struct ir *n, int indent)
{
	int err;

	switch (n->kind) {
	case IR_PRED:
		return emit_pred(b, n);
	case IR_NOT:
		err = buf_append_str(b, "not:\n");
		if (!err)
			err = emit_indent(b, indent + 2);
		return err ? err : emit_cond(b, n->first, indent + 2);
	case IR_AND:
	case IR_OR:
		err = buf_append_str(b, n->kind == IR_AND ? "all:\n" : "any:\n");
		for (const struct ir *k = n->first; k && !err; k = k->next) {
			err = emit_indent(b, indent + 2);
			if (!err)
				err = buf_append_str(b, "- ");
			if (!err)
				err = emit_cond(b, k, indent + 4);
		}
		return err;
	default:
		return -EINVAL;
	}
}

/* Counts @n's predicates and nodes and finds its depth, @depth being its own. */
static void measure(const struct ir *n, unsigned depth, size_t *preds, size_t *nodes,
		    unsigned *maxdepth)
{
	(*nodes)++;
	if (depth > *maxdepth)
		*maxdepth = depth;
	if (n->kind == IR_PRED) {
		(*preds)++;
		return;
	}
	for (const struct ir *k = n->first; k; k = k->next)
		measure(k, depth + 1, preds, nodes, maxdepth);
}

/* Refuses a converted condition that the rule compiler would refuse for its size. */
static int check_limits(struct ctx *c, struct ir *const branch[2], unsigned line)
{
	size_t preds = 3, nodes = 6; /* event.action predicates, the all, any, all around them */
	unsigned depth = 0;

	for (int i = 0; i < 2; i++) {
		/* at worst a branch sits under the top-level all, an any and an all: depth 4 */
		if (branch[i] && branch[i]->kind != IR_CONST)
			measure(branch[i], 4, &preds, &nodes, &depth);
	}
	if (depth > RULES_MAX_CONDITION_DEPTH)
		return fail(c, -E2BIG, SIGMA_UNCONVERTIBLE, line,
			    "converted condition nests deeper than the %u levels a rule may have",
			    RULES_MAX_CONDITION_DEPTH);
	if (preds > RULES_MAX_PREDICATES_PER_RULE || nodes > 4 * RULES_MAX_PREDICATES_PER_RULE)
		return fail(c, -E2BIG, SIGMA_UNCONVERTIBLE, line,
			    "converted condition has more than the %u predicates a rule may have",
			    RULES_MAX_PREDICATES_PER_RULE);
	return 0;
}

/* Writes one line of a YAML comment, control characters made spaces. */
static int emit_comment(struct buf *b, const char *prefix, const char *s, size_t len)
{
	int err = buf_append_str(b, prefix);
	for (size_t i = 0; i < len && !err; i++) {
		unsigned char ch = (unsigned char)s[i];
		err = buf_append_char(b, ch < 0x20 || ch == 0x7f ? ' ' : (char)ch);
	}
	return err ? err : buf_append_char(b, '\n');
}

struct meta {
	const struct ynode *title, *id, *description, *author, *level, *tags;
};

static const char *const levels[] = {"informational", "low", "medium", "high", "critical"};

/*
 * Writes the rule file: the header comment, the metadata and the condition, which is the
 * category's event.action restriction AND each branch (file_event: one per variant).
 */
static int emit_rule(struct ctx *c, const struct meta *m, const char *origin,
		     struct ir *const branch[2], struct buf *out)
{
	static const char *const actions[3][2] = {
	    [CAT_PROCESS] = {"{equals: \"exec\"}", NULL},
	    [CAT_FILE] = {"{in: [\"create\", \"write\"]}", "{equals: \"rename\"}"},
	    [CAT_NETWORK] = {"{in: [\"connect\", \"accept\"]}", NULL},
	};
	const char *lvl = "medium";
	size_t tlen = m->title->len;
	struct buf body[2];
	int err = 0, nb = branch[1] ? 2 : 1;
	bool merged = false;

	if (tlen > 256) { /* native names hold 1..256 bytes: cut on a character boundary */
		tlen = 256;
		while (tlen > 0 && ((unsigned char)m->title->s[tlen] & 0xc0) == 0x80)
			tlen--;
	}
	if (m->level) {
		lvl = NULL;
		for (size_t i = 0; i < 5; i++) {
			if (ynode_is(m->level, levels[i]))
				lvl = levels[i];
		}
	}
	/* each branch's condition, rendered once so identical ones can be merged */
	for (int i = 0; i < 2; i++)
		buf_init(&body[i], SIGMA_OUTPUT_MAX);
	for (int i = 0; i < nb && !err; i++) {
		const struct ir *n = branch[i];
		if (!n || n->kind == IR_CONST)
			continue;
		if (n->kind == IR_AND) {
			for (const struct ir *k = n->first; k && !err; k = k->next) {
				err = emit_indent(&body[i], 8);
				if (!err)
					err = buf_append_str(&body[i], "- ");
				if (!err)
					err = emit_cond(&body[i], k, 10);
			}
		} else {
			err = emit_indent(&body[i], 8);
			if (!err)
				err = buf_append_str(&body[i], "- ");
			if (!err)
				err = emit_cond(&body[i], n, 10);
		}
	}
	if (nb == 2 && !err)
		merged = body[0].len == body[1].len &&
			 (body[0].len == 0 || memcmp(body[0].data, body[1].data, body[0].len) == 0);

	if (!err && origin)
		err = emit_comment(out, "# Converted by vigil sigma convert from ", origin,
				   strlen(origin));
	if (!err && m->author)
		err = emit_comment(out, "# Sigma rule by ", m->author->s, m->author->len);
	for (size_t i = 0; i < c->nnotes && !err; i++)
		err = buf_printf(out,
				 "# note: alternatives on field '%s' were dropped: vigil does not "
				 "observe it\n",
				 c->notes[i]);
	if (!err)
		err = buf_printf(out, "rules:\n  - id: %s\n    name: ", m->id->s);
	if (!err)
		err = yaml_quote(out, m->title->s, tlen);
	if (!err)
		err = buf_append_str(out, "\n    description: ");
	if (!err) {
		struct buf d;
		buf_init(&d, SIGMA_OUTPUT_MAX);
		/* room for the attribution within the compiler's limit */
		size_t room = RULES_MAX_DESCRIPTION_BYTES - 64 - (m->author ? m->author->len : 0);
		if (m->author && m->author->len > RULES_MAX_DESCRIPTION_BYTES / 2)
			room = RULES_MAX_DESCRIPTION_BYTES / 2 - 64;
		if (m->description) {
			size_t dl = m->description->len;
			if (dl > room) {
				dl = room;
				while (dl > 0 &&
				       ((unsigned char)m->description->s[dl] & 0xc0) == 0x80)
					dl--;
			}
			err = buf_append(&d, m->description->s, dl);
		}
		while (!err && d.len && (d.data[d.len - 1] == '\n' || d.data[d.len - 1] == ' '))
			d.len--;
		if (!err)
			err = buf_printf(&d, "%sSigma rule", d.len ? "\n\n" : "");
		if (!err && m->author)
			err = buf_append_str(&d, " by ");
		if (!err && m->author) {
			size_t al = m->author->len;
			if (al > RULES_MAX_DESCRIPTION_BYTES / 2) {
				al = RULES_MAX_DESCRIPTION_BYTES / 2;
				while (al > 0 && ((unsigned char)m->author->s[al] & 0xc0) == 0x80)
					al--;
			}
			err = buf_append(&d, m->author->s, al);
		}
		if (!err)
			err = buf_append_str(&d, ", Detection Rule License 1.1.");
		if (!err)
			err = yaml_quote(out, d.data, d.len);
		buf_release(&d);
	}
	if (!err)
		err = buf_printf(out, "\n    level: %s\n    tags: [", lvl);
	if (m->tags && m->tags->kind == Y_SEQ) {
		bool first = true;
		size_t kept = 0;
		for (const struct ynode *t = m->tags->first; t && !err; t = t->next) {
			if (t->kind != Y_SCALAR || t->len < 8 || t->len > RULES_MAX_NAME_BYTES ||
			    memcmp(t->s, "attack.", 7) != 0 || memchr(t->s, 0, t->len) ||
			    kept == RULES_MAX_TAGS)
				continue;
			kept++;
			if (!first)
				err = buf_append_str(out, ", ");
			first = false;
			if (!err)
				err = yaml_quote(out, t->s, t->len);
		}
	}
	if (!err)
		err = buf_append_str(out, "]\n    condition:\n");
	if (nb == 1 || merged) {
		err = buf_printf(out, "      all:\n        - event.action: %s\n",
				 merged ? "{in: [\"create\", \"write\", \"rename\"]}"
					: actions[c->cat][0]);
		if (!err)
			err = buf_append(out, body[0].data ? body[0].data : "", body[0].len);
	} else {
		/* the union of the actions on top, where the engine looks for them */
		err = buf_append_str(out, "      all:\n"
					  "        - event.action: {in: [\"create\", \"write\", "
					  "\"rename\"]}\n"
					  "        - any:\n");
		for (int i = 0; i < 2 && !err; i++) {
			err = buf_printf(out,
					 "            - all:\n                - event.action: %s\n",
					 actions[c->cat][i]);
			/* the branch's lines were rendered for the top-level all: shift them */
			for (size_t k = 0; k < body[i].len && !err;) {
				size_t e = k;
				while (e < body[i].len && body[i].data[e] != '\n')
					e++;
				err = emit_indent(out, 8);
				if (!err)
					err = buf_append(out, body[i].data + k, e - k + 1);
				k = e + 1;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		buf_release(&body[i]);
	if (err)
		return fail(c, err, SIGMA_UNCONVERTIBLE, 0,
			    err == -E2BIG ? "converted rule larger than %u bytes" : "out of memory",
			    SIGMA_OUTPUT_MAX);
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The rule.                                                                              */

/* Text a native rule can carry: no NUL, valid UTF-8. Absent text is fine. */
static bool text_ok(const struct ynode *n)
{
	return !n || (!memchr(n->s, 0, n->len) && rules_utf8_valid(n->s, n->len));
}

static bool valid_id(const struct ynode *n)
{
	if (!n || n->kind != Y_SCALAR || n->len == 0 || n->len > 64)
		return false;
	for (size_t i = 0; i < n->len; i++) {
		char ch = n->s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static const struct ynode *scalar_or_null(struct ctx *c, const struct ynode *map, const char *key)
{
	const struct ynode *n = map_get(map, key);
	bool b;
	long long i;

	if (!n)
		return NULL;
	if (n->kind != Y_SCALAR) {
		fail(c, -EINVAL, SIGMA_INVALID, n->line, "%s must be a single value", key);
		return NULL;
	}
	if (scalar_type(n, &b, &i) == SV_NULL)
		return NULL;
	return n;
}

/* Builds the condition tree for the current variant: the OR of the condition strings. */
static struct ir *rule_condition(struct ctx *c, const struct ynode *cond)
{
	const char **names = ctx_alloc(c, YAML_MAP_KEYS_MAX * sizeof(*names));
	size_t *lens = ctx_alloc(c, YAML_MAP_KEYS_MAX * sizeof(*lens)), n = 0;
	struct ir *any;

	if (!names || !lens)
		return NULL;
	for (const struct ynode *k = c->detection->first; k && k->next; k = k->next->next) {
		if (ynode_is(k, "condition") || ynode_is(k, "timeframe"))
			continue;
		names[n] = k->s;
		lens[n++] = k->len;
	}
	any = ir_new(c, IR_OR, cond->line);
	if (!any)
		return NULL;
	for (const struct ynode *s = cond->kind == Y_SEQ ? cond->first : cond; s;
	     s = cond->kind == Y_SEQ ? s->next : NULL) {
		struct ir *one;
		if (s->kind != Y_SCALAR)
			return fail(c, -EINVAL, SIGMA_INVALID, s->line,
				    "condition must be a string or a list of strings"),
			       NULL;
		one = condition_parse(c, s->s, s->len, s->line, names, lens, n);
		if (!one)
			return NULL;
		ir_add(any, one);
	}
	if (!any->first)
		return fail(c, -EINVAL, SIGMA_INVALID, cond->line, "condition is empty"), NULL;
	return any;
}

static int convert(struct ctx *c, const char *src, size_t len, const char *origin,
		   struct sigma_result *res)
{
	const struct ynode *root, *ls, *product, *category, *service, *cond;
	struct ynode *r;
	struct meta m = {0};
	struct ir *branch[2] = {NULL, NULL};
	int nvar;

	if (len > SIGMA_FILE_MAX)
		return fail(c, -E2BIG, SIGMA_INVALID, 0, "file larger than %u bytes",
			    SIGMA_FILE_MAX);
	if (yaml_load(c, src, len, &r))
		return c->err;
	root = r;
	if (!root || root->kind != Y_MAP)
		return fail(c, -EINVAL, SIGMA_INVALID, root ? root->line : 0,
			    "not a Sigma rule: the document is not a mapping");
	m.id = map_get(root, "id");
	if (valid_id(m.id))
		snprintf(res->id, sizeof(res->id), "%s", m.id->s);
	if (map_get(root, "correlation"))
		return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, 0,
			    "correlation rules are not supported");
	if (map_get(root, "action"))
		return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, map_get(root, "action")->line,
			    "rule collections (action: ...) are not supported");

	ls = map_get(root, "logsource");
	if (!ls || ls->kind != Y_MAP)
		return fail(c, -EINVAL, SIGMA_INVALID, ls ? ls->line : 0,
			    "not a Sigma rule: no logsource mapping");
	product = scalar_or_null(c, ls, "product");
	category = scalar_or_null(c, ls, "category");
	service = scalar_or_null(c, ls, "service");
	if (c->err)
		return c->err;
	if (!product || !ynode_is(product, "linux") || !category || service ||
	    !(ynode_is(category, "process_creation") || ynode_is(category, "file_event") ||
	      ynode_is(category, "network_connection")))
		return fail(
		    c, -ENOTSUP, SIGMA_UNSUPPORTED_LOGSOURCE, ls->line,
		    "unsupported logsource: product %.*s, category %.*s%s%.*s",
		    product ? shown_len(product->s, product->len) : 1, product ? product->s : "-",
		    category ? shown_len(category->s, category->len) : 1,
		    category ? category->s : "-", service ? ", service " : "",
		    service ? shown_len(service->s, service->len) : 0, service ? service->s : "");
	c->cat = ynode_is(category, "process_creation") ? CAT_PROCESS
		 : ynode_is(category, "file_event")	? CAT_FILE
							: CAT_NETWORK;

	m.title = scalar_or_null(c, root, "title");
	m.description = scalar_or_null(c, root, "description");
	m.author = scalar_or_null(c, root, "author");
	m.level = scalar_or_null(c, root, "level");
	m.tags = map_get(root, "tags");
	if (c->err)
		return c->err;
	if (!m.title || m.title->len == 0)
		return fail(c, -EINVAL, SIGMA_INVALID, 0, "not a Sigma rule: no title");
	if (!text_ok(m.title) || !text_ok(m.description) || !text_ok(m.author))
		return fail(c, -EINVAL, SIGMA_INVALID, 0,
			    "title, description or author holds a NUL byte or invalid UTF-8");
	if (!valid_id(m.id))
		return fail(c, -EINVAL, SIGMA_INVALID, m.id ? m.id->line : 0,
			    m.id ? "id must be 1 to 64 of [A-Za-z0-9._-]"
				 : "no id: a converted rule is named by its Sigma id");
	if (m.level) {
		bool known = false;
		for (size_t i = 0; i < 5; i++)
			known = known || ynode_is(m.level, levels[i]);
		if (!known)
			return fail(c, -EINVAL, SIGMA_INVALID, m.level->line,
				    "unknown level '%.*s'", shown_len(m.level->s, m.level->len),
				    m.level->s);
	}
	if (m.tags && m.tags->kind != Y_SEQ)
		return fail(c, -EINVAL, SIGMA_INVALID, m.tags->line, "tags must be a list");

	c->detection = map_get(root, "detection");
	if (!c->detection || c->detection->kind != Y_MAP)
		return fail(c, -EINVAL, SIGMA_INVALID, c->detection ? c->detection->line : 0,
			    "not a Sigma rule: no detection mapping");
	cond = map_get(c->detection, "condition");
	if (!cond)
		return fail(c, -EINVAL, SIGMA_INVALID, c->detection->line,
			    "detection has no condition");

	nvar = c->cat == CAT_FILE ? 2 : 1;
	for (int v = 0; v < nvar; v++) {
		struct ir *tree;
		c->var = v == 0 ? VAR_PLAIN : VAR_RENAME;
		tree = rule_condition(c, cond);
		if (!tree)
			return c->err;
		branch[v] = fold(c, tree, false, 0);
		if (!branch[v])
			return c->err;
		if (branch[v]->kind == IR_CONST && !branch[v]->value && branch[v]->why)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, cond->line,
				    "field '%s' is needed for every match, and vigil does not "
				    "observe it",
				    branch[v]->why);
		if (branch[v]->kind == IR_CONST && !branch[v]->value)
			return fail(c, -EINVAL, SIGMA_UNCONVERTIBLE, cond->line,
				    "the condition can never match");
	}
	if (check_limits(c, branch, cond->line))
		return c->err;
	if (emit_rule(c, &m, origin, branch, &res->text))
		return c->err;
	for (size_t i = 0; i < c->nnotes; i++) {
		size_t used = strlen(res->note);
		snprintf(res->note + used, sizeof(res->note) - used,
			 "%salternatives on field '%s' "
			 "were dropped: vigil does "
			 "not observe it",
			 i ? "; " : "", c->notes[i]);
	}
	return 0;
}

int sigma_convert(const char *src, size_t len, const char *origin, struct sigma_result *res)
{
	struct ctx c = {0};
	int err;

	memset(res, 0, sizeof(*res));
	buf_init(&res->text, SIGMA_OUTPUT_MAX);
	c.arena.max = SIGMA_WORK_MAX;
	c.reason = res->reason;
	c.reasonlen = sizeof(res->reason);
	err = convert(&c, src ? src : "", src ? len : 0, origin, res);
	if (err) {
		res->status = c.err ? (enum sigma_status)c.status : SIGMA_INVALID;
		if (!res->reason[0])
			snprintf(res->reason, sizeof(res->reason), "conversion failed: %s",
				 strerror(-err));
		buf_release(&res->text);
	} else {
		res->status = SIGMA_CONVERTED;
	}
	arena_free(&c.arena);
	return err;
}

void sigma_result_free(struct sigma_result *res)
{
	if (!res)
		return;
	buf_release(&res->text);
}

/* Writes @n as an S-expression over selection names. */
static int sexpr(struct buf *b, const struct ir *n)
{
	int err;

	switch (n->kind) {
	case IR_REF:
		return buf_append(b, n->name, n->namelen);
	case IR_NOT:
	case IR_AND:
	case IR_OR:
		err = buf_append_str(b, n->kind == IR_NOT   ? "(not"
					: n->kind == IR_AND ? "(and"
							    : "(or");
		for (const struct ir *k = n->first; k && !err; k = k->next) {
			err = buf_append_char(b, ' ');
			if (!err)
				err = sexpr(b, k);
		}
		return err ? err : buf_append_char(b, ')');
	default:
		return -EINVAL;
	}
}

int sigma_condition_normalize(const char *cond, const char *const *names, size_t n, struct buf *out,
			      char *err, size_t errlen)
{
	struct ctx c = {0};
	size_t *lens = NULL;
	struct ir *tree;
	int rc = -EINVAL;

	c.arena.max = SIGMA_WORK_MAX;
	c.reason = err;
	c.reasonlen = errlen;
	if (errlen)
		err[0] = '\0';
	if (n) {
		lens = calloc(n, sizeof(*lens));
		if (!lens)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		lens[i] = strlen(names[i]);
	tree = condition_parse(&c, cond, strlen(cond), 0, names, lens, n);
	if (tree)
		rc = sexpr(out, tree);
	free(lens);
	arena_free(&c.arena);
	return rc;
}
