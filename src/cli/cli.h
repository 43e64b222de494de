/*
 * Subcommands of the vigil command-line tool. Each takes argc/argv starting at its own
 * name and returns the process exit status (0 ok, 1 failure, 2 bad usage).
 */
#ifndef VIGIL_CLI_H
#define VIGIL_CLI_H

#define VIGIL_VERSION "0.1.0"

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

int cmd_schema(int argc, char **argv);
int cmd_sigma(int argc, char **argv);
int cmd_content(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_root(int argc, char **argv);
int cmd_sim(int argc, char **argv);
/* vigil sensor build / verify (cmd_sensor.c) */
int cmd_sensor(int argc, char **argv);
/* vigil content build / verify (cmd_bundle.c), dispatched by cmd_content */
int cmd_content_build(int argc, char **argv);
int cmd_content_verify(int argc, char **argv);
/* vigil agents, groups, releases, rollouts, alerts, tokens, audit (cmd_admin.c) */
int cmd_admin(int argc, char **argv);
/* vigil bench heartbeat (cmd_bench_heartbeat.c) */
int cmd_bench(int argc, char **argv);

#endif
