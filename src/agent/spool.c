/*
 * The upload spool: segment files of numbered records, bounded in bytes, trimmed as the
 * server acknowledges. See spool.h.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ACKED_FILE	"acked"
#define SEG_NAME_DIGITS 20

struct seg {
	uint64_t first;
	uint64_t last; /* first - 1 while empty */
	uint64_t bytes;
};

struct spool {
	pthread_mutex_t lock;
	int dirfd;
	int cur_fd; /* appends go to segs[n - 1] through it; -1 none open */
	uint64_t max_bytes;
	struct seg *segs;
	size_t n;
	uint64_t next_seq, acked, bytes, evicted, rejected;
};

static void seg_name(uint64_t first, char out[SEG_NAME_DIGITS + 5])
{
	snprintf(out, SEG_NAME_DIGITS + 5, "%020" PRIu64 ".seg", first);
}

static bool parse_seg_name(const char *name, uint64_t *first)
{
	uint64_t v = 0;
	if (strlen(name) != SEG_NAME_DIGITS + 4 || strcmp(name + SEG_NAME_DIGITS, ".seg") != 0)
		return false;
	for (int i = 0; i < SEG_NAME_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*first = v;
	return v > 0 && v < SPOOL_MAX_SEQ;
}

static int cmp_seg(const void *a, const void *b)
{
	uint64_t x = ((const struct seg *)a)->first, y = ((const struct seg *)b)->first;
	return x < y ? -1 : x > y;
}

/* Reads the whole segment @first into @out (capped). */
static int read_seg(int dirfd, uint64_t first, struct buf *out)
{
	char name[SEG_NAME_DIGITS + 5];
	char chunk[65536];
	ssize_t n;
	int fd, ret = 0;

	seg_name(first, name);
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	buf_reset(out);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		ret = buf_append(out, chunk, (size_t)n);
		if (ret)
			break;
	}
	if (n < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* Parses "SEQ\t" at @p (@len bytes of a line); returns the offset of the JSON, or 0. */
static size_t line_seq(const char *p, size_t len, uint64_t *seq)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && i < 16 && p[i] >= '0' && p[i] <= '9'; i++)
		v = v * 10 + (uint64_t)(p[i] - '0');
	if (i == 0 || i >= len || p[i] != '\t' || v == 0 || v >= SPOOL_MAX_SEQ)
		return 0;
	*seq = v;
	return i + 1;
}

static int write_acked(struct spool *s)
{
	char text[32], tmp[] = ACKED_FILE ".tmp";
	int fd, n = snprintf(text, sizeof(text), "%" PRIu64 "\n", s->acked), ret = 0;

	fd = openat(s->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, (size_t)n) != n)
		ret = -EIO;
	close(fd);
	if (!ret && renameat(s->dirfd, tmp, s->dirfd, ACKED_FILE) < 0)
		ret = -errno;
	return ret;
}

static void read_acked(struct spool *s)
{
	char text[32];
	ssize_t n;
	int fd = openat(s->dirfd, ACKED_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return;
	text[n] = '\0';
	/* digits and a newline, as write_acked writes it; anything else is damage, and
	 * counting from 0 again only resends what the server drops as duplicates */
	uint64_t v = 0;
	ssize_t i;
	for (i = 0; i < n && text[i] >= '0' && text[i] <= '9' && v <= SPOOL_MAX_SEQ; i++)
		v = v * 10 + (uint64_t)(text[i] - '0');
	if (i > 0 && v < SPOOL_MAX_SEQ && (i == n || (text[i] == '\n' && i + 1 == n)))
		s->acked = v;
}

/* Drops segment @i (its file and its bytes); counts its records not yet acknowledged. */
static void drop_seg(struct spool *s, size_t i, bool count)
{
	char name[SEG_NAME_DIGITS + 5];
	struct seg *g = &s->segs[i];

	if (count && g->last > s->acked) {
		uint64_t from = g->first > s->acked ? g->first : s->acked + 1;
		s->evicted += g->last - from + 1;
		s->acked = g->last;
	}
	if (i == s->n - 1 && s->cur_fd >= 0) {
		close(s->cur_fd);
		s->cur_fd = -1;
	}
	seg_name(g->first, name);
	unlinkat(s->dirfd, name, 0);
	s->bytes -= g->bytes;
	memmove(&s->segs[i], &s->segs[i + 1], (s->n - i - 1) * sizeof(*g));
	s->n--;
}

/* Finds the last record of the newest segment and cuts a line a crash left unfinished. */
static int recover_last(struct spool *s)
{
	struct seg *g = &s->segs[s->n - 1];
	char name[SEG_NAME_DIGITS + 5];
	struct buf b;
	size_t end, start;
	uint64_t seq;
	int ret;

	buf_init(&b, SPOOL_SEGMENT_BYTES + SPOOL_MAX_RECORD + 64);
	ret = read_seg(s->dirfd, g->first, &b);
	if (ret)
		goto out;
	end = b.len;
	while (end > 0 && b.data[end - 1] != '\n')
		end--;
	if (end != b.len) {
		seg_name(g->first, name);
		int fd = openat(s->dirfd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || ftruncate(fd, (off_t)end) < 0) {
			ret = -errno;
			if (fd >= 0)
				close(fd);
			goto out;
		}
		close(fd);
		s->bytes -= b.len - end;
		g->bytes = end;
	}
	g->last = g->first - 1;
	if (end > 0) {
		start = end - 1;
		while (start > 0 && b.data[start - 1] != '\n')
			start--;
		if (line_seq(b.data + start, end - start, &seq))
			g->last = seq;
	}
out:
	buf_release(&b);
	return ret;
}

int spool_open(const char *path, uint64_t max_bytes, struct spool **out, char *err, size_t errlen)
{
	struct spool *s;
	struct dirent *de;
	DIR *d = NULL;
	int ret = 0, fd;

	if (max_bytes < 2ull * SPOOL_SEGMENT_BYTES)
		max_bytes = 2ull * SPOOL_SEGMENT_BYTES;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->segs = calloc(SPOOL_MAX_SEGMENTS, sizeof(*s->segs)))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->cur_fd = -1;
	s->dirfd = -1;
	s->max_bytes = max_bytes;
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out_free;
	}
	s->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (s->dirfd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out_free;
	}
	read_acked(s);
	fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		goto out_free;
	}
	while ((de = readdir(d))) {
		struct stat st;
		uint64_t first;
		if (!parse_seg_name(de->d_name, &first) ||
		    fstatat(s->dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (s->n == SPOOL_MAX_SEGMENTS)
			break;
		s->segs[s->n].first = first;
		s->segs[s->n].bytes = (uint64_t)st.st_size;
		s->bytes += (uint64_t)st.st_size;
		s->n++;
	}
	closedir(d);
	qsort(s->segs, s->n, sizeof(*s->segs), cmp_seg);
	/* segments are contiguous: each ends where the next begins */
	for (size_t i = 0; i + 1 < s->n; i++)
		s->segs[i].last = s->segs[i + 1].first - 1;
	if (s->n) {
		ret = recover_last(s);
		if (ret) {
			snprintf(err, errlen, "%s: cannot recover: %s", path, strerror(-ret));
			goto out_free;
		}
		s->next_seq = s->segs[s->n - 1].last + 1;
	}
	if (s->next_seq <= s->acked)
		s->next_seq = s->acked + 1;
	/* what the server already has goes */
	while (s->n && s->segs[0].last <= s->acked && s->segs[0].last >= s->segs[0].first)
		drop_seg(s, 0, false);
	*out = s;
	return 0;
out_free:
	spool_close(s);
	return ret;
}

void spool_close(struct spool *s)
{
	if (!s)
		return;
	if (s->cur_fd >= 0)
		close(s->cur_fd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	pthread_mutex_destroy(&s->lock);
	free(s->segs);
	free(s);
}

/* Starts a new segment for the next record (lock held). */
static int new_seg(struct spool *s)
{
	char name[SEG_NAME_DIGITS + 5];

	if (s->cur_fd >= 0) {
		close(s->cur_fd);
		s->cur_fd = -1;
	}
	if (s->n == SPOOL_MAX_SEGMENTS)
		drop_seg(s, 0, true);
	seg_name(s->next_seq, name);
	s->cur_fd =
	    openat(s->dirfd, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->cur_fd < 0)
		return -errno;
	s->segs[s->n].first = s->next_seq;
	s->segs[s->n].last = s->next_seq - 1;
	s->segs[s->n].bytes = 0;
	s->n++;
	return 0;
}

int64_t spool_append(struct spool *s, const char *json, size_t len)
{
	char head[24];
	struct seg *g;
	int64_t ret;
	int hn;

	pthread_mutex_lock(&s->lock);
	if (len == 0 || len > SPOOL_MAX_RECORD || memchr(json, '\n', len)) {
		s->rejected++;
		ret = -E2BIG;
		goto out;
	}
	if (s->next_seq > SPOOL_MAX_SEQ) {
		s->rejected++;
		ret = -EOVERFLOW;
		goto out;
	}
	hn = snprintf(head, sizeof(head), "%" PRIu64 "\t", s->next_seq);
	uint64_t line = (uint64_t)hn + len + 1;
	g = s->n ? &s->segs[s->n - 1] : NULL;
	if (!g || s->cur_fd < 0 || g->bytes + line > SPOOL_SEGMENT_BYTES) {
		ret = new_seg(s);
		if (ret)
			goto out;
	}
	/* full: the oldest segments go, their unsent records counted */
	while (s->bytes + line > s->max_bytes && s->n > 1)
		drop_seg(s, 0, true);
	g = &s->segs[s->n - 1];
	char *rec = malloc(line);
	if (!rec) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(rec, head, (size_t)hn);
	memcpy(rec + hn, json, len);
	rec[line - 1] = '\n';
	ssize_t w = write(s->cur_fd, rec, line);
	free(rec);
	if (w != (ssize_t)line) {
		/* a short write leaves a cut line that the next open removes; start afresh */
		if (w > 0) {
			g->bytes += (uint64_t)w;
			s->bytes += (uint64_t)w;
		}
		close(s->cur_fd);
		s->cur_fd = -1;
		ret = -EIO;
		goto out;
	}
	g->bytes += line;
	s->bytes += line;
	g->last = s->next_seq;
	ret = (int64_t)s->next_seq++;
out:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int spool_batch(struct spool *s, size_t max_records, size_t max_bytes, struct buf *out,
		uint64_t *last)
{
	uint64_t firsts[64], acked, prev = 0;
	size_t nseg = 0, count = 0, body_start;
	struct buf seg;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	acked = s->acked;
	for (size_t i = 0; i < s->n && nseg < 64; i++)
		if (s->segs[i].last > acked && s->segs[i].last >= s->segs[i].first)
			firsts[nseg++] = s->segs[i].first;
	pthread_mutex_unlock(&s->lock);
	if (nseg == 0)
		return 0;
	buf_init(&seg, SPOOL_SEGMENT_BYTES + SPOOL_MAX_RECORD + 64);
	body_start = out->len;
	ret = buf_append_str(out, "{\"records\":[");
	/* segments are append-only: read them without the lock, taking complete lines only */
	for (size_t k = 0; !ret && k < nseg && count < max_records; k++) {
		int e = read_seg(s->dirfd, firsts[k], &seg);
		if (e == -ENOENT)
			continue; /* evicted meanwhile */
		if (e) {
			ret = e;
			break;
		}
		size_t pos = 0;
		while (pos < seg.len && count < max_records) {
			char *nl = memchr(seg.data + pos, '\n', seg.len - pos);
			uint64_t seq;
			if (!nl)
				break;
			size_t llen = (size_t)(nl - (seg.data + pos));
			size_t off = line_seq(seg.data + pos, llen, &seq);
			const char *j = seg.data + pos + off;
			size_t jlen = llen - off;
			pos += llen + 1;
			/* numbers only go up: one that does not was not written by this spool */
			if (!off || seq <= acked || seq <= prev)
				continue;
			if (out->len - body_start + jlen + 48 > max_bytes && count > 0)
				goto done;
			/* a record damaged on disk would make the server refuse the batch */
			json_t *parsed = json_loadb(j, jlen, 0, NULL);
			bool ok = json_is_object(parsed);
			json_decref(parsed);
			if (!ok) {
				pthread_mutex_lock(&s->lock);
				s->rejected++;
				pthread_mutex_unlock(&s->lock);
				*last = seq;
				prev = seq;
				continue;
			}
			ret = buf_printf(out, "%s{\"seq\":%" PRIu64 ",\"data\":", count ? "," : "",
					 seq);
			if (!ret)
				ret = buf_append(out, j, jlen);
			if (!ret)
				ret = buf_append_char(out, '}');
			if (ret)
				break;
			*last = seq;
			prev = seq;
			count++;
		}
	}
done:
	if (!ret)
		ret = buf_append_str(out, "]}");
	buf_release(&seg);
	if (ret) {
		out->len = body_start;
		return ret;
	}
	if (count == 0)
		out->len = body_start;
	return (int)count;
}

int spool_ack(struct spool *s, uint64_t seq)
{
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (seq > s->acked) {
		s->acked = seq;
		ret = write_acked(s);
	}
	while (s->n && s->segs[0].last <= s->acked) {
		/* the segment being appended to goes too once wholly sent: the next starts anew */
		drop_seg(s, 0, false);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void spool_get_stats(struct spool *s, struct spool_stats *st)
{
	pthread_mutex_lock(&s->lock);
	st->next_seq = s->next_seq;
	st->acked = s->acked;
	st->pending = s->next_seq - 1 > s->acked ? s->next_seq - 1 - s->acked : 0;
	st->bytes = s->bytes;
	st->evicted = s->evicted;
	st->rejected = s->rejected;
	pthread_mutex_unlock(&s->lock);
}
