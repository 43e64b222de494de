/*
 * Subcommands of the vigil command-line tool. Each takes argc/argv starting at its own
 * name and returns the process exit status (0 ok, 1 failure, 2 bad usage).
 */
#ifndef VIGIL_CLI_H
#define VIGIL_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lib/buf.h"
#include "lib/bundle.h"

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

/* What `vigil content build` and `vigil sensor build` take alike (cmd_bundle.c). */
struct bundle_sign_opts {
	const char *input_name; /* for the usage line: "RULES", "BINARY" */
	const char *input, *output, *expires;
	const char *key_paths[BUNDLE_MAX_SIGNATURES];
	size_t n_keys;
	bool has_version, skip_validation;
	struct bundle_params p; /* created, expires and schema version set by the parser */
};
/* Parses the build options into @o (its defaults set by the caller): 0 to go on, 1 for
 * --help (not printed), 2 on a usage error (printed). --skip-validation only if @allow_skip. */
int bundle_sign_opts_parse(const char *cmd, int argc, char **argv, bool allow_skip,
			   struct bundle_sign_opts *o);
/* Loads the keys, signs @files into @out and writes it to o->output: 0, or -1 (printed). */
int bundle_sign_write(const char *cmd, const struct bundle_sign_opts *o,
		      const struct bundle_file *files, size_t n, struct buf *out);
/* Loads the root, reads @path into @data (capped) and verifies it as @kind into @out: 0, or
 * -1 with the reason printed on one line. */
int bundle_verify_file(const char *cmd, const char *path, const char *root_path,
		       enum bundle_kind kind, struct buf *data, struct bundle **out);
/* Parses "PATH [--root FILE]" into @path and @root (left as they are when absent): 0 to go
 * on, 1 after --help (printed by @usage), 2 on a usage error (printed). */
int cli_path_root_args(const char *cmd, int argc, char **argv, void (*usage)(FILE *),
		       const char **path, const char **root);
/* A decimal number in 0..@max. */
int cli_parse_u64(const char *s, uint64_t max, uint64_t *out);
/* vigil agents, groups, releases, rollouts, alerts, tokens, audit (cmd_admin.c) */
int cmd_admin(int argc, char **argv);
/* vigil bench heartbeat (cmd_bench_heartbeat.c) */
int cmd_bench(int argc, char **argv);

#endif
