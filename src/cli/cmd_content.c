/*
 * vigil content: lint rule trees (compile and run every rule's tests) and replay the agent's
 * NDJSON through the engine, printing the alerts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "lib/engine.h"
#include "lib/event_json.h"
#include "lib/rules.h"

static void content_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil content lint PATH [--stats]\n"
	    "       vigil content test --rules PATH --events FILE [--stats] [--alerts-only]\n"
	    "       vigil content build RULES --version N --key S.key [...] -o FILE\n"
	    "       vigil content verify FILE --root ROOT [--compile]\n"
	    "\n"
	    "lint   compiles the rules in PATH (a directory of *.yml files, or one file)\n"
	    "       against this build's field registry and runs every rule's tests.\n"
	    "       --stats        then print every pattern database the load built: kind,\n"
	    "                      field, patterns, compile CPU ms (on the thread that\n"
	    "                      compiled it), bytes; costliest first, totals by kind\n"
	    "test   replays FILE (the agent's NDJSON; - for stdin) through the rules and\n"
	    "       prints each alert as one NDJSON line. Metric and alert lines are skipped;\n"
	    "       a malformed line is reported as FILE:LINE: reason and skipped.\n"
	    "       --alerts-only  print alerts only (the default; as vigil-agent's option)\n"
	    "       --stats        end with one JSON line: events, alerts, seconds (time spent\n"
	    "                      in the engine, not parsing or writing), events_per_second,\n"
	    "                      and load figures\n");
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const db_kind_names[] = {
    [RDB_LITERAL] = "literal",
    [RDB_REGEX] = "regex",
    [RDB_REGEX_ATOMS] = "regex-atoms",
    [RDB_REGEX_ON_DEMAND] = "regex-on-demand",
    [RDB_LOOKUP] = "lookup",
};

static int cmp_db_cost(const void *x, const void *y)
{
	const struct ruleset_db_info *a = x, *b = y;

	if (a->cpu_ms != b->cpu_ms)
		return a->cpu_ms > b->cpu_ms ? -1 : 1;
	return a->patterns > b->patterns ? -1 : a->patterns < b->patterns;
}

/* The pattern databases of @rs, costliest compile first, then one line per kind. */
static int print_db_stats(const struct ruleset *rs)
{
	size_t n = ruleset_db_count(rs);
	struct ruleset_db_info *v = calloc(n ? n : 1, sizeof(*v));
	struct {
		size_t dbs, patterns, bytes;
		double ms;
	} kinds[RDB_LOOKUP + 1] = {{0}};

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		ruleset_db_get(rs, i, &v[i]);
	qsort(v, n, sizeof(*v), cmp_db_cost);
	printf("%-16s %-28s %8s %10s %9s\n", "kind", "field", "patterns", "cpu_ms", "bytes");
	for (size_t i = 0; i < n; i++) {
		printf("%-16s %-28s %8zu %10.2f %9zu%s\n", db_kind_names[v[i].kind], v[i].field,
		       v[i].patterns, v[i].cpu_ms, v[i].bytes,
		       v[i].compiled || v[i].kind == RDB_LOOKUP ? "" : " (shared)");
		kinds[v[i].kind].dbs++;
		kinds[v[i].kind].patterns += v[i].patterns;
		kinds[v[i].kind].bytes += v[i].bytes;
		kinds[v[i].kind].ms += v[i].cpu_ms;
	}
	for (size_t k = 0; k <= RDB_LOOKUP; k++)
		printf("total %s: %zu databases, %zu patterns, %.2f ms CPU, %zu bytes\n",
		       db_kind_names[k], kinds[k].dbs, kinds[k].patterns, kinds[k].ms,
		       kinds[k].bytes);
	free(v);
	return 0;
}

static int content_lint(int argc, char **argv)
{
	struct ruleset *rs = NULL;
	struct rules_test_result res;
	struct buf report;
	const char *path = NULL;
	bool stats = false;
	char err[1024];
	int ret;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			content_usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--stats") == 0) {
			stats = true;
		} else if (argv[i][0] != '-' && !path) {
			path = argv[i];
		} else {
			path = NULL;
			break;
		}
	}
	if (!path) {
		fprintf(stderr, "vigil content lint: expected one PATH (try --help)\n");
		return 2;
	}
	if ((ret = ruleset_load_path(path, &rs, err, sizeof(err))) < 0) {
		fprintf(stderr, "%s\n", err[0] ? err : strerror(-ret));
		return 1;
	}
	buf_init(&report, 1024 * 1024);
	ret = ruleset_run_tests(rs, &report, &res);
	if (report.len)
		fwrite(report.data, 1, report.len, stderr);
	if (ret < 0 && ret != -EINVAL)
		fprintf(stderr, "vigil content lint: tests could not run: %s\n", strerror(-ret));
	printf("%s: %zu rules (%u with tests), %u tests passed, %u failed\n", path,
	       ruleset_count(rs), res.rules, res.passed, res.failed);
	if (stats && print_db_stats(rs) < 0) {
		fprintf(stderr, "vigil content lint: out of memory\n");
		ret = -ENOMEM;
	}
	buf_release(&report);
	ruleset_free(rs);
	return ret == 0 ? 0 : 1;
}

struct replay {
	FILE *out;
	struct event *scratch;
	struct buf line;
	unsigned long long alerts;
	unsigned long long write_errors;
	double output_seconds; /* spent writing alerts, inside engine_eval's callback */
};

static double now_seconds(void);

static void on_alert(void *ctx, const struct rule_info *rule, const struct event *ev)
{
	struct replay *r = ctx;
	double t0 = now_seconds();
	r->alerts++;
	buf_reset(&r->line);
	if (alert_write_json(rule, ev, r->scratch, &r->line) < 0 ||
	    buf_append_char(&r->line, '\n') < 0 ||
	    fwrite(r->line.data, 1, r->line.len, r->out) != r->line.len)
		r->write_errors++;
	r->output_seconds += now_seconds() - t0;
}

/*
 * Reads one line into @b (without the newline). Returns 1 for a line, 0 at end of input,
 * -E2BIG for a line past the buffer's cap (the rest of it is consumed), -EIO on error.
 */
static int read_line(FILE *in, struct buf *b)
{
	char chunk[65536];
	bool any = false, big = false;

	buf_reset(b);
	while (fgets(chunk, sizeof(chunk), in)) {
		size_t n = strlen(chunk);
		bool end = n && chunk[n - 1] == '\n';
		any = true;
		if (end)
			n--;
		if (!big && buf_append(b, chunk, n) < 0)
			big = true;
		if (end)
			return big ? -E2BIG : 1;
	}
	if (ferror(in))
		return -EIO;
	if (!any)
		return 0;
	return big ? -E2BIG : 1;
}

static int content_test(int argc, char **argv)
{
	const char *rules = NULL, *events = NULL;
	bool stats = false;
	struct ruleset *rs = NULL;
	struct engine *eng = NULL;
	struct event *ev = NULL;
	struct replay r = {.out = stdout};
	struct buf in;
	FILE *f = NULL;
	char err[1024];
	int ret, status = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0) {
			content_usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--rules") == 0 && i + 1 < argc) {
			rules = argv[++i];
		} else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) {
			events = argv[++i];
		} else if (strcmp(argv[i], "--stats") == 0) {
			stats = true;
		} else if (strcmp(argv[i], "--alerts-only") == 0) {
			continue;
		} else {
			fprintf(stderr, "vigil content test: unknown or incomplete argument '%s'\n",
				argv[i]);
			return 2;
		}
	}
	if (!rules || !events) {
		fprintf(stderr,
			"vigil content test: --rules PATH and --events FILE are required\n");
		return 2;
	}
	buf_init(&in, EVENT_JSON_LINE_MAX);
	buf_init(&r.line, 4 * EVENT_JSON_LINE_MAX);
	double t0 = now_seconds();
	if ((ret = ruleset_load_path(rules, &rs, err, sizeof(err))) < 0) {
		fprintf(stderr, "%s\n", err[0] ? err : strerror(-ret));
		goto out_free;
	}
	double compile_seconds = now_seconds() - t0;
	if ((ret = engine_new(rs, NULL, &eng)) < 0 || !(ev = event_new()) ||
	    !(r.scratch = event_new())) {
		fprintf(stderr, "vigil content test: %s\n", strerror(ret < 0 ? -ret : ENOMEM));
		goto out_free;
	}
	f = strcmp(events, "-") == 0 ? stdin : fopen(events, "re");
	if (!f) {
		fprintf(stderr, "%s: %s\n", events, strerror(errno));
		goto out_free;
	}
	unsigned long long lineno = 0, n_events = 0, skipped = 0, malformed = 0;
	uint64_t now = 0;
	double engine_seconds = 0, wall0 = now_seconds();
	for (;;) {
		char why[256];
		ret = read_line(f, &in);
		if (ret == 0)
			break;
		lineno++;
		if (ret == -EIO) {
			fprintf(stderr, "%s:%llu: read error\n", events, lineno);
			goto out_free;
		}
		if (ret == -E2BIG) {
			fprintf(stderr, "%s:%llu: line longer than %u bytes\n", events, lineno,
				EVENT_JSON_LINE_MAX);
			malformed++;
			continue;
		}
		if (in.len == 0)
			continue;
		ret = event_parse_json(ev, in.data, in.len, why, sizeof(why), NULL);
		if (ret == EVENT_SKIPPED) {
			skipped++;
			continue;
		}
		if (ret < 0) {
			fprintf(stderr, "%s:%llu: %s\n", events, lineno, why);
			malformed++;
			continue;
		}
		size_t tl;
		const char *ts = event_str(ev, F_TIMESTAMP, &tl);
		uint64_t at;
		if (ts && timestamp_parse(ts, tl, &at) == 0)
			now = at;
		double e0 = now_seconds();
		engine_eval(eng, ev, now, on_alert, &r);
		engine_seconds += now_seconds() - e0;
		n_events++;
	}
	double wall = now_seconds() - wall0;
	/* the engine's time, not the alert writer's */
	engine_seconds -= r.output_seconds;
	if (engine_seconds < 0)
		engine_seconds = 0;
	if (r.write_errors) {
		fprintf(stderr, "vigil content test: %llu alerts could not be written\n",
			r.write_errors);
		goto out_free;
	}
	if (stats) {
		struct engine_stats es;
		struct ruleset_stats rstat;
		engine_get_stats(eng, &es);
		ruleset_get_stats(rs, &rstat);
		printf(
		    "{\"events\":%llu,\"alerts\":%llu,\"seconds\":%.6f,\"events_per_second\":%.0f,"
		    "\"wall_seconds\":%.6f,\"skipped\":%llu,\"malformed\":%llu,\"rules\":%zu,"
		    "\"compile_seconds\":%.6f,\"memory_bytes\":%zu,\"evaluations\":%llu,"
		    "\"state_evictions\":%llu}\n",
		    n_events, r.alerts, engine_seconds,
		    engine_seconds > 0 ? (double)n_events / engine_seconds : 0.0, wall, skipped,
		    malformed, rstat.rules, compile_seconds,
		    rstat.memory_bytes + engine_memory(eng), (unsigned long long)es.evaluations,
		    (unsigned long long)es.state_evictions);
	}
	status = fflush(stdout) == 0 ? 0 : 1;
out_free:
	if (f && f != stdin)
		fclose(f);
	event_free(ev);
	event_free(r.scratch);
	engine_free(eng);
	ruleset_free(rs);
	buf_release(&in);
	buf_release(&r.line);
	return status;
}

int cmd_content(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		content_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "lint") == 0)
		return content_lint(argc - 1, argv + 1);
	if (strcmp(argv[1], "test") == 0)
		return content_test(argc - 1, argv + 1);
	if (strcmp(argv[1], "build") == 0)
		return cmd_content_build(argc - 1, argv + 1);
	if (strcmp(argv[1], "verify") == 0)
		return cmd_content_verify(argc - 1, argv + 1);
	fprintf(stderr, "vigil content: unknown subcommand '%s' (lint, test, build, verify)\n",
		argv[1]);
	return 2;
}
