#!/bin/sh
# Installs the Debian packages that vigil's build, tests and benchmarks need.
# Idempotent: does nothing when every package is already installed.
set -eu

PACKAGES="make gcc g++ clang llvm pkg-config bpftool libbpf-dev libelf-dev zlib1g-dev
libsodium-dev libyaml-dev libjansson-dev libcurl4-openssl-dev libmicrohttpd-dev
libsqlite3-dev libpq-dev libhyperscan-dev libre2-dev libpcre2-dev libcmocka-dev libseccomp-dev
libclang-rt-14-dev python3 python3-pytest python3-nacl auditd procps iproute2 zstd"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

echo "setup: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "setup: missing packages and not root; run: sudo $0" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# auditd must not start its daemon at install time inside a build; policy-rc.d stops that.
apt-get install -y -qq --no-install-recommends $missing
