/*
 * Sensor updates: the start-up exec into the staged build, the worker that downloads, checks,
 * stages and self-tests a new build, and the trial that reverts a build crashing the agent.
 * See sensor.h and docs/sensor-update.md.
 */
#include "sensor.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../lib/bundle.h"
#include "../lib/registry.h"
#include "../lib/sensor_image.h"
#include "../lib/trust.h"
#include "agent.h"
#include "selftest.h"
#include "sensor_state.h"
#include "state.h"
#include "uplink_proto.h"

#ifndef VIGIL_SENSOR_BUILD
#define VIGIL_SENSOR_BUILD 1
#endif
#define STR2(x) #x
#define STR(x)	STR2(x)

#define SENSOR_DIR	  "sensor"
#define SENSOR_STATE_FILE "state.json"
#define SENSOR_STATE_TMP  ".state.json.tmp"
#define SENSOR_CORRUPT	  "state.json.corrupt"
/* The user the self-test child runs as when the agent is root. */
#define SENSOR_NOBODY 65534
/* Rejected offers remembered, so a refused build is not downloaded at every heartbeat. */
#define SENSOR_MAX_REJECTED 16u

/*
 * The build stamp: found and checked by sensor_image_check() in the executable's bytes, and
 * read back at run time (through a barrier, so the number comes from the file as loaded).
 */
__attribute__((used)) const char sensor_stamp[SENSOR_STAMP_BYTES] =
    SENSOR_STAMP_PREFIX STR(VIGIL_SENSOR_BUILD);

struct sensor {
	struct agent *agent;
	struct sensor_options opt;
	char state_dir[PATH_MAX];
	char server[512];
	char cacert[PATH_MAX];
	int dirfd; /* STATE/sensor */
	uint64_t own;
	struct trust_root *root;
	double started; /* monotonic seconds */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t wake;
	bool stop;
	struct sensor_state st;
	bool has_offer;
	uint64_t offer_version;
	char offer_hash[65];
	int64_t offer_size;
	char offer_url[sizeof(UPLINK_URL_PREFIX) + 64];
	uint64_t pulled; /* main loop: a build the server pulled; 0 none */
	uint64_t ready;	 /* staged and self-tested, for the main loop; 0 none */
	char ready_hash[SENSOR_HASH_HEX];
	bool exec_pending;
	char rejected[SENSOR_MAX_REJECTED][65]; /* offers refused, by hash */
	size_t n_rejected;
	uint64_t downloads, rejections;
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t sensor_own_build(void)
{
	const char *p = sensor_stamp;
	uint64_t build = 0;

	__asm__ volatile("" : "+r"(p));
	if (sensor_stamp_parse(p, SENSOR_STAMP_BYTES, &build) < 0)
		return 0;
	return build;
}

/* --- files --- */

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Replaces @name in @dirfd with @data: temporary file, fsync, rename, fsync of the dir. */
static int replace_at(int dirfd, const char *name, const char *tmp, const void *data, size_t len,
		      mode_t mode)
{
	int fd, ret;

	unlinkat(dirfd, tmp, 0);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	ret = write_all(fd, data, len);
	if (!ret && fchmod(fd, mode) < 0)
		ret = -errno;
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && !ret)
		ret = -errno;
	if (!ret && renameat(dirfd, tmp, dirfd, name) < 0)
		ret = -errno;
	if (ret) {
		unlinkat(dirfd, tmp, 0);
		return ret;
	}
	return fsync(dirfd) < 0 ? -errno : 0;
}

/* Opens (creating it 0700) STATE/sensor, with the state directory's checks. */
static int open_sensor_dir(const char *state_dir, bool create, int *out, char *err, size_t errlen)
{
	int dirfd = -1, fd, ret;

	ret = state_dir_open(state_dir, create, &dirfd, NULL, err, errlen);
	if (ret < 0)
		return ret;
	if (create && mkdirat(dirfd, SENSOR_DIR, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "%s/" SENSOR_DIR ": %s", state_dir, strerror(errno));
		close(dirfd);
		return ret;
	}
	fd = openat(dirfd, SENSOR_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(dirfd);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s/" SENSOR_DIR ": %s", state_dir, strerror(errno));
		return ret;
	}
	ret = state_dir_check(fd, SENSOR_DIR, err, errlen);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

/* Reads the sensor state; a corrupt one is moved aside (when @move_aside) and read as empty. */
static int load_state(int fd, bool move_aside, struct sensor_state *st, char *err, size_t errlen)
{
	struct buf b;
	int ret;

	sensor_state_init(st);
	buf_init(&b, SENSOR_STATE_MAX_BYTES + 1);
	ret = state_read_file_at(fd, SENSOR_STATE_FILE, SENSOR_STATE_MAX_BYTES, &b);
	if (ret == -ENOENT) {
		ret = 0;
		goto out;
	}
	if (ret == 0)
		ret = sensor_state_parse(b.data ? b.data : "", b.len, st, err, errlen);
	else
		snprintf(err, errlen, "sensor state: %s", strerror(-ret));
	if (ret && move_aside)
		renameat(fd, SENSOR_STATE_FILE, fd, SENSOR_CORRUPT);
out:
	buf_release(&b);
	return ret;
}

static int save_state(int fd, const struct sensor_state *st)
{
	struct buf b;
	int ret;

	buf_init(&b, SENSOR_STATE_MAX_BYTES);
	ret = sensor_state_write_json(st, &b);
	if (!ret)
		ret = buf_append_char(&b, '\n');
	if (!ret)
		ret = replace_at(fd, SENSOR_STATE_FILE, SENSOR_STATE_TMP, b.data, b.len, 0600);
	buf_release(&b);
	return ret;
}

static void hash_hex(const void *data, size_t len, char out[SENSOR_HASH_HEX])
{
	uint8_t digest[32];
	crypto_generichash(digest, sizeof(digest), data, len, NULL, 0);
	sodium_bin2hex(out, SENSOR_HASH_HEX, digest, sizeof(digest));
}

/*
 * Opens STATE/sensor/BUILD/vigil-agent (a regular file, no symbolic link, at most the bundle
 * file cap) and checks that the bytes read through that descriptor hash to the recorded hash,
 * so what runs is what was checked. Returns the descriptor (O_CLOEXEC) or -errno with a reason
 * in @err.
 */
static int open_staged(int fd, const struct sensor_slot *slot, char *err, size_t errlen)
{
	crypto_generichash_state h;
	uint8_t digest[32], chunk[65536];
	char name[64], hex[SENSOR_HASH_HEX];
	struct stat sb;
	off_t off = 0;
	int exe, ret;

	snprintf(name, sizeof(name), "%" PRIu64 "/" BUNDLE_SENSOR_FILE, slot->build);
	exe = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (exe < 0) {
		ret = -errno;
		snprintf(err, errlen, "staged build %" PRIu64 ": %s", slot->build, strerror(errno));
		return ret;
	}
	if (fstat(exe, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > BUNDLE_MAX_FILE_BYTES) {
		snprintf(err, errlen,
			 "staged build %" PRIu64 " is not a regular file of at most %u bytes",
			 slot->build, BUNDLE_MAX_FILE_BYTES);
		close(exe);
		return -EINVAL;
	}
	crypto_generichash_init(&h, NULL, 0, sizeof(digest));
	for (;;) {
		ssize_t n = pread(exe, chunk, sizeof(chunk), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			snprintf(err, errlen, "staged build %" PRIu64 ": %s", slot->build,
				 strerror(errno));
			close(exe);
			return ret;
		}
		if (n == 0)
			break;
		crypto_generichash_update(&h, chunk, (size_t)n);
		off += n;
		if (off > BUNDLE_MAX_FILE_BYTES)
			break;
	}
	crypto_generichash_final(&h, digest, sizeof(digest));
	sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
	if (off > BUNDLE_MAX_FILE_BYTES || strcmp(hex, slot->hash) != 0) {
		snprintf(err, errlen, "staged build %" PRIu64 " does not match its recorded hash",
			 slot->build);
		close(exe);
		return -EBADMSG;
	}
	return exe;
}

/*
 * Re-executes into the staged build @slot (or, with none, the installed executable) with
 * @argv, marking the start as the agent's own. Returns only on failure.
 */
static int exec_into(int fd, const struct sensor_slot *slot, char **argv, char *err, size_t errlen)
{
	char mark[32];
	int exe;

	if (!slot->present) {
		const char *installed = getenv(SENSOR_ENV_INSTALLED);
		if (!installed || installed[0] != '/') {
			snprintf(err, errlen, "the installed executable is not known");
			return -ENOENT;
		}
		setenv(SENSOR_ENV_EXEC, "installed", 1);
		execv(installed, argv);
		snprintf(err, errlen, "exec %s: %s", installed, strerror(errno));
		return -errno;
	}
	exe = open_staged(fd, slot, err, errlen);
	if (exe < 0)
		return exe;
	snprintf(mark, sizeof(mark), "%" PRIu64, slot->build);
	setenv(SENSOR_ENV_EXEC, mark, 1);
	fflush(NULL);
	fexecve(exe, argv, environ);
	int ret = -errno;
	snprintf(err, errlen, "exec of staged build %" PRIu64 ": %s", slot->build, strerror(errno));
	close(exe);
	unsetenv(SENSOR_ENV_EXEC);
	return ret;
}

/* --- the start --- */

int sensor_boot(const char *state_dir, unsigned trial_starts, char **argv, char *err, size_t errlen)
{
	const char *mark = getenv(SENSOR_ENV_EXEC);
	uint64_t own = sensor_own_build();
	struct sensor_state *st;
	char why[512], path[PATH_MAX];
	int fd = -1, ret;

	if (mark) {
		/* started by the agent's own exec: its start was counted before the exec */
		char *end;
		unsigned long long want = strtoull(mark, &end, 10);
		if (*end == '\0' && want != own)
			fprintf(stderr,
				"vigil-agent: sensor: started as build %llu but this is build "
				"%" PRIu64 "\n",
				want, own);
		unsetenv(SENSOR_ENV_EXEC);
		return 0;
	}
	/* a fresh start is the installed executable's: remembered to return to it */
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n > 0 && path[0] == '/') {
		path[n] = '\0';
		setenv(SENSOR_ENV_INSTALLED, path, 1);
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = open_sensor_dir(state_dir, true, &fd, err, errlen);
	if (ret < 0)
		goto out;
	ret = load_state(fd, true, st, why, sizeof(why));
	if (ret < 0) {
		snprintf(err, errlen, "%s (moved aside; running the installed build %" PRIu64 ")",
			 why, own);
		goto out;
	}
	for (int tries = 0; tries < 3; tries++) {
		bool changed = false;
		uint64_t reverts = st->crash_loop_reverts;
		uint64_t target = sensor_state_boot(st, own, trial_starts, time(NULL), &changed);
		if (st->crash_loop_reverts != reverts)
			fprintf(stderr, "vigil-agent: sensor build %" PRIu64 " quarantined (%s)\n",
				st->quarantined[st->n_quarantined - 1].build,
				st->quarantined[st->n_quarantined - 1].reason);
		if (changed && (ret = save_state(fd, st)) < 0) {
			snprintf(err, errlen, "cannot save the sensor state: %s", strerror(-ret));
			goto out;
		}
		if (!target)
			goto out;
		fprintf(stderr, "vigil-agent: sensor: running staged build %" PRIu64 "%s\n", target,
			st->trial ? " (on trial)" : "");
		ret = exec_into(fd, &st->current, argv, why, sizeof(why));
		/* it could not start: quarantined, and the good build before it is tried */
		fprintf(stderr, "vigil-agent: sensor: %s\n", why);
		sensor_state_quarantine(st, target, why, time(NULL));
		sensor_state_note(st, target, "start", "reverted", why, time(NULL));
		st->current = st->previous;
		memset(&st->previous, 0, sizeof(st->previous));
		st->trial = false;
		if ((ret = save_state(fd, st)) < 0) {
			snprintf(err, errlen, "cannot save the sensor state: %s", strerror(-ret));
			goto out;
		}
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(st);
	return ret;
}

int sensor_self_test(FILE *out)
{
	struct selftest_result res = {0};
	struct ruleset *rs = NULL;
	char err[512];
	int ret;

	ret = ruleset_load_sources(selftest_builtin_source(), 1, &rs, err, sizeof(err));
	if (!ret)
		ret = selftest_run(rs, &res, err, sizeof(err));
	ruleset_free(rs);
	if (ret) {
		fprintf(out, "{\"self_test\":\"failed\",\"sensor_build\":%" PRIu64 "}\n",
			sensor_own_build());
		fprintf(stderr, "vigil-agent: self-test failed: %s\n", err);
		return 1;
	}
	fprintf(out,
		"{\"self_test\":\"ok\",\"sensor_build\":%" PRIu64 ",\"version\":\"%s\","
		"\"schema_version\":%d,\"corpus_events\":%u}\n",
		sensor_own_build(), AGENT_VERSION, SCHEMA_VERSION, res.corpus_events);
	return fflush(out) == 0 ? 0 : 1;
}

/* --- the worker: download, verify, stage, self-test --- */

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	size_t bytes;
	if (size_mul(size, n, &bytes) || buf_append(ctx, p, bytes))
		return 0;
	return bytes;
}

static void reject(struct sensor *s, uint64_t build, const char *hash, const char *step,
		   const char *reason)
{
	fprintf(stderr, "vigil-agent: sensor build %" PRIu64 " refused at %s: %s\n", build, step,
		reason);
	pthread_mutex_lock(&s->lock);
	if (s->n_rejected == SENSOR_MAX_REJECTED) {
		memmove(s->rejected[0], s->rejected[1],
			sizeof(s->rejected[0]) * (SENSOR_MAX_REJECTED - 1));
		s->n_rejected--;
	}
	snprintf(s->rejected[s->n_rejected++], sizeof(s->rejected[0]), "%s", hash);
	s->rejections++;
	sensor_state_note(&s->st, build, step, "rejected", reason, time(NULL));
	save_state(s->dirfd, &s->st);
	pthread_mutex_unlock(&s->lock);
}

static int download(struct sensor *s, CURL *h, const char *url_path, struct buf *out)
{
	char url[1024];
	long status = -1;

	snprintf(url, sizeof(url), "%s%s", s->server, url_path);
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 300000L);
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)BUNDLE_MAX_BYTES);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (s->cacert[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, s->cacert);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	return status == 200 ? 0 : -EIO;
}

/* Writes STATE/sensor/BUILD/vigil-agent (0755, in a 0700 directory), durably. */
static int stage(struct sensor *s, uint64_t build, const struct bundle_file *exe, char *err,
		 size_t errlen)
{
	char name[32];
	int dir, ret;

	snprintf(name, sizeof(name), "%" PRIu64, build);
	if (mkdirat(s->dirfd, name, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot make %s: %s", name, strerror(errno));
		return -errno;
	}
	dir = openat(s->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open %s: %s", name, strerror(errno));
		return ret;
	}
	ret = state_dir_check(dir, name, err, errlen);
	if (!ret) {
		ret = replace_at(dir, BUNDLE_SENSOR_FILE, "." BUNDLE_SENSOR_FILE ".tmp", exe->data,
				 exe->len, 0755);
		if (ret)
			snprintf(err, errlen, "cannot write the executable: %s", strerror(-ret));
	}
	if (!ret && fsync(s->dirfd) < 0)
		ret = -errno;
	close(dir);
	return ret;
}

/*
 * Runs the staged executable @exe (a descriptor) with --self-test in a child: no network, no
 * privileges (nobody when root, no new privileges), small rlimits, a wall-clock timeout. Its
 * report must say ok and name @build. Returns 0 or -errno with a reason in @err.
 */
static int self_test(struct sensor *s, int exe, uint64_t build, char *err, size_t errlen)
{
	char *const argv[] = {"vigil-agent", "--self-test", NULL};
	char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
	char report[SENSOR_SELF_TEST_REPORT + 1];
	size_t got = 0;
	int pipefd[2], devnull, status = 0, ret = 0;
	bool killed = false;
	pid_t pid;

	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot start the self-test: %s", strerror(errno));
		if (devnull >= 0)
			close(devnull);
		return ret;
	}
	pid = fork();
	if (pid == 0) {
		/* the child of a threaded process: system calls only until the exec */
		struct rlimit cpu = {20, 20}, none = {0, 0}, files = {16, 16};
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(devnull, 0) < 0 || dup2(pipefd[1], 1) < 0 || dup2(exe, 3) < 0)
			_exit(126);
		close_range(4, ~0u, 0);
		/* as root the self-test never gets the host's network */
		if (unshare(CLONE_NEWNET) < 0 && geteuid() == 0)
			_exit(126);
		setrlimit(RLIMIT_CPU, &cpu);
		setrlimit(RLIMIT_CORE, &none);
		setrlimit(RLIMIT_FSIZE, &none);
		setrlimit(RLIMIT_NOFILE, &files);
		if (geteuid() == 0 && (setgroups(0, NULL) < 0 || setgid(SENSOR_NOBODY) < 0 ||
				       setuid(SENSOR_NOBODY) < 0))
			_exit(126);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			_exit(126);
		fexecve(3, argv, envp);
		_exit(127);
	}
	close(pipefd[1]);
	close(devnull);
	if (pid < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot fork the self-test: %s", strerror(errno));
		close(pipefd[0]);
		return ret;
	}
	double deadline = mono() + s->opt.self_test_timeout;
	for (;;) {
		double left = deadline - mono();
		struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
		if (left <= 0) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		int n = poll(&p, 1, (int)(left * 1000) + 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		ssize_t r = read(pipefd[0], report + got, SENSOR_SELF_TEST_REPORT - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
		if (got == SENSOR_SELF_TEST_REPORT)
			break;
	}
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	report[got] = '\0';
	if (killed) {
		snprintf(err, errlen, "self-test did not finish within %.0f s",
			 s->opt.self_test_timeout);
		return -ETIMEDOUT;
	}
	if (WIFSIGNALED(status)) {
		snprintf(err, errlen, "self-test killed by signal %d", WTERMSIG(status));
		return -ECHILD;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "self-test exited with status %d", WEXITSTATUS(status));
		return -ECHILD;
	}
	char want[96];
	snprintf(want, sizeof(want), "{\"self_test\":\"ok\",\"sensor_build\":%" PRIu64 ",", build);
	if (strncmp(report, want, strlen(want)) != 0) {
		snprintf(err, errlen, "self-test did not report build %" PRIu64 " ok", build);
		return -EBADMSG;
	}
	return 0;
}

/* Takes one offered build through download, verify, stage and self-test. */
static void activate(struct sensor *s, CURL *h, uint64_t version, const char *hash, int64_t size,
		     const char *url)
{
	struct bundle_verify_options vo = {.now = (trust_time_t)time(NULL),
					   .schema_version = SCHEMA_VERSION,
					   .agent_version = AGENT_VERSION,
					   .kind = BUNDLE_SENSOR};
	const struct bundle_manifest *m;
	const struct bundle_file *exe;
	struct bundle *b = NULL;
	struct buf data;
	char why[512], hex[SENSOR_HASH_HEX], name[64];
	uint64_t stamped = 0;
	int fd = -1;

	buf_init(&data, BUNDLE_MAX_BYTES);
	fprintf(stderr, "vigil-agent: sensor: fetching build %" PRIu64 "\n", version);
	if (size <= 0 || (uint64_t)size > BUNDLE_MAX_BYTES || download(s, h, url, &data) < 0 ||
	    data.len != (size_t)size) {
		/* the server or the network: tried again at a later heartbeat */
		fprintf(stderr, "vigil-agent: sensor: build %" PRIu64 " could not be fetched\n",
			version);
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	s->downloads++;
	pthread_mutex_unlock(&s->lock);
	hash_hex(data.data, data.len, hex);
	if (strcmp(hex, hash) != 0) {
		reject(s, version, hash, "download", "the file does not match its hash");
		goto out;
	}
	if (bundle_verify(s->root, data.data, data.len, &vo, &b, why, sizeof(why)) < 0) {
		reject(s, version, hash, "verify", why);
		goto out;
	}
	m = bundle_manifest(b);
	if (m->version != version) {
		reject(s, version, hash, "verify", "the bundle is another build than offered");
		goto out;
	}
	if (bundle_check_version(m, true, s->own, why, sizeof(why)) < 0) {
		reject(s, version, hash, "version", why);
		goto out;
	}
	exe = bundle_file(b, 0);
	if (sensor_image_check(exe->data, exe->len, false, &stamped, why, sizeof(why)) < 0) {
		reject(s, version, hash, "verify", why);
		goto out;
	}
	if (stamped != version) {
		snprintf(why, sizeof(why), "the executable is build %" PRIu64, stamped);
		reject(s, version, hash, "verify", why);
		goto out;
	}
	if (stage(s, version, exe, why, sizeof(why)) < 0) {
		reject(s, version, hash, "stage", why);
		goto out;
	}
	struct sensor_slot slot = {.present = true, .build = version};
	hash_hex(exe->data, exe->len, slot.hash);
	fd = open_staged(s->dirfd, &slot, why, sizeof(why));
	if (fd < 0) {
		reject(s, version, hash, "stage", why);
		goto out;
	}
	if (self_test(s, fd, version, why, sizeof(why)) < 0) {
		reject(s, version, hash, "self-test", why);
		snprintf(name, sizeof(name), "%" PRIu64 "/" BUNDLE_SENSOR_FILE, version);
		unlinkat(s->dirfd, name, 0);
		goto out;
	}
	fprintf(stderr, "vigil-agent: sensor build %" PRIu64 " staged and self-tested\n", version);
	pthread_mutex_lock(&s->lock);
	s->ready = version;
	memcpy(s->ready_hash, slot.hash, sizeof(s->ready_hash));
	pthread_mutex_unlock(&s->lock);
out:
	if (fd >= 0)
		close(fd);
	bundle_free(b);
	buf_release(&data);
}

static bool rejected(const struct sensor *s, const char *hash)
{
	for (size_t i = 0; i < s->n_rejected; i++)
		if (strcmp(s->rejected[i], hash) == 0)
			return true;
	return false;
}

static void *run(void *p)
{
	struct sensor *s = p;
	CURL *h = curl_easy_init();

	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		/* one build at a time: none while one is on trial or waiting for the switch */
		bool busy = s->ready || s->exec_pending || (s->st.trial && s->st.current.present);
		if (!s->has_offer || busy || !h) {
			pthread_cond_wait(&s->wake, &s->lock);
			continue;
		}
		uint64_t version = s->offer_version;
		char hash[65], url[sizeof(s->offer_url)];
		int64_t size = s->offer_size;
		memcpy(hash, s->offer_hash, sizeof(hash));
		memcpy(url, s->offer_url, sizeof(url));
		s->has_offer = false;
		pthread_mutex_unlock(&s->lock);
		activate(s, h, version, hash, size, url);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	curl_easy_cleanup(h);
	return NULL;
}

void sensor_offer(struct sensor *s, const struct uplink_content *c)
{
	if (!s || !c->present)
		return;
	pthread_mutex_lock(&s->lock);
	if (c->pulled)
		s->pulled = c->pulled;
	if (c->has_version && c->downloadable && c->version != s->own &&
	    !sensor_state_quarantined(&s->st, c->version) && !rejected(s, c->hash) &&
	    !(s->st.current.present && s->st.current.build == c->version) && s->root &&
	    s->server[0]) {
		s->has_offer = true;
		s->offer_version = c->version;
		memcpy(s->offer_hash, c->hash, sizeof(s->offer_hash));
		s->offer_size = c->size;
		memcpy(s->offer_url, c->url, sizeof(s->offer_url));
		pthread_cond_signal(&s->wake);
	}
	pthread_mutex_unlock(&s->lock);
}

void sensor_report(struct sensor *s, uint64_t *build, uint64_t *reverts, uint64_t *q, size_t max,
		   size_t *n)
{
	*n = 0;
	*build = s ? s->own : sensor_own_build();
	*reverts = 0;
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	*reverts = s->st.crash_loop_reverts;
	/* the newest first, when more are held than the heartbeat carries */
	for (size_t i = s->st.n_quarantined; i-- > 0 && *n < max;)
		q[(*n)++] = s->st.quarantined[i].build;
	pthread_mutex_unlock(&s->lock);
}

/* --- the main loop's part --- */

/* Removes staged builds other than current and previous (and left-over temporary files). */
static void prune(struct sensor *s)
{
	int fd = dup(s->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((e = readdir(d))) {
		char *end, name[64];
		unsigned long long b = strtoull(e->d_name, &end, 10);
		if (e->d_name[0] < '1' || e->d_name[0] > '9' || *end != '\0' ||
		    (s->st.current.present && s->st.current.build == b) ||
		    (s->st.previous.present && s->st.previous.build == b))
			continue;
		snprintf(name, sizeof(name), "%llu/" BUNDLE_SENSOR_FILE, b);
		unlinkat(s->dirfd, name, 0);
		snprintf(name, sizeof(name), "%llu/." BUNDLE_SENSOR_FILE ".tmp", b);
		unlinkat(s->dirfd, name, 0);
		snprintf(name, sizeof(name), "%llu", b);
		unlinkat(s->dirfd, name, AT_REMOVEDIR);
	}
	closedir(d);
}

/* True unless the content state says detection liveness failed last. */
static bool liveness_intact(struct sensor *s)
{
	struct agent_state *cst = calloc(1, sizeof(*cst));
	char why[256];
	int dirfd = -1;
	bool ok = true;

	if (cst && state_dir_open(s->state_dir, false, &dirfd, NULL, why, sizeof(why)) == 0 &&
	    state_load(dirfd, false, cst, why, sizeof(why)) == 0)
		ok = cst->liveness_last != 0;
	if (dirfd >= 0)
		close(dirfd);
	free(cst);
	return ok;
}

void sensor_tick(struct sensor *s)
{
	int64_t now = time(NULL);

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->exec_pending)
		goto out;
	if (s->pulled) {
		uint64_t p = s->pulled;
		s->pulled = 0;
		if (s->st.current.present && s->st.current.build == p) {
			sensor_state_quarantine(&s->st, p, "pulled by the server", now);
			sensor_state_note(&s->st, p, "pull", "pulled", "pulled by the server", now);
			s->st.current = s->st.previous;
			memset(&s->st.previous, 0, sizeof(s->st.previous));
			s->st.trial = false;
			s->st.since = now;
			save_state(s->dirfd, &s->st);
			fprintf(stderr,
				"vigil-agent: sensor build %" PRIu64
				" quarantined (pulled by the server)\n",
				p);
			if (s->own == p)
				s->exec_pending = true;
		} else if (s->st.previous.present && s->st.previous.build == p) {
			sensor_state_quarantine(&s->st, p, "pulled by the server", now);
			memset(&s->st.previous, 0, sizeof(s->st.previous));
			save_state(s->dirfd, &s->st);
		}
		if (s->exec_pending)
			goto out;
	}
	if (s->ready) {
		uint64_t n = s->ready;
		s->ready = 0;
		/* the good build running now is where a crash loop of the new one returns */
		if (s->st.current.present && s->st.current.build == s->own && !s->st.trial)
			s->st.previous = s->st.current;
		else
			memset(&s->st.previous, 0, sizeof(s->st.previous));
		s->st.current.present = true;
		s->st.current.build = n;
		memcpy(s->st.current.hash, s->ready_hash, sizeof(s->st.current.hash));
		s->st.trial = true;
		/* this switch is the first start on trial */
		s->st.starts_left = s->opt.trial_starts > 0 ? s->opt.trial_starts - 1 : 0;
		s->st.since = now;
		sensor_state_note(&s->st, n, "switch", "trial", "", now);
		if (save_state(s->dirfd, &s->st) < 0) {
			fprintf(stderr,
				"vigil-agent: sensor: cannot record the trial of build "
				"%" PRIu64 "\n",
				n);
			goto out;
		}
		fprintf(stderr, "vigil-agent: sensor: switching to build %" PRIu64 " on trial\n",
			n);
		s->exec_pending = true;
		goto out;
	}
	if (s->st.trial && s->st.current.present && s->st.current.build == s->own &&
	    mono() - s->started >= s->opt.health_window) {
		pthread_mutex_unlock(&s->lock);
		bool live = liveness_intact(s);
		pthread_mutex_lock(&s->lock);
		if (live && s->st.trial) {
			s->st.trial = false;
			s->st.starts_left = 0;
			sensor_state_note(&s->st, s->own, "trial", "good", "", now);
			save_state(s->dirfd, &s->st);
			prune(s);
			fprintf(stderr, "vigil-agent: sensor build %" PRIu64 " is good\n", s->own);
			pthread_cond_signal(&s->wake);
		}
	}
out:
	pthread_mutex_unlock(&s->lock);
}

bool sensor_exec_pending(const struct sensor *s)
{
	return s && s->exec_pending;
}

int sensor_exec(struct sensor *s, char **argv)
{
	char why[512];
	struct sensor_slot slot;

	pthread_mutex_lock(&s->lock);
	slot = s->st.current;
	pthread_mutex_unlock(&s->lock);
	int ret = exec_into(s->dirfd, &slot, argv, why, sizeof(why));
	fprintf(stderr, "vigil-agent: sensor: %s\n", why);
	return ret;
}

void sensor_stopped_cleanly(struct sensor *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	if (!s->exec_pending && s->st.trial && s->st.current.present &&
	    s->st.current.build == s->own && s->st.starts_left < s->opt.trial_starts) {
		s->st.starts_left++;
		save_state(s->dirfd, &s->st);
	}
	pthread_mutex_unlock(&s->lock);
}

void sensor_started(struct sensor *s)
{
#ifdef VIGIL_TEST_HOOKS
	const char *crash = getenv("VIGIL_TEST_SENSOR_CRASH");
	if (crash && strtoull(crash, NULL, 10) == sensor_own_build()) {
		fprintf(stderr, "vigil-agent: test hook: sensor build %" PRIu64 " crashes\n",
			sensor_own_build());
		abort();
	}
#endif
	(void)s;
}

int sensor_metrics(struct sensor *s, struct buf *out)
{
	int e;

	pthread_mutex_lock(&s->lock);
	e = buf_printf(
	    out,
	    ",\"sensor\":{\"build\":%" PRIu64 ",\"staged\":%s,\"trial\":%s,"
	    "\"crash_loop_reverts\":%" PRIu64 ",\"downloads\":%" PRIu64 ",\"rejected\":%" PRIu64
	    ",\"quarantined\":[",
	    s->own, s->st.current.present && s->st.current.build == s->own ? "true" : "false",
	    s->st.trial ? "true" : "false", s->st.crash_loop_reverts, s->downloads, s->rejections);
	for (size_t i = 0; !e && i < s->st.n_quarantined; i++)
		e = buf_printf(out, "%s%" PRIu64, i ? "," : "", s->st.quarantined[i].build);
	if (!e)
		e = buf_append_str(out, "]}");
	pthread_mutex_unlock(&s->lock);
	return e;
}

int sensor_open(struct agent *agent, const struct sensor_options *opt, struct sensor **out,
		char *err, size_t errlen)
{
	struct sensor *s = calloc(1, sizeof(*s));
	char why[512];
	int ret;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->agent = agent;
	s->opt = *opt;
	s->dirfd = -1;
	s->own = sensor_own_build();
	s->started = mono();
	if (s->opt.self_test_timeout <= 0)
		s->opt.self_test_timeout = SENSOR_SELF_TEST_TIMEOUT;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	snprintf(s->state_dir, sizeof(s->state_dir), "%s", opt->state_dir);
	if (opt->server)
		snprintf(s->server, sizeof(s->server), "%s", opt->server);
	if (opt->cacert)
		snprintf(s->cacert, sizeof(s->cacert), "%s", opt->cacert);
	ret = open_sensor_dir(opt->state_dir, true, &s->dirfd, err, errlen);
	if (ret < 0)
		goto out_free;
	if (load_state(s->dirfd, true, &s->st, why, sizeof(why)) < 0)
		fprintf(stderr, "vigil-agent: %s (moved aside)\n", why);
	if (opt->root_path &&
	    (ret = trust_root_load(opt->root_path, &s->root, why, sizeof(why))) < 0) {
		snprintf(err, errlen, "%s: %s", opt->root_path, why);
		goto out_free;
	}
	if (s->root && s->server[0]) {
		ret = -pthread_create(&s->thread, NULL, run, s);
		if (ret) {
			snprintf(err, errlen, "cannot start the sensor thread");
			goto out_free;
		}
		s->thread_started = true;
	}
	fprintf(stderr, "vigil-agent: sensor build %" PRIu64 "%s\n", s->own,
		s->st.current.present && s->st.current.build == s->own
		    ? (s->st.trial ? " (staged, on trial)" : " (staged, good)")
		    : "");
	*out = s;
	return 0;
out_free:
	sensor_close(s);
	return ret;
}

void sensor_close(struct sensor *s)
{
	if (!s)
		return;
	if (s->thread_started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_signal(&s->wake);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thread, NULL);
	}
	if (s->dirfd >= 0)
		close(s->dirfd);
	trust_root_free(s->root);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->wake);
	free(s);
}

int sensor_status_json(const char *state_dir, struct buf *out, char *err, size_t errlen)
{
	struct sensor_state *st = calloc(1, sizeof(*st));
	int fd = -1, ret;

	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ret = open_sensor_dir(state_dir, false, &fd, err, errlen);
	if (ret == -ENOENT) {
		/* never staged anything: the installed build alone */
		ret = 0;
	} else if (ret == 0) {
		ret = load_state(fd, false, st, err, errlen);
	}
	if (!ret)
		ret = sensor_state_write_json(st, out);
	if (fd >= 0)
		close(fd);
	free(st);
	return ret;
}
