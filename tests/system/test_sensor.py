"""
The BPF sensor end to end: one agent for the module, real activity on this host, and the
event each action must produce, field by field.
"""
import ctypes
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import (action, brief, get, need, need_bpf, new_marker, numeric_leaves,
                      own_command_line, real, same_ip, schema_violations, start_agent,
                      truncated)

SH = real("/bin/sh")
PRINTF = real("/usr/bin/printf")
TRUE = real("/usr/bin/true")
SLEEP = real("/usr/bin/sleep")
PYTHON = real(sys.executable)
NOBODY = 65534


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    need_bpf()
    a = start_agent(["--print", "--source", "bpf"], tmp_path_factory.mktemp("sensor"), "bpf")
    if a.source != "bpf":
        a.kill()
        pytest.fail(f"--source bpf started another source: {a.ready_line!r}", pytrace=False)
    yield a
    a.kill()  # test_zz_final_metric stops it cleanly; this is for a run cut short


def of_pid(pid, act):
    return lambda ev: get(ev, "process.pid") == pid and action(ev) == act


def check_timestamp(ev):
    ts = get(ev, "@timestamp")
    assert isinstance(ts, str) and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", ts), f"@timestamp {ts!r} is not RFC 3339 ns"
    when = datetime.datetime.strptime(ts[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc)
    skew = abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds())
    assert skew < 120, f"@timestamp {ts} is {skew:.0f}s away from now"


def complete_or_marked(ev, field, want):
    """
    A string field is either complete and not listed in event.truncated, or cut (a prefix or
    a suffix of @want) and listed. An absent field is not checked.
    """
    got = get(ev, field)
    if got is None:
        return
    marked = field in truncated(ev)
    if got == want:
        assert not marked, f"{field} is complete ({len(want)} bytes) but listed in " \
                           f"event.truncated {truncated(ev)!r}"
        return
    assert marked, (f"{field} has {len(got)} of {len(want)} bytes but is not listed in "
                    f"event.truncated {truncated(ev)!r}: {got[:50]!r}...{got[-50:]!r}")
    assert want.startswith(got) or want.endswith(got), (
        f"cut {field} is neither a prefix nor a suffix of the real value: "
        f"{got[:50]!r}...{got[-50:]!r}")


# --- process ---

def test_exec_marker_command(agent, tmp_path):
    marker = new_marker()
    cwd = real(tmp_path)
    script = f"/usr/bin/printf %s {marker} >/dev/null; true"
    sh = subprocess.Popen(["/bin/sh", "-c", script], cwd=cwd)
    assert sh.wait() == 0

    ev = agent.wait_one(lambda e: action(e) == "exec" and marker in (get(e, "process.args") or []),
                        f"exec of printf with {marker}",
                        near=lambda e: action(e) == "exec" and get(e, "process.parent.pid") == sh.pid)
    assert get(ev, "event.kind") == "event"
    assert get(ev, "event.category") == "process"
    assert get(ev, "process.args") == ["/usr/bin/printf", "%s", marker]
    assert get(ev, "process.command_line") == f"/usr/bin/printf %s {marker}"
    assert get(ev, "process.executable") == PRINTF
    assert get(ev, "process.name") == os.path.basename(PRINTF)
    assert get(ev, "process.working_directory") == cwd
    assert get(ev, "process.parent.pid") == sh.pid
    assert get(ev, "process.parent.executable") == SH
    assert get(ev, "process.parent.command_line") == f"/bin/sh -c {script}"
    assert get(ev, "user.id") == "0"
    assert get(ev, "user.effective.id") == "0"
    if get(ev, "process.args_count") is not None:
        assert get(ev, "process.args_count") == 3
    assert not truncated(ev), f"a short command was marked truncated: {truncated(ev)}"
    assert get(ev, "process.entity_id")
    check_timestamp(ev)

    # The shell's own exec: its parent (this test process) was known from the /proc scan
    # and its entity id is the one printf names as its parent's.
    sh_ev = agent.wait_one(of_pid(sh.pid, "exec"), f"exec of the shell (pid {sh.pid})")
    assert get(sh_ev, "process.args") == ["/bin/sh", "-c", script]
    assert get(sh_ev, "process.executable") == SH
    assert get(sh_ev, "process.parent.pid") == os.getpid()
    assert get(sh_ev, "process.parent.executable") == PYTHON
    assert get(sh_ev, "process.parent.command_line") == own_command_line()
    assert get(ev, "process.parent.entity_id") == get(sh_ev, "process.entity_id")
    assert get(ev, "process.entity_id") != get(sh_ev, "process.entity_id")
    assert get(sh_ev, "event.sequence") < get(ev, "event.sequence")


def test_exec_as_another_user(agent):
    marker = new_marker()
    p = subprocess.Popen(["/usr/bin/printf", "%s", marker], cwd="/", user=NOBODY, group=NOBODY,
                         extra_groups=[], stdout=subprocess.DEVNULL)
    assert p.wait() == 0
    ev = agent.wait_one(lambda e: action(e) == "exec" and marker in (get(e, "process.args") or []),
                        f"exec of printf as uid {NOBODY}")
    assert get(ev, "process.pid") == p.pid
    assert get(ev, "user.id") == str(NOBODY)
    assert get(ev, "user.effective.id") == str(NOBODY)
    if get(ev, "group.id") is not None:
        assert get(ev, "group.id") == str(NOBODY)
    assert get(ev, "process.working_directory") == "/"
    assert get(ev, "process.parent.pid") == os.getpid()


def test_fork_and_exit_code(agent):
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3

    fork = agent.wait_one(of_pid(pid, "fork"), f"fork of pid {pid}",
                          near=lambda e: action(e) == "fork" and
                          get(e, "process.parent.pid") == os.getpid())
    assert get(fork, "event.category") == "process"
    assert get(fork, "process.parent.pid") == os.getpid()
    assert get(fork, "process.executable") == PYTHON  # a fork keeps its parent's image
    exit_ev = agent.wait_one(of_pid(pid, "exit"), f"exit of pid {pid}")
    assert get(exit_ev, "process.exit_code") == 3
    assert get(exit_ev, "process.entity_id") == get(fork, "process.entity_id")
    assert get(fork, "event.sequence") < get(exit_ev, "event.sequence")


@pytest.mark.parametrize("script,code", [("exit 7", 7), ("kill -KILL $$", 128 + 9)],
                         ids=["exit-7", "killed"])
def test_exit_code_of_shell(agent, script, code):
    sh = subprocess.Popen(["/bin/sh", "-c", script])
    sh.wait()
    ev = agent.wait_one(of_pid(sh.pid, "exit"), f"exit of `sh -c '{script}'` (pid {sh.pid})")
    assert get(ev, "process.exit_code") == code
    assert get(ev, "process.executable") == SH


def test_threads_are_not_processes(agent):
    tids = []
    t = threading.Thread(target=lambda: tids.append(threading.get_native_id()))
    t.start()
    t.join()
    # A later fork+exit from this process orders after anything the thread produced.
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    agent.wait_one(of_pid(pid, "exit"), f"exit of the sentinel child {pid}")
    tid = tids[0]
    wrong = [e for e in agent.events()
             if action(e) in ("fork", "exit") and get(e, "process.pid") in (tid, os.getpid())]
    assert not wrong, "a thread was reported as a process:\n" + "\n".join(map(brief, wrong))


def _args_case(name, marker):
    if name == "100KiB":
        return ["/usr/bin/true", marker] + [f"{i:05d}" + "A" * 95 for i in range(1024)]
    if name == "300KiB":
        return ["/usr/bin/true", marker] + [f"{i:05d}" + "B" * 95 for i in range(3072)]
    return ["/usr/bin/true", marker, "C" * (128 * 1024 - 1)]  # one argument at MAX_ARG_STRLEN


@pytest.mark.parametrize("case", ["100KiB", "300KiB", "one-128KiB-arg"])
def test_argv_longer_than_cap(agent, case):
    """Arguments past the agent's cap: the event comes, and what is cut is marked."""
    marker = new_marker()
    args = _args_case(case, marker)
    p = subprocess.Popen(args)
    assert p.wait() == 0
    ev = agent.wait_one(lambda e: action(e) == "exec" and get(e, "process.pid") == p.pid,
                        f"exec with {sum(len(a) + 1 for a in args)} bytes of arguments")
    got = get(ev, "process.args")
    assert got[:2] == args[:2], f"first arguments {got[:2]!r}"
    if got == args:
        assert "process.args" not in truncated(ev), "complete arguments marked truncated"
    else:
        assert "process.args" in truncated(ev), (
            f"{len(got)} of {len(args)} arguments reported and event.truncated is "
            f"{truncated(ev)!r}")
        assert len(got) <= len(args)
        assert got[:-1] == args[:len(got) - 1], "reported arguments are not the first ones"
        assert args[len(got) - 1].startswith(got[-1]), "last reported argument is not a prefix"
    if get(ev, "process.args_count") is not None:
        assert get(ev, "process.args_count") == len(args)
    complete_or_marked(ev, "process.command_line", " ".join(args))


# --- file ---

def test_file_create_write_rename_chmod_delete(agent, tmp_path):
    d = real(tmp_path)
    marker = new_marker()
    a = os.path.join(d, f"{marker}-a.txt")
    b = os.path.join(d, f"{marker}-b.txt")
    me = os.getpid()

    fd = os.open(a, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.write(fd, b"first\n")
    os.close(fd)
    for _ in range(3):  # read-only opens are not writes
        os.close(os.open(a, os.O_RDONLY))
    fd = os.open(a, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"second\n")
    os.close(fd)
    os.rename(a, b)
    os.chmod(b, 0o640)
    fd = os.open(b, os.O_RDONLY)
    os.fchmod(fd, 0o600)
    os.close(fd)
    os.unlink(b)

    def mine(act, path):
        return lambda e: (action(e) == act and get(e, "process.pid") == me
                          and get(e, "file.path") == path)

    near = lambda e: get(e, "event.category") == "file" and get(e, "process.pid") == me
    delete = agent.wait_one(mine("delete", b), "delete of b", near=near)
    create = agent.wait_one(mine("create", a), "create of a", near=near)
    writes = agent.wait_for(mine("write", a), "write-open of a", near=near)
    rename = agent.wait_one(mine("rename", a), "rename a -> b", near=near)
    chmods = agent.wait_for(mine("chmod", b), "chmod and fchmod of b", count=2, near=near)

    for ev in (create, writes[-1], rename, delete, *chmods):
        assert get(ev, "event.category") == "file", brief(ev)
        assert get(ev, "process.executable") == PYTHON, brief(ev)
    assert get(create, "file.name") == os.path.basename(a)
    if get(create, "file.directory") is not None:
        assert get(create, "file.directory") == d
    assert len(writes) <= 2, "read-only opens were reported as writes:\n" + "\n".join(
        map(brief, writes))
    assert get(rename, "file.target_path") == b
    assert [get(e, "file.mode") for e in chmods] == ["0640", "0600"]
    seq = [get(e, "event.sequence") for e in (create, writes[-1], rename, *chmods, delete)]
    assert seq == sorted(seq), f"file events out of order: {seq}"


def test_file_paths_relative_to_a_directory_fd(agent, tmp_path):
    """*at() calls with a directory fd still give absolute paths."""
    d = real(tmp_path)
    os.mkdir(os.path.join(d, "sub"))
    marker = new_marker()
    me = os.getpid()
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open(f"{marker}.c", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd)
        os.close(fd)
        os.rename(f"{marker}.c", f"sub/{marker}.e", src_dir_fd=dfd, dst_dir_fd=dfd)
        os.chmod(f"sub/{marker}.e", 0o755, dir_fd=dfd)
        os.unlink(f"sub/{marker}.e", dir_fd=dfd)
    finally:
        os.close(dfd)
    c = os.path.join(d, f"{marker}.c")
    e = os.path.join(d, "sub", f"{marker}.e")
    near = lambda ev: get(ev, "event.category") == "file" and get(ev, "process.pid") == me

    def mine(act, path):
        return lambda ev: (action(ev) == act and get(ev, "process.pid") == me
                           and get(ev, "file.path") == path)

    agent.wait_one(mine("create", c), f"create of {c}", near=near)
    ren = agent.wait_one(mine("rename", c), f"rename of {c}", near=near)
    assert get(ren, "file.target_path") == e
    ch = agent.wait_one(mine("chmod", e), f"chmod of {e}", near=near)
    assert get(ch, "file.mode") == "0755"
    agent.wait_one(mine("delete", e), f"delete of {e}", near=near)


def _deep_tree(base, total, fname_prefix):
    """
    Creates directories under @base so that base/d1/.../dn/NAME is exactly @total bytes,
    using directory fds (no single call sees the long path). Returns (dir fd, full path, name).
    """
    comps = []
    left = total - len(base) - 1  # bytes after "base/"
    while left > 255:
        n = min(250, left - 1 - 40)  # keep at least 40 bytes for the file name
        comps.append("d" * n)
        left -= n + 1
    name = (fname_prefix + "-" + "f" * 255)[:left]
    assert len(name) == left and name.startswith(fname_prefix)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for comp in comps:
        os.mkdir(comp, dir_fd=fd)
        nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    full = "/".join([base, *comps, name])
    assert len(full) == total
    return fd, full, name


@pytest.mark.parametrize("total", [4095, 4600], ids=["at-PATH_MAX", "past-PATH_MAX"])
def test_path_at_path_max(agent, tmp_path, total):
    base = real(tmp_path)
    marker = new_marker()
    fd, full, name = _deep_tree(base, total, marker)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        ev = agent.wait_one(of_pid(pid, "create"), f"create of a {total}-byte path by pid {pid}",
                            near=lambda e: get(e, "process.pid") == pid)
    finally:
        os.close(fd)
        shutil.rmtree(os.path.join(base, "d" * 250), ignore_errors=True)
    assert get(ev, "file.path"), "file.path missing"
    problems = []
    for field, want in (("file.path", full), ("file.name", name),
                        ("file.directory", os.path.dirname(full))):
        try:
            complete_or_marked(ev, field, want)
        except AssertionError as e:
            problems.append(str(e).splitlines()[0])
    assert not problems, "\n".join(problems)


def test_pseudo_filesystems_filtered_tmpfs_not(agent, tmp_path):
    """/proc writes are not file activity; a file dropped in /dev/shm (tmpfs) is."""
    me = os.getpid()
    with open("/proc/self/comm", "rb") as f:
        comm = f.read()
    with open("/proc/self/comm", "wb") as f:
        f.write(comm)
    shm = f"/dev/shm/{new_marker()}"
    need(os.path.isdir("/dev/shm"), "no /dev/shm")
    with open(shm, "wb") as f:
        f.write(b"x")
    os.unlink(shm)
    agent.wait_one(lambda e: action(e) == "create" and get(e, "file.path") == shm,
                   f"create of {shm}", near=lambda e: get(e, "process.pid") == me)
    noise = [e for e in agent.events()
             if get(e, "process.pid") == me and (get(e, "file.path") or "").startswith("/proc/")]
    assert not noise, "writes to /proc reported as file events:\n" + "\n".join(map(brief, noise))


def test_agent_does_not_report_itself(agent):
    """The agent's own writes (its NDJSON output) cost nothing and feed no events back."""
    agent.wait_for(lambda e: True, "any event")
    own = [e for e in agent.events() if get(e, "process.pid") == agent.pid]
    assert not own, "events from the agent itself:\n" + "\n".join(map(brief, own[:10]))


def test_entity_id_survives_pid_reuse(agent):
    """Two processes that get the same pid get different entity ids."""
    def fork_exit():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return pid

    for _ in range(20):
        first = fork_exit()  # the second comes at once, often within the same clock tick
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(first - 1))
        second = fork_exit()
        if second == first:
            break
    else:
        pytest.skip("could not get the same pid twice (a busy host took it first)")
    forks = agent.wait_for(of_pid(first, "fork"), f"both forks that got pid {first}", count=2)
    exits = agent.wait_for(of_pid(first, "exit"), f"both exits of pid {first}", count=2)
    ids = [get(e, "process.entity_id") for e in forks[-2:]]
    assert ids[0] and ids[0] != ids[1], f"pid {first} reused with the same entity id {ids[0]}"
    assert [get(e, "process.entity_id") for e in exits[-2:]] == ids


# --- network ---

def _free_port(family, kind, host):
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _loopback(family):
    if family == socket.AF_INET:
        return "127.0.0.1", "ipv4"
    need(socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"), "no IPv6 on this host")
    return "::1", "ipv6"


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_tcp_connect_and_accept(agent, family):
    host, ntype = _loopback(family)
    me = os.getpid()
    port = _free_port(family, socket.SOCK_STREAM, host)
    with socket.socket(family, socket.SOCK_STREAM) as srv:
        srv.bind((host, port))
        srv.listen(1)
        with socket.socket(family, socket.SOCK_STREAM) as cli:
            cli.connect((host, port))
            cport = cli.getsockname()[1]
            conn, _ = srv.accept()
            conn.close()

    def net(act):
        return lambda e: (action(e) == act and get(e, "process.pid") == me
                          and get(e, "network.transport") == "tcp" and port in
                          (get(e, "destination.port"), get(e, "source.port")))

    near = lambda e: get(e, "event.category") == "network" and get(e, "process.pid") == me
    conn_ev = agent.wait_one(net("connect"), f"tcp connect to [{host}]:{port}", near=near)
    acc = agent.wait_one(net("accept"), f"tcp accept on [{host}]:{port}", near=near)
    bind = agent.wait_one(net("bind"), f"tcp bind of [{host}]:{port}", near=near)
    for ev in (conn_ev, acc, bind):
        assert get(ev, "event.category") == "network", brief(ev)
        assert get(ev, "network.type") == ntype, brief(ev)

    assert get(conn_ev, "network.direction") == "egress"
    assert same_ip(get(conn_ev, "destination.ip"), host), brief(conn_ev)
    assert get(conn_ev, "destination.port") == port
    assert same_ip(get(conn_ev, "source.ip"), host), brief(conn_ev)
    assert get(conn_ev, "source.port") == cport, brief(conn_ev)

    assert get(acc, "network.direction") == "ingress"
    assert same_ip(get(acc, "source.ip"), host), brief(acc)  # the remote end
    assert get(acc, "source.port") == cport, brief(acc)
    assert same_ip(get(acc, "destination.ip"), host), brief(acc)
    assert get(acc, "destination.port") == port, brief(acc)

    # bind is ingress: the local (bound) address is the destination side
    assert get(bind, "network.direction") == "ingress", brief(bind)
    assert get(bind, "destination.port") == port, brief(bind)
    assert same_ip(get(bind, "destination.ip"), host), brief(bind)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_udp_send(agent, family):
    host, ntype = _loopback(family)
    me = os.getpid()
    port = _free_port(family, socket.SOCK_DGRAM, host)
    with socket.socket(family, socket.SOCK_DGRAM) as rx, \
            socket.socket(family, socket.SOCK_DGRAM) as tx:
        rx.bind((host, port))
        tx.sendto(b"vigil", (host, port))
        txport = tx.getsockname()[1]
        assert rx.recv(16) == b"vigil"

    near = lambda e: get(e, "event.category") == "network" and get(e, "process.pid") == me
    ev = agent.wait_one(lambda e: action(e) == "connect" and get(e, "process.pid") == me
                        and get(e, "network.transport") == "udp"
                        and get(e, "destination.port") == port,
                        f"udp send to [{host}]:{port}", near=near)
    assert get(ev, "event.category") == "network"
    assert get(ev, "network.direction") == "egress"
    assert get(ev, "network.type") == ntype
    assert same_ip(get(ev, "destination.ip"), host), brief(ev)
    if get(ev, "source.port") is not None:
        assert get(ev, "source.port") == txport, brief(ev)
    bind = agent.wait_one(lambda e: action(e) == "bind" and get(e, "process.pid") == me
                          and get(e, "network.transport") == "udp"
                          and get(e, "destination.port") == port,
                          f"udp bind of [{host}]:{port}", near=near)
    assert get(bind, "network.direction") == "ingress"


# --- privilege and kernel ---

@pytest.mark.parametrize("variant", ["setuid", "setreuid", "setresuid"])
def test_setuid_family(agent, variant):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            if variant == "setuid":
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            elif variant == "setreuid":
                os.setregid(NOBODY, NOBODY)
                os.setreuid(NOBODY, NOBODY)
            else:
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    near = lambda e: get(e, "process.pid") == pid
    uid = agent.wait_one(of_pid(pid, "setuid"), f"{variant} in pid {pid}", near=near)
    assert get(uid, "event.category") == "host"
    assert get(uid, "user.changes.id") == str(NOBODY)
    assert get(uid, "process.executable") == PYTHON
    gid = agent.wait_one(of_pid(pid, "setgid"), f"set*gid in pid {pid}", near=near)
    assert get(gid, "event.category") == "host"
    assert get(gid, "group.changes.id") == str(NOBODY)


def test_ptrace_attach(agent):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    target = subprocess.Popen(["/usr/bin/sleep", "30"])
    try:
        time.sleep(0.1)
        assert libc.ptrace(16, target.pid, None, None) == 0, os.strerror(ctypes.get_errno())
        os.waitpid(target.pid, 0)  # the attach stop
        libc.ptrace(17, target.pid, None, None)  # PTRACE_DETACH
    finally:
        target.kill()
        target.wait()
    ev = agent.wait_one(lambda e: action(e) == "ptrace" and get(e, "process.pid") == os.getpid(),
                        f"ptrace attach to {target.pid}")
    assert get(ev, "process.target.pid") == target.pid
    if get(ev, "process.target.executable") is not None:
        assert get(ev, "process.target.executable") == SLEEP


def test_memfd_create(agent):
    name = new_marker("memfd")
    fd = os.memfd_create(name)
    os.write(fd, b"x")
    os.close(fd)
    ev = agent.wait_one(lambda e: action(e) == "memfd-create" and get(e, "file.name") == name,
                        f"memfd_create({name!r})",
                        near=lambda e: action(e) == "memfd-create")
    assert get(ev, "process.pid") == os.getpid()
    assert get(ev, "event.category") == "file"


def test_exec_from_memfd(agent):
    """A fileless exec names the memfd in process.executable."""
    name = new_marker("memfd")
    marker = new_marker()
    fd = os.memfd_create(name, 0)
    try:
        with open(TRUE, "rb") as f:
            os.write(fd, f.read())
        p = subprocess.Popen([f"/proc/self/fd/{fd}", marker], pass_fds=[fd])
        assert p.wait() == 0
    finally:
        os.close(fd)
    ev = agent.wait_one(lambda e: action(e) == "exec" and marker in (get(e, "process.args") or []),
                        "exec from a memfd")
    assert f"memfd:{name}" in (get(ev, "process.executable") or ""), brief(ev)


# --- the output as a whole; these run last ---

def test_output_is_ndjson_matching_the_registry(agent, schema):
    agent.events()
    bad_json = [i + 1 for i, r in enumerate(agent.records) if not isinstance(r, dict)]
    assert not bad_json, f"stdout lines that are not JSON objects: {bad_json[:10]}"
    problems = {}
    for ev in agent.events():
        for p in schema_violations(ev, schema):
            problems.setdefault(p, ev)
    assert not problems, "events that do not match the registry:\n" + "\n".join(
        f"{p}  (in {brief(ev)})" for p, ev in list(problems.items())[:20])


def test_sequence_increases_by_one(agent):
    seqs = [get(e, "event.sequence") for e in agent.events()]
    assert seqs, "no events"
    steps = [(a, b) for a, b in zip(seqs, seqs[1:]) if b != a + 1]
    assert not steps, f"event.sequence jumps: {steps[:10]}"


def test_zz_final_metric_on_sigterm(agent):
    rc = agent.stop(signal.SIGTERM)
    assert rc == 0, f"exit status {rc} after SIGTERM; stderr:\n{agent.stderr()[-2000:]}"
    m = agent.final_metric()
    assert m is not None, f"last stdout line is not a metric line: {agent.lines[-1][:200]!r}"
    v = m.get("vigil", {})
    assert v.get("final") is True
    assert v.get("source") == "bpf"
    assert isinstance(v.get("missing", []), list)
    counts = {}
    for ev in agent.events():
        key = action(ev).replace("-", "_")
        counts[key] = counts.get(key, 0) + 1
    reported = {k.replace("-", "_"): n for k, n in v.get("events", {}).items()}
    for key, n in counts.items():
        assert reported.get(key) == n, f"metric events.{key}={reported.get(key)}, printed {n}"
    drops = numeric_leaves(v.get("drops"))
    assert drops, f"no drop counters in the final metric: {v.get('drops')!r}"
    lost = [(k, n) for k, n in drops if n]
    assert not lost, f"events dropped under light load: {lost}"
