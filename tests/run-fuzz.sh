#!/bin/sh
# Runs each libFuzzer target given, two at a time, on a corpus seeded from
# tests/fuzz/corpus/NAME. Usage: run-fuzz.sh SECONDS [NAME=SECONDS ...] TARGET...
# A crash, leak, timeout or sanitizer report fails the run.
set -u
seconds=$1
shift
overrides=""
while [ $# -gt 0 ] && [ "${1#*=}" != "$1" ]; do
	overrides="$overrides $1"
	shift
done

run_one() {
	t=$1
	seconds=$2
	name=$(basename "$t")
	dir=$(dirname "$t")
	work="$dir/corpus-$name"
	mkdir -p "$work"
	if [ -d "tests/fuzz/corpus/$name" ]; then
		cp -n "tests/fuzz/corpus/$name"/* "$work"/ 2>/dev/null || true
	fi
	if "$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$dir/crash-$name-" "$work" >"$dir/$name.log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/$name.log")
		echo "fuzz: $name ${seconds}s, $runs runs, no crash"
	else
		echo "fuzz: $name FAILED after at most ${seconds}s, see $dir/$name.log" >&2
		grep -E 'ERROR|SUMMARY|Test unit written' "$dir/$name.log" | head -n 10 >&2
		return 1
	fi
}

failed=0
pids=""
for t in "$@"; do
	name=$(basename "$t")
	s=$seconds
	for o in $overrides; do
		[ "${o%%=*}" = "$name" ] && s=${o#*=}
	done
	run_one "$t" "$s" &
	pids="$pids $!"
	# two cores: at most two fuzzers at once
	if [ $(echo $pids | wc -w) -ge 2 ]; then
		for p in $pids; do wait "$p" || failed=$((failed + 1)); done
		pids=""
	fi
done
for p in $pids; do wait "$p" || failed=$((failed + 1)); done
echo "fuzz targets: $(($# - failed)) passed, $failed failed"
[ $failed -eq 0 ]
