"""
The proc-connector fallback: forced with --source proc, and chosen by the agent itself when
BPF cannot load (capabilities taken away), with the reason on stderr.
"""
import os
import signal
import subprocess
import sys

import pytest

from conftest import (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, action, get, need, need_root,
                      new_marker, numeric_leaves, own_command_line, real, start_agent)

SH = real("/bin/sh")
SLEEP = real("/usr/bin/sleep")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    need_root()
    a = start_agent(["--print", "--source", "proc"], tmp_path_factory.mktemp("proc"), "proc")
    if a.source != "proc":
        a.kill()
        pytest.fail(f"--source proc started another source: {a.ready_line!r}", pytrace=False)
    yield a
    a.kill()


def test_exec_fork_exit(agent, tmp_path):
    marker = new_marker()
    cwd = real(tmp_path)
    # The shell lives long enough for /proc to be read; it forks sleep and exits with 5.
    sh = subprocess.Popen(["/bin/sh", "-c", "/usr/bin/sleep 0.5; exit 5", marker], cwd=cwd)
    assert sh.wait() == 5

    ex = agent.wait_one(lambda e: action(e) == "exec" and get(e, "process.pid") == sh.pid,
                        f"exec of the shell (pid {sh.pid})")
    assert get(ex, "event.category") == "process"
    assert get(ex, "process.args") == ["/bin/sh", "-c", "/usr/bin/sleep 0.5; exit 5", marker]
    assert get(ex, "process.executable") == SH
    assert get(ex, "process.working_directory") == cwd
    assert get(ex, "user.id") == "0"
    assert get(ex, "process.parent.pid") == os.getpid()
    assert get(ex, "process.parent.executable") == real(sys.executable)
    assert get(ex, "process.parent.command_line") == own_command_line()

    fork = agent.wait_one(lambda e: action(e) == "fork" and get(e, "process.parent.pid") == sh.pid,
                          f"fork by the shell (pid {sh.pid})")
    child = get(fork, "process.pid")
    assert isinstance(child, int) and child != sh.pid
    sl = agent.wait_one(lambda e: action(e) == "exec" and get(e, "process.pid") == child,
                        f"exec of sleep in pid {child}")
    assert get(sl, "process.executable") == SLEEP
    assert get(sl, "process.args") == ["/usr/bin/sleep", "0.5"]
    assert get(sl, "process.parent.pid") == sh.pid

    done = agent.wait_one(lambda e: action(e) == "exit" and get(e, "process.pid") == sh.pid,
                          f"exit of the shell (pid {sh.pid})")
    assert get(done, "process.exit_code") == 5
    sleep_exit = agent.wait_one(lambda e: action(e) == "exit" and get(e, "process.pid") == child,
                                f"exit of sleep (pid {child})")
    assert get(sleep_exit, "process.exit_code") == 0
    seq = [get(e, "event.sequence") for e in (ex, fork, sl, sleep_exit, done)]
    assert seq == sorted(seq), f"events out of order: {seq}"


def test_short_lived_process_still_reported(agent):
    """A process gone before /proc is read still gives exec and exit events with its pid."""
    p = subprocess.Popen(["/usr/bin/true"])
    p.wait()
    ex = agent.wait_one(lambda e: action(e) == "exec" and get(e, "process.pid") == p.pid,
                        f"exec of true (pid {p.pid})")
    assert get(ex, "process.parent.pid") in (None, os.getpid())
    done = agent.wait_one(lambda e: action(e) == "exit" and get(e, "process.pid") == p.pid,
                          f"exit of true (pid {p.pid})")
    assert get(done, "process.exit_code") == 0


def test_zz_final_metric_names_source_and_missing(agent):
    rc = agent.stop(signal.SIGTERM)
    assert rc == 0, agent.stderr()[-2000:]
    m = agent.final_metric()
    assert m is not None, "last stdout line is not a metric line"
    v = m.get("vigil", {})
    assert v.get("final") is True
    assert v.get("source") == "proc"
    missing = v.get("missing")
    assert isinstance(missing, list) and missing and all(isinstance(x, str) for x in missing), (
        f"the proc source must say what it cannot see; vigil.missing={missing!r}")
    lost = [(k, n) for k, n in numeric_leaves(v.get("drops")) if n]
    assert not lost, f"events dropped under light load: {lost}"


def _drop_bpf_caps():
    """preexec: remove the capabilities BPF needs from the bounding set (root keeps the rest)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP = 24
    for cap in (CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            os._exit(120)


def test_falls_back_when_bpf_cannot_load(tmp_path):
    need_root()
    with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
        need(f.read().strip() != "0",
             "unprivileged BPF is enabled, so taking capabilities away does not stop BPF")
    a = start_agent(["--print"], tmp_path, "nobpf", preexec=_drop_bpf_caps)
    try:
        err = a.stderr()
        assert a.source == "proc", f"expected the proc fallback; stderr:\n{err}"
        why = [l for l in err.splitlines() if "bpf" in l.lower() and "ready" not in l]
        assert why, f"no stderr line says why BPF is not used:\n{err}"
        p = subprocess.Popen(["/bin/sh", "-c", "exit 4"])
        p.wait()
        done = a.wait_one(lambda e: action(e) == "exit" and get(e, "process.pid") == p.pid,
                          f"exit of sh (pid {p.pid}) through the fallback")
        assert get(done, "process.exit_code") == 4
    finally:
        rc = a.stop()
    assert rc == 0, a.stderr()[-2000:]
    m = a.final_metric()
    assert m is not None and m["vigil"]["source"] == "proc"
