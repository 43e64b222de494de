/*
 * Replay source: reads the agent's own NDJSON back as events, so captured activity can
 * drive tests, benchmarks and the rule engine. Lines are bounded; a malformed line is
 * reported as FILE:LINE: reason and skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "lib/event_json.h"
#include "source.h"

/* Lines handled per poll, so metric lines and signals are seen during a long replay. */
#define REPLAY_BATCH	  4096
#define REPLAY_READ_CHUNK (256u * 1024u)

struct source {
	struct agent *agent;
	struct event *ev;
	char *path;
	int fd;
	bool eof;
	bool skipping; /* inside a line that passed the cap: discard up to its newline */
	char *buf;     /* unread input: [start, end) */
	size_t start, end, cap;
	unsigned long line; /* number of the line being read */
	unsigned long replayed, skipped, rejected;
	unsigned unknown_fields;
};

static int replay_open(struct agent *agent, const char *arg, struct source **out, char *err,
		       size_t errlen)
{
	struct source *src = calloc(1, sizeof(*src));
	int ret = -ENOMEM;

	if (!src) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	src->agent = agent;
	src->fd = -1;
	/* room for one whole line at the cap plus one read chunk */
	src->cap = EVENT_JSON_LINE_MAX + REPLAY_READ_CHUNK + 1;
	src->buf = malloc(src->cap);
	src->ev = event_new();
	src->path = strdup(arg);
	if (!src->buf || !src->ev || !src->path) {
		snprintf(err, errlen, "out of memory");
		goto out_free;
	}
	if (strcmp(arg, "-") == 0) {
		src->fd = dup(STDIN_FILENO);
	} else {
		src->fd = open(arg, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	}
	if (src->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", arg, strerror(errno));
		goto out_free;
	}
	src->line = 1;
	*out = src;
	return 0;

out_free:
	free(src->buf);
	free(src->path);
	event_free(src->ev);
	free(src);
	return ret;
}

static void replay_reject(struct source *src, const char *reason)
{
	src->rejected++;
	fprintf(stderr, "%s:%lu: %s\n", src->path, src->line, reason);
}

/* Handles one complete line [p, p+len) (without its newline). */
static int replay_line(struct source *src, const char *p, size_t len)
{
	char err[256];
	int ret;

	if (len == 0) {
		replay_reject(src, "empty line");
		return 0;
	}
	ret = event_parse_json(src->ev, p, len, err, sizeof(err), &src->unknown_fields);
	if (ret == EVENT_SKIPPED) {
		src->skipped++;
		return 0;
	}
	if (ret < 0) {
		replay_reject(src, err);
		return 0;
	}
	src->replayed++;
	agent_emit(src->agent, src->ev);
	return 1;
}

/* Reads more input, compacting the buffer first. Returns bytes read, 0 at EOF, or -errno. */
static ssize_t replay_fill(struct source *src)
{
	if (src->start > 0) {
		memmove(src->buf, src->buf + src->start, src->end - src->start);
		src->end -= src->start;
		src->start = 0;
	}
	size_t room = src->cap - 1 - src->end;
	if (room > REPLAY_READ_CHUNK)
		room = REPLAY_READ_CHUNK;
	ssize_t n;
	do {
		n = read(src->fd, src->buf + src->end, room);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	src->end += (size_t)n;
	return n;
}

static int replay_poll(struct source *src, int timeout_ms)
{
	int handled = 0;

	for (int lines = 0; lines < REPLAY_BATCH;) {
		char *p = src->buf + src->start;
		size_t avail = src->end - src->start;
		char *nl = memchr(p, '\n', avail);

		if (nl) {
			size_t len = (size_t)(nl - p);
			if (src->skipping)
				src->skipping = false;
			else
				handled += replay_line(src, p, len);
			src->start += len + 1;
			src->line++;
			lines++;
			continue;
		}
		if (avail > EVENT_JSON_LINE_MAX) {
			/* no newline within the cap: reject once, then drop up to the newline */
			if (!src->skipping)
				replay_reject(src, "line longer than 1 MiB");
			src->skipping = true;
			src->start = src->end;
			continue;
		}
		if (src->eof) {
			if (avail && !src->skipping)
				handled += replay_line(src, p, avail);
			src->start = src->end;
			return handled ? handled : -ENODATA;
		}
		/* a pipe or FIFO may stay quiet: never block past @timeout_ms, and once lines were
		 * handled give the main loop its turn (metric lines, content activation) */
		if (handled)
			return handled;
		struct pollfd pfd = {.fd = src->fd, .events = POLLIN};
		int ready = poll(&pfd, 1, timeout_ms);
		if (ready < 0)
			return errno == EINTR ? 0 : -errno;
		if (ready == 0)
			return 0;
		ssize_t n = replay_fill(src);
		if (n < 0)
			return (int)n;
		if (n == 0)
			src->eof = true;
	}
	return handled;
}

static int replay_metrics(struct source *src, struct buf *out)
{
	return buf_printf(out,
			  ",\"replay\":{\"lines\":%lu,\"replayed\":%lu,\"skipped\":%lu,"
			  "\"rejected\":%lu,\"unknown_fields\":%u}",
			  src->line - 1, src->replayed, src->skipped, src->rejected,
			  src->unknown_fields);
}

static void replay_close(struct source *src)
{
	if (!src)
		return;
	if (src->fd >= 0)
		close(src->fd);
	free(src->buf);
	free(src->path);
	event_free(src->ev);
	free(src);
}

unsigned long source_replay_rejected(const struct source *src)
{
	return src ? src->rejected : 0;
}

const struct source_ops source_replay_ops = {
    .name = "replay",
    .open = replay_open,
    .poll = replay_poll,
    .metrics = replay_metrics,
    .close = replay_close,
};
