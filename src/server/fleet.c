/*
 * Rollouts on the server: plans, promotion after bake times, halts and pulls, group policy,
 * and the per-agent target. Everything that decides is a pure function of the rollout, the
 * policy, the agent and the time; this file adds the locking, the counters fed by
 * heartbeats, and persistence (the rollout row's plan and controller JSON, decisions).
 */
#include "fleet.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/event_json.h"

#define FLEET_MAX_ROLLOUTS 256u
#define FLEET_MAX_GROUPS 4096u
#define FLEET_MAX_RELEASES 4096u
#define FLEET_MAX_APPROVALS 64u
/* Distinct agents remembered per rollout for the quarantine gate. */
#define FLEET_GATE_AGENTS 64u
/* Agents that must report a release quarantined before it halts. */
#define FLEET_GATE_QUARANTINE_MIN 1u

enum rstate { R_ACTIVE, R_PAUSED, R_HALTED, R_COMPLETED, R_ROLLED_BACK };
static const char *const rstate_names[] = {"active", "paused", "halted", "completed",
					   "rolled-back"};

struct fl_release {
	uint64_t version;
	char hash[STORE_HASH_BYTES];
	int64_t size;
	bool content;
};

struct fl_rollout {
	int64_t id;
	struct fl_release rel;
	enum rstate state;
	int64_t created;
	size_t n_steps;
	struct proto_plan_step steps[PROTO_MAX_PLAN_STEPS];
	size_t step;
	int64_t step_started;
	bool has_prev;
	struct fl_release prev;
	size_t n_approved;
	char approved[FLEET_MAX_APPROVALS][STORE_NAME_BYTES];
	/* fed by heartbeats; rebuilt after a restart as agents report */
	uint64_t heartbeats_on;	 /* heartbeats from agents running the release */
	uint64_t heartbeats_off; /* from agents running something else */
	size_t n_quarantined;
	char quarantined_by[FLEET_GATE_AGENTS][STORE_ID_BYTES];
};

struct fl_group {
	char name[STORE_NAME_BYTES];
	struct store_policy policy;
};

struct fleet {
	pthread_mutex_t lock;
	struct store *st;
	struct fl_rollout *rollouts;
	size_t n_rollouts;
	struct fl_group *groups;
	size_t n_groups;
	struct fl_release *releases;
	size_t n_releases;
	/* general availability: the last completed release, and the one before it */
	bool has_ga, has_ga_prev;
	struct fl_release ga, ga_prev;
	int64_t ga_at;
};

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

/* --- pure decisions --- */

/* The agent's place in [0, 10000) for @hash: stable for the pair (agent, release). */
static unsigned bucket(const char *agent_id, const char *hash)
{
	uint8_t d[8];
	crypto_generichash_state s;

	crypto_generichash_init(&s, NULL, 0, sizeof(d));
	crypto_generichash_update(&s, (const unsigned char *)agent_id, strlen(agent_id));
	crypto_generichash_update(&s, (const unsigned char *)"/", 1);
	crypto_generichash_update(&s, (const unsigned char *)hash, strlen(hash));
	crypto_generichash_final(&s, d, sizeof(d));
	uint64_t x = 0;
	for (int i = 0; i < 8; i++)
		x = x << 8 | d[i];
	return (unsigned)(x % 10000u);
}

/* True when the steps up to the current one reach an agent of @ring at @b. */
static bool exposed(const struct fl_rollout *r, unsigned ring, unsigned b)
{
	for (size_t i = 0; i <= r->step && i < r->n_steps; i++) {
		const struct proto_plan_step *s = &r->steps[i];
		if (s->ring > ring)
			return true;
		if (s->ring == ring && (double)b < s->percent * 100.0)
			return true;
	}
	return false;
}

static bool in_window(const struct store_policy *p, int64_t now)
{
	if (p->n_windows == 0)
		return true;
	time_t t = (time_t)now;
	struct tm tm;
	gmtime_r(&t, &tm);
	unsigned minute = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
	for (size_t i = 0; i < p->n_windows; i++) {
		const struct store_window *w = &p->windows[i];
		if (w->start_minute < w->end_minute) {
			if ((w->days & (1u << tm.tm_wday)) && minute >= w->start_minute &&
			    minute < w->end_minute)
				return true;
		} else {
			/* past midnight: the part before midnight belongs to its start day */
			int yday = (tm.tm_wday + 6) % 7;
			if ((w->days & (1u << tm.tm_wday)) && minute >= w->start_minute)
				return true;
			if ((w->days & (1u << yday)) && minute < w->end_minute)
				return true;
		}
	}
	return false;
}

static bool approved(const struct fl_rollout *r, const char *group)
{
	for (size_t i = 0; i < r->n_approved; i++)
		if (strcmp(r->approved[i], group) == 0)
			return true;
	return false;
}

static bool pulled(const struct fl_rollout *r)
{
	return r->state == R_HALTED || r->state == R_ROLLED_BACK;
}

static void set_target(struct fleet_target *t, const struct fl_release *r)
{
	t->has = true;
	t->version = r->version;
	memcpy(t->hash, r->hash, sizeof(t->hash));
	t->size = r->size;
}

static const struct fl_release *release_by_version(const struct fleet *f, uint64_t v)
{
	for (size_t i = f->n_releases; i-- > 0;)
		if (f->releases[i].content && f->releases[i].version == v)
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

/* The content the agent @id of @group, running @h, should run at @now. */
static void target_of(const struct fleet *f, const char *id, const char *group,
		      const struct store_health *h, int64_t now, struct fleet_target *t)
{
	const struct store_policy *p = policy_of(f, group);

	memset(t, 0, sizeof(*t));
	if (p->paused)
		return;
	if (p->has_pin) {
		const struct fl_release *r = release_by_version(f, p->pin);
		if (r)
			set_target(t, r);
		goto window;
	}
	if (f->has_ga && now >= f->ga_at + (int64_t)p->delay_hours * 3600)
		set_target(t, &f->ga);
	else if (f->has_ga && f->has_ga_prev)
		set_target(t, &f->ga_prev);
	for (size_t i = 0; i < f->n_rollouts; i++) {
		const struct fl_rollout *r = &f->rollouts[i];
		if (!r->rel.content)
			continue;
		if (r->state == R_ACTIVE || r->state == R_PAUSED) {
			if (p->delay_hours == 0 && (!p->approval_required || approved(r, group)) &&
			    exposed(r, p->ring, bucket(id, r->rel.hash))) {
				set_target(t, &r->rel);
				t->audit_mode = true;
				t->rollout_id = r->id;
			}
		} else if (pulled(r)) {
			bool runs = h->has_content && h->content_version == r->rel.version;
			if (runs || (t->has && t->version == r->rel.version)) {
				memset(t, 0, sizeof(*t));
				if (r->has_prev)
					set_target(t, &r->prev);
				t->rollout_id = r->id;
			}
		}
	}
window:
	/* outside a maintenance window nothing changes */
	if (t->has && !(h->has_content && h->content_version == t->version) && !in_window(p, now))
		memset(t, 0, sizeof(*t));
}

/* --- persistence --- */

static int plan_json(const struct fl_rollout *r, struct buf *b)
{
	int ret = buf_append_char(b, '[');
	for (size_t i = 0; !ret && i < r->n_steps; i++)
		ret = buf_printf(b, "%s{\"ring\":%u,\"percent\":%g,\"bake_seconds\":%" PRId64 "}",
				 i ? "," : "", r->steps[i].ring, r->steps[i].percent,
				 r->steps[i].bake_seconds);
	return ret ? ret : buf_append_char(b, ']');
}

static int release_json(const struct fl_release *r, struct buf *b)
{
	return buf_printf(b, "{\"version\":%" PRIu64 ",\"hash\":\"%s\",\"size\":%" PRId64 "}",
			  r->version, r->hash, r->size);
}

static int controller_json(const struct fl_rollout *r, struct buf *b)
{
	int ret = buf_printf(b, "{\"step\":%zu,\"step_started\":%" PRId64 ",\"prev\":", r->step,
			     r->step_started);
	if (!ret)
		ret = r->has_prev ? release_json(&r->prev, b) : buf_append_str(b, "null");
	if (!ret)
		ret = buf_append_str(b, ",\"approved\":[");
	for (size_t i = 0; !ret && i < r->n_approved; i++)
		ret = buf_printf(b, "%s\"%s\"", i ? "," : "", r->approved[i]);
	return ret ? ret : buf_append_str(b, "]}");
}

/* Writes @r's state to the store. Returns 0 or -errno. */
static int persist(struct fleet *f, const struct fl_rollout *r, int64_t now)
{
	struct store_rollout sr = {0};
	struct buf plan, ctl;
	int ret;

	buf_init(&plan, 1 << 16);
	buf_init(&ctl, 1 << 16);
	ret = plan_json(r, &plan);
	if (!ret)
		ret = controller_json(r, &ctl);
	if (ret)
		goto out;
	sr.id = r->id;
	memcpy(sr.release_hash, r->rel.hash, sizeof(sr.release_hash));
	snprintf(sr.state, sizeof(sr.state), "%s", rstate_names[r->state]);
	sr.created = r->created;
	sr.updated = now;
	sr.plan = plan.data;
	sr.controller = ctl.data;
	ret = f->st->ops->rollout_update(f->st, &sr);
out:
	buf_release(&plan);
	buf_release(&ctl);
	return ret;
}

/* Stores a decision about @r with @detail (a JSON object's members, without braces). */
static void decide(struct fleet *f, const struct fl_rollout *r, const char *kind, int64_t now,
		   const char *who, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void decide(struct fleet *f, const struct fl_rollout *r, const char *kind, int64_t now,
		   const char *who, const char *fmt, ...)
{
	struct store_decision d = {0};
	struct buf b;
	char extra[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(extra, sizeof(extra), fmt, ap);
	va_end(ap);
	buf_init(&b, 8192);
	if (buf_printf(&b,
		       "{\"by\":\"%s\",\"release\":{\"version\":%" PRIu64 ",\"hash\":\"%s\"},"
		       "\"step\":%zu,\"heartbeats_on_release\":%" PRIu64
		       ",\"heartbeats_off_release\":%" PRIu64 ",\"agents_quarantined\":%zu%s%s}",
		       who, r->rel.version, r->rel.hash, r->step, r->heartbeats_on,
		       r->heartbeats_off, r->n_quarantined, extra[0] ? "," : "", extra) == 0) {
		d.rollout_id = r->id;
		d.at = now;
		snprintf(d.kind, sizeof(d.kind), "%s", kind);
		d.detail = b.data;
		if (f->st->ops->decision_add(f->st, &d))
			fprintf(stderr, "vigil-server: cannot store decision %s of rollout %" PRId64
					"\n",
				kind, r->id);
	}
	buf_release(&b);
}

static int ga_save(struct fleet *f)
{
	struct buf b;
	int ret;

	buf_init(&b, 4096);
	ret = buf_printf(&b, "{\"at\":%" PRId64 ",\"ga\":", f->ga_at);
	if (!ret)
		ret = f->has_ga ? release_json(&f->ga, &b) : buf_append_str(&b, "null");
	if (!ret)
		ret = buf_append_str(&b, ",\"prev\":");
	if (!ret)
		ret = f->has_ga_prev ? release_json(&f->ga_prev, &b) : buf_append_str(&b, "null");
	if (!ret)
		ret = buf_append_char(&b, '}');
	if (!ret)
		ret = f->st->ops->meta_set(f->st, "ga.content", b.data);
	buf_release(&b);
	return ret;
}

static bool release_from_json(json_t *j, struct fl_release *r)
{
	json_t *v = json_object_get(j, "version"), *h = json_object_get(j, "hash"),
	       *s = json_object_get(j, "size");
	if (!json_is_integer(v) || !json_is_string(h) || !json_is_integer(s) ||
	    json_string_length(h) != 64)
		return false;
	memset(r, 0, sizeof(*r));
	r->version = (uint64_t)json_integer_value(v);
	memcpy(r->hash, json_string_value(h), 65);
	r->size = json_integer_value(s);
	r->content = true;
	return true;
}

static void ga_load(struct fleet *f)
{
	char text[4096];
	json_t *j;

	if (f->st->ops->meta_get(f->st, "ga.content", text, sizeof(text)))
		return;
	j = json_loads(text, 0, NULL);
	if (!j)
		return;
	f->ga_at = json_integer_value(json_object_get(j, "at"));
	f->has_ga = release_from_json(json_object_get(j, "ga"), &f->ga);
	f->has_ga_prev = release_from_json(json_object_get(j, "prev"), &f->ga_prev);
	json_decref(j);
}

static struct fl_release *release_by_hash(struct fleet *f, const char *hash)
{
	for (size_t i = 0; i < f->n_releases; i++)
		if (strcmp(f->releases[i].hash, hash) == 0)
			return &f->releases[i];
	return NULL;
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
	json_t *plan = NULL, *ctl = NULL, *x;
	size_t i;

	if (f->n_rollouts >= FLEET_MAX_ROLLOUTS)
		return 0;
	rel = release_by_hash(f, sr->release_hash);
	if (!rel)
		return 0;
	r = &f->rollouts[f->n_rollouts];
	memset(r, 0, sizeof(*r));
	r->id = sr->id;
	r->rel = *rel;
	r->created = sr->created;
	for (int s = 0; s < 5; s++)
		if (strcmp(sr->state, rstate_names[s]) == 0)
			r->state = (enum rstate)s;
	plan = json_loads(sr->plan, 0, NULL);
	ctl = json_loads(sr->controller, 0, NULL);
	json_array_foreach(plan, i, x)
	{
		if (i >= PROTO_MAX_PLAN_STEPS)
			break;
		r->steps[i].ring = (unsigned)json_integer_value(json_object_get(x, "ring"));
		r->steps[i].percent = json_number_value(json_object_get(x, "percent"));
		r->steps[i].bake_seconds = json_integer_value(json_object_get(x, "bake_seconds"));
		r->n_steps = i + 1;
	}
	r->step = (size_t)json_integer_value(json_object_get(ctl, "step"));
	r->step_started = json_integer_value(json_object_get(ctl, "step_started"));
	r->has_prev = release_from_json(json_object_get(ctl, "prev"), &r->prev);
	json_array_foreach(json_object_get(ctl, "approved"), i, x)
	{
		if (i >= FLEET_MAX_APPROVALS || !json_is_string(x) ||
		    json_string_length(x) >= STORE_NAME_BYTES)
			break;
		memcpy(r->approved[i], json_string_value(x), json_string_length(x) + 1);
		r->n_approved = i + 1;
	}
	json_decref(plan);
	json_decref(ctl);
	if (r->n_steps == 0 || r->step >= r->n_steps)
		return 0;
	f->n_rollouts++;
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
		x->content = strcmp(r->kind, "content") == 0;
	}
	pthread_mutex_unlock(&f->lock);
}

void fleet_group_changed(struct fleet *f, const struct store_group *g)
{
	pthread_mutex_lock(&f->lock);
	size_t i;
	for (i = 0; i < f->n_groups; i++)
		if (strcmp(f->groups[i].name, g->name) == 0)
			break;
	if (i < FLEET_MAX_GROUPS) {
		memcpy(f->groups[i].name, g->name, sizeof(g->name));
		f->groups[i].policy = g->policy;
		if (i == f->n_groups)
			f->n_groups++;
	}
	pthread_mutex_unlock(&f->lock);
}

void fleet_free(struct fleet *f)
{
	if (!f)
		return;
	pthread_mutex_destroy(&f->lock);
	free(f->rollouts);
	free(f->groups);
	free(f->releases);
	free(f);
}

int fleet_open(struct store *st, int64_t now, struct fleet **out, char *err, size_t errlen)
{
	struct fleet *f = calloc(1, sizeof(*f));
	int ret;

	if (!f)
		return fail(err, errlen, -ENOMEM, "out of memory");
	pthread_mutex_init(&f->lock, NULL);
	f->st = st;
	f->rollouts = calloc(FLEET_MAX_ROLLOUTS, sizeof(*f->rollouts));
	f->groups = calloc(FLEET_MAX_GROUPS, sizeof(*f->groups));
	f->releases = calloc(FLEET_MAX_RELEASES, sizeof(*f->releases));
	if (!f->rollouts || !f->groups || !f->releases) {
		ret = fail(err, errlen, -ENOMEM, "out of memory");
		goto out_free;
	}
	if ((ret = st->ops->release_list(st, load_release, f)) ||
	    (ret = st->ops->group_list(st, load_group, f)) ||
	    (ret = st->ops->rollout_list(st, load_rollout, f))) {
		fail(err, errlen, ret, "cannot load rollouts from the store");
		goto out_free;
	}
	ga_load(f);
	(void)now;
	*out = f;
	return 0;
out_free:
	fleet_free(f);
	return ret;
}

/* --- heartbeats and the tick --- */

int fleet_heartbeat(struct fleet *f, const char *id, const char *group,
		    const struct store_health *h, int64_t now, struct fleet_target *out)
{
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_rollouts; i++) {
		struct fl_rollout *r = &f->rollouts[i];
		if (r->state != R_ACTIVE && r->state != R_PAUSED)
			continue;
		if (h->has_content && h->content_version == r->rel.version)
			r->heartbeats_on++;
		else
			r->heartbeats_off++;
		for (size_t q = 0; q < h->n_quarantined; q++) {
			if (h->quarantined[q] != r->rel.version)
				continue;
			bool seen = false;
			for (size_t k = 0; k < r->n_quarantined; k++)
				seen |= strcmp(r->quarantined_by[k], id) == 0;
			if (!seen && r->n_quarantined < FLEET_GATE_AGENTS)
				memcpy(r->quarantined_by[r->n_quarantined++], id, STORE_ID_BYTES);
		}
	}
	target_of(f, id, group, h, now, out);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static void complete(struct fleet *f, struct fl_rollout *r, int64_t now)
{
	r->state = R_COMPLETED;
	if (f->has_ga && strcmp(f->ga.hash, r->rel.hash) != 0) {
		f->ga_prev = f->ga;
		f->has_ga_prev = true;
	}
	f->ga = r->rel;
	f->has_ga = true;
	f->ga_at = now;
	ga_save(f);
}

void fleet_tick(struct fleet *f, int64_t now)
{
	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_rollouts; i++) {
		struct fl_rollout *r = &f->rollouts[i];
		if (r->state != R_ACTIVE)
			continue;
		if (r->n_quarantined >= FLEET_GATE_QUARANTINE_MIN) {
			r->state = R_HALTED;
			persist(f, r, now);
			decide(f, r, "halt", now, "controller",
			       "\"gate\":\"crash-loop-quarantine\",\"threshold\":%u",
			       FLEET_GATE_QUARANTINE_MIN);
			decide(f, r, "pull", now, "controller", "\"to\":%" PRIu64,
			       r->has_prev ? r->prev.version : 0);
			continue;
		}
		if (now - r->step_started < r->steps[r->step].bake_seconds)
			continue;
		if (r->step + 1 < r->n_steps) {
			r->step++;
			r->step_started = now;
			persist(f, r, now);
			decide(f, r, "promote", now, "controller",
			       "\"to_ring\":%u,\"to_percent\":%g", r->steps[r->step].ring,
			       r->steps[r->step].percent);
		} else {
			complete(f, r, now);
			persist(f, r, now);
			decide(f, r, "complete", now, "controller", "%s", "");
		}
	}
	pthread_mutex_unlock(&f->lock);
}

/* --- admin actions --- */

static const struct proto_plan_step default_plan[] = {
    {0, 100.0, FLEET_DEFAULT_BAKE_RING0}, {1, 100.0, FLEET_DEFAULT_BAKE_RING1},
    {2, 1.0, FLEET_DEFAULT_BAKE_RING2},	  {2, 10.0, FLEET_DEFAULT_BAKE_RING2},
    {2, 50.0, FLEET_DEFAULT_BAKE_RING2},  {2, 100.0, FLEET_DEFAULT_BAKE_RING2},
};

int fleet_default_plan_json(struct buf *out)
{
	struct fl_rollout r = {0};
	r.n_steps = sizeof(default_plan) / sizeof(default_plan[0]);
	memcpy(r.steps, default_plan, sizeof(default_plan));
	return plan_json(&r, out);
}

/* The highest ring any agent is in: the default ring or a group's. */
static unsigned top_ring(const struct fleet *f)
{
	unsigned top = FLEET_DEFAULT_RING;
	for (size_t i = 0; i < f->n_groups; i++)
		if (f->groups[i].policy.ring > top)
			top = f->groups[i].policy.ring;
	return top;
}

int fleet_start(struct fleet *f, const struct proto_rollout_start *req, const char *who,
		int64_t now, int64_t *id, char *err, size_t errlen)
{
	struct store_rollout sr = {0};
	struct fl_rollout *r;
	struct fl_release *rel;
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	rel = release_by_hash(f, req->release);
	if (!rel) {
		ret = fail(err, errlen, -ENOENT, "no release %s", req->release);
		goto out;
	}
	if (!rel->content) {
		ret = fail(err, errlen, -EINVAL, "only content releases roll out here");
		goto out;
	}
	if (f->n_rollouts >= FLEET_MAX_ROLLOUTS) {
		ret = fail(err, errlen, -ENOSPC, "too many rollouts");
		goto out;
	}
	for (size_t i = 0; i < f->n_rollouts; i++) {
		const struct fl_rollout *o = &f->rollouts[i];
		if (o->rel.content && (o->state == R_ACTIVE || o->state == R_PAUSED)) {
			ret = fail(err, errlen, -EBUSY,
				   "rollout %" PRId64 " is %s: halt or finish it first", o->id,
				   rstate_names[o->state]);
			goto out;
		}
		if (strcmp(o->rel.hash, rel->hash) == 0 && pulled(o) && !req->force) {
			ret = fail(err, errlen, -EINVAL,
				   "release %" PRIu64 " was pulled by rollout %" PRId64
				   "; use force to roll it out again",
				   rel->version, o->id);
			goto out;
		}
	}
	r = &f->rollouts[f->n_rollouts];
	memset(r, 0, sizeof(*r));
	r->rel = *rel;
	if (req->has_plan) {
		r->n_steps = req->n_steps;
		memcpy(r->steps, req->steps, req->n_steps * sizeof(req->steps[0]));
	} else {
		r->n_steps = sizeof(default_plan) / sizeof(default_plan[0]);
		memcpy(r->steps, default_plan, sizeof(default_plan));
	}
	if (r->steps[0].ring >= top_ring(f) && r->steps[0].percent >= 100.0 && !req->force) {
		ret = fail(err, errlen, -EINVAL,
			   "the plan's first step reaches the whole fleet (ring %u at 100%%); "
			   "refused unless forced",
			   r->steps[0].ring);
		goto out;
	}
	if (f->has_ga && f->ga.version != rel->version) {
		r->has_prev = true;
		r->prev = f->ga;
	}
	r->state = R_ACTIVE;
	r->created = now;
	r->step_started = now;
	memcpy(sr.release_hash, rel->hash, sizeof(sr.release_hash));
	snprintf(sr.state, sizeof(sr.state), "%s", rstate_names[R_ACTIVE]);
	sr.created = sr.updated = now;
	sr.plan = "[]";
	sr.controller = "{}";
	ret = f->st->ops->rollout_add(f->st, &sr);
	if (ret) {
		fail(err, errlen, ret, "cannot store the rollout");
		goto out;
	}
	r->id = sr.id;
	ret = persist(f, r, now);
	if (ret) {
		fail(err, errlen, ret, "cannot store the rollout");
		goto out;
	}
	f->n_rollouts++;
	decide(f, r, "start", now, who, "\"steps\":%zu,\"forced\":%s", r->n_steps,
	       req->force ? "true" : "false");
	*id = r->id;
out:
	pthread_mutex_unlock(&f->lock);
	return ret;
}

static struct fl_rollout *rollout_by_id(struct fleet *f, int64_t id)
{
	for (size_t i = 0; i < f->n_rollouts; i++)
		if (f->rollouts[i].id == id)
			return &f->rollouts[i];
	return NULL;
}

int fleet_act(struct fleet *f, int64_t id, enum fleet_action act, const char *group,
	      const char *who, int64_t now, char *err, size_t errlen)
{
	struct fl_rollout *r;
	enum rstate before;
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	r = rollout_by_id(f, id);
	if (!r) {
		ret = fail(err, errlen, -ENOENT, "no rollout %" PRId64, id);
		goto out;
	}
	before = r->state;
	switch (act) {
	case FLEET_PAUSE:
		if (r->state != R_ACTIVE)
			goto bad_state;
		r->state = R_PAUSED;
		decide(f, r, "pause", now, who, "%s", "");
		break;
	case FLEET_RESUME:
		if (r->state != R_PAUSED)
			goto bad_state;
		r->state = R_ACTIVE;
		/* the bake of the current step starts over */
		r->step_started = now;
		decide(f, r, "resume", now, who, "%s", "");
		break;
	case FLEET_HALT:
		if (r->state != R_ACTIVE && r->state != R_PAUSED)
			goto bad_state;
		r->state = R_HALTED;
		decide(f, r, "halt", now, who, "\"gate\":\"manual\"");
		decide(f, r, "pull", now, who, "\"to\":%" PRIu64, r->has_prev ? r->prev.version : 0);
		break;
	case FLEET_ROLLBACK:
		if (r->state == R_ROLLED_BACK)
			goto bad_state;
		if (r->state == R_COMPLETED && f->has_ga && strcmp(f->ga.hash, r->rel.hash) == 0) {
			/* general availability goes back to what it was */
			f->has_ga = r->has_prev;
			if (r->has_prev)
				f->ga = r->prev;
			f->has_ga_prev = false;
			ga_save(f);
		}
		r->state = R_ROLLED_BACK;
		decide(f, r, "pull", now, who, "\"to\":%" PRIu64 ",\"rollback\":true",
		       r->has_prev ? r->prev.version : 0);
		break;
	case FLEET_APPROVE:
		if (r->state != R_ACTIVE && r->state != R_PAUSED)
			goto bad_state;
		if (!approved(r, group)) {
			if (r->n_approved >= FLEET_MAX_APPROVALS) {
				ret = fail(err, errlen, -ENOSPC, "too many approvals");
				goto out;
			}
			snprintf(r->approved[r->n_approved++], STORE_NAME_BYTES, "%s", group);
		}
		decide(f, r, "approve", now, who, "\"group\":\"%s\"", group);
		break;
	}
	ret = persist(f, r, now);
	if (ret)
		fail(err, errlen, ret, "cannot store the rollout");
	goto out;
bad_state:
	ret = fail(err, errlen, -EINVAL, "rollout %" PRId64 " is %s", id, rstate_names[before]);
out:
	pthread_mutex_unlock(&f->lock);
	return ret;
}

int fleet_emergency_stop(struct fleet *f, const char *who, int64_t now, size_t *halted)
{
	size_t n = 0;
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	for (size_t i = 0; i < f->n_rollouts; i++) {
		struct fl_rollout *r = &f->rollouts[i];
		if (r->state != R_ACTIVE && r->state != R_PAUSED)
			continue;
		r->state = R_HALTED;
		int e = persist(f, r, now);
		if (e)
			ret = e;
		decide(f, r, "halt", now, who, "\"gate\":\"emergency-stop\"");
		decide(f, r, "pull", now, who, "\"to\":%" PRIu64, r->has_prev ? r->prev.version : 0);
		n++;
	}
	pthread_mutex_unlock(&f->lock);
	*halted = n;
	return ret;
}

static int rollout_json(const struct fl_rollout *r, struct buf *b)
{
	int ret = buf_printf(b,
			     "{\"id\":%" PRId64 ",\"state\":\"%s\",\"release\":", r->id,
			     rstate_names[r->state]);
	if (!ret)
		ret = release_json(&r->rel, b);
	if (!ret)
		ret = buf_printf(b,
				 ",\"created\":%" PRId64 ",\"step\":%zu,\"step_started\":%" PRId64
				 ",\"heartbeats_on_release\":%" PRIu64
				 ",\"heartbeats_off_release\":%" PRIu64
				 ",\"agents_quarantined\":%zu,\"previous\":",
				 r->created, r->step, r->step_started, r->heartbeats_on,
				 r->heartbeats_off, r->n_quarantined);
	if (!ret)
		ret = r->has_prev ? release_json(&r->prev, b) : buf_append_str(b, "null");
	if (!ret)
		ret = buf_append_str(b, ",\"approved\":[");
	for (size_t i = 0; !ret && i < r->n_approved; i++)
		ret = buf_printf(b, "%s\"%s\"", i ? "," : "", r->approved[i]);
	if (!ret)
		ret = buf_append_str(b, "],\"plan\":");
	if (!ret)
		ret = plan_json(r, b);
	return ret ? ret : buf_append_char(b, '}');
}

int fleet_rollout_json(struct fleet *f, int64_t id, struct buf *out)
{
	int ret = 0;

	pthread_mutex_lock(&f->lock);
	if (id) {
		const struct fl_rollout *r = rollout_by_id(f, id);
		ret = r ? rollout_json(r, out) : -ENOENT;
	} else {
		ret = buf_append_char(out, '[');
		for (size_t i = 0; !ret && i < f->n_rollouts; i++) {
			if (i)
				ret = buf_append_char(out, ',');
			if (!ret)
				ret = rollout_json(&f->rollouts[i], out);
		}
		if (!ret)
			ret = buf_append_char(out, ']');
	}
	pthread_mutex_unlock(&f->lock);
	return ret;
}
