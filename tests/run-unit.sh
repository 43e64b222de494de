#!/bin/sh
# Runs every cmocka unit-test binary given and ends with one summary line over all of them.
passed=0
failed=0
for t in "$@"; do
	if "$t"; then
		passed=$((passed + 1))
	else
		echo "FAILED: $t" >&2
		failed=$((failed + 1))
	fi
done
echo "unit test binaries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
