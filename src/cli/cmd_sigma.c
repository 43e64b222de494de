/*
 * vigil sigma convert: walks a tree of Sigma rules, writes one native rule file per rule it
 * can express, and a report naming every rule it could not, with the reason.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "lib/buf.h"
#include "lib/sigma.h"

/* Directory levels searched under SRC. */
#define SIGMA_DIR_DEPTH_MAX 16
/* Rule files one run converts. */
#define SIGMA_FILES_MAX 100000u
/* Bytes of the report. */
#define SIGMA_REPORT_MAX (64u * 1024u * 1024u)

struct converted {
	char id[65];
	char *file;
};

struct run {
	const char *src; /* the tree's root; converted files name their source relative to it */
	const char *dst;
	dev_t dst_dev; /* DST itself is not searched when it lies inside SRC */
	ino_t dst_ino;
	unsigned total;
	unsigned converted;
	struct converted *done; /* ids written so far, for duplicate detection */
	size_t ndone, capdone;
	struct buf report; /* unconverted rules */
	struct buf notes;  /* converted rules with something folded away */
	bool io_failed;
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil sigma convert SRC -o DST [--report FILE]\n"
	    "\n"
	    "Converts the Sigma rules in SRC (a .yml/.yaml file or a directory searched\n"
	    "recursively) into vigil rules, one file DST/ID.yml per rule, ID being the Sigma id.\n"
	    "Supported: product linux, categories process_creation, file_event and\n"
	    "network_connection. A rule that cannot be expressed is listed with its reason in\n"
	    "the report (default DST/unconverted.txt). The last line printed is\n"
	    "'converted N of M'.\n"
	    "\n"
	    "  -o, --output DST   directory for the converted rules (created if missing)\n"
	    "  --report FILE      where to write the report\n"
	    "  --help             this text\n");
}

static bool has_rule_suffix(const char *name)
{
	size_t n = strlen(name);
	return (n > 4 && strcmp(name + n - 4, ".yml") == 0) ||
	       (n > 5 && strcmp(name + n - 5, ".yaml") == 0);
}

/*
 * Reads the regular file @path whole, refusing one larger than @max before reading.
 * Returns 0 with *@data (free it) and *@len set, or -errno.
 */
static int read_file(const char *path, size_t max, char **data, size_t *len)
{
	struct stat st;
	size_t got = 0;
	char *p;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		err = -EINVAL;
		goto out_close;
	}
	if ((unsigned long long)st.st_size > max) {
		err = -E2BIG;
		goto out_close;
	}
	p = malloc((size_t)st.st_size + 1);
	if (!p) {
		err = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			err = n < 0 ? -errno : -EIO;
			free(p);
			goto out_close;
		}
		got += (size_t)n;
	}
	p[got] = '\0';
	*data = p;
	*len = got;
out_close:
	close(fd);
	return err;
}

/* Writes @len bytes to @path (replacing it), via a temporary file renamed into place. */
static int write_file(const char *path, const char *data, size_t len)
{
	char tmp[4096];
	size_t off = 0;
	int fd, err = 0, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			err = -errno;
			break;
		}
		off += (size_t)w;
	}
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

static int report_line(struct buf *b, const char *file, const char *reason)
{
	return buf_printf(b, "%s: %s\n", file, reason);
}

static const char *already_converted(const struct run *r, const char *id)
{
	for (size_t i = 0; i < r->ndone; i++) {
		if (strcmp(r->done[i].id, id) == 0)
			return r->done[i].file;
	}
	return NULL;
}

static int remember(struct run *r, const char *id, const char *file)
{
	if (r->ndone == r->capdone) {
		size_t cap = r->capdone ? r->capdone * 2 : 256, bytes;
		struct converted *p;
		if (size_mul(cap, sizeof(*p), &bytes))
			return -ENOMEM;
		p = realloc(r->done, bytes);
		if (!p)
			return -ENOMEM;
		r->done = p;
		r->capdone = cap;
	}
	r->done[r->ndone].file = strdup(file);
	if (!r->done[r->ndone].file)
		return -ENOMEM;
	snprintf(r->done[r->ndone].id, sizeof(r->done[r->ndone].id), "%s", id);
	r->ndone++;
	return 0;
}

/* Converts one Sigma file; a rule that is not converted goes to the report. */
static void convert_file(struct run *r, const char *path)
{
	struct sigma_result res;
	char out[4096], reason[600];
	const char *dup, *origin;
	char *data = NULL;
	size_t len = 0;
	int err, n;

	r->total++;
	err = read_file(path, SIGMA_FILE_MAX, &data, &len);
	if (err) {
		snprintf(reason, sizeof(reason), "cannot read: %s",
			 err == -E2BIG ? "file larger than the 1 MiB a Sigma rule may have"
				       : strerror(-err));
		if (report_line(&r->report, path, reason))
			r->io_failed = true;
		return;
	}
	origin = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	if (strncmp(path, r->src, strlen(r->src)) == 0 && path[strlen(r->src)] == '/')
		origin = path + strlen(r->src) + 1;
	err = sigma_convert(data, len, origin, &res);
	free(data);
	if (err) {
		if (report_line(&r->report, path, res.reason))
			r->io_failed = true;
		goto out_free;
	}
	dup = already_converted(r, res.id);
	if (dup) {
		snprintf(reason, sizeof(reason), "duplicate id %s (already converted from %s)",
			 res.id, dup);
		if (report_line(&r->report, path, reason))
			r->io_failed = true;
		goto out_free;
	}
	n = snprintf(out, sizeof(out), "%s/%s.yml", r->dst, res.id);
	if (n < 0 || (size_t)n >= sizeof(out)) {
		fprintf(stderr, "vigil sigma convert: %s: output path too long\n", r->dst);
		r->io_failed = true;
		goto out_free;
	}
	err = write_file(out, res.text.data, res.text.len);
	if (err) {
		fprintf(stderr, "vigil sigma convert: %s: %s\n", out, strerror(-err));
		r->io_failed = true;
		goto out_free;
	}
	if (remember(r, res.id, path)) {
		r->io_failed = true;
		goto out_free;
	}
	if (res.note[0] && report_line(&r->notes, path, res.note))
		r->io_failed = true;
	r->converted++;
out_free:
	sigma_result_free(&res);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Converts every rule file under directory @dir, in sorted order. Symbolic links and names
 * starting with '.' are skipped. Returns 0 or -errno when the directory cannot be read.
 */
static int walk(struct run *r, const char *dir, int depth)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int err = 0;

	if (depth > SIGMA_DIR_DEPTH_MAX) {
		fprintf(stderr,
			"vigil sigma convert: %s: deeper than %d directory levels, skipped\n", dir,
			SIGMA_DIR_DEPTH_MAX);
		return 0;
	}
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			char **p = realloc(names, ncap * sizeof(*p));
			if (!p) {
				err = -ENOMEM;
				goto out_free;
			}
			names = p;
			cap = ncap;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			err = -ENOMEM;
			goto out_free;
		}
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n && !err; i++) {
		char path[4096];
		struct stat st;
		int len = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (len < 0 || (size_t)len >= sizeof(path)) {
			fprintf(stderr, "vigil sigma convert: %s/%s: path too long, skipped\n", dir,
				names[i]);
			continue;
		}
		if (lstat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			if (st.st_dev == r->dst_dev && st.st_ino == r->dst_ino)
				continue;
			err = walk(r, path, depth + 1);
			if (err) {
				fprintf(stderr, "vigil sigma convert: %s: %s\n", path,
					strerror(-err));
				r->io_failed = true;
				err = 0;
			}
		} else if (S_ISREG(st.st_mode) && has_rule_suffix(names[i])) {
			if (r->total >= SIGMA_FILES_MAX) {
				fprintf(stderr, "vigil sigma convert: more than %u rule files\n",
					SIGMA_FILES_MAX);
				err = -E2BIG;
				break;
			}
			convert_file(r, path);
		}
	}
out_free:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return err;
}

static int make_dir(const char *path)
{
	struct stat st;

	if (mkdir(path, 0755) == 0)
		return 0;
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	return -errno;
}

static int sigma_convert_cmd(int argc, char **argv)
{
	const char *src = NULL, *dst = NULL, *report = NULL;
	char report_path[4096];
	struct run r = {0};
	struct stat st;
	struct buf all;
	int err, status = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "vigil sigma convert: %s needs a directory\n",
					argv[i - 1]);
				return 2;
			}
			dst = argv[i];
		} else if (strcmp(argv[i], "--report") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "vigil sigma convert: --report needs a file\n");
				return 2;
			}
			report = argv[i];
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "vigil sigma convert: unknown option '%s'\n", argv[i]);
			return 2;
		} else if (!src) {
			src = argv[i];
		} else {
			fprintf(stderr, "vigil sigma convert: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!src || !dst) {
		fprintf(stderr, "vigil sigma convert: usage: vigil sigma convert SRC -o DST "
				"[--report FILE]\n");
		return 2;
	}
	if (stat(src, &st) < 0) {
		fprintf(stderr, "vigil sigma convert: %s: %s\n", src, strerror(errno));
		return 1;
	}
	err = make_dir(dst);
	if (err) {
		fprintf(stderr, "vigil sigma convert: %s: %s\n", dst, strerror(-err));
		return 1;
	}
	if (!report) {
		int n = snprintf(report_path, sizeof(report_path), "%s/unconverted.txt", dst);
		if (n < 0 || (size_t)n >= sizeof(report_path)) {
			fprintf(stderr, "vigil sigma convert: %s: path too long\n", dst);
			return 1;
		}
		report = report_path;
	}

	r.src = src;
	r.dst = dst;
	if (stat(dst, &st) == 0) {
		r.dst_dev = st.st_dev;
		r.dst_ino = st.st_ino;
	}
	if (stat(src, &st) < 0) {
		fprintf(stderr, "vigil sigma convert: %s: %s\n", src, strerror(errno));
		return 1;
	}
	buf_init(&r.report, SIGMA_REPORT_MAX);
	buf_init(&r.notes, SIGMA_REPORT_MAX);
	if (S_ISDIR(st.st_mode)) {
		err = walk(&r, src, 0);
	} else if (S_ISREG(st.st_mode)) {
		convert_file(&r, src);
		err = 0;
	} else {
		err = -EINVAL;
	}
	if (err) {
		fprintf(stderr, "vigil sigma convert: %s: %s\n", src, strerror(-err));
		status = 1;
		goto out_free;
	}

	buf_init(&all, SIGMA_REPORT_MAX * 2 + 4096);
	err = buf_printf(&all,
			 "# vigil sigma convert: %u of %u rules converted.\n"
			 "# Rules not converted, one per line: FILE: reason\n",
			 r.converted, r.total);
	if (!err)
		err = buf_append(&all, r.report.data ? r.report.data : "", r.report.len);
	if (!err && r.notes.len)
		err = buf_printf(&all, "# Rules converted with a note: FILE: note\n");
	if (!err)
		err = buf_append(&all, r.notes.data ? r.notes.data : "", r.notes.len);
	if (!err)
		err = write_file(report, all.data, all.len);
	buf_release(&all);
	if (err) {
		fprintf(stderr, "vigil sigma convert: %s: %s\n", report, strerror(-err));
		status = 1;
	}
	if (r.io_failed)
		status = 1;
	if (r.total > r.converted)
		printf("report: %s (%u not converted)\n", report, r.total - r.converted);
	printf("converted %u of %u\n", r.converted, r.total);
out_free:
	buf_release(&r.report);
	buf_release(&r.notes);
	for (size_t i = 0; i < r.ndone; i++)
		free(r.done[i].file);
	free(r.done);
	return status;
}

int cmd_sigma(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "convert") == 0)
		return sigma_convert_cmd(argc - 1, argv + 1);
	fprintf(stderr, "vigil sigma: unknown subcommand '%s' (try vigil sigma --help)\n", argv[1]);
	return 2;
}
