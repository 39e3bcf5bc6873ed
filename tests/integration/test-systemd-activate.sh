#!/usr/bin/env bash
# Socket activation through systemd-socket-activate: it binds the socket,
# starts scavd on the first connection with LISTEN_FDS/LISTEN_FDNAMES, and a
# client opens a pool, writes, reads back and frees through it. No
# NOTIFY_SOCKET here: the daemon must run without a service manager's store.
set -u
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; [ -f "$dir/scavd.log" ] && tail -n 30 "$dir/scavd.log" >&2; exit 1; }

[ -n "${SCAVD:-}" ] && [ -x "$SCAVD" ] || skip "no daemon at \$SCAVD"
client=${BUILD:-build}/tests/integration/helper-systemd-client
[ -x "$client" ] || skip "no $client"
command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate not installed"

dir=$(mktemp -d /tmp/scavd-activate.XXXXXX)
sa=
cleanup() {
        [ -n "$sa" ] && kill -KILL "$sa" 2>/dev/null
        rm -rf "$dir"
}
trap cleanup EXIT

cat >"$dir/scavd.conf" <<CONF
[daemon]
bpf = off
pressure = off

[pool activated]
capacity = 32M
CONF

export SCAVD_SOCKET=$dir/scavd.sock
unset NOTIFY_SOCKET LISTEN_FDS LISTEN_PID LISTEN_FDNAMES
systemd-socket-activate --seqpacket -l "$SCAVD_SOCKET" --fdname=scavd.socket \
        "$SCAVD" --config "$dir/scavd.conf" >"$dir/scavd.log" 2>&1 &
sa=$!

for _ in $(seq 100); do [ -S "$SCAVD_SOCKET" ] && break; sleep 0.05; done
[ -S "$SCAVD_SOCKET" ] || fail "systemd-socket-activate did not bind $SCAVD_SOCKET"

# The first connection starts the daemon (systemd-socket-activate execs it
# in place, so it keeps the pid).
timeout 60 "$client" activated $((4 << 20)) || fail "client through the activated socket"
comm=$(cat /proc/$sa/comm 2>/dev/null)
[ "$comm" = scavd ] || fail "pid $sa runs '$comm', want scavd"
timeout 60 "$client" activated 4096 || fail "second client"
timeout 60 "$client" nonexistent 4096 2>/dev/null && fail "a pool that is not configured opened"

kill -TERM "$sa"
wait "$sa"; rc=$?
sa=
[ "$rc" -eq 0 ] || fail "scavd exited $rc after SIGTERM"
echo "socket activation: daemon started on first connection, 2 clients served, clean exit"
