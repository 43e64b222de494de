/*
 * Unit tests for the agent's upload spool (src/agent/spool.c): numbering, batches, acks,
 * recovery after a restart and after a line cut short, the byte bound and its eviction count.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "agent/spool.h"

static char parent[64], dir[96];

static int setup(void **state)
{
	snprintf(parent, sizeof(parent), "/tmp/vigil-spool-XXXXXX");
	if (!mkdtemp(parent))
		return -1;
	snprintf(dir, sizeof(dir), "%s/spool", parent);
	(void)state;
	return 0;
}

static int teardown(void **state)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[384];

	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
	rmdir(parent);
	(void)state;
	return 0;
}

static struct spool *open_spool(uint64_t max)
{
	struct spool *s = NULL;
	char err[256];
	if (spool_open(dir, max, &s, err, sizeof(err)))
		fail_msg("spool_open: %s", err);
	return s;
}

/* The seqs of a batch, checking its JSON. */
static size_t batch_seqs(struct spool *s, size_t max, int64_t *seqs, uint64_t *last)
{
	struct buf b;
	json_t *j, *r;
	size_t i, n;

	buf_init(&b, 1 << 26);
	*last = 0;
	int got = spool_batch(s, max, 1 << 24, &b, last);
	assert_true(got >= 0);
	if (got == 0) {
		buf_release(&b);
		return 0;
	}
	j = json_loadb(b.data, b.len, 0, NULL);
	assert_non_null(j);
	n = json_array_size(json_object_get(j, "records"));
	assert_int_equal(n, (size_t)got);
	json_array_foreach(json_object_get(j, "records"), i, r)
	{
		seqs[i] = json_integer_value(json_object_get(r, "seq"));
		assert_true(json_is_object(json_object_get(r, "data")));
	}
	json_decref(j);
	buf_release(&b);
	return n;
}

static void numbering_batches_and_acks(void **state)
{
	struct spool *s = open_spool(0);
	struct spool_stats st;
	int64_t seqs[16];
	uint64_t last;
	char rec[64];

	for (int i = 1; i <= 10; i++) {
		snprintf(rec, sizeof(rec), "{\"i\":%d}", i);
		assert_int_equal(spool_append(s, rec, strlen(rec)), i);
	}
	assert_int_equal(spool_append(s, "{\"a\":\n1}", 8), -E2BIG);
	assert_int_equal(batch_seqs(s, 4, seqs, &last), 4);
	assert_int_equal(seqs[0], 1);
	assert_int_equal(last, 4);
	/* unacknowledged: the same batch again */
	assert_int_equal(batch_seqs(s, 4, seqs, &last), 4);
	assert_int_equal(seqs[0], 1);
	assert_int_equal(spool_ack(s, 4), 0);
	assert_int_equal(batch_seqs(s, 16, seqs, &last), 6);
	assert_int_equal(seqs[0], 5);
	assert_int_equal(last, 10);
	spool_get_stats(s, &st);
	assert_int_equal(st.pending, 6);
	assert_int_equal(st.rejected, 1);
	spool_close(s);

	/* a restart keeps the numbering and what was acknowledged */
	s = open_spool(0);
	assert_int_equal(batch_seqs(s, 16, seqs, &last), 6);
	assert_int_equal(seqs[0], 5);
	assert_int_equal(spool_append(s, "{}", 2), 11);
	assert_int_equal(spool_ack(s, 11), 0);
	assert_int_equal(batch_seqs(s, 16, seqs, &last), 0);
	spool_get_stats(s, &st);
	assert_int_equal(st.pending, 0);
	assert_int_equal(st.bytes, 0);
	spool_close(s);
	s = open_spool(0);
	assert_int_equal(spool_append(s, "{}", 2), 12);
	spool_close(s);
	(void)state;
}

static void cut_line_is_dropped(void **state)
{
	struct spool *s = open_spool(0);
	int64_t seqs[16];
	uint64_t last;
	char path[128];

	assert_int_equal(spool_append(s, "{\"a\":1}", 7), 1);
	assert_int_equal(spool_append(s, "{\"a\":2}", 7), 2);
	spool_close(s);
	snprintf(path, sizeof(path), "%s/%020d.seg", dir, 1);
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "3\t{\"a\":", 7), 7);
	close(fd);
	s = open_spool(0);
	assert_int_equal(batch_seqs(s, 16, seqs, &last), 2);
	assert_int_equal(spool_append(s, "{\"a\":3}", 7), 3);
	assert_int_equal(batch_seqs(s, 16, seqs, &last), 3);
	assert_int_equal(seqs[2], 3);
	spool_close(s);
	(void)state;
}

static void write_acked_file(const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/acked", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	fclose(f);
}

/* A damaged "acked" file or out-of-order numbers on disk never stop the spool: what is on disk
 * is sent again (the server drops duplicates) and new records keep their numbering. */
static void damaged_disk_never_stops_the_spool(void **state)
{
	static const char *const bad[] = {
	    "-2\n", "18446744073709551614\n", "9007199254740991\n", "12abc\n", "\n", "7\n8\n"};
	struct spool *s;
	int64_t seqs[16];
	uint64_t last;
	char path[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = open_spool(0);
		int64_t first = spool_append(s, "{\"a\":1}", 7);
		assert_true(first > 0);
		spool_close(s);
		write_acked_file(bad[i]);
		s = open_spool(0);
		/* the record is still pending and the next one follows it */
		assert_int_equal(batch_seqs(s, 16, seqs, &last), 1);
		assert_int_equal(seqs[0], first);
		assert_int_equal(spool_append(s, "{\"a\":2}", 7), first + 1);
		assert_int_equal(spool_ack(s, (uint64_t)first + 1), 0);
		spool_close(s);
	}
	/* numbers that go down within a segment were not written by the spool: skipped */
	s = open_spool(0);
	spool_close(s);
	write_acked_file("0\n");
	snprintf(path, sizeof(path), "%s/%020d.seg", dir, 900);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("900\t{\"a\":900}\n901\t{\"a\":901}\n5\t{\"a\":5}\n902\t{\"a\":902}\n", f);
	fclose(f);
	s = open_spool(0);
	size_t n = batch_seqs(s, 16, seqs, &last);
	for (size_t i = 1; i < n; i++)
		assert_true(seqs[i] > seqs[i - 1]);
	assert_true(last >= (uint64_t)seqs[n - 1]);
	spool_close(s);
	(void)state;
}

static void bounded_with_counted_evictions(void **state)
{
	/* the bound is at least two segments */
	struct spool *s = open_spool(1);
	struct spool_stats st;
	int64_t *seqs = malloc(20000 * sizeof(*seqs));
	uint64_t last;
	char rec[1100];

	memset(rec, 'x', sizeof(rec));
	memcpy(rec, "{\"p\":\"", 6);
	memcpy(rec + sizeof(rec) - 2, "\"}", 2);
	for (int i = 0; i < 5000; i++)
		assert_true(spool_append(s, rec, sizeof(rec)) > 0);
	spool_get_stats(s, &st);
	assert_true(st.bytes <= 2u * SPOOL_SEGMENT_BYTES);
	assert_true(st.evicted > 0);
	/* every record is either still there or counted as evicted */
	assert_int_equal(st.evicted + st.pending, 5000);
	size_t n = batch_seqs(s, 20000, seqs, &last);
	assert_int_equal(n, st.pending);
	assert_int_equal(seqs[0], (int64_t)st.evicted + 1);
	assert_int_equal(last, 5000);
	free(seqs);
	spool_close(s);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(numbering_batches_and_acks, setup, teardown),
	    cmocka_unit_test_setup_teardown(cut_line_is_dropped, setup, teardown),
	    cmocka_unit_test_setup_teardown(bounded_with_counted_evictions, setup, teardown),
	    cmocka_unit_test_setup_teardown(damaged_disk_never_stops_the_spool, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
