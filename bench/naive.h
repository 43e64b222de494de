/*
 * A naive rule evaluator, the baseline of bench/engine_bench.c: for every event, every
 * compiled program of a ruleset in turn, each predicate in turn (strstr / strcasestr for
 * literals, PCRE2 for regexes), with no event.action buckets and no multi-pattern scans.
 * It reads the compiled predicate table and programs (src/lib/compile_int.h), so it
 * evaluates exactly the rules the engine evaluates, and the two alert counts must agree.
 */
#ifndef VIGIL_BENCH_NAIVE_H
#define VIGIL_BENCH_NAIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/event.h"
#include "lib/rules.h"

struct naive;

typedef void (*naive_alert_fn)(void *ctx, const struct rule_info *rule, const struct event *ev);

/*
 * Creates an evaluator for @rs (which must outlive it), compiling every regex value with
 * PCRE2. Returns 0 and stores it in *@out, or -EINVAL with a one-line reason in @err (a
 * pattern PCRE2 rejects), or -ENOMEM.
 */
int naive_new(const struct ruleset *rs, struct naive **out, char *err, size_t errlen);

/* Frees @nv. Accepts NULL. */
void naive_free(struct naive *nv);

/*
 * Evaluates @ev at @now_ns as engine_eval does and calls @fn (may be NULL) per alert, in rule
 * order. @cstrings says that every string value of @ev (list items included) is followed by a
 * NUL byte and holds none, so that strstr and strcasestr may read it; otherwise a byte-wise
 * search is used for that event. Returns the number of alerts.
 */
int naive_eval(struct naive *nv, const struct event *ev, uint64_t now_ns, bool cstrings,
	       naive_alert_fn fn, void *ctx);

/* Forgets all threshold and sequence state. */
void naive_reset_state(struct naive *nv);

/* PCRE2 matches that failed (match limit, ...) and counted as no match. */
uint64_t naive_regex_errors(const struct naive *nv);

#endif
