/*
 * Content activation on the agent: inbox → read → verify → version → compile → test-load →
 * trial record → swap → good, with a crash-loop revert to the last-known-good copy. The
 * engine is only touched from the main loop, so a swap falls between two events.
 */
#include "updater.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/bundle.h"
#include "../lib/engine.h"
#include "../lib/event_json.h"
#include "../lib/registry.h"
#include "agent.h"
#include "liveness.h"
#include "sandbox.h"
#include "selftest.h"
#include "state.h"

#define ERR_BYTES 1024
/* Polling interval of the main loop while an activation is in progress, in milliseconds. */
#define BUSY_POLL_MS 2
/* Largest block the allocator takes from its arenas (glibc's upper bound for it), and free
 * memory an arena keeps rather than giving it back (twice that, as glibc's own adjustment of
 * the two would set): set for the whole process by updater_open. */
#define UPDATER_MMAP_THRESHOLD (32 * 1024 * 1024)
#define UPDATER_TRIM_THRESHOLD (64 * 1024 * 1024)

enum phase { PHASE_IDLE, PHASE_COMPILING, PHASE_TESTING };

/* One activation in progress. */
struct job {
	char file[STATE_NAME_BYTES];
	struct buf data; /* the bundle's bytes, kept to store the copy */
	struct bundle *bundle;
	struct rules_source *src;
	size_t n_src;
	struct rules_cache *cache; /* the updater's, read by the compile thread */
	/* written by the compile thread, read by the main loop once done is set */
	struct ruleset *rs;
	struct engine *engine;
	int compile_ret;
	char compile_err[ERR_BYTES];
	pthread_t thread;
	bool thread_running;
	atomic_bool done;
	enum state_step step;
	uint64_t step_ns;  /* CLOCK_MONOTONIC when the current step started */
	uint64_t start_ns; /* when the read step started */
};

struct updater {
	struct agent *agent;
	struct updater_options opt;
	struct trust_root *root;
	int state_fd;
	int bundle_fd;
	int inbox_fd;
	int inotify_fd;
	struct agent_state *st;
	enum phase phase;
	struct job job;
	struct sandbox sb;
	/* databases of the loaded versions, reused by the next activation's compile */
	struct rules_cache *cache;
	uint64_t next_scan_ns;
	uint64_t next_liveness_ns;
	/* the trial of the active version in this process */
	bool trial_running;
	uint64_t trial_since_ns;
	uint64_t trial_liveness_failed; /* liveness failures when the trial began */
	struct liveness live;
	bool counted_start;	      /* this start was counted against the version on trial */
	char stuck[STATE_NAME_BYTES]; /* an inbox name that could not be removed: skipped */
	const char *loaded_name;      /* manifest name of the loaded bundle, for the test hook */
	char loaded_name_buf[BUNDLE_MAX_LABEL_BYTES + 1];
	/* reported in metric lines */
	uint64_t activated;
	uint64_t rejected;
	uint64_t last_total_us;
	bool has_last_total;
	bool reverted;
	uint64_t reverted_version;
	char revert_reason[STATE_REASON_BYTES];
	uint64_t pull_pending; /* a version the server pulled, acted on when idle; 0 none */
	uint64_t pulled;       /* versions pulled by the server that ran here */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static uint64_t seconds_ns(double s)
{
	return (uint64_t)(s * 1e9);
}

/* --- test-only hooks: never compiled into release binaries --- */

#ifdef VIGIL_TEST_HOOKS
/* Sleeps at step @step when VIGIL_TEST_PAUSE_STEP names it, so a test can kill us there. */
static void test_hook_pause(const char *step)
{
	const char *want = getenv("VIGIL_TEST_PAUSE_STEP");
	if (!want || strcmp(want, step) != 0)
		return;
	fprintf(stderr, "vigil-agent: test hook: pausing at step %s\n", step);
	fflush(stderr);
	sleep(60);
}

/*
 * Makes the test-load child misbehave as VIGIL_TEST_SANDBOX says, to show the sandbox holds:
 * "socket" opens a socket, "open" opens a file, "exec" runs a program, "hang" spins forever.
 */
static void test_hook_sandbox(void)
{
	const char *what = getenv("VIGIL_TEST_SANDBOX");
	char *const argv[] = {"/bin/true", NULL};

	if (!what)
		return;
	if (strcmp(what, "socket") == 0)
		socket(AF_INET, SOCK_STREAM, 0);
	else if (strcmp(what, "open") == 0)
		open("/etc/hostname", O_RDONLY | O_CLOEXEC);
	else if (strcmp(what, "exec") == 0)
		execv(argv[0], argv);
	else if (strcmp(what, "hang") == 0)
		for (volatile unsigned long spin = 0;; spin++)
			;
}

/* Stands in for a content defect that crashes the sensor. */
static void test_hook_crash(const char *bundle_name)
{
	if (bundle_name && strncmp(bundle_name, "crash-test", 10) == 0) {
		fprintf(stderr, "vigil-agent: test hook: crashing on bundle %s\n", bundle_name);
		fflush(stderr);
		abort();
	}
}
#else
static void test_hook_sandbox(void)
{
}

static void test_hook_pause(const char *step)
{
	(void)step;
}

static void test_hook_crash(const char *bundle_name)
{
	(void)bundle_name;
}
#endif

/* --- persisting --- */

/* Writes the state durably (a power loss keeps it). */
static void save(struct updater *u)
{
	int ret = state_save(u->state_fd, u->st, true);
	if (ret < 0)
		fprintf(stderr, "vigil-agent: state: cannot write %s/%s: %s\n", u->opt.state_dir,
			STATE_FILE, strerror(-ret));
}

/* Writes the state whole but without waiting for the directory: for step records, which a
 * power loss may take back to the previous record without harm. */
static void save_step(struct updater *u)
{
	int ret = state_save(u->state_fd, u->st, false);
	if (ret < 0)
		fprintf(stderr, "vigil-agent: state: cannot write %s/%s: %s\n", u->opt.state_dir,
			STATE_FILE, strerror(-ret));
}

static void prune(struct updater *u)
{
	int ret = state_bundle_prune(u->bundle_fd, u->st);
	if (ret < 0)
		fprintf(stderr, "vigil-agent: state: cannot prune %s/%s: %s\n", u->opt.state_dir,
			STATE_BUNDLE_DIR, strerror(-ret));
}

/* --- compiling: the bundle's files and the built-in rules --- */

/* The bundle's rule sources followed by the built-in ones, in a new array (free it). */
static int make_sources(const struct bundle *b, struct rules_source **out, size_t *n)
{
	struct rules_source *src = NULL, *all;
	size_t nb = b ? bundle_file_count(b) : 0, bytes;
	int ret;

	if (b) {
		ret = bundle_rules_sources(b, &src);
		if (ret < 0)
			return ret;
	}
	if (size_add(nb, 1, &bytes) || size_mul(bytes, sizeof(*all), &bytes)) {
		free(src);
		return -ENOMEM;
	}
	all = realloc(src, bytes);
	if (!all) {
		free(src);
		return -ENOMEM;
	}
	all[nb] = *selftest_builtin_source();
	*out = all;
	*n = nb + 1;
	return 0;
}

/*
 * Compiles @src through @cache and starts an engine on it. On failure returns -errno with @err
 * set.
 */
static int compile_sources(const struct rules_source *src, size_t n, struct rules_cache *cache,
			   struct ruleset **rs, struct engine **engine, char *err, size_t errlen)
{
	struct ruleset *r = NULL;
	int ret;

	err[0] = '\0';
	ret = ruleset_load_sources_cached(src, n, cache, &r, err, errlen);
	if (ret < 0) {
		if (!err[0])
			snprintf(err, errlen, "%s", strerror(-ret));
		return ret;
	}
	ret = engine_new(r, NULL, engine);
	if (ret < 0) {
		snprintf(err, errlen, "cannot start an engine: %s", strerror(-ret));
		ruleset_free(r);
		return ret;
	}
	*rs = r;
	return 0;
}

static void *compile_thread(void *arg)
{
	struct job *job = arg;

	job->compile_ret = compile_sources(job->src, job->n_src, job->cache, &job->rs, &job->engine,
					   job->compile_err, sizeof(job->compile_err));
	atomic_store_explicit(&job->done, true, memory_order_release);
	return NULL;
}

/* --- the live engine --- */

/*
 * Installs @rs and @engine in the agent between two events, carrying over the threshold and
 * sequence state of the rules it leaves unchanged. The ones they replace are handed back in
 * *@old_rs and *@old_engine when those are not NULL (the caller frees them once the swap is
 * timed), and freed here otherwise.
 */
static void swap_in(struct updater *u, struct ruleset *rs, struct engine *engine,
		    struct ruleset **old_rs, struct engine **old_engine)
{
	struct agent *agent = u->agent;
	struct engine_stats es;

	if (agent->engine) {
		/* thresholds and sequences under way go on for rules the swap left unchanged */
		engine_carry_state(engine, agent->engine);
		engine_get_stats(agent->engine, &es);
		agent->engine_retired.events += es.events;
		agent->engine_retired.alerts += es.alerts;
		agent->engine_retired.errors += es.errors;
		agent->engine_retired.state_evictions += es.state_evictions;
	}
	if (old_rs && old_engine) {
		*old_rs = agent->rules;
		*old_engine = agent->engine;
	} else {
		engine_free(agent->engine);
		ruleset_free(agent->rules);
	}
	agent->rules = rs;
	agent->engine = engine;
}

static void set_loaded_name(struct updater *u, const struct bundle *b)
{
	if (!b) {
		u->loaded_name = NULL;
		return;
	}
	snprintf(u->loaded_name_buf, sizeof(u->loaded_name_buf), "%s", bundle_manifest(b)->name);
	u->loaded_name = u->loaded_name_buf;
}

static bool probe(struct updater *u)
{
	bool ok = liveness_check(&u->live, u->agent->engine, real_ns());

	u->agent->engine_probe_events = u->live.probe_events;
	u->agent->engine_probe_alerts = u->live.probe_alerts;
	return ok;
}

/* Records the latest liveness result in the state (persisted when it changed). */
static void record_liveness(struct updater *u, bool force)
{
	struct agent_state *st = u->st;
	int last = u->live.last;
	int64_t at = (int64_t)(u->live.last_ns / 1000000000ull);
	bool changed = st->liveness_last != last || force || at - st->liveness_at >= 60;

	st->liveness_ok = u->live.ok;
	st->liveness_failed = u->live.failed;
	st->liveness_last = last;
	if (changed) {
		st->liveness_at = at;
		save_step(u);
	}
}

/* --- loading a held copy (at start, and on a revert) --- */

/*
 * Reads, re-verifies and compiles the held copy of @version. On success stores the ruleset,
 * engine and the bundle (for its name) and returns 0; otherwise -errno with @err set.
 */
static int load_held(struct updater *u, uint64_t version, struct ruleset **rs,
		     struct engine **engine, struct bundle **bundle, char *err, size_t errlen)
{
	struct bundle_verify_options vo = {
	    .now = now_s(), .schema_version = SCHEMA_VERSION, .agent_version = AGENT_VERSION};
	struct rules_source *src = NULL;
	struct bundle *b = NULL;
	struct buf data;
	size_t n;
	int ret;

	buf_init(&data, BUNDLE_MAX_BYTES + 1);
	ret = state_bundle_read(u->bundle_fd, version, BUNDLE_MAX_BYTES, &data);
	if (ret < 0) {
		snprintf(err, errlen, "held copy %s/%" PRIu64 ".bundle: %s", STATE_BUNDLE_DIR,
			 version, strerror(-ret));
		goto out;
	}
	ret = bundle_verify(u->root, data.data ? data.data : "", data.len, &vo, &b, err, errlen);
	if (ret < 0)
		goto out;
	if (bundle_manifest(b)->version != version) {
		snprintf(err, errlen, "held copy %" PRIu64 ".bundle holds version %" PRIu64,
			 version, bundle_manifest(b)->version);
		ret = -EINVAL;
		goto out;
	}
	ret = make_sources(b, &src, &n);
	if (ret < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	ret = compile_sources(src, n, u->cache, rs, engine, err, errlen);
	if (ret < 0)
		goto out;
	*bundle = b;
	b = NULL;
out:
	free(src);
	bundle_free(b);
	buf_release(&data);
	return ret;
}

/* The built-in rules alone: what the agent runs with no content. */
static int load_builtin(struct updater *u, struct ruleset **rs, struct engine **engine, char *err,
			size_t errlen)
{
	return compile_sources(selftest_builtin_source(), 1, u->cache, rs, engine, err, errlen);
}

/*
 * Loads the active version (or, failing that, the last-known-good one, or the built-in rules
 * alone) and installs it. Updates the state to what runs.
 */
static int load_active(struct updater *u, char *err, size_t errlen)
{
	struct agent_state *st = u->st;
	struct ruleset *rs = NULL;
	struct engine *engine = NULL;
	struct bundle *b = NULL;
	char why[ERR_BYTES], file[64];
	int ret;

	while (st->has_active) {
		ret = load_held(u, st->active, &rs, &engine, &b, why, sizeof(why));
		if (ret == 0)
			break;
		snprintf(file, sizeof(file), "%s/%" PRIu64 ".bundle", STATE_BUNDLE_DIR, st->active);
		fprintf(stderr, "vigil-agent: content version %" PRIu64 " cannot be loaded: %s\n",
			st->active, why);
		state_reject(st, file, true, st->active, "start", why, now_s());
		if (st->has_trial && st->trial_version == st->active)
			st->has_trial = false;
		if (st->has_lkg && st->lkg == st->active) {
			/* the last-known-good copy itself is unusable: the one before it */
			st->has_lkg = st->has_prev_good && st->prev_good != st->active;
			st->lkg = st->has_lkg ? st->prev_good : 0;
			st->has_prev_good = false;
		}
		if (st->has_lkg && st->lkg != st->active) {
			fprintf(stderr,
				"vigil-agent: falling back to last-known-good version %" PRIu64
				"\n",
				st->lkg);
			st->active = st->lkg;
		} else {
			st->has_active = false;
		}
	}
	if (!st->has_active) {
		ret = load_builtin(u, &rs, &engine, err, errlen);
		if (ret < 0)
			return ret;
	}
	swap_in(u, rs, engine, NULL, NULL);
	set_loaded_name(u, b);
	if (b) {
		fprintf(stderr,
			"vigil-agent: content version %" PRIu64 " (%s) loaded: %zu rules%s\n",
			st->active, bundle_manifest(b)->name, ruleset_count(rs),
			st->has_trial ? " (on trial)" : "");
	} else {
		fprintf(stderr, "vigil-agent: no content version held: running the built-in rules "
				"only\n");
	}
	bundle_free(b);
	return 0;
}

/* --- revert, promote --- */

static void report_revert(struct updater *u, uint64_t version, const char *reason)
{
	struct agent_state *st = u->st;

	u->reverted = true;
	u->reverted_version = version;
	state_copy_text(u->revert_reason, sizeof(u->revert_reason), reason, strlen(reason));
	if (st->has_lkg)
		fprintf(stderr,
			"vigil-agent: content version %" PRIu64 " quarantined (%s): "
			"reverted to last-known-good version %" PRIu64 "\n",
			version, reason, st->lkg);
	else
		fprintf(stderr,
			"vigil-agent: content version %" PRIu64 " quarantined (%s): no "
			"last-known-good version, running the built-in rules only\n",
			version, reason);
}

/* Ends the trial of the active version: quarantined with @reason, last-known-good becomes
 * active (in the state only; the caller loads it). */
static void quarantine_trial(struct updater *u, const char *reason)
{
	struct agent_state *st = u->st;
	uint64_t v = st->trial_version;

	state_quarantine(st, v, reason, now_s());
	st->crash_loop_reverts += strncmp(reason, "crash loop", 10) == 0;
	st->has_trial = false;
	st->has_active = st->has_lkg;
	st->active = st->lkg;
	u->trial_running = false;
	report_revert(u, v, reason);
}

/* Reverts a running trial (liveness lost) to last-known-good, now. */
static void revert_running(struct updater *u, const char *reason)
{
	char err[ERR_BYTES];

	quarantine_trial(u, reason);
	if (load_active(u, err, sizeof(err)) < 0)
		fprintf(stderr, "vigil-agent: cannot load the built-in rules: %s\n", err);
	u->agent->content_on_trial = false;
	save(u);
	prune(u);
}

static void promote(struct updater *u)
{
	struct agent_state *st = u->st;

	if (st->has_lkg && st->lkg != st->trial_version) {
		st->has_prev_good = true;
		st->prev_good = st->lkg;
	}
	st->has_lkg = true;
	st->lkg = st->trial_version;
	st->has_trial = false;
	u->trial_running = false;
	u->agent->content_on_trial = false;
	if (st->activation.present && st->activation.has_version &&
	    st->activation.version == st->lkg && strcmp(st->activation.result, "trial") == 0)
		snprintf(st->activation.result, sizeof(st->activation.result), "good");
	save(u);
	prune(u);
	fprintf(stderr, "vigil-agent: content version %" PRIu64 " is now last-known-good\n",
		st->lkg);
}

void updater_pull(struct updater *u, uint64_t version)
{
	if (u && version)
		u->pull_pending = version;
}

/* Forgets @version as a good version to return to. */
static void drop_good(struct agent_state *st, uint64_t version)
{
	if (st->has_prev_good && st->prev_good == version)
		st->has_prev_good = false;
	if (st->has_lkg && st->lkg == version) {
		st->has_lkg = st->has_prev_good;
		st->lkg = st->prev_good;
		st->has_prev_good = false;
	}
}

/* Acts on a release the server pulled: quarantined, and left when it runs. */
static void pull(struct updater *u)
{
	struct agent_state *st = u->st;
	uint64_t v = u->pull_pending;
	bool running = st->has_active && st->active == v;
	char err[ERR_BYTES];

	u->pull_pending = 0;
	if (!running && !(st->has_lkg && st->lkg == v) &&
	    !(st->has_prev_good && st->prev_good == v))
		return; /* never ran here, or already left: nothing to undo */
	state_quarantine(st, v, "pulled by the server", now_s());
	drop_good(st, v);
	if (!running) {
		save(u);
		prune(u);
		fprintf(stderr,
			"vigil-agent: content version %" PRIu64 " pulled by the server: "
			"quarantined\n",
			v);
		return;
	}
	if (st->has_trial && st->trial_version == v) {
		st->has_trial = false;
		u->trial_running = false;
		u->agent->content_on_trial = false;
	}
	st->has_active = st->has_lkg;
	st->active = st->lkg;
	u->pulled++;
	report_revert(u, v, "pulled by the server");
	if (load_active(u, err, sizeof(err)) < 0)
		fprintf(stderr, "vigil-agent: cannot load the built-in rules: %s\n", err);
	save(u);
	prune(u);
	u->next_liveness_ns = 0;
}

/* --- one activation --- */

static void job_free(struct job *job)
{
	if (job->thread_running) {
		pthread_join(job->thread, NULL);
		job->thread_running = false;
	}
	engine_free(job->engine);
	ruleset_free(job->rs);
	free(job->src);
	bundle_free(job->bundle);
	buf_release(&job->data);
	memset(job, 0, sizeof(*job));
}

/* Starts step @step: closes the previous step's timing, records it durably. */
static void enter_step(struct updater *u, enum state_step step)
{
	struct state_activation *a = &u->st->activation;
	struct job *job = &u->job;
	uint64_t now = mono_ns();

	if (step != STEP_read)
		a->step_us[job->step] = (int64_t)((now - job->step_ns) / 1000);
	job->step = step;
	job->step_ns = now;
	snprintf(a->step, sizeof(a->step), "%s", state_step_name(step));
	/* the swap step's record carries the trial record: that one must survive */
	if (step == STEP_swap)
		save(u);
	else
		save_step(u);
	test_hook_pause(state_step_name(step));
	job->step_ns = mono_ns(); /* a paused test hook is not the step's own time */
}

static void reject(struct updater *u, const char *reason)
{
	struct agent_state *st = u->st;
	struct state_activation *a = &st->activation;
	struct job *job = &u->job;

	a->step_us[job->step] = (int64_t)((mono_ns() - job->step_ns) / 1000);
	snprintf(a->result, sizeof(a->result), "rejected");
	state_reject(st, job->file, a->has_version, a->version, state_step_name(job->step), reason,
		     now_s());
	save(u);
	u->rejected++;
	if (a->has_version)
		fprintf(stderr,
			"vigil-agent: content %s (version %" PRIu64 ") rejected at step %s: "
			"%s\n",
			a->file, a->version, state_step_name(job->step), reason);
	else
		fprintf(stderr, "vigil-agent: content %s rejected at step %s: %s\n", a->file,
			state_step_name(job->step), reason);
	job_free(job);
	u->phase = PHASE_IDLE;
	u->next_scan_ns = 0; /* another bundle may be waiting */
}

static const char *read_error(int ret)
{
	switch (ret) {
	case -E2BIG:
		return "bundle larger than the "
		       "67108864"
		       " byte cap";
	case -ELOOP:
		return "a symbolic link (not followed)";
	case -EINVAL:
		return "not a regular file";
	case -EBUSY:
		return "the file changed while it was read";
	default:
		return strerror(-ret);
	}
}

_Static_assert(BUNDLE_MAX_BYTES == 67108864u, "read_error names the cap");

/* Steps read, verify and version, then starts the compile thread. */
static void begin(struct updater *u, const char *name)
{
	struct bundle_verify_options vo = {
	    .now = now_s(), .schema_version = SCHEMA_VERSION, .agent_version = AGENT_VERSION};
	struct agent_state *st = u->st;
	struct state_activation *a = &st->activation;
	struct job *job = &u->job;
	const struct bundle_manifest *m;
	const struct state_quarantine *q;
	char err[ERR_BYTES];
	int ret;

	memset(job, 0, sizeof(*job));
	buf_init(&job->data, BUNDLE_MAX_BYTES + 1);
	state_copy_text(job->file, sizeof(job->file), name, strlen(name));
	memset(a, 0, sizeof(*a));
	a->present = true;
	snprintf(a->file, sizeof(a->file), "%s", job->file);
	snprintf(a->result, sizeof(a->result), "in-progress");
	a->started = now_s();
	for (int i = 0; i < STEP_COUNT; i++)
		a->step_us[i] = -1;
	a->total_us = -1;
	u->phase = PHASE_COMPILING; /* busy from here on */
	job->start_ns = mono_ns();
	enter_step(u, STEP_read);

	ret = state_read_file_at(u->inbox_fd, name, BUNDLE_MAX_BYTES, &job->data);
	/* whatever the outcome, the file leaves the inbox: it is never offered twice */
	if (unlinkat(u->inbox_fd, name, 0) < 0 && errno != ENOENT) {
		fprintf(stderr, "vigil-agent: content %s: cannot remove it from the inbox: %s\n",
			job->file, strerror(errno));
		snprintf(u->stuck, sizeof(u->stuck), "%s", name);
	}
	if (ret < 0) {
		reject(u, read_error(ret));
		return;
	}

	enter_step(u, STEP_verify);
	ret = bundle_verify(u->root, job->data.data ? job->data.data : "", job->data.len, &vo,
			    &job->bundle, err, sizeof(err));
	if (ret < 0) {
		reject(u, err);
		return;
	}
	m = bundle_manifest(job->bundle);
	a->has_version = true;
	a->version = m->version;

	enter_step(u, STEP_version);
	q = state_quarantined(st, m->version);
	if (q) {
		snprintf(err, sizeof(err), "version %" PRIu64 " is quarantined (%s)", m->version,
			 q->reason);
		reject(u, err);
		return;
	}
	if (bundle_check_version(m, st->has_active, st->active, err, sizeof(err)) < 0) {
		reject(u, err);
		return;
	}

	enter_step(u, STEP_compile);
	ret = make_sources(job->bundle, &job->src, &job->n_src);
	if (ret < 0) {
		reject(u, "out of memory");
		return;
	}
	job->cache = u->cache;
	atomic_store(&job->done, false);
	ret = pthread_create(&job->thread, NULL, compile_thread, job);
	if (ret) {
		snprintf(err, sizeof(err), "cannot start the compile thread: %s", strerror(ret));
		reject(u, err);
		return;
	}
	job->thread_running = true;
}

static int test_load_check(void *ctx, struct sandbox_report *rep)
{
	struct selftest_result res;
	int ret;

	test_hook_sandbox();
	ret = selftest_run(ctx, &res, rep->reason, sizeof(rep->reason));

	rep->counters[0] = res.tests_passed;
	rep->counters[1] = res.tests_failed;
	rep->counters[2] = res.corpus_events;
	return ret;
}

static void start_test_load(struct updater *u)
{
	struct sandbox_limits lim = {
	    .cpu_seconds = UPDATER_TEST_LOAD_CPU_SECONDS,
	    .memory_bytes = UPDATER_TEST_LOAD_MEMORY,
	    .timeout_ns = seconds_ns(u->opt.test_load_timeout),
	};
	struct job *job = &u->job;
	char err[ERR_BYTES];

	pthread_join(job->thread, NULL);
	job->thread_running = false;
	if (job->compile_ret < 0) {
		reject(u, job->compile_err);
		return;
	}
	enter_step(u, STEP_test_load);
	fflush(u->agent->out); /* nothing buffered may be written twice */
	fflush(stderr);
	if (sandbox_start(&u->sb, &lim, test_load_check, job->rs, mono_ns(), err, sizeof(err)) <
	    0) {
		reject(u, err);
		return;
	}
	u->phase = PHASE_TESTING;
}

/* Steps trial and swap: the copy and the trial record made durable, then the swap. */
static void commit(struct updater *u, const struct sandbox_report *rep)
{
	struct agent_state *st = u->st;
	struct state_activation *a = &st->activation;
	struct job *job = &u->job;
	const struct bundle_manifest *m = bundle_manifest(job->bundle);
	char err[ERR_BYTES];
	int ret;

	enter_step(u, STEP_trial);
	ret = state_bundle_store(u->bundle_fd, m->version, job->data.data, job->data.len);
	if (ret < 0) {
		snprintf(err, sizeof(err), "cannot store the copy in %s/%s: %s", u->opt.state_dir,
			 STATE_BUNDLE_DIR, strerror(-ret));
		reject(u, err);
		return;
	}
	/* the trial record and the new active version in one atomic write */
	st->has_active = true;
	st->active = m->version;
	st->has_trial = true;
	st->trial_version = m->version;
	st->trial_starts_left = u->opt.trial_starts;
	st->trial_activated_at = now_s();
	enter_step(u, STEP_swap);

	struct ruleset *old_rs;
	struct engine *old_engine;
	swap_in(u, job->rs, job->engine, &old_rs, &old_engine);
	job->rs = NULL;
	job->engine = NULL;
	set_loaded_name(u, job->bundle);
	u->agent->content_on_trial = true;
	u->trial_running = true;
	u->trial_since_ns = mono_ns();
	u->trial_liveness_failed = u->live.failed;

	uint64_t now = mono_ns();
	a->step_us[STEP_swap] = (int64_t)((now - job->step_ns) / 1000);
	a->total_us = (int64_t)((now - job->start_ns) / 1000);
	/* the replaced ruleset is released after the swap: not part of it, but before the next
	 * event all the same (the engine belongs to the main loop) */
	engine_free(old_engine);
	ruleset_free(old_rs);
	snprintf(a->result, sizeof(a->result), "trial");
	u->activated++;
	u->has_last_total = true;
	u->last_total_us = (uint64_t)a->total_us;
	save(u);
	prune(u);
	fprintf(stderr,
		"vigil-agent: content version %" PRIu64 " (%s) active on trial: %zu rules, %u rule "
		"tests and %u self-test events passed; verify %.1f ms, compile %.1f ms, "
		"test-load %.1f ms, swap %.3f ms, total %.1f ms\n",
		m->version, m->name, ruleset_count(u->agent->rules), rep->counters[0],
		rep->counters[2], (double)a->step_us[STEP_verify] / 1000.0,
		(double)a->step_us[STEP_compile] / 1000.0,
		(double)a->step_us[STEP_test_load] / 1000.0, (double)a->step_us[STEP_swap] / 1000.0,
		(double)a->total_us / 1000.0);
	test_hook_crash(u->loaded_name);
	job_free(job);
	u->phase = PHASE_IDLE;
	u->next_scan_ns = 0;
	/* the live engine answers at once, not only at the next interval */
	u->next_liveness_ns = 0;
}

static void finish_test_load(struct updater *u)
{
	struct sandbox_report rep;
	char err[ERR_BYTES];
	int status;

	if (sandbox_poll(&u->sb, mono_ns(), &status, &rep, err, sizeof(err)) == 0)
		return;
	if (status < 0) {
		reject(u, err);
		return;
	}
	commit(u, &rep);
}

/* --- the inbox --- */

static bool candidate_name(const char *name)
{
	size_t len = strlen(name);
	return name[0] != '.' && !(len >= 4 && strcmp(name + len - 4, ".tmp") == 0);
}

/* The first file waiting in the inbox (by name), copied into @name; false when none. */
static bool next_in_inbox(struct updater *u, char *name, size_t size)
{
	struct dirent *de;
	bool found = false;
	DIR *d;
	int fd = openat(u->inbox_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return false;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	while ((de = readdir(d))) {
		if (!candidate_name(de->d_name) || strcmp(de->d_name, u->stuck) == 0)
			continue;
		if (de->d_type == DT_DIR)
			continue;
		if (de->d_type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(u->inbox_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    S_ISDIR(st.st_mode))
				continue;
		}
		if (strlen(de->d_name) >= size)
			continue;
		if (!found || strcmp(de->d_name, name) < 0) {
			snprintf(name, size, "%s", de->d_name);
			found = true;
		}
	}
	closedir(d);
	return found;
}

/* True when inotify reported a change (its queue is drained). */
static bool inbox_changed(struct updater *u)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool changed = false;

	if (u->inotify_fd < 0)
		return false;
	for (;;) {
		ssize_t n = read(u->inotify_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		changed = true;
	}
	return changed;
}

/* --- the main loop's turn --- */

void updater_tick(struct updater *u)
{
	uint64_t now = mono_ns();
	char name[256];

	switch (u->phase) {
	case PHASE_IDLE:
		if (u->pull_pending)
			pull(u);
		if (inbox_changed(u) || now >= u->next_scan_ns) {
			u->next_scan_ns = now + seconds_ns(UPDATER_SCAN_INTERVAL);
			if (next_in_inbox(u, name, sizeof(name)))
				begin(u, name);
		}
		break;
	case PHASE_COMPILING:
		if (atomic_load_explicit(&u->job.done, memory_order_acquire))
			start_test_load(u);
		break;
	case PHASE_TESTING:
		finish_test_load(u);
		break;
	}

	now = mono_ns();
	if (now >= u->next_liveness_ns) {
		u->next_liveness_ns = now + seconds_ns(u->opt.liveness_interval);
		bool ok = probe(u);
		record_liveness(u, !ok);
		if (!ok)
			fprintf(stderr,
				"vigil-agent: detection liveness failed: the built-in rule "
				"%s did not fire\n",
				SELFTEST_LIVENESS_RULE);
		if (!ok && u->trial_running) {
			char reason[STATE_REASON_BYTES];
			snprintf(reason, sizeof(reason),
				 "detection liveness lost on trial: %s did "
				 "not fire",
				 SELFTEST_LIVENESS_RULE);
			revert_running(u, reason);
		}
	}
	if (u->trial_running && now - u->trial_since_ns >= seconds_ns(u->opt.health_window)) {
		/* good only when liveness held throughout and holds now */
		bool ok = probe(u);
		record_liveness(u, false);
		if (ok && u->live.failed == u->trial_liveness_failed)
			promote(u);
		else
			revert_running(u, "detection liveness failed during the health window");
	}
}

bool updater_busy(const struct updater *u)
{
	return u && u->phase != PHASE_IDLE;
}

int updater_metrics(const struct updater *u, struct buf *out)
{
	const struct agent_state *st = u->st;
	int err = 0;

	err |= buf_append_str(out, ",\"content\":{\"active\":");
	err |=
	    st->has_active ? buf_printf(out, "%" PRIu64, st->active) : buf_append_str(out, "null");
	err |= buf_append_str(out, ",\"last_known_good\":");
	err |= st->has_lkg ? buf_printf(out, "%" PRIu64, st->lkg) : buf_append_str(out, "null");
	err |= buf_append_str(out, ",\"previous_good\":");
	err |= st->has_prev_good ? buf_printf(out, "%" PRIu64, st->prev_good)
				 : buf_append_str(out, "null");
	if (st->has_trial)
		err |= buf_printf(out, ",\"trial\":{\"version\":%" PRIu64 ",\"starts_left\":%u}",
				  st->trial_version, st->trial_starts_left);
	else
		err |= buf_append_str(out, ",\"trial\":null");
	err |= buf_append_str(out, ",\"quarantined\":[");
	for (size_t i = 0; i < st->n_quarantined; i++)
		err |= buf_printf(out, "%s%" PRIu64, i ? "," : "", st->quarantined[i].version);
	err |= buf_printf(out,
			  "],\"activated\":%" PRIu64 ",\"rejected\":%" PRIu64
			  ",\"crash_loop_reverts\":%" PRIu64 ",\"pulled\":%" PRIu64,
			  u->activated, u->rejected, st->crash_loop_reverts, u->pulled);
	err |= buf_printf(out, ",\"activating\":%s%s%s", u->phase != PHASE_IDLE ? "\"" : "",
			  u->phase != PHASE_IDLE ? state_step_name(u->job.step) : "null",
			  u->phase != PHASE_IDLE ? "\"" : "");
	if (u->has_last_total)
		err |= buf_printf(out, ",\"last_activation_ms\":%.3f",
				  (double)u->last_total_us / 1000.0);
	if (u->reverted) {
		err |= buf_printf(
		    out, ",\"reverted\":{\"version\":%" PRIu64 ",\"reason\":", u->reverted_version);
		err |= json_append_string(out, u->revert_reason, strlen(u->revert_reason));
		err |= buf_append_char(out, '}');
	}
	err |= buf_append_char(out, '}');
	err |= liveness_metrics(&u->live, out);
	return err ? -E2BIG : 0;
}

/* --- start and stop --- */

/* Marks an activation that a previous run did not finish. */
static void settle_interrupted(struct updater *u)
{
	struct state_activation *a = &u->st->activation;
	char reason[STATE_REASON_BYTES];

	if (!a->present || strcmp(a->result, "in-progress") != 0)
		return;
	if (strcmp(a->step, state_step_name(STEP_swap)) == 0) {
		/* the trial record was written: the new version is the active one */
		snprintf(a->result, sizeof(a->result), "trial");
		return;
	}
	snprintf(a->result, sizeof(a->result), "interrupted");
	snprintf(reason, sizeof(reason),
		 "interrupted at step %s: the agent stopped before the "
		 "activation finished",
		 a->step);
	state_reject(u->st, a->file, a->has_version, a->version, a->step, reason, now_s());
	fprintf(stderr, "vigil-agent: content %s: %s\n", a->file, reason);
}

/* Counts this start against a version on trial; reverts it when its starts are used up. */
static void count_trial_start(struct updater *u)
{
	struct agent_state *st = u->st;
	char reason[STATE_REASON_BYTES];

	if (!st->has_trial)
		return;
	if (st->trial_starts_left > 0)
		st->trial_starts_left--;
	if (st->trial_starts_left > 0) {
		u->counted_start = true;
		fprintf(stderr,
			"vigil-agent: content version %" PRIu64 " on trial: %u start%s left "
			"before it is reverted\n",
			st->trial_version, st->trial_starts_left,
			st->trial_starts_left == 1 ? "" : "s");
		return;
	}
	snprintf(reason, sizeof(reason),
		 "crash loop: %u starts without reaching good within "
		 "the %.0f s health window",
		 u->opt.trial_starts, u->opt.health_window);
	quarantine_trial(u, reason);
}

/*
 * A state file that could not be read: start from the held copies. The lowest version held
 * is the last-known-good one when there is one; it runs on trial, so a crash loop is still
 * caught. With no copy the agent runs its built-in rules until content arrives.
 */
static void recover_from_copies(struct updater *u)
{
	struct agent_state *st = u->st;
	struct dirent *de;
	bool found = false;
	uint64_t lowest = 0;
	DIR *d;
	int fd = openat(u->bundle_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(de->d_name, &end, 10);
		if (errno || end == de->d_name || strcmp(end, ".bundle") != 0 || v == 0 ||
		    v > BUNDLE_MAX_VERSION)
			continue;
		if (!found || v < lowest)
			lowest = v;
		found = true;
	}
	closedir(d);
	if (!found)
		return;
	st->has_active = true;
	st->active = lowest;
	st->has_trial = true;
	st->trial_version = lowest;
	st->trial_starts_left = u->opt.trial_starts;
	st->trial_activated_at = now_s();
	fprintf(stderr,
		"vigil-agent: state: recovered content version %" PRIu64 " from the held "
		"copies (on trial)\n",
		lowest);
}

static int open_inbox(struct updater *u, char *err, size_t errlen)
{
	const char *path = u->opt.content_dir;
	int ret;

	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		return ret;
	}
	u->inbox_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (u->inbox_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return ret;
	}
	ret = state_dir_check(u->inbox_fd, path, err, errlen);
	if (ret < 0)
		return ret;
	u->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (u->inotify_fd >= 0 &&
	    inotify_add_watch(u->inotify_fd, path, IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR) < 0) {
		close(u->inotify_fd);
		u->inotify_fd = -1;
	}
	if (u->inotify_fd < 0)
		fprintf(stderr, "vigil-agent: %s: no inotify (%s): scanning every %.1f s\n", path,
			strerror(errno), UPDATER_SCAN_INTERVAL);
	return 0;
}

int updater_open(struct agent *agent, const struct updater_options *opt, struct updater **out,
		 char *err, size_t errlen)
{
	struct updater *u = calloc(1, sizeof(*u));
	char why[ERR_BYTES];
	int ret;

	if (!u || !(u->st = calloc(1, sizeof(*u->st)))) {
		free(u);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	u->agent = agent;
	u->opt = *opt;
	u->state_fd = u->bundle_fd = u->inbox_fd = u->inotify_fd = -1;
	/* blocks up to 32 MiB from the allocator's arenas rather than from mmap, and freed memory
	 * kept there, so that the compiling threads' arenas keep the huge-page advice hsdb.c gives
	 * them and the next compile finds its memory mapped (docs/PERFORMANCE.md) */
	mallopt(M_MMAP_THRESHOLD, UPDATER_MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, UPDATER_TRIM_THRESHOLD);
	sandbox_init(&u->sb);
	state_init(u->st);
	ret = liveness_init(&u->live);
	if (ret < 0) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	ret = rules_cache_new(UPDATER_CACHE_MAX_ENTRIES, UPDATER_CACHE_MAX_BYTES, &u->cache);
	if (ret < 0) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	if (!agent->alert_scratch && !(agent->alert_scratch = event_new())) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	ret = trust_root_load(opt->root_path, &u->root, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "--root %s: %s", opt->root_path, why);
		goto out_free;
	}
	ret = state_dir_open(opt->state_dir, true, &u->state_fd, &u->bundle_fd, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "--state-dir: %s", why);
		goto out_free;
	}
	ret = open_inbox(u, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "--content-dir: %s", why);
		goto out_free;
	}
	ret = state_load(u->state_fd, true, u->st, why, sizeof(why));
	if (ret == -EBADMSG) {
		fprintf(stderr, "vigil-agent: state: %s; moved aside to %s/%s\n", why,
			opt->state_dir, STATE_CORRUPT_FILE);
		recover_from_copies(u);
	} else if (ret < 0) {
		snprintf(err, errlen, "--state-dir %s: %s", opt->state_dir, why);
		goto out_free;
	}
	settle_interrupted(u);
	count_trial_start(u);
	/* the trial counter is durable before the version on trial runs again */
	save(u);
	ret = load_active(u, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "built-in rules: %s", why);
		goto out_free;
	}
	agent->content_on_trial = u->st->has_trial;
	if (u->st->has_trial) {
		u->trial_running = true;
		u->trial_since_ns = mono_ns();
	}
	save(u);
	prune(u);
	test_hook_crash(u->loaded_name);
	/* liveness is probed at once, then every interval */
	u->next_liveness_ns = 0;
	*out = u;
	return 0;

out_free:
	updater_close(u);
	return ret;
}

void updater_stopped_cleanly(struct updater *u)
{
	struct agent_state *st;

	if (!u)
		return;
	st = u->st;
	/* a stop asked for (shutdown, restart) is not a crash: this start does not count */
	if (u->counted_start && st->has_trial && st->trial_starts_left < u->opt.trial_starts) {
		st->trial_starts_left++;
		u->counted_start = false;
		save(u);
	}
}

void updater_close(struct updater *u)
{
	if (!u)
		return;
	if (u->phase != PHASE_IDLE) {
		sandbox_kill(&u->sb);
		if (u->job.thread_running) {
			pthread_join(u->job.thread, NULL);
			u->job.thread_running = false;
		}
		reject(u, "the agent stopped before the activation finished");
	}
	job_free(&u->job);
	/* rulesets still running keep the databases they use */
	rules_cache_free(u->cache);
	liveness_release(&u->live);
	trust_root_free(u->root);
	if (u->state_fd >= 0)
		close(u->state_fd);
	if (u->bundle_fd >= 0)
		close(u->bundle_fd);
	if (u->inbox_fd >= 0)
		close(u->inbox_fd);
	if (u->inotify_fd >= 0)
		close(u->inotify_fd);
	free(u->st);
	free(u);
}

int updater_status(const char *state_dir, FILE *out, char *err, size_t errlen)
{
	struct agent_state *st = calloc(1, sizeof(*st));
	int dirfd = -1, ret;
	char why[ERR_BYTES];
	struct buf b;

	buf_init(&b, STATE_MAX_BYTES * 2);
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = state_dir_open(state_dir, false, &dirfd, NULL, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "%s", why);
		goto out;
	}
	ret = state_load(dirfd, false, st, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "%s/%s", state_dir, why);
		goto out;
	}
	ret = state_write_json(st, true, &b);
	if (ret < 0) {
		snprintf(err, errlen, "%s", strerror(-ret));
		goto out;
	}
	fprintf(out, "%.*s\n", (int)b.len, b.data);
	ret = fflush(out) == 0 ? 0 : -EIO;
	if (ret < 0)
		snprintf(err, errlen, "cannot write the status");
out:
	if (dirfd >= 0)
		close(dirfd);
	buf_release(&b);
	free(st);
	return ret;
}
