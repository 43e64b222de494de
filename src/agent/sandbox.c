/*
 * The test-load sandbox: fork, confine (network namespace, rlimits, no_new_privs, seccomp),
 * run one check, report through a pipe; the parent polls and enforces the timeout.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define SANDBOX_MAGIC 0x76534258u /* "vSBX" */
/* The descriptor the child writes its report to; every other one but stderr is closed. */
#define REPORT_FD 3
/* Descriptors the child may hold: stdin..stderr slots and the report pipe. */
#define CHILD_MAX_FDS 4

_Static_assert(sizeof(struct sandbox_report) < 4096, "the report must fit in one pipe write");

void sandbox_init(struct sandbox *sb)
{
	memset(sb, 0, sizeof(*sb));
	sb->fd = -1;
}

/* --- the child --- */

/* Bytes of address space mapped now, from /proc/self/statm; 0 when unknown. */
static uint64_t mapped_bytes(void)
{
	char text[128];
	unsigned long long pages = 0;
	ssize_t n;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	if (sscanf(text, "%llu", &pages) != 1)
		return 0;
	return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int set_limit(int resource, rlim_t soft, rlim_t hard)
{
	struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};
	return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

/*
 * The system calls that evaluating a compiled ruleset needs: memory management, the report
 * write, and what abort() uses so a crash is reported as one. Mappings may not be executable.
 */
static int load_filter(void)
{
	static const int plain[] = {
	    SCMP_SYS(brk),
	    SCMP_SYS(munmap),
	    SCMP_SYS(mremap),
	    SCMP_SYS(madvise),
	    SCMP_SYS(futex),
	    SCMP_SYS(exit),
	    SCMP_SYS(exit_group),
	    SCMP_SYS(rt_sigreturn),
	    SCMP_SYS(rt_sigprocmask),
	    SCMP_SYS(getpid),
	    SCMP_SYS(gettid),
	    SCMP_SYS(clock_gettime),
	    SCMP_SYS(gettimeofday),
	    SCMP_SYS(getrandom),
	    SCMP_SYS(close),
#ifdef VIGIL_SANITIZED
	    /* the sanitizers' runtime, which the test builds carry */
	    SCMP_SYS(sigaltstack),
	    SCMP_SYS(rt_sigaction),
	    SCMP_SYS(sched_yield),
#endif
	};
	scmp_filter_ctx f = seccomp_init(SCMP_ACT_KILL_PROCESS);
	int ret = 0;

	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]) && ret == 0; i++)
		ret = seccomp_rule_add(f, SCMP_ACT_ALLOW, plain[i], 0);
	if (ret == 0)
		ret = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1,
				       SCMP_A0(SCMP_CMP_EQ, REPORT_FD));
	if (ret == 0)
		ret = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1,
				       SCMP_A0(SCMP_CMP_EQ, STDERR_FILENO));
	if (ret == 0)
		ret = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (ret == 0)
		ret = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				       SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (ret == 0)
		ret = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
				       SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
	if (ret == 0)
		ret = seccomp_load(f);
	seccomp_release(f);
	return ret;
}

static void report(struct sandbox_report *rep, int status, const char *what, int err)
{
	rep->status = status;
	snprintf(rep->reason, sizeof(rep->reason), "sandbox: %s: %s", what, strerror(-err));
}

static void send_report(const struct sandbox_report *rep)
{
	ssize_t n;
	do {
		n = write(REPORT_FD, rep, sizeof(*rep));
	} while (n < 0 && errno == EINTR);
}

static _Noreturn void child_main(int wfd, pid_t parent, const struct sandbox_limits *lim,
				 sandbox_fn fn, void *ctx)
{
	struct sandbox_report rep;
	int ret;

	memset(&rep, 0, sizeof(rep));
	rep.magic = SANDBOX_MAGIC;
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	/* die with the agent, and never outlive a parent that is already gone */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(125);
	/* the report pipe becomes fd 3; stdin and stdout (the agent's event stream) are closed,
	 * stderr stays for the sanitizers' reports */
	if (wfd != REPORT_FD) {
		if (dup2(wfd, REPORT_FD) < 0)
			_exit(125);
		close(wfd);
	}
	close(STDIN_FILENO);
	close(STDOUT_FILENO);
	if (close_range(REPORT_FD + 1, ~0u, 0) < 0)
		_exit(125);

	if (unshare(CLONE_NEWNET) < 0)
		rep.no_netns = 1; /* no privilege for it: the filter still refuses every socket */
	ret = set_limit(RLIMIT_CPU, lim->cpu_seconds, lim->cpu_seconds + 1);
	if (ret == 0)
		ret = set_limit(RLIMIT_FSIZE, 0, 0);
	if (ret == 0)
		ret = set_limit(RLIMIT_CORE, 0, 0);
	if (ret == 0)
		ret = set_limit(RLIMIT_NOFILE, CHILD_MAX_FDS, CHILD_MAX_FDS);
#ifndef VIGIL_SANITIZED /* the sanitizers reserve terabytes of address space */
	if (ret == 0) {
		uint64_t as = mapped_bytes() + lim->memory_bytes;
		ret = set_limit(RLIMIT_AS, (rlim_t)as, (rlim_t)as);
	}
#endif
	if (ret) {
		report(&rep, ret, "setrlimit", ret);
		goto out;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		ret = -errno;
		report(&rep, ret, "no_new_privs", ret);
		goto out;
	}
	ret = load_filter();
	if (ret) {
		report(&rep, ret, "seccomp", ret);
		goto out;
	}
	rep.status = fn(ctx, &rep);
out:
	send_report(&rep);
	_exit(0);
}

/* --- the parent --- */

int sandbox_start(struct sandbox *sb, const struct sandbox_limits *lim, sandbox_fn fn, void *ctx,
		  uint64_t now_ns, char *err, size_t errlen)
{
	pid_t parent = getpid(), pid;
	int fds[2], ret;

	sandbox_init(sb);
	if (pipe2(fds, O_CLOEXEC) < 0) {
		ret = -errno;
		snprintf(err, errlen, "test-load: pipe: %s", strerror(errno));
		return ret;
	}
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0) {
		ret = -errno;
		snprintf(err, errlen, "test-load: pipe: %s", strerror(errno));
		goto out_close;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		snprintf(err, errlen, "test-load: fork: %s", strerror(errno));
		goto out_close;
	}
	if (pid == 0) {
		close(fds[0]);
		child_main(fds[1], parent, lim, fn, ctx);
	}
	close(fds[1]);
	sb->pid = pid;
	sb->fd = fds[0];
	sb->started_ns = now_ns;
	sb->deadline_ns = now_ns + lim->timeout_ns;
	return 0;

out_close:
	close(fds[0]);
	close(fds[1]);
	return ret;
}

/* Reads what the child has written so far. */
static void drain(struct sandbox *sb)
{
	while (sb->fd >= 0 && sb->got < sizeof(sb->rep)) {
		ssize_t n = read(sb->fd, (char *)&sb->rep + sb->got, sizeof(sb->rep) - sb->got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		sb->got += (size_t)n;
	}
}

static void finish(struct sandbox *sb)
{
	if (sb->fd >= 0)
		close(sb->fd);
	sb->fd = -1;
	sb->pid = 0;
}

static const char *signal_hint(int sig)
{
	switch (sig) {
	case SIGSYS:
		return ": a system call outside the sandbox";
	case SIGXCPU:
		return ": CPU time limit";
	case SIGKILL:
		return ": killed (memory or CPU limit)";
	case SIGSEGV:
	case SIGBUS:
		return ": crashed";
	case SIGABRT:
		return ": aborted";
	default:
		return "";
	}
}

int sandbox_poll(struct sandbox *sb, uint64_t now_ns, int *status, struct sandbox_report *rep,
		 char *err, size_t errlen)
{
	int wstatus;
	pid_t r;

	if (sb->pid <= 0)
		return 0;
	drain(sb);
	r = waitpid(sb->pid, &wstatus, WNOHANG);
	if (r == 0) {
		if (now_ns < sb->deadline_ns)
			return 0;
		sandbox_kill(sb);
		snprintf(err, errlen, "test-load timed out after %.1f s and was killed",
			 (double)(now_ns - sb->started_ns) / 1e9);
		*status = -ETIMEDOUT;
		return 1;
	}
	if (r < 0) {
		snprintf(err, errlen, "test-load: waitpid: %s", strerror(errno));
		*status = -ECHILD;
		finish(sb);
		return 1;
	}
	drain(sb);
	memset(rep, 0, sizeof(*rep));
	if (WIFSIGNALED(wstatus)) {
		int sig = WTERMSIG(wstatus);
		snprintf(err, errlen, "test-load child killed by signal %d (%s)%s", sig,
			 strsignal(sig), signal_hint(sig));
		*status = -ECHILD;
	} else if (WEXITSTATUS(wstatus) != 0 || sb->got != sizeof(sb->rep) ||
		   sb->rep.magic != SANDBOX_MAGIC) {
		snprintf(err, errlen, "test-load child exited with status %d without a report",
			 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
		*status = -ECHILD;
	} else {
		*rep = sb->rep;
		rep->reason[sizeof(rep->reason) - 1] = '\0';
		*status = rep->status > 0 ? -EINVAL : rep->status;
		snprintf(err, errlen, "%s", rep->reason);
	}
	finish(sb);
	return 1;
}

void sandbox_kill(struct sandbox *sb)
{
	if (sb->pid > 0) {
		kill(sb->pid, SIGKILL);
		while (waitpid(sb->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	finish(sb);
}
