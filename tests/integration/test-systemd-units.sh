#!/usr/bin/env bash
# The units as installed: `make install` into a DESTDIR tree, then
# systemd-analyze verify of scavd.service and scavd.socket against that tree
# (ExecStart= must exist there, the Documentation= man pages are the
# installed ones; verify only warns on misspelled keys, so its output is
# searched for "Unknown" too), and systemd-analyze security: exposure at
# most 2.0 with CAP_BPF and CAP_PERFMON granted. Also the sysusers.d and
# tmpfiles.d entries, applied to a scratch root.
set -u
skip() { echo "SKIP: $*"; exit 77; }
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

top=${SCAV_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${BUILD:-$top/build}
command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed"
for f in scavd scavctl libscav.pc libscav.so.0.1; do
        [ -e "$build/$f" ] || skip "incomplete build: no $build/$f to install"
done

dir=$(mktemp -d /tmp/scavd-units.XXXXXX)
trap 'rm -rf "$dir"' EXIT
dest=$dir/dest

# The real install recipe, without rebuilding (-o: the build is what it is).
if ! make -s -C "$top" BUILD="$build" -o lib -o daemon install DESTDIR="$dest" PREFIX=/usr \
        >"$dir/install.log" 2>&1; then
        cat "$dir/install.log" >&2
        fail "make install DESTDIR=$dest PREFIX=/usr"
        exit 1
fi

unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /usr/lib/systemd/system)
sysusersdir=$(pkg-config --variable=sysusersdir systemd 2>/dev/null || echo /usr/lib/sysusers.d)
tmpfilesdir=$(pkg-config --variable=tmpfilesdir systemd 2>/dev/null || echo /usr/lib/tmpfiles.d)
catalogdir=$(pkg-config --variable=catalogdir systemd 2>/dev/null || echo /usr/lib/systemd/catalog)
svc=$dest$unitdir/scavd.service
sock=$dest$unitdir/scavd.socket

for f in "$svc" "$sock" "$dest$sysusersdir/scavd.conf" "$dest$tmpfilesdir/scavd.conf" \
        "$dest/usr/sbin/scavd" "$dest/usr/bin/scavctl"; do
        [ -f "$f" ] || fail "not installed: ${f#"$dest"}"
done
[ ! -f "$top/systemd/scavd.catalog" ] || [ -f "$dest$catalogdir/scavd.catalog" ] ||
        fail "catalog not installed to $catalogdir"
[ ! -f "$top/conf/scavd.conf" ] || [ -f "$dest/etc/scavd/scavd.conf" ] ||
        fail "configuration not installed to /etc/scavd"
for m in "$top"/docs/man/*.[1358]; do
        [ -f "$m" ] || continue
        [ -f "$dest/usr/share/man/man${m##*.}/$(basename "$m")" ] || fail "man page $(basename "$m") not installed"
done
grep -qx 'ExecStart=/usr/sbin/scavd' "$svc" || fail "ExecStart= is not /usr/sbin/scavd: $(grep ExecStart= "$svc")"

# What verify needs of a system besides our files: the targets the default
# dependencies name, and kill(1) for ExecReload=.
mkdir -p "$dest$unitdir" "$dest/usr/bin"
for t in sysinit.target basic.target shutdown.target sockets.target multi-user.target; do
        [ -f "$dest$unitdir/$t" ] || cp "$unitdir/$t" "$dest$unitdir/" 2>/dev/null ||
                cp "/usr/lib/systemd/system/$t" "$dest$unitdir/"
done
cp "$(type -P kill)" "$dest/usr/bin/kill"
[ -e "$dest/bin" ] || ln -s usr/bin "$dest/bin"

verify() { # unit files...
        MANPATH=$dest/usr/share/man systemd-analyze verify --root="$dest" "$@" 2>&1
}

# The grep can fail: a misspelled key in a copy must be found.
cp "$sock" "$dir/probe.socket"
printf '[Socket]\nListenSequentalPacket=/run/x\n' >>"$dir/probe.socket"
cp "$dir/probe.socket" "$dest$unitdir/scavd-probe.socket"
verify "$dest$unitdir/scavd-probe.socket" | grep -q "Unknown key" ||
        fail "verify does not report a misspelled key: the check below would be blind"
rm -f "$dest$unitdir/scavd-probe.socket"

out=$(verify "$svc" "$sock"); rc=$?
echo "systemd-analyze verify: exit $rc${out:+, output:}"
[ -n "$out" ] && printf '%s\n' "$out"
[ "$rc" -eq 0 ] || fail "systemd-analyze verify exited $rc"
if printf '%s\n' "$out" | grep -qiE 'unknown|ignoring|invalid|failed|not executable'; then
        fail "systemd-analyze verify complained"
fi

# Exposure with the capabilities kernel awareness needs actually granted.
grep -Eq '^AmbientCapabilities=.*CAP_BPF' "$svc" && grep -Eq '^AmbientCapabilities=.*CAP_PERFMON' "$svc" ||
        fail "CAP_BPF and CAP_PERFMON are not granted"
sec=$(systemd-analyze security --offline=yes --no-pager "$svc" 2>&1)
level=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for scavd.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security: exposure ${level:-?}"
printf '%s\n' "$sec" | grep '✗' || true
if [ -z "$level" ]; then
        printf '%s\n' "$sec" >&2
        fail "no exposure level in systemd-analyze security's output"
elif ! awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then
        fail "exposure $level is above 2.0"
fi

# sysusers.d: user and group scavd; tmpfiles.d: /run/scavd 0755 scavd:scavd.
root=$dir/root
mkdir -p "$root/etc"
if systemd-sysusers --root="$root" "$dest$sysusersdir/scavd.conf" >"$dir/sysusers.log" 2>&1; then
        grep -q '^scavd:' "$root/etc/passwd" || fail "sysusers.d made no user scavd"
        grep -q '^scavd:' "$root/etc/group" || fail "sysusers.d made no group scavd"
else
        cat "$dir/sysusers.log" >&2
        fail "systemd-sysusers rejected the entry"
fi
if ! systemd-tmpfiles --root="$root" --create "$dest$tmpfilesdir/scavd.conf" >"$dir/tmpfiles.log" 2>&1; then
        grep -q "Failed to resolve user 'scavd'\|Unknown user" "$dir/tmpfiles.log" ||
                { cat "$dir/tmpfiles.log" >&2; fail "systemd-tmpfiles rejected the entry"; }
elif [ "$(stat -c %a "$root/run/scavd" 2>/dev/null)" != 755 ]; then
        fail "tmpfiles.d: /run/scavd is $(stat -c %a "$root/run/scavd" 2>/dev/null), want 755"
elif [ "$(stat -c %u "$root/run/scavd")" != "$(awk -F: '$1 == "scavd" { print $3 }' "$root/etc/passwd")" ]; then
        fail "tmpfiles.d: /run/scavd is not owned by the user scavd"
fi

# The installed catalog compiles, and the installed configuration is valid.
if [ -f "$dest$catalogdir/scavd.catalog" ]; then
        if journalctl --root="$dest" --update-catalog >"$dir/catalog.log" 2>&1; then
                n=$(journalctl --root="$dest" --list-catalog 2>/dev/null | grep -c 'scavd')
                echo "catalog: $n scavd entries"
                [ "$n" -gt 0 ] || fail "journalctl --list-catalog shows no scavd entry"
        else
                cat "$dir/catalog.log" >&2
                fail "journalctl --update-catalog rejected the catalog"
        fi
fi
if [ -f "$dest/etc/scavd/scavd.conf" ]; then
        "$dest/usr/sbin/scavd" --config "$dest/etc/scavd/scavd.conf" --check-config >"$dir/check.log" 2>&1 ||
                { cat "$dir/check.log" >&2; fail "the installed scavd.conf does not pass --check-config"; }
fi

# Another PREFIX: ExecStart= and the unit directory follow it.
dest2=$dir/dest2
make -s -C "$top" BUILD="$build" install-data DESTDIR="$dest2" PREFIX=/opt/scavd >"$dir/install2.log" 2>&1 ||
        fail "make install-data PREFIX=/opt/scavd"
grep -qx 'ExecStart=/opt/scavd/sbin/scavd' "$dest2/opt/scavd/lib/systemd/system/scavd.service" 2>/dev/null ||
        fail "PREFIX=/opt/scavd: no unit with ExecStart=/opt/scavd/sbin/scavd in /opt/scavd/lib/systemd/system"

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed" >&2; exit 1; }
echo "units verified, exposure $level"
