/*
 * Fleet administration from the command line: vigil agents, groups, releases, rollouts,
 * alerts, tokens and audit, each a thin client of vigil-server's admin API (libcurl).
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lib/buf.h"
#include "lib/rollout.h"
#include "lib/trust.h"

#define DEFAULT_SERVER "http://127.0.0.1:8080"
/* Bytes of a reply read, and of a release file sent. */
#define REPLY_MAX      (64u * 1024u * 1024u)
#define UPLOAD_MAX     (64u * 1024u * 1024u)
#define TOKEN_FILE_MAX 4096u

struct client {
	const char *prog; /* "vigil rollouts start", for messages */
	char server[512];
	char token[256];
	const char *cacert; /* CA bundle that verifies an https server */
	bool compact;
};

static const char common_help[] =
    "common options:\n"
    "  --server URL        vigil-server (default $VIGIL_SERVER or " DEFAULT_SERVER ")\n"
    "  --token TOKEN       admin token (default $VIGIL_TOKEN)\n"
    "  --token-file FILE   read the admin token from FILE\n"
    "  --cacert FILE       CA certificates for an https server (default $VIGIL_CACERT)\n"
    "  --compact           print replies as one line of JSON\n";

/* --- the client --- */

/*
 * Takes the common options out of @argv (compacting it in place; *@argc updated). Returns 0,
 * or 2 after printing why.
 */
static int client_init(struct client *c, const char *prog, int *argc, char **argv)
{
	const char *server = getenv("VIGIL_SERVER"), *token = getenv("VIGIL_TOKEN");
	const char *token_file = NULL;
	int out = 0;

	memset(c, 0, sizeof(*c));
	c->prog = prog;
	c->cacert = getenv("VIGIL_CACERT");
	for (int i = 0; i < *argc; i++) {
		const char *a = argv[i];
		bool takes = strcmp(a, "--server") == 0 || strcmp(a, "--token") == 0 ||
			     strcmp(a, "--token-file") == 0 || strcmp(a, "--cacert") == 0;
		if (takes && i + 1 >= *argc) {
			fprintf(stderr, "%s: %s needs a value\n", prog, a);
			return 2;
		}
		if (strcmp(a, "--server") == 0)
			server = argv[++i];
		else if (strcmp(a, "--token") == 0)
			token = argv[++i];
		else if (strcmp(a, "--token-file") == 0)
			token_file = argv[++i];
		else if (strcmp(a, "--cacert") == 0)
			c->cacert = argv[++i];
		else if (strcmp(a, "--compact") == 0)
			c->compact = true;
		else
			argv[out++] = argv[i];
	}
	*argc = out;
	if (token_file) {
		struct buf b;
		buf_init(&b, TOKEN_FILE_MAX);
		int ret = trust_file_read(token_file, TOKEN_FILE_MAX, &b);
		if (ret) {
			fprintf(stderr, "%s: %s: %s\n", prog, token_file, strerror(-ret));
			buf_release(&b);
			return 2;
		}
		size_t n = b.len;
		while (n &&
		       (b.data[n - 1] == '\n' || b.data[n - 1] == '\r' || b.data[n - 1] == ' '))
			n--;
		if (n >= sizeof(c->token)) {
			fprintf(stderr, "%s: %s: not a token\n", prog, token_file);
			buf_release(&b);
			return 2;
		}
		memcpy(c->token, b.data, n);
		c->token[n] = '\0';
		buf_release(&b);
	} else if (token) {
		if (strlen(token) >= sizeof(c->token)) {
			fprintf(stderr, "%s: the token is too long\n", prog);
			return 2;
		}
		memcpy(c->token, token, strlen(token) + 1);
	}
	if (!server)
		server = DEFAULT_SERVER;
	size_t sl = strlen(server);
	while (sl && server[sl - 1] == '/')
		sl--;
	if (sl == 0 || sl >= sizeof(c->server)) {
		fprintf(stderr, "%s: bad --server\n", prog);
		return 2;
	}
	memcpy(c->server, server, sl);
	c->server[sl] = '\0';
	return 0;
}

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	size_t bytes;
	if (size_mul(size, n, &bytes) || buf_append(ctx, p, bytes))
		return 0; /* past the cap: the transfer fails */
	return bytes;
}

/*
 * Sends @method @path (after /api/v1/admin/) with @body (@len bytes, NULL for none) and
 * prints the reply. Returns the exit status: 0 for a 2xx reply, 1 otherwise (the server's
 * reason on one line of stderr).
 */
static int call(struct client *c, const char *method, const char *path, const void *body,
		size_t len, const char *content_type)
{
	struct curl_slist *hdrs = NULL;
	struct buf reply, url, auth;
	char errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	int ret = 1;
	CURL *h;

	buf_init(&reply, REPLY_MAX);
	buf_init(&url, 8192);
	buf_init(&auth, 512);
	h = curl_easy_init();
	if (!h || buf_printf(&url, "%s/api/v1/admin/%s", c->server, path) ||
	    buf_printf(&auth, "Authorization: Bearer %s", c->token)) {
		fprintf(stderr, "%s: out of memory\n", c->prog);
		goto out;
	}
	if (c->token[0])
		hdrs = curl_slist_append(hdrs, auth.data);
	if (content_type) {
		char ct[128];
		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		hdrs = curl_slist_append(hdrs, ct);
	}
	hdrs = curl_slist_append(hdrs, "Expect:");
	curl_easy_setopt(h, CURLOPT_URL, url.data);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (c->cacert && c->cacert[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	CURLcode rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		fprintf(stderr, "%s: %s: %s\n", c->prog, c->server,
			errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	json_t *j = reply.len ? json_loadb(reply.data, reply.len, 0, NULL) : NULL;
	if (status < 200 || status > 299) {
		json_t *e = json_object_get(j, "error");
		fprintf(stderr, "%s: %ld: %s\n", c->prog, status,
			json_is_string(e) ? json_string_value(e) : "no reason given");
	} else {
		ret = 0;
		if (j) {
			char *text = json_dumps(j, c->compact ? JSON_COMPACT : JSON_INDENT(2));
			if (text)
				printf("%s\n", text);
			free(text);
		}
	}
	json_decref(j);
out:
	curl_slist_free_all(hdrs);
	if (h)
		curl_easy_cleanup(h);
	buf_release(&reply);
	buf_release(&url);
	buf_release(&auth);
	return ret;
}

/* Sends a JSON object built by the caller; takes its reference. */
static int call_json(struct client *c, const char *method, const char *path, json_t *body)
{
	char *text;
	int ret;

	if (!body) {
		fprintf(stderr, "%s: out of memory\n", c->prog);
		return 1;
	}
	text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text) {
		fprintf(stderr, "%s: out of memory\n", c->prog);
		return 1;
	}
	ret = call(c, method, path, text, strlen(text), "application/json");
	free(text);
	return ret;
}

/* Appends "KEY=VALUE" (escaped) to a query string being built in @q. */
static int query_add(struct buf *q, const char *key, const char *value)
{
	char *esc;
	int ret;

	if (!value)
		return 0;
	esc = curl_easy_escape(NULL, value, 0);
	if (!esc)
		return -ENOMEM;
	ret = buf_printf(q, "%c%s=%s", q->len && strchr(q->data, '?') ? '&' : '?', key, esc);
	curl_free(esc);
	return ret;
}

static bool is_help(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	return false;
}

static int usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *prog, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try --help)\n");
	return 2;
}

/* Reads "--name VALUE" pairs from @argv[@from..]: stores values of the @n names given. */
static int options(const char *prog, int argc, char **argv, int from, const char *const *names,
		   const char **values, size_t n)
{
	for (int i = from; i < argc; i++) {
		size_t k;
		for (k = 0; k < n; k++)
			if (strcmp(argv[i], names[k]) == 0)
				break;
		if (k == n)
			return usage_error(prog, "unknown argument '%s'", argv[i]);
		if (i + 1 >= argc)
			return usage_error(prog, "%s needs a value", argv[i]);
		values[k] = argv[++i];
	}
	return 0;
}

static bool valid_path_word(const char *s)
{
	if (!*s || strlen(s) > 127)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return false;
	return true;
}

/* --- agents --- */

static int agents(struct client *c, int argc, char **argv)
{
	char path[256];

	if (argc >= 2 && strcmp(argv[1], "list") == 0) {
		static const char *const names[] = {"--group", "--limit", "--after"};
		const char *v[3] = {0};
		struct buf q;
		int ret = options(c->prog, argc, argv, 2, names, v, 3);
		if (ret)
			return ret;
		buf_init(&q, 4096);
		ret = buf_append_str(&q, "agents") || query_add(&q, "group", v[0]) ||
		      query_add(&q, "limit", v[1]) || query_add(&q, "after", v[2]);
		ret = ret ? 1 : call(c, "GET", q.data, NULL, 0, NULL);
		buf_release(&q);
		return ret;
	}
	if (argc == 3 && strcmp(argv[1], "show") == 0 && valid_path_word(argv[2])) {
		snprintf(path, sizeof(path), "agents/%s", argv[2]);
		return call(c, "GET", path, NULL, 0, NULL);
	}
	if (argc == 4 && strcmp(argv[1], "move") == 0 && valid_path_word(argv[2])) {
		snprintf(path, sizeof(path), "agents/%s", argv[2]);
		return call_json(c, "PUT", path, json_pack("{s:s}", "group", argv[3]));
	}
	return usage_error(c->prog, "%s",
			   "want list [--group G] [--limit N] [--after ID], "
			   "show ID or move ID GROUP");
}

/* --- groups --- */

static int parse_window(const char *s, json_t **out)
{
	char start[6], end[6];

	if (strlen(s) != 11 || s[5] != '-')
		return -EINVAL;
	memcpy(start, s, 5);
	start[5] = '\0';
	memcpy(end, s + 6, 5);
	end[5] = '\0';
	*out = json_pack("{s:s,s:s}", "start", start, "end", end);
	return *out ? 0 : -ENOMEM;
}

static int parse_count(const char *s, long long max, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int groups(struct client *c, int argc, char **argv)
{
	char path[256];

	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return call(c, "GET", "groups", NULL, 0, NULL);
	if (argc == 3 && strcmp(argv[1], "show") == 0 && valid_path_word(argv[2])) {
		snprintf(path, sizeof(path), "groups/%s", argv[2]);
		return call(c, "GET", path, NULL, 0, NULL);
	}
	if (argc >= 3 && strcmp(argv[1], "set") == 0 && valid_path_word(argv[2])) {
		json_t *p = json_object(), *windows = NULL;
		long long n;

		for (int i = 3; i < argc; i++) {
			const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
			if (strcmp(a, "--pause") == 0 || strcmp(a, "--unpause") == 0) {
				json_object_set_new(p, "paused", json_boolean(a[2] == 'p'));
			} else if (strcmp(a, "--approval") == 0 ||
				   strcmp(a, "--no-approval") == 0) {
				json_object_set_new(p, "approval_required",
						    json_boolean(a[2] == 'a'));
			} else if (strcmp(a, "--no-windows") == 0) {
				json_object_set_new(p, "maintenance_windows", json_null());
			} else if (!v) {
				json_decref(p);
				json_decref(windows);
				return usage_error(c->prog, "unknown or incomplete argument '%s'",
						   a);
			} else if (strcmp(a, "--ring") == 0 && !parse_count(v, 7, &n)) {
				json_object_set_new(p, "ring", json_integer(n));
				i++;
			} else if (strcmp(a, "--delay-hours") == 0 && !parse_count(v, 8760, &n)) {
				json_object_set_new(p, "delay_hours", json_integer(n));
				i++;
			} else if (strcmp(a, "--pin") == 0) {
				if (strcmp(v, "none") == 0)
					json_object_set_new(p, "pin", json_null());
				else if (!parse_count(v, 9007199254740991ll, &n) && n > 0)
					json_object_set_new(p, "pin", json_integer(n));
				else
					goto bad;
				i++;
			} else if (strcmp(a, "--window") == 0) {
				json_t *w;
				if (parse_window(v, &w))
					goto bad;
				if (!windows)
					windows = json_array();
				json_array_append_new(windows, w);
				i++;
			} else {
			bad:
				json_decref(p);
				json_decref(windows);
				return usage_error(c->prog, "bad value for '%s'", a);
			}
		}
		if (windows)
			json_object_set_new(p, "maintenance_windows", windows);
		snprintf(path, sizeof(path), "groups/%s", argv[2]);
		return call_json(c, "PUT", path, p);
	}
	return usage_error(c->prog, "%s",
			   "want list, show NAME or set NAME [--ring N] "
			   "[--delay-hours N] [--pin V|none] [--pause|--unpause] "
			   "[--approval|--no-approval] [--window HH:MM-HH:MM]... "
			   "[--no-windows]");
}

/* --- releases --- */

static int releases(struct client *c, int argc, char **argv)
{
	char path[256];

	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return call(c, "GET", "releases", NULL, 0, NULL);
	if (argc == 3 && strcmp(argv[1], "show") == 0 && valid_path_word(argv[2])) {
		snprintf(path, sizeof(path), "releases/%s", argv[2]);
		return call(c, "GET", path, NULL, 0, NULL);
	}
	if ((argc == 3 || argc == 5) && strcmp(argv[1], "create") == 0) {
		const char *kind = "content";
		struct buf file;
		int ret;
		if (argc == 5) {
			if (strcmp(argv[3], "--kind") != 0 ||
			    (strcmp(argv[4], "content") && strcmp(argv[4], "sensor")))
				return usage_error(c->prog, "%s", "--kind is content or sensor");
			kind = argv[4];
		}
		buf_init(&file, UPLOAD_MAX);
		ret = trust_file_read(argv[2], UPLOAD_MAX, &file);
		if (ret) {
			fprintf(stderr, "%s: %s: %s\n", c->prog, argv[2], strerror(-ret));
			buf_release(&file);
			return 1;
		}
		snprintf(path, sizeof(path), "releases?kind=%s", kind);
		ret = call(c, "POST", path, file.data ? file.data : "", file.len,
			   "application/octet-stream");
		buf_release(&file);
		return ret;
	}
	return usage_error(c->prog, "%s", "want list, show HASH or create BUNDLE [--kind K]");
}

/* --- rollouts --- */

/* "RING:PERCENT:BAKE ..." into a JSON array of steps. */
static json_t *plan_json(const char *text)
{
	json_t *plan = json_array();
	char word[64];
	const char *p = text;

	while (plan && *p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, " ");
		if (n >= sizeof(word))
			goto bad;
		memcpy(word, p, n);
		word[n] = '\0';
		p += n;
		char *c1 = strchr(word, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		long long ring;
		uint64_t bake = 0;
		char *end;
		if (!c1)
			goto bad;
		*c1 = '\0';
		if (c2)
			*c2 = '\0';
		if (parse_count(word, 7, &ring))
			goto bad;
		double pct = strtod(c1 + 1, &end);
		if (*end || end == c1 + 1 || !(pct > 0 && pct <= 100))
			goto bad;
		if (c2 && rollout_duration_parse(c2 + 1, &bake))
			goto bad;
		json_array_append_new(plan,
				      json_pack("{s:I,s:f,s:I}", "ring", (json_int_t)ring,
						"percent", pct, "bake_seconds", (json_int_t)bake));
	}
	if (plan && json_array_size(plan) > 0)
		return plan;
bad:
	json_decref(plan);
	return NULL;
}

static int rollouts(struct client *c, int argc, char **argv)
{
	char path[256];
	const char *act = argc >= 2 ? argv[1] : "";

	if (argc == 2 && strcmp(act, "list") == 0)
		return call(c, "GET", "rollouts", NULL, 0, NULL);
	if (argc == 3 && strcmp(act, "show") == 0 && valid_path_word(argv[2])) {
		snprintf(path, sizeof(path), "rollouts/%s", argv[2]);
		return call(c, "GET", path, NULL, 0, NULL);
	}
	if (argc >= 3 && strcmp(act, "start") == 0) {
		json_t *req = json_pack("{s:s}", "release", argv[2]), *gates = json_object();
		static const char *const gate_opts[] = {"--min-agents", "--min-bad", "--silence-k"};
		for (int i = 3; i < argc; i++) {
			const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
			size_t k;
			long long n;
			if (strcmp(a, "--force") == 0) {
				json_object_set_new(req, "force", json_true());
				continue;
			}
			if (!v)
				goto bad_start;
			if (strcmp(a, "--plan") == 0) {
				json_t *plan = plan_json(v);
				if (!plan)
					goto bad_start;
				json_object_set_new(req, "plan", plan);
				i++;
				continue;
			}
			if (strcmp(a, "--disable-gate") == 0) {
				json_t *off = json_object_get(gates, "disabled");
				if (!off) {
					off = json_array();
					json_object_set_new(gates, "disabled", off);
				}
				json_array_append_new(off, json_string(v));
				i++;
				continue;
			}
			for (k = 0; k < 3; k++)
				if (strcmp(a, gate_opts[k]) == 0)
					break;
			if (k == 3 || parse_count(v, 1000000000, &n))
				goto bad_start;
			json_object_set_new(gates, gate_opts[k] + 2 + 0, json_integer(n));
			i++;
			continue;
		bad_start:
			json_decref(req);
			json_decref(gates);
			return usage_error(c->prog, "bad or incomplete argument '%s'", a);
		}
		/* option names to the API's keys */
		json_t *g2 = json_object();
		const char *key;
		json_t *v;
		json_object_foreach(gates, key, v)
		{
			char k2[32];
			snprintf(k2, sizeof(k2), "%s", key);
			for (char *p = k2; *p; p++)
				if (*p == '-')
					*p = '_';
			json_object_set(g2, k2, v);
		}
		json_decref(gates);
		if (json_object_size(g2))
			json_object_set_new(req, "gates", g2);
		else
			json_decref(g2);
		return call_json(c, "POST", "rollouts", req);
	}
	if (argc == 3 &&
	    (strcmp(act, "pause") == 0 || strcmp(act, "resume") == 0 || strcmp(act, "halt") == 0 ||
	     strcmp(act, "rollback") == 0 || strcmp(act, "promote") == 0) &&
	    valid_path_word(argv[2])) {
		snprintf(path, sizeof(path), "rollouts/%s/%s", argv[2], act);
		return call(c, "POST", path, "{}", 2, "application/json");
	}
	if (argc == 4 && strcmp(act, "approve") == 0 && valid_path_word(argv[2])) {
		snprintf(path, sizeof(path), "rollouts/%s/approve", argv[2]);
		return call_json(c, "POST", path, json_pack("{s:s}", "group", argv[3]));
	}
	if (argc == 2 && strcmp(act, "emergency-stop") == 0)
		return call(c, "POST", "emergency-stop", "{}", 2, "application/json");
	if ((argc == 2 || argc == 3) && strcmp(act, "decisions") == 0) {
		if (argc == 3 && !valid_path_word(argv[2]))
			return usage_error(c->prog, "bad rollout id '%s'", argv[2]);
		snprintf(path, sizeof(path), "decisions%s%s", argc == 3 ? "?rollout=" : "",
			 argc == 3 ? argv[2] : "");
		return call(c, "GET", path, NULL, 0, NULL);
	}
	return usage_error(c->prog, "%s",
			   "want list, show ID, start HASH [--plan STEPS] [--force] "
			   "[--min-agents N] [--min-bad N] [--silence-k N] [--disable-gate G], "
			   "pause|resume|halt|rollback|promote ID, approve ID GROUP, "
			   "emergency-stop or decisions [ID]");
}

/* --- alerts, tokens, audit --- */

static int alerts(struct client *c, int argc, char **argv)
{
	static const char *const names[] = {"--agent", "--rule", "--since", "--until", "--limit"};
	const char *v[5] = {0};
	int from = argc >= 2 && strcmp(argv[1], "query") == 0 ? 2 : 1;
	struct buf q;
	int ret = options(c->prog, argc, argv, from, names, v, 5);

	if (ret)
		return ret;
	buf_init(&q, 4096);
	ret = buf_append_str(&q, "alerts") || query_add(&q, "agent", v[0]) ||
	      query_add(&q, "rule", v[1]) || query_add(&q, "since", v[2]) ||
	      query_add(&q, "until", v[3]) || query_add(&q, "limit", v[4]);
	ret = ret ? 1 : call(c, "GET", q.data, NULL, 0, NULL);
	buf_release(&q);
	return ret;
}

static int tokens(struct client *c, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return call(c, "GET", "tokens", NULL, 0, NULL);
	if (argc == 4 && strcmp(argv[1], "create") == 0)
		return call_json(c, "POST", "tokens",
				 json_pack("{s:s,s:s}", "name", argv[2], "role", argv[3]));
	if (argc == 3 && strcmp(argv[1], "revoke") == 0 && valid_path_word(argv[2])) {
		char path[192];
		snprintf(path, sizeof(path), "tokens/%s", argv[2]);
		return call(c, "DELETE", path, NULL, 0, NULL);
	}
	if (argc >= 2 && strcmp(argv[1], "enroll") == 0) {
		static const char *const names[] = {"--group", "--uses", "--expires"};
		const char *v[3] = {0};
		json_t *req;
		long long uses = 0;
		trust_time_t exp = 0;
		int ret = options(c->prog, argc, argv, 2, names, v, 3);
		if (ret)
			return ret;
		if ((v[1] && parse_count(v[1], 1000000000, &uses)) ||
		    (v[2] && trust_duration_parse(v[2], &exp)))
			return usage_error(c->prog, "%s", "bad --uses or --expires");
		req = json_pack("{s:s,s:I,s:I}", "group", v[0] ? v[0] : "default", "uses",
				(json_int_t)uses, "expires_seconds", (json_int_t)exp);
		return call_json(c, "POST", "enrollment-tokens", req);
	}
	return usage_error(c->prog, "%s",
			   "want list, create NAME admin|operator|viewer, or "
			   "enroll [--group G] [--uses N] [--expires DURATION]");
}

static int audit(struct client *c, int argc, char **argv)
{
	static const char *const names[] = {"--limit"};
	const char *v[1] = {0};
	struct buf q;
	int ret = options(c->prog, argc, argv, 1, names, v, 1);

	if (ret)
		return ret;
	buf_init(&q, 512);
	ret = buf_append_str(&q, "audit") || query_add(&q, "limit", v[0]);
	ret = ret ? 1 : call(c, "GET", q.data, NULL, 0, NULL);
	buf_release(&q);
	return ret;
}

/* --- dispatch --- */

static const struct {
	const char *name;
	int (*run)(struct client *c, int argc, char **argv);
	const char *usage;
} nouns[] = {
    {"agents", agents,
     "vigil agents list [--group G] [--limit N] [--after ID]\n"
     "vigil agents show ID\n"
     "vigil agents move ID GROUP\n"},
    {"groups", groups,
     "vigil groups list\n"
     "vigil groups show NAME\n"
     "vigil groups set NAME [--ring N] [--delay-hours N] [--pin VERSION|none]\n"
     "                      [--pause|--unpause] [--approval|--no-approval]\n"
     "                      [--window HH:MM-HH:MM]... [--no-windows]\n"},
    {"releases", releases,
     "vigil releases list\n"
     "vigil releases show HASH\n"
     "vigil releases create BUNDLE [--kind content|sensor]\n"},
    {"rollouts", rollouts,
     "vigil rollouts list\n"
     "vigil rollouts show ID\n"
     "vigil rollouts start HASH [--plan \"RING:PERCENT:BAKE ...\"] [--force]\n"
     "                     [--min-agents N] [--min-bad N] [--silence-k N]\n"
     "                     [--disable-gate GATE]...\n"
     "vigil rollouts pause|resume|halt|rollback|promote ID\n"
     "vigil rollouts approve ID GROUP\n"
     "vigil rollouts emergency-stop\n"
     "vigil rollouts decisions [ID]\n"},
    {"alerts", alerts,
     "vigil alerts [query] [--agent ID] [--rule RULE] [--since TIME] [--until TIME]\n"
     "                     [--limit N]   (TIME: seconds since the epoch or\n"
     "                                    YYYY-MM-DDTHH:MM:SSZ)\n"},
    {"tokens", tokens,
     "vigil tokens list\n"
     "vigil tokens create NAME admin|operator|viewer\n"
     "vigil tokens revoke ID\n"
     "vigil tokens enroll [--group G] [--uses N] [--expires DURATION]\n"},
    {"audit", audit, "vigil audit [--limit N]\n"},
};

int cmd_admin(int argc, char **argv)
{
	char prog[96];
	struct client c;
	size_t i;
	int ret;

	for (i = 0; i < sizeof(nouns) / sizeof(nouns[0]); i++)
		if (strcmp(argv[0], nouns[i].name) == 0)
			break;
	if (i == sizeof(nouns) / sizeof(nouns[0]))
		return 2;
	if (is_help(argc, argv)) {
		printf("usage: %s\n%s", nouns[i].usage, common_help);
		return 0;
	}
	snprintf(prog, sizeof(prog), "vigil %s%s%s", argv[0], argc > 1 ? " " : "",
		 argc > 1 ? argv[1] : "");
	ret = client_init(&c, prog, &argc, argv);
	if (ret)
		return ret;
	if (argc < 2 && strcmp(argv[0], "alerts") != 0 && strcmp(argv[0], "audit") != 0) {
		fprintf(stderr, "vigil %s: a subcommand is needed (try --help)\n", argv[0]);
		return 2;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "%s: libcurl cannot start\n", prog);
		return 1;
	}
	ret = nouns[i].run(&c, argc, argv);
	curl_global_cleanup();
	memset(c.token, 0, sizeof(c.token));
	return ret;
}
