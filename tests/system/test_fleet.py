"""
A fleet on this host: vigil-server, real agents on every source (eBPF, proc connector,
replay), each with its own state directory, and simulated agents speaking the real HTTP
protocol, taken through a good release and a bad one with second-scale bake times.

- The good release promotes through every step of its plan and reaches every agent.
- The bad release (a bundle the test build of the agent crashes on, standing in for a content
  defect) halts at its first step; no agent outside that step is ever offered it; the agent
  that crash-looped reverts by itself, the one that ran it without crashing is pulled back by
  the server, and both end on the previous good version, detecting again.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import AGENT, BUILD, VIGIL, need_bpf, need_root, new_marker
from test_server import Server, keys, run, wait_for  # noqa: F401 (keys: a fixture)

HOOKS_AGENT = BUILD / "testhooks" / "vigil-agent"
HEARTBEAT = 1  # seconds, told to every agent by the server

RULE = """\
rules:
  - id: {rid}
    name: Fleet test marker
    level: low
    condition:
      all:
        - event.action: exec
        - process.executable: {{endswith: /fleet-test-marker}}
    tests:
      match:
        - {{event.action: exec, process.executable: /tmp/x/fleet-test-marker}}
      nomatch:
        - {{event.action: exec, process.executable: /bin/true}}
"""

# Gates for a fleet of a handful of agents: one bad agent is enough to halt (min_bad 1), and
# silence is counted after 4 missed heartbeats, not 2, because a starting eBPF agent on a
# busy 2-CPU machine can be late by a few seconds. The CPU gate is off: every activation
# compiles content, a CPU burst that a bake of seconds cannot average away.
GATES = {"min_bad": 1, "silence_k": 4, "disabled": ["cpu"]}


def plan(bake):
    return [{"ring": 0, "percent": 100, "bake_seconds": bake},
            {"ring": 1, "percent": 100, "bake_seconds": bake},
            {"ring": 2, "percent": 50, "bake_seconds": bake},
            {"ring": 2, "percent": 100, "bake_seconds": 1}]


class RealAgent:
    """
    vigil-agent on one source, enrolled in a group, under a supervisor that restarts it
    when it dies (systemd's part). stdout and stderr of every start go to files.
    """

    def __init__(self, name, workdir, binary, source, server, root, token):
        self.name = name
        self.dir = pathlib.Path(workdir) / name
        self.dir.mkdir()
        self.inbox = self.dir / "inbox"
        self.inbox.mkdir(mode=0o700)
        self.state = self.dir / "state"
        (self.dir / "token").write_text(token + "\n")
        os.chmod(self.dir / "token", 0o600)
        self.feed = None
        if source == "replay":
            fifo = self.dir / "feed"
            os.mkfifo(fifo)
            # held open for reading and writing: the agent never sees the end of its feed
            self.feed = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
            source = f"replay:{fifo}"
        self.args = [str(binary), "--source", source, "--root", str(root),
                     "--state-dir", str(self.state), "--content-dir", str(self.inbox),
                     "--health-window", "1", "--liveness-interval", "1",
                     "--server", f"http://127.0.0.1:{server.port}",
                     "--enroll-token-file", str(self.dir / "token")]
        self.err_path = self.dir / "agent.err"
        self.starts = 0
        self.crashes = []  # return codes of the starts that died
        self.proc = None
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._supervise, daemon=True)

    def start(self):
        self._spawn()
        self.thread.start()
        return self

    def _spawn(self):
        with open(self.dir / "agent.out", "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1

    def _supervise(self):
        while True:
            with self.lock:
                if self.stopping:
                    return
                rc = self.proc.poll()
                if rc is not None:
                    self.crashes.append(rc)
                    if len(self.crashes) > 10:
                        return
                    time.sleep(0.2)  # systemd's RestartSec, shortened
                    self._spawn()
            time.sleep(0.05)

    def stderr(self):
        try:
            return self.err_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def send(self, lines):
        os.write(self.feed, "".join(lines).encode())

    def status(self):
        res = run(AGENT, "--status", "--state-dir", self.state)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    def stop(self):
        with self.lock:
            self.stopping = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"agent {self.name} did not stop on SIGTERM: {self.stderr()}")
        if self.feed is not None:
            os.close(self.feed)
            self.feed = None
        return rc


class SimAgent:
    """
    A simulated agent over the real protocol: enrolls, heartbeats every half second and runs
    whatever version the server names (as an agent that installs it at once would). Every
    version it was ever offered is kept.
    """

    def __init__(self, server, token, name):
        self.server = server
        self.id, self.cred = server.enroll_agent(token=token, hostname=name)
        self.version = None
        self.offered = set()
        self.errors = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stopping.is_set():
            report = {"content_version": self.version, "sensor_version": "0.1.0",
                      "uptime_seconds": 1, "restarts": 0, "crash_loop_reverts": 0}
            try:
                st, body, _ = self.server.request(
                    "POST", f"/api/v1/agents/{self.id}/heartbeat", report, token=self.cred)
            except OSError as e:
                self.errors.append(str(e))
                body = None
            else:
                if st != 200:
                    self.errors.append(f"{st} {body}")
                    body = None
            content = body.get("content") if isinstance(body, dict) else None
            if content and content.get("version"):
                if content.get("url"):
                    self.offered.add(content["version"])
                self.version = content["version"]
            self.stopping.wait(0.5)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)


def build_bundle(keys, version, out, name):
    rules = out / f"rules-{version}"
    rules.mkdir()
    (rules / "fleet.yml").write_text(RULE.format(rid=f"fleet-test-v{version}"))
    path = out / f"{name}.bundle"
    res = run(VIGIL, "content", "build", rules, "--version", version, "--key", keys / "s1.key",
              "--name", name, "-o", path)
    assert res.returncode == 0, res.stderr
    return path


def upload(srv, path, kind="content"):
    st, body, _ = srv.request("POST", f"/api/v1/admin/releases?kind={kind}", path.read_bytes(),
                              token=srv.admin,
                              headers={"Content-Type": "application/octet-stream"})
    assert st == 201, body
    assert body["kind"] == kind, body
    return body


def restart_server(s, tmp_path, keys, while_down=None):
    """
    Stops server @s, runs @while_down, and starts the server again on its store and address
    with the same tokens; returns the new one.
    """
    assert s.stop() == 0
    if while_down:
        while_down()
    s2 = Server(tmp_path / "data", root=keys / "root.json",
                extra=["--heartbeat-seconds", str(HEARTBEAT),
                       "--listen", f"127.0.0.1:{s.port}"]).start()
    s2.admin, s2.enroll = s.admin, s.enroll
    return s2


def agent_versions(srv):
    return {a["id"]: a["content_version"] for a in srv.admin_call("GET", "agents")["agents"]}


def exec_marker(tmp_path):
    """Runs a program whose path ends in /fleet-test-marker; returns its directory."""
    d = tmp_path / new_marker("fleet")
    d.mkdir()
    exe = d / "fleet-test-marker"
    # a real program (not a script, whose executable would be the shell), alive long enough
    # for the proc connector's /proc lookup
    shutil.copy("/bin/sleep", exe)
    subprocess.run([str(exe), "0.5"], check=True)
    return d


def replay_marker(seq):
    return json.dumps({"@timestamp": "2026-01-01T00:00:00.000Z",
                       "event": {"kind": "event", "action": "exec", "category": "process",
                                 "sequence": seq},
                       "process": {"pid": 20000 + seq, "executable": "/tmp/x/fleet-test-marker",
                                   "name": "fleet-test-marker"}}) + "\n"


def alerts_of(srv, rule, agent_id):
    return srv.admin_call("GET", f"alerts?rule={rule}&agent={agent_id}&limit=1000")["alerts"]


def start_fleet(s, tmp_path, real, specs):
    """
    Puts group canary in ring 0 and early in ring 1, then starts each real agent of @specs,
    (name, executable, source, group or None for the server's default enrollment token),
    into @real, under its restart loop, and waits until every one has enrolled. Returns the
    agent ids by name.
    """
    s.admin_call("PUT", "groups/canary", {"ring": 0})
    s.admin_call("PUT", "groups/early", {"ring": 1})
    tokens = {g: s.admin_call("POST", "enrollment-tokens", {"group": g},
                              expect=201)["token"] for g in ("canary", "early")}
    root = pathlib.Path(s.root)
    for name, exe, source, group in specs:
        real[name] = RealAgent(name, tmp_path, exe, source, s, root,
                               tokens[group] if group else s.enroll).start()
    for a in real.values():
        wait_for(lambda: "uplink: enrolled as" in a.stderr(), f"{a.name} to enroll",
                 timeout=90)
    return {n: a.stderr().split("uplink: enrolled as ")[1].split()[0] for n, a in real.items()}


def stop_all(real, server):
    """
    Stops every agent of @real, then @server, even when one agent does not stop; then fails
    as the first that did not. Returns the agents' exit statuses by name.
    """
    rcs, failed = {}, []
    for n, a in real.items():
        try:
            rcs[n] = a.stop()
        except BaseException as e:  # pytest.fail's outcome is a BaseException
            failed.append(e)
    server.stop()
    if failed:
        raise failed[0]
    return rcs


def wait_completed(s, rollout_id, what, timeout):
    """
    Waits until rollout @rollout_id leaves its steps and checks that it completed; when it
    halted instead, the failure shows the gate and reason of the halt. Returns the rollout's
    decisions, oldest first.
    """
    wait_for(lambda: s.admin_call("GET", f"rollouts/{rollout_id}")["state"] != "rolling",
             what, timeout=timeout)
    shown = s.admin_call("GET", f"rollouts/{rollout_id}")
    decisions = s.admin_call("GET", f"decisions?rollout={rollout_id}")["decisions"][::-1]
    if shown["state"] != "complete":
        # a string, which pytest shows whole (a long dict would be cut short)
        bad = {g: v for g, v in shown["gates"].items() if v.get("bad")}
        halts = [json.dumps(d.get("detail"), sort_keys=True) for d in decisions
                 if d["kind"] == "halt"]
        pytest.fail(f"rollout {rollout_id} is {shown['state']}, not complete; gates with bad "
                    f"agents: {json.dumps(bad, sort_keys=True)}; halts: {halts}",
                    pytrace=False)
    return decisions


def wait_halted_by_a_gate(s, rollout_id, what, timeout):
    """
    Waits until rollout @rollout_id halts and checks that it halted at its first step, by a
    failing gate (restarts, crash-loop reverts or silence), not by a person. Returns the
    rollout's decisions.
    """
    wait_for(lambda: s.admin_call("GET", f"rollouts/{rollout_id}")["state"] == "halted",
             what, timeout=timeout)
    shown = s.admin_call("GET", f"rollouts/{rollout_id}")
    assert shown["step"] == 0, shown
    decisions = s.admin_call("GET", f"decisions?rollout={rollout_id}")["decisions"]
    halt = [d for d in decisions if d["kind"] == "halt"][0]
    assert halt["detail"]["manual"] is False
    assert halt["detail"]["failed_gate"] in ("reverts", "silence", "restarts"), halt
    return decisions


def test_good_release_reaches_all_and_bad_release_halts_at_its_first_step(tmp_path, keys):
    need_bpf()
    need_root()
    if not os.access(HOOKS_AGENT, os.X_OK):
        pytest.fail(f"{HOOKS_AGENT} is missing: run make testhooks", pytrace=False)
    s = Server(tmp_path / "data", root=keys / "root.json",
               extra=["--heartbeat-seconds", str(HEARTBEAT)]).start()
    real, sims = {}, []
    try:
        # ring 0: the eBPF agent is the test build, which crashes on "crash-test" bundles;
        # the replay agent beside it is a release build and runs them without harm
        sims = [SimAgent(s, s.enroll, f"sim-{i}").start() for i in range(12)]
        ids = start_fleet(s, tmp_path, real, [("bpf", HOOKS_AGENT, "bpf", "canary"),
                                              ("canary-replay", AGENT, "replay", "canary"),
                                              ("proc", AGENT, "proc", "early"),
                                              ("replay", AGENT, "replay", None)])
        assert len(s.admin_call("GET", "agents")["agents"]) == len(real) + len(sims)

        # --- a good release goes through every step and reaches every agent ---
        good = upload(s, build_bundle(keys, 1, tmp_path, "fleet-good"))
        r1 = s.admin_call("POST", "rollouts", {"release": good["hash"], "plan": plan(3),
                                                "gates": GATES}, expect=201)
        # the server restarts mid-rollout on the same address: the rollout resumes where it
        # was, and an alert raised while the server was away arrives once
        wait_for(lambda: s.admin_call("GET", f"rollouts/{r1['id']}")["step"] >= 1,
                 "the first promotion", timeout=120)
        before = s.admin_call("GET", f"rollouts/{r1['id']}")

        def while_down():
            real["canary-replay"].send([replay_marker(1)])
            time.sleep(1)

        s = restart_server(s, tmp_path, keys, while_down)
        after = s.admin_call("GET", f"rollouts/{r1['id']}")
        assert after["created"] == before["created"] and after["step"] >= before["step"]
        if after["step"] == before["step"]:
            assert after["step_started"] == before["step_started"], (before, after)
        for x in sims:
            x.errors.clear()  # refused connections while the server was away
        decisions = wait_completed(s, r1["id"], "the good release to leave its steps", 180)
        kinds = [d["kind"] for d in decisions]
        assert kinds[0] == "start" and kinds[-1] == "complete", kinds
        assert kinds.count("promote") == len(plan(3)) - 1, kinds
        wait_for(lambda: set(agent_versions(s).values()) == {1},
                 "every agent to run the good release", timeout=60)
        for a in real.values():
            assert a.crashes == [], f"{a.name}: {a.crashes} {a.stderr()}"
            # an agent of the last step may still be in its health window (1 s) when the
            # rollout completes: it becomes last-known-good once the window has passed
            wait_for(lambda: a.status()["last_known_good"] == 1,
                     f"{a.name} to take the release as last-known-good", timeout=30)
            st = a.status()
            assert st["active"] == 1 and st["last_known_good"] == 1, (a.name, st)
        assert all(x.offered == {1} and not x.errors for x in sims)

        # --- a bad release halts at its first step and is pulled back ---
        bad = upload(s, build_bundle(keys, 2, tmp_path, "crash-test-fleet"))
        r2 = s.admin_call("POST", "rollouts", {"release": bad["hash"], "plan": plan(3600),
                                                "gates": GATES}, expect=201)
        assert r2["previous"] == 1
        decisions = wait_halted_by_a_gate(s, r2["id"], "the bad release to halt", 120)
        assert any(d["kind"] == "pull" and "return to 1" in d["detail"]["reason"]
                   for d in decisions), decisions

        # the eBPF agent crash-looped, reverted by itself and quarantined the release
        bpf = real["bpf"]
        wait_for(lambda: bpf.status()["crash_loop_reverts"] == 1, "the crash-loop revert",
                 timeout=120)
        wait_for(lambda: "source bpf ready" in bpf.stderr().rsplit("test hook", 1)[-1],
                 "the eBPF agent to run again", timeout=60)
        assert len(bpf.crashes) == 3 and all(rc == -signal.SIGABRT for rc in bpf.crashes), \
            (bpf.crashes, bpf.stderr())
        st = bpf.status()
        assert st["active"] == 1 and st["trial"] is None, st
        assert any(q["version"] == 2 and q["reason"].startswith("crash loop")
                   for q in st["quarantined"]), st
        # the replay agent beside it ran the release without crashing, long enough to make it
        # last-known-good; the server's pull took it back to the good version it ran before
        cr = real["canary-replay"]
        wait_for(lambda: cr.status()["active"] == 1, "the pulled agent to return to 1",
                 timeout=60)
        st = cr.status()
        assert cr.crashes == [] and st["last_known_good"] == 1, st
        assert any(q["version"] == 2 and q["reason"] == "pulled by the server"
                   for q in st["quarantined"]), st
        assert "content version 2 quarantined (pulled by the server)" in cr.stderr()
        assert "content version 2 (crash-test-fleet) active on trial" in cr.stderr()
        # the server sees every exposed agent on the previous good version
        wait_for(lambda: agent_versions(s)[ids["bpf"]] == 1 and
                 agent_versions(s)[ids["canary-replay"]] == 1,
                 "the server to see ring 0 back on 1", timeout=30)
        # no agent outside the first step was ever offered it
        time.sleep(2 * HEARTBEAT)
        for n in ("proc", "replay"):
            a = real[n]
            assert "content 2 downloaded" not in a.stderr(), a.stderr()
            st = a.status()
            assert st["active"] == 1 and st["quarantined"] == [], (n, st)
            assert st["activation"]["version"] == 1, (n, st)
        assert all(2 not in x.offered for x in sims), [x.offered for x in sims]
        assert set(agent_versions(s).values()) == {1}

        # every agent still detects, and its alerts reach the server
        exec_marker(tmp_path)
        real["canary-replay"].send([replay_marker(2)])
        real["replay"].send([replay_marker(1)])
        for n in ("bpf", "proc", "canary-replay", "replay"):
            want = 2 if n == "canary-replay" else 1
            alerts = wait_for(lambda: len(alerts_of(s, "fleet-test-v1", ids[n])) >= want and
                              alerts_of(s, "fleet-test-v1", ids[n]),
                              f"alerts from {n} on the good release", timeout=30)
            # they carry the id the agent was enrolled under, from its first run on
            assert {a["data"]["agent"]["id"] for a in alerts} == {ids[n]}, alerts
        # the one raised while the server was away and the one after: each stored once
        time.sleep(2 * HEARTBEAT)
        alerts = alerts_of(s, "fleet-test-v1", ids["canary-replay"])
        assert sorted(a["data"]["event"]["sequence"] for a in alerts) == [1, 2], alerts
        assert len({a["seq"] for a in alerts}) == 2, alerts
    finally:
        for x in sims:
            x.stop()
        rcs = stop_all(real, s)
    assert rcs == {n: 0 for n in real}, rcs
