"""
The replay source: the agent's own NDJSON read back and printed again, and what it does with
lines that are not events.

What replay re-stamps: nothing that a line carries. @timestamp, event.sequence, host.name,
agent.id and agent.version describe the original observation, so a replayed event is the
captured event, field for field (RESTAMPED below is empty on purpose). The replaying agent
fills only fields a line lacks (test_replay_fills_only_missing_fields).
"""
import json
import os
import re
import socket
import subprocess

import pytest

from conftest import (AGENT, action, get, kind, need_agent, need_root, new_marker, real,
                      start_agent)

RESTAMPED = frozenset()
REPLAY_TIMEOUT = 60


def replay(path, *extra):
    need_agent()
    return subprocess.run([str(AGENT), "--print", "--source", f"replay:{path}", *extra],
                          capture_output=True, timeout=REPLAY_TIMEOUT, stdin=subprocess.DEVNULL)


def parse_lines(data):
    out = []
    for i, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            pytest.fail(f"stdout line {i} is not JSON: {line[:200]!r}", pytrace=False)
    return out


def events_of(records):
    return [r for r in records if isinstance(r, dict) and kind(r) == "event"]


def without(ev, names):
    ev = json.loads(json.dumps(ev))
    for name in names:
        parts = name.split(".")
        cur = ev
        for p in parts[:-1]:
            cur = cur.get(p, {})
        cur.pop(parts[-1], None)
    return ev


def assert_not_crashed(res):
    err = res.stderr.decode(errors="replace")
    assert res.returncode >= 0, f"killed by signal {-res.returncode}; stderr:\n{err[-2000:]}"
    assert "Sanitizer" not in err and "runtime error" not in err, err[-3000:]


NASTY_ARGS = [b"tab\there", b'quote" back\\slash', b"new\nline", b"\x01\x1f\x7f ctl",
              "é € 😀".encode(), b"\xff\xfe bad utf8", b"", b"   ", b"{\"json\": [1]}"]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """Real output of the agent (best source), covering process, file and network events."""
    need_root()
    work = tmp_path_factory.mktemp("replay")
    a = start_agent(["--print"], work, "capture")
    try:
        marker = new_marker()
        p = subprocess.Popen([b"/usr/bin/true", marker.encode(), *NASTY_ARGS])
        p.wait()
        d = real(work)
        f = os.path.join(d, f"{marker}.txt")
        with open(f, "w") as fh:
            fh.write("x")
        os.rename(f, f + ".2")
        os.unlink(f + ".2")
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            with socket.create_connection(srv.getsockname()):
                srv.accept()[0].close()
        a.wait_one(lambda e: action(e) == "exec" and get(e, "process.pid") == p.pid,
                   "exec with awkward arguments")
        a.wait_one(lambda e: action(e) == "exit" and get(e, "process.pid") == p.pid, "exit")
    finally:
        rc = a.stop()
    assert rc == 0, a.stderr()[-2000:]
    return {"path": a.out_path, "marker": marker, "pid": p.pid, "work": work}


def test_capture_escapes_awkward_arguments(capture):
    """Control characters survive; bytes that are not UTF-8 become U+FFFD."""
    evs = events_of(parse_lines(capture["path"].read_bytes()))
    ex = [e for e in evs if action(e) == "exec" and get(e, "process.pid") == capture["pid"]]
    assert ex, "exec event missing from the capture"
    want = ["/usr/bin/true", capture["marker"]] + [a.decode("utf-8", "replace") for a in NASTY_ARGS]
    assert get(ex[0], "process.args") == want


def test_replay_round_trip(capture):
    src = capture["path"]
    original = parse_lines(src.read_bytes())
    assert any(kind(r) == "metric" for r in original), "the capture has no metric line"
    res = replay(src)
    assert_not_crashed(res)
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 0, err[-2000:]
    rejected = [l for l in err.splitlines() if l.startswith(f"{src}:")]
    assert not rejected, "the agent rejected its own output:\n" + "\n".join(rejected[:10])

    again = parse_lines(res.stdout)
    before, after = events_of(original), events_of(again)
    assert len(after) == len(before), f"{len(before)} events captured, {len(after)} replayed"
    for i, (b, a) in enumerate(zip(before, after)):
        b, a = without(b, RESTAMPED), without(a, RESTAMPED)
        assert a == b, f"event {i + 1} changed in replay:\n was {json.dumps(b)[:600]}\n now " \
                       f"{json.dumps(a)[:600]}"
    metric = again[-1] if again else {}
    assert kind(metric) == "metric", "replay did not end with a metric line"
    assert metric["vigil"].get("final") is True
    assert metric["vigil"].get("source") == "replay"
    assert sum(metric["vigil"].get("events", {}).values()) == len(before)

    # and the replayed output replays to itself
    second = capture["work"] / "replayed.ndjson"
    second.write_bytes(res.stdout)
    res2 = replay(second)
    assert_not_crashed(res2)
    assert events_of(parse_lines(res2.stdout)) == after


GOOD_TEMPLATE = {
    "@timestamp": "2025-03-04T05:06:07.123456789Z",
    "event": {"kind": "event", "category": "process", "action": "exec", "sequence": 1},
    "host": {"name": "replay-fixture-host"},
    "agent": {"id": "replay-fixture-agent", "version": "0.0.1"},
    "process": {"pid": 4190001, "entity_id": "fixture-entity", "executable": "/usr/bin/true",
                "name": "true", "command_line": "true MARKER", "args": ["true", "MARKER"],
                "working_directory": "/",
                "parent": {"pid": 4190000, "executable": "/usr/bin/bash",
                           "command_line": "bash"}},
    "user": {"id": "0", "name": "root", "effective": {"id": "0"}},
}


def good_event(marker, seq):
    ev = json.loads(json.dumps(GOOD_TEMPLATE).replace("MARKER", marker))
    ev["event"]["sequence"] = seq
    return ev


def test_replay_keeps_fields_from_another_host(tmp_path):
    """Captured elsewhere: host, agent, time and sequence are the capture's, not this agent's."""
    ev = good_event(new_marker(), 41)
    path = tmp_path / "other-host.ndjson"
    path.write_text(json.dumps(ev) + "\n")
    res = replay(path)
    assert_not_crashed(res)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    out = events_of(parse_lines(res.stdout))
    assert out == [ev]


def test_replay_fills_only_missing_fields(tmp_path, host_name):
    ev = good_event(new_marker(), 1)
    del ev["@timestamp"], ev["event"]["sequence"], ev["host"], ev["agent"]
    path = tmp_path / "bare.ndjson"
    path.write_text(json.dumps(ev) + "\n")
    res = replay(path)
    assert_not_crashed(res)
    out = events_of(parse_lines(res.stdout))
    assert len(out) == 1
    got = out[0]
    assert isinstance(get(got, "event.sequence"), int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", get(got, "@timestamp"))
    assert get(got, "host.name") == host_name
    assert get(got, "agent.version") and get(got, "agent.id")
    assert get(got, "process.args") == ev["process"]["args"]


def _malformed_file(path):
    """Writes good and bad lines; returns (good markers in order, {bad line number: why})."""
    lines, bad, good = [], {}, []

    def add_good(extra=None):
        m = new_marker("good")
        ev = good_event(m, len(lines) + 1)
        if extra:
            ev.update(extra)
        good.append(m)
        lines.append(json.dumps(ev).encode())

    def add_bad(raw, why):
        lines.append(raw)
        bad[len(lines)] = why

    def add_skipped(raw):
        lines.append(raw)

    add_good()
    add_bad(b'{"event":{"kind":"event","action":"exec"', "truncated JSON")
    add_bad(b'{"event":{"kind":"event","category":"process","action":"exec"},'
            b'"process":{"pid":"12x"}}', "string for an integer")
    add_bad(b'{"event":{"kind":"event","action":"exec"},"process":{"args":"not-a-list"}}',
            "string for a list")
    add_bad(b'{"event":{"kind":"event","action":"exec"},"process":{"args":["a",7]}}',
            "number in a list of strings")
    add_bad(b'{"event":{"kind":"event","action":"exec"},"process":{"pid":1.5}}',
            "fraction for an integer")
    add_bad(b'{"event":{"kind":"event","action":"exit"},"process":'
            b'{"pid":99999999999999999999999}}', "integer out of range")
    add_bad(b'{"event":{"kind":"event","action":"connect"},"destination":{"ip":"999.1.1.1"}}',
            "not an IP address")
    add_bad(b'{"event":{"kind":"event","action":"exec"},"user":{"id":0}}',
            "number for a string")
    add_bad(b"", "empty line")
    add_bad(b"   \t", "blank line")
    add_bad(b'{"event":{"kind":"event","action":"exec"},"process":{"command_line":"'
            + b"A" * (2 * 1024 * 1024) + b'"}}', "2 MiB line")
    add_bad(b'{"event":{"kind":"event","action":"exec"},"process":{"name":"a\x00b"}}',
            "raw NUL inside a string")
    add_bad(b"\x00\x00\x00\x00", "NUL bytes only")
    add_bad(b'{"event":{"kind":"event","action":"exec"}}\x00', "NUL after the object")
    add_good()
    add_bad(b"[1,2,3]", "array")
    add_bad(b'"just a string"', "string")
    add_bad(b"42", "number")
    add_bad(b"null", "null")
    add_bad(b'{"event":{"kind":"event","action":"exec"}} trailing', "trailing garbage")
    add_bad(b'{"event":{"kind":"event","action":"exec","category":"\\q"}}', "bad escape")
    add_bad(b'{"a":' * 10000 + b"1" + b"}" * 10000, "nesting 10000 deep")
    add_bad(b"[" * 200000, "200000 open brackets")
    add_bad(b"\xff\xfe\xfd{}", "bytes that are not UTF-8 before the object")
    add_skipped(b'{"@timestamp":"2025-03-04T05:06:07.000000000Z","event":{"kind":"metric"},'
                b'"vigil":{"source":"bpf","final":false}}')
    add_skipped(json.dumps(dict(good_event("alert", 9),
                                event={"kind": "alert", "action": "exec", "sequence": 9},
                                rule={"id": "r1", "name": "x", "level": "low"})).encode())
    add_good({"zzz": {"not_a_field": 1}})  # unknown fields are ignored, the event replays
    add_good()
    path.write_bytes(b"\n".join(lines))  # the last line has no newline
    return good, bad


def test_malformed_lines(tmp_path):
    path = tmp_path / "malformed.ndjson"
    good, bad = _malformed_file(path)
    res = replay(path)
    assert_not_crashed(res)
    err = res.stderr.decode(errors="replace")

    # one line per bad input line, FILE:LINE: reason, nothing for the good or skipped ones
    seen = {}
    for line in err.splitlines():
        m = re.match(re.escape(str(path)) + r":(\d+): (.+)$", line)
        if m:
            seen.setdefault(int(m.group(1)), []).append(line)
            assert len(line) < 512, f"error line echoes the input ({len(line)} bytes)"
            assert m.group(2).strip(), f"no reason given: {line!r}"
    missing = {n: why for n, why in bad.items() if n not in seen}
    assert not missing, f"bad lines without an error line: {missing}\nstderr:\n{err[-3000:]}"
    twice = {n: v for n, v in seen.items() if len(v) > 1}
    assert not twice, f"more than one error line for a line: {twice}"
    extra = sorted(set(seen) - set(bad))
    assert not extra, f"errors for lines that are fine: {extra}: " + "; ".join(
        seen[n][0] for n in extra)

    out = events_of(parse_lines(res.stdout))
    markers = [get(e, "process.args")[1] for e in out]
    assert markers == good, f"good lines replayed: {markers}, expected {good}"
    for e in out:
        assert "zzz" not in e
    last = parse_lines(res.stdout)[-1]
    assert kind(last) == "metric" and last["vigil"].get("final") is True
    rejected = get(last, "vigil.replay.rejected")
    if rejected is not None:
        assert rejected == len(bad)


def test_missing_replay_file(tmp_path):
    path = tmp_path / "does-not-exist.ndjson"
    res = replay(path)
    assert_not_crashed(res)
    err = res.stderr.decode(errors="replace").strip().splitlines()
    assert res.returncode != 0
    assert len(err) == 1 and str(path) in err[0], err
    assert res.stdout == b""
