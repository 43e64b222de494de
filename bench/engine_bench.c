/*
 * Rule-engine benchmark: events per second of the vigil engine and of a naive evaluator
 * (naive.c) over the same compiled rulesets (the converted SigmaHQ Linux rules and content/)
 * and the same pre-parsed event corpus, on one pinned CPU; also parse rate, compile time and
 * engine memory. Checks that engine and naive evaluator raise the same alerts. Prints a
 * table and ends with one JSON line. Run by `make bench` (bench/run.sh, section "engine").
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/compile_int.h"
#include "lib/engine.h"
#include "lib/event.h"
#include "lib/event_json.h"
#include "lib/rules.h"
#include "naive.h"

/* Targets of the rule engine (issue: detection content, Performance). */
#define TARGET_EVENTS_PER_SECOND 1000000.0
#define TARGET_COMPILE_MS	 100.0
#define TARGET_MEMORY_MB	 10.0

/* Bytes of decompressed corpus accepted. */
#define CORPUS_MAX_BYTES (2048ull * 1024 * 1024)
/* Differing events shown when engine and naive evaluator disagree. */
#define SHOW_DIFFS 5

struct options {
	const char *corpus;
	const char *sigma_src;
	const char *sigma_rules; /* already converted: no conversion */
	const char *content;
	const char *vigil;
	const char *summary;
	const char *profile; /* "sigma" or "content": time only that engine (for perf record) */
	double min_seconds;
	int runs;
	int compile_runs;
	int cpu;
};

/* The corpus: NDJSON lines (for the parse measurement) and the events they hold. */
struct corpus {
	char *text;
	size_t text_len;
	size_t *line_off, *line_len;
	size_t n_lines;
	struct event **ev; /* into block once packed */
	struct event *block;
	char *arenas;
	struct ev_span *items;
	uint64_t *now;
	bool *cstrings; /* every string of the event is followed by NUL and holds none */
	size_t n;
	size_t rejected;
	size_t bytes; /* memory the pre-parsed events take */
};

struct measure {
	double eps;	 /* events per second of CPU time (the median run) */
	double wall_eps; /* events per second of wall-clock time */
	double runs_eps[16];
	double runs_wall[16];
	uint64_t alerts_per_pass;
	bool stable; /* every pass raised the same number of alerts */
};

struct row {
	const char *name;
	const char *source;
	bool present;
	char skip_reason[256];
	unsigned converted, total; /* Sigma conversion */
	struct ruleset *rs;
	struct ruleset_stats st;
	double compile_ms;   /* CPU time, median */
	double compile_wall; /* wall-clock time, median */
	double compile_runs_ms[16];
	double compile_wall_ms[16];
	size_t engine_bytes;
	uint64_t engine_alerts, naive_alerts;
	uint64_t state_evictions;
	uint64_t regex_errors;
	unsigned test_items, test_events; /* the rules' own test events, run through both */
	uint64_t test_alerts_engine, test_alerts_naive;
	unsigned test_differing; /* test events on which the two raised different alerts */
	double scans_per_event;	 /* the engine's pattern database scans */
	double evals_per_event;	 /* the engine's program evaluations */
	size_t rules_differing;
	struct measure engine, naive;
};

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static double cpu_s(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

/* CPU time of every thread: a load compiles its pattern databases on more than one. */
static double process_cpu_s(void)
{
	return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[16];
	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: engine_bench [OPTIONS]\n"
	    "\n"
	    "Events per second of the vigil rule engine and of a naive evaluator (each rule,\n"
	    "each predicate, strstr/strcasestr/PCRE2 in turn) over the converted SigmaHQ Linux\n"
	    "rules and over content/, on one CPU, with the same pre-parsed corpus; parse rate,\n"
	    "compile time and engine memory; checks both raise the same alerts. Run from the\n"
	    "repository root. Ends with one JSON line.\n"
	    "\n"
	    "  --corpus FILE        NDJSON events, .zst decompressed with zstd\n"
	    "                       (default bench/corpus/live.ndjson.zst)\n"
	    "  --sigma-src DIR      Sigma rules to convert (default ../shared/sigma/rules/linux;\n"
	    "                       when absent the Sigma row is skipped, an error when CI=true)\n"
	    "  --sigma-rules DIR    already converted Sigma rules (no conversion)\n"
	    "  --content DIR        vigil's own rules (default content)\n"
	    "  --vigil PATH         the vigil tool that converts (default $BUILD/vigil, "
	    "build/vigil)\n"
	    "  --seconds S          least time per measurement (default 2)\n"
	    "  --runs N             measurements per figure, the median is kept (default 3)\n"
	    "  --compile-runs N     compiles of each ruleset timed (default 5)\n"
	    "  --cpu N              CPU to pin to (default: the one the benchmark starts on)\n"
	    "  --summary FILE       write a one-line summary, then one line per missed target\n"
	    "  --profile RULESET    only run the engine over RULESET (sigma or content) for\n"
	    "                       --seconds, one compile, no check: for perf record\n"
	    "\n"
	    "Exit status: 0 done, 1 error, 2 bad usage, 3 engine and naive evaluator disagree.\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	const char *build = getenv("BUILD");
	static char vigil[4096];

	if (!build || !*build)
		build = "build";
	if (snprintf(vigil, sizeof(vigil), "%s/vigil", build) >= (int)sizeof(vigil))
		return -EINVAL;
	*o = (struct options){
	    .corpus = "bench/corpus/live.ndjson.zst",
	    .sigma_src = "../shared/sigma/rules/linux",
	    .content = "content",
	    .vigil = vigil,
	    .min_seconds = 2.0,
	    .runs = 3,
	    .compile_runs = 5,
	    .cpu = -1,
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		}
		if (!v) {
			fprintf(stderr, "engine_bench: unknown or incomplete argument '%s'\n", a);
			return -EINVAL;
		}
		i++;
		if (strcmp(a, "--corpus") == 0) {
			o->corpus = v;
		} else if (strcmp(a, "--sigma-src") == 0) {
			o->sigma_src = v;
		} else if (strcmp(a, "--sigma-rules") == 0) {
			o->sigma_rules = v;
		} else if (strcmp(a, "--content") == 0) {
			o->content = v;
		} else if (strcmp(a, "--vigil") == 0) {
			o->vigil = v;
		} else if (strcmp(a, "--summary") == 0) {
			o->summary = v;
		} else if (strcmp(a, "--profile") == 0) {
			if (strcmp(v, "sigma") != 0 && strcmp(v, "content") != 0) {
				fprintf(stderr,
					"engine_bench: --profile: sigma or content, not '%s'\n", v);
				return -EINVAL;
			}
			o->profile = v;
		} else if (strcmp(a, "--seconds") == 0) {
			char *end;
			errno = 0;
			o->min_seconds = strtod(v, &end);
			if (errno || end == v || *end ||
			    !(o->min_seconds > 0 && o->min_seconds <= 600)) {
				fprintf(stderr,
					"engine_bench: --seconds: '%s' is not in (0, 600]\n", v);
				return -EINVAL;
			}
		} else if (strcmp(a, "--runs") == 0) {
			if (parse_int(v, 1, 15, &o->runs) < 0) {
				fprintf(stderr, "engine_bench: --runs: '%s' is not from 1 to 15\n",
					v);
				return -EINVAL;
			}
		} else if (strcmp(a, "--compile-runs") == 0) {
			if (parse_int(v, 1, 15, &o->compile_runs) < 0) {
				fprintf(stderr,
					"engine_bench: --compile-runs: '%s' is not from 1 to 15\n",
					v);
				return -EINVAL;
			}
		} else if (strcmp(a, "--cpu") == 0) {
			if (parse_int(v, 0, CPU_SETSIZE - 1, &o->cpu) < 0) {
				fprintf(stderr, "engine_bench: --cpu: '%s' is not a CPU number\n",
					v);
				return -EINVAL;
			}
		} else {
			fprintf(stderr, "engine_bench: unknown argument '%s'\n", a);
			return -EINVAL;
		}
	}
	if (o->profile)
		o->compile_runs = 1;
	return 0;
}

/* --- child processes: zstd to decompress, vigil to convert --- */

/*
 * Runs @argv with stdout to a pipe and appends what it prints to @out (cap set by the
 * caller). Returns 0 when it exits 0, -EIO when it fails, -E2BIG past @out's cap, -errno.
 */
static int run_capture(char *const argv[], struct buf *out)
{
	int fd[2], status, ret = 0;
	char chunk[65536];

	if (pipe2(fd, O_CLOEXEC) < 0)
		return -errno;
	pid_t pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(fd[0]);
		close(fd[1]);
		return ret;
	}
	if (pid == 0) {
		if (dup2(fd[1], STDOUT_FILENO) < 0)
			_exit(127);
		execvp(argv[0], argv);
		fprintf(stderr, "engine_bench: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd[1]);
	for (;;) {
		ssize_t n = read(fd[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (n == 0)
			break;
		if (ret == 0 && buf_append(out, chunk, (size_t)n) < 0)
			ret = -E2BIG; /* keep reading so that the child is not killed by SIGPIPE */
	}
	close(fd[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (ret == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		ret = -EIO;
	return ret;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Reads the corpus file whole, through `zstd -dc` when it ends in .zst. */
static int corpus_read(const char *path, struct buf *out)
{
	if (ends_with(path, ".zst")) {
		char *const argv[] = {"zstd", "-dcq", "--", (char *)path, NULL};
		if (access(path, R_OK) < 0)
			return -errno;
		return run_capture(argv, out);
	}
	FILE *f = fopen(path, "re");
	char chunk[65536];
	size_t n;
	int ret = 0;
	if (!f)
		return -errno;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if ((ret = buf_append(out, chunk, n)) < 0)
			break;
	}
	if (ret == 0 && ferror(f))
		ret = -EIO;
	fclose(f);
	return ret;
}

/* --- the corpus in memory --- */

/*
 * A copy of @src whose strings sit in one exactly sized arena, each followed by a NUL byte
 * (so the naive evaluator's strstr may read them). *@cstrings tells whether none holds a NUL.
 */
static struct event *event_compact(const struct event *src, bool *cstrings, size_t *bytes)
{
	size_t need = 1, n_items = 0, len;
	struct event *ev = NULL;

	for (int f = 0; f < FIELD_COUNT; f++) {
		if (!src->present[f] || f == F_EVENT_TRUNCATED)
			continue;
		enum field_type t = registry_field(f)->type;
		if (t == FT_STRING) {
			event_str(src, (enum field_id)f, &len);
			need += len + 1;
		} else if (t == FT_STRLIST) {
			uint32_t n = event_list_count(src, (enum field_id)f);
			for (uint32_t i = 0; i < n; i++) {
				event_list_item(src, (enum field_id)f, i, &len);
				need += len + 1;
			}
			n_items += n;
		}
	}
	if (need > UINT32_MAX || !(ev = calloc(1, sizeof(*ev))))
		return NULL;
	ev->last_list = -1;
	ev->arena = malloc(need);
	ev->items = malloc((n_items ? n_items : 1) * sizeof(*ev->items));
	if (!ev->arena || !ev->items) {
		event_free(ev);
		return NULL;
	}
	ev->cap = (uint32_t)need;
	ev->cap_items = (uint32_t)(n_items ? n_items : 1);
	memcpy(ev->present, src->present, sizeof(ev->present));
	memcpy(ev->truncated, src->truncated, sizeof(ev->truncated));
	memcpy(ev->v, src->v, sizeof(ev->v));
	*cstrings = true;
	for (int f = 0; f < FIELD_COUNT; f++) {
		if (!src->present[f] || f == F_EVENT_TRUNCATED)
			continue;
		enum field_type t = registry_field(f)->type;
		if (t == FT_STRING) {
			const char *s = event_str(src, (enum field_id)f, &len);
			ev->v[f].s.off = ev->used;
			ev->v[f].s.len = (uint32_t)len;
			memcpy(ev->arena + ev->used, s, len);
			ev->arena[ev->used + len] = '\0';
			ev->used += (uint32_t)len + 1;
			*cstrings &= memchr(s, '\0', len) == NULL;
		} else if (t == FT_STRLIST) {
			uint32_t n = event_list_count(src, (enum field_id)f);
			ev->v[f].l.first = ev->n_items;
			ev->v[f].l.n = n;
			for (uint32_t i = 0; i < n; i++) {
				const char *s = event_list_item(src, (enum field_id)f, i, &len);
				struct ev_span *it = &ev->items[ev->n_items++];
				it->off = ev->used;
				it->len = (uint32_t)len;
				memcpy(ev->arena + ev->used, s, len);
				ev->arena[ev->used + len] = '\0';
				ev->used += (uint32_t)len + 1;
				*cstrings &= memchr(s, '\0', len) == NULL;
			}
		}
	}
	ev->arena[ev->used] = '\0';
	*bytes = sizeof(*ev) + need + (n_items ? n_items : 1) * sizeof(*ev->items);
	return ev;
}

/*
 * Moves the events into three contiguous blocks (events, string arenas, list items) in corpus
 * order, as a replay buffer would hold them: passes over the corpus then walk memory
 * forwards instead of hopping between separately allocated events.
 */
static int corpus_pack(struct corpus *c)
{
	size_t arena_bytes = 0, n_items = 0;
	for (size_t i = 0; i < c->n; i++) {
		arena_bytes += c->ev[i]->cap;
		n_items += c->ev[i]->cap_items;
	}
	c->block = malloc(c->n * sizeof(*c->block));
	c->arenas = malloc(arena_bytes);
	c->items = malloc(n_items * sizeof(*c->items));
	if (!c->block || !c->arenas || !c->items) {
		free(c->block);
		c->block = NULL;
		return -ENOMEM;
	}
	size_t a = 0, k = 0;
	for (size_t i = 0; i < c->n; i++) {
		struct event *src = c->ev[i], *dst = &c->block[i];
		*dst = *src;
		dst->arena = c->arenas + a;
		memcpy(dst->arena, src->arena, src->cap);
		dst->items = c->items + k;
		memcpy(dst->items, src->items, src->cap_items * sizeof(*src->items));
		a += src->cap;
		k += src->cap_items;
		event_free(src);
		c->ev[i] = dst;
	}
	return 0;
}

static void corpus_free(struct corpus *c)
{
	for (size_t i = 0; c->ev && !c->block && i < c->n; i++)
		event_free(c->ev[i]);
	free(c->ev);
	free(c->block);
	free(c->arenas);
	free(c->items);
	free(c->now);
	free(c->cstrings);
	free(c->line_off);
	free(c->line_len);
	free(c->text);
	memset(c, 0, sizeof(*c));
}

/* Splits the text into lines and parses each into a compact event. */
static int corpus_load(const char *path, struct corpus *c)
{
	struct buf text;
	struct event *scratch = NULL;
	int ret;

	memset(c, 0, sizeof(*c));
	buf_init(&text, CORPUS_MAX_BYTES);
	if ((ret = corpus_read(path, &text)) < 0) {
		fprintf(stderr, "engine_bench: %s: %s\n", path,
			ret == -EIO ? "zstd failed" : strerror(-ret));
		buf_release(&text);
		return ret;
	}
	c->text = text.data;
	c->text_len = text.len;
	size_t cap = 1;
	for (size_t i = 0; i < c->text_len; i++)
		cap += c->text[i] == '\n';
	c->line_off = malloc(cap * sizeof(*c->line_off));
	c->line_len = malloc(cap * sizeof(*c->line_len));
	c->ev = malloc(cap * sizeof(*c->ev));
	c->now = malloc(cap * sizeof(*c->now));
	c->cstrings = malloc(cap * sizeof(*c->cstrings));
	scratch = event_new();
	if (!c->line_off || !c->line_len || !c->ev || !c->now || !c->cstrings || !scratch) {
		ret = -ENOMEM;
		goto out_fail;
	}
	uint64_t now = 0;
	for (size_t at = 0; at < c->text_len;) {
		char *nl = memchr(c->text + at, '\n', c->text_len - at);
		size_t len = nl ? (size_t)(nl - (c->text + at)) : c->text_len - at;
		const char *line = c->text + at;
		char why[256];
		at += len + 1;
		if (len == 0)
			continue;
		int pr = event_parse_json(scratch, line, len, why, sizeof(why), NULL);
		if (pr == EVENT_SKIPPED)
			continue;
		if (pr != EVENT_PARSED) {
			if (c->rejected++ < 3)
				fprintf(stderr, "engine_bench: %s: line %zu: %s\n", path,
					c->n_lines + 1, why);
			continue;
		}
		size_t tl, bytes = 0;
		const char *ts = event_str(scratch, F_TIMESTAMP, &tl);
		uint64_t t;
		if (ts && timestamp_parse(ts, tl, &t) == 0)
			now = t;
		if (!(c->ev[c->n] = event_compact(scratch, &c->cstrings[c->n], &bytes))) {
			ret = -ENOMEM;
			goto out_fail;
		}
		c->now[c->n] = now;
		c->bytes += bytes;
		c->line_off[c->n_lines] = (size_t)(line - c->text);
		c->line_len[c->n_lines] = len;
		c->n_lines++;
		c->n++;
	}
	event_free(scratch);
	scratch = NULL;
	if (c->n == 0) {
		fprintf(stderr, "engine_bench: %s: no events\n", path);
		corpus_free(c);
		return -EINVAL;
	}
	if ((ret = corpus_pack(c)) < 0)
		goto out_fail;
	return 0;
out_fail:
	fprintf(stderr, "engine_bench: %s: %s\n", path, strerror(-ret));
	event_free(scratch);
	corpus_free(c);
	return ret;
}

/* Parse rate: the corpus's lines into one reused event, passes until @min_s of CPU time. */
static double measure_parse(const struct corpus *c, double min_s, double *wall_eps)
{
	struct event *ev = event_new();
	char why[256];
	uint64_t events = 0;
	if (!ev)
		return 0;
	double w0 = wall_s(), c0 = cpu_s(), c1;
	do {
		for (size_t i = 0; i < c->n_lines; i++)
			event_parse_json(ev, c->text + c->line_off[i], c->line_len[i], why,
					 sizeof(why), NULL);
		events += c->n_lines;
	} while ((c1 = cpu_s()) - c0 < min_s);
	*wall_eps = (double)events / (wall_s() - w0);
	event_free(ev);
	return (double)events / (c1 - c0);
}

/* --- measurements --- */

/*
 * One measurement: passes over the corpus (state forgotten before each, so every pass
 * raises the same alerts) until @min_s of CPU time. Returns events per CPU second.
 */
static double measure_engine(struct engine *e, const struct corpus *c, double min_s,
			     double *wall_eps, uint64_t *alerts_per_pass, bool *stable)
{
	uint64_t events = 0, first = UINT64_MAX;
	double w0 = wall_s(), c0 = cpu_s(), c1;
	*stable = true;
	do {
		uint64_t alerts = 0;
		engine_reset_state(e);
		for (size_t i = 0; i < c->n; i++) {
			int n = engine_eval(e, c->ev[i], c->now[i], NULL, NULL);
			if (n > 0)
				alerts += (uint64_t)n;
		}
		if (first == UINT64_MAX)
			first = alerts;
		*stable &= alerts == first;
		events += c->n;
	} while ((c1 = cpu_s()) - c0 < min_s);
	*wall_eps = (double)events / (wall_s() - w0);
	*alerts_per_pass = first;
	return (double)events / (c1 - c0);
}

static double measure_naive(struct naive *nv, const struct corpus *c, double min_s,
			    double *wall_eps, uint64_t *alerts_per_pass, bool *stable)
{
	uint64_t events = 0, first = UINT64_MAX;
	double w0 = wall_s(), c0 = cpu_s(), c1;
	*stable = true;
	do {
		uint64_t alerts = 0;
		naive_reset_state(nv);
		for (size_t i = 0; i < c->n; i++)
			alerts += (uint64_t)naive_eval(nv, c->ev[i], c->now[i], c->cstrings[i],
						       NULL, NULL);
		if (first == UINT64_MAX)
			first = alerts;
		*stable &= alerts == first;
		events += c->n;
	} while ((c1 = cpu_s()) - c0 < min_s);
	*wall_eps = (double)events / (wall_s() - w0);
	*alerts_per_pass = first;
	return (double)events / (c1 - c0);
}

/* --- the agreement check: one pass of each, alert by alert --- */

struct collect {
	uint32_t *rules;
	uint32_t n;
};

static void on_alert(void *ctx, const struct rule_info *rule, const struct event *ev)
{
	struct collect *k = ctx;
	(void)ev;
	k->rules[k->n++] = (uint32_t)rule->index;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void show_event(const struct event *ev)
{
	static const enum field_id show[] = {F_EVENT_ACTION,
					     F_PROCESS_EXECUTABLE,
					     F_PROCESS_COMMAND_LINE,
					     F_PROCESS_PARENT_EXECUTABLE,
					     F_FILE_PATH,
					     F_FILE_TARGET_PATH};
	for (size_t i = 0; i < sizeof(show) / sizeof(show[0]); i++) {
		size_t len;
		const char *s = event_str(ev, show[i], &len);
		if (s)
			printf("      %s: %.*s\n", registry_field(show[i])->name,
			       (int)(len > 160 ? 160 : len), s);
	}
}

/* Test events without @timestamp are one second apart from here, as in ruleset_run_tests. */
#define TEST_BASE_NS (1700000000ull * 1000000000ull)

/*
 * Runs the rules' own test events (tests.match and tests.nomatch of every rule, state
 * forgotten before each item) through the engine and the naive evaluator, comparing the
 * alerts event by event: unlike a benign corpus, these make most rules fire.
 */
static int check_tests(struct row *r)
{
	const struct ruleset *rs = r->rs;
	struct engine *e = NULL;
	struct naive *nv = NULL;
	struct event *scratch = event_new();
	uint32_t *ke = calloc(rs->n_rules + 1, sizeof(*ke)),
		 *kn = calloc(rs->n_rules + 1, sizeof(*kn));
	char err[512] = "";
	int ret = -ENOMEM;

	if (!scratch || !ke || !kn)
		goto out_free;
	if ((ret = engine_new(rs, NULL, &e)) < 0 ||
	    (ret = naive_new(rs, &nv, err, sizeof(err))) < 0)
		goto out_free;
	for (uint32_t ri = 0; ri < rs->n_rules; ri++) {
		const struct crule *cr = &rs->rules[ri];
		for (uint32_t t = 0; t < cr->n_tests; t++) {
			const struct rtest *test = &cr->tests[t];
			uint64_t now = TEST_BASE_NS;
			engine_reset_state(e);
			naive_reset_state(nv);
			r->test_items++;
			for (uint32_t k = 0; k < test->n; k++) {
				char why[256];
				size_t tl, bytes;
				bool cstrings;
				uint64_t at;
				if (event_parse_json(scratch, test->json[k], test->lens[k], why,
						     sizeof(why), NULL) != EVENT_PARSED)
					continue;
				const char *ts = event_str(scratch, F_TIMESTAMP, &tl);
				if (ts && timestamp_parse(ts, tl, &at) == 0)
					now = at;
				else if (k > 0)
					now += 1000000000ull;
				struct event *ev = event_compact(scratch, &cstrings, &bytes);
				if (!ev) {
					ret = -ENOMEM;
					goto out_free;
				}
				struct collect ce = {ke, 0}, cn = {kn, 0};
				engine_eval(e, ev, now, on_alert, &ce);
				naive_eval(nv, ev, now, cstrings, on_alert, &cn);
				r->test_events++;
				r->test_alerts_engine += ce.n;
				r->test_alerts_naive += cn.n;
				qsort(ke, ce.n, sizeof(*ke), cmp_u32);
				qsort(kn, cn.n, sizeof(*kn), cmp_u32);
				if (ce.n != cn.n || memcmp(ke, kn, ce.n * sizeof(*ke)) != 0) {
					if (r->test_differing++ < SHOW_DIFFS)
						printf("  DIFFERENCE (%s) on test event %u of "
						       "%s:%u (rule %s): "
						       "engine %u alerts, naive %u\n",
						       r->name, k + 1, cr->info.file, test->line,
						       cr->info.id, ce.n, cn.n);
				}
				event_free(ev);
			}
		}
	}
	ret = 0;
out_free:
	if (ret < 0)
		fprintf(stderr, "engine_bench: %s: tests: %s\n", r->name,
			err[0] ? err : strerror(-ret));
	naive_free(nv);
	engine_free(e);
	event_free(scratch);
	free(ke);
	free(kn);
	return ret;
}

/* Runs @rs's engine and naive evaluator side by side over the corpus once. */
static int check_agreement(struct row *r, const struct corpus *c)
{
	struct engine *e = NULL;
	struct naive *nv = NULL;
	size_t nr = ruleset_count(r->rs);
	uint64_t *per_e = calloc(nr + 1, sizeof(*per_e)), *per_n = calloc(nr + 1, sizeof(*per_n));
	struct collect ke = {calloc(nr + 1, sizeof(uint32_t)), 0};
	struct collect kn = {calloc(nr + 1, sizeof(uint32_t)), 0};
	char err[512] = "";
	unsigned shown = 0;
	int ret = -ENOMEM;

	if (!per_e || !per_n || !ke.rules || !kn.rules)
		goto out_free;
	if ((ret = engine_new(r->rs, NULL, &e)) < 0) {
		fprintf(stderr, "engine_bench: %s: engine_new: %s\n", r->name, strerror(-ret));
		goto out_free;
	}
	if ((ret = naive_new(r->rs, &nv, err, sizeof(err))) < 0) {
		fprintf(stderr, "engine_bench: %s: naive evaluator: %s\n", r->name,
			err[0] ? err : strerror(-ret));
		goto out_free;
	}
	r->engine_alerts = r->naive_alerts = 0;
	for (size_t i = 0; i < c->n; i++) {
		ke.n = kn.n = 0;
		engine_eval(e, c->ev[i], c->now[i], on_alert, &ke);
		naive_eval(nv, c->ev[i], c->now[i], c->cstrings[i], on_alert, &kn);
		r->engine_alerts += ke.n;
		r->naive_alerts += kn.n;
		for (uint32_t k = 0; k < ke.n; k++)
			per_e[ke.rules[k]]++;
		for (uint32_t k = 0; k < kn.n; k++)
			per_n[kn.rules[k]]++;
		qsort(ke.rules, ke.n, sizeof(uint32_t), cmp_u32);
		qsort(kn.rules, kn.n, sizeof(uint32_t), cmp_u32);
		if (ke.n == kn.n && memcmp(ke.rules, kn.rules, ke.n * sizeof(uint32_t)) == 0)
			continue;
		if (shown++ >= SHOW_DIFFS)
			continue;
		printf("  DIFFERENCE (%s) at event %zu: engine raised", r->name, i);
		for (uint32_t k = 0; k < ke.n; k++)
			printf(" %s", ruleset_rule(r->rs, ke.rules[k])->id);
		printf("%s; naive raised", ke.n ? "" : " nothing");
		for (uint32_t k = 0; k < kn.n; k++)
			printf(" %s", ruleset_rule(r->rs, kn.rules[k])->id);
		printf("%s\n", kn.n ? "" : " nothing");
		show_event(c->ev[i]);
	}
	r->rules_differing = 0;
	for (size_t k = 0; k < nr; k++) {
		if (per_e[k] == per_n[k])
			continue;
		if (r->rules_differing++ < 20) {
			const struct rule_info *ri = ruleset_rule(r->rs, k);
			printf(
			    "  DIFFERENCE (%s) rule %s (%s:%u): engine %llu alerts, naive %llu\n",
			    r->name, ri->id, ri->file, ri->line, (unsigned long long)per_e[k],
			    (unsigned long long)per_n[k]);
		}
	}
	if (shown > SHOW_DIFFS)
		printf("  ... %u events differ in all\n", shown);
	struct engine_stats es;
	engine_get_stats(e, &es);
	r->state_evictions = es.state_evictions;
	r->scans_per_event = (double)es.scans / (double)c->n;
	r->evals_per_event = (double)es.evaluations / (double)c->n;
	r->regex_errors = naive_regex_errors(nv);
	ret = 0;
out_free:
	naive_free(nv);
	engine_free(e);
	free(per_e);
	free(per_n);
	free(ke.rules);
	free(kn.rules);
	return ret;
}

/* --- rulesets --- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

/* Converts @src with `vigil sigma convert` into a new directory under /tmp (in @dir). */
static int sigma_convert(const struct options *o, struct row *r, char dir[64])
{
	struct buf out;
	int ret;

	snprintf(dir, 64, "/tmp/vigil-bench-sigma.XXXXXX");
	if (!mkdtemp(dir))
		return -errno;
	char *const argv[] = {
	    (char *)o->vigil, "sigma", "convert", (char *)o->sigma_src, "-o", dir, NULL};
	buf_init(&out, 16u * 1024 * 1024);
	ret = run_capture(argv, &out);
	if (ret == 0) {
		/* the last line says "converted N of M" */
		const char *p = out.data, *last = NULL;
		for (size_t i = 0; i + 10 < out.len; i++) {
			if (memcmp(p + i, "converted ", 10) == 0 && (i == 0 || p[i - 1] == '\n'))
				last = p + i;
		}
		if (!last || sscanf(last, "converted %u of %u", &r->converted, &r->total) != 2)
			ret = -EINVAL;
	}
	buf_release(&out);
	if (ret < 0)
		fprintf(stderr, "engine_bench: %s sigma convert %s failed%s\n", o->vigil,
			o->sigma_src, ret == -EINVAL ? ": no 'converted N of M' line" : "");
	return ret;
}

/*
 * Compiles @path @runs times, keeping the median time and the last ruleset. Returns 0 or
 * -errno (the loader's message printed).
 */
static int compile_timed(struct row *r, const char *path, int runs)
{
	char err[1024] = "";
	for (int k = 0; k < runs; k++) {
		struct ruleset *rs = NULL;
		double t0 = wall_s(), c0 = process_cpu_s();
		int ret = ruleset_load_path(path, &rs, err, sizeof(err));
		double ms = (process_cpu_s() - c0) * 1000;
		r->compile_wall_ms[k] = (wall_s() - t0) * 1000;
		if (ret < 0) {
			fprintf(stderr, "engine_bench: %s: %s\n", path,
				err[0] ? err : strerror(-ret));
			return ret;
		}
		r->compile_runs_ms[k] = ms;
		ruleset_free(r->rs);
		r->rs = rs;
	}
	r->compile_ms = median(r->compile_runs_ms, runs);
	r->compile_wall = median(r->compile_wall_ms, runs);
	ruleset_get_stats(r->rs, &r->st);
	struct engine *e = NULL;
	int ret = engine_new(r->rs, NULL, &e);
	if (ret < 0) {
		fprintf(stderr, "engine_bench: %s: engine_new: %s\n", path, strerror(-ret));
		return ret;
	}
	r->engine_bytes = engine_memory(e);
	engine_free(e);
	return 0;
}

static int pin_cpu(int cpu)
{
	cpu_set_t set;
	if (cpu < 0)
		cpu = sched_getcpu();
	if (cpu < 0)
		return -errno;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	return cpu;
}

/* --- report --- */

static double mb(size_t bytes)
{
	return (double)bytes / (1024.0 * 1024.0);
}

static const char *verdict(bool ok)
{
	return ok ? "ok" : "MISSED";
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_row(const struct row *r)
{
	printf("{\"name\":\"%s\",\"source\":", r->name);
	json_string(stdout, r->source);
	if (!r->present) {
		printf(",\"skipped\":");
		json_string(stdout, r->skip_reason);
		printf("}");
		return;
	}
	if (r->total)
		printf(",\"converted\":%u,\"of\":%u", r->converted, r->total);
	printf(",\"rules\":%zu,\"programs\":%zu,\"predicates\":%zu,\"patterns\":%zu,"
	       "\"databases\":%zu,\"buckets\":%zu,\"compile_ms\":%.2f,\"compile_wall_ms\":%.2f,"
	       "\"ruleset_bytes\":%zu,"
	       "\"engine_bytes\":%zu,\"memory_mb\":%.3f,"
	       "\"engine_events_per_second\":%.0f,\"engine_wall_events_per_second\":%.0f,"
	       "\"naive_events_per_second\":%.0f,\"naive_wall_events_per_second\":%.0f,"
	       "\"engine_naive_ratio\":%.2f,\"alerts_engine\":%llu,\"alerts_naive\":%llu,"
	       "\"alerts_agree\":%s,\"rules_differing\":%zu,\"state_evictions\":%llu,"
	       "\"naive_regex_errors\":%llu,\"scans_per_event\":%.3f,"
	       "\"evaluations_per_event\":%.3f,\"test_events\":%u,\"test_alerts_engine\":%llu,"
	       "\"test_alerts_naive\":%llu,\"test_events_differing\":%u}",
	       r->st.rules, r->st.programs, r->st.predicates, r->st.patterns, r->st.databases,
	       r->st.buckets, r->compile_ms, r->compile_wall, r->st.memory_bytes, r->engine_bytes,
	       mb(r->st.memory_bytes + r->engine_bytes), r->engine.eps, r->engine.wall_eps,
	       r->naive.eps, r->naive.wall_eps, r->naive.eps > 0 ? r->engine.eps / r->naive.eps : 0,
	       (unsigned long long)r->engine_alerts, (unsigned long long)r->naive_alerts,
	       r->engine_alerts == r->naive_alerts && r->rules_differing == 0 &&
		       r->test_differing == 0
		   ? "true"
		   : "false",
	       r->rules_differing, (unsigned long long)r->state_evictions,
	       (unsigned long long)r->regex_errors, r->scans_per_event, r->evals_per_event,
	       r->test_events, (unsigned long long)r->test_alerts_engine,
	       (unsigned long long)r->test_alerts_naive, r->test_differing);
}

static void print_runs(const char *what, const double *v, int n, double scale, const char *unit)
{
	printf("    %-22s", what);
	for (int k = 0; k < n; k++)
		printf(" %.*f", scale == 1 ? 1 : 0, v[k] / scale);
	printf(" %s\n", unit);
}

int main(int argc, char **argv)
{
	struct options o;
	struct corpus c;
	struct row rows[2] = {
	    {.name = "sigma"},
	    {.name = "content"},
	};
	char sigma_dir[64] = "";
	int status = 1, cpu;

	if (parse_args(argc, argv, &o) < 0) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	bool ci = getenv("CI") && strcmp(getenv("CI"), "true") == 0;

	/* --- rulesets: convert Sigma (before pinning: the converter may use any CPU) --- */
	struct row *sg = &rows[0], *ct = &rows[1];
	ct->source = o.content;
	ct->present = true;
	if (o.sigma_rules) {
		sg->source = o.sigma_rules;
		sg->present = true;
	} else {
		struct stat st;
		sg->source = o.sigma_src;
		if (stat(o.sigma_src, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (sigma_convert(&o, sg, sigma_dir) < 0)
				goto out;
			sg->present = true;
		} else {
			snprintf(sg->skip_reason, sizeof(sg->skip_reason),
				 "%s is absent: no SigmaHQ row", o.sigma_src);
			printf("engine_bench: %s\n", sg->skip_reason);
			if (ci) {
				fprintf(stderr,
					"engine_bench: CI=true and the Sigma rules are absent\n");
				goto out;
			}
		}
	}
	const char *sigma_path = o.sigma_rules ? o.sigma_rules : sigma_dir;

	if (corpus_load(o.corpus, &c) < 0)
		goto out;
	if ((cpu = pin_cpu(o.cpu)) < 0) {
		fprintf(stderr, "engine_bench: cannot pin to one CPU: %s\n", strerror(-cpu));
		goto out_corpus;
	}
	printf("engine bench: %zu events from %s (%zu rejected, %.1f MB pre-parsed), pinned to "
	       "CPU %d of %ld, %d runs of >= %.1f s CPU time each, medians\n",
	       c.n, o.corpus, c.rejected, mb(c.bytes), cpu, sysconf(_SC_NPROCESSORS_ONLN), o.runs,
	       o.min_seconds);

	/* --- compile time and memory --- */
	if (sg->present && compile_timed(sg, sigma_path, o.compile_runs) < 0)
		goto out_corpus;
	if (compile_timed(ct, o.content, o.compile_runs) < 0)
		goto out_corpus;

	if (o.profile) {
		struct row *r = strcmp(o.profile, "sigma") == 0 ? sg : ct;
		struct engine *e = NULL;
		double wall, eps;
		uint64_t alerts;
		bool stable;
		if (!r->present || engine_new(r->rs, NULL, &e) < 0) {
			fprintf(stderr, "engine_bench: --profile %s: no such ruleset here\n",
				o.profile);
			goto out_corpus;
		}
		eps = measure_engine(e, &c, o.min_seconds, &wall, &alerts, &stable);
		printf("profile %s: engine %.0f events/s (CPU time), %.0f wall clock, %llu alerts "
		       "per pass\n",
		       r->name, eps, wall, (unsigned long long)alerts);
		engine_free(e);
		status = 0;
		goto out_corpus;
	}

	/* --- agreement: the same alerts from both, one pass each --- */
	bool agree = true;
	for (int i = 0; i < 2; i++) {
		if (!rows[i].present)
			continue;
		if (check_agreement(&rows[i], &c) < 0 || check_tests(&rows[i]) < 0)
			goto out_corpus;
		agree &= rows[i].engine_alerts == rows[i].naive_alerts &&
			 rows[i].rules_differing == 0 && rows[i].test_differing == 0;
	}

	/* --- throughput: runs interleaved so that drift hits all columns alike --- */
	double parse_runs[16], parse_wall[16];
	for (int k = 0; k < o.runs; k++) {
		parse_runs[k] = measure_parse(&c, o.min_seconds, &parse_wall[k]);
		for (int i = 0; i < 2; i++) {
			struct row *r = &rows[i];
			struct engine *e = NULL;
			struct naive *nv = NULL;
			char err[512];
			double wall;
			if (!r->present)
				continue;
			if (engine_new(r->rs, NULL, &e) < 0 ||
			    naive_new(r->rs, &nv, err, sizeof(err)) < 0) {
				fprintf(stderr, "engine_bench: %s: cannot set up the evaluators\n",
					r->name);
				engine_free(e);
				goto out_corpus;
			}
			r->engine.runs_eps[k] =
			    measure_engine(e, &c, o.min_seconds, &wall, &r->engine.alerts_per_pass,
					   &r->engine.stable);
			r->engine.runs_wall[k] = wall;
			r->naive.runs_eps[k] =
			    measure_naive(nv, &c, o.min_seconds, &wall, &r->naive.alerts_per_pass,
					  &r->naive.stable);
			r->naive.runs_wall[k] = wall;
			if (r->engine.alerts_per_pass != r->engine_alerts || !r->engine.stable ||
			    r->naive.alerts_per_pass != r->naive_alerts || !r->naive.stable) {
				printf("  WARNING (%s): alerts per pass changed between passes\n",
				       r->name);
				agree = false;
			}
			engine_free(e);
			naive_free(nv);
		}
	}
	double parse_eps = median(parse_runs, o.runs), parse_wall_eps = median(parse_wall, o.runs);
	for (int i = 0; i < 2; i++) {
		rows[i].engine.eps = median(rows[i].engine.runs_eps, o.runs);
		rows[i].naive.eps = median(rows[i].naive.runs_eps, o.runs);
		rows[i].engine.wall_eps = median(rows[i].engine.runs_wall, o.runs);
		rows[i].naive.wall_eps = median(rows[i].naive.runs_wall, o.runs);
	}

	/* --- the table --- */
	printf("\nevent parsing (NDJSON to events, not part of the rates below): %.0f events/s "
	       "(%.2f us/event; wall clock %.0f/s)\n",
	       parse_eps, 1e6 / parse_eps, parse_wall_eps);
	printf("\n  %-8s %5s %6s %6s %10s %9s %13s %12s %8s %17s\n", "ruleset", "rules", "preds",
	       "pats", "compile ms", "memory MB", "engine ev/s", "naive ev/s", "ratio",
	       "alerts eng/naive");
	for (int i = 0; i < 2; i++) {
		const struct row *r = &rows[i];
		if (!r->present) {
			printf("  %-8s skipped: %s\n", r->name, r->skip_reason);
			continue;
		}
		printf("  %-8s %5zu %6zu %6zu %10.1f %9.2f %13.0f %12.0f %7.1fx %8llu/%-8llu\n",
		       r->name, r->st.rules, r->st.predicates, r->st.patterns, r->compile_ms,
		       mb(r->st.memory_bytes + r->engine_bytes), r->engine.eps, r->naive.eps,
		       r->engine.eps / r->naive.eps, (unsigned long long)r->engine_alerts,
		       (unsigned long long)r->naive_alerts);
	}
	printf("\n  runs (events/s of CPU time; wall-clock medians: ");
	for (int i = 0; i < 2; i++) {
		if (rows[i].present)
			printf("%s%s engine %.0f, naive %.0f", i ? "; " : "", rows[i].name,
			       rows[i].engine.wall_eps, rows[i].naive.wall_eps);
	}
	printf(")\n");
	print_runs("parse", parse_runs, o.runs, 1, "events/s");
	for (int i = 0; i < 2; i++) {
		const struct row *r = &rows[i];
		char what[64];
		if (!r->present)
			continue;
		snprintf(what, sizeof(what), "%s engine", r->name);
		print_runs(what, r->engine.runs_eps, o.runs, 1, "events/s");
		snprintf(what, sizeof(what), "%s naive", r->name);
		print_runs(what, r->naive.runs_eps, o.runs, 1, "events/s");
		snprintf(what, sizeof(what), "%s compile", r->name);
		print_runs(what, r->compile_runs_ms, o.compile_runs, 1, "ms CPU time; wall clock");
		print_runs("", r->compile_wall_ms, o.compile_runs, 1, "ms");
		printf("    %-22s %zu bytes ruleset + %zu bytes engine; %zu programs, %zu pattern "
		       "databases, %zu buckets\n",
		       "", r->st.memory_bytes, r->engine_bytes, r->st.programs, r->st.databases,
		       r->st.buckets);
		if (r->test_items)
			printf("    %-22s rule tests: %u items, %u events: engine %llu alerts, "
			       "naive %llu, "
			       "%u events differ\n",
			       "", r->test_items, r->test_events,
			       (unsigned long long)r->test_alerts_engine,
			       (unsigned long long)r->test_alerts_naive, r->test_differing);
		printf("    %-22s per event: %.2f pattern database scans, %.2f programs evaluated "
		       "(the naive evaluator: %zu)\n",
		       "", r->scans_per_event, r->evals_per_event, r->st.programs);
		if (r->state_evictions)
			printf(
			    "    %-22s the engine evicted %llu state entries at its cap (the naive "
			    "evaluator keeps all)\n",
			    "", (unsigned long long)r->state_evictions);
		if (r->regex_errors)
			printf("    %-22s PCRE2 failed %llu matches (counted as no match)\n", "",
			       (unsigned long long)r->regex_errors);
	}
	if (sg->total)
		printf("  sigma: %s converted %u of %u rules\n", o.sigma_src, sg->converted,
		       sg->total);

	/* --- targets --- */
	char missed[3][160];
	int n_missed = 0;
	bool eps_ok = true, compile_ok = true, mem_ok = true;
	double mem_mb = 0;
	if (sg->present) {
		mem_mb = mb(sg->st.memory_bytes + sg->engine_bytes);
		eps_ok = sg->engine.eps >= TARGET_EVENTS_PER_SECOND;
		compile_ok = sg->compile_ms <= TARGET_COMPILE_MS;
		mem_ok = mem_mb <= TARGET_MEMORY_MB;
		printf("\ntargets (SigmaHQ set): events/s %.0f >= %.0f %s; compile %.1f ms <= %.0f "
		       "ms %s; memory %.2f MB <= %.0f MB %s\n",
		       sg->engine.eps, TARGET_EVENTS_PER_SECOND, verdict(eps_ok), sg->compile_ms,
		       TARGET_COMPILE_MS, verdict(compile_ok), mem_mb, TARGET_MEMORY_MB,
		       verdict(mem_ok));
		if (!eps_ok)
			snprintf(missed[n_missed++], sizeof(missed[0]),
				 "engine sigma events/s %.0f < %.0f", sg->engine.eps,
				 TARGET_EVENTS_PER_SECOND);
		if (!compile_ok)
			snprintf(missed[n_missed++], sizeof(missed[0]),
				 "engine sigma compile ms %.1f > %.0f", sg->compile_ms,
				 TARGET_COMPILE_MS);
		if (!mem_ok)
			snprintf(missed[n_missed++], sizeof(missed[0]),
				 "engine sigma memory MB %.2f > %.0f", mem_mb, TARGET_MEMORY_MB);
	} else {
		printf("\ntargets (SigmaHQ set): not measured (%s)\n", sg->skip_reason);
	}
	printf("engine and naive evaluator: %s\n",
	       agree ? "same alerts on every event" : "DIFFERENT ALERTS (a bug: see above)");

	if (o.summary) {
		FILE *f = fopen(o.summary, "we");
		if (!f) {
			fprintf(stderr, "engine_bench: %s: %s\n", o.summary, strerror(errno));
			goto out_corpus;
		}
		if (sg->present)
			fprintf(
			    f,
			    "engine: sigma %.0f ev/s (>= %.0f %s), compile %.1f ms (<= %.0f %s), "
			    "memory %.2f MB (<= %.0f %s), naive %.0f ev/s;",
			    sg->engine.eps, TARGET_EVENTS_PER_SECOND, verdict(eps_ok),
			    sg->compile_ms, TARGET_COMPILE_MS, verdict(compile_ok), mem_mb,
			    TARGET_MEMORY_MB, verdict(mem_ok), sg->naive.eps);
		else
			fprintf(f, "engine: sigma not measured;");
		fprintf(f, " content %.0f ev/s, naive %.0f ev/s; alerts %s\n", ct->engine.eps,
			ct->naive.eps, agree ? "agree" : "DIFFER");
		for (int k = 0; k < n_missed; k++)
			fprintf(f, "%s\n", missed[k]);
		if (!agree)
			fprintf(f, "engine: engine and naive evaluator raise different alerts\n");
		if (fclose(f) != 0) {
			fprintf(stderr, "engine_bench: %s: write failed\n", o.summary);
			goto out_corpus;
		}
	}

	printf("{\"bench\":\"engine\",\"corpus\":");
	json_string(stdout, o.corpus);
	printf(",\"events\":%zu,\"cpu\":%d,\"runs\":%d,\"min_seconds\":%.1f,"
	       "\"parse_events_per_second\":%.0f,\"rulesets\":[",
	       c.n, cpu, o.runs, o.min_seconds, parse_eps);
	json_row(sg);
	printf(",");
	json_row(ct);
	printf("],\"targets\":{\"events_per_second\":%.0f,\"compile_ms\":%.0f,\"memory_mb\":%.0f,"
	       "\"measured\":%s,\"met\":%s},\"alerts_agree\":%s}\n",
	       TARGET_EVENTS_PER_SECOND, TARGET_COMPILE_MS, TARGET_MEMORY_MB,
	       sg->present ? "true" : "false", sg->present && n_missed == 0 ? "true" : "false",
	       agree ? "true" : "false");
	status = agree ? 0 : 3;
out_corpus:
	corpus_free(&c);
out:
	for (int i = 0; i < 2; i++)
		ruleset_free(rows[i].rs);
	if (sigma_dir[0])
		nftw(sigma_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return status;
}
