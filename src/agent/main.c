/*
 * vigil-agent: the endpoint sensor. Picks an event source (eBPF, proc connector fallback,
 * or replay), enriches each event from the process cache and prints ECS NDJSON.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "lib/bundle.h"
#include "lib/engine.h"
#include "lib/event_json.h"
#include "lib/trust.h"
#include "proc_scan.h"
#include "response.h"
#include "selftest.h"
#include "sensor.h"
#include "updater.h"
#include "uplink.h"

/* Longest output line; an event past it is counted and replaced by a truncation notice. */
#define AGENT_LINE_MAX	   (4u * 1024u * 1024u)
#define AGENT_DURATION_MAX (366.0 * 24 * 3600)

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

#ifdef VIGIL_TEST_HOOKS
/*
 * Pauses a sensor switch for 3 s at @where, "before" or "after" the stop signals are blocked
 * for the exec, when VIGIL_TEST_SENSOR_EXEC_PAUSE names it: a test asks for a stop there.
 */
static void test_hook_exec_pause(const char *where)
{
	const char *want = getenv("VIGIL_TEST_SENSOR_EXEC_PAUSE");

	if (!want || strcmp(want, where) != 0)
		return;
	fprintf(stderr, "vigil-agent: test hook: pausing %s the exec\n", where);
	fflush(stderr);
	sleep(3);
}
#else
static void test_hook_exec_pause(const char *where)
{
	(void)where;
}
#endif

/* SIGINT and SIGTERM, the signals that ask the agent to stop */
static void stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t agent_boot_to_epoch(const struct agent *agent, uint64_t boot_ns)
{
	return agent->boot_epoch_ns + boot_ns;
}

enum agent_action agent_action_of(const char *action, size_t len)
{
	static const char *const names[] = {
#define X(name) #name,
	    AGENT_ACTIONS(X)
#undef X
	};
	for (int i = 0; i < ACT_other; i++) {
		/* counter names use '_' where actions use '-' (module_load / module-load) */
		size_t n = strlen(names[i]);
		if (n != len)
			continue;
		size_t k = 0;
		while (k < n &&
		       (names[i][k] == action[k] || (names[i][k] == '_' && action[k] == '-')))
			k++;
		if (k == n)
			return (enum agent_action)i;
	}
	return ACT_other;
}

/* Sets user.name from user.id through the agent's small cache of getpwuid_r answers. */
static void set_user_name(struct agent *agent, struct event *ev)
{
	struct user_name_slot *cache = agent->user_names;
	char idbuf[16], pwbuf[1024];
	struct passwd pw, *res = NULL;
	size_t len;
	const char *id = event_str(ev, F_USER_ID, &len);

	if (!id || event_has(ev, F_USER_NAME) || len == 0 || len >= sizeof(idbuf))
		return;
	memcpy(idbuf, id, len);
	idbuf[len] = '\0';
	char *end;
	errno = 0;
	unsigned long uid = strtoul(idbuf, &end, 10);
	if (errno || *end || uid > UINT32_MAX)
		return;
	struct user_name_slot *slot = &cache[uid % USER_NAME_CACHE];
	if (!slot->used || slot->uid != uid) {
		slot->used = true;
		slot->uid = (uint32_t)uid;
		slot->name[0] = '\0';
		if (getpwuid_r((uid_t)uid, &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res &&
		    strlen(res->pw_name) < sizeof(slot->name))
			memcpy(slot->name, res->pw_name, strlen(res->pw_name) + 1);
	}
	if (slot->name[0])
		event_set_cstr(ev, F_USER_NAME, slot->name);
}

static int write_line(struct agent *agent)
{
	if (buf_append_char(&agent->line, '\n') < 0 ||
	    fwrite(agent->line.data, 1, agent->line.len, agent->out) != agent->line.len) {
		agent->counters.write_errors++;
		return -EIO;
	}
	return 0;
}

/* The event's own time (replayed events keep theirs), or now. */
static uint64_t event_time(const struct event *ev)
{
	uint64_t ns;
	size_t len;
	const char *ts = event_str(ev, F_TIMESTAMP, &len);
	if (ts && timestamp_parse(ts, len, &ns) == 0)
		return ns;
	return clock_ns(CLOCK_REALTIME);
}

/* Prints one alert and carries out the rule's response. */
static void on_alert(void *ctx, const struct rule_info *rule, const struct event *ev)
{
	struct agent *agent = ctx;

	agent->counters.alerts++;
	if (rule->kill && agent->source_ops != &source_replay_ops) {
		/* responses stay in audit mode while new content is on trial, and while the
		 * server says the release it belongs to still bakes */
		bool audit = agent->content_on_trial || uplink_audit_mode(agent->uplink);
		enum response_result r = audit ? RESPONSE_AUDITED : response_kill(agent, rule, ev);
		agent->counters.responses[r]++;
		fprintf(stderr, "vigil-agent: rule %s: kill response %s\n", rule->id,
			response_result_name(r));
	}
	if (!agent->opt.print && !agent->uplink)
		return;
	buf_reset(&agent->line);
	int err = alert_write_json(rule, ev, agent->alert_scratch, &agent->line);
	if (err == -E2BIG)
		agent->counters.oversize_events++;
	else if (err)
		agent->counters.write_errors++;
	else {
		if (agent->uplink)
			uplink_record(agent->uplink, true, agent->line.data, agent->line.len);
		if (agent->opt.print)
			write_line(agent);
	}
}

int agent_emit(struct agent *agent, struct event *ev)
{
	char ts[40];
	int64_t pid;
	size_t len;
	int err;

	if (!event_has(ev, F_EVENT_KIND))
		event_set_cstr(ev, F_EVENT_KIND, "event");
	if (!event_has(ev, F_TIMESTAMP)) {
		format_timestamp(clock_ns(CLOCK_REALTIME), ts);
		event_set_cstr(ev, F_TIMESTAMP, ts);
	}
	if (!event_has(ev, F_EVENT_SEQUENCE))
		event_set_int(ev, F_EVENT_SEQUENCE, (int64_t)++agent->sequence);
	if (!event_has(ev, F_HOST_NAME))
		event_set_cstr(ev, F_HOST_NAME, agent->host_name);
	if (!event_has(ev, F_AGENT_ID))
		event_set_cstr(ev, F_AGENT_ID, agent->agent_id);
	if (!event_has(ev, F_AGENT_VERSION))
		event_set_cstr(ev, F_AGENT_VERSION, AGENT_VERSION);
	if (agent->cache && event_int(ev, F_PROCESS_PID, &pid) && pid > 0 && pid <= INT32_MAX)
		proc_cache_enrich(agent->cache, ev, (uint32_t)pid);
	set_user_name(agent, ev);

	const char *action = event_str(ev, F_EVENT_ACTION, &len);
	agent->counters.emitted[action ? agent_action_of(action, len) : ACT_other]++;

	err = 0;
	bool upload = uplink_wants_events(agent->uplink);
	if ((agent->opt.print && !agent->opt.alerts_only) || upload) {
		buf_reset(&agent->line);
		err = event_write_json(ev, &agent->line);
		if (err == -E2BIG)
			agent->counters.oversize_events++;
		else if (err)
			agent->counters.write_errors++;
		else {
			if (upload)
				uplink_record(agent->uplink, false, agent->line.data,
					      agent->line.len);
			if (agent->opt.print && !agent->opt.alerts_only)
				err = write_line(agent);
		}
	}
	if (agent->engine)
		engine_eval(agent->engine, ev, event_time(ev), on_alert, agent);
	return err;
}

/* Writes one event.kind "metric" line with the agent's and the source's counters. */
static void emit_metrics(struct agent *agent, bool final, uint64_t started_ns)
{
	static const char *const names[] = {
#define X(name) #name,
	    AGENT_ACTIONS(X)
#undef X
	};
	struct buf *b = &agent->line;
	struct proc_cache_stats cs = {0};
	char ts[40];
	int err = 0;

	format_timestamp(clock_ns(CLOCK_REALTIME), ts);
	buf_reset(b);
	err |= buf_printf(b,
			  "{\"@timestamp\":\"%s\",\"event\":{\"kind\":\"metric\","
			  "\"dataset\":\"vigil.agent\"},",
			  ts);
	err |= buf_append_str(b, "\"host\":{\"name\":");
	err |= json_append_string(b, agent->host_name, strlen(agent->host_name));
	err |= buf_printf(b, "},\"agent\":{\"id\":\"%s\",\"version\":\"%s\"},", agent->agent_id,
			  AGENT_VERSION);
	err |= buf_printf(b, "\"vigil\":{\"source\":\"%s\",\"final\":%s,\"uptime_s\":%.3f,",
			  agent->source_ops ? agent->source_ops->name : "none",
			  final ? "true" : "false",
			  (double)(clock_ns(CLOCK_MONOTONIC) - started_ns) / 1e9);
	err |= buf_append_str(b, "\"events\":{");
	for (int i = 0; i < ACT_COUNT; i++)
		err |= buf_printf(b, "%s\"%s\":%llu", i ? "," : "", names[i],
				  (unsigned long long)agent->counters.emitted[i]);
	err |= buf_printf(b, "},\"output\":{\"write_errors\":%llu,\"oversize_events\":%llu}",
			  (unsigned long long)agent->counters.write_errors,
			  (unsigned long long)agent->counters.oversize_events);
	if (agent->cache) {
		proc_cache_get_stats(agent->cache, &cs);
		err |= buf_printf(b,
				  ",\"cache\":{\"entries\":%zu,\"max\":%zu,\"string_bytes\":%zu,"
				  "\"max_bytes\":%zu,\"evictions\":%llu,"
				  "\"reaped\":%llu,\"pid_reuse\":%llu,\"misses\":%llu}",
				  cs.entries, cs.max_entries, cs.string_bytes, cs.max_bytes,
				  (unsigned long long)cs.evictions, (unsigned long long)cs.reaped,
				  (unsigned long long)cs.pid_reuse, (unsigned long long)cs.misses);
	}
	if (agent->engine) {
		struct engine_stats es;
		engine_get_stats(agent->engine, &es);
		/* cumulative over activations; the agent's own liveness probes are not events */
		es.events += agent->engine_retired.events - agent->engine_probe_events;
		es.alerts += agent->engine_retired.alerts - agent->engine_probe_alerts;
		es.errors += agent->engine_retired.errors;
		es.state_evictions += agent->engine_retired.state_evictions;
		err |= buf_printf(
		    b,
		    ",\"engine\":{\"rules\":%zu,\"events\":%llu,\"alerts\":%llu,"
		    "\"state_entries\":%llu,\"state_evictions\":%llu,\"errors\":%llu}",
		    ruleset_count(agent->rules), (unsigned long long)es.events,
		    (unsigned long long)es.alerts, (unsigned long long)es.state_entries,
		    (unsigned long long)es.state_evictions, (unsigned long long)es.errors);
		err |= buf_printf(b,
				  ",\"responses\":{\"killed\":%llu,\"audited\":%llu,"
				  "\"refused\":%llu,\"gone\":%llu,\"failed\":%llu}",
				  (unsigned long long)agent->counters.responses[RESPONSE_KILLED],
				  (unsigned long long)agent->counters.responses[RESPONSE_AUDITED],
				  (unsigned long long)agent->counters.responses[RESPONSE_REFUSED],
				  (unsigned long long)agent->counters.responses[RESPONSE_GONE],
				  (unsigned long long)agent->counters.responses[RESPONSE_FAILED]);
	}
	if (agent->updater)
		err |= updater_metrics(agent->updater, b);
	if (agent->sensor)
		err |= sensor_metrics(agent->sensor, b);
	if (agent->uplink)
		err |= uplink_metrics(agent->uplink, b);
	if (agent->source && agent->source_ops->metrics)
		err |= agent->source_ops->metrics(agent->source, b);
	err |= buf_append_str(b, "}}");
	if (err) {
		agent->counters.write_errors++;
		return;
	}
	if (agent->opt.print) {
		write_line(agent);
		fflush(agent->out);
	}
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil-agent --print [--duration SECONDS] [--source bpf|proc|replay:FILE]\n"
	    "                   [--rules PATH | --root FILE --state-dir DIR --content-dir DIR]\n"
	    "       vigil-agent --status --state-dir DIR\n"
	    "\n"
	    "  --print                 write every event as ECS NDJSON to stdout\n"
	    "  --duration SECONDS      stop after this long (default: until SIGINT/SIGTERM)\n"
	    "  --source NAME           bpf (eBPF), proc (netlink proc connector) or\n"
	    "                          replay:FILE (the agent's own NDJSON); default: bpf,\n"
	    "                          falling back to proc when eBPF cannot load\n"
	    "  --rules PATH            evaluate the rules in PATH (a directory, a rules file,\n"
	    "                          or a signed bundle verified against --root) and\n"
	    "                          print their alerts after the triggering event\n"
	    "  --alerts-only           print alerts and metric lines only\n"
	    "  --root FILE             pinned trust root (root.json) for content bundles\n"
	    "  --state-dir DIR         persisted content state: active, last-known-good,\n"
	    "                          trial and quarantined versions, held bundle copies\n"
	    "  --content-dir DIR       inbox: a bundle renamed into it is verified, compiled,\n"
	    "                          test-loaded and activated (needs --root, --state-dir)\n"
	    "  --health-window SEC     seconds on trial before content becomes\n"
	    "                          last-known-good (default 600)\n"
	    "  --trial-starts N        starts on trial before a crash loop reverts it\n"
	    "                          (default 3)\n"
	    "  --liveness-interval SEC seconds between detection liveness probes (default 60)\n"
	    "  --test-load-timeout SEC wall-clock limit of the sandboxed test-load (default 30)\n"
	    "  --status                print the state of --state-dir as JSON and exit\n"
	    "  --self-test             compile the built-in rules, run the self-test corpus,\n"
	    "                          print this build's report and exit (sensor updates)\n"
	    "  --server URL            report to vigil-server: enroll, heartbeat, fetch content\n"
	    "                          into --content-dir, upload alerts (needs --state-dir)\n"
	    "  --enroll-token-file F   enrollment token for the first start with --server\n"
	    "  --cacert FILE           CA certificates for an https --server\n"
	    "  --spool-max BYTES       alerts (and events) kept for the server while it is away\n"
	    "                          (default 64 MiB each; the oldest go first, counted)\n"
	    "  --upload-events         upload every event too, not only alerts\n"
	    "  --response-audit        report kill responses instead of killing\n"
	    "  --metric-interval SEC   seconds between metric lines (default 60)\n"
	    "  --cache-max N           process cache entries (default %u)\n"
	    "  --version               print the version\n"
	    "  --help                  this text\n",
	    PROC_CACHE_DEFAULT_MAX);
}

/* Parses a non-negative number of seconds no larger than @max; returns 0 or -EINVAL. */
static int parse_seconds(const char *s, double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < 0 || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_options(int argc, char **argv, struct agent_options *opt)
{
	enum {
		OPT_METRIC_INTERVAL = 256,
		OPT_CACHE_MAX,
		OPT_RULES,
		OPT_ALERTS_ONLY,
		OPT_RESPONSE_AUDIT,
		OPT_ROOT,
		OPT_STATE_DIR,
		OPT_CONTENT_DIR,
		OPT_HEALTH_WINDOW,
		OPT_TRIAL_STARTS,
		OPT_LIVENESS_INTERVAL,
		OPT_TEST_LOAD_TIMEOUT,
		OPT_STATUS,
		OPT_SERVER,
		OPT_ENROLL_TOKEN_FILE,
		OPT_CACERT,
		OPT_SPOOL_MAX,
		OPT_UPLOAD_EVENTS,
		OPT_SELF_TEST
	};
	static const struct option longopts[] = {
	    {"print", no_argument, NULL, 'p'},
	    {"duration", required_argument, NULL, 'd'},
	    {"source", required_argument, NULL, 's'},
	    {"metric-interval", required_argument, NULL, OPT_METRIC_INTERVAL},
	    {"cache-max", required_argument, NULL, OPT_CACHE_MAX},
	    {"rules", required_argument, NULL, OPT_RULES},
	    {"alerts-only", no_argument, NULL, OPT_ALERTS_ONLY},
	    {"response-audit", no_argument, NULL, OPT_RESPONSE_AUDIT},
	    {"root", required_argument, NULL, OPT_ROOT},
	    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
	    {"content-dir", required_argument, NULL, OPT_CONTENT_DIR},
	    {"health-window", required_argument, NULL, OPT_HEALTH_WINDOW},
	    {"trial-starts", required_argument, NULL, OPT_TRIAL_STARTS},
	    {"liveness-interval", required_argument, NULL, OPT_LIVENESS_INTERVAL},
	    {"test-load-timeout", required_argument, NULL, OPT_TEST_LOAD_TIMEOUT},
	    {"status", no_argument, NULL, OPT_STATUS},
	    {"server", required_argument, NULL, OPT_SERVER},
	    {"enroll-token-file", required_argument, NULL, OPT_ENROLL_TOKEN_FILE},
	    {"cacert", required_argument, NULL, OPT_CACERT},
	    {"spool-max", required_argument, NULL, OPT_SPOOL_MAX},
	    {"upload-events", no_argument, NULL, OPT_UPLOAD_EVENTS},
	    {"self-test", no_argument, NULL, OPT_SELF_TEST},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			opt->print = true;
			break;
		case 'd':
			if (parse_seconds(optarg, AGENT_DURATION_MAX, &opt->duration) < 0) {
				fprintf(stderr,
					"vigil-agent: --duration: '%s' is not a number of "
					"seconds from 0 to 31622400\n",
					optarg);
				return 2;
			}
			break;
		case 's':
			if (strcmp(optarg, "bpf") && strcmp(optarg, "proc") &&
			    (strncmp(optarg, "replay:", 7) || !optarg[7])) {
				fprintf(stderr,
					"vigil-agent: --source: '%s' is not bpf, proc or "
					"replay:FILE\n",
					optarg);
				return 2;
			}
			opt->source = optarg;
			break;
		case OPT_METRIC_INTERVAL:
			if (parse_seconds(optarg, AGENT_DURATION_MAX, &opt->metric_interval) < 0 ||
			    opt->metric_interval < 0.1) {
				fprintf(stderr,
					"vigil-agent: --metric-interval: '%s' is not a number "
					"of seconds from 0.1 to 31622400\n",
					optarg);
				return 2;
			}
			break;
		case OPT_CACHE_MAX: {
			char *end;
			errno = 0;
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 16 || v > 16u * 1024 * 1024) {
				fprintf(stderr,
					"vigil-agent: --cache-max: '%s' is not a count from 16 "
					"to 16777216\n",
					optarg);
				return 2;
			}
			opt->cache_max = v;
			break;
		}
		case OPT_RULES:
			opt->rules_path = optarg;
			break;
		case OPT_ALERTS_ONLY:
			opt->alerts_only = true;
			break;
		case OPT_RESPONSE_AUDIT:
			opt->response_audit = true;
			break;
		case OPT_ROOT:
			opt->root_path = optarg;
			break;
		case OPT_STATE_DIR:
			opt->state_dir = optarg;
			break;
		case OPT_CONTENT_DIR:
			opt->content_dir = optarg;
			break;
		case OPT_HEALTH_WINDOW:
		case OPT_LIVENESS_INTERVAL:
		case OPT_TEST_LOAD_TIMEOUT: {
			double *dst = c == OPT_HEALTH_WINDOW	   ? &opt->health_window
				      : c == OPT_LIVENESS_INTERVAL ? &opt->liveness_interval
								   : &opt->test_load_timeout;
			if (parse_seconds(optarg, AGENT_DURATION_MAX, dst) < 0 || *dst < 0.1) {
				fprintf(stderr,
					"vigil-agent: %s: '%s' is not a number of seconds "
					"from 0.1 to 31622400\n",
					argv[optind - 2], optarg);
				return 2;
			}
			break;
		}
		case OPT_TRIAL_STARTS: {
			char *end;
			errno = 0;
			unsigned long v = strtoul(optarg, &end, 10);
			if (errno || *end || end == optarg || v < 1 || v > 100) {
				fprintf(stderr,
					"vigil-agent: --trial-starts: '%s' is not a count from 1 "
					"to 100\n",
					optarg);
				return 2;
			}
			opt->trial_starts = (unsigned)v;
			break;
		}
		case OPT_STATUS:
			opt->status = true;
			break;
		case OPT_SERVER:
			opt->server = optarg;
			break;
		case OPT_ENROLL_TOKEN_FILE:
			opt->enroll_token_file = optarg;
			break;
		case OPT_CACERT:
			opt->cacert = optarg;
			break;
		case OPT_UPLOAD_EVENTS:
			opt->upload_events = true;
			break;
		case OPT_SELF_TEST:
			opt->self_test = true;
			break;
		case OPT_SPOOL_MAX: {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || v < (1ull << 21) ||
			    v > (1ull << 40)) {
				fprintf(stderr,
					"vigil-agent: --spool-max: '%s' is not a number of "
					"bytes from 2097152 to 1099511627776\n",
					optarg);
				return 2;
			}
			opt->spool_bytes = v;
			break;
		}
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("vigil-agent %s (schema %d)\n", AGENT_VERSION, SCHEMA_VERSION);
			return 1;
		case ':':
			fprintf(stderr, "vigil-agent: %s needs a value\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "vigil-agent: unknown option '%s' (try --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vigil-agent: unexpected argument '%s' (try --help)\n",
			argv[optind]);
		return 2;
	}
	if (opt->self_test)
		return 0;
	if (opt->status) {
		if (!opt->state_dir) {
			fprintf(stderr, "vigil-agent: --status needs --state-dir\n");
			return 2;
		}
		return 0;
	}
	if (opt->content_dir && (!opt->root_path || !opt->state_dir)) {
		fprintf(stderr, "vigil-agent: --content-dir needs --root and --state-dir\n");
		return 2;
	}
	if (opt->server && !opt->state_dir) {
		fprintf(stderr, "vigil-agent: --server needs --state-dir\n");
		return 2;
	}
	if ((opt->enroll_token_file || opt->cacert || opt->spool_bytes || opt->upload_events) &&
	    !opt->server) {
		fprintf(stderr, "vigil-agent: --enroll-token-file, --cacert, --spool-max and "
				"--upload-events go with --server\n");
		return 2;
	}
	if (((opt->root_path && !opt->rules_path) || (opt->state_dir && !opt->server)) &&
	    !opt->content_dir) {
		fprintf(stderr, "vigil-agent: --root goes with --content-dir or a bundle given to "
				"--rules; --state-dir with --content-dir or --server\n");
		return 2;
	}
	if (opt->content_dir && opt->rules_path) {
		fprintf(stderr, "vigil-agent: --rules and --content-dir exclude each other\n");
		return 2;
	}
	if (opt->alerts_only && !opt->rules_path && !opt->content_dir) {
		fprintf(stderr, "vigil-agent: --alerts-only needs --rules or --content-dir\n");
		return 2;
	}
	if (!opt->print && !opt->server) {
		fprintf(stderr, "vigil-agent: nothing to do: give --print to write events to "
				"stdout, or --server\n");
		return 2;
	}
	return 0;
}

/* Reads a one-line file such as /proc/sys/kernel/random/boot_id into @out without newline. */
static void read_line_file(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "re");
	out[0] = '\0';
	if (!f)
		return;
	if (fgets(out, (int)size, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

static int agent_init(struct agent *agent)
{
	char machine_id[64];

	agent->out = stdout;
	agent->self_pid = getpid();
	buf_init(&agent->line, AGENT_LINE_MAX);
	if (gethostname(agent->host_name, sizeof(agent->host_name) - 1) < 0)
		snprintf(agent->host_name, sizeof(agent->host_name), "unknown");
	read_line_file("/proc/sys/kernel/random/boot_id", agent->boot_id, sizeof(agent->boot_id));
	read_line_file("/etc/machine-id", machine_id, sizeof(machine_id));
	/* one agent per host: the host's machine id names it until enrollment gives it an id */
	snprintf(agent->agent_id, sizeof(agent->agent_id), "%s",
		 machine_id[0] ? machine_id : agent->host_name);
	agent->boot_epoch_ns = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_BOOTTIME);
	return 0;
}

/* True when @path is a regular file that starts like a signed bundle. */
static bool is_bundle(const char *path)
{
	char magic[BUNDLE_MAGIC_BYTES];
	struct stat st;
	bool yes = false;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    read(fd, magic, sizeof(magic)) == (ssize_t)sizeof(magic))
		yes = memcmp(magic, BUNDLE_MAGIC, sizeof(magic)) == 0;
	close(fd);
	return yes;
}

/*
 * --rules FILE.bundle: the bundle verified against --root as an activation would verify it,
 * and its rules compiled with the agent's built-in ones, as they would run once activated.
 */
static int load_bundle_rules(const char *path, const char *root_path, struct ruleset **out,
			     char *err, size_t errlen)
{
	struct bundle_verify_options vo = {.now = (int64_t)time(NULL),
					   .schema_version = SCHEMA_VERSION,
					   .agent_version = AGENT_VERSION};
	struct trust_root *root = NULL;
	struct bundle *b = NULL;
	struct rules_source *src = NULL;
	struct buf data;
	char why[512];
	int ret, n = 0;

	if (!root_path) {
		snprintf(err, errlen, "%s is a signed bundle: give --root root.json to verify it",
			 path);
		return -EINVAL;
	}
	buf_init(&data, BUNDLE_MAX_BYTES + 1);
	ret = trust_root_load(root_path, &root, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "%s: %s", root_path, why);
		goto out;
	}
	ret = trust_file_read(path, BUNDLE_MAX_BYTES, &data);
	if (ret < 0) {
		snprintf(err, errlen, "%s: %s", path,
			 ret == -E2BIG ? "larger than the bundle cap" : strerror(-ret));
		goto out;
	}
	ret = bundle_verify(root, data.data ? data.data : "", data.len, &vo, &b, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		goto out;
	}
	n = bundle_rules_sources(b, &src);
	if (n < 0) {
		ret = n;
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		goto out;
	}
	size_t count = bundle_file_count(b), bytes;
	struct rules_source *all = NULL;
	if (!size_add(count, 1, &bytes) && !size_mul(bytes, sizeof(*all), &bytes))
		all = realloc(src, bytes);
	if (!all) {
		ret = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	src = all;
	src[count] = *selftest_builtin_source();
	ret = ruleset_load_sources(src, count + 1, out, why, sizeof(why));
	if (ret < 0)
		snprintf(err, errlen, "%s: %s", path, why);
out:
	free(src);
	bundle_free(b);
	trust_root_free(root);
	buf_release(&data);
	return ret;
}

/* Compiles the rules named by --rules and starts an engine over them. */
static int load_rules(struct agent *agent)
{
	char err[1024];
	int ret = is_bundle(agent->opt.rules_path)
		      ? load_bundle_rules(agent->opt.rules_path, agent->opt.root_path,
					  &agent->rules, err, sizeof(err))
		      : ruleset_load_path(agent->opt.rules_path, &agent->rules, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "vigil-agent: rules: %s\n", err);
		return ret;
	}
	ret = engine_new(agent->rules, NULL, &agent->engine);
	agent->alert_scratch = event_new();
	if (ret < 0 || !agent->alert_scratch) {
		fprintf(stderr, "vigil-agent: rule engine: %s\n",
			strerror(ret < 0 ? -ret : ENOMEM));
		return ret < 0 ? ret : -ENOMEM;
	}
	fprintf(stderr, "vigil-agent: %zu rules loaded from %s\n", ruleset_count(agent->rules),
		agent->opt.rules_path);
	return 0;
}

/* Starts content activation from the inbox, with the state and trust root the options name. */
static int start_updater(struct agent *agent)
{
	struct updater_options uo = {
	    .root_path = agent->opt.root_path,
	    .state_dir = agent->opt.state_dir,
	    .content_dir = agent->opt.content_dir,
	    .health_window = agent->opt.health_window,
	    .trial_starts = agent->opt.trial_starts,
	    .liveness_interval = agent->opt.liveness_interval,
	    .test_load_timeout = agent->opt.test_load_timeout,
	};
	char err[1024];
	int ret = updater_open(agent, &uo, &agent->updater, err, sizeof(err));

	if (ret < 0)
		fprintf(stderr, "vigil-agent: content: %s\n", err);
	return ret;
}

/* Starts the uplink to the server the options name. */
static int start_uplink(struct agent *agent)
{
	struct uplink_options uo = {
	    .server = agent->opt.server,
	    .enroll_token_file = agent->opt.enroll_token_file,
	    .cacert = agent->opt.cacert,
	    .state_dir = agent->opt.state_dir,
	    .content_dir = agent->opt.content_dir,
	    .spool_bytes = agent->opt.spool_bytes,
	    .events = agent->opt.upload_events,
	};
	char err[1024];
	int ret = uplink_open(agent, &uo, &agent->uplink, err, sizeof(err));

	if (ret < 0)
		fprintf(stderr, "vigil-agent: uplink: %s\n", err);
	return ret;
}

/* Starts sensor updates: the state of the staged builds, and fetching new ones. */
static int start_sensor(struct agent *agent)
{
	struct sensor_options so = {
	    .state_dir = agent->opt.state_dir,
	    .root_path = agent->opt.root_path,
	    .server = agent->opt.server,
	    .cacert = agent->opt.cacert,
	    .trial_starts = agent->opt.trial_starts,
	    .health_window = agent->opt.health_window,
	    .self_test_timeout = agent->opt.test_load_timeout,
	};
	char err[1024];
	int ret = sensor_open(agent, &so, &agent->sensor, err, sizeof(err));

	if (ret < 0)
		fprintf(stderr, "vigil-agent: sensor: %s\n", err);
	return ret;
}

/* --status: the content state with the sensor state as its "sensor" member. */
static int print_status(const char *state_dir)
{
	char err[1024], *text = NULL;
	size_t len = 0;
	struct buf sensor;
	int ret = 1;
	FILE *mem = open_memstream(&text, &len);

	buf_init(&sensor, 1u << 20);
	if (!mem) {
		fprintf(stderr, "vigil-agent: --status: out of memory\n");
		goto out;
	}
	int e = updater_status(state_dir, mem, err, sizeof(err));
	fclose(mem);
	if (e < 0) {
		fprintf(stderr, "vigil-agent: --status: %s\n", err);
		goto out;
	}
	if (sensor_status_json(state_dir, &sensor, err, sizeof(err)) < 0) {
		fprintf(stderr, "vigil-agent: --status: %s\n", err);
		goto out;
	}
	char *end = text ? strrchr(text, '}') : NULL;
	if (!end) {
		fprintf(stderr, "vigil-agent: --status: no state\n");
		goto out;
	}
	printf("%.*s,\n  \"sensor\": %.*s\n}\n", (int)(end - text), text, (int)sensor.len,
	       sensor.data);
	ret = fflush(stdout) == 0 ? 0 : 1;
out:
	free(text);
	buf_release(&sensor);
	return ret;
}

/* Opens the source the options ask for; without one, eBPF with the proc fallback. */
static int open_source(struct agent *agent)
{
	char err[512];
	const char *want = agent->opt.source;
	int ret;

	if (want && strncmp(want, "replay:", 7) == 0) {
		agent->source_ops = &source_replay_ops;
		ret = source_replay_ops.open(agent, want + 7, &agent->source, err, sizeof(err));
		if (ret < 0) {
			fprintf(stderr, "vigil-agent: replay: %s\n", err);
			return ret;
		}
		fprintf(stderr, "vigil-agent: source replay ready\n");
		return 0;
	}

	agent->cache = proc_cache_new(agent->opt.cache_max, agent->boot_id);
	if (!agent->cache) {
		fprintf(stderr, "vigil-agent: process cache: %s\n", strerror(errno));
		return -ENOMEM;
	}
	if (!want || strcmp(want, "bpf") == 0) {
		agent->source_ops = &source_bpf_ops;
		ret = source_bpf_ops.open(agent, NULL, &agent->source, err, sizeof(err));
		if (ret == 0)
			goto seed;
		fprintf(stderr, "vigil-agent: bpf source unavailable: %s\n", err);
		if (want)
			return ret;
		fprintf(stderr, "vigil-agent: falling back to the proc connector source\n");
	}
	agent->source_ops = &source_proc_ops;
	ret = source_proc_ops.open(agent, NULL, &agent->source, err, sizeof(err));
	if (ret < 0) {
		fprintf(stderr, "vigil-agent: proc source unavailable: %s\n", err);
		return ret;
	}
seed:;
	/* seed after the source is live, so no process started in between is missed */
	uint64_t seeded = 0;
	ret = proc_scan_seed(agent->cache, &seeded);
	if (ret < 0)
		fprintf(stderr, "vigil-agent: /proc scan incomplete: %s\n", strerror(-ret));
	fprintf(stderr, "vigil-agent: source %s ready (%llu processes known)\n",
		agent->source_ops->name, (unsigned long long)seeded);
	return 0;
}

int main(int argc, char **argv)
{
	struct agent agent = {
	    .opt = {.metric_interval = 60,
		    .cache_max = PROC_CACHE_DEFAULT_MAX,
		    .health_window = UPDATER_DEFAULT_HEALTH_WINDOW,
		    .trial_starts = UPDATER_DEFAULT_TRIAL_STARTS,
		    .liveness_interval = UPDATER_DEFAULT_LIVENESS_INTERVAL,
		    .test_load_timeout = UPDATER_DEFAULT_TEST_LOAD_TIMEOUT},
	};
	struct sigaction sa = {.sa_handler = on_signal};
	bool reexec = false;
	int status = 0, ret;

	ret = parse_options(argc, argv, &agent.opt);
	if (ret)
		return ret == 1 ? 0 : ret;
	if (agent.opt.self_test)
		return sensor_self_test(stdout);
	if (agent.opt.status)
		return print_status(agent.opt.state_dir);
	if (agent.opt.state_dir) {
		/* before anything else: this start may belong to a staged sensor build */
		char err[1024];
		if (sensor_boot(agent.opt.state_dir, agent.opt.trial_starts, argv, err,
				sizeof(err)) < 0)
			fprintf(stderr, "vigil-agent: sensor: %s\n", err);
	}

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* a stop asked of the image that exec'd into this one arrives now (see the end) */
	sigset_t stops;
	stop_signals(&stops);
	sigprocmask(SIG_UNBLOCK, &stops, NULL);
	/* a large stdout buffer: events are flushed after each poll, not per line */
	static char outbuf[1 << 16];
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));

	agent_init(&agent);
	if (agent.opt.rules_path && load_rules(&agent) < 0) {
		status = 1;
		goto out_free;
	}
	if (agent.opt.content_dir && start_updater(&agent) < 0) {
		status = 1;
		goto out_free;
	}
	if (agent.opt.state_dir && start_sensor(&agent) < 0) {
		status = 1;
		goto out_free;
	}
	if (agent.opt.server && start_uplink(&agent) < 0) {
		status = 1;
		goto out_free;
	}
	if (open_source(&agent) < 0) {
		status = 1;
		goto out_free;
	}
	sensor_started(agent.sensor);

	uint64_t started = clock_ns(CLOCK_MONOTONIC);
	uint64_t next_metric = started + (uint64_t)(agent.opt.metric_interval * 1e9);
	uint64_t deadline =
	    agent.opt.duration > 0 ? started + (uint64_t)(agent.opt.duration * 1e9) : UINT64_MAX;
	while (!stop_requested) {
		/* an activation in progress is advanced between polls: poll briefly then */
		ret = agent.source_ops->poll(agent.source, updater_busy(agent.updater) ? 2 : 100);
		fflush(agent.out);
		if (ret == -ENODATA)
			break;
		if (ret < 0 && ret != -EINTR) {
			fprintf(stderr, "vigil-agent: source %s failed: %s\n",
				agent.source_ops->name, strerror(-ret));
			status = 1;
			break;
		}
		if (agent.updater && agent.uplink)
			updater_pull(agent.updater, uplink_take_pulled(agent.uplink));
		if (agent.updater)
			updater_tick(agent.updater);
		if (agent.uplink)
			uplink_publish(agent.uplink, &agent);
		sensor_tick(agent.sensor);
		if (sensor_exec_pending(agent.sensor)) {
			/* a clean stop, then the same arguments in the other build */
			reexec = true;
			break;
		}
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		if (now >= deadline)
			break;
		if (now >= next_metric) {
			emit_metrics(&agent, false, started);
			next_metric = now + (uint64_t)(agent.opt.metric_interval * 1e9);
		}
	}
	if (status == 0 && (reexec || stop_requested || clock_ns(CLOCK_MONOTONIC) >= deadline))
		updater_stopped_cleanly(agent.updater);
	if (status == 0 && !reexec && (stop_requested || clock_ns(CLOCK_MONOTONIC) >= deadline))
		sensor_stopped_cleanly(agent.sensor);
	emit_metrics(&agent, true, started);
	fflush(agent.out);
	if (agent.source_ops == &source_replay_ops && source_replay_rejected(agent.source) > 0)
		status = 1;

out_free:
	if (agent.uplink)
		uplink_publish(agent.uplink, &agent);
	uplink_close(agent.uplink);
	updater_close(agent.updater);
	if (agent.source_ops)
		agent.source_ops->close(agent.source);
	proc_cache_free(agent.cache);
	engine_free(agent.engine);
	ruleset_free(agent.rules);
	event_free(agent.alert_scratch);
	buf_release(&agent.line);
	if (reexec) {
		/* A stop asked for during the switch belongs to the build switched to: the
		 * signals stay blocked and pending over the exec, and the new image takes them
		 * once its handlers are in place. One that already arrived is raised again. */
		test_hook_exec_pause("before");
		sigprocmask(SIG_BLOCK, &stops, NULL);
		test_hook_exec_pause("after");
		if (stop_requested)
			raise(SIGTERM);
		if (sensor_exec(agent.sensor, argv) < 0)
			status = 1; /* the next start settles it from the sensor state */
		sigprocmask(SIG_UNBLOCK, &stops, NULL);
	}
	sensor_close(agent.sensor);
	return status;
}
