#!/bin/sh
# Runs each libFuzzer target for SECONDS on its corpus (seeded from tests/fuzz/corpus/NAME).
# A crash, leak or sanitizer report fails the run.
seconds=$1
shift
status=0
for t in "$@"; do
	name=$(basename "$t")
	work="${t%/*}/corpus-$name"
	mkdir -p "$work"
	seed="tests/fuzz/corpus/$name"
	if [ -d "$seed" ]; then
		cp -n "$seed"/* "$work"/ 2>/dev/null || true
	fi
	echo "fuzz: $name for ${seconds}s"
	if ! "$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="${t%/*}/crash-$name-" "$work" >"${t%/*}/$name.log" 2>&1; then
		echo "fuzz: $name FAILED, see ${t%/*}/$name.log" >&2
		tail -n 40 "${t%/*}/$name.log" >&2
		status=1
	else
		grep -E 'stat::number_of_executed_units' "${t%/*}/$name.log" | sed "s/^/fuzz: $name /"
	fi
done
exit $status
