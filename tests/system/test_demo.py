"""
`make run`'s script (scripts/demo.sh) as a user runs it, non-interactively (DEMO_SECONDS):
the server on 127.0.0.1 with its store, keys and tokens kept private, the default content
released through a rollout, the agent on this host enrolling, running the release and
reporting the alert of a detection the script triggers. Run twice on one demo directory (a
re-run releases a newer version to the same agent), then the store is read back through the
server's admin API and the printed next-step commands are run; nothing of the demo may be
left running.
"""
import json
import os
import pathlib
import re
import signal
import stat
import subprocess
import time
import urllib.request

import pytest

from conftest import AGENT, BUILD, ROOT, VIGIL, need_root

SERVER = BUILD / "vigil-server"
DEMO = ROOT / "scripts" / "demo.sh"
RULE = "vigil-shell-history-disabled"
SECONDS = 60          # each run; the chain takes about 25 s on an idle host
LISTEN_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0   # Ctrl-C to exit: the agent's last upload (3 s at most), the server


def need_binaries():
    for p in (VIGIL, AGENT, SERVER):
        if not os.access(p, os.X_OK):
            pytest.fail(f"{p} is missing: run make first", pytrace=False)


def processes_naming(text):
    """(pid, command line) of every process whose command line contains @text."""
    found = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append((int(d.name), cmd.strip()))
    return found


def listening_addresses(port):
    """Local addresses of the TCP sockets listening on @port (hex as in /proc/net/tcp*)."""
    addrs = []
    for name in ("tcp", "tcp6"):
        try:
            lines = pathlib.Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            addr, hexport = f[1].rsplit(":", 1)
            if f[3] == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                addrs.append(addr)
    return addrs


def start_demo(demo_dir, out_path, seconds=None):
    """Starts the demo in a process group of its own, SIGINT as a terminal would leave it."""
    env = dict(os.environ, BUILD=str(BUILD), DEMO_DIR=str(demo_dir), DEMO_PORT="0")
    env.pop("DEMO_SECONDS", None)
    if seconds:
        env["DEMO_SECONDS"] = str(seconds)
    with open(out_path, "wb") as out:
        return subprocess.Popen(["sh", str(DEMO)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=str(ROOT),
                                start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def kill_demo(proc, demo_dir):
    """After a failure: the demo's process group, then whatever else of it runs (the server
    and the narrator lead sessions of their own)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid, _ in processes_naming(str(demo_dir)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_demo(demo_dir, out_path):
    """Runs the demo for SECONDS; returns (exit status, output, listening addresses)."""
    proc = start_demo(demo_dir, out_path, SECONDS)
    try:
        addrs = None
        deadline = time.monotonic() + LISTEN_TIMEOUT
        while addrs is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"server listening on http://127\.0\.0\.1:(\d+)",
                          out_path.read_text(errors="replace"))
            if m:
                addrs = listening_addresses(int(m.group(1)))
            time.sleep(0.2)
        rc = proc.wait(timeout=SECONDS + 180)
    except BaseException:
        kill_demo(proc, demo_dir)
        raise
    return rc, out_path.read_text(errors="replace"), addrs


class Admin:
    """vigil-server restarted on the demo's store, and its admin API with the demo's token."""

    def __init__(self, demo_dir, log_path):
        self.demo = pathlib.Path(demo_dir)
        self.token = (self.demo / "tokens" / "admin.token").read_text().strip()
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(SERVER), "--data", str(self.demo / "server"), "--listen", "127.0.0.1:0",
                 "--root", str(self.demo / "keys" / "root.json"), "--quiet"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            m = re.search(r"listening on port (\d+)", log_path.read_text(errors="replace"))
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}"
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"vigil-server on the demo's store did not start:\n"
                            f"{log_path.read_text(errors='replace')}", pytrace=False)
            time.sleep(0.05)

    def get(self, path):
        req = urllib.request.Request(f"{self.url}/api/v1/admin/{path}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        return self.proc.returncode


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_demo_runs_the_whole_product_on_one_host(tmp_path):
    need_root()
    need_binaries()
    demo = tmp_path / "demo"

    # --- first run: a new demo directory ---
    rc, out1, addrs = run_demo(demo, tmp_path / "run1.out")
    assert rc == 0, out1[-6000:]
    assert addrs, f"the demo's server was not seen listening:\n{out1[-3000:]}"
    assert set(addrs) == {"0100007F"}, f"the server listens beyond 127.0.0.1: {addrs}"
    assert "vigil-agent: uplink: enrolled as" in out1
    assert re.search(r"release (\d+) rolling out", out1), out1[-3000:]
    assert "demo: ok: agent" in out1
    v1 = int(re.search(r"release (\d+) rolling out", out1).group(1))
    assert not processes_naming(str(demo)), processes_naming(str(demo))
    assert not (demo / "server.pid").exists()

    # everything under the demo directory, secrets private
    assert mode(demo) == 0o700
    for key in ("root.key", "signer.key"):
        assert mode(demo / "keys" / key) == 0o600, key
    tokens = sorted(p.name for p in (demo / "tokens").iterdir())
    assert "admin.token" in tokens and "enroll.token" in tokens, tokens
    for name in tokens:
        assert mode(demo / "tokens" / name) == 0o600, name
        assert re.fullmatch(r"[0-9a-f]{32}\.[0-9a-f]{64}\n?",
                            (demo / "tokens" / name).read_text()), name
    assert mode(demo / "server.log") == 0o600
    admin_token = (demo / "tokens" / "admin.token").read_text().strip()
    assert admin_token not in out1, "the admin token was printed"
    assert f"--token-file {demo}/tokens/admin.token" in out1

    uplink = json.loads((demo / "agent" / "state" / "uplink.json").read_text())
    agent_id = uplink["agent_id"]

    # --- second run on the same directory: a newer release, the same enrolled agent ---
    rc, out2, _ = run_demo(demo, tmp_path / "run2.out")
    assert rc == 0, out2[-6000:]
    assert "enrolled as" not in out2, "the agent enrolled again"
    v2 = int(re.search(r"release (\d+) rolling out", out2).group(1))
    assert v2 > v1
    assert not processes_naming(str(demo)), processes_naming(str(demo))

    # --- the store, read back through the admin API ---
    srv = Admin(demo, tmp_path / "server-after.log")
    try:
        agents = srv.get("agents")["agents"]
        assert [a["id"] for a in agents] == [agent_id], agents
        assert agents[0]["group"] == "demo"
        assert agents[0]["content_version"] == v2, agents[0]

        rollouts = srv.get("rollouts")["rollouts"]
        by_version = {r["release"]["version"]: r for r in rollouts}
        assert set(by_version) == {v1, v2}, rollouts
        for v in (v1, v2):
            r = by_version[v]
            assert r["state"] == "complete", r
            assert [s["bake_seconds"] for s in r["plan"]] == [5, 5], r["plan"]
        releases = {r["version"] for r in srv.get("releases")["releases"]}
        assert {v1, v2} <= releases

        alerts = srv.get(f"alerts?agent={agent_id}&rule={RULE}&limit=1000")["alerts"]
        ours = [a for a in alerts if "vigil-demo-" in json.dumps(a)]
        assert len(ours) >= 2, f"want the demo's alert of each run, got {len(ours)}: {alerts[:3]}"

        # the next-step commands it printed work as printed (against this server's port)
        line = next(l for l in out2.splitlines() if re.search(r"vigil agents list ", l))
        argv = line.split()
        argv[argv.index("--server") + 1] = srv.url
        res = subprocess.run(argv, cwd=str(ROOT), capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert agent_id in res.stdout
    finally:
        assert srv.stop() == 0
    assert not processes_naming(str(demo)), processes_naming(str(demo))

    # --- Ctrl-C in the middle of a rollout stops the agent, the narrator and the server ---
    out_path = tmp_path / "run3.out"
    proc = start_demo(demo, out_path)
    try:
        deadline = time.monotonic() + LISTEN_TIMEOUT + SECONDS
        while "rolling out" not in out_path.read_text(errors="replace"):
            assert proc.poll() is None, out_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, out_path.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        running = processes_naming(str(demo))
        assert any("vigil-server" in c for _, c in running), running
        assert any("vigil-agent" in c for _, c in running), running
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=STOP_TIMEOUT)
    except BaseException:
        kill_demo(proc, demo)
        raise
    out3 = out_path.read_text(errors="replace")
    assert rc == 130, out3[-3000:]
    assert "demo: server stopped" in out3
    assert not processes_naming(str(demo)), processes_naming(str(demo))
    assert not (demo / "server.pid").exists()
