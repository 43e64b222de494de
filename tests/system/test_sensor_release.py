"""
Sensor releases, the second lane of rollouts: a new agent build signed as a sensor bundle is
rolled out through the same plan, gates and policy as content, and each agent switches to it
by itself (download, verify, stage, self-test, trial, re-exec) under a supervisor that
restarts it when it dies.

- A good build promotes through every step and every agent ends up running it (its process
  is the staged executable, and the server sees the build it reports).
- A build that crashes the agent (the test build's crash hook) halts at the first step; the
  exposed agent crash-loops, reverts by itself to the good build it ran before and quarantines
  the new one; no agent outside the step ever fetches it; every agent ends on the previous good
  build and still detects.
"""
import json
import os
import pathlib
import signal
import shutil
import subprocess
import time

import pytest

from conftest import AGENT, BUILD, VIGIL, need_bpf, need_root, new_marker
from test_fleet import (HEARTBEAT, HOOKS_AGENT, plan, restart_server, start_fleet, stop_all,
                        upload, wait_completed, wait_halted_by_a_gate)
from test_server import Server, keys, run, wait_for  # noqa: F401 (keys: a fixture)

# one bad agent halts; silence after 4 missed heartbeats; CPU off (an exec into a new build
# loads BPF again, a burst a bake of seconds cannot average away)
GATES = {"min_bad": 1, "silence_k": 4, "disabled": ["cpu"]}
STAMP = b"vigil-sensor-build="


def stamped_copy(src, dst, build):
    """A copy of the agent executable @src stamped as sensor build @build."""
    data = bytearray(pathlib.Path(src).read_bytes())
    i = data.find(STAMP + b"1\0")
    assert i >= 0 and data.find(STAMP + b"1\0", i + 1) < 0, "one build stamp, build 1"
    new = STAMP + str(build).encode() + b"\0"
    data[i:i + len(new)] = new
    dst.write_bytes(bytes(data))
    dst.chmod(0o755)
    return dst


def sensor_bundle(keys, tmp_path, build):
    exe = stamped_copy(HOOKS_AGENT, tmp_path / f"vigil-agent-{build}", build)
    out = tmp_path / f"sensor-{build}.bundle"
    res = run(VIGIL, "sensor", "build", exe, "--version", build, "--key", keys / "s1.key",
              "-o", out)
    assert res.returncode == 0, res.stderr
    return out


def sensor_builds(srv):
    return {a["id"]: a["sensor_build"] for a in srv.admin_call("GET", "agents")["agents"]}


def exe_of(agent):
    return os.readlink(f"/proc/{agent.proc.pid}/exe")


def liveness_exec(tmp_path):
    """A real process whose command line starts with the built-in rule's marker."""
    d = tmp_path / new_marker("sensor")
    d.mkdir()
    exe = d / "marker"
    shutil.copy("/bin/sleep", exe)
    subprocess.run(["vigil-liveness-marker", "0.5"], executable=str(exe), check=True)


def replay_liveness(seq):
    return json.dumps({"@timestamp": "2026-01-01T00:00:00.000Z",
                       "event": {"kind": "event", "action": "exec", "category": "process",
                                 "sequence": seq},
                       "process": {"pid": 30000 + seq, "executable": "/tmp/x/marker",
                                   "name": "marker",
                                   "command_line": f"vigil-liveness-marker {seq}"}}) + "\n"


def test_sensor_release_refusals(tmp_path, keys):
    """Kinds are signed and checked at upload, at verification and by the agent."""
    need_root()
    good = sensor_bundle(keys, tmp_path, 2)
    # a sensor build is not content, and content is not a sensor build
    res = run(VIGIL, "content", "verify", good, "--root", keys / "root.json")
    assert res.returncode == 1 and "is a sensor release, not content" in res.stderr
    res = run(VIGIL, "sensor", "verify", good, "--root", keys / "root.json")
    assert res.returncode == 0 and json.loads(res.stdout)["kind"] == "sensor", res.stderr
    # the executable's stamp must be the bundle's version
    res = run(VIGIL, "sensor", "build", tmp_path / "vigil-agent-2", "--version", 5,
              "--key", keys / "s1.key", "-o", tmp_path / "x.bundle")
    assert res.returncode == 1 and "is build 2, not 5" in res.stderr
    res = run(VIGIL, "sensor", "build", "/bin/true", "--version", 2,
              "--key", keys / "s1.key", "-o", tmp_path / "x.bundle")
    assert res.returncode == 1 and "no build stamp" in res.stderr
    # the agent's inbox refuses a sensor bundle offered as content
    agent_out = subprocess.run(
        [str(AGENT), "--rules", str(good), "--root", str(keys / "root.json"), "--print",
         "--source", "replay:/dev/null"], capture_output=True, text=True, timeout=60)
    assert agent_out.returncode != 0 and "is a sensor release, not content" in agent_out.stderr
    s = Server(tmp_path / "data", root=keys / "root.json").start()
    try:
        st, body, _ = s.request("POST", "/api/v1/admin/releases?kind=content",
                                good.read_bytes(), token=s.admin,
                                headers={"Content-Type": "application/octet-stream"})
        assert st == 400 and "is a sensor release, not content" in body["error"], body
        rel = upload(s, good, "sensor")
        assert rel["version"] == 2
        # sensor releases roll out: a plan reaching everyone at once is refused as for content
        st, body, _ = s.request("POST", "/api/v1/admin/rollouts",
                                {"release": rel["hash"],
                                 "plan": [{"ring": 0, "percent": 100, "bake_seconds": 1}]},
                                token=s.admin)
        assert st == 409, body
    finally:
        s.stop()


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_stop_during_a_sensor_switch_is_not_lost(tmp_path, keys, monkeypatch, when):
    """
    SIGTERM while the agent switches to a new build, whether it arrives before the agent
    blocks the stop signals for the exec or after: the new build starts, takes the stop, ends
    with status 0 and counts the start as a clean one of its trial.
    """
    need_root()
    monkeypatch.setenv("VIGIL_TEST_SENSOR_EXEC_PAUSE", when)
    bundle = sensor_bundle(keys, tmp_path, 2)
    s = Server(tmp_path / "data", root=keys / "root.json",
               extra=["--heartbeat-seconds", str(HEARTBEAT)]).start()
    real = {}
    try:
        start_fleet(s, tmp_path, real, [("replay", HOOKS_AGENT, "replay", "canary")])
        a = real["replay"]
        rel = upload(s, bundle, "sensor")
        s.admin_call("POST", "rollouts", {"release": rel["hash"], "plan": plan(3600),
                                          "gates": GATES}, expect=201)
        pause = f"test hook: pausing {when} the exec"
        wait_for(lambda: pause in a.stderr(), "the switch to build 2 to pause", timeout=120)
        switched = a.status()["sensor"]
        assert switched["current"]["build"] == 2 and switched["trial"] is True, switched
        rc = a.stop()
        assert rc == 0, a.stderr()
        after = a.stderr().split(pause, 1)[1]
        assert "sensor build 2 (staged, on trial)" in after, a.stderr()
        assert a.crashes == [], a.crashes
        st = a.status()["sensor"]
        assert st["current"]["build"] == 2 and st["trial"] is True, st
        assert st["starts_left"] == switched["starts_left"] + 1, (switched, st)
    finally:
        stop_all(real, s)


def test_sensor_build_rolls_out_and_a_crashing_build_reverts_itself(tmp_path, keys,
                                                                    monkeypatch):
    need_bpf()
    need_root()
    if not os.access(HOOKS_AGENT, os.X_OK):
        pytest.fail(f"{HOOKS_AGENT} is missing: run make testhooks", pytrace=False)
    # the test build aborts once its source is up when it is this build
    monkeypatch.setenv("VIGIL_TEST_SENSOR_CRASH", "3")
    good_bundle = sensor_bundle(keys, tmp_path, 2)
    bad_bundle = sensor_bundle(keys, tmp_path, 3)
    s = Server(tmp_path / "data", root=keys / "root.json",
               extra=["--heartbeat-seconds", str(HEARTBEAT)]).start()
    real = {}
    try:
        ids = start_fleet(s, tmp_path, real, [("bpf", HOOKS_AGENT, "bpf", "canary"),
                                              ("proc", HOOKS_AGENT, "proc", "early"),
                                              ("replay", HOOKS_AGENT, "replay", None)])
        wait_for(lambda: set(sensor_builds(s).values()) == {1}, "every agent to report build 1",
                 timeout=30)
        installed = {n: exe_of(a) for n, a in real.items()}

        # --- a good build goes through every step and every agent switches to it ---
        good = upload(s, good_bundle, "sensor")
        r1 = s.admin_call("POST", "rollouts", {"release": good["hash"], "plan": plan(3),
                                                "gates": GATES}, expect=201)
        assert r1["kind"] == "sensor" and r1["previous"] == 0, r1
        # the server restarts mid-rollout: the sensor lane resumes where it was
        wait_for(lambda: s.admin_call("GET", f"rollouts/{r1['id']}")["step"] >= 1,
                 "the first promotion", timeout=120)
        before = s.admin_call("GET", f"rollouts/{r1['id']}")
        s = restart_server(s, tmp_path, keys)
        after = s.admin_call("GET", f"rollouts/{r1['id']}")
        assert after["kind"] == "sensor" and after["created"] == before["created"]
        assert after["step"] >= before["step"], (before, after)
        wait_completed(s, r1["id"], "the good build to leave its steps", 240)
        wait_for(lambda: set(sensor_builds(s).values()) == {2},
                 "every agent to run build 2", timeout=90)
        for n, a in real.items():
            assert a.crashes == [], f"{n}: {a.crashes} {a.stderr()}"
            assert exe_of(a).endswith("/state/sensor/2/vigil-agent"), (n, exe_of(a))
            assert "sensor build 2 staged and self-tested" in a.stderr()
            wait_for(lambda: a.status()["sensor"]["trial"] is False, f"{n}: build 2 good",
                     timeout=30)
            st = a.status()["sensor"]
            assert st["current"]["build"] == 2 and st["previous"] is None, (n, st)
            mode = os.stat(a.state / "sensor" / "2").st_mode & 0o777
            assert mode == 0o700, oct(mode)
        # a content rollout could start beside it: the lanes are independent
        assert s.admin_call("GET", "rollouts")["rollouts"][-1]["kind"] == "sensor"

        # --- a crashing build halts at its first step and is reverted by the agent ---
        bad = upload(s, bad_bundle, "sensor")
        r2 = s.admin_call("POST", "rollouts", {"release": bad["hash"], "plan": plan(3600),
                                                "gates": GATES}, expect=201)
        assert r2["previous"] == 2, r2
        wait_halted_by_a_gate(s, r2["id"], "the crashing build to halt", 180)

        bpf = real["bpf"]
        wait_for(lambda: bpf.status()["sensor"]["crash_loop_reverts"] == 1,
                 "the sensor crash-loop revert", timeout=120)
        wait_for(lambda: exe_of(bpf).endswith("/state/sensor/2/vigil-agent") and
                 "source bpf ready" in bpf.stderr().rsplit("quarantined", 1)[-1],
                 "the eBPF agent to run build 2 again", timeout=60)
        assert len(bpf.crashes) == 3 and all(rc == -signal.SIGABRT for rc in bpf.crashes), \
            (bpf.crashes, bpf.stderr())
        st = bpf.status()["sensor"]
        assert st["current"]["build"] == 2 and st["trial"] is False, st
        assert any(q["build"] == 3 and q["reason"].startswith("crash loop")
                   for q in st["quarantined"]), st
        wait_for(lambda: sensor_builds(s)[ids["bpf"]] == 2, "the server to see build 2",
                 timeout=30)
        agent = s.admin_call("GET", f"agents/{ids['bpf']}")
        assert 3 in agent["sensor_quarantined"] and agent["sensor_crash_loop_reverts"] == 1
        # nobody outside the first step ever fetched it
        time.sleep(2 * HEARTBEAT)
        for n in ("proc", "replay"):
            a = real[n]
            assert "fetching build 3" not in a.stderr(), a.stderr()
            assert a.crashes == [] and exe_of(a).endswith("/state/sensor/2/vigil-agent")
            assert a.status()["sensor"]["quarantined"] == [], n
        assert set(sensor_builds(s).values()) == {2}
        # the installed executables were never touched
        for n, path in installed.items():
            assert os.path.samefile(path, HOOKS_AGENT), (n, path)

        # --- every agent still detects, and its alerts reach the server ---
        liveness_exec(tmp_path)
        real["replay"].send([replay_liveness(1)])
        for n in real:
            wait_for(lambda: s.admin_call(
                "GET", f"alerts?rule=vigil-builtin-liveness&agent={ids[n]}")["alerts"],
                f"a detection from {n} on build 2", timeout=30)
    finally:
        rcs = stop_all(real, s)
    assert rcs == {n: 0 for n in real}, rcs
