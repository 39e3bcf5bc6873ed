#!/usr/bin/env bash
# What a packager and a new user meet first. After a plain `make`,
# `make install DESTDIR=<scratch> PREFIX=/usr` (which builds nothing), then,
# against the installed tree alone:
#  - libscav(3)'s EXAMPLE, compiled with nothing but pkg-config pointed at
#    the tree (PKG_CONFIG_SYSROOT_DIR, PKG_CONFIG_LIBDIR) and run with the
#    installed libscav.so, opens a pool of the installed scavd, started on a
#    private socket, and allocates in it;
#  - systemd-analyze verify accepts the installed units;
#  - scavd --version, scavctl --version, scav_version() and SCAV_VERSION
#    all say the Makefile's VERSION, as do libscav.pc and the man pages;
#  - scavd --check-config FILE checks FILE, warns of a configuration
#    without pools and refuses a section given twice;
#  - every function of libscav(3)'s NAME line has its .so page (man finds
#    scav_alloc), and the example client is installed;
#  - the bash completion, loaded by bash, completes a command, an option
#    and a pool name (asked of the daemon); zsh takes its completion;
#  - LIBDIR=/usr/lib/<multiarch> puts the library and libscav.pc there,
#    libscav.pc says so, and `make uninstall` with the same variables
#    leaves nothing behind but a configuration file that was edited.
set -u
skip() { echo "SKIP: $*"; exit 77; }
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

top=${SCAV_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${BUILD:-$top/build}
for f in scavd scavctl libscav.so.0.1; do
        [ -e "$build/$f" ] || skip "incomplete build: no $build/$f to install"
done
command -v pkg-config >/dev/null || skip "pkg-config not installed"
cc=${CC:-cc}

tmp=$(mktemp -d /tmp/scavd-install.XXXXXX)
pid=
cleanup() {
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        rm -rf "$tmp"
}
trap cleanup EXIT
dest=$tmp/dest

mk() { make --no-print-directory -C "$top" BUILD="$build" "$@"; }
version=$(mk -s print-version)
echo "Makefile VERSION: ${version:-?}"
[ -n "$version" ] || { fail "make print-version printed nothing"; exit 1; }

# Install what the plain make built. Were the sources edited since, make
# would rebuild here (into a sanitizer build without its flags): install
# the build as it is instead, and say so.
asis=()
if mk -n install DESTDIR="$dest" PREFIX=/usr 2>/dev/null | grep -qE -- ' -MMD | -shared |^ar '; then
        echo "note: $build is older than the sources; installing it as it is"
        pymod=$(ls "$build"/python/scav*.so 2>/dev/null | head -n1)
        asis=(-o lib -o daemon ${pymod:+-o "$pymod"})
fi
echo "\$ make install DESTDIR=$dest PREFIX=/usr"
if ! mk -s "${asis[@]}" install DESTDIR="$dest" PREFIX=/usr >"$tmp/install.log" 2>&1; then
        cat "$tmp/install.log" >&2
        fail "make install DESTDIR=$dest PREFIX=/usr"
        exit 1
fi

# --- pkg-config, pointed at the installed tree and nothing else ---
pc=$dest/usr/lib/pkgconfig/libscav.pc
[ -f "$pc" ] || { fail "libscav.pc not installed to /usr/lib/pkgconfig"; exit 1; }
sed 's/^/    /' "$pc"
grep -qx 'prefix=/usr' "$pc" || fail "libscav.pc: prefix is not /usr"
export PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$dest/usr/lib/pkgconfig
unset PKG_CONFIG_PATH
[ "$(pkg-config --modversion libscav)" = "$version" ] ||
        fail "pkg-config --modversion libscav: '$(pkg-config --modversion libscav)', want $version"
flags=$(pkg-config --cflags --libs libscav) || fail "pkg-config --cflags --libs libscav failed"
echo "pkg-config --cflags --libs libscav: $flags"
[[ $flags == *"-I$dest/usr/include"* && $flags == *"-L$dest/usr/lib "* ]] ||
        fail "pkg-config does not point into $dest/usr: $flags"
[[ $flags != *"$top"* ]] || fail "pkg-config points into the source tree: $flags"

# The client is the EXAMPLE of the installed libscav(3) (its first .EX
# block, roff escapes undone), so the example is known to work as printed.
man3=$dest/usr/share/man/man3
awk '/^\.SH EXAMPLE/ { on = 1; next } on && /^\.SH / { exit }
     on && /^\.EX/ { n++; next } on && /^\.EE/ { if (n == 1) exit; next } on && n == 1' "$man3/libscav.3" |
        sed -e 's/\\e/\\/g' -e 's/\\-/-/g' >"$tmp/example.c"
grep -q scav_alloc "$tmp/example.c" || fail "no EXAMPLE program in libscav(3)"
# shellcheck disable=SC2086 # the flags are words
if ! $cc "$tmp/example.c" $flags -o "$tmp/example" 2>"$tmp/cc.log"; then
        cat "$tmp/cc.log" >&2
        fail "the EXAMPLE does not compile with pkg-config's flags alone"
fi

# A sanitizer build's libscav.so needs its runtime loaded first.
preload=
if readelf -d "$dest/usr/lib/libscav.so.0.1" | grep -q 'NEEDED.*libasan'; then
        preload=$($cc -print-file-name=libasan.so)
fi
run_client() {
        LD_LIBRARY_PATH=$dest/usr/lib LD_PRELOAD=$preload SCAVD_SOCKET=$sock "$@"
}

# --- the installed daemon on a private socket, the client against it ---
sock=$tmp/scavd.sock
printf '[pool demo]\ncapacity = 64M\n[pool other]\ncapacity = 8M\n' >"$tmp/scavd.conf"
env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID "$dest/usr/sbin/scavd" --config "$tmp/scavd.conf" \
        --socket "$sock" 2>"$tmp/scavd.log" &
pid=$!
for _ in $(seq 600); do
        "$dest/usr/bin/scavctl" --socket "$sock" pools >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
done
"$dest/usr/bin/scavctl" --socket "$sock" pools >/dev/null 2>&1 || { cat "$tmp/scavd.log" >&2; fail "installed scavd did not start"; }

if [ -x "$tmp/example" ]; then
        lib=$(run_client ldd "$tmp/example" | awk '/libscav/ { print $3 }')
        [ "$lib" = "$dest/usr/lib/libscav.so.0" ] || fail "the client loads libscav from '$lib', not the installed one"
        out=$(run_client "$tmp/example" demo 2>&1); rc=$?
        echo "\$ example demo   (exit $rc)"
        echo "$out"
        [ "$rc" -eq 0 ] || fail "the example client failed: exit $rc"
        grep -q "^libscav $version (built with $version): \"hello from [0-9]*\" at offset [0-9]*, " <<<"$out" ||
                fail "example: scav_version() and SCAV_VERSION are not both $version: $out"
        inuse=$(sed -n 's/.*, \([0-9]*\) bytes in use in pool demo$/\1/p' <<<"$out")
        [ "${inuse:-0}" -ge 1048576 ] || fail "example: ${inuse:-no} bytes in use in the pool, want >= 1 MiB"
        out=$(run_client "$tmp/example" nosuch 2>&1) && fail "example: opening a pool that does not exist worked"
        grep -q 'scav_open nosuch: No such file' <<<"$out" || fail "example: no error for a missing pool: $out"
fi

# The Python module, where /usr/bin/python3 looks with PREFIX=/usr, works against the installed daemon.
pydir=$dest/usr/lib/python3/dist-packages
if [ -x /usr/bin/python3 ]; then
        # (CPython itself leaks at exit by LeakSanitizer's count: not ours to judge.)
        out=$(ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 run_client env PYTHONPATH="$pydir" /usr/bin/python3 -c '
import scav
with scav.Pool("demo") as p, p.alloc(4096) as b:
        memoryview(b)[:5] = b"hello"
        print(scav.__version__, bytes(memoryview(b)[:5]).decode(), p.stats()["inuse"] > 0)' 2>&1); rc=$?
        echo "\$ python3 -c 'import scav ...'   (exit $rc): $out"
        [ "$out" = "$version hello True" ] || fail "the installed Python module: $out"
fi

# --- versions ---
out=$("$dest/usr/sbin/scavd" --version)
[ "$out" = "scavd $version" ] || fail "scavd --version: '$out', want 'scavd $version'"
out=$("$dest/usr/bin/scavctl" --version)
[ "$out" = "scavctl $version" ] || fail "scavctl --version: '$out', want 'scavctl $version'"
echo "scavd --version: $("$dest/usr/sbin/scavd" --version); scavctl --version: $out"

# --- scavd --check-config FILE, as a new user types it ---
check() { # want-status file-or-args...
        local want=$1 rc; shift
        out=$("$dest/usr/sbin/scavd" --check-config "$@" 2>&1); rc=$?
        printf '$ scavd --check-config %s   (exit %d)\n%s\n' "$*" "$rc" "$out"
        [ "$rc" -eq "$want" ] || fail "scavd --check-config $*: exit $rc, want $want"
}
check 0 "$tmp/scavd.conf"
grep -qx "$tmp/scavd.conf: valid, 2 pools" <<<"$out" || fail "--check-config FILE did not check FILE"
printf '[daemon]\nscavtrace = 1\n' >"$tmp/nopools.conf"
check 0 "$tmp/nopools.conf"
grep -q "^$tmp/nopools.conf: warning: no \[pool NAME\] section" <<<"$out" || fail "no warning for a configuration without pools"
printf '[pool a]\ncapacity = 1G\n[pool a]\ncapacity = 2G\n' >"$tmp/twice.conf"
check 1 "$tmp/twice.conf"
grep -qx "$tmp/twice.conf:3: \[pool a\]: section given twice in one file (first on line 1)" <<<"$out" ||
        fail "--check-config: a repeated section is not a file:line error"
check 2 "$tmp/twice.conf" --config "$tmp/scavd.conf"

for m in "$dest"/usr/share/man/man?/*.[1358]; do
        grep -q '^\.so ' "$m" && continue
        head -n1 "$m" | grep -q "\"scavd $version\"" || fail "$(basename "$m"): .TH does not say scavd $version"
done
if grep -l '@[A-Z]*@' "$dest"/usr/share/man/man?/* "$pc" 2>/dev/null; then
        fail "placeholders left in installed files (above)"
fi

# --- man pages: a .so page per function, found by man ---
names=$(sed -n '/^\.SH NAME/{n;s/ *\\-.*//;s/,/ /g;p;q;}' "$man3/libscav.3")
n=0
for f in $names; do
        [ "$f" = libscav ] && continue
        n=$((n + 1))
        [ "$(cat "$man3/$f.3" 2>/dev/null)" = ".so man3/libscav.3" ] || fail "no .so page for $f(3)"
done
echo "man3: $n .so pages for the functions of libscav(3)"
[ "$n" -ge 10 ] || fail "only $n functions in libscav(3)'s NAME line"
if command -v man >/dev/null; then
        out=$(MANPAGER=cat MANWIDTH=80 man -M "$dest/usr/share/man" scav_alloc 2>&1)
        grep -q '^LIBSCAV(3)' <<<"$out" && grep -q 'EXAMPLE' <<<"$out" ||
                fail "man scav_alloc does not show libscav(3): $(head -n3 <<<"$out")"
else
        echo "man not installed: man scav_alloc not tried"
fi
[ -f "$dest/usr/share/doc/scavd/examples/demo.c" ] || fail "demo.c not installed to /usr/share/doc/scavd/examples"

# --- the bash completion, loaded by bash ---
comp=$dest/usr/share/bash-completion/completions/scavctl
if [ -f "$comp" ]; then
        # complete WORDS...: what the completion offers for the last word.
        out=$(PATH="$dest/usr/bin:$PATH" SCAVD_SOCKET=$sock LD_PRELOAD='' bash --norc --noprofile -c '
                source "$1" || exit 1
                fn=$(complete -p scavctl | sed -n "s/.*-F \([^ ]*\) scavctl$/\1/p")
                [ -n "$fn" ] || { echo "no completion function for scavctl"; exit 1; }
                complete_words() {
                        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
                        COMPREPLY=()
                        "$fn" scavctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                        echo "$*| ${COMPREPLY[*]}"
                }
                complete_words scavctl st
                complete_words scavctl ""
                complete_words scavctl status --js
                complete_words scavctl status --json d
                unset SCAVD_SOCKET
                complete_words scavctl --socket "$2" check ""
                complete_words scavctl --socket "$2" scavenge demo ""
        ' bash "$comp" "$sock" 2>&1)
        echo "bash completion (words| offered):"
        sed 's/^/    /' <<<"$out"
        grep -qx 'scavctl st| status' <<<"$out" || fail "bash: 'scavctl st<TAB>' does not complete to status"
        # Every command of scavctl --help, so that a new one is not forgotten.
        offered=" $(sed -n 's/^scavctl | //p' <<<"$out") "
        for c in $("$dest/usr/bin/scavctl" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z-]*\) .*/\1/p'); do
                [[ $offered == *" $c "* ]] ||
                        fail "bash: 'scavctl <TAB>' does not offer the command $c (shell-completion/bash/scavctl)"
        done
        [ "$offered" != "  " ] || fail "bash: 'scavctl <TAB>' offers nothing"
        grep -qx 'scavctl status --js| --json' <<<"$out" || fail "bash: '--js<TAB>' does not complete to --json"
        grep -qx 'scavctl status --json d| demo' <<<"$out" || fail "bash: 'status d<TAB>' does not complete the pool demo"
        grep -qx "scavctl --socket $sock check | demo other" <<<"$out" ||
                fail "bash: 'check <TAB>' does not offer the pools of --socket's daemon"
        grep -qx "scavctl --socket $sock scavenge demo | " <<<"$out" ||
                fail "bash: a pool is offered after scavenge's pool"
else
        fail "bash completion not installed to /usr/share/bash-completion/completions"
fi
zcomp=$dest/usr/share/zsh/site-functions/_scavctl
[ -f "$zcomp" ] || fail "zsh completion not installed to /usr/share/zsh/site-functions"
# zsh: it parses, and compinit takes it for scavctl.
if command -v zsh >/dev/null; then
        zsh -n "$zcomp" || fail "zsh: _scavctl does not parse"
        zsh -fc 'fpath=("$1" $fpath); autoload -Uz compinit; compinit -u -d "$2"; [[ $_comps[scavctl] == _scavctl ]]' \
                zsh "${zcomp%/*}" "$tmp/zcompdump" && echo "zsh: compinit takes _scavctl for scavctl" ||
                fail "zsh: compinit does not take _scavctl for scavctl"
else
        fail "zsh not installed (make deps installs it): its completion not checked"
fi

kill -TERM "$pid"
wait "$pid"; rc=$?
pid=
[ "$rc" -eq 0 ] || { cat "$tmp/scavd.log" >&2; fail "installed scavd exited with $rc after SIGTERM"; }

# --- the installed units ---
if command -v systemd-analyze >/dev/null; then
        unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null)
        unitdir=${unitdir#"$dest"}
        unitdir=${unitdir:-/usr/lib/systemd/system}
        # verify also loads the targets the default dependencies name, and
        # kill(1) of ExecReload=: a system's, copied beside ours.
        mkdir -p "$dest$unitdir" "$dest/usr/bin"
        for t in sysinit.target basic.target shutdown.target sockets.target multi-user.target; do
                [ -f "$dest$unitdir/$t" ] || cp "$unitdir/$t" "$dest$unitdir/" 2>/dev/null ||
                        cp "/usr/lib/systemd/system/$t" "$dest$unitdir/"
        done
        cp "$(type -P kill)" "$dest/usr/bin/kill"
        [ -e "$dest/bin" ] || ln -s usr/bin "$dest/bin"
        out=$(MANPATH=$dest/usr/share/man systemd-analyze verify --root="$dest" \
                "$dest$unitdir/scavd.service" "$dest$unitdir/scavd.socket" 2>&1); rc=$?
        echo "systemd-analyze verify scavd.service scavd.socket: exit $rc${out:+: $out}"
        [ "$rc" -eq 0 ] || fail "systemd-analyze verify exited $rc"
        ! grep -qiE 'unknown|ignoring|invalid|failed|not executable' <<<"$out" ||
                fail "systemd-analyze verify complained"
else
        fail "systemd-analyze not installed (make deps installs systemd)"
fi

# --- multiarch LIBDIR, then uninstall ---
ma=$($cc -print-multiarch 2>/dev/null)
ma=${ma:-$(uname -m)-linux-gnu}
dest2=$tmp/dest2
if mk -s "${asis[@]}" install DESTDIR="$dest2" PREFIX=/usr LIBDIR="/usr/lib/$ma" >"$tmp/install2.log" 2>&1; then
        pc2=$dest2/usr/lib/$ma/pkgconfig/libscav.pc
        [ -f "$dest2/usr/lib/$ma/libscav.so.0.1" ] || fail "LIBDIR=/usr/lib/$ma: libscav.so not there"
        grep -qx "libdir=\${prefix}/lib/$ma" "$pc2" 2>/dev/null || fail "LIBDIR=/usr/lib/$ma: libscav.pc does not say so"
        flags2=$(PKG_CONFIG_SYSROOT_DIR=$dest2 PKG_CONFIG_LIBDIR=${pc2%/*} pkg-config --libs libscav)
        echo "LIBDIR=/usr/lib/$ma: pkg-config --libs libscav: $flags2"
        [[ $flags2 == "-L$dest2/usr/lib/$ma -lscav"* ]] || fail "LIBDIR=/usr/lib/$ma: pkg-config --libs: $flags2"
        echo '# edited' >>"$dest2/etc/scavd/scavd.conf"
        if mk -s uninstall DESTDIR="$dest2" PREFIX=/usr LIBDIR="/usr/lib/$ma" >"$tmp/uninstall.log" 2>&1; then
                left=$(cd "$dest2" && find . \( -type f -o -type l \) | sort)
                echo "left after make uninstall: ${left:-nothing}"
                [ "$left" = "./etc/scavd/scavd.conf" ] ||
                        fail "make uninstall left other files than the edited scavd.conf: $left"
        else
                cat "$tmp/uninstall.log" >&2
                fail "make uninstall DESTDIR=$dest2 PREFIX=/usr LIBDIR=/usr/lib/$ma"
        fi
else
        cat "$tmp/install2.log" >&2
        fail "make install LIBDIR=/usr/lib/$ma"
fi

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed" >&2; exit 1; }
echo "installed tree verified: version $version"
