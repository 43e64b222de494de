#!/usr/bin/env bash
# vigil's benchmarks, run by `make bench` (after `make`) or directly:
#   ./bench/run.sh [SECTION...]      every section when none is named
# Sections: sensor, below (what vigil-agent costs the programs it watches, against no sensor
# and against Debian's auditd), then those sourced from bench/NAME.sh. Each section is a
# function section_NAME that prints its table, appends one part to SUMMARY and records missed
# targets in MISSED; the run ends with one "bench summary:" line. To add a benchmark, write
# section_NAME in bench/NAME.sh, source it below and add NAME to SECTIONS there.
#
# Environment: BENCH_REPS (11) rounds of the sensor storms (a round runs each mode once; at
# least 5 rounds for a verdict), BENCH_EXEC_N (5000), BENCH_FILE_N (50000), BENCH_JOBS (1)
# storm workers, BENCH_SENSOR_MODES ("none vigil auditd"), BENCH_STORMS ("exec file"),
# BENCH_BPF_STATS=1 to turn on kernel.bpf_stats_enabled during the runs and print what each
# of the agent's BPF programs cost in the kernel, and the sensor's whole CPU (programs and
# agent) against the storm's (the statistics add a little overhead of their own),
# BENCH_STRICT=1 to exit 1 when a target is missed, BUILD (build). Raw runs go to
# $BUILD/bench/*.tsv.
# shellcheck disable=SC2086 # lists of runs (RATES[...] and the like) are split on purpose
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SECTIONS=(sensor)
. bench/engine.sh # section "engine": the rule engine against a naive evaluator
. bench/activation.sh # section "activation": content activation on the agent
. bench/heartbeat.sh # section "heartbeat": vigil-server under simulated agents
. bench/sim.sh # section "sim": vigil sim, a million hosts through a whole rollout
. bench/start.sh # section "start": vigil-server's start-up with a rolling rollout
REPS=${BENCH_REPS:-11}
EXEC_N=${BENCH_EXEC_N:-5000}
FILE_N=${BENCH_FILE_N:-50000}
JOBS=${BENCH_JOBS:-1}
BPF_STATS=${BENCH_BPF_STATS:-0}
SUMMARY=()
MISSED=()
NOISE=()
INCONCLUSIVE=()

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# check VAR NAME VALUE LIMIT [LOW HIGH] : sets VAR to "ok" when VALUE <= LIMIT, else to
# "MISSED" and records the miss. VALUE n/a: "not measured". With LOW and HIGH, the one-sided
# 95 % confidence bounds of a median (median_bounds), the verdict is the bounds': "ok" when
# HIGH <= LIMIT, "MISSED" when LOW > LIMIT, and otherwise "inconclusive" (recorded too): the
# runs cannot tell which side of LIMIT the median is on.
check() {
	if [ "$3" = n/a ]; then
		printf -v "$1" "not measured"
	elif [ $# -lt 6 ]; then
		if le "$3" "$4"; then
			printf -v "$1" ok
		else
			printf -v "$1" MISSED
			MISSED+=("$2 $3 > $4")
		fi
	elif [ "$5" = n/a ]; then
		printf -v "$1" "inconclusive: too few runs for a bound"
		INCONCLUSIVE+=("$2 $3 from too few runs for a bound (at least 5)")
	elif le "$6" "$4"; then
		printf -v "$1" "ok, 95%% bound %s" "$6"
	elif ! le "$5" "$4"; then
		printf -v "$1" "MISSED, 95%% bound %s" "$5"
		MISSED+=("$2 $3 > $4 (95% lower bound $5)")
	else
		printf -v "$1" "inconclusive: 95%% bounds %s..%s" "$5" "$6"
		INCONCLUSIVE+=("$2 $3 with 95% bounds $5..$6 around $4")
	fi
}

# ---------------------------------------------------------------------------------------
# Section "sensor": exec storm and file storm, each with no sensor, with vigil-agent
# (BPF source, NDJSON to a file) and with auditd (equivalent rules), interleaved.
# Targets: vigil overhead <= 3% (exec) and <= 5% (file), zero drops, peak RSS <= 20 MB.
# ---------------------------------------------------------------------------------------

SENSOR_EXEC_MAX=3
SENSOR_FILE_MAX=5
SENSOR_RSS_MAX_MB=20

declare -A RATES STORMCPU SEEN DROPS RSS BPFMAP CPU LOST RECORDS

storm_run() {
	case $1 in
	exec) "$BENCH_OUT/exec_storm" -n "$EXEC_N" -j "$JOBS" /bin/true ;;
	file) "$BENCH_OUT/file_storm" -n "$FILE_N" -j "$JOBS" "$STORM_DIR" ;;
	esac
}

# sensor_measure STORM MODE REP : one timed storm under MODE (none, vigil, auditd)
sensor_measure() {
	local storm=$1 mode=$2 rep=$3 line cpu0 cpu1 wake0 wake1 extra="" vals stats0=""
	local seen=- drops=- rss=- cpu=- lost=- records=-
	case $mode in
	vigil)
		agent_start "$BENCH_OUT/agent.ndjson" --source bpf
		sleep 1 # past start-up work
		cpu0=$(agent_cpu)
		wake0=$(agent_wakeups)
		[ "$BPF_STATS" != 1 ] || stats0=$(agent_bpf_stats)
		;;
	auditd)
		audit_start "$storm" "$STORM_DIR"
		sleep 0.5
		;;
	esac
	line=$(storm_run "$storm") || bench_die "$storm storm failed under $mode"
	rate_of "$line"
	case $mode in
	vigil)
		cpu1=$(agent_cpu)
		wake1=$(agent_wakeups)
		if [ "$BPF_STATS" = 1 ]; then
			local n=$EXEC_N
			[ "$storm" = exec ] || n=$FILE_N
			local kline kern
			kline=$(bpf_stats_delta "$stats0" "$(agent_bpf_stats)" "$n")
			echo "    in-kernel: $kline"
			# the sensor's whole work: its programs (in the storm's time) and the agent
			kern=$(sed -n 's/.*total \([0-9.]*\) s = .*/\1/p' <<<"$kline")
			awk -v k="${kern:-0}" -v a0="$cpu0" -v a1="$cpu1" -v s="$STORM_CPU" -v n="$n" \
				'BEGIN { w = k + a1 - a0; printf "    sensor CPU: programs %.3f s +" \
				" agent %.3f s = %.1f us per storm op, %.2f %% of the storm CPU\n",
				k, a1 - a0, w * 1e6 / n, w / s * 100 }'
		fi
		sleep 1 # let the agent drain what the storm left in the ring buffer
		agent_stop
		mapfile -t vals < <(metric_get ok source drops events.exec events.create \
			events.rename events.delete)
		[ "${vals[0]}" = 1 ] ||
			bench_die "vigil-agent (exit $AGENT_STATUS) ended without a final metric line"
		[ "${vals[1]}" = bpf ] || echo "  warning: the agent ran the ${vals[1]} source"
		drops=${vals[2]}
		[ "$drops" != "?" ] || bench_die "the agent's final metric line has no vigil.drops"
		if [ "$storm" = exec ]; then
			seen=${vals[3]}
		else
			seen=$(printf '%s\n' "${vals[4]}" "${vals[5]}" "${vals[6]}" | sort -n | head -n 1)
		fi
		rss=$AGENT_HWM_KB
		cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')
		extra="drops $drops, seen $seen, VmHWM $rss kB ($AGENT_BPFMAP_KB kB BPF maps),"
		extra="$extra agent CPU $cpu s, $((wake1 - wake0)) wakeups"
		BPFMAP[$storm]+="$AGENT_BPFMAP_KB "
		rm -f "$BENCH_OUT/agent.ndjson" "$BENCH_OUT/agent.ndjson.stderr"
		SEEN[$storm]+="$seen "
		DROPS[$storm]+="$drops "
		RSS[$storm]+="$rss "
		CPU[$storm]+="$cpu "
		;;
	auditd)
		audit_stop
		lost=$AUDIT_LOST
		records=$AUDIT_RECORDS
		extra="lost $lost, SYSCALL records $records"
		LOST[$storm]+="$lost "
		RECORDS[$storm]+="$records "
		;;
	esac
	RATES[$storm.$mode]+="$RATE "
	STORMCPU[$storm.$mode]+="$STORM_CPU "
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$storm" "$mode" "$rep" "$RATE" \
		"$STORM_CPU" "$drops" "$seen" "$rss" "$cpu" "$lost" "$records" >>"$SENSOR_TSV"
	printf '  %-4s run %d/%d  %-6s %10.1f /s  storm CPU %6.2f s  %s\n' "$storm" "$rep" "$REPS" \
		"$mode" "$RATE" "$STORM_CPU" "$extra"
}

# paired_overheads STORM MODE : the overhead of each run of MODE against the run of none in
# the same round (the modes of a round run back to back, so drift on the machine hits both)
paired_overheads() {
	local -a base rate
	local i
	read -r -a base <<<"${RATES[$1.none]:-}"
	read -r -a rate <<<"${RATES[$1.$2]:-}"
	for i in "${!rate[@]}"; do
		overhead "${base[$i]}" "${rate[$i]}"
		echo
	done
}

# sensor_report STORM TITLE N : the table of one storm; sets REPORT_VIGIL and REPORT_AUDITD
# (the median of the overheads paired by round) and REPORT_BOUNDS (vigil's one-sided 95 %
# bounds of that median, "LOW HIGH")
sensor_report() {
	local storm=$1 base mode med best spread base_cpu cpu
	base=$(median ${RATES[$storm.none]})
	base_cpu=$(median ${STORMCPU[$storm.none]})
	echo
	echo "sensor / $2 ($JOBS worker(s)), $REPS runs per mode"
	echo "  paired: each run against the run of none in the same round; bounds: one-sided 95 %"
	printf '  %-7s %11s %8s %11s %9s %9s %15s %10s %9s   %s\n' mode "median /s" spread \
		"best /s" overhead paired "paired bounds" "storm CPU" "CPU added" "runs (per second)"
	for mode in "${MODES[@]}"; do
		med=$(median ${RATES[$storm.$mode]})
		best=$(maxof ${RATES[$storm.$mode]})
		cpu=$(median ${STORMCPU[$storm.$mode]})
		# half the range of the runs, against their median
		spread=$(printf '%s\n' ${RATES[$storm.$mode]} | sort -g | awk -v m="$med" \
			'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f", (hi - lo) / 2 / m * 100 }')
		local ov=- pmed=- bounds=- cov=-
		if [ "$mode" != none ]; then
			local pairs
			pairs=$(paired_overheads "$storm" "$mode")
			ov="$(overhead "$base" "$med")%"
			pmed=$(median $pairs)
			bounds=$(median_bounds $pairs)
			cov="$(awk -v b="$base_cpu" -v c="$cpu" 'BEGIN { printf "%.1f", (c / b - 1) * 100 }')%"
			case $mode in
			vigil) REPORT_VIGIL=$pmed REPORT_BOUNDS=$bounds ;;
			auditd) REPORT_AUDITD=$pmed ;;
			esac
			pmed="$pmed%"
			[ "$bounds" = "n/a n/a" ] ||
				bounds=$(awk -v b="$bounds" 'BEGIN { split(b, v, " ")
					printf "%.1f..%.1f%%", v[1], v[2] }')
		fi
		printf '  %-7s %11.1f %8s %11.1f %9s %9s %15s %9.2fs %9s   %s\n' "$mode" "$med" \
			"+-$spread%" "$best" "$ov" "$pmed" "$bounds" "$cpu" "$cov" \
			"${RATES[$storm.$mode]}"
	done
	[ -z "${RATES[$storm.vigil]:-}" ] || echo "  paired overheads of vigil by round:" \
		"$(paired_overheads "$storm" vigil | sed 's/$/%/' | paste -sd ' ')"
	REPORT_DROPS=0
	REPORT_SEEN_OK=1
	REPORT_RSS_KB=0
	if [ -n "${SEEN[$storm]:-}" ]; then
		local min_seen
		min_seen=$(printf '%s\n' ${SEEN[$storm]} | sort -n | head -n 1)
		REPORT_DROPS=$(printf '%s\n' ${DROPS[$storm]} | awk '{ s += $1 } END { print s + 0 }')
		REPORT_RSS_KB=$(maxof ${RSS[$storm]})
		[ "$min_seen" -ge "$3" ] || REPORT_SEEN_OK=0
		printf '  vigil: drops %s over all runs; fewest events seen in a run %s (storm: %s);' \
			"$REPORT_DROPS" "$min_seen" "$3"
		printf ' peak RSS %.1f MB (BPF maps %.1f MB of it); agent CPU %s s per run (median)\n' \
			"$(awk -v k="$REPORT_RSS_KB" 'BEGIN { print k / 1024 }')" \
			"$(awk -v k="$(maxof ${BPFMAP[$storm]})" 'BEGIN { print k / 1024 }')" \
			"$(median ${CPU[$storm]})"
	fi
	if [ -n "${LOST[$storm]:-}" ]; then
		printf '  auditd: records lost by the kernel %s; SYSCALL records kept in the logs: %s\n' \
			"$(printf '%s\n' ${LOST[$storm]} | awk '{ s += $1 } END { print s + 0 }')" \
			"${RECORDS[$storm]}"
	fi
}

section_sensor() {
	[ "$(id -u)" = 0 ] || bench_die "sensor: needs root (BPF for the agent, auditd)"
	build_driver exec_storm
	build_driver file_storm
	read -r -a MODES <<<"${BENCH_SENSOR_MODES:-none vigil auditd}"
	[ "${MODES[0]}" = none ] || bench_die "sensor: BENCH_SENSOR_MODES must start with none"
	read -r -a STORMS <<<"${BENCH_STORMS:-exec file}"
	local storm seen_storms=" "
	for storm in "${STORMS[@]}"; do
		case $storm in
		exec | file) ;;
		*) bench_die "sensor: unknown storm '$storm' in BENCH_STORMS (storms: exec file)" ;;
		esac
		[[ "$seen_storms" != *" $storm "* ]] || bench_die "sensor: BENCH_STORMS names $storm twice"
		seen_storms+="$storm "
	done
	[ ${#STORMS[@]} -gt 0 ] || bench_die "sensor: BENCH_STORMS names no storm"
	if [[ " ${MODES[*]} " == *" auditd "* ]] && ! audit_usable; then
		echo "sensor: no auditd column: $AUDIT_WHY"
		MODES=("${MODES[@]/auditd/}")
		read -r -a MODES <<<"${MODES[*]}"
	fi
	if [[ " ${MODES[*]} " == *" vigil "* ]]; then
		[ -x "$BUILD/vigil-agent" ] || bench_die "sensor: $BUILD/vigil-agent is missing: run make"
	fi
	local others
	others=$(pgrep -d, -x vigil-agent || true)
	if [ -n "$others" ]; then
		echo "sensor: WARNING: other vigil-agent processes run ($others): every mode, the" \
			"baseline too, pays for their BPF programs"
		NOISE+=("other vigil-agent running")
	fi
	if [ "$BPF_STATS" = 1 ]; then
		BPF_STATS_SAVED=$(cat /proc/sys/kernel/bpf_stats_enabled)
		echo 1 >/proc/sys/kernel/bpf_stats_enabled
	fi
	STORM_DIR=$(mktemp -d "$(realpath "$BENCH_OUT")/storm.XXXXXX")
	SENSOR_TSV=$BENCH_OUT/sensor.tsv
	printf 'storm\tmode\trep\tper_second\tstorm_cpu_s\tdrops\tseen\tvmhwm_kb\tagent_cpu_s' \
		>"$SENSOR_TSV"
	printf '\taudit_lost\taudit_records\n' >>"$SENSOR_TSV"
	echo "sensor: $(nproc) CPUs, $(uname -r), storms: ${STORMS[*]} (exec $EXEC_N, file $FILE_N)," \
		"$REPS runs per mode, modes: ${MODES[*]}; load average $(cut -d' ' -f1-3 /proc/loadavg)"

	"$BENCH_OUT/exec_storm" -n 200 >/dev/null # warm-up: page cache, dentries
	"$BENCH_OUT/file_storm" -n 5000 "$STORM_DIR" >/dev/null

	local rep k n=${#MODES[@]} exec_v=n/a exec_a=n/a file_v=n/a file_a=n/a
	local file_b="n/a n/a" exec_b="n/a n/a" rss_kb=0
	local drops_all=0 seen_ok=1
	for storm in "${STORMS[@]}"; do
		for rep in $(seq "$REPS"); do
			# rotate the order each run so that drift and warm-up hit every mode alike
			for k in $(seq 0 $((n - 1))); do
				sensor_measure "$storm" "${MODES[$(((k + rep - 1) % n))]}" "$rep"
			done
		done
	done
	rmdir "$STORM_DIR"
	STORM_DIR=
	if [ -n "${BPF_STATS_SAVED:-}" ]; then
		echo "$BPF_STATS_SAVED" >/proc/sys/kernel/bpf_stats_enabled
		BPF_STATS_SAVED=
	fi
	rm -f "$BENCH_OUT/agent.ndjson" "$BENCH_OUT/agent.ndjson.stderr"
	echo "sensor: load average after the runs $(cut -d' ' -f1-3 /proc/loadavg)"

	for storm in "${STORMS[@]}"; do
		REPORT_VIGIL=n/a REPORT_AUDITD=n/a REPORT_BOUNDS="n/a n/a"
		if [ "$storm" = exec ]; then
			sensor_report exec "exec storm: $EXEC_N fork+exec+wait of /bin/true" "$EXEC_N"
			exec_v=$REPORT_VIGIL exec_a=$REPORT_AUDITD exec_b=$REPORT_BOUNDS
		else
			sensor_report file "file storm: $FILE_N x (create+write, rename, unlink)" "$FILE_N"
			file_v=$REPORT_VIGIL file_a=$REPORT_AUDITD file_b=$REPORT_BOUNDS
		fi
		drops_all=$((drops_all + REPORT_DROPS))
		rss_kb=$(maxof "$rss_kb" "$REPORT_RSS_KB")
		[ "$REPORT_SEEN_OK" = 1 ] || seen_ok=0
	done

	local rss_mb c_exec c_file c_drops c_rss
	rss_mb=$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')
	if [[ " ${MODES[*]} " != *" vigil "* ]]; then
		drops_all=n/a rss_mb=n/a
	fi
	[ "$seen_ok" = 1 ] || MISSED+=("sensor: the agent reported fewer events than the storm made")
	check c_exec "sensor exec overhead %" "$exec_v" $SENSOR_EXEC_MAX $exec_b
	check c_file "sensor file overhead %" "$file_v" $SENSOR_FILE_MAX $file_b
	check c_drops "sensor drops" "$drops_all" 0
	check c_rss "sensor agent RSS MB" "$rss_mb" $SENSOR_RSS_MAX_MB
	SUMMARY+=("sensor: exec vigil $exec_v% (<= $SENSOR_EXEC_MAX% $c_exec) auditd $exec_a%,\
 file vigil $file_v% (<= $SENSOR_FILE_MAX% $c_file) auditd $file_a%, drops $drops_all ($c_drops),\
 agent RSS $rss_mb MB (<= $SENSOR_RSS_MAX_MB MB $c_rss)")
}

# ---------------------------------------------------------------------------------------

main() {
	local want=("$@") s
	[ ${#want[@]} -gt 0 ] || want=("${SECTIONS[@]}")
	for s in "${want[@]}"; do
		declare -F "section_$s" >/dev/null ||
			bench_die "unknown section '$s' (sections: ${SECTIONS[*]})"
	done
	mkdir -p "$BENCH_OUT"
	for s in "${want[@]}"; do
		"section_$s"
	done
	local verdict
	if [ ${#MISSED[@]} -eq 0 ] && [ ${#INCONCLUSIVE[@]} -eq 0 ]; then
		verdict="all targets met"
	elif [ ${#MISSED[@]} -eq 0 ]; then
		verdict="no target missed"
	else
		verdict="${#MISSED[@]} target(s) missed: $(IFS=';'; echo "${MISSED[*]}")"
	fi
	if [ ${#INCONCLUSIVE[@]} -gt 0 ]; then
		verdict="$verdict; ${#INCONCLUSIVE[@]} inconclusive (too noisy to tell):"
		verdict="$verdict $(IFS=';'; echo "${INCONCLUSIVE[*]}")"
	fi
	[ ${#NOISE[@]} -eq 0 ] || verdict="$verdict (noise: $(IFS=';'; echo "${NOISE[*]}"))"
	echo
	local joined
	joined=$(printf ' | %s' "${SUMMARY[@]}")
	echo "bench summary: ${joined:3} => $verdict"
	[ ${#MISSED[@]} -eq 0 ] || [ "${BENCH_STRICT:-0}" != 1 ] || exit 1
}

main "$@"
