/*
 * vigil-server: the control plane. Opens the store in the data directory, makes the first
 * tokens, serves the agent and admin APIs, and ticks the rollout controller until SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fleet.h"
#include "lib/trust.h"
#include "server.h"

#define CONFIG_MAX_BYTES (64u * 1024u)
#define DEFAULT_LISTEN	 "127.0.0.1:8080"
#define MAX_THREADS	 256u
/* Bytes of a PEM certificate chain or key file. */
#define TLS_FILE_MAX (256u * 1024u)

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil-server --data DIR [--listen ADDR:PORT] [--config FILE]\n"
	    "                    [--root root.json] [--threads N] [--tick SECONDS]\n"
	    "                    [--heartbeat-seconds N] [--max-body BYTES]\n"
	    "                    [--max-upload BYTES] [--tls-cert PEM --tls-key PEM] [--quiet]\n"
	    "       vigil-server --data DIR --init\n"
	    "\n"
	    "Serves the agent API and the admin API under /api/v1/ (docs/SERVER.md) from the\n"
	    "store in DIR (SQLite, DIR/vigil.db; bundles in DIR/bundles/HASH).\n"
	    "\n"
	    "  --data DIR              data directory (created mode 0700 when missing)\n"
	    "  --listen ADDR:PORT      where to listen (default " DEFAULT_LISTEN
	    "; port 0 picks one)\n"
	    "  --config FILE           JSON object with any of: listen, root, threads, tick,\n"
	    "                          heartbeat_seconds, max_body, max_upload (flags win)\n"
	    "  --root root.json        trust root releases are verified against\n"
	    "  --threads N             HTTP worker threads (default: 2 per CPU)\n"
	    "  --tick SECONDS          rollout controller period (default 1)\n"
	    "  --heartbeat-seconds N   heartbeat period told to agents (default 60)\n"
	    "  --max-body BYTES        cap of JSON request bodies (default 65536)\n"
	    "  --max-upload BYTES      cap of alert and event batches (default 16 MiB)\n"
	    "  --init                  make the first admin and enrollment tokens, print them\n"
	    "                          once and exit (a first start does the same and serves)\n"
	    "  --tls-cert PEM          serve HTTPS with this certificate (chain) ...\n"
	    "  --tls-key PEM           ... and this private key\n"
	    "  --quiet                 no request-level log lines\n");
}

struct opts {
	struct server_config cfg;
	const char *config_path;
	bool init;
	bool listen_set, root_set, threads_set, tick_set, hb_set, body_set, upload_set;
	bool cert_set, key_set;
	json_t *config; /* the config file, whose strings cfg points into */
};

static int parse_uint(const char *s, unsigned long long min, unsigned long long max,
		      unsigned long long *out)
{
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || *end || end == s || s[0] == '-' || n < min || n > max)
		return -EINVAL;
	*out = n;
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(s, &end);
	if (errno || *end || end == s || !(d >= 0.01 && d <= 3600.0))
		return -EINVAL;
	*out = d;
	return 0;
}

static int load_config(struct opts *o, char *err, size_t errlen)
{
	struct buf b;
	json_error_t jerr;
	json_t *v;
	int ret;

	buf_init(&b, CONFIG_MAX_BYTES);
	ret = trust_file_read(o->config_path, CONFIG_MAX_BYTES, &b);
	if (ret) {
		snprintf(err, errlen, "%s: %s", o->config_path, strerror(-ret));
		goto out;
	}
	o->config = json_loadb(b.data ? b.data : "", b.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(o->config)) {
		text_printable(jerr.text);
		snprintf(err, errlen, "%s: line %d: %s", o->config_path, jerr.line,
			 o->config ? "a JSON object is expected" : jerr.text);
		ret = -EINVAL;
		goto out;
	}
	const char *key;
	json_object_foreach(o->config, key, v)
	{
		bool ok = true;
		if (strcmp(key, "listen") == 0) {
			ok = json_is_string(v);
			if (ok && !o->listen_set)
				o->cfg.listen = json_string_value(v);
		} else if (strcmp(key, "root") == 0) {
			ok = json_is_string(v);
			if (ok && !o->root_set)
				o->cfg.root_path = json_string_value(v);
		} else if (strcmp(key, "tls_cert") == 0 || strcmp(key, "tls_key") == 0) {
			bool cert = key[4] == 'c';
			ok = json_is_string(v);
			if (ok && cert && !o->cert_set)
				o->cfg.tls_cert = json_string_value(v);
			if (ok && !cert && !o->key_set)
				o->cfg.tls_key = json_string_value(v);
		} else if (strcmp(key, "threads") == 0) {
			ok = json_is_integer(v) && json_integer_value(v) >= 1 &&
			     json_integer_value(v) <= MAX_THREADS;
			if (ok && !o->threads_set)
				o->cfg.threads = (unsigned)json_integer_value(v);
		} else if (strcmp(key, "tick") == 0) {
			ok = json_is_number(v) && json_number_value(v) >= 0.01 &&
			     json_number_value(v) <= 3600.0;
			if (ok && !o->tick_set)
				o->cfg.tick_seconds = json_number_value(v);
		} else if (strcmp(key, "heartbeat_seconds") == 0) {
			ok = json_is_integer(v) && json_integer_value(v) >= 1 &&
			     json_integer_value(v) <= 86400;
			if (ok && !o->hb_set)
				o->cfg.heartbeat_seconds = (unsigned)json_integer_value(v);
		} else if (strcmp(key, "max_body") == 0 || strcmp(key, "max_upload") == 0) {
			bool body = key[4] == 'b';
			ok = json_is_integer(v) && json_integer_value(v) >= 1024 &&
			     json_integer_value(v) <= (json_int_t)1 << 30;
			if (ok && body && !o->body_set)
				o->cfg.max_body = (size_t)json_integer_value(v);
			if (ok && !body && !o->upload_set)
				o->cfg.max_upload = (size_t)json_integer_value(v);
		} else {
			snprintf(err, errlen, "%s: unknown key \"%s\"", o->config_path, key);
			ret = -EINVAL;
			goto out;
		}
		if (!ok) {
			snprintf(err, errlen, "%s: \"%s\" has a wrong type or is out of range",
				 o->config_path, key);
			ret = -EINVAL;
			goto out;
		}
	}
out:
	buf_release(&b);
	return ret;
}

/* Returns 0, or 2 after printing the usage error. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	unsigned long long n;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	memset(o, 0, sizeof(*o));
	o->cfg.listen = DEFAULT_LISTEN;
	o->cfg.threads = cpus > 0 && cpus < 64 ? (unsigned)cpus * 2 : 4;
	o->cfg.tick_seconds = 1.0;
	o->cfg.heartbeat_seconds = SERVER_DEFAULT_HEARTBEAT_SECONDS;
	o->cfg.max_body = SERVER_DEFAULT_MAX_BODY;
	o->cfg.max_upload = SERVER_DEFAULT_MAX_UPLOAD;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;

		if (strcmp(a, "--init") == 0) {
			o->init = true;
			takes = false;
		} else if (strcmp(a, "--quiet") == 0) {
			o->cfg.quiet = true;
			takes = false;
		} else if (!v && (strcmp(a, "--data") == 0 || strcmp(a, "--listen") == 0 ||
				  strcmp(a, "--config") == 0 || strcmp(a, "--root") == 0 ||
				  strcmp(a, "--threads") == 0 || strcmp(a, "--tick") == 0 ||
				  strcmp(a, "--heartbeat-seconds") == 0 ||
				  strcmp(a, "--max-body") == 0 || strcmp(a, "--max-upload") == 0 ||
				  strcmp(a, "--tls-cert") == 0 || strcmp(a, "--tls-key") == 0)) {
			fprintf(stderr, "vigil-server: %s needs a value\n", a);
			return 2;
		} else if (strcmp(a, "--data") == 0) {
			o->cfg.data_dir = v;
		} else if (strcmp(a, "--listen") == 0) {
			o->cfg.listen = v;
			o->listen_set = true;
		} else if (strcmp(a, "--config") == 0) {
			o->config_path = v;
		} else if (strcmp(a, "--root") == 0) {
			o->cfg.root_path = v;
			o->root_set = true;
		} else if (strcmp(a, "--tls-cert") == 0) {
			o->cfg.tls_cert = v;
			o->cert_set = true;
		} else if (strcmp(a, "--tls-key") == 0) {
			o->cfg.tls_key = v;
			o->key_set = true;
		} else if (strcmp(a, "--threads") == 0) {
			if (parse_uint(v, 1, MAX_THREADS, &n)) {
				fprintf(stderr, "vigil-server: --threads wants 1..%u\n",
					MAX_THREADS);
				return 2;
			}
			o->cfg.threads = (unsigned)n;
			o->threads_set = true;
		} else if (strcmp(a, "--tick") == 0) {
			if (parse_seconds(v, &o->cfg.tick_seconds)) {
				fprintf(stderr, "vigil-server: --tick wants 0.01..3600 seconds\n");
				return 2;
			}
			o->tick_set = true;
		} else if (strcmp(a, "--heartbeat-seconds") == 0) {
			if (parse_uint(v, 1, 86400, &n)) {
				fprintf(stderr,
					"vigil-server: --heartbeat-seconds wants 1..86400\n");
				return 2;
			}
			o->cfg.heartbeat_seconds = (unsigned)n;
			o->hb_set = true;
		} else if (strcmp(a, "--max-body") == 0 || strcmp(a, "--max-upload") == 0) {
			if (parse_uint(v, 1024, 1ull << 30, &n)) {
				fprintf(stderr, "vigil-server: %s wants 1024..%llu bytes\n", a,
					1ull << 30);
				return 2;
			}
			if (a[6] == 'b') {
				o->cfg.max_body = (size_t)n;
				o->body_set = true;
			} else {
				o->cfg.max_upload = (size_t)n;
				o->upload_set = true;
			}
		} else {
			fprintf(stderr, "vigil-server: unknown argument '%s' (try --help)\n", a);
			return 2;
		}
		if (takes)
			i++;
	}
	if (!o->cfg.data_dir) {
		fprintf(stderr, "vigil-server: --data DIR is required (try --help)\n");
		return 2;
	}
	return 0;
}

/* Creates DIR and DIR/bundles (0700, 0755) when missing; refuses a symbolic link. */
static int data_dir_open(struct server *srv, char *err, size_t errlen)
{
	const char *dir = srv->cfg.data_dir;
	struct stat sb;
	int n;

	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -errno;
	}
	if (lstat(dir, &sb) || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", dir);
		return -ENOTDIR;
	}
	n = snprintf(srv->bundles_dir, sizeof(srv->bundles_dir), "%s/bundles", dir);
	if (n < 0 || (size_t)n >= sizeof(srv->bundles_dir)) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -ENAMETOOLONG;
	}
	if (mkdir(srv->bundles_dir, 0755) && errno != EEXIST) {
		snprintf(err, errlen, "%.400s: %s", srv->bundles_dir, strerror(errno));
		return -errno;
	}
	if (lstat(srv->bundles_dir, &sb) || !S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "%.400s: not a directory", srv->bundles_dir);
		return -ENOTDIR;
	}
	return 0;
}

static int64_t now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

int main(int argc, char **argv)
{
	struct server srv;
	struct opts o;
	sigset_t sigs;
	char err[512];
	int ret, status = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("vigil-server %s\n", SERVER_VERSION);
			return 0;
		}
	}
	ret = parse_args(argc, argv, &o);
	if (ret)
		return ret;
	if (o.config_path && load_config(&o, err, sizeof(err))) {
		fprintf(stderr, "vigil-server: %s\n", err);
		json_decref(o.config);
		return 2;
	}
	if (!o.cfg.tls_cert != !o.cfg.tls_key) {
		fprintf(stderr, "vigil-server: --tls-cert and --tls-key go together\n");
		json_decref(o.config);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "vigil-server: libsodium cannot start\n");
		json_decref(o.config);
		return 1;
	}
	memset(&srv, 0, sizeof(srv));
	srv.cfg = o.cfg;
	buf_init(&srv.tls_cert, TLS_FILE_MAX);
	buf_init(&srv.tls_key, TLS_FILE_MAX);
	signal(SIGPIPE, SIG_IGN);
	/* the signals that stop the server are taken by sigtimedwait in the main loop */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	if (data_dir_open(&srv, err, sizeof(err)) ||
	    store_sqlite_open(srv.cfg.data_dir, &srv.store, err, sizeof(err))) {
		fprintf(stderr, "vigil-server: %s\n", err);
		goto out;
	}
	if (o.init) {
		ret = auth_bootstrap(&srv, true, stdout, now_seconds());
		if (ret < 0) {
			fprintf(stderr, "vigil-server: cannot make the first tokens (%s)\n",
				strerror(-ret));
			goto out;
		}
		if (ret == 0) {
			fprintf(stderr,
				"vigil-server: %s is already initialised: its tokens were "
				"shown once\n",
				srv.cfg.data_dir);
			goto out;
		}
		status = 0;
		goto out;
	}
	if (srv.cfg.root_path && trust_root_load(srv.cfg.root_path, &srv.root, err, sizeof(err))) {
		fprintf(stderr, "vigil-server: %s: %s\n", srv.cfg.root_path, err);
		goto out;
	}
	if (srv.cfg.tls_cert) {
		int e = trust_file_read(srv.cfg.tls_cert, TLS_FILE_MAX, &srv.tls_cert);
		const char *bad = e ? srv.cfg.tls_cert : NULL;
		if (!e) {
			e = trust_file_read(srv.cfg.tls_key, TLS_FILE_MAX, &srv.tls_key);
			bad = e ? srv.cfg.tls_key : NULL;
		}
		if (e) {
			fprintf(stderr, "vigil-server: %s: %s\n", bad, strerror(-e));
			goto out;
		}
	}
	if (fleet_open(srv.store, srv.cfg.heartbeat_seconds, now_seconds(), &srv.fleet, err,
		       sizeof(err))) {
		fprintf(stderr, "vigil-server: %s\n", err);
		goto out;
	}
	if (http_start(&srv, err, sizeof(err))) {
		fprintf(stderr, "vigil-server: %s\n", err);
		goto out;
	}
	/* the first tokens of a new store once the server is sure to run: tokens printed by a
	 * start that then failed would be lost with its output */
	ret = auth_bootstrap(&srv, false, stdout, now_seconds());
	if (ret < 0) {
		fprintf(stderr, "vigil-server: cannot make the first tokens (%s)\n",
			strerror(-ret));
		goto out;
	}
	fprintf(stderr, "vigil-server: listening on port %u (%s), store %s in %s, %u threads\n",
		srv.port, srv.tls_cert.len ? "https" : "http", srv.store->ops->name,
		srv.cfg.data_dir, srv.cfg.threads);
	fflush(stderr);
	for (;;) {
		struct timespec ts;
		double t = srv.cfg.tick_seconds;
		ts.tv_sec = (time_t)t;
		ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
		int sig = sigtimedwait(&sigs, NULL, &ts);
		if (sig > 0) {
			fprintf(stderr, "vigil-server: signal %d, stopping\n", sig);
			break;
		}
		fleet_tick(srv.fleet, now_seconds());
	}
	status = 0;
out:
	http_stop(&srv);
	fleet_free(srv.fleet);
	trust_root_free(srv.root);
	store_close(srv.store);
	json_decref(o.config);
	buf_release(&srv.tls_cert);
	if (srv.tls_key.data)
		sodium_memzero(srv.tls_key.data, srv.tls_key.len);
	buf_release(&srv.tls_key);
	if (status == 0 && !o.init)
		fprintf(stderr, "vigil-server: stopped\n");
	return status;
}
