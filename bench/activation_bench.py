#!/usr/bin/env python3
"""
Activation benchmark: how long vigil-agent takes to activate a bundle holding the full converted
SigmaHQ Linux set plus the default content (read, verify, version check, compile, sandboxed
test-load, trial record, swap), taken from the agent's own step timings in state.json, while a
continuous event stream runs through it; and how many events the swaps lost (must be 0).

Two measurements, N activations each:
  cold  a freshly started agent (its database cache holds only the built-in rule) activates the
        bundle: every pattern database is compiled. One agent per activation.
  warm  one agent activates versions 2, 3, ..., each differing from the one before by one rule
        (a literal of one exec rule changed), as content updates do: the databases the previous
        version compiled are reused. Version 2 (cold) is not counted.

Usage: activation_bench.py [--build DIR] [--sigma DIR] [--reps N] [--out DIR]
The "cpu" row is the agent's CPU time over each activation (all its threads and the test-load
child; 10 ms clock ticks; the main loop's work on the event stream meanwhile included), so that
a loaded machine can be told apart from slow code. The last line is "activation-bench:
total_ms=M warm_total_ms=W ..." for bench/run.sh (total_ms is the cold median).
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

# the one rule that changes from a version to the next in the warm measurement
EDIT_RULE = """\
rules:
  - id: bench-activation-edit
    name: Activation benchmark edited rule
    level: low
    condition:
      all:
        - event.action: exec
        - process.command_line: {{contains: "bench-edit-{n}-"}}
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
    def build(version, edit):
        (rules / "bench" / "edit.yml").write_text(EDIT_RULE.format(n=edit))
        out = work / f"full-v{version}.bundle"
        run(vigil, "content", "build", rules, "--version", version, "--key",
            work / "signer.key", "-o", out)
        return out

    cold_bundle = build(2, 0)
    warm_bundles = [cold_bundle] + [build(i + 3, i + 1) for i in range(a.reps)]
    size = cold_bundle.stat().st_size

    cold, warm = [], []
    totals = {"written": 0, "evaluated": 0, "lost": 0, "markers": 0, "missing": 0,
              "doubled": 0, "rules": -1}
    for _ in range(a.reps):
        cold += activate(work, agent, [cold_bundle], totals)
    warm += activate(work, agent, warm_bundles, totals)[1:]

    print(f"activation: bundle of {size} bytes, {totals['rules']} rules ({converted} Sigma + "
          f"content/ + 2 bench rules + the built-in rule), under a continuous event stream; "
          f"load average {open('/proc/loadavg').read().split()[0]}")
    for name, results in (("cold", cold), ("warm", warm)):
        print(f"  {name}: {len(results)} activations")
        print(f"  {'step':10s} {'median ms':>10s} {'min':>8s} {'max':>8s}")
        for step in STEPS + ["total", "cpu"]:
            vals = [r.get(step, 0.0) for r in results]
            print(f"  {step:10s} {statistics.median(vals):10.1f} {min(vals):8.1f} "
                  f"{max(vals):8.1f}")
    print(f"  events written {totals['written']}, evaluated {totals['evaluated']}, lost "
          f"{totals['lost']}; markers {totals['markers']}, missing alerts {totals['missing']}, "
          f"doubled {totals['doubled']}")
    if not a.out:
        shutil.rmtree(work, ignore_errors=True)
    lost = totals["lost"] + totals["missing"] + totals["doubled"]

    def med(results, step):
        return statistics.median(r[step] for r in results)

    print(f"activation-bench: total_ms={med(cold, 'total'):.1f} compile_ms="
          f"{med(cold, 'compile'):.1f} test_load_ms={med(cold, 'test-load'):.1f} "
          f"cpu_ms={med(cold, 'cpu'):.0f} warm_total_ms={med(warm, 'total'):.1f} "
          f"warm_compile_ms={med(warm, 'compile'):.1f} warm_cpu_ms={med(warm, 'cpu'):.0f} "
          f"lost={lost} rules={totals['rules']}")


def cpu_ms(pid):
    """CPU time of process @pid and of its children it waited for (the test-load child), in ms
    (clock ticks: 10 ms steps)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) * 1000.0 / os.sysconf("SC_CLK_TCK")


def activate(work, agent, bundles, totals):
    """Starts a fresh agent fed a continuous stream, activates @bundles in turn and stops it.
    Returns the activation records (state.json's activation.ms); adds its counts to @totals."""
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
        for bundle in bundles:
            version = int(bundle.stem.rsplit("-v", 1)[1])
            tmp = inbox / f".{bundle.name}.tmp"
            shutil.copyfile(bundle, tmp)
            cpu_before = cpu_ms(proc.pid)
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
            results.append(dict(act["ms"], cpu=cpu_ms(proc.pid) - cpu_before))
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
    totals["written"] += stream.written
    totals["evaluated"] += engine_events
    totals["lost"] += stream.written - engine_events
    totals["markers"] += stream.markers
    totals["missing"] += sum(1 for n in range(stream.markers) if n not in alerts)
    totals["doubled"] += sum(1 for c in alerts.values() if c != 1)
    totals["rules"] = final["vigil"]["engine"]["rules"] if final else -1
    return results

if __name__ == "__main__":
    main()
