/*
 * vigil keygen and vigil root: Ed25519 key pairs for content signing and for the root of
 * trust, and the signed root documents agents pin (create, rotate, verify).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "lib/trust.h"

/* Keys one command line may name per option. */
#define CLI_MAX_KEYS TRUST_ROOT_MAX_KEYS

static void keygen_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil keygen -o NAME\n"
	    "\n"
	    "Makes an Ed25519 key pair: NAME.key (secret, mode 0600) and NAME.pub. Neither may\n"
	    "exist already. Prints the key id.\n");
}

static void root_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: vigil root create --root-key R.key [--root-key ...] [--root-threshold K]\n"
	    "                         --signer S.pub [--signer ...] [--threshold K]\n"
	    "                         [--version N] [--expires DURATION]\n"
	    "                         [--previous OLD.json --previous-key OLD.key ...] -o ROOT\n"
	    "       vigil root verify ROOT [--root CURRENT]\n"
	    "\n"
	    "create  writes the trust root agents pin: the content-signing keys (--signer) and "
	    "how\n"
	    "        many must sign a bundle (--threshold, default 1), the root keys (--root-key,\n"
	    "        each of which signs) and how many must sign a root (--root-threshold,\n"
	    "        default 1), a version (default 1, or the previous root's plus one) and an\n"
	    "        optional expiry (DURATION: N followed by s, m, h, d or w). A rotation names\n"
	    "        the root it replaces (--previous) and enough of its root keys\n"
	    "        (--previous-key) to meet its root threshold; the result is checked as an\n"
	    "        agent would check it before it is written.\n"
	    "verify  checks ROOT's own signatures and prints a JSON summary; with --root, checks\n"
	    "        that an agent pinning CURRENT would accept ROOT as its successor.\n");
}

/* Loaders that print "CMD: PATH: reason" on error. */
static int load_secret(const char *cmd, const char *path, struct trust_secret *sec)
{
	char err[256];
	int ret = trust_secret_load(path, sec, err, sizeof(err));

	if (ret)
		fprintf(stderr, "%s: %s: %s\n", cmd, path, err);
	return ret;
}

static int load_public(const char *cmd, const char *path, struct trust_key *pub)
{
	char err[256];
	int ret = trust_public_load(path, pub, err, sizeof(err));

	if (ret)
		fprintf(stderr, "%s: %s: %s\n", cmd, path, err);
	return ret;
}

static int load_root(const char *cmd, const char *path, struct trust_root **root)
{
	char err[512];
	int ret = trust_root_load(path, root, err, sizeof(err));

	if (ret)
		fprintf(stderr, "%s: %s: %s\n", cmd, path, err);
	return ret;
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out)
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

int cmd_keygen(int argc, char **argv)
{
	struct trust_key pub;
	struct trust_secret sec;
	char keypath[4096], pubpath[4096], sectext[256], pubtext[256];
	char idhex[2 * TRUST_KEYID_BYTES + 1];
	const char *name = NULL;
	int n, ret, status = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			keygen_usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "vigil keygen: -o needs a NAME\n");
				return 2;
			}
			name = argv[i];
		} else {
			fprintf(stderr, "vigil keygen: unexpected argument '%s' (try --help)\n",
				argv[i]);
			return 2;
		}
	}
	if (!name || !*name) {
		fprintf(stderr, "vigil keygen: usage: vigil keygen -o NAME\n");
		return 2;
	}
	n = snprintf(keypath, sizeof(keypath), "%s.key", name);
	if (n < 0 || (size_t)n >= sizeof(keypath) ||
	    (n = snprintf(pubpath, sizeof(pubpath), "%s.pub", name)) < 0 ||
	    (size_t)n >= sizeof(pubpath)) {
		fprintf(stderr, "vigil keygen: %s: name too long\n", name);
		return 2;
	}
	ret = trust_keygen(&pub, &sec);
	if (ret) {
		fprintf(stderr, "vigil keygen: cannot make a key: %s\n", strerror(-ret));
		goto out_wipe;
	}
	if ((n = trust_secret_encode(&sec, sectext, sizeof(sectext))) < 0 ||
	    trust_public_encode(&pub, pubtext, sizeof(pubtext)) < 0) {
		fprintf(stderr, "vigil keygen: cannot encode the key\n");
		goto out_wipe;
	}
	ret = trust_file_write(keypath, sectext, (size_t)n, 0600, true);
	if (ret) {
		fprintf(stderr, "vigil keygen: %s: %s\n", keypath,
			ret == -EEXIST ? "exists already (keys are never overwritten)"
				       : strerror(-ret));
		goto out_wipe;
	}
	ret = trust_file_write(pubpath, pubtext, strlen(pubtext), 0644, true);
	if (ret) {
		fprintf(stderr, "vigil keygen: %s: %s\n", pubpath,
			ret == -EEXIST ? "exists already (keys are never overwritten)"
				       : strerror(-ret));
		unlink(keypath);
		goto out_wipe;
	}
	trust_key_id_hex(pub.id, idhex);
	printf("key id %s: wrote %s (secret) and %s\n", idhex, keypath, pubpath);
	status = 0;
out_wipe:
	sodium_memzero(sectext, sizeof(sectext));
	trust_secret_wipe(&sec);
	return status;
}

struct root_args {
	const char *root_key_paths[CLI_MAX_KEYS];
	size_t n_root_keys;
	const char *signer_paths[CLI_MAX_KEYS];
	size_t n_signers;
	const char *previous_key_paths[CLI_MAX_KEYS];
	size_t n_previous_keys;
	const char *previous;
	const char *output;
	const char *expires;
	uint64_t version, threshold, root_threshold;
	bool has_version;
};

static int add_path(const char **list, size_t *n, const char *opt, const char *path)
{
	if (*n >= CLI_MAX_KEYS) {
		fprintf(stderr, "vigil root create: more than %u %s options\n", CLI_MAX_KEYS, opt);
		return -E2BIG;
	}
	list[(*n)++] = path;
	return 0;
}

static int root_create_args(int argc, char **argv, struct root_args *a)
{
	memset(a, 0, sizeof(*a));
	a->threshold = 1;
	a->root_threshold = 1;
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		int ret = 0;

		if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
			root_usage(stdout);
			return 1;
		}
		if (opt[0] != '-') {
			fprintf(stderr, "vigil root create: unexpected argument '%s'\n", opt);
			return -EINVAL;
		}
		if (!val) {
			fprintf(stderr, "vigil root create: %s needs a value\n", opt);
			return -EINVAL;
		}
		i++;
		if (strcmp(opt, "--root-key") == 0)
			ret = add_path(a->root_key_paths, &a->n_root_keys, opt, val);
		else if (strcmp(opt, "--signer") == 0)
			ret = add_path(a->signer_paths, &a->n_signers, opt, val);
		else if (strcmp(opt, "--previous-key") == 0)
			ret = add_path(a->previous_key_paths, &a->n_previous_keys, opt, val);
		else if (strcmp(opt, "--previous") == 0)
			a->previous = val;
		else if (strcmp(opt, "-o") == 0 || strcmp(opt, "--output") == 0)
			a->output = val;
		else if (strcmp(opt, "--expires") == 0)
			a->expires = val;
		else if (strcmp(opt, "--threshold") == 0)
			ret = parse_uint(val, UINT32_MAX, &a->threshold);
		else if (strcmp(opt, "--root-threshold") == 0)
			ret = parse_uint(val, UINT32_MAX, &a->root_threshold);
		else if (strcmp(opt, "--version") == 0) {
			ret = parse_uint(val, 9007199254740991ull, &a->version);
			a->has_version = true;
		} else {
			fprintf(stderr, "vigil root create: unknown option '%s' (try --help)\n",
				opt);
			return -EINVAL;
		}
		if (ret == -EINVAL)
			fprintf(stderr, "vigil root create: %s: '%s' is not a valid number\n", opt,
				val);
		if (ret)
			return ret;
	}
	if (!a->n_root_keys || !a->n_signers || !a->output) {
		fprintf(stderr, "vigil root create: --root-key, --signer and -o are required "
				"(try --help)\n");
		return -EINVAL;
	}
	if (!a->previous != !a->n_previous_keys) {
		fprintf(stderr, "vigil root create: --previous and --previous-key go together\n");
		return -EINVAL;
	}
	if (a->threshold < 1 || a->threshold > a->n_signers) {
		fprintf(stderr, "vigil root create: --threshold must be in 1..%zu (the signers)\n",
			a->n_signers);
		return -EINVAL;
	}
	if (a->root_threshold < 1 || a->root_threshold > a->n_root_keys) {
		fprintf(stderr,
			"vigil root create: --root-threshold must be in 1..%zu (the root keys)\n",
			a->n_root_keys);
		return -EINVAL;
	}
	if (a->has_version && a->version < 1) {
		fprintf(stderr, "vigil root create: --version must be at least 1\n");
		return -EINVAL;
	}
	return 0;
}

static int root_create(int argc, char **argv)
{
	static const char cmd[] = "vigil root create";
	struct trust_secret signers[2 * CLI_MAX_KEYS];
	struct trust_key root_pubs[CLI_MAX_KEYS], content[CLI_MAX_KEYS];
	struct trust_root *previous = NULL, *check = NULL;
	struct trust_root_params p;
	struct root_args a;
	struct buf out;
	size_t n_signers = 0;
	char err[512];
	int ret, status = 1;

	ret = root_create_args(argc, argv, &a);
	if (ret)
		return ret > 0 ? 0 : 2;
	memset(signers, 0, sizeof(signers));
	buf_init(&out, TRUST_ROOT_MAX_BYTES);
	memset(&p, 0, sizeof(p));
	if (a.previous && load_root(cmd, a.previous, &previous))
		goto out;
	for (size_t i = 0; i < a.n_signers; i++) {
		if (load_public(cmd, a.signer_paths[i], &content[i]))
			goto out;
	}
	for (size_t i = 0; i < a.n_root_keys; i++) {
		if (load_secret(cmd, a.root_key_paths[i], &signers[n_signers]))
			goto out;
		trust_secret_public(&signers[n_signers], &root_pubs[i]);
		n_signers++;
	}
	for (size_t i = 0; i < a.n_previous_keys; i++) {
		bool dup = false;
		if (load_secret(cmd, a.previous_key_paths[i], &signers[n_signers]))
			goto out;
		/* a root key kept across the rotation signs once */
		for (size_t j = 0; j < a.n_root_keys; j++)
			dup |= memcmp(signers[j].id, signers[n_signers].id, TRUST_KEYID_BYTES) == 0;
		if (dup)
			trust_secret_wipe(&signers[n_signers]);
		else
			n_signers++;
	}
	p.version = a.has_version ? a.version : previous ? trust_root_version(previous) + 1 : 1;
	if (a.expires) {
		trust_time_t d;
		if (trust_duration_parse(a.expires, &d)) {
			fprintf(stderr, "%s: --expires: '%s' is not a duration (such as 365d)\n",
				cmd, a.expires);
			goto out;
		}
		p.has_expires = true;
		p.expires = (trust_time_t)time(NULL) + d;
	}
	p.root_keys = root_pubs;
	p.n_root_keys = a.n_root_keys;
	p.root_threshold = (unsigned)a.root_threshold;
	p.content_keys = content;
	p.n_content_keys = a.n_signers;
	p.content_threshold = (unsigned)a.threshold;
	ret = trust_root_create(&p, signers, n_signers, previous != NULL, &out, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "%s: %s\n", cmd, err);
		goto out;
	}
	if (previous) {
		ret = trust_root_update(previous, out.data, out.len, (trust_time_t)time(NULL),
					&check, err, sizeof(err));
		if (ret) {
			fprintf(stderr, "%s: an agent pinning %s would refuse this root: %s\n", cmd,
				a.previous, err);
			goto out;
		}
	}
	ret = trust_file_write(a.output, out.data, out.len, 0644, false);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, a.output, strerror(-ret));
		goto out;
	}
	printf("wrote %s: root version %" PRIu64 ", %zu content key%s (threshold %" PRIu64
	       "), %zu root key%s (threshold %" PRIu64 ")\n",
	       a.output, p.version, a.n_signers, a.n_signers == 1 ? "" : "s", a.threshold,
	       a.n_root_keys, a.n_root_keys == 1 ? "" : "s", a.root_threshold);
	status = 0;
out:
	for (size_t i = 0; i < sizeof(signers) / sizeof(signers[0]); i++)
		trust_secret_wipe(&signers[i]);
	trust_root_free(previous);
	trust_root_free(check);
	buf_release(&out);
	return status;
}

static int root_verify(int argc, char **argv)
{
	static const char cmd[] = "vigil root verify";
	const char *path = NULL, *current_path = NULL;
	struct trust_root *current = NULL, *root = NULL;
	struct buf data, summary;
	char err[512];
	int ret, status = 1;

	ret = cli_path_root_args(cmd, argc, argv, root_usage, &path, &current_path);
	if (ret)
		return ret == 1 ? 0 : ret;
	if (!path) {
		fprintf(stderr, "%s: usage: vigil root verify ROOT [--root CURRENT]\n", cmd);
		return 2;
	}
	buf_init(&data, TRUST_ROOT_MAX_BYTES);
	buf_init(&summary, 64 * 1024);
	if (current_path && load_root(cmd, current_path, &current))
		goto out;
	ret = trust_file_read(path, TRUST_ROOT_MAX_BYTES, &data);
	if (ret) {
		fprintf(stderr, "%s: %s: %s\n", cmd, path,
			ret == -E2BIG ? "larger than the 64 KiB a root may have" : strerror(-ret));
		goto out;
	}
	if (current)
		ret = trust_root_update(current, data.data, data.len, (trust_time_t)time(NULL),
					&root, err, sizeof(err));
	else
		ret = trust_root_parse(data.data, data.len, &root, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "%s: %s: rejected: %s\n", cmd, path, err);
		goto out;
	}
	if (current)
		ret = buf_printf(&summary,
				 "{\"accepted\":true,\"replaces_version\":%" PRIu64 ",\"root\":",
				 trust_root_version(current));
	if (!ret)
		ret = trust_root_summary_json(root, &summary);
	if (!ret && current)
		ret = buf_append_char(&summary, '}');
	if (ret) {
		fprintf(stderr, "%s: out of memory\n", cmd);
		goto out;
	}
	printf("%s\n", summary.data);
	status = 0;
out:
	trust_root_free(current);
	trust_root_free(root);
	buf_release(&data);
	buf_release(&summary);
	return status;
}

int cmd_root(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "vigil root: expected a subcommand: create, verify (try --help)\n");
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		root_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "create") == 0)
		return root_create(argc - 1, argv + 1);
	if (strcmp(argv[1], "verify") == 0)
		return root_verify(argc - 1, argv + 1);
	fprintf(stderr, "vigil root: unknown subcommand '%s' (create, verify)\n", argv[1]);
	return 2;
}
