/*
 * Ed25519 keys, key files and the signed root of trust (root.json), after signify: fixed
 * binary layouts, key ids checked before signatures, signatures checked before content is used.
 */
#include "trust.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_ALG	       "Ed"
#define COMMENT_PREFIX "untrusted comment: "
#define ROOT_TYPE      "vigil-root"
/* Versions stay exact in every JSON reader (2^53 - 1). */
#define TRUST_VERSION_MAX 9007199254740991ull
/* The longest duration accepted: 100 years. */
#define TRUST_DURATION_MAX ((trust_time_t)100 * 366 * 86400)

struct trust_root {
	uint64_t version;
	bool has_expires;
	trust_time_t expires;
	struct trust_key root_keys[TRUST_ROOT_MAX_KEYS];
	size_t n_root;
	unsigned root_threshold;
	struct trust_key content_keys[TRUST_ROOT_MAX_KEYS];
	size_t n_content;
	unsigned content_threshold;
	uint8_t digest[TRUST_HASH_BYTES];
};

struct sig_entry {
	uint8_t id[TRUST_KEYID_BYTES];
	uint8_t sig[TRUST_SIG_BYTES];
};

/* A root document read as far as its structure: the signed part and the signature list. */
struct root_doc {
	json_t *json;
	json_t *signed_part; /* borrowed from json */
	char *canon;	     /* canonical bytes of signed_part (json_dumps, free()) */
	size_t canon_len;
	struct sig_entry sigs[TRUST_ROOT_MAX_SIGNATURES];
	size_t n_sigs;
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

/* A printable, bounded copy of untrusted text for a one-line message. */
static const char *printable(const char *in, char *out, size_t outlen)
{
	size_t j = 0;

	for (; *in && j + 1 < outlen; in++)
		out[j++] = (unsigned char)*in < 0x20 || (unsigned char)*in >= 0x7f ? '?' : *in;
	out[j] = '\0';
	return out;
}

static int sodium_ready(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

/* --- keys --- */

void trust_key_id(const uint8_t pk[TRUST_PUBLIC_BYTES], uint8_t id[TRUST_KEYID_BYTES])
{
	uint8_t h[TRUST_HASH_BYTES];

	crypto_generichash(h, sizeof(h), pk, TRUST_PUBLIC_BYTES, NULL, 0);
	memcpy(id, h, TRUST_KEYID_BYTES);
}

bool trust_hash_hex_ok(const char *s, size_t len)
{
	if (len != 2 * TRUST_HASH_BYTES)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

void trust_key_id_hex(const uint8_t id[TRUST_KEYID_BYTES], char out[2 * TRUST_KEYID_BYTES + 1])
{
	sodium_bin2hex(out, 2 * TRUST_KEYID_BYTES + 1, id, TRUST_KEYID_BYTES);
}

int trust_keygen(struct trust_key *pub, struct trust_secret *sec)
{
	int err = sodium_ready();

	if (err)
		return err;
	if (crypto_sign_keypair(pub->pk, sec->sk) != 0)
		return -EIO;
	trust_key_id(pub->pk, pub->id);
	memcpy(sec->id, pub->id, TRUST_KEYID_BYTES);
	return 0;
}

void trust_secret_wipe(struct trust_secret *sec)
{
	if (sec)
		sodium_memzero(sec, sizeof(*sec));
}

void trust_secret_public(const struct trust_secret *sec, struct trust_key *pub)
{
	memcpy(pub->pk, sec->sk + 32, TRUST_PUBLIC_BYTES);
	memcpy(pub->id, sec->id, TRUST_KEYID_BYTES);
}

static void secret_checksum(const uint8_t sk[TRUST_SECRET_BYTES], uint8_t sum[8])
{
	uint8_t h[TRUST_HASH_BYTES];

	crypto_generichash(h, sizeof(h), sk, TRUST_SECRET_BYTES, NULL, 0);
	memcpy(sum, h, 8);
	sodium_memzero(h, sizeof(h));
}

/* "untrusted comment: COMMENT\nBASE64(bin)\n" into @out; returns its length or -ENOSPC. */
static int keyfile_encode(const char *comment, const uint8_t *bin, size_t binlen, char *out,
			  size_t outlen)
{
	size_t b64len = sodium_base64_encoded_len(binlen, sodium_base64_VARIANT_ORIGINAL);
	int n = snprintf(out, outlen, "%s%s\n", COMMENT_PREFIX, comment);

	if (n < 0 || (size_t)n >= outlen || outlen - (size_t)n < b64len + 1)
		return -ENOSPC;
	sodium_bin2base64(out + n, b64len, bin, binlen, sodium_base64_VARIANT_ORIGINAL);
	n += (int)(b64len - 1);
	out[n++] = '\n';
	out[n] = '\0';
	return n;
}

int trust_public_encode(const struct trust_key *pub, char *out, size_t outlen)
{
	uint8_t bin[TRUST_PUBFILE_BYTES];
	char comment[64], idhex[2 * TRUST_KEYID_BYTES + 1];

	memcpy(bin, KEY_ALG, 2);
	memcpy(bin + 2, pub->id, TRUST_KEYID_BYTES);
	memcpy(bin + 2 + TRUST_KEYID_BYTES, pub->pk, TRUST_PUBLIC_BYTES);
	trust_key_id_hex(pub->id, idhex);
	snprintf(comment, sizeof(comment), "vigil public key %s", idhex);
	return keyfile_encode(comment, bin, sizeof(bin), out, outlen);
}

int trust_secret_encode(const struct trust_secret *sec, char *out, size_t outlen)
{
	uint8_t bin[TRUST_SECFILE_BYTES];
	char comment[64], idhex[2 * TRUST_KEYID_BYTES + 1];
	int n;

	memcpy(bin, KEY_ALG, 2);
	memcpy(bin + 2, sec->id, TRUST_KEYID_BYTES);
	secret_checksum(sec->sk, bin + 2 + TRUST_KEYID_BYTES);
	memcpy(bin + 2 + TRUST_KEYID_BYTES + 8, sec->sk, TRUST_SECRET_BYTES);
	trust_key_id_hex(sec->id, idhex);
	snprintf(comment, sizeof(comment), "vigil secret key %s", idhex);
	n = keyfile_encode(comment, bin, sizeof(bin), out, outlen);
	sodium_memzero(bin, sizeof(bin));
	return n;
}

/*
 * Splits a key file into its comment line and base64 line and decodes the latter into exactly
 * @binlen bytes of @bin. The file is two lines; the final newline is optional.
 */
static int keyfile_decode(const char *data, size_t len, const char *what, uint8_t *bin,
			  size_t binlen, char *err, size_t errlen)
{
	const char *nl, *b64, *end = data + len;
	size_t got = 0, b64len;
	const char *b64end = NULL;

	if (len > TRUST_KEYFILE_MAX_BYTES) {
		set_err(err, errlen, "%s file larger than %u bytes", what, TRUST_KEYFILE_MAX_BYTES);
		return -EINVAL;
	}
	if (len < sizeof(COMMENT_PREFIX) - 1 ||
	    memcmp(data, COMMENT_PREFIX, sizeof(COMMENT_PREFIX) - 1) != 0) {
		set_err(err, errlen, "not a vigil %s file (no 'untrusted comment:' line)", what);
		return -EINVAL;
	}
	nl = memchr(data, '\n', len);
	if (!nl) {
		set_err(err, errlen, "%s file has no key line", what);
		return -EINVAL;
	}
	for (const char *p = data; p < nl; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e) {
			set_err(err, errlen,
				"%s file: comment line holds a control or non-ASCII byte", what);
			return -EINVAL;
		}
	}
	b64 = nl + 1;
	b64len = (size_t)(end - b64);
	if (b64len && b64[b64len - 1] == '\n')
		b64len--;
	if (memchr(b64, '\n', b64len)) {
		set_err(err, errlen, "%s file has more than two lines", what);
		return -EINVAL;
	}
	if (sodium_base642bin(bin, binlen, b64, b64len, NULL, &got, &b64end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    b64end != b64 + b64len || got != binlen) {
		set_err(err, errlen, "%s file: key line is not base64 of %zu bytes", what, binlen);
		return -EINVAL;
	}
	if (memcmp(bin, KEY_ALG, 2) != 0) {
		set_err(err, errlen, "%s file: unsupported algorithm (want Ed25519)", what);
		return -EINVAL;
	}
	return 0;
}

int trust_public_decode(const char *data, size_t len, struct trust_key *out, char *err,
			size_t errlen)
{
	uint8_t bin[TRUST_PUBFILE_BYTES], id[TRUST_KEYID_BYTES];
	int ret;

	memset(out, 0, sizeof(*out));
	ret = keyfile_decode(data, len, "public key", bin, sizeof(bin), err, errlen);
	if (ret)
		return ret;
	trust_key_id(bin + 2 + TRUST_KEYID_BYTES, id);
	if (memcmp(id, bin + 2, TRUST_KEYID_BYTES) != 0) {
		set_err(err, errlen, "public key file: key id does not match the key");
		return -EINVAL;
	}
	memcpy(out->id, id, TRUST_KEYID_BYTES);
	memcpy(out->pk, bin + 2 + TRUST_KEYID_BYTES, TRUST_PUBLIC_BYTES);
	return 0;
}

int trust_secret_decode(const char *data, size_t len, struct trust_secret *out, char *err,
			size_t errlen)
{
	uint8_t bin[TRUST_SECFILE_BYTES], sum[8], id[TRUST_KEYID_BYTES];
	uint8_t pk[TRUST_PUBLIC_BYTES], sk[TRUST_SECRET_BYTES];
	const uint8_t *fsk = bin + 2 + TRUST_KEYID_BYTES + 8;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = sodium_ready();
	if (ret) {
		set_err(err, errlen, "libsodium cannot start");
		return ret;
	}
	ret = keyfile_decode(data, len, "secret key", bin, sizeof(bin), err, errlen);
	if (ret)
		goto out_wipe;
	secret_checksum(fsk, sum);
	if (sodium_memcmp(sum, bin + 2 + TRUST_KEYID_BYTES, sizeof(sum)) != 0) {
		set_err(err, errlen, "secret key file: checksum mismatch (corrupt key)");
		ret = -EINVAL;
		goto out_wipe;
	}
	/* the stored public half must be the one the seed yields, and carry the stored id */
	crypto_sign_seed_keypair(pk, sk, fsk);
	trust_key_id(pk, id);
	if (memcmp(pk, fsk + 32, TRUST_PUBLIC_BYTES) != 0 ||
	    memcmp(id, bin + 2, TRUST_KEYID_BYTES) != 0) {
		set_err(err, errlen,
			"secret key file: key id or public half does not match the key");
		ret = -EINVAL;
		goto out_wipe;
	}
	memcpy(out->id, id, TRUST_KEYID_BYTES);
	memcpy(out->sk, fsk, TRUST_SECRET_BYTES);
out_wipe:
	sodium_memzero(bin, sizeof(bin));
	sodium_memzero(sk, sizeof(sk));
	return ret;
}

/* --- signatures --- */

void trust_digest(const char *context, const void *msg, size_t len,
		  uint8_t digest[TRUST_HASH_BYTES])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, TRUST_HASH_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)context, strlen(context) + 1);
	crypto_generichash_update(&st, msg, len);
	crypto_generichash_final(&st, digest, TRUST_HASH_BYTES);
}

void trust_sign(const struct trust_secret *sec, const char *context, const void *msg, size_t len,
		uint8_t sig[TRUST_SIG_BYTES])
{
	uint8_t digest[TRUST_HASH_BYTES];

	trust_digest(context, msg, len, digest);
	crypto_sign_detached(sig, NULL, digest, sizeof(digest), sec->sk);
}

bool trust_sig_valid(const struct trust_key *key, const char *context, const void *msg, size_t len,
		     const uint8_t sig[TRUST_SIG_BYTES])
{
	uint8_t digest[TRUST_HASH_BYTES];

	if (sodium_ready())
		return false;
	trust_digest(context, msg, len, digest);
	return crypto_sign_verify_detached(sig, digest, sizeof(digest), key->pk) == 0;
}

/* --- time --- */

int trust_time_format(trust_time_t t, char out[21])
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (t < 0 || !gmtime_r(&tt, &tm) || tm.tm_year + 1900 > 9999)
		return -EINVAL;
	if (strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) != 20)
		return -EINVAL;
	return 0;
}

static int digits(const char *s, size_t n, int *out)
{
	int v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int trust_time_parse(const char *s, size_t len, trust_time_t *out)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, se;
	struct tm tm;
	time_t t;

	if (len != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':' || s[19] != 'Z')
		return -EINVAL;
	if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
	    digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
		return -EINVAL;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    se > 59)
		return -EINVAL;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return -EINVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = (trust_time_t)t;
	return 0;
}

int trust_duration_parse(const char *s, trust_time_t *out)
{
	trust_time_t v = 0, unit;
	size_t i = 0;

	if (!s)
		return -EINVAL;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		v = v * 10 + (s[i] - '0');
		if (v > TRUST_DURATION_MAX)
			return -EINVAL;
	}
	if (i == 0 || s[i] == '\0' || s[i + 1] != '\0')
		return -EINVAL;
	switch (s[i]) {
	case 's':
		unit = 1;
		break;
	case 'm':
		unit = 60;
		break;
	case 'h':
		unit = 3600;
		break;
	case 'd':
		unit = 86400;
		break;
	case 'w':
		unit = 7 * 86400;
		break;
	default:
		return -EINVAL;
	}
	if (v == 0 || v > TRUST_DURATION_MAX / unit)
		return -EINVAL;
	*out = v * unit;
	return 0;
}

/* --- files --- */

int trust_file_read(const char *path, size_t max, struct buf *out)
{
	struct stat st;
	size_t size;
	char extra;
	int fd, err = 0;

	buf_reset(out);
	/* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		err = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		err = -EINVAL;
		goto out_close;
	}
	if ((unsigned long long)st.st_size > max) {
		err = -E2BIG;
		goto out_close;
	}
	size = (size_t)st.st_size;
	err = buf_reserve(out, size);
	if (err)
		goto out_close;
	while (out->len < size) {
		ssize_t n = read(fd, out->data + out->len, size - out->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			goto out_close;
		}
		if (n == 0) {
			err = -EBUSY; /* shrank while read */
			goto out_close;
		}
		out->len += (size_t)n;
	}
	out->data[out->len] = '\0';
	for (;;) {
		ssize_t n = read(fd, &extra, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != 0)
			err = n < 0 ? -errno : -EBUSY;
		break;
	}
out_close:
	close(fd);
	return err;
}

int trust_file_write(const char *path, const void *data, size_t len, unsigned mode, bool exclusive)
{
	char tmp[4096];
	const char *target = path;
	int fd, err, n;

	if (!exclusive) {
		n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
		if (n < 0 || (size_t)n >= sizeof(tmp))
			return -ENAMETOOLONG;
		target = tmp;
	}
	fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
	if (fd < 0)
		return -errno;
	err = fd_write_all(fd, data, len);
	if (!err && fchmod(fd, (mode_t)mode) < 0)
		err = -errno;
	if (!err && fsync(fd) < 0)
		err = -errno;
	if (close(fd) < 0 && !err)
		err = -errno;
	if (!err && !exclusive && rename(tmp, path) < 0)
		err = -errno;
	if (err)
		unlink(target);
	return err;
}

static const char *read_error(int err, const char *what)
{
	if (err == -E2BIG)
		return what;
	if (err == -ELOOP)
		return "a symbolic link (not followed)";
	if (err == -EINVAL)
		return "not a regular file";
	return strerror(-err);
}

int trust_secret_load(const char *path, struct trust_secret *out, char *err, size_t errlen)
{
	struct buf b;
	int ret;

	memset(out, 0, sizeof(*out));
	buf_init(&b, TRUST_KEYFILE_MAX_BYTES);
	ret = trust_file_read(path, TRUST_KEYFILE_MAX_BYTES, &b);
	if (ret)
		set_err(err, errlen, "%s", read_error(ret, "larger than a key file can be"));
	else
		ret = trust_secret_decode(b.data, b.len, out, err, errlen);
	if (b.data)
		sodium_memzero(b.data, b.cap);
	buf_release(&b);
	return ret;
}

int trust_public_load(const char *path, struct trust_key *out, char *err, size_t errlen)
{
	struct buf b;
	int ret;

	memset(out, 0, sizeof(*out));
	buf_init(&b, TRUST_KEYFILE_MAX_BYTES);
	ret = trust_file_read(path, TRUST_KEYFILE_MAX_BYTES, &b);
	if (ret)
		set_err(err, errlen, "%s", read_error(ret, "larger than a key file can be"));
	else
		ret = trust_public_decode(b.data, b.len, out, err, errlen);
	buf_release(&b);
	return ret;
}

/* --- root documents --- */

/* Lowercase hex of exactly @n bytes. */
static bool hex_decode(const char *s, size_t len, uint8_t *out, size_t n)
{
	if (len != 2 * n)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		int v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else
			return false;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return true;
}

static bool json_hex(json_t *v, uint8_t *out, size_t n)
{
	return json_is_string(v) && hex_decode(json_string_value(v), json_string_length(v), out, n);
}

/* The first key of object @o that is not one of the NULL-terminated @allowed, or NULL. */
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

static void root_doc_release(struct root_doc *d)
{
	json_decref(d->json);
	free(d->canon);
	memset(d, 0, sizeof(*d));
}

/*
 * Structure of a root document: bounded size, JSON without duplicate keys, exactly
 * {"signatures": [{"keyid", "sig"}...], "signed": {...}}. Nothing in "signed" is read here;
 * its canonical form (compact, keys sorted) is what signatures are over.
 */
static int root_doc_load(const void *data, size_t len, struct root_doc *d, char *err, size_t errlen)
{
	static const char *const top_keys[] = {"signatures", "signed", NULL};
	static const char *const sig_keys[] = {"keyid", "sig", NULL};
	json_error_t jerr;
	json_t *sigs;
	const char *bad;
	size_t i;

	memset(d, 0, sizeof(*d));
	if (len > TRUST_ROOT_MAX_BYTES) {
		set_err(err, errlen, "root larger than %u bytes", TRUST_ROOT_MAX_BYTES);
		return -E2BIG;
	}
	d->json = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!d->json) {
		/* the parser quotes input; keep the reason on one printable line */
		char why[sizeof(jerr.text)];
		set_err(err, errlen, "root: not JSON (line %d: %s)", jerr.line,
			printable(jerr.text, why, sizeof(why)));
		return -EINVAL;
	}
	if (!json_is_object(d->json)) {
		set_err(err, errlen, "root: not a JSON object");
		goto out_inval;
	}
	if ((bad = unknown_key(d->json, top_keys))) {
		char p[65];
		set_err(err, errlen, "root: unknown key '%s'", printable(bad, p, sizeof(p)));
		goto out_inval;
	}
	d->signed_part = json_object_get(d->json, "signed");
	sigs = json_object_get(d->json, "signatures");
	if (!json_is_object(d->signed_part)) {
		set_err(err, errlen, "root: 'signed' missing or not an object");
		goto out_inval;
	}
	if (!json_is_array(sigs) || json_array_size(sigs) == 0) {
		set_err(err, errlen, "root: 'signatures' missing, empty or not a list");
		goto out_inval;
	}
	if (json_array_size(sigs) > TRUST_ROOT_MAX_SIGNATURES) {
		set_err(err, errlen, "root: more than %u signatures", TRUST_ROOT_MAX_SIGNATURES);
		goto out_inval;
	}
	for (i = 0; i < json_array_size(sigs); i++) {
		json_t *s = json_array_get(sigs, i);
		if (!json_is_object(s) || unknown_key(s, sig_keys) ||
		    !json_hex(json_object_get(s, "keyid"), d->sigs[i].id, TRUST_KEYID_BYTES) ||
		    !json_hex(json_object_get(s, "sig"), d->sigs[i].sig, TRUST_SIG_BYTES)) {
			set_err(err, errlen,
				"root: signature %zu is not {\"keyid\": 16 hex, \"sig\": 128 hex}",
				i);
			goto out_inval;
		}
	}
	d->n_sigs = i;
	d->canon = json_dumps(d->signed_part, JSON_COMPACT | JSON_SORT_KEYS);
	if (!d->canon) {
		set_err(err, errlen, "out of memory");
		root_doc_release(d);
		return -ENOMEM;
	}
	d->canon_len = strlen(d->canon);
	return 0;
out_inval:
	root_doc_release(d);
	return -EINVAL;
}

static const struct trust_key *find_key(const struct trust_key *keys, size_t n,
					const uint8_t id[TRUST_KEYID_BYTES], size_t *index)
{
	for (size_t i = 0; i < n; i++) {
		if (memcmp(keys[i].id, id, TRUST_KEYID_BYTES) == 0) {
			if (index)
				*index = i;
			return &keys[i];
		}
	}
	return NULL;
}

/*
 * Checks that the signatures in @d made by @keys are all valid and come from at least
 * @threshold distinct keys. Signatures by other keys are not looked at (a rotated root also
 * carries its predecessor's signatures). -EBADMSG with a reason on failure.
 */
static int root_doc_check_sigs(const struct root_doc *d, const struct trust_key *keys, size_t n,
			       unsigned threshold, const char *whose, char *err, size_t errlen)
{
	bool seen[TRUST_ROOT_MAX_KEYS] = {false};
	unsigned distinct = 0;
	char idhex[2 * TRUST_KEYID_BYTES + 1];

	for (size_t i = 0; i < d->n_sigs; i++) {
		size_t k;
		const struct trust_key *key = find_key(keys, n, d->sigs[i].id, &k);
		if (!key)
			continue;
		if (!trust_sig_valid(key, TRUST_CONTEXT_ROOT, d->canon, d->canon_len,
				     d->sigs[i].sig)) {
			trust_key_id_hex(d->sigs[i].id, idhex);
			set_err(err, errlen, "root: bad signature by %s root key %s", whose, idhex);
			return -EBADMSG;
		}
		if (!seen[k]) {
			seen[k] = true;
			distinct++;
		}
	}
	if (distinct < threshold) {
		set_err(err, errlen, "root: signed by %u distinct %s root key%s, %u required",
			distinct, whose, distinct == 1 ? "" : "s", threshold);
		return -EBADMSG;
	}
	return 0;
}

static int parse_u64(json_t *v, uint64_t min, uint64_t max, uint64_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return -EINVAL;
	i = json_integer_value(v);
	if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
		return -EINVAL;
	*out = (uint64_t)i;
	return 0;
}

static int parse_keys(json_t *arr, const char *role, struct trust_key *keys, size_t *n, char *err,
		      size_t errlen)
{
	static const char *const key_keys[] = {"keyid", "public", NULL};
	uint8_t id[TRUST_KEYID_BYTES];
	size_t i;

	if (!json_is_array(arr) || json_array_size(arr) == 0) {
		set_err(err, errlen, "root: '%s' missing, empty or not a list", role);
		return -EINVAL;
	}
	if (json_array_size(arr) > TRUST_ROOT_MAX_KEYS) {
		set_err(err, errlen, "root: more than %u %s", TRUST_ROOT_MAX_KEYS, role);
		return -EINVAL;
	}
	for (i = 0; i < json_array_size(arr); i++) {
		json_t *k = json_array_get(arr, i);
		if (!json_is_object(k) || unknown_key(k, key_keys) ||
		    !json_hex(json_object_get(k, "keyid"), keys[i].id, TRUST_KEYID_BYTES) ||
		    !json_hex(json_object_get(k, "public"), keys[i].pk, TRUST_PUBLIC_BYTES)) {
			set_err(err, errlen,
				"root: %s[%zu] is not {\"keyid\": 16 hex, \"public\": 64 hex}",
				role, i);
			return -EINVAL;
		}
		trust_key_id(keys[i].pk, id);
		if (memcmp(id, keys[i].id, TRUST_KEYID_BYTES) != 0) {
			set_err(err, errlen, "root: %s[%zu]: key id does not match the key", role,
				i);
			return -EINVAL;
		}
		if (find_key(keys, i, id, NULL)) {
			set_err(err, errlen, "root: %s[%zu]: key listed twice", role, i);
			return -EINVAL;
		}
	}
	*n = i;
	return 0;
}

/* The content of a root's signed part, checked for every rule docs/bundles.md states. */
static int root_parse_signed(json_t *s, struct trust_root *r, char *err, size_t errlen)
{
	static const char *const keys[] = {
	    "type",	      "version",      "expires",	   "root_keys",
	    "root_threshold", "content_keys", "content_threshold", NULL};
	json_t *type = json_object_get(s, "type"), *exp = json_object_get(s, "expires");
	const char *bad;
	uint64_t v;
	int ret;

	if ((bad = unknown_key(s, keys))) {
		char p[65];
		set_err(err, errlen, "root: unknown field '%s'", printable(bad, p, sizeof(p)));
		return -EINVAL;
	}
	if (!json_is_string(type) || strcmp(json_string_value(type), ROOT_TYPE) != 0) {
		set_err(err, errlen, "root: 'type' is not \"%s\"", ROOT_TYPE);
		return -EINVAL;
	}
	if (parse_u64(json_object_get(s, "version"), 1, TRUST_VERSION_MAX, &r->version)) {
		set_err(err, errlen, "root: 'version' missing or not an integer in 1..2^53-1");
		return -EINVAL;
	}
	if (exp) {
		if (!json_is_string(exp) ||
		    trust_time_parse(json_string_value(exp), json_string_length(exp),
				     &r->expires)) {
			set_err(err, errlen, "root: 'expires' is not YYYY-MM-DDTHH:MM:SSZ");
			return -EINVAL;
		}
		r->has_expires = true;
	}
	ret = parse_keys(json_object_get(s, "root_keys"), "root_keys", r->root_keys, &r->n_root,
			 err, errlen);
	if (ret)
		return ret;
	ret = parse_keys(json_object_get(s, "content_keys"), "content_keys", r->content_keys,
			 &r->n_content, err, errlen);
	if (ret)
		return ret;
	for (size_t i = 0; i < r->n_content; i++) {
		if (find_key(r->root_keys, r->n_root, r->content_keys[i].id, NULL)) {
			set_err(err, errlen,
				"root: content_keys[%zu] is also a root key (roles must differ)",
				i);
			return -EINVAL;
		}
	}
	if (parse_u64(json_object_get(s, "root_threshold"), 1, r->n_root, &v)) {
		set_err(err, errlen, "root: 'root_threshold' missing or not in 1..%zu", r->n_root);
		return -EINVAL;
	}
	r->root_threshold = (unsigned)v;
	if (parse_u64(json_object_get(s, "content_threshold"), 1, r->n_content, &v)) {
		set_err(err, errlen, "root: 'content_threshold' missing or not in 1..%zu",
			r->n_content);
		return -EINVAL;
	}
	r->content_threshold = (unsigned)v;
	return 0;
}

int trust_root_parse(const void *data, size_t len, struct trust_root **out, char *err,
		     size_t errlen)
{
	struct root_doc d;
	struct trust_root *r;
	int ret;

	ret = sodium_ready();
	if (ret) {
		set_err(err, errlen, "libsodium cannot start");
		return ret;
	}
	ret = root_doc_load(data, len, &d, err, errlen);
	if (ret)
		return ret;
	r = calloc(1, sizeof(*r));
	if (!r) {
		set_err(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out_doc;
	}
	/* a pinned root vouches for itself: its keys must be read before its signatures */
	ret = root_parse_signed(d.signed_part, r, err, errlen);
	if (ret)
		goto out_free;
	ret = root_doc_check_sigs(&d, r->root_keys, r->n_root, r->root_threshold, "its own", err,
				  errlen);
	if (ret)
		goto out_free;
	trust_digest(TRUST_CONTEXT_ROOT, d.canon, d.canon_len, r->digest);
	*out = r;
	r = NULL;
out_free:
	free(r);
out_doc:
	root_doc_release(&d);
	return ret;
}

int trust_root_update(const struct trust_root *current, const void *candidate, size_t len,
		      trust_time_t now, struct trust_root **out, char *err, size_t errlen)
{
	struct root_doc d;
	struct trust_root *r = NULL;
	int ret;

	ret = sodium_ready();
	if (ret) {
		set_err(err, errlen, "libsodium cannot start");
		return ret;
	}
	ret = root_doc_load(candidate, len, &d, err, errlen);
	if (ret)
		return ret;
	/* the key ids and signatures of the root we trust come before the candidate's content */
	ret = root_doc_check_sigs(&d, current->root_keys, current->n_root, current->root_threshold,
				  "the current", err, errlen);
	if (ret)
		goto out_doc;
	r = calloc(1, sizeof(*r));
	if (!r) {
		set_err(err, errlen, "out of memory");
		ret = -ENOMEM;
		goto out_doc;
	}
	ret = root_parse_signed(d.signed_part, r, err, errlen);
	if (ret)
		goto out_free;
	ret = root_doc_check_sigs(&d, r->root_keys, r->n_root, r->root_threshold, "its own", err,
				  errlen);
	if (ret)
		goto out_free;
	if (r->version <= current->version) {
		set_err(err, errlen,
			"root: version %" PRIu64 " is not higher than the current %" PRIu64,
			r->version, current->version);
		ret = -ESTALE;
		goto out_free;
	}
	if (trust_root_expired(r, now)) {
		set_err(err, errlen, "root: version %" PRIu64 " has expired", r->version);
		ret = -EKEYEXPIRED;
		goto out_free;
	}
	trust_digest(TRUST_CONTEXT_ROOT, d.canon, d.canon_len, r->digest);
	*out = r;
	r = NULL;
out_free:
	free(r);
out_doc:
	root_doc_release(&d);
	return ret;
}

int trust_root_load(const char *path, struct trust_root **out, char *err, size_t errlen)
{
	struct buf b;
	int ret;

	buf_init(&b, TRUST_ROOT_MAX_BYTES);
	ret = trust_file_read(path, TRUST_ROOT_MAX_BYTES, &b);
	if (ret)
		set_err(err, errlen, "%s", read_error(ret, "root larger than 65536 bytes"));
	else
		ret = trust_root_parse(b.data, b.len, out, err, errlen);
	buf_release(&b);
	return ret;
}

void trust_root_free(struct trust_root *root)
{
	free(root);
}

uint64_t trust_root_version(const struct trust_root *root)
{
	return root->version;
}

bool trust_root_expired(const struct trust_root *root, trust_time_t now)
{
	return root->has_expires && now >= root->expires;
}

bool trust_root_expires(const struct trust_root *root, trust_time_t *expires)
{
	if (root->has_expires)
		*expires = root->expires;
	return root->has_expires;
}

unsigned trust_root_content_threshold(const struct trust_root *root)
{
	return root->content_threshold;
}

size_t trust_root_content_key_count(const struct trust_root *root)
{
	return root->n_content;
}

const struct trust_key *trust_root_content_key(const struct trust_root *root, size_t i)
{
	return i < root->n_content ? &root->content_keys[i] : NULL;
}

unsigned trust_root_root_threshold(const struct trust_root *root)
{
	return root->root_threshold;
}

size_t trust_root_root_key_count(const struct trust_root *root)
{
	return root->n_root;
}

const struct trust_key *trust_root_root_key(const struct trust_root *root, size_t i)
{
	return i < root->n_root ? &root->root_keys[i] : NULL;
}

const struct trust_key *trust_root_find_content_key(const struct trust_root *root,
						    const uint8_t id[TRUST_KEYID_BYTES])
{
	return find_key(root->content_keys, root->n_content, id, NULL);
}

const uint8_t *trust_root_digest(const struct trust_root *root)
{
	return root->digest;
}

/* --- writing a root --- */

static json_t *hex_string(const uint8_t *bin, size_t n)
{
	char hex[2 * TRUST_SIG_BYTES + 1];

	if (n > TRUST_SIG_BYTES)
		return NULL;
	sodium_bin2hex(hex, sizeof(hex), bin, n);
	return json_string(hex);
}

static json_t *keys_json(const struct trust_key *keys, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++) {
		json_t *k = json_object();
		if (!k ||
		    json_object_set_new(k, "keyid", hex_string(keys[i].id, TRUST_KEYID_BYTES)) ||
		    json_object_set_new(k, "public", hex_string(keys[i].pk, TRUST_PUBLIC_BYTES)) ||
		    json_array_append_new(arr, k)) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static json_t *root_signed_json(const struct trust_root_params *p)
{
	json_t *s = json_object();
	char when[21];
	int bad = 0;

	if (!s)
		return NULL;
	bad |= json_object_set_new(s, "type", json_string(ROOT_TYPE));
	bad |= json_object_set_new(s, "version", json_integer((json_int_t)p->version));
	if (p->has_expires) {
		if (trust_time_format(p->expires, when))
			bad = 1;
		else
			bad |= json_object_set_new(s, "expires", json_string(when));
	}
	bad |= json_object_set_new(s, "root_keys", keys_json(p->root_keys, p->n_root_keys));
	bad |= json_object_set_new(s, "root_threshold", json_integer(p->root_threshold));
	bad |=
	    json_object_set_new(s, "content_keys", keys_json(p->content_keys, p->n_content_keys));
	bad |= json_object_set_new(s, "content_threshold", json_integer(p->content_threshold));
	if (bad) {
		json_decref(s);
		return NULL;
	}
	return s;
}

int trust_root_create(const struct trust_root_params *p, const struct trust_secret *signers,
		      size_t n_signers, bool allow_foreign_signers, struct buf *out, char *err,
		      size_t errlen)
{
	struct trust_root check, *self = NULL;
	json_t *doc = NULL, *s, *sigs;
	char *canon = NULL, *text = NULL;
	char idhex[2 * TRUST_KEYID_BYTES + 1];
	int ret = -ENOMEM;

	memset(&check, 0, sizeof(check));
	if (sodium_ready()) {
		set_err(err, errlen, "libsodium cannot start");
		return -EIO;
	}
	if (p->version < 1 || p->version > TRUST_VERSION_MAX ||
	    p->n_root_keys > TRUST_ROOT_MAX_KEYS || p->n_content_keys > TRUST_ROOT_MAX_KEYS ||
	    n_signers == 0 || n_signers > TRUST_ROOT_MAX_SIGNATURES) {
		set_err(err, errlen,
			"root: version must be 1..2^53-1, keys per role at most %u, signers 1..%u",
			TRUST_ROOT_MAX_KEYS, TRUST_ROOT_MAX_SIGNATURES);
		return -EINVAL;
	}
	s = root_signed_json(p);
	if (!s) {
		set_err(err, errlen, "out of memory or bad expiry time");
		return -ENOMEM;
	}
	/* the reader's rules, applied before anything is signed */
	ret = root_parse_signed(s, &check, err, errlen);
	if (ret)
		goto out;
	for (size_t i = 0; i < n_signers; i++) {
		trust_key_id_hex(signers[i].id, idhex);
		if (!allow_foreign_signers &&
		    !find_key(check.root_keys, check.n_root, signers[i].id, NULL)) {
			set_err(err, errlen, "root: signer %s is not a root key of this root",
				idhex);
			ret = -EINVAL;
			goto out;
		}
		for (size_t j = 0; j < i; j++) {
			if (memcmp(signers[i].id, signers[j].id, TRUST_KEYID_BYTES) == 0) {
				set_err(err, errlen, "root: signer %s given twice", idhex);
				ret = -EINVAL;
				goto out;
			}
		}
	}
	ret = -ENOMEM;
	canon = json_dumps(s, JSON_COMPACT | JSON_SORT_KEYS);
	doc = json_object();
	sigs = json_array();
	if (!canon || !doc || !sigs || json_object_set_new(doc, "signatures", sigs) ||
	    json_object_set(doc, "signed", s))
		goto out_nomem;
	for (size_t i = 0; i < n_signers; i++) {
		uint8_t sig[TRUST_SIG_BYTES];
		json_t *e = json_object();
		trust_sign(&signers[i], TRUST_CONTEXT_ROOT, canon, strlen(canon), sig);
		if (!e ||
		    json_object_set_new(e, "keyid", hex_string(signers[i].id, TRUST_KEYID_BYTES)) ||
		    json_object_set_new(e, "sig", hex_string(sig, TRUST_SIG_BYTES)) ||
		    json_array_append_new(sigs, e))
			goto out_nomem;
	}
	text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!text)
		goto out_nomem;
	ret = trust_root_parse(text, strlen(text), &self, err, errlen);
	if (ret)
		goto out;
	ret = buf_append_str(out, text);
	if (!ret)
		ret = buf_append_char(out, '\n');
	if (ret) {
		set_err(err, errlen, ret == -E2BIG ? "root too large" : "out of memory");
		goto out;
	}
	goto out;
out_nomem:
	set_err(err, errlen, "out of memory");
	ret = -ENOMEM;
out:
	trust_root_free(self);
	free(text);
	free(canon);
	json_decref(doc);
	json_decref(s);
	return ret;
}

int trust_root_summary_json(const struct trust_root *root, struct buf *out)
{
	char hex[2 * TRUST_HASH_BYTES + 1], when[21];
	int err = 0;

	err |= buf_printf(out, "{\"version\":%" PRIu64, root->version);
	if (root->has_expires && trust_time_format(root->expires, when) == 0)
		err |= buf_printf(out, ",\"expires\":\"%s\"", when);
	err |= buf_printf(out, ",\"root_threshold\":%u,\"root_keys\":[", root->root_threshold);
	for (size_t i = 0; i < root->n_root; i++) {
		trust_key_id_hex(root->root_keys[i].id, hex);
		err |= buf_printf(out, "%s\"%s\"", i ? "," : "", hex);
	}
	err |= buf_printf(out, "],\"content_threshold\":%u,\"content_keys\":[",
			  root->content_threshold);
	for (size_t i = 0; i < root->n_content; i++) {
		trust_key_id_hex(root->content_keys[i].id, hex);
		err |= buf_printf(out, "%s\"%s\"", i ? "," : "", hex);
	}
	sodium_bin2hex(hex, sizeof(hex), root->digest, TRUST_HASH_BYTES);
	err |= buf_printf(out, "],\"digest\":\"%s\"}", hex);
	return err ? -ENOMEM : 0;
}
