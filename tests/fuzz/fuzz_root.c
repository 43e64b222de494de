/*
 * libFuzzer target for the root of trust and key files. The input's first byte picks:
 *   'S'  the rest is a root's signed part, signed here with the fixed root key and wrapped
 *        in a document: reaches every rule of the root's content with valid signatures;
 *   'U'  the rest is a candidate root offered to replace a fixed current root (rotation);
 *   'K'  the rest is a key file, read as a public and as a secret key;
 *   'T'  the rest is a time and a duration;
 *   else the whole input is a root document to pin.
 * What parses must summarise, and a root that parses must be one its own keys signed.
 */
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/trust.h"

static struct trust_secret root_sec;
static struct trust_root *current;
static struct buf doc, summary;

static void setup(void)
{
	struct trust_key pub[3];
	struct trust_secret s;
	struct trust_root_params p;
	char err[256];

	if (sodium_init() < 0)
		abort();
	for (int i = 0; i < 3; i++) {
		uint8_t seed[32];
		memset(seed, 0x61 + i, sizeof(seed));
		crypto_sign_seed_keypair(pub[i].pk, i == 2 ? root_sec.sk : s.sk, seed);
		trust_key_id(pub[i].pk, pub[i].id);
	}
	memcpy(root_sec.id, pub[2].id, TRUST_KEYID_BYTES);
	trust_secret_wipe(&s);
	memset(&p, 0, sizeof(p));
	p.version = 5;
	p.root_keys = &pub[2];
	p.n_root_keys = 1;
	p.root_threshold = 1;
	p.content_keys = pub;
	p.n_content_keys = 2;
	p.content_threshold = 2;
	buf_init(&doc, TRUST_ROOT_MAX_BYTES * 4);
	buf_init(&summary, 1 << 20);
	if (trust_root_create(&p, &root_sec, 1, false, &doc, err, sizeof(err)) ||
	    trust_root_parse(doc.data, doc.len, &current, err, sizeof(err)))
		abort();
}

/* Wraps the signed part @data in a document signed by the fixed root key, into `doc`. */
static int wrap_signed(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *s = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	char *canon = NULL, *text = NULL, id[17], hex[129];
	uint8_t sig[64];
	int ret = -1;

	if (!s)
		return -1;
	canon = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
	if (!canon)
		goto out;
	trust_sign(&root_sec, TRUST_CONTEXT_ROOT, canon, strlen(canon), sig);
	trust_key_id_hex(root_sec.id, id);
	sodium_bin2hex(hex, sizeof(hex), sig, sizeof(sig));
	json_t *d =
	    json_pack("{s:[{s:s,s:s}],s:O}", "signatures", "keyid", id, "sig", hex, "signed", s);
	if (!d)
		goto out;
	text = json_dumps(d, JSON_COMPACT);
	json_decref(d);
	buf_reset(&doc);
	if (text && buf_append_str(&doc, text) == 0)
		ret = 0;
out:
	free(text);
	free(canon);
	json_decref(s);
	return ret;
}

static void check(const struct trust_root *r)
{
	if (trust_root_root_threshold(r) < 1 ||
	    trust_root_root_threshold(r) > trust_root_root_key_count(r) ||
	    trust_root_content_threshold(r) < 1 ||
	    trust_root_content_threshold(r) > trust_root_content_key_count(r) ||
	    trust_root_version(r) < 1)
		abort();
	for (size_t i = 0; i < trust_root_content_key_count(r); i++) {
		const struct trust_key *k = trust_root_content_key(r, i);
		if (trust_root_find_content_key(r, k->id) != k)
			abort();
	}
	buf_reset(&summary);
	if (trust_root_summary_json(r, &summary))
		abort();
}

static void one_line(const char *err, size_t len)
{
	if (!memchr(err, '\0', len) || strchr(err, '\n'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct trust_root *r = NULL;
	char err[512];
	const char *in = (const char *)data;
	size_t len = size;

	if (!ready) {
		setup();
		ready = 1;
	}
	err[0] = '\0';
	if (size > 0 && data[0] == 'K') {
		struct trust_key k;
		struct trust_secret s;
		trust_public_decode(in + 1, size - 1, &k, err, sizeof(err));
		one_line(err, sizeof(err));
		trust_secret_decode(in + 1, size - 1, &s, err, sizeof(err));
		one_line(err, sizeof(err));
		trust_secret_wipe(&s);
		return 0;
	}
	if (size > 0 && data[0] == 'T') {
		char str[32], fmt[21];
		trust_time_t t;
		size_t n = size - 1 < sizeof(str) - 1 ? size - 1 : sizeof(str) - 1;
		memcpy(str, in + 1, n);
		str[n] = '\0';
		if (trust_time_parse(in + 1, size - 1, &t) == 0) {
			/* what parses formats back to the same text */
			if (trust_time_format(t, fmt) || memcmp(fmt, in + 1, 20) != 0)
				abort();
		}
		if (trust_duration_parse(str, &t) == 0 && t <= 0)
			abort();
		return 0;
	}
	if (size > 0 && data[0] == 'U') {
		if (trust_root_update(current, in + 1, size - 1, 1800000000, &r, err,
				      sizeof(err)) == 0) {
			if (trust_root_version(r) <= trust_root_version(current))
				abort();
			check(r);
			trust_root_free(r);
		} else {
			one_line(err, sizeof(err));
		}
		return 0;
	}
	if (size > 0 && data[0] == 'S') {
		if (wrap_signed(data + 1, size - 1))
			return 0;
		in = doc.data;
		len = doc.len;
	}
	if (trust_root_parse(in, len, &r, err, sizeof(err)) == 0) {
		check(r);
		trust_root_free(r);
	} else {
		one_line(err, sizeof(err));
	}
	return 0;
}
