#!/usr/bin/env bash
# make demo: start scavd with the default configuration on a private socket,
# run the demo client (docs/examples/demo.c) and show `scavctl status`
# before and after, then stop the daemon cleanly.
#
#   tests/demo.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scavd=$build/scavd
scavctl=$build/scavctl
for f in "$scavd" "$scavctl" "$build/libscav.a"; do
        [ -e "$f" ] || { echo "demo: $f missing; run make first" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/scavd-demo.XXXXXX)
export SCAVD_SOCKET=$tmp/scavd.sock
daemon_pid=
cleanup() {
        if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
                kill -KILL "$daemon_pid" 2>/dev/null || true
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The demo is an ordinary libscav client.
${CC:-cc} -std=gnu17 -O2 -Wall -Iinclude docs/examples/demo.c "$build/libscav.a" -pthread -o "$tmp/demo"

say "starting scavd with conf/scavd.conf on $SCAVD_SOCKET"
env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID "$scavd" --config conf/scavd.conf \
        --socket "$SCAVD_SOCKET" 2>"$tmp/scavd.log" &
daemon_pid=$!
for _ in $(seq 300); do
        "$scavctl" pools >/dev/null 2>&1 && break
        kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/scavd.log" >&2; echo "demo: scavd exited" >&2; exit 1; }
        sleep 0.05
done
pool=$("$scavctl" pools | head -n1)
[ -n "$pool" ] || { echo "demo: conf/scavd.conf defines no pool" >&2; exit 1; }

say "scavctl status (before)"
"$scavctl" status

say "demo: two processes share pool \"$pool\""
"$tmp/demo" "$pool" 128

say "scavctl status (after: in use back to 0, memory given back to the kernel)"
"$scavctl" status

say "stopping scavd"
kill -TERM "$daemon_pid"
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=
if [ "$rc" -ne 0 ]; then
        echo "demo: scavd exited with status $rc" >&2
        cat "$tmp/scavd.log" >&2
        exit 1
fi
echo "scavd stopped cleanly."
