#!/bin/sh
# Writes src/cli/sim_scenarios.c, the built-in scenarios of `vigil sim` compiled into the tool
# so that `--scenario NAME` works from any directory. Run it after editing sim/scenarios/*.scn;
# tests/system/test_sim.py checks that the table and the files agree.
#   sim/embed.sh            rewrite src/cli/sim_scenarios.c
#   sim/embed.sh --check    exit 1 when it is out of date
set -eu
cd "$(dirname "$0")/.."
out=src/cli/sim_scenarios.c
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	echo "/*"
	echo " * The built-in scenarios of vigil sim, generated from the files sim/scenarios/NAME.scn"
	echo " * by sim/embed.sh: edit those files and run it, not this one."
	echo " */"
	echo "#include \"sim_scenarios.h\""
	echo
	echo "const struct sim_builtin sim_builtins[] = {"
	for f in sim/scenarios/*.scn; do
		name=$(basename "$f" .scn)
		printf '\t{"%s",\n' "$name"
		# every line as a C string: backslash and quote escaped, newline kept
		awk '{ gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); printf "\t \"%s\\n\"\n", $0 }' "$f"
		printf '\t},\n'
	done
	echo "};"
	echo
	echo "const unsigned sim_builtin_count = sizeof(sim_builtins) / sizeof(sim_builtins[0]);"
} >"$tmp"
if [ "${1:-}" = --check ]; then
	cmp -s "$tmp" "$out" || { echo "$out is out of date: run sim/embed.sh" >&2; exit 1; }
	exit 0
fi
cp "$tmp" "$out"
