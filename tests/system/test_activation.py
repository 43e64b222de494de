"""
Content activation on the agent, end to end: signed bundles dropped into the inbox are verified,
compiled, test-loaded and swapped in; the bad-bundle corpus is refused with its reasons while the
agent keeps its content and keeps detecting; a crash loop on new content reverts to the
last-known-good version and quarantines it; SIGKILL at every step leaves a consistent state;
100 swaps under a continuous event stream evaluate every event exactly once.
"""
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from conftest import AGENT, BUILD, VIGIL, Agent, AgentError, get, kind, need, need_agent, \
    need_bpf, need_root, start_agent

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bundles"))
import make_corpus  # noqa: E402
import conftest as _conftest  # noqa: E402

HOOKS_AGENT = BUILD / "testhooks" / "vigil-agent"
STEPS = ["read", "verify", "version", "compile", "test-load", "trial", "swap"]
STATE_TIMEOUT = 20.0
SH = os.path.realpath("/bin/sh")


def need_vigil():
    if not os.access(VIGIL, os.X_OK):
        pytest.fail(f"{VIGIL} is missing: run make first", pytrace=False)


def need_hooks_agent():
    if not os.access(HOOKS_AGENT, os.X_OK):
        pytest.fail(f"{HOOKS_AGENT} is missing: run make testhooks", pytrace=False)


def vigil(*args, check=True):
    res = subprocess.run([str(VIGIL), *map(str, args)], capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        pytest.fail(f"vigil {' '.join(map(str, args))} failed ({res.returncode}): {res.stderr}",
                    pytrace=False)
    return res


def marker_rule(rule_id, token):
    """A rule that detects an exec whose command line contains @token, with its own tests."""
    return f"""\
rules:
  - id: {rule_id}
    name: Activation test marker {rule_id}
    level: low
    condition:
      all:
        - event.action: exec
        - process.command_line: {{contains: "{token}"}}
    tests:
      match:
        - {{event.action: exec, process.command_line: "sh -c : {token}1"}}
      nomatch:
        - {{event.action: exec, process.command_line: "sh -c : other"}}
"""


class Content:
    """Keys, a pinned root and bundles, all made with `vigil` in @base."""

    def __init__(self, base, keys=None, root=None):
        need_vigil()
        self.base = pathlib.Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        if keys is None:
            vigil("keygen", "-o", self.base / "root")
            vigil("keygen", "-o", self.base / "signer")
            vigil("root", "create", "--root-key", self.base / "root.key", "--signer",
                  self.base / "signer.pub", "--threshold", 1, "-o", self.base / "root.json")
            keys = [self.base / "signer.key"]
            root = self.base / "root.json"
        self.keys = keys
        self.root = root

    def build(self, files, version, name=None, skip_validation=False, out=None):
        """A bundle of @files ({relative name: text}) at @version; returns its path."""
        src = self.base / f"src-{version}-{uuid.uuid4().hex[:8]}"
        for rel, text in files.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_text(text)
        out = out or self.base / f"v{version}.bundle"
        args = ["content", "build", src, "--version", version, "-o", out]
        for k in self.keys:
            args += ["--key", k]
        if name:
            args += ["--name", name]
        if skip_validation:
            args.append("--skip-validation")
        vigil(*args)
        shutil.rmtree(src)
        return out

    def marker_bundle(self, version, name=None):
        return self.build({"marker.yml": marker_rule(f"act-v{version}", f"vigil-act-v{version}-")},
                          version, name=name)


class Sensor:
    """One vigil-agent with content activation: its directories and its output."""

    def __init__(self, tmp, content, binary=AGENT, health_window=600, trial_starts=3,
                 source="bpf", extra=()):
        self.tmp = pathlib.Path(tmp)
        self.state = self.tmp / "state"
        self.inbox = self.tmp / "inbox"
        self.content = content
        self.binary = binary
        self.runs = 0
        self.args = ["--print", "--alerts-only", "--source", source, "--root", str(content.root),
                     "--state-dir", str(self.state), "--content-dir", str(self.inbox),
                     "--health-window", str(health_window), "--trial-starts", str(trial_starts),
                     "--liveness-interval", "1", "--metric-interval", "1", *extra]
        self.agent = None

    def start(self, env=None, wait=True):
        need_agent()
        self.runs += 1
        full_env = dict(os.environ)
        full_env.pop("VIGIL_TEST_PAUSE_STEP", None)
        full_env.update(env or {})
        saved = _conftest.AGENT  # Agent runs conftest.AGENT: point it at this binary
        _conftest.AGENT = self.binary
        try:
            self.agent = Agent(self.args, self.tmp, f"agent-{self.runs}", env=full_env)
        finally:
            _conftest.AGENT = saved
        if wait:
            try:
                self.agent.wait_ready()
            except AgentError as e:
                self.agent.kill()
                pytest.fail(str(e), pytrace=False)
        return self.agent

    def stop(self):
        if self.agent and self.agent.proc.poll() is None:
            self.agent.stop()

    def kill(self):
        if self.agent:
            self.agent.kill()

    def drop(self, bundle, name=None, copy=True):
        """Places @bundle in the inbox atomically (a hidden temporary file renamed in)."""
        name = name or pathlib.Path(bundle).name
        tmp = self.inbox / f".{name}.tmp"
        if copy:
            shutil.copyfile(bundle, tmp)
        else:
            os.replace(bundle, tmp)
        os.replace(tmp, self.inbox / name)
        return name

    def state_json(self):
        """state.json as the agent last wrote it (read directly: --status is checked apart)."""
        with open(self.state / "state.json") as f:
            return json.load(f)

    def status(self):
        res = subprocess.run([str(AGENT), "--status", "--state-dir", str(self.state)],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, f"--status failed: {res.stderr}"
        return json.loads(res.stdout)

    def wait_state(self, pred, what, timeout=STATE_TIMEOUT):
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            try:
                st = self.state_json()
            except (FileNotFoundError, ValueError):
                st = None
            if st is not None and pred(st):
                return st
            if self.agent and self.agent.proc.poll() is not None:
                pytest.fail(f"agent exited ({self.agent.proc.returncode}) while waiting for "
                            f"{what}; stderr:\n{self.agent.stderr()[-3000:]}", pytrace=False)
            time.sleep(0.02)
        pytest.fail(f"state never showed {what} within {timeout:.0f}s; last state: "
                    f"{json.dumps(st)[-1500:]}\nstderr:\n{self.agent.stderr()[-3000:]}",
                    pytrace=False)

    def wait_active(self, version, timeout=STATE_TIMEOUT):
        return self.wait_state(lambda s: s["active"] == version and
                               (s["activation"] or {}).get("result") != "in-progress",
                               f"active version {version}", timeout)

    def wait_rejection(self, file, timeout=STATE_TIMEOUT):
        st = self.wait_state(lambda s: any(r["file"] == file for r in s["rejections"]),
                             f"a rejection of {file}", timeout)
        return [r for r in st["rejections"] if r["file"] == file][-1], st

    def alerts(self):
        self.agent.pump()
        return [r for r in self.agent.records if isinstance(r, dict) and kind(r) == "alert"]

    def metrics(self):
        return self.agent.metrics()

    def detect(self, version, timeout=10.0):
        """A real exec the active version's rule detects: its alert must appear."""
        marker = f"vigil-act-v{version}-{uuid.uuid4().hex[:12]}"
        subprocess.run([SH, "-c", f": {marker}"], check=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for a in self.alerts():
                if marker in (get(a, "process.command_line") or ""):
                    assert get(a, "rule.id") == f"act-v{version}", a
                    return a
            if self.agent.proc.poll() is not None:
                pytest.fail(f"agent exited while detecting; stderr:\n{self.agent.stderr()[-2000:]}",
                            pytrace=False)
            time.sleep(0.02)
        pytest.fail(f"no alert of act-v{version} for {marker} within {timeout:.0f}s; stderr:\n"
                    f"{self.agent.stderr()[-2000:]}", pytrace=False)


def check_consistent(sensor, after_kill=False):
    """state.json parses, and every version it names has its held copy. Right after a kill a
    temporary copy may be left; the next start removes it."""
    st = sensor.status()
    held = {p.name for p in (sensor.state / "bundles").iterdir()}
    for key in ("active", "last_known_good"):
        if st[key] is not None:
            assert f"{st[key]}.bundle" in held, f"{key} {st[key]} has no copy: {sorted(held)}"
    if st["trial"] is not None:
        assert st["trial"]["version"] == st["active"], st
        assert f"{st['trial']['version']}.bundle" in held
    if not after_kill:
        assert not [h for h in held if h.startswith(".")], f"temporary files left: {held}"
    return st


# --- the release binary ------------------------------------------------------------------------

def test_release_agent_has_no_test_hooks():
    need_agent()
    need_hooks_agent()
    release = AGENT.read_bytes()
    hooks = HOOKS_AGENT.read_bytes()
    for marker in (b"VIGIL_TEST_PAUSE_STEP", b"VIGIL_TEST_SANDBOX", b"crash-test", b"test hook",
                   b"VIGIL_TEST_SENSOR_CRASH"):
        assert marker in hooks, f"the test-hooks agent lacks {marker!r}: the check is stale"
        assert marker not in release, f"{AGENT} carries the test hook marker {marker!r}"


def test_options_and_status_errors(tmp_path):
    need_agent()
    for args in (["--print", "--content-dir", str(tmp_path)],
                 ["--print", "--root", "r.json", "--state-dir", str(tmp_path)],
                 ["--print", "--rules", str(tmp_path), "--content-dir", str(tmp_path),
                  "--root", "r", "--state-dir", str(tmp_path)],
                 ["--status"],
                 ["--print", "--trial-starts", "0"],
                 ["--print", "--health-window", "abc"]):
        res = subprocess.run([str(AGENT), *args], capture_output=True, text=True, timeout=30)
        assert res.returncode == 2, f"{args}: exit {res.returncode}"
        assert res.stderr.startswith("vigil-agent: ") and len(res.stderr.splitlines()) == 1
    res = subprocess.run([str(AGENT), "--status", "--state-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "--status" in res.stderr


def test_unsafe_and_corrupt_state_dir(tmp_path):
    need_root()
    content = Content(tmp_path / "content")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chmod(state, 0o777)
    res = subprocess.run([str(AGENT), "--print", "--source", "bpf", "--root", str(content.root),
                          "--state-dir", str(state), "--content-dir", str(tmp_path / "in"),
                          "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "world-writable" in res.stderr, res.stderr
    os.chmod(state, 0o700)
    (state / "state.json").write_text('{"format": 1, "active": "x"')
    res = subprocess.run([str(AGENT), "--status", "--state-dir", str(state)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and "not JSON" in res.stderr, res.stderr
    # a running agent moves the corrupt file aside, reports it and starts over
    res = subprocess.run([str(AGENT), "--print", "--alerts-only", "--source", "bpf", "--root",
                          str(content.root), "--state-dir", str(state), "--content-dir",
                          str(tmp_path / "in"), "--duration", "0.5"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "moved aside" in res.stderr, res.stderr
    assert (state / "state.json.corrupt").read_text() == '{"format": 1, "active": "x"'
    st = json.loads((state / "state.json").read_text())
    assert st["active"] is None and st["liveness"]["last"] == "ok", st


# --- activation ---------------------------------------------------------------------------------

def test_activation_detects_and_becomes_good(tmp_path):
    need_bpf()
    content = Content(tmp_path / "content")
    s = Sensor(tmp_path, content, health_window=3)
    s.start()
    try:
        st = s.wait_state(lambda x: x["liveness"]["last"] == "ok", "a first liveness probe")
        assert st["active"] is None and st["last_known_good"] is None
        s.drop(content.marker_bundle(2))
        st = s.wait_active(2)
        assert st["trial"]["version"] == 2 and st["trial"]["starts_left"] == 3, st
        act = st["activation"]
        assert act["file"] == "v2.bundle" and act["result"] in ("trial", "good"), act
        for step in STEPS:
            assert step in act["ms"], f"step {step} has no time: {act}"
        assert act["ms"]["total"] >= act["ms"]["compile"]
        s.detect(2)
        # the health window passes with liveness: last-known-good
        st = s.wait_state(lambda x: x["last_known_good"] == 2 and x["trial"] is None,
                          "version 2 as last-known-good")
        assert st["activation"]["result"] == "good"
        # a newer version; the older copy stays as last-known-good until the newer is good
        s.drop(content.marker_bundle(3))
        s.wait_active(3)
        assert sorted(p.name for p in (s.state / "bundles").iterdir()) == \
            ["2.bundle", "3.bundle"]
        s.detect(3)
        m = [x for x in s.metrics() if get(x, "vigil.content.active") == 3]
        deadline = time.monotonic() + 5
        while not m and time.monotonic() < deadline:
            time.sleep(0.2)
            m = [x for x in s.metrics() if get(x, "vigil.content.active") == 3]
        assert m, "no metric line shows content version 3"
        live = get(m[-1], "vigil.liveness")
        assert live["failed"] == 0 and live["ok"] >= 1 and live["last"] == "ok", live
        # a lower version and the same version are refused, with their reasons
        s.drop(content.base / "v2.bundle", name="again-v2.bundle")
        r, _ = s.wait_rejection("again-v2.bundle")
        assert r["step"] == "version" and "lower than the active 3" in r["reason"], r
        s.drop(content.base / "v3.bundle", name="again-v3.bundle")
        r, _ = s.wait_rejection("again-v3.bundle")
        assert "already the active version" in r["reason"], r
        assert not any(p.name for p in s.inbox.iterdir()), "the inbox was not emptied"
        s.detect(3)
    finally:
        s.stop()
    st = check_consistent(s)
    assert st["active"] == 3
    # a restart loads the held copy
    s.start()
    try:
        s.detect(3)
    finally:
        s.stop()


# --- the bad-bundle corpus ------------------------------------------------------------------------

def test_bad_bundle_corpus_refused_while_detecting(tmp_path):
    need_bpf()
    need_vigil()
    corpus_dir = tmp_path / "corpus"
    cases = make_corpus.generate(VIGIL, corpus_dir)
    keys = [corpus_dir / "keys" / "s1.key", corpus_dir / "keys" / "s2.key"]
    content = Content(tmp_path / "content", keys=keys, root=corpus_dir / "root.json")
    start_version = make_corpus.VERSION - 5
    s = Sensor(tmp_path, content)
    s.start()
    try:
        s.drop(content.marker_bundle(start_version))
        s.wait_active(start_version)
        s.detect(start_version)
        offered = [c for c in cases if c["kind"] == "compile" or
                   (c["kind"] == "reject" and c["root"] == "root.json" and not c["args"])]
        assert len(offered) >= 200, f"only {len(offered)} corpus cases for the agent"
        steps = {}
        for i, case in enumerate(offered):
            path = corpus_dir / case["file"]
            name = s.drop(path, copy=False)
            r, st = s.wait_rejection(name)
            assert re.search(case["expect"], r["reason"]), \
                f"case {case['id']}: reason {r['reason']!r} does not match {case['expect']!r}"
            want = ("compile", "test-load") if case["kind"] == "compile" else \
                ("read", "verify")
            assert r["step"] in want, f"case {case['id']}: refused at {r['step']}: {r}"
            assert st["active"] == start_version and st["trial"]["version"] == start_version
            steps[r["step"]] = steps.get(r["step"], 0) + 1
            s.detect(start_version)  # a real detection after each
        assert not list(s.inbox.iterdir()), "the inbox was not emptied"
        # --status carries the latest rejections with their reasons
        st = s.status()
        assert len(st["rejections"]) == 64 and st["active"] == start_version
        assert st["rejections"][-1]["file"] == name
        # version rules: the base bundle (10) is taken, then refused as equal; lower refused
        base = corpus_dir / "base.bundle"
        s.drop(base, name="base-10.bundle")
        st = s.wait_active(make_corpus.VERSION)
        s.drop(base, name="base-again.bundle")
        r, _ = s.wait_rejection("base-again.bundle")
        assert "already the active version" in r["reason"]
        s.drop(content.base / f"v{start_version}.bundle", name="lower.bundle")
        r, _ = s.wait_rejection("lower.bundle")
        assert "lower than the active 10" in r["reason"] and r["step"] == "version"
    finally:
        s.stop()
    assert s.agent.returncode == 0
    print(f"corpus: {len(offered)} cases refused by a running agent, by step {steps}")


# --- crash loop --------------------------------------------------------------------------------

def test_crash_loop_reverts_and_quarantines(tmp_path):
    need_bpf()
    need_hooks_agent()
    content = Content(tmp_path / "content")
    s = Sensor(tmp_path, content, binary=HOOKS_AGENT, health_window=2, trial_starts=3)
    s.start()
    s.drop(content.marker_bundle(2))
    s.wait_state(lambda x: x["last_known_good"] == 2, "version 2 as last-known-good")
    s.detect(2)
    crash = content.build({"marker.yml": marker_rule("act-v3", "vigil-act-v3-")}, 3,
                          name="crash-test-defect")
    s.drop(crash)
    s.agent.proc.wait(timeout=30)
    assert s.agent.proc.returncode == -signal.SIGABRT, s.agent.stderr()
    assert "test hook: crashing" in s.agent.stderr()
    st = s.state_json()
    assert st["active"] == 3 and st["trial"]["starts_left"] == 3, st
    # systemd's part: restart whatever dies, until it stays up
    crashes = 1
    for _ in range(6):
        a = s.start(wait=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and a.proc.poll() is None:
            if "source bpf ready" in a.stderr():
                break
            time.sleep(0.05)
        if a.proc.poll() is None:
            break
        assert a.proc.returncode == -signal.SIGABRT, a.stderr()
        crashes += 1
    assert s.agent.proc.poll() is None, "the agent never came back up"
    assert crashes == 3, f"{crashes} crashes before the revert (3 trial starts)"
    try:
        s.agent.wait_ready()
        st = s.status()
        assert st["active"] == 2 and st["last_known_good"] == 2 and st["trial"] is None, st
        q = [x for x in st["quarantined"] if x["version"] == 3]
        assert q and q[0]["reason"].startswith("crash loop:"), st["quarantined"]
        assert st["crash_loop_reverts"] == 1
        assert "quarantined" in s.agent.stderr() and "crash loop" in s.agent.stderr()
        s.detect(2)
        # reported in the metric lines too
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = [x for x in s.metrics() if get(x, "vigil.content.reverted")]
            if m:
                break
            time.sleep(0.2)
        assert m and get(m[-1], "vigil.content.reverted.version") == 3
        assert 3 in get(m[-1], "vigil.content.quarantined")
        # the quarantined version is refused forever
        s.drop(crash, name="crash-again.bundle")
        r, _ = s.wait_rejection("crash-again.bundle")
        assert r["step"] == "version" and "quarantined" in r["reason"], r
        s.detect(2)
    finally:
        s.stop()
    assert s.agent.returncode == 0


# --- the test-load sandbox ------------------------------------------------------------------

@pytest.mark.parametrize("escape,reason", [
    ("socket", r"killed by signal 31 .*a system call outside the sandbox"),
    ("open", r"killed by signal 31 .*a system call outside the sandbox"),
    ("exec", r"killed by signal 31 .*a system call outside the sandbox"),
    ("hang", r"test-load timed out after \d+\.\d s and was killed"),
])
def test_sandbox_contains_the_test_load(tmp_path, escape, reason):
    need_bpf()
    need_hooks_agent()
    content = Content(tmp_path / "content")
    s = Sensor(tmp_path, content, binary=HOOKS_AGENT, extra=["--test-load-timeout", "1"])
    s.start()
    try:
        s.drop(content.marker_bundle(2))
        s.wait_active(2)
        s.stop()
        s.start(env={"VIGIL_TEST_SANDBOX": escape})
        s.drop(content.marker_bundle(3))
        r, st = s.wait_rejection("v3.bundle")
        assert r["step"] == "test-load" and re.search(reason, r["reason"]), r
        assert st["active"] == 2
        s.detect(2)
    finally:
        s.stop()


# --- power loss --------------------------------------------------------------------------------

def test_power_loss_at_every_step(tmp_path):
    need_bpf()
    need_hooks_agent()
    content = Content(tmp_path / "content")
    s = Sensor(tmp_path, content, binary=HOOKS_AGENT, health_window=1)
    s.start()
    s.drop(content.marker_bundle(2))
    s.wait_state(lambda x: x["last_known_good"] == 2, "version 2 as last-known-good")
    s.stop()
    version = 2
    plan = [(step, None) for step in STEPS] + [(None, d) for d in (0.0, 0.01, 0.03, 0.06, 0.1)]
    for step, delay in plan:
        new = version + 1
        bundle = content.marker_bundle(new)
        if step:
            s.start(env={"VIGIL_TEST_PAUSE_STEP": step})
            s.drop(bundle)
            deadline = time.monotonic() + STATE_TIMEOUT
            while f"pausing at step {step}" not in s.agent.stderr():
                assert time.monotonic() < deadline, f"never paused at {step}: {s.agent.stderr()}"
                assert s.agent.proc.poll() is None, s.agent.stderr()
                time.sleep(0.01)
        else:
            s.start()
            s.drop(bundle)
            time.sleep(delay)
        os.kill(s.agent.pid, signal.SIGKILL)  # power loss: no chance to clean up
        s.agent.proc.wait()
        st = check_consistent(s, after_kill=True)
        assert st["active"] in (version, new), st
        if step:
            assert st["activation"]["step"] == step and \
                st["activation"]["result"] == "in-progress", st["activation"]
            # before the trial record the old version runs; from it on, the new one
            assert st["active"] == (new if step == "swap" else version), (step, st)
        s.start()
        try:
            st = s.wait_state(lambda x: x["activation"]["result"] != "in-progress"
                              and not any(s.inbox.iterdir()), "the interrupted activation settled")
            st = check_consistent(s)
            running = st["active"]
            assert running in (version, new)
            s.detect(running)
            # each version becomes good before the next round, whose kills then never make
            # a crash loop of it
            s.wait_state(lambda x: x["last_known_good"] == running, f"{running} good")
        finally:
            s.stop()
        version = running


# --- threshold and sequence state across a swap ------------------------------------------------

def counting_rules(version, edited_window):
    """A threshold rule that stays the same, one whose window each version changes, and a rule
    of its own per version (so that every version differs)."""
    return f"""\
rules:
  - id: burst
    name: Three bursts from one process
    level: low
    condition:
      all:
        - event.action: exec
        - process.command_line: {{startswith: "burst-"}}
    threshold: {{count: 3, within: 1h, by: process.pid}}
  - id: edited
    name: Three edits from one process
    level: low
    condition:
      all:
        - event.action: exec
        - process.command_line: {{startswith: "edited-"}}
    threshold: {{count: 3, within: {edited_window}, by: process.pid}}
  - id: own-v{version}
    name: Rule of version {version}
    level: low
    condition:
      all:
        - event.action: exec
        - process.command_line: {{startswith: "own-v{version}-"}}
"""


def test_threshold_state_carried_across_swap(tmp_path):
    need_root()
    need_vigil()
    content = Content(tmp_path / "content")
    v2 = content.build({"count.yml": counting_rules(2, "1h")}, 2, skip_validation=True)
    v3 = content.build({"count.yml": counting_rules(3, "2h")}, 3, skip_validation=True)
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    s = Sensor(tmp_path, content, source=f"replay:{fifo}")
    s.start(wait=False)
    written = 0
    with open(fifo, "w") as f:
        def send(*cmds):
            nonlocal written
            for cmd in cmds:
                f.write(json.dumps({"event": {"kind": "event", "action": "exec"},
                                    "process": {"pid": 7, "command_line": cmd}}) + "\n")
                written += 1
            f.flush()
            deadline = time.monotonic() + STATE_TIMEOUT
            while time.monotonic() < deadline:
                m = s.metrics()
                if m and get(m[-1], "vigil.engine.events") >= written:
                    return
                time.sleep(0.05)
            pytest.fail(f"the agent did not evaluate {written} events", pytrace=False)

        s.agent.wait_ready()
        s.drop(v2)
        s.wait_active(2)
        send("burst-1", "burst-2", "edited-1", "edited-2")
        s.drop(v3)
        s.wait_active(3)
        send("burst-3", "edited-3", "edited-4", "edited-5")
    assert s.agent.proc.wait(timeout=60) == 0, s.agent.stderr()[-2000:]
    # burst went on counting across the swap; edited, whose window changed, started again
    assert [(get(a, "rule.id"), get(a, "process.command_line")) for a in s.alerts()] == \
        [("burst", "burst-3"), ("edited", "edited-5")]


# --- 100 swaps under a continuous event stream -------------------------------------------------

def swap_rule(version):
    return f"""\
rules:
  - id: swap-v{version}
    name: Swap marker (version {version})
    level: low
    condition:
      all:
        - event.action: exec
        - process.command_line: {{startswith: "swap-marker-"}}
    tests:
      match:
        - {{event.action: exec, process.command_line: swap-marker-1}}
      nomatch:
        - {{event.action: exec, process.command_line: other}}
"""


class Stream(threading.Thread):
    """Writes exec events into a FIFO without pause until stopped: every other one a marker."""

    def __init__(self, fifo):
        super().__init__(daemon=True)
        self.fifo = fifo
        self.stop_flag = threading.Event()
        self.markers_on = threading.Event()
        self.written = 0
        self.markers = 0
        self.error = None

    def run(self):
        try:
            with open(self.fifo, "w") as f:
                while not self.stop_flag.is_set():
                    lines = []
                    for _ in range(20):
                        if self.written % 2 == 0 and self.markers_on.is_set():
                            cmd = f"swap-marker-{self.markers}"
                            self.markers += 1
                        else:
                            cmd = f"filler {self.written}"
                        lines.append(json.dumps({"event": {"kind": "event", "action": "exec"},
                                                 "process": {"pid": 4242,
                                                             "command_line": cmd}}))
                        self.written += 1
                    f.write("\n".join(lines) + "\n")
                    f.flush()
                    time.sleep(0.005)
        except OSError as e:
            self.error = e


def test_hundred_swaps_every_event_once(tmp_path):
    need_root()
    need_vigil()
    content = Content(tmp_path / "content")
    bundles = {}
    for v in range(2, 102):
        bundles[v] = content.build({"swap.yml": swap_rule(v)}, v, skip_validation=True)
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    stream = Stream(fifo)
    stream.start()
    s = Sensor(tmp_path, content, source=f"replay:{fifo}")
    s.start()
    totals = []
    try:
        for v in range(2, 102):
            s.drop(bundles[v])
            st = s.wait_active(v)
            totals.append(st["activation"]["ms"]["total"])
            stream.markers_on.set()  # from the first version on, every marker must alert
        # markers written from here on reach the agent after the last swap: let some be
        # written, so that the last version has events to evaluate too
        after, deadline = stream.markers, time.monotonic() + 30
        while stream.markers < after + 40:
            assert time.monotonic() < deadline and stream.is_alive(), "the stream stalled"
            time.sleep(0.01)
    finally:
        stream.stop_flag.set()
        stream.join(timeout=30)
    assert s.agent.proc.wait(timeout=60) == 0, s.agent.stderr()[-2000:]
    assert stream.error is None, stream.error
    s.agent.pump()
    st = s.status()
    assert st["active"] == 101 and not st["rejections"], st
    seen = {}
    order = []
    for a in s.alerts():
        cmd = get(a, "process.command_line")
        assert cmd.startswith("swap-marker-"), a
        n = int(cmd.rsplit("-", 1)[1])
        seen[n] = seen.get(n, 0) + 1
        order.append((n, int(get(a, "rule.id").split("-v")[1])))
    doubled = [n for n, c in seen.items() if c != 1]
    missing = [n for n in range(stream.markers) if n not in seen]
    assert not doubled, f"markers evaluated more than once: {doubled[:10]}"
    assert not missing, f"{len(missing)} of {stream.markers} markers never raised an alert: " \
                        f"{missing[:10]}"
    # versions only move forward along the stream, and every one of them ran
    versions = [v for _, v in sorted(order)]
    assert versions == sorted(versions), "a later event was evaluated by an older version"
    assert set(versions) == set(range(2, 102)), sorted(set(range(2, 102)) - set(versions))
    final = s.agent.final_metric()
    assert final is not None, "no final metric line"
    assert get(final, "vigil.engine.events") == stream.written, \
        (get(final, "vigil.engine.events"), stream.written)
    assert get(final, "vigil.engine.alerts") == stream.markers
    assert get(final, "vigil.content.activated") == 100
    totals.sort()
    print(f"swaps: 100 activations under {stream.written} events, {stream.markers} markers, "
          f"each evaluated once; activation ms median {totals[50]:.1f}, max {totals[-1]:.1f}")
