/*
 * vigil: the command-line tool (schema, content, Sigma conversion, keys, fleet admin).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "lib/registry.h"

static const struct cli_command commands[] = {
    {"schema", cmd_schema, "print the event schema (--markdown for docs/schema.md)"},
    {"content", cmd_content, "lint, build, verify content; replay events (content --help)"},
    {"sensor", cmd_sensor, "sign and verify sensor builds (sensor --help)"},
    {"sigma", cmd_sigma, "convert Sigma rules into vigil rules (sigma convert SRC -o DST)"},
    {"keygen", cmd_keygen, "make an Ed25519 key pair (keygen -o NAME)"},
    {"root", cmd_root, "create, rotate and verify the trust root (root --help)"},
    {"agents", cmd_admin, "enrolled agents on a vigil-server (agents --help)"},
    {"groups", cmd_admin, "groups and their rollout policies (groups --help)"},
    {"releases", cmd_admin, "upload and list releases (releases --help)"},
    {"rollouts", cmd_admin, "start, pause, halt, roll back, approve rollouts (rollouts --help)"},
    {"alerts", cmd_admin, "query alerts by agent, rule, time (alerts --help)"},
    {"tokens", cmd_admin, "admin and enrollment tokens (tokens --help)"},
    {"audit", cmd_admin, "the server's audit log (audit --help)"},
    {"bench", cmd_bench, "benchmark vigil-server (bench heartbeat --agents N --seconds S)"},
    {"sim", cmd_sim, "simulate a release rolling out to a fleet (sim --help)"},
};

static void usage(FILE *out)
{
	fprintf(out, "usage: vigil COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\n  --version    print the version\n  --help       this text\n");
}

int cmd_schema(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		printf("usage: vigil schema [--markdown]\n");
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "--markdown") == 0)
		return registry_write_markdown(stdout) == 0 ? 0 : 1;
	if (argc != 1) {
		fprintf(stderr, "vigil schema: unknown argument '%s'\n", argv[1]);
		return 2;
	}
	printf("schema version %d\n", SCHEMA_VERSION);
	for (int i = 0; i < FIELD_COUNT; i++) {
		const struct field_info *f = registry_field(i);
		printf("%3d %-32s %s\n", i, f->name, registry_type_name(f->type));
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("vigil %s (schema %d)\n", VIGIL_VERSION, SCHEMA_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "vigil: unknown command '%s' (try vigil --help)\n", argv[1]);
	return 2;
}
