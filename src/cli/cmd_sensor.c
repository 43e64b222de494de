/*
 * vigil sensor build and vigil sensor verify: sign an agent executable as a sensor build (the
 * second kind of release, rolled out like content), and check one as an agent would.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "lib/bundle.h"
#include "lib/registry.h"
#include "lib/sensor_image.h"
#include "lib/trust.h"

#define SENSOR_DEFAULT_EXPIRES "30d"
#define SENSOR_DEFAULT_NAME    "vigil-sensor"

static void build_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil sensor build BINARY --version N --key S.key [--key ...] -o FILE\n"
	    "                          [--expires DURATION] [--name NAME]\n"
	    "                          [--min-agent-version V] [--allow-downgrade-from N]\n"
	    "\n"
	    "Signs the agent executable BINARY as a sensor build: a bundle of kind \"sensor\"\n"
	    "holding one file, " BUNDLE_SENSOR_FILE ", whose version is the build number. BINARY\n"
	    "must be an ELF executable for this machine whose build stamp (make\n"
	    "SENSOR_BUILD=N) is N.\n"
	    "\n"
	    "  --version N               the build number (agents take only higher ones)\n"
	    "  --key S.key               a content-signing secret key (repeat for a threshold)\n"
	    "  --expires DURATION        valid for N s, m, h, d or w "
	    "(default " SENSOR_DEFAULT_EXPIRES ")\n"
	    "  --name NAME               bundle name (default " SENSOR_DEFAULT_NAME ")\n"
	    "  --min-agent-version V     oldest agent that may install it (default this version)\n"
	    "  --allow-downgrade-from N  signed downgrade instruction: an agent running a build\n"
	    "                            above this one and at most N may go back to it\n");
}

static int sensor_build(int argc, char **argv)
{
	static const char cmd[] = "vigil sensor build";
	struct bundle_sign_opts o = {.input_name = "BINARY",
				     .expires = SENSOR_DEFAULT_EXPIRES,
				     .p = {.kind = BUNDLE_SENSOR,
					   .name = SENSOR_DEFAULT_NAME,
					   .min_agent_version = VIGIL_VERSION}};
	struct bundle_file file;
	struct buf exe, out;
	uint64_t stamped = 0;
	char err[1024];
	int ret, status = 1;

	ret = bundle_sign_opts_parse(cmd, argc, argv, false, &o);
	if (ret == 1)
		build_usage(stdout);
	if (ret)
		return ret == 1 ? 0 : ret;
	buf_init(&exe, BUNDLE_MAX_FILE_BYTES);
	buf_init(&out, BUNDLE_MAX_BYTES);
	ret = trust_file_read(o.input, BUNDLE_MAX_FILE_BYTES, &exe);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, o.input,
			ret == -E2BIG	 ? "larger than the 16 MiB file cap of a bundle"
			: ret == -ELOOP	 ? "a symbolic link (not followed)"
			: ret == -EINVAL ? "not a regular file"
					 : strerror(-ret));
		goto out;
	}
	if (sensor_image_check((const uint8_t *)exe.data, exe.len, false, &stamped, err,
			       sizeof(err))) {
		fprintf(stderr, "%s: %s: %s\n", cmd, o.input, err);
		goto out;
	}
	if (stamped != o.p.version) {
		fprintf(stderr,
			"%s: %s is build %" PRIu64 ", not %" PRIu64 " (make SENSOR_BUILD=N)\n", cmd,
			o.input, stamped, o.p.version);
		goto out;
	}
	file.name = BUNDLE_SENSOR_FILE;
	file.data = (const uint8_t *)exe.data;
	file.len = exe.len;
	if (bundle_sign_write(cmd, &o, &file, 1, &out))
		goto out;
	printf("wrote %s: sensor build %" PRIu64 ", %zu bytes, %zu signature%s\n", o.output,
	       o.p.version, out.len, o.n_keys, o.n_keys == 1 ? "" : "s");
	status = 0;
out:
	buf_release(&exe);
	buf_release(&out);
	return status;
}

static void verify_usage(FILE *out)
{
	fprintf(out, "usage: vigil sensor verify FILE --root ROOT\n\n"
		     "Checks sensor build FILE as an agent would before staging it and\n"
		     "prints its signed manifest, or exits 1 with the reason.\n");
}

static int sensor_verify(int argc, char **argv)
{
	static const char cmd[] = "vigil sensor verify";
	const char *path = NULL, *root_path = NULL;
	struct bundle *b = NULL;
	struct buf data;
	uint64_t stamped = 0;
	size_t mlen;
	char err[1024];
	int status = 1;

	int ret = cli_path_root_args(cmd, argc, argv, verify_usage, &path, &root_path);
	if (ret)
		return ret == 1 ? 0 : ret;
	if (!path || !root_path) {
		fprintf(stderr, "%s: usage: vigil sensor verify FILE --root ROOT\n", cmd);
		return 2;
	}
	buf_init(&data, BUNDLE_MAX_BYTES);
	if (bundle_verify_file(cmd, path, root_path, BUNDLE_SENSOR, &data, &b))
		goto out;
	const struct bundle_file *exe = bundle_file(b, 0);
	if (sensor_image_check(exe->data, exe->len, false, &stamped, err, sizeof(err))) {
		fprintf(stderr, "%s: %s: %s\n", cmd, path, err);
		goto out;
	}
	if (stamped != bundle_manifest(b)->version) {
		fprintf(stderr,
			"%s: %s: the executable is build %" PRIu64 ", the bundle says %" PRIu64
			"\n",
			cmd, path, stamped, bundle_manifest(b)->version);
		goto out;
	}
	const char *manifest = bundle_manifest_json(b, &mlen);
	printf("%.*s\n", (int)mlen, manifest);
	status = 0;
out:
	bundle_free(b);
	buf_release(&data);
	return status;
}

int cmd_sensor(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "build") == 0)
		return sensor_build(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return sensor_verify(argc - 1, argv + 1);
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: vigil sensor build BINARY --version N --key S.key -o FILE\n"
		       "       vigil sensor verify FILE --root ROOT\n");
		return 0;
	}
	fprintf(stderr, "vigil sensor: expected build or verify (try --help)\n");
	return 2;
}
