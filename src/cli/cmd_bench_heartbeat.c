/*
 * vigil bench heartbeat: starts vigil-server on a temporary store, enrolls N simulated agents
 * and drives it over HTTP/1.1 keep-alive connections (one per agent, all in one epoll loop),
 * first heartbeats, then alert batches; ends with one JSON line of throughput, latency and
 * the CPU time of the server and of this load generator.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
#define BENCH_REQUEST_MAX (4u << 20)
/* Seconds a phase waits for the answers still outstanding when it ends. */
#define BENCH_DRAIN_SECONDS 30.0
#define BENCH_EPOLL_EVENTS  256

/*
 * One simulated agent: its own keep-alive connection and at most one request in flight.
 * Requests are prebuilt bytes and answers are parsed just enough to check the status and
 * find their end, so the load generator costs a few system calls per request whatever the
 * number of agents.
 */
struct sim_agent {
	char id[40];
	char cred[160];
	int fd;		      /* -1: not connected */
	struct buf heartbeat; /* the whole heartbeat request, the same every time */
	struct buf batch;     /* the alert batch request in flight */
	const char *out;      /* the request being sent */
	size_t out_len, out_off;
	struct buf reply;
	bool busy;
	double sent;	  /* monotonic seconds */
	int64_t next_seq; /* alerts */
};

struct bench {
	unsigned n_agents;
	double seconds;
	unsigned threads;
	double rate;	/* heartbeats per second offered (0: each agent as fast as answered) */
	unsigned *idle; /* agents with no request in flight */
	size_t n_idle;
	unsigned *ready; /* closed loop: the idle agents sending next */
	int64_t late;	 /* heartbeats due while every agent was still waiting */
	char dir[64];
	pid_t server;
	unsigned port;
	char admin[160], enroll[160];
	struct sim_agent *agents;
	double *lat; /* latencies of the heartbeat phase, seconds */
	size_t n_lat, cap_lat;
	struct buf body;
	int ep; /* epoll */
	struct sockaddr_in addr;
	size_t busy; /* requests in flight */
	int64_t done, failed;
	bool alerts; /* the phase running */
	bool paced;
	double end;
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
	    "heartbeats_per_second, p50_ms, p99_ms, alerts_per_second, the server's\n"
	    "cpu_seconds and this load generator's own (client_*_cpu_seconds), since both\n"
	    "share the machine. Heartbeats go at R per second in all (open loop: each from an\n"
	    "agent with nothing in flight; \"late\" counts those due while none was free), or\n"
	    "without --rate each agent sends again as soon as it is answered. Alert batches are\n"
	    "always sent that way. T: the server's HTTP threads (default: its own default).\n",
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

/* CPU seconds the whole machine spent busy since boot (all CPUs, from /proc/stat), or -1. */
static double machine_cpu_seconds(void)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "re");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]);
	fclose(f);
	if (n != 8)
		return -1;
	/* user, nice, system, irq, softirq, steal: all but idle and iowait */
	return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
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
		snprintf(a->cred, sizeof(a->cred), "%s", json_string_value(cred));
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

/* Writes agent @a's next request (heartbeat or alert batch) into @out. 0 or a buf error. */
static int build_request(struct bench *b, struct sim_agent *a, bool alerts, struct buf *out)
{
	int ret = next_body(b, a, alerts);

	buf_reset(out);
	if (!ret)
		ret = buf_printf(out,
				 "POST /api/v1/agents/%s/%s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
				 "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
				 "Content-Length: %zu\r\n\r\n",
				 a->id, alerts ? "alerts" : "heartbeat", b->port, a->cred,
				 b->body.len);
	return ret ? ret : buf_append(out, b->body.data, b->body.len);
}

static void disconnect(struct bench *b, struct sim_agent *a)
{
	if (a->fd < 0)
		return;
	epoll_ctl(b->ep, EPOLL_CTL_DEL, a->fd, NULL);
	close(a->fd);
	a->fd = -1;
}

/* Opens agent @a's connection. Returns 0 or -errno. */
static int agent_connect(struct bench *b, struct sim_agent *a)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
				 .data.ptr = a};
	int one = 1, fd, ret;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* loopback: a blocking connect returns as soon as the handshake is done */
	if (connect(fd, (struct sockaddr *)&b->addr, sizeof(b->addr)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) || epoll_ctl(b->ep, EPOLL_CTL_ADD, fd, &ev)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	a->fd = fd;
	return 0;
}

/* Ends agent @a's request: @ok when answered 200. */
static void finish(struct bench *b, struct sim_agent *a, bool ok, double now);

/* Sends what is left of agent @a's request; the rest waits for EPOLLOUT. */
static void flush(struct bench *b, struct sim_agent *a)
{
	while (a->out_off < a->out_len) {
		ssize_t n = send(a->fd, a->out + a->out_off, a->out_len - a->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			disconnect(b, a);
			finish(b, a, false, mono());
			return;
		}
		a->out_off += (size_t)n;
	}
}

/*
 * Starts agent @a's next request. Returns 0, or -1 when the request cannot be built. A request
 * that fails at once is counted and the agent is idle again.
 */
static int submit(struct bench *b, struct sim_agent *a)
{
	if (b->alerts) {
		/* new sequence numbers each time */
		if (build_request(b, a, true, &a->batch))
			return -1;
		a->out = a->batch.data;
		a->out_len = a->batch.len;
	} else {
		a->out = a->heartbeat.data;
		a->out_len = a->heartbeat.len;
	}
	a->out_off = 0;
	buf_reset(&a->reply);
	a->busy = true;
	b->busy++;
	a->sent = mono();
	if (a->fd < 0 && agent_connect(b, a)) {
		finish(b, a, false, a->sent);
		return 0;
	}
	flush(b, a);
	return 0;
}

static void finish(struct bench *b, struct sim_agent *a, bool ok, double now)
{
	if (!a->busy)
		return;
	a->busy = false;
	b->busy--;
	if (ok) {
		b->done++;
		if (!b->alerts && b->n_lat < b->cap_lat)
			b->lat[b->n_lat++] = now - a->sent;
	} else {
		b->failed++;
	}
	b->idle[b->n_idle++] = (unsigned)(a - b->agents);
}

/*
 * Looks at what agent @a received: 1 when the answer is whole (its status in *@status; *@close
 * when the server closes the connection after it), 0 when more is to come, -1 when it is not
 * an HTTP/1.1 answer this client understands.
 */
static int parse_reply(const struct sim_agent *a, unsigned *status, bool *close_after)
{
	const char *p = a->reply.data, *end, *line;
	size_t head, clen = SIZE_MAX;

	if (!p)
		return 0;
	end = memmem(p, a->reply.len, "\r\n\r\n", 4);
	if (!end)
		return 0;
	head = (size_t)(end - p) + 4;
	if (a->reply.len < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
		return -1;
	*status = (unsigned)strtoul(p + 9, NULL, 10);
	*close_after = p[7] == '0';
	for (line = memchr(p, '\n', head); line && line + 1 < end;
	     line = memchr(line + 1, '\n', (size_t)(end - line))) {
		const char *h = line + 1;
		if (strncasecmp(h, "Content-Length:", 15) == 0)
			clen = strtoul(h + 15, NULL, 10);
		else if (strncasecmp(h, "Connection:", 11) == 0 &&
			 strncasecmp(h + 11 + strspn(h + 11, " \t"), "close", 5) == 0)
			*close_after = true;
	}
	if (clen > BENCH_REPLY_MAX)
		return -1;
	if (a->reply.len < head + clen)
		return 0;
	return a->reply.len == head + clen ? 1 : -1;
}

/* Reads what agent @a's connection has. */
static void receive(struct bench *b, struct sim_agent *a)
{
	char chunk[16384];
	unsigned status = 0;
	bool close_after = false;

	for (;;) {
		ssize_t n = recv(a->fd, chunk, sizeof(chunk), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0 || !a->busy || buf_append(&a->reply, chunk, (size_t)n)) {
			/* closed, failed or out of turn: the next request opens a new connection */
			disconnect(b, a);
			finish(b, a, false, mono());
			return;
		}
		int r = parse_reply(a, &status, &close_after);
		if (r == 0)
			continue;
		if (r < 0 || close_after)
			disconnect(b, a);
		finish(b, a, r > 0 && status == 200, mono());
		return;
	}
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, c = *(const double *)y;
	return a < c ? -1 : a > c;
}

/*
 * Runs one phase for b->seconds; returns completed requests, or -1. Closed loop (an agent
 * sends again as soon as it is answered) unless b->rate is set for heartbeats: then requests
 * start at that rate, each from an agent with nothing in flight. Answers still outstanding
 * BENCH_DRAIN_SECONDS after the end count as failed.
 */
static int64_t drive(struct bench *b, bool alerts, int64_t *failed)
{
	struct epoll_event evs[BENCH_EPOLL_EVENTS];
	int64_t started = 0;
	double start;

	b->alerts = alerts;
	b->paced = !alerts && b->rate > 0;
	b->done = b->failed = 0;
	b->n_idle = 0;
	for (unsigned i = 0; i < b->n_agents; i++)
		b->idle[b->n_idle++] = i;
	start = mono();
	b->end = start + b->seconds;
	for (;;) {
		double now = mono();

		if (b->paced && now < b->end) {
			int64_t due = (int64_t)((now - start) * b->rate);
			while (started < due) {
				if (b->n_idle == 0) {
					b->late += due - started;
					started = due;
					break;
				}
				if (submit(b, &b->agents[b->idle[--b->n_idle]]))
					return -1;
				started++;
			}
		} else if (now < b->end) {
			/* those failing at once are idle again and go at the next turn */
			size_t n = b->n_idle;
			memcpy(b->ready, b->idle, n * sizeof(*b->ready));
			b->n_idle = 0;
			for (size_t i = 0; i < n; i++)
				if (submit(b, &b->agents[b->ready[i]]))
					return -1;
		}
		if (now >= b->end && b->busy == 0)
			break;
		if (now >= b->end + BENCH_DRAIN_SECONDS) {
			b->failed += (int64_t)b->busy;
			break;
		}
		int n = epoll_wait(b->ep, evs, BENCH_EPOLL_EVENTS, b->paced ? 1 : 50);
		for (int i = 0; i < n; i++) {
			struct sim_agent *a = evs[i].data.ptr;
			if (a->fd < 0)
				continue;
			if (evs[i].events & EPOLLOUT)
				flush(b, a);
			if (a->fd >= 0 &&
			    (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
				receive(b, a);
		}
	}
	for (unsigned i = 0; i < b->n_agents; i++)
		b->agents[i].busy = false;
	b->busy = 0;
	*failed = b->failed;
	return b->done;
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
	b.ep = -1;
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
	b.ready = calloc(b.n_agents, sizeof(*b.ready));
	b.cap_lat = 5000000;
	b.lat = malloc(b.cap_lat * sizeof(*b.lat));
	b.ep = epoll_create1(EPOLL_CLOEXEC);
	for (unsigned i = 0; b.agents && i < b.n_agents; i++) {
		struct sim_agent *a = &b.agents[i];
		a->fd = -1;
		buf_init(&a->heartbeat, BENCH_REQUEST_MAX);
		buf_init(&a->batch, BENCH_REQUEST_MAX);
		buf_init(&a->reply, BENCH_REPLY_MAX);
	}
	if (!b.agents || !b.idle || !b.ready || !b.lat || b.ep < 0 || start_server(&b) ||
	    enroll_all(&b))
		goto out;
	b.addr.sin_family = AF_INET;
	b.addr.sin_port = htons((uint16_t)b.port);
	b.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (unsigned i = 0; i < b.n_agents; i++) {
		struct sim_agent *a = &b.agents[i];
		if (build_request(&b, a, false, &a->heartbeat) || agent_connect(&b, a)) {
			fprintf(stderr, "vigil bench heartbeat: cannot connect agent %u\n", i);
			goto out;
		}
	}
	double cpu0 = server_cpu_seconds(b.server), t0 = mono(), own0 = own_cpu_seconds();
	double all0 = machine_cpu_seconds();
	int64_t hb_failed, al_failed;
	int64_t hb = drive(&b, false, &hb_failed);
	double t1 = mono(), cpu1 = server_cpu_seconds(b.server), own1 = own_cpu_seconds();
	double all1 = machine_cpu_seconds();
	int64_t batches = drive(&b, true, &al_failed);
	double t2 = mono(), cpu2 = server_cpu_seconds(b.server), own2 = own_cpu_seconds();
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
	       "\"client_heartbeat_cpu_seconds\":%.2f,\"client_alert_cpu_seconds\":%.2f,"
	       "\"machine_heartbeat_cpu_seconds\":%.2f,\"cpus\":%ld}\n",
	       b.n_agents, b.seconds, b.rate, b.late, hb, (double)hb / (t1 - t0), p50, p99,
	       hb_failed, batches * (int64_t)BENCH_ALERT_BATCH,
	       (double)batches * BENCH_ALERT_BATCH / (t2 - t1), al_failed, cpu2 - cpu0, cpu1 - cpu0,
	       cpu2 - cpu1, own1 - own0, own2 - own1, all1 - all0, sysconf(_SC_NPROCESSORS_ONLN));
	status = hb > 0 && hb_failed == 0 && al_failed == 0 ? 0 : 1;
out:
	if (b.server > 0) {
		kill(b.server, SIGTERM);
		waitpid(b.server, NULL, 0);
	}
	for (unsigned i = 0; b.agents && i < b.n_agents; i++) {
		disconnect(&b, &b.agents[i]);
		buf_release(&b.agents[i].heartbeat);
		buf_release(&b.agents[i].batch);
		buf_release(&b.agents[i].reply);
	}
	if (b.ep >= 0)
		close(b.ep);
	free(b.agents);
	free(b.idle);
	free(b.ready);
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
