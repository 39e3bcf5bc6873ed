# SPDX-License-Identifier: MIT
"""The real daemon for the Python tests: $BUILD/scavd (or $SCAVD) on a
private socket with its own configuration, one pool per concern so that a
test can count what is in use without the others' allocations. Run by
tests/integration/test-python.sh, or by hand:

    PYTHONPATH=build/python /usr/bin/python3 -m pytest python/tests
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD") or os.path.join(TOP, "build")
SCAVD = os.environ.get("SCAVD") or os.path.join(BUILD, "scavd")
SCAVCTL = os.environ.get("SCAVCTL") or os.path.join(BUILD, "scavctl")

# A uid nobody runs as here: the "denied" pool admits only it (root is
# always admitted, so the test of a denied user runs as nobody).
OTHER_UID = 65533

POOLS = {
    "default": "256M",
    "small": "2M",      # full-pool errors (one chunk)
    "denied": "2M",
    "gc": "64M",
    "closing": "64M",
    "fork": "64M",
    "share": "256M",
    "kill": "256M",
    "threads": "64M",
    "np": "64M",
    "example": "64M",
}


class Daemon:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="scavd-pytest.")
        os.chmod(self.dir, 0o755)  # the denied-user test runs as nobody
        self.socket = os.path.join(self.dir, "scavd.sock")
        self.config = os.path.join(self.dir, "scavd.conf")
        self.log = os.path.join(self.dir, "scavd.log")
        lines = ["[daemon]", "bpf = off", "pressure = off", ""]
        for name, cap in POOLS.items():
            lines += [f"[pool {name}]", f"capacity = {cap}"]
            if name == "denied":
                lines.append(f"allow_users = {OTHER_UID}")
            lines.append("")
        with open(self.config, "w") as f:
            f.write("\n".join(lines))
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                            "WATCHDOG_USEC", "WATCHDOG_PID", "LD_PRELOAD")}
        # An ASan daemon gets its runtime by its own DT_NEEDED; the preload
        # is for the interpreter that loads an ASan module.
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen([SCAVD, "--config", self.config, "--socket", self.socket],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"scavd exited with {self.proc.returncode}:\n{self.log_text()}")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                s.connect(self.socket)
                break
            except OSError:
                time.sleep(0.01)
            finally:
                s.close()
        else:
            self.stop()
            raise RuntimeError("scavd did not answer within 30 s")

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def ctl(self, *args):
        """scavctl --json ARGS, parsed."""
        out = subprocess.run([SCAVCTL, "--socket", self.socket, "--json", *args],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"scavctl {' '.join(args)}: {out.stderr}"
        return json.loads(out.stdout)

    def status(self, pool):
        return self.ctl("status", pool)

    def clients(self, pool):
        return self.ctl("clients", pool)["clients"]

    def stop(self):
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            rc = self.proc.returncode
        self.logf.close()
        return rc


@pytest.fixture(scope="session", autouse=True)
def daemon():
    if not os.access(SCAVD, os.X_OK):
        pytest.exit(f"no scavd at {SCAVD} (set BUILD or SCAVD)", returncode=1)
    d = Daemon()
    os.environ["SCAVD_SOCKET"] = d.socket
    yield d
    rc = d.stop()
    log = d.log_text()
    shutil.rmtree(d.dir, ignore_errors=True)
    # The daemon survived every test and stopped cleanly.
    assert rc == 0, f"scavd exited with {rc}:\n{log[-4000:]}"
    for bad in ("AddressSanitizer", "runtime error:", "quarantined"):
        assert bad not in log, f"daemon log has {bad!r}:\n{log[-4000:]}"


def wait_until(pred, what, timeout=30.0):
    """Waits for a condition another process brings about (a slot reclaimed
    after a kill); the timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_python(code, env=None, timeout=120, **kw):
    """/usr/bin/python3 -c code with this interpreter's environment (the
    module path, the daemon's socket, an ASan preload)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                          timeout=timeout, **kw)

