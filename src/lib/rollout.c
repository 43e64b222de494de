/*
 * The rollout controller: plans, per-agent answers, cohort counters updated per heartbeat, and
 * the gates that promote or halt a release. Everything is O(1) per heartbeat and per tick, so a
 * fleet of millions costs a few counters, not a scan.
 */
#include "rollout.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* rollout_track.state: the cohort (low two bits), the problems the agent was counted for in
 * it, and whether it reported running the release */
enum { COHORT_NONE, COHORT_CONTROL, COHORT_EXPOSED };
#define COHORT_MASK 3u
#define F_RESTARTS  (1u << 2)
#define F_REVERTS   (1u << 3)
#define F_LIVENESS  (1u << 4)
#define F_DROPS	    (1u << 5)
#define F_RUNNING   (1u << 6)

/* Silence is found by a histogram of last heartbeats in buckets of a quarter interval; buckets
 * that age past the threshold are folded into a count. The live buckets (threshold / bucket + 4
 * of them, at most 68) sit in a ring of SILENCE_SLOTS. */
#define SILENCE_SLOTS 128u
/* Server outages remembered within one rollout; past it the oldest two are merged. */
#define ROLLOUT_MAX_SHIFTS 8u
#define SLOT(b)		   ((uint64_t)(b) & (SILENCE_SLOTS - 1))

#define SNAPSHOT_MAGIC	0x4f52475600000000ull /* "VGRO" */
#define SNAPSHOT_FORMAT 1u

/* Exposed cohort (agents offered the release) and control cohort (agents not offered it). */
struct cohort {
	uint64_t agents;
	uint64_t running;		  /* exposed: reported running the release */
	uint64_t bad[ROLLOUT_GATE_COUNT]; /* distinct agents; silence: agents gone silent */
	uint64_t alerts;		  /* over run_s */
	double run_s;			  /* seconds covered by its rate samples */
	double cpu_n, cpu_sum, cpu_sq;	  /* CPU against the agent's own baseline */
	uint64_t silent_now;		  /* silent at the last advance */
	uint64_t live[SILENCE_SLOTS];	  /* agents by bucket of their last heartbeat */
};

struct rollout {
	uint64_t magic;
	uint32_t format;
	uint32_t size;
	struct rollout_plan plan;
	uint64_t version;
	uint64_t previous;
	uint32_t state;
	uint32_t step;
	int64_t started;
	int64_t step_started;
	int64_t paused_at;    /* -1 when not paused */
	int64_t paused_s;     /* paused time within the current step */
	int64_t available_at; /* -1 */
	int64_t halted_at;    /* -1 */
	bool population_known;
	uint64_t population[ROLLOUT_MAX_RINGS];
	uint64_t step_reported[ROLLOUT_MAX_STEPS + 1]; /* agents running it, by the step that
							  reached them (last: after GA) */
	double offer_sum; /* sum over offered agents of (offer time - started) */
	uint32_t bucket_s;
	uint32_t silence_s;
	uint32_t slots;
	int64_t cursor;	     /* oldest bucket not yet folded into silent_now */
	int64_t advanced_to; /* the latest time advance() saw, and its bucket */
	int64_t advanced_bucket;
	int64_t restored_from; /* advanced_to as the snapshot held it; -1 */
	/* the controller's own outages (server restarts): a heartbeat from before shifts[i].until
	 * counts shifts[i].buckets later, so the time the server was away is nobody's silence */
	uint32_t n_shifts;
	struct {
		int64_t until;
		int64_t buckets;
	} shifts[ROLLOUT_MAX_SHIFTS];
	double bucket_inv;    /* 1 / bucket_s */
	struct cohort c[2];   /* [0] control, [1] exposed */
	uint64_t n_decisions; /* ever recorded; the log keeps the last ROLLOUT_MAX_DECISIONS */
	struct rollout_decision log[ROLLOUT_MAX_DECISIONS];
};

#define CONTROL(r) (&(r)->c[0])
#define EXPOSED(r) (&(r)->c[1])

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Messages are for people; one cut short by the buffer is still a message. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* --- names --- */

const char *rollout_gate_name(enum rollout_gate g)
{
	static const char *const names[] = {
#define X(name) #name,
	    ROLLOUT_GATES(X)
#undef X
	};
	return (unsigned)g < ROLLOUT_GATE_COUNT ? names[g] : "?";
}

const char *rollout_state_name(enum rollout_state s)
{
	switch (s) {
	case ROLLOUT_ROLLING:
		return "rolling";
	case ROLLOUT_PAUSED:
		return "paused";
	case ROLLOUT_HALTED:
		return "halted";
	case ROLLOUT_COMPLETE:
		return "complete";
	}
	return "?";
}

const char *rollout_why_name(enum rollout_why w)
{
	static const char *const names[] = {
#define X(name, text) #name,
	    ROLLOUT_WHYS(X)
#undef X
	};
	return (unsigned)w < ROLLOUT_WHY_COUNT ? names[w] : "?";
}

const char *rollout_why_text(enum rollout_why w)
{
	static const char *const texts[] = {
#define X(name, text) text,
	    ROLLOUT_WHYS(X)
#undef X
	};
	return (unsigned)w < ROLLOUT_WHY_COUNT ? texts[w] : "?";
}

const char *rollout_action_name(enum rollout_action a)
{
	switch (a) {
	case ROLLOUT_ACT_START:
		return "start";
	case ROLLOUT_ACT_PROMOTE:
		return "promote";
	case ROLLOUT_ACT_COMPLETE:
		return "complete";
	case ROLLOUT_ACT_HALT:
		return "halt";
	case ROLLOUT_ACT_PULL:
		return "pull";
	case ROLLOUT_ACT_PAUSE:
		return "pause";
	case ROLLOUT_ACT_RESUME:
		return "resume";
	}
	return "?";
}

/* --- plans --- */

void rollout_gates_default(struct rollout_gates *g)
{
	memset(g, 0, sizeof(*g));
	g->enabled = ROLLOUT_GATES_ALL;
	g->min_agents = 50;
	g->min_bad = 2;
	g->tolerance = 3.0;
	g->alpha = 1e-4;
	g->floor_per_hour = 0.001;
	g->alert_ratio = 5.0;
	g->cpu_ratio = 1.15;
	g->silence_k = 2;
	g->revert_floor_per_hour = 1e-5;
}

void rollout_plan_default(struct rollout_plan *p)
{
	static const struct {
		uint32_t ring, bp, bake_s;
	} steps[] = {
	    {0, 10000, 900}, {1, 10000, 1800}, {2, 100, 3600},
	    {2, 1000, 3600}, {2, 5000, 3600},  {2, 10000, 3600},
	};

	memset(p, 0, sizeof(*p));
	p->n_rings = 3;
	p->heartbeat_s = 60;
	p->n_steps = sizeof(steps) / sizeof(steps[0]);
	for (uint32_t i = 0; i < p->n_steps; i++) {
		p->steps[i].ring = steps[i].ring;
		p->steps[i].bp = steps[i].bp;
		p->steps[i].bake_s = steps[i].bake_s;
		rollout_gates_default(&p->steps[i].gates);
	}
}

void rollout_plan_scale_bakes(struct rollout_plan *p, double factor)
{
	if (!(factor > 0))
		return;
	for (uint32_t i = 0; i < p->n_steps && i < ROLLOUT_MAX_STEPS; i++) {
		double s = ceil((double)p->steps[i].bake_s * factor);
		p->steps[i].bake_s = s > ROLLOUT_MAX_BAKE_S ? ROLLOUT_MAX_BAKE_S : (uint32_t)s;
	}
}

uint64_t rollout_plan_nominal_s(const struct rollout_plan *p)
{
	uint64_t s = 0;

	for (uint32_t i = 0; i < p->n_steps && i < ROLLOUT_MAX_STEPS; i++)
		s += p->steps[i].bake_s;
	return s;
}

static bool finite_at_least(double v, double min)
{
	return isfinite(v) && v >= min;
}

static int gates_validate(const struct rollout_gates *g, uint32_t i, char *err, size_t errlen)
{
	const char *bad = NULL;

	if (g->enabled & ~ROLLOUT_GATES_ALL)
		bad = "unknown gate enabled";
	else if (g->min_bad < 1)
		bad = "min_bad must be at least 1";
	else if (!finite_at_least(g->tolerance, 1.0))
		bad = "tolerance must be at least 1";
	else if (!(g->alpha > 0 && g->alpha <= 0.5))
		bad = "alpha must be in (0, 0.5]";
	else if (!(isfinite(g->floor_per_hour) && g->floor_per_hour > 0))
		bad = "floor_per_hour must be above 0";
	else if (!(isfinite(g->revert_floor_per_hour) && g->revert_floor_per_hour > 0))
		bad = "revert_floor_per_hour must be above 0";
	else if (!finite_at_least(g->alert_ratio, 1.0))
		bad = "alert_ratio must be at least 1";
	else if (!finite_at_least(g->cpu_ratio, 1.0))
		bad = "cpu_ratio must be at least 1";
	else if (g->silence_k < 1 || g->silence_k > ROLLOUT_MAX_SILENCE_K)
		bad = "silence_k must be from 1 to 16";
	if (bad) {
		set_err(err, errlen, "plan step %u: gates: %s", i + 1, bad);
		return -EINVAL;
	}
	return 0;
}

int rollout_plan_validate(const struct rollout_plan *p, bool force, char *err, size_t errlen)
{
	if (p->n_rings < 1 || p->n_rings > ROLLOUT_MAX_RINGS) {
		set_err(err, errlen, "plan: %u rings (1 to %u allowed)", p->n_rings,
			ROLLOUT_MAX_RINGS);
		return -EINVAL;
	}
	if (p->heartbeat_s < 1 || p->heartbeat_s > ROLLOUT_MAX_HEARTBEAT_S) {
		set_err(err, errlen, "plan: heartbeat interval %u s (1 to %u allowed)",
			p->heartbeat_s, ROLLOUT_MAX_HEARTBEAT_S);
		return -EINVAL;
	}
	if (p->n_steps < 1 || p->n_steps > ROLLOUT_MAX_STEPS) {
		set_err(err, errlen, "plan: %u steps (1 to %u allowed)", p->n_steps,
			ROLLOUT_MAX_STEPS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < p->n_steps; i++) {
		const struct rollout_step *s = &p->steps[i];
		if (s->ring >= p->n_rings) {
			set_err(err, errlen,
				"plan step %u: ring %u, but the fleet has rings 0 to %u", i + 1,
				s->ring, p->n_rings - 1);
			return -EINVAL;
		}
		if (s->bp < 1 || s->bp > ROLLOUT_BP) {
			set_err(err, errlen,
				"plan step %u: share %u.%02u%% (0.01%% to 100%% allowed)", i + 1,
				s->bp / 100, s->bp % 100);
			return -EINVAL;
		}
		if (s->bake_s > ROLLOUT_MAX_BAKE_S) {
			set_err(err, errlen, "plan step %u: bake %u s (at most %u s)", i + 1,
				s->bake_s, ROLLOUT_MAX_BAKE_S);
			return -EINVAL;
		}
		int ret = gates_validate(&s->gates, i, err, errlen);
		if (ret)
			return ret;
		if (s->gates.silence_k != p->steps[0].gates.silence_k) {
			set_err(err, errlen, "plan step %u: silence_k differs from step 1's",
				i + 1);
			return -EINVAL;
		}
		if (i > 0) {
			const struct rollout_step *q = &p->steps[i - 1];
			if (s->ring < q->ring || (s->ring == q->ring && s->bp <= q->bp)) {
				set_err(
				    err, errlen,
				    "plan step %u: reaches no more than step %u (each step must "
				    "reach further)",
				    i + 1, i);
				return -EINVAL;
			}
		}
	}
	const struct rollout_step *last = &p->steps[p->n_steps - 1];
	if (last->ring != p->n_rings - 1 || last->bp != ROLLOUT_BP) {
		set_err(err, errlen,
			"plan: the last step must reach every ring whole (ring %u, 100%%)",
			p->n_rings - 1);
		return -EINVAL;
	}
	if (p->steps[0].ring == p->n_rings - 1 && p->steps[0].bp == ROLLOUT_BP && !force) {
		set_err(
		    err, errlen,
		    "plan: the first step reaches the whole fleet at once (refused unless forced)");
		return -EPERM;
	}
	return 0;
}

int rollout_duration_parse(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	size_t i = 0;

	if (!s || s[0] < '0' || s[0] > '9')
		return -EINVAL;
	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		if (i >= 9)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	switch (s[i]) {
	case '\0':
	case 's':
		break;
	case 'm':
		mul = 60;
		break;
	case 'h':
		mul = 3600;
		break;
	case 'd':
		mul = 86400;
		break;
	default:
		return -EINVAL;
	}
	if (s[i] != '\0' && s[i + 1] != '\0')
		return -EINVAL;
	if (v * mul > 366ull * 86400)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

/* "100", "2.5", "0.01" (at most two decimals) to basis points. */
static int percent_parse(const char *s, uint32_t *bp)
{
	uint32_t whole = 0, frac = 0;
	size_t i = 0, digits = 0;

	for (; s[i] >= '0' && s[i] <= '9'; i++) {
		if (++digits > 3)
			return -EINVAL;
		whole = whole * 10 + (uint32_t)(s[i] - '0');
	}
	if (digits == 0)
		return -EINVAL;
	if (s[i] == '.') {
		size_t n = 0;
		for (i++; s[i] >= '0' && s[i] <= '9'; i++) {
			if (++n > 2)
				return -EINVAL;
			frac = frac * 10 + (uint32_t)(s[i] - '0');
		}
		if (n == 0)
			return -EINVAL;
		if (n == 1)
			frac *= 10;
	}
	if (s[i] == '%')
		i++;
	if (s[i] != '\0')
		return -EINVAL;
	*bp = whole * 100 + frac;
	return 0;
}

/* Copies the next word of @text (separated by spaces, tabs, commas, newlines) into @word.
 * Returns its length, 0 at the end, or -E2BIG when it does not fit. */
static int next_word(const char **text, char *word, size_t size)
{
	const char *p = *text;
	size_t n = 0;

	while (*p == ' ' || *p == '\t' || *p == ',' || *p == '\n' || *p == '\r')
		p++;
	while (*p && *p != ' ' && *p != '\t' && *p != ',' && *p != '\n' && *p != '\r') {
		if (n + 1 >= size)
			return -E2BIG;
		word[n++] = *p++;
	}
	word[n] = '\0';
	*text = p;
	return (int)n;
}

int rollout_plan_parse(const char *text, const struct rollout_gates *gates, struct rollout_plan *p,
		       char *err, size_t errlen)
{
	struct rollout_plan tmp = *p;
	char word[64];
	int n;

	if (strnlen(text, ROLLOUT_MAX_TEXT_BYTES + 1) > ROLLOUT_MAX_TEXT_BYTES) {
		set_err(err, errlen, "plan: longer than %u bytes", ROLLOUT_MAX_TEXT_BYTES);
		return -EINVAL;
	}
	tmp.n_steps = 0;
	while ((n = next_word(&text, word, sizeof(word))) != 0) {
		char *ring_s = word, *pct_s, *bake_s;
		uint64_t ring, bake;
		uint32_t bp;
		char *end;

		if (n < 0) {
			set_err(err, errlen, "plan step %u: too long", tmp.n_steps + 1);
			return -EINVAL;
		}
		if (tmp.n_steps == ROLLOUT_MAX_STEPS) {
			set_err(err, errlen, "plan: more than %u steps", ROLLOUT_MAX_STEPS);
			return -EINVAL;
		}
		pct_s = strchr(ring_s, ':');
		bake_s = pct_s ? strchr(pct_s + 1, ':') : NULL;
		if (!pct_s || !bake_s) {
			set_err(err, errlen, "plan step %u: '%s' is not RING:PERCENT:BAKE",
				tmp.n_steps + 1, word);
			return -EINVAL;
		}
		*pct_s++ = '\0';
		*bake_s++ = '\0';
		errno = 0;
		ring = strtoull(ring_s, &end, 10);
		if (errno || end == ring_s || *end || ring_s[0] == '-' ||
		    ring >= ROLLOUT_MAX_RINGS) {
			set_err(err, errlen, "plan step %u: ring '%s' is not 0 to %u",
				tmp.n_steps + 1, ring_s, ROLLOUT_MAX_RINGS - 1);
			return -EINVAL;
		}
		if (percent_parse(pct_s, &bp) || bp < 1 || bp > ROLLOUT_BP) {
			set_err(err, errlen, "plan step %u: share '%s' is not 0.01 to 100",
				tmp.n_steps + 1, pct_s);
			return -EINVAL;
		}
		if (rollout_duration_parse(bake_s, &bake) || bake > ROLLOUT_MAX_BAKE_S) {
			set_err(err, errlen, "plan step %u: bake '%s' is not a duration up to 30d",
				tmp.n_steps + 1, bake_s);
			return -EINVAL;
		}
		struct rollout_step *s = &tmp.steps[tmp.n_steps++];
		s->ring = (uint32_t)ring;
		s->bp = bp;
		s->bake_s = (uint32_t)bake;
		s->gates = *gates;
	}
	if (tmp.n_steps == 0) {
		set_err(err, errlen, "plan: no steps");
		return -EINVAL;
	}
	*p = tmp;
	return 0;
}

static int append_bake(struct buf *out, uint32_t s)
{
	if (s && s % 3600 == 0)
		return buf_printf(out, "%uh", s / 3600);
	if (s && s % 60 == 0)
		return buf_printf(out, "%um", s / 60);
	return buf_printf(out, "%us", s);
}

static int append_percent(struct buf *out, uint32_t bp)
{
	if (bp % 100 == 0)
		return buf_printf(out, "%u", bp / 100);
	if (bp % 10 == 0)
		return buf_printf(out, "%u.%u", bp / 100, bp / 10 % 10);
	return buf_printf(out, "%u.%02u", bp / 100, bp % 100);
}

int rollout_plan_text(const struct rollout_plan *p, struct buf *out)
{
	int err = 0;

	for (uint32_t i = 0; i < p->n_steps && i < ROLLOUT_MAX_STEPS && !err; i++) {
		const struct rollout_step *s = &p->steps[i];
		err = buf_printf(out, "%s%u:", i ? " " : "", s->ring);
		if (!err)
			err = append_percent(out, s->bp);
		if (!err)
			err = buf_append_char(out, ':');
		if (!err)
			err = append_bake(out, s->bake_s);
	}
	return err;
}

/* --- policy --- */

void rollout_policy_default(struct rollout_policy *p)
{
	memset(p, 0, sizeof(*p));
}

static int clock_parse(const char *s, size_t len, uint32_t *out)
{
	if (len != 5 || s[2] != ':')
		return -EINVAL;
	for (size_t i = 0; i < 5; i++)
		if (i != 2 && (s[i] < '0' || s[i] > '9'))
			return -EINVAL;
	uint32_t h = (uint32_t)(s[0] - '0') * 10 + (uint32_t)(s[1] - '0');
	uint32_t m = (uint32_t)(s[3] - '0') * 10 + (uint32_t)(s[4] - '0');
	if (h > 23 || m > 59)
		return -EINVAL;
	*out = h * 3600 + m * 60;
	return 0;
}

int rollout_policy_parse(const char *text, struct rollout_policy *p, char *err, size_t errlen)
{
	struct rollout_policy tmp;
	char word[64];
	int n;
	bool follow = false, other = false;

	if (strnlen(text, ROLLOUT_MAX_TEXT_BYTES + 1) > ROLLOUT_MAX_TEXT_BYTES) {
		set_err(err, errlen, "policy: longer than %u bytes", ROLLOUT_MAX_TEXT_BYTES);
		return -EINVAL;
	}
	rollout_policy_default(&tmp);
	while ((n = next_word(&text, word, sizeof(word))) != 0) {
		if (n < 0) {
			set_err(err, errlen, "policy: a word is too long");
			return -EINVAL;
		}
		if (strcmp(word, "follow") == 0) {
			follow = true;
			continue;
		}
		other = true;
		if (strcmp(word, "pause") == 0) {
			tmp.paused = true;
		} else if (strcmp(word, "approval") == 0) {
			tmp.approval_required = true;
		} else if (strncmp(word, "pin=", 4) == 0) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(word + 4, &end, 10);
			if (errno || end == word + 4 || *end || word[4] == '-' || v == 0) {
				set_err(err, errlen, "policy: '%s': pin needs a version above 0",
					word);
				return -EINVAL;
			}
			tmp.pin = v;
		} else if (strncmp(word, "delay=", 6) == 0) {
			uint64_t d;
			if (rollout_duration_parse(word + 6, &d) || d > 30ull * 86400) {
				set_err(err, errlen,
					"policy: '%s': delay needs a duration up to 30d", word);
				return -EINVAL;
			}
			tmp.delay_s = (uint32_t)d;
		} else if (strncmp(word, "window=", 7) == 0) {
			const char *w = word + 7, *dash = strchr(w, '-');
			uint32_t a, b;
			if (!dash || clock_parse(w, (size_t)(dash - w), &a) ||
			    clock_parse(dash + 1, strlen(dash + 1), &b) || a == b) {
				set_err(err, errlen,
					"policy: '%s': a window is HH:MM-HH:MM (UTC, not empty)",
					word);
				return -EINVAL;
			}
			if (tmp.n_windows == ROLLOUT_MAX_WINDOWS) {
				set_err(err, errlen, "policy: more than %u windows",
					ROLLOUT_MAX_WINDOWS);
				return -EINVAL;
			}
			tmp.windows[tmp.n_windows].start_s = a;
			tmp.windows[tmp.n_windows].len_s = (b + 86400 - a) % 86400;
			tmp.n_windows++;
		} else {
			set_err(err, errlen,
				"policy: unknown word '%s' (follow, pin=V, pause, delay=D, "
				"window=HH:MM-HH:MM, approval)",
				word);
			return -EINVAL;
		}
	}
	if (follow && other) {
		set_err(err, errlen, "policy: 'follow' stands alone");
		return -EINVAL;
	}
	*p = tmp;
	return 0;
}

bool rollout_policy_in_window(const struct rollout_policy *p, int64_t now)
{
	if (p->n_windows == 0)
		return true;
	int64_t day = ((now % 86400) + 86400) % 86400;
	for (uint32_t i = 0; i < p->n_windows && i < ROLLOUT_MAX_WINDOWS; i++) {
		int64_t since = (day - (int64_t)p->windows[i].start_s + 86400) % 86400;
		if (since < (int64_t)p->windows[i].len_s)
			return true;
	}
	return false;
}

/* --- agents --- */

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

uint64_t rollout_agent_key(const void *id, size_t len)
{
	unsigned char h[16];
	uint64_t k = 0;

	crypto_generichash(h, sizeof(h), id, len, NULL, 0);
	for (int i = 7; i >= 0; i--)
		k = k << 8 | h[i];
	return k;
}

uint32_t rollout_position(uint64_t agent_key, uint64_t version)
{
	uint64_t h = mix64(agent_key ^ mix64(version + 0x9e3779b97f4a7c15ull));
	return (uint32_t)(((h >> 32) * ROLLOUT_BP) >> 32);
}

void rollout_track_init(struct rollout_track *t)
{
	memset(t, 0, sizeof(*t));
}

static void cpu_baseline(struct rollout_track *t, const struct rollout_report *rep)
{
	if (!(rep->cpu_pct >= 0) || !isfinite(rep->cpu_pct))
		return;
	float v = (float)rep->cpu_pct;
	t->cpu_base = t->cpu_base > 0 ? t->cpu_base + (v - t->cpu_base) / 8 : v;
}

void rollout_track_observe(struct rollout_track *t, const struct rollout_report *rep)
{
	cpu_baseline(t, rep);
}

/* --- coverage --- */

static uint32_t agent_ring(const struct rollout *r, const struct rollout_agent *a)
{
	return a->ring < r->plan.n_rings ? a->ring : r->plan.n_rings - 1;
}

/* The first step that reaches @a, or n_steps. @pos caches rollout_position (UINT32_MAX: not
 * computed yet). */
static uint32_t first_step(const struct rollout *r, const struct rollout_agent *a, uint32_t *pos)
{
	uint32_t ring = agent_ring(r, a);

	for (uint32_t i = 0; i < r->plan.n_steps; i++) {
		const struct rollout_step *s = &r->plan.steps[i];
		if (ring < s->ring)
			return i;
		if (ring == s->ring) {
			if (s->bp >= ROLLOUT_BP)
				return i;
			if (*pos == UINT32_MAX)
				*pos = rollout_position(a->key, r->version);
			if (*pos < s->bp)
				return i;
		}
	}
	return r->plan.n_steps;
}

static bool quarantined(const struct rollout_agent *a, uint64_t v)
{
	for (size_t i = 0; i < a->n_quarantined; i++)
		if (a->quarantined && a->quarantined[i] == v)
			return true;
	return false;
}

static void answer(struct rollout_answer *out, uint64_t v, enum rollout_why why)
{
	out->version = v;
	out->why = why;
}

/* @first: the first step that reaches @a when known, else UINT32_MAX (set when computed) */
static void desired(const struct rollout *r, const struct rollout_agent *a,
		    const struct rollout_policy *p, int64_t now, uint32_t *first,
		    struct rollout_answer *out)
{
	const uint64_t V = r->version, P = r->previous, cur = a->active;
	const bool halted = r->state == ROLLOUT_HALTED;
	uint32_t pos = UINT32_MAX;

	out->baking = false;
	if (halted && cur == V) {
		/* a pull never waits for a window or a pause */
		answer(out, P, ROLLOUT_WHY_pulled);
		goto check_quarantine;
	}
	if (p->pin) {
		if (p->pin == V && halted)
			answer(out, P, ROLLOUT_WHY_pulled);
		else
			answer(out, p->pin, ROLLOUT_WHY_pinned);
	} else if (halted) {
		answer(out, P, ROLLOUT_WHY_pulled);
	} else if (quarantined(a, V)) {
		answer(out, P, ROLLOUT_WHY_quarantined);
	} else {
		enum rollout_why why;
		bool eligible = false;

		if (r->state == ROLLOUT_COMPLETE) {
			eligible = now >= r->available_at + (int64_t)p->delay_s;
			why = eligible ? ROLLOUT_WHY_available : ROLLOUT_WHY_delayed;
		} else if (p->delay_s) {
			why = ROLLOUT_WHY_delayed;
		} else {
			if (*first == UINT32_MAX)
				*first = first_step(r, a, &pos);
			eligible = *first <= r->step;
			why = eligible ? ROLLOUT_WHY_step : ROLLOUT_WHY_not_yet;
		}
		if (eligible && p->approval_required && p->approved < V) {
			eligible = false;
			why = ROLLOUT_WHY_approval;
		}
		answer(out, eligible || cur == V ? V : P, why);
	}
	/* a paused group, or one outside its windows, stays on what it runs */
	if (out->version != cur && cur != 0) {
		if (p->paused)
			answer(out, cur, ROLLOUT_WHY_paused);
		else if (!rollout_policy_in_window(p, now))
			answer(out, cur, ROLLOUT_WHY_window);
	}
check_quarantine:
	if (out->version && quarantined(a, out->version)) {
		out->version = P && !quarantined(a, P) ? P : cur;
		out->why = ROLLOUT_WHY_quarantined;
	}
	if (out->version == V && (r->state == ROLLOUT_ROLLING || r->state == ROLLOUT_PAUSED)) {
		if (*first == UINT32_MAX)
			*first = first_step(r, a, &pos);
		out->baking = *first >= r->step;
	}
}

void rollout_desired(const struct rollout *r, const struct rollout_agent *a,
		     const struct rollout_policy *policy, int64_t now, struct rollout_answer *out)
{
	uint32_t first = UINT32_MAX;

	desired(r, a, policy, now, &first, out);
}

bool rollout_baking(const struct rollout *r, const struct rollout_agent *a, int64_t now)
{
	uint32_t pos = UINT32_MAX;

	if (a->active != r->version)
		return false;
	if (r->state == ROLLOUT_HALTED)
		return true;
	if (r->state == ROLLOUT_COMPLETE)
		return false;
	return first_step(r, a, &pos) >= r->step;
}

/* --- cohorts --- */

/* Folds the buckets whose every heartbeat is older than the silence threshold. */
/* floor(@rel / bucket_s) for @rel >= 0, without a division per heartbeat */
static int64_t bucket_of(const struct rollout *r, int64_t rel)
{
	int64_t b = (int64_t)((double)rel * r->bucket_inv);

	if (b * (int64_t)r->bucket_s > rel)
		b--;
	else if ((b + 1) * (int64_t)r->bucket_s <= rel)
		b++;
	return b;
}

static void advance(struct rollout *r, int64_t now)
{
	int64_t rel = now - r->started;

	if (now == r->advanced_to)
		return;
	if (now > r->advanced_to) {
		r->advanced_to = now;
		r->advanced_bucket = bucket_of(r, rel);
	}
	if (rel <= (int64_t)r->silence_s)
		return;
	int64_t limit = bucket_of(r, rel - (int64_t)r->silence_s);
	if (limit - r->cursor > (int64_t)r->slots) {
		for (int c = 0; c < 2; c++) {
			struct cohort *co = &r->c[c];
			for (uint32_t i = 0; i < SILENCE_SLOTS; i++) {
				co->silent_now += co->live[i];
				co->bad[ROLLOUT_GATE_silence] += co->live[i];
				co->live[i] = 0;
			}
		}
		r->cursor = limit;
		return;
	}
	for (; r->cursor < limit; r->cursor++) {
		uint64_t slot = SLOT(r->cursor);
		for (int c = 0; c < 2; c++) {
			struct cohort *co = &r->c[c];
			co->silent_now += co->live[slot];
			co->bad[ROLLOUT_GATE_silence] += co->live[slot];
			co->live[slot] = 0;
		}
	}
}

static void resume(struct rollout *r, int64_t was, int64_t now)
{
	r->restored_from = -1;
	if (was < 0 || now <= was || (r->state != ROLLOUT_ROLLING && r->state != ROLLOUT_PAUSED))
		return;
	int64_t k = bucket_of(r, now - r->started) - bucket_of(r, was - r->started);
	if (k <= 0)
		return;
	/* every heartbeat seen before the outage moves k buckets later */
	for (int c = 0; c < 2; c++) {
		uint64_t moved[SILENCE_SLOTS] = {0};
		struct cohort *co = &r->c[c];
		for (int64_t b = r->cursor; b < r->cursor + (int64_t)SILENCE_SLOTS; b++)
			moved[SLOT(b + k)] += co->live[SLOT(b)];
		memcpy(co->live, moved, sizeof(moved));
	}
	r->cursor += k;
	if (r->n_shifts == ROLLOUT_MAX_SHIFTS) {
		/* the two oldest become one: heartbeats before the first move by both */
		r->shifts[0].buckets += r->shifts[1].buckets;
		r->shifts[0].until = r->shifts[1].until;
		memmove(&r->shifts[1], &r->shifts[2],
			(ROLLOUT_MAX_SHIFTS - 2) * sizeof(r->shifts[0]));
		r->n_shifts--;
	}
	r->shifts[r->n_shifts].until = was;
	r->shifts[r->n_shifts].buckets = k;
	r->n_shifts++;
}

void rollout_resumed(struct rollout *r, int64_t now)
{
	resume(r, r->restored_from, now);
}

/* The bucket @t's last heartbeat is counted in: later by every outage since (see resume()). */
static int64_t track_bucket(const struct rollout *r, const struct rollout_track *t)
{
	int64_t b = bucket_of(r, t->last_seen - r->started);

	for (uint32_t i = 0; i < r->n_shifts; i++)
		if (t->last_seen <= r->shifts[i].until)
			b += r->shifts[i].buckets;
	return b;
}

void rollout_recount_begin(struct rollout *r, struct rollout_recount *rc)
{
	rc->cursor0 = r->cursor;
	rc->latest = r->restored_from;
	for (int c = 0; c < 2; c++) {
		r->c[c].silent_now = 0;
		memset(r->c[c].live, 0, sizeof(r->c[c].live));
	}
}

void rollout_recount(struct rollout *r, struct rollout_recount *rc, const struct rollout_track *t,
		     int64_t now)
{
	uint8_t cohort = t->state & COHORT_MASK;

	/* the same checks as a heartbeat makes of a stored track */
	if (t->version != r->version || t->last_seen < r->started || t->last_seen > now ||
	    (cohort != COHORT_CONTROL && cohort != COHORT_EXPOSED))
		return;
	struct cohort *co = cohort == COHORT_EXPOSED ? EXPOSED(r) : CONTROL(r);
	int64_t b = track_bucket(r, t);
	if (t->last_seen > rc->latest)
		rc->latest = t->last_seen;
	/* a heartbeat later than the window: the server ran until then, and folded what had
	 * gone silent by that time, as advance() would have */
	if (b >= r->cursor + (int64_t)r->slots) {
		int64_t to = b - (int64_t)r->slots + 1, n = to - r->cursor;
		/* past a whole ring there is nothing more to fold */
		for (int64_t i = 0; i < n && i < (int64_t)SILENCE_SLOTS; i++) {
			uint64_t slot = SLOT(r->cursor + i);
			for (int c = 0; c < 2; c++) {
				r->c[c].silent_now += r->c[c].live[slot];
				r->c[c].bad[ROLLOUT_GATE_silence] += r->c[c].live[slot];
				r->c[c].live[slot] = 0;
			}
		}
		r->cursor = to;
	}
	if (b < r->cursor) {
		co->silent_now++;
		/* folded before the snapshot: already counted; folded since: counted now */
		if (b >= rc->cursor0)
			co->bad[ROLLOUT_GATE_silence]++;
	} else {
		co->live[SLOT(b)]++;
	}
}

void rollout_recount_end(struct rollout *r, const struct rollout_recount *rc, int64_t now)
{
	resume(r, rc->latest, now);
}

static struct cohort *cohort_of(struct rollout *r, uint8_t cohort)
{
	return cohort == COHORT_EXPOSED ? EXPOSED(r) : CONTROL(r);
}

static void silence_remove(struct rollout *r, const struct rollout_track *t)
{
	struct cohort *co = cohort_of(r, t->state & COHORT_MASK);
	int64_t b = track_bucket(r, t);

	if (b < r->cursor) {
		if (co->silent_now > 0)
			co->silent_now--;
	} else {
		uint64_t *n = &co->live[SLOT(b)];
		if (*n > 0)
			(*n)--;
	}
}

static void silence_add(struct rollout *r, struct rollout_track *t, int64_t now)
{
	struct cohort *co = cohort_of(r, t->state & COHORT_MASK);
	int64_t b = now == r->advanced_to ? r->advanced_bucket : bucket_of(r, now - r->started);

	if (b < r->cursor) {
		/* older than what was already folded (a late heartbeat): count it as the oldest
		 * bucket still open */
		b = r->cursor;
		now = r->started + b * r->bucket_s;
	}
	co->live[SLOT(b)]++;
	t->last_seen = now;
}

static void count_problems(struct cohort *co, struct rollout_track *t,
			   const struct rollout_report *rep)
{
	static const struct {
		uint8_t flag;
		enum rollout_gate gate;
	} map[] = {
	    {F_RESTARTS, ROLLOUT_GATE_restarts},
	    {F_REVERTS, ROLLOUT_GATE_reverts},
	    {F_LIVENESS, ROLLOUT_GATE_liveness},
	    {F_DROPS, ROLLOUT_GATE_drops},
	};
	if (!rep->restarts && !rep->reverts && !rep->liveness_failed && !rep->drops)
		return; /* the common case */
	const bool seen[] = {rep->restarts > 0, rep->reverts > 0, rep->liveness_failed,
			     rep->drops > 0};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (seen[i] && !(t->state & map[i].flag)) {
			t->state |= map[i].flag;
			co->bad[map[i].gate]++;
		}
	}
}

/* One rate sample: an interval the agent spent wholly in the cohort's condition. */
static void count_rates(struct cohort *co, const struct rollout_track *t,
			const struct rollout_report *rep)
{
	co->run_s += rep->interval_s;
	co->alerts += rep->alerts;
	if (t->cpu_base > 0 && rep->cpu_pct >= 0 && isfinite(rep->cpu_pct)) {
		double x = rep->cpu_pct / t->cpu_base;
		if (x > 100)
			x = 100;
		co->cpu_n += 1;
		co->cpu_sum += x;
		co->cpu_sq += x * x;
	}
}

void rollout_heartbeat(struct rollout *r, struct rollout_track *t, const struct rollout_agent *a,
		       const struct rollout_policy *policy, const struct rollout_report *rep,
		       int64_t now, struct rollout_answer *out)
{
	const bool runs = a->active == r->version;
	uint32_t first, ring, pos = UINT32_MAX;

	if (now < r->started)
		now = r->started;
	advance(r, now);
	/* a track read back from a store is checked like any input before it is used */
	if (t->version != r->version || t->last_seen < r->started || t->last_seen > now ||
	    (t->state & COHORT_MASK) > COHORT_EXPOSED || t->entry_step > r->plan.n_steps ||
	    t->first_step > r->plan.n_steps || !(t->cpu_base >= 0 && t->cpu_base < 1e9f)) {
		if (!(t->cpu_base >= 0 && t->cpu_base < 1e9f))
			t->cpu_base = 0;
		t->version = r->version;
		t->state = COHORT_NONE;
		t->entry_step = 0;
		t->first_ring = 0;
	}
	if ((t->state & COHORT_MASK) != COHORT_NONE)
		silence_remove(r, t);

	switch (t->state & COHORT_MASK) {
	case COHORT_EXPOSED: {
		struct cohort *e = EXPOSED(r);
		count_problems(e, t, rep);
		if (runs && (t->state & F_RUNNING)) {
			count_rates(e, t, rep);
		} else if (runs) {
			t->state |= F_RUNNING;
			e->running++;
			r->step_reported[t->entry_step]++;
		}
		break;
	}
	case COHORT_CONTROL:
		count_problems(CONTROL(r), t, rep);
		count_rates(CONTROL(r), t, rep);
		cpu_baseline(t, rep);
		break;
	default:
		t->state = COHORT_CONTROL;
		CONTROL(r)->agents++;
		cpu_baseline(t, rep);
		break;
	}

	/* the step that first reaches the agent is the same for every heartbeat of this release,
	 * as long as it stays in its ring */
	ring = agent_ring(r, a);
	first = t->first_ring == ring + 1 ? t->first_step : UINT32_MAX;
	desired(r, a, policy, now, &first, out);
	if ((t->state & COHORT_MASK) == COHORT_CONTROL && (out->version == r->version || runs)) {
		struct cohort *e = EXPOSED(r);

		t->state = COHORT_EXPOSED;
		e->agents++;
		r->offer_sum += (double)(now - r->started);
		if (r->state != ROLLOUT_COMPLETE && first == UINT32_MAX)
			first = first_step(r, a, &pos);
		if (r->state == ROLLOUT_COMPLETE)
			t->entry_step = (uint8_t)r->plan.n_steps;
		else /* reached by its policy (a pin) before its step: counted in the current one */
			t->entry_step = (uint8_t)(first < r->step ? first : r->step);
		if (runs) {
			t->state |= F_RUNNING;
			e->running++;
			r->step_reported[t->entry_step]++;
		}
	}
	if (first != UINT32_MAX) {
		t->first_ring = (uint8_t)(ring + 1);
		t->first_step = (uint8_t)first;
	}
	silence_add(r, t, now);
}

/* --- gates --- */

/* ln of the Chernoff bound on P(X >= k) for X ~ Poisson(lam); 0 when k <= lam. */
static double poisson_tail_ln(double k, double lam)
{
	if (k <= lam)
		return 0;
	if (lam <= 0)
		return -INFINITY;
	return k - lam + k * log(lam / k);
}

static double to_log10(double ln_p)
{
	double v = ln_p / log(10.0);
	return v < -300 ? -300 : v;
}

static uint64_t covered(const struct rollout *r, uint32_t step)
{
	const struct rollout_step *s = &r->plan.steps[step];
	uint64_t n = 0;

	for (uint32_t i = 0; i < s->ring; i++)
		n += r->population[i];
	return n + r->population[s->ring] * s->bp / ROLLOUT_BP;
}

/* Agents that must have reported: min_agents, capped at a quarter of @pop (rounded down)
 * when it is known: a step's share is found by hash, so a small one varies, and some of it is
 * held by policy; a step expected to reach fewer than four agents waits for none. */
static uint64_t needed(const struct rollout *r, const struct rollout_gates *g, uint64_t pop)
{
	uint64_t quarter = pop / 4;

	if (!r->population_known)
		return g->min_agents;
	return quarter < g->min_agents ? quarter : g->min_agents;
}

static double exposed_hours(const struct rollout *r, int64_t now)
{
	double h = ((double)EXPOSED(r)->agents * (double)(now - r->started) - r->offer_sum) / 3600;
	return h > 0 ? h : 0;
}

static void gate_count(const struct rollout *r, enum rollout_gate g,
		       const struct rollout_gates *cfg, double hours, struct rollout_evidence *ev)
{
	const struct cohort *e = EXPOSED(r), *c = CONTROL(r);
	double ctl_hours = c->run_s / 3600;
	double floor = g == ROLLOUT_GATE_reverts ? cfg->revert_floor_per_hour : cfg->floor_per_hour;
	double base, lam, ln_p;

	ev->agents = e->agents;
	ev->bad = e->bad[g];
	ev->hours = hours;
	ev->exposed_rate = hours > 0 ? (double)ev->bad / hours : 0;
	ev->control_rate = ctl_hours > 0 ? (double)c->bad[g] / ctl_hours : 0;
	base = ev->control_rate > floor ? ev->control_rate : floor;
	ev->limit = cfg->tolerance * base;
	lam = ev->limit * hours;
	ln_p = poisson_tail_ln((double)ev->bad, lam);
	ev->log10_p = to_log10(ln_p);
	ev->verdict =
	    ev->bad >= cfg->min_bad && ln_p < log(cfg->alpha) ? ROLLOUT_FAIL : ROLLOUT_PASS;
}

static void gate_alerts(const struct rollout *r, const struct rollout_gates *cfg, uint64_t need,
			struct rollout_evidence *ev)
{
	const struct cohort *e = EXPOSED(r), *c = CONTROL(r);
	double lam, ln_p;

	ev->agents = e->running;
	ev->bad = e->alerts;
	ev->hours = e->run_s / 3600;
	ev->exposed_rate = ev->hours > 0 ? (double)e->alerts / ev->hours : 0;
	/* one alert and one hour added to control keep an empty control from dividing by 0 */
	ev->control_rate = ((double)c->alerts + 1) / (c->run_s / 3600 + 1);
	ev->limit = cfg->alert_ratio * ev->control_rate;
	lam = ev->limit * ev->hours;
	ln_p = ev->hours > 0 ? poisson_tail_ln((double)e->alerts, lam) : 0;
	ev->log10_p = to_log10(ln_p);
	ev->verdict = e->running >= need && e->alerts >= cfg->min_bad && ln_p < log(cfg->alpha)
			  ? ROLLOUT_FAIL
			  : ROLLOUT_PASS;
}

static void gate_cpu(const struct rollout *r, const struct rollout_gates *cfg, uint64_t need,
		     struct rollout_evidence *ev)
{
	const struct cohort *e = EXPOSED(r), *c = CONTROL(r);
	double z = 0;

	ev->agents = e->running;
	ev->bad = (uint64_t)e->cpu_n;
	ev->hours = e->run_s / 3600;
	ev->exposed_rate = e->cpu_n > 0 ? e->cpu_sum / e->cpu_n : 0;
	ev->control_rate = c->cpu_n > 0 ? c->cpu_sum / c->cpu_n : 0;
	ev->limit = cfg->cpu_ratio * ev->control_rate;
	ev->log10_p = 0;
	ev->verdict = ROLLOUT_PASS;
	if (e->cpu_n < 2 || c->cpu_n < 2)
		return;
	double ve = e->cpu_sq / e->cpu_n - ev->exposed_rate * ev->exposed_rate;
	double vc = c->cpu_sq / c->cpu_n - ev->control_rate * ev->control_rate;
	if (vc < 0)
		vc = 0;
	/* a handful of exposed readings can look steadier than they are: they are taken to be
	 * at least as noisy as control's (the same hosts, the same probe) */
	if (ve < vc)
		ve = vc;
	double se = sqrt(ve / e->cpu_n + cfg->cpu_ratio * cfg->cpu_ratio * vc / c->cpu_n);
	double diff = ev->exposed_rate - ev->limit;
	if (diff <= 0)
		return;
	z = se > 0 ? diff / se : INFINITY;
	/* Gaussian tail bound P(Z >= z) <= exp(-z^2 / 2) */
	double ln_p = isfinite(z) ? -z * z / 2 : -INFINITY;
	ev->log10_p = to_log10(ln_p);
	if (e->running >= need && (uint64_t)e->cpu_n >= need && ln_p < log(cfg->alpha))
		ev->verdict = ROLLOUT_FAIL;
}

void rollout_evaluate(struct rollout *r, int64_t now,
		      struct rollout_evidence ev[ROLLOUT_GATE_COUNT])
{
	const struct rollout_gates *cfg = &r->plan.steps[r->step].gates;
	uint64_t need = needed(r, cfg, covered(r, r->step));
	double hours;

	if (need == 0)
		need = 1; /* a rate gate looks at one agent at least */
	if (now < r->started)
		now = r->started;
	advance(r, now);
	hours = exposed_hours(r, now);
	memset(ev, 0, sizeof(*ev) * ROLLOUT_GATE_COUNT);
	for (int g = 0; g < ROLLOUT_GATE_COUNT; g++) {
		switch (g) {
		case ROLLOUT_GATE_alerts:
			gate_alerts(r, cfg, need, &ev[g]);
			break;
		case ROLLOUT_GATE_cpu:
			gate_cpu(r, cfg, need, &ev[g]);
			break;
		default:
			gate_count(r, (enum rollout_gate)g, cfg, hours, &ev[g]);
			break;
		}
		if (!(cfg->enabled & (1u << g)))
			ev[g].verdict = ROLLOUT_OFF;
	}
}

/* --- decisions --- */

static struct rollout_decision *record(struct rollout *r, int64_t now, enum rollout_action act,
				       bool manual)
{
	struct rollout_decision *d = &r->log[r->n_decisions % ROLLOUT_MAX_DECISIONS];

	r->n_decisions++;
	memset(d, 0, sizeof(*d));
	d->at = now;
	d->action = act;
	d->step = r->step;
	d->to_step = r->step;
	d->manual = manual;
	d->failed_gate = -1;
	d->offered = EXPOSED(r)->agents;
	d->running = EXPOSED(r)->running;
	return d;
}

static void set_reason(struct rollout_decision *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_reason(struct rollout_decision *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
}

static void copy_reason(struct rollout_decision *d, const char *reason, const char *fallback)
{
	const char *s = reason && reason[0] ? reason : fallback;
	size_t n = strnlen(s, sizeof(d->reason) - 1);

	/* one line of printable text */
	for (size_t i = 0; i < n; i++)
		d->reason[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : ' ';
	d->reason[n] = '\0';
}

static void halt(struct rollout *r, int64_t now, int gate, const struct rollout_evidence *ev,
		 bool manual, const char *reason)
{
	struct rollout_decision *d = record(r, now, ROLLOUT_ACT_HALT, manual);

	d->failed_gate = gate;
	if (ev)
		memcpy(d->gates, ev, sizeof(d->gates));
	if (gate >= 0) {
		const struct rollout_evidence *e = &ev[gate];
		if (gate == ROLLOUT_GATE_cpu)
			set_reason(
			    d,
			    "gate cpu failed: exposed CPU %.3fx its baseline, control %.3fx, "
			    "allowed %.3fx",
			    e->exposed_rate, e->control_rate, e->limit);
		else if (gate == ROLLOUT_GATE_alerts)
			set_reason(d,
				   "gate alerts failed: %" PRIu64 " alerts from %" PRIu64
				   " exposed agents, %.3g per agent-hour, allowed %.3g",
				   e->bad, e->agents, e->exposed_rate, e->limit);
		else
			set_reason(d,
				   "gate %s failed: %" PRIu64 " of %" PRIu64
				   " exposed agents, %.3g per agent-hour, allowed %.3g",
				   rollout_gate_name((enum rollout_gate)gate), e->bad, e->agents,
				   e->exposed_rate, e->limit);
	} else {
		copy_reason(d, reason, "halted by an operator");
	}
	r->state = ROLLOUT_HALTED;
	r->halted_at = now;
	r->paused_at = -1;
	d = record(r, now, ROLLOUT_ACT_PULL, manual);
	set_reason(d, "agents running %" PRIu64 " return to %" PRIu64, r->version, r->previous);
}

static void promote(struct rollout *r, int64_t now, const struct rollout_evidence *ev,
		    uint64_t reported, uint64_t need, bool manual, const char *reason)
{
	bool last = r->step + 1 >= r->plan.n_steps;
	struct rollout_decision *d =
	    record(r, now, last ? ROLLOUT_ACT_COMPLETE : ROLLOUT_ACT_PROMOTE, manual);

	if (ev)
		memcpy(d->gates, ev, sizeof(d->gates));
	d->step_reported = reported;
	d->step_needed = need;
	if (manual)
		copy_reason(d, reason, "promoted by an operator");
	else
		set_reason(d,
			   "baked %u s, %" PRIu64 " of %" PRIu64 " needed agents reported, every "
			   "gate passed",
			   r->plan.steps[r->step].bake_s, reported, need);
	if (last) {
		r->state = ROLLOUT_COMPLETE;
		r->available_at = now;
		r->paused_at = -1;
		return;
	}
	r->step++;
	d->to_step = r->step;
	r->step_started = now;
	r->paused_s = 0;
	if (r->state == ROLLOUT_PAUSED)
		r->paused_at = now;
}

static int64_t baked_s(const struct rollout *r, int64_t now)
{
	int64_t s = now - r->step_started - r->paused_s;

	if (r->state == ROLLOUT_PAUSED && r->paused_at >= 0)
		s -= now - r->paused_at;
	return s;
}

int rollout_tick(struct rollout *r, int64_t now)
{
	struct rollout_evidence ev[ROLLOUT_GATE_COUNT];
	const struct rollout_step *s;

	if (r->state == ROLLOUT_HALTED || r->state == ROLLOUT_COMPLETE)
		return -1;
	if (now < r->started)
		now = r->started;
	rollout_evaluate(r, now, ev);
	for (int g = 0; g < ROLLOUT_GATE_COUNT; g++) {
		if (ev[g].verdict == ROLLOUT_FAIL) {
			halt(r, now, g, ev, false, NULL);
			return ROLLOUT_ACT_HALT;
		}
	}
	if (r->state == ROLLOUT_PAUSED)
		return -1;
	s = &r->plan.steps[r->step];
	if (baked_s(r, now) < (int64_t)s->bake_s)
		return -1;
	uint64_t pop = r->step == 0 ? covered(r, 0) : covered(r, r->step) - covered(r, r->step - 1);
	uint64_t need = needed(r, &s->gates, pop);
	if (r->step_reported[r->step] < need)
		return -1;
	bool last = r->step + 1 >= r->plan.n_steps;
	promote(r, now, ev, r->step_reported[r->step], need, false, NULL);
	return last ? ROLLOUT_ACT_COMPLETE : ROLLOUT_ACT_PROMOTE;
}

int rollout_pause(struct rollout *r, int64_t now, const char *reason)
{
	if (r->state != ROLLOUT_ROLLING)
		return -EINVAL;
	r->state = ROLLOUT_PAUSED;
	r->paused_at = now;
	copy_reason(record(r, now, ROLLOUT_ACT_PAUSE, true), reason, "paused by an operator");
	return 0;
}

int rollout_resume(struct rollout *r, int64_t now, const char *reason)
{
	if (r->state != ROLLOUT_PAUSED)
		return -EINVAL;
	if (r->paused_at >= 0 && now > r->paused_at)
		r->paused_s += now - r->paused_at;
	r->paused_at = -1;
	r->state = ROLLOUT_ROLLING;
	copy_reason(record(r, now, ROLLOUT_ACT_RESUME, true), reason, "resumed by an operator");
	return 0;
}

int rollout_halt(struct rollout *r, int64_t now, const char *reason)
{
	if (r->state == ROLLOUT_HALTED)
		return -EINVAL;
	halt(r, now, -1, NULL, true, reason);
	return 0;
}

int rollout_promote(struct rollout *r, int64_t now, const char *reason)
{
	struct rollout_evidence ev[ROLLOUT_GATE_COUNT];

	if (r->state != ROLLOUT_ROLLING && r->state != ROLLOUT_PAUSED)
		return -EINVAL;
	rollout_evaluate(r, now, ev);
	promote(r, now, ev, r->step_reported[r->step], 0, true, reason);
	return 0;
}

/* --- life cycle and state --- */

int rollout_new(const struct rollout_plan *plan, uint64_t version, uint64_t previous, bool force,
		int64_t now, struct rollout **out, char *err, size_t errlen)
{
	struct rollout *r;
	int ret = rollout_plan_validate(plan, force, err, errlen);

	if (ret)
		return ret;
	if (version == 0 || version == previous) {
		set_err(err, errlen, "release version %" PRIu64 " is 0 or the previous version",
			version);
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	r->magic = SNAPSHOT_MAGIC;
	r->format = SNAPSHOT_FORMAT;
	r->size = (uint32_t)sizeof(*r);
	r->plan = *plan;
	r->version = version;
	r->previous = previous;
	r->state = ROLLOUT_ROLLING;
	r->started = now;
	r->step_started = now;
	r->paused_at = -1;
	r->available_at = -1;
	r->halted_at = -1;
	r->bucket_s = (plan->heartbeat_s + 3) / 4;
	r->silence_s = plan->steps[0].gates.silence_k * plan->heartbeat_s;
	r->slots = r->silence_s / r->bucket_s + 4;
	r->bucket_inv = 1.0 / r->bucket_s;
	r->restored_from = -1;
	r->advanced_to = now - 1;
	set_reason(record(r, now, ROLLOUT_ACT_START, true),
		   "release %" PRIu64 " (previous %" PRIu64 "), %u steps", version, previous,
		   plan->n_steps);
	*out = r;
	return 0;
}

void rollout_free(struct rollout *r)
{
	free(r);
}

void rollout_set_population(struct rollout *r, uint32_t ring, uint64_t agents)
{
	if (ring >= ROLLOUT_MAX_RINGS)
		return;
	r->population[ring] = agents;
	r->population_known = true;
}

enum rollout_state rollout_state(const struct rollout *r)
{
	return (enum rollout_state)r->state;
}

uint64_t rollout_version(const struct rollout *r)
{
	return r->version;
}

uint64_t rollout_previous(const struct rollout *r)
{
	return r->previous;
}

const struct rollout_plan *rollout_get_plan(const struct rollout *r)
{
	return &r->plan;
}

uint32_t rollout_step(const struct rollout *r)
{
	return r->step;
}

int64_t rollout_started_at(const struct rollout *r)
{
	return r->started;
}

int64_t rollout_step_started_at(const struct rollout *r)
{
	return r->step_started;
}

int64_t rollout_available_at(const struct rollout *r)
{
	return r->available_at;
}

int64_t rollout_halted_at(const struct rollout *r)
{
	return r->halted_at;
}

size_t rollout_decision_count(const struct rollout *r)
{
	return r->n_decisions < ROLLOUT_MAX_DECISIONS ? (size_t)r->n_decisions
						      : ROLLOUT_MAX_DECISIONS;
}

const struct rollout_decision *rollout_decision(const struct rollout *r, size_t i)
{
	size_t n = rollout_decision_count(r);
	uint64_t first = r->n_decisions - n;

	if (i >= n)
		return NULL;
	return &r->log[(first + i) % ROLLOUT_MAX_DECISIONS];
}

static int append_time(struct buf *out, int64_t t)
{
	struct tm tm;
	time_t tt = (time_t)t;

	if (!gmtime_r(&tt, &tm))
		return buf_printf(out, "%" PRId64, t);
	return buf_printf(out, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
			  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int append_step(struct buf *out, const struct rollout_plan *p, uint32_t step)
{
	int err;

	if (step >= p->n_steps)
		return buf_printf(out, "step %u", step + 1);
	err = buf_printf(out, "step %u/%u (ring %u ", step + 1, p->n_steps, p->steps[step].ring);
	if (!err)
		err = append_percent(out, p->steps[step].bp);
	return err ? err : buf_append_str(out, "%)");
}

int rollout_decision_text(const struct rollout *r, const struct rollout_decision *d,
			  struct buf *out)
{
	int err = append_time(out, d->at);

	if (!err)
		err = buf_printf(out, " %s%s at ", rollout_action_name(d->action),
				 d->manual && d->action != ROLLOUT_ACT_START ? " (operator)" : "");
	if (!err)
		err = append_step(out, &r->plan, d->step);
	if (!err && d->action == ROLLOUT_ACT_PROMOTE) {
		err = buf_append_str(out, " to ");
		if (!err)
			err = append_step(out, &r->plan, d->to_step);
	}
	if (!err && d->failed_gate >= 0)
		err = buf_printf(out, ", p<1e%.0f", ceil(d->gates[d->failed_gate].log10_p));
	if (!err)
		err = buf_printf(out, ": %s", d->reason);
	return err;
}

static int json_number(struct buf *out, const char *key, double v, bool comma)
{
	if (!isfinite(v))
		return buf_printf(out, "%s\"%s\":null", comma ? "," : "", key);
	return buf_printf(out, "%s\"%s\":%.6g", comma ? "," : "", key, v);
}

int rollout_decision_json(const struct rollout_decision *d, struct buf *out)
{
	int err = buf_printf(out,
			     "{\"at\":%" PRId64 ",\"action\":\"%s\",\"step\":%u,\"to_step\":%u,"
			     "\"manual\":%s,\"failed_gate\":",
			     d->at, rollout_action_name(d->action), d->step, d->to_step,
			     d->manual ? "true" : "false");
	if (!err)
		err = d->failed_gate >= 0
			  ? buf_printf(out, "\"%s\"",
				       rollout_gate_name((enum rollout_gate)d->failed_gate))
			  : buf_append_str(out, "null");
	if (!err)
		err = buf_printf(out,
				 ",\"offered\":%" PRIu64 ",\"running\":%" PRIu64
				 ",\"step_reported\":%" PRIu64 ",\"step_needed\":%" PRIu64
				 ",\"reason\":\"",
				 d->offered, d->running, d->step_reported, d->step_needed);
	/* reasons hold printable ASCII; quote and backslash are escaped */
	for (size_t i = 0; !err && i < sizeof(d->reason) && d->reason[i]; i++) {
		char c = d->reason[i];
		if (c == '"' || c == '\\')
			err = buf_append_char(out, '\\');
		if (!err)
			err = buf_append_char(out, c >= 0x20 && c < 0x7f ? c : ' ');
	}
	if (!err)
		err = buf_append_str(out, "\",\"gates\":{");
	for (int g = 0; !err && g < ROLLOUT_GATE_COUNT; g++) {
		const struct rollout_evidence *e = &d->gates[g];
		static const char *const verdicts[] = {"pass", "fail", "off"};
		err = buf_printf(
		    out, "%s\"%s\":{\"verdict\":\"%s\",\"agents\":%" PRIu64 ",\"bad\":%" PRIu64,
		    g ? "," : "", rollout_gate_name((enum rollout_gate)g),
		    (unsigned)e->verdict < 3 ? verdicts[e->verdict] : "?", e->agents, e->bad);
		if (!err)
			err = json_number(out, "hours", e->hours, true);
		if (!err)
			err = json_number(out, "exposed_rate", e->exposed_rate, true);
		if (!err)
			err = json_number(out, "control_rate", e->control_rate, true);
		if (!err)
			err = json_number(out, "limit", e->limit, true);
		if (!err)
			err = json_number(out, "log10_p", e->log10_p, true);
		if (!err)
			err = buf_append_char(out, '}');
	}
	return err ? err : buf_append_str(out, "}}");
}

/* --- snapshot --- */

size_t rollout_snapshot_size(void)
{
	return sizeof(struct rollout);
}

void rollout_snapshot(const struct rollout *r, void *dst)
{
	memcpy(dst, r, sizeof(*r));
}

/* A bool read from outside is a byte that must be 0 or 1 before it may be loaded as a bool. */
static bool bool_ok(const bool *b)
{
	uint8_t v;

	memcpy(&v, b, 1);
	return v <= 1;
}

static bool cohort_ok(const struct cohort *c)
{
	return isfinite(c->run_s) && c->run_s >= 0 && isfinite(c->cpu_n) && c->cpu_n >= 0 &&
	       c->cpu_n < 1e18 && isfinite(c->cpu_sum) && isfinite(c->cpu_sq) &&
	       c->running <= c->agents;
}

/* Times far from now by more than 2^62 s would overflow differences. */
static bool time_ok(int64_t t)
{
	return t > -(INT64_C(1) << 62) && t < (INT64_C(1) << 62);
}

int rollout_restore(const void *src, size_t len, struct rollout **out, char *err, size_t errlen)
{
	struct rollout *r;
	int ret = -EINVAL;

	if (len != sizeof(*r)) {
		set_err(err, errlen, "rollout state: %zu bytes, this build keeps %zu", len,
			sizeof(*r));
		return -EINVAL;
	}
	r = malloc(sizeof(*r));
	if (!r) {
		set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	memcpy(r, src, sizeof(*r));
	if (r->magic != SNAPSHOT_MAGIC || r->format != SNAPSHOT_FORMAT || r->size != sizeof(*r)) {
		set_err(err, errlen, "rollout state: not a state of this format");
		goto out_free;
	}
	if (!bool_ok(&r->population_known)) {
		set_err(err, errlen, "rollout state: a field is out of range");
		goto out_free;
	}
	for (size_t i = 0; i < ROLLOUT_MAX_DECISIONS; i++) {
		if (!bool_ok(&r->log[i].manual)) {
			set_err(err, errlen, "rollout state: decision %zu is malformed", i);
			goto out_free;
		}
	}
	ret = rollout_plan_validate(&r->plan, true, err, errlen);
	if (ret)
		goto out_free;
	ret = -EINVAL;
	if (r->state > ROLLOUT_COMPLETE || r->step >= r->plan.n_steps || r->version == 0 ||
	    r->bucket_s != (r->plan.heartbeat_s + 3) / 4 ||
	    r->silence_s != r->plan.steps[0].gates.silence_k * r->plan.heartbeat_s ||
	    r->slots != r->silence_s / r->bucket_s + 4 || r->slots > SILENCE_SLOTS ||
	    r->cursor < 0 || r->cursor > (INT64_C(1) << 62) || r->paused_s < 0 ||
	    !time_ok(r->started) || !time_ok(r->step_started) || !time_ok(r->paused_at) ||
	    !time_ok(r->paused_s) || !time_ok(r->available_at) || !time_ok(r->halted_at) ||
	    !isfinite(r->offer_sum) || !cohort_ok(&r->c[0]) || !cohort_ok(&r->c[1])) {
		set_err(err, errlen, "rollout state: a field is out of range");
		goto out_free;
	}
	if (r->n_shifts > ROLLOUT_MAX_SHIFTS) {
		set_err(err, errlen, "rollout state: a field is out of range");
		goto out_free;
	}
	for (uint32_t i = 0; i < r->n_shifts; i++) {
		if (!time_ok(r->shifts[i].until) || r->shifts[i].buckets < 0 ||
		    r->shifts[i].buckets > (INT64_C(1) << 40)) {
			set_err(err, errlen, "rollout state: a field is out of range");
			goto out_free;
		}
	}
	/* derived fields are recomputed, not trusted */
	r->bucket_inv = 1.0 / r->bucket_s;
	r->restored_from =
	    time_ok(r->advanced_to) && r->advanced_to >= r->started ? r->advanced_to : -1;
	r->advanced_to = r->started - 1;
	r->advanced_bucket = -1;
	for (size_t i = 0; i < ROLLOUT_MAX_DECISIONS; i++) {
		struct rollout_decision *d = &r->log[i];
		if (!memchr(d->reason, '\0', sizeof(d->reason)) || !time_ok(d->at) ||
		    d->step >= ROLLOUT_MAX_STEPS || d->to_step >= ROLLOUT_MAX_STEPS ||
		    d->failed_gate < -1 || d->failed_gate >= ROLLOUT_GATE_COUNT ||
		    (unsigned)d->action > ROLLOUT_ACT_RESUME) {
			set_err(err, errlen, "rollout state: decision %zu is malformed", i);
			goto out_free;
		}
	}
	*out = r;
	return 0;
out_free:
	free(r);
	return ret;
}
