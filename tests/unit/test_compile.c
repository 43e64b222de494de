/*
 * Unit tests for the compiler's output and the verifier: hand-built bad programs (field id,
 * predicate index, backward jump, stack overflow ...) are refused; compiled programs have the
 * expected shape, buckets and pattern text; the database cache gives the same ruleset.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>

#include "lib/compile_int.h"
#include "lib/engine.h"
#include "lib/event_json.h"
#include "lib/rules.h"

static char err[512];
static const struct pool_sizes pools = {.n_strs = 4, .n_ints = 2, .n_nets = 1};

/* A valid two-predicate program: PRED 0; JF +2; POP; PRED 1. */
static struct cpred preds[2];
static struct insn code[RULES_MAX_STACK + 8];

static void good_program(struct prog_view *p)
{
	memset(preds, 0, sizeof(preds));
	memset(code, 0, sizeof(code));
	preds[0] = (struct cpred){
	    .field = F_PROCESS_NAME, .kind = PK_SCAN, .op = ROP_CONTAINS, .off = 0, .n = 2};
	preds[1] = (struct cpred){.field = F_PROCESS_PID, .kind = PK_INT_CMP, .cmp = CMP_GT};
	code[0] = (struct insn){.op = OP_PRED, .arg = 0};
	code[1] = (struct insn){.op = OP_JF, .arg = 2};
	code[2] = (struct insn){.op = OP_POP};
	code[3] = (struct insn){.op = OP_PRED, .arg = 1};
	*p = (struct prog_view){code, 4, preds, 2};
}

static void expect_refused(const struct prog_view *p, const char *needle)
{
	err[0] = '\0';
	assert_int_equal(program_verify(p, &pools, err, sizeof(err)), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("verifier said '%s', expected '%s'", err, needle);
}

static void accepts_good_program(void **state)
{
	struct prog_view p;
	good_program(&p);
	assert_int_equal(program_verify(&p, &pools, err, sizeof(err)), 0);
	/* AND/OR forms verify too */
	code[1] = (struct insn){.op = OP_PRED, .arg = 1};
	code[2] = (struct insn){.op = OP_OR};
	code[3] = (struct insn){.op = OP_NOT};
	assert_int_equal(program_verify(&p, &pools, err, sizeof(err)), 0);
}

static void field_id_out_of_range(void **state)
{
	struct prog_view p;
	good_program(&p);
	preds[0].field = FIELD_COUNT;
	expect_refused(&p, "field id");
	preds[0].field = 0xffff;
	expect_refused(&p, "out of range");
}

static void field_type_mismatch(void **state)
{
	struct prog_view p;
	good_program(&p);
	preds[1].field = F_PROCESS_NAME; /* integer comparison on a string field */
	expect_refused(&p, "does not fit field process.name of type string");
	good_program(&p);
	preds[0].field = F_DESTINATION_IP; /* pattern scan on an ip field */
	expect_refused(&p, "does not fit field destination.ip");
	good_program(&p);
	preds[0].kind = PK_COUNT;
	expect_refused(&p, "kind");
}

static void pool_out_of_range(void **state)
{
	struct prog_view p;
	good_program(&p);
	preds[0].off = 3;
	preds[0].n = 2; /* 3 + 2 > 4 strings */
	expect_refused(&p, "string values out of range");
	good_program(&p);
	preds[0].off = UINT32_MAX;
	preds[0].n = 2;
	expect_refused(&p, "string values out of range");
	good_program(&p);
	preds[1] = (struct cpred){.field = F_PROCESS_PID, .kind = PK_INT_IN, .off = 1, .n = 2};
	expect_refused(&p, "integer values out of range");
	good_program(&p);
	preds[1] = (struct cpred){.field = F_SOURCE_IP, .kind = PK_IP_IN, .off = 0, .n = 0};
	expect_refused(&p, "address values out of range");
	good_program(&p);
	preds[1].cmp = 9;
	expect_refused(&p, "bad comparison");
	good_program(&p);
	preds[0].flags = 0x80;
	expect_refused(&p, "unknown flags");
}

static void predicate_index_out_of_range(void **state)
{
	struct prog_view p;
	good_program(&p);
	code[3].arg = 2;
	expect_refused(&p, "instruction 3: predicate 2 out of range (2)");
	good_program(&p);
	code[0].arg = UINT32_MAX;
	expect_refused(&p, "out of range");
}

static void backward_jump(void **state)
{
	struct prog_view p;
	good_program(&p);
	code[1].arg = UINT32_MAX; /* -1: back to itself */
	expect_refused(&p, "instruction 1: jump by 4294967295 leaves the program");
	good_program(&p);
	code[1].arg = UINT32_MAX - 1; /* -2: back to the start, a loop */
	expect_refused(&p, "leaves the program");
	good_program(&p);
	code[1].arg = 3; /* one past the end */
	expect_refused(&p, "leaves the program");
	/* to the end exactly is fine */
	good_program(&p);
	code[1].arg = 2;
	assert_int_equal(program_verify(&p, &pools, err, sizeof(err)), 0);
}

static void stack_overflow_and_underflow(void **state)
{
	struct prog_view p;
	good_program(&p);
	for (unsigned i = 0; i < RULES_MAX_STACK + 1; i++)
		code[i] = (struct insn){.op = OP_PRED, .arg = 0};
	p.n_code = RULES_MAX_STACK + 1;
	expect_refused(&p, "stack deeper than 64");

	good_program(&p);
	code[0] = (struct insn){.op = OP_NOT};
	expect_refused(&p, "instruction 0: stack underflow");
	good_program(&p);
	code[2] = (struct insn){.op = OP_AND};
	expect_refused(&p, "instruction 2: stack underflow");
	good_program(&p);
	code[2] = (struct insn){.op = OP_PRED, .arg = 0}; /* ends with two values */
	expect_refused(&p, "stack");
	good_program(&p);
	p.n_code = 2; /* ends on a jump with nothing after: the jump still must land inside */
	expect_refused(&p, "leaves the program");
}

static void bad_shapes(void **state)
{
	struct prog_view p;
	good_program(&p);
	code[2].op = OP_COUNT;
	expect_refused(&p, "unknown opcode");
	good_program(&p);
	p.n_code = 0;
	expect_refused(&p, "program of 0 instructions");
	good_program(&p);
	p.n_code = RULES_MAX_PROGRAM_INSNS + 1;
	expect_refused(&p, "instructions (1 to 16384 allowed)");
	good_program(&p);
	p.n_preds = RULES_MAX_PREDICATES_PER_RULE + 1;
	expect_refused(&p, "predicates");
	/* a jump meeting the fall-through with another stack depth */
	good_program(&p);
	code[0] = (struct insn){.op = OP_PRED, .arg = 0};
	code[1] = (struct insn){.op = OP_JF, .arg = 1};
	code[2] = (struct insn){.op = OP_PRED, .arg = 1};
	code[3] = (struct insn){.op = OP_AND};
	expect_refused(&p, "instruction 2: stack 2 meets 1 at 3");
}

static struct ruleset *load(const char *yaml)
{
	struct rules_source src = {"c.yml", yaml, strlen(yaml)};
	struct ruleset *rs = NULL;
	if (ruleset_load_sources(&src, 1, &rs, err, sizeof(err)) < 0)
		fail_msg("load failed: %s", err);
	return rs;
}

static void compiled_shape(void **state)
{
	struct ruleset *rs =
	    load("macros:\n  m: {all: [event.action: exec, process.name: sh]}\n"
		 "rules:\n"
		 "  - id: a\n    name: n\n"
		 "    condition: {all: [{macro: m}, {any: [process.pid: {gt: 5}, "
		 "process.command_line: {icontains: [x, y]}]}, {not: {user.id: '0'}}]}\n"
		 "  - id: b\n    name: n\n    condition: {not: {process.name: sh}}\n"
		 "  - id: c\n    name: n\n"
		 "    sequence: {within: 1m, steps: [{condition: {event.action: fork}},"
		 " {condition: {event.action: exit}, by: process.pid}]}\n");
	assert_int_equal(rs->n_rules, 3);
	assert_int_equal(rs->n_progs, 4);
	/* rule a: all(action, name, any(pid, cmdline), not(uid)) flattened, short-circuit */
	const struct cprog *a = &rs->progs[0];
	assert_int_equal(a->n_preds, 5);
	assert_true(a->needs_hit);
	assert_int_equal(a->n_act, 1);
	const struct insn *c = rs->code + a->code_off;
	uint8_t ops[] = {OP_PRED, OP_JF,  OP_POP,  OP_PRED, OP_JF,  OP_POP,  OP_PRED,
			 OP_JT,	  OP_POP, OP_PRED, OP_JF,   OP_POP, OP_PRED, OP_NOT};
	assert_int_equal(a->n_code, sizeof(ops));
	for (size_t i = 0; i < sizeof(ops); i++)
		assert_int_equal(c[i].op, ops[i]);
	/* every JF of the all lands at its end */
	assert_int_equal(1 + 1 + c[1].arg, a->n_code);
	assert_int_equal(rs->preds[a->pred_base].kind, PK_STR_EQ); /* event.action: direct */
	assert_int_equal(rs->preds[a->pred_base + 1].kind, PK_SCAN);
	assert_int_equal(rs->preds[a->pred_base + 2].kind, PK_INT_CMP);
	assert_int_equal(rs->preds[a->pred_base + 3].flags, PF_CASELESS);
	/* rule b can hold with no pattern hit: it is evaluated for every event */
	assert_false(rs->progs[1].needs_hit);
	assert_int_equal(rs->progs[1].n_act, 0);
	/* sequence steps, last first, each with its own key */
	const struct crule *cr = &rs->rules[2];
	assert_int_equal(cr->n_progs, 2);
	assert_int_equal(rs->progs[cr->prog_first].step, 1);
	assert_int_equal(rs->progs[cr->prog_first].by_field, F_PROCESS_PID);
	assert_int_equal(rs->progs[cr->prog_first + 1].step, 0);
	assert_int_equal(rs->progs[cr->prog_first + 1].by_field, -1);
	/* buckets: the catch-all one, then exec, fork and exit */
	assert_int_equal(rs->n_buckets, 4);
	assert_int_equal(rs->n_actions, 3);
	assert_int_equal(ruleset_verify(rs, err, sizeof(err)), 0);
	/* corrupting a compiled program is caught */
	uint32_t saved = rs->code[a->code_off + 1].arg;
	rs->code[a->code_off + 1].arg = 100;
	assert_int_equal(ruleset_verify(rs, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "c.yml:4: compiled program of rule a failed verification: "
				    "instruction 1: jump by 100 leaves the program"));
	rs->code[a->code_off + 1].arg = saved;
	rs->preds[a->pred_base + 2].field = FIELD_COUNT + 3;
	assert_int_equal(ruleset_verify(rs, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "field id"));
	rs->preds[a->pred_base + 2].field = F_PROCESS_PID;
	assert_int_equal(ruleset_verify(rs, err, sizeof(err)), 0);
	ruleset_free(rs);
}

static void shared_databases(void **state)
{
	/* rules without an action constraint join every bucket's databases */
	struct ruleset *rs = load("rules:\n"
				  "  - {id: a, name: n, condition: {all: [event.action: exec, "
				  "process.name: {contains: x}]}}\n"
				  "  - {id: b, name: n, condition: {all: [event.action: fork, "
				  "file.path: {contains: y}]}}\n"
				  "  - {id: c, name: n, condition: {file.name: {contains: z}}}\n");
	struct ruleset_stats st;
	ruleset_get_stats(rs, &st);
	/* file.name's database is the same for all three buckets: built once */
	assert_int_equal(st.databases, 3);
	assert_int_equal(st.buckets, 3);
	assert_int_equal(st.patterns, 3);
	ruleset_free(rs);
}

static void literal_positions(void **state)
{
	assert_int_equal(hsdb_literal_mode(ROP_EQUALS), LIT_AT_START | LIT_AT_END);
	assert_int_equal(hsdb_literal_mode(ROP_STARTSWITH), LIT_AT_START);
	assert_int_equal(hsdb_literal_mode(ROP_ENDSWITH), LIT_AT_END);
	assert_int_equal(hsdb_literal_mode(ROP_CONTAINS), 0);
	/* one literal under four operators is four patterns; contains and icontains two more */
	struct ruleset *rs =
	    load("rules:\n  - {id: a, name: n, condition: {any: ["
		 "process.name: ab, process.name: {startswith: ab}, "
		 "process.name: {endswith: ab}, process.name: {contains: ab}, "
		 "process.name: {icontains: ab}, process.name: {regex: 'a+b'}]}}\n");
	struct ruleset_stats st;
	ruleset_get_stats(rs, &st);
	assert_int_equal(st.patterns, 6);
	assert_int_equal(st.databases, 2); /* literals, and the regex */
	ruleset_free(rs);
}

/* --- the database cache --- */

static struct ruleset *load_cached(const struct rules_source *src, size_t n,
				   struct rules_cache *cache)
{
	struct ruleset *rs = NULL;
	if (ruleset_load_sources_cached(src, n, cache, &rs, err, sizeof(err)) < 0)
		fail_msg("load failed: %s", err);
	return rs;
}

struct alerts {
	char ids[8192];
	size_t used;
};

static void on_alert(void *ctx, const struct rule_info *rule, const struct event *ev)
{
	struct alerts *a = ctx;
	int k = snprintf(a->ids + a->used, sizeof(a->ids) - a->used, "%s,", rule->id);
	assert_true(k > 0 && (size_t)k < sizeof(a->ids) - a->used);
	a->used += (size_t)k;
}

/* Evaluates event @json (length @len) with @rs; returns the alerting rule ids, in order. */
static void eval_one(const struct ruleset *rs, const char *json, size_t len, uint64_t now,
		     struct alerts *out)
{
	struct engine *e = NULL;
	struct event *ev = event_new();
	char why[256];

	assert_non_null(ev);
	assert_int_equal(engine_new(rs, NULL, &e), 0);
	if (event_parse_json(ev, json, len, why, sizeof(why), NULL) != EVENT_PARSED)
		fail_msg("bad test event %.*s: %s", (int)len, json, why);
	memset(out, 0, sizeof(*out));
	assert_true(engine_eval(e, ev, now, on_alert, out) >= 0);
	event_free(ev);
	engine_free(e);
}

/* @a and @b raise the same alerts for every event of the tests of @a's rules and @extra. */
static unsigned expect_same_alerts(const struct ruleset *a, const struct ruleset *b,
				   const char *const *extra, size_t n_extra)
{
	struct alerts x, y;
	unsigned events = 0, alerting = 0;

	for (uint32_t r = 0; r < a->n_rules; r++) {
		for (uint32_t t = 0; t < a->rules[r].n_tests; t++) {
			const struct rtest *rt = &a->rules[r].tests[t];
			for (uint32_t k = 0; k < rt->n; k++) {
				eval_one(a, rt->json[k], rt->lens[k], 1750000000ull * 1000000000ull,
					 &x);
				eval_one(b, rt->json[k], rt->lens[k], 1750000000ull * 1000000000ull,
					 &y);
				assert_string_equal(x.ids, y.ids);
				events++;
				alerting += x.used > 0;
			}
		}
	}
	for (size_t i = 0; i < n_extra; i++) {
		eval_one(a, extra[i], strlen(extra[i]), 0, &x);
		eval_one(b, extra[i], strlen(extra[i]), 0, &y);
		assert_string_equal(x.ids, y.ids);
		events++;
		alerting += x.used > 0;
	}
	assert_true(alerting > 0);
	return events;
}

/*
 * The Hyperscan databases of @rs: equals literals alone are found by lookup, without one; a
 * regex set has one for its atoms when any of its regexes has atoms; on-demand regexes are
 * RE2's alone.
 */
static uint64_t hs_databases(const struct ruleset *rs)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		const struct cdb *d = &rs->dbs[i];
		if (d->rx) {
			assert_null(d->mode);
			assert_int_equal(rx_set_count(d->rx), d->n_ids);
			assert_true((d->db == NULL) == (rx_set_atom_count(d->rx) == 0));
		} else {
			assert_true(d->n_exact <= d->n_ids);
			assert_true((d->db == NULL) == (d->n_exact == d->n_ids));
		}
		n += d->db != NULL;
	}
	return n;
}

/* Everything but the database pointers is the same in @a and @b. */
static void expect_same_ruleset(const struct ruleset *a, const struct ruleset *b)
{
	struct ruleset_stats sa, sb;

	ruleset_get_stats(a, &sa);
	ruleset_get_stats(b, &sb);
	assert_memory_equal(&sa, &sb, sizeof(sa));
	assert_int_equal(a->n_preds, b->n_preds);
	assert_memory_equal(a->preds, b->preds, a->n_preds * sizeof(*a->preds));
	assert_int_equal(a->n_dbs, b->n_dbs);
	for (uint32_t i = 0; i < a->n_dbs; i++) {
		const struct cdb *x = &a->dbs[i], *y = &b->dbs[i];
		assert_int_equal(x->field, y->field);
		assert_int_equal(x->n_ids, y->n_ids);
		assert_int_equal(x->n_fan, y->n_fan);
		assert_memory_equal(x->fan_start, y->fan_start, (x->n_ids + 1) * sizeof(uint32_t));
		assert_memory_equal(x->fan_preds, y->fan_preds, x->n_fan * sizeof(uint32_t));
		assert_int_equal(x->bytes, y->bytes);
	}
	assert_int_equal(a->n_lazy, b->n_lazy);
	for (uint32_t b_ = 0; b_ < a->n_buckets; b_++) {
		assert_int_equal(a->buckets[b_].n_dbs, b->buckets[b_].n_dbs);
		assert_memory_equal(a->buckets[b_].dbs, b->buckets[b_].dbs,
				    a->buckets[b_].n_dbs * sizeof(*a->buckets[b_].dbs));
	}
}

/* Literal (every operator), scanned regex and on-demand regex databases. */
static const char cache_rules[] =
    "rules:\n"
    "  - {id: lit, name: n, condition: {all: [event.action: exec, process.name: {startswith: "
    "ba}]}}\n"
    "  - {id: eq, name: n, condition: {process.executable: /usr/bin/curl}}\n"
    "  - {id: ends, name: n, condition: {all: [event.action: exec, process.command_line: "
    "{endswith: .sh}]}}\n"
    "  - {id: icont, name: n, condition: {process.command_line: {icontains: [WGET, 'nc -e']}}}\n"
    "  - {id: scanre, name: n, condition: {process.command_line: {regex: 'base64 +-d'}}}\n"
    "  - {id: lazyre, name: n, condition: {all: [process.name: {contains: py}, "
    "process.command_line: {regex: 'pty\\.spawn\\('}]}}\n";

static const char *const cache_events[] = {
    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"name\":\"bash\",\"command_"
    "line\":\"x.sh\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"fork\"},\"process\":{\"name\":\"bash\",\"command_"
    "line\":\"wget -q\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"executable\":\"/usr/bin/"
    "curl\",\"name\":\"curl\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"name\":\"sh\",\"command_"
    "line\":\"echo a | base64   -d\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"name\":\"python3\","
    "\"command_line\":\"import pty; pty.spawn('/bin/sh')\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"name\":\"perl\",\"command_"
    "line\":\"pty.spawn( NC -E\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":{\"name\":\"zsh\",\"command_"
    "line\":\"ls\"}}",
};

static void cache_gives_same_alerts(void **state)
{
	struct rules_source src = {"c.yml", cache_rules, strlen(cache_rules)};
	struct rules_cache *cache = NULL;
	struct rules_cache_stats cs;
	struct ruleset *plain, *cold, *warm;
	struct alerts x;

	assert_int_equal(rules_cache_new(0, 0, &cache), 0);
	plain = load_cached(&src, 1, NULL);
	cold = load_cached(&src, 1, cache);
	rules_cache_get_stats(cache, &cs);
	assert_int_equal(cs.hits, 0);
	assert_int_equal(cs.misses, hs_databases(plain));
	assert_int_equal(cs.entries, hs_databases(plain));
	assert_int_equal(plain->n_lazy, 1);
	/* rule eq's process.executable is matched by lookup alone */
	assert_true(hs_databases(plain) < plain->n_dbs + plain->n_lazy);
	warm = load_cached(&src, 1, cache);
	rules_cache_get_stats(cache, &cs);
	assert_int_equal(cs.hits, hs_databases(plain));
	assert_int_equal(cs.entries, hs_databases(plain));
	/* the warm ruleset shares the cold one's databases; the plain one has its own */
	for (uint32_t i = 0; i < warm->n_dbs; i++) {
		assert_ptr_equal(warm->dbs[i].db, cold->dbs[i].db);
		if (cold->dbs[i].db)
			assert_ptr_not_equal(plain->dbs[i].db, cold->dbs[i].db);
		else
			assert_null(plain->dbs[i].db);
	}
	/* an on-demand regex costs microseconds to compile: each load has its own */
	assert_non_null(warm->lazy[0]);
	assert_ptr_not_equal(warm->lazy[0], cold->lazy[0]);
	expect_same_ruleset(plain, cold);
	expect_same_ruleset(plain, warm);
	expect_same_alerts(plain, warm, cache_events, sizeof(cache_events) / sizeof(*cache_events));
	expect_same_alerts(plain, cold, cache_events, sizeof(cache_events) / sizeof(*cache_events));
	eval_one(warm, cache_events[4], strlen(cache_events[4]), 0, &x);
	assert_string_equal(x.ids, "lazyre,");
	/* the owner lets go first: the rulesets keep working on the databases they hold */
	rules_cache_free(cache);
	ruleset_free(cold);
	eval_one(warm, cache_events[0], strlen(cache_events[0]), 0, &x);
	assert_string_equal(x.ids, "lit,ends,");
	ruleset_free(warm);
	ruleset_free(plain);
}

/* Rules that run the same regex on demand share one database; each still raises its alert. */
static const char shared_rules[] =
    "rules:\n"
    "  - {id: a, name: n, condition: {all: [process.name: {contains: py}, "
    "process.command_line: {regex: 'pty\\.spawn\\('}]}}\n"
    "  - {id: b, name: n, condition: {all: [process.executable: {endswith: python3}, "
    "process.command_line: {regex: 'pty\\.spawn\\('}]}}\n"
    "  - {id: c, name: n, condition: {all: [process.name: {contains: py}, "
    "process.command_line: {regex: 'os\\.system'}]}}\n";

static void lazy_regex_shared(void **state)
{
	struct rules_source src = {"s.yml", shared_rules, strlen(shared_rules)};
	static const char pty[] = "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":"
				  "{\"name\":\"python3\",\"executable\":\"/usr/bin/python3\","
				  "\"command_line\":\"import pty; pty.spawn('/bin/sh')\"}}";
	static const char sys[] = "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},\"process\":"
				  "{\"name\":\"python3\",\"executable\":\"/usr/bin/python3\","
				  "\"command_line\":\"import os; os.system('id')\"}}";
	struct ruleset *rs = load_cached(&src, 1, NULL);
	int32_t nums[2];
	uint32_t k = 0;
	struct alerts x;

	assert_int_equal(rs->n_lazy, 2);
	for (uint32_t p = 0; p < rs->n_preds; p++) {
		if (rs->preds[p].kind == PK_REGEX && k < 2)
			nums[k++] = (int32_t)rs->preds[p].num;
	}
	assert_int_equal(k, 2);
	assert_int_equal(nums[0], nums[1]);
	eval_one(rs, pty, strlen(pty), 0, &x);
	assert_string_equal(x.ids, "a,b,");
	eval_one(rs, sys, strlen(sys), 0, &x);
	assert_string_equal(x.ids, "c,");
	ruleset_free(rs);
}

/* Databases compile on two threads; a rejected pattern still names the first rule using it. */
static void rejected_pattern_names_first_rule(void **state)
{
	static const char yaml[] =
	    "rules:\n"
	    "  - {id: ok1, name: n, condition: {process.command_line: {regex: 'a+b'}}}\n"
	    "  - {id: bad1, name: n, condition: {all: [process.name: {contains: x}, "
	    "process.command_line: {regex: '(a)\\1'}]}}\n"
	    "  - {id: bad2, name: n, condition: {all: [process.name: {contains: y}, "
	    "process.command_line: {regex: '(a)\\1'}]}}\n"
	    "  - {id: ok2, name: n, condition: {process.name: {contains: z}}}\n";
	struct rules_source src = {"r.yml", yaml, strlen(yaml)};
	struct ruleset *rs = NULL;

	assert_int_equal(ruleset_load_sources(&src, 1, &rs, err, sizeof(err)), -EINVAL);
	assert_null(rs);
	assert_non_null(strstr(err, "r.yml:3: process.command_line: regex: pattern '(a)\\1' "
				    "rejected by the linear-time engine"));
	assert_non_null(strstr(err, "(rule bad1)"));
}

/* Loads @yaml through @cache; returns the cache's new hits and misses. */
static struct ruleset *reload(const char *yaml, struct rules_cache *cache, uint64_t *hits,
			      uint64_t *misses)
{
	struct rules_source src = {"c.yml", yaml, strlen(yaml)};
	struct rules_cache_stats a, b;
	struct ruleset *rs;

	rules_cache_get_stats(cache, &a);
	rs = load_cached(&src, 1, cache);
	rules_cache_get_stats(cache, &b);
	*hits = b.hits - a.hits;
	*misses = b.misses - a.misses;
	return rs;
}

/* Copy of cache_rules with the first @from replaced by @to (static buffer). */
static const char *edited(const char *from, const char *to)
{
	static char out[sizeof(cache_rules) + 64];
	const char *at = strstr(cache_rules, from);
	assert_non_null(at);
	int k = snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - cache_rules), cache_rules, to,
			 at + strlen(from));
	assert_true(k > 0 && (size_t)k < sizeof(out));
	return out;
}

static void cache_misses_changed_patterns(void **state)
{
	struct rules_cache *cache = NULL;
	struct ruleset *base, *rs, *plain;
	struct rules_source src;
	uint64_t hits, misses, all;
	struct alerts x;
	/*
	 * Each edit changes one database's input (bytes, caseless flag, a regex's atoms), but the
	 * one to endswith: where a literal sits is checked outside the database, which is the same
	 * and found in the cache; nor does a change of case in a regex (its atoms are lower case,
	 * its set is compiled with every load), nor an on-demand regex (not cached).
	 */
	static const struct {
		const char *from, *to;
		uint64_t misses;
	} edits[] = {
	    {"startswith: ba}", "startswith: bb}", 1},
	    {"startswith: ba}", "istartswith: ba}", 1},
	    {"startswith: ba}", "endswith: ba}", 0},
	    /* a rule of every bucket: its literals are in the catch-all's and exec's databases */
	    {"icontains: [WGET", "contains: [WGET", 2},
	    {"'base64 +-d'", "'base32 +-d'", 1},
	    {"'base64 +-d'", "'base64 +-D'", 0},
	    {"'pty\\.spawn\\('", "'pty\\.spawn\\(\\)'", 0},
	};

	assert_int_equal(rules_cache_new(0, 0, &cache), 0);
	base = reload(cache_rules, cache, &hits, &misses);
	all = hs_databases(base);
	assert_int_equal(misses, all);
	for (size_t i = 0; i < sizeof(edits) / sizeof(*edits); i++) {
		const char *yaml = edited(edits[i].from, edits[i].to);
		rs = reload(yaml, cache, &hits, &misses);
		if (misses != edits[i].misses || hits != all - edits[i].misses)
			fail_msg("edit to '%s': %llu hits, %llu misses", edits[i].to,
				 (unsigned long long)hits, (unsigned long long)misses);
		/* and the changed database is the new one, not the old one */
		src = (struct rules_source){"c.yml", yaml, strlen(yaml)};
		plain = load_cached(&src, 1, NULL);
		expect_same_alerts(plain, rs, cache_events,
				   sizeof(cache_events) / sizeof(*cache_events));
		ruleset_free(plain);
		ruleset_free(rs);
	}
	/* the first edit no longer matches bash */
	rs = reload(edited("startswith: ba}", "startswith: bb}"), cache, &hits, &misses);
	assert_int_equal(misses, 0);
	eval_one(rs, cache_events[0], strlen(cache_events[0]), 0, &x);
	assert_string_equal(x.ids, "ends,");
	ruleset_free(rs);
	ruleset_free(base);
	rules_cache_free(cache);
}

static void cache_is_bounded(void **state)
{
	struct rules_cache *cache = NULL;
	struct rules_cache_stats cs;
	struct ruleset *a, *b;
	uint64_t hits, misses;

	/* room for four databases: the five of one ruleset do not all fit while it holds them */
	assert_int_equal(rules_cache_new(4, 0, &cache), 0);
	a = reload(cache_rules, cache, &hits, &misses);
	assert_int_equal(hs_databases(a), 5);
	rules_cache_get_stats(cache, &cs);
	assert_int_equal(cs.entries, 4);
	assert_int_equal(cs.in_use, 4);
	assert_int_equal(cs.evictions, 0);
	/* once a is freed its entries may go, least recently used first */
	ruleset_free(a);
	b = reload(edited("'base64 +-d'", "'base32 +-d'"), cache, &hits, &misses);
	rules_cache_get_stats(cache, &cs);
	assert_int_equal(cs.entries, 4);
	assert_true(cs.evictions > 0);
	assert_true(cs.bytes > 0);
	a = load(edited("'base64 +-d'", "'base32 +-d'"));
	expect_same_alerts(a, b, cache_events, sizeof(cache_events) / sizeof(*cache_events));
	ruleset_free(a);
	ruleset_free(b);
	/* a byte cap below any database keeps nothing, and still loads */
	rules_cache_free(cache);
	assert_int_equal(rules_cache_new(0, 1, &cache), 0);
	a = reload(cache_rules, cache, &hits, &misses);
	rules_cache_get_stats(cache, &cs);
	assert_int_equal(cs.entries, 0);
	assert_int_equal(cs.bytes, 0);
	ruleset_free(a);
	rules_cache_free(cache);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shipped content/ (many regexes, lists, macros): with and without a cache, cold and warm. */
static void cache_content_directory(void **state)
{
	char *names[64], path[512];
	struct rules_source src[64];
	size_t n = 0;
	DIR *d = opendir("content");
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".yml") == 0) {
			assert_true(n < 64);
			names[n++] = strdup(de->d_name);
		}
	}
	closedir(d);
	assert_true(n > 0);
	qsort(names, n, sizeof(*names), cmp_name);
	for (size_t i = 0; i < n; i++) {
		FILE *f;
		long len;
		char *data;
		int k = snprintf(path, sizeof(path), "content/%s", names[i]);
		assert_true(k > 0 && (size_t)k < sizeof(path));
		assert_non_null(f = fopen(path, "rb"));
		assert_int_equal(fseek(f, 0, SEEK_END), 0);
		assert_true((len = ftell(f)) > 0);
		rewind(f);
		assert_non_null(data = malloc((size_t)len));
		assert_int_equal(fread(data, 1, (size_t)len, f), (size_t)len);
		fclose(f);
		src[i] = (struct rules_source){names[i], data, (size_t)len};
	}

	struct rules_cache *cache = NULL;
	struct rules_cache_stats cs;
	assert_int_equal(rules_cache_new(0, 0, &cache), 0);
	struct ruleset *plain = load_cached(src, n, NULL);
	struct ruleset *cold = load_cached(src, n, cache);
	struct ruleset *warm = load_cached(src, n, cache);
	/* a database several buckets need is compiled once, even cold; so is a regex run on
	 * demand by several rules (they share one database) */
	rules_cache_get_stats(cache, &cs);
	assert_int_equal(cs.hits + cs.misses, 2 * hs_databases(plain));
	assert_int_equal(cs.misses, cs.entries);
	assert_true(cs.misses < hs_databases(plain));
	expect_same_ruleset(plain, cold);
	expect_same_ruleset(plain, warm);
	assert_true(expect_same_alerts(plain, warm, NULL, 0) > 100);
	expect_same_alerts(plain, cold, NULL, 0);
	struct rules_test_result res;
	assert_int_equal(ruleset_run_tests(warm, NULL, &res), 0);
	assert_true(res.passed > 0);
	ruleset_free(plain);
	ruleset_free(cold);
	ruleset_free(warm);
	rules_cache_free(cache);
	for (size_t i = 0; i < n; i++) {
		free((void *)src[i].data);
		free(names[i]);
	}
}

/*
 * Equals literals are found by a lookup rather than by the Hyperscan scan: exactly the values
 * Hyperscan's literal matching found (whole value; caseless folds ASCII letters only; two
 * caseless literals equal but for case are two patterns), beside a startswith literal of the
 * same field, and on every item of a list field.
 */
static void equals_found_by_lookup(void **state)
{
	struct ruleset *rs =
	    load("rules:\n"
		 "  - {id: cs, name: n, condition: {process.name: Bash}}\n"
		 "  - {id: ci, name: n, condition: {process.name: {iequals: BASH}}}\n"
		 "  - {id: ci2, name: n, condition: {process.name: {iequals: bash}}}\n"
		 "  - {id: start, name: n, condition: {process.name: {startswith: Bas}}}\n"
		 "  - {id: uni, name: n, condition: {process.name: {iequals: \"\\xe9t\\xe9\"}}}\n"
		 "  - {id: list, name: n, condition: {process.args: {iequals: [-C, --Exec]}}}\n");
	/* the process object of an exec event, and the rules it raises */
	static const struct {
		const char *process, *ids;
	} cases[] = {
	    {"\"name\":\"Bash\"", "cs,ci,ci2,start,"},
	    {"\"name\":\"bash\"", "ci,ci2,"},
	    {"\"name\":\"bAsH\"", "ci,ci2,"},
	    {"\"name\":\"Bas\"", "start,"},
	    {"\"name\":\"BASHx\"", ""},
	    {"\"name\":\"Bash \"", "start,"},
	    {"\"name\":\"bas\"", ""},
	    {"\"name\":\"\"", ""},
	    {"\"name\":\"\xc3\xa9t\xc3\xa9\"", "uni,"},
	    {"\"name\":\"\xc3\x89T\xc3\x89\"", ""},
	    {"\"name\":\"\xc3\xa9T\xc3\xa9\"", "uni,"},
	    {"\"args\":[\"x\",\"--exec\"]", "list,"},
	    {"\"args\":[\"-c\",\"-C\"]", "list,"},
	    {"\"args\":[\"--exe\",\"-Cx\"]", ""},
	};
	char json[256];
	struct alerts x;
	uint32_t lookups = 0, lookup_only = 0;

	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		const struct cdb *d = &rs->dbs[i];
		lookups += d->n_exact;
		lookup_only += d->db == NULL;
		/* Bash is the one case-sensitive literal */
		if (d->field == F_PROCESS_NAME)
			assert_int_equal(d->n_exact_cs, 1);
	}
	/* process.name: 1 case-sensitive + 3 caseless; process.args: 2 caseless, no database */
	assert_int_equal(lookups, 6);
	assert_int_equal(lookup_only, 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		int k = snprintf(json, sizeof(json),
				 "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},"
				 "\"process\":{%s}}",
				 cases[i].process);
		assert_true(k > 0 && (size_t)k < sizeof(json));
		eval_one(rs, json, (size_t)k, 0, &x);
		if (strcmp(x.ids, cases[i].ids) != 0)
			fail_msg("%s: got '%s', want '%s'", json, x.ids, cases[i].ids);
	}
	/* what the load built, as vigil content lint --stats prints it */
	size_t n = ruleset_db_count(rs), kinds[RDB_LOOKUP + 1] = {0};
	struct ruleset_db_info info;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(ruleset_db_get(rs, i, &info), 0);
		kinds[info.kind] += info.patterns;
		assert_true(info.compiled || info.kind == RDB_LOOKUP);
	}
	assert_int_equal(ruleset_db_get(rs, n, &info), -ERANGE);
	assert_int_equal(kinds[RDB_LOOKUP], 6);
	assert_int_equal(kinds[RDB_LITERAL], 1);
	ruleset_free(rs);
}

/*
 * A field with more literals than one database is planned for is split into chunks of even
 * size: every literal of every chunk still raises its rule, and the equals literals (looked
 * up, not scanned) stay in the first chunk.
 */
static void literal_chunks_match_every_literal(void **state)
{
	enum { N = 1000 };
	static char yaml[N * 12 + 512], json[256];
	int f = registry_lookup("process.command_line", strlen("process.command_line"));
	size_t at = 0;
	struct alerts x;
	int k;

	k = snprintf(yaml, sizeof(yaml),
		     "rules:\n"
		     "  - {id: eq, name: n, condition: {process.command_line: exact-one}}\n"
		     "  - {id: many, name: n, condition: {process.command_line: {contains: [");
	assert_true(k > 0);
	at = (size_t)k;
	for (int i = 0; i < N; i++) {
		k = snprintf(yaml + at, sizeof(yaml) - at, "%stok%04d", i ? ", " : "", i);
		assert_true(k > 0 && (size_t)k < sizeof(yaml) - at);
		at += (size_t)k;
	}
	k = snprintf(
	    yaml + at, sizeof(yaml) - at,
	    "]}}}\n"
	    "  - {id: tail, name: n, condition: {process.command_line: {endswith: zz-last}}}\n");
	assert_true(k > 0 && (size_t)k < sizeof(yaml) - at);
	struct ruleset *rs = load(yaml);

	/* the catch-all bucket scans the field with several databases, none too large */
	uint32_t chunks = 0, with_lookup = 0;
	const struct cbucket *bk = &rs->buckets[0];
	for (uint32_t i = 0; i < bk->n_dbs; i++) {
		const struct cdb *d = &rs->dbs[bk->dbs[i].db];
		if (bk->dbs[i].field != f)
			continue;
		chunks++;
		with_lookup += d->n_exact > 0;
		assert_true(d->n_ids - d->n_exact <= HSDB_LITERAL_CHUNK);
	}
	assert_true(chunks >= 3);
	assert_int_equal(with_lookup, 1);
	static const struct {
		const char *cmd, *ids;
	} cases[] = {
	    {"exact-one", "eq,"},
	    {"x tok0000 y", "many,"},
	    {"tok0499", "many,"},
	    {"a tok0999", "many,"},
	    {"tok1000", ""},
	    {"tok", ""},
	    {"tok0500 zz-last", "many,tail,"},
	    {"exact-one zz-last", "tail,"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		k = snprintf(json, sizeof(json),
			     "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"},"
			     "\"process\":{\"command_line\":\"%s\"}}",
			     cases[i].cmd);
		assert_true(k > 0 && (size_t)k < sizeof(json));
		eval_one(rs, json, (size_t)k, 0, &x);
		if (strcmp(x.ids, cases[i].ids) != 0)
			fail_msg("%s: got '%s', want '%s'", cases[i].cmd, x.ids, cases[i].ids);
	}
	ruleset_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(accepts_good_program),
	    cmocka_unit_test(field_id_out_of_range),
	    cmocka_unit_test(field_type_mismatch),
	    cmocka_unit_test(pool_out_of_range),
	    cmocka_unit_test(predicate_index_out_of_range),
	    cmocka_unit_test(backward_jump),
	    cmocka_unit_test(stack_overflow_and_underflow),
	    cmocka_unit_test(bad_shapes),
	    cmocka_unit_test(compiled_shape),
	    cmocka_unit_test(shared_databases),
	    cmocka_unit_test(literal_positions),
	    cmocka_unit_test(equals_found_by_lookup),
	    cmocka_unit_test(literal_chunks_match_every_literal),
	    cmocka_unit_test(cache_gives_same_alerts),
	    cmocka_unit_test(cache_misses_changed_patterns),
	    cmocka_unit_test(cache_is_bounded),
	    cmocka_unit_test(cache_content_directory),
	    cmocka_unit_test(lazy_regex_shared),
	    cmocka_unit_test(rejected_pattern_names_first_rule),
	};
	return cmocka_run_group_tests_name("compile", tests, NULL, NULL);
}
