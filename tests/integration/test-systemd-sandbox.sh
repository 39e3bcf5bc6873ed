#!/usr/bin/env bash
# Does the daemon live inside the sandbox scavd.service gives it? PID 1 is
# not systemd here, so the unit's settings are reproduced with util-linux
# and checked with strace, from the unit file itself:
#
#   - User=/CapabilityBoundingSet=/AmbientCapabilities=/NoNewPrivileges=:
#     run as an unprivileged user with exactly the unit's capabilities, with
#     bpf = on (the start fails if BPF cannot load) where the kernel has BTF;
#   - PrivateNetwork=yes: in a new network namespace, clients outside it
#     still reach its file-system socket;
#   - SystemCallFilter=: every system call the daemon makes, through start,
#     clients, forced scavenging, reload, clients dying and stop, is in the
#     set the unit allows (groups expanded by systemd-analyze syscall-filter);
#   - RestrictAddressFamilies=AF_UNIX, RestrictNamespaces=yes,
#     MemoryDenyWriteExecute=yes, ProtectSystem=strict (writes only under
#     /proc, /sys, /dev and its runtime directory).
set -u
skip() { echo "SKIP: $*"; exit 77; }
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

top=${SCAV_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${BUILD:-$top/build}
unit=$top/systemd/scavd.service.in
client=$build/tests/integration/helper-systemd-client
[ -n "${SCAVD:-}" ] && [ -x "$SCAVD" ] || skip "no daemon at \$SCAVD"
[ -x "$client" ] || skip "no $client"
for t in strace setpriv unshare systemd-analyze; do
        command -v $t >/dev/null || skip "$t not installed"
done
[ "$(id -u)" = 0 ] || skip "needs root to drop to another user and make a network namespace"
unshare -n true 2>/dev/null || skip "cannot make a network namespace here"
if [ -n "${ASAN_OPTIONS+x}" ] || nm -D "$SCAVD" 2>/dev/null | grep -q __asan_init; then
        san=1   # the sanitizers' runtime makes calls of its own: only the other checks apply
        # LeakSanitizer cannot run under ptrace; leaks are the other tests' business.
        export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
else
        san=0
fi

dir=$(mktemp -d /tmp/scavd-sandbox.XXXXXX)
pid=
cleanup() {
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
chmod 0755 "$dir"

# The unit's user: an unprivileged uid that owns nothing here.
uid=65534 gid=65534
caps=$(sed -n 's/^AmbientCapabilities=//p' "$unit")
bound=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit")
[ "$caps" = "$bound" ] || fail "AmbientCapabilities=$caps and CapabilityBoundingSet=$bound differ"
capset=$(for c in $caps; do c=${c#CAP_}; printf ',+%s' "${c,,}"; done)
grep -qx 'NoNewPrivileges=yes' "$unit" || fail "no NoNewPrivileges=yes"
grep -qx 'PrivateNetwork=yes' "$unit" && netns=1 || netns=0

bpf=off
[ -r /sys/kernel/btf/vmlinux ] && bpf=on
mkdir "$dir/run"
chown $uid:$gid "$dir/run"
chmod 0750 "$dir/run"
cat >"$dir/scavd.conf" <<CONF
[daemon]
bpf = $bpf
pressure = auto
scavtrace = 1

[pool sandboxed]
capacity = 64M
CONF
chmod 0644 "$dir/scavd.conf"
export SCAVD_SOCKET=$dir/run/scavd.sock

# What a client sees: the socket in a directory the daemon owns. The test
# client is root, so the 0750 directory is no obstacle to it.
run=(setpriv --reuid=$uid --regid=$gid --clear-groups --no-new-privs
     --inh-caps=-all$capset --ambient-caps=-all$capset --bounding-set=-all$capset
     "$SCAVD" --config "$dir/scavd.conf" --socket "$SCAVD_SOCKET")
[ "$netns" = 1 ] && run=(unshare -n "${run[@]}")
strace -f -qq -o "$dir/trace" -e signal=none "${run[@]}" >"$dir/scavd.log" 2>&1 &
pid=$!

for _ in $(seq 400); do [ -S "$SCAVD_SOCKET" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.05; done
if [ ! -S "$SCAVD_SOCKET" ]; then
        cat "$dir/scavd.log" >&2
        fail "the sandboxed daemon did not come up (bpf = $bpf)"
        exit 1
fi
daemon_pid=$(pgrep -f "scavd --config $dir/scavd.conf" | while read -r p; do
        [ "$(cat /proc/$p/comm 2>/dev/null)" = scavd ] && echo "$p"; done | head -n1)
[ -n "$daemon_pid" ] || fail "cannot find the daemon's pid"
status_caps=$(grep CapEff /proc/"$daemon_pid"/status 2>/dev/null | awk '{print $2}')
echo "daemon pid $daemon_pid, uid $(awk '/^Uid:/ {print $2}' /proc/$daemon_pid/status), CapEff $status_caps, bpf = $bpf, netns = $netns"

# A workload that reaches every path a running service takes.
for size in 4096 $((8 << 20)) 65536; do
        timeout 60 "$client" sandboxed $size >/dev/null || fail "client ($size bytes) through the sandboxed daemon"
done
SCAVD_SOCKET=$SCAVD_SOCKET timeout 30 "${SCAVCTL:-$build/scavctl}" scavenge sandboxed >/dev/null ||
        fail "scavctl scavenge"
SCAVD_SOCKET=$SCAVD_SOCKET timeout 30 "${SCAVCTL:-$build/scavctl}" check sandboxed >/dev/null ||
        fail "scavctl check"
# A client killed with its allocations: the daemon reclaims them.
"$client" sandboxed $((16 << 20)) hold >"$dir/held" 2>&1 &
held=$!
for _ in $(seq 400); do grep -q holding "$dir/held" && break; sleep 0.05; done
grep -q holding "$dir/held" || fail "holding client did not get its allocation"
kill -KILL $held; wait $held 2>/dev/null
kill -HUP "$daemon_pid"; sleep 0.5
timeout 60 "$client" sandboxed 4096 >/dev/null || fail "client after reload"
kill -TERM "$daemon_pid"
wait $pid; rc=$?
pid=
[ "$rc" -eq 0 ] || { tail -n 20 "$dir/scavd.log" >&2; fail "sandboxed daemon exit $rc"; }

grep -q "reclaimed" "$dir/scavd.log" || fail "the killed client's pages were not reclaimed"

# ---- system calls against SystemCallFilter= ----
expand() { # @group or name ... -> names, recursively
        local x
        for x in "$@"; do
                if [[ $x == @* ]]; then
                        expand $(systemd-analyze syscall-filter --no-pager "$x" | sed -e '1d' -e 's/#.*//' -e 's/^ *//' | grep -v '^$')
                else
                        echo "$x"
                fi
        done
}
allow=() deny=()
while read -r line; do
        if [[ $line == \~* ]]; then deny+=(${line#\~}); else allow+=($line); fi
done < <(sed -n 's/^SystemCallFilter=//p' "$unit")
expand "${allow[@]}" | sort -u >"$dir/allow"
expand "${deny[@]}" | sort -u >"$dir/deny"
comm -23 "$dir/allow" "$dir/deny" >"$dir/allowed"
# Up to execve of scavd, the calls are setpriv's and unshare's, not the service's.
awk '/execve\("[^"]*\/scavd"/ { on = 1 } on' "$dir/trace" >"$dir/trace.scavd"
sed -n 's/^[0-9]* *\([a-z_0-9]*\)(.*/\1/p' "$dir/trace.scavd" | sort -u >"$dir/used"
[ -s "$dir/used" ] || fail "no execve of scavd in the strace log: every check below would look at nothing"
echo "system calls made: $(wc -l <"$dir/used"); allowed by the unit: $(wc -l <"$dir/allowed")"
bad=$(comm -23 "$dir/used" "$dir/allowed" | tr '\n' ' ')
if [ -n "$bad" ]; then
        if [ "$san" = 1 ]; then
                echo "outside SystemCallFilter= (sanitizer build, not counted): $bad"
        else
                fail "system calls outside SystemCallFilter=: $bad"
        fi
fi

# bpf = on started, and its programs are attached, with the unit's capabilities only.
if [ "$bpf" = on ]; then
        links=$(grep -cE 'bpf\((BPF_LINK_CREATE|BPF_RAW_TRACEPOINT_OPEN).* = [0-9]+$' "$dir/trace.scavd")
        echo "BPF programs attached as uid $uid: $links"
        [ "$links" -gt 0 ] || fail "no BPF program attached with $caps"
fi

# RestrictAddressFamilies=AF_UNIX
fam=$(grep -oE '\b(socket|socketpair)\(AF_[A-Z0-9]+' "$dir/trace.scavd" | sed 's/.*(//' | sort -u | tr '\n' ' ')
[ -z "$(echo $fam | tr ' ' '\n' | grep -v '^AF_UNIX$')" ] || fail "sockets outside AF_UNIX: $fam"
# RestrictNamespaces=yes
grep -E '\b(clone3?|unshare|setns)\(.*CLONE_NEW' "$dir/trace.scavd" && fail "namespaces created"
# MemoryDenyWriteExecute=yes
grep -E '\bmmap\(.*PROT_WRITE\|PROT_EXEC|\bmmap\(.*PROT_EXEC\|PROT_WRITE|\b(mprotect|pkey_mprotect)\(.*PROT_EXEC' \
        "$dir/trace.scavd" | head -n3 | grep . && fail "writable+executable or newly executable memory"
# ProtectSystem=strict: writes only to the API file systems and the runtime directory.
writes=$(grep -E '\bopenat?\(.*O_(WRONLY|RDWR|CREAT)' "$dir/trace.scavd" | grep -v ' = -1 ' |
        grep -oE '"[^"]*"' | tr -d '"' | grep -vE "^(/proc/|/sys/|/dev/|$dir/run/)" | sort -u | tr '\n' ' ')
[ -z "$writes" ] || fail "writes outside /proc, /sys, /dev and the runtime directory: $writes"

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed" >&2; exit 1; }
echo "sandbox: daemon served as uid $uid with only $caps (bpf = $bpf), in its own network namespace, within its system call filter"
