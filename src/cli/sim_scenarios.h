/*
 * The built-in scenarios of vigil sim (the files sim/scenarios/NAME.scn,
 * compiled in by sim/embed.sh).
 */
#ifndef VIGIL_CLI_SIM_SCENARIOS_H
#define VIGIL_CLI_SIM_SCENARIOS_H

struct sim_builtin {
	const char *name;
	const char *text;
};

extern const struct sim_builtin sim_builtins[];
extern const unsigned sim_builtin_count;

#endif
