/*
 * Rollouts on the server around the pure controller of lib/rollout.h: what to feed it (deltas
 * of each agent's counters, its ring and its group's policy, ring populations), when to tick
 * it, and what to keep (snapshots and decisions in the store).
 */
#include "fleet.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/rollout.h"

/* Rollouts held in memory (the newest); older ones stay in the store. */
#define FLEET_MAX_ROLLOUTS  64u
#define FLEET_MAX_GROUPS    4096u
#define FLEET_MAX_RELEASES  4096u
#define FLEET_MAX_APPROVALS 64u

/* An agent's stored track: the content lane's, then the sensor lane's. */
_Static_assert(FLEET_LANES * sizeof(struct rollout_track) <= STORE_TRACK_BYTES,
	       "both lanes' tracks fit the store");

struct fl_release {
	uint64_t version;
	char hash[STORE_HASH_BYTES];
	int64_t size;
	enum fleet_lane lane;
};

struct fl_rollout {
	int64_t id;
	struct fl_release rel;
	struct rollout *ctl;
	int64_t created;
	size_t n_approved;
	char approved[FLEET_MAX_APPROVALS][STORE_NAME_BYTES];
	bool dirty;			     /* counters changed since the last snapshot */
	int64_t persisted_at;		     /* when the snapshot was last stored */
	const struct rollout_decision *mark; /* the last decision already in the store */
};

struct fl_group {
	char name[STORE_NAME_BYTES];
	struct store_policy policy;
};

struct fleet {
	pthread_mutex_t lock;
	struct store *st;
	unsigned heartbeat_s;
	struct fl_rollout *rollouts; /* oldest first */
	size_t n_rollouts;
	struct fl_group *groups;
	size_t n_groups;
	struct fl_release *releases;
	size_t n_releases;
	int64_t population_at[FLEET_LANES];
	char *snap_b64; /* scratch for snapshots, rollout_snapshot_size() in base64 */
	void *snap;
	size_t snap_b64_len;
};

/* --- lookups (lock held) --- */

static const struct fl_release *release_by_version(const struct fleet *f, enum fleet_lane lane,
						   uint64_t v)
{
	for (size_t i = f->n_releases; i-- > 0;)
		if (f->releases[i].lane == lane && f->releases[i].version == v)
			return &f->releases[i];
	return NULL;
}

static struct fl_release *release_by_hash(struct fleet *f, const char *hash)
{
	for (size_t i = 0; i < f->n_releases; i++)
		if (strcmp(f->releases[i].hash, hash) == 0)
			return &f->releases[i];
	return NULL;
}

static const struct store_policy *policy_of(const struct fleet *f, const char *group)
{
	static const struct store_policy def = {.ring = FLEET_DEFAULT_RING};
	for (size_t i = 0; i < f->n_groups; i++)
		if (strcmp(f->groups[i].name, group) == 0)
			return &f->groups[i].policy;
	return &def;
}

static struct fl_rollout *rollout_by_id(struct fleet *f, int64_t id)
{
	for (size_t i = 0; i < f->n_rollouts; i++)
		if (f->rollouts[i].id == id)
			return &f->rollouts[i];
	return NULL;
}

/* The rollout that decides for agents in @lane: the newest one of that lane. */
static struct fl_rollout *live(struct fleet *f, enum fleet_lane lane)
{
	for (size_t i = f->n_rollouts; i-- > 0;)
		if (f->rollouts[i].rel.lane == lane)
			return &f->rollouts[i];
	return NULL;
}

const char *fleet_lane_name(enum fleet_lane lane)
{
	return lane == FLEET_SENSOR ? "sensor" : "content";
}

static bool approved(const struct fl_rollout *r, const char *group)
{
	for (size_t i = 0; i < r->n_approved; i++)
		if (strcmp(r->approved[i], group) == 0)
			return true;
	return false;
}

/* The controller's view of a group's policy for rollout @r. */
static void to_policy(const struct store_policy *sp, const struct fl_rollout *r, const char *group,
		      struct rollout_policy *p)
{
	rollout_policy_default(p);
	/* a pin names a content version; pause, delay, windows and approval apply to both */
	p->pin = sp->has_pin && r->rel.lane == FLEET_CONTENT ? sp->pin : 0;
	p->paused = sp->paused;
	p->delay_s = sp->delay_hours * 3600u;
	p->approval_required = sp->approval_required;
	p->approved = r && approved(r, group) ? rollout_version(r->ctl) : 0;
	p->n_windows = 0;
	for (size_t i = 0; i < sp->n_windows && i < ROLLOUT_MAX_WINDOWS; i++) {
		unsigned start = sp->windows[i].start_minute % 1440u;
		unsigned end = sp->windows[i].end_minute % 1440u;
		p->windows[i].start_s = start * 60u;
		p->windows[i].len_s = ((end + 1440u - start) % 1440u) * 60u;
		p->n_windows = (uint32_t)i + 1;
	}
}

static uint64_t delta(int64_t now, int64_t before)
{
	/* a counter that went down was reset (the agent lost its state): count it whole */
	if (now < 0)
		return 0;
	return now >= before ? (uint64_t)(now - before) : (uint64_t)now;
}

static uint32_t clamp32(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* --- persistence (lock held) --- */

static int meta_json(const struct fl_rollout *r, struct buf *b)
{
	int ret = buf_append_str(b, "{\"approved\":[");
	for (size_t i = 0; !ret && i < r->n_approved; i++)
		ret = buf_printf(b, "%s\"%s\"", i ? "," : "", r->approved[i]);
	return ret ? ret : buf_append_str(b, "]}");
}

/* Stores the decisions @r made since its mark. */
static void persist_decisions(struct fleet *f, struct fl_rollout *r)
{
	size_t n = rollout_decision_count(r->ctl), first = 0;
	struct buf b;

	/* the mark's place: after it come the new ones; gone from the log, all are new */
	for (size_t i = n; r->mark && i-- > 0;) {
		if (rollout_decision(r->ctl, i) == r->mark) {
			first = i + 1;
			break;
		}
	}
	buf_init(&b, 1 << 16);
	for (size_t i = first; i < n; i++) {
		const struct rollout_decision *d = rollout_decision(r->ctl, i);
		struct store_decision sd = {0};
		buf_reset(&b);
		if (rollout_decision_json(d, &b))
			continue;
		sd.rollout_id = r->id;
		sd.at = d->at;
		snprintf(sd.kind, sizeof(sd.kind), "%s", rollout_action_name(d->action));
		sd.detail = b.data;
		if (f->st->ops->decision_add(f->st, &sd))
			fprintf(stderr,
				"vigil-server: cannot store a decision of rollout %" PRId64 "\n",
				r->id);
	}
	buf_release(&b);
	if (n)
		r->mark = rollout_decision(r->ctl, n - 1);
}

/* Writes @r (state, notes, snapshot) and its new decisions to the store. */
static int persist(struct fleet *f, struct fl_rollout *r, int64_t now)
{
	struct store_rollout sr = {0};
	struct buf meta;
	int ret;

	buf_init(&meta, 1 << 16);
	ret = meta_json(r, &meta);
	if (ret)
		goto out;
	rollout_snapshot(r->ctl, f->snap);
	sodium_bin2base64(f->snap_b64, f->snap_b64_len, f->snap, rollout_snapshot_size(),
			  sodium_base64_VARIANT_ORIGINAL);
	sr.id = r->id;
	memcpy(sr.release_hash, r->rel.hash, sizeof(sr.release_hash));
	snprintf(sr.state, sizeof(sr.state), "%s", rollout_state_name(rollout_state(r->ctl)));
	sr.created = r->created;
	sr.updated = now;
	sr.meta = meta.data;
	sr.controller = f->snap_b64;
	ret = f->st->ops->rollout_update(f->st, &sr);
	if (!ret) {
		r->dirty = false;
		r->persisted_at = now;
	}
	persist_decisions(f, r);
out:
	buf_release(&meta);
	return ret;
}

/* Forgets the oldest rollout held, never the newest of a lane (it decides for agents). */
static void drop_oldest(struct fleet *f)
{
	size_t i = 0;

	while (i + 1 < f->n_rollouts && live(f, f->rollouts[i].rel.lane) == &f->rollouts[i])
		i++;
	rollout_free(f->rollouts[i].ctl);
	memmove(&f->rollouts[i], &f->rollouts[i + 1],
		(f->n_rollouts - i - 1) * sizeof(f->rollouts[0]));
	f->n_rollouts--;
}

static int load_release(const struct store_release *r, void *ctx)
{
	fleet_release_added(ctx, r);
	return 0;
}

static int load_group(const struct store_group *g, void *ctx)
{
	fleet_group_changed(ctx, g);
	return 0;
}

static int load_rollout(const struct store_rollout *sr, void *ctx)
{
	struct fleet *f = ctx;
	struct fl_rollout *r;
	struct fl_release *rel;
	struct rollout *ctl = NULL;
	size_t len = 0, i;
	json_t *meta, *x;
	char err[256];

	rel = release_by_hash(f, sr->release_hash);
	if (!rel)
		return 0;
	if (sodium_base642bin(f->snap, rollout_snapshot_size(), sr->controller,
			      strlen(sr->controller), NULL, &len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) ||
	    rollout_restore(f->snap, len, &ctl, err, sizeof(err))) {
		fprintf(stderr, "vigil-server: rollout %" PRId64 " cannot be resumed (%s)\n",
			sr->id, len ? err : "no controller state");
		return 0;
	}
	if (f->n_rollouts == FLEET_MAX_ROLLOUTS)
		drop_oldest(f);
	r = &f->rollouts[f->n_rollouts++];
	memset(r, 0, sizeof(*r));
	r->id = sr->id;
	r->rel = *rel;
	r->ctl = ctl;
	r->created = sr->created;
	meta = json_loads(sr->meta, 0, NULL);
	json_array_foreach(json_object_get(meta, "approved"), i, x)
	{
		if (i >= FLEET_MAX_APPROVALS || !json_is_string(x) ||
		    json_string_length(x) >= STORE_NAME_BYTES)
			break;
		memcpy(r->approved[i], json_string_value(x), json_string_length(x) + 1);
		r->n_approved = i + 1;
	}
	json_decref(meta);
	size_t n = rollout_decision_count(ctl);
	r->mark = n ? rollout_decision(ctl, n - 1) : NULL;
	return 0;
}

void fleet_release_added(struct fleet *f, const struct store_release *r)
{
	pthread_mutex_lock(&f->lock);
	if (f->n_releases < FLEET_MAX_RELEASES && !release_by_hash(f, r->hash)) {
		struct fl_release *x = &f->releases[f->n_releases++];
		x->version = r->version;
		memcpy(x->hash, r->hash, sizeof(x->hash));
		x->size = r->size;
		x->lane = strcmp(r->kind, "sensor") == 0 ? FLEET_SENSOR : FLEET_CONTENT;
	}
	pthread_mutex_unlock(&f->lock);
}

void fleet_group_changed(struct fleet *f, const struct store_group *g)
{
	size_t i;

	pthread_mutex_lock(&f->lock);
	for (i = 0; i < f->n_groups; i++)
		if (strcmp(f->groups[i].name, g->name) == 0)
			break;
	if (i < FLEET_MAX_GROUPS) {
		memcpy(f->groups[i].name, g->name, sizeof(g->name));
		f->groups[i].policy = g->policy;
		if (i == f->n_groups)
			f->n_groups++;
	}
	/* a ring may have changed: count again at the next tick */
	memset(f->population_at, 0, sizeof(f->population_at));
	pthread_mutex_unlock(&f->lock);
}

void fleet_free(struct fleet *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_rollouts; i++)
		rollout_free(f->rollouts[i].ctl);
	pthread_mutex_destroy(&f->lock);
	free(f->rollouts);
	free(f->groups);
	free(f->releases);
	free(f->snap);
	free(f->snap_b64);
	free(f);
}

struct recount_ctx {
	struct fl_rollout *live[FLEET_LANES];
	struct rollout_recount rc[FLEET_LANES];
	int64_t now;
};

static int recount_agent(const struct store_agent *a, void *p)
{
	struct recount_ctx *c = p;

	for (int lane = 0; lane < FLEET_LANES; lane++) {
		struct rollout_track t;
		if (!c->live[lane] || a->track_len < (size_t)(lane + 1) * sizeof(t))
			continue;
		memcpy(&t, a->track + (size_t)lane * sizeof(t), sizeof(t));
		rollout_recount(c->live[lane]->ctl, &c->rc[lane], &t, c->now);
	}
	return 0;
}

/* Rebuilds the live rollouts' silence counts from the stored tracks, then resumes them all. */
static int recount(struct fleet *f, struct store *st, int64_t now)
{
	struct recount_ctx c = {.now = now};
	bool any = false;
	int ret = 0;

	for (int lane = 0; lane < FLEET_LANES; lane++) {
		struct fl_rollout *r = live(f, (enum fleet_lane)lane);
		enum rollout_state s = r ? rollout_state(r->ctl) : ROLLOUT_COMPLETE;
		/* only a rollout still watching its agents counts silence */
		if (s != ROLLOUT_ROLLING && s != ROLLOUT_PAUSED)
			continue;
		c.live[lane] = r;
		rollout_recount_begin(r->ctl, &c.rc[lane]);
		any = true;
	}
	if (any)
		ret = st->ops->agent_list(st, NULL, "", 0, recount_agent, &c);
	for (size_t i = 0; i < f->n_rollouts; i++) {
		struct fl_rollout *r = &f->rollouts[i];
		if (r == c.live[r->rel.lane])
			rollout_recount_end(r->ctl, &c.rc[r->rel.lane], now);
		else
			rollout_resumed(r->ctl, now);
	}
	return ret;
}

int fleet_open(struct store *st, unsigned heartbeat_s, int64_t now, struct fleet **out, char *err,
	       size_t errlen)
{
	struct fleet *f = calloc(1, sizeof(*f));
	int ret;

	if (!f)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_init(&f->lock, NULL);
	f->st = st;
	f->heartbeat_s = heartbeat_s;
	f->snap_b64_len =
	    sodium_base64_ENCODED_LEN(rollout_snapshot_size(), sodium_base64_VARIANT_ORIGINAL);
	f->rollouts = calloc(FLEET_MAX_ROLLOUTS, sizeof(*f->rollouts));
	f->groups = calloc(FLEET_MAX_GROUPS, sizeof(*f->groups));
	f->releases = calloc(FLEET_MAX_RELEASES, sizeof(*f->releases));
	f->snap = malloc(rollout_snapshot_size());
	f->snap_b64 = malloc(f->snap_b64_len);
	if (!f->rollouts || !f->groups || !f->releases || !f->snap || !f->snap_b64) {
		ret = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out_free;
	}
	if ((ret = st->ops->release_list(st, load_release, f)) ||
	    (ret = st->ops->group_list(st, load_group, f)) ||
	    (ret = st->ops->rollout_list(st, load_rollout, f))) {
		err_set(err, errlen, ret, "cannot load rollouts from the store");
		goto out_free;
	}
	/* when each agent was last heard from is rebuilt from the agents' tracks, stored with
	 * every heartbeat, and the time this server was away is no agent's silence */
	if ((ret = recount(f, st, now))) {
		err_set(err, errlen, ret, "cannot read the agents' tracks from the store");
		goto out_free;
	}
	*out = f;
	return 0;
out_free:
	fleet_free(f);
	return ret;
}

/* --- heartbeats and the tick --- */

/*
 * What the controller of @lane knows of agent @a reporting @h (ring set by the caller). The
 * sensor lane places the agent by another key, so a sensor build picks other canaries than a
 * content release of the same version number.
 */
static void agent_of(const struct store_agent *a, const struct store_health *h,
		     enum fleet_lane lane, struct rollout_agent *ag)
{
	if (lane == FLEET_SENSOR) {
		char id[STORE_ID_BYTES + 8];
		int n = snprintf(id, sizeof(id), "sensor/%s", a->id);
		ag->key = rollout_agent_key(id, n > 0 ? (size_t)n : 0);
		ag->active = h->sensor_build;
		ag->quarantined = h->sensor_quarantined;
		ag->n_quarantined = h->n_sensor_quarantined;
		return;
	}
	ag->key = rollout_agent_key(a->id, strlen(a->id));
	ag->active = h->has_content ? h->content_version : 0;
	ag->quarantined = h->quarantined;
	ag->n_quarantined = h->n_quarantined;
}

/* The answer of rollout @r's controller as what the agent is told (f->lock held). */
static void set_target(struct fleet *f, const struct fl_rollout *r,
		       const struct rollout_answer *ans, struct fleet_target *out)
{
	out->rollout_id = r->id;
	out->why = rollout_why_name(ans->why);
	out->audit_mode = ans->baking;
	if (ans->why == ROLLOUT_WHY_pulled)
		out->pulled = rollout_version(r->ctl);
	if (ans->version) {
		const struct fl_release *rel = release_by_version(f, r->rel.lane, ans->version);
		out->has = true;
		out->version = ans->version;
		if (rel) {
			out->known = true;
			memcpy(out->hash, rel->hash, sizeof(out->hash));
			out->size = rel->size;
		}
	}
}

int fleet_heartbeat(struct fleet *f, const struct store_agent *a, const struct store_health *h,
		    int64_t now, struct fleet_target out[FLEET_LANES], uint8_t *track,
		    size_t *track_len)
{
	const struct store_health *prev = &a->health;
	struct rollout_track t[FLEET_LANES];
	struct rollout_report rep = {0};
	const struct store_policy *sp;

	memset(out, 0, FLEET_LANES * sizeof(*out));
	for (int lane = 0; lane < FLEET_LANES; lane++) {
		/* a track stored before the sensor lane existed holds the content lane's only */
		if (a->track_len >= (size_t)(lane + 1) * sizeof(t[0]))
			memcpy(&t[lane], a->track + (size_t)lane * sizeof(t[0]), sizeof(t[0]));
		else
			rollout_track_init(&t[lane]);
	}
	rep.interval_s =
	    a->last_seen > 0 && now > a->last_seen ? clamp32((uint64_t)(now - a->last_seen)) : 0;
	rep.restarts = clamp32(delta(h->restarts, prev->restarts));
	rep.liveness_failed = delta(h->liveness_failed, prev->liveness_failed) > 0;
	rep.drops = delta(h->drops, prev->drops);
	rep.alerts = delta(h->alerts, prev->alerts);
	rep.cpu_pct = h->cpu_percent;

	pthread_mutex_lock(&f->lock);
	sp = policy_of(f, a->group);
	for (int lane = 0; lane < FLEET_LANES; lane++) {
		struct rollout_agent ag = {0};
		struct rollout_policy pol;
		struct rollout_answer ans = {0};
		struct fl_rollout *r = live(f, (enum fleet_lane)lane);

		/* each lane counts its own crash-loop reverts; the rest is the host's health */
		rep.reverts = lane == FLEET_SENSOR
				  ? clamp32(delta(h->sensor_reverts, prev->sensor_reverts))
				  : clamp32(delta(h->crash_loop_reverts, prev->crash_loop_reverts));
		if (!r) {
			rollout_track_observe(&t[lane], &rep);
			continue;
		}
		agent_of(a, h, (enum fleet_lane)lane, &ag);
		ag.ring = sp->ring;
		to_policy(sp, r, a->group, &pol);
		enum rollout_state state = rollout_state(r->ctl);
		if (state == ROLLOUT_ROLLING || state == ROLLOUT_PAUSED) {
			rollout_heartbeat(r->ctl, &t[lane], &ag, &pol, &rep, now, &ans);
			r->dirty = true;
		} else {
			rollout_track_observe(&t[lane], &rep);
			rollout_desired(r->ctl, &ag, &pol, now, &ans);
		}
		set_target(f, r, &ans, &out[lane]);
	}
	pthread_mutex_unlock(&f->lock);
	memcpy(track, t, sizeof(t));
	*track_len = sizeof(t);
	return 0;
}

int fleet_target_of(struct fleet *f, const struct store_agent *a, int64_t now,
		    struct fleet_target out[FLEET_LANES])
{
	const struct store_policy *sp;

	memset(out, 0, FLEET_LANES * sizeof(*out));
	pthread_mutex_lock(&f->lock);
	sp = policy_of(f, a->group);
	for (int lane = 0; lane < FLEET_LANES; lane++) {
		struct rollout_agent ag = {0};
		struct rollout_policy pol;
		struct rollout_answer ans = {0};
		struct fl_rollout *r = live(f, (enum fleet_lane)lane);
		if (!r)
			continue;
		agent_of(a, &a->health, (enum fleet_lane)lane, &ag);
		ag.ring = sp->ring;
		to_policy(sp, r, a->group, &pol);
		rollout_desired(r->ctl, &ag, &pol, now, &ans);
		set_target(f, r, &ans, &out[lane]);
	}
	pthread_mutex_unlock(&f->lock);
	return 0;
}

struct pop_ctx {
	struct fleet *f;
	uint64_t rings[ROLLOUT_MAX_RINGS];
	uint32_t last_ring;
};

static int count_group(const char *group, int64_t agents, void *p)
{
	struct pop_ctx *c = p;
	unsigned ring = policy_of(c->f, group)->ring;
	if (ring > c->last_ring)
		ring = c->last_ring;
	if (agents > 0)
		c->rings[ring] += (uint64_t)agents;
	return 0;
}

/* Tells rollout @r how many agents each ring holds (lock held). */
static void count_population(struct fleet *f, struct fl_rollout *r, int64_t now)
{
	struct pop_ctx c = {.f = f};
	const struct rollout_plan *plan = rollout_get_plan(r->ctl);

	c.last_ring = plan->n_rings ? plan->n_rings - 1 : 0;
	if (f->st->ops->agent_groups(f->st, count_group, &c))
		return;
	for (uint32_t i = 0; i < plan->n_rings; i++)
		rollout_set_population(r->ctl, i, c.rings[i]);
	f->population_at[r->rel.lane] = now;
}

void fleet_tick(struct fleet *f, int64_t now)
{
	pthread_mutex_lock(&f->lock);
	for (int lane = 0; lane < FLEET_LANES; lane++) {
		struct fl_rollout *r = live(f, (enum fleet_lane)lane);
		if (!r)
			continue;
		enum rollout_state s = rollout_state(r->ctl);
		if ((s == ROLLOUT_ROLLING || s == ROLLOUT_PAUSED) &&
		    now - f->population_at[lane] >= FLEET_POPULATION_PERIOD)
			count_population(f, r, now);
		if (rollout_tick(r->ctl, now) >= 0)
			r->dirty = true;
		/* stored at least once a heartbeat interval while it runs, so that a restarted
		 * server knows when it went away (rollout_resumed) */
		if ((s == ROLLOUT_ROLLING || s == ROLLOUT_PAUSED) &&
		    now - r->persisted_at >= (int64_t)f->heartbeat_s)
			r->dirty = true;
		if (r->dirty && persist(f, r, now))
			fprintf(stderr, "vigil-server: cannot store rollout %" PRId64 "\n", r->id);
	}
	pthread_mutex_unlock(&f->lock);
}

/* --- admin actions --- */

int fleet_default_plan_json(struct buf *out)
{
	struct rollout_plan p;
	int ret = buf_append_char(out, '[');

	rollout_plan_default(&p);
	for (uint32_t i = 0; !ret && i < p.n_steps; i++)
		ret = buf_printf(out, "%s{\"ring\":%u,\"percent\":%g,\"bake_seconds\":%u}",
				 i ? "," : "", p.steps[i].ring, p.steps[i].bp / 100.0,
				 p.steps[i].bake_s);
	return ret ? ret : buf_append_char(out, ']');
}

static void apply_gates(const struct proto_gates *g, struct rollout_gates *out)
{
	static const enum rollout_gate order[PROTO_GATE_COUNT] = {
	    ROLLOUT_GATE_silence,  ROLLOUT_GATE_reverts, ROLLOUT_GATE_restarts,
	    ROLLOUT_GATE_liveness, ROLLOUT_GATE_alerts,	 ROLLOUT_GATE_drops,
	    ROLLOUT_GATE_cpu};

	if (!g->set)
		return;
	if (g->min_agents >= 0)
		out->min_agents = (uint32_t)g->min_agents;
	if (g->min_bad >= 0)
		out->min_bad = (uint32_t)g->min_bad;
	if (g->silence_k >= 0)
		out->silence_k = (uint32_t)g->silence_k;
	if (g->tolerance > 0)
		out->tolerance = g->tolerance;
	if (g->alpha > 0)
		out->alpha = g->alpha;
	if (g->floor_per_hour > 0)
		out->floor_per_hour = g->floor_per_hour;
	if (g->alert_ratio > 0)
		out->alert_ratio = g->alert_ratio;
	if (g->cpu_ratio > 0)
		out->cpu_ratio = g->cpu_ratio;
	for (unsigned i = 0; i < PROTO_GATE_COUNT; i++)
		if (g->disabled & (1u << i))
			out->enabled &= ~(1u << order[i]);
}

/* The plan of @req: its steps, or the default plan; the server's heartbeat; its gates. */
static void make_plan(const struct fleet *f, const struct proto_rollout_start *req,
		      struct rollout_plan *p)
{
	struct rollout_gates g;

	rollout_plan_default(p);
	rollout_gates_default(&g);
	apply_gates(&req->gates, &g);
	if (req->has_plan) {
		p->n_steps = (uint32_t)req->n_steps;
		p->n_rings = req->steps[req->n_steps - 1].ring + 1;
		for (size_t i = 0; i < req->n_steps; i++) {
			p->steps[i].ring = req->steps[i].ring;
			p->steps[i].bp = (uint32_t)lround(req->steps[i].percent * 100.0);
			p->steps[i].bake_s = (uint32_t)req->steps[i].bake_seconds;
		}
	}
	for (uint32_t i = 0; i < p->n_steps; i++)
		p->steps[i].gates = g;
	p->heartbeat_s = f->heartbeat_s;
}

int fleet_start(struct fleet *f, const struct proto_rollout_start *req, const char *who,
		int64_t now, int64_t *id, char *err, size_t errlen)
{
	struct store_rollout sr = {0};
	struct rollout_plan plan;
	struct fl_rollout *r, *cur;
	struct fl_release *rel;
	struct rollout *ctl = NULL;
	uint64_t previous = 0;
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	rel = release_by_hash(f, req->release);
	if (!rel) {
		ret = err_set(err, errlen, -ENOENT, "no release %s", req->release);
		goto out;
	}
	/* the two lanes roll independently: one rollout at a time in each */
	cur = live(f, rel->lane);
	if (cur) {
		enum rollout_state s = rollout_state(cur->ctl);
		if (s == ROLLOUT_ROLLING || s == ROLLOUT_PAUSED) {
			ret =
			    err_set(err, errlen, -EBUSY,
				    "%s rollout %" PRId64 " is %s: halt it or let it finish first",
				    fleet_lane_name(rel->lane), cur->id, rollout_state_name(s));
			goto out;
		}
		/* the previous good version: what the newest rollout left generally available */
		previous =
		    s == ROLLOUT_COMPLETE ? rollout_version(cur->ctl) : rollout_previous(cur->ctl);
	}
	for (size_t i = 0; i < f->n_rollouts && !req->force; i++) {
		const struct fl_rollout *o = &f->rollouts[i];
		if (strcmp(o->rel.hash, rel->hash) == 0 &&
		    rollout_state(o->ctl) == ROLLOUT_HALTED) {
			ret = err_set(err, errlen, -ESTALE,
				      "release %" PRIu64 " was pulled by rollout %" PRId64
				      "; force to roll it out again",
				      rel->version, o->id);
			goto out;
		}
	}
	make_plan(f, req, &plan);
	ret = rollout_new(&plan, rel->version, previous, req->force, now, &ctl, err, errlen);
	if (ret)
		goto out;
	if (f->n_rollouts == FLEET_MAX_ROLLOUTS)
		drop_oldest(f);
	memcpy(sr.release_hash, rel->hash, sizeof(sr.release_hash));
	snprintf(sr.state, sizeof(sr.state), "%s", rollout_state_name(ROLLOUT_ROLLING));
	sr.created = sr.updated = now;
	sr.meta = "{}";
	sr.controller = "";
	ret = f->st->ops->rollout_add(f->st, &sr);
	if (ret) {
		err_set(err, errlen, ret, "cannot store the rollout");
		rollout_free(ctl);
		goto out;
	}
	r = &f->rollouts[f->n_rollouts++];
	memset(r, 0, sizeof(*r));
	r->id = sr.id;
	r->rel = *rel;
	r->ctl = ctl;
	r->created = now;
	count_population(f, r, now);
	ret = persist(f, r, now);
	if (ret)
		err_set(err, errlen, ret, "cannot store the rollout");
	*id = r->id;
	(void)who;
out:
	pthread_mutex_unlock(&f->lock);
	return ret;
}

/* Stores an approval, which the controller does not log itself. */
static void decide_approval(struct fleet *f, const struct fl_rollout *r, const char *group,
			    const char *who, int64_t now)
{
	struct store_decision d = {0};
	char detail[256];

	snprintf(detail, sizeof(detail),
		 "{\"at\":%" PRId64 ",\"action\":\"approve\",\"step\":%u,\"manual\":true,"
		 "\"group\":\"%s\",\"reason\":\"approved by %s\"}",
		 now, rollout_step(r->ctl), group, who);
	d.rollout_id = r->id;
	d.at = now;
	snprintf(d.kind, sizeof(d.kind), "approve");
	d.detail = detail;
	if (f->st->ops->decision_add(f->st, &d))
		fprintf(stderr, "vigil-server: cannot store an approval of rollout %" PRId64 "\n",
			r->id);
}

int fleet_act(struct fleet *f, int64_t id, enum fleet_action act, const char *group,
	      const char *who, int64_t now, char *err, size_t errlen)
{
	struct fl_rollout *r;
	char reason[ROLLOUT_REASON_BYTES];
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	r = rollout_by_id(f, id);
	if (!r) {
		ret =
		    err_set(err, errlen, -ENOENT, "no rollout %" PRId64 " held by this server", id);
		goto out;
	}
	switch (act) {
	case FLEET_PAUSE:
		snprintf(reason, sizeof(reason), "paused by %s", who);
		ret = rollout_pause(r->ctl, now, reason);
		break;
	case FLEET_RESUME:
		snprintf(reason, sizeof(reason), "resumed by %s", who);
		ret = rollout_resume(r->ctl, now, reason);
		break;
	case FLEET_HALT:
		if (rollout_state(r->ctl) == ROLLOUT_COMPLETE) {
			ret = err_set(err, errlen, -EINVAL,
				      "rollout %" PRId64 " is complete: roll it back instead", id);
			goto out;
		}
		snprintf(reason, sizeof(reason), "halted by %s", who);
		ret = rollout_halt(r->ctl, now, reason);
		break;
	case FLEET_ROLLBACK:
		snprintf(reason, sizeof(reason), "rolled back by %s", who);
		ret = rollout_halt(r->ctl, now, reason);
		break;
	case FLEET_PROMOTE:
		snprintf(reason, sizeof(reason), "promoted by %s", who);
		ret = rollout_promote(r->ctl, now, reason);
		break;
	case FLEET_APPROVE: {
		enum rollout_state s = rollout_state(r->ctl);
		if (s != ROLLOUT_ROLLING && s != ROLLOUT_PAUSED) {
			ret = -EINVAL;
			break;
		}
		if (!approved(r, group)) {
			if (r->n_approved >= FLEET_MAX_APPROVALS) {
				ret = err_set(err, errlen, -ENOSPC, "too many approvals");
				goto out;
			}
			snprintf(r->approved[r->n_approved++], STORE_NAME_BYTES, "%s", group);
		}
		decide_approval(f, r, group, who, now);
		break;
	}
	}
	if (ret) {
		err_set(err, errlen, -EINVAL, "rollout %" PRId64 " is %s", id,
			rollout_state_name(rollout_state(r->ctl)));
		ret = -EINVAL;
		goto out;
	}
	ret = persist(f, r, now);
	if (ret)
		err_set(err, errlen, ret, "cannot store the rollout");
out:
	pthread_mutex_unlock(&f->lock);
	return ret;
}

int fleet_emergency_stop(struct fleet *f, const char *who, int64_t now, size_t *halted)
{
	char reason[ROLLOUT_REASON_BYTES];
	size_t n = 0;
	int ret = 0;

	snprintf(reason, sizeof(reason), "emergency stop by %s", who);
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_rollouts; i++) {
		struct fl_rollout *r = &f->rollouts[i];
		enum rollout_state s = rollout_state(r->ctl);
		if (s != ROLLOUT_ROLLING && s != ROLLOUT_PAUSED)
			continue;
		if (rollout_halt(r->ctl, now, reason) == 0)
			n++;
		int e = persist(f, r, now);
		if (e)
			ret = e;
	}
	pthread_mutex_unlock(&f->lock);
	*halted = n;
	return ret;
}

static int time_or_null(struct buf *b, const char *key, int64_t t)
{
	return t < 0 ? buf_printf(b, ",\"%s\":null", key)
		     : buf_printf(b, ",\"%s\":%" PRId64, key, t);
}

static int rollout_json(struct fl_rollout *r, int64_t now, struct buf *b)
{
	const struct rollout_plan *p = rollout_get_plan(r->ctl);
	struct rollout_evidence ev[ROLLOUT_GATE_COUNT];
	int ret;

	ret = buf_printf(b,
			 "{\"id\":%" PRId64 ",\"kind\":\"%s\",\"state\":\"%s\","
			 "\"release\":{\"version\":%" PRIu64 ",\"hash\":\"%s\",\"size\":%" PRId64
			 "},\"previous\":%" PRIu64 ",\"created\":%" PRId64 ",\"step\":%u",
			 r->id, fleet_lane_name(r->rel.lane),
			 rollout_state_name(rollout_state(r->ctl)), r->rel.version, r->rel.hash,
			 r->rel.size, rollout_previous(r->ctl), r->created, rollout_step(r->ctl));
	if (!ret)
		ret = time_or_null(b, "started", rollout_started_at(r->ctl));
	if (!ret)
		ret = time_or_null(b, "step_started", rollout_step_started_at(r->ctl));
	if (!ret)
		ret = time_or_null(b, "available_at", rollout_available_at(r->ctl));
	if (!ret)
		ret = time_or_null(b, "halted_at", rollout_halted_at(r->ctl));
	if (!ret)
		ret = buf_append_str(b, ",\"approved\":[");
	for (size_t i = 0; !ret && i < r->n_approved; i++)
		ret = buf_printf(b, "%s\"%s\"", i ? "," : "", r->approved[i]);
	if (!ret)
		ret = buf_printf(b, "],\"rings\":%u,\"plan\":[", p->n_rings);
	for (uint32_t i = 0; !ret && i < p->n_steps; i++)
		ret = buf_printf(b, "%s{\"ring\":%u,\"percent\":%g,\"bake_seconds\":%u}",
				 i ? "," : "", p->steps[i].ring, p->steps[i].bp / 100.0,
				 p->steps[i].bake_s);
	if (!ret)
		ret = buf_append_str(b, "],\"gates\":{");
	rollout_evaluate(r->ctl, now, ev);
	for (int g = 0; !ret && g < ROLLOUT_GATE_COUNT; g++) {
		static const char *const verdicts[] = {"pass", "fail", "off"};
		ret = buf_printf(b,
				 "%s\"%s\":{\"verdict\":\"%s\",\"agents\":%" PRIu64
				 ",\"bad\":%" PRIu64 ",\"exposed_rate\":%.6g,\"control_rate\":%.6g,"
				 "\"limit\":%.6g}",
				 g ? "," : "", rollout_gate_name((enum rollout_gate)g),
				 (unsigned)ev[g].verdict < 3 ? verdicts[ev[g].verdict] : "?",
				 ev[g].agents, ev[g].bad,
				 isfinite(ev[g].exposed_rate) ? ev[g].exposed_rate : 0.0,
				 isfinite(ev[g].control_rate) ? ev[g].control_rate : 0.0,
				 isfinite(ev[g].limit) ? ev[g].limit : 0.0);
	}
	return ret ? ret : buf_append_str(b, "}}");
}

int fleet_rollout_json(struct fleet *f, int64_t id, int64_t now, struct buf *out)
{
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	if (id) {
		struct fl_rollout *r = rollout_by_id(f, id);
		ret = r ? rollout_json(r, now, out) : -ENOENT;
	} else {
		ret = buf_append_char(out, '[');
		for (size_t i = 0; !ret && i < f->n_rollouts; i++) {
			if (i)
				ret = buf_append_char(out, ',');
			if (!ret)
				ret = rollout_json(&f->rollouts[i], now, out);
		}
		if (!ret)
			ret = buf_append_char(out, ']');
	}
	pthread_mutex_unlock(&f->lock);
	return ret;
}
