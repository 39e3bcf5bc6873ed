#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""What each guarantee of libscav's fast path costs (issue 13).

Builds the row-1 driver (tests/bench/peer-alloc-scav.c) from copies of the
source tree, each with one guarantee cut out of the inline fast paths
(lib/heap/fast.h, lib/heap/tcache.h, lib/scav.c), and measures every copy
against tcmalloc in the same rounds: instructions per alloc+free pair under
callgrind (the difference of two run lengths, so start-up cancels out) and
the median of per-round time ratios. The copies are thrown away: nothing
here is a configuration of libscav, only a price list for the issue's
"as short as the best in-process allocators' while keeping every
guarantee".

    tests/bench/fast-ablation.py [--build build] [--out docs/bench-ablation.md]
                                 [--rounds 7] [--seconds 0.3]

An edit that no longer applies (the code it cuts moved) stops the run with
the variant's name: update EDITS here with the code.
"""

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

_spec = importlib.util.spec_from_file_location("peer_bench", os.path.join(TOP, "tests", "bench", "peer-bench.py"))
pb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pb)

FAST = "lib/heap/fast.h"
TCACHE = "lib/heap/tcache.h"
SCAV = "lib/scav.c"

# name -> (what is given up, [(file, old text, new text)])
EDITS = {
    "api": ("argument checks: a NULL pool, flags or a NULL result in scav_alloc, "
            "an offset out of the pool or not page-aligned in scav_free", [
        (SCAV, """        if (_unlikely_(!p))
                return scav_alloc_slow(p, size, flags, off);
        if (_unlikely_(flags))
                return scav_alloc_slow(p, size, flags, off);
        if (_unlikely_(!off))
                return scav_alloc_slow(p, size, flags, off);
""", ""),
        (SCAV, "if (_unlikely_(!p || off >= p->capacity || (off & (p->page_size - 1)) || !(x = scav_tls_fast(p))))",
         "if (_unlikely_(!(x = scav_tls_fast(p))))"),
    ]),
    "bracket": ("the operation bracket (the owner's two seq stores and its state load): "
                "a reaper could take a cache in the middle of its owner's operation, "
                "and a heap marked corrupt would still be served", [
        (TCACHE, "static inline bool heap_tc_enter_fenced(struct heap_tcache *t, bool fenced) {\n",
         "static inline bool heap_tc_enter_fenced(struct heap_tcache *t, bool fenced) {\n        if (1)\n"
         "                return true;\n"),
        (TCACHE, "static inline void heap_tc_leave(struct heap_tcache *t) {\n",
         "static inline void heap_tc_leave(struct heap_tcache *t) {\n        if (1)\n                return;\n"),
    ]),
    "acheck": ("the allocation's check of its list entry against the record: "
               "a stale or scribbled entry would be handed out", [
        (FAST, """                if (_unlikely_(page >= x->cap_pages ||
                               atomic_load_explicit(&x->records[page], memory_order_relaxed) != want))
                        goto slow; /* a stale entry: the full path drops it */
""", ""),
    ]),
    "fcheck": ("the free's checks of the record (owner, KEEP, SHARED, size, bounds): "
               "double frees, other threads' and shared allocations' frees would be taken as the owner's", [
        (FAST, """        if (_unlikely_((rec & (HEAP_REC_CACHED | HEAP_REC_SHARED | HEAP_REC_KEEP | HEAP_REC_OWNER_MASK |
                               HEAP_REC_CACHE_MASK)) != x->owner ||
                       n - 1 >= HEAP_MCACHE_MAX_PAGES || page + n > x->cap_pages))
                return HEAP_FAST_SLOW;
""", ""),
    ]),
    "acct": ("the lists' low-water marks and page count: the idle reap could not tell "
             "what a busy thread did not use, and a thread's lists would have no bound", [
        (FAST, """                if (_unlikely_(top - 1 < t->low[k]))
                        t->low[k] = (uint8_t) (top - 1);
                t->pages -= HEAP_REC_NPAGES(want);
""", ""),
        (FAST, " || t->pages + n > x->list_cap))", "))"),
        (FAST, """                t->pages += (uint32_t) n;
        } else {""", "        } else {"),
    ]),
    "tick": ("the free's WAKE countdown: a parked daemon would not hear of frees", [
        (SCAV, """                if (_likely_(!free_tick()))
                        return 0;
                return scav_free_wake(p);""", """                return p ? 0 : scav_free_wake(p);"""),
    ]),
}
VARIANTS = ["base"] + list(EDITS) + ["all"]
SIZES = ["8k", "64k"]


def log(msg):
    print(f"[ablation {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_variant(work, name):
    """A copy of the tree with the variant's edits, its driver built: the driver's path."""
    src = os.path.join(work, name)
    shutil.copytree(TOP, src, ignore=shutil.ignore_patterns("build*", ".git", "docs", "python", "__pycache__"))
    names = list(EDITS) if name == "all" else [] if name == "base" else [name]
    for n in names:
        for path, old, new in EDITS[n][1]:
            p = os.path.join(src, path)
            with open(p) as f:
                text = f.read()
            if text.count(old) != 1:
                sys.exit(f"fast-ablation: variant {n} no longer applies to {path}: update EDITS")
            with open(p, "w") as f:
                f.write(text.replace(old, new))
    target = "build/bench-peers/alloc-scav"
    p = subprocess.run(["make", "-s", "-j2", target], cwd=src, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"fast-ablation: variant {name} does not build:\n{p.stderr[-2000:]}")
    return os.path.join(src, target)


def ns_per_pair(driver, size, seconds, env):
    p = subprocess.run([driver, size, "--seconds", str(seconds), "--cpu", "0"], env=env, capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        return None
    return pb.kv(p.stdout.strip().splitlines()[-1]).get("ns_per_pair")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="docs/bench-ablation.md")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3)
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tc = os.path.join(build, "bench-peers", "alloc-tcmalloc")
    if not os.path.exists(tc):
        sys.exit(f"fast-ablation: {tc} missing: make bench-deps bench-peers-bins first")
    if not shutil.which("valgrind"):
        sys.exit("fast-ablation: valgrind missing: make bench-deps first")

    started = time.time()
    daemon = pb.Daemon(build, [("bench", "4G")], name="ablation")
    work = tempfile.mkdtemp(prefix="scav-ablation.")
    rows = {}
    try:
        env = dict(os.environ, **daemon.env("bench"))
        for v in VARIANTS:
            log(f"variant {v}: building")
            driver = make_variant(work, v)
            for size in SIZES:
                vlog = os.path.join(work, "callgrind.log")
                ins = pb.instructions_per_pair(driver, size, daemon.env("bench"), vlog)
                ins_tc = pb.instructions_per_pair(tc, size, None, vlog)
                mine, theirs, ratio = [], [], []
                for _ in range(args.rounds):
                    a = ns_per_pair(driver, size, args.seconds, env)
                    b = ns_per_pair(tc, size, args.seconds, env)
                    mine.append(a)
                    theirs.append(b)
                    ratio.append(b / a if a and b else None)
                rows[(v, size)] = (ins, ins_tc, pb.median(mine), pb.median(theirs), pb.median(ratio))
                log(f"  {size}: {ins} instructions/pair (tcmalloc {ins_tc}), ratio {pb.median(ratio)}")
    finally:
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)

    out = ["# What libscav's fast path pays for its guarantees",
           "",
           "Written by `tests/bench/fast-ablation.py` (`make bench-ablation`); do not edit by hand. "
           "Each row is the row-1 driver of docs/benchmarks.md (1,000 live blocks, the first byte written, "
           "one free and one allocation per step) built from a copy of the source with one guarantee cut out "
           "of the inline fast paths, measured against tcmalloc in the same rounds. Instructions per pair are "
           f"callgrind's totals for {pb.INSTR_PAIRS[1]:,} pairs minus those for {pb.INSTR_PAIRS[0]:,}, per pair "
           "(as for docs/benchmarks.md's count; the driver's own loop "
           "included, for both). The ratio is tcmalloc's time over the variant's, the median of "
           f"{args.rounds} rounds of {args.seconds} s each (above 1: the variant is faster). "
           "None of these variants is a configuration of libscav.",
           "",
           f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; whole run {time.time() - started:.0f} s",
           f"- Machine: {pb.machine_line()}",
           "",
           "| variant | what it gives up | " + " | ".join(
               f"{s} instr/pair | {s} ns/pair | {s} ÷ tcmalloc" for s in SIZES) + " |",
           "|---|---|" + "---|---|---|" * len(SIZES)]
    for v in VARIANTS:
        what = ("nothing: libscav as built" if v == "base" else
                "all of the above" if v == "all" else EDITS[v][0])
        cells = []
        for size in SIZES:
            ins, _, ns, _, ratio = rows[(v, size)]
            cells += [f"{ins:.0f}" if ins else "—", f"{ns:.1f}" if ns else "—", f"{ratio:.2f}×" if ratio else "—"]
        out.append(f"| {v} | {what} | " + " | ".join(cells) + " |")
    tc_cells = []
    for size in SIZES:
        ins_tc = statistics.median([rows[(v, size)][1] for v in VARIANTS if rows[(v, size)][1]] or [0])
        ns_tc = statistics.median([rows[(v, size)][3] for v in VARIANTS if rows[(v, size)][3]] or [0])
        tc_cells += [f"{ins_tc:.0f}", f"{ns_tc:.1f}", "1.00×"]
    out.append("| tcmalloc | (the peer: malloc and free) | " + " | ".join(tc_cells) + " |")
    out += ["",
            "Commands (the daemon as in docs/benchmarks.md: a private socket, `bpf = off`, `pressure = off`, "
            "pool `bench` of 4 GiB):",
            "",
            "```",
            "make bench-ablation    # = tests/bench/fast-ablation.py --build build",
            "PEER_POOL=bench SCAVD_SOCKET=PRIVATE valgrind --tool=callgrind --callgrind-out-file=/dev/null "
            f"VARIANT/build/bench-peers/alloc-scav SIZE --pairs {pb.INSTR_PAIRS[0]}    # and {pb.INSTR_PAIRS[1]}",
            "PEER_POOL=bench SCAVD_SOCKET=PRIVATE VARIANT/build/bench-peers/alloc-scav SIZE "
            f"--seconds {args.seconds} --cpu 0    # ×{args.rounds}, alternated with",
            f"build/bench-peers/alloc-tcmalloc SIZE --seconds {args.seconds} --cpu 0",
            "```",
            ""]
    with open(os.path.join(TOP, args.out) if not os.path.isabs(args.out) else args.out, "w") as f:
        f.write("\n".join(out))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
