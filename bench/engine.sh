# shellcheck shell=bash
# Section "engine" of bench/run.sh (sourced by it): the rule engine against a naive evaluator
# over the converted SigmaHQ rules and content/, on the committed live corpus, one CPU.
# Targets (SigmaHQ set): >= 1,000,000 events/s, compile <= 100 ms, memory <= 10 MB; engine
# and naive evaluator must raise the same alerts. The figures come from bench/engine_bench.c,
# built by `make bench`; ENGINE_BENCH_ARGS adds options to it (--seconds, --runs, ...).

section_engine() {
	local bin=$BUILD/bench/engine_bench out=$BENCH_OUT/engine.summary rc=0 line
	[ -x "$bin" ] || bench_die "engine: $bin is missing: run make bench"
	# shellcheck disable=SC2086 # ENGINE_BENCH_ARGS is a list of options
	"$bin" --vigil "$BUILD/vigil" --summary "$out" ${ENGINE_BENCH_ARGS:-} || rc=$?
	# 3: it ran, and engine and naive evaluator disagree (listed in the summary file)
	[ "$rc" = 0 ] || [ "$rc" = 3 ] || bench_die "engine: $bin failed (exit $rc)"
	SUMMARY+=("$(head -n 1 "$out")")
	while IFS= read -r line; do
		MISSED+=("$line")
	done < <(tail -n +2 "$out")
}

SECTIONS+=(engine)
