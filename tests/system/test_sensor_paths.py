"""
File paths as the kernel resolves them, on both ways the BPF programs read kernel structures:
typed plain loads (kernels with bpf_rdonly_cast) and read helpers (older kernels, forced here
through the test-hooks agent). Names of every length around the word-at-a-time copy of short
names, directories renamed, removed and recreated under a file, bind and moved mounts, and
many directories in turn: the reported path is always where the file is.
"""
import os
import shutil
import string
import subprocess

import pytest

from conftest import BUILD, action, brief, get, need, need_bpf, new_marker, real, start_agent

HOOKS_AGENT = BUILD / "testhooks" / "vigil-agent"


def kernel_has_rdonly_cast():
    try:
        with open("/proc/kallsyms") as f:
            return any(line.rstrip().endswith(" bpf_rdonly_cast") for line in f)
    except OSError:
        return False


@pytest.fixture(scope="module", params=["typed", "helper"])
def agent(request, tmp_path_factory):
    need_bpf()
    env = None
    binary = None
    if request.param == "helper":
        if not os.access(HOOKS_AGENT, os.X_OK):
            pytest.fail(f"{HOOKS_AGENT} is missing: run make testhooks", pytrace=False)
        binary = HOOKS_AGENT
        env = dict(os.environ, VIGIL_TEST_BPF_HELPER_READS="1")
    else:
        need(kernel_has_rdonly_cast(), "the kernel has no bpf_rdonly_cast (Linux 6.2)")
    a = start_agent(["--print", "--source", "bpf"], tmp_path_factory.mktemp("paths"),
                    request.param, env=env, binary=binary)
    if a.source != "bpf":
        a.kill()
        pytest.fail(f"--source bpf started another source: {a.ready_line!r}", pytrace=False)
    a.mode = request.param
    yield a
    a.kill()


def file_event(agent, act, path, pid=None):
    """Waits for the @act event of @path (by @pid, this process by default) and returns it."""
    pid = pid or os.getpid()
    return agent.wait_one(
        lambda e: action(e) == act and get(e, "process.pid") == pid and get(e, "file.path") == path,
        f"{act} of {path} by pid {pid} ({agent.mode} reads)",
        near=lambda e: get(e, "event.category") == "file" and get(e, "process.pid") == pid)


def create(path, dir_fd=None):
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dir_fd))


def name_of(length, seed):
    """A name of @length bytes whose bytes differ from those of its neighbours (by @seed)."""
    letters = string.ascii_letters + string.digits
    return "".join(letters[(seed * 7 + i) % len(letters)] for i in range(length))


# around the 8-byte words of the inline copy, its 32-byte limit, the 40-byte inline storage
LENGTHS = [1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 39, 40, 41, 100, 255]


def test_names_of_every_length(agent, tmp_path):
    base = real(tmp_path)
    want = []
    for i, n in enumerate(LENGTHS):
        d = os.path.join(base, name_of(n, i))
        os.mkdir(d)
        f = os.path.join(d, name_of(n, i + 1))
        create(f)
        want.append(f)
    for f in want:
        file_event(agent, "create", f)


def test_nested_names_of_every_length(agent, tmp_path):
    """Components of different lengths next to each other, then renamed and removed by fd."""
    d = real(tmp_path)
    for i, n in enumerate([1, 8, 9, 16, 17, 24, 25, 32, 33, 39, 40, 7, 31, 3]):
        d = os.path.join(d, name_of(n, i))
        os.mkdir(d)
    f = os.path.join(d, name_of(31, 99))
    g = os.path.join(d, name_of(9, 98))
    create(f)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rename(os.path.basename(f), os.path.basename(g), src_dir_fd=dfd, dst_dir_fd=dfd)
        os.unlink(os.path.basename(g), dir_fd=dfd)
    finally:
        os.close(dfd)
    file_event(agent, "create", f)
    ren = file_event(agent, "rename", f)
    assert get(ren, "file.target_path") == g, brief(ren)
    file_event(agent, "delete", g)


def in_child(fn):
    """Runs @fn in a forked child (for chdir); returns the child's pid once it has exited 0."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
    return pid


def test_directory_renamed_under_a_file(agent, tmp_path):
    """
    A directory renamed (and an ancestor renamed) while a process sits in it and holds an fd
    to it: later files are reported under the new names, never the old ones.
    """
    base = real(tmp_path)
    a = os.path.join(base, "a-" + new_marker())
    os.makedirs(os.path.join(a, "inner"))
    b = os.path.join(base, "b-" + new_marker())
    c = os.path.join(base, "c-" + new_marker())

    def child():
        os.chdir(os.path.join(a, "inner"))
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        create("f1")
        os.rename(a, b)  # the parent of the working directory
        create("f2")
        create("f3", dir_fd=dfd)
        os.rename(os.path.join(b, "inner"), os.path.join(c))  # the directory itself, moved up
        create("f4")
        create("f5", dir_fd=dfd)
        os.unlink("f4")
        os.rename("f5", "f6")

    pid = in_child(child)
    file_event(agent, "create", os.path.join(a, "inner", "f1"), pid)
    file_event(agent, "create", os.path.join(b, "inner", "f2"), pid)
    file_event(agent, "create", os.path.join(b, "inner", "f3"), pid)
    file_event(agent, "create", os.path.join(c, "f4"), pid)
    file_event(agent, "create", os.path.join(c, "f5"), pid)
    file_event(agent, "delete", os.path.join(c, "f4"), pid)
    ren = file_event(agent, "rename", os.path.join(c, "f5"), pid)
    assert get(ren, "file.target_path") == os.path.join(c, "f6"), brief(ren)


def test_directory_removed_and_recreated(agent, tmp_path):
    """The same name given to another directory, and another name given to the old one."""
    base = real(tmp_path)
    x = os.path.join(base, "x")
    z = os.path.join(base, "z")
    me = os.getpid()
    for round_ in range(3):
        os.mkdir(x)
        f = os.path.join(x, f"f{round_}")
        create(f)
        file_event(agent, "create", f, me)
        os.unlink(f)
        os.rmdir(x)
    os.mkdir(x)
    create(os.path.join(x, "g"))
    os.rename(x, z)
    os.mkdir(x)
    create(os.path.join(x, "h"))
    create(os.path.join(z, "i"))
    file_event(agent, "create", os.path.join(x, "g"), me)
    file_event(agent, "create", os.path.join(x, "h"), me)
    file_event(agent, "create", os.path.join(z, "i"), me)


def mount(*args):
    res = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"mount {' '.join(args)}: {res.stderr.strip()}"


def test_bind_and_moved_mounts(agent, tmp_path):
    """Paths cross mounts as the process sees them: through a bind mount, after a move."""
    need(shutil.which("mount") and shutil.which("umount"), "no mount(8)")
    # everything under a private mount of our own: a move needs a parent that is not shared,
    # and the host's mounts are left as they are
    outer = os.path.join(real(tmp_path), "outer")
    os.mkdir(outer)
    mount("-t", "tmpfs", "-o", "size=1m", "vigil-test", outer)
    try:
        mount("--make-private", outer)
        m1, m2, m3 = (os.path.join(outer, n) for n in ("m1", "m2", "m3"))
        for d in (m1, m2, m3):
            os.mkdir(d)
        mount("-t", "tmpfs", "-o", "size=1m", "vigil-test", m1)
        os.mkdir(os.path.join(m1, "sub"))
        create(os.path.join(m1, "sub", "f"))
        mount("--bind", m1, m2)
        create(os.path.join(m2, "sub", "g"))
        dfd = os.open(os.path.join(m2, "sub"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            mount("--move", m2, m3)
            create("h", dir_fd=dfd)
        finally:
            os.close(dfd)
        me = os.getpid()
        file_event(agent, "create", os.path.join(m1, "sub", "f"), me)
        file_event(agent, "create", os.path.join(m2, "sub", "g"), me)
        file_event(agent, "create", os.path.join(m3, "sub", "h"), me)
    finally:
        subprocess.run(["umount", "-l", outer], capture_output=True, timeout=30)


def test_many_directories_in_turn(agent, tmp_path):
    """Hundreds of directories, each renamed between two writes in it."""
    base = real(tmp_path)
    n = 300
    names = [os.path.join(base, f"d{i:03d}-{name_of(5 + i % 30, i)}") for i in range(n)]
    for d in names:
        os.mkdir(d)
        create(os.path.join(d, "before"))
    moved = [d + "-moved" for d in names]
    for d, m in zip(names, moved):
        os.rename(d, m)
        create(os.path.join(m, "after"))
    me = os.getpid()
    for d, m in zip(names, moved):
        file_event(agent, "create", os.path.join(d, "before"), me)
        file_event(agent, "create", os.path.join(m, "after"), me)
    stale = [e for e in agent.events()
             if get(e, "process.pid") == me and any(
                 get(e, "file.path") == os.path.join(d, "after") for d in names[:50])]
    assert not stale, "files reported under a directory's old name:\n" + "\n".join(
        map(brief, stale))


def test_zz_reads_as_configured(agent):
    """The final metric says which way the programs read kernel structures."""
    rc = agent.stop()
    assert rc == 0, f"exit status {rc}; stderr:\n{agent.stderr()[-2000:]}"
    m = agent.final_metric()
    assert m is not None, "no final metric line"
    typed = get(m, "vigil.bpf.typed_reads")
    assert typed is (agent.mode == "typed"), f"vigil.bpf.typed_reads is {typed!r} with " \
                                             f"{agent.mode} reads"
    lost = [(k, v) for k, v in (get(m, "vigil.drops.kernel.ringbuf_full") or {}).items() if v]
    assert not lost, f"events dropped: {lost}"
