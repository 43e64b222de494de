/*
 * The agent's state directory: state.json read with a size cap and a strict schema, written
 * by atomic replacement, and the bundle copies it names.
 */
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/trust.h"

/* "VERSION.bundle" and its temporary ".VERSION.bundle.tmp" fit in this. */
#define BUNDLE_NAME_BYTES 48
/* Bytes of a directory path as shown in messages. */
#define PATH_SHOWN_BYTES 4096

static const char *const step_names[STEP_COUNT] = {
    "read", "verify", "version", "compile", "test-load", "trial", "swap",
};

const char *state_step_name(enum state_step step)
{
	return step < STEP_COUNT ? step_names[step] : "unknown";
}

void state_init(struct agent_state *st)
{
	memset(st, 0, sizeof(*st));
	st->liveness_last = -1;
}

void state_copy_text(char *dst, size_t size, const char *src, size_t len)
{
	size_t n = 0;

	if (size == 0)
		return;
	for (size_t i = 0; src && i < len && n + 1 < size; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '\0')
			break;
		dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[n] = '\0';
}

/* --- directories --- */

int state_dir_check(int fd, const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", path);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s: owned by uid %u, not by this agent's uid %u", path,
			 (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen, "%s: group- or world-writable (mode %04o)", path,
			 (unsigned)(st.st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/* Opens (creating when asked) the directory @name under @at; returns the fd or -errno. */
static int open_dir_at(int at, const char *name, bool create, char *err, size_t errlen,
		       const char *shown)
{
	int fd, ret;

	if (create && mkdirat(at, name, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "%s: cannot create: %s", shown, strerror(errno));
		return ret;
	}
	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", shown,
			 errno == ELOOP || errno == ENOTDIR ? "not a directory (symbolic links are "
							      "not followed)"
							    : strerror(errno));
		return ret;
	}
	ret = state_dir_check(fd, shown, err, errlen);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	return fd;
}

int state_dir_open(const char *path, bool create, int *dirfd, int *bundlefd, char *err,
		   size_t errlen)
{
	char shown[PATH_SHOWN_BYTES];
	int fd, bfd;

	fd = open_dir_at(AT_FDCWD, path, create, err, errlen, path);
	if (fd < 0)
		return fd;
	if (!bundlefd) {
		*dirfd = fd;
		return 0;
	}
	if (snprintf(shown, sizeof(shown), "%s/%s", path, STATE_BUNDLE_DIR) >= (int)sizeof(shown))
		snprintf(shown, sizeof(shown), "%s", STATE_BUNDLE_DIR);
	bfd = open_dir_at(fd, STATE_BUNDLE_DIR, create, err, errlen, shown);
	if (bfd < 0) {
		close(fd);
		return bfd;
	}
	*dirfd = fd;
	*bundlefd = bfd;
	return 0;
}

/* --- files --- */

int state_read_file_at(int dirfd, const char *name, size_t max, struct buf *out)
{
	struct stat st;
	char extra;
	size_t size;
	int fd, ret = 0;

	buf_reset(out);
	/* O_NONBLOCK: a FIFO put where a file is expected must not stall the agent */
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out_close;
	}
	if ((unsigned long long)st.st_size > max) {
		ret = -E2BIG;
		goto out_close;
	}
	size = (size_t)st.st_size;
	ret = buf_reserve(out, size + 1);
	if (ret)
		goto out_close;
	while (out->len < size) {
		ssize_t n = read(fd, out->data + out->len, size - out->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out_close;
		}
		if (n == 0) {
			ret = -EBUSY; /* shrank while read */
			goto out_close;
		}
		out->len += (size_t)n;
	}
	for (;;) {
		ssize_t n = read(fd, &extra, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 0)
			ret = n < 0 ? -errno : -EBUSY; /* grew while read */
		break;
	}
	if (ret == 0 && out->data)
		out->data[out->len] = '\0';
out_close:
	close(fd);
	return ret;
}

/*
 * Replaces @name in @dirfd with @len bytes: a temporary file written and fsync-ed, then
 * renamed over @name, so after a power loss @name holds the old or the new bytes, never a
 * mix. @durable: the directory is fsync-ed too, so the new bytes survive a power loss. On
 * error nothing but @name's old content is left.
 */
static int replace_file_at(int dirfd, const char *name, const char *tmp, const void *data,
			   size_t len, bool durable)
{
	int fd, ret;

	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	ret = fd_write_all(fd, data, len);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
		ret = -errno;
	if (ret) {
		unlinkat(dirfd, tmp, 0);
		return ret;
	}
	if (!durable)
		return 0;
	return fsync(dirfd) < 0 ? -errno : 0;
}

/* --- JSON --- */

static json_t *version_json(bool has, uint64_t v)
{
	return has ? json_integer((json_int_t)v) : json_null();
}

static json_t *time_json(int64_t t)
{
	char s[21];
	if (trust_time_format(t, s))
		return json_null();
	return json_string(s);
}

/* Adds @value under @key, consuming the reference; returns -ENOMEM on failure. */
static int put(json_t *obj, const char *key, json_t *value)
{
	return value && json_object_set_new(obj, key, value) == 0 ? 0 : -ENOMEM;
}

static json_t *activation_json(const struct state_activation *a)
{
	json_t *o = json_object(), *ms = json_object();
	int err = 0;

	if (!o || !ms) {
		json_decref(o);
		json_decref(ms);
		return NULL;
	}
	err |= put(o, "file", json_string(a->file));
	err |= put(o, "version", version_json(a->has_version, a->version));
	err |= put(o, "step", json_string(a->step));
	err |= put(o, "result", json_string(a->result));
	err |= put(o, "started", time_json(a->started));
	for (int i = 0; i < STEP_COUNT; i++) {
		if (a->step_us[i] >= 0)
			err |= put(ms, step_names[i], json_real((double)a->step_us[i] / 1000.0));
	}
	if (a->total_us >= 0)
		err |= put(ms, "total", json_real((double)a->total_us / 1000.0));
	err |= put(o, "ms", ms);
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *state_to_json(const struct agent_state *st)
{
	json_t *o = json_object(), *q = json_array(), *r = json_array(), *live = json_object();
	json_t *trial = NULL;
	int err = 0;

	if (!o || !q || !r || !live)
		goto out_nomem;
	err |= put(o, "format", json_integer(STATE_FORMAT));
	err |= put(o, "active", version_json(st->has_active, st->active));
	err |= put(o, "last_known_good", version_json(st->has_lkg, st->lkg));
	err |= put(o, "previous_good", version_json(st->has_prev_good, st->prev_good));
	if (st->has_trial) {
		trial = json_object();
		if (!trial)
			goto out_nomem;
		err |= put(trial, "version", json_integer((json_int_t)st->trial_version));
		err |= put(trial, "starts_left", json_integer(st->trial_starts_left));
		err |= put(trial, "activated_at", time_json(st->trial_activated_at));
		err |= put(o, "trial", trial);
	} else {
		err |= put(o, "trial", json_null());
	}
	for (size_t i = 0; i < st->n_quarantined; i++) {
		const struct state_quarantine *e = &st->quarantined[i];
		json_t *x = json_object();
		if (!x)
			goto out_nomem;
		err |= put(x, "version", json_integer((json_int_t)e->version));
		err |= put(x, "reason", json_string(e->reason));
		err |= put(x, "at", time_json(e->at));
		err |= json_array_append_new(q, x) ? -ENOMEM : 0;
	}
	err |= put(o, "quarantined", q);
	q = NULL;
	for (size_t i = 0; i < st->n_rejections; i++) {
		const struct state_rejection *e = &st->rejections[i];
		json_t *x = json_object();
		if (!x)
			goto out_nomem;
		err |= put(x, "file", json_string(e->file));
		err |= put(x, "version", version_json(e->has_version, e->version));
		err |= put(x, "step", json_string(e->step));
		err |= put(x, "reason", json_string(e->reason));
		err |= put(x, "at", time_json(e->at));
		err |= json_array_append_new(r, x) ? -ENOMEM : 0;
	}
	err |= put(o, "rejections", r);
	r = NULL;
	err |= put(o, "activation",
		   st->activation.present ? activation_json(&st->activation) : json_null());
	err |= put(o, "crash_loop_reverts", json_integer((json_int_t)st->crash_loop_reverts));
	err |= put(live, "ok", json_integer((json_int_t)st->liveness_ok));
	err |= put(live, "failed", json_integer((json_int_t)st->liveness_failed));
	err |= put(live, "last",
		   st->liveness_last < 0 ? json_null()
					 : json_string(st->liveness_last ? "ok" : "failed"));
	err |= put(live, "at", st->liveness_last < 0 ? json_null() : time_json(st->liveness_at));
	err |= put(o, "liveness", live);
	live = NULL;
	if (err)
		goto out_nomem;
	return o;

out_nomem:
	json_decref(q);
	json_decref(r);
	json_decref(live);
	json_decref(o);
	return NULL;
}

int state_write_json(const struct agent_state *st, bool pretty, struct buf *out)
{
	json_t *o = state_to_json(st);
	char *text;
	int ret;

	if (!o)
		return -ENOMEM;
	text = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10) |
				 (pretty ? JSON_INDENT(2) : JSON_COMPACT));
	json_decref(o);
	if (!text)
		return -ENOMEM;
	ret = buf_append_str(out, text);
	free(text);
	return ret;
}

int state_save(int dirfd, const struct agent_state *st, bool durable)
{
	struct buf b;
	int ret;

	buf_init(&b, STATE_MAX_BYTES);
	ret = state_write_json(st, true, &b);
	if (ret == 0)
		ret = buf_append_char(&b, '\n');
	if (ret == 0)
		ret = replace_file_at(dirfd, STATE_FILE, "." STATE_FILE ".tmp", b.data, b.len,
				      durable);
	buf_release(&b);
	return ret;
}

/* --- reading it back: every field checked, any surprise is a corrupt file --- */

struct reader {
	char *err;
	size_t errlen;
	int bad;
};

static void bad(struct reader *r, const char *what)
{
	if (!r->bad)
		snprintf(r->err, r->errlen, "%s: %s", STATE_FILE, what);
	r->bad = 1;
}

static bool get_version(struct reader *r, json_t *o, const char *key, bool nullable, bool *has,
			uint64_t *v)
{
	json_t *x = json_object_get(o, key);
	if (nullable && (!x || json_is_null(x))) {
		*has = false;
		*v = 0;
		return true;
	}
	if (!json_is_integer(x) || json_integer_value(x) < 1 ||
	    (uint64_t)json_integer_value(x) > 9007199254740991ull) {
		char what[96];
		snprintf(what, sizeof(what), "'%s' is not a version", key);
		bad(r, what);
		return false;
	}
	*has = true;
	*v = (uint64_t)json_integer_value(x);
	return true;
}

static bool get_count(struct reader *r, json_t *o, const char *key, uint64_t *v)
{
	json_t *x = json_object_get(o, key);
	if (!x) {
		*v = 0;
		return true;
	}
	if (!json_is_integer(x) || json_integer_value(x) < 0) {
		char what[96];
		snprintf(what, sizeof(what), "'%s' is not a count", key);
		bad(r, what);
		return false;
	}
	*v = (uint64_t)json_integer_value(x);
	return true;
}

static bool get_text(struct reader *r, json_t *o, const char *key, char *dst, size_t size)
{
	json_t *x = json_object_get(o, key);
	if (!json_is_string(x)) {
		char what[96];
		snprintf(what, sizeof(what), "'%s' is not a string", key);
		bad(r, what);
		return false;
	}
	state_copy_text(dst, size, json_string_value(x), json_string_length(x));
	return true;
}

static bool get_time(struct reader *r, json_t *o, const char *key, int64_t *t)
{
	json_t *x = json_object_get(o, key);
	trust_time_t v;
	if (x && json_is_null(x)) {
		*t = 0;
		return true;
	}
	if (!json_is_string(x) ||
	    trust_time_parse(json_string_value(x), json_string_length(x), &v)) {
		char what[96];
		snprintf(what, sizeof(what), "'%s' is not a time", key);
		bad(r, what);
		return false;
	}
	*t = v;
	return true;
}

static void read_activation(struct reader *r, json_t *a, struct state_activation *out)
{
	json_t *ms;

	if (!a || json_is_null(a))
		return;
	if (!json_is_object(a)) {
		bad(r, "'activation' is not an object");
		return;
	}
	out->present = true;
	for (int i = 0; i < STEP_COUNT; i++)
		out->step_us[i] = -1;
	out->total_us = -1;
	if (!get_text(r, a, "file", out->file, sizeof(out->file)) ||
	    !get_version(r, a, "version", true, &out->has_version, &out->version) ||
	    !get_text(r, a, "step", out->step, sizeof(out->step)) ||
	    !get_text(r, a, "result", out->result, sizeof(out->result)) ||
	    !get_time(r, a, "started", &out->started))
		return;
	ms = json_object_get(a, "ms");
	if (ms && !json_is_object(ms)) {
		bad(r, "'activation.ms' is not an object");
		return;
	}
	for (int i = 0; ms && i < STEP_COUNT; i++) {
		json_t *x = json_object_get(ms, step_names[i]);
		if (json_is_number(x) && json_number_value(x) >= 0 && json_number_value(x) < 1e12)
			out->step_us[i] = (int64_t)(json_number_value(x) * 1000.0);
	}
	json_t *x = ms ? json_object_get(ms, "total") : NULL;
	if (json_is_number(x) && json_number_value(x) >= 0 && json_number_value(x) < 1e12)
		out->total_us = (int64_t)(json_number_value(x) * 1000.0);
}

static void read_state(struct reader *r, json_t *o, struct agent_state *st)
{
	json_t *x;
	uint64_t n;

	if (!json_is_object(o)) {
		bad(r, "not a JSON object");
		return;
	}
	x = json_object_get(o, "format");
	if (!json_is_integer(x) || json_integer_value(x) != STATE_FORMAT) {
		bad(r, "'format' is not 1");
		return;
	}
	if (!get_version(r, o, "active", true, &st->has_active, &st->active) ||
	    !get_version(r, o, "last_known_good", true, &st->has_lkg, &st->lkg) ||
	    !get_version(r, o, "previous_good", true, &st->has_prev_good, &st->prev_good))
		return;
	x = json_object_get(o, "trial");
	if (x && !json_is_null(x)) {
		bool has;
		if (!json_is_object(x) ||
		    !get_version(r, x, "version", false, &has, &st->trial_version) ||
		    !get_count(r, x, "starts_left", &n) ||
		    !get_time(r, x, "activated_at", &st->trial_activated_at)) {
			bad(r, "'trial' is not a trial record");
			return;
		}
		if (n > 1000) {
			bad(r, "'trial.starts_left' is out of range");
			return;
		}
		st->has_trial = true;
		st->trial_starts_left = (unsigned)n;
	}
	x = json_object_get(o, "quarantined");
	if (!json_is_array(x) || json_array_size(x) > STATE_MAX_QUARANTINED) {
		bad(r, "'quarantined' is not a list of at most 64 entries");
		return;
	}
	for (size_t i = 0; i < json_array_size(x); i++) {
		json_t *e = json_array_get(x, i);
		struct state_quarantine *q = &st->quarantined[i];
		bool has;
		if (!json_is_object(e) || !get_version(r, e, "version", false, &has, &q->version) ||
		    !get_text(r, e, "reason", q->reason, sizeof(q->reason)) ||
		    !get_time(r, e, "at", &q->at)) {
			bad(r, "'quarantined' holds a malformed entry");
			return;
		}
		st->n_quarantined = i + 1;
	}
	x = json_object_get(o, "rejections");
	if (!json_is_array(x) || json_array_size(x) > STATE_MAX_REJECTIONS) {
		bad(r, "'rejections' is not a list of at most 64 entries");
		return;
	}
	for (size_t i = 0; i < json_array_size(x); i++) {
		json_t *e = json_array_get(x, i);
		struct state_rejection *j = &st->rejections[i];
		if (!json_is_object(e) || !get_text(r, e, "file", j->file, sizeof(j->file)) ||
		    !get_version(r, e, "version", true, &j->has_version, &j->version) ||
		    !get_text(r, e, "step", j->step, sizeof(j->step)) ||
		    !get_text(r, e, "reason", j->reason, sizeof(j->reason)) ||
		    !get_time(r, e, "at", &j->at)) {
			bad(r, "'rejections' holds a malformed entry");
			return;
		}
		st->n_rejections = i + 1;
	}
	read_activation(r, json_object_get(o, "activation"), &st->activation);
	if (r->bad || !get_count(r, o, "crash_loop_reverts", &st->crash_loop_reverts))
		return;
	x = json_object_get(o, "liveness");
	if (x && json_is_object(x)) {
		json_t *last = json_object_get(x, "last");
		get_count(r, x, "ok", &st->liveness_ok);
		get_count(r, x, "failed", &st->liveness_failed);
		if (json_is_string(last)) {
			st->liveness_last = strcmp(json_string_value(last), "ok") == 0;
			get_time(r, x, "at", &st->liveness_at);
		}
	}
	/* the versions must agree with each other */
	if (!r->bad && st->has_trial && (!st->has_active || st->active != st->trial_version))
		bad(r, "'trial' names a version that is not the active one");
}

int state_parse(const char *data, size_t len, struct agent_state *st, char *err, size_t errlen)
{
	struct reader r = {.err = err, .errlen = errlen};
	json_error_t jerr;
	json_t *root;

	state_init(st);
	if (len > STATE_MAX_BYTES) {
		bad(&r, "larger than 262144 bytes");
		return -EBADMSG;
	}
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char what[STATE_REASON_BYTES], text[sizeof(jerr.text)];
		/* the parser's message may quote the input: kept to one printable line */
		state_copy_text(text, sizeof(text), jerr.text, strlen(jerr.text));
		snprintf(what, sizeof(what), "not JSON: line %d: %s", jerr.line, text);
		bad(&r, what);
	} else {
		read_state(&r, root, st);
		json_decref(root);
	}
	if (r.bad) {
		state_init(st);
		return -EBADMSG;
	}
	return 0;
}

int state_load(int dirfd, bool move_aside, struct agent_state *st, char *err, size_t errlen)
{
	struct reader r = {.err = err, .errlen = errlen};
	struct buf b;
	int ret;

	state_init(st);
	buf_init(&b, STATE_MAX_BYTES + 1);
	ret = state_read_file_at(dirfd, STATE_FILE, STATE_MAX_BYTES, &b);
	if (ret == -ENOENT) {
		ret = 0;
		goto out;
	}
	if (ret == -E2BIG) {
		bad(&r, "larger than 262144 bytes");
	} else if (ret < 0) {
		snprintf(err, errlen, "%s: %s", STATE_FILE,
			 ret == -ELOOP ? "a symbolic link (not followed)" : strerror(-ret));
		goto out;
	} else {
		ret = state_parse(b.data ? b.data : "", b.len, st, err, errlen);
		if (ret < 0) {
			if (move_aside &&
			    renameat(dirfd, STATE_FILE, dirfd, STATE_CORRUPT_FILE) == 0)
				fsync(dirfd);
			goto out;
		}
	}
	ret = 0;
	if (r.bad) {
		state_init(st);
		ret = -EBADMSG;
		if (move_aside && renameat(dirfd, STATE_FILE, dirfd, STATE_CORRUPT_FILE) == 0)
			fsync(dirfd);
	}
out:
	buf_release(&b);
	return ret;
}

/* --- bundle copies --- */

static void bundle_name(uint64_t version, char *name, char *tmp)
{
	snprintf(name, BUNDLE_NAME_BYTES, "%" PRIu64 ".bundle", version);
	snprintf(tmp, BUNDLE_NAME_BYTES, ".%" PRIu64 ".bundle.tmp", version);
}

int state_bundle_store(int bundlefd, uint64_t version, const void *data, size_t len)
{
	char name[BUNDLE_NAME_BYTES], tmp[BUNDLE_NAME_BYTES];

	bundle_name(version, name, tmp);
	return replace_file_at(bundlefd, name, tmp, data, len, true);
}

int state_bundle_read(int bundlefd, uint64_t version, size_t max, struct buf *out)
{
	char name[BUNDLE_NAME_BYTES], tmp[BUNDLE_NAME_BYTES];

	bundle_name(version, name, tmp);
	return state_read_file_at(bundlefd, name, max, out);
}

/* True when @name is "V.bundle" for a version @st still needs. */
static bool bundle_needed(const struct agent_state *st, const char *name)
{
	char want[BUNDLE_NAME_BYTES], tmp[BUNDLE_NAME_BYTES];
	const uint64_t versions[] = {st->active, st->lkg, st->prev_good, st->trial_version};
	const bool has[] = {st->has_active, st->has_lkg, st->has_prev_good, st->has_trial};

	for (size_t i = 0; i < sizeof(has) / sizeof(has[0]); i++) {
		if (!has[i])
			continue;
		bundle_name(versions[i], want, tmp);
		if (strcmp(name, want) == 0)
			return true;
	}
	return false;
}

int state_bundle_prune(int bundlefd, const struct agent_state *st)
{
	struct dirent *de;
	DIR *d;
	int fd, removed = 0;

	fd = openat(bundlefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int ret = -errno;
		close(fd);
		return ret;
	}
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (bundle_needed(st, de->d_name))
			continue;
		if (unlinkat(bundlefd, de->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	if (removed)
		fsync(bundlefd);
	return removed;
}

/* --- records --- */

void state_quarantine(struct agent_state *st, uint64_t version, const char *reason, int64_t at)
{
	struct state_quarantine *q;

	if (state_quarantined(st, version))
		return;
	if (st->n_quarantined == STATE_MAX_QUARANTINED) {
		memmove(&st->quarantined[0], &st->quarantined[1],
			(STATE_MAX_QUARANTINED - 1) * sizeof(st->quarantined[0]));
		st->n_quarantined--;
	}
	q = &st->quarantined[st->n_quarantined++];
	q->version = version;
	q->at = at;
	state_copy_text(q->reason, sizeof(q->reason), reason, strlen(reason));
}

const struct state_quarantine *state_quarantined(const struct agent_state *st, uint64_t version)
{
	for (size_t i = 0; i < st->n_quarantined; i++) {
		if (st->quarantined[i].version == version)
			return &st->quarantined[i];
	}
	return NULL;
}

void state_reject(struct agent_state *st, const char *file, bool has_version, uint64_t version,
		  const char *step, const char *reason, int64_t at)
{
	struct state_rejection *j;

	if (st->n_rejections == STATE_MAX_REJECTIONS) {
		memmove(&st->rejections[0], &st->rejections[1],
			(STATE_MAX_REJECTIONS - 1) * sizeof(st->rejections[0]));
		st->n_rejections--;
	}
	j = &st->rejections[st->n_rejections++];
	state_copy_text(j->file, sizeof(j->file), file, strlen(file));
	j->has_version = has_version;
	j->version = has_version ? version : 0;
	state_copy_text(j->step, sizeof(j->step), step, strlen(step));
	state_copy_text(j->reason, sizeof(j->reason), reason, strlen(reason));
	j->at = at;
}
