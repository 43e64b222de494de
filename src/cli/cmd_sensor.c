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

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (!s || !*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (max - (uint64_t)(*s - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

static int sensor_build(int argc, char **argv)
{
	static const char cmd[] = "vigil sensor build";
	const char *binary = NULL, *output = NULL, *expires = SENSOR_DEFAULT_EXPIRES;
	const char *key_paths[BUNDLE_MAX_SIGNATURES];
	struct trust_secret keys[BUNDLE_MAX_SIGNATURES];
	struct bundle_params p = {
	    .kind = BUNDLE_SENSOR, .name = SENSOR_DEFAULT_NAME, .min_agent_version = VIGIL_VERSION};
	struct bundle_file file;
	struct buf exe, out;
	trust_time_t lifetime;
	uint64_t stamped = 0;
	size_t n_keys = 0;
	bool has_version = false;
	char err[1024];
	int ret, status = 1;

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
			build_usage(stdout);
			return 0;
		}
		if (opt[0] != '-' || opt[1] == '\0') {
			if (binary) {
				fprintf(stderr, "%s: unexpected argument '%s'\n", cmd, opt);
				return 2;
			}
			binary = opt;
			continue;
		}
		if (!val) {
			fprintf(stderr, "%s: %s needs a value (try --help)\n", cmd, opt);
			return 2;
		}
		i++;
		if (strcmp(opt, "--version") == 0) {
			if (parse_u64(val, BUNDLE_MAX_VERSION, &p.version) || p.version < 1) {
				fprintf(stderr, "%s: --version: '%s' is not in 1..2^53-1\n", cmd,
					val);
				return 2;
			}
			has_version = true;
		} else if (strcmp(opt, "--key") == 0) {
			if (n_keys >= BUNDLE_MAX_SIGNATURES) {
				fprintf(stderr, "%s: more than %u --key options\n", cmd,
					BUNDLE_MAX_SIGNATURES);
				return 2;
			}
			key_paths[n_keys++] = val;
		} else if (strcmp(opt, "--expires") == 0) {
			expires = val;
		} else if (strcmp(opt, "--name") == 0) {
			p.name = val;
		} else if (strcmp(opt, "--min-agent-version") == 0) {
			p.min_agent_version = val;
		} else if (strcmp(opt, "--allow-downgrade-from") == 0) {
			if (parse_u64(val, BUNDLE_MAX_VERSION, &p.allow_downgrade_from)) {
				fprintf(stderr,
					"%s: --allow-downgrade-from: '%s' is not a version\n", cmd,
					val);
				return 2;
			}
			p.has_allow_downgrade = true;
		} else if (strcmp(opt, "-o") == 0 || strcmp(opt, "--output") == 0) {
			output = val;
		} else {
			fprintf(stderr, "%s: unknown option '%s' (try --help)\n", cmd, opt);
			return 2;
		}
	}
	if (!binary || !output || !has_version || n_keys == 0) {
		fprintf(stderr, "%s: BINARY, --version, --key and -o are required (try --help)\n",
			cmd);
		return 2;
	}
	if (trust_duration_parse(expires, &lifetime)) {
		fprintf(stderr, "%s: --expires: '%s' is not a duration (such as 30d)\n", cmd,
			expires);
		return 2;
	}
	memset(keys, 0, sizeof(keys));
	buf_init(&exe, BUNDLE_MAX_FILE_BYTES);
	buf_init(&out, BUNDLE_MAX_BYTES);
	ret = trust_file_read(binary, BUNDLE_MAX_FILE_BYTES, &exe);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, binary,
			ret == -E2BIG	 ? "larger than the 16 MiB file cap of a bundle"
			: ret == -ELOOP	 ? "a symbolic link (not followed)"
			: ret == -EINVAL ? "not a regular file"
					 : strerror(-ret));
		goto out;
	}
	if (sensor_image_check((const uint8_t *)exe.data, exe.len, false, &stamped, err,
			       sizeof(err))) {
		fprintf(stderr, "%s: %s: %s\n", cmd, binary, err);
		goto out;
	}
	if (stamped != p.version) {
		fprintf(stderr,
			"%s: %s is build %" PRIu64 ", not %" PRIu64 " (make SENSOR_BUILD=N)\n", cmd,
			binary, stamped, p.version);
		goto out;
	}
	for (size_t i = 0; i < n_keys; i++) {
		if (trust_secret_load(key_paths[i], &keys[i], err, sizeof(err))) {
			fprintf(stderr, "%s: %s: %s\n", cmd, key_paths[i], err);
			goto out;
		}
	}
	file.name = BUNDLE_SENSOR_FILE;
	file.data = (const uint8_t *)exe.data;
	file.len = exe.len;
	p.created = (trust_time_t)time(NULL);
	p.expires = p.created + lifetime;
	p.schema_version = SCHEMA_VERSION;
	ret = bundle_build(&p, &file, 1, keys, n_keys, &out, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "%s: %s\n", cmd, err);
		goto out;
	}
	ret = trust_file_write(output, out.data, out.len, 0644, false);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, output, strerror(-ret));
		goto out;
	}
	printf("wrote %s: sensor build %" PRIu64 ", %zu bytes, %zu signature%s\n", output,
	       p.version, out.len, n_keys, n_keys == 1 ? "" : "s");
	status = 0;
out:
	for (size_t i = 0; i < n_keys; i++)
		trust_secret_wipe(&keys[i]);
	buf_release(&exe);
	buf_release(&out);
	return status;
}

static int sensor_verify(int argc, char **argv)
{
	static const char cmd[] = "vigil sensor verify";
	struct bundle_verify_options opt = {.kind = BUNDLE_SENSOR};
	const char *path = NULL, *root_path = NULL;
	struct trust_root *root = NULL;
	struct bundle *b = NULL;
	struct buf data;
	uint64_t stamped = 0;
	size_t mlen;
	char err[1024];
	int status = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: vigil sensor verify FILE --root ROOT\n\n"
			       "Checks sensor build FILE as an agent would before staging it and\n"
			       "prints its signed manifest, or exits 1 with the reason.\n");
			return 0;
		} else if (strcmp(argv[i], "--root") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "%s: --root needs a file\n", cmd);
				return 2;
			}
			root_path = argv[i];
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "%s: unknown option '%s' (try --help)\n", cmd, argv[i]);
			return 2;
		} else if (!path) {
			path = argv[i];
		} else {
			fprintf(stderr, "%s: unexpected argument '%s'\n", cmd, argv[i]);
			return 2;
		}
	}
	if (!path || !root_path) {
		fprintf(stderr, "%s: usage: vigil sensor verify FILE --root ROOT\n", cmd);
		return 2;
	}
	buf_init(&data, BUNDLE_MAX_BYTES);
	if (trust_root_load(root_path, &root, err, sizeof(err))) {
		fprintf(stderr, "%s: %s: %s\n", cmd, root_path, err);
		goto out;
	}
	int ret = trust_file_read(path, BUNDLE_MAX_BYTES, &data);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, path,
			ret == -E2BIG ? "larger than the bundle cap" : strerror(-ret));
		goto out;
	}
	opt.now = (trust_time_t)time(NULL);
	opt.schema_version = SCHEMA_VERSION;
	opt.agent_version = VIGIL_VERSION;
	if (bundle_verify(root, data.data, data.len, &opt, &b, err, sizeof(err))) {
		fprintf(stderr, "%s: %s: %s\n", cmd, path, err);
		goto out;
	}
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
	trust_root_free(root);
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
