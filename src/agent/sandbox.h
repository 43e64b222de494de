/*
 * The test-load sandbox: a forked child that runs checks on content the agent has compiled,
 * with no network, no new privileges, resource limits, a seccomp filter that kills it on any
 * system call the checks do not need, and a wall-clock timeout the parent enforces. The
 * parent is never blocked: it polls the child from its event loop.
 */
#ifndef VIGIL_AGENT_SANDBOX_H
#define VIGIL_AGENT_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SANDBOX_REASON_BYTES 512u

struct sandbox_limits {
	unsigned cpu_seconds;  /* RLIMIT_CPU of the child */
	uint64_t memory_bytes; /* address space the child may map beyond what it inherits */
	uint64_t timeout_ns;   /* wall clock from the fork; the parent kills the child past it */
};

/* What the child sends back: one write, smaller than PIPE_BUF, so it arrives whole or not. */
struct sandbox_report {
	uint32_t magic;
	int32_t status;	      /* 0 passed, or -errno */
	uint32_t counters[4]; /* for the check's own use */
	uint32_t no_netns;    /* 1 when the child could not leave the network namespace */
	char reason[SANDBOX_REASON_BYTES];
};

/* The check, run in the child once it is sandboxed: returns 0 or -errno with rep->reason set. */
typedef int (*sandbox_fn)(void *ctx, struct sandbox_report *rep);

struct sandbox {
	pid_t pid; /* 0 when no child runs */
	int fd;	   /* read end of the report pipe */
	uint64_t started_ns;
	uint64_t deadline_ns;
	size_t got;
	struct sandbox_report rep;
};

/* A sandbox with no child. */
void sandbox_init(struct sandbox *sb);

/*
 * Forks the child, which sets up the sandbox and runs @fn(@ctx). @now_ns is CLOCK_MONOTONIC.
 * Returns 0, or -errno with a reason in @err (no child is left then). The caller must have no
 * other thread running (fork).
 */
int sandbox_start(struct sandbox *sb, const struct sandbox_limits *lim, sandbox_fn fn, void *ctx,
		  uint64_t now_ns, char *err, size_t errlen);

/*
 * Checks on the child without blocking. Returns 0 while it runs; 1 once it has finished
 * (reaped) with *@status 0 when it passed, or a negative errno and the reason in @err
 * (its own report, a signal that killed it, or the timeout, after which it is killed).
 * *@rep receives the child's report when it sent one.
 */
int sandbox_poll(struct sandbox *sb, uint64_t now_ns, int *status, struct sandbox_report *rep,
		 char *err, size_t errlen);

/* Kills and reaps a running child. Accepts a sandbox with none. */
void sandbox_kill(struct sandbox *sb);

#endif
