/*
 * Response actions of vigil-agent: the only one is `kill`, opt-in per rule. A process is
 * killed only when it is still the one the event named (same pid and start time), never the
 * agent itself, init or a kernel thread.
 */
#ifndef VIGIL_RESPONSE_H
#define VIGIL_RESPONSE_H

#include "../lib/event.h"
#include "../lib/rules.h"

struct agent;

enum response_result {
	RESPONSE_KILLED,
	RESPONSE_AUDITED, /* audit mode: what would have been killed is only reported */
	RESPONSE_REFUSED, /* pid 0/1, the agent, no pid or entity id in the event */
	RESPONSE_GONE,	  /* the process exited or its pid now names another process */
	RESPONSE_FAILED,
};

/* Kills the process of @ev for @rule (or only reports it in audit mode). */
enum response_result response_kill(struct agent *agent, const struct rule_info *rule,
				   const struct event *ev);

const char *response_result_name(enum response_result r);

#endif
