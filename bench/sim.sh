# shellcheck shell=bash
# Section "sim" of bench/run.sh (sourced by it): vigil sim drives the rollout controller with
# BENCH_SIM_AGENTS simulated hosts (1,000,000) through a whole rollout of the built-in
# "good" scenario, then replays "crash-on-load" (July 2024) at the same size. Targets
# (issue 6): the whole rollout in <= 60 s wall and <= 2 GB RAM on this machine; the bad
# release exposes <= 0.1 % of the fleet and leaves no host to repair by hand; the good one is
# never halted and completes within the plan's nominal time. Output: $BENCH_OUT/sim-*.out.

SIM_MAX_WALL_S=60
SIM_MAX_RSS_MB=2048
SIM_MAX_EXPOSED=0.001

# sim_field LINE KEY : the number (or true/false/null) KEY holds in the JSON line LINE
sim_field() {
	sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1"
}

section_sim() {
	local n=${BENCH_SIM_AGENTS:-1000000} s out line stats wall rss
	local c_wall c_rss c_exp good_wall good_rss exposed manual halted completed
	[ -x "$BUILD/vigil" ] || bench_die "sim: $BUILD/vigil is missing: run make"
	mkdir -p "$BENCH_OUT"
	echo "sim: $n hosts, $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
	for s in good crash-on-load; do
		out=$BENCH_OUT/sim-$s.out
		"$BUILD/vigil" sim --agents "$n" --scenario "$s" --seed 1 >"$out" ||
			bench_die "sim: vigil sim --scenario $s failed"
		line=$(tail -n 1 "$out")
		# "sim: H heartbeats in W s wall, peak RSS R MB"
		stats=$(grep '^sim: .* heartbeats in ' "$out" | tail -n 1)
		wall=$(sed -n 's/.* in \([0-9.]*\) s wall.*/\1/p' <<<"$stats")
		rss=$(sed -n 's/.*peak RSS \([0-9]*\) MB.*/\1/p' <<<"$stats")
		[ -n "$wall" ] && [ -n "$rss" ] || bench_die "sim: no timing line from $s"
		echo "  $s: $stats"
		echo "  $s: $(grep -E ' (halt|complete) at ' "$out" | head -n 2 | tr '\n' ' ')"
		check c_wall "sim $s wall s" "$wall" $SIM_MAX_WALL_S
		check c_rss "sim $s RSS MB" "$rss" $SIM_MAX_RSS_MB
		case $s in
		good)
			good_wall=$wall good_rss=$rss
			halted=$(sim_field "$line" halted)
			completed=$(sim_field "$line" completed)
			[ "$halted" = false ] || MISSED+=("sim: the good release was halted")
			[ "$completed" = true ] || MISSED+=("sim: the good release did not complete")
			;;
		crash-on-load)
			exposed=$(sim_field "$line" exposed_max_fraction)
			manual=$(sim_field "$line" hosts_needing_manual_repair)
			check c_exp "sim crash-on-load exposure" "$exposed" $SIM_MAX_EXPOSED
			[ "$manual" = 0 ] || MISSED+=("sim: $manual hosts need manual repair")
			;;
		esac
	done
	SUMMARY+=("sim: $n hosts, good rollout $good_wall s wall (<= $SIM_MAX_WALL_S s $c_wall), $good_rss MB (<= $SIM_MAX_RSS_MB $c_rss), crash-on-load exposure $exposed (<= $SIM_MAX_EXPOSED $c_exp), manual repair $manual")
}

SECTIONS+=(sim)
