/*
 * Exec storm: COUNT fork+exec+wait of PROGRAM (default /bin/true), shared by JOBS worker
 * processes, and one line with the throughput and the CPU time the storm used. Used by
 * bench/run.sh to measure what a sensor costs the programs it watches.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fprintf(out, "usage: exec_storm [-n COUNT] [-j JOBS] [PROGRAM]\n"
		     "  fork+exec+wait PROGRAM (default /bin/true) COUNT times (default 5000),\n"
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
		fprintf(stderr, "exec_storm: %s: '%s' is not a number from 1 to %ld\n", what, s,
			max);
		exit(2);
	}
	return v;
}

/* Runs @n fork+exec+wait rounds; returns the number that did not exit 0. */
static long storm(const char *prog, long n)
{
	char *const argv[] = {(char *)prog, NULL};
	long failed = 0;

	for (long i = 0; i < n; i++) {
		int status;
		pid_t pid = fork();

		if (pid < 0) {
			perror("exec_storm: fork");
			return failed + (n - i);
		}
		if (pid == 0) {
			execv(prog, argv);
			_exit(127);
		}
		while (waitpid(pid, &status, 0) < 0) {
			if (errno != EINTR) {
				perror("exec_storm: waitpid");
				return failed + (n - i);
			}
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	return failed;
}

int main(int argc, char **argv)
{
	const char *prog = "/bin/true";
	long count = 5000, jobs = 1, failed = 0;
	int opt;

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
	if (optind < argc)
		prog = argv[optind++];
	if (optind < argc || access(prog, X_OK) != 0) {
		usage(stderr);
		return 2;
	}

	double t0 = now_s();
	for (long j = 0; j < jobs; j++) {
		long share = count / jobs + (j < count % jobs ? 1 : 0);
		pid_t pid = fork();

		if (pid < 0) {
			perror("exec_storm: fork");
			return 1;
		}
		if (pid == 0)
			_exit(storm(prog, share) ? 1 : 0);
	}
	for (long j = 0; j < jobs; j++) {
		int status;

		if (wait(&status) < 0) {
			perror("exec_storm: wait");
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

	printf("exec_storm count=%ld jobs=%ld seconds=%.6f cpu_seconds=%.6f per_second=%.1f\n",
	       count, jobs, secs, cpu, (double)count / secs);
	if (failed) {
		fprintf(stderr, "exec_storm: %ld worker(s) saw a failed exec\n", failed);
		return 1;
	}
	return 0;
}
