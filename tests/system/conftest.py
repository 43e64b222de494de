"""
Shared pieces of vigil's system tests: the agent run as a subprocess, its NDJSON output
read back as it grows, and the rule for what a missing capability means (skip, or fail
when CI=true).
"""
import ipaddress
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("VIGIL_BUILD", ROOT / "build"))
AGENT = BUILD / "vigil-agent"
VIGIL = BUILD / "vigil"
IN_CI = os.environ.get("CI", "").lower() == "true"

READY_TIMEOUT = 60.0  # BPF load plus the /proc scan
EVENT_TIMEOUT = 10.0  # from the action to its event on stdout
STOP_TIMEOUT = 20.0


def need(condition, reason):
    """Skips the test when @condition is false; under CI=true that is a failure instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def need_agent():
    if not os.access(AGENT, os.X_OK):
        pytest.fail(f"{AGENT} is missing: run make first", pytrace=False)


def need_root():
    need(os.geteuid() == 0, "needs root (the sensor attaches to the kernel)")


def effective_caps():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def need_bpf():
    need_root()
    need(os.path.exists("/sys/kernel/btf/vmlinux"),
         "the kernel has no BTF (/sys/kernel/btf/vmlinux): the BPF source cannot load")
    caps = effective_caps()
    need(caps & (1 << CAP_SYS_ADMIN) or (caps & (1 << CAP_BPF) and caps & (1 << CAP_PERFMON)),
         "this process lacks CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN): BPF cannot load")


def new_marker(kind="marker"):
    return f"vigil-{kind}-{uuid.uuid4().hex[:16]}"


def real(path):
    return os.path.realpath(str(path))


def own_command_line(pid="self"):
    """The command line of a process as the agent reports it: arguments joined by spaces."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        raw = f.read()
    return " ".join(a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1])


def get(ev, name, default=None):
    """Value of the dotted ECS field @name in a nested event, or @default."""
    if name in ev:  # "@timestamp" and any field written flat
        return ev[name]
    cur = ev
    for part in name.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def kind(ev):
    return get(ev, "event.kind")


def action(ev):
    return get(ev, "event.action")


def truncated(ev):
    return get(ev, "event.truncated") or []


def same_ip(value, expected):
    try:
        return ipaddress.ip_address(value) == ipaddress.ip_address(expected)
    except (TypeError, ValueError):
        return False


def brief(ev):
    """One short line describing an event, for failure messages."""
    keys = ("event.action", "event.sequence", "process.pid", "process.parent.pid",
            "process.executable", "process.args", "file.path", "file.target_path",
            "file.name", "file.mode", "source.ip", "source.port", "destination.ip",
            "destination.port", "network.transport", "network.direction",
            "process.exit_code", "user.changes.id", "group.changes.id", "event.truncated")
    parts = []
    for k in keys:
        v = get(ev, k)
        if v is None:
            continue
        s = json.dumps(v)
        parts.append(f"{k}={s[:120]}")
    return " ".join(parts)


class AgentError(Exception):
    pass


class Agent:
    """
    One vigil-agent process. stdout and stderr go to files in @workdir (no pipe can fill up
    and stall it); events() reads what has been written so far.
    """

    def __init__(self, args, workdir, name="agent", env=None, preexec=None, binary=None):
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.args = [str(binary or AGENT), *args]
        self.out_path = workdir / f"{name}.ndjson"
        self.err_path = workdir / f"{name}.stderr"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=env,
                                         preexec_fn=preexec, start_new_session=True)
        self.pid = self.proc.pid
        self.lines = []      # every complete stdout line, raw bytes
        self.records = []    # parsed JSON of each line (None when it did not parse)
        self._offset = 0
        self._partial = b""
        self.returncode = None
        self.ready_line = None

    # --- output ---
    def pump(self):
        with open(self.out_path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        if not data:
            return
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        for line in complete:
            self.lines.append(line)
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            self.records.append(rec)

    def events(self):
        """Event lines (event.kind "event") read so far."""
        self.pump()
        return [r for r in self.records if isinstance(r, dict) and kind(r) == "event"]

    def metrics(self):
        self.pump()
        return [r for r in self.records if isinstance(r, dict) and kind(r) == "metric"]

    def stderr(self):
        try:
            return self.err_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pred, what, timeout=EVENT_TIMEOUT, count=1, near=None):
        """
        Waits until @count events satisfy @pred and returns them (oldest first). On timeout
        fails the test naming @what and listing up to five events that satisfy @near.
        """
        deadline = time.monotonic() + timeout
        found = []
        scanned = 0
        while True:
            evs = self.events()
            for ev in evs[scanned:]:
                if pred(ev):
                    found.append(ev)
            scanned = len(evs)
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                raise AgentError(f"agent exited (status {self.proc.returncode}) while waiting "
                                 f"for {what}; stderr:\n{self.stderr()[-2000:]}")
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        msg = [f"no event for {what} within {timeout:.0f}s "
               f"(found {len(found)} of {count}; {scanned} events read)"]
        if near is not None:
            close = [ev for ev in evs if near(ev)][-5:]
            msg.append("closest events:" if close else "no event came close")
            msg.extend("  " + brief(ev) for ev in close)
        pytest.fail("\n".join(msg), pytrace=False)

    def wait_one(self, pred, what, **kw):
        return self.wait_for(pred, what, **kw)[0]

    # --- life cycle ---
    def wait_ready(self, timeout=READY_TIMEOUT):
        """Waits for the stderr line saying the source is ready; returns that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stderr().splitlines():
                if re.search(r"\bready\b", line):
                    self.ready_line = line
                    return line
            if self.proc.poll() is not None:
                raise AgentError(f"agent exited (status {self.proc.returncode}) before ready; "
                                 f"stderr:\n{self.stderr()[-2000:]}")
            time.sleep(0.05)
        raise AgentError(f"agent not ready after {timeout:.0f}s; stderr:\n{self.stderr()[-2000:]}")

    @property
    def source(self):
        """Source named by the ready line ("source bpf ready" gives "bpf")."""
        m = re.search(r"source (\w+) ready", self.ready_line or "")
        return m.group(1) if m else None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends @sig (once) and waits; returns the exit status (negative: killed by a signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AgentError(f"agent did not stop within {timeout:.0f}s of signal {sig}")
        self.returncode = self.proc.returncode
        self.pump()
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def final_metric(self):
        """The last stdout line, which must be the final metric line; None otherwise."""
        self.pump()
        if not self.records or not isinstance(self.records[-1], dict):
            return None
        rec = self.records[-1]
        return rec if kind(rec) == "metric" else None


def start_agent(args, workdir, name="agent", **kw):
    """Starts an agent and waits until it is ready; kills it when that fails."""
    need_agent()
    agent = Agent(args, workdir, name, **kw)
    try:
        agent.wait_ready()
    except AgentError as e:
        agent.kill()
        pytest.fail(str(e), pytrace=False)
    return agent


# --- the field registry, as `vigil schema` prints it ---

_SCHEMA_LINE = re.compile(r"^\s*(\d+)\s+(\S+)\s+(.+?)\s*$")


def load_schema():
    """{ECS name: type} from `vigil schema` ("string", "integer", "list of strings", "ip", ...)."""
    if not os.access(VIGIL, os.X_OK):
        pytest.fail(f"{VIGIL} is missing: run make first", pytrace=False)
    out = subprocess.run([str(VIGIL), "schema"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    fields = {}
    for line in out.stdout.splitlines():
        m = _SCHEMA_LINE.match(line)
        if m:
            fields[m.group(2)] = m.group(3)
    assert "process.pid" in fields, f"could not read `vigil schema`:\n{out.stdout[:500]}"
    return fields


def flatten(obj, prefix=""):
    """Yields (dotted name, value) for every leaf; lists are leaves."""
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from flatten(v, name + ".")
        else:
            yield name, v


def schema_violations(ev, schema):
    """Reasons why @ev does not match the registry (unknown field, wrong JSON type)."""
    bad = []
    for name, value in flatten(ev):
        ftype = schema.get(name)
        if ftype is None:
            bad.append(f"{name}: not in the registry")
            continue
        if ftype.startswith("integer"):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif ftype.startswith("list"):
            ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        elif ftype.startswith("bool"):
            ok = isinstance(value, bool)
        elif ftype.startswith("ip"):
            ok = isinstance(value, str) and same_ip(value, value)
        else:
            ok = isinstance(value, str)
        if not ok:
            bad.append(f"{name}: {json.dumps(value)[:80]} is not of type {ftype}")
    return bad


def numeric_leaves(obj, prefix=""):
    """(dotted name, number) for every number nested in @obj."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += numeric_leaves(v, f"{prefix}{k}.")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append((prefix.rstrip("."), obj))
    return out


@pytest.fixture(scope="session")
def schema():
    return load_schema()


@pytest.fixture
def host_name():
    return socket.gethostname()
