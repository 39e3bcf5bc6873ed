#!/usr/bin/env bash
# The Python module's tests (python/tests, pytest) against the real daemon of
# this build, which python/tests/conftest.py starts on a private socket.
#
# A test still running after 180 s has every thread's stack printed
# (faulthandler), so that a hang says where it waits before run.sh's
# timeout kills it.
#
# For the ASan+UBSan build the module is instrumented but /usr/bin/python3
# is not: ASan's runtime has to be the first library loaded (LD_PRELOAD),
# and leak detection is off because the interpreter deliberately leaves
# memory to the kernel at exit (every multiprocessing child would report).
set -u
top=${SCAV_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${BUILD:-$top/build}
python=/usr/bin/python3

ext=$(ls "$build"/python/scav.*.so 2>/dev/null | head -n 1)
if [ -z "$ext" ]; then
        echo "FAIL: no Python module in $build/python ('make all' builds it)"
        exit 1
fi
if ! "$python" -c 'import pytest, numpy' 2>/dev/null; then
        echo "SKIP: $python lacks pytest or numpy ('make deps' installs python3-pytest python3-numpy)"
        exit 77
fi

preload=
if readelf -d "$ext" | grep -q 'NEEDED.*libasan'; then
        preload=$("${CC:-cc}" -print-file-name=libasan.so)
        if [ ! -e "$preload" ]; then
                echo "FAIL: $ext needs ASan's runtime, and ${CC:-cc} does not know where it is"
                exit 1
        fi
fi

cd "$top"
exec env ${preload:+LD_PRELOAD="$preload"} ${preload:+ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"} \
        PYTHONPATH="$build/python" PYTHONDONTWRITEBYTECODE=1 BUILD="$build" \
        "$python" -m pytest -q -p no:cacheprovider -W error::pytest.PytestUnraisableExceptionWarning \
        -o faulthandler_timeout=180 python/tests
