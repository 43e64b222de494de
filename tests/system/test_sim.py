"""
vigil sim as a user runs it: every built-in scenario on a 20,000-host fleet against the targets
of docs/ROLLOUT.md, the July 2024 baseline, the same seed giving the same result, 100 seeded
runs of a good release with no false halt, scenario files a user writes (and the one-line
errors for broken ones), the plot, and the command line.
"""
import concurrent.futures
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, VIGIL

HOSTS = 20000
HEARTBEAT_S = 60
BUILTIN = ["good", "crash-on-load", "crash-partial", "fp-storm", "liveness-loss",
           "cpu-regression", "offline-20"]


def need_vigil():
    if not os.access(VIGIL, os.X_OK):
        pytest.fail(f"{VIGIL} is missing: run make first", pytrace=False)


def sim(*args, cwd=None, timeout=120):
    need_vigil()
    return subprocess.run([str(VIGIL), "sim", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def last_json(res):
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr}"
    lines = res.stdout.strip().splitlines()
    assert lines, "no output"
    return json.loads(lines[-1])


# Every run the scenario tests look at, started together on every CPU.
RUNS = {
    **{name: ("--agents", str(HOSTS), "--scenario", name, "--seed", "1") for name in BUILTIN},
    "good-again": ("--agents", str(HOSTS), "--scenario", "good", "--seed", "1"),
    "crash-on-load-again": ("--agents", str(HOSTS), "--scenario", "crash-on-load", "--seed", "1"),
    "crash-on-load-seed2": ("--agents", str(HOSTS), "--scenario", "crash-on-load", "--seed", "2"),
    "baseline-crash-on-load": ("--agents", str(HOSTS), "--scenario", "crash-on-load",
                               "--baseline", "all-at-once"),
    "baseline-offline-20": ("--agents", str(HOSTS), "--scenario", "offline-20",
                            "--baseline", "all-at-once"),
    "good-100-seeds": ("--agents", "2000", "--scenario", "good", "--runs", "100"),
}


@pytest.fixture(scope="module")
def runs():
    need_vigil()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {k: pool.submit(sim, *args) for k, args in RUNS.items()}
        return {k: f.result() for k, f in futures.items()}


def result(runs, key):
    return last_json(runs[key])


def check_common(r, scenario):
    assert r["hosts"] == HOSTS
    assert r["scenario"] == scenario
    assert r["mode"] == "vigil"
    for key in ("halted", "time_to_halt_s", "exposed_max", "exposed_max_fraction",
                "hosts_crashed", "hosts_recovered_automatically",
                "hosts_needing_manual_repair", "time_to_full_recovery_s", "final_versions"):
        assert key in r, f"the JSON line lacks {key}"
    assert sum(r["final_versions"].values()) == HOSTS
    assert r["policy_violations"] == 0, "a host got the release against its group's policy"
    # what halts early leaves nobody to repair by hand, and nobody on the release
    if r["halted"]:
        assert r["hosts_needing_manual_repair"] == 0
        assert r["time_to_full_recovery_s"] is not None


def test_good(runs):
    r = result(runs, "good")
    check_common(r, "good")
    assert not r["halted"], f"false halt: {r['decisions']}"
    assert r["completed"]
    # general availability at the plan's nominal time: every step promoted as its bake ended
    assert r["time_to_complete_s"] <= r["nominal_plan_s"]
    assert [d["action"] for d in r["decisions"]] == ["start"] + ["promote"] * 5 + ["complete"]
    # every online host that follows the rings runs it
    follow = r["groups"]["follow"]
    assert r["follow_on_release"] >= 0.99 * r["follow_online"]
    assert follow["on_release"] >= 0.95 * follow["hosts"]
    # and the groups' policies held
    g = r["groups"]
    assert g["pinned"]["on_release"] == 0 and g["pinned"]["hosts"] > 0
    assert g["paused"]["on_release"] == 0 and g["paused"]["hosts"] > 0
    for name in ("delayed", "nightly", "approval"):
        assert g[name]["on_release"] >= 0.9 * g[name]["hosts"], name
    assert r["hosts_crashed"] == 0


def test_crash_on_load(runs):
    r = result(runs, "crash-on-load")
    check_common(r, "crash-on-load")
    assert r["halted"] and r["halt_step"] == 1
    assert r["halt_gate"] in ("reverts", "restarts", "silence")
    assert r["exposed_max_fraction"] <= 0.001
    assert r["exposed_total"] <= 0.001 * HOSTS
    assert r["hosts_needing_manual_repair"] == 0
    assert r["hosts_crashed"] > 0
    assert r["hosts_recovered_automatically"] == r["hosts_crashed"]
    assert r["final_versions"]["2"] == 0
    # halted within two heartbeat intervals of the first crash a controller could see
    assert r["halt_after_observable_s"] is not None
    assert 0 <= r["halt_after_observable_s"] <= 2 * HEARTBEAT_S
    assert r["rings"][1]["exposed"] == 0 and r["rings"][2]["exposed"] == 0


def test_crash_on_load_other_seed(runs):
    r = result(runs, "crash-on-load-seed2")
    assert r["halted"] and r["exposed_max_fraction"] <= 0.001
    assert r["hosts_needing_manual_repair"] == 0
    assert r["halt_after_observable_s"] <= 2 * HEARTBEAT_S


def test_baseline_all_at_once(runs):
    r = result(runs, "baseline-crash-on-load")
    assert r["mode"] == "all-at-once"
    assert not r["halted"]
    assert r["exposed_max_fraction"] >= 0.99
    assert r["hosts_crashed"] >= 0.99 * HOSTS
    assert r["hosts_recovered_automatically"] == 0
    assert r["hosts_needing_manual_repair"] == r["hosts_crashed"]
    assert r["time_to_full_recovery_s"] is None
    # offline hosts get it as they come back
    r = result(runs, "baseline-offline-20")
    assert r["away"] > 0.15 * HOSTS
    assert r["hosts_needing_manual_repair"] >= 0.99 * HOSTS


def test_crash_partial(runs):
    r = result(runs, "crash-partial")
    check_common(r, "crash-partial")
    assert r["halted"]
    ring2 = r["rings"][2]
    assert ring2["exposed"] <= 0.01 * ring2["hosts"], "reached more than 1 % of ring 2"
    assert r["halt_step"] <= 3
    assert 0 < r["hosts_crashed"] < 0.1 * r["exposed_total"] + 10


@pytest.mark.parametrize("scenario,gate", [("fp-storm", "alerts"),
                                           ("liveness-loss", "liveness"),
                                           ("cpu-regression", "cpu")])
def test_halted_in_ring0(runs, scenario, gate):
    r = result(runs, scenario)
    check_common(r, scenario)
    assert r["halted"], f"{scenario} was not halted"
    assert r["halt_step"] == 1, f"{scenario} left ring 0"
    assert r["halt_gate"] == gate
    assert r["rings"][1]["exposed"] == 0 and r["rings"][2]["exposed"] == 0
    assert r["hosts_crashed"] == 0
    assert r["final_versions"]["2"] == 0


def test_offline_20(runs):
    r = result(runs, "offline-20")
    check_common(r, "offline-20")
    assert r["halted"]
    assert 0.18 * HOSTS < r["away"] < 0.22 * HOSTS
    # every host that was away came back after the halt, and none activated the release
    assert r["away_back_after_halt"] == r["away"]
    assert r["away_back_after_halt_activated"] == 0
    assert r["exposed_max_fraction"] <= 0.001
    assert r["final_versions"]["2"] == 0


def test_same_seed_same_result(runs):
    for a, b in (("good", "good-again"), ("crash-on-load", "crash-on-load-again")):
        la = runs[a].stdout.strip().splitlines()[-1]
        lb = runs[b].stdout.strip().splitlines()[-1]
        assert la == lb, f"{a}: two runs with seed 1 differ"
    assert (runs["crash-on-load"].stdout.strip().splitlines()[-1]
            != runs["crash-on-load-seed2"].stdout.strip().splitlines()[-1])


def test_good_100_seeds_no_false_halt(runs):
    r = last_json(runs["good-100-seeds"])
    assert r["runs"] == 100
    assert r["halted"] == 0, "a good release was halted"
    assert r["completed"] == 100
    assert r["time_to_complete_s_max"] <= r["nominal_plan_s"]
    assert r["policy_violations"] == 0
    lines = [l for l in runs["good-100-seeds"].stdout.splitlines() if l.startswith("run seed")]
    assert len(lines) == 100


def test_decisions_printed(runs):
    out = runs["crash-on-load"].stdout
    halt = [l for l in out.splitlines() if " halt at step 1/6" in l]
    assert len(halt) == 1, out
    # the decision names the gate and the numbers behind it
    assert "gate " in halt[0] and " of " in halt[0] and "per agent-hour" in halt[0]
    assert any(" pull at step 1/6" in l and "return to 1" in l for l in out.splitlines())


# --- built-in scenarios are the files in sim/scenarios ---

def test_builtins_match_files():
    need_vigil()
    files = sorted(p.stem for p in (ROOT / "sim" / "scenarios").glob("*.scn"))
    assert files == sorted(BUILTIN)
    for name in files:
        res = sim("--show", name)
        assert res.returncode == 0, res.stderr
        assert res.stdout == (ROOT / "sim" / "scenarios" / f"{name}.scn").read_text(), (
            f"the built-in {name} differs from sim/scenarios/{name}.scn: run sim/embed.sh")
    listed = sim("--list")
    assert listed.returncode == 0
    assert sorted(l.split()[0] for l in listed.stdout.splitlines()) == sorted(BUILTIN)
    assert "does not parse" not in listed.stdout


def test_builtin_from_any_directory(tmp_path):
    r = last_json(sim("--agents", "500", "--scenario", "fp-storm", cwd=tmp_path))
    assert r["scenario"] == "fp-storm" and r["hosts"] == 500


# --- scenario files a user writes ---

def test_user_scenario_dead_hosts(tmp_path):
    """A release that wedges hosts for good: no revert, only the silence of the dead."""
    f = tmp_path / "dead-hosts.scn"
    f.write_text("# every host that activates it stops answering\n"
                 "effect hang\n"
                 "heartbeat 30s\n"
                 "plan 0:100:10m 1:100:10m 2:10:10m 2:100:10m\n"
                 "duration 2h\n")
    r = last_json(sim("--agents", str(HOSTS), "--scenario", str(f)))
    assert r["scenario"] == "dead-hosts"
    assert r["halted"] and r["halt_step"] == 1
    assert r["halt_gate"] == "silence"
    assert r["hosts_recovered_automatically"] == 0
    assert 0 < r["hosts_needing_manual_repair"] <= 0.001 * HOSTS
    assert r["halt_after_observable_s"] <= 2 * 30


def test_user_scenario_all_keys(tmp_path):
    f = tmp_path / "mine.scn"
    f.write_text("""
name my-case   # comments anywhere
description a drop storm on one kernel family
effect drops
factor 5000
affected 0.2
rings 0.01 0.05 0.2
ring_min 5 20 50
plan 0:100:5m 1:100:10m 2:100:10m 3:5:10m 3:100:10m
heartbeat 30s
jitter 0.1
gate min_agents 20
gate min_bad 3
gate tolerance 4
gate alpha 1e-5
gate floor_per_hour 0.002
gate revert_floor_per_hour 0.0001
gate alert_ratio 6
gate cpu_ratio 1.2
gate silence_k 3
gate off cpu
start 2024-07-19T03:59:00Z
publish 5m
duration 3h
group late 0.1 delay=30m
group night 0.1 window=22:00-02:00 approval=20m
trial_starts 4
restart 10s
activation 2s 20s
revert 1s
liveness_interval 30s
crash_rate 0.002
offline_rate 0.02
offline_time 30m 2h
alert_rate 1
cpu 3 0.05
drop_rate 0.001
liveness_fail_rate 0.001
away 0.05 30m 1h
""")
    r = last_json(sim("--agents", "5000", "--scenario", str(f)))
    assert r["scenario"] == "my-case"
    assert len(r["rings"]) == 4
    assert r["halted"] and r["halt_gate"] == "drops"
    assert set(r["groups"]) == {"late", "night", "follow"}


BAD_SCENARIOS = [
    ("unknown key", "colour blue\n", ":1: colour: unknown key"),
    ("bad number", "name x\nfactor lots\n", ":2: factor: 'lots' is not a number"),
    ("bad effect", "effect explode\n", ":1: effect: 'explode' is not an effect"),
    ("too many values", "affected 0.1 0.2\n", ":1: affected: want 1 value"),
    ("shares over 1", "group a 0.7 pause\ngroup b 0.7 pin=1\n",
     ":2: group: group shares add up to more than 1"),
    ("bad policy", "group a 0.1 sometimes\n", ":1: group: policy: unknown word"),
    ("whole fleet at once", "plan 2:100:1h\n", ":1: plan: plan: the first step reaches the whole"),
    ("plan short of the fleet", "plan 0:100:1h 2:50:1h\n", ":1: plan: plan: the last step"),
    ("rings without plan", "rings 0.01 0.1 0.2\n", "needs a 'plan' line"),
    ("bad time", "start yesterday\n", ":1: start: 'yesterday' is not a UTC time"),
    ("bad duration", "duration 10y\n", ":1: duration: '10y' is not a duration"),
    ("long line", "description " + "x" * 600 + "\n", ":1: line: longer than 512 bytes"),
    ("binary", "name x\n\x01\x02\n", ":2: line: byte 0x01"),
]


@pytest.mark.parametrize("case,text,want", BAD_SCENARIOS, ids=[c[0] for c in BAD_SCENARIOS])
def test_bad_scenario(tmp_path, case, text, want):
    f = tmp_path / "bad.scn"
    f.write_bytes(text.encode("latin-1"))
    res = sim("--agents", "100", "--scenario", str(f))
    assert res.returncode == 2, f"exit {res.returncode}; stdout {res.stdout[-300:]!r}"
    lines = res.stderr.splitlines()
    assert len(lines) == 1, f"want one line, got {res.stderr!r}"
    assert str(f) in lines[0] or "bad.scn" in lines[0], lines[0]
    assert want in lines[0], lines[0]
    assert res.stdout == ""


def test_scenario_too_large(tmp_path):
    f = tmp_path / "huge.scn"
    f.write_text("# x\n" * 20000)
    res = sim("--agents", "100", "--scenario", str(f))
    assert res.returncode == 2
    assert "larger than 65536 bytes" in res.stderr and len(res.stderr.splitlines()) == 1


def test_scenario_not_a_file(tmp_path):
    for target, words in ((tmp_path, "not a regular file"),
                          (tmp_path / "missing.scn", "No such file"),
                          ("no-such-builtin", "no built-in scenario 'no-such-builtin'")):
        res = sim("--agents", "100", "--scenario", str(target))
        assert res.returncode == 2
        assert words in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr


# --- the plot ---

def test_plot(tmp_path):
    out = tmp_path / "crash.svg"
    res = sim("--agents", "5000", "--scenario", "crash-on-load", "--plot", str(out))
    r = last_json(res)
    assert r["mode"] == "vigil" and r["halted"]
    tree = ET.parse(out)
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert tree.getroot().tag == "{http://www.w3.org/2000/svg}svg"
    # vigil's panel and the baseline's, each with exposed and crashed hosts
    assert len(tree.findall(".//s:polyline", ns)) == 4
    text = " ".join(t.text or "" for t in tree.findall(".//s:text", ns))
    assert "all at once" in text and "halted after" in text
    repair = [int(n) for n in re.findall(r"(\d+) need manual repair", text)]
    assert repair[0] == 0 and repair[1] >= 0.95 * 5000  # vigil's panel, then the baseline's


# --- the command line ---

@pytest.mark.parametrize("args", [
    [],
    ["--agents", "0", "--scenario", "good"],
    ["--agents", "abc", "--scenario", "good"],
    ["--agents", "20000000", "--scenario", "good"],
    ["--agents", "100"],
    ["--scenario", "good"],
    ["--agents", "100", "--scenario", "good", "--seed", "-1"],
    ["--agents", "100", "--scenario", "good", "--baseline", "sometimes"],
    ["--agents", "100", "--scenario", "good", "--runs", "0"],
    ["--agents", "100", "--scenario", "good", "--runs", "2", "--plot", "x.svg"],
    ["--agents", "100", "--scenario", "good", "--bogus", "1"],
    ["--agents", "100", "--scenario"],
    ["--show", "nothing"],
], ids=lambda a: " ".join(a) or "no arguments")
def test_bad_usage(args):
    res = sim(*args)
    assert res.returncode == 2, f"exit {res.returncode}: {res.stderr!r}"
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vigil sim:"), res.stderr
    assert res.stdout == ""


def test_help():
    res = sim("--help")
    assert res.returncode == 0
    for flag in ("--agents", "--scenario", "--seed", "--plot", "--baseline", "--runs"):
        assert flag in res.stdout
    top = subprocess.run([str(VIGIL), "--help"], capture_output=True, text=True)
    assert "sim" in top.stdout
