# Section "activation" of bench/run.sh (sourced by it): content activation on the agent.
# A bundle holding the converted SigmaHQ Linux rules plus content/ is activated
# BENCH_ACTIVATION_REPS times (default 5) by a running vigil-agent whose replay source is fed a
# continuous event stream; the times are the agent's own step timings (state.json). Targets
# (issue 4): activation (read + verify + compile + test-load + trial record + swap) <= 200 ms,
# events lost during the swaps 0. The driver is bench/activation_bench.py.

ACTIVATION_MAX_MS=200

section_activation() {
	local out=$BENCH_OUT/activation.txt line total lost c_total c_lost
	"${PYTHON:-/usr/bin/python3}" bench/activation_bench.py --build "$BUILD" \
		--reps "${BENCH_ACTIVATION_REPS:-5}" | tee "$out" ||
		bench_die "activation: bench/activation_bench.py failed"
	line=$(grep '^activation-bench:' "$out" | tail -n 1)
	[ -n "$line" ] || bench_die "activation: no result line"
	total=$(sed -n 's/.* total_ms=\([0-9.]*\).*/\1/p' <<<"$line")
	lost=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' <<<"$line")
	check c_total "activation ms" "$total" $ACTIVATION_MAX_MS
	check c_lost "activation events lost" "$lost" 0
	SUMMARY+=("activation: $total ms (<= $ACTIVATION_MAX_MS ms $c_total), events lost during swaps $lost ($c_lost)")
}

SECTIONS+=(activation)
