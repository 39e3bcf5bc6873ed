#!/usr/bin/env bash
# Runs every test of the given builds and ends with one line
# "N passed, N failed, N skipped". A test is a program: exit 0 passes,
# 77 skips (it prints why), anything else fails.
#
#   tests/run.sh build [build-san ...]
#   TESTS=pattern tests/run.sh build      only tests whose name matches
set -u
cd "$(dirname "$0")/.."
top=$PWD
pass=0 fail=0 skip=0
failed=()
logdir=$(mktemp -d /tmp/scavd-tests.XXXXXX)

# What a test that ran out of time was doing: each process of its session,
# the kernel function it waits in and, where gdb is, every thread's stack.
dump_stacks() { # session
        local p
        for p in $(pgrep -s "$1"); do
                echo "=== pid $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)(waits in $(cat "/proc/$p/wchan" 2>/dev/null))"
                if command -v gdb >/dev/null; then
                        gdb -p "$p" -batch -ex "thread apply all bt 16" 2>/dev/null | grep -E '^(Thread|#)'
                fi
        done
}

# Runs a test in a session of its own, as timeout(1) would (TERM after
# TEST_TIMEOUT seconds, KILL 10 s later, exit 124), but says first where it
# hangs: a hang seen once in CI is not lost with its process tree.
run_limited() { # log cmd...
        local log=$1 limit=${TEST_TIMEOUT:-600} pid sp ended rc; shift
        set +m # no job control: setsid then makes the test's own pid the session (no fork)
        : >"$log" # appended to, by the test and by what a timeout adds
        # A background job of a shell without job control starts with SIGINT
        # and SIGQUIT ignored; a test that interrupts its children needs them.
        env --default-signal=INT,QUIT setsid "$@" >>"$log" 2>&1 &
        pid=$!
        sleep "$limit" &
        sp=$!
        wait -n -p ended "$pid" "$sp"
        rc=$?
        if [ "$ended" = "$pid" ]; then
                kill "$sp" 2>/dev/null
                wait "$sp" 2>/dev/null
                return "$rc"
        fi
        { echo "--- timed out after $limit s; what each process was doing:"; dump_stacks "$pid"; } >>"$log" 2>&1
        kill -TERM -- -"$pid" 2>/dev/null
        sleep 10 &
        sp=$!
        wait -n -p ended "$pid" "$sp"
        if [ "$ended" = "$pid" ]; then
                kill "$sp" 2>/dev/null
                wait "$sp" 2>/dev/null
        else
                kill -KILL -- -"$pid" 2>/dev/null
                wait "$pid" 2>/dev/null
        fi
        return 124
}

run_one() { # build name cmd...
        local build=$1 name=$2; shift 2
        if [ -n "${TESTS:-}" ] && [[ $name != *${TESTS}* ]]; then return; fi
        local log="$logdir/$build-${name//\//_}.log" rc start=$SECONDS
        SCAVD="$top/$build/scavd" SCAVCTL="$top/$build/scavctl" BUILD="$top/$build" \
                SCAV_TOP="$top" run_limited "$log" "$@"
        rc=$?
        case $rc in
        0) pass=$((pass + 1)); printf 'PASS %-44s %4ss  [%s]\n' "$name" $((SECONDS - start)) "$build" ;;
        77) skip=$((skip + 1)); printf 'SKIP %-44s [%s] %s\n' "$name" "$build" "$(grep -m1 -i 'skip' "$log")" ;;
        *) fail=$((fail + 1)); failed+=("$build/$name")
           printf 'FAIL %-44s (exit %d) [%s]\n' "$name" $rc "$build"
           tail -n 30 "$log" | sed 's/^/    /' ;;
        esac
}

for build in "$@"; do
        for t in "$build"/tests/unit/test-* "$build"/tests/integration/test-*; do
                [ -x "$t" ] && [ -f "$t" ] || continue
                case $t in *.o|*.d) continue ;; esac
                run_one "$build" "${t#"$build"/tests/}" "$t"
        done
        for t in tests/integration/test-*.sh; do
                [ -f "$t" ] || continue
                run_one "$build" "${t#tests/}" bash "$t"
        done
done

# Fuzz targets run once, for a bounded time each, on their committed corpora.
if [ -d build-fuzz ]; then
        for f in build-fuzz/fuzz-*; do
                [ -x "$f" ] || continue
                name=${f#build-fuzz/}
                corpus="tests/fuzz/corpus/${name#fuzz-}"
                # New inputs go to a scratch directory (libFuzzer writes into
                # the first one); the committed corpus is only read.
                scratch=$(mktemp -d "$logdir/corpus.XXXXXX")
                run_one build-fuzz "fuzz/$name" "$f" -max_total_time="${FUZZ_SECONDS:-20}" \
                        -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$logdir/" \
                        "$scratch" "$corpus"
        done
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
        echo "failed: ${failed[*]}"
        echo "logs: $logdir"
else
        rm -rf "$logdir"
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
