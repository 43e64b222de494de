/*
 * Credentials of agents and admin tokens: "ID.SECRET" strings whose secret is kept only as a
 * BLAKE2b-256 hash and compared in constant time; roles for the admin API; the first tokens.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proto.h"
#include "server.h"

#define ID_RAW_BYTES	 16
#define SECRET_RAW_BYTES 32
#define SECRET_HEX_BYTES (2 * SECRET_RAW_BYTES)

static void hash_secret(const char *secret, size_t len, uint8_t hash[STORE_SECRET_HASH])
{
	crypto_generichash(hash, STORE_SECRET_HASH, (const unsigned char *)secret, len, NULL, 0);
}

int auth_new_credential(char id[STORE_ID_BYTES], char token[STORE_TOKEN_BYTES],
			uint8_t hash[STORE_SECRET_HASH])
{
	uint8_t raw_id[ID_RAW_BYTES], raw[SECRET_RAW_BYTES];
	char secret[SECRET_HEX_BYTES + 1];
	int n;

	if (sodium_init() < 0)
		return -EIO;
	randombytes_buf(raw_id, sizeof(raw_id));
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(id, STORE_ID_BYTES, raw_id, sizeof(raw_id));
	sodium_bin2hex(secret, sizeof(secret), raw, sizeof(raw));
	hash_secret(secret, SECRET_HEX_BYTES, hash);
	n = snprintf(token, STORE_TOKEN_BYTES, "%s.%s", id, secret);
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(secret, sizeof(secret));
	return n > 0 && n < STORE_TOKEN_BYTES ? 0 : -EIO;
}

int auth_split(const char *token, char id[STORE_ID_BYTES], uint8_t hash[STORE_SECRET_HASH])
{
	const char *dot = strchr(token, '.');
	size_t idlen, slen;

	if (!dot)
		return -EINVAL;
	idlen = (size_t)(dot - token);
	slen = strlen(dot + 1);
	if (idlen != 2 * ID_RAW_BYTES || slen != SECRET_HEX_BYTES)
		return -EINVAL;
	for (size_t i = 0; i < idlen; i++)
		if (!((token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f')))
			return -EINVAL;
	memcpy(id, token, idlen);
	id[idlen] = '\0';
	hash_secret(dot + 1, slen, hash);
	return 0;
}

bool auth_hash_equal(const uint8_t a[STORE_SECRET_HASH], const uint8_t b[STORE_SECRET_HASH])
{
	return sodium_memcmp(a, b, STORE_SECRET_HASH) == 0;
}

const char *auth_bearer(struct request *rq)
{
	const char *h = request_header(rq, "Authorization");

	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h ? h : NULL;
}

int auth_admin(struct request *rq, enum store_role need, struct reply *rp)
{
	const char *bearer = auth_bearer(rq);
	struct store_token t;
	char id[STORE_ID_BYTES];
	uint8_t hash[STORE_SECRET_HASH];
	int ret;

	if (!bearer)
		return reply_error(rp, 401, "an admin bearer token is required"), -EACCES;
	if (auth_split(bearer, id, hash))
		return reply_error(rp, 401, "malformed bearer token"), -EACCES;
	ret = rq->srv->store->ops->token_get(rq->srv->store, id, &t);
	if (ret == -ENOENT ||
	    (ret == 0 && (t.kind != TOKEN_ADMIN || !auth_hash_equal(hash, t.secret_hash))))
		return reply_error(rp, 401, "unknown or wrong token"), -EACCES;
	if (ret)
		return reply_store_error(rp, ret, "token"), ret;
	if (t.revoked || (t.expires && t.expires <= rq->now))
		return reply_error(rp, 401, "token revoked or expired"), -EACCES;
	rq->who.agent = false;
	memcpy(rq->who.id, t.id, sizeof(t.id));
	memcpy(rq->who.name, t.name, sizeof(t.name));
	rq->who.role = t.role;
	if (t.role < need)
		return reply_error(rp, 403, "role %s may not do this (needs %s)",
				   proto_role_name(t.role), proto_role_name(need)),
		       -EPERM;
	return 0;
}

int auth_agent(struct request *rq, struct reply *rp)
{
	const char *bearer = auth_bearer(rq);
	struct store_agent a;
	char id[STORE_ID_BYTES];
	uint8_t hash[STORE_SECRET_HASH];
	int ret;

	if (!bearer)
		return reply_error(rp, 401, "agent credentials are required"), -EACCES;
	if (auth_split(bearer, id, hash))
		return reply_error(rp, 401, "malformed agent credentials"), -EACCES;
	ret = rq->srv->store->ops->agent_get(rq->srv->store, id, &a);
	if (ret == -ENOENT || (ret == 0 && !auth_hash_equal(hash, a.secret_hash)))
		return reply_error(rp, 401, "unknown agent or wrong secret"), -EACCES;
	if (ret)
		return reply_store_error(rp, ret, "agent"), ret;
	rq->who.agent = true;
	memcpy(rq->who.id, a.id, sizeof(a.id));
	snprintf(rq->who.name, sizeof(rq->who.name), "agent");
	if (strcmp(a.id, rq->arg[0]) != 0)
		return reply_error(rp, 403, "these credentials belong to another agent"), -EPERM;
	rq->agent = a;
	return 0;
}

/* Makes and stores one token; its text goes to @token. */
static int make_token(struct server *srv, enum store_token_kind kind, const char *name,
		      enum store_role role, const char *group, int64_t now,
		      char token[STORE_TOKEN_BYTES])
{
	struct store_token t;
	int ret;

	memset(&t, 0, sizeof(t));
	ret = auth_new_credential(t.id, token, t.secret_hash);
	if (ret)
		return ret;
	t.kind = kind;
	snprintf(t.name, sizeof(t.name), "%s", name);
	t.role = role;
	snprintf(t.group, sizeof(t.group), "%s", group);
	t.uses_left = -1;
	t.created = now;
	return srv->store->ops->token_add(srv->store, &t);
}

int auth_bootstrap(struct server *srv, bool force, void *outp, int64_t now)
{
	FILE *out = outp;
	char flag[16], admin[STORE_TOKEN_BYTES], enroll[STORE_TOKEN_BYTES];
	int ret;

	ret = srv->store->ops->meta_get(srv->store, "bootstrapped", flag, sizeof(flag));
	if (ret == 0)
		return 0;
	if (ret != -ENOENT)
		return ret;
	(void)force;
	ret = make_token(srv, TOKEN_ADMIN, "bootstrap", ROLE_ADMIN, "", now, admin);
	if (!ret)
		ret =
		    make_token(srv, TOKEN_ENROLL, "bootstrap", ROLE_VIEWER, "default", now, enroll);
	if (!ret)
		ret = srv->store->ops->meta_set(srv->store, "bootstrapped", "1");
	if (!ret) {
		fprintf(out, "admin token: %s\nenrollment token: %s\n", admin, enroll);
		fprintf(out, "(shown once: only their hashes are stored)\n");
		fflush(out);
	}
	sodium_memzero(admin, sizeof(admin));
	sodium_memzero(enroll, sizeof(enroll));
	return ret ? ret : 1;
}
