#!/usr/bin/env python3
"""
Activation benchmark: how long vigil-agent takes to activate a bundle holding the full converted
SigmaHQ Linux set plus the default content (read, verify, version check, compile, sandboxed
test-load, trial record, swap), taken from the agent's own step timings in state.json, while a
continuous event stream runs through it; and how many events the swaps lost (must be 0).

Usage: activation_bench.py [--build DIR] [--sigma DIR] [--reps N] [--out DIR]
The last line is "activation-bench: total_ms=M ..." for bench/run.sh.
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS = ["read", "verify", "version", "compile", "test-load", "trial", "swap"]

MARKER_RULE = """\
rules:
  - id: bench-activation-marker
    name: Activation benchmark marker
    level: low
    condition:
      all:
        - event.action: exec
        - process.command_line: {startswith: "bench-marker-"}
    tests:
      match:
        - {event.action: exec, process.command_line: bench-marker-1}
"""


def run(*args):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        sys.exit(f"activation-bench: {' '.join(map(str, args))} failed: {res.stderr.strip()}")
    return res


class Stream(threading.Thread):
    """Exec events into a FIFO until stopped, every other one a marker once markers_on is set."""

    def __init__(self, fifo):
        super().__init__(daemon=True)
        self.fifo = fifo
        self.stop = threading.Event()
        self.markers_on = threading.Event()
        self.written = 0
        self.markers = 0

    def run(self):
        with open(self.fifo, "w") as f:
            while not self.stop.is_set():
                lines = []
                for _ in range(20):
                    if self.written % 2 == 0 and self.markers_on.is_set():
                        cmd = f"bench-marker-{self.markers}"
                        self.markers += 1
                    else:
                        cmd = f"/usr/bin/true {self.written}"
                    lines.append(json.dumps({"event": {"kind": "event", "action": "exec"},
                                             "process": {"pid": 4242, "executable": "/usr/bin/true",
                                                         "command_line": cmd}}))
                    self.written += 1
                f.write("\n".join(lines) + "\n")
                f.flush()
                time.sleep(0.005)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", str(ROOT / "build")))
    ap.add_argument("--sigma", default=str(ROOT.parent / "shared" / "sigma" / "rules" / "linux"))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_ACTIVATION_REPS", "5")))
    ap.add_argument("--out", default=None, help="keep the work files here")
    a = ap.parse_args()
    build = pathlib.Path(a.build).resolve()
    vigil, agent = build / "vigil", build / "vigil-agent"
    for b in (vigil, agent):
        if not os.access(b, os.X_OK):
            sys.exit(f"activation-bench: {b} is missing: run make")
    if not pathlib.Path(a.sigma).is_dir():
        sys.exit(f"activation-bench: no Sigma rules at {a.sigma}")
    work = pathlib.Path(a.out or tempfile.mkdtemp(prefix="vigil-activation-"))
    work.mkdir(parents=True, exist_ok=True)

    # the content: converted SigmaHQ + content/ + one marker rule for counting events
    rules = work / "rules"
    shutil.rmtree(rules, ignore_errors=True)
    (rules / "sigma").mkdir(parents=True)
    conv = run(vigil, "sigma", "convert", a.sigma, "-o", rules / "sigma")
    converted = conv.stdout.strip().splitlines()[-1]
    for extra in (rules / "sigma").glob("*.txt"):
        extra.unlink()
    shutil.copytree(ROOT / "content", rules / "content")
    (rules / "bench").mkdir()
    (rules / "bench" / "marker.yml").write_text(MARKER_RULE)
    run(vigil, "keygen", "-o", work / "root")
    run(vigil, "keygen", "-o", work / "signer")
    run(vigil, "root", "create", "--root-key", work / "root.key", "--signer", work / "signer.pub",
        "-o", work / "root.json")
    bundles = []
    for i in range(a.reps):
        out = work / f"full-v{i + 2}.bundle"
        run(vigil, "content", "build", rules, "--version", i + 2, "--key", work / "signer.key",
            "-o", out)
        bundles.append(out)
    size = bundles[0].stat().st_size

    state, inbox, fifo = work / "state", work / "inbox", work / "events.fifo"
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(inbox, ignore_errors=True)
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    stream = Stream(fifo)
    stream.start()
    out_path, err_path = work / "agent.ndjson", work / "agent.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([str(agent), "--print", "--alerts-only", "--source",
                                 f"replay:{fifo}", "--root", str(work / "root.json"),
                                 "--state-dir", str(state), "--content-dir", str(inbox),
                                 "--liveness-interval", "1"],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    results = []
    try:
        deadline = time.monotonic() + 30
        while not (state / "state.json").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit(f"activation-bench: the agent did not start: {err_path.read_text()}")
            time.sleep(0.05)
        for i, bundle in enumerate(bundles):
            version = i + 2
            tmp = inbox / f".{bundle.name}.tmp"
            shutil.copyfile(bundle, tmp)
            os.replace(tmp, inbox / bundle.name)
            deadline = time.monotonic() + 120
            while True:
                try:
                    st = json.loads((state / "state.json").read_text())
                except ValueError:
                    st = None
                act = (st or {}).get("activation") or {}
                if act.get("version") == version and act.get("result") != "in-progress":
                    break
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit(f"activation-bench: version {version} not activated: "
                             f"{json.dumps(act)}\n{err_path.read_text()[-2000:]}")
                time.sleep(0.01)
            if act["result"] != "trial":
                sys.exit(f"activation-bench: version {version} was {act['result']}: "
                         f"{json.dumps(st['rejections'][-1:])}")
            results.append(act["ms"])
            stream.markers_on.set()
            time.sleep(0.3)
    finally:
        stream.stop.set()
        stream.join(timeout=30)
    proc.wait(timeout=120)

    alerts, final = {}, None
    for line in out_path.read_text().splitlines():
        rec = json.loads(line)
        k = rec.get("event", {}).get("kind")
        if k == "alert" and rec["rule"]["id"] == "bench-activation-marker":
            n = int(rec["process"]["command_line"].rsplit("-", 1)[1])
            alerts[n] = alerts.get(n, 0) + 1
        elif k == "metric":
            final = rec
    engine_events = final["vigil"]["engine"]["events"] if final else -1
    missing = sum(1 for n in range(stream.markers) if n not in alerts)
    doubled = sum(1 for c in alerts.values() if c != 1)
    lost = stream.written - engine_events
    rules_n = final["vigil"]["engine"]["rules"] if final else -1

    print(f"activation: bundle of {size} bytes, {rules_n} rules ({converted} Sigma + content/ + "
          f"1 marker + the built-in rule), {len(results)} activations under a continuous event "
          f"stream; load average {open('/proc/loadavg').read().split()[0]}")
    print(f"  {'step':10s} {'median ms':>10s} {'min':>8s} {'max':>8s}")
    for step in STEPS + ["total"]:
        vals = [r.get(step, 0.0) for r in results]
        print(f"  {step:10s} {statistics.median(vals):10.1f} {min(vals):8.1f} {max(vals):8.1f}")
    total = statistics.median(r["total"] for r in results)
    print(f"  events written {stream.written}, evaluated {engine_events}, lost {lost}; markers "
          f"{stream.markers}, missing alerts {missing}, doubled {doubled}")
    if not a.out:
        shutil.rmtree(work, ignore_errors=True)
    print(f"activation-bench: total_ms={total:.1f} compile_ms="
          f"{statistics.median(r['compile'] for r in results):.1f} test_load_ms="
          f"{statistics.median(r['test-load'] for r in results):.1f} lost={lost + missing + doubled}"
          f" rules={rules_n}")


if __name__ == "__main__":
    main()
