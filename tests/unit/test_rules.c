/*
 * Unit tests for loading rule files: every defect class is a clean load error naming the
 * file, line and field, never a crash; and what loads carries the right rule information.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/rules.h"

static char err[1024];

/* Loads @yaml as file "t.yml"; returns the load's result and frees what loaded. */
static int load(const char *yaml)
{
	struct rules_source src = {"t.yml", yaml, strlen(yaml)};
	struct ruleset *rs = NULL;
	err[0] = '\0';
	int ret = ruleset_load_sources(&src, 1, &rs, err, sizeof(err));
	if (ret == 0) {
		assert_non_null(rs);
		ruleset_free(rs);
	} else {
		assert_null(rs);
		assert_true(err[0] != '\0');
		assert_null(strchr(err, '\n'));
	}
	return ret;
}

#define assert_err(ret_expected, needle)                                                           \
	do {                                                                                       \
		if (!strstr(err, (needle)))                                                        \
			fail_msg("error '%s' lacks '%s'", err, (needle));                          \
		(void)(ret_expected);                                                              \
	} while (0)

static void expect_error(const char *yaml, int code, const char *needle)
{
	int ret = load(yaml);
	if (ret != code)
		fail_msg("expected %d, got %d (%s) for:\n%s", code, ret, err, yaml);
	assert_err(code, needle);
}

#define RULE_HEAD "rules:\n  - id: r1\n    name: n\n"

static void loads_minimal_rule(void **state)
{
	assert_int_equal(load(RULE_HEAD "    condition: {event.action: exec}\n"), 0);
	assert_int_equal(load(""), 0); /* an empty file is no rules */
	assert_int_equal(load("schema: 1\n" RULE_HEAD "    condition: {event.action: exec}\n"), 0);
}

static void unknown_field(void **state)
{
	expect_error(RULE_HEAD "    condition:\n      all:\n        - event.action: exec\n"
			       "        - process.nope: {contains: x}\n",
		     -EINVAL,
		     "t.yml:7: process.nope: unknown field (not in the registry of schema version");
}

/* A mapping or list where a word is expected is refused, never read as one: a mapping of
 * three pairs has the length of "low". */
static void level_must_be_a_word(void **state)
{
	expect_error(RULE_HEAD
		     "    level: {a: 1, b: 2, c: 3}\n    condition: {event.action: exec}\n",
		     -EINVAL, "level: expected informational");
	expect_error(RULE_HEAD "    level: [l, o, w]\n    condition: {event.action: exec}\n",
		     -EINVAL, "level: expected informational");
	(void)state;
}

static void newer_schema(void **state)
{
	/* the 21-versus-20 case: content written for a registry this build does not have */
	expect_error(
	    "schema: 2\n" RULE_HEAD
	    "    condition: {process.field_from_the_future: {contains: x}}\n",
	    -EINVAL,
	    "t.yml:1: schema: content needs schema version 2; this build has schema version 1");
	expect_error("schema: 0\n", -EINVAL, "t.yml:1: schema: expected a schema version");
	expect_error("schema: [1]\n", -EINVAL, "schema: expected a schema version");
}

static void type_mismatches(void **state)
{
	expect_error(RULE_HEAD "    condition: {process.name: {cidr: 10.0.0.0/8}}\n", -EINVAL,
		     "t.yml:4: process.name: cidr does not apply to a field of type string");
	expect_error(RULE_HEAD "    condition: {process.pid: {contains: '1'}}\n", -EINVAL,
		     "process.pid: contains does not apply to a field of type integer");
	expect_error(RULE_HEAD "    condition: {process.name: {gt: 3}}\n", -EINVAL,
		     "process.name: gt does not apply to a field of type string");
	expect_error(RULE_HEAD "    condition: {destination.ip: {regex: 'a'}}\n", -EINVAL,
		     "destination.ip: regex does not apply to a field of type ip");
	expect_error(RULE_HEAD "    condition: {process.pid: {iequals: 3}}\n", -EINVAL,
		     "process.pid: iequals does not apply to a field of type integer");
	expect_error(RULE_HEAD "    condition: {process.pid: {equals: abc}}\n", -EINVAL,
		     "process.pid: equals: 'abc' is not an integer");
	expect_error(RULE_HEAD "    condition: {process.pid: {gt: 99999999999999999999}}\n",
		     -EINVAL, "process.pid: gt takes an integer");
	expect_error(RULE_HEAD "    condition: {destination.ip: 10.0.0.0/8}\n", -EINVAL,
		     "destination.ip: equals: '10.0.0.0/8' is not an IP address");
	expect_error(RULE_HEAD "    condition: {destination.ip: {cidr: 10.0.0.1}}\n", -EINVAL,
		     "is not a CIDR");
	expect_error(RULE_HEAD "    condition: {destination.ip: {cidr: 10.0.0.0/33}}\n", -EINVAL,
		     "is not a CIDR");
	expect_error(RULE_HEAD "    condition: {process.name: {exists: maybe}}\n", -EINVAL,
		     "exists takes true or false");
	expect_error(RULE_HEAD "    threshold: {count: 2, within: 10s, by: process.args}\n"
			       "    condition: {event.action: exec}\n",
		     -EINVAL,
		     "process.args: a field of type list of strings cannot be a state key");
}

static void wrong_arity(void **state)
{
	expect_error(RULE_HEAD "    condition: {process.pid: {lt: [1, 2]}}\n", -EINVAL,
		     "t.yml:4: process.pid: lt takes one value, not a list of 2");
	expect_error(RULE_HEAD "    condition: {process.name: {regex: [a, b]}}\n", -EINVAL,
		     "process.name: regex takes one value, not a list");
	expect_error(RULE_HEAD "    condition: {process.name: {exists: [true]}}\n", -EINVAL,
		     "process.name: exists takes one value");
	expect_error(RULE_HEAD "    condition: {process.name: {in: bash}}\n", -EINVAL,
		     "process.name: in takes a list or \"@listname\", not a single value");
	expect_error(RULE_HEAD
		     "    condition: {not: [{event.action: exec}, {event.action: fork}]}\n",
		     -EINVAL, "not: takes one condition, not a list");
	expect_error(RULE_HEAD "    condition: {all: {event.action: exec}}\n", -EINVAL,
		     "all: expected a list of conditions, not a mapping");
	expect_error(RULE_HEAD "    condition: {any: []}\n", -EINVAL,
		     "any: empty list of conditions");
	expect_error(RULE_HEAD "    condition: {process.name: {contains: []}}\n", -EINVAL,
		     "process.name: contains: empty list");
	expect_error(RULE_HEAD "    condition: {process.name: {contains: {a: b}}}\n", -EINVAL,
		     "expected a value or a list of values, not a mapping");
	expect_error(RULE_HEAD "    condition: {process.name: {}}\n", -EINVAL,
		     "process.name: no operator given");
	expect_error(RULE_HEAD "    condition: {process.name: {likes: x}}\n", -EINVAL,
		     "process.name: unknown operator 'likes'");
	expect_error(RULE_HEAD "    condition: [a]\n", -EINVAL, "condition: expected a mapping");
	expect_error(RULE_HEAD "    condition: {process.args: {contains: [[a]]}}\n", -EINVAL,
		     "process.args: contains: expected a value, not a list");
}

static void bad_values(void **state)
{
	expect_error(RULE_HEAD "    condition: {process.name: {contains: ''}}\n", -EINVAL,
		     "t.yml:4: process.name: contains: empty value (it would match everything)");
	expect_error(RULE_HEAD "    condition: {process.name: {regex: ''}}\n", -EINVAL,
		     "process.name: regex: empty value");
	expect_error(RULE_HEAD "    condition: {process.name: \"ba\\0sh\"}\n", -EINVAL,
		     "t.yml:4: process.name: equals: value contains a NUL byte");
	expect_error(RULE_HEAD "    condition: {process.name: {contains: [a, \"\\0\"]}}\n", -EINVAL,
		     "value contains a NUL byte");
	/* raw bytes that are not UTF-8: refused by the YAML reader with the line */
	expect_error(RULE_HEAD "    condition: {process.name: \"ba\xff\xfesh\"}\n", -EINVAL,
		     "t.yml:4: YAML: invalid leading UTF-8 octet");
	expect_error(RULE_HEAD "    condition: {process.name: \"\xc3\x28\"}\n", -EINVAL, "UTF-8");
	/* an empty equals is a real comparison */
	assert_int_equal(load(RULE_HEAD "    condition: {process.name: ''}\n"), 0);
	/* too long */
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_printf(&b, RULE_HEAD "    condition: {process.name: {contains: '"), 0);
	for (int i = 0; i < 4097; i++)
		assert_int_equal(buf_append_char(&b, 'a'), 0);
	assert_int_equal(buf_append_str(&b, "'}}\n"), 0);
	expect_error(b.data, -E2BIG, "process.name: contains: value longer than 4096 bytes");
	buf_release(&b);
}

static void deep_condition(void **state)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_append_str(&b, RULE_HEAD "    condition: "), 0);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(buf_append_str(&b, "{not: "), 0);
	assert_int_equal(buf_append_str(&b, "{event.action: exec}"), 0);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(buf_append_char(&b, '}'), 0);
	assert_int_equal(buf_append_char(&b, '\n'), 0);
	expect_error(b.data, -E2BIG, "t.yml:4: YAML nested deeper than");

	/* block style with all: lists, 10,000 levels */
	buf_reset(&b);
	assert_int_equal(buf_append_str(&b, RULE_HEAD "    condition: "), 0);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(buf_append_str(&b, "{all: ["), 0);
	assert_int_equal(buf_append_str(&b, "{event.action: exec}"), 0);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(buf_append_str(&b, "]}"), 0);
	expect_error(b.data, -E2BIG, "nested deeper than");

	/* just past the condition limit, within the YAML limit */
	buf_reset(&b);
	assert_int_equal(buf_append_str(&b, RULE_HEAD "    condition: "), 0);
	for (unsigned i = 0; i < RULES_MAX_CONDITION_DEPTH; i++)
		assert_int_equal(buf_append_str(&b, "{not: "), 0);
	assert_int_equal(buf_append_str(&b, "{event.action: exec}"), 0);
	for (unsigned i = 0; i < RULES_MAX_CONDITION_DEPTH; i++)
		assert_int_equal(buf_append_char(&b, '}'), 0);
	expect_error(b.data, -E2BIG, "condition: nested deeper than 64 levels");

	/* at the limit it loads */
	buf_reset(&b);
	assert_int_equal(buf_append_str(&b, RULE_HEAD "    condition: "), 0);
	for (unsigned i = 0; i < RULES_MAX_CONDITION_DEPTH - 1; i++)
		assert_int_equal(buf_append_str(&b, "{not: "), 0);
	assert_int_equal(buf_append_str(&b, "{event.action: exec}"), 0);
	for (unsigned i = 0; i < RULES_MAX_CONDITION_DEPTH - 1; i++)
		assert_int_equal(buf_append_char(&b, '}'), 0);
	assert_int_equal(load(b.data), 0);
	buf_release(&b);
}

static void deep_macros(void **state)
{
	/* macros nest too, and a chain of them counts toward the depth */
	struct buf b;
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_append_str(&b, "macros:\n  m0: {event.action: exec}\n"), 0);
	for (int i = 1; i < 200; i++)
		assert_int_equal(buf_printf(&b, "  m%d: {not: {macro: m%d}}\n", i, i - 1), 0);
	assert_int_equal(buf_append_str(&b, RULE_HEAD "    condition: {macro: m199}\n"), 0);
	expect_error(b.data, -E2BIG, "condition: nested deeper than 64 levels (macros expanded)");
	buf_release(&b);

	expect_error(
	    "macros:\n  a: {macro: b}\n  b: {any: [{macro: a}, {event.action: x}]}\n" RULE_HEAD
	    "    condition: {macro: a}\n",
	    -EINVAL, "macro: macro 'a' refers to itself");
	expect_error(RULE_HEAD "    condition: {macro: nope}\n", -EINVAL,
		     "t.yml:4: macro: unknown macro 'nope'");
	/* exponential expansion stops at the per-rule predicate cap */
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_append_str(&b, "macros:\n  m0: {process.name: {contains: x}}\n"), 0);
	for (int i = 1; i < 30; i++)
		assert_int_equal(
		    buf_printf(&b, "  m%d: {any: [{macro: m%d}, {macro: m%d}]}\n", i, i - 1, i - 1),
		    0);
	assert_int_equal(buf_append_str(&b, RULE_HEAD "    condition: {macro: m29}\n"), 0);
	expect_error(b.data, -E2BIG, "more than 1024 predicates in one rule");
	buf_release(&b);
}

static void many_rules(void **state)
{
	struct buf b;
	buf_init(&b, 64u << 20);
	assert_int_equal(buf_append_str(&b, "rules:\n"), 0);
	for (int i = 0; i < 100000; i++)
		assert_int_equal(
		    buf_printf(&b, "- {id: r%d, name: n, condition: {event.action: exec}}\n", i),
		    0);
	/* one file of 100,000 rules */
	expect_error(b.data, -E2BIG, "t.yml:20002: rules: more than 20000 rules in one load");

	/* ten files of 10,000 rules each: the cap is over the whole load */
	struct rules_source src[10];
	char names[10][16];
	char *parts[10];
	for (int f = 0; f < 10; f++) {
		struct buf p;
		buf_init(&p, 8u << 20);
		assert_int_equal(buf_append_str(&p, "rules:\n"), 0);
		for (int i = 0; i < 10000; i++)
			assert_int_equal(buf_printf(&p,
						    "- {id: f%dr%d, name: n, condition: "
						    "{event.action: exec}}\n",
						    f, i),
					 0);
		snprintf(names[f], sizeof(names[f]), "f%d.yml", f);
		parts[f] = p.data;
		src[f] = (struct rules_source){names[f], p.data, p.len};
	}
	struct ruleset *rs = NULL;
	assert_int_equal(ruleset_load_sources(src, 10, &rs, err, sizeof(err)), -E2BIG);
	assert_null(rs);
	assert_err(0, "f2.yml:2: rules: more than 20000 rules");
	/* two files, exactly 20,000 rules: loads */
	assert_int_equal(ruleset_load_sources(src, 2, &rs, err, sizeof(err)), 0);
	assert_int_equal(ruleset_count(rs), 20000);
	ruleset_free(rs);
	for (int f = 0; f < 10; f++)
		free(parts[f]);
	buf_release(&b);
}

static void hyperscan_rejects(void **state)
{
	expect_error(RULE_HEAD "    condition:\n      all:\n        - event.action: exec\n"
			       "        - process.command_line: {regex: '(a)\\1'}\n",
		     -EINVAL,
		     "t.yml:7: process.command_line: regex: pattern '(a)\\1' rejected by the "
		     "linear-time engine");
	assert_err(0, "(rule r1)");
	expect_error(RULE_HEAD "    condition: {process.name: {regex: '(?<=a)b'}}\n", -EINVAL,
		     "rejected by the linear-time engine");
	expect_error(RULE_HEAD "    condition: {process.name: {regex: 'a('}}\n", -EINVAL,
		     "rejected by the linear-time engine");
	/* repeat bounds that would make compiling slow are refused before compiling */
	expect_error(RULE_HEAD "    condition: {process.name: {regex: '(a|b){2,1001}c'}}\n", -E2BIG,
		     "t.yml:4: process.name: regex: repeat bound 1001 above 1000");
	expect_error(RULE_HEAD
		     "    condition: {process.name: {regex: 'x{99999999999999999999}'}}\n",
		     -E2BIG, "above 1000");
	assert_int_equal(
	    load(RULE_HEAD "    condition: {process.name: {regex: '[{]9999\\{5000}a{1000}'}}\n"),
	    0);
}

static void duplicate_ids(void **state)
{
	expect_error("rules:\n  - {id: same, name: a, condition: {event.action: exec}}\n"
		     "  - {id: other, name: b, condition: {event.action: exec}}\n"
		     "  - {id: same, name: c, condition: {event.action: fork}}\n",
		     -EINVAL, "t.yml:4: id: duplicate rule id 'same' (also t.yml:2)");
	/* across files too */
	struct rules_source src[2] = {
	    {"a.yml", "rules: [{id: x, name: a, condition: {event.action: exec}}]\n", 0},
	    {"b.yml", "rules: [{id: x, name: b, condition: {event.action: exec}}]\n", 0},
	};
	src[0].len = strlen(src[0].data);
	src[1].len = strlen(src[1].data);
	struct ruleset *rs = NULL;
	assert_int_equal(ruleset_load_sources(src, 2, &rs, err, sizeof(err)), -EINVAL);
	assert_err(0, "b.yml:1: id: duplicate rule id 'x' (also a.yml:1)");
	expect_error("lists:\n  l: [a]\n  l: [b]\n", -EINVAL, "t.yml:3: l: key given twice");
	src[0].data = "lists: {l: [a]}\n";
	src[1].data = "lists: {l: [b]}\n";
	src[0].len = strlen(src[0].data);
	src[1].len = strlen(src[1].data);
	assert_int_equal(ruleset_load_sources(src, 2, &rs, err, sizeof(err)), -EINVAL);
	assert_err(0, "list 'l' defined twice");
}

static char tmpdir[64];

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vigil-rules-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
}

static void write_file(const char *rel, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void huge_file(void **state)
{
	char path[256];
	make_tmpdir();
	snprintf(path, sizeof(path), "%s/huge.yml", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	/* 100 MB, sparse: refused from its size before any of it is read */
	assert_int_equal(ftruncate(fileno(f), 100 * 1024 * 1024), 0);
	fclose(f);
	struct ruleset *rs = NULL;
	assert_int_equal(ruleset_load_path(tmpdir, &rs, err, sizeof(err)), -E2BIG);
	assert_null(rs);
	assert_err(0, "huge.yml: file of 104857600 bytes is larger than 16777216");
	assert_int_equal(ruleset_load_path(path, &rs, err, sizeof(err)), -E2BIG);
	unlink(path);
	/* in memory too */
	struct rules_source src = {"mem.yml", "", (size_t)100 * 1024 * 1024};
	assert_int_equal(ruleset_load_sources(&src, 1, &rs, err, sizeof(err)), -E2BIG);
	assert_err(0, "mem.yml: file larger than");
	rmdir(tmpdir);
}

static void directory_load(void **state)
{
	char path[256];
	make_tmpdir();
	snprintf(path, sizeof(path), "%s/sub", tmpdir);
	assert_int_equal(mkdir(path, 0700), 0);
	write_file("sub/b.yml", "rules:\n  - {id: b, name: B, condition: {macro: m}}\n");
	write_file("a.yaml", "lists: {shells: [/bin/sh, /bin/bash]}\n"
			     "macros: {m: {process.executable: {in: '@shells'}}}\n"
			     "rules:\n  - {id: a, name: A, condition: {event.action: exec}}\n");
	write_file("notes.txt", "not yaml: [\n");
	write_file(".hidden.yml", "garbage: [\n");
	struct ruleset *rs = NULL;
	assert_int_equal(ruleset_load_path(tmpdir, &rs, err, sizeof(err)), 0);
	assert_int_equal(ruleset_count(rs), 2);
	/* sorted by path: a.yaml before sub/b.yml */
	assert_string_equal(ruleset_rule(rs, 0)->id, "a");
	assert_string_equal(ruleset_rule(rs, 1)->id, "b");
	assert_non_null(strstr(ruleset_rule(rs, 1)->file, "sub/b.yml"));
	assert_int_equal(ruleset_rule(rs, 1)->line, 2);
	ruleset_free(rs);

	/* a symbolic link is refused, not followed */
	char link[256];
	snprintf(link, sizeof(link), "%s/link.yml", tmpdir);
	assert_int_equal(symlink("/etc/passwd", link), 0);
	assert_int_equal(ruleset_load_path(tmpdir, &rs, err, sizeof(err)), -ELOOP);
	assert_err(0, "link.yml: symbolic links are not followed");
	unlink(link);

	/* an error names the file it is in */
	write_file("sub/b.yml", "rules:\n  - {id: b, name: B, condition: {macro: nope}}\n");
	assert_int_equal(ruleset_load_path(tmpdir, &rs, err, sizeof(err)), -EINVAL);
	assert_err(0, "sub/b.yml:2: macro: unknown macro 'nope'");

	snprintf(link, sizeof(link), "%s/sub/b.yml", tmpdir);
	unlink(link);
	rmdir(path);
	snprintf(link, sizeof(link), "%s/a.yaml", tmpdir);
	unlink(link);
	snprintf(link, sizeof(link), "%s/notes.txt", tmpdir);
	unlink(link);
	snprintf(link, sizeof(link), "%s/.hidden.yml", tmpdir);
	unlink(link);
	rmdir(tmpdir);
	assert_int_equal(ruleset_load_path("/nonexistent/rules", &rs, err, sizeof(err)), -ENOENT);
	assert_err(0, "/nonexistent/rules: No such file");
}

static void structure_errors(void **state)
{
	expect_error("rules: {a: b}\n", -EINVAL, "t.yml:1: rules: expected a list of rules");
	expect_error("rule:\n  - {}\n", -EINVAL, "t.yml:1: unknown top-level key 'rule'");
	expect_error("[1, 2]\n", -EINVAL, "a rule file is a mapping");
	expect_error("rules:\n  - {name: n, condition: {event.action: exec}}\n", -EINVAL,
		     "t.yml:2: id: rule has no id");
	expect_error("rules:\n  - {id: 'bad id', name: n, condition: {event.action: exec}}\n",
		     -EINVAL, "id: expected [A-Za-z0-9._-]{1,64}");
	expect_error("rules:\n  - {id: r, condition: {event.action: exec}}\n", -EINVAL,
		     "name: rule r has no name");
	expect_error("rules:\n  - {id: r, name: n}\n", -EINVAL,
		     "condition: rule r has no condition");
	expect_error(RULE_HEAD "    level: severe\n    condition: {event.action: exec}\n", -EINVAL,
		     "t.yml:4: level: expected informational, low, medium, high or critical");
	expect_error(RULE_HEAD "    response: block\n    condition: {event.action: exec}\n",
		     -EINVAL, "response: the only response is kill");
	expect_error(RULE_HEAD "    condtion: {event.action: exec}\n", -EINVAL,
		     "t.yml:4: unknown rule key 'condtion'");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n    tags: attack.t1\n",
		     -EINVAL, "tags: expected a list of strings");
	expect_error(RULE_HEAD "    condition: &a {event.action: exec}\n", -EINVAL,
		     "t.yml:4: YAML anchors are not supported");
	expect_error("macros:\n  m: &x {event.action: exec}\n" RULE_HEAD "    condition: *x\n",
		     -EINVAL, "YAML anchors are not supported");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n---\nrules: []\n", -EINVAL,
		     "t.yml:5: more than one YAML document");
	expect_error(RULE_HEAD "    condition: {event.action: exec, event.action: fork}\n", -EINVAL,
		     "t.yml:4: event.action: key given twice");
	expect_error(RULE_HEAD "    condition: {event.action: [exec\n", -EINVAL, "YAML:");
	expect_error(RULE_HEAD "    condition: {process.name: {in: '@nope'}}\n", -EINVAL,
		     "t.yml:4: process.name: unknown list '@nope'");
	expect_error(RULE_HEAD
		     "    condition: {all: [{event.action: exec}, {event.action: fork}]}\n",
		     -EINVAL, "event.action: the condition requires event.action to have two");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n"
			       "    threshold: {count: 0, within: 10s}\n",
		     -EINVAL, "count: expected a number from 1 to 100000");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n"
			       "    threshold: {count: 5, within: 10d}\n",
		     -EINVAL, "within: expected a duration such as 10s, 5m or 1h");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n"
			       "    threshold: {count: 5, within: 25h}\n",
		     -EINVAL, "within: duration must be from 1s to 24h");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n"
			       "    threshold: {count: 5, within: 10s, by: process.nope}\n",
		     -EINVAL, "process.nope: unknown field");
	expect_error(RULE_HEAD "    sequence:\n      within: 10s\n      steps:\n"
			       "        - condition: {event.action: exec}\n",
		     -EINVAL, "steps: expected a list of 2 to 4 steps");
	expect_error(RULE_HEAD
		     "    sequence: {within: 10s, steps: [{condition: {event.action: exec}},"
		     " {by: process.pid}]}\n",
		     -EINVAL, "steps: step has no condition");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n"
			       "    threshold: {count: 2, within: 1s}\n"
			       "    sequence: {within: 10s, steps: []}\n",
		     -EINVAL, "a rule has threshold or sequence, not both");
}

static void limits_on_lists(void **state)
{
	struct buf b;
	buf_init(&b, 8u << 20);
	assert_int_equal(buf_append_str(&b, "lists:\n  big: ["), 0);
	for (unsigned i = 0; i <= RULES_MAX_LIST_ITEMS; i++)
		assert_int_equal(buf_printf(&b, "%sv%u", i ? ", " : "", i), 0);
	assert_int_equal(buf_append_str(&b, "]\n"), 0);
	expect_error(b.data, -E2BIG, "t.yml:2: big: more than 4096 items");

	/* two lists that fit, used together past the per-predicate cap */
	buf_reset(&b);
	assert_int_equal(buf_append_str(&b, "lists:\n"), 0);
	for (int l = 0; l < 2; l++) {
		assert_int_equal(buf_printf(&b, "  l%d: [", l), 0);
		for (unsigned i = 0; i < 3000; i++)
			assert_int_equal(buf_printf(&b, "%sv%u", i ? ", " : "", i), 0);
		assert_int_equal(buf_append_str(&b, "]\n"), 0);
	}
	assert_int_equal(buf_append_str(&b, RULE_HEAD "    condition: {process.name: "
						      "{in: ['@l0', '@l1']}}\n"),
			 0);
	expect_error(b.data, -E2BIG, "process.name: in: more than 4096 values");
	buf_release(&b);
}

static void test_event_errors(void **state)
{
	expect_error(RULE_HEAD
		     "    condition: {event.action: exec}\n"
		     "    tests:\n      match:\n        - {event.action: exec, process.nope: 1}\n",
		     -EINVAL, "t.yml:7: process.nope: test event: unknown field");
	expect_error(RULE_HEAD
		     "    condition: {event.action: exec}\n"
		     "    tests:\n      match:\n        - {event.action: exec, process.pid: x}\n",
		     -EINVAL, "process.pid: test event: expected an integer");
	expect_error(RULE_HEAD
		     "    condition: {event.action: exec}\n"
		     "    tests:\n      match:\n        - {event.action: exec, source.ip: x}\n",
		     -EINVAL, "bad test event: source.ip: not an IPv4 or IPv6 address");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n"
			       "    tests:\n      maybe: []\n",
		     -EINVAL, "tests: unknown key 'maybe'");
	expect_error(RULE_HEAD "    condition: {event.action: exec}\n"
			       "    tests:\n      match:\n        - {events: []}\n",
		     -EINVAL, "events: expected a non-empty list of events");
	/* nested objects are the same fields as dotted names */
	assert_int_equal(load(RULE_HEAD
			      "    condition: {event.action: exec}\n"
			      "    tests:\n      match:\n"
			      "        - {event: {action: exec}, process: {pid: 3, args: [a]}}\n"),
			 0);
}

static void rule_information(void **state)
{
	const char *yaml =
	    "rules:\n"
	    "  - id: vigil-test.1\n"
	    "    name: Test rule\n"
	    "    description: what it finds\n"
	    "    level: critical\n"
	    "    tags: [attack.execution, attack.t1059.004, attack.T1105, attack.t1059.004,"
	    " attack.t12, cve.2021]\n"
	    "    response: kill\n"
	    "    author: someone\n"
	    "    condition: {event.action: exec}\n"
	    "  - {id: plain, name: Plain, condition: {event.action: exec}}\n";
	struct rules_source src = {"info.yml", yaml, strlen(yaml)};
	struct ruleset *rs = NULL;
	assert_int_equal(ruleset_load_sources(&src, 1, &rs, err, sizeof(err)), 0);
	const struct rule_info *r = ruleset_find(rs, "vigil-test.1");
	assert_non_null(r);
	assert_string_equal(r->name, "Test rule");
	assert_string_equal(r->description, "what it finds");
	assert_string_equal(r->level, "critical");
	assert_int_equal(r->n_techniques, 2);
	assert_string_equal(r->techniques[0], "T1059.004");
	assert_string_equal(r->techniques[1], "T1105");
	assert_true(r->kill);
	assert_string_equal(r->file, "info.yml");
	assert_int_equal(r->line, 2);
	assert_int_equal(r->index, 0);
	const struct rule_info *p = ruleset_rule(rs, 1);
	assert_string_equal(p->id, "plain");
	assert_string_equal(p->level, "medium");
	assert_string_equal(p->description, "");
	assert_false(p->kill);
	assert_int_equal(p->n_techniques, 0);
	assert_null(ruleset_rule(rs, 2));
	assert_null(ruleset_find(rs, "nope"));
	struct ruleset_stats st;
	ruleset_get_stats(rs, &st);
	assert_int_equal(st.rules, 2);
	assert_true(st.memory_bytes > 0);
	ruleset_free(rs);
	ruleset_free(NULL);
}

static void text_checks(void **state)
{
	assert_true(rules_utf8_valid("abc", 3));
	assert_true(rules_utf8_valid("\xc3\xa9", 2));
	assert_false(rules_utf8_valid("\xc3", 1));
	assert_false(rules_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
	assert_false(rules_utf8_valid("\xc0\xaf", 2));	   /* overlong */
	assert_true(rules_id_valid("a-b_c.9", 7));
	assert_false(rules_id_valid("", 0));
	assert_false(rules_id_valid("a b", 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(loads_minimal_rule),
	    cmocka_unit_test(unknown_field),
	    cmocka_unit_test(level_must_be_a_word),
	    cmocka_unit_test(newer_schema),
	    cmocka_unit_test(type_mismatches),
	    cmocka_unit_test(wrong_arity),
	    cmocka_unit_test(bad_values),
	    cmocka_unit_test(deep_condition),
	    cmocka_unit_test(deep_macros),
	    cmocka_unit_test(many_rules),
	    cmocka_unit_test(hyperscan_rejects),
	    cmocka_unit_test(duplicate_ids),
	    cmocka_unit_test(huge_file),
	    cmocka_unit_test(directory_load),
	    cmocka_unit_test(structure_errors),
	    cmocka_unit_test(limits_on_lists),
	    cmocka_unit_test(test_event_errors),
	    cmocka_unit_test(rule_information),
	    cmocka_unit_test(text_checks),
	};
	return cmocka_run_group_tests_name("rules", tests, NULL, NULL);
}
