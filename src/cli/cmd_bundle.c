/*
 * vigil content build and vigil content verify: package a rules tree as a signed bundle (after
 * compiling it and running its tests), and check a bundle as an agent would before activating it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "lib/bundle.h"
#include "lib/engine.h"
#include "lib/registry.h"
#include "lib/rules.h"
#include "lib/trust.h"

/* How long a bundle is valid when --expires is not given. */
#define BUILD_DEFAULT_EXPIRES "30d"
#define BUILD_DEFAULT_NAME    "vigil-content"
/* Bytes of the rule-test failure report kept for the message. */
#define BUILD_REPORT_MAX (1024u * 1024u)

struct rule_file {
	char *name; /* relative to the rules root, '/'-separated */
	char *data;
	size_t len;
};

struct collection {
	const char *root;
	struct rule_file *files;
	size_t n, cap;
	size_t bytes;
};

static void build_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil content build RULES --version N --key S.key [--key ...] -o FILE\n"
	    "                           [--expires DURATION] [--name NAME]\n"
	    "                           [--min-agent-version V] [--allow-downgrade-from N]\n"
	    "                           [--skip-validation]\n"
	    "\n"
	    "Compiles the rules in RULES (a directory searched for *.yml / *.yaml, or one file)\n"
	    "against this build's field registry, runs every rule's tests, and writes FILE: one\n"
	    "signed bundle holding those exact bytes. Content that fails is refused.\n"
	    "\n"
	    "  --version N               bundle version (agents take only higher ones)\n"
	    "  --key S.key               a content-signing secret key (repeat for a threshold)\n"
	    "  --expires DURATION        valid for N s, m, h, d or w "
	    "(default " BUILD_DEFAULT_EXPIRES ")\n"
	    "  --name NAME               bundle name, [A-Za-z0-9._-] (default " BUILD_DEFAULT_NAME
	    ")\n"
	    "  --min-agent-version V     oldest agent that may load it (default this version)\n"
	    "  --allow-downgrade-from N  signed downgrade instruction: an agent whose active\n"
	    "                            version is above this bundle's and at most N may go\n"
	    "                            back to it\n"
	    "  --skip-validation         TESTS ONLY: sign without compiling or testing, so that "
	    "an\n"
	    "                            agent's own checks can be tested\n");
}

static void verify_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil content verify FILE --root ROOT [--compile] [--active-version N]\n"
	    "\n"
	    "Checks bundle FILE as an agent would before activating it: size caps, layout, key\n"
	    "ids and signatures against the trust root ROOT (threshold of distinct keys), expiry,\n"
	    "schema and agent version, payload hash and archive. Prints the signed manifest as\n"
	    "JSON, or exits 1 with the reason on one line.\n"
	    "\n"
	    "  --compile   also compile the payload against this build's field registry and run\n"
	    "              the rules' tests (the agent's next step)\n"
	    "  --active-version N\n"
	    "              also apply the agent's version rule as if N were active: only a\n"
	    "              higher version, or a lower one whose signed downgrade instruction\n"
	    "              covers N\n");
}

int cli_parse_u64(const char *s, uint64_t max, uint64_t *out)
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

static bool rule_file_name(const char *name)
{
	size_t len = strlen(name);

	return (len > 4 && strcmp(name + len - 4, ".yml") == 0) ||
	       (len > 5 && strcmp(name + len - 5, ".yaml") == 0);
}

static void collection_free(struct collection *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->files[i].name);
		free(c->files[i].data);
	}
	free(c->files);
	c->files = NULL;
	c->n = c->cap = 0;
}

/* Reads @path into the collection as @name. Prints the reason on error. */
static int collect_file(struct collection *c, const char *path, const char *name)
{
	static const char cmd[] = "vigil content build";
	struct buf data;
	const char *why;
	int ret;

	if (!bundle_name_safe(name, strlen(name), &why)) {
		fprintf(stderr, "%s: %s: name cannot go into a bundle: %s\n", cmd, path, why);
		return -EINVAL;
	}
	if (c->n >= BUNDLE_MAX_FILES) {
		fprintf(stderr, "%s: %s: more than %u rule files\n", cmd, c->root,
			BUNDLE_MAX_FILES);
		return -E2BIG;
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64, bytes;
		struct rule_file *p;
		if (size_mul(cap, sizeof(*p), &bytes) || !(p = realloc(c->files, bytes)))
			return -ENOMEM;
		c->files = p;
		c->cap = cap;
	}
	buf_init(&data, BUNDLE_MAX_FILE_BYTES);
	ret = trust_file_read(path, BUNDLE_MAX_FILE_BYTES, &data);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, path,
			ret == -E2BIG	? "larger than the 16 MiB a bundle file may have"
			: ret == -ELOOP ? "symbolic links are not followed"
					: strerror(-ret));
		buf_release(&data);
		return ret;
	}
	if (size_add(c->bytes, data.len, &c->bytes) || c->bytes > BUNDLE_MAX_BYTES) {
		fprintf(stderr, "%s: %s: rule files larger than the %u byte bundle cap together\n",
			cmd, c->root, BUNDLE_MAX_BYTES);
		buf_release(&data);
		return -E2BIG;
	}
	c->files[c->n].name = strdup(name);
	if (!c->files[c->n].name) {
		buf_release(&data);
		return -ENOMEM;
	}
	c->files[c->n].data = data.data ? data.data : strdup("");
	c->files[c->n].len = data.len;
	if (!c->files[c->n].data) {
		free(c->files[c->n].name);
		return -ENOMEM;
	}
	c->n++;
	return 0;
}

static int name_sort(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Collects the rule files under directory @dir (whose bundle name prefix is @prefix, "" at
 * the top): entries starting with '.' are skipped as the rule loader skips them, symbolic
 * links to rule files are refused.
 */
static int collect_dir(struct collection *c, const char *dir, const char *prefix, unsigned depth)
{
	static const char cmd[] = "vigil content build";
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	if (depth >= BUNDLE_MAX_NAME_DEPTH) {
		fprintf(stderr,
			"%s: %s: directories nested deeper than a bundle name may be (%u)\n", cmd,
			dir, BUNDLE_MAX_NAME_DEPTH);
		return -E2BIG;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || !(d = fdopendir(fd))) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		fprintf(stderr, "%s: %s: %s\n", cmd, dir, strerror(-ret));
		return ret;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 32, bytes;
			char **p;
			if (size_mul(ncap, sizeof(*p), &bytes) || !(p = realloc(names, bytes))) {
				ret = -ENOMEM;
				goto out;
			}
			names = p;
			cap = ncap;
		}
		if (!(names[n] = strdup(de->d_name))) {
			ret = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (n)
		qsort(names, n, sizeof(*names), name_sort);
	for (size_t i = 0; i < n && !ret; i++) {
		char path[4096], rel[4096];
		struct stat st;
		int a = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		int b = snprintf(rel, sizeof(rel), "%s%s%s", prefix, *prefix ? "/" : "", names[i]);
		if (a < 0 || (size_t)a >= sizeof(path) || b < 0 || (size_t)b >= sizeof(rel)) {
			fprintf(stderr, "%s: %s/%s: path too long\n", cmd, dir, names[i]);
			ret = -ENAMETOOLONG;
			break;
		}
		if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			ret = -errno;
			fprintf(stderr, "%s: %s: %s\n", cmd, path, strerror(-ret));
			break;
		}
		if (S_ISDIR(st.st_mode))
			ret = collect_dir(c, path, rel, depth + 1);
		else if (rule_file_name(names[i]) && S_ISLNK(st.st_mode)) {
			fprintf(stderr, "%s: %s: symbolic links are not followed\n", cmd, path);
			ret = -ELOOP;
		} else if (rule_file_name(names[i]) && S_ISREG(st.st_mode))
			ret = collect_file(c, path, rel);
	}
out:
	if (ret == -ENOMEM)
		fprintf(stderr, "%s: out of memory\n", cmd);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return ret;
}

static int rule_file_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rule_file *)a)->name, ((const struct rule_file *)b)->name);
}

/*
 * The publisher's gate: compiles @c's files, in archive order and from the bytes that will be
 * signed, with the rule library the agent uses, and runs every rule's tests. Returns 0 with
 * the counts of rules and passed tests, or prints one line naming the first problem and
 * returns -EINVAL (or -errno).
 */
static int validate_rules(const struct collection *c, size_t *n_rules, unsigned *n_tests)
{
	static const char cmd[] = "vigil content build";
	struct rules_source *src;
	struct ruleset *rs = NULL;
	struct rules_test_result res;
	struct buf report;
	char err[1024];
	size_t bytes;
	int ret;

	if (size_mul(c->n, sizeof(*src), &bytes) || !(src = malloc(bytes ? bytes : 1))) {
		fprintf(stderr, "%s: out of memory\n", cmd);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->n; i++) {
		src[i].name = c->files[i].name;
		src[i].data = c->files[i].data;
		src[i].len = c->files[i].len;
	}
	err[0] = '\0';
	ret = ruleset_load_sources(src, c->n, &rs, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "%s: refused: %s\n", cmd, err[0] ? err : strerror(-ret));
		goto out;
	}
	buf_init(&report, BUILD_REPORT_MAX);
	memset(&res, 0, sizeof(res));
	ret = ruleset_run_tests(rs, &report, &res);
	if (ret) {
		const char *first = report.data ? report.data : "";
		size_t len = strcspn(first, "\n");
		fprintf(stderr, "%s: refused: %u rule test%s failed; first: %.*s\n", cmd,
			res.failed, res.failed == 1 ? "" : "s", (int)len, first);
	} else {
		*n_rules = ruleset_count(rs);
		*n_tests = res.passed;
	}
	buf_release(&report);
out:
	ruleset_free(rs);
	free(src);
	return ret;
}

int bundle_sign_opts_parse(const char *cmd, int argc, char **argv, bool allow_skip,
			   struct bundle_sign_opts *o)
{
	trust_time_t lifetime;

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0)
			return 1;
		if (allow_skip && strcmp(opt, "--skip-validation") == 0) {
			o->skip_validation = true;
			continue;
		}
		if (opt[0] != '-' || opt[1] == '\0') {
			if (o->input) {
				fprintf(stderr, "%s: unexpected argument '%s'\n", cmd, opt);
				return 2;
			}
			o->input = opt;
			continue;
		}
		if (!val) {
			fprintf(stderr, "%s: %s needs a value (try --help)\n", cmd, opt);
			return 2;
		}
		i++;
		if (strcmp(opt, "--version") == 0) {
			if (cli_parse_u64(val, BUNDLE_MAX_VERSION, &o->p.version) ||
			    o->p.version < 1) {
				fprintf(stderr, "%s: --version: '%s' is not in 1..2^53-1\n", cmd,
					val);
				return 2;
			}
			o->has_version = true;
		} else if (strcmp(opt, "--key") == 0) {
			if (o->n_keys >= BUNDLE_MAX_SIGNATURES) {
				fprintf(stderr, "%s: more than %u --key options\n", cmd,
					BUNDLE_MAX_SIGNATURES);
				return 2;
			}
			o->key_paths[o->n_keys++] = val;
		} else if (strcmp(opt, "--expires") == 0) {
			o->expires = val;
		} else if (strcmp(opt, "--name") == 0) {
			o->p.name = val;
		} else if (strcmp(opt, "--min-agent-version") == 0) {
			o->p.min_agent_version = val;
		} else if (strcmp(opt, "--allow-downgrade-from") == 0) {
			if (cli_parse_u64(val, BUNDLE_MAX_VERSION, &o->p.allow_downgrade_from)) {
				fprintf(stderr,
					"%s: --allow-downgrade-from: '%s' is not a version\n", cmd,
					val);
				return 2;
			}
			o->p.has_allow_downgrade = true;
		} else if (strcmp(opt, "-o") == 0 || strcmp(opt, "--output") == 0) {
			o->output = val;
		} else {
			fprintf(stderr, "%s: unknown option '%s' (try --help)\n", cmd, opt);
			return 2;
		}
	}
	if (!o->input || !o->output || !o->has_version || o->n_keys == 0) {
		fprintf(stderr, "%s: %s, --version, --key and -o are required (try --help)\n", cmd,
			o->input_name);
		return 2;
	}
	if (trust_duration_parse(o->expires, &lifetime)) {
		fprintf(stderr, "%s: --expires: '%s' is not a duration (such as 30d)\n", cmd,
			o->expires);
		return 2;
	}
	o->p.created = (trust_time_t)time(NULL);
	o->p.expires = o->p.created + lifetime;
	o->p.schema_version = SCHEMA_VERSION;
	return 0;
}

int bundle_sign_write(const char *cmd, const struct bundle_sign_opts *o,
		      const struct bundle_file *files, size_t n, struct buf *out)
{
	struct trust_secret keys[BUNDLE_MAX_SIGNATURES];
	char err[1024];
	int ret = -1;

	memset(keys, 0, sizeof(keys));
	for (size_t i = 0; i < o->n_keys; i++) {
		if (trust_secret_load(o->key_paths[i], &keys[i], err, sizeof(err))) {
			fprintf(stderr, "%s: %s: %s\n", cmd, o->key_paths[i], err);
			goto out;
		}
	}
	if (bundle_build(&o->p, files, n, keys, o->n_keys, out, err, sizeof(err))) {
		fprintf(stderr, "%s: %s\n", cmd, err);
		goto out;
	}
	ret = trust_file_write(o->output, out->data, out->len, 0644, false);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, o->output, strerror(-ret));
		ret = -1;
	}
out:
	for (size_t i = 0; i < o->n_keys; i++)
		trust_secret_wipe(&keys[i]);
	return ret;
}

int cmd_content_build(int argc, char **argv)
{
	static const char cmd[] = "vigil content build";
	struct bundle_sign_opts o = {
	    .input_name = "RULES",
	    .expires = BUILD_DEFAULT_EXPIRES,
	    .p = {.name = BUILD_DEFAULT_NAME, .min_agent_version = VIGIL_VERSION}};
	struct bundle_file *files = NULL;
	struct collection c = {0};
	struct stat st;
	struct buf out;
	size_t bytes, n_rules = 0;
	unsigned n_tests = 0;
	int ret, status = 1;

	ret = bundle_sign_opts_parse(cmd, argc, argv, true, &o);
	if (ret == 1)
		build_usage(stdout);
	if (ret)
		return ret == 1 ? 0 : ret;
	buf_init(&out, BUNDLE_MAX_BYTES);
	c.root = o.input;

	if (stat(o.input, &st) < 0) {
		fprintf(stderr, "%s: %s: %s\n", cmd, o.input, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		if (collect_dir(&c, o.input, "", 0))
			goto out;
	} else {
		const char *base = strrchr(o.input, '/');
		if (collect_file(&c, o.input, base ? base + 1 : o.input))
			goto out;
	}
	if (c.n == 0) {
		fprintf(stderr, "%s: %s: no *.yml or *.yaml rule files\n", cmd, o.input);
		goto out;
	}
	qsort(c.files, c.n, sizeof(*c.files), rule_file_cmp);

	if (o.skip_validation)
		fprintf(stderr,
			"%s: WARNING: --skip-validation: signing content that was neither "
			"compiled nor tested (for tests only)\n",
			cmd);
	else if (validate_rules(&c, &n_rules, &n_tests))
		goto out;
	if (size_mul(c.n, sizeof(*files), &bytes) || !(files = malloc(bytes))) {
		fprintf(stderr, "%s: out of memory\n", cmd);
		goto out;
	}
	for (size_t i = 0; i < c.n; i++) {
		files[i].name = c.files[i].name;
		files[i].data = (const uint8_t *)c.files[i].data;
		files[i].len = c.files[i].len;
	}
	if (bundle_sign_write(cmd, &o, files, c.n, &out))
		goto out;
	printf("wrote %s: %s version %" PRIu64 ", %zu file%s, %zu bytes, %zu signature%s; ",
	       o.output, o.p.name, o.p.version, c.n, c.n == 1 ? "" : "s", out.len, o.n_keys,
	       o.n_keys == 1 ? "" : "s");
	if (o.skip_validation)
		printf("NOT VALIDATED (--skip-validation)\n");
	else
		printf("%zu rules compiled, %u tests passed\n", n_rules, n_tests);
	status = 0;
out:
	free(files);
	collection_free(&c);
	buf_release(&out);
	return status;
}

/* The agent's next step after verification, for --compile: the payload through the compiler. */
static int compile_payload(const struct bundle *b, char *err, size_t errlen)
{
	struct rules_source *src = NULL;
	struct ruleset *rs = NULL;
	struct rules_test_result res;
	struct buf report;
	int ret;

	ret = bundle_rules_sources(b, &src);
	if (ret) {
		snprintf(err, errlen, "out of memory");
		return ret;
	}
	err[0] = '\0';
	ret = ruleset_load_sources(src, bundle_file_count(b), &rs, err, errlen);
	free(src);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "%s", strerror(-ret));
		return ret;
	}
	buf_init(&report, BUILD_REPORT_MAX);
	memset(&res, 0, sizeof(res));
	ret = ruleset_run_tests(rs, &report, &res);
	if (ret) {
		const char *first = report.data ? report.data : "";
		snprintf(err, errlen, "%u rule test%s failed; first: %.*s", res.failed,
			 res.failed == 1 ? "" : "s", (int)strcspn(first, "\n"), first);
	}
	buf_release(&report);
	ruleset_free(rs);
	return ret;
}

int cli_path_root_args(const char *cmd, int argc, char **argv, void (*usage)(FILE *),
		       const char **path, const char **root)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 1;
		} else if (strcmp(argv[i], "--root") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "%s: --root needs a file\n", cmd);
				return 2;
			}
			*root = argv[i];
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "%s: unknown option '%s' (try --help)\n", cmd, argv[i]);
			return 2;
		} else if (!*path) {
			*path = argv[i];
		} else {
			fprintf(stderr, "%s: unexpected argument '%s'\n", cmd, argv[i]);
			return 2;
		}
	}
	return 0;
}

int bundle_verify_file(const char *cmd, const char *path, const char *root_path,
		       enum bundle_kind kind, struct buf *data, struct bundle **out)
{
	struct bundle_verify_options opt = {.kind = kind};
	struct trust_root *root = NULL;
	char err[1024];
	int ret = -1;

	*out = NULL;
	if (trust_root_load(root_path, &root, err, sizeof(err))) {
		fprintf(stderr, "%s: %s: %s\n", cmd, root_path, err);
		return -1;
	}
	/* the size cap is checked on the file's size, before a byte is read */
	ret = trust_file_read(path, BUNDLE_MAX_BYTES, data);
	if (ret) {
		if (ret == -E2BIG)
			fprintf(stderr, "%s: %s: bundle larger than the %u byte cap\n", cmd, path,
				BUNDLE_MAX_BYTES);
		else
			fprintf(stderr, "%s: %s: %s\n", cmd, path,
				ret == -ELOOP	 ? "a symbolic link (not followed)"
				: ret == -EINVAL ? "not a regular file"
						 : strerror(-ret));
		ret = -1;
		goto out;
	}
	opt.now = (trust_time_t)time(NULL);
	opt.schema_version = SCHEMA_VERSION;
	opt.agent_version = VIGIL_VERSION;
	ret = bundle_verify(root, data->data, data->len, &opt, out, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, path, err);
		ret = -1;
	}
out:
	trust_root_free(root);
	return ret;
}

int cmd_content_verify(int argc, char **argv)
{
	static const char cmd[] = "vigil content verify";
	const char *path = NULL, *root_path = NULL;
	struct bundle *b = NULL;
	struct buf data;
	bool compile = false, has_active = false;
	uint64_t active = 0;
	const char *manifest;
	size_t mlen;
	char err[1024];
	int status = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			verify_usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--root") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "%s: --root needs a file\n", cmd);
				return 2;
			}
			root_path = argv[i];
		} else if (strcmp(argv[i], "--compile") == 0) {
			compile = true;
		} else if (strcmp(argv[i], "--active-version") == 0) {
			if (++i >= argc || cli_parse_u64(argv[i], BUNDLE_MAX_VERSION, &active)) {
				fprintf(stderr, "%s: --active-version needs a version number\n",
					cmd);
				return 2;
			}
			has_active = true;
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
		fprintf(stderr,
			"%s: usage: vigil content verify FILE --root ROOT [--compile] "
			"[--active-version N]\n",
			cmd);
		return 2;
	}
	buf_init(&data, BUNDLE_MAX_BYTES);
	if (bundle_verify_file(cmd, path, root_path, BUNDLE_CONTENT, &data, &b))
		goto out;
	if (bundle_check_version(bundle_manifest(b), has_active, active, err, sizeof(err))) {
		fprintf(stderr, "%s: %s: %s\n", cmd, path, err);
		goto out;
	}
	if (compile && compile_payload(b, err, sizeof(err))) {
		fprintf(stderr, "%s: %s: signatures valid, content refused: %s\n", cmd, path, err);
		goto out;
	}
	manifest = bundle_manifest_json(b, &mlen);
	printf("%.*s\n", (int)mlen, manifest);
	status = 0;
out:
	bundle_free(b);
	buf_release(&data);
	return status;
}
