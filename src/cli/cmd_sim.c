/*
 * vigil sim: replays a release against a simulated fleet with the real rollout controller,
 * and the same release pushed to everyone at once for comparison.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "lib/sim.h"
#include "sim_scenarios.h"

#define SIM_MAX_RUNS	10000u
#define SIM_MAX_THREADS 8u
/* Bytes of the SVG written by --plot. */
#define SIM_SVG_MAX (8u * 1024u * 1024u)

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil sim --agents N --scenario NAME|FILE [--seed S] [--plot FILE.svg]\n"
	    "                 [--baseline all-at-once] [--runs R]\n"
	    "       vigil sim --list | --show NAME\n"
	    "\n"
	    "Rolls one release out to N simulated hosts in virtual time with the rollout\n"
	    "controller vigil-server runs (rings, bake times, health gates, group policy) and\n"
	    "hosts that behave as the agent does (heartbeats with jitter, offline spells, crash\n"
	    "loops reverted by the trial counter, quarantined versions never retried).\n"
	    "Prints the controller's decisions and, as its last line, one JSON object: hosts,\n"
	    "scenario, halted, time_to_halt_s, exposed_max, exposed_max_fraction, hosts_crashed,\n"
	    "hosts_recovered_automatically, hosts_needing_manual_repair,\n"
	    "time_to_full_recovery_s, final_versions, and more (docs/ROLLOUT.md).\n"
	    "\n"
	    "  --agents N          hosts, 1 to 10000000\n"
	    "  --scenario NAME     a built-in scenario (--list), or a scenario FILE\n"
	    "  --seed S            seed of the run (default 1); same seed, same result\n"
	    "  --baseline all-at-once\n"
	    "                      the July 2024 behaviour instead: everything to everyone at\n"
	    "                      once, no gates, no local revert, no customer policy\n"
	    "  --plot FILE.svg     also run the other mode and draw exposed and crashed hosts\n"
	    "                      over time, vigil's plan beside the baseline\n"
	    "  --runs R            R runs with seeds S, S+1, ... on every CPU; the last line\n"
	    "                      sums them up (halted, completed, worst exposure)\n"
	    "  --list              the built-in scenarios\n"
	    "  --show NAME         print a built-in scenario (a template for your own)\n");
}

static const struct sim_builtin *builtin(const char *name)
{
	for (unsigned i = 0; i < sim_builtin_count; i++)
		if (strcmp(sim_builtins[i].name, name) == 0)
			return &sim_builtins[i];
	return NULL;
}

static void list_builtins(void)
{
	for (unsigned i = 0; i < sim_builtin_count; i++) {
		struct sim_scenario sc;
		char err[256];
		const char *text = sim_builtins[i].text;
		if (sim_scenario_parse(text, strlen(text), sim_builtins[i].name, &sc, err,
				       sizeof(err)))
			printf("%-16s (does not parse: %s)\n", sim_builtins[i].name, err);
		else
			printf("%-16s %s\n", sim_builtins[i].name, sc.description);
	}
}

/* Reads the scenario file @path (a regular file of at most SIM_MAX_SCENARIO_BYTES). */
static int read_scenario(const char *path, struct buf *out, char *err, size_t errlen)
{
	struct stat st;
	char chunk[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	int ret = 0;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		ret = -EINVAL;
		goto out_close;
	}
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			ret = -EIO;
			goto out_close;
		}
		if (n == 0)
			break;
		if (buf_append(out, chunk, (size_t)n)) {
			snprintf(err, errlen, "%s: larger than %u bytes", path,
				 SIM_MAX_SCENARIO_BYTES);
			ret = -E2BIG;
			goto out_close;
		}
	}
out_close:
	close(fd);
	return ret;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !*s || s[0] == '-' || s[0] == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static double peak_rss_mb(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return (double)ru.ru_maxrss / 1024.0;
}

/* --- several runs at once --- */

struct job {
	const struct sim_scenario *sc;
	struct sim_options opt;
	struct sim_result res;
	int ret;
	char err[256];
};

struct pool {
	struct job *jobs;
	size_t n;
	atomic_size_t next;
	bool keep; /* keep each result whole (else only the numbers, decisions freed) */
};

static void *worker(void *arg)
{
	struct pool *p = arg;
	size_t i;

	while ((i = atomic_fetch_add(&p->next, 1)) < p->n) {
		struct job *j = &p->jobs[i];
		j->ret = sim_run(j->sc, &j->opt, &j->res, j->err, sizeof(j->err));
		if (!p->keep) {
			buf_release(&j->res.decisions_text);
			buf_release(&j->res.decisions_json);
		}
	}
	return NULL;
}

/* Runs every job, on up to one thread per CPU. Returns 0 or the first job's error. */
static int run_jobs(struct job *jobs, size_t n, bool keep)
{
	struct pool p = {.jobs = jobs, .n = n, .keep = keep};
	pthread_t th[SIM_MAX_THREADS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t k = cpus > 0 ? (size_t)cpus : 1, started = 0;

	atomic_init(&p.next, 0);
	if (k > SIM_MAX_THREADS)
		k = SIM_MAX_THREADS;
	if (k > n)
		k = n;
	for (size_t i = 1; i < k; i++) {
		if (pthread_create(&th[i], NULL, worker, &p) != 0)
			break;
		started = i;
	}
	worker(&p);
	for (size_t i = 1; i <= started; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < n; i++)
		if (jobs[i].ret)
			return jobs[i].ret;
	return 0;
}

static int write_file(const char *path, const struct buf *b, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
	size_t off = 0;
	int ret = 0;

	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while (off < b->len) {
		ssize_t n = write(fd, b->data + off, b->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			ret = -EIO;
			break;
		}
		off += (size_t)n;
	}
	if (close(fd) < 0 && !ret) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		ret = -EIO;
	}
	return ret;
}

static void print_header(const struct sim_scenario *sc, uint64_t hosts, bool all_at_once)
{
	struct buf plan;

	buf_init(&plan, 4096);
	if (rollout_plan_text(&sc->plan, &plan))
		buf_reset(&plan);
	printf("sim: scenario %s: %s\n", sc->name, sc->description[0] ? sc->description : "-");
	if (all_at_once)
		printf("sim: %" PRIu64 " hosts, all at once: one step to every host, no gates, no "
		       "local revert\n",
		       hosts);
	else
		printf("sim: %" PRIu64 " hosts, plan %s, heartbeat %u s\n", hosts,
		       plan.data ? plan.data : "?", sc->plan.heartbeat_s);
	buf_release(&plan);
}

static int run_many(const struct sim_scenario *sc, const struct sim_options *base, uint64_t runs)
{
	struct job *jobs = calloc(runs, sizeof(*jobs));
	struct timespec t0;
	uint64_t halted = 0, completed = 0, manual = 0, violations = 0, after_halt = 0;
	int64_t worst_complete = -1, worst_halt = -1;
	double worst_exposed = 0;
	int ret;

	if (!jobs) {
		fprintf(stderr, "vigil sim: out of memory\n");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint64_t i = 0; i < runs; i++) {
		jobs[i].sc = sc;
		jobs[i].opt = *base;
		jobs[i].opt.seed = base->seed + i;
	}
	ret = run_jobs(jobs, runs, false);
	if (ret) {
		for (uint64_t i = 0; i < runs; i++)
			if (jobs[i].ret) {
				fprintf(stderr, "vigil sim: %s\n", jobs[i].err);
				break;
			}
		goto out;
	}
	print_header(sc, base->hosts, base->all_at_once);
	for (uint64_t i = 0; i < runs; i++) {
		const struct sim_result *r = &jobs[i].res;
		double frac = (double)r->exposed_max / (double)r->hosts;
		printf("run seed %" PRIu64 ": %s", r->seed, r->halted ? "halted" : "not halted");
		if (r->halted)
			printf(" after %" PRId64 " s (gate %s)", r->time_to_halt_s,
			       r->halt_gate >= 0
				   ? rollout_gate_name((enum rollout_gate)r->halt_gate)
				   : "operator");
		if (r->completed)
			printf(", complete after %" PRId64 " s", r->time_to_complete_s);
		printf(", exposed at most %" PRIu64 ", manual repair %" PRIu64 "\n", r->exposed_max,
		       r->manual_repair);
		halted += r->halted;
		completed += r->completed;
		manual += r->manual_repair;
		violations += r->policy_violations;
		after_halt += r->away_back_after_halt_activated;
		if (r->completed && r->time_to_complete_s > worst_complete)
			worst_complete = r->time_to_complete_s;
		if (r->halted && r->time_to_halt_s > worst_halt)
			worst_halt = r->time_to_halt_s;
		if (frac > worst_exposed)
			worst_exposed = frac;
	}
	printf("sim: %" PRIu64 " runs in %.2f s wall, peak RSS %.0f MB\n", runs, seconds_since(&t0),
	       peak_rss_mb());
	printf("{\"runs\":%" PRIu64 ",\"hosts\":%" PRIu64 ",\"scenario\":\"%s\",\"mode\":\"%s\","
	       "\"first_seed\":%" PRIu64 ",\"halted\":%" PRIu64 ",\"completed\":%" PRIu64
	       ",\"time_to_complete_s_max\":",
	       runs, base->hosts, sc->name, base->all_at_once ? "all-at-once" : "vigil", base->seed,
	       halted, completed);
	if (worst_complete >= 0)
		printf("%" PRId64, worst_complete);
	else
		printf("null");
	printf(",\"time_to_halt_s_max\":");
	if (worst_halt >= 0)
		printf("%" PRId64, worst_halt);
	else
		printf("null");
	printf(",\"nominal_plan_s\":%" PRIu64 ",\"exposed_max_fraction_max\":%.6g"
	       ",\"hosts_needing_manual_repair\":%" PRIu64 ",\"policy_violations\":%" PRIu64
	       ",\"away_back_after_halt_activated\":%" PRIu64 "}\n",
	       rollout_plan_nominal_s(&sc->plan), worst_exposed, manual, violations, after_halt);
out:
	for (uint64_t i = 0; i < runs; i++)
		sim_result_free(&jobs[i].res);
	free(jobs);
	return ret ? 1 : 0;
}

static int run_one(const struct sim_scenario *sc, const struct sim_options *opt,
		   const char *plot_path)
{
	struct job jobs[2];
	struct timespec t0;
	struct buf line, svg;
	size_t n = plot_path ? 2 : 1;
	int ret, status = 1;
	char err[256];

	memset(jobs, 0, sizeof(jobs));
	buf_init(&line, 4u << 20);
	buf_init(&svg, SIM_SVG_MAX);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < n; i++) {
		jobs[i].sc = sc;
		jobs[i].opt = *opt;
		if (plot_path)
			jobs[i].opt.sample_s = 1; /* the plot keeps a point per column */
	}
	/* with --plot the other mode runs beside it */
	if (plot_path)
		jobs[1].opt.all_at_once = !opt->all_at_once;
	ret = run_jobs(jobs, n, true);
	if (ret) {
		for (size_t i = 0; i < n; i++)
			if (jobs[i].ret) {
				fprintf(stderr, "vigil sim: %s\n", jobs[i].err);
				break;
			}
		goto out;
	}
	double wall = seconds_since(&t0);
	const struct sim_result *res = &jobs[0].res;

	print_header(sc, opt->hosts, opt->all_at_once);
	if (res->decisions_text.data)
		fputs(res->decisions_text.data, stdout);
	if (plot_path) {
		const struct sim_result *vigil = opt->all_at_once ? &jobs[1].res : &jobs[0].res;
		const struct sim_result *base = opt->all_at_once ? &jobs[0].res : &jobs[1].res;
		if (sim_plot_svg(vigil, base, &svg) ||
		    write_file(plot_path, &svg, err, sizeof(err))) {
			fprintf(stderr, "vigil sim: --plot: %s\n",
				svg.len ? err : "the picture is too large");
			goto out;
		}
		printf("sim: plot written to %s (vigil beside all-at-once)\n", plot_path);
	}
	printf("sim: %" PRIu64 " heartbeats in %.2f s wall%s, peak RSS %.0f MB\n", res->heartbeats,
	       wall, plot_path ? " (both modes)" : "", peak_rss_mb());
	if (sim_result_json(res, &line)) {
		fprintf(stderr, "vigil sim: out of memory\n");
		goto out;
	}
	printf("%s\n", line.data);
	status = 0;
out:
	for (size_t i = 0; i < n; i++)
		sim_result_free(&jobs[i].res);
	buf_release(&line);
	buf_release(&svg);
	return status;
}

int cmd_sim(int argc, char **argv)
{
	struct sim_options opt = {.hosts = 0, .seed = 1};
	struct sim_scenario sc;
	const char *scenario = NULL, *plot = NULL;
	uint64_t runs = 1;
	bool have_runs = false;
	struct buf text;
	char err[512];
	int status = 2;

	buf_init(&text, SIM_MAX_SCENARIO_BYTES);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			status = 0;
			goto out;
		}
		if (strcmp(a, "--list") == 0) {
			list_builtins();
			status = 0;
			goto out;
		}
		if (strcmp(a, "--show") == 0) {
			const struct sim_builtin *b = v ? builtin(v) : NULL;
			if (!b) {
				fprintf(stderr,
					"vigil sim: --show: no built-in scenario '%s' (see "
					"--list)\n",
					v ? v : "");
				goto out;
			}
			fputs(b->text, stdout);
			status = 0;
			goto out;
		}
		if (!v) {
			fprintf(stderr, "vigil sim: '%s' %s (try vigil sim --help)\n", a,
				strncmp(a, "--", 2) == 0 ? "needs a value or is unknown"
							 : "is not an option");
			goto out;
		}
		if (strcmp(a, "--agents") == 0) {
			if (parse_u64(v, 1, SIM_MAX_HOSTS, &opt.hosts)) {
				fprintf(stderr, "vigil sim: --agents: '%s' is not 1 to %llu\n", v,
					SIM_MAX_HOSTS);
				goto out;
			}
		} else if (strcmp(a, "--scenario") == 0) {
			scenario = v;
		} else if (strcmp(a, "--seed") == 0) {
			if (parse_u64(v, 0, UINT64_MAX, &opt.seed)) {
				fprintf(stderr, "vigil sim: --seed: '%s' is not a whole number\n",
					v);
				goto out;
			}
		} else if (strcmp(a, "--plot") == 0) {
			plot = v;
		} else if (strcmp(a, "--baseline") == 0) {
			if (strcmp(v, "all-at-once") != 0) {
				fprintf(stderr,
					"vigil sim: --baseline: '%s' is not a baseline (the "
					"one there is: all-at-once)\n",
					v);
				goto out;
			}
			opt.all_at_once = true;
		} else if (strcmp(a, "--runs") == 0) {
			if (parse_u64(v, 1, SIM_MAX_RUNS, &runs)) {
				fprintf(stderr, "vigil sim: --runs: '%s' is not 1 to %u\n", v,
					SIM_MAX_RUNS);
				goto out;
			}
			have_runs = true;
		} else {
			fprintf(stderr, "vigil sim: unknown option '%s' (try vigil sim --help)\n",
				a);
			goto out;
		}
		i++;
	}
	if (!opt.hosts || !scenario) {
		fprintf(stderr, "vigil sim: --agents and --scenario are required (try vigil sim "
				"--help)\n");
		goto out;
	}
	if (have_runs && plot) {
		fprintf(stderr, "vigil sim: --plot draws one run; it does not go with --runs\n");
		goto out;
	}

	const struct sim_builtin *b = builtin(scenario);
	const char *file = scenario;
	if (b) {
		if (buf_append_str(&text, b->text)) {
			fprintf(stderr, "vigil sim: out of memory\n");
			status = 1;
			goto out;
		}
		file = b->name;
	} else if (read_scenario(scenario, &text, err, sizeof(err))) {
		if (!strchr(scenario, '/') && access(scenario, F_OK) != 0) {
			fprintf(stderr,
				"vigil sim: --scenario: no built-in scenario '%s' and no such "
				"file (built-in:",
				scenario);
			for (unsigned i = 0; i < sim_builtin_count; i++)
				fprintf(stderr, " %s", sim_builtins[i].name);
			fprintf(stderr, ")\n");
		} else {
			fprintf(stderr, "vigil sim: --scenario: %s\n", err);
		}
		goto out;
	}
	if (sim_scenario_parse(text.data ? text.data : "", text.len, file, &sc, err, sizeof(err))) {
		fprintf(stderr, "vigil sim: %s\n", err);
		goto out;
	}
	status = have_runs ? run_many(&sc, &opt, runs) : run_one(&sc, &opt, plot);
out:
	buf_release(&text);
	return status;
}
