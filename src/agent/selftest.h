/*
 * The agent's built-in content: the detection liveness rule every ruleset it runs includes,
 * and the self-test corpus a bundle must pass in the sandboxed test-load child before the
 * agent swaps it in.
 */
#ifndef VIGIL_AGENT_SELFTEST_H
#define VIGIL_AGENT_SELFTEST_H

#include <stddef.h>
#include <stdint.h>

#include "../lib/engine.h"
#include "../lib/event.h"
#include "../lib/rules.h"

/* The built-in rule and the command line prefix of the synthetic event it detects. */
#define SELFTEST_LIVENESS_RULE	 "vigil-builtin-liveness"
#define SELFTEST_LIVENESS_MARKER "vigil-liveness-marker"

/* The built-in rules as one rules source (static storage), added after a bundle's files. */
const struct rules_source *selftest_builtin_source(void);

/*
 * Makes @ev (reset first) the synthetic exec event whose command line is
 * "vigil-liveness-marker NONCE". Returns 0 or -errno.
 */
int selftest_marker_event(struct event *ev, uint64_t nonce);

/*
 * Passes the marker event through @e with a callback of its own (nothing is printed and no
 * response is taken). Returns 1 when the built-in rule fired, 0 when it did not, or -errno;
 * *@alerts is the number of alerts the event raised (any rule), which the engine counted.
 * @ev is scratch space the caller owns.
 */
int selftest_liveness_probe(struct engine *e, struct event *ev, uint64_t nonce, uint64_t now_ns,
			    unsigned *alerts);

struct selftest_result {
	unsigned tests_passed; /* the bundle's rule test items */
	unsigned tests_failed;
	unsigned corpus_events; /* built-in events evaluated */
};

/*
 * The test-load checks, run in the sandboxed child on the compiled ruleset @rs: every rule
 * test of the bundle, then the built-in corpus in a fresh engine (the liveness marker must
 * raise the built-in rule, ordinary events must evaluate without error and must not raise
 * it). Returns 0, or -EINVAL / -ENOMEM with a one-line reason in @err.
 */
int selftest_run(const struct ruleset *rs, struct selftest_result *res, char *err, size_t errlen);

#endif
