/*
 * Content bundles: building and verifying the one-file format of docs/bundles.md. Structure,
 * key ids and signatures are checked before the manifest is parsed; the manifest before the
 * payload is hashed; the hash before the archive is parsed.
 */
#include "bundle.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_TYPE "vigil-bundle"
/* Largest part of an agent version. */
#define VERSION_PART_MAX 999999u

struct manifest_file {
	const char *name; /* borrowed from the parsed JSON or the caller's files */
	size_t name_len;
	uint64_t size;
	size_t index; /* building: position in the caller's list */
};

struct bundle {
	struct bundle_manifest m;
	char *manifest; /* the signed bytes, NUL-terminated */
	size_t manifest_len;
	uint8_t *payload;
	size_t payload_len;
	struct bundle_file *files;
	size_t n_files;
	char *names; /* NUL-terminated copies of the file names */
	uint8_t signers[BUNDLE_MAX_SIGNATURES][TRUST_KEYID_BYTES];
	size_t n_signers;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Messages are for people; one cut short by the buffer is still a message. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A printable, bounded rendering of untrusted bytes for messages ("..." when cut). */
static void printable(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i, j = 0;

	for (i = 0; i < len && j + 4 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		out[j++] = c >= 0x20 && c < 0x7f && c != '\'' ? (char)c : '?';
	}
	if (i < len) {
		memcpy(out + j, "...", 3);
		j += 3;
	}
	out[j] = '\0';
}

/* --- names and versions --- */

static bool label_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static bool label_valid(const char *s, size_t len)
{
	if (len == 0 || len > BUNDLE_MAX_LABEL_BYTES)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!label_char(s[i]))
			return false;
	}
	return true;
}

bool bundle_name_safe(const char *name, size_t len, const char **why)
{
	size_t depth = 1, comp = 0;

	if (len == 0) {
		*why = "empty";
		return false;
	}
	if (len > BUNDLE_MAX_NAME_BYTES) {
		*why = "longer than 128 bytes";
		return false;
	}
	if (name[0] == '/') {
		*why = "absolute (leading '/')";
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c == '/') {
			if (comp == 0) {
				*why = "empty path component";
				return false;
			}
			if (++depth > BUNDLE_MAX_NAME_DEPTH) {
				*why = "more than 8 path components";
				return false;
			}
			comp = 0;
			continue;
		}
		if (!label_char(c)) {
			*why = "byte outside [A-Za-z0-9._-/]";
			return false;
		}
		if (comp == 0 && c == '.') {
			*why = "component starting with '.' (such as '..')";
			return false;
		}
		comp++;
	}
	if (comp == 0) {
		*why = "trailing '/'";
		return false;
	}
	return true;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

/*
 * Checks name @i of the sorted names @f against those before it: strictly after the previous
 * one, and none of its directories is a file of its own ("a" and "a/b").
 */
static const char *name_order_problem(const struct manifest_file *f, size_t i)
{
	if (i == 0)
		return NULL;
	if (name_cmp(f[i - 1].name, f[i - 1].name_len, f[i].name, f[i].name_len) >= 0)
		return "not after the previous name (names must be sorted and unique)";
	for (size_t k = 1; k < f[i].name_len; k++) {
		size_t lo = 0, hi = i;
		if (f[i].name[k] != '/')
			continue;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int c = name_cmp(f[mid].name, f[mid].name_len, f[i].name, k);
			if (c == 0)
				return "a directory of it is also a file";
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	return NULL;
}

int bundle_agent_version_parse(const char *s, size_t len, uint64_t *out)
{
	uint64_t parts[3] = {0, 0, 0};
	size_t i = 0;

	for (int k = 0; k < 3; k++) {
		size_t start = i;
		if (k > 0) {
			if (i >= len || s[i] != '.')
				return -EINVAL;
			start = ++i;
		}
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			parts[k] = parts[k] * 10 + (uint64_t)(s[i] - '0');
			if (parts[k] > VERSION_PART_MAX)
				return -EINVAL;
			i++;
		}
		if (i == start || (s[start] == '0' && i - start > 1))
			return -EINVAL;
	}
	if (i != len)
		return -EINVAL;
	*out = parts[0] << 40 | parts[1] << 20 | parts[2];
	return 0;
}

int bundle_check_version(const struct bundle_manifest *m, bool has_active, uint64_t active,
			 char *err, size_t errlen)
{
	if (!has_active || m->version > active)
		return 0;
	if (m->version == active) {
		set_err(err, errlen, "version %" PRIu64 " is already the active version",
			m->version);
		return -EALREADY;
	}
	if (m->has_allow_downgrade && active <= m->allow_downgrade_from)
		return 0;
	if (m->has_allow_downgrade)
		set_err(err, errlen,
			"version %" PRIu64 " is lower than the active %" PRIu64
			" and its downgrade instruction covers only versions up to %" PRIu64,
			m->version, active, m->allow_downgrade_from);
	else
		set_err(err, errlen,
			"version %" PRIu64 " is lower than the active %" PRIu64
			" and carries no signed downgrade instruction",
			m->version, active);
	return -ESTALE;
}

const char *bundle_kind_name(enum bundle_kind kind)
{
	return kind == BUNDLE_SENSOR ? "sensor" : "content";
}

/* --- the manifest --- */

/*
 * The canonical manifest: keys sorted, no whitespace, integers in decimal. Every string in it
 * is of a restricted alphabet (labels, names, versions, times, hex), so none needs escaping.
 */
static int manifest_write(const struct bundle_manifest *m, const struct manifest_file *files,
			  size_t n, struct buf *out)
{
	char created[21], expires[21], hash[2 * TRUST_HASH_BYTES + 1];
	int err;

	if (trust_time_format(m->created, created) || trust_time_format(m->expires, expires))
		return -EINVAL;
	sodium_bin2hex(hash, sizeof(hash), m->payload_hash, TRUST_HASH_BYTES);
	err = buf_append_char(out, '{');
	if (!err && m->has_allow_downgrade)
		err = buf_printf(out, "\"allow_downgrade_from\":%" PRIu64 ",",
				 m->allow_downgrade_from);
	if (!err)
		err = buf_printf(out, "\"created\":\"%s\",\"expires\":\"%s\",\"files\":[", created,
				 expires);
	for (size_t i = 0; !err && i < n; i++)
		err = buf_printf(out, "%s{\"name\":\"%.*s\",\"size\":%" PRIu64 "}", i ? "," : "",
				 (int)files[i].name_len, files[i].name, files[i].size);
	/* "kind" sorts between "files" and "min_agent_version"; content leaves it out */
	if (!err)
		err =
		    buf_append_str(out, m->kind == BUNDLE_SENSOR ? "],\"kind\":\"sensor\"," : "],");
	if (!err)
		err = buf_printf(out,
				 "\"min_agent_version\":\"%s\",\"name\":\"%s\",\"payload\":"
				 "{\"blake2b\":\"%s\",\"size\":%" PRIu64
				 "},\"schema_version\":%" PRIu32 ",\"type\":\"" MANIFEST_TYPE
				 "\",\"version\":%" PRIu64 "}",
				 m->min_agent_version, m->name, hash, m->payload_size,
				 m->schema_version, m->version);
	return err;
}

static const char *unknown_key(json_t *o, const char *const *allowed)
{
	for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
		const char *k = json_object_iter_key(it);
		size_t i;
		for (i = 0; allowed[i]; i++) {
			if (strcmp(k, allowed[i]) == 0)
				break;
		}
		if (!allowed[i])
			return k;
	}
	return NULL;
}

static bool json_u64(json_t *v, uint64_t min, uint64_t max, uint64_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return false;
	i = json_integer_value(v);
	if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
		return false;
	*out = (uint64_t)i;
	return true;
}

static bool json_time(json_t *v, trust_time_t *out)
{
	return json_is_string(v) &&
	       trust_time_parse(json_string_value(v), json_string_length(v), out) == 0;
}

static bool json_label(json_t *v, char *out)
{
	size_t len;

	if (!json_is_string(v))
		return false;
	len = json_string_length(v);
	if (!label_valid(json_string_value(v), len))
		return false;
	memcpy(out, json_string_value(v), len);
	out[len] = '\0';
	return true;
}

static bool hex32(json_t *v, uint8_t out[TRUST_HASH_BYTES])
{
	const char *s;

	if (!json_is_string(v) || json_string_length(v) != 2 * TRUST_HASH_BYTES)
		return false;
	s = json_string_value(v);
	for (size_t i = 0; i < 2 * TRUST_HASH_BYTES; i++) {
		int d = s[i] >= '0' && s[i] <= '9'   ? s[i] - '0'
			: s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10
						     : -1;
		if (d < 0)
			return false;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(d << 4);
		else
			out[i / 2] |= (uint8_t)d;
	}
	return true;
}

/*
 * Reads the signed manifest @text into @m and its file list into *@files (free()d by the
 * caller; names borrowed from *@json, which the caller json_decref()s after use), and checks
 * it is byte for byte the canonical encoding of what was read.
 */
static int manifest_parse(const char *text, size_t len, struct bundle_manifest *m, json_t **json,
			  struct manifest_file **files, char *err, size_t errlen)
{
	static const char *const keys[] = {"allow_downgrade_from",
					   "created",
					   "expires",
					   "files",
					   "kind",
					   "min_agent_version",
					   "name",
					   "payload",
					   "schema_version",
					   "type",
					   "version",
					   NULL};
	static const char *const payload_keys[] = {"blake2b", "size", NULL};
	static const char *const file_keys[] = {"name", "size", NULL};
	struct manifest_file *f = NULL;
	struct buf canon;
	json_error_t jerr;
	json_t *j, *v, *arr, *pl;
	const char *bad, *why;
	uint64_t u;
	size_t bytes;
	int ret = -EINVAL;

	buf_init(&canon, BUNDLE_MAX_MANIFEST_BYTES);
	memset(m, 0, sizeof(*m));
	j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		char jwhy[sizeof(jerr.text)];
		printable(jerr.text, strnlen(jerr.text, sizeof(jerr.text)), jwhy, sizeof(jwhy));
		set_err(err, errlen, "manifest: not JSON (line %d: %s)", jerr.line, jwhy);
		return -EINVAL;
	}
	if (!json_is_object(j)) {
		set_err(err, errlen, "manifest: not a JSON object");
		goto out;
	}
	if ((bad = unknown_key(j, keys))) {
		char p[80];
		printable(bad, strlen(bad), p, sizeof(p));
		set_err(err, errlen, "manifest: unknown field '%s'", p);
		goto out;
	}
	v = json_object_get(j, "type");
	if (!json_is_string(v) || strcmp(json_string_value(v), MANIFEST_TYPE) != 0) {
		set_err(err, errlen, "manifest: 'type' is not \"" MANIFEST_TYPE "\"");
		goto out;
	}
	v = json_object_get(j, "kind");
	if (v) {
		/* only "sensor": content is the field's absence, so each manifest has one form */
		if (!json_is_string(v) || strcmp(json_string_value(v), "sensor") != 0) {
			set_err(err, errlen, "manifest: 'kind' is not \"sensor\"");
			goto out;
		}
		m->kind = BUNDLE_SENSOR;
	}
	if (!json_label(json_object_get(j, "name"), m->name)) {
		set_err(err, errlen, "manifest: 'name' missing or not [A-Za-z0-9._-]{1,%u}",
			BUNDLE_MAX_LABEL_BYTES);
		goto out;
	}
	if (!json_u64(json_object_get(j, "version"), 1, BUNDLE_MAX_VERSION, &m->version)) {
		set_err(err, errlen, "manifest: 'version' missing or not an integer in 1..2^53-1");
		goto out;
	}
	if (!json_time(json_object_get(j, "created"), &m->created) ||
	    !json_time(json_object_get(j, "expires"), &m->expires)) {
		set_err(err, errlen,
			"manifest: 'created' or 'expires' missing or not YYYY-MM-DDTHH:MM:SSZ");
		goto out;
	}
	if (m->expires <= m->created) {
		set_err(err, errlen, "manifest: 'expires' is not after 'created'");
		goto out;
	}
	if (!json_u64(json_object_get(j, "schema_version"), 1, UINT32_MAX, &u)) {
		set_err(err, errlen, "manifest: 'schema_version' missing or not in 1..2^32-1");
		goto out;
	}
	m->schema_version = (uint32_t)u;
	v = json_object_get(j, "min_agent_version");
	if (!json_label(v, m->min_agent_version) ||
	    bundle_agent_version_parse(m->min_agent_version, strlen(m->min_agent_version), &u)) {
		set_err(err, errlen,
			"manifest: 'min_agent_version' missing or not MAJOR.MINOR.PATCH");
		goto out;
	}
	v = json_object_get(j, "allow_downgrade_from");
	if (v) {
		if (!json_u64(v, m->version + 1, BUNDLE_MAX_VERSION, &m->allow_downgrade_from)) {
			set_err(
			    err, errlen,
			    "manifest: 'allow_downgrade_from' is not an integer above 'version'");
			goto out;
		}
		m->has_allow_downgrade = true;
	}
	pl = json_object_get(j, "payload");
	if (!json_is_object(pl) || unknown_key(pl, payload_keys) ||
	    !hex32(json_object_get(pl, "blake2b"), m->payload_hash) ||
	    !json_u64(json_object_get(pl, "size"), 0, BUNDLE_MAX_BYTES, &m->payload_size)) {
		set_err(err, errlen,
			"manifest: 'payload' is not {\"blake2b\": 64 hex, \"size\": 0..%u}",
			BUNDLE_MAX_BYTES);
		goto out;
	}
	arr = json_object_get(j, "files");
	if (!json_is_array(arr)) {
		set_err(err, errlen, "manifest: 'files' missing or not a list");
		goto out;
	}
	if (json_array_size(arr) == 0 || json_array_size(arr) > BUNDLE_MAX_FILES) {
		set_err(err, errlen, "manifest: 'files' lists %zu files, not 1..%u",
			json_array_size(arr), BUNDLE_MAX_FILES);
		goto out;
	}
	m->n_files = (uint32_t)json_array_size(arr);
	if (size_mul(m->n_files, sizeof(*f), &bytes) || !(f = calloc(1, bytes))) {
		set_err(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < m->n_files; i++) {
		json_t *e = json_array_get(arr, i), *name = json_object_get(e, "name");
		const char *problem;
		if (!json_is_object(e) || unknown_key(e, file_keys) || !json_is_string(name) ||
		    !json_u64(json_object_get(e, "size"), 0, BUNDLE_MAX_FILE_BYTES, &f[i].size)) {
			set_err(err, errlen,
				"manifest: files[%zu] is not {\"name\": string, \"size\": 0..%u}",
				i, BUNDLE_MAX_FILE_BYTES);
			goto out;
		}
		f[i].name = json_string_value(name);
		f[i].name_len = json_string_length(name);
		if (!bundle_name_safe(f[i].name, f[i].name_len, &why)) {
			char p[80];
			printable(f[i].name, f[i].name_len, p, sizeof(p));
			set_err(err, errlen, "manifest: files[%zu]: unsafe name '%s': %s", i, p,
				why);
			goto out;
		}
		if ((problem = name_order_problem(f, i))) {
			set_err(err, errlen, "manifest: files[%zu] '%.*s': %s", i,
				(int)f[i].name_len, f[i].name, problem);
			goto out;
		}
	}
	if (m->kind == BUNDLE_SENSOR &&
	    (m->n_files != 1 || f[0].name_len != strlen(BUNDLE_SENSOR_FILE) ||
	     memcmp(f[0].name, BUNDLE_SENSOR_FILE, f[0].name_len) != 0)) {
		set_err(err, errlen,
			"manifest: a sensor build holds one file, '" BUNDLE_SENSOR_FILE "'");
		goto out;
	}
	ret = manifest_write(m, f, m->n_files, &canon);
	if (ret || canon.len != len || memcmp(canon.data, text, len) != 0) {
		set_err(err, errlen, "manifest: not in canonical form");
		ret = ret == -ENOMEM ? -ENOMEM : -EINVAL;
		goto out;
	}
	*json = j;
	*files = f;
	j = NULL;
	f = NULL;
out:
	buf_release(&canon);
	free(f);
	json_decref(j);
	return ret;
}

/* --- the payload archive --- */

/*
 * Walks the payload: u32 count, then per file u16 name length, name, u32 data length, data.
 * Every length is checked against what remains before it is used; names must be safe, sorted
 * and exactly the manifest's list @mf, with the same sizes. Fills b->files and b->names.
 */
static int payload_parse(struct bundle *b, const struct manifest_file *mf, size_t n_mf, char *err,
			 size_t errlen)
{
	const uint8_t *p = b->payload, *end = b->payload + b->payload_len;
	struct manifest_file *seen = NULL;
	size_t count, bytes, pool, used = 0;
	int ret = -EINVAL;

	if (end - p < 4) {
		set_err(err, errlen, "payload: truncated before the file count");
		return -EINVAL;
	}
	count = get_le32(p);
	p += 4;
	if (count == 0 || count > BUNDLE_MAX_FILES) {
		set_err(err, errlen, "payload: %zu files, not 1..%u", count, BUNDLE_MAX_FILES);
		return count ? -E2BIG : -EINVAL;
	}
	if (count != n_mf) {
		set_err(err, errlen, "payload: %zu files, the manifest lists %zu", count, n_mf);
		return -EINVAL;
	}
	if (size_mul(count, sizeof(*b->files), &bytes) || !(b->files = calloc(1, bytes)) ||
	    size_mul(count, sizeof(*seen), &bytes) || !(seen = calloc(1, bytes)) ||
	    size_mul(count, BUNDLE_MAX_NAME_BYTES + 1, &pool) || !(b->names = malloc(pool))) {
		set_err(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		const char *name, *why, *problem;
		size_t nlen, dlen;
		char pr[80];

		if (end - p < 2) {
			set_err(err, errlen, "payload: file %zu: truncated name length", i);
			goto out;
		}
		nlen = get_le16(p);
		p += 2;
		if (nlen == 0 || nlen > BUNDLE_MAX_NAME_BYTES) {
			set_err(err, errlen, "payload: file %zu: name length %zu not in 1..%u", i,
				nlen, BUNDLE_MAX_NAME_BYTES);
			goto out;
		}
		if ((size_t)(end - p) < nlen) {
			set_err(err, errlen, "payload: file %zu: truncated name", i);
			goto out;
		}
		name = (const char *)p;
		p += nlen;
		if (!bundle_name_safe(name, nlen, &why)) {
			printable(name, nlen, pr, sizeof(pr));
			set_err(err, errlen, "payload: file %zu: unsafe name '%s': %s", i, pr, why);
			goto out;
		}
		seen[i].name = name;
		seen[i].name_len = nlen;
		if ((problem = name_order_problem(seen, i))) {
			set_err(err, errlen, "payload: file %zu '%.*s': %s", i, (int)nlen, name,
				problem);
			goto out;
		}
		if (end - p < 4) {
			set_err(err, errlen, "payload: file %zu: truncated data length", i);
			goto out;
		}
		dlen = get_le32(p);
		p += 4;
		if (dlen > BUNDLE_MAX_FILE_BYTES) {
			set_err(err, errlen, "payload: file %zu: %zu bytes, more than %u", i, dlen,
				BUNDLE_MAX_FILE_BYTES);
			ret = -E2BIG;
			goto out;
		}
		if ((size_t)(end - p) < dlen) {
			set_err(err, errlen, "payload: file %zu: truncated data", i);
			goto out;
		}
		if (mf[i].name_len != nlen || memcmp(mf[i].name, name, nlen) != 0 ||
		    mf[i].size != dlen) {
			set_err(err, errlen,
				"payload: file %zu '%.*s' (%zu bytes) is not the manifest's '%.*s' "
				"(%" PRIu64 " bytes)",
				i, (int)nlen, name, dlen, (int)mf[i].name_len, mf[i].name,
				mf[i].size);
			goto out;
		}
		memcpy(b->names + used, name, nlen);
		b->names[used + nlen] = '\0';
		b->files[i].name = b->names + used;
		b->files[i].data = p;
		b->files[i].len = dlen;
		used += nlen + 1;
		p += dlen;
	}
	if (p != end) {
		set_err(err, errlen, "payload: %zu bytes after the last file", (size_t)(end - p));
		goto out;
	}
	b->n_files = count;
	ret = 0;
out:
	free(seen);
	return ret;
}

/* --- verification --- */

void bundle_free(struct bundle *b)
{
	if (!b)
		return;
	free(b->manifest);
	free(b->payload);
	free(b->files);
	free(b->names);
	free(b);
}

int bundle_verify(const struct trust_root *root, const void *data, size_t len,
		  const struct bundle_verify_options *opt, struct bundle **out, char *err,
		  size_t errlen)
{
	const uint8_t *d = data, *sigs;
	struct manifest_file *mf = NULL;
	struct bundle *b = NULL;
	json_t *mjson = NULL;
	uint32_t format, reserved, mlen, nsig;
	uint64_t plen, total, agent, needed;
	bool seen[TRUST_ROOT_MAX_KEYS];
	uint8_t hash[TRUST_HASH_BYTES];
	char hex[2 * TRUST_KEYID_BYTES + 1], when[21];
	trust_time_t rexp;
	int ret = -EINVAL;

	if (!root || !opt || !opt->agent_version || (!data && len)) {
		set_err(err, errlen, "bad arguments");
		return -EINVAL;
	}
	if (sodium_init() < 0) {
		set_err(err, errlen, "libsodium cannot start");
		return -EIO;
	}
	if (bundle_agent_version_parse(opt->agent_version, strlen(opt->agent_version), &agent)) {
		set_err(err, errlen, "bad agent version '%.32s'", opt->agent_version);
		return -EINVAL;
	}
	/* structure: sizes before anything is read, then the header */
	if (len == 0) {
		set_err(err, errlen, "empty file");
		return -EINVAL;
	}
	if (len > BUNDLE_MAX_BYTES) {
		set_err(err, errlen, "bundle of %zu bytes is larger than the %u byte cap", len,
			BUNDLE_MAX_BYTES);
		return -E2BIG;
	}
	if (len < BUNDLE_HEADER_BYTES) {
		set_err(err, errlen, "truncated header (%zu of %u bytes)", len,
			BUNDLE_HEADER_BYTES);
		return -EINVAL;
	}
	if (memcmp(d, BUNDLE_MAGIC, BUNDLE_MAGIC_BYTES) != 0) {
		set_err(err, errlen, "not a vigil bundle (bad magic)");
		return -EINVAL;
	}
	format = get_le32(d + 8);
	reserved = get_le32(d + 12);
	mlen = get_le32(d + 16);
	nsig = get_le32(d + 20);
	plen = get_le64(d + 24);
	if (format != BUNDLE_FORMAT_VERSION) {
		set_err(err, errlen,
			"unsupported bundle format version %" PRIu32 " (this reads %u)", format,
			BUNDLE_FORMAT_VERSION);
		return -EINVAL;
	}
	if (reserved != 0) {
		set_err(err, errlen, "reserved header field is not zero");
		return -EINVAL;
	}
	if (mlen == 0 || mlen > BUNDLE_MAX_MANIFEST_BYTES) {
		set_err(err, errlen, "manifest length %" PRIu32 " not in 1..%u", mlen,
			BUNDLE_MAX_MANIFEST_BYTES);
		return mlen ? -E2BIG : -EINVAL;
	}
	if (nsig == 0 || nsig > BUNDLE_MAX_SIGNATURES) {
		set_err(err, errlen, "signature count %" PRIu32 " not in 1..%u", nsig,
			BUNDLE_MAX_SIGNATURES);
		return nsig ? -E2BIG : -EINVAL;
	}
	if (plen > BUNDLE_MAX_BYTES) {
		set_err(err, errlen, "payload length %" PRIu64 " exceeds the %u byte cap", plen,
			BUNDLE_MAX_BYTES);
		return -E2BIG;
	}
	/* each term is capped above, so the sum cannot overflow 64 bits */
	total =
	    (uint64_t)BUNDLE_HEADER_BYTES + mlen + (uint64_t)nsig * BUNDLE_SIG_ENTRY_BYTES + plen;
	if (total != len) {
		set_err(err, errlen, "%s: header declares %" PRIu64 " bytes, file has %zu",
			total > len ? "truncated" : "trailing bytes", total, len);
		return -EINVAL;
	}
	sigs = d + BUNDLE_HEADER_BYTES + mlen;

	if (trust_root_expired(root, opt->now)) {
		trust_root_expires(root, &rexp);
		if (trust_time_format(rexp, when))
			when[0] = '\0';
		set_err(err, errlen, "trust root version %" PRIu64 " expired at %s",
			trust_root_version(root), when);
		return -EKEYEXPIRED;
	}
	/* key ids: every signature must name a content key of the root */
	for (uint32_t i = 0; i < nsig; i++) {
		const uint8_t *id = sigs + (size_t)i * BUNDLE_SIG_ENTRY_BYTES;
		if (!trust_root_find_content_key(root, id)) {
			trust_key_id_hex(id, hex);
			set_err(err, errlen, "signature %" PRIu32 " is by unknown key id %s", i,
				hex);
			return -ENOKEY;
		}
	}

	b = calloc(1, sizeof(*b));
	if (!b || !(b->manifest = malloc((size_t)mlen + 1))) {
		set_err(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out_free;
	}
	memcpy(b->manifest, d + BUNDLE_HEADER_BYTES, mlen);
	b->manifest[mlen] = '\0';
	b->manifest_len = mlen;

	/* signatures over the copy we keep; every one must hold, and enough distinct keys */
	memset(seen, 0, sizeof(seen));
	for (uint32_t i = 0; i < nsig; i++) {
		const uint8_t *e = sigs + (size_t)i * BUNDLE_SIG_ENTRY_BYTES;
		const struct trust_key *key = trust_root_find_content_key(root, e);
		size_t k = (size_t)(key - trust_root_content_key(root, 0));
		if (!trust_sig_valid(key, TRUST_CONTEXT_MANIFEST, b->manifest, b->manifest_len,
				     e + TRUST_KEYID_BYTES)) {
			trust_key_id_hex(e, hex);
			set_err(err, errlen, "bad signature %" PRIu32 " by key %s", i, hex);
			ret = -EBADMSG;
			goto out_free;
		}
		if (!seen[k]) {
			seen[k] = true;
			memcpy(b->signers[b->n_signers++], e, TRUST_KEYID_BYTES);
		}
	}
	if (b->n_signers < trust_root_content_threshold(root)) {
		set_err(
		    err, errlen,
		    "threshold not met: signed by %zu distinct content key%s, the root requires "
		    "%u",
		    b->n_signers, b->n_signers == 1 ? "" : "s", trust_root_content_threshold(root));
		ret = -EBADMSG;
		goto out_free;
	}

	/* only now the manifest is read */
	ret = manifest_parse(b->manifest, b->manifest_len, &b->m, &mjson, &mf, err, errlen);
	if (ret)
		goto out_free;
	if (opt->now >= b->m.expires) {
		if (trust_time_format(b->m.expires, when))
			when[0] = '\0';
		set_err(err, errlen, "bundle expired at %s", when);
		ret = -EKEYEXPIRED;
		goto out_free;
	}
	if (!opt->any_kind && b->m.kind != opt->kind) {
		set_err(err, errlen, "bundle is a %s release, not %s", bundle_kind_name(b->m.kind),
			opt->kind == BUNDLE_SENSOR ? "a sensor build" : "content");
		ret = -EMEDIUMTYPE;
		goto out_free;
	}
	if (b->m.kind == BUNDLE_CONTENT && b->m.schema_version > opt->schema_version) {
		set_err(err, errlen,
			"bundle needs schema version %" PRIu32 ", this agent has %" PRIu32,
			b->m.schema_version, opt->schema_version);
		ret = -ENOTSUP;
		goto out_free;
	}
	bundle_agent_version_parse(b->m.min_agent_version, strlen(b->m.min_agent_version), &needed);
	if (needed > agent) {
		set_err(err, errlen, "bundle needs agent version %s or later, this is %s",
			b->m.min_agent_version, opt->agent_version);
		ret = -ENOTSUP;
		goto out_free;
	}

	/* payload: size, then hash over the copy we keep, then the archive */
	if (b->m.payload_size != plen) {
		set_err(err, errlen, "payload is %" PRIu64 " bytes, the manifest says %" PRIu64,
			plen, b->m.payload_size);
		ret = -EINVAL;
		goto out_free;
	}
	b->payload_len = (size_t)plen;
	b->payload = malloc(b->payload_len ? b->payload_len : 1);
	if (!b->payload) {
		set_err(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out_free;
	}
	memcpy(b->payload, sigs + (size_t)nsig * BUNDLE_SIG_ENTRY_BYTES, b->payload_len);
	crypto_generichash(hash, sizeof(hash), b->payload, b->payload_len, NULL, 0);
	if (sodium_memcmp(hash, b->m.payload_hash, sizeof(hash)) != 0) {
		set_err(err, errlen, "payload hash mismatch");
		ret = -EBADMSG;
		goto out_free;
	}
	ret = payload_parse(b, mf, b->m.n_files, err, errlen);
	if (ret)
		goto out_free;
	*out = b;
	b = NULL;
out_free:
	free(mf);
	json_decref(mjson);
	bundle_free(b);
	return ret;
}

const struct bundle_manifest *bundle_manifest(const struct bundle *b)
{
	return &b->m;
}

const char *bundle_manifest_json(const struct bundle *b, size_t *len)
{
	if (len)
		*len = b->manifest_len;
	return b->manifest;
}

size_t bundle_file_count(const struct bundle *b)
{
	return b->n_files;
}

const struct bundle_file *bundle_file(const struct bundle *b, size_t i)
{
	return i < b->n_files ? &b->files[i] : NULL;
}

int bundle_rules_sources(const struct bundle *b, struct rules_source **out)
{
	struct rules_source *src;
	size_t bytes;

	if (size_mul(b->n_files ? b->n_files : 1, sizeof(*src), &bytes))
		return -ENOMEM;
	src = malloc(bytes);
	if (!src)
		return -ENOMEM;
	for (size_t i = 0; i < b->n_files; i++) {
		src[i].name = b->files[i].name;
		src[i].data = (const char *)b->files[i].data;
		src[i].len = b->files[i].len;
	}
	*out = src;
	return 0;
}

size_t bundle_signer_count(const struct bundle *b)
{
	return b->n_signers;
}

const uint8_t *bundle_signer(const struct bundle *b, size_t i)
{
	return i < b->n_signers ? b->signers[i] : NULL;
}

/* --- building --- */

static int file_cmp(const void *a, const void *b)
{
	const struct manifest_file *x = a, *y = b;

	return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

int bundle_build(const struct bundle_params *p, const struct bundle_file *files, size_t n,
		 const struct trust_secret *keys, size_t n_keys, struct buf *out, char *err,
		 size_t errlen)
{
	struct bundle_manifest m;
	struct manifest_file *mf = NULL;
	const struct bundle_file **order = NULL;
	struct buf manifest, payload;
	uint8_t hdr[BUNDLE_HEADER_BYTES], le[4];
	char hex[2 * TRUST_KEYID_BYTES + 1];
	size_t bytes;
	uint64_t u;
	int ret = -EINVAL;

	buf_init(&manifest, BUNDLE_MAX_MANIFEST_BYTES);
	buf_init(&payload, BUNDLE_MAX_BYTES);
	memset(&m, 0, sizeof(m));
	if (sodium_init() < 0) {
		set_err(err, errlen, "libsodium cannot start");
		return -EIO;
	}
	if (!p->name || !label_valid(p->name, strlen(p->name))) {
		set_err(err, errlen, "bundle name must be [A-Za-z0-9._-]{1,%u}",
			BUNDLE_MAX_LABEL_BYTES);
		return -EINVAL;
	}
	if (p->version < 1 || p->version > BUNDLE_MAX_VERSION) {
		set_err(err, errlen, "version must be in 1..2^53-1");
		return -EINVAL;
	}
	if (!p->min_agent_version || strlen(p->min_agent_version) > BUNDLE_MAX_LABEL_BYTES ||
	    bundle_agent_version_parse(p->min_agent_version, strlen(p->min_agent_version), &u)) {
		set_err(err, errlen, "minimum agent version must be MAJOR.MINOR.PATCH");
		return -EINVAL;
	}
	if (p->expires <= p->created) {
		set_err(err, errlen, "expiry must be after the creation time");
		return -EINVAL;
	}
	if (p->schema_version < 1) {
		set_err(err, errlen, "schema version must be at least 1");
		return -EINVAL;
	}
	if (p->has_allow_downgrade && (p->allow_downgrade_from <= p->version ||
				       p->allow_downgrade_from > BUNDLE_MAX_VERSION)) {
		set_err(err, errlen, "a downgrade instruction must name a version above %" PRIu64,
			p->version);
		return -EINVAL;
	}
	if (n == 0 || n > BUNDLE_MAX_FILES) {
		set_err(err, errlen, "a bundle holds 1..%u files, not %zu", BUNDLE_MAX_FILES, n);
		return n ? -E2BIG : -EINVAL;
	}
	if (p->kind == BUNDLE_SENSOR && (n != 1 || strcmp(files[0].name, BUNDLE_SENSOR_FILE))) {
		set_err(err, errlen, "a sensor build holds one file, '" BUNDLE_SENSOR_FILE "'");
		return -EINVAL;
	}
	if (n_keys == 0 || n_keys > BUNDLE_MAX_SIGNATURES) {
		set_err(err, errlen, "a bundle is signed by 1..%u keys", BUNDLE_MAX_SIGNATURES);
		return -EINVAL;
	}
	for (size_t i = 0; i < n_keys; i++) {
		for (size_t j = 0; j < i; j++) {
			if (memcmp(keys[i].id, keys[j].id, TRUST_KEYID_BYTES) == 0) {
				trust_key_id_hex(keys[i].id, hex);
				set_err(err, errlen, "key %s given twice", hex);
				return -EINVAL;
			}
		}
	}
	if (size_mul(n, sizeof(*mf), &bytes) || !(mf = malloc(bytes)) ||
	    size_mul(n, sizeof(*order), &bytes) || !(order = malloc(bytes))) {
		set_err(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *why;
		if (!bundle_name_safe(files[i].name, strlen(files[i].name), &why)) {
			char pr[80];
			printable(files[i].name, strlen(files[i].name), pr, sizeof(pr));
			set_err(err, errlen, "file name '%s': %s", pr, why);
			goto out;
		}
		if (files[i].len > BUNDLE_MAX_FILE_BYTES) {
			set_err(err, errlen, "%s: %zu bytes, more than %u", files[i].name,
				files[i].len, BUNDLE_MAX_FILE_BYTES);
			ret = -E2BIG;
			goto out;
		}
		mf[i].name = files[i].name;
		mf[i].name_len = strlen(files[i].name);
		mf[i].size = files[i].len;
		mf[i].index = i;
	}
	/* sort the names (with the file each belongs to) into archive order */
	qsort(mf, n, sizeof(*mf), file_cmp);
	for (size_t i = 0; i < n; i++) {
		const char *problem = name_order_problem(mf, i);
		if (problem) {
			set_err(err, errlen, "file name '%s': %s", mf[i].name,
				strcmp(problem, "a directory of it is also a file") == 0
				    ? problem
				    : "given twice");
			goto out;
		}
		order[i] = &files[mf[i].index];
	}

	/* payload: u32 count, then (u16 name length, name, u32 data length, data) per file */
	put_le32(le, (uint32_t)n);
	ret = buf_append(&payload, le, 4);
	for (size_t i = 0; !ret && i < n; i++) {
		uint8_t nl[2];
		put_le16(nl, (uint16_t)mf[i].name_len);
		put_le32(le, (uint32_t)order[i]->len);
		ret = buf_append(&payload, nl, 2);
		if (!ret)
			ret = buf_append(&payload, mf[i].name, mf[i].name_len);
		if (!ret)
			ret = buf_append(&payload, le, 4);
		if (!ret)
			ret = buf_append(&payload, order[i]->data, order[i]->len);
	}
	if (ret) {
		set_err(err, errlen, "payload larger than %u bytes", BUNDLE_MAX_BYTES);
		goto out;
	}

	snprintf(m.name, sizeof(m.name), "%s", p->name);
	snprintf(m.min_agent_version, sizeof(m.min_agent_version), "%s", p->min_agent_version);
	m.version = p->version;
	m.created = p->created;
	m.expires = p->expires;
	m.schema_version = p->schema_version;
	m.kind = p->kind;
	m.has_allow_downgrade = p->has_allow_downgrade;
	m.allow_downgrade_from = p->allow_downgrade_from;
	m.payload_size = payload.len;
	m.n_files = (uint32_t)n;
	crypto_generichash(m.payload_hash, TRUST_HASH_BYTES, (const uint8_t *)payload.data,
			   payload.len, NULL, 0);
	ret = manifest_write(&m, mf, n, &manifest);
	if (ret) {
		if (ret == -E2BIG)
			set_err(err, errlen, "manifest larger than %u bytes",
				BUNDLE_MAX_MANIFEST_BYTES);
		else
			set_err(err, errlen, "cannot write the manifest: %s", strerror(-ret));
		goto out;
	}

	memcpy(hdr, BUNDLE_MAGIC, BUNDLE_MAGIC_BYTES);
	put_le32(hdr + 8, BUNDLE_FORMAT_VERSION);
	put_le32(hdr + 12, 0);
	put_le32(hdr + 16, (uint32_t)manifest.len);
	put_le32(hdr + 20, (uint32_t)n_keys);
	put_le64(hdr + 24, payload.len);
	ret = buf_append(out, hdr, sizeof(hdr));
	if (!ret)
		ret = buf_append(out, manifest.data, manifest.len);
	for (size_t i = 0; !ret && i < n_keys; i++) {
		uint8_t sig[TRUST_SIG_BYTES];
		trust_sign(&keys[i], TRUST_CONTEXT_MANIFEST, manifest.data, manifest.len, sig);
		ret = buf_append(out, keys[i].id, TRUST_KEYID_BYTES);
		if (!ret)
			ret = buf_append(out, sig, TRUST_SIG_BYTES);
	}
	if (!ret)
		ret = buf_append(out, payload.data, payload.len);
	if (ret)
		set_err(err, errlen,
			ret == -E2BIG ? "bundle larger than its cap" : "out of memory");
	else if (out->len > BUNDLE_MAX_BYTES) {
		set_err(err, errlen, "bundle of %zu bytes is larger than the %u byte cap", out->len,
			BUNDLE_MAX_BYTES);
		ret = -E2BIG;
	}
out:
	buf_release(&manifest);
	buf_release(&payload);
	free(order);
	free(mf);
	return ret;
}
