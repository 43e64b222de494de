/*
 * File storm: COUNT rounds of create+write, rename and unlink of a small file in DIR, shared
 * by JOBS worker processes, and one line with the throughput (rounds per second) and the
 * CPU time the storm used. Used by bench/run.sh to measure what a sensor costs file-heavy
 * programs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fprintf(out, "usage: file_storm [-n COUNT] [-j JOBS] DIR\n"
		     "  COUNT (default 50000) rounds of create+write, rename, unlink in DIR,\n"
		     "  split over JOBS processes (default 1); prints one result line\n");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long parse_count(const char *s, const char *what, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > max) {
		fprintf(stderr, "file_storm: %s: '%s' is not a number from 1 to %ld\n", what, s,
			max);
		exit(2);
	}
	return v;
}

/* Runs @n rounds in the directory @dfd as worker @job; returns 0 or -1 after a message. */
static int storm(int dfd, long job, long n)
{
	static const char data[64] = "vigil file storm: 64 bytes of content for every file....\n";
	char a[64], b[64];

	for (long i = 0; i < n; i++) {
		int fd;

		if (snprintf(a, sizeof(a), "w%ld-%ld.tmp", job, i) >= (int)sizeof(a) ||
		    snprintf(b, sizeof(b), "w%ld-%ld.dat", job, i) >= (int)sizeof(b))
			return -1;
		fd = openat(dfd, a, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			perror("file_storm: open");
			return -1;
		}
		if (write(fd, data, sizeof(data)) != (ssize_t)sizeof(data)) {
			perror("file_storm: write");
			close(fd);
			return -1;
		}
		close(fd);
		if (renameat(dfd, a, dfd, b) < 0) {
			perror("file_storm: rename");
			return -1;
		}
		if (unlinkat(dfd, b, 0) < 0) {
			perror("file_storm: unlink");
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	long count = 50000, jobs = 1, failed = 0;
	int opt, dfd;

	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	while ((opt = getopt(argc, argv, "n:j:")) != -1) {
		switch (opt) {
		case 'n':
			count = parse_count(optarg, "-n", 100000000L);
			break;
		case 'j':
			jobs = parse_count(optarg, "-j", 1024);
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	dfd = open(argv[optind], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		fprintf(stderr, "file_storm: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}

	double t0 = now_s();
	for (long j = 0; j < jobs; j++) {
		long share = count / jobs + (j < count % jobs ? 1 : 0);
		pid_t pid = fork();

		if (pid < 0) {
			perror("file_storm: fork");
			return 1;
		}
		if (pid == 0)
			_exit(storm(dfd, j, share) ? 1 : 0);
	}
	for (long j = 0; j < jobs; j++) {
		int status;

		if (wait(&status) < 0) {
			perror("file_storm: wait");
			return 1;
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	double secs = now_s() - t0;
	struct rusage ru;

	getrusage(RUSAGE_CHILDREN, &ru); /* workers and what they ran, all waited for */
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

	printf("file_storm count=%ld jobs=%ld seconds=%.6f cpu_seconds=%.6f per_second=%.1f\n",
	       count, jobs, secs, cpu, (double)count / secs);
	close(dfd);
	return failed ? 1 : 0;
}
