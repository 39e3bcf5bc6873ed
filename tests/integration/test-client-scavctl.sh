#!/usr/bin/env bash
# scavctl against a real daemon on a private socket: every command, human
# and --json output, and the failures: exit status non-zero with a message
# a person can act on (no daemon, unknown pool, bad usage, bad reload, a
# socket it may not use), one line each, and with --json one JSON document
# on standard output (checked by python3 -m json.tool). Options may follow
# the command.
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
# expect_json STATUS PATTERN -- scavctl args...: exit status; standard output
# is one valid JSON document (whatever went wrong) matching the pattern;
# standard error is empty on success and one line on failure ($stderr_lines
# lines if set: a failed reload or check is a result, told in JSON only).
json_tool=/usr/bin/python3
[ -x "$json_tool" ] || json_tool=$(command -v python3) ||
        { echo "FAIL: no python3 to check JSON with (make deps installs it)"; exit 1; }
expect_json() {
        local want=$1 pattern=$2 out err rc lines
        shift 3
        out=$("$scavctl" "$@" 2>"$tmp/stderr"); rc=$?
        err=$(cat "$tmp/stderr")
        printf '$ scavctl %s   (exit %d)\n%s\n%s\n' "$*" "$rc" "$out" "$err"
        [ "$rc" -eq "$want" ] || fail "scavctl $*: exit $rc, want $want: $out $err"
        "$json_tool" -m json.tool <<<"$out" >/dev/null 2>"$tmp/json.err" ||
                fail "scavctl $*: standard output is not JSON ($(cat "$tmp/json.err")): '$out'"
        grep -Eq -- "$pattern" <<<"$out" || fail "scavctl $*: JSON does not match /$pattern/: $out"
        lines=$(grep -c . "$tmp/stderr")
        if [ "$want" -eq 0 ]; then
                [ "$lines" -eq 0 ] || fail "scavctl $*: succeeded with standard error: $err"
        else
                [ "$lines" -eq "${stderr_lines:-1}" ] ||
                        fail "scavctl $*: $lines lines on standard error, want ${stderr_lines:-1}: $err"
        fi
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
expect_json 1 '"ok":false,"command":"status","pool":null,"errno":"ECONNREFUSED","error":"cannot reach scavd at' -- \
        --socket "$sock" --json status

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
# A client publishing a name and holding two references: names, references in clients and status.
exec {hold_in}> >(SCAVD_SOCKET=$sock exec "$build/tests/integration/helper-client-hold" beta 65536 frame/1 >"$tmp/hold2.out")
for _ in $(seq 200); do grep -q ready "$tmp/hold2.out" 2>/dev/null && break; sleep 0.05; done
expect 0 '^frame/1 +0x[0-9a-f]+ +64\.0K +3$' -- names beta
expect_json 0 '^\{"pool":"beta","names":\[\{"name":"frame/1","offset":[0-9]+,"bytes":65536,"refs":3\}\]\}$' -- \
        --socket "$sock" --json names beta
expect 0 '^ +1 +[0-9]+ +[0-9]+ +yes +.* 2$' -- clients beta
expect 0 '"refs":2,"shared":1' -- --json clients beta
expect 0 '"shared":1,"refs":3,"names":1,"max_shared":16384,"max_names":1024' -- --json status beta
exec {hold_in}>&-
# The client went; the name holds the allocation.
for _ in $(seq 200); do "$scavctl" --socket "$sock" --json status beta | grep -q '"clients":0' && break; sleep 0.05; done
expect 0 '^frame/1 +0x[0-9a-f]+ +64\.0K +1$' -- names beta
expect 0 '"shared":1,"refs":1,"names":1' -- --json status beta
expect 0 '\(no names\)' -- names alpha
expect_json 0 '^\{"pool":"alpha","names":\[\]\}$' -- --socket "$sock" --json names alpha
expect 1 'no pool named "nosuch"' -- names nosuch
expect 2 'wrong number of arguments' -- names
expect 0 'pool alpha: released' -- scavenge alpha
expect 0 '"released":' -- --json scavenge alpha 4M
expect 0 'pool alpha: ok' -- check alpha
expect 0 '"ok":true' -- --json check alpha
expect 0 'Usage: scavctl' -- --help
SCAVD_SOCKET=$sock expect 0 'alpha' -- pools   # --socket given anyway; the variable is the default

# Options after the command, or between it and its arguments, are options.
expect 0 '^\[\{"pool":' -- status --json
expect 0 '"pool":"beta".*"capacity":1073741824' -- status beta --json
expect 0 '"pool":"beta".*"capacity":1073741824' -- status --json beta
expect 0 '"released":' -- scavenge --json alpha 1M
expect 0 '"ok":true' -- check alpha --json
expect_json 0 '^\["(alpha|beta)","(alpha|beta)"\]$' -- pools --socket "$sock" --json
expect_json 0 '^\{"pool":"alpha",' -- status alpha --json --socket "$sock"
SCAVD_SOCKET=/nonexistent expect_json 0 '"pool":"alpha"' -- status alpha --json --socket="$sock"
expect 0 'scavctl [0-9]' -- status --version
expect 0 'Usage: scavctl' -- pools --help
# "--" ends the options: what follows is an argument, here a bad size.
expect 2 'bad size "-1M"' -- scavenge alpha -- -1M

# Errors: unknown pool, usage.
expect 1 'no pool named "nosuch"' -- status nosuch
expect 1 'no pool named "nosuch"' -- check nosuch
expect 1 'no pool named' -- scavenge nosuch
expect 2 'unknown command' -- frobnicate
expect 2 'wrong number of arguments' -- clients
expect 2 'no command given' --
expect 2 'unknown option' -- --frob status
expect 2 "^scavctl: unknown option '--frob' \\(see 'scavctl --help'\\)\$" -- status --frob
expect 2 "^scavctl: option '--socket' needs an argument" -- pools --socket
expect 2 'bad size' -- scavenge alpha 12Q
expect 2 'pool name' -- status 'bad/name'

# With --json every failure is one JSON object on standard output too.
expect_json 1 '"ok":false,"command":"status","pool":"nosuch","errno":"ENOENT","error":"status: no pool named' -- \
        --socket "$sock" status nosuch --json
expect_json 1 '"command":"check","pool":"nosuch","errno":"ENOENT"' -- --socket "$sock" --json check nosuch
expect_json 1 '"command":"clients","pool":"nosuch"' -- --socket "$sock" clients nosuch --json
expect_json 1 '"command":"scavenge","pool":"nosuch"' -- --socket "$sock" scavenge nosuch 1M --json
expect_json 2 '"ok":false,"command":null,"pool":null,"errno":null,"error":"unknown command .frobnicate."' -- \
        --socket "$sock" frobnicate --json
expect_json 2 '"error":"unknown option .--frob."' -- --socket "$sock" --frob --json status
expect_json 2 '"error":"clients: wrong number of arguments"' -- --socket "$sock" --json clients
expect_json 2 '"error":"no command given"' -- --socket "$sock" --json
expect_json 2 '"command":"scavenge".*"error":"scavenge: bad size' -- --socket "$sock" scavenge alpha 12Q --json
expect_json 2 '"error":"status: a pool name is made of' -- --socket "$sock" status 'a"b\c' --json

# Reload: a good change applies, a bad file is refused and named.
printf '[pool alpha]\ncapacity = 64M\n[pool beta]\ncapacity = 1G\n[pool gamma]\ncapacity = 32M\nallow_users = 0\n' \
        >"$tmp/scavd.conf"
expect 0 'reloaded' -- reload
expect 0 '^gamma$' -- pools
printf '[pool alpha]\ncapacity = lots\n' >"$tmp/scavd.conf"
expect 1 'scavd.conf:2' -- reload
stderr_lines=0 expect_json 1 '"ok":false,"error":".*scavd.conf:2' -- --socket "$sock" reload --json
expect 0 '^gamma$' -- pools

# A pool this user may not open (gamma: root only) and a socket it may not
# use are told apart: the second message names the socket and the group
# that may (the socket's own), not a bare "permission denied". Root passes
# permission checks, so as root the client runs as nobody.
cp "$scavctl" "$tmp/scavctl-copy" && chmod 0755 "$tmp/scavctl-copy"
chmod 0711 "$tmp"
if [ "$(id -u)" -eq 0 ]; then
        as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
else
        as_user() { "$@"; }
fi
out=$(as_user "$tmp/scavctl-copy" --socket "$sock" status gamma 2>&1); rc=$?
printf '$ scavctl status gamma   (exit %d, as uid %s)\n%s\n' "$rc" "$(as_user id -u)" "$out"
[ "$rc" -eq 1 ] && grep -Fqx "scavctl: status: pool gamma: permission denied (not in the pool's allow_users or allow_groups)" \
        <<<"$out" || fail "pool not allowed: exit $rc: $out"
if [ "$(id -u)" -eq 0 ]; then chmod 0660 "$sock"; else chmod 0000 "$sock"; fi
group=$(stat -c %G "$sock")
out=$(as_user "$tmp/scavctl-copy" --socket "$sock" pools 2>&1); rc=$?
printf '$ scavctl pools   (exit %d, as uid %s)\n%s\n' "$rc" "$(as_user id -u)" "$out"
[ "$rc" -eq 1 ] || fail "denied socket: exit $rc, want 1"
grep -Fq "cannot connect to scavd at $sock: permission denied: only root and members of the group \"$group\"" \
        <<<"$out" || fail "denied socket: message does not name $sock and group $group: $out"
[ "$(grep -c . <<<"$out")" -eq 1 ] || fail "denied socket: more than one line: $out"
out=$(as_user "$tmp/scavctl-copy" --socket "$sock" pools --json 2>/dev/null)
"$json_tool" -m json.tool <<<"$out" >/dev/null && grep -q '"errno":"EACCES"' <<<"$out" ||
        fail "denied socket: no JSON error object with EACCES: $out"
chmod 0666 "$sock"
chmod 0700 "$tmp"

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
