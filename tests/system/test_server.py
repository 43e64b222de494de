"""
vigil-server through its real HTTP APIs: bootstrap tokens, enrollment, heartbeats, alert
upload, bundle download, the admin API with roles, releases, rollouts with policies, the
audit log, restarts, and hostile input (no or wrong credentials, oversized, malformed).
"""
import hashlib
import http.client
import json
import os
import pathlib
import random
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BUILD, VIGIL

SERVER = BUILD / "vigil-server"

RULES = {
    "base.yml": """\
rules:
  - id: server-test-1
    name: Server test rule
    level: low
    condition:
      all:
        - event.action: exec
        - process.executable: {endswith: /server-test-marker}
    tests:
      match:
        - {event.action: exec, process.executable: /tmp/server-test-marker}
      nomatch:
        - {event.action: exec, process.executable: /bin/true}
""",
}


def run(*args, timeout=120):
    return subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def need_server():
    if not os.access(SERVER, os.X_OK):
        pytest.fail(f"{SERVER} is missing: run make first", pytrace=False)


class Server:
    """One vigil-server on 127.0.0.1 and an ephemeral port, with its data directory."""

    def __init__(self, data, root=None, extra=()):
        need_server()
        self.data = pathlib.Path(data)
        self.root = root
        self.extra = list(extra)
        self.admin = None
        self.enroll = None
        self.proc = None
        self.port = None
        self.stderr_path = self.data.parent / f"{self.data.name}.stderr"
        self.stdout_path = self.data.parent / f"{self.data.name}.stdout"

    def start(self):
        args = [str(SERVER), "--data", str(self.data), "--listen", "127.0.0.1:0",
                "--tick", "0.1", "--quiet", *self.extra]
        if self.root:
            args += ["--root", str(self.root)]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(r"listening on port (\d+)", self.stderr())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                pytest.fail(f"vigil-server exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.02)
        else:
            self.proc.kill()
            pytest.fail(f"vigil-server did not start: {self.stderr()}")
        out = self.stdout_path.read_text()
        m = re.search(r"admin token: (\S+)", out)
        if m:
            self.admin = m.group(1)
        m = re.search(r"enrollment token: (\S+)", out)
        if m:
            self.enroll = m.group(1)
        return self

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail("vigil-server did not stop within 20s of SIGTERM")
        return self.proc.returncode

    def alive(self):
        return self.proc.poll() is None

    def request(self, method, path, body=None, token=None, headers=None, raw=False):
        """Returns (status, parsed JSON or raw bytes, response headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        if raw or not data:
            return resp.status, data, hdrs
        try:
            return resp.status, json.loads(data), hdrs
        except ValueError:
            return resp.status, data, hdrs

    # --- helpers over the APIs ---
    def enroll_agent(self, token=None, hostname="host"):
        st, body, _ = self.request("POST", "/api/v1/enroll",
                                   {"token": token or self.enroll, "hostname": hostname,
                                    "sensor_version": "0.1.0"})
        assert st == 201, body
        return body["agent_id"], body["credential"]

    def heartbeat(self, agent, cred, **report):
        st, body, _ = self.request("POST", f"/api/v1/agents/{agent}/heartbeat", report or {},
                                   token=cred)
        assert st == 200, body
        return body

    def admin_call(self, method, path, body=None, token=None, expect=200):
        st, data, _ = self.request(method, "/api/v1/admin/" + path, body,
                                   token=token or self.admin)
        assert st == expect, f"{method} {path}: {st} {data}"
        return data


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("serverkeys")
    for k in ("root", "s1"):
        res = run(VIGIL, "keygen", "-o", d / k)
        assert res.returncode == 0, res.stderr
    res = run(VIGIL, "root", "create", "--root-key", d / "root.key", "--signer", d / "s1.pub",
              "-o", d / "root.json")
    assert res.returncode == 0, res.stderr
    rules = d / "rules"
    rules.mkdir()
    for name, text in RULES.items():
        (rules / name).write_text(text)
    return d


def make_bundle(keys, version, out_dir):
    out = pathlib.Path(out_dir) / f"content-{version}.bundle"
    res = run(VIGIL, "content", "build", keys / "rules", "--version", version, "--key",
              keys / "s1.key", "-o", out)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture
def fleet(tmp_path, keys):
    s = Server(tmp_path / "data", root=keys / "root.json").start()
    yield s
    s.stop()


def upload_release(srv, path, token=None, expect=201):
    st, body, _ = srv.request("POST", "/api/v1/admin/releases", path.read_bytes(),
                              token=token or srv.admin,
                              headers={"Content-Type": "application/octet-stream"})
    assert st == expect, body
    return body


def blake2b_hex(data):
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def one_line_error(body):
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    assert body["error"] and "\n" not in body["error"], body
    return body["error"]


# --- usage and bootstrap ---

def test_usage_errors_are_one_line():
    need_server()
    res = run(SERVER, "--help")
    assert res.returncode == 0 and "--data DIR" in res.stdout and "--listen" in res.stdout
    for args in ([], ["--data"], ["--data", "/tmp/x", "--threads", "0"], ["--bogus"]):
        res = run(SERVER, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_config_file(tmp_path):
    need_server()
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"threads": 3, "heartbeat_seconds": 7, "tick": 0.5}))
    for text in ('{"bogus": 1}', '{"threads": 0}', '[1]', '{"listen": 5}', "{"):
        bad.write_text(text)
        res = run(SERVER, "--data", tmp_path / "d", "--config", bad)
        assert res.returncode == 2, (text, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and "bad.json" in res.stderr
    s = Server(tmp_path / "data", extra=["--config", good]).start()
    try:
        assert "3 threads" in s.stderr()
        agent, cred = s.enroll_agent()
        assert s.heartbeat(agent, cred)["heartbeat_seconds"] == 7
    finally:
        assert s.stop() == 0


def test_a_start_that_cannot_listen_makes_no_tokens(tmp_path):
    """The one-time tokens are made only by a start that runs: a failed first start must not
    print them (to a log nobody kept) and leave a store whose tokens are lost."""
    need_server()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run(SERVER, "--data", tmp_path / "d", "--listen", f"127.0.0.1:{port}")
    assert res.returncode == 1 and "cannot listen" in res.stderr, res.stderr
    assert "token" not in res.stdout, res.stdout
    s = Server(tmp_path / "d").start()
    try:
        assert s.admin and s.enroll, "the first start that runs makes the tokens"
        s.admin_call("GET", "agents")
    finally:
        assert s.stop() == 0
    # plain HTTP is set up without TLS options the HTTP library would complain of
    p = subprocess.Popen([str(SERVER), "--data", str(tmp_path / "d"), "--listen",
                          "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0 and "listening on port" in err, err
    assert "HTTPS" not in err, err


def test_init_prints_tokens_once_and_stores_only_hashes(tmp_path):
    need_server()
    data = tmp_path / "d"
    res = run(SERVER, "--data", data, "--init")
    assert res.returncode == 0, res.stderr
    admin = re.search(r"admin token: (\S+)", res.stdout).group(1)
    enroll = re.search(r"enrollment token: (\S+)", res.stdout).group(1)
    again = run(SERVER, "--data", data, "--init")
    assert again.returncode == 1 and "admin token" not in again.stdout
    assert len(again.stderr.strip().splitlines()) == 1
    raw = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
    for tok in (admin, enroll):
        secret = tok.split(".")[1].encode()
        assert secret not in raw, "a token's secret is stored in the clear"
    # a start on an initialised store prints no token, and the printed ones work
    s = Server(data).start()
    try:
        assert s.admin is None and s.enroll is None
        s.admin = admin
        s.enroll = enroll
        s.enroll_agent()
        assert s.admin_call("GET", "agents")["agents"]
    finally:
        assert s.stop() == 0
    assert "stopped" in s.stderr()


# --- agent API ---

def test_enrollment(server):
    agent, cred = server.enroll_agent(hostname="web-1")
    assert re.fullmatch(r"[0-9a-f]{32}", agent)
    assert cred.startswith(agent + ".")
    st, body, _ = server.request("POST", "/api/v1/enroll",
                                 {"token": server.enroll.split(".")[0] + "." + "0" * 64})
    assert st == 401, body
    one_line_error(body)
    st, body, _ = server.request("POST", "/api/v1/enroll", {"hostname": "x"})
    assert st == 400 and "token" in one_line_error(body)
    shown = server.admin_call("GET", f"agents/{agent}")
    assert shown["hostname"] == "web-1" and shown["group"] == "default"
    # an enrollment token with one use, for its own group
    t = server.admin_call("POST", "enrollment-tokens", {"group": "lab", "uses": 1}, expect=201)
    a2, _ = server.enroll_agent(token=t["token"])
    assert server.admin_call("GET", f"agents/{a2}")["group"] == "lab"
    st, body, _ = server.request("POST", "/api/v1/enroll", {"token": t["token"]})
    assert st == 401 and "used up" in one_line_error(body)


def test_heartbeat_reports_are_stored(server):
    agent, cred = server.enroll_agent()
    ans = server.heartbeat(agent, cred, content_version=4, sensor_version="0.1.0",
                           uptime_seconds=77, restarts=1, crash_loop_reverts=2,
                           quarantined=[5, 6], liveness={"ok": 3, "failed": 1, "last": "ok"},
                           drops=9, alerts=11, cpu_percent=1.5, rss_bytes=12345678)
    assert ans["content"] is None and ans["heartbeat_seconds"] == 60
    a = server.admin_call("GET", f"agents/{agent}")
    assert a["content_version"] == 4 and a["uptime_seconds"] == 77
    assert a["restarts"] == 1 and a["crash_loop_reverts"] == 2 and a["quarantined"] == [5, 6]
    assert a["liveness"] == {"ok": 3, "failed": 1, "last": "ok"}
    assert a["drops"] == 9 and a["alerts"] == 11 and a["rss_bytes"] == 12345678
    assert a["heartbeats"] == 1 and a["last_seen"]


def test_agent_credentials_are_bound_to_the_agent(server):
    a, cred_a = server.enroll_agent(hostname="a")
    b, cred_b = server.enroll_agent(hostname="b")
    batch = {"records": [{"seq": 1, "data": {"rule": {"id": "x"}}}]}
    for path in (f"/api/v1/agents/{b}/heartbeat", f"/api/v1/agents/{b}/alerts",
                 f"/api/v1/agents/{b}/events"):
        body = {} if path.endswith("heartbeat") else batch
        st, resp, _ = server.request("POST", path, body)
        assert st == 401, (path, resp)
        st, resp, _ = server.request("POST", path, body, token=cred_a)
        assert st == 403, (path, resp)
        one_line_error(resp)
        st, resp, _ = server.request("POST", path, body, token=b + "." + "f" * 64)
        assert st == 401, (path, resp)
        st, resp, _ = server.request("POST", path, body, token=server.admin)
        assert st == 401, (path, resp)
    # nothing was stored for b by a, and b's own credentials work
    assert server.admin_call("GET", f"agents/{b}")["heartbeats"] == 0
    assert server.admin_call("GET", f"alerts?agent={b}")["alerts"] == []
    server.heartbeat(b, cred_b)
    assert server.admin_call("GET", f"agents/{b}")["heartbeats"] == 1


def test_alert_upload_is_idempotent(server):
    agent, cred = server.enroll_agent()
    recs = [{"seq": i, "data": {"@timestamp": f"2026-01-0{i}T10:00:00.5Z",
                                "event": {"kind": "alert"},
                                "rule": {"id": "rule-a" if i % 2 else "rule-b"}}}
            for i in range(1, 6)]
    path = f"/api/v1/agents/{agent}/alerts"
    st, body, _ = server.request("POST", path, {"records": recs[:3]}, token=cred)
    assert st == 200 and body["acked"] == 3 and body["stored"] == 3, body
    # a resend after a lost acknowledgement, with two new records
    st, body, _ = server.request("POST", path, {"records": recs}, token=cred)
    assert st == 200 and body["stored"] == 2 and body["duplicates"] == 3, body
    alerts = server.admin_call("GET", f"alerts?agent={agent}")["alerts"]
    assert sorted(a["seq"] for a in alerts) == [1, 2, 3, 4, 5]
    assert server.admin_call("GET", "alerts?rule=rule-b")["alerts"][0]["rule_id"] == "rule-b"
    assert len(server.admin_call("GET", "alerts?rule=rule-a")["alerts"]) == 3
    ranged = server.admin_call("GET", "alerts?since=2026-01-02T00:00:00Z"
                                      "&until=2026-01-03T23:00:00Z")["alerts"]
    assert sorted(a["seq"] for a in ranged) == [2, 3]
    # a batch naming one seq twice is refused whole
    st, body, _ = server.request("POST", path, {"records": [recs[0], recs[0]]}, token=cred)
    assert st == 400 and "twice" in one_line_error(body)


def test_oversized_bodies_are_refused(server):
    agent, cred = server.enroll_agent()
    big = b'{"hostname":"' + b"a" * 200000 + b'"}'
    st, body, _ = server.request("POST", f"/api/v1/agents/{agent}/heartbeat", big, token=cred)
    assert st == 413, body
    one_line_error(body)

    def chunks():
        for _ in range(40):
            yield b"a" * 8192
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", f"/api/v1/agents/{agent}/heartbeat", body=chunks(),
                 headers={"Authorization": f"Bearer {cred}"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()
    st, body, _ = server.request("POST", "/api/v1/enroll", b"x" * 70000)
    assert st == 413
    assert server.alive()


@pytest.mark.parametrize("body,reason", [
    (b"", "empty"),
    (b"{", "malformed JSON"),
    (b"[1,2]", "object"),
    (b'{"a":1,"a":2}', "malformed JSON"),
    (b"[" * 100 + b"]" * 100, "deeper"),
    (b'{"uptime_seconds": "x"}', "uptime_seconds"),
    (b'{"uptime_seconds": -1}', "uptime_seconds"),
    (b'{"quarantined": [1, "x"]}', "quarantined"),
    (b'{"liveness": {"last": "maybe"}}', "liveness"),
    (b'{"hostname": "a\\u0000b"}', "NUL"),
    (b'{"x": 1}\x00', "NUL"),
])
def test_malformed_heartbeats_get_400_with_the_reason(server, body, reason):
    agent, cred = server.enroll_agent()
    st, resp, _ = server.request("POST", f"/api/v1/agents/{agent}/heartbeat", body, token=cred)
    assert st == 400, resp
    assert reason in one_line_error(resp)


def test_random_bodies_never_kill_the_server(server):
    agent, cred = server.enroll_agent()
    rng = random.Random(5)
    paths = [f"/api/v1/agents/{agent}/heartbeat", f"/api/v1/agents/{agent}/alerts",
             "/api/v1/enroll", "/api/v1/admin/rollouts", "/api/v1/admin/groups/g1",
             "/api/v1/admin/tokens"]
    seeds = [b'{"records":[{"seq":1,"data":{}}]}', b'{"release":"' + b"a" * 64 + b'"}',
             b'{"ring":1,"maintenance_windows":[{"start":"01:00","end":"02:00"}]}',
             b'{"token":"x.y"}', b'{"name":"n","role":"viewer"}']
    for i in range(300):
        s = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(s))
            s[pos] = rng.randrange(256)
        method = "PUT" if "groups" in paths[i % len(paths)] else "POST"
        token = server.admin if "admin" in paths[i % len(paths)] else cred
        st, _, _ = server.request(method, paths[i % len(paths)], bytes(s), token=token)
        assert st in (200, 201, 400, 401, 404, 409), st
    assert server.alive()
    assert server.request("GET", "/api/v1/health")[0] == 200


# --- admin API ---

def test_admin_tokens_and_roles(fleet, keys, tmp_path):
    st, body, _ = fleet.request("GET", "/api/v1/admin/agents")
    assert st == 401, body
    st, body, _ = fleet.request("GET", "/api/v1/admin/agents", token="nonsense")
    assert st == 401
    st, body, _ = fleet.request("GET", "/api/v1/admin/agents",
                                token=fleet.admin.split(".")[0] + "." + "0" * 64)
    assert st == 401
    # an agent credential is no admin token
    _, cred = fleet.enroll_agent()
    assert fleet.request("GET", "/api/v1/admin/agents", token=cred)[0] == 401
    viewer = fleet.admin_call("POST", "tokens", {"name": "v", "role": "viewer"},
                              expect=201)["token"]
    operator = fleet.admin_call("POST", "tokens", {"name": "op", "role": "operator"},
                                expect=201)["token"]
    assert fleet.admin_call("GET", "agents", token=viewer)["agents"]
    rel = upload_release(fleet, make_bundle(keys, 3, tmp_path), token=operator)
    start = {"release": rel["hash"], "plan": [{"ring": 0, "percent": 100, "bake_seconds": 60},
                                              {"ring": 2, "percent": 100}]}
    st, body, _ = fleet.request("POST", "/api/v1/admin/rollouts", start, token=viewer)
    assert st == 403 and "viewer" in one_line_error(body)
    r = fleet.admin_call("POST", "rollouts", start, token=operator, expect=201)
    for action in ("halt", "pause"):
        st, body, _ = fleet.request("POST", f"/api/v1/admin/rollouts/{r['id']}/{action}", {},
                                    token=viewer)
        assert st == 403, body
    st, body, _ = fleet.request("POST", "/api/v1/admin/emergency-stop", {}, token=viewer)
    assert st == 403
    # operators cannot make tokens or read the audit log
    st, body, _ = fleet.request("POST", "/api/v1/admin/tokens", {"name": "x", "role": "admin"},
                                token=operator)
    assert st == 403
    assert fleet.request("GET", "/api/v1/admin/audit", token=operator)[0] == 403
    fleet.admin_call("POST", f"rollouts/{r['id']}/halt", {}, token=operator)
    assert fleet.admin_call("GET", f"rollouts/{r['id']}")["state"] == "halted"
    # a revoked token authenticates nothing
    vid = viewer.split(".")[0]
    assert fleet.request("DELETE", f"/api/v1/admin/tokens/{vid}", token=operator)[0] == 403
    assert fleet.admin_call("DELETE", f"tokens/{vid}")["revoked"] is True
    st, body, _ = fleet.request("GET", "/api/v1/admin/agents", token=viewer)
    assert st == 401 and "revoked" in one_line_error(body)
    assert fleet.request("DELETE", "/api/v1/admin/tokens/" + "0" * 32, token=fleet.admin)[0] == 404


def test_audit_log_records_who_what_and_result(fleet, keys, tmp_path):
    viewer = fleet.admin_call("POST", "tokens", {"name": "auditee", "role": "viewer"},
                              expect=201)["token"]
    fleet.admin_call("PUT", "groups/canary", {"ring": 0})
    fleet.request("POST", "/api/v1/admin/emergency-stop", {}, token=viewer)
    fleet.request("PUT", "/api/v1/admin/groups/bad", b"{nope", token=fleet.admin)
    fleet.request("GET", "/api/v1/admin/agents")
    log = fleet.admin_call("GET", "audit?limit=50")["audit"]
    assert all(e["at"] and e["who"] and e["action"] and e["result"] for e in log)
    by = {(e["who"], e["action"].split("?")[0], e["result"][:3]) for e in log}
    assert ("bootstrap", "POST /api/v1/admin/tokens", "201") in by
    assert ("bootstrap", "PUT /api/v1/admin/groups/canary", "200") in by
    assert ("auditee", "POST /api/v1/admin/emergency-stop", "403") in by
    assert ("bootstrap", "PUT /api/v1/admin/groups/bad", "400") in by
    assert ("anonymous", "GET /api/v1/admin/agents", "401") in by
    canary = [e for e in log if e["action"].endswith("groups/canary")][0]
    assert canary["target"] == "canary" and "policy" in canary["result"]


def test_groups_and_policies(fleet):
    g = fleet.admin_call("PUT", "groups/web", {
        "ring": 1, "delay_hours": 4, "pin": 7, "paused": True, "approval_required": True,
        "maintenance_windows": [{"start": "22:00", "end": "02:00"}]})
    assert g["policy"] == {"ring": 1, "delay_hours": 4, "pin": 7, "paused": True,
                           "approval_required": True,
                           "maintenance_windows": [{"start": "22:00", "end": "02:00"}]}
    g = fleet.admin_call("PUT", "groups/web", {"pin": None, "paused": False})
    assert g["policy"]["pin"] is None and g["policy"]["ring"] == 1
    assert [x["name"] for x in fleet.admin_call("GET", "groups")["groups"]] == ["web"]
    for bad in ({"ring": 99}, {"maintenance_windows": [{"start": "25:00", "end": "01:00"}]},
                {"pin": "x"}, {"paused": 1}):
        st, body, _ = fleet.request("PUT", "/api/v1/admin/groups/web", bad, token=fleet.admin)
        assert st == 400, (bad, body)
    st, body, _ = fleet.request("PUT", "/api/v1/admin/groups/bad%20name", {},
                                token=fleet.admin)
    assert st == 400


# --- releases and bundles ---

def test_release_upload_and_bundle_download(fleet, keys, tmp_path):
    path = make_bundle(keys, 5, tmp_path)
    data = path.read_bytes()
    rel = upload_release(fleet, path)
    assert rel["hash"] == blake2b_hex(data) and rel["version"] == 5 and rel["size"] == len(data)
    assert rel["url"] == f"/api/v1/bundles/{rel['hash']}"
    # the same bytes again are the same release
    assert upload_release(fleet, path, expect=200)["id"] == rel["id"]
    # laid out for any static web server: DATA/bundles/HASH
    assert (fleet.data / "bundles" / rel["hash"]).read_bytes() == data
    st, body, hdrs = fleet.request("GET", rel["url"], raw=True)
    assert st == 200 and body == data
    assert hdrs["etag"] == f'"{rel["hash"]}"' and "immutable" in hdrs["cache-control"]
    st, body, hdrs = fleet.request("GET", rel["url"], headers={"If-None-Match": hdrs["etag"]},
                                   raw=True)
    assert st == 304 and body == b""
    st, body, _ = fleet.request("GET", rel["url"], headers={"If-None-Match": '"' + "0" * 64 + '"'},
                                raw=True)
    assert st == 200 and body == data
    assert fleet.request("GET", "/api/v1/bundles/" + "0" * 64)[0] == 404
    assert fleet.request("GET", "/api/v1/bundles/../vigil.db")[0] in (400, 404)
    # a tampered bundle is refused with the verifier's reason
    bad = bytearray(data)
    bad[-1] ^= 1
    st, body, _ = fleet.request("POST", "/api/v1/admin/releases", bytes(bad), token=fleet.admin)
    assert st == 400 and "bundle refused" in one_line_error(body)
    assert len(fleet.admin_call("GET", "releases")["releases"]) == 1


def test_release_needs_a_trust_root(server, keys, tmp_path):
    st, body, _ = server.request("POST", "/api/v1/admin/releases",
                                 make_bundle(keys, 2, tmp_path).read_bytes(), token=server.admin)
    assert st == 409 and "--root" in one_line_error(body)


# --- rollouts ---

def wait_for(pred, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_rollout_promotes_through_rings(fleet, keys, tmp_path):
    fleet.admin_call("PUT", "groups/canary", {"ring": 0})
    canary_tok = fleet.admin_call("POST", "enrollment-tokens", {"group": "canary"},
                                  expect=201)["token"]
    c, ccred = fleet.enroll_agent(token=canary_tok)
    g, gcred = fleet.enroll_agent()
    rel = upload_release(fleet, make_bundle(keys, 6, tmp_path))
    # a plan reaching the whole fleet at once is refused unless forced
    st, body, _ = fleet.request("POST", "/api/v1/admin/rollouts",
                                {"release": rel["hash"], "plan": [{"ring": 2, "percent": 100}]},
                                token=fleet.admin)
    assert st == 409 and "whole fleet" in one_line_error(body)
    r = fleet.admin_call("POST", "rollouts", {"release": rel["hash"], "plan": [
        {"ring": 0, "percent": 100, "bake_seconds": 1},
        {"ring": 2, "percent": 100, "bake_seconds": 3600}]}, expect=201)
    assert r["state"] == "rolling" and r["step"] == 0
    ans = fleet.heartbeat(c, ccred)
    assert ans["content"]["version"] == 6 and ans["content"]["hash"] == rel["hash"]
    assert ans["content"]["audit_mode"] is True
    assert ans["content"]["url"] == rel["url"] and ans["content"]["size"] == rel["size"]
    assert fleet.heartbeat(g, gcred)["content"] is None
    # a second rollout while one is active is refused
    st, body, _ = fleet.request("POST", "/api/v1/admin/rollouts", {"release": rel["hash"]},
                                token=fleet.admin)
    assert st == 409
    # the first step is promoted once it baked (with its agents' reports, as many as the
    # controller needs of a ring this small)
    fleet.heartbeat(c, ccred, content_version=6)
    wait_for(lambda: fleet.admin_call("GET", f"rollouts/{r['id']}")["step"] == 1,
             "the first promotion")
    ans = fleet.heartbeat(g, gcred, content_version=5)["content"]
    assert ans["version"] == 6 and ans["audit_mode"] is True
    fleet.heartbeat(g, gcred, content_version=6)
    # an operator may cut the last bake short
    fleet.admin_call("POST", f"rollouts/{r['id']}/promote", {})
    wait_for(lambda: fleet.admin_call("GET", f"rollouts/{r['id']}")["state"] == "complete",
             "the rollout to complete")
    ans = fleet.heartbeat(g, gcred, content_version=6)
    assert ans["content"]["version"] == 6 and ans["content"]["audit_mode"] is False
    assert ans["content"]["why"] == "available"
    kinds = [d["kind"] for d in fleet.admin_call("GET", f"decisions?rollout={r['id']}")
             ["decisions"]][::-1]
    assert kinds[0] == "start" and kinds[-1] == "complete" and "promote" in kinds, kinds


def test_halt_pulls_back_to_the_previous_release(fleet, keys, tmp_path):
    fleet.admin_call("PUT", "groups/canary", {"ring": 0})
    tok = fleet.admin_call("POST", "enrollment-tokens", {"group": "canary"}, expect=201)["token"]
    c, ccred = fleet.enroll_agent(token=tok)
    good = upload_release(fleet, make_bundle(keys, 7, tmp_path))
    r1 = fleet.admin_call("POST", "rollouts", {"release": good["hash"], "force": True,
                                                "plan": [{"ring": 2, "percent": 100}]},
                          expect=201)
    fleet.heartbeat(c, ccred, content_version=7)
    wait_for(lambda: fleet.admin_call("GET", f"rollouts/{r1['id']}")["state"] == "complete",
             "the first rollout to complete")
    bad = upload_release(fleet, make_bundle(keys, 8, tmp_path))
    r2 = fleet.admin_call("POST", "rollouts", {"release": bad["hash"], "gates": {"min_bad": 1},
                                                "plan": [
        {"ring": 0, "percent": 100, "bake_seconds": 3600}, {"ring": 2, "percent": 100}]},
                          expect=201)
    assert r2["previous"] == 7
    ans = fleet.heartbeat(c, ccred, content_version=7)["content"]
    assert ans["version"] == 8 and ans["why"] == "step" and ans["audit_mode"] is True
    # an exposed agent that reverted by itself and quarantined the release halts it
    ans = fleet.heartbeat(c, ccred, content_version=7, crash_loop_reverts=1, quarantined=[8])
    assert ans["content"]["version"] == 7
    wait_for(lambda: fleet.admin_call("GET", f"rollouts/{r2['id']}")["state"] == "halted",
             "the gate to halt the rollout")
    decisions = fleet.admin_call("GET", f"decisions?rollout={r2['id']}")["decisions"]
    halt = [d for d in decisions if d["kind"] == "halt"][0]
    assert halt["detail"]["failed_gate"] == "reverts" and halt["detail"]["manual"] is False
    assert halt["detail"]["gates"]["reverts"]["bad"] == 1
    assert any(d["kind"] == "pull" and "return to 7" in d["detail"]["reason"]
               for d in decisions)
    # agents on the pulled release are told to go back to the previous good one
    ans = fleet.heartbeat(c, ccred, content_version=8)["content"]
    assert ans["version"] == 7 and ans["why"] == "pulled"
    # emergency stop halts every active rollout
    again = upload_release(fleet, make_bundle(keys, 9, tmp_path))
    r3 = fleet.admin_call("POST", "rollouts", {"release": again["hash"]}, expect=201)
    assert fleet.admin_call("POST", "emergency-stop", {})["halted"] == 1
    assert fleet.admin_call("GET", f"rollouts/{r3['id']}")["state"] == "halted"


def test_policies_pin_pause_and_approval(fleet, keys, tmp_path):
    groups = {"pinned": {"ring": 0, "pin": 10}, "paused": {"ring": 0, "paused": True},
              "gated": {"ring": 0, "approval_required": True}, "open": {"ring": 0}}
    agents = {}
    for name, pol in groups.items():
        fleet.admin_call("PUT", f"groups/{name}", pol)
        tok = fleet.admin_call("POST", "enrollment-tokens", {"group": name},
                               expect=201)["token"]
        agents[name] = fleet.enroll_agent(token=tok)
    r10 = upload_release(fleet, make_bundle(keys, 10, tmp_path))
    r11 = upload_release(fleet, make_bundle(keys, 11, tmp_path))
    r = fleet.admin_call("POST", "rollouts", {"release": r11["hash"], "plan": [
        {"ring": 0, "percent": 100, "bake_seconds": 3600}, {"ring": 2, "percent": 100}]},
                         expect=201)

    def target(name):
        a, cred = agents[name]
        c = fleet.heartbeat(a, cred, content_version=10)["content"]
        return c and (c["version"], c["why"])
    assert target("open") == (11, "step")
    assert target("pinned") == (10, "pinned")
    assert target("paused") == (10, "paused")
    assert target("gated") is None
    # the operator can see why, before the agent's next heartbeat
    shown = fleet.admin_call("GET", f"agents/{agents['gated'][0]}")
    assert shown["desired"] is None or shown["desired"]["why"] == "approval"
    assert fleet.admin_call("GET", f"agents/{agents['paused'][0]}")["desired"]["why"] == "paused"
    fleet.admin_call("POST", f"rollouts/{r['id']}/approve", {"group": "gated"})
    assert fleet.admin_call("GET", f"agents/{agents['gated'][0]}")["desired"]["version"] == 11
    assert target("gated") == (11, "step")
    assert target("pinned") == (10, "pinned")
    assert r10["version"] == 10


def test_maintenance_window_blocks_changes_outside_it(fleet, keys, tmp_path):
    now = time.gmtime()
    later = (now.tm_hour + 3) % 24
    fleet.admin_call("PUT", "groups/win", {"ring": 0, "maintenance_windows": [
        {"start": f"{later:02d}:00", "end": f"{(later + 1) % 24:02d}:00"}]})
    tok = fleet.admin_call("POST", "enrollment-tokens", {"group": "win"}, expect=201)["token"]
    a, cred = fleet.enroll_agent(token=tok)
    rel = upload_release(fleet, make_bundle(keys, 12, tmp_path))
    fleet.admin_call("POST", "rollouts", {"release": rel["hash"], "plan": [
        {"ring": 0, "percent": 100, "bake_seconds": 3600}, {"ring": 2, "percent": 100}]},
                     expect=201)
    ans = fleet.heartbeat(a, cred, content_version=3)["content"]
    assert ans["version"] == 3 and ans["why"] == "window" and ans["url"] is None
    # a window from an hour ago to an hour from now holds now even across an hour's change
    fleet.admin_call("PUT", "groups/win", {"maintenance_windows": [
        {"start": f"{(now.tm_hour + 23) % 24:02d}:00",
         "end": f"{(now.tm_hour + 1) % 24:02d}:{now.tm_min:02d}"}]})
    assert fleet.heartbeat(a, cred, content_version=3)["content"]["version"] == 12


def test_restart_resumes_the_rollout(tmp_path, keys):
    s = Server(tmp_path / "data", root=keys / "root.json").start()
    try:
        s.admin_call("PUT", "groups/canary", {"ring": 0})
        tok = s.admin_call("POST", "enrollment-tokens", {"group": "canary"}, expect=201)["token"]
        c, ccred = s.enroll_agent(token=tok)
        g, gcred = s.enroll_agent()
        rel = upload_release(s, make_bundle(keys, 13, tmp_path))
        r = s.admin_call("POST", "rollouts", {"release": rel["hash"], "plan": [
            {"ring": 0, "percent": 100, "bake_seconds": 1},
            {"ring": 1, "percent": 100, "bake_seconds": 3600},
            {"ring": 2, "percent": 100}]}, expect=201)
        s.heartbeat(c, ccred, content_version=13)
        wait_for(lambda: s.admin_call("GET", f"rollouts/{r['id']}")["step"] == 1,
                 "the first promotion")
        s.admin_call("POST", f"rollouts/{r['id']}/approve", {"group": "canary"})
        s.heartbeat(g, gcred, alerts=3)
        before = s.admin_call("GET", f"rollouts/{r['id']}")
    finally:
        assert s.stop() == 0
    s2 = Server(tmp_path / "data", root=keys / "root.json")
    s2.start()
    try:
        s2.admin, s2.enroll = s.admin, s.enroll
        after = s2.admin_call("GET", f"rollouts/{r['id']}")
        for k in ("state", "step", "step_started", "plan", "release", "approved", "created"):
            assert after[k] == before[k], k
        assert after["state"] == "rolling" and after["step"] == 1
        assert s2.admin_call("GET", f"agents/{g}")["alerts"] == 3
        assert s2.heartbeat(c, ccred)["content"]["version"] == 13
        assert s2.heartbeat(g, gcred)["content"] is None
        kinds = [d["kind"] for d in s2.admin_call("GET", "decisions")["decisions"]]
        assert kinds[:2] == ["approve", "promote"]
    finally:
        s2.stop()


def test_sigterm_stops_cleanly_while_requests_run(tmp_path):
    s = Server(tmp_path / "data").start()
    agent, cred = s.enroll_agent()
    socks = []
    for _ in range(5):
        so = socket.create_connection(("127.0.0.1", s.port))
        so.sendall(b"POST /api/v1/agents/" + agent.encode() + b"/heartbeat HTTP/1.1\r\n"
                   b"Host: x\r\nContent-Length: 100\r\n\r\n{")
        socks.append(so)
    assert s.stop() == 0
    for so in socks:
        so.close()


# --- the vigil CLI over the admin API ---

def cli(srv, *args, token=None):
    res = run(VIGIL, *args, "--server", f"http://127.0.0.1:{srv.port}", "--token",
              token or srv.admin)
    assert res.returncode >= 0, f"killed by signal {-res.returncode}"
    return res


def test_cli_over_the_admin_api(fleet, keys, tmp_path):
    bundle = make_bundle(keys, 21, tmp_path)
    res = cli(fleet, "groups", "set", "canary", "--ring", "0", "--window", "00:00-23:59")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["policy"]["ring"] == 0
    res = cli(fleet, "tokens", "enroll", "--group", "canary", "--uses", "2")
    assert res.returncode == 0, res.stderr
    agent, cred = fleet.enroll_agent(token=json.loads(res.stdout)["token"])
    res = cli(fleet, "releases", "create", bundle)
    assert res.returncode == 0, res.stderr
    rel = json.loads(res.stdout)
    assert rel["version"] == 21
    res = cli(fleet, "rollouts", "start", rel["hash"], "--plan", "0:100:1h 2:10:1h 2:100:0",
              "--min-bad", "1")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert [s["percent"] for s in r["plan"]] == [100, 10, 100]
    assert fleet.heartbeat(agent, cred)["content"]["version"] == 21
    res = cli(fleet, "rollouts", "pause", str(r["id"]), "--compact")
    assert res.returncode == 0 and json.loads(res.stdout)["state"] == "paused"
    assert len(res.stdout.strip().splitlines()) == 1
    res = cli(fleet, "rollouts", "pause", str(r["id"]))
    assert res.returncode == 1 and "409" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = cli(fleet, "rollouts", "halt", str(r["id"]))
    assert res.returncode == 0 and json.loads(res.stdout)["state"] == "halted"
    res = cli(fleet, "rollouts", "decisions", str(r["id"]))
    kinds = [d["kind"] for d in json.loads(res.stdout)["decisions"]]
    assert kinds[:2] == ["pull", "halt"] and "pause" in kinds and kinds[-1] == "start"
    fleet.request("POST", f"/api/v1/agents/{agent}/alerts",
                  {"records": [{"seq": 1, "data": {"rule": {"id": "cli-rule"}}}]}, token=cred)
    res = cli(fleet, "alerts", "query", "--rule", "cli-rule")
    assert res.returncode == 0 and json.loads(res.stdout)["alerts"][0]["agent_id"] == agent
    res = cli(fleet, "agents", "show", agent)
    assert json.loads(res.stdout)["group"] == "canary"
    res = cli(fleet, "audit", "--limit", "5")
    assert res.returncode == 0 and len(json.loads(res.stdout)["audit"]) == 5
    # wrong token, bad usage, no server: one line and the right status, never a signal
    res = cli(fleet, "agents", "list", token="x.y")
    assert res.returncode == 1 and "401" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    for args in (["rollouts"], ["rollouts", "fly", "1"], ["groups", "set", "g", "--ring", "99"],
                 ["agents", "list", "--bogus", "1"]):
        res = cli(fleet, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = run(VIGIL, "agents", "list", "--server", "http://127.0.0.1:1", "--token", "x")
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    for noun in ("agents", "groups", "releases", "rollouts", "alerts", "tokens", "audit"):
        res = run(VIGIL, noun, "--help")
        assert res.returncode == 0 and "--server" in res.stdout, noun


# --- HTTPS ---

def test_https(tmp_path):
    # a self-signed test certificate for 127.0.0.1 (valid to 2126), kept in the tree
    tls = pathlib.Path(__file__).resolve().parent / "tls"
    cert, key = tls / "cert.pem", tls / "key.pem"
    s = Server(tmp_path / "data", extra=["--tls-cert", cert, "--tls-key", key]).start()
    try:
        assert "(https)" in s.stderr()
        ctx = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=30)
        conn.request("GET", "/api/v1/admin/agents", headers={"Authorization": f"Bearer {s.admin}"})
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["agents"] == []
        conn.close()
        res = run(VIGIL, "agents", "list", "--server", f"https://127.0.0.1:{s.port}",
                  "--token", s.admin, "--cacert", cert)
        assert res.returncode == 0, res.stderr
        # without the CA the client refuses the server, on one line
        res = run(VIGIL, "agents", "list", "--server", f"https://127.0.0.1:{s.port}",
                  "--token", s.admin)
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
        assert s.alive()
    finally:
        assert s.stop() == 0
    # one of the two files alone is a usage error
    res = run(SERVER, "--data", tmp_path / "d2", "--tls-cert", cert)
    assert res.returncode == 2 and "go together" in res.stderr
    assert not (tmp_path / "d2").exists()


# --- the agent's uplink ---

AGENT = BUILD / "vigil-agent"


def marker_event(i, path="/tmp/server-test-marker"):
    return json.dumps({"@timestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
                       "event": {"kind": "event", "action": "exec", "category": "process",
                                 "sequence": i},
                       "process": {"pid": 10000 + i, "executable": path,
                                   "name": os.path.basename(path)}}) + "\n"


class FeedAgent:
    """vigil-agent on a replay FIFO, so that the test decides when events happen."""

    def __init__(self, tmp_path, args):
        if not os.access(AGENT, os.X_OK):
            pytest.fail(f"{AGENT} is missing: run make first", pytrace=False)
        self.fifo = tmp_path / "feed"
        os.mkfifo(self.fifo)
        self.out = open(tmp_path / "agent.out", "wb")
        self.err_path = tmp_path / "agent.err"
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([str(AGENT), "--source", f"replay:{self.fifo}", *args],
                                     stdout=self.out, stderr=self.err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.feed = None
        deadline = time.monotonic() + 30
        while self.feed is None and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"agent exited {self.proc.returncode}: {self.stderr()}")
            try:
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                self.feed = os.fdopen(fd, "w")
            except OSError:
                time.sleep(0.05)
        assert self.feed, f"the agent never opened its feed: {self.stderr()}"

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def send(self, lines):
        os.set_blocking(self.feed.fileno(), True)
        self.feed.write("".join(lines))
        self.feed.flush()

    def stop(self):
        """Ends the feed: the agent finishes, uploads what it can and exits."""
        if self.feed:
            self.feed.close()
            self.feed = None
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the agent did not exit: {self.stderr()}")
        self.out.close()
        self.err.close()
        return self.proc.returncode


def alert_seqs(srv, agent_id):
    alerts = srv.admin_call("GET", f"alerts?agent={agent_id}&limit=10000")["alerts"]
    return sorted(a["seq"] for a in alerts), alerts


def test_agent_uplink_loses_nothing_through_an_outage(tmp_path, keys):
    s = Server(tmp_path / "data", extra=["--heartbeat-seconds", "1"]).start()
    port = s.port
    (tmp_path / "token").write_text(s.enroll + "\n")
    agent = FeedAgent(tmp_path, ["--rules", keys / "rules", "--server",
                                 f"http://127.0.0.1:{port}", "--state-dir",
                                 tmp_path / "state", "--enroll-token-file",
                                 tmp_path / "token"])
    try:
        agent.send([marker_event(i) for i in range(1, 51)])
        agents = wait_for(lambda: s.admin_call("GET", "agents")["agents"], "enrollment")
        aid = agents[0]["id"]
        wait_for(lambda: len(alert_seqs(s, aid)[0]) == 50, "the first 50 alerts")
        wait_for(lambda: s.admin_call("GET", f"agents/{aid}")["heartbeats"] > 0,
                 "a heartbeat")
        assert s.stop() == 0
        # the server is away: alerts wait in the agent's spool
        agent.send([marker_event(i) for i in range(51, 101)])
        time.sleep(2)
        s2 = Server(tmp_path / "data", extra=["--heartbeat-seconds", "1",
                                               "--listen", f"127.0.0.1:{port}"])
        s2.extra = [e for e in s2.extra]
        s2.start()
        s2.admin, s2.enroll = s.admin, s.enroll
        try:
            wait_for(lambda: len(alert_seqs(s2, aid)[0]) >= 100, "the spooled alerts",
                     timeout=90)
            agent.send([marker_event(i) for i in range(101, 111)])
            wait_for(lambda: len(alert_seqs(s2, aid)[0]) >= 110, "the last alerts")
            assert agent.stop() == 0, agent.stderr()
            seqs, alerts = alert_seqs(s2, aid)
            assert seqs == list(range(1, 111)), "an alert was lost or stored twice"
            pids = sorted(a["data"]["process"]["pid"] for a in alerts)
            assert pids == [10000 + i for i in range(1, 111)]
            assert all(a["data"]["agent"]["id"] for a in alerts)
            shown = s2.admin_call("GET", f"agents/{aid}")
            assert shown["alerts"] >= 100 and shown["heartbeats"] >= 2
            # the final metric line accounts for the spool: nothing evicted, nothing pending
            last = [json.loads(x) for x in (tmp_path / "agent.out").read_text().splitlines()
                    if x.startswith("{")]
            assert last == [] or "uplink" not in last[-1].get("vigil", {}) or \
                last[-1]["vigil"]["uplink"]["alerts_evicted"] == 0
        finally:
            s2.stop()
    finally:
        if agent.proc.poll() is None:
            agent.stop()
        s.stop()
    # restarted, the agent keeps its identity and does not enroll again
    creds = json.loads((tmp_path / "state" / "uplink.json").read_text())
    assert creds["agent_id"] == aid and creds["clean"] is True
    assert (tmp_path / "state" / "uplink.json").stat().st_mode & 0o077 == 0


def test_agent_receives_content_through_a_rollout(tmp_path, keys):
    s = Server(tmp_path / "data", root=keys / "root.json",
               extra=["--heartbeat-seconds", "1"]).start()
    try:
        s.admin_call("PUT", "groups/canary", {"ring": 0})
        tok = s.admin_call("POST", "enrollment-tokens", {"group": "canary"}, expect=201)
        (tmp_path / "token").write_text(tok["token"])
        rel = upload_release(s, make_bundle(keys, 30, tmp_path))
        (tmp_path / "inbox").mkdir()
        agent = FeedAgent(tmp_path, [
            "--root", keys / "root.json", "--state-dir", tmp_path / "state",
            "--content-dir", tmp_path / "inbox", "--health-window", "1",
            "--liveness-interval", "1", "--server", f"http://127.0.0.1:{s.port}",
            "--enroll-token-file", tmp_path / "token"])
        try:
            aid = wait_for(lambda: s.admin_call("GET", "agents")["agents"],
                           "enrollment")[0]["id"]
            r = s.admin_call("POST", "rollouts", {"release": rel["hash"], "plan": [
                {"ring": 0, "percent": 100, "bake_seconds": 6},
                {"ring": 2, "percent": 100, "bake_seconds": 1}]}, expect=201)
            # the agent downloads it, activates it and says so in its next heartbeats
            wait_for(lambda: s.admin_call("GET", f"agents/{aid}")["content_version"] == 30,
                     "the agent to run the release", timeout=60)
            # while the release bakes in its step, the agent keeps kill responses in audit
            wait_for(lambda: "kill responses in audit mode" in agent.stderr(),
                     "audit mode while the release bakes")
            wait_for(lambda: s.admin_call("GET", f"rollouts/{r['id']}")["state"] == "complete",
                     "the rollout to complete", timeout=60)
            wait_for(lambda: "kill responses active again" in agent.stderr(),
                     "responses back once the release baked")
            # the release's rule now detects, and its alerts reach the server
            agent.send([marker_event(i) for i in range(1, 4)])
            wait_for(lambda: len(s.admin_call("GET", "alerts?rule=server-test-1")["alerts"]) == 3,
                     "alerts of the release's rule")
        finally:
            assert agent.stop() == 0, agent.stderr()
        assert "downloaded into the inbox" in agent.stderr()
    finally:
        s.stop()


# --- the web console ---

def test_console_is_static_and_locked_down(server):
    st, body, hdrs = server.request("GET", "/console", raw=True)
    assert st == 200 and hdrs["content-type"].startswith("text/html")
    assert b'<script src="/console/app.js"></script>' in body
    csp = hdrs["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    # the page holds no data: everything comes from the admin API with the operator's token
    assert b"token" in body and server.admin.encode() not in body
    st, js, hdrs = server.request("GET", "/console/app.js", raw=True)
    assert st == 200 and hdrs["content-type"].startswith("text/javascript")
    assert b"/api/v1/admin/" in js and b"innerHTML" not in js and b"eval(" not in js
    assert server.request("POST", "/console", b"x")[0] == 405
    assert server.request("GET", "/console/other")[0] == 404
