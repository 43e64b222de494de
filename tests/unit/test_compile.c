/*
 * Unit tests for the compiler's output and the verifier: hand-built bad programs (field id,
 * predicate index, backward jump, stack overflow ...) are refused; compiled programs have the
 * expected shape, buckets and pattern text.
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

#include "lib/compile_int.h"
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
	preds[0] = (struct cpred){.field = F_PROCESS_NAME, .kind = PK_SCAN, .op = ROP_CONTAINS,
				  .off = 0, .n = 2};
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
	struct ruleset *rs = load(
		"macros:\n  m: {all: [event.action: exec, process.name: sh]}\n"
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
	uint8_t ops[] = {OP_PRED, OP_JF, OP_POP, OP_PRED, OP_JF, OP_POP, OP_PRED, OP_JT,
			 OP_POP, OP_PRED, OP_JF, OP_POP, OP_PRED, OP_NOT};
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
				  "  - {id: a, name: n, condition: {all: [event.action: exec, process.name: {contains: x}]}}\n"
				  "  - {id: b, name: n, condition: {all: [event.action: fork, file.path: {contains: y}]}}\n"
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
	struct ruleset *rs = load("rules:\n  - {id: a, name: n, condition: {any: ["
				  "process.name: ab, process.name: {startswith: ab}, "
				  "process.name: {endswith: ab}, process.name: {contains: ab}, "
				  "process.name: {icontains: ab}, process.name: {regex: 'a+b'}]}}\n");
	struct ruleset_stats st;
	ruleset_get_stats(rs, &st);
	assert_int_equal(st.patterns, 6);
	assert_int_equal(st.databases, 2); /* literals, and the regex */
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
	};
	return cmocka_run_group_tests_name("compile", tests, NULL, NULL);
}
