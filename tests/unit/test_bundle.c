/*
 * Unit tests for content bundles: the byte layout, signatures and thresholds (duplicate
 * signers), expiry, versions, every parser bound, and the builder's refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>
#include <sodium.h>

#include "lib/bundle.h"
#include "lib/rules.h"

#define NOW	  1800000000 /* 2027-01-15 */
#define CREATED	  "2026-01-01T00:00:00Z"
#define EXPIRES	  "2030-01-01T00:00:00Z"
#define EXPIRES_T 1893456000

static struct trust_key pub[4];
static struct trust_secret sec[4]; /* 0, 1: content keys of the root; 2: unknown; 3: root key */
static struct trust_root *root2;   /* content threshold 2 */
static struct trust_root *root1;   /* content threshold 1 */

static const char rule_a[] = "rules:\n"
			     "  - id: unit-a\n"
			     "    name: Unit rule\n"
			     "    level: low\n"
			     "    condition: {process.executable: /bin/unit-a}\n"
			     "    tests:\n"
			     "      match:\n"
			     "        - {event.action: exec, process.executable: /bin/unit-a}\n";
static const char list_b[] = "lists:\n  unit_list: [a, b]\n";

static void test_key(uint8_t seed_byte, struct trust_key *k, struct trust_secret *s)
{
	uint8_t seed[32];

	memset(seed, seed_byte, sizeof(seed));
	crypto_sign_seed_keypair(k->pk, s->sk, seed);
	trust_key_id(k->pk, k->id);
	memcpy(s->id, k->id, TRUST_KEYID_BYTES);
}

static struct trust_root *make_root(unsigned threshold)
{
	struct trust_root_params p = {
	    .version = 1,
	    .root_keys = &pub[3],
	    .n_root_keys = 1,
	    .root_threshold = 1,
	    .content_keys = pub,
	    .n_content_keys = 2,
	    .content_threshold = threshold,
	};
	struct trust_root *r = NULL;
	struct buf doc;
	char err[256];

	buf_init(&doc, TRUST_ROOT_MAX_BYTES);
	assert_int_equal(trust_root_create(&p, &sec[3], 1, false, &doc, err, sizeof(err)), 0);
	assert_int_equal(trust_root_parse(doc.data, doc.len, &r, err, sizeof(err)), 0);
	buf_release(&doc);
	return r;
}

static int setup(void **state)
{
	if (sodium_init() < 0)
		return -1;
	for (int i = 0; i < 4; i++)
		test_key((uint8_t)(40 + i), &pub[i], &sec[i]);
	root2 = make_root(2);
	root1 = make_root(1);
	return 0;
}

static int teardown(void **state)
{
	trust_root_free(root1);
	trust_root_free(root2);
	for (int i = 0; i < 4; i++)
		trust_secret_wipe(&sec[i]);
	return 0;
}

static const struct bundle_verify_options opts = {
    .now = NOW,
    .schema_version = 1,
    .agent_version = "0.1.0",
};

static struct bundle_params params(void)
{
	struct bundle_params p = {
	    .name = "unit",
	    .version = 7,
	    .created = 1767225600,
	    .expires = EXPIRES_T,
	    .schema_version = 1,
	    .min_agent_version = "0.1.0",
	};
	return p;
}

/* Builds a bundle of the two test files signed by sec[@k...] into @out (capped, initialised). */
static void build(struct buf *out, const struct bundle_params *p, const struct trust_secret *keys,
		  size_t n_keys)
{
	struct bundle_file files[] = {
	    {"z/list.yml", (const uint8_t *)list_b, sizeof(list_b) - 1},
	    {"a.yml", (const uint8_t *)rule_a, sizeof(rule_a) - 1},
	};
	char err[256];

	buf_init(out, BUNDLE_MAX_BYTES);
	if (bundle_build(p, files, 2, keys, n_keys, out, err, sizeof(err)))
		fail_msg("bundle_build: %s", err);
}

static int verify(const void *data, size_t len, const struct trust_root *root, char *err,
		  size_t errlen)
{
	struct bundle *b = NULL;
	int ret = bundle_verify(root, data, len, &opts, &b, err, errlen);

	if (ret)
		assert_null(b);
	bundle_free(b);
	return ret;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * A bundle assembled by hand: @manifest (signed by @keys) and @payload, so that each parser
 * bound can be reached with valid signatures. The caller releases @out.
 */
static void assemble(struct buf *out, const char *manifest, const struct trust_secret *keys,
		     size_t n_keys, const void *payload, size_t plen)
{
	uint8_t hdr[BUNDLE_HEADER_BYTES];
	size_t mlen = strlen(manifest);

	buf_init(out, BUNDLE_MAX_BYTES);
	memcpy(hdr, BUNDLE_MAGIC, 8);
	put32(hdr + 8, 1);
	put32(hdr + 12, 0);
	put32(hdr + 16, (uint32_t)mlen);
	put32(hdr + 20, (uint32_t)n_keys);
	put64(hdr + 24, plen);
	assert_int_equal(buf_append(out, hdr, sizeof(hdr)), 0);
	assert_int_equal(buf_append(out, manifest, mlen), 0);
	for (size_t i = 0; i < n_keys; i++) {
		uint8_t sig[64];
		trust_sign(&keys[i], TRUST_CONTEXT_MANIFEST, manifest, mlen, sig);
		assert_int_equal(buf_append(out, keys[i].id, 8), 0);
		assert_int_equal(buf_append(out, sig, 64), 0);
	}
	assert_int_equal(buf_append(out, payload, plen), 0);
}

/* The canonical manifest for @payload listing @files_json, with @name and @version. */
static char *manifest_for(const void *payload, size_t plen, const char *files_json,
			  const char *name, uint64_t version)
{
	uint8_t h[32];
	char hex[65];
	struct buf m;

	crypto_generichash(h, sizeof(h), payload, plen, NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	buf_init(&m, BUNDLE_MAX_MANIFEST_BYTES);
	assert_int_equal(
	    buf_printf(&m,
		       "{\"created\":\"" CREATED "\",\"expires\":\"" EXPIRES
		       "\",\"files\":%s,\"min_agent_version\":\"0.1.0\",\"name\":\"%s\","
		       "\"payload\":{\"blake2b\":\"%s\",\"size\":%zu},"
		       "\"schema_version\":1,\"type\":\"vigil-bundle\",\"version\":%llu}",
		       files_json, name, hex, plen, (unsigned long long)version),
	    0);
	return m.data;
}

/* A payload archive holding one file. */
static size_t one_file(uint8_t *out, const char *name, size_t nlen, const char *data, size_t dlen)
{
	put32(out, 1);
	out[4] = (uint8_t)nlen;
	out[5] = (uint8_t)(nlen >> 8);
	memcpy(out + 6, name, nlen);
	put32(out + 6 + nlen, (uint32_t)dlen);
	memcpy(out + 10 + nlen, data, dlen);
	return 10 + nlen + dlen;
}

static void round_trip(void **state)
{
	struct bundle_params p = params();
	struct bundle *b = NULL;
	struct rules_source *src = NULL;
	struct ruleset *rs = NULL;
	struct buf out;
	char err[512];

	build(&out, &p, sec, 2);
	assert_memory_equal(out.data, BUNDLE_MAGIC, 8);
	assert_int_equal(le32((uint8_t *)out.data + 8), BUNDLE_FORMAT_VERSION);
	assert_int_equal(le32((uint8_t *)out.data + 20), 2);
	assert_int_equal(bundle_verify(root2, out.data, out.len, &opts, &b, err, sizeof(err)), 0);

	const struct bundle_manifest *m = bundle_manifest(b);
	assert_string_equal(m->name, "unit");
	assert_int_equal(m->version, 7);
	assert_int_equal(m->created, 1767225600);
	assert_int_equal(m->expires, EXPIRES_T);
	assert_int_equal(m->schema_version, 1);
	assert_string_equal(m->min_agent_version, "0.1.0");
	assert_int_equal(m->n_files, 2);
	assert_false(m->has_allow_downgrade);

	size_t mlen;
	const char *json = bundle_manifest_json(b, &mlen);
	assert_int_equal(mlen, le32((uint8_t *)out.data + 16));
	assert_memory_equal(json, out.data + BUNDLE_HEADER_BYTES, mlen);
	assert_int_equal(json[mlen], '\0');
	assert_non_null(strstr(json, "\"files\":[{\"name\":\"a.yml\""));

	/* files come back sorted by name, as (name, bytes) */
	assert_int_equal(bundle_file_count(b), 2);
	assert_string_equal(bundle_file(b, 0)->name, "a.yml");
	assert_int_equal(bundle_file(b, 0)->len, sizeof(rule_a) - 1);
	assert_memory_equal(bundle_file(b, 0)->data, rule_a, sizeof(rule_a) - 1);
	assert_string_equal(bundle_file(b, 1)->name, "z/list.yml");
	assert_null(bundle_file(b, 2));
	assert_int_equal(bundle_signer_count(b), 2);
	assert_memory_equal(bundle_signer(b, 0), pub[0].id, 8);
	assert_memory_equal(bundle_signer(b, 1), pub[1].id, 8);
	assert_null(bundle_signer(b, 2));

	/* what the agent does next: the payload straight into the compiler */
	assert_int_equal(bundle_rules_sources(b, &src), 0);
	assert_string_equal(src[1].name, "z/list.yml");
	if (ruleset_load_sources(src, bundle_file_count(b), &rs, err, sizeof(err)))
		fail_msg("compile: %s", err);
	assert_int_equal(ruleset_count(rs), 1);
	ruleset_free(rs);
	free(src);

	/* the bundle does not point into the caller's bytes */
	memset(out.data, 0, out.len);
	assert_memory_equal(bundle_file(b, 0)->data, rule_a, sizeof(rule_a) - 1);
	bundle_free(b);
	bundle_free(NULL);
	buf_release(&out);

	/* the downgrade instruction travels in the signed manifest */
	p.has_allow_downgrade = true;
	p.allow_downgrade_from = 9;
	build(&out, &p, sec, 1);
	assert_int_equal(bundle_verify(root1, out.data, out.len, &opts, &b, err, sizeof(err)), 0);
	assert_true(bundle_manifest(b)->has_allow_downgrade);
	assert_int_equal(bundle_manifest(b)->allow_downgrade_from, 9);
	bundle_free(b);
	buf_release(&out);
}

/* Adds a signature entry by @key over the bundle's manifest, fixing the header's count. */
static void add_signature(struct buf *b, const struct trust_secret *key)
{
	uint8_t *d = (uint8_t *)b->data;
	uint32_t mlen = le32(d + 16), nsig = le32(d + 20);
	size_t at = BUNDLE_HEADER_BYTES + mlen + (size_t)nsig * BUNDLE_SIG_ENTRY_BYTES;
	uint8_t entry[BUNDLE_SIG_ENTRY_BYTES];
	struct buf n;

	memcpy(entry, key->id, 8);
	trust_sign(key, TRUST_CONTEXT_MANIFEST, d + BUNDLE_HEADER_BYTES, mlen, entry + 8);
	buf_init(&n, BUNDLE_MAX_BYTES);
	assert_int_equal(buf_append(&n, b->data, at), 0);
	assert_int_equal(buf_append(&n, entry, sizeof(entry)), 0);
	assert_int_equal(buf_append(&n, b->data + at, b->len - at), 0);
	put32((uint8_t *)n.data + 20, nsig + 1);
	buf_release(b);
	*b = n;
}

static void thresholds_count_distinct_signers(void **state)
{
	struct bundle_params p = params();
	struct bundle *b = NULL;
	struct buf out;
	char err[512];

	/* one signature, threshold 2 */
	build(&out, &p, sec, 1);
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "signed by 1 distinct content key, the root requires 2"));
	assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), 0);
	/* the same key again does not make two */
	add_signature(&out, &sec[0]);
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "signed by 1 distinct"));
	add_signature(&out, &sec[0]);
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -EBADMSG);
	/* a second distinct key does */
	add_signature(&out, &sec[1]);
	assert_int_equal(bundle_verify(root2, out.data, out.len, &opts, &b, err, sizeof(err)), 0);
	assert_int_equal(bundle_signer_count(b), 2);
	bundle_free(b);
	/* a key the root does not name fails the bundle, even past the threshold */
	add_signature(&out, &sec[2]);
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -ENOKEY);
	assert_non_null(strstr(err, "signature 4 is by unknown key id"));
	buf_release(&out);

	/* the root key is not a content key */
	build(&out, &p, &sec[3], 1);
	assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), -ENOKEY);
	buf_release(&out);

	/* the builder refuses the same key twice */
	struct trust_secret twice[2] = {sec[0], sec[0]};
	struct bundle_file f = {"a.yml", (const uint8_t *)rule_a, 3};
	buf_init(&out, BUNDLE_MAX_BYTES);
	assert_int_equal(bundle_build(&p, &f, 1, twice, 2, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "given twice"));
	buf_release(&out);
	trust_secret_wipe(&twice[0]);
	trust_secret_wipe(&twice[1]);
}

static void signatures_cover_manifest_only_and_hash_covers_payload(void **state)
{
	struct bundle_params p = params();
	struct buf out;
	char err[512];
	uint32_t mlen;

	build(&out, &p, sec, 2);
	mlen = le32((uint8_t *)out.data + 16);
	/* a manifest byte */
	out.data[BUNDLE_HEADER_BYTES + 5] ^= 1;
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "bad signature 0"));
	out.data[BUNDLE_HEADER_BYTES + 5] ^= 1;
	/* a signature byte of the second entry */
	out.data[BUNDLE_HEADER_BYTES + mlen + BUNDLE_SIG_ENTRY_BYTES + 8 + 10] ^= 0x40;
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "bad signature 1"));
	out.data[BUNDLE_HEADER_BYTES + mlen + BUNDLE_SIG_ENTRY_BYTES + 8 + 10] ^= 0x40;
	/* a key id byte */
	out.data[BUNDLE_HEADER_BYTES + mlen] ^= 1;
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -ENOKEY);
	out.data[BUNDLE_HEADER_BYTES + mlen] ^= 1;
	/* every payload byte is covered by the hash */
	for (size_t i = BUNDLE_HEADER_BYTES + mlen + 2 * BUNDLE_SIG_ENTRY_BYTES; i < out.len; i++) {
		out.data[i] ^= 0x10;
		assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -EBADMSG);
		assert_string_equal(err, "payload hash mismatch");
		out.data[i] ^= 0x10;
	}
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), 0);
	buf_release(&out);
}

static void expiry_and_versions(void **state)
{
	struct bundle_params p = params();
	struct bundle_verify_options o = opts;
	struct bundle *b = NULL;
	struct buf out;
	char err[512];

	build(&out, &p, sec, 2);
	o.now = EXPIRES_T - 1;
	assert_int_equal(bundle_verify(root2, out.data, out.len, &o, &b, err, sizeof(err)), 0);
	bundle_free(b);
	b = NULL;
	o.now = EXPIRES_T;
	assert_int_equal(bundle_verify(root2, out.data, out.len, &o, &b, err, sizeof(err)),
			 -EKEYEXPIRED);
	assert_string_equal(err, "bundle expired at " EXPIRES);
	o = opts;
	o.schema_version = 0;
	assert_int_equal(bundle_verify(root2, out.data, out.len, &o, &b, err, sizeof(err)),
			 -ENOTSUP);
	assert_non_null(strstr(err, "needs schema version 1, this agent has 0"));
	o = opts;
	o.agent_version = "0.0.9";
	assert_int_equal(bundle_verify(root2, out.data, out.len, &o, &b, err, sizeof(err)),
			 -ENOTSUP);
	assert_non_null(strstr(err, "needs agent version 0.1.0 or later, this is 0.0.9"));
	o.agent_version = "0.1.1";
	assert_int_equal(bundle_verify(root2, out.data, out.len, &o, &b, err, sizeof(err)), 0);
	bundle_free(b);
	b = NULL;
	o.agent_version = "not a version";
	assert_int_equal(bundle_verify(root2, out.data, out.len, &o, &b, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(bundle_verify(root2, out.data, out.len, NULL, &b, err, sizeof(err)),
			 -EINVAL);
	buf_release(&out);

	/* a pinned root past its expiry vouches for nothing */
	struct trust_root_params rp = {
	    .version = 3,
	    .has_expires = true,
	    .expires = NOW,
	    .root_keys = &pub[3],
	    .n_root_keys = 1,
	    .root_threshold = 1,
	    .content_keys = pub,
	    .n_content_keys = 2,
	    .content_threshold = 1,
	};
	struct trust_root *r = NULL;
	struct buf doc;
	buf_init(&doc, TRUST_ROOT_MAX_BYTES);
	assert_int_equal(trust_root_create(&rp, &sec[3], 1, false, &doc, err, sizeof(err)), 0);
	assert_int_equal(trust_root_parse(doc.data, doc.len, &r, err, sizeof(err)), 0);
	build(&out, &p, sec, 1);
	assert_int_equal(verify(out.data, out.len, r, err, sizeof(err)), -EKEYEXPIRED);
	assert_non_null(strstr(err, "trust root version 3 expired"));
	trust_root_free(r);
	buf_release(&doc);
	buf_release(&out);
}

static void version_rule(void **state)
{
	struct bundle_manifest m;
	char err[256];

	memset(&m, 0, sizeof(m));
	m.version = 10;
	assert_int_equal(bundle_check_version(&m, false, 0, err, sizeof(err)), 0);
	assert_int_equal(bundle_check_version(&m, true, 9, err, sizeof(err)), 0);
	assert_int_equal(bundle_check_version(&m, true, 10, err, sizeof(err)), -EALREADY);
	assert_int_equal(bundle_check_version(&m, true, 11, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "no signed downgrade instruction"));
	m.has_allow_downgrade = true;
	m.allow_downgrade_from = 12;
	assert_int_equal(bundle_check_version(&m, true, 11, err, sizeof(err)), 0);
	assert_int_equal(bundle_check_version(&m, true, 12, err, sizeof(err)), 0);
	assert_int_equal(bundle_check_version(&m, true, 13, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "covers only versions up to 12"));
	assert_int_equal(bundle_check_version(&m, true, 10, err, sizeof(err)), -EALREADY);
}

static void agent_versions(void **state)
{
	uint64_t a, b;

	assert_int_equal(bundle_agent_version_parse("0.1.0", 5, &a), 0);
	assert_int_equal(bundle_agent_version_parse("0.10.0", 6, &b), 0);
	assert_true(b > a);
	assert_int_equal(bundle_agent_version_parse("1.0.0", 5, &a), 0);
	assert_true(a > b);
	assert_int_equal(bundle_agent_version_parse("999999.999999.999999", 20, &a), 0);
	const char *bad[] = {"",     "1",    "1.2",   "1.2.3.4",     "01.2.3", "1.02.3", "1.2.03",
			     "1..3", "1.2.", "a.b.c", "1000000.0.0", "-1.0.0", "1.2.3 ", " 1.2.3"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bundle_agent_version_parse(bad[i], strlen(bad[i]), &a) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
	}
}

static void names(void **state)
{
	const char *why;
	const char *good[] = {"a", "a.yml", "A-Z_0.9", "a/b", "a/b/c/d/e/f/g/h", "x..y", "a./b"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (!bundle_name_safe(good[i], strlen(good[i]), &why))
			fail_msg("'%s' refused: %s", good[i], why);
	}
	const char *bad[] = {
	    "",		"../x", "/etc/x",	    "a/../../b", "a//b", "a/",	 ".",
	    "..",	"./x",	".hidden",	    "a/.b",	 "a b",	 "a\\b", "a:b",
	    "\xc3\xa9", "a\nb", "a/b/c/d/e/f/g/h/i"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bundle_name_safe(bad[i], strlen(bad[i]), &why))
			fail_msg("'%s' accepted", bad[i]);
	}
	assert_false(bundle_name_safe("a\0b", 3, &why));
	char longname[BUNDLE_MAX_NAME_BYTES + 2];
	memset(longname, 'n', sizeof(longname));
	assert_true(bundle_name_safe(longname, BUNDLE_MAX_NAME_BYTES, &why));
	assert_false(bundle_name_safe(longname, BUNDLE_MAX_NAME_BYTES + 1, &why));
}

static void header_bounds(void **state)
{
	struct bundle_params p = params();
	struct buf out;
	char err[512];
	uint8_t *d;

	build(&out, &p, sec, 2);
	d = (uint8_t *)out.data;
	/* every truncation, byte by byte */
	for (size_t len = 0; len < out.len; len++) {
		int ret = verify(out.data, len, root2, err, sizeof(err));
		assert_int_equal(ret, -EINVAL);
		const char *want = len == 0		       ? "empty file"
				   : len < BUNDLE_HEADER_BYTES ? "truncated header"
							       : "truncated: header declares";
		if (!strstr(err, want))
			fail_msg("length %zu: '%s'", len, err);
	}
	/* the cap is checked before a byte is read */
	assert_int_equal(verify(out.data, (size_t)BUNDLE_MAX_BYTES + 1, root2, err, sizeof(err)),
			 -E2BIG);

	struct {
		size_t off;
		unsigned width;
		uint64_t value;
		int ret;
		const char *want;
	} cases[] = {
	    {0, 1, 'v', -EINVAL, "bad magic"},
	    {8, 4, 2, -EINVAL, "unsupported bundle format version 2"},
	    {8, 4, 0, -EINVAL, "unsupported bundle format version 0"},
	    {12, 4, 1, -EINVAL, "reserved header field"},
	    {16, 4, 0, -EINVAL, "manifest length 0"},
	    {16, 4, BUNDLE_MAX_MANIFEST_BYTES + 1, -E2BIG, "manifest length"},
	    {16, 4, UINT32_MAX, -E2BIG, "manifest length"},
	    {20, 4, 0, -EINVAL, "signature count 0"},
	    {20, 4, BUNDLE_MAX_SIGNATURES + 1, -E2BIG, "signature count 33"},
	    {20, 4, UINT32_MAX, -E2BIG, "signature count"},
	    {24, 8, (uint64_t)BUNDLE_MAX_BYTES + 1, -E2BIG, "payload length"},
	    {24, 8, UINT64_MAX, -E2BIG, "payload length"},
	    {24, 8, (uint64_t)1 << 32, -E2BIG, "payload length"},
	    {20, 4, 3, -EINVAL, "truncated: header declares"},
	    {20, 4, 1, -EINVAL, "trailing bytes: header declares"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t saved[8];
		memcpy(saved, d + cases[i].off, 8);
		if (cases[i].width == 1)
			d[cases[i].off] = (uint8_t)cases[i].value;
		else if (cases[i].width == 4)
			put32(d + cases[i].off, (uint32_t)cases[i].value);
		else
			put64(d + cases[i].off, cases[i].value);
		int ret = verify(out.data, out.len, root2, err, sizeof(err));
		if (ret != cases[i].ret || !strstr(err, cases[i].want))
			fail_msg("header case %zu: %d '%s'", i, ret, err);
		memcpy(d + cases[i].off, saved, 8);
	}
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), 0);
	assert_int_equal(buf_append_char(&out, 0), 0);
	assert_int_equal(verify(out.data, out.len, root2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "trailing bytes"));
	buf_release(&out);
}

static void manifest_bounds(void **state)
{
	uint8_t payload[256];
	size_t plen = one_file(payload, "a.yml", 5, "x", 1);
	const char *files = "[{\"name\":\"a.yml\",\"size\":1}]";
	struct buf out;
	char err[512], *m;

	m = manifest_for(payload, plen, files, "unit", 7);
	assemble(&out, m, sec, 1, payload, plen);
	assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), 0);
	buf_release(&out);
	free(m);

	struct {
		const char *files, *name;
		uint64_t version;
		const char *want;
	} cases[] = {
	    {files, "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn", 7,
	     "'name'"},
	    {files, "a b", 7, "'name'"},
	    {files, "", 7, "'name'"},
	    {files, "unit", 0, "'version'"},
	    {files, "unit", BUNDLE_MAX_VERSION + 1, "'version'"},
	    {"[]", "unit", 7, "'files' lists 0 files"},
	    {"{}", "unit", 7, "'files' missing or not a list"},
	    {"[{\"name\":\"a.yml\",\"size\":16777217}]", "unit", 7, "files[0] is not"},
	    {"[{\"name\":\"a.yml\"}]", "unit", 7, "files[0] is not"},
	    {"[{\"name\":\"../a\",\"size\":1}]", "unit", 7, "unsafe name '../a'"},
	    {"[{\"name\":\"a\",\"size\":1},{\"name\":\"a/b\",\"size\":1}]", "unit", 7,
	     "a directory of it is also a file"},
	    {"[{\"name\":\"b\",\"size\":1},{\"name\":\"a\",\"size\":1}]", "unit", 7,
	     "not after the previous"},
	    {"[{\"name\":\"a\",\"size\":1},{\"name\":\"a\",\"size\":1}]", "unit", 7,
	     "not after the previous"},
	    {"[{\"name\":\"a.yml\",\"size\":1}] ", "unit", 7, "not in canonical form"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		m = manifest_for(payload, plen, cases[i].files, cases[i].name, cases[i].version);
		assemble(&out, m, sec, 1, payload, plen);
		int ret = verify(out.data, out.len, root1, err, sizeof(err));
		if (ret != -EINVAL || !strstr(err, cases[i].want))
			fail_msg("manifest case %zu: %d '%s'", i, ret, err);
		buf_release(&out);
		free(m);
	}

	/* 20,001 files listed */
	struct buf many;
	buf_init(&many, BUNDLE_MAX_MANIFEST_BYTES);
	buf_append_char(&many, '[');
	for (unsigned i = 0; i <= BUNDLE_MAX_FILES; i++)
		buf_printf(&many, "%s{\"name\":\"f%05u\",\"size\":1}", i ? "," : "", i);
	buf_append_char(&many, ']');
	m = manifest_for(payload, plen, many.data, "unit", 7);
	assemble(&out, m, sec, 1, payload, plen);
	assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'files' lists 20001 files"));
	buf_release(&out);
	buf_release(&many);
	free(m);

	/* raw manifests: not JSON, duplicates, deep nesting, unknown and missing fields */
	const char *raw[] = {
	    "x",
	    "[]",
	    "{\"type\":\"vigil-bundle\",\"type\":\"vigil-bundle\"}",
	    "{\"unknown\":1}",
	    "{\"type\":\"vigil-bundle\"}",
	    "{\"type\":\"vigil-root\"}",
	};
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		assemble(&out, raw[i], sec, 1, payload, plen);
		assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "manifest: "));
		buf_release(&out);
	}
	char *deep = malloc(200001);
	memset(deep, '[', 100000);
	memset(deep + 100000, ']', 100000);
	deep[200000] = '\0';
	assemble(&out, deep, sec, 1, payload, plen);
	assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "manifest: not JSON"));
	buf_release(&out);
	free(deep);
}

static void payload_bounds(void **state)
{
	const char *files = "[{\"name\":\"a.yml\",\"size\":1}]";
	uint8_t payload[1024];
	struct buf out;
	char err[512], *m;
	size_t plen;

	struct {
		const char *name;
		size_t nlen;
		const char *data;
		size_t dlen;
		const char *want;
	} cases[] = {
	    {"a.yml", 5, "xy", 2, "is not the manifest's 'a.yml' (1 bytes)"},
	    {"b.yml", 5, "x", 1, "is not the manifest's"},
	    {"../a", 4, "x", 1, "unsafe name '../a'"},
	    {"a\0b", 3, "x", 1, "unsafe name 'a?b'"},
	    {"", 0, "x", 1, "name length 0"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		plen =
		    one_file(payload, cases[i].name, cases[i].nlen, cases[i].data, cases[i].dlen);
		m = manifest_for(payload, plen, files, "unit", 7);
		assemble(&out, m, sec, 1, payload, plen);
		int ret = verify(out.data, out.len, root1, err, sizeof(err));
		if (ret != -EINVAL || !strstr(err, cases[i].want))
			fail_msg("payload case %zu: %d '%s'", i, ret, err);
		buf_release(&out);
		free(m);
	}

	/* raw archives: each bound of the walk */
	struct {
		uint8_t bytes[64];
		size_t len;
		int ret;
		const char *want;
	} raw[] = {
	    {{0}, 0, -EINVAL, "truncated before the file count"},
	    {{0, 0, 0}, 3, -EINVAL, "truncated before the file count"},
	    {{0, 0, 0, 0}, 4, -EINVAL, "payload: 0 files"},
	    {{2, 0, 0, 0}, 4, -EINVAL, "payload: 2 files, the manifest lists 1"},
	    {{0x21, 0x4e, 0, 0}, 4, -E2BIG, "payload: 20001 files"},
	    {{0xff, 0xff, 0xff, 0xff}, 4, -E2BIG, "payload: 4294967295 files"},
	    {{1, 0, 0, 0, 5}, 5, -EINVAL, "truncated name length"},
	    {{1, 0, 0, 0, 129, 0}, 6, -EINVAL, "name length 129"},
	    {{1, 0, 0, 0, 0xff, 0xff}, 6, -EINVAL, "name length 65535"},
	    {{1, 0, 0, 0, 5, 0, 'a', '.'}, 8, -EINVAL, "truncated name"},
	    {{1, 0, 0, 0, 5, 0, 'a', '.', 'y', 'm', 'l'}, 11, -EINVAL, "truncated data length"},
	    {{1, 0, 0, 0, 5, 0, 'a', '.', 'y', 'm', 'l', 2, 0, 0, 0, 'x'},
	     16,
	     -EINVAL,
	     "truncated data"},
	    {{1, 0, 0, 0, 5, 0, 'a', '.', 'y', 'm', 'l', 1, 0, 0, 1},
	     15,
	     -E2BIG,
	     "more than 16777216"},
	    {{1, 0, 0, 0, 5, 0, 'a', '.', 'y', 'm', 'l', 0xff, 0xff, 0xff, 0xff},
	     15,
	     -E2BIG,
	     "more than 16777216"},
	    {{1, 0, 0, 0, 5, 0, 'a', '.', 'y', 'm', 'l', 1, 0, 0, 0, 'x', 0},
	     17,
	     -EINVAL,
	     "1 bytes after the last file"},
	};
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		m = manifest_for(raw[i].bytes, raw[i].len, files, "unit", 7);
		assemble(&out, m, sec, 1, raw[i].bytes, raw[i].len);
		int ret = verify(out.data, out.len, root1, err, sizeof(err));
		if (ret != raw[i].ret || !strstr(err, raw[i].want))
			fail_msg("archive case %zu: %d '%s'", i, ret, err);
		buf_release(&out);
		free(m);
	}

	/* payload size and hash as the manifest states them */
	plen = one_file(payload, "a.yml", 5, "x", 1);
	m = manifest_for(payload, plen, files, "unit", 7);
	assemble(&out, m, sec, 1, payload, plen - 1);
	assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "the manifest says"));
	buf_release(&out);
	payload[plen - 1] = 'y';
	assemble(&out, m, sec, 1, payload, plen);
	assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "payload hash mismatch");
	buf_release(&out);
	free(m);
}

static void builder_refuses(void **state)
{
	struct bundle_params p = params();
	struct buf out;
	char err[512];
	const uint8_t *x = (const uint8_t *)"x";

	buf_init(&out, BUNDLE_MAX_BYTES);
	struct {
		const char *a, *b;
		const char *want;
	} pairs[] = {
	    {"a.yml", "a.yml", "given twice"},
	    {"a", "a/b.yml", "a directory of it is also a file"},
	    {"../a.yml", "b.yml", "'../a.yml'"},
	    {"b.yml", "/etc/x", "absolute"},
	    {"b.yml", "a b", "byte outside"},
	};
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		struct bundle_file f[2] = {{pairs[i].a, x, 1}, {pairs[i].b, x, 1}};
		buf_reset(&out);
		assert_int_equal(bundle_build(&p, f, 2, sec, 1, &out, err, sizeof(err)), -EINVAL);
		if (!strstr(err, pairs[i].want))
			fail_msg("pair %zu: '%s'", i, err);
	}
	struct bundle_file one = {"a.yml", x, 1};
	/* a length past the cap is refused before the bytes are read */
	struct bundle_file huge = {"a.yml", x, (size_t)BUNDLE_MAX_FILE_BYTES + 1};
	assert_int_equal(bundle_build(&p, &huge, 1, sec, 1, &out, err, sizeof(err)), -E2BIG);
	assert_int_equal(bundle_build(&p, &one, 0, sec, 1, &out, err, sizeof(err)), -EINVAL);
	assert_int_equal(
	    bundle_build(&p, &one, BUNDLE_MAX_FILES + 1, sec, 1, &out, err, sizeof(err)), -E2BIG);
	assert_int_equal(bundle_build(&p, &one, 1, sec, 0, &out, err, sizeof(err)), -EINVAL);

	struct bundle_params bad[8];
	for (int i = 0; i < 8; i++)
		bad[i] = params();
	bad[0].name = "has space";
	bad[1].name = "";
	bad[2].version = 0;
	bad[3].version = BUNDLE_MAX_VERSION + 1;
	bad[4].expires = bad[4].created;
	bad[5].min_agent_version = "1.2";
	bad[6].has_allow_downgrade = true;
	bad[6].allow_downgrade_from = bad[6].version;
	bad[7].schema_version = 0;
	for (int i = 0; i < 8; i++) {
		if (bundle_build(&bad[i], &one, 1, sec, 1, &out, err, sizeof(err)) != -EINVAL)
			fail_msg("params %d accepted", i);
	}

	/* the largest number of files builds and verifies */
	struct bundle_file *many = calloc(BUNDLE_MAX_FILES, sizeof(*many));
	char(*names)[16] = calloc(BUNDLE_MAX_FILES, 16);
	for (unsigned i = 0; i < BUNDLE_MAX_FILES; i++) {
		snprintf(names[i], 16, "d%u/f%05u", i % 7, i);
		many[i].name = names[i];
		many[i].data = x;
		many[i].len = 1;
	}
	buf_reset(&out);
	assert_int_equal(bundle_build(&p, many, BUNDLE_MAX_FILES, sec, 1, &out, err, sizeof(err)),
			 0);
	struct bundle *b = NULL;
	assert_int_equal(bundle_verify(root1, out.data, out.len, &opts, &b, err, sizeof(err)), 0);
	assert_int_equal(bundle_file_count(b), BUNDLE_MAX_FILES);
	bundle_free(b);
	free(names);
	free(many);
	buf_release(&out);
}

/* Sensor builds: the signed kind, checked against what the reader expects, one file. */
static void sensor_kind(void **state)
{
	static const char exe[] = "\x7f"
				  "ELF not really";
	struct bundle_file file = {BUNDLE_SENSOR_FILE, (const uint8_t *)exe, sizeof(exe) - 1};
	struct bundle_file two[] = {file, {"other", (const uint8_t *)"x", 1}};
	struct bundle_params p = params();
	struct bundle_verify_options o = opts;
	struct bundle *b = NULL;
	struct buf out;
	char err[512];

	p.kind = BUNDLE_SENSOR;
	p.schema_version = 99; /* a newer build's schema is not the reader's concern */
	buf_init(&out, BUNDLE_MAX_BYTES);
	assert_int_equal(bundle_build(&p, &file, 1, sec, 1, &out, err, sizeof(err)), 0);
	assert_non_null(memmem(out.data, out.len, "],\"kind\":\"sensor\",\"min_agent", 28));
	/* offered as content, it is refused after the signatures, with the reason */
	assert_int_equal(bundle_verify(root1, out.data, out.len, &opts, &b, err, sizeof(err)),
			 -EMEDIUMTYPE);
	assert_null(b);
	assert_non_null(strstr(err, "bundle is a sensor release, not content"));
	o.kind = BUNDLE_SENSOR;
	assert_int_equal(bundle_verify(root1, out.data, out.len, &o, &b, err, sizeof(err)), 0);
	assert_int_equal(bundle_manifest(b)->kind, BUNDLE_SENSOR);
	assert_int_equal(bundle_file_count(b), 1);
	bundle_free(b);
	b = NULL;
	o.kind = BUNDLE_CONTENT;
	o.any_kind = true;
	assert_int_equal(bundle_verify(root1, out.data, out.len, &o, &b, err, sizeof(err)), 0);
	bundle_free(b);
	b = NULL;
	buf_release(&out);

	/* content offered as a sensor build is refused too */
	build(&out,
	      &(struct bundle_params){.name = "unit",
				      .version = 7,
				      .created = 1767225600,
				      .expires = EXPIRES_T,
				      .schema_version = 1,
				      .min_agent_version = "0.1.0"},
	      sec, 1);
	o.any_kind = false;
	o.kind = BUNDLE_SENSOR;
	assert_int_equal(bundle_verify(root1, out.data, out.len, &o, &b, err, sizeof(err)),
			 -EMEDIUMTYPE);
	assert_non_null(strstr(err, "bundle is a content release, not a sensor build"));
	buf_release(&out);

	/* a sensor build holds exactly the executable */
	buf_init(&out, BUNDLE_MAX_BYTES);
	assert_int_equal(bundle_build(&p, two, 2, sec, 1, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "one file, 'vigil-agent'"));
	buf_release(&out);

	/* a hand-made manifest: only "sensor" is a kind, and only with the one file */
	uint8_t payload[256];
	size_t plen = one_file(payload, "a.yml", 5, "x", 1);
	char *m = manifest_for(payload, plen, "[{\"name\":\"a.yml\",\"size\":1}]", "unit", 7);
	char *k = strstr(m, "\"min_agent_version\"");
	struct buf edited;
	buf_init(&edited, BUNDLE_MAX_MANIFEST_BYTES);
	buf_printf(&edited, "%.*s\"kind\":\"content\",%s", (int)(k - m), m, k);
	assemble(&out, edited.data, sec, 1, payload, plen);
	assert_int_equal(verify(out.data, out.len, root1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'kind' is not \"sensor\""));
	buf_release(&out);
	buf_reset(&edited);
	buf_printf(&edited, "%.*s\"kind\":\"sensor\",%s", (int)(k - m), m, k);
	assemble(&out, edited.data, sec, 1, payload, plen);
	o.kind = BUNDLE_SENSOR;
	assert_int_equal(bundle_verify(root1, out.data, out.len, &o, &b, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "a sensor build holds one file"));
	buf_release(&out);
	buf_release(&edited);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(round_trip),
	    cmocka_unit_test(thresholds_count_distinct_signers),
	    cmocka_unit_test(signatures_cover_manifest_only_and_hash_covers_payload),
	    cmocka_unit_test(expiry_and_versions),
	    cmocka_unit_test(version_rule),
	    cmocka_unit_test(agent_versions),
	    cmocka_unit_test(names),
	    cmocka_unit_test(header_bounds),
	    cmocka_unit_test(manifest_bounds),
	    cmocka_unit_test(payload_bounds),
	    cmocka_unit_test(builder_refuses),
	    cmocka_unit_test(sensor_kind),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
