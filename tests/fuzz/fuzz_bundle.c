/*
 * libFuzzer target for the bundle reader. Signatures and hashes stop random bytes early, so
 * the input's first byte picks how far in it goes:
 *   'M'  the rest is a manifest, signed here over a fixed payload ("@H" and "@S" in it are
 *        replaced by that payload's hash and size): reaches the manifest parser;
 *   'P'  the rest is a payload archive, described by a manifest made and signed here from a
 *        lenient reading of it: reaches the hash check and the archive parser;
 *   else the whole input is a bundle file, verified as is.
 * What verifies must be self-consistent and rebuild to the same manifest bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "lib/bundle.h"

static struct trust_secret key[2];
static struct trust_root *root;
static struct buf bundle, text, rebuilt;

static const uint8_t fixed_payload[] = {1,   0,	  0, 0, 5, 0, 'a', '.', 'y',
					'm', 'l', 3, 0, 0, 0, 'x', ':', '1'};

static const struct bundle_verify_options opts = {
    .now = 1800000000,
    .schema_version = 1,
    .agent_version = "0.1.0",
};

static void setup(void)
{
	struct trust_key pub[3];
	struct trust_secret root_sec;
	struct trust_root_params p;
	struct buf doc;
	char err[256];

	if (sodium_init() < 0)
		abort();
	for (int i = 0; i < 3; i++) {
		uint8_t seed[32];
		struct trust_secret *s = i < 2 ? &key[i] : &root_sec;
		memset(seed, 0x51 + i, sizeof(seed));
		crypto_sign_seed_keypair(pub[i].pk, s->sk, seed);
		trust_key_id(pub[i].pk, pub[i].id);
		memcpy(s->id, pub[i].id, TRUST_KEYID_BYTES);
	}
	memset(&p, 0, sizeof(p));
	p.version = 1;
	p.root_keys = &pub[2];
	p.n_root_keys = 1;
	p.root_threshold = 1;
	p.content_keys = pub;
	p.n_content_keys = 2;
	p.content_threshold = 1;
	buf_init(&doc, TRUST_ROOT_MAX_BYTES);
	if (trust_root_create(&p, &root_sec, 1, false, &doc, err, sizeof(err)) ||
	    trust_root_parse(doc.data, doc.len, &root, err, sizeof(err)))
		abort();
	buf_release(&doc);
	trust_secret_wipe(&root_sec);
	buf_init(&bundle, BUNDLE_MAX_BYTES);
	buf_init(&text, BUNDLE_MAX_MANIFEST_BYTES);
	buf_init(&rebuilt, BUNDLE_MAX_BYTES);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Header, @manifest signed by key[0], then @payload, into `bundle`. */
static int assemble(const char *manifest, size_t mlen, const uint8_t *payload, size_t plen)
{
	uint8_t hdr[BUNDLE_HEADER_BYTES], sig[TRUST_SIG_BYTES];

	if (mlen > BUNDLE_MAX_MANIFEST_BYTES)
		return -1;
	memcpy(hdr, BUNDLE_MAGIC, 8);
	put32(hdr + 8, BUNDLE_FORMAT_VERSION);
	put32(hdr + 12, 0);
	put32(hdr + 16, (uint32_t)mlen);
	put32(hdr + 20, 1);
	put32(hdr + 24, (uint32_t)plen);
	put32(hdr + 28, (uint32_t)((uint64_t)plen >> 32));
	trust_sign(&key[0], TRUST_CONTEXT_MANIFEST, manifest, mlen, sig);
	buf_reset(&bundle);
	if (buf_append(&bundle, hdr, sizeof(hdr)) || buf_append(&bundle, manifest, mlen) ||
	    buf_append(&bundle, key[0].id, TRUST_KEYID_BYTES) ||
	    buf_append(&bundle, sig, sizeof(sig)) || buf_append(&bundle, payload, plen))
		return -1;
	return 0;
}

static void hash_hex(const uint8_t *p, size_t len, char hex[65])
{
	uint8_t h[32];

	crypto_generichash(h, sizeof(h), p, len, NULL, 0);
	sodium_bin2hex(hex, 65, h, sizeof(h));
}

/* Manifest text from the input with @H / @S filled in for the fixed payload. */
static int manifest_mode(const uint8_t *data, size_t size)
{
	char hex[65];

	hash_hex(fixed_payload, sizeof(fixed_payload), hex);
	buf_reset(&text);
	for (size_t i = 0; i < size; i++) {
		int err;
		if (data[i] == '@' && i + 1 < size && data[i + 1] == 'H') {
			err = buf_append_str(&text, hex);
			i++;
		} else if (data[i] == '@' && i + 1 < size && data[i + 1] == 'S') {
			err = buf_printf(&text, "%zu", sizeof(fixed_payload));
			i++;
		} else {
			err = buf_append_char(&text, (char)data[i]);
		}
		if (err)
			return -1;
	}
	return assemble(text.data ? text.data : "", text.len, fixed_payload, sizeof(fixed_payload));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A canonical manifest for the archive @data as far as it can be read, then the bundle. */
static int payload_mode(const uint8_t *data, size_t size)
{
	char hex[65];
	size_t off = 4, count = size >= 4 ? get32(data) : 0;
	int err;

	hash_hex(data, size, hex);
	buf_reset(&text);
	err = buf_append_str(&text, "{\"created\":\"2026-01-01T00:00:00Z\",\"expires\":"
				    "\"2030-01-01T00:00:00Z\",\"files\":[");
	for (size_t i = 0; !err && i < count && i < BUNDLE_MAX_FILES && off + 2 <= size; i++) {
		size_t nlen = (size_t)data[off] | (size_t)data[off + 1] << 8, dlen;
		if (off + 2 + nlen + 4 > size)
			break;
		dlen = get32(data + off + 2 + nlen);
		err = buf_printf(&text, "%s{\"name\":\"", i ? "," : "");
		for (size_t k = 0; !err && k < nlen; k++) {
			uint8_t c = data[off + 2 + k];
			if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
				err = buf_printf(&text, "\\u%04x", c);
			else
				err = buf_append_char(&text, (char)c);
		}
		if (!err)
			err = buf_printf(&text, "\",\"size\":%zu}", dlen);
		off += 6 + nlen + dlen;
	}
	if (!err)
		err = buf_printf(&text,
				 "],\"min_agent_version\":\"0.1.0\",\"name\":\"fuzz\",\"payload\":"
				 "{\"blake2b\":\"%s\",\"size\":%zu},\"schema_version\":1,"
				 "\"type\":\"vigil-bundle\",\"version\":3}",
				 hex, size);
	if (err)
		return -1;
	return assemble(text.data, text.len, data, size);
}

/* Invariants of a verified bundle; rebuilding it must give the same manifest bytes. */
static void check(const struct bundle *b)
{
	const struct bundle_manifest *m = bundle_manifest(b);
	struct bundle_params p;
	struct bundle_file *files;
	struct rules_source *src = NULL;
	const char *why, *json;
	size_t n = bundle_file_count(b), mlen;
	char err[256];

	if (n != m->n_files || n == 0 || n > BUNDLE_MAX_FILES || m->expires <= m->created ||
	    bundle_signer_count(b) < trust_root_content_threshold(root))
		abort();
	for (size_t i = 0; i < n; i++) {
		const struct bundle_file *f = bundle_file(b, i);
		if (!bundle_name_safe(f->name, strlen(f->name), &why) ||
		    f->len > BUNDLE_MAX_FILE_BYTES)
			abort();
		if (i && strcmp(bundle_file(b, i - 1)->name, f->name) >= 0)
			abort();
	}
	if (bundle_check_version(m, false, 0, err, sizeof(err)) ||
	    bundle_check_version(m, true, m->version - 1, err, sizeof(err)) ||
	    bundle_check_version(m, true, m->version, err, sizeof(err)) != -EALREADY ||
	    (bundle_check_version(m, true, m->version + 1, err, sizeof(err)) == 0) !=
		m->has_allow_downgrade)
		abort();
	if (bundle_rules_sources(b, &src))
		abort();
	free(src);
	files = calloc(n, sizeof(*files));
	if (!files)
		abort();
	for (size_t i = 0; i < n; i++)
		files[i] = *bundle_file(b, i);
	memset(&p, 0, sizeof(p));
	p.name = m->name;
	p.version = m->version;
	p.created = m->created;
	p.expires = m->expires;
	p.schema_version = m->schema_version;
	p.min_agent_version = m->min_agent_version;
	p.has_allow_downgrade = m->has_allow_downgrade;
	p.allow_downgrade_from = m->allow_downgrade_from;
	buf_reset(&rebuilt);
	if (bundle_build(&p, files, n, key, 1, &rebuilt, err, sizeof(err)))
		abort();
	json = bundle_manifest_json(b, &mlen);
	if (rebuilt.len < BUNDLE_HEADER_BYTES + mlen ||
	    memcmp(rebuilt.data + BUNDLE_HEADER_BYTES, json, mlen) != 0)
		abort();
	free(files);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct bundle *b = NULL;
	const uint8_t *in = data;
	size_t len = size;
	char err[512];

	if (!ready) {
		setup();
		ready = 1;
	}
	if (size > 0 && data[0] == 'M') {
		if (manifest_mode(data + 1, size - 1))
			return 0;
		in = (const uint8_t *)bundle.data;
		len = bundle.len;
	} else if (size > 0 && data[0] == 'P') {
		if (payload_mode(data + 1, size - 1))
			return 0;
		in = (const uint8_t *)bundle.data;
		len = bundle.len;
	}
	if (bundle_verify(root, in, len, &opts, &b, err, sizeof(err)) == 0) {
		check(b);
		bundle_free(b);
	} else if (b || !memchr(err, '\0', sizeof(err)) || strchr(err, '\n')) {
		abort(); /* failure leaves no bundle and one line of reason */
	}
	return 0;
}
