#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Side-by-side benchmarks of scavd against its peers (issue 7).

Runs every driver built by tests/bench/peers.mk several times, takes
medians, computes each ratio within one run (the peers and libscav measured
back to back in the same round), draws the retained-memory plots with
gnuplot, and writes docs/benchmarks.md.

    tests/bench/peer-bench.py --build build [--out docs/benchmarks.md]
                              [--runs 5] [--trace-runs 3] [--quick]

The scavd rows run against the daemon `make all` built ($BUILD/scavd),
started here on a private socket with its own configuration. A row whose
driver fails is still reported, with the failure.
"""

import argparse
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MIB = 1 << 20
GIB = 1 << 30

# Every command this run executed, with its environment additions, for the
# report's "exact commands" section (numbers that change per run elided).
COMMANDS = {}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def kv(line):
    """'a=1 b=x' -> {'a': 1.0, 'b': 'x'}"""
    out = {}
    for tok in line.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def note_command(cmd, env_add):
    shown = " ".join(shlex.quote(c) for c in cmd)
    shown = re.sub(r"--start-at \d+", "--start-at T", shown)
    shown = shown.replace(TOP + "/", "")
    if env_add:
        envs = " ".join(f"{k}={shlex.quote(str(v))}" for k, v in sorted(env_add.items()))
        envs = re.sub(r"/tmp/scavd-bench-[^ /]*/scavd\.sock", "PRIVATE", envs)
        shown = envs.replace(TOP + "/", "") + " " + shown
    COMMANDS[shown] = COMMANDS.get(shown, 0) + 1


def run(cmd, env_add=None, timeout=120):
    """Runs a driver; returns (stdout, None) or (None, error text)."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (env_add or {}).items()})
    note_command(cmd, env_add)
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    except OSError as e:
        return None, str(e)
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"exit {p.returncode}: {err}"
    return p.stdout, None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class TaskCPU:
    """CPU time of a process's threads (or those named `name`), from
    /proc/PID/task/*/schedstat in ns. Remembers every thread it has seen,
    so a thread that exits keeps counting what it used."""

    def __init__(self, pid, name=None):
        self.pid, self.name, self.seen = pid, name, {}

    def __call__(self):
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                try:
                    if self.name is not None:
                        with open(f"/proc/{self.pid}/task/{tid}/comm") as f:
                            if f.read().strip() != self.name:
                                continue
                    with open(f"/proc/{self.pid}/task/{tid}/schedstat") as f:
                        self.seen[tid] = max(self.seen.get(tid, 0), int(f.read().split()[0]))
                except (FileNotFoundError, ProcessLookupError):
                    pass
        except (FileNotFoundError, ProcessLookupError):
            pass
        return sum(self.seen.values())


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def machine_busy():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class Daemon:
    """A real scavd on a private socket with its own configuration."""

    def __init__(self, build, pools, scavtrace=0, scavenge_percent=1, name="main"):
        self.dir = tempfile.mkdtemp(prefix=f"scavd-bench-{name}.")
        self.socket = os.path.join(self.dir, "scavd.sock")
        self.config = os.path.join(self.dir, "scavd.conf")
        self.logpath = os.path.join(self.dir, "scavd.log")
        lines = ["[daemon]", f"socket = {self.socket}", f"scavtrace = {scavtrace}",
                 f"scavenge_percent = {scavenge_percent}", "bpf = off", "pressure = off", ""]
        for pname, cap in pools:
            lines += [f"[pool {pname}]", f"capacity = {cap}", ""]
        with open(self.config, "w") as f:
            f.write("\n".join(lines))
        self.config_text = "\n".join(lines)
        self.cmd = [os.path.join(build, "scavd"), "--config", self.config, "--socket", self.socket]
        self.restarts = 0
        self.logf = open(self.logpath, "w")
        self._start()

    def _start(self):
        note_command([self.cmd[0], "--config", "scavd.conf", "--socket", "PRIVATE"], None)
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("LISTEN_FDS", None)
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scavd exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                s.connect(self.socket)
                s.close()
                break
            except OSError:
                time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError("scavd did not answer within 20 s")
        self.pid = self.proc.pid

    def restart(self):
        """A fresh daemon with fresh pools, after a failure left a pool
        quarantined (or the daemon gone), so later rows still measure."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.restarts += 1
        log(f"restarting the daemon after a failure ({self.log_tail(2)})")
        self._start()

    def env(self, pool=None):
        e = {"SCAVD_SOCKET": self.socket}
        if pool:
            e["PEER_POOL"] = pool
        return e

    def log_tail(self, n=3):
        try:
            with open(self.logpath) as f:
                return " | ".join(f.read().strip().splitlines()[-n:])
        except OSError:
            return ""

    def log_text(self):
        try:
            with open(self.logpath) as f:
                return f.read()
        except OSError:
            return ""

    def memfds(self):
        """[(name, size, backed bytes)] of the daemon's memfds."""
        out = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            path = f"/proc/{self.pid}/fd/{fd}"
            try:
                target = os.readlink(path)
                if not target.startswith("/memfd:"):
                    continue
                st = os.stat(path)
                out.append((target, st.st_size, st.st_blocks * 512))
            except OSError:
                pass
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# Row 1, 2, 5a: allocation throughput

ALLOCATORS = ["libscav", "glibc", "jemalloc", "tcmalloc", "boost", "memfd"]
SIZES = ["8k", "64k", "512k", "mixed"]


def alloc_driver(bindir, name):
    return os.path.join(bindir, "alloc-" + ("scav" if name == "libscav" else name))


def run_alloc(bindir, name, size, seconds, daemon=None, pool="bench", extra=()):
    env = daemon.env(pool) if name == "libscav" else None
    if name == "libscav" and daemon is None:
        return None, "no daemon"
    out, err = run([alloc_driver(bindir, name), size, "--seconds", str(seconds), *extra], env, timeout=60)
    if err:
        if name == "libscav":
            daemon.restart()
        return None, err
    return kv(out.strip().splitlines()[-1]).get("pairs_per_s"), None


def row_alloc(args, bindir, daemon, res):
    log("row 1: allocation throughput, one process")
    r1 = {a: {s: [] for s in SIZES} for a in ALLOCATORS}
    errs = {}
    for i in range(args.runs):
        for size in SIZES:
            for a in ALLOCATORS:
                v, err = run_alloc(bindir, a, size, args.seconds, daemon)
                r1[a][size].append(v)
                if err:
                    errs[(a, size)] = err
        log(f"  round {i + 1}/{args.runs} done")
    res["alloc"] = r1
    res["alloc_err"] = errs


def row_two(args, bindir, daemon, res):
    log("row 2: two processes on the two cores against one pool")
    out = {}
    ncpu = len(os.sched_getaffinity(0))
    cpus = sorted(os.sched_getaffinity(0))[:2]
    shm_name = f"peer-bench-two-{os.getpid()}"
    for name in ["libscav", "boost", "glibc"]:
        for size in ["8k", "mixed"]:
            one, two, ratio, err = [], [], [], None
            for _ in range(args.runs2):
                v1, e1 = run_alloc(bindir, name, size, args.seconds, daemon, extra=("--cpu", str(cpus[0])))
                if ncpu < 2:
                    err = "fewer than two CPUs"
                    break
                start_at = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + int(0.5e9)
                env = dict(os.environ)
                shown_env = None
                if name == "libscav":
                    env.update(daemon.env("bench") if daemon else {})
                    shown_env = daemon.env("bench") if daemon else None
                elif name == "boost":
                    env["PEER_SHM_NAME"] = shm_name
                    shown_env = {"PEER_SHM_NAME": "peer-bench-two-PID"}
                vals, e2 = run_pair(alloc_driver(bindir, name), size, args.seconds, cpus, [env, env],
                                    [shown_env, shown_env], start_at)
                if e2:
                    err = e2
                    if name == "libscav":
                        daemon.restart()
                if e1:
                    err = e1
                if name == "boost":
                    try:
                        os.unlink("/dev/shm/" + shm_name)
                    except FileNotFoundError:
                        pass
                agg = sum(vals) if None not in vals else None
                one.append(v1)
                two.append(agg)
                ratio.append(agg / v1 if agg and v1 else None)
            out[(name, size)] = {"one": one, "two": two, "ratio": ratio, "err": err}
    res["two"] = out
    row_two_reaped(args, bindir, daemon, cpus, res)

    log("row 2b: two threads of one process on the two cores")
    thr = {}
    for name in ["libscav", "jemalloc", "tcmalloc", "glibc"]:
        for size in ["8k", "mixed"]:
            one, two, ratio, err = [], [], [], None
            for _ in range(args.runs2):
                v1, e1 = run_alloc(bindir, name, size, args.seconds, daemon, extra=("--cpu", str(cpus[0])))
                v2, e2 = run_alloc(bindir, name, size, args.seconds, daemon, extra=("--threads", "2"))
                err = err or e1 or e2
                one.append(v1)
                two.append(v2)
                ratio.append(v2 / v1 if v1 and v2 else None)
            thr[(name, size)] = {"one": one, "two": two, "ratio": ratio, "err": err}
    res["threads"] = thr


def run_pair(driver, size, seconds, cpus, envs, shown_envs, start_at, between=None):
    """Runs `driver` on cpus[i] with envs[i], both measuring from start_at
    (CLOCK_MONOTONIC ns), and between() while they get ready: the pairs per
    second of each (None for one that failed) and the last failure's text."""
    procs, vals, err = [], [], None
    for c, env, shown in zip(cpus, envs, shown_envs):
        cmd = [driver, size, "--seconds", str(seconds), "--cpu", str(c), "--start-at", str(start_at)]
        note_command(cmd, shown)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    if between:
        between()
    for p in procs:
        o, e = p.communicate(timeout=60)
        if p.returncode != 0 or not o.strip():
            err = f"exit {p.returncode}: {e.strip()[-200:]}"
            vals.append(None)
        else:
            vals.append(kv(o.strip().splitlines()[-1]).get("pairs_per_s"))
    return vals, err


def two_reaped_once(bindir, daemon, size, seconds, pools, cpus):
    """Two libscav drivers (pools[i] on cpus[i]) fill their live sets, a
    forced scavenge of their pools takes every thread cache back while they
    wait, then both run `seconds`: the summed pairs per second, or None."""
    scavctl = os.path.join(os.path.dirname(bindir), "scavctl")
    reaped = []

    def reap():
        time.sleep(1.0)
        for pool in sorted(set(pools)):
            cmd = [scavctl, "scavenge", pool]
            note_command(cmd, daemon.env())
            p = subprocess.run(cmd, env=dict(os.environ, **daemon.env()), capture_output=True, text=True,
                               timeout=60)
            if p.returncode != 0:
                log(f"scavctl scavenge {pool}: exit {p.returncode}: {p.stderr.strip()[-200:]}")
            reaped.append(p.returncode == 0)

    envs = [daemon.env(pool) for pool in pools]
    vals, err = run_pair(alloc_driver(bindir, "libscav"), size, seconds, cpus,
                         [dict(os.environ, **e) for e in envs], envs,
                         time.clock_gettime_ns(time.CLOCK_MONOTONIC) + int(1.5e9), reap)
    if err:
        log(f"row 2c, {size}: {err}")
        daemon.restart()
    return sum(vals) if all(reaped) and None not in vals else None


def row_two_reaped(args, bindir, daemon, cpus, res):
    """Two processes in one pool against two pools, each after a reap took
    their caches back (a forced scavenge): what the blocks they then take
    from the heap cost if they lie among each other's (cache.c's fills,
    mcache.c's home chunks)."""
    log("row 2c: two processes after their caches were taken back, one pool and two")
    out = {}
    if daemon is None or len(cpus) < 2:
        res["two_reaped"] = out
        return
    for size in ["4k", "8k", "mixed"]:
        one, two, ratio = [], [], []
        for _ in range(args.runs2):
            a = two_reaped_once(bindir, daemon, size, args.seconds, ["bench", "bench"], cpus)
            b = two_reaped_once(bindir, daemon, size, args.seconds, ["bench", "bench2"], cpus)
            one.append(a)
            two.append(b)
            ratio.append(a / b if a and b else None)
        out[size] = {"one": one, "two": two, "ratio": ratio}
    res["two_reaped"] = out


def row_daemon_stopped(args, bindir, daemon, res):
    """Issue 3: the daemon is on no allocation's path. The libscav driver
    opens the pool, fills and warms up, says "armed"; then the daemon is
    stopped with SIGSTOP for the whole measured second, and continued."""
    import signal
    log("row 1b: libscav with the daemon stopped (SIGSTOP)")
    out = {}
    if daemon is None:
        res["stopped"] = {"err": "no daemon"}
        return
    for size in ("8k", "mixed"):
        running, stopped, ratio, err = [], [], [], None
        for _ in range(args.runs2):
            v1, e1 = run_alloc(bindir, "libscav", size, args.seconds, daemon, extra=("--cpu", "0"))
            start_at = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + int(1.5e9)
            cmd = [alloc_driver(bindir, "libscav"), size, "--seconds", str(args.seconds), "--cpu", "0",
                   "--start-at", str(start_at)]
            note_command(cmd, daemon.env("bench"))
            env = dict(os.environ)
            env.update(daemon.env("bench"))
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            armed = kv(p.stdout.readline())
            v2 = None
            if "t" in armed and armed["t"] < start_at:
                os.kill(daemon.pid, signal.SIGSTOP)
                try:
                    time.sleep(max(0.0, (start_at - time.clock_gettime_ns(time.CLOCK_MONOTONIC)) / 1e9)
                               + args.seconds + 0.2)
                    st = open(f"/proc/{daemon.pid}/stat").read().split(") ")[1].split()[0]
                finally:
                    os.kill(daemon.pid, signal.SIGCONT)
                o, e = p.communicate(timeout=60)
                if p.returncode == 0 and st == "T":
                    v2 = kv(o.strip().splitlines()[-1]).get("pairs_per_s")
                else:
                    err = f"exit {p.returncode}, daemon state {st}: {e.strip()[-200:]}"
            else:
                p.kill()
                _, e = p.communicate()
                err = ("the driver was not armed before the start (machine too loaded)" if "t" in armed
                       else f"driver failed: {e.strip()[-200:]}")
                if "t" not in armed:
                    daemon.restart()
            err = err or e1
            running.append(v1)
            stopped.append(v2)
            ratio.append(v2 / v1 if v1 and v2 else None)
        out[size] = {"running": running, "stopped": stopped, "ratio": ratio, "err": err}
    res["stopped"] = out


def profile_libscav(bindir, daemon, outdir, res):
    """Where libscav's row-1 time goes: a flat perf profile of its driver,
    so that a missed bar comes with what limits it."""
    prof = {}
    if daemon is None or shutil.which("perf") is None:
        res["profile"] = {"err": "perf not installed" if daemon else "no daemon"}
        return
    log("profile: perf record of the libscav driver")
    for label, size, extra in (("8k", "8k", []), ("mixed", "mixed", []), ("8k, 2 threads", "8k", ["--threads", "2"])):
        data = os.path.join(outdir, f"perf-{size}-{len(extra)}.data")
        cmd = ["perf", "record", "-q", "-o", data, "--", alloc_driver(bindir, "libscav"), size,
               "--seconds", "1", *extra]
        out, err = run(cmd, daemon.env("bench"), timeout=60)
        if err:
            prof[label] = {"err": err}
            daemon.restart()
            continue
        p = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "dso,sym",
                            "--percent-limit", "0.05"], capture_output=True, text=True)
        lines = []
        for line in p.stdout.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
            if m:
                lines.append((float(m.group(1)), m.group(2), m.group(4)))
        # Where the time goes, by kind: the shared heap lock, the bitmap and
        # summary work done under it, the lock-free cache path, the kernel.
        lock_k, bits_k, cache_k, lib_k, kern_k = (
            "heap lock (pthread_mutex_*)", "bitmaps and summaries (heap_palloc_*, heap_summary_*, heap_pa_*)",
            "page caches (heap_cache_*)", "client library (scav_*)", "kernel (page faults, futex waits)")
        cats = {lock_k: 0.0, bits_k: 0.0, cache_k: 0.0, lib_k: 0.0, kern_k: 0.0}
        for pct, dso, sym in lines:
            if "pthread_mutex" in sym or sym.startswith("heap_lock") or sym.startswith("heap_unlock"):
                cats[lock_k] += pct
            elif sym.startswith(("heap_palloc", "heap_summary", "heap_pa_", "heap_bits")):
                cats[bits_k] += pct
            elif sym.startswith("heap_cache"):
                cats[cache_k] += pct
            elif sym.startswith("scav_"):
                cats[lib_k] += pct
            elif dso.startswith("[kernel"):
                cats[kern_k] += pct
        prof[label] = {"top": [x for x in lines if x[0] >= 1.5][:10], "cats": cats,
                       "rate": kv(out.strip().splitlines()[-1]).get("pairs_per_s")}
    res["profile"] = prof


INSTR_ALLOCATORS = ["libscav", "tcmalloc", "jemalloc", "glibc"]
INSTR_SIZES = ["8k", "64k", "mixed"]
INSTR_PAIRS = (20000, 100000)


def count_instructions(bindir, daemon, outdir, res):
    """User-space instructions per alloc+free pair under callgrind: the
    marginal count between two runs of --pairs, so that filling, warm-up and
    start-up cancel. Unlike the wall clock (which swings by 2x between runs
    on this kind of machine), it is the same from run to run, and it says
    how much of a gap is work rather than waiting for memory."""
    out_res = {}
    if shutil.which("valgrind") is None:
        res["instr"] = {"err": "valgrind not installed"}
        return
    log("row 1: instructions per pair (callgrind)")
    vlog = os.path.join(outdir, "callgrind.log")
    for a in INSTR_ALLOCATORS:
        if a == "libscav" and daemon is None:
            continue
        for size in INSTR_SIZES:
            v = instructions_per_pair(alloc_driver(bindir, a), size, daemon.env("bench") if a == "libscav" else None,
                                      vlog)
            if v is None and a == "libscav":
                daemon.restart()
            if v is not None:
                out_res[(a, size)] = v
    res["instr"] = out_res


def instructions_per_pair(driver, size, env_add, vlog):
    """One driver's count for count_instructions (also tests/bench/fast-ablation.py's), or None."""
    counts = []
    for pairs in INSTR_PAIRS:
        out, err = run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", f"--log-file={vlog}",
                        driver, size, "--pairs", str(pairs)], env_add, timeout=300)
        m = None
        if not err:
            with open(vlog) as f:
                m = re.search(r"Collected : (\d+)", f.read())
        done = kv(out.strip().splitlines()[-1]).get("pairs") if m and out.strip() else None
        if not done:
            return None
        counts.append((int(m.group(1)), int(done)))
    (i1, p1), (i2, p2) = counts
    return (i2 - i1) / (p2 - p1)


# --------------------------------------------------------------------------
# Row 3: releasing memory

def row_share(args, bindir, daemon, res):
    """Row 6 (issue 11): references, handles and names beside an 8 KiB pair."""
    log("row 6: sharing")
    out = {}
    err = None
    for i in range(args.runs):
        if daemon is None:
            err = "no daemon"
            break
        txt, e = run([os.path.join(bindir, "share-scav"), "--seconds", str(args.seconds)],
                     daemon.env("bench"), timeout=60)
        if e:
            err = e
            daemon.restart()
            continue
        for line in txt.strip().splitlines():
            d = kv(line)
            if "op" in d:
                out.setdefault(d["op"], []).append(d["ns_per_op"])
    res["share"] = out
    res["share_err"] = err



def row_tcache(args, bindir, daemon, res):
    """Row 8 (issue 13): thread caches after a burst, and their way back."""
    log("row 8: thread caches after a burst")
    out = []
    err = None
    for i in range(args.runs):
        if daemon is None:
            err = "no daemon"
            break
        txt, e = run([os.path.join(bindir, "tcache-scav"), "--threads", "2", "--seconds", "0.5",
                      "--window", "10"], daemon.env("bench"), timeout=60)
        if e:
            err = e
            daemon.restart()
            continue
        out.append(kv(txt.strip().splitlines()[-1]))
    res["tcache"] = out
    res["tcache_err"] = err


def row_release(args, bindir, daemon, res):
    log("row 3: releasing memory (forced scavenge vs raw punch-hole)")
    runs = {"raw-64K": [], "raw-2M": [], "scavenge": [], "ratio": [], "scav_cpu": []}
    err = None
    for _ in range(max(3, args.runs - 2)):
        out, e = run([os.path.join(bindir, "release"), "--bytes", args.release_bytes],
                     daemon.env("release") if daemon else None, timeout=120) if daemon else (None, "no daemon")
        if e:
            err = e
            for k in runs:
                runs[k].append(None)
            if daemon:
                daemon.restart()
            continue
        got = {}
        for line in out.splitlines():
            d = kv(line)
            if "release" in d:
                got[d["release"]] = d
        for k in ("raw-64K", "raw-2M", "scavenge"):
            runs[k].append(got.get(k, {}).get("gib_per_s"))
        runs["scav_cpu"].append(got.get("scavenge", {}).get("cpu_seconds"))
        raws = [x for x in (runs["raw-64K"][-1], runs["raw-2M"][-1]) if x]
        best_raw = max(raws) if raws else None
        runs["ratio"].append(runs["scavenge"][-1] / best_raw if runs["scavenge"][-1] and best_raw else None)
        for k in ("raw-64K", "raw-2M", "scavenge"):
            runs.setdefault("released-" + k, []).append(got.get(k, {}).get("released"))
    runs["err"] = err
    res["release"] = runs

    log("floors: anon MADV_DONTNEED and memfd punch-hole")
    floors = {}
    for kind in ("anon", "memfd"):
        for piece in ("64K", "2M"):
            vals = []
            for _ in range(3):
                out, e = run([os.path.join(bindir, "floor"), kind, "--run", piece, "--bytes", "512M"])
                vals.append(kv(out.strip())["cpu_s_per_gib"] if out else None)
            floors[(kind, piece)] = median(vals)
    res["floors"] = floors


# --------------------------------------------------------------------------
# Row 4: returning memory after a burst

TRACE_SYSTEMS = {
    # name: (driver, environment, footprint kind)
    "scavd": ("trace-scav", {}, "memfd"),
    "go": ("trace-go", {"GODEBUG": "scavtrace=1"}, "anon"),
    "go-gc": ("trace-go", {"GODEBUG": "scavtrace=1"}, "anon"),
    "jemalloc-bg": ("trace-jemalloc", {"MALLOC_CONF": "background_thread:true"}, "anon"),
    "jemalloc-nobg": ("trace-jemalloc", {"MALLOC_CONF": "background_thread:false"}, "anon"),
}
TRACE_CASES = [("active", "scavd"), ("active", "go"), ("active", "jemalloc-bg"),
               ("idle", "scavd"), ("idle", "go"), ("idle", "go-gc"), ("idle", "jemalloc-bg"),
               ("idle", "jemalloc-nobg")]
# Cases that only explain another (run in the first round only, to keep `make bench` short).
TRACE_AUX = {("idle", "go"), ("idle", "go-gc"), ("idle", "jemalloc-nobg")}


def trace_once(args, build, bindir, case, system, outdir, run_idx):
    driver, env_add, kind = TRACE_SYSTEMS[system]
    cmd = [os.path.join(bindir, driver), case, "--burst", args.burst, "--keep", args.keep,
           "--window", str(args.window)]
    if system == "go-gc":
        cmd += ["--gc-after-free", "1"]
    daemon = None
    env = dict(os.environ)
    env.update(env_add)
    shown_env = dict(env_add)
    if system == "scavd":
        daemon = Daemon(build, [("trace", "4G")], scavtrace=1, scavenge_percent=1, name="trace")
        env.update(daemon.env("trace"))
        shown_env.update({"SCAVD_SOCKET": "PRIVATE", "PEER_POOL": "trace"})
    note_command(cmd, shown_env)
    result = {"system": system, "case": case, "samples": [], "err": None}
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, bufsize=1)
    try:
        ready = kv(p.stdout.readline())
        if "pid" not in ready:
            raise RuntimeError("driver did not start: " + p.stderr.read()[-300:])
        pid, heap_fd = int(ready["pid"]), int(ready["heap_fd"])
        base = 0 if kind == "memfd" else proc_status(pid, "RssAnon")

        def footprint():
            if kind == "memfd":
                return os.stat(f"/proc/{pid}/fd/{heap_fd}").st_blocks * 512
            return proc_status(pid, "RssAnon") - base

        if system == "scavd":
            cpu_ns = TaskCPU(daemon.pid)
        elif system.startswith("jemalloc"):
            cpu_ns = TaskCPU(pid, name="jemalloc_bg_thd")
        else:
            cpu_ns = TaskCPU(pid)
        cpu_ns()

        p.stdin.write("go\n")
        p.stdin.flush()
        burst = kv(p.stdout.readline())
        freed = kv(p.stdout.readline())
        if "t" not in freed:
            raise RuntimeError("driver failed in the burst: " + p.stderr.read()[-300:])
        t_freed = int(freed["t"])
        cpu0 = cpu_ns()
        t_end = t_freed + int(args.window * 1e9)
        samples = result["samples"]
        common_goal = 1.1 * parse_size(args.keep)
        peak = 0
        while True:
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            if now >= t_end or p.poll() is not None:
                break
            fp = footprint()
            peak = max(peak, fp)
            samples.append(((now - t_freed) / 1e9, fp, cpu_ns() - cpu0))
            # Stop early once the footprint is near the common goal and has
            # stayed within 2% for 2.5 s: the curve is flat from there on.
            # Elsewhere (after 12 s) only after 6 s flat: a paced scavenger
            # sleeps up to ~2.5 s between bursts, and cutting it off in one
            # of those pauses said "never" of a curve still on its way.
            t_now = samples[-1][0]
            flat_for = 2.5 if fp <= 1.21 * common_goal else 6.0 if t_now >= 12.0 else None
            if flat_for and fp < 0.5 * peak:
                window = [s for s in samples if s[0] >= t_now - flat_for]
                if t_now - window[0][0] >= flat_for - 0.1 and \
                        max(s[1] for s in window) - min(s[1] for s in window) <= 0.02 * peak:
                    break
            time.sleep(0.05)
        cpu1 = cpu_ns()
        try:
            p.stdin.write("stop\n")
            p.stdin.flush()
        except BrokenPipeError:
            pass
        out, errtext = p.communicate(timeout=30)
        done, state = {}, {}
        for line in out.splitlines():
            if line.startswith("done"):
                done = kv(line)
            elif line.startswith("state"):
                state = kv(line)
        result.update({
            "burst_t": burst.get("t"), "t_freed": t_freed, "cpu_ns": cpu1 - cpu0,
            "app_cpu_ns": (done.get("app_cpu_ns", 0) - freed.get("app_cpu_ns", 0)),
            "state": state, "stderr": errtext, "peak": peak,
            "ncpu": len(os.sched_getaffinity(0)),
        })
        if daemon:
            result["daemon_log"] = daemon.log_text()
        with open(os.path.join(outdir, f"trace-{case}-{system}-{run_idx}.dat"), "w") as f:
            f.write("# seconds_since_free footprint_MiB cpu_ms\n")
            for t, fp, c in samples:
                f.write(f"{t:.3f} {fp / MIB:.2f} {c / 1e6:.2f}\n")
    except Exception as e:  # a failing system is reported, not fatal
        result["err"] = str(e)
        p.kill()
        p.wait()
    finally:
        if daemon:
            daemon.stop()
    return result


def trace_metrics(r, keep_bytes):
    """Time to within 10% of the goal (own and common), CPU per GiB released."""
    if r.get("err") or not r["samples"]:
        return None
    samples = r["samples"]
    state = r.get("state", {})
    system = r["system"]
    if system == "scavd":
        # retained_goal reads "none" once retained is at or within a page of
        # the goal (the scavenger parks); the goal is then 1.1 x in use.
        own = state.get("goal")
        if (own is None or own >= 2 ** 63) and state.get("inuse") is not None:
            own = 1.1 * state["inuse"]
    elif system.startswith("go"):
        # RssAnon also holds the runtime's own metadata (GC bitmaps, spans),
        # which the heap goal does not count: add what it was at the end.
        own = state.get("goal")
        if own is not None and state.get("retained") is not None:
            own += max(0.0, samples[-1][1] - state["retained"])
    else:
        own = state.get("active")
    common = 1.1 * keep_bytes

    def first_below(limit):
        if limit is None:
            return None
        for t, fp, _ in samples:
            if fp <= 1.1 * limit:
                return t
        return None

    final = samples[-1][1]
    released = max(0, r["peak"] - final)
    cpu = r["cpu_ns"] / 1e9
    if system.startswith("go"):
        cpu = max(0.0, cpu - r["app_cpu_ns"] / 1e9)
    dur = samples[-1][0]
    # A goal at or above the burst's peak (Go with no GC since the burst)
    # says nothing is to be released: no time to report.
    t_own = first_below(own) if own is None or own < r["peak"] else None
    cpu_to_goal = next((c for t, _, c in samples if t >= t_own), None) if t_own else None
    return {
        "own_goal": own, "t_own": t_own, "goal_above_peak": own is not None and own >= r["peak"], "t_common": first_below(common),
        "final": final, "peak": r["peak"], "released": released, "cpu": cpu,
        "cpu_per_gib": cpu / (released / GIB) if released > 16 * MIB else None,
        "cpu_fraction": r["cpu_ns"] / 1e9 / (dur * r["ncpu"]) if dur > 0 else None,
        "duration": dur,
        "rate": released / t_own if t_own else None,
        "bg_fraction": cpu_to_goal / 1e9 / (t_own * r["ncpu"]) if t_own and cpu_to_goal is not None else None,
    }


def row_trace(args, build, bindir, outdir, res):
    log("row 4: returning memory after a burst")
    results = {c: [] for c in TRACE_CASES}
    for i in range(args.trace_runs):
        for case, system in TRACE_CASES:
            if i > 0 and (case, system) in TRACE_AUX:
                continue
            r = trace_once(args, build, bindir, case, system, outdir, i)
            r["metrics"] = trace_metrics(r, parse_size(args.keep))
            results[(case, system)].append(r)
            m = r["metrics"]
            log(f"  {case:6} {system:14} " + (f"t_own={m['t_own']} final={m['final'] / MIB:.0f}M "
                                              f"cpu={m['cpu']:.3f}s" if m else f"failed: {r['err']}"))
    res["trace"] = results


def plot_alloc(outdir, res, docs):
    r1 = res.get("alloc", {})
    if not r1:
        return
    data = os.path.join(outdir, "alloc.dat")
    with open(data, "w") as f:
        f.write("size " + " ".join(ALLOCATORS) + "\n")
        for size in SIZES:
            vals = []
            for a in ALLOCATORS:
                m = median(r1.get(a, {}).get(size, []))
                vals.append(f"{1e9 / m:.2f}" if m else "NaN")
            f.write(size + " " + " ".join(vals) + "\n")
    png = os.path.join(docs, "bench-alloc.png")
    cmd = ["gnuplot", "-e", f"out='{png}'; data='{data}'; "
           "ttl='Allocation: one process, 1,000 live blocks, first byte written (median ns per pair)'",
           os.path.join(TOP, "tests", "bench", "peer-alloc.gp")]
    note_command(["gnuplot", "-e", "out=...; data=...", "tests/bench/peer-alloc.gp"], None)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode == 0:
        res.setdefault("pngs", {})["alloc"] = os.path.basename(png)
    else:
        log("gnuplot failed: " + p.stderr.strip()[-300:])


def plot_traces(args, outdir, res, docs):
    gp = os.path.join(TOP, "tests", "bench", "peer-retained.gp")
    pngs = {}
    last = args.trace_runs - 1
    for case in ("active", "idle"):
        series = []
        for c, system in TRACE_CASES:
            path = os.path.join(outdir, f"trace-{case}-{system}-{last}.dat")
            if c == case and os.path.exists(path):
                series.append(f"{path}:{system}")
        if not series:
            continue
        png = os.path.join(docs, f"bench-retained-{case}.png")
        title = ("application keeps allocating (1 MiB every 10 ms) after the burst" if case == "active"
                 else "application idle after the burst")
        cmd = ["gnuplot", "-e", f"out='{png}'; series='{' '.join(series)}'; "
               f"ttl='Retained after a 1 GiB burst, 64 MiB kept: {title}'; goal={1.1 * parse_size(args.keep) / MIB}",
               gp]
        note_command(["gnuplot", "-e", "out=...; series=...", "tests/bench/peer-retained.gp"], None)
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode == 0:
            pngs[case] = os.path.basename(png)
        else:
            log("gnuplot failed: " + p.stderr.strip()[-300:])
    res.setdefault("pngs", {}).update(pngs)


# --------------------------------------------------------------------------
# Row 5: scale

def row_scale(args, build, bindir, daemon, res):
    log("row 5: scale")
    out = {}
    for size in ("8k", "mixed"):
        g, t, ratio = [], [], []
        err = None
        for _ in range(args.runs):
            v1, e1 = run_alloc(bindir, "libscav", size, args.seconds, daemon, pool="cap1g")
            v2, e2 = run_alloc(bindir, "libscav", size, args.seconds, daemon, pool="cap1t")
            err = err or e1 or e2
            g.append(v1)
            t.append(v2)
            ratio.append(v1 / v2 if v1 and v2 else None)   # cost ratio 1T / 1G
        out[size] = {"1g": g, "1t": t, "ratio": ratio, "err": err}
    res["scale_ops"] = out

    # Memory of the daemon and of the meta memfds per pool: a daemon with one
    # 1 TiB pool against one with eleven.
    mem = {}
    try:
        for npools in (1, 11):
            d = Daemon(build, [(f"p{i}", "1T") for i in range(npools)], name=f"scale{npools}")
            try:
                time.sleep(0.3)
                fds = d.memfds()
                metas = [f for f in fds if f[1] != 1 << 40]
                mem[npools] = {
                    "rss": proc_status(d.pid, "VmRSS"), "anon": proc_status(d.pid, "RssAnon"),
                    "shmem": proc_status(d.pid, "RssShmem"),
                    "meta_size": sum(f[1] for f in metas) / max(1, len(metas)),
                    "meta_backed": sum(f[2] for f in metas) / max(1, len(metas)),
                    "n_memfds": len(fds),
                }
                if npools == 1:
                    # One client holding 1 GiB, written, in the 1 TiB pool.
                    cmd = [os.path.join(bindir, "trace-scav"), "idle", "--burst", "1G", "--keep", "1G",
                           "--window", "30"]
                    env = dict(os.environ)
                    env.update(d.env("p0"))
                    note_command(cmd, {"SCAVD_SOCKET": "PRIVATE", "PEER_POOL": "p0"})
                    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, bufsize=1)
                    if "pid" in kv(p.stdout.readline()):
                        p.stdin.write("go\n")
                        p.stdin.flush()
                        p.stdout.readline()
                        if "t" in kv(p.stdout.readline()):
                            fds = d.memfds()
                            metas = [f for f in fds if f[1] != 1 << 40]
                            heaps = [f for f in fds if f[1] == 1 << 40]
                            mem["touched"] = {"meta_backed": sum(f[2] for f in metas),
                                              "heap_backed": sum(f[2] for f in heaps),
                                              "daemon_rss": proc_status(d.pid, "VmRSS")}
                        p.stdin.write("stop\n")
                        p.stdin.flush()
                    p.communicate(timeout=30)
            finally:
                d.stop()
    except Exception as e:
        mem["err"] = str(e)
    res["scale_mem"] = mem

    gen = {}
    for chunks in (1, 10000):
        vals, err = [], None
        for _ in range(3):
            o, e = run([os.path.join(bindir, "scale"), "--chunks", str(chunks), "--reps", "200"])
            if e:
                err = e
                vals.append(None)
                continue
            d = kv(o.strip().splitlines()[-1])
            vals.append(d.get("median_ns"))
            gen.setdefault(f"meta_backed_{chunks}", d.get("meta_backed"))
            gen.setdefault(f"meta_size_{chunks}", d.get("meta_size"))
        gen[chunks] = median(vals)
        gen[f"err_{chunks}"] = err
    res["scale_gen"] = gen


# --------------------------------------------------------------------------
# The report

def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMGT]?)", s)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2)]


def fmt_rate(v):
    if v is None:
        return "—"
    ns = 1e9 / v
    if v >= 1e6:
        return f"{v / 1e6:.1f} M/s ({ns:.0f} ns)"
    return f"{v / 1e3:.1f} k/s ({ns:,.0f} ns)"


def fmt_x(v):
    return "—" if v is None else f"{v:.2f}×"


def fmt_bytes(v):
    if v is None:
        return "—"
    for unit, k in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if abs(v) >= k:
            return f"{v / k:.1f} {unit}"
    return f"{v:.0f} B"


def fmt_s(v, digits=2):
    return "never" if v is None else f"{v:.{digits}f} s"


def bar(ok, text):
    if ok is None:
        return f"not measured ({text})"
    return ("met: " if ok else "**missed**: ") + text


def machine_line():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    thp = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip() \
        if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled") else "?"
    shmem_thp = open("/sys/kernel/mm/transparent_hugepage/shmem_enabled").read().strip() \
        if os.path.exists("/sys/kernel/mm/transparent_hugepage/shmem_enabled") else "?"
    return (f"Linux {platform.release()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
            f"{cpu}, {fmt_bytes(mem)} RAM; THP anon `{thp}`, shmem `{shmem_thp}`")


def versions():
    out = []
    for cmd, label in ((["go", "version"], None), (["gnuplot", "--version"], None)):
        try:
            out.append(subprocess.run(cmd, capture_output=True, text=True).stdout.strip())
        except OSError:
            pass
    for pkg in ("libjemalloc2", "libgoogle-perftools4", "libtcmalloc-minimal4", "libboost1.74-dev", "libc6"):
        p = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}", pkg], capture_output=True, text=True)
        if p.returncode == 0:
            out.append(p.stdout.strip())
    return out


def write_report(args, res, path):
    L = []
    A = L.append
    r1 = res.get("alloc", {})
    # Other processes' CPU during the run is what disturbs it; the load average
    # at the start still carries whatever ran the minute before.
    loaded = res["other_load"] > 0.10
    A("# scavd benchmarks against its peers")
    A("")
    A("Written by `make bench` (tests/bench/peer-bench.py, drivers in `tests/bench/peer-*`); "
      "do not edit by hand. Each figure is the median of several runs; each ratio is computed "
      "within one round (libscav and the peer measured back to back) and the median of those "
      "ratios is shown. Ratios are libscav's throughput over the peer's: above 1 means scavd is faster.")
    A("")
    A(f"- Machine: {machine_line()}")
    A(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(res['t_start']))}; "
      f"whole run {res['t_total']:.0f} s; runs per figure: {args.runs} (row 2: {args.runs2}; row 4: {args.trace_runs})")
    A(f"- Load: load average {res['loadavg_start']:.2f} at the start, {res['loadavg_end']:.2f} at the end; "
      f"CPU used by other processes during the run: {100 * res['other_load']:.0f}% of the machine.")
    if loaded:
        A("- **This was a loaded run**: other work shared the two cores, so absolute figures are "
          "noisy and low; ratios within a round are less affected. Re-run `make bench` on a quiet "
          "machine for the reference figures.")
    A(f"- Versions: {'; '.join(versions())}")
    A("- The daemon is `$(BUILD)/scavd` from `make all`, started on a private socket with "
      "`bpf = off` (no system-wide page-fault programs while the peers run) and `pressure = off` "
      "(so that memory pressure from other work on the machine cannot trigger unpaced release "
      "in the middle of a paced measurement); its configuration is given under the commands.")
    if res.get("daemon_restarts"):
        A(f"- The main daemon was restarted {res['daemon_restarts']} time(s) after a libscav driver "
          "failed (a failure may leave a pool quarantined), so that later rows still measure; "
          "the failures are listed under their rows.")
    A("")

    # Bars summary first.
    A("## Bars")
    A("")
    bars = res.get("bars", [])
    for b in bars:
        A(f"- {b}")
    A("")

    # Row 1
    A("## 1. Allocation throughput, one process")
    A("")
    A("Alloc+free pairs per second (and ns per pair), 1,000 live blocks, the first byte of each "
      "block written; one block freed and one allocated per step, slots and sizes from the same "
      "random sequence for every allocator (drawn with a multiply and a shift, no division: the "
      "loop costs little next to the fastest allocator); *mixed* is a whole number of 4 KiB pages uniform in "
      "8–512 KiB. libscav runs through the real daemon (pool `bench`, 4 GiB capacity); "
      "Boost.Interprocess is `managed_shared_memory` (default `rbtree_best_fit`, its own mutex); "
      "memfd is `memfd_create`+`ftruncate`+`mmap` per allocation and `munmap` per free.")
    A("")
    if "alloc" in res.get("pngs", {}):
        A(f"![allocation, ns per pair]({res['pngs']['alloc']})")
        A("")
    A("| size | " + " | ".join(ALLOCATORS) + " |")
    A("|---" * (len(ALLOCATORS) + 1) + "|")
    for size in SIZES:
        A(f"| {size} | " + " | ".join(fmt_rate(median(r1.get(a, {}).get(size, []))) for a in ALLOCATORS) + " |")
    A("")
    A("libscav ÷ peer (median of per-round ratios):")
    A("")
    peers = [a for a in ALLOCATORS if a != "libscav"]
    A("| size | " + " | ".join(f"÷ {p}" for p in peers) + " |")
    A("|---" * (len(peers) + 1) + "|")
    for size in SIZES:
        cells = []
        for pr in peers:
            cells.append(fmt_x(res["alloc_ratio"].get((pr, size))))
        A(f"| {size} | " + " | ".join(cells) + " |")
    A("")
    for (a, size), e in sorted(res.get("alloc_err", {}).items()):
        A(f"- {a} {size} failed: `{e}`")
    A("")
    st = res.get("stopped", {})
    if st:
        A("The daemon is on no allocation's path (issue 3): libscav pinned to one core with the "
          "daemon running, and with the daemon stopped by SIGSTOP for the whole measured interval "
          "(after the driver opened the pool):")
        A("")
        A("| size | daemon running | daemon stopped | stopped ÷ running |")
        A("|---|---|---|---|")
        if st.get("err"):
            A(f"| — | failed: `{st['err']}` | | |")
        for size, d in st.items():
            if size == "err":
                continue
            A(f"| {size} | {fmt_rate(median(d['running']))} | {fmt_rate(median(d['stopped']))} | "
              f"{fmt_x(median(d['ratio']))} |" + (f" note: `{d['err']}`" if d.get("err") else ""))
        A("")
    prof = res.get("profile", {})
    if prof.get("err"):
        A(f"(No profile: {prof['err']}.)")
        A("")
    elif prof:
        A("What limits libscav here — a flat `perf record` profile of the libscav driver "
          "(1 s, same workload; symbols over 1.5% of samples):")
        A("")
        A("| size | share | object | symbol |")
        A("|---|---|---|---|")
        for size, d in prof.items():
            if d.get("err"):
                A(f"| {size} | failed: `{d['err']}` | | |")
                continue
            for pct, dso, sym in d["top"]:
                A(f"| {size} | {pct:.1f}% | {dso} | `{sym}` |")
        A("")
        for size, d in prof.items():
            if d.get("cats"):
                A(f"- {size}: " + "; ".join(f"{k} {v:.0f}%" for k, v in d["cats"].items()) + " of the samples.")
        A("")

    instr = res.get("instr", {})
    if instr.get("err"):
        A(f"(No instruction counts: {instr['err']}.)")
        A("")
    elif instr:
        A("User-space instructions per alloc+free pair, benchmark loop included (the same loop for "
          "every allocator): `valgrind --tool=callgrind` of each driver with `--pairs "
          f"{INSTR_PAIRS[0]}` and `--pairs {INSTR_PAIRS[1]}`, the difference divided by the difference "
          "in pairs. These counts repeat exactly from run to run; the times above do not.")
        A("")
        A("| size | " + " | ".join(INSTR_ALLOCATORS) + " | libscav's count ÷ tcmalloc's |")
        A("|---|" + "---|" * (len(INSTR_ALLOCATORS) + 1))
        for size in INSTR_SIZES:
            cells = [f"{instr[(a, size)]:,.0f}" if (a, size) in instr else "—" for a in INSTR_ALLOCATORS]
            ratio = (f"{instr[('libscav', size)] / instr[('tcmalloc', size)]:.2f}×"
                     if ("libscav", size) in instr and ("tcmalloc", size) in instr else "—")
            A(f"| {size} | " + " | ".join(cells) + f" | {ratio} |")
        A("")

    # Row 2
    A("## 2. Two client processes on the two cores, one pool")
    A("")
    A("Each process runs the row-1 workload pinned to its own core, both starting at the same "
      "instant; aggregate pairs per second against one process pinned alone. libscav: both "
      "processes in pool `bench`; Boost.Interprocess: both in one `managed_shared_memory` "
      "segment (the shared-memory peer); glibc: two independent processes, nothing shared, "
      "which shows what the machine itself allows.")
    A("")
    A("| allocator | size | one process | two processes (sum) | ratio |")
    A("|---|---|---|---|---|")
    for (name, size), d in res.get("two", {}).items():
        A(f"| {name} | {size} | {fmt_rate(median(d['one']))} | {fmt_rate(median(d['two']))} | "
          f"{fmt_x(median(d['ratio']))} |" + (f" failed: `{d['err']}`" if d.get("err") else ""))
    A("")

    if res.get("two_reaped"):
        A("The same two libscav processes (row-1 workload, `--seconds` as above) when a reap has just "
          "taken their thread caches back: both fill their live sets, `scavctl scavenge` runs while they "
          "wait for the common start, so that every block they take afterwards comes from holes among "
          "both processes' live blocks. One pool (`bench` twice) against two pools (`bench` and `bench2`), "
          "measured back to back; the ratio is one pool's sum over two pools' (1: sharing the pool costs "
          "nothing):")
        A("")
        A("| size | one pool (sum) | two pools (sum) | one pool ÷ two pools |")
        A("|---|---|---|---|")
        for size, d in res["two_reaped"].items():
            A(f"| {size} | {fmt_rate(median(d['one']))} | {fmt_rate(median(d['two']))} | "
              f"{fmt_x(median(d['ratio']))} |")
        A("")

    A("Two threads of one process, each pinned to its own core, each with its own live set "
      "(libscav: one pool, one client slot, a page cache per thread), against one thread pinned alone:")
    A("")
    A("| allocator | size | one thread | two threads (sum) | ratio |")
    A("|---|---|---|---|---|")
    for (name, size), d in res.get("threads", {}).items():
        A(f"| {name} | {size} | {fmt_rate(median(d['one']))} | {fmt_rate(median(d['two']))} | "
          f"{fmt_x(median(d['ratio']))} |" + (f" failed: `{d['err']}`" if d.get("err") else ""))
    A("")

    # Row 3
    rel = res.get("release", {})
    fl = res.get("floors", {})
    A("## 3. Releasing memory")
    A("")
    A(f"{args.release_bytes} allocated from pool `release` in 256 KiB blocks and written; the same "
      "pages of the heap memfd released by a bare `fallocate(PUNCH_HOLE|KEEP_SIZE)` loop in 64 KiB "
      "and 2 MiB pieces (the physical limit), then written again, freed and released by "
      "`scav_scavenge(pool, 0)` (a forced scavenge). Rate = bytes released (checked with "
      "`st_blocks`) per wall second.")
    A("")
    A("| method | GiB/s | released (`st_blocks`) | ratio to the best raw loop |")
    A("|---|---|---|---|")
    for k in ("raw-64K", "raw-2M", "scavenge"):
        v = median(rel.get(k, []))
        A(f"| {'forced scavenge' if k == 'scavenge' else 'raw punch-hole, ' + k[4:] + ' pieces'} | "
          f"{'—' if v is None else f'{v:.2f}'} | {fmt_bytes(median(rel.get('released-' + k, [])))} | "
          + (fmt_x(median(rel.get('ratio', []))) if k == "scavenge" else "") + " |")
    if rel.get("err"):
        A(f"\nThe forced-scavenge driver failed: `{rel['err']}`")
    A("")
    bg = res.get("background", {})
    A("Background release at `scavenge_percent = 1` (from row 4's scavd runs: 1 GiB freed, 64 MiB kept, "
      "the daemon pacing itself):")
    A("")
    A("| case | release rate (MiB/s) | daemon CPU, % of the machine (2 CPUs) | time to goal |")
    A("|---|---|---|---|")
    for case in ("active", "idle"):
        d = bg.get(case, {})
        rate = "—" if d.get("rate") is None else f"{d['rate'] / MIB:.0f}"
        frac = "—" if d.get("frac") is None else f"{100 * d['frac']:.2f}%"
        A(f"| {case} | {rate} | {frac} | {fmt_s(d.get('t'))} |")
    A("")
    A("Floors (CPU-seconds to release 1 GiB of touched memory, one call per piece):")
    A("")
    A("| memory | 64 KiB pieces | 2 MiB pieces |")
    A("|---|---|---|")
    A(f"| anonymous, `madvise(MADV_DONTNEED)` (Go, jemalloc) | {fl.get(('anon', '64K')) or 0:.4f} | "
      f"{fl.get(('anon', '2M')) or 0:.4f} |")
    A(f"| shared memfd, `fallocate(PUNCH_HOLE)` (scavd) | {fl.get(('memfd', '64K')) or 0:.4f} | "
      f"{fl.get(('memfd', '2M')) or 0:.4f} |")
    A("")

    # Row 4
    A("## 4. Returning memory after a burst")
    A("")
    A(f"One trace for all: allocate {args.burst} in 256 KiB blocks and write every page, free all but "
      f"{args.keep} (every 16th block, so survivors are spread over the heap), then either keep going "
      "(*active*: 1 MiB allocated, written and freed every 10 ms) or go fully idle (blocked in "
      "`poll`/`select`, no timers). Footprint: scavd — the heap memfd's backed bytes (`st_blocks`); "
      "Go and jemalloc — the process's `RssAnon` above what it was before the burst. scavd runs "
      "with `scavenge_percent = 1`; Go with `GODEBUG=scavtrace=1` and its defaults (GOGC=100, "
      "its scavenger's 1% of GOMAXPROCS); jemalloc with `MALLOC_CONF=background_thread:true` "
      "and its default decay (dirty 10 s, muzzy 0). Same CPU budget: Go's scavenger aims at 1% of "
      "GOMAXPROCS CPUs (2 here), the meaning of scavd's `scavenge_percent = 1`; jemalloc's "
      "background thread has no CPU budget, it purges along its decay curve. *go-gc* calls `runtime.GC()` once after "
      "dropping the burst, to tell \"no GC ran\" from \"the scavenger did not run\".")
    A("")
    A(f"Goals: *own* — scavd's `retained_goal` at the end (1.1 × in use once it has parked); Go's heap "
      f"goal × 1.1 (gcPaceScavenger's steady state) plus the runtime's non-heap RSS at the end; "
      f"jemalloc's active bytes (its decay aims at no dirty pages). *common* — "
      f"1.1 × the {args.keep} kept. \"Time to goal\" is from the free to the first sample within 10% "
      f"of the goal (samples every 50 ms); \"never\" means not within the {args.window:.0f} s window "
      "(sampling ends early once the footprint has stayed flat for 2.5 s near the common goal, or for 6 s "
      "anywhere after 12 s). "
      "CPU is the release work's own: the daemon's (scavd), the background thread's (jemalloc), the "
      "process's minus the application thread's (Go: scavenger plus GC).")
    A("")
    for case in ("active", "idle"):
        if case in res.get("pngs", {}):
            A(f"![retained, {case}]({res['pngs'][case]})")
            A("")
    A("| case | system | own goal | time to own goal | time to common goal | retained at end | released | "
      "CPU-s | CPU-s per GiB | floor per GiB (64 KiB / 2 MiB pieces) | ratio to the floors |")
    A("|---|---|---|---|---|---|---|---|---|---|---|")
    for case, system in TRACE_CASES:
        runs = res.get("trace", {}).get((case, system), [])
        ms = [r["metrics"] for r in runs if r.get("metrics")]
        if not ms:
            errs = [r.get("err") for r in runs if r.get("err")]
            A(f"| {case} | {system} | failed: `{(errs or ['no data'])[0]}` |||||||||")
            continue

        def med(key):
            return median([m[key] for m in ms])

        def med_t(key):
            vals = [m[key] for m in ms]
            if sum(v is None for v in vals) * 2 > len(vals):
                return None
            return median([v if v is not None else float("inf") for v in vals])

        kind = "memfd" if system == "scavd" else "anon"
        floor, floor2 = fl.get((kind, "64K")), fl.get((kind, "2M"))
        cpg = med("cpu_per_gib")
        t_own_s = "— (goal above the burst)" if all(m["goal_above_peak"] for m in ms) else fmt_s(med_t("t_own"), 1)
        A(f"| {case} | {system} | {fmt_bytes(med('own_goal'))} | {t_own_s} | "
          f"{fmt_s(med_t('t_common'), 1)} | {fmt_bytes(med('final'))} | {fmt_bytes(med('released'))} | "
          f"{med('cpu'):.3f} | {'—' if cpg is None else f'{cpg:.3f}'} | "
          f"{'—' if floor is None else f'{floor:.3f} / {floor2:.3f}'} | "
          f"{'—' if cpg is None or not floor else fmt_x(cpg / floor) + ' / ' + fmt_x(cpg / floor2)} |")
    A("")
    notes = res.get("trace_notes", [])
    for n in notes:
        A(f"- {n}")
    A("")

    # Row 5
    A("## 5. Scale")
    A("")
    so = res.get("scale_ops", {})
    A("Per-operation cost, libscav pools of 1 GiB and 1 TiB capacity in the same daemon "
      "(row-1 workload):")
    A("")
    A("| size | 1 GiB pool | 1 TiB pool | cost ratio 1 TiB ÷ 1 GiB |")
    A("|---|---|---|---|")
    for size, d in so.items():
        A(f"| {size} | {fmt_rate(median(d['1g']))} | {fmt_rate(median(d['1t']))} | {fmt_x(median(d['ratio']))} |"
          + (f" failed: `{d['err']}`" if d.get("err") else ""))
    A("")
    sm = res.get("scale_mem", {})
    if 1 in sm and 11 in sm:
        per_rss = (sm[11]["rss"] - sm[1]["rss"]) / 10
        per_anon = (sm[11]["anon"] - sm[1]["anon"]) / 10
        A("Memory per pool (daemon with one 1 TiB pool against one with eleven, no clients):")
        A("")
        A("| | one pool | eleven pools | per extra pool |")
        A("|---|---|---|---|")
        A(f"| daemon RSS | {fmt_bytes(sm[1]['rss'])} | {fmt_bytes(sm[11]['rss'])} | {fmt_bytes(per_rss)} |")
        A(f"| daemon anonymous RSS | {fmt_bytes(sm[1]['anon'])} | {fmt_bytes(sm[11]['anon'])} | "
          f"{fmt_bytes(per_anon)} |")
        A(f"| meta memfd, size (sparse) | {fmt_bytes(sm[1]['meta_size'])} | | {fmt_bytes(sm[11]['meta_size'])} |")
        A(f"| meta memfd, backed | {fmt_bytes(sm[1]['meta_backed'])} | | {fmt_bytes(sm[11]['meta_backed'])} |")
        A("")
        if "touched" in sm:
            t = sm["touched"]
            pct = 100.0 * t["meta_backed"] / t["heap_backed"] if t["heap_backed"] else None
            A(f"With one client holding 1 GiB written in a 1 TiB pool: heap backed {fmt_bytes(t['heap_backed'])}, "
              f"meta backed {fmt_bytes(t['meta_backed'])}"
              + (f" ({pct:.3f}% of the touched heap)" if pct is not None else "") + ".")
            A("")
    if sm.get("err"):
        A(f"Memory per pool: failed: `{sm['err']}`")
        A("")
    g = res.get("scale_gen", {})
    A("Cost of a generation start (`heap_scavenge_start_gen`, the port of scavengeStartGen), "
      "through the heap core directly on memfds, every second chunk-sized allocation freed "
      "(median of 200 calls, median of 3 runs):")
    A("")
    A("| chunks in use | generation start |")
    A("|---|---|")
    for chunks in (1, 10000):
        v = g.get(chunks)
        A(f"| {chunks:,} | {'failed: `' + str(g.get(f'err_{chunks}')) + '`' if v is None else f'{v:.0f} ns'} |")
    A("")

    # Row 6
    sh = res.get("share")
    if sh is not None:
        A("## 6. Sharing: references, handles, names")
        A("")
        A("What sharing an allocation costs through libscav (`tests/bench/peer-share-scav.c`), in "
          "one process against the real daemon (pool `bench`; the heap lock uncontended), beside the "
          "row-1 8 KiB alloc+free pair measured by the same driver; ns per operation, median of "
          f"{args.runs} runs. None of these talks to the daemon: each takes the heap lock once per call.")
        A("")
        A("| operation | what one operation is | ns | ÷ 8 KiB pair |")
        A("|---|---|---|---|")
        pair = median(sh.get("alloc8k", []))
        what = {
            "alloc8k": "`scav_alloc` 8 KiB + first byte written + `scav_free` (1,000 live)",
            "ref": "`scav_ref` + `scav_unref` of a shared 8 KiB allocation",
            "handle": "`scav_make_handle` + `scav_ref_handle` + `scav_unref`",
            "name": "`scav_publish` + `scav_lookup` + `scav_unref` + `scav_unpublish`",
        }
        for op in ("alloc8k", "ref", "handle", "name"):
            v = median(sh.get(op, []))
            ratio = f"{v / pair:.1f}×" if v and pair else "—"
            A(f"| {op} | {what[op]} | {'—' if v is None else f'{v:.0f}'} | {ratio} |")
        A("")
        if res.get("share_err"):
            A(f"- failed: `{res['share_err']}`")
            A("")

    # Row 8 (row 7, Python, is appended by py-share-bench.py)
    tc = res.get("tcache")
    if tc is not None:
        A("## 8. Thread caches after a burst")
        A("")
        A("What client threads keep in their caches (issue 13; `tests/bench/peer-tcache-scav.c`): two "
          "threads of one client allocate and free for 0.5 s (1 to 128 pages, 256 live each, the first "
          "byte written), free everything and go idle (blocked, not exited); the pool's in use is then "
          "what their caches keep, read every 5 ms until it is 0. Daemon as above "
          "(`generation_interval = 1s`); median of "
          f"{args.runs} runs. The design's bound per thread: 16 MiB of page cache and 32 MiB of lists "
          "(docs/design-heap.md).")
        A("")
        A("| run | held, both threads | held per thread | back after idle | generations started meanwhile |")
        A("|---|---|---|---|---|")
        for i, d in enumerate(tc):
            back, gens = d.get("back_s"), d.get("back_gens")
            A(f"| {i + 1} | {fmt_bytes(d.get('held_bytes'))} | {fmt_bytes(d.get('held_per_thread_bytes'))} | "
              f"{'never (10 s)' if back is None or back < 0 else f'{back:.2f} s'} | "
              f"{'—' if gens is None else f'{gens:.0f}'} |")
        A("")
        if res.get("tcache_err"):
            A(f"- failed: `{res['tcache_err']}`")
            A("")

    # Commands
    A("## Commands")
    A("")
    A("Everything above comes from one command, `make bench` (these rows alone: `make bench-peers`; "
      "options: `tests/bench/peer-bench.py --help`), which ran:")
    A("")
    A("```")
    for c, n in COMMANDS.items():
        A(f"{c}" + (f"    # ×{n}" if n > 1 else ""))
    A("```")
    A("")
    A("Daemon configuration (the main daemon; row 4 and row 5 start their own with the pools named "
      "in the commands, `scavtrace = 1` for row 4):")
    A("")
    A("```ini")
    A(res.get("config", ""))
    A("```")
    A("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def compute(args, res):
    """Ratios, background rates and the bars' verdicts."""
    r1 = res.get("alloc", {})
    ratios = {}
    for a in ALLOCATORS[1:]:
        for size in SIZES:
            xs = r1.get("libscav", {}).get(size, [])
            ys = r1.get(a, {}).get(size, [])
            ratios[(a, size)] = median([x / y if x and y else None for x, y in zip(xs, ys)])
    res["alloc_ratio"] = ratios

    bg = {}
    for case in ("active", "idle"):
        ms = [r["metrics"] for r in res.get("trace", {}).get((case, "scavd"), []) if r.get("metrics")]
        if ms:
            bg[case] = {"rate": median([m["rate"] for m in ms]),
                        "frac": median([m["bg_fraction"] for m in ms]),
                        "t": median([m["t_own"] for m in ms])}
    res["background"] = bg

    # Plain-language notes on row 4, from what was measured.
    notes = []
    tr = res.get("trace", {})

    def ms_of(case, system):
        return [r["metrics"] for r in tr.get((case, system), []) if r.get("metrics")]

    g = ms_of("idle", "go")
    if g and median([m["released"] for m in g]) < 16 * MIB:
        notes.append("Go, idle: nothing released in the window. Dropping references frees nothing until "
                     "a GC cycle runs, and an idle program triggers none (the forced GC comes after 2 "
                     "minutes); its heap goal still covers the burst.")
    gg = ms_of("idle", "go-gc")
    if gg:
        rel = [m["released"] for m in gg]
        if sum(r < 16 * MIB for r in rel) > 0:
            notes.append(f"Go, idle after one runtime.GC(): released nothing in {sum(r < 16 * MIB for r in rel)} "
                         f"of {len(rel)} runs — Go 1.19's background scavenger is woken by the GC pacer and "
                         "by sysmon, and an idle process may sleep through both.")
    jn = ms_of("idle", "jemalloc-nobg")
    if jn and median([m["released"] for m in jn]) < 16 * MIB:
        notes.append("jemalloc without its background thread, idle: nothing released — its decay "
                     "purging only runs on allocator calls.")
    sj = ms_of("active", "scavd")
    if sj:
        notes.append("scavd's curve falls in steps: the goal only drops once a generation (1 s) has "
                     "ended without the burst's peak in use, and the paced scavenger then works in bursts "
                     "and sleeps in between so that its average CPU share stays at `scavenge_percent` "
                     "(measured share in row 3's background table).")
    res["trace_notes"] = notes

    B = []

    def want(label, val, target, unit="×"):
        if val is None:
            B.append(bar(None, f"{label}: no figure (driver failed)"))
            return
        ok = val >= target
        B.append(bar(ok, f"{label}: {val:.3g}{unit} (bar {target}{unit}" +
                     ("" if ok else f"; short by {100 * (1 - val / target):.0f}%") + ")"))

    # Issue 13: ahead of the in-process allocators at every size.
    for peer in ("tcmalloc", "jemalloc", "glibc"):
        for size in SIZES:
            want(f"libscav ÷ {peer}, {size} (issue 13)", ratios.get((peer, size)), 1.0)
    for size in SIZES:
        want(f"libscav ÷ Boost.Interprocess, {size}", ratios.get(("boost", size)), 5.0)
    for size in SIZES:
        want(f"libscav ÷ memfd mmap/munmap, {size}", ratios.get(("memfd", size)), 50.0)
    for size in ("8k", "mixed"):
        d = res.get("two", {}).get(("libscav", size))
        want(f"two processes ÷ one, {size}", median(d["ratio"]) if d else None, 1.8)
    for size in ("8k", "mixed"):
        d = res.get("threads", {}).get(("libscav", size))
        want(f"two threads of one client ÷ one thread, {size} (issues 3, 13)", median(d["ratio"]) if d else None, 1.8)
    want("forced scavenge ÷ best raw punch-hole", median(res.get("release", {}).get("ratio", [])), 0.8)
    for size in ("8k", "mixed"):
        d = res.get("scale_ops", {}).get(size)
        v = median(d["ratio"]) if d else None
        if v is None:
            B.append(bar(None, f"1 TiB ÷ 1 GiB per-op cost, {size}: no figure"))
        else:
            B.append(bar(v <= 1.2, f"1 TiB ÷ 1 GiB per-op cost, {size}: {v:.3f}× (bar ≤ 1.2×)"))
    for case in ("active", "idle"):
        d = bg.get(case)
        if d and d.get("t") is not None:
            B.append(bar(True, f"scavd reaches its goal after the burst, {case}: {d['t']:.1f} s"))
        else:
            B.append(bar(False if d else None, f"scavd reaches its goal after the burst, {case}"))
    # Issue 13: the common goal (1.1 x kept), sooner than jemalloc's background thread.
    for case in ("active", "idle"):
        ts = [m["t_common"] for m in ms_of(case, "scavd")]
        tj = [m["t_common"] for m in ms_of(case, "jemalloc-bg")]
        if not ts or not tj:
            B.append(bar(None, f"scavd reaches 1.1 × kept before jemalloc, {case} (issue 13): no figure"))
            continue
        # The median over the runs that got there (the table's figure); never if none did.
        vs, vj = (median([t for t in x if t is not None]) if any(t is not None for t in x) else None for x in (ts, tj))
        if vs is None:
            B.append(bar(False, f"scavd reaches 1.1 × kept before jemalloc, {case} (issue 13): never"))
        else:
            B.append(bar(vj is None or vs < vj,
                         f"scavd reaches 1.1 × kept before jemalloc, {case} (issue 13): {vs:.1f} s, jemalloc "
                         + (f"{vj:.1f} s" if vj is not None else "never")))
    fr = [d.get("frac") for d in bg.values() if d.get("frac") is not None]
    if fr:
        f = median(fr) * 100
        B.append(bar(0.7 <= f <= 1.3, f"daemon CPU while releasing in the background at scavenge_percent = 1: "
                     f"{f:.2f}% of the machine (bar 1% ± 30%, issue 4)"))
    else:
        B.append(bar(None, "daemon CPU while releasing in the background (issue 4)"))
    t = res.get("scale_mem", {}).get("touched")
    if t and t.get("heap_backed"):
        pct = 100.0 * t["meta_backed"] / t["heap_backed"]
        B.append(bar(pct <= 0.5, f"meta backed ÷ touched heap, 1 TiB pool, 1 GiB written: {pct:.3f}% (bar ≤ 0.5%, issue 2)"))
    ms = [r["metrics"] for r in res.get("trace", {}).get(("active", "scavd"), []) if r.get("metrics")]
    floor = res.get("floors", {}).get(("memfd", "64K"))
    cpg = median([m["cpu_per_gib"] for m in ms]) if ms else None
    if cpg and floor:
        B.append(bar(cpg / floor <= 1.3, f"scavd CPU per GiB released ÷ punch-hole floor (64 KiB): "
                     f"{cpg / floor:.2f}× (bar ≤ 1.3×)"))
    else:
        B.append(bar(None, "scavd CPU per GiB released ÷ floor"))
    # Issue 13: thread caches bounded, and back within one generation of going idle.
    tc = res.get("tcache") or []
    held = median([d.get("held_per_thread_bytes") for d in tc])
    if held is None:
        B.append(bar(None, "thread caches after a burst (issue 13): no figure"))
    else:
        B.append(bar(held <= 48 * MIB, f"held per thread after a burst (issue 13): {fmt_bytes(held)} "
                     "(bar ≤ 48 MiB: 16 MiB page cache + 32 MiB lists)"))
        # A bound, so the slowest run.
        backs = [d.get("back_s") for d in tc]
        back = max([b if b is not None and b >= 0 else float("inf") for b in backs])
        B.append(bar(back <= 1.0, "thread caches back after the threads go idle, slowest run (issue 13): " +
                     ("never" if back == float("inf") else f"{back:.2f} s") +
                     " (bar ≤ 1 generation, 1 s)"))
    res["bars"] = B


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="docs/benchmarks.md")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--trace-runs", type=int, default=3)
    # Row 2's ratios swing from 0.6x to 3x between runs on a 2-core VM (every
    # allocator's one-thread time moves by +-30% from run to run): seven runs
    # per median.
    ap.add_argument("--runs2", type=int, default=7, help="runs per row-2 figure")
    ap.add_argument("--seconds", type=float, default=0.3, help="measured seconds per row-1 run")
    ap.add_argument("--window", type=float, default=20.0, help="row-4 window after the free")
    ap.add_argument("--burst", default="1G")
    ap.add_argument("--keep", default="64M")
    ap.add_argument("--release-bytes", default="1G")
    ap.add_argument("--rows", default="1,2,3,4,5,6,8")
    ap.add_argument("--trace-systems", default="", help="comma list: only these row-4 systems")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite the report from the last run's saved results, measuring nothing")
    ap.add_argument("--quick", action="store_true", help="few short runs, for trying the pipeline")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.runs2, args.trace_runs, args.seconds, args.window = 2, 1, 1, 0.1, 8.0

    build = os.path.abspath(args.build)
    bindir = os.path.join(build, "bench-peers")
    outdir = os.path.join(bindir, "out")
    os.makedirs(outdir, exist_ok=True)
    docs = os.path.join(TOP, os.path.dirname(args.out) or "docs")
    out_path = os.path.join(TOP, args.out)
    os.makedirs(docs, exist_ok=True)
    rows = set(args.rows.split(","))
    if args.trace_systems:
        keep_sys = set(args.trace_systems.split(","))
        TRACE_CASES[:] = [c for c in TRACE_CASES if c[1] in keep_sys]

    saved = os.path.join(outdir, "results.pickle")
    if args.render_only:
        import pickle
        with open(saved, "rb") as f:
            res, cmds, saved_args = pickle.load(f)
        COMMANDS.update(cmds)
        for k in ("runs", "runs2", "trace_runs", "seconds", "window", "burst", "keep", "release_bytes"):
            setattr(args, k, getattr(saved_args, k))
        compute(args, res)
        write_report(args, res, out_path)
        log(f"rewrote {out_path} from {saved}")
        return

    res = {"t_start": time.time(), "loadavg_start": os.getloadavg()[0]}
    busy0, total0 = machine_busy()
    self0 = os.times()
    t0 = time.monotonic()

    daemon = None
    try:
        daemon = Daemon(build, [("bench", "4G"), ("bench2", "4G"), ("release", "4G"), ("cap1g", "1G"),
                                ("cap1t", "1T")])
        res["config"] = daemon.config_text.replace(daemon.socket, "PRIVATE")
    except Exception as e:
        log(f"the daemon did not start: {e}; the scavd rows will say so")
        res["config"] = f"(the daemon did not start: {e})"
    try:
        if "1" in rows:
            row_alloc(args, bindir, daemon, res)
        if "1" in rows:
            row_daemon_stopped(args, bindir, daemon, res)
            profile_libscav(bindir, daemon, outdir, res)
            count_instructions(bindir, daemon, outdir, res)
        if "2" in rows:
            row_two(args, bindir, daemon, res)
        if "3" in rows:
            row_release(args, bindir, daemon, res)
        if "5" in rows:
            row_scale(args, build, bindir, daemon, res)
        if "6" in rows:
            row_share(args, bindir, daemon, res)
        if "8" in rows:
            row_tcache(args, bindir, daemon, res)
    finally:
        if daemon:
            res["daemon_restarts"] = daemon.restarts
            daemon.stop()
    if "1" in rows:
        plot_alloc(outdir, res, docs)
    if "4" in rows:
        row_trace(args, build, bindir, outdir, res)
        plot_traces(args, outdir, res, docs)

    busy1, total1 = machine_busy()
    self1 = os.times()
    ours = (self1.user + self1.system + self1.children_user + self1.children_system) - \
        (self0.user + self0.system + self0.children_user + self0.children_system)
    hz = os.sysconf("SC_CLK_TCK")
    other = ((busy1 - busy0) / hz - ours) / ((total1 - total0) / hz) if total1 > total0 else 0
    res["other_load"] = max(0.0, other)
    res["loadavg_end"] = os.getloadavg()[0]
    res["t_total"] = time.monotonic() - t0

    import pickle
    with open(saved, "wb") as f:
        pickle.dump((res, dict(COMMANDS), args), f)
    compute(args, res)
    write_report(args, res, out_path)
    log(f"wrote {out_path} in {res['t_total']:.0f} s")
    for b in res["bars"]:
        log("  " + b)


if __name__ == "__main__":
    main()
