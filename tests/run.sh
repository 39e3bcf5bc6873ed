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

run_one() { # build name cmd...
        local build=$1 name=$2; shift 2
        if [ -n "${TESTS:-}" ] && [[ $name != *${TESTS}* ]]; then return; fi
        local log="$logdir/$build-${name//\//_}.log" rc start=$SECONDS
        SCAVD="$top/$build/scavd" SCAVCTL="$top/$build/scavctl" BUILD="$top/$build" \
                SCAV_TOP="$top" timeout -k 10 "${TEST_TIMEOUT:-600}" "$@" >"$log" 2>&1
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
