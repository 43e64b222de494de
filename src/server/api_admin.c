/*
 * The admin API (/api/v1/admin/...): agents, groups and policies, releases, rollouts,
 * alerts and events, decisions, the audit log and tokens. Roles are checked by the route
 * table before a handler runs; every change is audited there too.
 */
#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"
#include "lib/bundle.h"
#include "lib/sensor_image.h"
#include "lib/registry.h"
#include "lib/trust.h"
#include "proto.h"
#include "server.h"

#define LIST_DEFAULT 100u
#define LIST_MAX     10000u
/* The agent version the server verifies releases as: any minimum agent version passes. */
#define ANY_AGENT_VERSION "999999.999999.999999"

static void oom(struct reply *rp)
{
	reply_error(rp, 500, "out of memory");
}

/* ?limit=N within 1..LIST_MAX (LIST_DEFAULT when absent). Returns 0 or sets 400. */
static int query_limit(struct request *rq, struct reply *rp, size_t *out)
{
	const char *s = request_query(rq, "limit");
	char *end;
	unsigned long long n;

	*out = LIST_DEFAULT;
	if (!s)
		return 0;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || *end || end == s || n < 1 || n > LIST_MAX)
		return reply_error(rp, 400, "limit must be 1..%u", LIST_MAX), -EINVAL;
	*out = (size_t)n;
	return 0;
}

/* A time given as seconds since the epoch or as YYYY-MM-DDTHH:MM:SSZ. */
static int query_time(struct request *rq, struct reply *rp, const char *key, int64_t *out)
{
	const char *s = request_query(rq, key);
	trust_time_t t;
	char *end;
	long long n;

	*out = 0;
	if (!s)
		return 0;
	if (trust_time_parse(s, strlen(s), &t) == 0) {
		*out = t;
		return 0;
	}
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || *end || end == s || n < 1)
		return reply_error(rp, 400,
				   "%s must be seconds since the epoch or "
				   "YYYY-MM-DDTHH:MM:SSZ",
				   key),
		       -EINVAL;
	*out = n;
	return 0;
}

static int time_json(struct buf *b, int64_t t)
{
	char s[21];
	if (t <= 0 || trust_time_format(t, s))
		return buf_append_str(b, "null");
	return buf_printf(b, "\"%s\"", s);
}

/* --- agents --- */

struct list_ctx {
	struct buf *b;
	size_t n;
	char last[STORE_ID_BYTES];
};

static int agent_json(struct buf *b, const struct store_agent *a)
{
	const struct store_health *h = &a->health;
	int ret = buf_printf(b, "{\"id\":\"%s\",\"group\":\"%s\",\"hostname\":", a->id, a->group);
	if (!ret)
		ret = json_str(b, h->hostname);
	if (!ret)
		ret = buf_append_str(b, ",\"enrolled_at\":");
	if (!ret)
		ret = time_json(b, a->enrolled_at);
	if (!ret)
		ret = buf_append_str(b, ",\"last_seen\":");
	if (!ret)
		ret = time_json(b, a->last_seen);
	if (!ret)
		ret = buf_printf(b,
				 ",\"heartbeats\":%" PRId64 ",\"content_version\":", a->heartbeats);
	if (!ret)
		ret = h->has_content ? buf_printf(b, "%" PRIu64, h->content_version)
				     : buf_append_str(b, "null");
	if (!ret)
		ret = buf_append_str(b, ",\"sensor_version\":");
	if (!ret)
		ret = json_str(b, h->sensor_version);
	if (!ret)
		ret = h->sensor_build ? buf_printf(b, ",\"sensor_build\":%" PRIu64, h->sensor_build)
				      : buf_append_str(b, ",\"sensor_build\":null");
	if (!ret)
		ret = buf_printf(
		    b, ",\"sensor_crash_loop_reverts\":%" PRId64 ",\"sensor_quarantined\":[",
		    h->sensor_reverts);
	for (size_t i = 0; !ret && i < h->n_sensor_quarantined; i++)
		ret = buf_printf(b, "%s%" PRIu64, i ? "," : "", h->sensor_quarantined[i]);
	if (!ret)
		ret = buf_append_char(b, ']');
	if (!ret)
		ret = buf_printf(b,
				 ",\"uptime_seconds\":%" PRId64 ",\"restarts\":%" PRId64
				 ",\"crash_loop_reverts\":%" PRId64 ",\"quarantined\":[",
				 h->uptime_seconds, h->restarts, h->crash_loop_reverts);
	for (size_t i = 0; !ret && i < h->n_quarantined; i++)
		ret = buf_printf(b, "%s%" PRIu64, i ? "," : "", h->quarantined[i]);
	if (!ret)
		ret = buf_printf(b,
				 "],\"liveness\":{\"ok\":%" PRId64 ",\"failed\":%" PRId64
				 ",\"last\":\"%s\"},\"drops\":%" PRId64 ",\"alerts\":%" PRId64
				 ",\"rss_bytes\":%" PRId64 ",\"cpu_percent\":",
				 h->liveness_ok, h->liveness_failed,
				 h->liveness_last < 0 ? "never"
				 : h->liveness_last   ? "ok"
						      : "failed",
				 h->drops, h->alerts, h->rss_bytes);
	if (!ret)
		ret = h->cpu_percent < 0 ? buf_append_str(b, "null}")
					 : buf_printf(b, "%.3f}", h->cpu_percent);
	return ret;
}

static int list_agent(const struct store_agent *a, void *p)
{
	struct list_ctx *c = p;
	int ret = c->n++ ? buf_append_char(c->b, ',') : 0;
	memcpy(c->last, a->id, sizeof(c->last));
	return ret ? ret : agent_json(c->b, a);
}

void admin_agents(struct request *rq, struct reply *rp)
{
	const char *group = request_query(rq, "group"), *after = request_query(rq, "after");
	struct list_ctx c = {0};
	size_t limit;
	int ret;

	if (query_limit(rq, rp, &limit))
		return;
	if ((group && !proto_name_ok(group, strlen(group))) ||
	    (after && strlen(after) >= STORE_ID_BYTES)) {
		reply_error(rp, 400, "malformed group or after");
		return;
	}
	reply_json(rp, 200);
	c.b = &rp->body;
	ret = buf_append_str(&rp->body, "{\"agents\":[");
	if (!ret)
		ret = rq->srv->store->ops->agent_list(rq->srv->store, group, after ? after : "",
						      limit, list_agent, &c);
	if (!ret)
		ret = c.n == limit ? buf_printf(&rp->body, "],\"next\":\"%s\"}\n", c.last)
				   : buf_append_str(&rp->body, "],\"next\":null}\n");
	if (ret)
		reply_store_error(rp, ret, "agents");
}

void admin_agent_show(struct request *rq, struct reply *rp)
{
	struct store_agent a;
	int ret = rq->srv->store->ops->agent_get(rq->srv->store, rq->arg[0], &a);

	if (ret) {
		reply_store_error(rp, ret, "agent");
		return;
	}
	/* with what the controller would tell it now, and why */
	struct fleet_target t[FLEET_LANES];
	fleet_target_of(rq->srv->fleet, &a, rq->now, t);
	reply_json(rp, 200);
	if (agent_json(&rp->body, &a) || rp->body.len < 1)
		goto out_oom;
	rp->body.len--; /* reopen the object */
	if (buf_append_str(&rp->body, ",\"desired\":") ||
	    fleet_target_json(&rp->body, &t[FLEET_CONTENT]) ||
	    buf_append_str(&rp->body, ",\"desired_sensor\":") ||
	    fleet_target_json(&rp->body, &t[FLEET_SENSOR]) || buf_append_str(&rp->body, "}\n"))
		goto out_oom;
	return;
out_oom:
	oom(rp);
}

void admin_agent_update(struct request *rq, struct reply *rp)
{
	char group[STORE_NAME_BYTES], err[256];
	int ret;

	if (proto_parse_group_ref(rq->body.data, rq->body.len, group, err, sizeof(err))) {
		reply_error(rp, 400, "%s", err);
		return;
	}
	ret = rq->srv->store->ops->agent_set_group(rq->srv->store, rq->arg[0], group);
	if (ret) {
		reply_store_error(rp, ret, "agent");
		return;
	}
	snprintf(rp->audit, sizeof(rp->audit), "agent moved to group %s", group);
	admin_agent_show(rq, rp);
}

/* --- groups --- */

static int group_json(struct buf *b, const struct store_group *g)
{
	int ret = buf_printf(b, "{\"name\":\"%s\",\"policy\":", g->name);
	if (!ret)
		ret = proto_policy_json(&g->policy, b);
	if (!ret)
		ret = buf_append_str(b, ",\"updated\":");
	if (!ret)
		ret = time_json(b, g->updated);
	return ret ? ret : buf_append_char(b, '}');
}

static int list_group(const struct store_group *g, void *p)
{
	struct list_ctx *c = p;
	int ret = c->n++ ? buf_append_char(c->b, ',') : 0;
	return ret ? ret : group_json(c->b, g);
}

void admin_groups(struct request *rq, struct reply *rp)
{
	struct list_ctx c = {.b = &rp->body};
	int ret;

	reply_json(rp, 200);
	ret = buf_append_str(&rp->body, "{\"groups\":[");
	if (!ret)
		ret = rq->srv->store->ops->group_list(rq->srv->store, list_group, &c);
	if (!ret)
		ret = buf_append_str(&rp->body, "]}\n");
	if (ret)
		reply_store_error(rp, ret, "groups");
}

void admin_group_show(struct request *rq, struct reply *rp)
{
	struct store_group g;
	int ret = rq->srv->store->ops->group_get(rq->srv->store, rq->arg[0], &g);

	if (ret) {
		reply_store_error(rp, ret, "group");
		return;
	}
	reply_json(rp, 200);
	if (group_json(&rp->body, &g) || buf_append_char(&rp->body, '\n'))
		oom(rp);
}

void admin_group_put(struct request *rq, struct reply *rp)
{
	struct store *st = rq->srv->store;
	struct store_group g;
	char err[256];
	int ret;

	ret = st->ops->group_get(st, rq->arg[0], &g);
	if (ret == -ENOENT) {
		memset(&g, 0, sizeof(g));
		snprintf(g.name, sizeof(g.name), "%.63s", rq->arg[0]);
		g.policy.ring = FLEET_DEFAULT_RING;
	} else if (ret) {
		reply_store_error(rp, ret, "group");
		return;
	}
	if (proto_parse_policy(rq->body.data, rq->body.len, &g.policy, err, sizeof(err))) {
		reply_error(rp, 400, "%s", err);
		return;
	}
	g.updated = rq->now;
	ret = st->ops->group_put(st, &g);
	if (ret) {
		reply_store_error(rp, ret, "group");
		return;
	}
	fleet_group_changed(rq->srv->fleet, &g);
	reply_json(rp, 200);
	if (group_json(&rp->body, &g) || buf_append_char(&rp->body, '\n'))
		oom(rp);
	snprintf(rp->audit, sizeof(rp->audit), "policy of group %s set", g.name);
}

/* --- releases --- */

static int release_json(struct buf *b, const struct store_release *r)
{
	int ret = buf_printf(b,
			     "{\"id\":%" PRId64 ",\"hash\":\"%s\",\"kind\":\"%s\",\"name\":\"%s\","
			     "\"version\":%" PRIu64 ",\"size\":%" PRId64
			     ",\"url\":\"/api/v1/bundles/%s\",\"created\":",
			     r->id, r->hash, r->kind, r->name, r->version, r->size, r->hash);
	if (!ret)
		ret = time_json(b, r->created);
	if (!ret)
		ret = buf_printf(b, ",\"created_by\":\"%s\"}", r->created_by);
	return ret;
}

static int list_release(const struct store_release *r, void *p)
{
	struct list_ctx *c = p;
	int ret = c->n++ ? buf_append_char(c->b, ',') : 0;
	return ret ? ret : release_json(c->b, r);
}

void admin_releases(struct request *rq, struct reply *rp)
{
	struct list_ctx c = {.b = &rp->body};
	int ret;

	reply_json(rp, 200);
	ret = buf_append_str(&rp->body, "{\"releases\":[");
	if (!ret)
		ret = rq->srv->store->ops->release_list(rq->srv->store, list_release, &c);
	if (!ret)
		ret = buf_append_str(&rp->body, "]}\n");
	if (ret)
		reply_store_error(rp, ret, "releases");
}

void admin_release_show(struct request *rq, struct reply *rp)
{
	struct store_release r;
	int ret = rq->srv->store->ops->release_get(rq->srv->store, rq->arg[0], &r);

	if (ret) {
		reply_store_error(rp, ret, "release");
		return;
	}
	reply_json(rp, 200);
	if (release_json(&rp->body, &r) || buf_append_char(&rp->body, '\n'))
		oom(rp);
}

void admin_release_create(struct request *rq, struct reply *rp)
{
	struct server *srv = rq->srv;
	const char *kind = request_query(rq, "kind");
	struct bundle_verify_options opt = {
	    .now = rq->now, .schema_version = SCHEMA_VERSION, .agent_version = ANY_AGENT_VERSION};
	const struct bundle_manifest *m;
	struct store_release r;
	struct bundle *b = NULL;
	uint8_t digest[TRUST_HASH_BYTES];
	char err[512], path[PATH_MAX + 80];
	int ret, n;

	if (!kind)
		kind = "content";
	if (strcmp(kind, "content") != 0 && strcmp(kind, "sensor") != 0) {
		reply_error(rp, 400, "kind must be content or sensor");
		return;
	}
	if (!srv->root) {
		reply_error(rp, 409,
			    "the server has no trust root (start it with --root root.json)");
		return;
	}
	if (rq->body.len == 0) {
		reply_error(rp, 400, "empty body: the bundle file is expected");
		return;
	}
	opt.kind = strcmp(kind, "sensor") == 0 ? BUNDLE_SENSOR : BUNDLE_CONTENT;
	ret = bundle_verify(srv->root, rq->body.data, rq->body.len, &opt, &b, err, sizeof(err));
	if (ret) {
		reply_error(rp, ret == -E2BIG ? 413 : 400, "bundle refused: %s", err);
		return;
	}
	m = bundle_manifest(b);
	if (m->kind == BUNDLE_SENSOR) {
		const struct bundle_file *exe = bundle_file(b, 0);
		uint64_t stamped = 0;
		if (sensor_image_check(exe->data, exe->len, true, &stamped, err, sizeof(err))) {
			reply_error(rp, 400, "sensor build refused: %s", err);
			goto out;
		}
		if (stamped != m->version) {
			reply_error(rp, 400,
				    "sensor build refused: the executable is build %" PRIu64
				    ", the bundle says %" PRIu64,
				    stamped, m->version);
			goto out;
		}
	}
	crypto_generichash(digest, sizeof(digest), (const unsigned char *)rq->body.data,
			   rq->body.len, NULL, 0);
	memset(&r, 0, sizeof(r));
	sodium_bin2hex(r.hash, sizeof(r.hash), digest, sizeof(digest));
	if (srv->store->ops->release_get(srv->store, r.hash, &r) == 0) {
		/* the same bytes again: nothing new */
		reply_json(rp, 200);
		if (release_json(&rp->body, &r) || buf_append_char(&rp->body, '\n'))
			oom(rp);
		goto out;
	}
	n = snprintf(path, sizeof(path), "%s/%s", srv->bundles_dir, r.hash);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		reply_error(rp, 500, "path too long");
		goto out;
	}
	/* the file first: a release row always names a file that is there */
	ret = trust_file_write(path, rq->body.data, rq->body.len, 0644, false);
	if (ret) {
		reply_error(rp, 500, "cannot store the bundle file");
		goto out;
	}
	snprintf(r.kind, sizeof(r.kind), "%s", kind);
	snprintf(r.name, sizeof(r.name), "%.63s", m->name);
	r.version = m->version;
	r.size = (int64_t)rq->body.len;
	r.created = rq->now;
	snprintf(r.created_by, sizeof(r.created_by), "%s", rq->who.name);
	ret = srv->store->ops->release_add(srv->store, &r);
	if (ret) {
		reply_store_error(rp, ret, "release");
		goto out;
	}
	fleet_release_added(srv->fleet, &r);
	reply_json(rp, 201);
	if (release_json(&rp->body, &r) || buf_append_char(&rp->body, '\n'))
		oom(rp);
	snprintf(rp->audit, sizeof(rp->audit), "release %s version %" PRIu64 " %s", r.name,
		 r.version, r.hash);
out:
	bundle_free(b);
}

/* --- rollouts --- */

static int64_t rollout_id(struct request *rq)
{
	return strtoll(rq->arg[0], NULL, 10);
}

void admin_rollouts(struct request *rq, struct reply *rp)
{
	reply_json(rp, 200);
	if (buf_append_str(&rp->body, "{\"rollouts\":") ||
	    fleet_rollout_json(rq->srv->fleet, 0, rq->now, &rp->body) ||
	    buf_append_str(&rp->body, ",\"default_plan\":") || fleet_default_plan_json(&rp->body) ||
	    buf_append_str(&rp->body, "}\n"))
		oom(rp);
}

void admin_rollout_show(struct request *rq, struct reply *rp)
{
	int ret;

	reply_json(rp, 200);
	ret = fleet_rollout_json(rq->srv->fleet, rollout_id(rq), rq->now, &rp->body);
	if (!ret)
		ret = buf_append_char(&rp->body, '\n');
	if (ret)
		reply_store_error(rp, ret, "rollout");
}

static unsigned act_status(int ret)
{
	switch (ret) {
	case -ENOENT:
		return 404;
	case -EINVAL:
		return 400;
	case -EBUSY:
	case -EPERM:
	case -ESTALE:
	case -ENOSPC:
		return 409;
	default:
		return 500;
	}
}

void admin_rollout_start(struct request *rq, struct reply *rp)
{
	struct proto_rollout_start req;
	char err[512];
	int64_t id = 0;
	int ret;

	if (proto_parse_rollout_start(rq->body.data, rq->body.len, &req, err, sizeof(err))) {
		reply_error(rp, 400, "%s", err);
		return;
	}
	ret = fleet_start(rq->srv->fleet, &req, rq->who.name, rq->now, &id, err, sizeof(err));
	if (ret) {
		reply_error(rp, act_status(ret), "%s", err);
		return;
	}
	reply_json(rp, 201);
	if (fleet_rollout_json(rq->srv->fleet, id, rq->now, &rp->body) ||
	    buf_append_char(&rp->body, '\n'))
		oom(rp);
	snprintf(rp->audit, sizeof(rp->audit), "rollout %" PRId64 " of %s started%s", id,
		 req.release, req.force ? " (forced)" : "");
}

void admin_rollout_action(struct request *rq, struct reply *rp)
{
	static const struct {
		const char *name;
		enum fleet_action act;
	} acts[] = {{"pause", FLEET_PAUSE},	{"resume", FLEET_RESUME},
		    {"halt", FLEET_HALT},	{"rollback", FLEET_ROLLBACK},
		    {"approve", FLEET_APPROVE}, {"promote", FLEET_PROMOTE}};
	char group[STORE_NAME_BYTES] = "", err[512];
	int64_t id = rollout_id(rq);
	size_t i;
	int ret;

	for (i = 0; i < sizeof(acts) / sizeof(acts[0]); i++)
		if (strcmp(rq->arg[1], acts[i].name) == 0)
			break;
	if (i == sizeof(acts) / sizeof(acts[0])) {
		reply_error(
		    rp, 404,
		    "no rollout action %s (pause, resume, halt, rollback, approve, promote)",
		    rq->arg[1]);
		return;
	}
	if (acts[i].act == FLEET_APPROVE &&
	    proto_parse_group_ref(rq->body.data, rq->body.len, group, err, sizeof(err))) {
		reply_error(rp, 400, "%s", err);
		return;
	}
	ret = fleet_act(rq->srv->fleet, id, acts[i].act, group, rq->who.name, rq->now, err,
			sizeof(err));
	if (ret) {
		/* an action the rollout's state does not allow is a conflict, not a bad request */
		reply_error(rp, ret == -EINVAL ? 409 : act_status(ret), "%s", err);
		return;
	}
	reply_json(rp, 200);
	if (fleet_rollout_json(rq->srv->fleet, id, rq->now, &rp->body) ||
	    buf_append_char(&rp->body, '\n'))
		oom(rp);
	snprintf(rp->audit, sizeof(rp->audit), "rollout %" PRId64 " %s%s%s", id, acts[i].name,
		 group[0] ? " group " : "", group);
}

void admin_emergency_stop(struct request *rq, struct reply *rp)
{
	size_t n = 0;
	int ret = fleet_emergency_stop(rq->srv->fleet, rq->who.name, rq->now, &n);

	if (ret) {
		reply_store_error(rp, ret, "rollouts");
		return;
	}
	reply_json(rp, 200);
	if (buf_printf(&rp->body, "{\"halted\":%zu}\n", n))
		oom(rp);
	snprintf(rp->audit, sizeof(rp->audit), "emergency stop: %zu rollouts halted", n);
}

/* --- alerts, events, decisions, audit --- */

static int list_record(const struct store_record *r, void *p)
{
	struct list_ctx *c = p;
	int ret = c->n++ ? buf_append_char(c->b, ',') : 0;
	if (!ret)
		ret = buf_printf(
		    c->b, "{\"agent_id\":\"%s\",\"seq\":%" PRId64 ",\"at\":", r->agent_id, r->seq);
	if (!ret)
		ret = time_json(c->b, r->at);
	if (!ret)
		ret = buf_append_str(c->b, ",\"received\":");
	if (!ret)
		ret = time_json(c->b, r->received);
	if (!ret)
		ret = buf_printf(c->b, ",\"rule_id\":\"%s\",\"data\":%s}", r->rule_id, r->json);
	return ret;
}

static void records(struct request *rq, struct reply *rp, enum store_record_kind kind)
{
	struct store_record_query q = {.kind = kind};
	struct list_ctx c = {.b = &rp->body};
	int ret;

	if (query_limit(rq, rp, &q.limit) || query_time(rq, rp, "since", &q.since) ||
	    query_time(rq, rp, "until", &q.until))
		return;
	q.agent_id = request_query(rq, "agent");
	q.rule_id = request_query(rq, "rule");
	if ((q.agent_id && strlen(q.agent_id) >= STORE_ID_BYTES) ||
	    (q.rule_id && strlen(q.rule_id) >= STORE_NAME_BYTES)) {
		reply_error(rp, 400, "agent or rule too long");
		return;
	}
	reply_json(rp, 200);
	ret = buf_append_str(&rp->body, kind == RECORD_ALERT ? "{\"alerts\":[" : "{\"events\":[");
	if (!ret)
		ret = rq->srv->store->ops->records_query(rq->srv->store, &q, list_record, &c);
	if (!ret)
		ret = buf_append_str(&rp->body, "]}\n");
	if (ret)
		reply_store_error(rp, ret, "records");
}

void admin_alerts(struct request *rq, struct reply *rp)
{
	records(rq, rp, RECORD_ALERT);
}

void admin_events(struct request *rq, struct reply *rp)
{
	records(rq, rp, RECORD_EVENT);
}

static int list_decision(const struct store_decision *d, void *p)
{
	struct list_ctx *c = p;
	int ret = c->n++ ? buf_append_char(c->b, ',') : 0;
	if (!ret)
		ret = buf_printf(c->b, "{\"id\":%" PRId64 ",\"rollout\":%" PRId64 ",\"at\":", d->id,
				 d->rollout_id);
	if (!ret)
		ret = time_json(c->b, d->at);
	if (!ret)
		ret = buf_printf(c->b, ",\"kind\":\"%s\",\"detail\":%s}", d->kind,
				 d->detail ? d->detail : "{}");
	return ret;
}

void admin_decisions(struct request *rq, struct reply *rp)
{
	const char *r = request_query(rq, "rollout");
	struct list_ctx c = {.b = &rp->body};
	int64_t id = 0;
	size_t limit;
	int ret;

	if (query_limit(rq, rp, &limit))
		return;
	if (r) {
		char *end;
		id = strtoll(r, &end, 10);
		if (*end || end == r || id < 1) {
			reply_error(rp, 400, "rollout must be a rollout id");
			return;
		}
	}
	reply_json(rp, 200);
	ret = buf_append_str(&rp->body, "{\"decisions\":[");
	if (!ret)
		ret = rq->srv->store->ops->decision_list(rq->srv->store, id, limit, list_decision,
							 &c);
	if (!ret)
		ret = buf_append_str(&rp->body, "]}\n");
	if (ret)
		reply_store_error(rp, ret, "decisions");
}

static int list_audit(const struct store_audit *a, void *p)
{
	struct list_ctx *c = p;
	int ret = c->n++ ? buf_append_char(c->b, ',') : 0;
	if (!ret)
		ret = buf_printf(c->b, "{\"id\":%" PRId64 ",\"at\":", a->id);
	if (!ret)
		ret = time_json(c->b, a->at);
	if (!ret)
		ret = buf_append_str(c->b, ",\"who\":");
	if (!ret)
		ret = json_str(c->b, a->who);
	if (!ret)
		ret = buf_append_str(c->b, ",\"action\":");
	if (!ret)
		ret = json_str(c->b, a->action ? a->action : "");
	if (!ret)
		ret = buf_append_str(c->b, ",\"target\":");
	if (!ret)
		ret = json_str(c->b, a->target ? a->target : "");
	if (!ret)
		ret = buf_append_str(c->b, ",\"result\":");
	if (!ret)
		ret = json_str(c->b, a->result ? a->result : "");
	return ret ? ret : buf_append_char(c->b, '}');
}

void admin_audit(struct request *rq, struct reply *rp)
{
	struct list_ctx c = {.b = &rp->body};
	size_t limit;
	int ret;

	if (query_limit(rq, rp, &limit))
		return;
	reply_json(rp, 200);
	ret = buf_append_str(&rp->body, "{\"audit\":[");
	if (!ret)
		ret = rq->srv->store->ops->audit_list(rq->srv->store, limit, list_audit, &c);
	if (!ret)
		ret = buf_append_str(&rp->body, "]}\n");
	if (ret)
		reply_store_error(rp, ret, "audit log");
}

/* --- tokens --- */

static int list_token(const struct store_token *t, void *p)
{
	struct list_ctx *c = p;
	int ret = c->n++ ? buf_append_char(c->b, ',') : 0;
	if (!ret)
		ret = buf_printf(c->b,
				 "{\"id\":\"%s\",\"kind\":\"%s\",\"name\":\"%s\",\"role\":\"%s\","
				 "\"group\":\"%s\",\"uses_left\":%" PRId64 ",\"revoked\":%s}",
				 t->id, t->kind == TOKEN_ENROLL ? "enrollment" : "admin", t->name,
				 t->kind == TOKEN_ENROLL ? "" : proto_role_name(t->role), t->group,
				 t->uses_left, t->revoked ? "true" : "false");
	return ret;
}

void admin_tokens(struct request *rq, struct reply *rp)
{
	struct list_ctx c = {.b = &rp->body};
	int ret;

	reply_json(rp, 200);
	ret = buf_append_str(&rp->body, "{\"tokens\":[");
	if (!ret)
		ret = rq->srv->store->ops->token_list(rq->srv->store, list_token, &c);
	if (!ret)
		ret = buf_append_str(&rp->body, "]}\n");
	if (ret)
		reply_store_error(rp, ret, "tokens");
}

static void token_create(struct request *rq, struct reply *rp, bool enrollment)
{
	struct proto_token_request req;
	struct store_token t;
	char err[256], token[STORE_TOKEN_BYTES];
	int ret;

	if (proto_parse_token_request(rq->body.data, rq->body.len, enrollment, &req, err,
				      sizeof(err))) {
		reply_error(rp, 400, "%s", err);
		return;
	}
	memset(&t, 0, sizeof(t));
	if (auth_new_credential(t.id, token, t.secret_hash)) {
		reply_error(rp, 500, "cannot make a token");
		return;
	}
	t.kind = enrollment ? TOKEN_ENROLL : TOKEN_ADMIN;
	snprintf(t.name, sizeof(t.name), "%s", enrollment ? "enrollment" : req.name);
	t.role = enrollment ? ROLE_VIEWER : req.role;
	memcpy(t.group, req.group, sizeof(t.group));
	t.uses_left = enrollment && req.uses ? req.uses : -1;
	t.created = rq->now;
	t.expires = req.expires_seconds ? rq->now + req.expires_seconds : 0;
	ret = rq->srv->store->ops->token_add(rq->srv->store, &t);
	if (ret) {
		reply_store_error(rp, ret, "token");
		goto out;
	}
	reply_json(rp, 201);
	if (buf_printf(&rp->body, "{\"id\":\"%s\",\"token\":\"%s\",\"kind\":\"%s\",", t.id, token,
		       enrollment ? "enrollment" : "admin") ||
	    (enrollment ? buf_printf(&rp->body, "\"group\":\"%s\",\"uses\":%" PRId64 "}\n", t.group,
				     t.uses_left)
			: buf_printf(&rp->body, "\"name\":\"%s\",\"role\":\"%s\"}\n", t.name,
				     proto_role_name(t.role))))
		oom(rp);
	snprintf(rp->audit, sizeof(rp->audit), "%s token %s made",
		 enrollment ? "enrollment" : "admin", t.id);
out:
	sodium_memzero(token, sizeof(token));
}

void admin_token_create(struct request *rq, struct reply *rp)
{
	token_create(rq, rp, false);
}

void admin_enroll_token_create(struct request *rq, struct reply *rp)
{
	token_create(rq, rp, true);
}

void admin_token_revoke(struct request *rq, struct reply *rp)
{
	int ret = rq->srv->store->ops->token_revoke(rq->srv->store, rq->arg[0]);

	if (ret) {
		reply_store_error(rp, ret, "token");
		return;
	}
	reply_json(rp, 200);
	if (buf_printf(&rp->body, "{\"id\":\"%s\",\"revoked\":true}\n", rq->arg[0]))
		oom(rp);
	snprintf(rp->audit, sizeof(rp->audit), "token %.64s revoked", rq->arg[0]);
}
