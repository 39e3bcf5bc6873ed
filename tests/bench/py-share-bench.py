#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Python side by side (issue 12): a NumPy array handed to a worker process
and back, through scav (a Buffer in a scavd pool, pickled as a reference),
multiprocessing.shared_memory + NumPy (a POSIX segment per array, its name
pickled), and plain pickling (the bytes copied both ways); then the memory
still backed once the arrays are dropped, and what a SIGKILLed worker leaves
behind. Writes its section of docs/benchmarks.md (between the markers
below, appended if missing: peer-bench.py writes the rest of the file, so
`make bench` runs this after it) and docs/bench-python.png.

    PYTHONPATH=build/python /usr/bin/python3 tests/bench/py-share-bench.py \\
        --build build [--out docs/benchmarks.md] [--quick] [--render-only]

The scav rows run against the daemon `make all` built ($BUILD/scavd),
started here on a private socket with its own configuration.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

import scav

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KIB, MIB = 1 << 10, 1 << 20
BEGIN = "<!-- python-bench: begin (tests/bench/py-share-bench.py writes this section) -->"
END = "<!-- python-bench: end -->"
SIZES = [("4 KiB", 4 * KIB), ("1 MiB", MIB), ("64 MiB", 64 * MIB)]
SYSTEMS = ["scav", "shared_memory", "pickle"]
SHM_PREFIX = f"pybench{os.getpid()}_"
POOL = "py"


def log(msg):
    print(f"[py-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Daemon:
    def __init__(self, build):
        self.dir = tempfile.mkdtemp(prefix="scavd-pybench.")
        self.socket = os.path.join(self.dir, "scavd.sock")
        self.config_text = "\n".join(["[daemon]", "bpf = off", "pressure = off", "",
                                      f"[pool {POOL}]", "capacity = 2G", ""])
        config = os.path.join(self.dir, "scavd.conf")
        with open(config, "w") as f:
            f.write(self.config_text)
        self.logf = open(os.path.join(self.dir, "scavd.log"), "w")
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS")}
        self.proc = subprocess.Popen([os.path.join(build, "scavd"), "--config", config, "--socket", self.socket],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scavd exited with {self.proc.returncode}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                s.connect(self.socket)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("scavd did not answer within 20 s")
                time.sleep(0.02)
            finally:
                s.close()
        os.environ["SCAVD_SOCKET"] = self.socket

    def heap_backed(self):
        """Bytes of the pool's heap memfd backed by memory (st_blocks)."""
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            path = f"/proc/{self.proc.pid}/fd/{fd}"
            try:
                if os.readlink(path).startswith(f"/memfd:scavd:{POOL}:heap"):
                    return os.stat(path).st_blocks * 512
            except OSError:
                pass
        raise RuntimeError("the pool's heap memfd is not among the daemon's files")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def shm_backed():
    total = n = 0
    for name in os.listdir("/dev/shm"):
        if name.startswith(SHM_PREFIX):
            total += os.stat(os.path.join("/dev/shm", name)).st_blocks * 512
            n += 1
    return n, total


def shm_cleanup(tracked=()):
    """Unlinks what the run left in /dev/shm; tracked: names the resource
    tracker knows, told as unlink() would (else it warns of leaks at exit)."""
    for name in os.listdir("/dev/shm"):
        if name.startswith(SHM_PREFIX):
            os.unlink(os.path.join("/dev/shm", name))
            if name in tracked:
                resource_tracker.unregister("/" + name, "shared_memory")


# --------------------------------------------------------------------------
# The worker: one process for the whole run, answering on a Pipe.

def worker(conn):
    while True:
        msg = conn.recv()
        kind = msg[0]
        if kind == "stop":
            return
        if kind in ("scav", "pickle"):
            a = msg[1]  # scav: the parent's memory; pickle: a copy
            a[0] += 1
            conn.send((kind, a))
            del a, msg
        elif kind == "shm":
            # The worker shares the parent's resource tracker (spawned by
            # multiprocessing): its registration is the parent's, which
            # unlink() takes back. (An unrelated process would have its own
            # tracker, which unlinks the segment when that process exits:
            # cpython #82300.)
            s = SharedMemory(msg[1])
            a = np.ndarray(msg[2], np.uint8, buffer=s.buf)
            a[0] += 1
            del a
            s.close()
            conn.send(("shm",))


def holder(conn, kind, count, size, prefix):
    """Makes count arrays of its own, says so, and waits to be killed."""
    keep = []
    if kind == "scav":
        pool = scav.Pool(POOL)
        for _ in range(count):
            a = pool.ndarray(size, np.uint8)
            a.fill(1)
            keep.append(a)
    else:
        for i in range(count):
            s = SharedMemory(name=f"{prefix}kill{i}", create=True, size=size)
            np.ndarray(size, np.uint8, buffer=s.buf).fill(1)
            keep.append(s)
    conn.send("ready")
    signal.pause()


# --------------------------------------------------------------------------

def round_trip(conn, pool, system, n, v):
    """One array made, filled, handed to the worker and back, dropped.
    Returns (create+fill, hand-off, drop) in ns."""
    t0 = time.perf_counter_ns()
    if system == "scav":
        a = pool.ndarray(n, np.uint8)
    elif system == "shared_memory":
        s = SharedMemory(name=f"{SHM_PREFIX}{v}", create=True, size=n)
        a = np.ndarray(n, np.uint8, buffer=s.buf)
    else:
        a = np.empty(n, np.uint8)
    a.fill(v & 0xff)
    t1 = time.perf_counter_ns()
    if system == "shared_memory":
        conn.send(("shm", s.name, n))
        conn.recv()
        ok = a[0] == (v + 1) & 0xff
    else:
        conn.send(("scav" if system == "scav" else "pickle", a))
        _, b = conn.recv()
        ok = b[0] == (v + 1) & 0xff and (system == "pickle" or a[0] == b[0])
        del b
    t2 = time.perf_counter_ns()
    del a
    if system == "shared_memory":
        s.close()
        s.unlink()
    t3 = time.perf_counter_ns()
    if not ok:
        raise RuntimeError(f"{system}: the worker's write did not come back")
    return t1 - t0, t2 - t1, t3 - t2


def bench_trips(args, pool, conn, res):
    iters = {4 * KIB: 400, MIB: 100, 64 * MIB: 12}
    if args.quick:
        iters = {k: max(3, v // 8) for k, v in iters.items()}
    out = {}
    for label, n in SIZES:
        samples = {s: [] for s in SYSTEMS}
        for s in SYSTEMS:  # warm up: pages, caches, the worker's imports
            for v in range(3):
                round_trip(conn, pool, s, n, v)
        for r in range(args.rounds):
            for s in SYSTEMS:
                for v in range(iters[n]):
                    samples[s].append(round_trip(conn, pool, s, n, v))
        out[label] = {s: {"create": statistics.median(x[0] for x in samples[s]),
                          "trip": statistics.median(x[1] for x in samples[s]),
                          "drop": statistics.median(x[2] for x in samples[s]),
                          "total": statistics.median(sum(x) for x in samples[s]),
                          "n": len(samples[s])} for s in SYSTEMS}
        log(f"  {label}: " + ", ".join(f"{s} {out[label][s]['total'] / 1e3:.0f} us" for s in SYSTEMS))
    res["trips"] = out


def bench_backed(args, daemon, pool, conn, res):
    """COUNT arrays of SIZE each, filled, handed to the worker and back,
    dropped: what stays backed. shared_memory: closed but not unlinked
    (what a crash, or a forgotten unlink, leaves), then unlinked."""
    count, size = 8, 32 * MIB
    window = 5.0 if args.quick else args.window
    out = {"count": count, "size": size, "window": window}

    pool.scavenge()
    base = daemon.heap_backed()
    arrays = [pool.ndarray(size, np.uint8) for _ in range(count)]
    for a in arrays:
        a.fill(7)
        conn.send(("scav", a))
        conn.recv()
    peak = daemon.heap_backed() - base
    del arrays, a
    t0 = time.monotonic()
    trace = []
    while time.monotonic() - t0 < window:
        trace.append((time.monotonic() - t0, max(0, daemon.heap_backed() - base)))
        if trace[-1][1] == 0:
            break
        time.sleep(0.05)
    out["scav"] = {"peak": peak, "at_drop": trace[0][1], "end": trace[-1][1], "trace": trace,
                   "released_at": next((t for t, b in trace if b <= peak // 10), None)}
    pool.scavenge()
    out["scav"]["after_scavenge"] = max(0, daemon.heap_backed() - base)

    segs = []
    for i in range(count):
        s = SharedMemory(name=f"{SHM_PREFIX}backed{i}", create=True, size=size)
        np.ndarray(size, np.uint8, buffer=s.buf).fill(7)
        conn.send(("shm", s.name, size))
        conn.recv()
        segs.append(s)
    _, peak = shm_backed()
    for s in segs:
        s.close()
    time.sleep(min(window, 1.0))
    _, kept = shm_backed()
    for s in segs:
        s.unlink()
    _, after = shm_backed()
    out["shared_memory"] = {"peak": peak, "after_close": kept, "after_unlink": after}
    log(f"  scav: {peak >> 20} MiB backed -> {out['scav']['end'] >> 20} MiB after "
        f"{trace[-1][0]:.1f} s; shared_memory: {kept >> 20} MiB until unlink")
    res["backed"] = out


def bench_kill(args, daemon, pool, res):
    count, size = 8, MIB
    out = {"count": count, "size": size}
    ctx = get_context("spawn")
    for kind in ("scav", "shared_memory"):
        base = pool.stats()
        base_inuse, base_clients = base["inuse"], base["clients"]
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=holder, args=(theirs, "scav" if kind == "scav" else "shm", count, size, SHM_PREFIX))
        p.start()
        if not mine.poll(60) or mine.recv() != "ready":
            raise RuntimeError(f"{kind}: the holder did not get ready")
        held = (pool.stats()["inuse"] - base_inuse) if kind == "scav" else shm_backed()[1]
        t0 = time.monotonic()
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        if kind == "scav":
            # The daemon sees the hang-up and reclaims the slot.
            while pool.stats()["clients"] > base_clients and time.monotonic() - t0 < 30:
                time.sleep(0.005)
            t = time.monotonic() - t0
            left = pool.stats()["inuse"] - base_inuse
            out[kind] = {"held": held, "left": left, "left_count": 0 if left == 0 else None, "reclaimed_in": t}
        else:
            time.sleep(1.0)
            n, left = shm_backed()
            out[kind] = {"held": held, "left": left, "left_count": n}
            # What the resource tracker would do when the parent exits.
            shm_cleanup({f"{SHM_PREFIX}kill{i}" for i in range(count)})
        log(f"  {kind}: {held >> 20} MiB held by the worker, {out[kind]['left'] >> 20} MiB left after SIGKILL")
    res["kill"] = out


# --------------------------------------------------------------------------

def fmt_us(ns):
    us = ns / 1e3
    return f"{us:.0f}" if us >= 100 else f"{us:.1f}"


def plot(res, docs, outdir):
    dat = os.path.join(outdir, "trips.dat")
    with open(dat, "w") as f:
        f.write("size " + " ".join(SYSTEMS) + "\n")
        for label, _ in SIZES:
            f.write(label.replace(" ", "") + " " +
                    " ".join(f"{res['trips'][label][s]['total'] / 1e3:.2f}" for s in SYSTEMS) + "\n")
    png = os.path.join(docs, "bench-python.png")
    if shutil.which("gnuplot") is None:
        return None
    subprocess.run(["gnuplot", "-e", f"out='{png}'; data='{dat}'",
                    os.path.join(TOP, "tests", "bench", "py-share.gp")], check=True)
    return "bench-python.png"


def section(args, res, png):
    L = []
    A = L.append
    A(BEGIN)
    A("## 7. Python: a NumPy array to a worker and back")
    A("")
    A("The `scav` module (docs/python.md) against what Python offers for the same job. One worker "
      "process (spawn) for the whole run, on a `multiprocessing` Pipe; each iteration makes an array, "
      "fills it, hands it to the worker, which writes one byte and hands it back, checks that byte, "
      "and drops the array:")
    A("")
    A("- **scav**: `pool.ndarray(n, uint8)`; multiprocessing pickles it as a reference (a handle, "
      "dtype, shape, strides), the worker writes into the parent's memory;")
    A("- **shared_memory**: `SharedMemory(create=True, size=n)` + `np.ndarray(buffer=shm.buf)`; the "
      "segment's name goes over, the worker attaches, writes, closes; the parent then closes and "
      "unlinks (the worker shares the parent's resource tracker, so no tracker unlinks the segment "
      "early: cpython #82300);")
    A("- **pickle**: `np.empty(n)`, pickled by value both ways (the bytes are copied into the pipe "
      "and out of it, twice).")
    A("")
    if png:
        A(f"![make, hand off and drop: µs per array, log scale]({png})")
        A("")
    A("Median µs per array (create + fill | hand-off to the worker and back | drop = total):")
    A("")
    A("| size | " + " | ".join(SYSTEMS) + " |")
    A("|---|" + "---|" * len(SYSTEMS))
    for label, _ in SIZES:
        row = []
        for s in SYSTEMS:
            r = res["trips"][label][s]
            row.append(f"{fmt_us(r['create'])} \\| {fmt_us(r['trip'])} \\| {fmt_us(r['drop'])} = "
                       f"**{fmt_us(r['total'])}**")
        A(f"| {label} | " + " | ".join(row) + " |")
    A("")
    t = res["trips"]
    big, small = t["64 MiB"], t["4 KiB"]
    A(f"At 64 MiB scav takes {big['pickle']['total'] / big['scav']['total']:.1f}× less time than pickling "
      f"and {big['shared_memory']['total'] / big['scav']['total']:.1f}× less than shared_memory: a "
      "shared_memory segment is new memory each time (every page faulted in, then given back at "
      "unlink), a pool's freed pages are reused while the scavenger keeps them. At 4 KiB the hand-off "
      "dominates: scav "
      f"{fmt_us(small['scav']['trip'])} µs (two handles and two acknowledgements), shared_memory "
      f"{fmt_us(small['shared_memory']['trip'])} µs (the worker opens and maps the segment), pickle "
      f"{fmt_us(small['pickle']['trip'])} µs.")
    A("")
    b = res["backed"]
    sc, sm = b["scav"], b["shared_memory"]
    A(f"**Memory backed after the arrays are dropped** ({b['count']} arrays of {b['size'] >> 20} MiB, "
      "filled, handed to the worker and back, dropped; heap memfd `st_blocks` for scav, `/dev/shm` "
      "for shared_memory):")
    A("")
    A("| | while held | right after the drop | later | after an explicit release |")
    A("|---|---|---|---|---|")
    rel = (f"{sc['end'] >> 20} MiB after {sc['trace'][-1][0]:.1f} s (background scavenger, 1% CPU)")
    A(f"| scav | {sc['peak'] >> 20} MiB | {sc['at_drop'] >> 20} MiB (free in the pool) | {rel} | "
      f"{sc['after_scavenge'] >> 20} MiB (`pool.scavenge()`) |")
    A(f"| shared_memory | {sm['peak'] >> 20} MiB | {sm['after_close'] >> 20} MiB (closed, not unlinked) | "
      f"{sm['after_close'] >> 20} MiB (until someone unlinks) | {sm['after_unlink'] >> 20} MiB (`unlink()`) |")
    A("")
    k = res["kill"]
    ks, km = k["scav"], k["shared_memory"]
    A(f"**Left behind by a SIGKILLed worker** holding {k['count']} arrays of {k['size'] >> 20} MiB of "
      "its own: scav "
      f"{ks['left'] >> 20} MiB (the daemon reclaimed the dead client's slot in "
      f"{ks['reclaimed_in'] * 1000:.0f} ms: its references dropped, its arrays freed); shared_memory "
      f"{km['left_count']} segments, {km['left'] >> 20} MiB in `/dev/shm`, until the resource tracker "
      "unlinks them when the parent exits (with a warning about leaked objects), or forever if the "
      "tracker died too.")
    A("")
    A(f"Run: {time.strftime('%Y-%m-%d', time.localtime(res['t_start']))}, {platform.machine()}, "
      f"{os.cpu_count()} CPUs, Python {platform.python_version()}, NumPy {np.__version__}, "
      f"load average {res['loadavg'][0]:.2f} → {res['loadavg'][1]:.2f}; {args.rounds} rounds; "
      "daemon configuration:")
    A("")
    A("```ini")
    A(res["config"])
    A("```")
    A("")
    A("Command: `make bench-python` (part of `make bench`), i.e. "
      "`PYTHONPATH=build/python /usr/bin/python3 tests/bench/py-share-bench.py --build build`.")
    A(END)
    return "\n".join(L) + "\n"


def write_section(path, text):
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = ""
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        doc = head + text + ("\n" + tail if tail else "")
    else:
        doc = doc.rstrip("\n") + ("\n\n" if doc else "") + text
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=float, default=20.0, help="seconds to watch the scavenger release")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--render-only", action="store_true", help="rewrite the section from the last results")
    args = ap.parse_args()
    if args.quick:
        args.rounds = 1
    build = os.path.abspath(args.build)
    outdir = os.path.join(build, "bench-python")
    os.makedirs(outdir, exist_ok=True)
    saved = os.path.join(outdir, "results.json")
    out_path = os.path.join(TOP, args.out)
    docs = os.path.dirname(out_path)

    if args.render_only:
        with open(saved) as f:
            res = json.load(f)
    else:
        res = {"t_start": time.time()}
        load0 = os.getloadavg()[0]
        daemon = Daemon(build)
        res["config"] = daemon.config_text
        ctx = get_context("spawn")
        conn, theirs = ctx.Pipe()
        w = ctx.Process(target=worker, args=(theirs,))
        try:
            pool = scav.Pool(POOL)
            w.start()
            log("hand-off round trips")
            bench_trips(args, pool, conn, res)
            log("memory backed after the drop")
            bench_backed(args, daemon, pool, conn, res)
            log("a SIGKILLed worker")
            bench_kill(args, daemon, pool, res)
            conn.send(("stop",))
            w.join(30)
            pool.close()
        finally:
            if w.is_alive():
                w.kill()
            shm_cleanup()
            daemon.stop()
        res["loadavg"] = (load0, os.getloadavg()[0])
        with open(saved, "w") as f:
            json.dump(res, f)
    png = plot(res, docs, outdir)
    write_section(out_path, section(args, res, png))
    log(f"wrote its section of {out_path}")


if __name__ == "__main__":
    main()
