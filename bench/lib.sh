# Helpers shared by the sections of bench/run.sh: statistics, building the drivers, and
# starting and stopping what is being measured (vigil-agent, Debian's auditd) so that the
# machine is left as it was found. Sourced, not run.

BUILD=${BUILD:-build}
BENCH_OUT=${BENCH_OUT:-$BUILD/bench}
PYTHON=${PYTHON:-/usr/bin/python3}
CLK_TCK=$(getconf CLK_TCK)

bench_die() {
	echo "bench: $*" >&2
	exit 1
}

# --- statistics ---

# median N... : the middle value (mean of the two middle values for an even count)
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2];
		      else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# json_num LINE KEY : the number after "KEY": in the JSON text LINE (the last such), or nothing
json_num() {
	sed -n "s/.*\"$2\": *\([0-9.]*\).*/\1/p" <<<"$1"
}

# median_bounds N... : "LOW HIGH", the distribution-free one-sided 95 % confidence bounds of
# the median of the values' distribution (sign test: with n values sorted, the true median is
# at most the k-th with k the least for which P(Binomial(n, 1/2) <= k - 1) >= 0.95, and at
# least the (n + 1 - k)-th). Fewer than 5 values give no such bound: "n/a n/a".
median_bounds() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END {
			n = NR; p = 0.5 ^ n; cdf = p
			for (k = 1; k <= n && cdf < 0.95; k++) { p = p * (n - k + 1) / k; cdf += p }
			if (k > n || n == 0) { print "n/a n/a"; exit }
			printf "%.6g %.6g\n", v[n + 1 - k], v[k]
		}'
}

# max N...
maxof() {
	printf '%s\n' "$@" | sort -g | tail -n 1
}

# overhead BASE RATE : throughput lost against BASE, in percent (negative: faster than BASE)
overhead() {
	awk -v b="$1" -v r="$2" 'BEGIN { printf "%.1f", (1 - r / b) * 100 }'
}

# le A B : true when A <= B (decimals)
le() {
	awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'
}

# --- drivers ---

# build_driver NAME : compiles bench/NAME.c into $BENCH_OUT/NAME when missing or stale
build_driver() {
	local src=bench/$1.c bin=$BENCH_OUT/$1
	mkdir -p "$BENCH_OUT"
	if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ]; then
		${CC:-cc} -O2 -g -std=gnu11 -Wall -Wextra -D_GNU_SOURCE -o "$bin" "$src" ||
			bench_die "cannot build $src"
	fi
}

# rate_of "driver output line" : sets RATE (per_second) and STORM_CPU (cpu_seconds)
rate_of() {
	RATE=${1##*per_second=}
	STORM_CPU=$(sed -n 's/.* cpu_seconds=\([0-9.]*\) .*/\1/p' <<<"$1")
	[ -n "$RATE" ] && [ "$RATE" != "$1" ] && [ -n "$STORM_CPU" ] ||
		bench_die "unexpected driver output: $1"
}

# --- vigil-agent ---

AGENT_PID=
AGENT_OUT=

# agent_start OUTFILE [ARGS...] : starts vigil-agent --print (stdout to OUTFILE) and waits
# for its "ready" line
agent_start() {
	AGENT_OUT=$1
	shift
	"$BUILD/vigil-agent" --print "$@" >"$AGENT_OUT" 2>"$AGENT_OUT.stderr" &
	AGENT_PID=$!
	local i
	for i in $(seq 600); do
		if grep -q ready "$AGENT_OUT.stderr"; then
			return 0
		fi
		kill -0 "$AGENT_PID" 2>/dev/null ||
			bench_die "vigil-agent exited before ready: $(tail -n 3 "$AGENT_OUT.stderr")"
		sleep 0.1
	done
	bench_die "vigil-agent not ready after 60 s"
}

# agent_cpu : CPU seconds (user + system) the agent has used so far
agent_cpu() {
	awk -v hz="$CLK_TCK" '{ sub(/.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' \
		"/proc/$AGENT_PID/stat"
}

# agent_wakeups : voluntary context switches of the agent so far (one per sleep it woke from)
agent_wakeups() {
	awk '/^voluntary_ctxt_switches:/ { print $2 }' "/proc/$AGENT_PID/status"
}

# agent_bpf_stats : "prog_id run_cnt run_time_ns" for each BPF program the agent holds
# (run_time_ns counts only while kernel.bpf_stats_enabled is 1)
agent_bpf_stats() {
	local f
	for f in "/proc/$AGENT_PID"/fdinfo/*; do
		awk '/^prog_id:/ { id = $2 } /^run_cnt:/ { c = $2 } /^run_time_ns:/ { t = $2 }
			END { if (id) print id, c, t }' "$f" 2>/dev/null || true
	done
}

# bpf_stats_delta BEFORE AFTER COUNT : one line with each program's runs and mean cost between
# two agent_bpf_stats snapshots, and their total per COUNT storm operations
bpf_stats_delta() {
	local names="" id
	for id in $(awk '{ print $1 }' <<<"$2"); do
		names="$names $id=$(bpftool prog show id "$id" 2>/dev/null |
			sed -n 's/.* name \([^ ]*\) .*/\1/p' | head -n 1)"
	done
	awk -v names="$names" -v count="$3" '
		BEGIN { n = split(names, kv, " "); for (i = 1; i <= n; i++) {
			split(kv[i], p, "="); name[p[1]] = p[2] } }
		NR == FNR { c0[$1] = $2; t0[$1] = $3; next }
		{ c = $2 - c0[$1]; t = $3 - t0[$1]; if (c <= 0) next; total += t
		  out = out sprintf("%s %.0f ns x %d, ", name[$1], t / c, c) }
		END { printf "%stotal %.3f s = %.2f us per storm op\n", out, total / 1e9,
			total / 1e3 / count }' <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# agent_stop : SIGTERM, wait, then sets AGENT_HWM_KB (peak RSS), AGENT_BPFMAP_KB (resident
# BPF map memory mapped into the agent, the ring buffer: part of the RSS) and AGENT_FINAL
# (the last line of its output)
agent_stop() {
	AGENT_HWM_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$AGENT_PID/status")
	AGENT_BPFMAP_KB=$(awk '/^[0-9a-f]+-[0-9a-f]+ / { bpf = ($6 == "anon_inode:bpf-map") }
		/^Rss:/ { if (bpf) s += $2 } END { print s + 0 }' "/proc/$AGENT_PID/smaps")
	kill -TERM "$AGENT_PID"
	AGENT_STATUS=0
	wait "$AGENT_PID" || AGENT_STATUS=$?
	AGENT_PID=
	AGENT_FINAL=$(tail -n 1 "$AGENT_OUT")
}

# metric_get KEY... : reads AGENT_FINAL (the final metric line) and prints one value per KEY:
# "source", "drops" (sum of every drop counter), "events.ACTION", "ok" (1 when it is a final
# metric line)
metric_get() {
	printf '%s\n' "$AGENT_FINAL" | "$PYTHON" -c '
import json, sys
def total(o):
    if isinstance(o, dict):
        return sum(total(v) for v in o.values())
    return o if isinstance(o, (int, float)) and not isinstance(o, bool) else 0
try:
    m = json.loads(sys.stdin.readline())
    v = m["vigil"]
    ok = m["event"]["kind"] == "metric" and v.get("final") is True
except Exception:
    m, v, ok = {}, {}, False
ev = {k.replace("-", "_"): n for k, n in v.get("events", {}).items()}
for key in sys.argv[1:]:
    if key == "ok":
        print(1 if ok else 0)
    elif key == "source":
        print(v.get("source", "?"))
    elif key == "drops":
        print(int(total(v.get("drops", {}))) if "drops" in v else "?")
    elif key.startswith("events."):
        print(ev.get(key[7:].replace("-", "_"), 0))
' "$@"
}

# --- auditd (Debian's), started only for a measurement and put back afterwards ---

AUDITD_PID=
AUDIT_DIR=
AUDIT_KEY=vigil-bench

audit_status() {
	auditctl -s | awk -v k="$1" '$1 == k { print $2 }'
}

# audit_usable : true when auditd can be measured here (installed, and no daemon running)
audit_usable() {
	command -v auditd >/dev/null && command -v auditctl >/dev/null || {
		AUDIT_WHY="auditd is not installed (scripts/setup.sh installs it)"
		return 1
	}
	local pid
	pid=$(audit_status pid 2>/dev/null) || {
		AUDIT_WHY="auditctl cannot talk to the kernel"
		return 1
	}
	if [ "${pid:-0}" != 0 ]; then
		AUDIT_WHY="an audit daemon already runs (pid $pid); leaving it alone"
		return 1
	fi
	if auditctl -l | grep -q "key=$AUDIT_KEY"; then
		AUDIT_WHY="rules with key $AUDIT_KEY are already loaded"
		return 1
	fi
	return 0
}

# audit_start RULESET [DIR] : saves the kernel's audit settings, starts auditd with Debian's
# configuration (log file moved to a temporary directory) and Debian's audit.rules
# settings, and loads the rules for RULESET (exec, or file in DIR)
audit_start() {
	AUDIT_SAVED="$(audit_status enabled) $(audit_status failure) $(audit_status backlog_limit)"
	AUDIT_SAVED="$AUDIT_SAVED $(audit_status backlog_wait_time)"
	AUDIT_LOST0=$(audit_status lost)
	AUDIT_DIR=$(mktemp -d /tmp/vigil-bench-audit.XXXXXX)
	sed "s|^log_file = .*|log_file = $AUDIT_DIR/audit.log|" /etc/audit/auditd.conf \
		>"$AUDIT_DIR/auditd.conf"
	chmod 0640 "$AUDIT_DIR/auditd.conf"
	auditd -n -c "$AUDIT_DIR" -s enable >"$AUDIT_DIR/auditd.out" 2>&1 &
	AUDITD_PID=$!
	local i
	for i in $(seq 100); do
		[ "$(audit_status pid)" = "$AUDITD_PID" ] && break
		kill -0 "$AUDITD_PID" 2>/dev/null ||
			bench_die "auditd exited: $(cat "$AUDIT_DIR/auditd.out")"
		sleep 0.1
	done
	[ "$(audit_status pid)" = "$AUDITD_PID" ] || bench_die "auditd did not register"
	# the settings of Debian's /etc/audit/audit.rules
	auditctl -b 8192 --backlog_wait_time 60000 -f 1 >/dev/null
	case $1 in
	exec)
		auditctl -a always,exit -F arch=b64 -S execve -k "$AUDIT_KEY" >/dev/null
		;;
	file)
		auditctl -a always,exit -F arch=b64 -S creat,open,openat,openat2 -F dir="$2" \
			-F perm=w -k "$AUDIT_KEY" >/dev/null
		auditctl -a always,exit -F arch=b64 \
			-S rename,renameat,renameat2,unlink,unlinkat,chmod,fchmod,fchmodat \
			-F dir="$2" -k "$AUDIT_KEY" >/dev/null
		;;
	esac
}

# audit_stop : removes the rules, stops auditd, restores the saved settings; sets AUDIT_LOST
# (records the kernel lost) and AUDIT_RECORDS (SYSCALL records with the key in the logs
# still on disk; Debian's config rotates at 8 MB and keeps 5 logs)
audit_stop() {
	[ -n "$AUDITD_PID" ] || return 0
	auditctl -D -k "$AUDIT_KEY" >/dev/null 2>&1 || true
	local i
	for i in $(seq 50); do # let auditd take what the kernel still holds
		[ "$(audit_status backlog)" = 0 ] && break
		sleep 0.1
	done
	AUDIT_LOST=$(($(audit_status lost) - AUDIT_LOST0))
	kill -TERM "$AUDITD_PID" 2>/dev/null || true
	wait "$AUDITD_PID" 2>/dev/null || true
	AUDITD_PID=
	local enabled failure backlog wait_time
	read -r enabled failure backlog wait_time <<<"$AUDIT_SAVED"
	auditctl -e "$enabled" -f "$failure" -b "$backlog" --backlog_wait_time "$wait_time" \
		>/dev/null
	# the kernel's count of lost records was 0 before: put it back too
	[ "$AUDIT_LOST0" != 0 ] || auditctl --reset-lost >/dev/null
	AUDIT_RECORDS=$(cat "$AUDIT_DIR"/audit.log* 2>/dev/null |
		grep -c "type=SYSCALL.*key=\"$AUDIT_KEY\"" || true)
	rm -rf "$AUDIT_DIR"
	AUDIT_DIR=
}

# bench_cleanup : stops whatever is still running; for the EXIT trap
bench_cleanup() {
	if [ -n "$AGENT_PID" ]; then
		kill -TERM "$AGENT_PID" 2>/dev/null || true
		wait "$AGENT_PID" 2>/dev/null || true
		AGENT_PID=
	fi
	audit_stop
	if [ -n "${BPF_STATS_SAVED:-}" ]; then
		echo "$BPF_STATS_SAVED" >/proc/sys/kernel/bpf_stats_enabled
		BPF_STATS_SAVED=
	fi
	if [ -n "${STORM_DIR:-}" ]; then
		rm -rf "$STORM_DIR"
		STORM_DIR=
	fi
}
