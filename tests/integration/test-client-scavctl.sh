#!/usr/bin/env bash
# scavctl against a real daemon on a private socket: every command, human
# and --json output, and the failures: exit status non-zero with a message
# a person can act on (no daemon, unknown pool, bad usage, bad reload).
set -u
top=${SCAV_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${BUILD:-$top/build}
scavd=${SCAVD:-$build/scavd}
scavctl=${SCAVCTL:-$build/scavctl}
[ -x "$scavd" ] && [ -x "$scavctl" ] || { echo "SKIP: no scavd/scavctl in $build"; exit 77; }

tmp=$(mktemp -d /tmp/scavctl-test.XXXXXX)
sock=$tmp/scavd.sock
pid=
fails=0
cleanup() {
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
# expect STATUS PATTERN -- scavctl args...: exit status and output (stdout+stderr) matching.
expect() {
        local want=$1 pattern=$2 out rc
        shift 3
        out=$("$scavctl" --socket "$sock" "$@" 2>&1); rc=$?
        [ "$rc" -eq "$want" ] || fail "scavctl $*: exit $rc, want $want: $out"
        grep -Eq -- "$pattern" <<<"$out" || fail "scavctl $*: output does not match /$pattern/: $out"
        printf '$ scavctl %s   (exit %d)\n%s\n' "$*" "$rc" "$out"
}

cat >"$tmp/scavd.conf" <<CONF
[pool alpha]
capacity = 64M
[pool beta]
capacity = 1G
max_clients = 8
CONF

# No daemon yet.
expect 1 "cannot reach scavd at $sock" -- status
expect 1 "cannot reach scavd" -- pools

env -u NOTIFY_SOCKET -u LISTEN_FDS "$scavd" --config "$tmp/scavd.conf" --socket "$sock" 2>"$tmp/log" &
pid=$!
for _ in $(seq 600); do "$scavctl" --socket "$sock" pools >/dev/null 2>&1 && break; sleep 0.05; done

expect 0 '^alpha$' -- pools
expect 0 '^\["alpha","beta"\]$|^\["beta","alpha"\]$' -- --json pools
expect 0 'alpha +64\.0M .*ok' -- status
expect 0 'beta +1\.0G' -- status beta
expect 0 '"pool":"beta".*"capacity":1073741824' -- --json status beta
expect 0 '^\[\{"pool":' -- --json status
# A client holding 3 MiB shows in clients and status.
exec {hold_in}> >(SCAVD_SOCKET=$sock exec "$build/tests/integration/helper-client-hold" alpha 3145728 >"$tmp/hold.out")
for _ in $(seq 200); do grep -q ready "$tmp/hold.out" 2>/dev/null && break; sleep 0.05; done
expect 0 '^ +1 +[0-9]+ +[0-9]+ +yes +3\.0M' -- clients alpha
expect 0 '"clients":\[\{"slot":1,.*"inuse":3145728' -- --json clients alpha
expect 0 'alpha +64\.0M +[0-9.]+M +3\.0M .* 1 +[0-9]+ +[0-9]+ +[0-9]+ ok' -- status alpha
exec {hold_in}>&-
for _ in $(seq 200); do "$scavctl" --socket "$sock" --json status alpha | grep -q '"clients":0' && break; sleep 0.05; done
expect 0 '"inuse":0,' -- --json status alpha
expect 0 'pool alpha: released' -- scavenge alpha
expect 0 '"released":' -- --json scavenge alpha 4M
expect 0 'pool alpha: ok' -- check alpha
expect 0 '"ok":true' -- --json check alpha
expect 0 'Usage: scavctl' -- --help
SCAVD_SOCKET=$sock expect 0 'alpha' -- pools   # --socket given anyway; the variable is the default

# Errors: unknown pool, usage.
expect 1 'no pool named "nosuch"' -- status nosuch
expect 1 'no pool named "nosuch"' -- check nosuch
expect 1 'no pool named' -- scavenge nosuch
expect 2 'unknown command' -- frobnicate
expect 2 'wrong number of arguments' -- clients
expect 2 'no command given' --
expect 2 'unknown option' -- --frob status
expect 2 'bad size' -- scavenge alpha 12Q
expect 2 'pool name' -- status 'bad/name'

# Reload: a good change applies, a bad file is refused and named.
printf '[pool alpha]\ncapacity = 64M\n[pool beta]\ncapacity = 1G\n[pool gamma]\ncapacity = 32M\n' >"$tmp/scavd.conf"
expect 0 'reloaded' -- reload
expect 0 '^gamma$' -- pools
printf '[pool alpha]\ncapacity = lots\n' >"$tmp/scavd.conf"
expect 1 'scavd.conf:2' -- reload
expect 0 '^gamma$' -- pools

kill -TERM "$pid"
wait "$pid"; rc=$?
pid=
[ "$rc" -eq 0 ] || { fail "scavd exited with $rc after SIGTERM"; cat "$tmp/log" >&2; }
expect 1 'cannot reach scavd' -- status

if [ "$fails" -gt 0 ]; then
        echo "$fails check(s) failed"
        exit 1
fi
echo "all checks passed"
