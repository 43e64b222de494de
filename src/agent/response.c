/*
 * The kill response: pidfd-based, so a pid reused between the event and the signal is
 * never hit.
 */
#include "response.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent.h"
#include "proc_scan.h"

const char *response_result_name(enum response_result r)
{
	switch (r) {
	case RESPONSE_KILLED:
		return "killed";
	case RESPONSE_AUDITED:
		return "audited";
	case RESPONSE_REFUSED:
		return "refused";
	case RESPONSE_GONE:
		return "gone";
	case RESPONSE_FAILED:
		return "failed";
	}
	return "unknown";
}

enum response_result response_kill(struct agent *agent, const struct rule_info *rule,
				   const struct event *ev)
{
	char entity[PROC_ENTITY_ID_LEN + 1];
	uint64_t start_ticks;
	uint32_t ppid;
	int64_t pid;
	size_t len;
	enum response_result r;

	const char *want = event_str(ev, F_PROCESS_ENTITY_ID, &len);
	if (!event_int(ev, F_PROCESS_PID, &pid) || pid <= 1 || pid > INT32_MAX ||
	    pid == agent->self_pid || !want || len != PROC_ENTITY_ID_LEN)
		return RESPONSE_REFUSED;
	if (agent->opt.response_audit)
		return RESPONSE_AUDITED;

	/* hold the process by pidfd, then check it is still the one the event named */
	int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd < 0)
		return errno == ESRCH ? RESPONSE_GONE : RESPONSE_FAILED;
	if (proc_read_start((int)pid, &ppid, &start_ticks) < 0) {
		r = RESPONSE_GONE;
		goto out_close;
	}
	proc_entity_id(agent->boot_id, (uint32_t)pid, start_ticks, entity);
	if (memcmp(entity, want, PROC_ENTITY_ID_LEN) != 0) {
		r = RESPONSE_GONE;
		goto out_close;
	}
	if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0)
		r = errno == ESRCH ? RESPONSE_GONE : RESPONSE_FAILED;
	else
		r = RESPONSE_KILLED;
out_close:
	close(pidfd);
	(void)rule;
	return r;
}
