#!/usr/bin/env bash
# Regenerates bench/corpus/live.ndjson.zst, the event corpus of the rule-engine benchmark:
# vigil-agent --print (eBPF source) records this machine while real workloads run on it
# (a build of this repository, shell pipelines over /usr/share, package queries, git, Python,
# local HTTP, file churn under /tmp). Metric lines are dropped; the rest is compressed.
#
#   sudo ./bench/capture_corpus.sh [OUTPUT]       (default bench/corpus/live.ndjson.zst)
#
# Environment: BUILD (build) where vigil-agent is, CAPTURE_ROUNDS (5) rounds of the workloads
# (about 20,000 events each), CAPTURE_MAX_SECONDS (5400) the agent's --duration, which ends the
# capture early on a slow machine, CAPTURE_MIN_EVENTS (100000) fewer events than this is a
# failure, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
ROUNDS=${CAPTURE_ROUNDS:-5}
MAX_SECONDS=${CAPTURE_MAX_SECONDS:-5400}
MIN_EVENTS=${CAPTURE_MIN_EVENTS:-100000}
OUT=${1:-bench/corpus/live.ndjson.zst}

die() {
	echo "capture_corpus: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (the agent loads eBPF programs)"
[ -x "$BUILD/vigil-agent" ] || die "$BUILD/vigil-agent is missing: run make"
command -v zstd >/dev/null || die "zstd is missing (scripts/setup.sh installs it)"

WORK=$(mktemp -d /tmp/vigil-capture.XXXXXX)
AGENT_PID=
HTTP_PID=
cleanup() {
	[ -z "$HTTP_PID" ] || kill "$HTTP_PID" 2>/dev/null || true
	[ -z "$AGENT_PID" ] || kill "$AGENT_PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

# --- workloads: each call is one round of ordinary work ---

work_build() {
	rm -rf "$WORK/build"
	make -C "$REPO" BUILD="$WORK/build" -j2 all >/dev/null 2>&1 || true
}

work_shell() {
	find /usr/share/doc -maxdepth 2 -type f -name copyright 2>/dev/null | head -n 1500 |
		while read -r f; do
			grep -c -i license "$f" || true
			sed -n '1,5p' "$f" | awk '{ n += NF } END { print n + 0 }'
			wc -l <"$f"
		done | sort -n | uniq -c | sort -rn | head -n 5 >/dev/null
	find /usr/share -maxdepth 2 -type d 2>/dev/null | sed 's|/usr/share/||' | sort |
		cut -d/ -f1 | uniq -c | sort -rn >/dev/null
}

work_man() {
	find /usr/share/man/man1 -name '*.gz' 2>/dev/null | head -n 300 |
		while read -r f; do
			zcat "$f" | head -n 20 | grep -m 1 '^\.TH' | cut -d' ' -f2
		done | tr '[:upper:]' '[:lower:]' | sort | uniq >/dev/null
	for d in /usr/share/man/man8 /usr/share/zoneinfo/Europe /usr/share/i18n/locales; do
		# shellcheck disable=SC2012 # listing with ls is the workload
		ls -la "$d" | wc -l >/dev/null
		find "$d" -type f 2>/dev/null | head -n 50 | xargs -r stat -c '%s %n' | sort -n |
			tail -n 3 >/dev/null
	done
}

work_packages() {
	dpkg -l >/dev/null
	dpkg-query -W -f='${Package} ${Installed-Size}\n' | sort -k2 -n | tail -n 20 >/dev/null
	local p
	for p in $(dpkg-query -W -f='${Package}\n' | awk 'NR % 9 == 0' | head -n 30); do
		apt-cache policy "$p" >/dev/null 2>&1 || true
		apt-cache show "$p" 2>/dev/null | grep -E '^(Depends|Description)' >/dev/null || true
	done
	for f in /usr/bin/make /usr/bin/git /usr/bin/awk /bin/ls /usr/lib/x86_64-linux-gnu/libc.so.6; do
		dpkg -S "$f" >/dev/null 2>&1 || true
	done
	apt-cache depends make >/dev/null 2>&1 || true
}

work_git() {
	git -C "$REPO" log --stat -n 20 >/dev/null
	git -C "$REPO" status --short >/dev/null
	git -C "$REPO" grep -n -e engine_eval -e ruleset_load >/dev/null || true
	rm -rf "$WORK/clone"
	git clone -q "$REPO" "$WORK/clone"
	local i
	for i in $(seq 10); do
		echo "round $i" >>"$WORK/clone/README.md"
		git -C "$WORK/clone" -c user.name=capture -c user.email=capture@localhost \
			commit -q -am "capture round $i"
	done
	git -C "$WORK/clone" log --oneline | wc -l >/dev/null
	git -C "$WORK/clone" gc -q
}

work_python() {
	local i
	for i in $(seq 20); do
		"$PYTHON" -c 'import json, sys; print(json.dumps({"n": sum(range(10000))}))' >/dev/null
		"$PYTHON" -c 'import os; print(sum(os.stat("/usr/bin/" + p).st_size for p in os.listdir("/usr/bin")[:200]))' >/dev/null
	done
	"$PYTHON" -c 'import hashlib, glob
for p in glob.glob("/usr/share/common-licenses/*"):
    hashlib.sha256(open(p, "rb").read()).hexdigest()' >/dev/null
	"$PYTHON" - "$WORK/http.port" <<'EOF' >/dev/null 2>&1 || true
import sys, urllib.request
port = open(sys.argv[1]).read().strip()
for i in range(20):
    urllib.request.urlopen("http://127.0.0.1:%s/" % port, timeout=5).read()
EOF
}

work_files() {
	local d=$WORK/churn i
	mkdir -p "$d"
	for i in $(seq 400); do
		echo "$i" >"$d/f$i.tmp"
		mv "$d/f$i.tmp" "$d/f$i.dat"
	done
	chmod 600 "$d"/f1*.dat
	tar -C "$WORK" -cf "$WORK/churn.tar" churn
	rm -rf "$d"
	mkdir -p "$d"
	tar -C "$WORK" -xf "$WORK/churn.tar"
	rm -rf "$d" "$WORK/churn.tar"
}

# A local web server gives the Python round something to connect to (no outside network).
mkdir -p "$WORK/www"
echo hello >"$WORK/www/index.html"
"$PYTHON" - "$WORK/http.port" "$WORK/www" <<'EOF' >/dev/null 2>&1 &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
open(sys.argv[1], "w").write(str(srv.server_address[1]))
srv.serve_forever()
EOF
HTTP_PID=$!

RAW=$WORK/raw.ndjson
"$BUILD/vigil-agent" --print --source bpf --duration "$MAX_SECONDS" >"$RAW" 2>"$WORK/agent.err" &
AGENT_PID=$!
for _ in $(seq 300); do
	grep -q ready "$WORK/agent.err" && break
	kill -0 "$AGENT_PID" 2>/dev/null || die "vigil-agent exited: $(tail -n 3 "$WORK/agent.err")"
	sleep 0.1
done
grep -q 'source bpf ready' "$WORK/agent.err" || die "vigil-agent did not start the bpf source"
echo "capture_corpus: recording $ROUNDS rounds of workloads (at most $MAX_SECONDS s)"

# The rounds, each with its workloads in three concurrent lanes (as a busy machine runs several
# things at once); when the agent's --duration runs out first, the work under way is stopped.
export -f work_build work_shell work_man work_packages work_git work_python work_files
export WORK REPO PYTHON
deadline=$((SECONDS + MAX_SECONDS))
lane() {
	local w left
	for w in "$@"; do
		left=$((deadline - SECONDS))
		[ "$left" -gt 0 ] || return 0
		# a failed or stopped workload is still activity
		timeout -k 5 "$left" bash -c "cd \"\$WORK\" && $w" || true
	done
}
for round in $(seq "$ROUNDS"); do
	[ $((deadline - SECONDS)) -gt 0 ] || break
	lane work_build work_git work_packages &
	lanes=($!)
	lane work_shell &
	lanes+=($!)
	lane work_man work_python work_files &
	lanes+=($!)
	wait "${lanes[@]}"
	echo "capture_corpus: round $round done after $SECONDS s"
done
sleep 2 # let the agent drain its ring buffer
kill -TERM "$AGENT_PID" 2>/dev/null || true
wait "$AGENT_PID" || die "vigil-agent failed: $(tail -n 3 "$WORK/agent.err")"
AGENT_PID=
grep -q '"final":true' "$RAW" || die "vigil-agent ended without its final metric line"

# Keep the events of this script's process tree (its workloads and its web server), so that
# whatever else the machine runs meanwhile (another benchmark's exec storm, say) does not
# make up the corpus; metric lines go too.
mkdir -p "$(dirname "$OUT")"
n=$("$PYTHON" - "$RAW" "$WORK/events.ndjson" "$$" <<'EOF'
import json, sys
root = int(sys.argv[3])
tree = set()
n = 0
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dst:
    for line in src:
        ev = json.loads(line)
        if ev.get("event", {}).get("kind") != "event":
            continue
        proc = ev.get("process", {})
        parent = proc.get("parent", {})
        if proc.get("pid") == root and "entity_id" in proc:
            tree.add(proc["entity_id"])
        if parent.get("pid") == root and "entity_id" in parent:
            tree.add(parent["entity_id"])
        if proc.get("entity_id") not in tree and parent.get("entity_id") not in tree:
            continue
        tree.add(proc.get("entity_id"))
        dst.write(line)
        n += 1
print(n)
EOF
)
[ "$n" -ge "$MIN_EVENTS" ] ||
	die "only $n events (want $MIN_EVENTS): raise CAPTURE_ROUNDS or CAPTURE_MAX_SECONDS"
zstd -q -19 --long=27 -f "$WORK/events.ndjson" -o "$OUT"
echo "capture_corpus: $n events in $SECONDS s -> $OUT ($(du -h "$OUT" | cut -f1))"
