/*
 * vigil bench heartbeat: starts vigil-server on a temporary store, enrolls N simulated agents
 * and drives it over HTTP with libcurl's multi interface (each agent sends its next request
 * as soon as the previous one is answered), first heartbeats, then alert batches; ends with
 * one JSON line of throughput, latency and the server's CPU time.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "lib/buf.h"

#define BENCH_MAX_AGENTS  100000u
#define BENCH_MAX_SECONDS 3600u
/* Alerts in one uploaded batch. */
#define BENCH_ALERT_BATCH 500u
#define BENCH_REPLY_MAX	  (1u << 20)

struct sim_agent {
	char id[40];
	char auth[160]; /* "Authorization: Bearer ..." */
	char url[128];
	struct curl_slist *hdrs;
	CURL *h;
	struct buf reply;
	double sent;	  /* monotonic seconds */
	int64_t next_seq; /* alerts */
	int mode;	  /* what the handle is set up for: 0 nothing, 1 heartbeats, 2 alerts */
	struct buf body;  /* the alert batch in flight */
};

struct bench {
	unsigned n_agents;
	double seconds;
	unsigned threads;
	double rate;	/* heartbeats per second offered (0: each agent as fast as answered) */
	unsigned *idle; /* agents with no request in flight (open loop) */
	size_t n_idle;
	int64_t late; /* heartbeats due while every agent was still waiting */
	char dir[64];
	pid_t server;
	unsigned port;
	char admin[160], enroll[160];
	struct sim_agent *agents;
	double *lat; /* latencies of the heartbeat phase, seconds */
	size_t n_lat, cap_lat;
	struct buf body;
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil bench heartbeat [--agents N] [--seconds S] [--rate R] [--threads T]\n"
	    "\n"
	    "Starts vigil-server (next to this vigil) on a temporary store, enrolls N agents\n"
	    "(default 1000) and drives it over HTTP for S seconds (default 10) of heartbeats,\n"
	    "then S seconds of alert batches (%u alerts each); prints one JSON line with\n"
	    "heartbeats_per_second, p50_ms, p99_ms, alerts_per_second and the server's\n"
	    "cpu_seconds. Heartbeats go at R per second in all (open loop: each from an agent\n"
	    "with nothing in flight; \"late\" counts those due while none was free), or without\n"
	    "--rate each agent sends again as soon as it is answered. Alert batches are always\n"
	    "sent that way. T: the server's HTTP threads (default: its own default).\n",
	    BENCH_ALERT_BATCH);
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	size_t bytes;
	if (size_mul(size, n, &bytes) || buf_append(ctx, p, bytes))
		return 0;
	return bytes;
}

/* Starts the server; reads its tokens and port. Returns 0 or -1 with a message printed. */
static int start_server(struct bench *b)
{
	char exe[PATH_MAX], server[PATH_MAX + 16], data[96], threads[16];
	int out[2], err[2];
	ssize_t n;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		fprintf(stderr, "vigil bench heartbeat: cannot find this program\n");
		return -1;
	}
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	*slash = '\0';
	snprintf(server, sizeof(server), "%s/vigil-server", exe);
	if (access(server, X_OK)) {
		fprintf(stderr, "vigil bench heartbeat: %s is missing (make builds it)\n", server);
		return -1;
	}
	snprintf(data, sizeof(data), "%s/data", b->dir);
	snprintf(threads, sizeof(threads), "%u", b->threads);
	if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
		fprintf(stderr, "vigil bench heartbeat: pipe: %s\n", strerror(errno));
		return -1;
	}
	b->server = fork();
	if (b->server < 0) {
		fprintf(stderr, "vigil bench heartbeat: fork: %s\n", strerror(errno));
		return -1;
	}
	if (b->server == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		if (b->threads)
			execl(server, server, "--data", data, "--listen", "127.0.0.1:0", "--quiet",
			      "--threads", threads, (char *)NULL);
		else
			execl(server, server, "--data", data, "--listen", "127.0.0.1:0", "--quiet",
			      (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	/* stdout: the two token lines; stderr: the "listening on port N" line */
	FILE *fo = fdopen(out[0], "r"), *fe = fdopen(err[0], "r");
	char line[512];
	int got = 0;
	while (got < 2 && fo && fgets(line, sizeof(line), fo)) {
		if (sscanf(line, "admin token: %159s", b->admin) == 1)
			got++;
		else if (sscanf(line, "enrollment token: %159s", b->enroll) == 1)
			got++;
	}
	while (fe && fgets(line, sizeof(line), fe)) {
		if (sscanf(line, "vigil-server: listening on port %u", &b->port) == 1)
			break;
	}
	if (fo)
		fclose(fo);
	if (fe)
		fclose(fe);
	if (got < 2 || !b->port) {
		fprintf(stderr, "vigil bench heartbeat: vigil-server did not start\n");
		return -1;
	}
	return 0;
}

static double own_cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double server_cpu_seconds(pid_t pid)
{
	char path[64], text[2048];
	unsigned long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	char *p = strrchr(text, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int enroll_all(struct bench *b)
{
	struct buf reply, body;
	char url[128];
	int ret = -1;
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");

	buf_init(&reply, BENCH_REPLY_MAX);
	buf_init(&body, 4096);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/v1/enroll", b->port);
	for (unsigned i = 0; h && i < b->n_agents; i++) {
		struct sim_agent *a = &b->agents[i];
		json_t *j, *id, *cred;
		long status = 0;

		buf_reset(&reply);
		buf_reset(&body);
		if (buf_printf(&body, "{\"token\":\"%s\",\"hostname\":\"bench-%u\"}", b->enroll, i))
			goto out;
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)body.len);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
		if (curl_easy_perform(h) != CURLE_OK)
			goto out;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		j = status == 201 ? json_loadb(reply.data, reply.len, 0, NULL) : NULL;
		id = json_object_get(j, "agent_id");
		cred = json_object_get(j, "credential");
		if (!json_is_string(id) || !json_is_string(cred)) {
			json_decref(j);
			goto out;
		}
		snprintf(a->id, sizeof(a->id), "%s", json_string_value(id));
		snprintf(a->auth, sizeof(a->auth), "Authorization: Bearer %s",
			 json_string_value(cred));
		json_decref(j);
	}
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "vigil bench heartbeat: enrollment failed\n");
	curl_slist_free_all(hdrs);
	if (h)
		curl_easy_cleanup(h);
	buf_release(&reply);
	buf_release(&body);
	return ret;
}

/* Builds the body agent @a sends next into b->body. */
static int next_body(struct bench *b, struct sim_agent *a, bool alerts)
{
	buf_reset(&b->body);
	if (!alerts)
		return buf_printf(&b->body,
				  "{\"content_version\":1,\"sensor_version\":\"0.1.0\","
				  "\"uptime_seconds\":100,\"restarts\":0,\"crash_loop_reverts\":0,"
				  "\"liveness\":{\"ok\":1,\"failed\":0,\"last\":\"ok\"},"
				  "\"drops\":0,\"alerts\":3,\"cpu_percent\":0.5,"
				  "\"rss_bytes\":50000000}");
	int ret = buf_append_str(&b->body, "{\"records\":[");
	for (unsigned i = 0; !ret && i < BENCH_ALERT_BATCH; i++)
		ret = buf_printf(
		    &b->body,
		    "%s{\"seq\":%" PRId64 ",\"data\":{\"@timestamp\":"
		    "\"2026-01-01T00:00:00.000Z\",\"event\":{\"kind\":\"alert\"},"
		    "\"rule\":{\"id\":\"bench-rule\",\"name\":\"Bench\",\"level\":\"low\"},"
		    "\"process\":{\"pid\":%u,\"executable\":\"/usr/bin/bench\"}}}",
		    i ? "," : "", ++a->next_seq, i);
	return ret ? ret : buf_append_str(&b->body, "]}");
}

static int submit(struct bench *b, CURLM *m, struct sim_agent *a, bool alerts)
{
	int mode = alerts ? 2 : 1;

	/* every heartbeat is the same request: the handle keeps its URL and body */
	if (a->mode != mode) {
		snprintf(a->url, sizeof(a->url), "http://127.0.0.1:%u/api/v1/agents/%s/%s", b->port,
			 a->id, alerts ? "alerts" : "heartbeat");
		curl_easy_setopt(a->h, CURLOPT_URL, a->url);
		if (!alerts) {
			if (next_body(b, a, false))
				return -1;
			curl_easy_setopt(a->h, CURLOPT_COPYPOSTFIELDS, b->body.data);
		}
		a->mode = mode;
	}
	if (alerts) {
		/* new sequence numbers each time; the handle reads the body in place */
		if (next_body(b, a, true))
			return -1;
		buf_reset(&a->body);
		if (buf_append(&a->body, b->body.data, b->body.len))
			return -1;
		curl_easy_setopt(a->h, CURLOPT_POSTFIELDSIZE, (long)a->body.len);
		curl_easy_setopt(a->h, CURLOPT_POSTFIELDS, a->body.data);
	}
	buf_reset(&a->reply);
	a->sent = mono();
	return curl_multi_add_handle(m, a->h) == CURLM_OK ? 0 : -1;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, c = *(const double *)y;
	return a < c ? -1 : a > c;
}

/*
 * Runs one phase for b->seconds; returns completed requests, or -1. Closed loop (an agent
 * sends again as soon as it is answered) unless b->rate is set for heartbeats: then requests
 * start at that rate, each from an agent with nothing in flight.
 */
static int64_t drive(struct bench *b, bool alerts, int64_t *failed)
{
	CURLM *m = curl_multi_init();
	bool paced = !alerts && b->rate > 0;
	int64_t done = 0, started = 0;
	double start, end;
	int running = 0;

	*failed = 0;
	if (!m)
		return -1;
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)b->n_agents);
	/* keep every agent's connection open between its requests, as a real agent would */
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)b->n_agents);
	b->n_idle = 0;
	for (unsigned i = 0; i < b->n_agents; i++) {
		if (paced)
			b->idle[b->n_idle++] = i;
		else if (submit(b, m, &b->agents[i], alerts))
			return -1;
	}
	start = mono();
	end = start + b->seconds;
	for (;;) {
		CURLMsg *msg;
		int left;
		double now = mono();

		if (paced && now < end) {
			int64_t due = (int64_t)((now - start) * b->rate);
			while (started < due) {
				if (b->n_idle == 0) {
					b->late += due - started;
					started = due;
					break;
				}
				if (submit(b, m, &b->agents[b->idle[--b->n_idle]], false))
					return -1;
				started++;
			}
		}
		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &left))) {
			struct sim_agent *a = NULL;
			long status = 0;
			now = mono();
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&a);
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			curl_multi_remove_handle(m, msg->easy_handle);
			if (msg->data.result == CURLE_OK && status == 200) {
				done++;
				if (!alerts && b->n_lat < b->cap_lat)
					b->lat[b->n_lat++] = now - a->sent;
			} else {
				(*failed)++;
			}
			if (paced)
				b->idle[b->n_idle++] = (unsigned)(a - b->agents);
			else if (now < end && submit(b, m, a, alerts))
				return -1;
		}
		if (mono() >= end && running == 0)
			break;
		curl_multi_poll(m, NULL, 0, paced ? 1 : 50, NULL);
	}
	curl_multi_cleanup(m);
	return done;
}

int cmd_bench(int argc, char **argv)
{
	struct bench b;
	unsigned long long v;
	int status = 1;

	if (argc < 2 || strcmp(argv[1], "heartbeat") != 0) {
		if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
			usage(stdout);
			return 0;
		}
		fprintf(stderr, "vigil bench: want heartbeat (try vigil bench heartbeat --help)\n");
		return 2;
	}
	memset(&b, 0, sizeof(b));
	b.n_agents = 1000;
	b.seconds = 10;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		char *end;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc || (strcmp(a, "--agents") && strcmp(a, "--seconds") &&
				      strcmp(a, "--threads") && strcmp(a, "--rate"))) {
			fprintf(stderr, "vigil bench heartbeat: bad argument '%s' (try --help)\n",
				a);
			return 2;
		}
		errno = 0;
		v = strtoull(argv[++i], &end, 10);
		if (errno || *end || end == argv[i] || v < 1 ||
		    v > (a[2] == 'a'   ? BENCH_MAX_AGENTS
			 : a[2] == 's' ? BENCH_MAX_SECONDS
			 : a[2] == 'r' ? 10000000
				       : 256)) {
			fprintf(stderr, "vigil bench heartbeat: %s out of range (try --help)\n", a);
			return 2;
		}
		if (a[2] == 'a')
			b.n_agents = (unsigned)v;
		else if (a[2] == 's')
			b.seconds = (double)v;
		else if (a[2] == 'r')
			b.rate = (double)v;
		else
			b.threads = (unsigned)v;
	}
	snprintf(b.dir, sizeof(b.dir), "/tmp/vigil-bench-XXXXXX");
	if (!mkdtemp(b.dir)) {
		fprintf(stderr, "vigil bench heartbeat: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	buf_init(&b.body, 1u << 20);
	b.agents = calloc(b.n_agents, sizeof(*b.agents));
	b.idle = calloc(b.n_agents, sizeof(*b.idle));
	b.cap_lat = 5000000;
	b.lat = malloc(b.cap_lat * sizeof(*b.lat));
	if (!b.agents || !b.idle || !b.lat || start_server(&b) || enroll_all(&b))
		goto out;
	for (unsigned i = 0; i < b.n_agents; i++) {
		struct sim_agent *a = &b.agents[i];
		a->h = curl_easy_init();
		a->hdrs = curl_slist_append(NULL, a->auth);
		a->hdrs = curl_slist_append(a->hdrs, "Content-Type: application/json");
		a->hdrs = curl_slist_append(a->hdrs, "Expect:");
		buf_init(&a->reply, BENCH_REPLY_MAX);
		buf_init(&a->body, 1u << 20);
		if (!a->h || !a->hdrs)
			goto out;
		curl_easy_setopt(a->h, CURLOPT_HTTPHEADER, a->hdrs);
		curl_easy_setopt(a->h, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(a->h, CURLOPT_WRITEDATA, &a->reply);
		curl_easy_setopt(a->h, CURLOPT_PRIVATE, (char *)a);
		curl_easy_setopt(a->h, CURLOPT_NOSIGNAL, 1L);
	}
	double cpu0 = server_cpu_seconds(b.server), t0 = mono(), own0 = own_cpu_seconds();
	int64_t hb_failed, al_failed;
	int64_t hb = drive(&b, false, &hb_failed);
	double t1 = mono(), cpu1 = server_cpu_seconds(b.server), own1 = own_cpu_seconds();
	int64_t batches = drive(&b, true, &al_failed);
	double t2 = mono(), cpu2 = server_cpu_seconds(b.server);
	if (hb < 0 || batches < 0) {
		fprintf(stderr, "vigil bench heartbeat: the client failed\n");
		goto out;
	}
	qsort(b.lat, b.n_lat, sizeof(*b.lat), cmp_double);
	double p50 = b.n_lat ? b.lat[b.n_lat / 2] * 1e3 : 0;
	double p99 = b.n_lat ? b.lat[(size_t)((double)(b.n_lat - 1) * 0.99)] * 1e3 : 0;
	printf("{\"bench\":\"heartbeat\",\"agents\":%u,\"seconds\":%.0f,\"rate\":%.0f,"
	       "\"late\":%" PRId64 ",\"heartbeats\":%" PRId64
	       ",\"heartbeats_per_second\":%.0f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,"
	       "\"heartbeat_errors\":%" PRId64 ",\"alerts\":%" PRId64
	       ",\"alerts_per_second\":%.0f,\"alert_errors\":%" PRId64
	       ",\"cpu_seconds\":%.2f,\"heartbeat_cpu_seconds\":%.2f,\"alert_cpu_seconds\":%.2f,"
	       "\"client_heartbeat_cpu_seconds\":%.2f}\n",
	       b.n_agents, b.seconds, b.rate, b.late, hb, (double)hb / (t1 - t0), p50, p99,
	       hb_failed, batches * (int64_t)BENCH_ALERT_BATCH,
	       (double)batches * BENCH_ALERT_BATCH / (t2 - t1), al_failed, cpu2 - cpu0, cpu1 - cpu0,
	       cpu2 - cpu1, own1 - own0);
	status = hb > 0 && hb_failed == 0 && al_failed == 0 ? 0 : 1;
out:
	if (b.server > 0) {
		kill(b.server, SIGTERM);
		waitpid(b.server, NULL, 0);
	}
	for (unsigned i = 0; b.agents && i < b.n_agents; i++) {
		if (b.agents[i].h)
			curl_easy_cleanup(b.agents[i].h);
		curl_slist_free_all(b.agents[i].hdrs);
		buf_release(&b.agents[i].reply);
		buf_release(&b.agents[i].body);
	}
	free(b.agents);
	free(b.idle);
	free(b.lat);
	buf_release(&b.body);
	curl_global_cleanup();
	/* the temporary store goes with the run */
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "%s/data", b.dir);
	static const char *const files[] = {"vigil.db", "vigil.db-wal", "vigil.db-shm"};
	for (size_t i = 0; i < 3; i++) {
		char p[200];
		snprintf(p, sizeof(p), "%s/%s", cmd, files[i]);
		unlink(p);
	}
	char bd[200];
	snprintf(bd, sizeof(bd), "%s/bundles", cmd);
	rmdir(bd);
	rmdir(cmd);
	rmdir(b.dir);
	return status;
}
