#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Issue 4: scavtrace lines reach the journal with their structured fields.
# Where no journald runs (PID 1 is not systemd here), the test starts a real
# systemd-journald in a private mount namespace (tmpfs on /run/systemd,
# /run/log and /var/log/journal, so the host's journal is untouched), runs
# scavd there with stderr to a file -- so only the journal socket tells it
# journald is there -- and reads the entries back with journalctl -o json.
set -u

MSGID_GEN=cef12b3e0c324ed0952c87baff0b933a
MSGID_PACING=dcee51c47c5b4eb1ae7037ca160539ed
JOURNALD=${JOURNALD:-/lib/systemd/systemd-journald}
top=${SCAV_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
SCAVD=${SCAVD:-$top/build/scavd}
SCAVCTL=${SCAVCTL:-$top/build/scavctl}

skip() { echo "SKIP: $*"; exit 77; }

if [ -z "${SCAVD_JOURNAL_INNER:-}" ]; then
        [ -x "$SCAVD" ] || skip "no scavd binary ($SCAVD)"
        [ -x "$SCAVCTL" ] || skip "no scavctl binary ($SCAVCTL)"
        [ "$(id -u)" = 0 ] || skip "needs root for a private mount namespace"
        [ -x "$JOURNALD" ] || skip "no $JOURNALD"
        command -v journalctl >/dev/null || skip "no journalctl"
        command -v unshare >/dev/null || skip "no unshare"
        unshare -m --propagation private true 2>/dev/null || skip "cannot create a mount namespace"
        SCAVD_JOURNAL_INNER=1 SCAVD=$SCAVD SCAVCTL=$SCAVCTL exec unshare -m --propagation private bash "$0"
fi

# Inside the private mount namespace.
dir=$(mktemp -d /tmp/scavd-journal.XXXXXX)
jpid= spid=
cleanup() {
        [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
        [ -n "$jpid" ] && kill "$jpid" 2>/dev/null && wait "$jpid" 2>/dev/null
        rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- scavd log ---" >&2; cat "$dir/scavd.log" >&2; exit 1; }

mkdir -p /run/systemd /run/log /var/log/journal
for m in /run/systemd /run/log /var/log/journal; do
        mount -t tmpfs tmpfs "$m" || skip "cannot mount tmpfs on $m"
done
mkdir -p /run/systemd/journal
"$JOURNALD" >"$dir/journald.log" 2>&1 &
jpid=$!
for _ in $(seq 100); do
        [ -S /run/systemd/journal/socket ] && break
        sleep 0.1
done
if ! [ -S /run/systemd/journal/socket ]; then
        cat "$dir/journald.log"
        skip "systemd-journald did not start (no /run/systemd/journal/socket)"
fi

cat >"$dir/scavd.conf" <<CONF
[daemon]
scavtrace = 2
generation_interval = 200ms

[pool jtest]
capacity = 64M
CONF

unset JOURNAL_STREAM NOTIFY_SOCKET LISTEN_FDS LISTEN_PID LISTEN_FDNAMES WATCHDOG_USEC WATCHDOG_PID
"$SCAVD" --config "$dir/scavd.conf" --socket "$dir/scavd.sock" >"$dir/scavd.log" 2>&1 &
spid=$!
for _ in $(seq 300); do
        [ -S "$dir/scavd.sock" ] && break
        kill -0 "$spid" 2>/dev/null || fail "scavd exited during start-up"
        sleep 0.1
done
[ -S "$dir/scavd.sock" ] || fail "scavd did not create its socket"

sleep 1
"$SCAVCTL" --socket "$dir/scavd.sock" scavenge jtest >"$dir/scavctl.out" 2>&1 ||
        fail "scavctl scavenge: $(cat "$dir/scavctl.out")"
sleep 1
kill "$spid"
rc=0
wait "$spid" || rc=$?
spid=
[ "$rc" -eq 0 ] || fail "scavd exited with status $rc after SIGTERM"

journalctl --sync 2>/dev/null || sleep 1
out=$(journalctl -o json --no-pager MESSAGE_ID=$MSGID_GEN SCAV_POOL=jtest)
n=$(printf '%s\n' "$out" | grep -c '"SCAV_POOL":"jtest"')
echo "journal: $n scavtrace entries of pool jtest"
[ "$n" -ge 3 ] || fail "want >= 3 scavtrace entries in the journal, got $n: $out"
for f in MESSAGE_ID PRIORITY SCAV_POOL SCAV_GEN SCAV_RELEASED_BYTES SCAV_TOTAL_RELEASED_BYTES SCAV_UTIL_PERCENT; do
        c=$(printf '%s\n' "$out" | grep -c "\"$f\":\"[^\"]*\"")
        [ "$c" = "$n" ] || fail "field $f in $c of $n entries"
done
printf '%s\n' "$out" | grep -q '"PRIORITY":"6"' || fail "no PRIORITY=6"
printf '%s\n' "$out" | grep -q '"MESSAGE":"scav jtest [0-9]*: [0-9]* KiB work, [0-9]* KiB total, [0-9]*% util (forced: scavctl)"' ||
        fail "no (forced: scavctl) line in the journal: $out"
printf '%s\n' "$out" | grep -q '"MESSAGE":"scav jtest [0-9]*: [0-9]* KiB work, [0-9]* KiB total, [0-9]*% util"' ||
        fail "no generation line in the journal"

p=$(journalctl -o json --no-pager MESSAGE_ID=$MSGID_PACING SCAV_POOL=jtest | grep -c '"SCAV_SLEEP_RATIO"')
[ "$p" -ge 1 ] || fail "scavtrace = 2: no pacing entries in the journal"
echo "journal: $p pacing entries"

# The catalog has an entry for each MESSAGE_ID the daemon sends.
mkdir -p "$dir/root/usr/lib/systemd/catalog" "$dir/root/var/lib/systemd/catalog"
cp "$top/systemd/scavd.catalog" "$dir/root/usr/lib/systemd/catalog/"
journalctl --root="$dir/root" --update-catalog || fail "journalctl --update-catalog rejects systemd/scavd.catalog"
cat=$(journalctl --root="$dir/root" --list-catalog)
for id in $MSGID_GEN $MSGID_PACING; do
        printf '%s\n' "$cat" | grep -q "^$id scavd: " || fail "no catalog entry for $id: $cat"
done

# Under journald, scavtrace lines go to the journal, not to stderr.
if grep -q '^scav jtest' "$dir/scavd.log"; then
        fail "scavtrace lines on stderr although journald runs"
fi
echo "all checks passed"
