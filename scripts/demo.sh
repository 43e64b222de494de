#!/bin/sh
# The demo: vigil-agent on this host, printing its events (and alerts from the default
# content once rules are given) until interrupted.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: the sensor needs root (eBPF, netlink proc connector); run: sudo make run" >&2
	exit 1
fi
set -- --print
if [ -d content ] && [ -n "$(ls content/*.yml 2>/dev/null)" ] && ./build/vigil-agent --help | grep -q -- '--rules'; then
	set -- "$@" --rules content
fi
echo "demo: starting vigil-agent $*; press Ctrl-C to stop" >&2
exec ./build/vigil-agent "$@"
