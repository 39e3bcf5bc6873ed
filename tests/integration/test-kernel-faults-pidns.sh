#!/usr/bin/env bash
# Fault accounting when the daemon lives in a pid namespace of its own
# (issue 6): clients' pids then come in that namespace's numbering, and the
# BPF program must count by it. Runs test-kernel-faults inside a new pid
# namespace; skips where one cannot be made.
set -u
t="${BUILD:-build}/tests/integration/test-kernel-faults"
[ -x "$t" ] || { echo "SKIP: $t not built"; exit 77; }
if ! unshare --pid --fork --mount-proc true 2>/dev/null; then
        echo "SKIP: cannot create a pid namespace here (unshare --pid)"
        exit 77
fi
exec unshare --pid --fork --mount-proc "$t"
