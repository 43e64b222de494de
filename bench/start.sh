# shellcheck shell=bash
# Section "start" of bench/run.sh (sourced by it): what vigil-server's start-up costs when a
# rollout is rolling, which rebuilds its silence histogram from every agent's stored track,
# against the same store with the rollout halted (bench/server_start.py). BENCH_START_AGENTS
# agents in the store (1,000,000), BENCH_START_REPS starts each way (5). No target: the
# figure is recorded, the start must succeed.

section_start() {
	local out=$BENCH_OUT/start.txt line rolling halted agents
	mkdir -p "$BENCH_OUT"
	VIGIL_BUILD=$(realpath "$BUILD") "$PYTHON" bench/server_start.py \
		--agents "${BENCH_START_AGENTS:-1000000}" --reps "${BENCH_START_REPS:-5}" | tee "$out" ||
		bench_die "start: bench/server_start.py failed"
	line=$(tail -n 1 "$out")
	agents=$(json_num "$line" agents)
	rolling=$(json_num "$line" rolling_median_s)
	halted=$(json_num "$line" halted_median_s)
	[ -n "$agents" ] && [ -n "$rolling" ] && [ -n "$halted" ] || bench_die "start: no result line"
	SUMMARY+=("server start with $agents agents: ${rolling} s with a rolling rollout,\
 ${halted} s without")
}

SECTIONS+=(start)
