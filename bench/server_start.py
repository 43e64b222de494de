#!/usr/bin/env python3
"""
What a restarted vigil-server pays at start-up to rebuild a rolling rollout's silence
histogram from its agents' stored tracks (one read of the agents table).

A server on a temporary store gets a content release and a rollout; three simulated agents
beat until they run it, so that the store holds tracks of the rollout. Their row is then
copied to --agents agents in all, and the server is started --reps times with the rollout
rolling (the histogram is rebuilt) and --reps times after it was halted (nothing to rebuild),
side by side on the same store. A start is timed from the exec to the "listening" line.
The last line is JSON.
"""
import argparse
import json
import os
import pathlib
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "system"))

from conftest import VIGIL  # noqa: E402
from test_fleet import SimAgent, plan, upload  # noqa: E402
from test_server import RULES, Server, run  # noqa: E402


def must(res):
    if res.returncode != 0:
        sys.exit(f"server_start: {res.args[0]} failed: {res.stderr.strip()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    if a.agents < 3 or a.reps < 1:
        sys.exit("server_start: --agents must be at least 3 and --reps at least 1")
    d = pathlib.Path(tempfile.mkdtemp(prefix="vigil-start-"))
    try:
        for k in ("root", "s1"):
            must(run(VIGIL, "keygen", "-o", d / k))
        must(run(VIGIL, "root", "create", "--root-key", d / "root.key", "--signer",
                 d / "s1.pub", "-o", d / "root.json"))
        (d / "rules").mkdir()
        for name, text in RULES.items():
            (d / "rules" / name).write_text(text)
        must(run(VIGIL, "content", "build", d / "rules", "--version", 1, "--key",
                 d / "s1.key", "-o", d / "c1.bundle"))
        s = Server(d / "data", root=d / "root.json", extra=["--heartbeat-seconds", "60"])
        s.start()
        s.admin_call("PUT", "groups/canary", {"ring": 0})
        token = s.admin_call("POST", "enrollment-tokens", {"group": "canary"},
                             expect=201)["token"]
        sims = [SimAgent(s, token, f"sim-{i}").start() for i in range(3)]
        rel = upload(s, d / "c1.bundle")
        rid = s.admin_call("POST", "rollouts", {"release": rel["hash"], "plan": plan(3600)},
                           expect=201)["id"]
        deadline = time.monotonic() + 60
        while not all(x.version == 1 for x in sims):
            if time.monotonic() > deadline:
                sys.exit("server_start: the simulated agents never ran the release")
            time.sleep(0.2)
        time.sleep(1.5)  # a heartbeat or two more, each stored with its track
        for x in sims:
            x.stop()
        admin, port = s.admin, s.port
        s.stop()

        db = next((d / "data").glob("*.db"))
        con = sqlite3.connect(db)
        cols = [c[1] for c in con.execute("PRAGMA table_info(agents)")]
        src = con.execute("SELECT id FROM agents LIMIT 1").fetchone()[0]
        sel = ", ".join("printf('%032x', n)" if c == "id" else c for c in cols)
        con.execute("WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq "
                    f"WHERE n < {a.agents - 3}) INSERT INTO agents({', '.join(cols)}) "
                    f"SELECT {sel} FROM seq, agents WHERE agents.id = ?", (src,))
        con.commit()
        agents = con.execute("SELECT count(*) FROM agents").fetchone()[0]
        con.close()

        times = {}
        for state in ("rolling", "halted"):
            times[state] = []
            for i in range(a.reps):
                t0 = time.monotonic()
                s = Server(d / "data", root=d / "root.json",
                           extra=["--heartbeat-seconds", "60", "--listen", f"127.0.0.1:{port}"])
                s.start()
                times[state].append(time.monotonic() - t0)
                s.admin = admin
                shown = s.admin_call("GET", f"rollouts/{rid}")["state"]
                if shown != state:
                    sys.exit(f"server_start: the rollout is {shown}, not {state}")
                if state == "rolling" and i == a.reps - 1:
                    s.admin_call("POST", f"rollouts/{rid}/halt", {})
                s.stop()
            print(f"start-up with the rollout {state}: " +
                  " ".join(f"{t:.3f}" for t in times[state]) + " s")
        print(json.dumps({"agents": agents, "reps": a.reps,
                          "rolling_median_s": round(statistics.median(times["rolling"]), 3),
                          "halted_median_s": round(statistics.median(times["halted"]), 3)}))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
