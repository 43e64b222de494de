/*
 * libFuzzer target for the agent's upload spool as a crash or a tampered disk leaves it: the
 * input is split at its first NUL into the "acked" file and a segment file, the spool is
 * opened (recovery), batched, appended to and batched again. Every batch must be one JSON
 * object whose records are numbered upwards, and what it acknowledges must cover them.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/spool.h"

static char dir[128];

static void put(const char *name, const uint8_t *data, size_t len)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "we");
	if (!f)
		abort();
	if (len && fwrite(data, 1, len, f) != len)
		abort();
	fclose(f);
}

static void empty_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];

	if (!d)
		return;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
	closedir(d);
}

static void check_batch(struct spool *s)
{
	struct buf out;
	uint64_t last = 0;
	json_t *j, *recs, *r;
	size_t i;

	buf_init(&out, 8u << 20);
	int n = spool_batch(s, 100, 1u << 20, &out, &last);
	if (n > 0) {
		j = json_loadb(out.data, out.len, 0, NULL);
		recs = json_object_get(j, "records");
		if (!json_is_array(recs) || json_array_size(recs) != (size_t)n)
			abort();
		uint64_t prev = 0;
		json_array_foreach(recs, i, r)
		{
			json_t *seq = json_object_get(r, "seq");
			if (!json_is_integer(seq) || (uint64_t)json_integer_value(seq) <= prev)
				abort();
			prev = (uint64_t)json_integer_value(seq);
		}
		if (prev > last) /* last may be past a damaged record, never before a sent one */
			abort();
		json_decref(j);
		spool_ack(s, last);
	}
	buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool *s;
	char err[256];
	const uint8_t *nul = memchr(data, 0, size);

	if (!dir[0]) {
		const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(dir, sizeof(dir), "%s/vigil-fuzz-spool-%d", base, (int)getpid());
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			abort();
	}
	empty_dir();
	if (nul) {
		put("acked", data, (size_t)(nul - data));
		put("00000000000000000001.seg", nul + 1, size - (size_t)(nul - data) - 1);
	} else {
		put("00000000000000000001.seg", data, size);
	}
	if (spool_open(dir, 4u << 20, &s, err, sizeof(err)) < 0)
		return 0;
	check_batch(s);
	if (spool_append(s, "{\"x\":1}", 7) < 0)
		abort();
	check_batch(s);
	spool_close(s);
	return 0;
}
