/*
 * The fleet simulator: hosts in virtual time on a timing wheel of one-second slots, each with
 * one pending event (its next heartbeat, the end of an activation or a crash loop, its return
 * from an offline spell), driving the rollout controller exactly as the server does.
 */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- scenario --- */

/* 2024-07-19T03:59:00Z: with the default ten minutes of warm-up, the release is published at
 * 04:09 UTC, the minute the July 2024 update went out. */
#define DEFAULT_EPOCH 1721361540

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

const char *sim_effect_name(enum sim_effect e)
{
	static const char *const names[] = {
#define X(name) #name,
	    SIM_EFFECTS(X)
#undef X
	};
	return (unsigned)e < SIM_EFFECT_COUNT ? names[e] : "?";
}

void sim_scenario_default(struct sim_scenario *sc)
{
	memset(sc, 0, sizeof(*sc));
	snprintf(sc->name, sizeof(sc->name), "custom");
	sc->effect = SIM_EFFECT_none;
	sc->factor = 1.0;
	sc->affected = 1.0;
	sc->n_rings = 3;
	sc->ring_share[0] = 0.0005;
	sc->ring_share[1] = 0.01;
	sc->ring_min[0] = 10;
	sc->ring_min[1] = 100;
	rollout_plan_default(&sc->plan);
	sc->epoch = DEFAULT_EPOCH;
	sc->publish_s = 600;
	sc->duration_s = 0;
	sc->jitter = 0.2;
	sc->trial_starts = 3;
	sc->restart_s = 15;
	sc->activate_min_s = 5;
	sc->activate_max_s = 30;
	sc->revert_s = 2;
	sc->liveness_s = 60;
	sc->crash_per_hour = 0.001;
	sc->offline_per_hour = 0.01;
	sc->offline_mean_s = 3600;
	sc->offline_max_s = 8 * 3600;
	sc->alerts_per_hour = 0.5;
	sc->cpu_pct = 2.0;
	sc->cpu_noise = 0.1;
	sc->drops_per_hour = 0.002;
	sc->liveness_fail_per_hour = 0.0005;
	sc->away_share = 0;
	sc->away_return_min_s = 3600;
	sc->away_return_max_s = 4 * 3600;
}

/* A line being parsed: where it is, for messages. */
struct line {
	const char *file;
	unsigned no;
	const char *key;
	char *err;
	size_t errlen;
};

static int bad(const struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(const struct line *l, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	set_err(l->err, l->errlen, "%s:%u: %s: %s", l->file, l->no, l->key, msg);
	return -EINVAL;
}

#define MAX_WORDS 12

/* Splits @s in place at spaces and tabs. Returns the number of words, or -1 past MAX_WORDS. */
static int split(char *s, char *words[MAX_WORDS])
{
	int n = 0;

	while (*s) {
		while (*s == ' ' || *s == '\t')
			*s++ = '\0';
		if (!*s)
			break;
		if (n == MAX_WORDS)
			return -1;
		words[n++] = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
	}
	return n;
}

static int get_double(const struct line *l, const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
		return bad(l, "'%s' is not a number from %g to %g", s, min, max);
	*out = v;
	return 0;
}

static int get_u32(const struct line *l, const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || s[0] == '+' || v < min || v > max)
		return bad(l, "'%s' is not a whole number from %u to %u", s, min, max);
	*out = (uint32_t)v;
	return 0;
}

static int get_duration(const struct line *l, const char *s, uint32_t min, uint32_t max,
			uint32_t *out)
{
	uint64_t v;

	if (rollout_duration_parse(s, &v) || v < min || v > max)
		return bad(l, "'%s' is not a duration from %us to %us (like 90s, 15m, 2h)", s, min,
			   max);
	*out = (uint32_t)v;
	return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* "YYYY-MM-DDTHH:MM:SSZ", years 1970 to 9999. */
static int get_time(const struct line *l, const char *s, int64_t *out)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
	unsigned v[6] = {0};
	static const unsigned at[6] = {0, 5, 8, 11, 14, 17}, len[6] = {4, 2, 2, 2, 2, 2};

	if (strlen(s) != sizeof(shape) - 1)
		goto fail;
	for (size_t i = 0; i < sizeof(shape) - 1; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			goto fail;
	}
	for (int f = 0; f < 6; f++)
		for (unsigned i = 0; i < len[f]; i++)
			v[f] = v[f] * 10 + (unsigned)(s[at[f] + i] - '0');
	if (v[0] < 1970 || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 ||
	    v[4] > 59 || v[5] > 59)
		goto fail;
	*out = days_from_civil(v[0], v[1], v[2]) * 86400 + v[3] * 3600 + v[4] * 60 + v[5];
	return 0;
fail:
	return bad(l, "'%s' is not a UTC time like 2024-07-19T04:09:00Z", s);
}

static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

static int parse_gate(const struct line *l, char **w, int n, struct rollout_gates *g)
{
	uint32_t u;
	int ret;

	if (n != 2)
		return bad(l, "want 'gate NAME VALUE' (e.g. gate min_agents 50, gate off cpu)");
	if (strcmp(w[0], "off") == 0 || strcmp(w[0], "on") == 0) {
		for (int i = 0; i < ROLLOUT_GATE_COUNT; i++) {
			if (strcmp(w[1], rollout_gate_name((enum rollout_gate)i)) == 0) {
				if (w[0][1] == 'f')
					g->enabled &= ~(1u << i);
				else
					g->enabled |= 1u << i;
				return 0;
			}
		}
		if (strcmp(w[1], "all") == 0) {
			g->enabled = w[0][1] == 'f' ? 0 : ROLLOUT_GATES_ALL;
			return 0;
		}
		return bad(l,
			   "no gate '%s' (silence, reverts, restarts, liveness, alerts, drops, "
			   "cpu, all)",
			   w[1]);
	}
	if (strcmp(w[0], "min_agents") == 0) {
		ret = get_u32(l, w[1], 0, 1000000, &u);
		g->min_agents = u;
	} else if (strcmp(w[0], "min_bad") == 0) {
		ret = get_u32(l, w[1], 1, 1000000, &u);
		g->min_bad = u;
	} else if (strcmp(w[0], "silence_k") == 0) {
		ret = get_u32(l, w[1], 1, ROLLOUT_MAX_SILENCE_K, &u);
		g->silence_k = u;
	} else if (strcmp(w[0], "tolerance") == 0) {
		ret = get_double(l, w[1], 1, 1e6, &g->tolerance);
	} else if (strcmp(w[0], "alpha") == 0) {
		ret = get_double(l, w[1], 1e-300, 0.5, &g->alpha);
	} else if (strcmp(w[0], "floor_per_hour") == 0) {
		ret = get_double(l, w[1], 1e-12, 1e6, &g->floor_per_hour);
	} else if (strcmp(w[0], "revert_floor_per_hour") == 0) {
		ret = get_double(l, w[1], 1e-12, 1e6, &g->revert_floor_per_hour);
	} else if (strcmp(w[0], "alert_ratio") == 0) {
		ret = get_double(l, w[1], 1, 1e6, &g->alert_ratio);
	} else if (strcmp(w[0], "cpu_ratio") == 0) {
		ret = get_double(l, w[1], 1, 1e6, &g->cpu_ratio);
	} else {
		ret = bad(l, "unknown gate setting '%s'", w[0]);
	}
	return ret;
}

static int parse_group(const struct line *l, char **w, int n, struct sim_scenario *sc)
{
	struct sim_group *g;
	struct buf policy;
	char why[160];
	int ret = 0;

	if (n < 3)
		return bad(l, "want 'group NAME SHARE POLICY...' (POLICY: follow, pin=V, pause, "
			      "delay=D, window=HH:MM-HH:MM, approval[=D])");
	if (sc->n_groups == SIM_MAX_GROUPS)
		return bad(l, "more than %u groups", SIM_MAX_GROUPS);
	g = &sc->groups[sc->n_groups];
	memset(g, 0, sizeof(*g));
	if (!name_ok(w[0], sizeof(g->name)))
		return bad(l, "'%s' is not a group name (letters, digits, . _ -, up to 31)", w[0]);
	for (uint32_t i = 0; i < sc->n_groups; i++)
		if (strcmp(sc->groups[i].name, w[0]) == 0)
			return bad(l, "group '%s' twice", w[0]);
	memcpy(g->name, w[0], strlen(w[0]) + 1);
	if ((ret = get_double(l, w[1], 0, 1, &g->share)))
		return ret;
	g->approve_after_s = -1;
	buf_init(&policy, 512);
	for (int i = 2; i < n && !ret; i++) {
		if (strncmp(w[i], "approval=", 9) == 0) {
			uint32_t d = 0;
			ret = get_duration(l, w[i] + 9, 0, SIM_MAX_DURATION_S, &d);
			g->approve_after_s = d;
			if (!ret)
				ret = buf_append_str(&policy, " approval") ? -ENOMEM : 0;
		} else if (buf_printf(&policy, " %s", w[i])) {
			ret = bad(l, "policy too long");
		}
	}
	if (!ret &&
	    rollout_policy_parse(policy.data ? policy.data : "", &g->policy, why, sizeof(why)))
		ret = bad(l, "%s", why);
	if (!ret) {
		sc->n_groups++;
		double sum = 0;
		for (uint32_t i = 0; i < sc->n_groups; i++)
			sum += sc->groups[i].share;
		if (sum > 1 + 1e-9) {
			sc->n_groups--;
			ret = bad(l, "group shares add up to more than 1");
		}
	}
	buf_release(&policy);
	return ret;
}

static int parse_effect(const struct line *l, const char *s, enum sim_effect *e)
{
	for (int i = 0; i < SIM_EFFECT_COUNT; i++) {
		if (strcmp(s, sim_effect_name((enum sim_effect)i)) == 0) {
			*e = (enum sim_effect)i;
			return 0;
		}
	}
	return bad(l, "'%s' is not an effect (none, crash, hang, alerts, liveness, cpu, drops)", s);
}

/* One "key value..." line (comment and ends already stripped). */
static int parse_line(struct line *l, char *text, struct sim_scenario *sc,
		      struct rollout_gates *gates, char *plan_text, size_t plan_size,
		      unsigned *plan_line)
{
	char *w[MAX_WORDS + 1];
	char *rest;
	int n;
	uint32_t u = 0;

	rest = text;
	while (*rest && *rest != ' ' && *rest != '\t')
		rest++;
	if (*rest)
		*rest++ = '\0';
	while (*rest == ' ' || *rest == '\t')
		rest++;
	l->key = text;

	/* keys whose value is the rest of the line */
	if (strcmp(text, "description") == 0) {
		size_t len = strlen(rest);
		if (len >= sizeof(sc->description))
			return bad(l, "longer than %zu bytes", sizeof(sc->description) - 1);
		memcpy(sc->description, rest, len + 1);
		return 0;
	}
	if (strcmp(text, "plan") == 0) {
		size_t len = strlen(rest);
		if (len == 0 || len >= plan_size)
			return bad(l, "want 'plan RING:PERCENT:BAKE ...'");
		memcpy(plan_text, rest, len + 1);
		*plan_line = l->no;
		return 0;
	}
	n = split(rest, w);
	if (n < 0)
		return bad(l, "more than %d values", MAX_WORDS);
	if (strcmp(text, "group") == 0)
		return parse_group(l, w, n, sc);
	if (strcmp(text, "gate") == 0)
		return parse_gate(l, w, n, gates);

	static const struct {
		const char *key;
		int n;
	} arity[] = {
	    {"name", 1},
	    {"effect", 1},
	    {"factor", 1},
	    {"affected", 1},
	    {"heartbeat", 1},
	    {"jitter", 1},
	    {"start", 1},
	    {"publish", 1},
	    {"duration", 1},
	    {"trial_starts", 1},
	    {"restart", 1},
	    {"activation", 2},
	    {"revert", 1},
	    {"liveness_interval", 1},
	    {"crash_rate", 1},
	    {"offline_rate", 1},
	    {"offline_time", 2},
	    {"alert_rate", 1},
	    {"cpu", 2},
	    {"drop_rate", 1},
	    {"liveness_fail_rate", 1},
	    {"away", 3},
	    {"rings", -1},
	    {"ring_min", -1},
	};
	int want = -2;
	for (size_t i = 0; i < sizeof(arity) / sizeof(arity[0]); i++)
		if (strcmp(text, arity[i].key) == 0)
			want = arity[i].n;
	if (want == -2)
		return bad(l, "unknown key (see docs/ROLLOUT.md, 'Scenario files')");
	if (want >= 0 && n != want)
		return bad(l, "want %d value%s, got %d", want, want == 1 ? "" : "s", n);

	if (strcmp(text, "name") == 0) {
		if (!name_ok(w[0], sizeof(sc->name)))
			return bad(l, "'%s' is not a name (letters, digits, . _ -, up to 63)",
				   w[0]);
		memcpy(sc->name, w[0], strlen(w[0]) + 1);
		return 0;
	}
	if (strcmp(text, "effect") == 0)
		return parse_effect(l, w[0], &sc->effect);
	if (strcmp(text, "factor") == 0)
		return get_double(l, w[0], 0, 1e6, &sc->factor);
	if (strcmp(text, "affected") == 0) {
		int ret = get_double(l, w[0], 0, 1, &sc->affected);
		if (!ret && sc->affected <= 0)
			return bad(l, "must be above 0");
		return ret;
	}
	if (strcmp(text, "rings") == 0) {
		double sum = 0;
		if (n < 1 || n > (int)ROLLOUT_MAX_RINGS - 1)
			return bad(l,
				   "want 1 to %u shares (rings 0 .. n-2; the last ring holds the "
				   "rest)",
				   ROLLOUT_MAX_RINGS - 1);
		for (int i = 0; i < n; i++) {
			int ret = get_double(l, w[i], 0, 1, &sc->ring_share[i]);
			if (ret)
				return ret;
			if (sc->ring_share[i] <= 0)
				return bad(l, "a ring's share must be above 0");
			sum += sc->ring_share[i];
		}
		if (sum >= 1)
			return bad(l, "the shares leave nothing for the last ring");
		sc->n_rings = (uint32_t)n + 1;
		return 0;
	}
	if (strcmp(text, "ring_min") == 0) {
		if (n < 1 || n > (int)ROLLOUT_MAX_RINGS - 1)
			return bad(l, "want 1 to %u counts (rings 0 .. n-2)",
				   ROLLOUT_MAX_RINGS - 1);
		memset(sc->ring_min, 0, sizeof(sc->ring_min));
		for (int i = 0; i < n; i++) {
			int ret = get_u32(l, w[i], 0, 1000000, &sc->ring_min[i]);
			if (ret)
				return ret;
		}
		return 0;
	}
	if (strcmp(text, "heartbeat") == 0) {
		int ret = get_duration(l, w[0], 1, 3600, &u);
		sc->plan.heartbeat_s = u;
		return ret;
	}
	if (strcmp(text, "jitter") == 0)
		return get_double(l, w[0], 0, 0.9, &sc->jitter);
	if (strcmp(text, "start") == 0)
		return get_time(l, w[0], &sc->epoch);
	if (strcmp(text, "publish") == 0)
		return get_duration(l, w[0], 0, 86400, &sc->publish_s);
	if (strcmp(text, "duration") == 0)
		return get_duration(l, w[0], 60, SIM_MAX_DURATION_S, &sc->duration_s);
	if (strcmp(text, "trial_starts") == 0)
		return get_u32(l, w[0], 1, 20, &sc->trial_starts);
	if (strcmp(text, "restart") == 0)
		return get_duration(l, w[0], 1, 3600, &sc->restart_s);
	if (strcmp(text, "activation") == 0) {
		int ret = get_duration(l, w[0], 1, 3600, &sc->activate_min_s);
		if (!ret)
			ret = get_duration(l, w[1], 1, 3600, &sc->activate_max_s);
		if (!ret && sc->activate_max_s < sc->activate_min_s)
			return bad(l, "the longest is shorter than the shortest");
		return ret;
	}
	if (strcmp(text, "revert") == 0)
		return get_duration(l, w[0], 1, 3600, &sc->revert_s);
	if (strcmp(text, "liveness_interval") == 0)
		return get_duration(l, w[0], 1, 3600, &sc->liveness_s);
	if (strcmp(text, "crash_rate") == 0)
		return get_double(l, w[0], 0, 10, &sc->crash_per_hour);
	if (strcmp(text, "offline_rate") == 0)
		return get_double(l, w[0], 0, 10, &sc->offline_per_hour);
	if (strcmp(text, "offline_time") == 0) {
		int ret = get_duration(l, w[0], 1, SIM_MAX_OFFLINE_S, &sc->offline_mean_s);
		if (!ret)
			ret = get_duration(l, w[1], 1, SIM_MAX_OFFLINE_S, &sc->offline_max_s);
		return ret;
	}
	if (strcmp(text, "alert_rate") == 0)
		return get_double(l, w[0], 0, 10000, &sc->alerts_per_hour);
	if (strcmp(text, "cpu") == 0) {
		int ret = get_double(l, w[0], 0.01, 1000, &sc->cpu_pct);
		if (!ret)
			ret = get_double(l, w[1], 0, 1, &sc->cpu_noise);
		return ret;
	}
	if (strcmp(text, "drop_rate") == 0)
		return get_double(l, w[0], 0, 10, &sc->drops_per_hour);
	if (strcmp(text, "liveness_fail_rate") == 0)
		return get_double(l, w[0], 0, 10, &sc->liveness_fail_per_hour);
	/* away SHARE RETURN_MIN RETURN_MAX */
	int ret = get_double(l, w[0], 0, 0.99, &sc->away_share);
	if (!ret)
		ret = get_duration(l, w[1], 1, SIM_MAX_OFFLINE_S, &sc->away_return_min_s);
	if (!ret)
		ret = get_duration(l, w[2], 1, SIM_MAX_OFFLINE_S, &sc->away_return_max_s);
	if (!ret && sc->away_return_max_s < sc->away_return_min_s)
		return bad(l, "the latest return is before the earliest");
	return ret;
}

int sim_scenario_parse(const char *text, size_t len, const char *file, struct sim_scenario *sc,
		       char *err, size_t errlen)
{
	struct rollout_gates gates;
	char plan_text[ROLLOUT_MAX_TEXT_BYTES];
	char line_buf[SIM_MAX_LINE_BYTES + 1];
	unsigned plan_line = 0;
	struct line l = {
	    .file = file ? file : "scenario", .no = 0, .key = "", .err = err, .errlen = errlen};
	size_t pos = 0;
	int ret;

	sim_scenario_default(sc);
	rollout_gates_default(&gates);
	plan_text[0] = '\0';
	if (file) {
		/* a file without a name line is named after itself: dir/my-case.scn is my-case */
		const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
		size_t n = strcspn(base, ".");
		char name[SIM_NAME_BYTES];
		if (n > 0 && n < sizeof(name)) {
			memcpy(name, base, n);
			name[n] = '\0';
			if (name_ok(name, sizeof(name)))
				memcpy(sc->name, name, n + 1);
		}
	}
	if (len > SIM_MAX_SCENARIO_BYTES) {
		set_err(err, errlen, "%s: larger than %u bytes", l.file, SIM_MAX_SCENARIO_BYTES);
		return -EINVAL;
	}
	while (pos < len) {
		const char *start = text + pos, *nl = memchr(start, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - start) : len - pos;
		char *s, *e;

		pos += n + (nl ? 1 : 0);
		l.no++;
		l.key = "line";
		if (n > SIM_MAX_LINE_BYTES)
			return bad(&l, "longer than %u bytes", SIM_MAX_LINE_BYTES);
		memcpy(line_buf, start, n);
		line_buf[n] = '\0';
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)line_buf[i];
			if (c == '\r' && i == n - 1) {
				line_buf[i] = '\0';
				break;
			}
			if (c == '\t')
				continue;
			if (c < 0x20 || c >= 0x7f)
				return bad(&l, "byte 0x%02x at column %zu (plain ASCII text only)",
					   c, i + 1);
		}
		s = strchr(line_buf, '#');
		if (s)
			*s = '\0';
		s = line_buf;
		while (*s == ' ' || *s == '\t')
			s++;
		e = s + strlen(s);
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			*--e = '\0';
		if (!*s)
			continue;
		ret = parse_line(&l, s, sc, &gates, plan_text, sizeof(plan_text), &plan_line);
		if (ret)
			return ret;
	}

	/* the plan follows the fleet's rings and heartbeat, with the gates given */
	sc->plan.n_rings = sc->n_rings;
	l.no = plan_line;
	l.key = "plan";
	if (plan_text[0]) {
		char why[200];
		if (rollout_plan_parse(plan_text, &gates, &sc->plan, why, sizeof(why)))
			return bad(&l, "%s", why);
	} else {
		/* the default plan has three rings; a fleet with others needs its own plan */
		if (sc->n_rings != 3) {
			set_err(err, errlen, "%s: a fleet of %u rings needs a 'plan' line", l.file,
				sc->n_rings);
			return -EINVAL;
		}
		for (uint32_t i = 0; i < sc->plan.n_steps; i++)
			sc->plan.steps[i].gates = gates;
	}
	{
		char why[200];
		ret = rollout_plan_validate(&sc->plan, false, why, sizeof(why));
		if (ret) {
			if (plan_line)
				return bad(&l, "%s", why);
			set_err(err, errlen, "%s: %s", l.file, why);
			return -EINVAL;
		}
	}
	if (sc->duration_s == 0) {
		uint64_t d = rollout_plan_nominal_s(&sc->plan) + 5400;
		if (d > SIM_MAX_DURATION_S) {
			set_err(err, errlen, "%s: the plan lasts longer than a run may (7 days)",
				l.file);
			return -EINVAL;
		}
		sc->duration_s = (uint32_t)d;
	}
	if (sc->offline_mean_s > sc->offline_max_s) {
		set_err(err, errlen, "%s: offline_time: the mean is above the longest", l.file);
		return -EINVAL;
	}
	return 0;
}

/* --- the simulation --- */

/* The wheel covers 2^18 s (72 h): every event is scheduled less than that ahead. */
#define WHEEL_SLOTS (1u << 18)
#define NO_TIME	    UINT32_MAX

enum { H_ONLINE, H_OFFLINE, H_ACTIVATING, H_LOOPING, H_BROKEN };

/* host flags */
#define HF_AFFECTED	   (1u << 0) /* in the kernel family the defect hits */
#define HF_QUARANTINED	   (1u << 1) /* quarantined the release */
#define HF_CRASHED	   (1u << 2)
#define HF_EXPOSED	   (1u << 3) /* activated the release at some point */
#define HF_AWAY		   (1u << 4) /* offline when the release was published */
#define HF_BACK_AFTER_HALT (1u << 5)
#define HF_PROBE	   (1u << 6) /* timer: liveness probe of the release on trial */

/* pending report bits */
#define PEND_REVERTED (1u << 0)
#define PEND_LIVENESS (1u << 1)

/* One cache line per host. */
struct host {
	struct rollout_track track;
	uint32_t last_hb; /* NO_TIME: none yet */
	uint32_t next_hb;
	uint32_t timer;	  /* 0: none */
	float alert_rate; /* per hour */
	float cpu;	  /* percent */
	uint8_t state;
	uint8_t version;
	uint8_t target;
	uint8_t flags;
	uint8_t ring;
	uint8_t group; /* n_groups: none (follows the rings) */
	uint8_t pend_restarts;
	uint8_t pend;
	uint8_t pad[8];
};
_Static_assert(sizeof(struct host) == 64, "a host is one cache line");

struct slot {
	uint32_t *ids;
	uint32_t n, cap;
};

struct sim {
	const struct sim_scenario *sc;
	const struct sim_options *opt;
	struct sim_result *res;
	struct host *h;
	uint64_t n;
	struct slot *wheel;
	uint64_t rng[4];
	uint64_t salt;
	struct rollout *r;
	struct rollout_policy policy[SIM_MAX_GROUPS + 1];
	uint32_t hb;
	double hb_inv;
	double phase_per_host; /* heartbeat phase of host i: i * phase_per_host seconds */
	uint32_t jitter_max;
	uint32_t publish;
	uint32_t end;
	uint32_t silence_s;
	bool local_revert;
	bool use_policy;
	uint64_t exposed_now;
	uint64_t crashed_now;
	int64_t halt_t;
	int64_t ga_t;
	int nomem;
};

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static inline double unit(uint64_t x)
{
	return (double)(x >> 11) * 0x1.0p-53;
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static inline uint64_t rnd(struct sim *s)
{
	uint64_t *st = s->rng;
	uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;

	st[2] ^= st[0];
	st[3] ^= st[1];
	st[1] ^= st[2];
	st[0] ^= st[3];
	st[2] ^= t;
	st[3] = rotl(st[3], 45);
	return r;
}

static inline double uniform(struct sim *s)
{
	return unit(rnd(s));
}

/* A standard normal deviate, near enough: four 16-bit uniforms summed (Irwin-Hall). */
static inline double gauss_of(uint64_t x)
{
	double sum = (double)(x & 0xffff) + (double)(x >> 16 & 0xffff) +
		     (double)(x >> 32 & 0xffff) + (double)(x >> 48);
	return (sum / 65536.0 - 2.0) * 1.7320508075688772;
}

/* 0 .. jitter_max, uniformly */
static inline uint32_t jitter(struct sim *s)
{
	return (uint32_t)(((rnd(s) >> 32) * ((uint64_t)s->jitter_max + 1)) >> 32);
}

static uint32_t uniform_between(struct sim *s, uint32_t lo, uint32_t hi)
{
	return hi > lo ? lo + (uint32_t)(rnd(s) % (uint64_t)(hi - lo + 1)) : lo;
}

static uint32_t poisson(struct sim *s, double lam)
{
	double u, p, f;
	uint32_t k = 0;

	if (!(lam > 0))
		return 0;
	if (lam > 30) {
		double v = lam + sqrt(lam) * gauss_of(rnd(s)) + 0.5;
		return v > 0 ? (uint32_t)v : 0;
	}
	u = uniform(s);
	p = lam < 0.05 ? 1 - lam + lam * lam / 2 - lam * lam * lam / 6 : exp(-lam);
	f = p;
	while (u > f && k < 1000) {
		k++;
		p *= lam / k;
		f += p;
	}
	return k;
}

static uint64_t host_key(const struct sim *s, uint64_t i)
{
	return mix64(s->salt + i);
}

static void schedule_at(struct sim *s, uint32_t id, uint32_t when)
{
	struct slot *sl = &s->wheel[when % WHEEL_SLOTS];

	if (sl->n == sl->cap) {
		uint32_t cap = sl->cap ? sl->cap * 2 : 64;
		uint32_t *ids = realloc(sl->ids, (size_t)cap * sizeof(*ids));
		if (!ids) {
			s->nomem = 1;
			return;
		}
		sl->ids = ids;
		sl->cap = cap;
	}
	sl->ids[sl->n++] = id;
}

/* Queues host @id's one pending event, after @t. */
static void schedule(struct sim *s, uint32_t id, uint32_t t)
{
	struct host *h = &s->h[id];
	uint32_t when;

	switch (h->state) {
	case H_ONLINE:
	case H_ACTIVATING:
		when = h->next_hb;
		if (h->timer && h->timer < when)
			when = h->timer;
		break;
	case H_OFFLINE:
	case H_LOOPING:
		when = h->timer;
		break;
	default:
		return; /* broken: it will not be heard from again */
	}
	if (when <= t)
		when = t + 1;
	if (when - t >= WHEEL_SLOTS)
		when = t + WHEEL_SLOTS - 1;
	if (when > s->end)
		return;
	schedule_at(s, id, when);
}

/* The next heartbeat after @t: the host's grid (its phase plus whole intervals) plus jitter. */
static uint32_t phase_of(const struct sim *s, uint64_t id)
{
	uint32_t p = (uint32_t)((double)id * s->phase_per_host);
	return p < s->hb ? p : s->hb - 1;
}

static uint32_t next_heartbeat(struct sim *s, uint32_t id, uint32_t t)
{
	uint32_t phase = phase_of(s, id), g, k;

	if (t < phase) {
		g = phase;
	} else {
		/* whole intervals since its phase, without a division */
		k = (uint32_t)((double)(t - phase) * s->hb_inv);
		if (k * s->hb > t - phase)
			k--;
		else if ((k + 1) * s->hb <= t - phase)
			k++;
		g = phase + (k + 1) * s->hb;
	}
	return g + jitter(s);
}

static void mark_crash(struct sim *s, struct host *h, uint32_t t, bool loops)
{
	uint32_t seen;

	if (!(h->flags & HF_CRASHED)) {
		h->flags |= HF_CRASHED;
		s->res->hosts_crashed++;
	}
	s->crashed_now++;
	/* silence becomes visible once its last heartbeat is older than the threshold */
	seen = (h->last_hb == NO_TIME ? t : h->last_hb) + s->silence_s + 1;
	if (loops) {
		h->state = H_LOOPING;
		h->timer = t + s->sc->trial_starts * s->sc->restart_s;
		if (h->timer < seen)
			seen = h->timer; /* the heartbeat after the revert reports it */
	} else {
		h->state = H_BROKEN;
		h->timer = 0;
	}
	if (s->res->first_observable_s < 0 ||
	    (int64_t)seen - s->publish < s->res->first_observable_s)
		s->res->first_observable_s = (int64_t)seen - s->publish;
}

static bool policy_allows(const struct sim *s, const struct host *h, uint32_t t)
{
	const struct rollout_policy *p = &s->policy[h->group];

	if (p->pin && p->pin != SIM_RELEASE)
		return false;
	if (p->paused)
		return false;
	if (p->approval_required && p->approved < SIM_RELEASE)
		return false;
	if (p->delay_s && (s->ga_t < 0 || (int64_t)t < s->ga_t + p->delay_s))
		return false;
	return rollout_policy_in_window(p, s->sc->epoch + t);
}

static void start_activation(struct sim *s, struct host *h, uint8_t v, uint32_t t)
{
	uint32_t delay;

	if (v == SIM_RELEASE) {
		if (s->use_policy && !policy_allows(s, h, t))
			s->res->policy_violations++;
		delay = uniform_between(s, s->sc->activate_min_s, s->sc->activate_max_s);
	} else {
		delay = s->sc->revert_s;
	}
	h->state = H_ACTIVATING;
	h->target = v;
	h->flags &= (uint8_t)~HF_PROBE;
	h->timer = t + (delay ? delay : 1);
}

static void heartbeat(struct sim *s, uint32_t id, struct host *h, uint32_t t)
{
	const struct sim_scenario *sc = s->sc;
	struct rollout_report rep;
	struct rollout_answer ans;
	uint32_t interval = h->last_hb == NO_TIME ? 0 : t - h->last_hb;
	double hours = interval * (1.0 / 3600);
	const bool hit = h->version == SIM_RELEASE && (h->flags & HF_AFFECTED);
	const uint64_t release = SIM_RELEASE;
	double u;

	memset(&rep, 0, sizeof(rep));
	rep.interval_s = interval;
	rep.restarts = h->pend_restarts;
	rep.reverts = (h->pend & PEND_REVERTED) ? 1 : 0;
	rep.liveness_failed = (h->pend & PEND_LIVENESS) ||
			      (hit && sc->effect == SIM_EFFECT_liveness && !s->local_revert);
	/* rare things share one draw: a crash, a failed liveness probe, a burst of drops, and
	 * (below) the start of an offline spell */
	u = uniform(s);
	double p_crash = sc->crash_per_hour * hours, p_live = sc->liveness_fail_per_hour * hours;
	double p_drops =
	    sc->drops_per_hour * hours * (hit && sc->effect == SIM_EFFECT_drops ? sc->factor : 1.0);
	if (u < p_crash)
		rep.restarts++;
	else if (u < p_crash + p_live)
		rep.liveness_failed = true;
	else if (p_drops >= 1 || u < p_crash + p_live + p_drops)
		rep.drops = 50 + rnd(s) % 500;
	if (interval) {
		rep.alerts =
		    poisson(s, h->alert_rate * hours *
				   (hit && sc->effect == SIM_EFFECT_alerts ? sc->factor : 1.0));
		double cpu = h->cpu * (1 + sc->cpu_noise * gauss_of(rnd(s))) *
			     (hit && sc->effect == SIM_EFFECT_cpu ? sc->factor : 1.0);
		rep.cpu_pct = cpu > 0.01 ? cpu : 0.01;
	} else {
		rep.cpu_pct = -1;
	}

	if (s->r) {
		struct rollout_agent a = {
		    .key = host_key(s, id),
		    .ring = h->ring,
		    .active = h->version,
		    .quarantined = (h->flags & HF_QUARANTINED) ? &release : NULL,
		    .n_quarantined = (h->flags & HF_QUARANTINED) ? 1 : 0,
		};
		rollout_heartbeat(s->r, &h->track, &a,
				  &s->policy[s->use_policy ? h->group : sc->n_groups], &rep,
				  sc->epoch + t, &ans);
	} else {
		rollout_track_observe(&h->track, &rep);
		ans.version = h->version;
	}
	s->res->heartbeats++;
	h->last_hb = t;
	h->pend_restarts = 0;
	h->pend = 0;
	h->next_hb = next_heartbeat(s, id, t);

	if (h->state != H_ONLINE)
		return;
	if (ans.version && ans.version != h->version && ans.version <= SIM_RELEASE) {
		start_activation(s, h, (uint8_t)ans.version, t);
		return;
	}
	/* an offline spell (a laptop closed, a reboot) starting after this heartbeat */
	if (!h->timer && u > 1 - sc->offline_per_hour * hours) {
		double d = -log(1 - uniform(s)) * sc->offline_mean_s;
		h->state = H_OFFLINE;
		h->timer = t + 1 + (uint32_t)(d < sc->offline_max_s ? d : sc->offline_max_s);
	}
}

static void activated(struct sim *s, struct host *h, uint32_t t)
{
	const struct sim_scenario *sc = s->sc;
	uint8_t old = h->version;

	h->version = h->target;
	h->state = H_ONLINE;
	h->timer = 0;
	if (old == SIM_RELEASE && h->version != SIM_RELEASE)
		s->exposed_now--;
	if (h->version != SIM_RELEASE || old == SIM_RELEASE)
		return;
	s->exposed_now++;
	if (s->exposed_now > s->res->exposed_max)
		s->res->exposed_max = s->exposed_now;
	if (!(h->flags & HF_EXPOSED)) {
		h->flags |= HF_EXPOSED;
		s->res->exposed_total++;
		s->res->ring_exposed[h->ring]++;
		if (h->flags & HF_BACK_AFTER_HALT)
			s->res->away_back_after_halt_activated++;
	}
	if (!(h->flags & HF_AFFECTED))
		return;
	switch (sc->effect) {
	case SIM_EFFECT_crash:
		mark_crash(s, h, t, s->local_revert);
		break;
	case SIM_EFFECT_hang:
		mark_crash(s, h, t, false);
		break;
	case SIM_EFFECT_liveness:
		if (s->local_revert) {
			/* the trial's liveness probe finds the detections dead */
			h->flags |= HF_PROBE;
			h->timer = t + uniform_between(s, 1, sc->liveness_s);
		}
		break;
	default:
		break;
	}
}

/* Back to last-known-good by the agent itself, quarantining the release. */
static void local_revert(struct sim *s, struct host *h)
{
	h->version = SIM_PREVIOUS;
	h->flags |= HF_QUARANTINED;
	s->exposed_now--;
}

static void on_timer(struct sim *s, uint32_t id, struct host *h, uint32_t t)
{
	switch (h->state) {
	case H_ACTIVATING:
		activated(s, h, t);
		break;
	case H_LOOPING:
		/* the trial counter ran out: reverted and quarantined, the agent starts clean and
		 * reports in at once */
		local_revert(s, h);
		s->crashed_now--;
		s->res->recovered_automatically++;
		h->state = H_ONLINE;
		h->pend_restarts = (uint8_t)(s->sc->trial_starts < 255 ? s->sc->trial_starts : 255);
		h->pend |= PEND_REVERTED;
		heartbeat(s, id, h, t);
		break;
	case H_OFFLINE:
		h->state = H_ONLINE;
		if ((h->flags & HF_AWAY) && s->halt_t >= 0 && !(h->flags & HF_BACK_AFTER_HALT)) {
			h->flags |= HF_BACK_AFTER_HALT;
			s->res->away_back_after_halt++;
		}
		h->flags &= (uint8_t)~HF_AWAY;
		heartbeat(s, id, h, t);
		break;
	case H_ONLINE:
		if (h->flags & HF_PROBE) {
			h->flags &= (uint8_t)~HF_PROBE;
			if (h->version == SIM_RELEASE) {
				local_revert(s, h);
				h->pend |= PEND_LIVENESS;
			}
		}
		break;
	default:
		break;
	}
}

static void process(struct sim *s, uint32_t id, uint32_t t)
{
	struct host *h = &s->h[id];

	if (h->timer && h->timer <= t) {
		h->timer = 0;
		on_timer(s, id, h, t);
	}
	if ((h->state == H_ONLINE || h->state == H_ACTIVATING) && h->next_hb <= t)
		heartbeat(s, id, h, t);
	schedule(s, id, t);
}

/* Greatest common divisor, for a permutation of host indices. */
static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t r = a % b;
		a = b;
		b = r;
	}
	return a;
}

/* Hosts, rings (exact sizes, spread over heartbeat phases), groups, kernel families. */
static void populate(struct sim *s)
{
	const struct sim_scenario *sc = s->sc;
	struct sim_result *res = s->res;
	uint64_t n = s->n, bound[ROLLOUT_MAX_RINGS], acc = 0;
	uint64_t a = (uint64_t)((double)n * 0.6180339887) | 1, b;

	while (gcd(a, n) != 1)
		a++;
	b = mix64(s->salt ^ 0x5bd1e995) % n;
	for (uint32_t r = 0; r + 1 < sc->n_rings; r++) {
		uint64_t k = (uint64_t)llround((double)n * sc->ring_share[r]);
		/* the first rings keep a floor of hosts while they take at most half the fleet */
		if (k < sc->ring_min[r] && acc + sc->ring_min[r] <= n / 2)
			k = sc->ring_min[r];
		if (k == 0 && n >= sc->n_rings)
			k = 1;
		if (acc + k > n)
			k = n - acc;
		acc += k;
		bound[r] = acc;
		res->ring_hosts[r] = k;
	}
	res->ring_hosts[sc->n_rings - 1] = n - acc;
	bound[sc->n_rings - 1] = n;

	for (uint64_t i = 0; i < n; i++) {
		struct host *h = &s->h[i];
		uint64_t key = host_key(s, i), p = (i * a + b) % n;
		uint32_t ring = 0;

		while (p >= bound[ring])
			ring++;
		memset(h, 0, sizeof(*h));
		rollout_track_init(&h->track);
		h->last_hb = NO_TIME;
		h->state = H_ONLINE;
		h->version = SIM_PREVIOUS;
		h->ring = (uint8_t)ring;
		h->group = (uint8_t)sc->n_groups;
		if (ring == sc->n_rings - 1) {
			double u = unit(mix64(key ^ 0x1111)), c = 0;
			for (uint32_t g = 0; g < sc->n_groups; g++) {
				c += sc->groups[g].share;
				if (u < c) {
					h->group = (uint8_t)g;
					break;
				}
			}
		}
		res->groups[h->group].hosts++;
		if (unit(mix64(key ^ 0x2222)) < sc->affected)
			h->flags |= HF_AFFECTED;
		/* hosts differ: alert rates gamma (shape 2), CPU log-normal */
		double g2 =
		    -(log(1 - unit(mix64(key ^ 0x3333))) + log(1 - unit(mix64(key ^ 0x4444))));
		h->alert_rate = (float)(sc->alerts_per_hour * g2 / 2);
		h->cpu = (float)(sc->cpu_pct * exp(0.3 * gauss_of(mix64(key ^ 0x5555)) - 0.045));
		if (sc->away_share > 0 && unit(mix64(key ^ 0x6666)) < sc->away_share) {
			h->flags |= HF_AWAY;
			h->state = H_OFFLINE;
			h->timer = s->publish +
				   uniform_between(s, sc->away_return_min_s, sc->away_return_max_s);
			res->away++;
		} else {
			/* first heartbeat: its phase plus jitter */
			h->next_hb = phase_of(s, i) + jitter(s);
		}
	}
}

static int start_release(struct sim *s, char *err, size_t errlen)
{
	const struct sim_scenario *sc = s->sc;
	struct rollout_plan plan = sc->plan;
	int ret;

	if (s->opt->all_at_once) {
		/* 2024: one step to everyone, nothing watching */
		plan.n_steps = 1;
		plan.steps[0].ring = plan.n_rings - 1;
		plan.steps[0].bp = ROLLOUT_BP;
		plan.steps[0].bake_s = 0;
		plan.steps[0].gates.enabled = 0;
		plan.steps[0].gates.min_agents = 0;
	}
	ret = rollout_new(&plan, SIM_RELEASE, SIM_PREVIOUS, s->opt->all_at_once,
			  sc->epoch + s->publish, &s->r, err, errlen);
	if (ret)
		return ret;
	for (uint32_t r = 0; r < sc->n_rings; r++)
		rollout_set_population(s->r, r, s->res->ring_hosts[r]);
	return 0;
}

static int collect_decisions(struct sim *s)
{
	struct sim_result *res = s->res;
	int err = buf_append_char(&res->decisions_json, '[');

	for (size_t i = 0; !err && i < rollout_decision_count(s->r); i++) {
		const struct rollout_decision *d = rollout_decision(s->r, i);
		err = rollout_decision_text(s->r, d, &res->decisions_text);
		if (!err)
			err = buf_append_char(&res->decisions_text, '\n');
		if (!err)
			err = buf_printf(&res->decisions_json,
					 "%s{\"t\":%" PRId64 ",\"action\":\"%s\",\"step\":%u",
					 i ? "," : "", d->at - (s->sc->epoch + s->publish),
					 rollout_action_name(d->action), d->step + 1);
		if (!err && d->failed_gate >= 0)
			err = buf_printf(&res->decisions_json, ",\"gate\":\"%s\"",
					 rollout_gate_name((enum rollout_gate)d->failed_gate));
		if (!err)
			err = buf_append_char(&res->decisions_json, '}');
		if (!err && d->action == ROLLOUT_ACT_HALT) {
			res->halt_gate = d->failed_gate;
			res->halt_step = d->step + 1;
		}
	}
	return err ? err : buf_append_char(&res->decisions_json, ']');
}

int sim_run(const struct sim_scenario *sc, const struct sim_options *opt, struct sim_result *res,
	    char *err, size_t errlen)
{
	struct sim s;
	size_t bytes;
	int ret = -ENOMEM;
	bool impacted = false;
	int64_t last_impact = -1;

	memset(res, 0, sizeof(*res));
	buf_init(&res->decisions_text, 1u << 20);
	buf_init(&res->decisions_json, 1u << 20);
	if (opt->hosts < 1 || opt->hosts > SIM_MAX_HOSTS) {
		set_err(err, errlen, "hosts: %" PRIu64 " is not 1 to %llu", opt->hosts,
			SIM_MAX_HOSTS);
		return -EINVAL;
	}
	memset(&s, 0, sizeof(s));
	s.sc = sc;
	s.opt = opt;
	s.res = res;
	s.n = opt->hosts;
	s.hb = sc->plan.heartbeat_s;
	s.phase_per_host = (double)s.hb / (double)s.n;
	s.hb_inv = 1.0 / s.hb;
	s.jitter_max = (uint32_t)(sc->jitter * s.hb);
	s.publish = sc->publish_s;
	s.end = sc->publish_s + sc->duration_s;
	s.silence_s = sc->plan.steps[0].gates.silence_k * s.hb;
	s.local_revert = !opt->all_at_once;
	s.use_policy = !opt->all_at_once;
	s.halt_t = -1;
	s.ga_t = -1;
	s.salt = mix64(opt->seed ^ 0x7669676c73696dull);
	for (int i = 0; i < 4; i++)
		s.rng[i] = mix64(s.salt + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1));
	for (uint32_t g = 0; g < sc->n_groups; g++)
		s.policy[g] = sc->groups[g].policy;
	rollout_policy_default(&s.policy[sc->n_groups]);

	res->hosts = s.n;
	res->seed = opt->seed;
	res->all_at_once = opt->all_at_once;
	snprintf(res->scenario, sizeof(res->scenario), "%s", sc->name);
	res->nominal_s = rollout_plan_nominal_s(&sc->plan);
	res->time_to_halt_s = -1;
	res->time_to_complete_s = -1;
	res->halt_gate = -1;
	res->first_observable_s = -1;
	res->recovery_s = -1;
	res->n_rings = sc->n_rings;
	res->n_groups = sc->n_groups;
	for (uint32_t g = 0; g < sc->n_groups; g++)
		memcpy(res->group_names[g], sc->groups[g].name, sizeof(res->group_names[g]));

	if (size_mul(s.n, sizeof(*s.h), &bytes) || !(s.h = aligned_alloc(64, bytes)) ||
	    !(s.wheel = calloc(WHEEL_SLOTS, sizeof(*s.wheel)))) {
		set_err(err, errlen, "out of memory for %" PRIu64 " hosts", s.n);
		goto out_free;
	}
	if (opt->sample_s) {
		res->sample_s = opt->sample_s;
		res->n_samples = sc->duration_s / opt->sample_s + 1;
		res->exposed_series = calloc(res->n_samples, sizeof(uint32_t));
		res->crashed_series = calloc(res->n_samples, sizeof(uint32_t));
		if (!res->exposed_series || !res->crashed_series) {
			set_err(err, errlen, "out of memory for the series");
			goto out_free;
		}
	}
	populate(&s);
	for (uint64_t i = 0; i < s.n; i++) {
		struct host *h = &s.h[i];
		if (h->state == H_OFFLINE)
			schedule_at(&s, (uint32_t)i, h->timer);
		else
			schedule_at(&s, (uint32_t)i, h->next_hb);
	}

	for (uint32_t t = 0; t <= s.end && !s.nomem; t++) {
		struct slot *sl = &s.wheel[t % WHEEL_SLOTS];

		if (t == s.publish) {
			ret = start_release(&s, err, errlen);
			if (ret)
				goto out_free;
		}
		if (s.r && s.use_policy) {
			for (uint32_t g = 0; g < sc->n_groups; g++)
				if (sc->groups[g].approve_after_s >= 0 &&
				    (int64_t)t == s.publish + sc->groups[g].approve_after_s)
					s.policy[g].approved = SIM_RELEASE;
		}
		for (uint32_t k = 0; k < sl->n; k++) {
			if (k + 16 < sl->n)
				__builtin_prefetch(&s.h[sl->ids[k + 16]], 1);
			process(&s, sl->ids[k], t);
		}
		/* the slot comes round again only in 72 h: give its memory back now */
		free(sl->ids);
		sl->ids = NULL;
		sl->n = 0;
		sl->cap = 0;
		if (!s.r)
			continue;
		int act = rollout_tick(s.r, sc->epoch + t);
		if (act == ROLLOUT_ACT_HALT && s.halt_t < 0)
			s.halt_t = t;
		if (act == ROLLOUT_ACT_COMPLETE)
			s.ga_t = t;
		bool ok = s.crashed_now == 0 && (s.halt_t < 0 || s.exposed_now == 0);
		if (!ok) {
			impacted = true;
			last_impact = t;
		}
		if (opt->sample_s && (t - s.publish) % opt->sample_s == 0) {
			size_t k = (t - s.publish) / opt->sample_s;
			if (k < res->n_samples) {
				res->exposed_series[k] = (uint32_t)s.exposed_now;
				res->crashed_series[k] = (uint32_t)s.crashed_now;
			}
		}
	}
	if (s.nomem) {
		set_err(err, errlen, "out of memory for the event wheel");
		ret = -ENOMEM;
		goto out_free;
	}

	res->halted = s.halt_t >= 0;
	res->time_to_halt_s = s.halt_t >= 0 ? s.halt_t - s.publish : -1;
	res->completed = s.ga_t >= 0;
	res->time_to_complete_s = s.ga_t >= 0 ? s.ga_t - s.publish : -1;
	if (s.crashed_now == 0 && (s.halt_t < 0 || s.exposed_now == 0))
		res->recovery_s = impacted ? last_impact + 1 - s.publish : 0;
	for (uint64_t i = 0; i < s.n; i++) {
		const struct host *h = &s.h[i];
		res->final_versions[h->version <= SIM_RELEASE ? h->version : 0]++;
		if (h->state == H_BROKEN)
			res->manual_repair++;
		if (h->version == SIM_RELEASE)
			res->groups[h->group].on_release++;
		if (h->group == sc->n_groups && h->state != H_OFFLINE) {
			res->follow_online++;
			res->follow_on_release += h->version == SIM_RELEASE;
		}
	}
	ret = collect_decisions(&s);
	if (ret)
		set_err(err, errlen, "out of memory for the decisions");
out_free:
	if (s.wheel) {
		for (uint32_t i = 0; i < WHEEL_SLOTS; i++)
			free(s.wheel[i].ids);
		free(s.wheel);
	}
	free(s.h);
	rollout_free(s.r);
	return ret;
}

void sim_result_free(struct sim_result *res)
{
	if (!res)
		return;
	free(res->exposed_series);
	free(res->crashed_series);
	res->exposed_series = NULL;
	res->crashed_series = NULL;
	buf_release(&res->decisions_text);
	buf_release(&res->decisions_json);
}

/* --- output --- */

static int json_seconds(struct buf *out, const char *key, int64_t v)
{
	if (v < 0)
		return buf_printf(out, ",\"%s\":null", key);
	return buf_printf(out, ",\"%s\":%" PRId64, key, v);
}

int sim_result_json(const struct sim_result *res, struct buf *out)
{
	int err;

	err = buf_printf(out,
			 "{\"hosts\":%" PRIu64 ",\"scenario\":\"%s\",\"mode\":\"%s\","
			 "\"seed\":%" PRIu64 ",\"halted\":%s",
			 res->hosts, res->scenario, res->all_at_once ? "all-at-once" : "vigil",
			 res->seed, res->halted ? "true" : "false");
	if (!err)
		err = json_seconds(out, "time_to_halt_s", res->time_to_halt_s);
	if (!err)
		err = buf_printf(
		    out,
		    ",\"exposed_max\":%" PRIu64 ",\"exposed_max_fraction\":%.6g"
		    ",\"hosts_crashed\":%" PRIu64 ",\"hosts_recovered_automatically\":%" PRIu64
		    ",\"hosts_needing_manual_repair\":%" PRIu64,
		    res->exposed_max, (double)res->exposed_max / (double)res->hosts,
		    res->hosts_crashed, res->recovered_automatically, res->manual_repair);
	if (!err)
		err = json_seconds(out, "time_to_full_recovery_s", res->recovery_s);
	if (!err)
		err = buf_printf(out, ",\"final_versions\":{\"%u\":%" PRIu64 ",\"%u\":%" PRIu64 "}",
				 SIM_PREVIOUS, res->final_versions[SIM_PREVIOUS], SIM_RELEASE,
				 res->final_versions[SIM_RELEASE]);
	if (!err && res->halted)
		err = buf_printf(out, ",\"halt_step\":%u,\"halt_gate\":%s%s%s", res->halt_step,
				 res->halt_gate >= 0 ? "\"" : "",
				 res->halt_gate >= 0
				     ? rollout_gate_name((enum rollout_gate)res->halt_gate)
				     : "null",
				 res->halt_gate >= 0 ? "\"" : "");
	else if (!err)
		err = buf_append_str(out, ",\"halt_step\":null,\"halt_gate\":null");
	if (!err)
		err = buf_printf(out, ",\"completed\":%s", res->completed ? "true" : "false");
	if (!err)
		err = json_seconds(out, "time_to_complete_s", res->time_to_complete_s);
	if (!err)
		err = buf_printf(out, ",\"nominal_plan_s\":%" PRIu64 ",\"exposed_total\":%" PRIu64,
				 res->nominal_s, res->exposed_total);
	if (!err)
		err = json_seconds(out, "first_crash_observable_s", res->first_observable_s);
	if (!err)
		err = json_seconds(out, "halt_after_observable_s",
				   res->halted && res->first_observable_s >= 0 &&
					   res->time_to_halt_s >= res->first_observable_s
				       ? res->time_to_halt_s - res->first_observable_s
				       : -1);
	if (!err)
		err = buf_append_str(out, ",\"rings\":[");
	for (uint32_t r = 0; !err && r < res->n_rings; r++)
		err = buf_printf(out, "%s{\"hosts\":%" PRIu64 ",\"exposed\":%" PRIu64 "}",
				 r ? "," : "", res->ring_hosts[r], res->ring_exposed[r]);
	if (!err)
		err = buf_append_str(out, "],\"groups\":{");
	for (uint32_t g = 0; !err && g < res->n_groups; g++)
		err = buf_printf(out, "%s\"%s\":{\"hosts\":%" PRIu64 ",\"on_release\":%" PRIu64 "}",
				 g ? "," : "", res->group_names[g], res->groups[g].hosts,
				 res->groups[g].on_release);
	if (!err)
		err = buf_printf(out,
				 "%s\"follow\":{\"hosts\":%" PRIu64 ",\"on_release\":%" PRIu64 "}",
				 res->n_groups ? "," : "", res->groups[res->n_groups].hosts,
				 res->groups[res->n_groups].on_release);
	if (!err)
		err = buf_printf(
		    out,
		    "},\"away\":%" PRIu64 ",\"away_back_after_halt\":%" PRIu64
		    ",\"away_back_after_halt_activated\":%" PRIu64 ",\"policy_violations\":%" PRIu64
		    ",\"follow_online\":%" PRIu64 ",\"follow_on_release\":%" PRIu64
		    ",\"heartbeats\":%" PRIu64 ",\"decisions\":%s}",
		    res->away, res->away_back_after_halt, res->away_back_after_halt_activated,
		    res->policy_violations, res->follow_online, res->follow_on_release,
		    res->heartbeats, res->decisions_json.data ? res->decisions_json.data : "[]");
	return err;
}

/* --- SVG --- */

#define PANEL_W	 520
#define PANEL_H	 356
#define MARGIN_L 64
#define MARGIN_R 16
#define MARGIN_T 64
#define MARGIN_B 48
#define PLOT_W	 (PANEL_W - MARGIN_L - MARGIN_R)
#define PLOT_H	 (PANEL_H - MARGIN_T - MARGIN_B)
/* Columns a curve is reduced to (two per pixel). */
#define COLUMNS (2 * PLOT_W)

/* Time runs on a log scale (the first minutes matter as much as the hours): the share of the
 * width at @t seconds of a run lasting @span. */
static double plot_x(double t, double span)
{
	return log10(1 + t / 10) / log10(1 + span / 10);
}

static double plot_y(double v, double top)
{
	if (v < 1)
		return MARGIN_T + PLOT_H + 4; /* zero: just under the axis */
	return MARGIN_T + PLOT_H - PLOT_H * log10(v) / log10(top);
}

/* The curve of @series: the largest value of the samples in each column. */
static int polyline(struct buf *out, const struct sim_result *res, const uint32_t *series,
		    double x0, double top, const char *style)
{
	double span = (double)(res->n_samples - 1) * res->sample_s;
	int err = buf_printf(out, "<polyline fill=\"none\" %s points=\"", style);
	size_t i = 0;

	for (int c = 0; !err && c < COLUMNS && i < res->n_samples; c++) {
		uint32_t v = 0;
		bool any = false;
		while (i < res->n_samples &&
		       plot_x((double)i * res->sample_s, span) * COLUMNS < c + 1) {
			if (!any || series[i] > v)
				v = series[i];
			any = true;
			i++;
		}
		if (any)
			err = buf_printf(out, "%.1f,%.1f ",
					 x0 + MARGIN_L + (c + 0.5) * PLOT_W / COLUMNS,
					 plot_y(v, top));
	}
	return err ? err : buf_append_str(out, "\"/>\n");
}

static int panel(struct buf *out, const struct sim_result *res, double x0, const char *title)
{
	static const struct {
		double s;
		const char *label;
	} ticks[] = {{0, "0"},	    {10, "10 s"},   {60, "1 min"},  {600, "10 min"},
		     {3600, "1 h"}, {21600, "6 h"}, {86400, "1 d"}, {604800, "7 d"}};
	double top = res->hosts > 10 ? (double)res->hosts : 10;
	double span = (double)(res->n_samples ? res->n_samples - 1 : 0) * res->sample_s;
	int err;

	err = buf_printf(out,
			 "<g font-family=\"sans-serif\" font-size=\"12\">\n"
			 "<text x=\"%.0f\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%s"
			 "</text>\n",
			 x0 + MARGIN_L, title);
	if (!err)
		err = buf_printf(
		    out,
		    "<text x=\"%.0f\" y=\"36\">scenario %s, %" PRIu64 " hosts"
		    "</text><text x=\"%.0f\" y=\"52\">exposed at most %" PRIu64
		    " (%.3g%%), %" PRIu64 " need manual repair</text>\n",
		    x0 + MARGIN_L, res->scenario, res->hosts, x0 + MARGIN_L, res->exposed_max,
		    100.0 * (double)res->exposed_max / (double)res->hosts, res->manual_repair);
	if (!err)
		err = buf_printf(out,
				 "<rect x=\"%.0f\" y=\"%d\" width=\"%d\" height=\"%d\" "
				 "fill=\"none\" stroke=\"#888\"/>\n",
				 x0 + MARGIN_L, MARGIN_T, PLOT_W, PLOT_H);
	/* hosts on a log scale: a line per power of ten */
	for (double v = 1; !err && v <= top * 1.0001; v *= 10) {
		double y = plot_y(v, top);
		err = buf_printf(out,
				 "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" "
				 "stroke=\"#ddd\"/><text x=\"%.0f\" y=\"%.1f\" "
				 "text-anchor=\"end\">%.0f</text>\n",
				 x0 + MARGIN_L, x0 + MARGIN_L + PLOT_W, y, y, x0 + MARGIN_L - 4,
				 y + 4, v);
	}
	for (size_t i = 0; !err && span > 0 && i < sizeof(ticks) / sizeof(ticks[0]); i++) {
		if (ticks[i].s > span)
			break;
		double x = x0 + MARGIN_L + PLOT_W * plot_x(ticks[i].s, span);
		err = buf_printf(out,
				 "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" "
				 "stroke=\"#eee\"/><text x=\"%.1f\" y=\"%d\" "
				 "text-anchor=\"middle\">%s</text>\n",
				 x, x, MARGIN_T, MARGIN_T + PLOT_H, x, PANEL_H - MARGIN_B + 16,
				 ticks[i].label);
	}
	if (!err)
		err = buf_printf(out,
				 "<text x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">time since "
				 "publication (log scale)</text>\n",
				 x0 + MARGIN_L + PLOT_W / 2.0, PANEL_H - 8);
	if (!err && res->halted && span > 0) {
		double x = x0 + MARGIN_L + PLOT_W * plot_x((double)res->time_to_halt_s, span);
		err = buf_printf(out,
				 "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" "
				 "stroke=\"#2ca02c\" stroke-dasharray=\"4 3\"/>"
				 "<text x=\"%.1f\" y=\"%d\" fill=\"#2ca02c\">halted after %" PRId64
				 " s</text>\n",
				 x, x, MARGIN_T, MARGIN_T + PLOT_H, x + 4, MARGIN_T + 14,
				 res->time_to_halt_s);
	}
	if (!err && res->n_samples) {
		err = polyline(out, res, res->exposed_series, x0, top,
			       "stroke=\"#1f77b4\" stroke-width=\"4\" stroke-opacity=\"0.6\"");
		if (!err)
			err = polyline(out, res, res->crashed_series, x0, top,
				       "stroke=\"#d62728\" stroke-width=\"2\" "
				       "stroke-dasharray=\"6 3\"");
	}
	return err ? err : buf_append_str(out, "</g>\n");
}

int sim_plot_svg(const struct sim_result *vigil, const struct sim_result *baseline, struct buf *out)
{
	int width = PANEL_W * (baseline ? 2 : 1);
	int err = buf_printf(out,
			     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			     "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
			     "height=\"%d\" viewBox=\"0 0 %d %d\">\n"
			     "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
			     width, PANEL_H + 24, width, PANEL_H + 24);

	if (!err)
		err = panel(out, vigil, 0, "vigil: rings, gates, local revert");
	if (!err && baseline)
		err = panel(out, baseline, PANEL_W, "all at once (July 2024)");
	if (!err)
		err = buf_printf(out,
				 "<g font-family=\"sans-serif\" font-size=\"12\">"
				 "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#1f77b4\" "
				 "stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">hosts running the "
				 "release</text><line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" "
				 "stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"%d\" y=\"%d\">"
				 "hosts crashed (log scale)</text></g>\n",
				 MARGIN_L, MARGIN_L + 20, PANEL_H + 12, PANEL_H + 12, MARGIN_L + 26,
				 PANEL_H + 16, MARGIN_L + 200, MARGIN_L + 220, PANEL_H + 12,
				 PANEL_H + 12, MARGIN_L + 226, PANEL_H + 16);
	return err ? err : buf_append_str(out, "</svg>\n");
}
