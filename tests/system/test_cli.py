"""
vigil-agent as a command: --help, --version, bad flags, and stopping (SIGTERM, SIGINT,
--duration) with a final metric line.
"""
import json
import re
import signal
import subprocess
import time

import pytest

from conftest import AGENT, get, need_agent, need_root, numeric_leaves, start_agent


def run(*args, timeout=30):
    need_agent()
    return subprocess.run([str(AGENT), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_help():
    res = run("--help")
    assert res.returncode == 0, res.stderr
    assert "usage: vigil-agent" in res.stdout
    for flag in ("--print", "--duration", "--source", "--help", "--version"):
        assert flag in res.stdout, f"--help does not mention {flag}"
    assert res.stderr == ""


def test_version():
    res = run("--version")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and re.search(r"\b\d+\.\d+\.\d+\b", lines[0]), res.stdout
    assert res.stderr == ""


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["-Z"],
    ["--print", "--duration"],
    ["--print", "--duration", "abc"],
    ["--print", "--duration", "-5"],
    ["--print", "--duration", "nan"],
    ["--print", "--duration", "1e400"],
    ["--print", "--source"],
    ["--print", "--source", "nosuch"],
    ["--print", "--source", "replay:"],
    ["--print", "unexpected-argument"],
], ids=lambda a: " ".join(a))
def test_bad_flags(args):
    res = run(*args)
    assert res.returncode == 2, f"exit {res.returncode}; stderr: {res.stderr!r}"
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"want one line on stderr, got {res.stderr!r}"
    assert res.stdout == ""


def check_final_metric(agent, source=None):
    m = agent.final_metric()
    assert m is not None, (f"last stdout line is not a metric line: "
                           f"{agent.lines[-1][:200] if agent.lines else b''!r}")
    v = m.get("vigil", {})
    assert v.get("final") is True, json.dumps(m)[:500]
    if source:
        assert v.get("source") == source
    assert isinstance(v.get("events"), dict)
    assert all(isinstance(n, int) for n in v["events"].values())
    assert numeric_leaves(v.get("drops")), f"no drop counters: {json.dumps(m)[:500]}"
    assert isinstance(get(m, "@timestamp"), str)
    return m


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_with_final_metric(tmp_path, sig):
    need_root()
    a = start_agent(["--print"], tmp_path, sig.name)
    time.sleep(0.3)
    rc = a.stop(sig)
    assert rc == 0, f"exit {rc} on {sig.name}; stderr:\n{a.stderr()[-2000:]}"
    check_final_metric(a, a.source)
    finals = [m for m in a.metrics() if get(m, "vigil.final") is True]
    assert len(finals) == 1, f"{len(finals)} final metric lines"


def test_duration_ends_the_run(tmp_path):
    need_root()
    t0 = time.monotonic()
    a = start_agent(["--print", "--duration", "2"], tmp_path, "duration")
    try:
        a.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        a.kill()
        pytest.fail("--duration 2 did not end the run within 30 s", pytrace=False)
    took = time.monotonic() - t0
    assert a.stop() == 0, a.stderr()[-2000:]
    assert 2.0 <= took < 20, f"--duration 2 ran {took:.1f}s"
    check_final_metric(a, a.source)


def test_closed_stdout_is_not_fatal_by_signal(tmp_path):
    """A reader that goes away (SIGPIPE) ends the agent with a status, not a signal."""
    need_agent()
    path = tmp_path / "many.ndjson"
    ev = {"@timestamp": "2025-03-04T05:06:07.000000000Z",
          "event": {"kind": "event", "category": "process", "action": "exec", "sequence": 1},
          "process": {"pid": 4190001, "executable": "/usr/bin/true", "args": ["true"]}}
    path.write_text((json.dumps(ev) + "\n") * 20000)
    p = subprocess.Popen([str(AGENT), "--print", "--source", f"replay:{path}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    p.stdout.read(100)
    p.stdout.close()
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("the agent hung after its stdout was closed", pytrace=False)
    assert p.returncode >= 0, (f"killed by signal {-p.returncode} when stdout closed; stderr: "
                               f"{err.decode(errors='replace')[-500:]}")
