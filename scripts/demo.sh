#!/bin/sh
# The demo: the whole product on one host. vigil-server with its embedded store, locally made
# keys, the default content (content/) signed and released through a short two-step plan, and
# vigil-agent on this host enrolling, receiving that release and reporting alerts, until Ctrl-C.
#
#   sudo make run                          until Ctrl-C
#   sudo DEMO_SECONDS=90 make run          stop after 90 s: exit 0 only when the agent
#                                          enrolled, ran the release through a completed
#                                          rollout and an alert of a detection this script
#                                          triggers reached the server
#
# Environment: BUILD (build), DEMO_DIR (BUILD/demo), DEMO_PORT (8080; 0 or a taken port: a
# free one), DEMO_SECONDS (unset: run until interrupted). A second run on the same DEMO_DIR
# keeps the store, keys, tokens and the agent's enrollment, and releases a newer version.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
self="$top/scripts/demo.sh"
cd "$top"

BUILD=${BUILD:-build}
DEMO_DIR=${DEMO_DIR:-$BUILD/demo}
DEMO_PORT=${DEMO_PORT:-8080}
DEMO_SECONDS=${DEMO_SECONDS:-}

HEARTBEAT=3                       # seconds between agent heartbeats (the server's default is 60)
PLAN="0:100:5s 1:100:5s"          # ring 0 (this host's group) bakes 5 s, then the rest 5 s
# A fleet of one host has no control group: the alert gate would hold this host's own alerts
# against an empty baseline, and any two real alerts in a bake would halt the release. The
# other gates (silence, reverts, restarts, liveness, drops, cpu) stay on.
GATES="--disable-gate alerts"
GROUP=demo
RULE=vigil-shell-history-disabled # content/defense_evasion.yml; triggered by `unset HISTFILE`

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# A path as the user would type it from the top of the tree.
show() {
	case $1 in
	"$top"/*) printf '%s\n' "${1#"$top"/}" ;;
	*) printf '%s\n' "$1" ;;
	esac
}

abspath() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$top/$1" ;;
	esac
}

# Value of the last "KEY": in one line of compact JSON (numbers and plain strings only).
json_field() {
	sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"
}

# the narrator below is this script again: `demo.sh --narrate DEMO_DIR URL VERSION HASH SINCE`
[ "${1:-}" != --narrate ] || DEMO_DIR=$2
BUILD=$(abspath "$BUILD")
DEMO_DIR=$(abspath "$DEMO_DIR")
VIGIL="$BUILD/vigil"
SERVER="$BUILD/vigil-server"
AGENT="$BUILD/vigil-agent"
KEYS="$DEMO_DIR/keys"
TOKENS="$DEMO_DIR/tokens"
DATA="$DEMO_DIR/server"
STATE="$DEMO_DIR/agent/state"
INBOX="$DEMO_DIR/agent/inbox"
ADMIN_TOKEN="$TOKENS/admin.token"
ENROLL_TOKEN="$TOKENS/enroll-$GROUP.token"

# Admin commands against the demo's server, one line of JSON each.
admin() {
	"$VIGIL" "$@" --server "$URL" --token-file "$ADMIN_TOKEN" --compact
}

agent_id() {
	[ -f "$STATE/uplink.json" ] && json_field agent_id <"$STATE/uplink.json"
}

# --- the narrator: a second copy of this script, in its own session, that follows the rollout
# and the agent through the server's admin API and triggers a detection once the release runs.
narrate() {
	version=$1 hash=$2 since=$3

	i=0
	until id=$(agent_id) && [ -n "$id" ]; do
		i=$((i + 1))
		[ $i -lt 120 ] || { say "the agent has not enrolled after 120 s: see its lines above"; return 1; }
		sleep 1
	done
	# the rollout starts once the agent heartbeats in this run, so it takes part in step 1
	hb0=$(admin agents show "$id" | json_field heartbeats)
	say "agent $id enrolled in group $GROUP (ring 0); waiting for its heartbeat"
	i=0
	while hb=$(admin agents show "$id" | json_field heartbeats) && [ "${hb:-0}" -le "${hb0:-0}" ]; do
		i=$((i + 1))
		[ $i -lt 120 ] || { say "no heartbeat from agent $id after 120 s"; return 1; }
		sleep 1
	done

	i=0
	# shellcheck disable=SC2086 # GATES is a list of options
	until out=$(admin rollouts start "$hash" --plan "$PLAN" $GATES 2>&1); do
		i=$((i + 1))
		# another rollout (of an interrupted earlier run) rolls: only one rolls at a time
		[ $i -lt 30 ] || { say "rollout not started: $out"; return 1; }
		[ $i -gt 1 ] || say "waiting for an earlier rollout to finish: $out"
		sleep 2
	done
	rollout=$(printf '%s\n' "$out" | sed -n 's/^{"id":\([0-9]*\).*/\1/p')
	echo "$rollout" >"$DEMO_DIR/rollout"
	say "release $version rolling out: rollout $rollout, plan \"$PLAN\" (ring 0 is this host's group), $GATES"

	step=0 state=rolling running=
	i=0
	while [ "$state" = rolling ] || [ "$state" = paused ] || [ -z "$running" ]; do
		i=$((i + 1))
		if [ $i -gt 300 ]; then
			say "rollout $rollout is $state after 300 s: $(show "$VIGIL") rollouts show $rollout"
			break
		fi
		sleep 1
		r=$(admin rollouts show "$rollout") || continue
		s=$(printf '%s\n' "$r" | json_field state)
		n=$(printf '%s\n' "$r" | sed -n 's/.*"step":\([0-9]*\).*/\1/p')
		if [ "$s" = rolling ] && [ "${n:-0}" -gt "$step" ]; then
			step=$n
			say "rollout $rollout promoted to step $((step + 1)): the release baked in ring 0"
		fi
		if [ "$s" != "$state" ]; then
			state=$s
			case $state in
			complete) say "rollout $rollout complete: release $version is generally available" ;;
			halted)
				why=$(admin rollouts decisions "$rollout" | grep -o '"reason":"gate [^"]*' |
					head -n 1 | cut -d '"' -f 4)
				say "rollout $rollout halted: $why ($(show "$VIGIL") rollouts decisions $rollout)"
				;;
			*) say "rollout $rollout is $state" ;;
			esac
		fi
		if [ -z "$running" ] && [ "$(admin agents show "$id" | json_field content_version)" = "$version" ]; then
			running=1
			say "agent $id runs content $version (its heartbeat says so)"
		fi
		[ "$state" != halted ] || break
	done

	# a harmless detection, once the release no longer bakes (its alert gate watches the bake)
	nonce="vigil-demo-$(date +%s)-$$"
	i=0
	while :; do
		if [ $((i % 20)) -eq 0 ]; then
			say "triggering a detection: sh -c 'unset HISTFILE ...' (rule $RULE)"
			# the shell lives a second, so that the proc-connector fallback, which reads
			# command lines from /proc, sees it too; the nonce marks this run's alert
			sh -c "unset HISTFILE; : $nonce; sleep 1; true"
		fi
		if admin alerts --agent "$id" --rule "$RULE" --since "$since" | grep -q -- "$nonce"; then
			say "alert $RULE from agent $id reached the server: $(show "$VIGIL") alerts --rule $RULE ..."
			say "running; press Ctrl-C to stop the agent and the server"
			return 0
		fi
		i=$((i + 1))
		[ $i -lt 60 ] || { say "no alert of $RULE on the server after 60 s"; return 1; }
		sleep 1
	done
}

if [ "${1:-}" = --narrate ]; then
	# $2 is the demo directory (so that it shows in this process's command line)
	URL=$3
	shift 3
	narrate "$@" || true
	exit 0
fi

# --- checks ---
if [ "$(id -u)" -ne 0 ]; then
	die "the sensor needs root (eBPF, netlink proc connector); run: sudo make run"
fi
for p in "$VIGIL" "$SERVER" "$AGENT"; do
	[ -x "$p" ] || die "$(show "$p") is missing: run make (or make BUILD=$(show "$BUILD")) first"
done
command -v setsid >/dev/null || die "setsid (util-linux) is missing"
case $DEMO_PORT in
'' | *[!0-9]*) die "DEMO_PORT=$DEMO_PORT: want a port number" ;;
esac
case $DEMO_SECONDS in
*[!0-9]*) die "DEMO_SECONDS=$DEMO_SECONDS: want a number of seconds" ;;
esac

umask 077
mkdir -p "$DEMO_DIR"
[ ! -L "$DEMO_DIR" ] || die "$DEMO_DIR is a symbolic link"
chmod 0700 "$DEMO_DIR"
mkdir -p "$KEYS" "$TOKENS" "$DEMO_DIR/releases" "$INBOX"

if [ -f "$DEMO_DIR/server.pid" ]; then
	old=$(cat "$DEMO_DIR/server.pid")
	if [ -n "$old" ] && tr '\0' ' ' 2>/dev/null <"/proc/$old/cmdline" | grep -q -- "--data $DATA "; then
		die "a server of $(show "$DEMO_DIR") is already running (pid $old): another demo? stop it with kill $old"
	fi
fi

# The process group of process $1 (the fifth field of /proc/PID/stat).
# shellcheck disable=SC2317 # used by cleanup
pgid_of() {
	sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 3
}

# --- processes this run starts, stopped in reverse order however the run ends ---
server_pid='' agent_pid='' narrator_pid=''
stopping=''
# shellcheck disable=SC2317 # reached through the traps below
cleanup() {
	[ -z "$stopping" ] || return 0
	stopping=1
	if [ -n "$narrator_pid" ]; then
		# its process group (the narrator and the command it runs) when it leads one
		if [ "$(pgid_of "$narrator_pid")" = "$narrator_pid" ] && [ "$narrator_pid" -gt 1 ]; then
			kill -TERM "-$narrator_pid" 2>/dev/null || true
		else
			kill -TERM "$narrator_pid" 2>/dev/null || true
		fi
		wait "$narrator_pid" 2>/dev/null || true
		narrator_pid=
	fi
	if [ -n "$agent_pid" ]; then
		# its last upload gets three seconds before it exits
		kill -TERM "$agent_pid" 2>/dev/null || true
		wait "$agent_pid" 2>/dev/null || true
		agent_pid=
	fi
	if [ -n "$server_pid" ]; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
		server_pid=
		rm -f "$DEMO_DIR/server.pid"
		say "server stopped; $(show "$DEMO_DIR") keeps the store, keys, tokens and agent state"
		say "(run again to continue with a newer release; rm -rf $(show "$DEMO_DIR") to start over)"
	fi
}
trap 'cleanup' EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP

# --- keys: a root key and a content-signing key, made once ---
if [ ! -f "$KEYS/root.json" ]; then
	rm -f "$KEYS/root.key" "$KEYS/root.pub" "$KEYS/signer.key" "$KEYS/signer.pub"
	"$VIGIL" keygen -o "$KEYS/root" >/dev/null
	"$VIGIL" keygen -o "$KEYS/signer" >/dev/null
	"$VIGIL" root create --root-key "$KEYS/root.key" --signer "$KEYS/signer.pub" \
		-o "$KEYS/root.json" >/dev/null
	say "made a trust root and a content-signing key in $(show "$KEYS") (secret keys mode 0600)"
fi

# --- the server's first tokens: printed once by --init, kept in files of mode 0600 ---
if [ ! -f "$ADMIN_TOKEN" ]; then
	[ ! -e "$DATA/vigil.db" ] ||
		die "$(show "$DATA") has a store but $(show "$ADMIN_TOKEN") is gone: rm -rf $(show "$DEMO_DIR") to start over"
	out=$("$SERVER" --data "$DATA" --init)
	printf '%s\n' "$out" | sed -n 's/^admin token: //p' >"$ADMIN_TOKEN"
	printf '%s\n' "$out" | sed -n 's/^enrollment token: //p' >"$TOKENS/enroll.token"
	if [ ! -s "$ADMIN_TOKEN" ] || [ ! -s "$TOKENS/enroll.token" ]; then
		die "vigil-server --init printed no tokens"
	fi
	say "server store made in $(show "$DATA"); its first tokens are in $(show "$TOKENS") (mode 0600)"
fi

# --- the server, in its own session so that Ctrl-C reaches the agent first ---
start_server() {
	: >"$DEMO_DIR/server.log"
	setsid "$SERVER" --data "$DATA" --listen "127.0.0.1:$1" --root "$KEYS/root.json" \
		--heartbeat-seconds "$HEARTBEAT" >>"$DEMO_DIR/server.log" 2>&1 </dev/null &
	server_pid=$!
	i=0
	while :; do
		port=$(sed -n 's/^vigil-server: listening on port \([0-9]*\).*/\1/p' "$DEMO_DIR/server.log")
		[ -z "$port" ] || break
		if ! kill -0 "$server_pid" 2>/dev/null; then
			wait "$server_pid" 2>/dev/null || true
			server_pid=
			return 1
		fi
		i=$((i + 1))
		[ $i -lt 200 ] || die "the server did not start: see $(show "$DEMO_DIR/server.log")"
		sleep 0.1
	done
	[ "$(cat "/proc/$server_pid/comm" 2>/dev/null)" = vigil-server ] ||
		die "lost track of the server (pid $server_pid)"
	echo "$server_pid" >"$DEMO_DIR/server.pid"
}
if ! start_server "$DEMO_PORT"; then
	if [ "$DEMO_PORT" -eq 0 ] || ! grep -q "cannot listen" "$DEMO_DIR/server.log"; then
		die "the server did not start: $(tail -n 3 "$DEMO_DIR/server.log")"
	fi
	say "port $DEMO_PORT is taken: the server takes a free port instead"
	start_server 0 || die "the server did not start: $(tail -n 3 "$DEMO_DIR/server.log")"
fi
URL="http://127.0.0.1:$port"
say "server listening on $URL (127.0.0.1 only; log $(show "$DEMO_DIR/server.log"))"

# --- this host's group and a single-use enrollment token for it ---
admin groups set "$GROUP" --ring 0 >/dev/null
if [ ! -f "$STATE/uplink.json" ]; then
	out=$(admin tokens enroll --group "$GROUP" --uses 1 --expires 1h)
	printf '%s\n' "$out" | json_field token >"$ENROLL_TOKEN"
	[ -s "$ENROLL_TOKEN" ] || die "no enrollment token in: $out"
	say "enrollment token for group $GROUP (ring 0, one use) in $(show "$ENROLL_TOKEN")"
fi

# --- the default content, signed with the demo's key under a version that grows each run ---
version=$(date +%s)
last=$(cat "$DEMO_DIR/version" 2>/dev/null || echo 0)
[ "$version" -gt "$last" ] || version=$((last + 1))
bundle="$DEMO_DIR/releases/content-$version.bundle"
out=$("$VIGIL" content build content --version "$version" --key "$KEYS/signer.key" \
	-o "$bundle" 2>&1) || die "content build failed: $out"
say "$out"
echo "$version" >"$DEMO_DIR/version"
out=$(admin releases create "$bundle")
hash=$(printf '%s\n' "$out" | json_field hash)
[ -n "$hash" ] || die "release not uploaded: $out"
say "release $version uploaded (${hash%"${hash#????????????}"}...)"

# --- what to do next, with this run's paths ---
v=$(show "$VIGIL")
conn="--server $URL --token-file $(show "$ADMIN_TOKEN")"
cat <<EOF

demo: next, from $top in another terminal (as root: the token files are mode 0600):
  sh -c 'unset HISTFILE'                     # a harmless detection: rule $RULE
  $v alerts --rule $RULE $conn
  $v agents list $conn
  $v rollouts list $conn
  $v content build content --version \$(date +%s) --key $(show "$KEYS/signer.key") -o new.bundle
  $v releases create new.bundle $conn          # prints its "hash"
  $v rollouts start HASH --plan "$PLAN" $GATES $conn
  $v rollouts show ID $conn                 # watch it roll out
  web console: $URL/console (paste the admin token from $(show "$ADMIN_TOKEN"))
  stop: Ctrl-C (stops the agent, then the server)

EOF

# --- the narrator, then the agent on this host ---
started=$(date +%s)
rm -f "$DEMO_DIR/rollout"
setsid sh "$self" --narrate "$DEMO_DIR" "$URL" "$version" "$hash" "$started" </dev/null &
narrator_pid=$!

set -- --print --alerts-only --server "$URL" --root "$KEYS/root.json" --state-dir "$STATE" \
	--content-dir "$INBOX"
[ -f "$STATE/uplink.json" ] || set -- "$@" --enroll-token-file "$ENROLL_TOKEN"
[ -z "$DEMO_SECONDS" ] || set -- "$@" --duration "$DEMO_SECONDS"
say "starting vigil-agent (alerts as NDJSON on stdout, what it does on stderr)"
"$AGENT" "$@" &
agent_pid=$!
agent_rc=0
wait "$agent_pid" || agent_rc=$?
agent_pid=

[ -n "$DEMO_SECONDS" ] || exit "$agent_rc"

# --- DEMO_SECONDS: did the whole chain work? ---
fail=
id=$(agent_id) || id=
if [ -z "$id" ]; then
	fail="the agent did not enroll"
else
	have=$(admin agents show "$id" | json_field content_version)
	if [ "$have" != "$version" ]; then
		fail="agent $id runs content ${have:-none}, not release $version"
	elif ! admin alerts --agent "$id" --rule "$RULE" --since "$started" | grep -q 'vigil-demo-'; then
		fail="no alert of $RULE triggered by the demo reached the server"
	fi
	rollout=$(cat "$DEMO_DIR/rollout" 2>/dev/null) || rollout=''
	state=$([ -z "$rollout" ] || admin rollouts show "$rollout" | json_field state)
	[ "$state" = complete ] ||
		fail="${fail:+$fail; }the rollout of release $version is ${state:-not started}, not complete"
fi
[ "$agent_rc" -eq 0 ] || fail="${fail:+$fail; }the agent exited with status $agent_rc"
if [ -n "$fail" ]; then
	say "FAILED: $fail" >&2
	exit 1
fi
say "ok: agent $id enrolled, runs release $version (rollout $rollout complete) and its alert reached the server"
exit 0
