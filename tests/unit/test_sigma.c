/*
 * Unit tests for the Sigma converter: the condition parser, every value modifier, the
 * folding of fields vigil does not observe, and malformed or hostile input.
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

#include "lib/buf.h"
#include "lib/rules.h"
#include "lib/sigma.h"

/* ---- the condition parser ---- */

static const char *const names[] = {"sel",	     "sel_img",	 "sel_cli", "filter_main_a",
				    "filter_main_b", "keywords", "_hidden", "filter"};
#define NNAMES (sizeof(names) / sizeof(names[0]))

/* Normalizes @cond; on failure returns NULL and leaves the reason in @err. */
static char *norm(const char *cond, char *err, size_t errlen)
{
	struct buf out;
	char *s;

	buf_init(&out, 1u << 20);
	if (sigma_condition_normalize(cond, names, NNAMES, &out, err, errlen) != 0) {
		buf_release(&out);
		return NULL;
	}
	s = strdup(out.data ? out.data : "");
	buf_release(&out);
	return s;
}

static void assert_norm(const char *cond, const char *want)
{
	char err[512];
	char *got = norm(cond, err, sizeof(err));
	if (!got)
		fail_msg("'%s' did not parse: %s", cond, err);
	if (strcmp(got, want) != 0)
		fail_msg("'%s' gave %s, want %s", cond, got, want);
	free(got);
}

static void assert_norm_fails(const char *cond, const char *reason_part)
{
	char err[512];
	char *got = norm(cond, err, sizeof(err));
	if (got)
		fail_msg("'%s' parsed as %s, want an error", cond, got);
	if (!strstr(err, reason_part))
		fail_msg("'%s': reason '%s' does not say '%s'", cond, err, reason_part);
}

static void condition_precedence(void **state)
{
	assert_norm("sel", "sel");
	assert_norm("sel and filter", "(and sel filter)");
	assert_norm("sel or sel_img and sel_cli", "(or sel (and sel_img sel_cli))");
	assert_norm("sel and sel_img or sel_cli", "(or (and sel sel_img) sel_cli)");
	assert_norm("not sel and filter", "(and (not sel) filter)");
	assert_norm("not (sel and filter)", "(not (and sel filter))");
	assert_norm("not not sel", "(not (not sel))");
	assert_norm("(sel or filter) and keywords", "(and (or sel filter) keywords)");
	assert_norm("((sel))", "sel");
	assert_norm("sel and filter and keywords", "(and sel filter keywords)");
	/* operators in any case, any whitespace */
	assert_norm("sel AND NOT\tfilter", "(and sel (not filter))");
}

static void condition_quantifiers(void **state)
{
	assert_norm("1 of sel_*", "(or sel_img sel_cli)");
	assert_norm("all of sel_*", "(and sel_img sel_cli)");
	assert_norm("any of filter_main_*", "(or filter_main_a filter_main_b)");
	assert_norm("all of sel*", "(and sel sel_img sel_cli)");
	/* them: every selection except those whose name starts with '_' */
	assert_norm("1 of them",
		    "(or sel sel_img sel_cli filter_main_a filter_main_b keywords filter)");
	assert_norm("all of them",
		    "(and sel sel_img sel_cli filter_main_a filter_main_b keywords filter)");
	assert_norm("sel and not 1 of filter_main_*",
		    "(and sel (not (or filter_main_a filter_main_b)))");
	assert_norm("1 of sel_i?g", "(or sel_img)");
	assert_norm("1 of _hidden", "(or _hidden)");
	assert_norm("(sel_img and 1 of sel_c*) or 1 of filter_*",
		    "(or (and sel_img (or sel_cli)) (or filter_main_a filter_main_b))");
	assert_norm("1 of filter*", "(or filter_main_a filter_main_b filter)");
}

static void condition_errors(void **state)
{
	assert_norm_fails("", "ends too early");
	assert_norm_fails("sel and", "ends too early");
	assert_norm_fails("(sel", "missing ')'");
	assert_norm_fails("sel)", "unexpected ')'");
	assert_norm_fails("nosuch", "'nosuch' names no selection");
	assert_norm_fails("1 of nomatch_*", "matches no selection");
	assert_norm_fails("sel_*", "wildcard name");
	assert_norm_fails("2 of sel_*", "'2 of' is not supported");
	assert_norm_fails("all sel", "expected 'of'");
	assert_norm_fails("1 of (sel)", "expected a name pattern");
	assert_norm_fails("sel | count() > 5", "aggregation");
	assert_norm_fails("sel near filter", "unexpected 'near'");
	assert_norm_fails("sel, filter", "unexpected ','");
	assert_norm_fails("sel sel", "unexpected 'sel'");
	assert_norm_fails("not", "ends too early");
}

static void condition_depth_bound(void **state)
{
	char cond[4096], err[512], *got;
	int i, n = 0;

	/* 64 levels of parentheses parse; 65 do not */
	for (i = 0; i < 64; i++)
		cond[n++] = '(';
	n += snprintf(cond + n, sizeof(cond) - (size_t)n, "sel");
	for (i = 0; i < 64; i++)
		cond[n++] = ')';
	cond[n] = '\0';
	assert_norm(cond, "sel");
	memmove(cond + 1, cond, strlen(cond) + 1);
	cond[0] = '(';
	n = (int)strlen(cond);
	snprintf(cond + n, sizeof(cond) - (size_t)n, ")");
	got = norm(cond, err, sizeof(err));
	assert_null(got);
	assert_non_null(strstr(err, "nested deeper than 64"));

	/* 4,000 nots and 10,000 parentheses: a clean error, no stack exhaustion */
	char *big = malloc(60000);
	assert_non_null(big);
	for (i = 0; i < 4000; i++)
		memcpy(big + (size_t)i * 4, "not ", 4);
	memcpy(big + 16000, "sel", 4);
	got = norm(big, err, sizeof(err));
	assert_null(got);
	assert_non_null(strstr(err, "nested deeper"));
	memset(big, '(', 10000);
	memcpy(big + 10000, "sel", 4);
	got = norm(big, err, sizeof(err));
	assert_null(got);
	free(big);

	/* a condition longer than the cap */
	big = malloc(SIGMA_COND_MAX + 100);
	assert_non_null(big);
	memset(big, ' ', SIGMA_COND_MAX + 10);
	memcpy(big + SIGMA_COND_MAX + 10, "sel", 4);
	assert_null(norm(big, err, sizeof(err)));
	assert_non_null(strstr(err, "longer than"));
	free(big);
}

/* ---- whole rules ---- */

struct conv {
	int rc;
	struct sigma_result res;
};

/* Converts a rule whose detection section is @detection (YAML, indented by 2). */
static void conv_rule(struct conv *cv, const char *category, const char *detection)
{
	char src[16384];
	int n = snprintf(src, sizeof(src),
			 "title: Unit test rule\n"
			 "id: 5b5c7c42-0000-4000-8000-000000000001\n"
			 "status: test\n"
			 "description: A rule written for the unit tests.\n"
			 "author: vigil tests\n"
			 "level: high\n"
			 "tags:\n  - attack.execution\n  - attack.t1059.004\n  - car.2013-05-002\n"
			 "logsource:\n  product: linux\n  category: %s\n"
			 "detection:\n%s",
			 category, detection);
	assert_true(n > 0 && (size_t)n < sizeof(src));
	cv->rc = sigma_convert(src, (size_t)n, "unit.yml", &cv->res);
}

/* The converted text must compile with the rule compiler, as vigil content lint would. */
static void assert_compiles(const struct conv *cv)
{
	struct rules_source src = {
	    .name = "unit.yml", .data = cv->res.text.data, .len = cv->res.text.len};
	struct ruleset *rs = NULL;
	char err[512];

	if (ruleset_load_sources(&src, 1, &rs, err, sizeof(err)) != 0)
		fail_msg("converted rule does not compile: %s\n%s", err, cv->res.text.data);
	assert_int_equal(ruleset_count(rs), 1);
	ruleset_free(rs);
}

static void expect_converted(struct conv *cv, const char *category, const char *detection)
{
	conv_rule(cv, category, detection);
	if (cv->rc != 0)
		fail_msg("not converted: %s", cv->res.reason);
	assert_int_equal(cv->res.status, SIGMA_CONVERTED);
	assert_compiles(cv);
}

static void assert_has(const struct conv *cv, const char *needle)
{
	if (!strstr(cv->res.text.data, needle))
		fail_msg("converted rule lacks '%s':\n%s", needle, cv->res.text.data);
}

static void assert_lacks(const struct conv *cv, const char *needle)
{
	if (strstr(cv->res.text.data, needle))
		fail_msg("converted rule has '%s':\n%s", needle, cv->res.text.data);
}

static void expect_refused(const char *category, const char *detection, enum sigma_status st,
			   const char *reason_part)
{
	struct conv cv;
	conv_rule(&cv, category, detection);
	if (cv.rc == 0)
		fail_msg("converted, want refusal '%s':\n%s", reason_part, cv.res.text.data);
	assert_int_equal(cv.res.status, st);
	if (!strstr(cv.res.reason, reason_part))
		fail_msg("reason '%s' does not say '%s'", cv.res.reason, reason_part);
	assert_null(strchr(cv.res.reason, '\n'));
	sigma_result_free(&cv.res);
}

static void metadata_kept(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  selection:\n    Image|endswith: /bash\n  condition: selection\n");
	assert_string_equal(cv.res.id, "5b5c7c42-0000-4000-8000-000000000001");
	assert_has(&cv, "- id: 5b5c7c42-0000-4000-8000-000000000001\n");
	assert_has(&cv, "name: \"Unit test rule\"");
	assert_has(&cv, "level: high");
	assert_has(&cv, "tags: [\"attack.execution\", \"attack.t1059.004\"]");
	assert_lacks(&cv, "car.");
	assert_has(&cv, "Sigma rule by vigil tests, Detection Rule License 1.1.");
	assert_has(&cv, "- event.action: {equals: \"exec\"}");
	assert_has(&cv, "process.executable: {iendswith: \"/bash\"}");
	assert_string_equal(cv.res.note, "");
	sigma_result_free(&cv.res);
}

static void plain_values_and_wildcards(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  selection:\n"
			 "    Image:\n"
			 "      - /bin/sh\n"
			 "      - '*/dash'\n"
			 "      - '/usr/bin/py*'\n"
			 "      - '*busybox*'\n"
			 "      - '/opt/*/run?.sh'\n"
			 "      - 'lit\\*star'\n"
			 "      - '@home'\n"
			 "  condition: selection\n");
	/* an escaped wildcard is a literal */
	assert_has(&cv, "{iequals: [\"/bin/sh\", \"lit*star\"]}");
	assert_has(&cv, "{iendswith: \"/dash\"}");
	assert_has(&cv, "{istartswith: \"/usr/bin/py\"}");
	assert_has(&cv, "{icontains: \"busybox\"}");
	/* inner wildcards: an anchored, case-insensitive regex, ? one UTF-8 character */
	assert_has(
	    &cv,
	    "{regex: \"(?is)\\\\A/opt/.*/run[^\\\\x80-\\\\xbf][\\\\x80-\\\\xbf]*\\\\.sh\\\\z\"}");
	/* a leading @ would name a list: matched as a regex instead */
	assert_has(&cv, "{regex: \"(?is)\\\\A@home\\\\z\"}");
	sigma_result_free(&cv.res);
}

static void position_modifiers_and_all(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  selection:\n"
			 "    CommandLine|contains|all:\n"
			 "      - ' -e '\n"
			 "      - '/bin/sh'\n"
			 "    ParentImage|startswith: /usr/sbin/\n"
			 "    ParentCommandLine|endswith:\n"
			 "      - ' -x'\n"
			 "      - ' -y'\n"
			 "    CurrentDirectory|contains: 'a*b'\n"
			 "  condition: selection\n");
	assert_has(&cv, "process.command_line: {icontains: \" -e \"}");
	assert_has(&cv, "process.command_line: {icontains: \"/bin/sh\"}");
	assert_has(&cv, "process.parent.executable: {istartswith: \"/usr/sbin/\"}");
	assert_has(&cv, "process.parent.command_line: {iendswith: [\" -x\", \" -y\"]}");
	assert_has(&cv, "process.working_directory: {regex: \"(?is)a.*b\"}");
	sigma_result_free(&cv.res);
}

static void cased_re_exists_null(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  selection:\n"
			 "    CommandLine|cased|contains: 'AbC'\n"
			 "    Image|cased: '/Bin/X'\n"
			 "    ParentCommandLine|re: '\\s-[FTd]\\s'\n"
			 "    CurrentDirectory|re|i|m: '^/tmp$'\n"
			 "    User|exists: true\n"
			 "    LogonId|exists: 'false'\n"
			 "    ParentImage: null\n"
			 "  condition: selection\n");
	assert_has(&cv, "process.command_line: {contains: \"AbC\"}");
	assert_has(&cv, "process.executable: {equals: \"/Bin/X\"}");
	assert_has(&cv, "process.parent.command_line: {regex: \"\\\\s-[FTd]\\\\s\"}");
	assert_has(&cv, "process.working_directory: {regex: \"(?im)^/tmp$\"}");
	assert_has(&cv, "user.name: {exists: true}");
	assert_has(&cv, "user.audit.id: {exists: false}");
	assert_has(&cv, "process.parent.executable: {exists: false}");
	sigma_result_free(&cv.res);

	/* empty patterns match any value: vigil refuses an empty contains or regex */
	expect_converted(&cv, "process_creation",
			 "  selection:\n"
			 "    CommandLine|re: ''\n"
			 "    ParentImage|contains: ''\n"
			 "    CurrentDirectory|startswith: ''\n"
			 "  condition: selection\n");
	assert_has(&cv, "process.command_line: {exists: true}");
	assert_has(&cv, "process.parent.executable: {exists: true}");
	assert_has(&cv, "process.working_directory: {exists: true}");
	sigma_result_free(&cv.res);

	/* a regex the linear-time engine rejects is refused with Hyperscan's reason */
	expect_refused("process_creation",
		       "  selection:\n    CommandLine|re: '(a)\\1'\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "not accepted by the linear-time engine");
	expect_refused("process_creation",
		       "  selection:\n    CommandLine|re: '(?<=x)y'\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "not accepted by the linear-time engine");
	expect_refused("process_creation",
		       "  selection:\n    CommandLine|exists: maybe\n  condition: selection\n",
		       SIGMA_INVALID, "exists takes true or false");
}

static void base64_modifiers(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  selection:\n"
			 "    CommandLine|base64offset|contains: 'http://'\n"
			 "  sel2:\n"
			 "    ParentCommandLine|base64: 'abc'\n"
			 "  sel3:\n"
			 "    CurrentDirectory|wide|base64offset|contains: 'ping'\n"
			 "  condition: selection or sel2 or sel3\n");
	/* the three offsets, matched case-sensitively */
	assert_has(&cv, "process.command_line: {contains: [\"aHR0cDovL\", \"h0dHA6Ly\", "
			"\"odHRwOi8v\"]}");
	assert_has(&cv, "process.parent.command_line: {equals: \"YWJj\"}");
	assert_has(&cv, "process.working_directory: {contains: [\"cABpAG4AZw\", \"AAaQBuAGcA\", "
			"\"wAGkAbgBnA\"]}");
	sigma_result_free(&cv.res);

	expect_refused("process_creation",
		       "  selection:\n    CommandLine|base64: 'a*b'\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "wildcards cannot be encoded");
	/* base64offset of one byte leaves no character that depends on it alone at offset 2,
	 * and of nothing leaves nothing at all */
	expect_refused("process_creation",
		       "  selection:\n    CommandLine|base64offset|contains: ''\n"
		       "  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "too short");
	/* UTF-16 without base64 would put NUL bytes in a value */
	expect_refused(
	    "process_creation",
	    "  selection:\n    CommandLine|wide|contains: 'ab'\n  condition: selection\n",
	    SIGMA_UNCONVERTIBLE, "NUL");
}

static void windash_modifier(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  selection:\n"
			 "    CommandLine|windash|contains: ' -f '\n"
			 "  condition: selection\n");
	assert_has(&cv, "{icontains: [\" -f \", \" /f \", \" \xe2\x80\x93"
			"f \", \" \xe2\x80\x94"
			"f \", \" \xe2\x80\x95"
			"f \"]}");
	sigma_result_free(&cv.res);

	/* five spellings per flag: four flags are 625 variants, past the cap */
	expect_refused(
	    "process_creation",
	    "  selection:\n    CommandLine|windash: '-a -b -c -d'\n  condition: selection\n",
	    SIGMA_UNCONVERTIBLE, "variants");
}

static void numeric_and_ip_fields(void **state)
{
	struct conv cv;
	expect_converted(&cv, "network_connection",
			 "  selection:\n"
			 "    Initiated: 'true'\n"
			 "    DestinationPort|gte: 1024\n"
			 "    SourcePort|lt: '5000'\n"
			 "    ProcessId: 42\n"
			 "    DestinationIp|cidr:\n"
			 "      - 10.0.0.0/8\n"
			 "      - 'fe80::/10'\n"
			 "  filter:\n"
			 "    SourceIp|startswith: '192.168.'\n"
			 "  filter2:\n"
			 "    SourceIp:\n"
			 "      - '127.0.0.1'\n"
			 "      - 'fe80:*'\n"
			 "  condition: selection and not filter and not filter2\n");
	assert_has(&cv, "- event.action: {in: [\"connect\", \"accept\"]}");
	assert_has(&cv, "network.direction: {equals: \"egress\"}");
	assert_has(&cv, "destination.port: {gte: 1024}");
	assert_has(&cv, "source.port: {lt: 5000}");
	assert_has(&cv, "process.pid: {equals: 42}");
	assert_has(&cv, "destination.ip: {cidr: [\"10.0.0.0/8\", \"fe80::/10\"]}");
	assert_has(&cv, "source.ip: {cidr: \"192.168.0.0/16\"}");
	assert_has(&cv, "source.ip: {equals: \"127.0.0.1\"}");
	assert_has(&cv, "source.ip: {cidr: \"fe80::/16\"}");
	sigma_result_free(&cv.res);

	expect_converted(&cv, "network_connection",
			 "  selection:\n    Initiated: false\n  condition: selection\n");
	assert_has(&cv, "network.direction: {equals: \"ingress\"}");
	sigma_result_free(&cv.res);

	expect_refused("network_connection",
		       "  selection:\n    DestinationPort|contains: '44'\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "integer field");
	expect_refused("network_connection",
		       "  selection:\n    DestinationIp|endswith: '.1'\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "IP field");
	expect_refused(
	    "network_connection",
	    "  selection:\n    DestinationIp|cidr: '10.0.0.0/33'\n  condition: selection\n",
	    SIGMA_INVALID, "not a CIDR");
	expect_refused("process_creation",
		       "  selection:\n    CommandLine|gt: 5\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "not an integer field");
	expect_refused("network_connection",
		       "  selection:\n    Initiated: 'maybe'\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "only 'true' or 'false'");
}

static void keywords(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  keywords:\n"
			 "    - 'nc -e'\n"
			 "    - 'ba*sh'\n"
			 "  condition: keywords\n");
	assert_has(&cv, "process.command_line: {icontains: \"nc -e\"}");
	assert_has(&cv, "process.command_line: {regex: \"(?is)ba.*sh\"}");
	sigma_result_free(&cv.res);

	expect_converted(&cv, "file_event", "  keywords: 'evil'\n  condition: keywords\n");
	assert_has(&cv, "file.path: {icontains: \"evil\"}");
	assert_has(&cv, "file.target_path: {icontains: \"evil\"}");
	sigma_result_free(&cv.res);

	/* Sigma searches the whole event; vigil only some fields: negating that would widen */
	expect_refused("process_creation",
		       "  selection:\n    Image: /bin/x\n  keywords: ['a']\n"
		       "  condition: selection and not keywords\n",
		       SIGMA_UNCONVERTIBLE, "keyword search under 'not'");
}

static void list_of_maps_is_or(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  selection:\n"
			 "    - Image|endswith: /a\n"
			 "      CommandLine|contains: x\n"
			 "    - Image|endswith: /b\n"
			 "  condition: selection\n");
	assert_has(&cv, "        - any:\n"
			"            - all:\n"
			"                - process.executable: {iendswith: \"/a\"}\n"
			"                - process.command_line: {icontains: \"x\"}\n"
			"            - process.executable: {iendswith: \"/b\"}\n");
	sigma_result_free(&cv.res);
}

static void file_event_rename_branch(void **state)
{
	struct conv cv;
	expect_converted(&cv, "file_event",
			 "  selection:\n    TargetFilename|startswith: /etc/cron.d/\n"
			 "  condition: selection\n");
	assert_has(&cv, "      all:\n"
			"        - event.action: {in: [\"create\", \"write\", \"rename\"]}\n"
			"        - any:\n"
			"            - all:\n"
			"                - event.action: {in: [\"create\", \"write\"]}\n"
			"                - file.path: {istartswith: \"/etc/cron.d/\"}\n"
			"            - all:\n"
			"                - event.action: {equals: \"rename\"}\n"
			"                - file.target_path: {istartswith: \"/etc/cron.d/\"}\n");
	sigma_result_free(&cv.res);

	/* no TargetFilename: one branch for the three actions */
	expect_converted(&cv, "file_event",
			 "  selection:\n    Image|endswith: /wget\n  condition: selection\n");
	assert_has(&cv, "      all:\n"
			"        - event.action: {in: [\"create\", \"write\", \"rename\"]}\n"
			"        - process.executable: {iendswith: \"/wget\"}\n");
	sigma_result_free(&cv.res);
}

static void unobserved_fields(void **state)
{
	struct conv cv;

	/* needed for every match: refused */
	expect_refused("network_connection",
		       "  selection:\n    DestinationHostname|endswith: .ngrok.io\n"
		       "  condition: selection\n",
		       SIGMA_UNCONVERTIBLE,
		       "field 'DestinationHostname' is needed for every match");
	expect_refused("process_creation",
		       "  selection:\n    Image: /bin/x\n    Hashes|contains: abc\n"
		       "  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "'Hashes' is needed for every match");
	/* a filter on it would be dropped, widening the rule: refused */
	expect_refused("process_creation",
		       "  selection:\n    Image: /bin/x\n  filter:\n    OriginalFileName: x\n"
		       "  condition: selection and not filter\n",
		       SIGMA_UNCONVERTIBLE, "dropping the constraint would widen");
	/* null on it is always true: dropping it would widen too */
	expect_refused("process_creation",
		       "  selection:\n    Image: /bin/x\n    OriginalFileName: null\n"
		       "  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "would widen");

	/* one alternative of an OR: dropped, and said so */
	expect_converted(&cv, "process_creation",
			 "  sel_a:\n    Image: /bin/x\n  sel_b:\n    OriginalFileName: x\n"
			 "  condition: 1 of sel_*\n");
	assert_has(&cv, "# note: alternatives on field 'OriginalFileName' were dropped");
	assert_has(&cv, "process.executable: {iequals: \"/bin/x\"}");
	assert_non_null(strstr(cv.res.note, "OriginalFileName"));
	sigma_result_free(&cv.res);

	/* not (A and unobserved-is-null): "not A" narrows the rule, so it is allowed */
	expect_converted(&cv, "process_creation",
			 "  selection:\n    Image: /bin/x\n"
			 "  filter:\n    CommandLine: y\n    Hashes: null\n"
			 "  condition: selection and not filter\n");
	assert_has(&cv, "process.command_line: {iequals: \"y\"}");
	sigma_result_free(&cv.res);

	/* a field outside its category is not observed there */
	expect_refused("process_creation",
		       "  selection:\n    DestinationPort: 80\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "'DestinationPort' is needed");
}

static void unsupported_constructs(void **state)
{
	expect_refused("process_creation",
		       "  selection:\n    Image|fieldref: ParentImage\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "fieldref");
	expect_refused("process_creation",
		       "  selection:\n    Image|expand: '%x%'\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "expand");
	expect_refused("process_creation",
		       "  selection:\n    Image|nosuch: x\n  condition: selection\n",
		       SIGMA_UNCONVERTIBLE, "modifier 'nosuch' is not supported");
	expect_refused(
	    "process_creation",
	    "  selection:\n    Image: x\n  condition: selection | count() by Image > 5\n",
	    SIGMA_UNCONVERTIBLE, "aggregation");
	expect_refused("process_creation",
		       "  selection:\n    Image|contains|endswith: x\n  condition: selection\n",
		       SIGMA_INVALID, "more than one of contains");
	expect_refused("process_creation",
		       "  selection:\n    Image|re|contains: x\n  condition: selection\n",
		       SIGMA_INVALID, "take no other value modifier");
	expect_refused("process_creation", "  selection:\n    Image|i: x\n  condition: selection\n",
		       SIGMA_INVALID, "applies only after re");
	expect_refused("process_creation", "  selection:\n    Image: []\n  condition: selection\n",
		       SIGMA_INVALID, "empty list");
	expect_refused("process_creation", "  selection:\n    Image: x\n  condition: nosuch\n",
		       SIGMA_INVALID, "names no selection");
	expect_refused("process_creation", "  selection:\n    Image: x\n", SIGMA_INVALID,
		       "no condition");
}

static void condition_list_is_or(void **state)
{
	struct conv cv;
	expect_converted(&cv, "process_creation",
			 "  a:\n    Image: /x\n  b:\n    User: root\n"
			 "  condition:\n    - a\n    - b\n");
	assert_has(&cv, "- any:\n            - process.executable: {iequals: \"/x\"}\n"
			"            - user.name: {iequals: \"root\"}\n");
	sigma_result_free(&cv.res);
}

/* ---- malformed and hostile input ---- */

static void expect_invalid_src(const char *src, size_t len, const char *reason_part)
{
	struct sigma_result res;
	int rc = sigma_convert(src, len, NULL, &res);
	assert_true(rc < 0);
	assert_int_not_equal(res.status, SIGMA_CONVERTED);
	if (!strstr(res.reason, reason_part))
		fail_msg("reason '%s' does not say '%s'", res.reason, reason_part);
	assert_null(strchr(res.reason, '\n'));
	assert_int_equal(res.text.len, 0);
	sigma_result_free(&res);
}

static void malformed_rules(void **state)
{
	static const char good_tail[] = "logsource: {product: linux, category: process_creation}\n"
					"detection: {sel: {Image: x}, condition: sel}\n";
	char src[1024];

	expect_invalid_src("", 0, "not a Sigma rule");
	expect_invalid_src(NULL, 0, "not a Sigma rule");
	expect_invalid_src("just a string", 13, "not a mapping");
	expect_invalid_src("a: [1, 2", 8, "invalid YAML");
	expect_invalid_src("a: \"\\xff\x01\"", 11, "invalid YAML");
	expect_invalid_src("a: 1\na: 2\n", 10, "duplicate key 'a'");
	expect_invalid_src("a: &x 1\nb: *x\n", 14, "aliases are not supported");
	expect_invalid_src("a: 1\n---\nb: 2\n", 14, "several YAML documents");
	expect_invalid_src("title: x\n", 9, "no logsource");

	snprintf(src, sizeof(src), "id: 1\n%s", good_tail);
	expect_invalid_src(src, strlen(src), "no title");
	snprintf(src, sizeof(src), "title: t\n%s", good_tail);
	expect_invalid_src(src, strlen(src), "no id");
	snprintf(src, sizeof(src), "title: t\nid: 'a/b'\n%s", good_tail);
	expect_invalid_src(src, strlen(src), "id must be");
	snprintf(src, sizeof(src), "title: t\nid: x\nlevel: severe\n%s", good_tail);
	expect_invalid_src(src, strlen(src), "unknown level 'severe'");
	snprintf(src, sizeof(src), "title: \"t\\0x\"\nid: x\n%s", good_tail);
	expect_invalid_src(src, strlen(src), "NUL");
	snprintf(src, sizeof(src),
		 "title: t\nid: x\nlogsource: {product: linux, category: process_creation}\n"
		 "detection: {sel: {Image: \"a\\0b\"}, condition: sel}\n");
	expect_invalid_src(src, strlen(src), "NUL");
	/* binary garbage */
	expect_invalid_src("\x00\x01\x02\xff", 4, "invalid YAML");
}

static void unsupported_logsources(void **state)
{
	static const char *const sources[] = {
	    "{product: windows, category: process_creation}",
	    "{product: linux, service: auditd}",
	    "{product: linux, category: process_creation, service: sysmon}",
	    "{product: linux, category: dns_query}",
	    "{category: process_creation}",
	};
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
		char src[512];
		struct sigma_result res;
		snprintf(
		    src, sizeof(src),
		    "title: t\nid: x\nlogsource: %s\ndetection: {s: {Image: x}, condition: s}\n",
		    sources[i]);
		assert_int_equal(sigma_convert(src, strlen(src), NULL, &res), -ENOTSUP);
		assert_int_equal(res.status, SIGMA_UNSUPPORTED_LOGSOURCE);
		assert_non_null(strstr(res.reason, "unsupported logsource"));
		assert_string_equal(res.id, "x");
		sigma_result_free(&res);
	}
}

static void limits(void **state)
{
	struct sigma_result res;
	size_t n;
	char *src;

	/* YAML nested past the cap */
	src = malloc(100000);
	assert_non_null(src);
	n = 0;
	for (int i = 0; i < 10000; i++)
		src[n++] = '[';
	assert_true(sigma_convert(src, n, NULL, &res) < 0);
	assert_non_null(strstr(res.reason, "nested deeper"));
	sigma_result_free(&res);

	/* a file past the size cap is refused before it is parsed */
	free(src);
	src = calloc(1, SIGMA_FILE_MAX + 2);
	assert_non_null(src);
	memset(src, ' ', SIGMA_FILE_MAX + 1);
	assert_int_equal(sigma_convert(src, SIGMA_FILE_MAX + 1, NULL, &res), -E2BIG);
	assert_non_null(strstr(res.reason, "larger than"));
	sigma_result_free(&res);
	free(src);

	/* a condition referring to one selection thousands of times stays bounded */
	src = malloc(200000);
	assert_non_null(src);
	n = (size_t)snprintf(src, 200000,
			     "title: t\nid: x\nlogsource: {product: linux, category: "
			     "process_creation}\ndetection:\n  s:\n    Image: '*a*b*'\n"
			     "  condition: s");
	for (int i = 0; i < 2000; i++)
		n += (size_t)snprintf(src + n, 200000 - n, " and s");
	src[n++] = '\n';
	assert_true(sigma_convert(src, n, NULL, &res) < 0);
	assert_int_equal(res.status, SIGMA_UNCONVERTIBLE);
	sigma_result_free(&res);
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(condition_precedence),
	    cmocka_unit_test(condition_quantifiers),
	    cmocka_unit_test(condition_errors),
	    cmocka_unit_test(condition_depth_bound),
	    cmocka_unit_test(metadata_kept),
	    cmocka_unit_test(plain_values_and_wildcards),
	    cmocka_unit_test(position_modifiers_and_all),
	    cmocka_unit_test(cased_re_exists_null),
	    cmocka_unit_test(base64_modifiers),
	    cmocka_unit_test(windash_modifier),
	    cmocka_unit_test(numeric_and_ip_fields),
	    cmocka_unit_test(keywords),
	    cmocka_unit_test(list_of_maps_is_or),
	    cmocka_unit_test(file_event_rename_branch),
	    cmocka_unit_test(unobserved_fields),
	    cmocka_unit_test(unsupported_constructs),
	    cmocka_unit_test(condition_list_is_or),
	    cmocka_unit_test(malformed_rules),
	    cmocka_unit_test(unsupported_logsources),
	    cmocka_unit_test(limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
