/*
 * The agent API (/api/v1/...): enrollment, heartbeats answered with the desired content,
 * bundle download by hash, and alert and event upload acknowledged after commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fleet.h"
#include "proto.h"
#include "server.h"

void api_health(struct request *rq, struct reply *rp)
{
	reply_json(rp, 200);
	if (buf_printf(&rp->body, "{\"ok\":true,\"version\":\"%s\",\"store\":\"%s\"}\n",
		       SERVER_VERSION, rq->srv->store->ops->name))
		reply_error(rp, 500, "out of memory");
}

void api_enroll(struct request *rq, struct reply *rp)
{
	struct store *st = rq->srv->store;
	struct proto_enroll e;
	struct store_token t;
	struct store_agent a;
	char err[256], tid[STORE_ID_BYTES], token[STORE_TOKEN_BYTES];
	uint8_t hash[STORE_SECRET_HASH];
	int ret;

	if (proto_parse_enroll(rq->body.data, rq->body.len, &e, err, sizeof(err))) {
		reply_error(rp, 400, "%s", err);
		return;
	}
	if (auth_split(e.token, tid, hash) || st->ops->token_get(st, tid, &t) ||
	    t.kind != TOKEN_ENROLL || !auth_hash_equal(hash, t.secret_hash)) {
		reply_error(rp, 401, "unknown or wrong enrollment token");
		goto out;
	}
	if (t.revoked || (t.expires && t.expires <= rq->now)) {
		reply_error(rp, 401, "enrollment token revoked or expired");
		goto out;
	}
	if (t.uses_left >= 0) {
		ret = st->ops->token_use(st, t.id);
		if (ret == -EACCES) {
			reply_error(rp, 401, "enrollment token used up");
			goto out;
		}
		if (ret) {
			reply_store_error(rp, ret, "enrollment token");
			goto out;
		}
	}
	memset(&a, 0, sizeof(a));
	ret = auth_new_credential(a.id, token, a.secret_hash);
	if (ret) {
		reply_error(rp, 500, "cannot make credentials");
		goto out;
	}
	memcpy(a.group, t.group, sizeof(a.group));
	a.enrolled_at = rq->now;
	a.health.liveness_last = -1;
	a.health.cpu_percent = -1.0;
	memcpy(a.health.hostname, e.hostname, sizeof(a.health.hostname));
	memcpy(a.health.sensor_version, e.sensor_version, sizeof(a.health.sensor_version));
	a.health.sensor_build = e.sensor_build;
	ret = st->ops->agent_add(st, &a);
	if (ret) {
		reply_store_error(rp, ret, "agent");
		goto out;
	}
	reply_json(rp, 201);
	if (buf_printf(&rp->body,
		       "{\"agent_id\":\"%s\",\"credential\":\"%s\",\"group\":\"%s\","
		       "\"heartbeat_seconds\":%u}\n",
		       a.id, token, a.group, rq->srv->cfg.heartbeat_seconds))
		reply_error(rp, 500, "out of memory");
out:
	memset(token, 0, sizeof(token));
	memset(e.token, 0, sizeof(e.token));
}

int fleet_target_json(struct buf *b, const struct fleet_target *t)
{
	int ret;

	if (!t->has && !t->pulled)
		return buf_append_str(b, "null");
	if (!t->has)
		return buf_printf(b,
				  "{\"version\":null,\"hash\":null,\"size\":null,\"url\":null,"
				  "\"audit_mode\":false,\"rollout\":%" PRId64
				  ",\"why\":\"pulled\",\"pulled\":%" PRIu64 "}",
				  t->rollout_id, t->pulled);
	ret = buf_printf(b, "{\"version\":%" PRIu64, t->version);
	if (!ret)
		ret = t->known ? buf_printf(b,
					    ",\"hash\":\"%s\",\"size\":%" PRId64
					    ",\"url\":\"/api/v1/bundles/%s\"",
					    t->hash, t->size, t->hash)
			       : buf_append_str(b, ",\"hash\":null,\"size\":null,\"url\":null");
	if (!ret)
		ret = buf_printf(b, ",\"audit_mode\":%s,\"rollout\":%" PRId64 ",\"why\":\"%s\"",
				 t->audit_mode ? "true" : "false", t->rollout_id,
				 t->why ? t->why : "");
	if (!ret && t->pulled)
		ret = buf_printf(b, ",\"pulled\":%" PRIu64, t->pulled);
	if (!ret)
		ret = buf_append_char(b, '}');
	return ret;
}

void api_heartbeat(struct request *rq, struct reply *rp)
{
	struct store *st = rq->srv->store;
	const struct store_agent *a = &rq->agent;
	struct store_health h;
	struct fleet_target t[FLEET_LANES];
	uint8_t track[STORE_TRACK_BYTES];
	size_t track_len = 0;
	char err[256];
	int ret;

	if (proto_parse_heartbeat(rq->body.data, rq->body.len, &h, err, sizeof(err))) {
		reply_error(rp, 400, "%s", err);
		return;
	}
	/* what the controller counts from this heartbeat is kept only once it is stored */
	fleet_heartbeat(rq->srv->fleet, a, &h, rq->now, t, track, &track_len);
	ret = st->ops->agent_heartbeat(st, a->id, &h, track, track_len, rq->now);
	if (ret) {
		reply_store_error(rp, ret, "agent");
		return;
	}
	reply_json(rp, 200);
	if (buf_printf(&rp->body, "{\"heartbeat_seconds\":%u,\"group\":\"%s\",\"content\":",
		       rq->srv->cfg.heartbeat_seconds, a->group) ||
	    fleet_target_json(&rp->body, &t[FLEET_CONTENT]) ||
	    buf_append_str(&rp->body, ",\"sensor\":") ||
	    fleet_target_json(&rp->body, &t[FLEET_SENSOR]) || buf_append_str(&rp->body, "}\n"))
		reply_error(rp, 500, "out of memory");
}

static void upload(struct request *rq, struct reply *rp, enum store_record_kind kind)
{
	struct store *st = rq->srv->store;
	struct proto_batch b = {0};
	struct store_new_record *recs = NULL;
	size_t inserted = 0, bytes;
	char err[256];
	int ret;

	ret = proto_parse_batch(rq->body.data, rq->body.len, &b, err, sizeof(err));
	if (ret == -ENOMEM) {
		reply_error(rp, 503, "out of memory");
		return;
	}
	if (ret) {
		reply_error(rp, 400, "%s", err);
		return;
	}
	if (size_mul(b.n, sizeof(*recs), &bytes) || !(recs = calloc(1, bytes))) {
		reply_error(rp, 503, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < b.n; i++) {
		recs[i].seq = b.records[i].seq;
		recs[i].at = b.records[i].at;
		recs[i].rule_id = b.records[i].rule_id;
		recs[i].json = b.records[i].json;
		recs[i].json_len = b.records[i].json_len;
	}
	ret = st->ops->records_add(st, kind, rq->who.id, recs, b.n, &inserted, rq->now);
	if (ret) {
		/* not acknowledged: the agent keeps the batch and sends it again */
		reply_error(rp, 503, "could not store the batch; send it again");
		goto out;
	}
	reply_json(rp, 200);
	if (buf_printf(&rp->body,
		       "{\"acked\":%zu,\"stored\":%zu,\"duplicates\":%zu,\"first_seq\":%" PRId64
		       ",\"last_seq\":%" PRId64 "}\n",
		       b.n, inserted, b.n - inserted, b.records[0].seq, b.records[b.n - 1].seq))
		reply_error(rp, 500, "out of memory");
out:
	free(recs);
	proto_batch_free(&b);
}

void api_alerts(struct request *rq, struct reply *rp)
{
	upload(rq, rp, RECORD_ALERT);
}

void api_events(struct request *rq, struct reply *rp)
{
	upload(rq, rp, RECORD_EVENT);
}

/* True when the If-None-Match header names @hash (quoted, weak or bare, or "*"). */
static bool etag_matches(const char *inm, const char *hash)
{
	const char *p = inm;

	while (p && *p) {
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (*p == '"')
			p++;
		if (strncmp(p, hash, 64) == 0 && (p[64] == '"' || p[64] == ',' || p[64] == '\0'))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

void api_bundle(struct request *rq, struct reply *rp)
{
	const char *hash = rq->arg[0];
	const char *inm = request_header(rq, "If-None-Match");
	char path[PATH_MAX + 80];
	struct stat sb;
	int fd, n;

	n = snprintf(path, sizeof(path), "%s/%s", rq->srv->bundles_dir, hash);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		reply_error(rp, 500, "path too long");
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		reply_error(rp, 404, "no bundle %s", hash);
		return;
	}
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
		close(fd);
		reply_error(rp, 404, "no bundle %s", hash);
		return;
	}
	snprintf(rp->etag, sizeof(rp->etag), "\"%.64s\"", hash);
	rp->immutable = true;
	if (inm && etag_matches(inm, hash)) {
		close(fd);
		reply_json(rp, 304);
		return;
	}
	/* for HEAD the daemon sends the headers of this reply without its body */
	reply_json(rp, 200);
	rp->fd = fd;
	rp->fd_size = (uint64_t)sb.st_size;
}
