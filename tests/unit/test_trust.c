/*
 * Unit tests for keys and the root of trust: key file layouts, signatures and their domain
 * separation, times and durations, root documents (every bound), thresholds and rotation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "lib/trust.h"

/* A key pair from a fixed seed byte, so that failures reproduce. */
static void test_key(uint8_t seed_byte, struct trust_key *pub, struct trust_secret *sec)
{
	uint8_t seed[32];

	memset(seed, seed_byte, sizeof(seed));
	assert_int_equal(sodium_init() >= 0, 1);
	crypto_sign_seed_keypair(pub->pk, sec->sk, seed);
	trust_key_id(pub->pk, pub->id);
	memcpy(sec->id, pub->id, TRUST_KEYID_BYTES);
}

static void key_id_is_blake2b_prefix(void **state)
{
	struct trust_key pub;
	struct trust_secret sec;
	uint8_t h[32];

	test_key(1, &pub, &sec);
	crypto_generichash(h, sizeof(h), pub.pk, sizeof(pub.pk), NULL, 0);
	assert_memory_equal(pub.id, h, TRUST_KEYID_BYTES);
	char hex[17];
	trust_key_id_hex(pub.id, hex);
	assert_int_equal(strlen(hex), 16);
	trust_secret_wipe(&sec);
	uint8_t zero[sizeof(sec)] = {0};
	assert_memory_equal(&sec, zero, sizeof(sec));
	trust_secret_wipe(NULL);
}

static void keyfile_round_trip(void **state)
{
	struct trust_key pub, pub2, derived;
	struct trust_secret sec, sec2;
	char text[256], err[256];
	int n;

	assert_int_equal(trust_keygen(&pub, &sec), 0);
	n = trust_public_encode(&pub, text, sizeof(text));
	assert_true(n > 0 && (size_t)n == strlen(text));
	assert_non_null(strstr(text, "untrusted comment: vigil public key "));
	assert_int_equal(trust_public_decode(text, (size_t)n, &pub2, err, sizeof(err)), 0);
	assert_memory_equal(&pub, &pub2, sizeof(pub));
	/* without the final newline too */
	assert_int_equal(trust_public_decode(text, (size_t)n - 1, &pub2, err, sizeof(err)), 0);

	n = trust_secret_encode(&sec, text, sizeof(text));
	assert_true(n > 0);
	assert_int_equal(trust_secret_decode(text, (size_t)n, &sec2, err, sizeof(err)), 0);
	assert_memory_equal(&sec, &sec2, sizeof(sec));
	trust_secret_public(&sec2, &derived);
	assert_memory_equal(&derived, &pub, sizeof(pub));
	/* a public key file is not a secret key file, nor the other way round */
	assert_int_equal(trust_public_decode(text, (size_t)n, &pub2, err, sizeof(err)), -EINVAL);
	n = trust_public_encode(&pub, text, sizeof(text));
	assert_int_equal(trust_secret_decode(text, (size_t)n, &sec2, err, sizeof(err)), -EINVAL);
	/* too small an output buffer */
	assert_int_equal(trust_public_encode(&pub, text, 40), -ENOSPC);
	trust_secret_wipe(&sec);
	trust_secret_wipe(&sec2);
}

/* Re-encodes @bin as a key file with @comment. */
static size_t keyfile(const char *comment, const uint8_t *bin, size_t len, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "untrusted comment: %s\n", comment);
	sodium_bin2base64(out + n, outlen - (size_t)n, bin, len, sodium_base64_VARIANT_ORIGINAL);
	return strlen(out);
}

static void keyfile_rejects(void **state)
{
	struct trust_key pub;
	struct trust_secret sec;
	uint8_t bin[TRUST_SECFILE_BYTES];
	char text[2048], err[256];
	size_t n;

	test_key(2, &pub, &sec);
	/* public layout: "Ed" | id | pk */
	memcpy(bin, "Ed", 2);
	memcpy(bin + 2, pub.id, 8);
	memcpy(bin + 10, pub.pk, 32);
	n = keyfile("k", bin, TRUST_PUBFILE_BYTES, text, sizeof(text));
	assert_int_equal(trust_public_decode(text, n, &pub, err, sizeof(err)), 0);

	bin[0] = 'X';
	n = keyfile("k", bin, TRUST_PUBFILE_BYTES, text, sizeof(text));
	assert_int_equal(trust_public_decode(text, n, &pub, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "algorithm"));
	bin[0] = 'E';
	bin[2] ^= 1; /* key id no longer the key's */
	n = keyfile("k", bin, TRUST_PUBFILE_BYTES, text, sizeof(text));
	assert_int_equal(trust_public_decode(text, n, &pub, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "key id"));
	bin[2] ^= 1;
	n = keyfile("k", bin, TRUST_PUBFILE_BYTES - 1, text, sizeof(text));
	assert_int_equal(trust_public_decode(text, n, &pub, err, sizeof(err)), -EINVAL);

	const char *bad[] = {
	    "",
	    "untrusted comment: x",
	    "comment: x\nRWQ=\n",
	    "untrusted comment: x\n!!!!\n",
	    "untrusted comment: x\nRWQ=\nRWQ=\n",
	    "untrusted comment: \x01\nRWQ=\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    trust_public_decode(bad[i], strlen(bad[i]), &pub, err, sizeof(err)), -EINVAL);
		assert_int_equal(
		    trust_secret_decode(bad[i], strlen(bad[i]), &sec, err, sizeof(err)), -EINVAL);
	}
	/* larger than a key file is refused unread */
	memset(text, 'A', sizeof(text));
	memcpy(text, "untrusted comment: x\n", 21);
	assert_int_equal(
	    trust_public_decode(text, TRUST_KEYFILE_MAX_BYTES + 1, &pub, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "larger"));

	/* secret layout: "Ed" | id | checksum | sk */
	test_key(3, &pub, &sec);
	uint8_t h[32];
	memcpy(bin, "Ed", 2);
	memcpy(bin + 2, sec.id, 8);
	crypto_generichash(h, sizeof(h), sec.sk, 64, NULL, 0);
	memcpy(bin + 10, h, 8);
	memcpy(bin + 18, sec.sk, 64);
	n = keyfile("s", bin, sizeof(bin), text, sizeof(text));
	assert_int_equal(trust_secret_decode(text, n, &sec, err, sizeof(err)), 0);
	bin[10] ^= 1;
	n = keyfile("s", bin, sizeof(bin), text, sizeof(text));
	assert_int_equal(trust_secret_decode(text, n, &sec, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "checksum"));
	bin[10] ^= 1;
	/* public half that is not the seed's, with a matching checksum */
	bin[18 + 40] ^= 1;
	crypto_generichash(h, sizeof(h), bin + 18, 64, NULL, 0);
	memcpy(bin + 10, h, 8);
	n = keyfile("s", bin, sizeof(bin), text, sizeof(text));
	assert_int_equal(trust_secret_decode(text, n, &sec, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "public half"));
	uint8_t zero[sizeof(sec)] = {0};
	assert_memory_equal(&sec, zero, sizeof(sec)); /* zeroed on error */
}

static void signatures_are_domain_separated(void **state)
{
	struct trust_key pub, pub2;
	struct trust_secret sec, sec2;
	uint8_t sig[TRUST_SIG_BYTES];
	const char msg[] = "manifest bytes";

	test_key(4, &pub, &sec);
	test_key(5, &pub2, &sec2);
	trust_sign(&sec, TRUST_CONTEXT_MANIFEST, msg, sizeof(msg), sig);
	assert_true(trust_sig_valid(&pub, TRUST_CONTEXT_MANIFEST, msg, sizeof(msg), sig));
	assert_false(trust_sig_valid(&pub, TRUST_CONTEXT_ROOT, msg, sizeof(msg), sig));
	assert_false(trust_sig_valid(&pub2, TRUST_CONTEXT_MANIFEST, msg, sizeof(msg), sig));
	assert_false(trust_sig_valid(&pub, TRUST_CONTEXT_MANIFEST, msg, sizeof(msg) - 1, sig));
	sig[63] ^= 0x80;
	assert_false(trust_sig_valid(&pub, TRUST_CONTEXT_MANIFEST, msg, sizeof(msg), sig));
	/* the digest is BLAKE2b-256(context || NUL || message) */
	uint8_t d1[32], d2[32];
	trust_digest("ab", "c", 1, d1);
	crypto_generichash(d2, sizeof(d2), (const uint8_t *)"ab\0c", 4, NULL, 0);
	assert_memory_equal(d1, d2, 32);
	trust_digest("a", "bc", 2, d2);
	assert_memory_not_equal(d1, d2, 32);
}

static void times_and_durations(void **state)
{
	trust_time_t t;
	char s[21];

	assert_int_equal(trust_time_parse("1970-01-01T00:00:00Z", 20, &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(trust_time_parse("2028-02-29T23:59:59Z", 20, &t), 0);
	assert_int_equal(trust_time_format(t, s), 0);
	assert_string_equal(s, "2028-02-29T23:59:59Z");
	const char *bad[] = {"2027-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
			     "2026-04-31T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z",
			     "2026-01-01T00:00:60Z", "1969-12-31T23:59:59Z", "2026-01-01 00:00:00Z",
			     "2026-01-01T00:00:00z", "+026-01-01T00:00:00Z", "2026-01-01T00:00:0Z"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(trust_time_parse(bad[i], strlen(bad[i]), &t), -EINVAL);
	assert_int_equal(trust_time_parse("2026-01-01T00:00:00Z0", 21, &t), -EINVAL);
	assert_int_equal(trust_time_format(-1, s), -EINVAL);

	assert_int_equal(trust_duration_parse("30d", &t), 0);
	assert_int_equal(t, 30 * 86400);
	assert_int_equal(trust_duration_parse("1s", &t), 0);
	assert_int_equal(t, 1);
	assert_int_equal(trust_duration_parse("2w", &t), 0);
	assert_int_equal(t, 14 * 86400);
	assert_int_equal(trust_duration_parse("90m", &t), 0);
	assert_int_equal(trust_duration_parse("12h", &t), 0);
	const char *dbad[] = {
	    "",	      "d",    "0d", "5", "5x", "5dd", "-5d", "5 d", "99999999999999999999d",
	    "36601d", "5300w"};
	for (size_t i = 0; i < sizeof(dbad) / sizeof(dbad[0]); i++)
		assert_int_equal(trust_duration_parse(dbad[i], &t), -EINVAL);
	assert_int_equal(trust_duration_parse(NULL, &t), -EINVAL);
}

/* --- roots --- */

struct fixture {
	struct trust_key root_pub[3], content[3];
	struct trust_secret root_sec[3], content_sec[3];
};

static struct fixture fx;

static int setup(void **state)
{
	for (int i = 0; i < 3; i++) {
		test_key((uint8_t)(10 + i), &fx.root_pub[i], &fx.root_sec[i]);
		test_key((uint8_t)(20 + i), &fx.content[i], &fx.content_sec[i]);
	}
	return 0;
}

static struct trust_root_params params(uint64_t version, size_t n_root, unsigned root_threshold)
{
	struct trust_root_params p = {
	    .version = version,
	    .root_keys = fx.root_pub,
	    .n_root_keys = n_root,
	    .root_threshold = root_threshold,
	    .content_keys = fx.content,
	    .n_content_keys = 2,
	    .content_threshold = 2,
	};
	return p;
}

/* Creates a root document into @out; returns trust_root_create's result. */
static int make_root(const struct trust_root_params *p, const struct trust_secret *signers,
		     size_t n, bool foreign, struct buf *out)
{
	char err[256];
	int ret;

	buf_init(out, TRUST_ROOT_MAX_BYTES);
	ret = trust_root_create(p, signers, n, foreign, out, err, sizeof(err));
	if (ret)
		print_message("trust_root_create: %s\n", err);
	return ret;
}

static void root_create_and_parse(void **state)
{
	struct trust_root_params p = params(1, 1, 1);
	struct trust_root *r = NULL;
	struct buf doc, sum;
	char err[256];

	assert_int_equal(make_root(&p, fx.root_sec, 1, false, &doc), 0);
	assert_int_equal(trust_root_parse(doc.data, doc.len, &r, err, sizeof(err)), 0);
	assert_int_equal(trust_root_version(r), 1);
	assert_int_equal(trust_root_content_threshold(r), 2);
	assert_int_equal(trust_root_content_key_count(r), 2);
	assert_int_equal(trust_root_root_threshold(r), 1);
	assert_int_equal(trust_root_root_key_count(r), 1);
	assert_memory_equal(trust_root_content_key(r, 1), &fx.content[1], sizeof(fx.content[1]));
	assert_null(trust_root_content_key(r, 2));
	assert_memory_equal(trust_root_root_key(r, 0), &fx.root_pub[0], sizeof(fx.root_pub[0]));
	assert_null(trust_root_root_key(r, 1));
	assert_non_null(trust_root_find_content_key(r, fx.content[0].id));
	assert_null(trust_root_find_content_key(r, fx.content[2].id));
	assert_null(trust_root_find_content_key(r, fx.root_pub[0].id));
	assert_false(trust_root_expired(r, 4000000000));
	trust_time_t e;
	assert_false(trust_root_expires(r, &e));
	buf_init(&sum, 4096);
	assert_int_equal(trust_root_summary_json(r, &sum), 0);
	assert_non_null(strstr(sum.data, "\"content_threshold\":2"));
	buf_release(&sum);
	trust_root_free(r);
	buf_release(&doc);

	p.has_expires = true;
	p.expires = 2000000000;
	assert_int_equal(make_root(&p, fx.root_sec, 1, false, &doc), 0);
	assert_int_equal(trust_root_parse(doc.data, doc.len, &r, err, sizeof(err)), 0);
	assert_true(trust_root_expires(r, &e));
	assert_int_equal(e, 2000000000);
	assert_false(trust_root_expired(r, 1999999999));
	assert_true(trust_root_expired(r, 2000000000));
	trust_root_free(r);
	buf_release(&doc);
	trust_root_free(NULL);
}

static void root_create_refuses(void **state)
{
	struct trust_root_params p = params(1, 1, 1);
	struct buf doc;
	char err[256];

	buf_init(&doc, TRUST_ROOT_MAX_BYTES);
	/* signer that is not a root key of this root */
	assert_int_equal(trust_root_create(&p, fx.content_sec, 1, false, &doc, err, sizeof(err)),
			 -EINVAL);
	/* the same signer twice */
	struct trust_secret twice[2] = {fx.root_sec[0], fx.root_sec[0]};
	assert_int_equal(trust_root_create(&p, twice, 2, false, &doc, err, sizeof(err)), -EINVAL);
	/* thresholds out of range */
	p.content_threshold = 3;
	assert_int_equal(trust_root_create(&p, fx.root_sec, 1, false, &doc, err, sizeof(err)),
			 -EINVAL);
	p.content_threshold = 0;
	assert_int_equal(trust_root_create(&p, fx.root_sec, 1, false, &doc, err, sizeof(err)),
			 -EINVAL);
	p = params(1, 1, 2);
	assert_int_equal(trust_root_create(&p, fx.root_sec, 1, false, &doc, err, sizeof(err)),
			 -EINVAL);
	/* a key in both roles */
	p = params(1, 1, 1);
	struct trust_key both[2] = {fx.content[0], fx.root_pub[0]};
	p.content_keys = both;
	assert_int_equal(trust_root_create(&p, fx.root_sec, 1, false, &doc, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "roles"));
	/* a key listed twice */
	struct trust_key dup[2] = {fx.content[0], fx.content[0]};
	p.content_keys = dup;
	assert_int_equal(trust_root_create(&p, fx.root_sec, 1, false, &doc, err, sizeof(err)),
			 -EINVAL);
	p = params(0, 1, 1);
	assert_int_equal(trust_root_create(&p, fx.root_sec, 1, false, &doc, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(doc.len, 0);
	buf_release(&doc);
}

/* Parses @text (NUL-terminated) as a pinned root and returns the result; *@r freed. */
static int parse_text(const char *text, char *err, size_t errlen)
{
	struct trust_root *r = NULL;
	int ret = trust_root_parse(text, strlen(text), &r, err, errlen);

	trust_root_free(r);
	return ret;
}

/* Re-signs a root document edited as JSON, so that only the edit is wrong. */
static char *resign(json_t *doc, const struct trust_secret *keys, size_t n)
{
	json_t *sigs = json_array();
	char *canon = json_dumps(json_object_get(doc, "signed"), JSON_COMPACT | JSON_SORT_KEYS);

	for (size_t i = 0; i < n; i++) {
		uint8_t sig[64];
		char hex[129], id[17];
		trust_sign(&keys[i], TRUST_CONTEXT_ROOT, canon, strlen(canon), sig);
		sodium_bin2hex(hex, sizeof(hex), sig, sizeof(sig));
		trust_key_id_hex(keys[i].id, id);
		json_array_append_new(sigs, json_pack("{s:s,s:s}", "keyid", id, "sig", hex));
	}
	json_object_set_new(doc, "signatures", sigs);
	free(canon);
	return json_dumps(doc, JSON_COMPACT);
}

static void root_parse_rejects(void **state)
{
	struct trust_root_params p = params(1, 1, 1);
	struct buf doc;
	char err[256], *text;
	json_t *j;

	assert_int_equal(make_root(&p, fx.root_sec, 1, false, &doc), 0);
	assert_int_equal(parse_text(doc.data, err, sizeof(err)), 0);

	/* edits re-signed by the root key: each must fail on its own rule */
	struct {
		const char *path, *json, *want;
	} edits[] = {
	    {"signed.type", "\"vigil-bundle\"", "'type'"},
	    {"signed.version", "0", "'version'"},
	    {"signed.version", "9007199254740992", "'version'"},
	    {"signed.version", "1.0", "'version'"},
	    {"signed.expires", "\"2026-02-30T00:00:00Z\"", "'expires'"},
	    {"signed.extra", "1", "unknown field"},
	    {"signed.content_threshold", "3", "content_threshold"},
	    {"signed.content_threshold", "0", "content_threshold"},
	    {"signed.root_threshold", "2", "root_threshold"},
	    {"signed.content_keys", "[]", "content_keys"},
	    {"signed.root_keys", "{}", "root_keys"},
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		json_error_t je;
		j = json_loadb(doc.data, doc.len, 0, &je);
		json_t *v = json_loads(edits[i].json, JSON_DECODE_ANY, &je);
		assert_non_null(v);
		json_object_set_new(json_object_get(j, "signed"), edits[i].path + 7, v);
		text = resign(j, fx.root_sec, 1);
		assert_int_equal(parse_text(text, err, sizeof(err)), -EINVAL);
		if (!strstr(err, edits[i].want))
			fail_msg("edit %s=%s: got '%s'", edits[i].path, edits[i].json, err);
		free(text);
		json_decref(j);
	}

	/* key id that is not its key's; uppercase hex; 33 keys */
	json_error_t je;
	j = json_loadb(doc.data, doc.len, 0, &je);
	json_t *k0 =
	    json_array_get(json_object_get(json_object_get(j, "signed"), "content_keys"), 0);
	json_object_set_new(k0, "keyid", json_string("0000000000000000"));
	text = resign(j, fx.root_sec, 1);
	assert_int_equal(parse_text(text, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "key id does not match"));
	free(text);
	char idhex[17];
	trust_key_id_hex(fx.content[0].id, idhex);
	for (char *c = idhex; *c; c++)
		*c = (char)(*c >= 'a' ? *c - 32 : *c);
	json_object_set_new(k0, "keyid", json_string(idhex));
	text = resign(j, fx.root_sec, 1);
	assert_int_equal(parse_text(text, err, sizeof(err)), -EINVAL);
	free(text);
	json_t *many = json_array();
	for (int i = 0; i < 33; i++) {
		struct trust_key k;
		struct trust_secret s;
		char id[17], pk[65];
		test_key((uint8_t)(100 + i), &k, &s);
		trust_key_id_hex(k.id, id);
		sodium_bin2hex(pk, sizeof(pk), k.pk, 32);
		json_array_append_new(many, json_pack("{s:s,s:s}", "keyid", id, "public", pk));
	}
	json_object_set_new(json_object_get(j, "signed"), "content_keys", many);
	text = resign(j, fx.root_sec, 1);
	assert_int_equal(parse_text(text, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than 32"));
	free(text);
	json_decref(j);

	/* an edit not re-signed */
	j = json_loadb(doc.data, doc.len, 0, &je);
	json_object_set_new(json_object_get(j, "signed"), "content_threshold", json_integer(1));
	text = json_dumps(j, 0);
	assert_int_equal(parse_text(text, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "bad signature"));
	free(text);
	/* signed only by a key that is not a root key */
	text = resign(j, fx.content_sec, 1);
	assert_int_equal(parse_text(text, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "signed by 0 distinct"));
	free(text);
	json_decref(j);

	/* structure */
	const char *bad[] = {"",
			     "[]",
			     "{}",
			     "{\"signed\":{}}",
			     "{\"signed\":{},\"signatures\":[]}",
			     "{\"signed\":1,\"signatures\":[{\"keyid\":\"00\",\"sig\":\"00\"}]}",
			     "{\"signed\":{},\"signatures\":[1]}",
			     "{\"signed\":{},\"signatures\":[],\"x\":1}",
			     "{\"signed\":{},\"signed\":{},\"signatures\":[]}",
			     "{\"signed\":"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse_text(bad[i], err, sizeof(err)), -EINVAL);
	/* more than 64 signature entries */
	struct buf big;
	buf_init(&big, 1 << 20);
	buf_append_str(&big, "{\"signed\":{},\"signatures\":[");
	for (int i = 0; i < 65; i++)
		buf_printf(&big, "%s{\"keyid\":\"%016d\",\"sig\":\"%0128d\"}", i ? "," : "", 0, 0);
	buf_append_str(&big, "]}");
	assert_int_equal(parse_text(big.data, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than 64"));
	/* larger than the cap: refused before parsing */
	buf_reset(&big);
	while (big.len <= TRUST_ROOT_MAX_BYTES)
		buf_append_str(&big, "                ");
	struct trust_root *r = NULL;
	assert_int_equal(trust_root_parse(big.data, big.len, &r, err, sizeof(err)), -E2BIG);
	assert_null(r);
	buf_release(&big);
	buf_release(&doc);
}

static void root_threshold_counts_distinct_keys(void **state)
{
	struct trust_root_params p = params(1, 2, 2);
	struct buf doc;
	char err[256], *text;
	json_error_t je;
	json_t *j;

	assert_int_equal(make_root(&p, fx.root_sec, 2, false, &doc), 0);
	assert_int_equal(parse_text(doc.data, err, sizeof(err)), 0);
	j = json_loadb(doc.data, doc.len, 0, &je);
	/* the first root key's signature twice */
	struct trust_secret same[2] = {fx.root_sec[0], fx.root_sec[0]};
	text = resign(j, same, 2);
	assert_int_equal(parse_text(text, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "signed by 1 distinct"));
	free(text);
	/* one bad signature among good ones fails the document */
	text = resign(j, fx.root_sec, 2);
	json_t *j2 = json_loads(text, 0, &je);
	json_t *s1 = json_array_get(json_object_get(j2, "signatures"), 1);
	char *sig = strdup(json_string_value(json_object_get(s1, "sig")));
	sig[0] = sig[0] == '0' ? '1' : '0';
	json_object_set_new(s1, "sig", json_string(sig));
	free(text);
	text = json_dumps(j2, 0);
	assert_int_equal(parse_text(text, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "bad signature"));
	free(text);
	free(sig);
	json_decref(j2);
	json_decref(j);
	buf_release(&doc);
}

static void rotation(void **state)
{
	struct trust_root_params p1 = params(1, 1, 1), p2;
	struct trust_root *cur = NULL, *next = NULL;
	struct trust_secret both[2] = {fx.root_sec[1], fx.root_sec[0]};
	struct buf d1, d2;
	char err[256];

	assert_int_equal(make_root(&p1, fx.root_sec, 1, false, &d1), 0);
	assert_int_equal(trust_root_parse(d1.data, d1.len, &cur, err, sizeof(err)), 0);

	/* v2 under a new root key, signed by the new and the old root key: accepted */
	p2 = params(2, 1, 1);
	p2.root_keys = &fx.root_pub[1];
	assert_int_equal(make_root(&p2, both, 2, true, &d2), 0);
	assert_int_equal(trust_root_update(cur, d2.data, d2.len, 1000, &next, err, sizeof(err)), 0);
	assert_int_equal(trust_root_version(next), 2);
	assert_int_equal(trust_root_version(cur), 1);
	trust_root_free(next);
	next = NULL;
	buf_release(&d2);

	/* signed only by the new key: the old threshold is not met */
	assert_int_equal(make_root(&p2, &fx.root_sec[1], 1, false, &d2), 0);
	assert_int_equal(trust_root_update(cur, d2.data, d2.len, 1000, &next, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "the current"));
	assert_null(next);
	buf_release(&d2);

	/* signed only by the old key: not by its own root keys (create refuses to write it) */
	buf_init(&d2, TRUST_ROOT_MAX_BYTES);
	assert_int_equal(trust_root_create(&p2, &fx.root_sec[0], 1, true, &d2, err, sizeof(err)),
			 -EBADMSG);
	buf_release(&d2);
	assert_int_equal(make_root(&p2, both, 2, true, &d2), 0);
	json_error_t je;
	json_t *j = json_loadb(d2.data, d2.len, 0, &je);
	char *text = resign(j, &fx.root_sec[0], 1);
	assert_int_equal(trust_root_update(cur, text, strlen(text), 1000, &next, err, sizeof(err)),
			 -EBADMSG);
	assert_non_null(strstr(err, "its own"));
	free(text);
	json_decref(j);
	buf_release(&d2);

	/* same and lower versions */
	p2 = params(1, 1, 1);
	assert_int_equal(make_root(&p2, fx.root_sec, 1, false, &d2), 0);
	assert_int_equal(trust_root_update(cur, d2.data, d2.len, 1000, &next, err, sizeof(err)),
			 -ESTALE);
	buf_release(&d2);

	/* expired candidate */
	p2 = params(3, 1, 1);
	p2.has_expires = true;
	p2.expires = 500;
	assert_int_equal(make_root(&p2, fx.root_sec, 1, false, &d2), 0);
	assert_int_equal(trust_root_update(cur, d2.data, d2.len, 500, &next, err, sizeof(err)),
			 -EKEYEXPIRED);
	assert_int_equal(trust_root_update(cur, d2.data, d2.len, 499, &next, err, sizeof(err)), 0);
	trust_root_free(next);
	next = NULL;
	buf_release(&d2);

	/* an old root with threshold 2 needs both of its keys on the successor */
	trust_root_free(cur);
	buf_release(&d1);
	p1 = params(5, 2, 2);
	assert_int_equal(make_root(&p1, fx.root_sec, 2, false, &d1), 0);
	assert_int_equal(trust_root_parse(d1.data, d1.len, &cur, err, sizeof(err)), 0);
	p2 = params(6, 1, 1);
	p2.root_keys = &fx.root_pub[2];
	struct trust_secret one_old[2] = {fx.root_sec[2], fx.root_sec[0]};
	assert_int_equal(make_root(&p2, one_old, 2, true, &d2), 0);
	assert_int_equal(trust_root_update(cur, d2.data, d2.len, 0, &next, err, sizeof(err)),
			 -EBADMSG);
	buf_release(&d2);
	struct trust_secret two_old[3] = {fx.root_sec[2], fx.root_sec[0], fx.root_sec[1]};
	assert_int_equal(make_root(&p2, two_old, 3, true, &d2), 0);
	assert_int_equal(trust_root_update(cur, d2.data, d2.len, 0, &next, err, sizeof(err)), 0);
	assert_memory_not_equal(trust_root_digest(cur), trust_root_digest(next), 32);
	trust_root_free(next);
	trust_root_free(cur);
	buf_release(&d1);
	buf_release(&d2);
}

static void files(void **state)
{
	char dir[] = "/tmp/vigil-trust-XXXXXX", path[256], link[256];
	struct buf b;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/k", dir);
	snprintf(link, sizeof(link), "%s/l", dir);
	assert_int_equal(trust_file_write(path, "hello", 5, 0600, true), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(trust_file_write(path, "again", 5, 0600, true), -EEXIST);
	assert_int_equal(symlink(path, link), 0);
	assert_int_equal(trust_file_write(link, "x", 1, 0600, true), -EEXIST);
	buf_init(&b, 1024);
	assert_int_equal(trust_file_read(path, 5, &b), 0);
	assert_int_equal(b.len, 5);
	assert_string_equal(b.data, "hello");
	assert_int_equal(trust_file_read(path, 4, &b), -E2BIG);
	assert_int_equal(trust_file_read(link, 100, &b), -ELOOP);
	assert_int_equal(trust_file_read(dir, 100, &b), -EINVAL);
	/* replacing write */
	assert_int_equal(trust_file_write(path, "bye", 3, 0644, false), 0);
	assert_int_equal(trust_file_read(path, 100, &b), 0);
	assert_string_equal(b.data, "bye");
	buf_release(&b);
	unlink(link);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(key_id_is_blake2b_prefix),
	    cmocka_unit_test(keyfile_round_trip),
	    cmocka_unit_test(keyfile_rejects),
	    cmocka_unit_test(signatures_are_domain_separated),
	    cmocka_unit_test(times_and_durations),
	    cmocka_unit_test(root_create_and_parse),
	    cmocka_unit_test(root_create_refuses),
	    cmocka_unit_test(root_parse_rejects),
	    cmocka_unit_test(root_threshold_counts_distinct_keys),
	    cmocka_unit_test(rotation),
	    cmocka_unit_test(files),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
