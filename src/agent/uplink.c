/*
 * The agent's uplink thread (libcurl): enrollment, heartbeats with jitter, content downloads
 * into the inbox, and spool uploads acknowledged by the server. See uplink.h.
 */
#include "uplink.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/bundle.h"
#include "../lib/event_json.h"
#include "../lib/trust.h"
#include "agent.h"
#include "sensor.h"
#include "spool.h"
#include "state.h"
#include "uplink_proto.h"

#define CRED_FILE      "uplink.json"
#define CRED_MAX_BYTES 4096u
#define TOKEN_MAX      256u
/* Seconds the last upload at a clean stop may take. */
#define FINAL_UPLOAD_SECONDS 3.0

struct uplink {
	struct agent *agent; /* read only for its host name, under no lock */
	struct uplink_options opt;
	char server[512];
	char cacert[4096];
	char state_dir[4096];
	char content_dir[4096];
	int state_fd;
	struct spool *alerts, *events;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t wake;
	bool stop;
	uint64_t alerts_raised;
	uint64_t drops;	    /* events the source lost, from its metrics */
	bool audit_mode;    /* the server's word on the content the agent runs */
	uint64_t pulled;    /* a release the server says it pulled, for the main loop; 0 none */
	double drops_at;    /* main thread: when the drops were last read */
	struct buf scratch; /* main thread: the source's metrics */
	char agent_id[UPLINK_ID_BYTES];
	char credential[UPLINK_CRED_BYTES];
	char enroll_token[TOKEN_MAX];
	int64_t restarts; /* starts that did not follow a clean stop */
	uint64_t heartbeats, heartbeat_failures, uploads, upload_failures, downloads;
	double interval;
	char fetched[65]; /* hash of the last bundle put in the inbox */
	char host_name[256];
	/* the thread's own */
	CURL *h;
	double started_at;
	uint64_t cpu_ticks;
	double cpu_at;
	struct agent_state *st;
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	size_t bytes;
	if (size_mul(size, n, &bytes) || buf_append(ctx, p, bytes))
		return 0;
	return bytes;
}

/*
 * One request to the server: @method @path with @body (NULL: none), the agent's credential
 * when @auth. The reply goes into @reply (capped). Returns the HTTP status, or -1 when the
 * server could not be reached.
 */
static long request(struct uplink *u, const char *method, const char *path, const char *body,
		    size_t len, bool auth, struct buf *reply, double timeout)
{
	struct curl_slist *hdrs = NULL;
	char url[1024], authz[UPLINK_CRED_BYTES + 32];
	long status = -1;

	snprintf(url, sizeof(url), "%s%s", u->server, path);
	buf_reset(reply);
	curl_easy_reset(u->h);
	if (auth) {
		pthread_mutex_lock(&u->lock);
		snprintf(authz, sizeof(authz), "Authorization: Bearer %s", u->credential);
		pthread_mutex_unlock(&u->lock);
		hdrs = curl_slist_append(hdrs, authz);
	}
	if (body)
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(u->h, CURLOPT_URL, url);
	curl_easy_setopt(u->h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(u->h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(u->h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(u->h, CURLOPT_WRITEDATA, reply);
	curl_easy_setopt(u->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(u->h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout * 1000 / 2));
	curl_easy_setopt(u->h, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000));
	curl_easy_setopt(u->h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (u->cacert[0])
		curl_easy_setopt(u->h, CURLOPT_CAINFO, u->cacert);
	if (body) {
		curl_easy_setopt(u->h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(u->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	if (curl_easy_perform(u->h) == CURLE_OK)
		curl_easy_getinfo(u->h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	return status;
}

/* --- credentials --- */

static int save_credentials(struct uplink *u)
{
	struct buf b;
	int ret;

	buf_init(&b, CRED_MAX_BYTES);
	ret = buf_printf(&b, "{\"server\":");
	if (!ret)
		ret = json_append_string(&b, u->server, strlen(u->server));
	if (!ret)
		ret =
		    buf_printf(&b,
			       ",\"agent_id\":\"%s\",\"credential\":\"%s\",\"restarts\":%" PRId64
			       ",\"clean\":%s}\n",
			       u->agent_id, u->credential, u->restarts, u->stop ? "true" : "false");
	if (!ret) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", u->state_dir, CRED_FILE);
		ret = trust_file_write(path, b.data, b.len, 0600, false);
	}
	if (b.data)
		sodium_memzero(b.data, b.len);
	buf_release(&b);
	return ret;
}

/* Reads the stored credentials; counts a start that did not follow a clean stop. */
static void load_credentials(struct uplink *u)
{
	char path[4200];
	struct buf b;
	json_t *j;

	snprintf(path, sizeof(path), "%s/%s", u->state_dir, CRED_FILE);
	buf_init(&b, CRED_MAX_BYTES);
	if (trust_file_read(path, CRED_MAX_BYTES, &b) == 0 &&
	    (j = json_loadb(b.data, b.len, 0, NULL))) {
		json_t *id = json_object_get(j, "agent_id"),
		       *cred = json_object_get(j, "credential");
		if (json_is_string(id) && json_is_string(cred) &&
		    uplink_id_valid(json_string_value(id), json_string_length(id)) &&
		    uplink_credential_valid(json_string_value(cred), json_string_length(cred))) {
			memcpy(u->agent_id, json_string_value(id), json_string_length(id) + 1);
			memcpy(u->credential, json_string_value(cred),
			       json_string_length(cred) + 1);
		}
		u->restarts = json_integer_value(json_object_get(j, "restarts"));
		if (!json_is_true(json_object_get(j, "clean")))
			u->restarts++;
		json_decref(j);
	}
	if (b.data)
		sodium_memzero(b.data, b.len);
	buf_release(&b);
}

static int enroll(struct uplink *u, struct buf *reply)
{
	struct uplink_enrollment en;
	struct buf body;
	char why[256];
	long status;
	int ret = -EAGAIN;

	buf_init(&body, 4096);
	if (buf_printf(&body,
		       "{\"token\":\"%s\",\"sensor_version\":\"%s\",\"sensor_build\":%" PRIu64
		       ",\"hostname\":",
		       u->enroll_token, AGENT_VERSION, sensor_own_build()) ||
	    json_append_string(&body, u->host_name, strlen(u->host_name)) ||
	    buf_append_char(&body, '}'))
		goto out;
	status = request(u, "POST", "/api/v1/enroll", body.data, body.len, false, reply, 30);
	if (status != 201) {
		if (status > 0)
			fprintf(stderr, "vigil-agent: uplink: enrollment refused (%ld)\n", status);
		goto out;
	}
	if (uplink_parse_enrollment(reply->data ? reply->data : "", reply->len, &en, why,
				    sizeof(why)) < 0) {
		fprintf(stderr, "vigil-agent: uplink: enrollment answer refused: %s\n", why);
		goto out;
	}
	pthread_mutex_lock(&u->lock);
	memcpy(u->agent_id, en.agent_id, sizeof(u->agent_id));
	memcpy(u->credential, en.credential, sizeof(u->credential));
	sodium_memzero(u->enroll_token, sizeof(u->enroll_token));
	pthread_mutex_unlock(&u->lock);
	ret = save_credentials(u);
	if (ret)
		fprintf(stderr, "vigil-agent: uplink: cannot store the credentials: %s\n",
			strerror(-ret));
	fprintf(stderr, "vigil-agent: uplink: enrolled as %s\n", u->agent_id);
	ret = 0;
out:
	sodium_memzero(&en, sizeof(en));
	buf_release(&body);
	return ret;
}

/* --- heartbeats --- */

/* CPU percent of one CPU since the last call, and resident bytes. */
static void own_usage(struct uplink *u, double *cpu, int64_t *rss)
{
	char text[1024];
	unsigned long ut = 0, stime = 0;
	long pages = 0;
	FILE *f = fopen("/proc/self/stat", "re");
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;

	*cpu = -1;
	*rss = 0;
	if (f)
		fclose(f);
	text[n] = '\0';
	char *p = strrchr(text, ')');
	if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			&stime) == 2) {
		uint64_t ticks = ut + stime;
		double now = mono();
		if (u->cpu_at > 0 && now > u->cpu_at)
			*cpu = (double)(ticks - u->cpu_ticks) / (double)sysconf(_SC_CLK_TCK) /
			       (now - u->cpu_at) * 100.0;
		u->cpu_ticks = ticks;
		u->cpu_at = now;
	}
	f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%*s %ld", &pages) == 1)
			*rss = (int64_t)pages * sysconf(_SC_PAGESIZE);
		fclose(f);
	}
}

static bool quarantined(const struct agent_state *st, uint64_t v)
{
	for (size_t i = 0; i < st->n_quarantined; i++)
		if (st->quarantined[i].version == v)
			return true;
	return false;
}

/* Downloads the bundle @hash (@size bytes) and renames it into the inbox. */
static int fetch(struct uplink *u, uint64_t version, const char *hash, int64_t size,
		 const char *url_path)
{
	uint8_t digest[32];
	char hex[65], tmp[4200], final[4200];
	struct buf data;
	long status;
	int ret = -EIO;

	if (size <= 0 || (uint64_t)size > BUNDLE_MAX_BYTES || strlen(hash) != 64 ||
	    strncmp(url_path, "/api/v1/bundles/", 16) != 0)
		return -EINVAL;
	buf_init(&data, BUNDLE_MAX_BYTES);
	status = request(u, "GET", url_path, NULL, 0, false, &data, 120);
	if (status != 200 || data.len != (size_t)size)
		goto out;
	crypto_generichash(digest, sizeof(digest), (const unsigned char *)data.data, data.len, NULL,
			   0);
	sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
	if (strcmp(hex, hash) != 0) {
		fprintf(stderr, "vigil-agent: uplink: bundle %s does not match its hash\n", hash);
		goto out;
	}
	/* the inbox takes a file renamed into it; a dot name is not picked up before that */
	snprintf(tmp, sizeof(tmp), "%s/.uplink-%s.tmp", u->content_dir, hash);
	snprintf(final, sizeof(final), "%s/server-%020" PRIu64 ".bundle", u->content_dir, version);
	ret = trust_file_write(tmp, data.data, data.len, 0600, false);
	if (!ret && rename(tmp, final) < 0)
		ret = -errno;
	if (!ret) {
		pthread_mutex_lock(&u->lock);
		u->downloads++;
		snprintf(u->fetched, sizeof(u->fetched), "%s", hash);
		pthread_mutex_unlock(&u->lock);
		fprintf(stderr,
			"vigil-agent: uplink: content %" PRIu64 " downloaded into the inbox\n",
			version);
	}
out:
	buf_release(&data);
	return ret;
}

/* Acts on the content the server names: a new version is fetched into the inbox once. */
static void follow_content(struct uplink *u, const struct uplink_content *c)
{
	if (!u->content_dir[0] || !c->has_version || !c->downloadable)
		return;
	if ((u->st->has_active && u->st->active == c->version) || quarantined(u->st, c->version))
		return;
	pthread_mutex_lock(&u->lock);
	bool done = strcmp(u->fetched, c->hash) == 0;
	pthread_mutex_unlock(&u->lock);
	if (done)
		return;
	if (u->st->has_active && c->version < u->st->active)
		/* activation takes an older version only with a signed downgrade instruction in
		 * the bundle; a pulled release is left through updater_pull() instead */
		fprintf(stderr,
			"vigil-agent: uplink: the server asks for older content %" PRIu64 "\n",
			c->version);
	fetch(u, c->version, c->hash, c->size, c->url);
}

static int heartbeat(struct uplink *u, struct buf *reply)
{
	struct uplink_answer ans;
	struct buf body;
	char err[256], why[256], path[128];
	double cpu;
	int64_t rss;
	long status;
	int ret = -EAGAIN;

	state_init(u->st);
	if (u->state_fd >= 0)
		state_load(u->state_fd, false, u->st, err, sizeof(err));
	own_usage(u, &cpu, &rss);
	buf_init(&body, 16384);
	pthread_mutex_lock(&u->lock);
	uint64_t alerts = u->alerts_raised, drops = u->drops;
	int64_t restarts = u->restarts;
	pthread_mutex_unlock(&u->lock);
	int e = buf_append_str(&body, "{\"content_version\":");
	if (!e)
		e = u->st->has_active ? buf_printf(&body, "%" PRIu64, u->st->active)
				      : buf_append_str(&body, "null");
	if (!e)
		e = buf_printf(
		    &body,
		    ",\"sensor_version\":\"%s\",\"uptime_seconds\":%.0f,\"restarts\":%" PRId64
		    ",\"crash_loop_reverts\":%" PRIu64 ",\"quarantined\":[",
		    AGENT_VERSION, mono() - u->started_at, restarts, u->st->crash_loop_reverts);
	for (size_t i = 0; !e && i < u->st->n_quarantined && i < 16; i++)
		e = buf_printf(&body, "%s%" PRIu64, i ? "," : "", u->st->quarantined[i].version);
	if (!e)
		e = buf_printf(&body,
			       "],\"liveness\":{\"ok\":%" PRIu64 ",\"failed\":%" PRIu64
			       ",\"last\":\"%s\"},\"alerts\":%" PRIu64 ",\"drops\":%" PRIu64
			       ",\"rss_bytes\":%" PRId64,
			       u->st->liveness_ok, u->st->liveness_failed,
			       u->st->liveness_last < 0 ? "never"
			       : u->st->liveness_last	? "ok"
							: "failed",
			       alerts, drops, rss);
	if (!e && cpu >= 0)
		e = buf_printf(&body, ",\"cpu_percent\":%.3f", cpu);
	if (!e) {
		/* the sensor lane: the build running, its reverts and quarantined builds */
		uint64_t build, reverts, sq[16];
		size_t nq;
		sensor_report(u->agent->sensor, &build, &reverts, sq, 16, &nq);
		e = buf_printf(&body,
			       ",\"sensor_build\":%" PRIu64
			       ",\"sensor_crash_loop_reverts\":%" PRIu64
			       ",\"sensor_quarantined\":[",
			       build, reverts);
		for (size_t i = 0; !e && i < nq; i++)
			e = buf_printf(&body, "%s%" PRIu64, i ? "," : "", sq[i]);
		if (!e)
			e = buf_append_char(&body, ']');
	}
	if (!e)
		e = buf_append_str(&body, ",\"hostname\":");
	if (!e)
		e = json_append_string(&body, u->host_name, strlen(u->host_name));
	if (!e)
		e = buf_append_char(&body, '}');
	if (e)
		goto out;
	snprintf(path, sizeof(path), "/api/v1/agents/%s/heartbeat", u->agent_id);
	status = request(u, "POST", path, body.data, body.len, true, reply, 30);
	if (status != 200) {
		if (status == 401)
			fprintf(stderr, "vigil-agent: uplink: the server does not know these "
					"credentials\n");
		goto out;
	}
	if (uplink_parse_answer(reply->data ? reply->data : "", reply->len, &ans, why,
				sizeof(why)) < 0) {
		fprintf(stderr, "vigil-agent: uplink: heartbeat answer refused: %s\n", why);
		goto out;
	}
	const struct uplink_content *c = &ans.content;
	bool audit =
	    c->audit_mode && c->has_version && u->st->has_active && c->version == u->st->active;
	pthread_mutex_lock(&u->lock);
	u->heartbeats++;
	if (ans.heartbeat_seconds && u->opt.heartbeat <= 0)
		u->interval = (double)ans.heartbeat_seconds;
	if (audit != u->audit_mode)
		fprintf(stderr, "vigil-agent: uplink: kill responses %s\n",
			audit ? "in audit mode while the release bakes" : "active again");
	u->audit_mode = audit;
	if (c->pulled)
		u->pulled = c->pulled;
	pthread_mutex_unlock(&u->lock);
	follow_content(u, c);
	/* a sensor build is fetched by the sensor's own thread, never in this turn */
	sensor_offer(u->agent->sensor, &ans.sensor);
	ret = 0;
out:
	buf_release(&body);
	return ret;
}

/* --- uploads --- */

/* Sends what @sp holds, batch after batch, until it is empty, a batch fails, or @deadline. */
static int upload(struct uplink *u, struct spool *sp, const char *kind, struct buf *reply,
		  double deadline)
{
	struct buf batch;
	char path[128];
	int ret = 0;

	if (!sp)
		return 0;
	snprintf(path, sizeof(path), "/api/v1/agents/%s/%s", u->agent_id, kind);
	buf_init(&batch, UPLINK_BATCH_BYTES + 65536);
	while (mono() < deadline) {
		uint64_t last = 0;
		buf_reset(&batch);
		int n = spool_batch(sp, UPLINK_BATCH_RECORDS, UPLINK_BATCH_BYTES, &batch, &last);
		if (n < 0) {
			ret = n;
			break;
		}
		if (n == 0) {
			if (last)
				spool_ack(sp, last); /* damaged records only: skipped, counted */
			break;
		}
		long status = request(u, "POST", path, batch.data, batch.len, true, reply, 60);
		pthread_mutex_lock(&u->lock);
		if (status == 200)
			u->uploads++;
		else
			u->upload_failures++;
		pthread_mutex_unlock(&u->lock);
		if (status != 200) {
			/* kept: sent again later, and the server stores each record once */
			ret = -EAGAIN;
			break;
		}
		spool_ack(sp, last);
	}
	buf_release(&batch);
	return ret;
}

static void *run(void *p)
{
	struct uplink *u = p;
	struct buf reply;
	double next_hb = 0, backoff = 1, retry_at = 0;

	buf_init(&reply, UPLINK_REPLY_MAX);
	for (;;) {
		double now = mono();
		pthread_mutex_lock(&u->lock);
		bool stop = u->stop, enrolled = u->credential[0] != '\0';
		double interval = u->interval;
		pthread_mutex_unlock(&u->lock);
		if (stop)
			break;
		if (now >= retry_at) {
			int failed = 0;
			if (!enrolled)
				failed = enroll(u, &reply) != 0;
			else {
				if (now >= next_hb) {
					failed |= heartbeat(u, &reply) != 0;
					/* the answer may have set the interval */
					pthread_mutex_lock(&u->lock);
					interval = u->interval;
					pthread_mutex_unlock(&u->lock);
					/* jitter: +-10 % so that agents do not beat in step */
					next_hb =
					    mono() +
					    interval *
						(0.9 + 0.2 * randombytes_uniform(1001) / 1000.0);
				}
				failed |= upload(u, u->alerts, "alerts", &reply, mono() + 10) != 0;
				failed |= upload(u, u->events, "events", &reply, mono() + 10) != 0;
			}
			if (failed) {
				pthread_mutex_lock(&u->lock);
				if (!u->credential[0] || next_hb <= mono())
					u->heartbeat_failures++;
				pthread_mutex_unlock(&u->lock);
				/* Never wait longer than about one heartbeat interval: retrying at
				 * the heartbeat rate is the load the server carries anyway, and an
				 * agent that waited longer after an outage would look silent to
				 * the rollout gates once the server is back. */
				double delay = backoff * (0.5 + randombytes_uniform(1001) / 1000.0);
				if (delay > interval)
					delay = interval *
						(0.9 + 0.2 * randombytes_uniform(1001) / 1000.0);
				retry_at = mono() + delay;
				backoff = backoff * 2 > UPLINK_MAX_BACKOFF ? UPLINK_MAX_BACKOFF
									   : backoff * 2;
				if (failed && next_hb > retry_at + interval)
					next_hb = retry_at;
			} else {
				backoff = 1;
			}
		}
		/* sleep until the next heartbeat, a retry, or a second for new records */
		double wake = next_hb < retry_at ? retry_at : next_hb;
		if (wake > mono() + 1.0)
			wake = mono() + 1.0;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		double d = wake - mono();
		if (d < 0.01)
			d = 0.01;
		ts.tv_sec += (time_t)d;
		ts.tv_nsec += (long)((d - (double)(time_t)d) * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&u->lock);
		if (!u->stop)
			pthread_cond_timedwait(&u->wake, &u->lock, &ts);
		pthread_mutex_unlock(&u->lock);
	}
	/* a clean stop: what is spooled gets one short chance to go now */
	if (u->credential[0]) {
		double deadline = mono() + FINAL_UPLOAD_SECONDS;
		upload(u, u->alerts, "alerts", &reply, deadline);
		upload(u, u->events, "events", &reply, deadline);
	}
	buf_release(&reply);
	return NULL;
}

/* --- the main thread's side --- */

static int open_spool(struct uplink *u, const char *name, struct spool **out, char *err,
		      size_t errlen)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", u->state_dir, name);
	return spool_open(path, u->opt.spool_bytes, out, err, errlen);
}

int uplink_open(struct agent *agent, const struct uplink_options *opt, struct uplink **out,
		char *err, size_t errlen)
{
	struct uplink *u;
	int ret;

	if (!opt->server || !opt->state_dir) {
		snprintf(err, errlen, "the uplink needs --server and --state-dir");
		return -EINVAL;
	}
	if (strncmp(opt->server, "http://", 7) != 0 && strncmp(opt->server, "https://", 8) != 0) {
		snprintf(err, errlen, "--server %s: want http://HOST:PORT or https://...",
			 opt->server);
		return -EINVAL;
	}
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "cannot start libsodium or libcurl");
		return -EIO;
	}
	u = calloc(1, sizeof(*u));
	if (!u || !(u->st = malloc(sizeof(*u->st)))) {
		free(u);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->wake, NULL);
	buf_init(&u->scratch, 1 << 20);
	u->agent = agent;
	u->opt = *opt;
	u->state_fd = -1;
	u->interval = opt->heartbeat > 0 ? opt->heartbeat : UPLINK_DEFAULT_HEARTBEAT;
	u->started_at = mono();
	snprintf(u->host_name, sizeof(u->host_name), "%s", agent->host_name);
	size_t sl = strlen(opt->server);
	while (sl && opt->server[sl - 1] == '/')
		sl--;
	if (sl >= sizeof(u->server) || strlen(opt->state_dir) >= sizeof(u->state_dir) ||
	    (opt->cacert && strlen(opt->cacert) >= sizeof(u->cacert)) ||
	    (opt->content_dir && strlen(opt->content_dir) >= sizeof(u->content_dir))) {
		snprintf(err, errlen, "a path or URL is too long");
		ret = -ENAMETOOLONG;
		goto out_free;
	}
	memcpy(u->server, opt->server, sl);
	snprintf(u->state_dir, sizeof(u->state_dir), "%s", opt->state_dir);
	if (opt->cacert)
		snprintf(u->cacert, sizeof(u->cacert), "%s", opt->cacert);
	if (opt->content_dir)
		snprintf(u->content_dir, sizeof(u->content_dir), "%s", opt->content_dir);
	if (!u->opt.spool_bytes)
		u->opt.spool_bytes = UPLINK_DEFAULT_SPOOL_BYTES;
	ret = state_dir_open(u->state_dir, true, &u->state_fd, NULL, err, errlen);
	if (ret)
		goto out_free;
	load_credentials(u);
	if (!u->credential[0]) {
		struct buf tok;
		if (!opt->enroll_token_file) {
			snprintf(err, errlen, "not enrolled yet: --enroll-token-file is needed");
			ret = -EINVAL;
			goto out_free;
		}
		buf_init(&tok, TOKEN_MAX);
		ret = trust_file_read(opt->enroll_token_file, TOKEN_MAX - 1, &tok);
		size_t n = tok.len;
		while (n && (tok.data[n - 1] == '\n' || tok.data[n - 1] == ' ' ||
			     tok.data[n - 1] == '\r'))
			n--;
		if (ret || !uplink_credential_valid(tok.data, n)) {
			snprintf(err, errlen, "%s: %s", opt->enroll_token_file,
				 ret ? strerror(-ret) : "not an enrollment token");
			buf_release(&tok);
			ret = ret ? ret : -EINVAL;
			goto out_free;
		}
		memcpy(u->enroll_token, tok.data, n);
		u->enroll_token[n] = '\0';
		sodium_memzero(tok.data, tok.len);
		buf_release(&tok);
	} else {
		/* this start is marked unclean until uplink_close says otherwise */
		save_credentials(u);
		/* events and alerts carry the id the server knows the agent by */
		snprintf(agent->agent_id, sizeof(agent->agent_id), "%s", u->agent_id);
	}
	if ((ret = open_spool(u, "spool-alerts", &u->alerts, err, errlen)) ||
	    (opt->events && (ret = open_spool(u, "spool-events", &u->events, err, errlen))))
		goto out_free;
	u->h = curl_easy_init();
	if (!u->h) {
		snprintf(err, errlen, "cannot start libcurl");
		ret = -ENOMEM;
		goto out_free;
	}
	if (pthread_create(&u->thread, NULL, run, u) != 0) {
		snprintf(err, errlen, "cannot start the uplink thread");
		ret = -EAGAIN;
		goto out_free;
	}
	u->started = true;
	*out = u;
	return 0;
out_free:
	uplink_close(u);
	return ret;
}

void uplink_record(struct uplink *u, bool alert, const char *json, size_t len)
{
	struct spool *sp = alert ? u->alerts : u->events;
	if (sp)
		spool_append(sp, json, len);
}

/* Sum of every number in @j (the source's "drops" object: counts by cause and kind). */
static uint64_t sum_numbers(json_t *j)
{
	const char *key;
	json_t *v;
	uint64_t n = 0;

	if (json_is_integer(j))
		return json_integer_value(j) > 0 ? (uint64_t)json_integer_value(j) : 0;
	json_object_foreach(j, key, v) n += sum_numbers(v);
	return n;
}

/* The events the source dropped so far, read from its metrics (main thread). */
static bool source_drops(struct uplink *u, const struct agent *agent, uint64_t *out)
{
	json_t *j;

	if (!agent->source || !agent->source_ops || !agent->source_ops->metrics)
		return false;
	buf_reset(&u->scratch);
	/* the source appends ,"key":... members: wrap them into an object */
	if (buf_append_str(&u->scratch, "{\"_\":0") ||
	    agent->source_ops->metrics(agent->source, &u->scratch) ||
	    buf_append_char(&u->scratch, '}'))
		return false;
	j = json_loadb(u->scratch.data, u->scratch.len, 0, NULL);
	*out = sum_numbers(json_object_get(j, "drops"));
	json_decref(j);
	return j != NULL;
}

void uplink_publish(struct uplink *u, struct agent *agent)
{
	uint64_t drops = 0;
	double now = mono();
	bool fresh = false;

	if (now - u->drops_at >= 1.0) {
		u->drops_at = now;
		fresh = source_drops(u, agent, &drops);
	}
	pthread_mutex_lock(&u->lock);
	u->alerts_raised = agent->counters.alerts;
	if (fresh)
		u->drops = drops;
	/* from the enrollment on, events and alerts carry the id the server knows */
	if (u->agent_id[0] && strcmp(agent->agent_id, u->agent_id) != 0)
		snprintf(agent->agent_id, sizeof(agent->agent_id), "%s", u->agent_id);
	pthread_mutex_unlock(&u->lock);
}

uint64_t uplink_take_pulled(struct uplink *u)
{
	uint64_t v;

	if (!u)
		return 0;
	pthread_mutex_lock(&u->lock);
	v = u->pulled;
	u->pulled = 0;
	pthread_mutex_unlock(&u->lock);
	return v;
}

bool uplink_audit_mode(struct uplink *u)
{
	bool audit;

	if (!u)
		return false;
	pthread_mutex_lock(&u->lock);
	audit = u->audit_mode;
	pthread_mutex_unlock(&u->lock);
	return audit;
}

bool uplink_wants_events(const struct uplink *u)
{
	return u && u->events;
}

int uplink_metrics(struct uplink *u, struct buf *out)
{
	struct spool_stats a = {0}, e = {0};
	int ret;

	spool_get_stats(u->alerts, &a);
	if (u->events)
		spool_get_stats(u->events, &e);
	pthread_mutex_lock(&u->lock);
	ret = buf_printf(out,
			 ",\"uplink\":{\"enrolled\":%s,\"heartbeats\":%" PRIu64
			 ",\"heartbeat_failures\":%" PRIu64 ",\"uploads\":%" PRIu64
			 ",\"upload_failures\":%" PRIu64 ",\"downloads\":%" PRIu64
			 ",\"alerts_pending\":%" PRIu64 ",\"alerts_evicted\":%" PRIu64
			 ",\"events_pending\":%" PRIu64 ",\"events_evicted\":%" PRIu64
			 ",\"spool_bytes\":%" PRIu64 "}",
			 u->credential[0] ? "true" : "false", u->heartbeats, u->heartbeat_failures,
			 u->uploads, u->upload_failures, u->downloads, a.pending, a.evicted,
			 e.pending, e.evicted, a.bytes + e.bytes);
	pthread_mutex_unlock(&u->lock);
	return ret;
}

void uplink_close(struct uplink *u)
{
	if (!u)
		return;
	if (u->started) {
		pthread_mutex_lock(&u->lock);
		u->stop = true;
		pthread_cond_signal(&u->wake);
		pthread_mutex_unlock(&u->lock);
		pthread_join(u->thread, NULL);
		if (u->credential[0])
			save_credentials(u); /* a clean stop */
	}
	if (u->h)
		curl_easy_cleanup(u->h);
	spool_close(u->alerts);
	spool_close(u->events);
	if (u->state_fd >= 0)
		close(u->state_fd);
	sodium_memzero(u->credential, sizeof(u->credential));
	sodium_memzero(u->enroll_token, sizeof(u->enroll_token));
	pthread_mutex_destroy(&u->lock);
	pthread_cond_destroy(&u->wake);
	buf_release(&u->scratch);
	free(u->st);
	free(u);
	curl_global_cleanup();
}
