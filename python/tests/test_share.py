# SPDX-License-Identifier: MIT
"""Sharing across processes: pickling passes references (multiprocessing
Queue, Pool.map, ProcessPoolExecutor, every start method), names, handles,
and a worker SIGKILLed while it holds Buffers."""

import concurrent.futures
import copy
import errno
import gc
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import threading

import pytest

import scav
from conftest import wait_until

np = pytest.importorskip("numpy")
MIB = 1 << 20
METHODS = ["fork", "spawn", "forkserver"]
# A multiprocessing pool waits forever for a task whose worker died: a
# failure, not a hang of the whole suite.
MP_TIMEOUT = 120


@pytest.fixture
def pool():
    with scav.Pool("share") as p:
        yield p


def test_pickle_passes_a_reference(pool):
    b = pool.alloc(5000)
    memoryview(b)[:5] = b"hello"
    data = pickle.dumps(b)
    assert len(data) < 512, "a handle, not the bytes"
    c = pickle.loads(data)
    assert c is not b and c.offset == b.offset and c.nbytes == 5000
    memoryview(c)[:1] = b"J"
    assert bytes(b)[:5] == b"Jello"
    b.release()
    assert bytes(c)[:5] == b"Jello"  # its own reference
    c.release()
    assert pool.pending_transfers == 0


def test_copy_is_another_reference(pool):
    b = pool.alloc(100)
    c, d = copy.copy(b), copy.deepcopy(b)
    memoryview(b)[0] = 5
    assert c.offset == d.offset == b.offset and bytes(c)[0] == bytes(d)[0] == 5
    for x in (b, c, d):
        x.release()
    assert pool.pending_transfers == 0


def test_sender_releases_before_the_receiver(pool):
    """q.put(buf); del buf: the sender keeps its reference until a receiver
    has taken one, then drops it."""
    # Once first, so that this thread's page cache is filled already.
    pickle.loads(pickle.dumps(pool.alloc(1))).release()
    base = pool.stats()["inuse"]
    b = pool.alloc(2 * MIB)
    memoryview(b)[-3:] = b"end"
    data = pickle.dumps(b)
    b.release()
    assert pool.pending_transfers == 1
    assert pool.stats()["inuse"] == base + 2 * MIB  # kept for the receiver
    c = pickle.loads(data)
    assert bytes(c)[-3:] == b"end"
    assert pool.pending_transfers == 0  # acknowledged: the sender's reference went
    c.release()
    assert pool.stats()["inuse"] == base


def test_handles(pool):
    b = pool.alloc(3 * MIB)
    h = b.handle()
    assert isinstance(h, bytes) and len(h) == scav.HANDLE_SIZE
    c = pool.from_handle(h)
    assert c.offset == b.offset and c.nbytes == 3 * MIB
    d = pool.from_handle(h, nbytes=10)
    assert len(d) == 10
    with pytest.raises(ValueError):
        pool.from_handle(h, nbytes=4 * MIB)
    for r in (b, c, d):
        r.release()
    # Freed: the handle is stale, also once the pages are allocated again.
    with pytest.raises(scav.StaleError) as e:
        pool.from_handle(h)
    assert e.value.errno == errno.ESTALE
    again = pool.alloc(3 * MIB)
    with pytest.raises(scav.StaleError):
        pool.from_handle(h)
    again.release()
    with pytest.raises(ValueError):
        pool.from_handle(b"short")
    with pytest.raises(ValueError):
        pool.from_handle(bytes(scav.HANDLE_SIZE))
    with pytest.raises(ValueError, match="not a scav handle"):
        scav._rebuild_buffer((1, b"X" * scav.HANDLE_SIZE, 10, b"X" * scav.HANDLE_SIZE, 0, 1))
    with pytest.raises(ValueError, match="version"):
        scav._rebuild_buffer((2, h, 10, h, 0, 1))


def test_names(pool):
    name = f"py-frame-{os.getpid()}"
    b = pool.alloc(8192)
    memoryview(b)[:4] = b"name"
    pool.publish(name, b)
    with pytest.raises(FileExistsError):
        pool.publish(name, b)
    names = pool.stats()["names"]
    assert names >= 1
    c = pool.lookup(name)
    assert c.offset == b.offset and c.nbytes == 8192 and bytes(c)[:4] == b"name"
    assert len(pool.lookup(name, nbytes=5)) == 5
    b.release()
    pool.unpublish(name)
    assert pool.stats()["names"] == names - 1
    assert bytes(c)[:4] == b"name"  # the lookup's reference
    c.release()
    with pytest.raises(FileNotFoundError):
        pool.lookup(name)
    with pytest.raises(FileNotFoundError):
        pool.unpublish(name)
    with pytest.raises(TimeoutError):
        pool.lookup(name, timeout=0.05)
    for bad in ("", "a b", "x" * 64, "caf\u00e9"):
        with pytest.raises(ValueError):
            pool.lookup(bad)
    with pytest.raises(TypeError):
        pool.lookup(3)
    with pytest.raises(ValueError):
        pool.lookup(name, timeout=-1)


def test_lookup_waits_without_the_gil(pool):
    """A thread waits for a name; this one publishes it meanwhile, which it
    could not do if the waiting thread held the GIL."""
    name = f"py-later-{os.getpid()}"
    got = []
    t = threading.Thread(target=lambda: got.append(pool.lookup(name, timeout=60)))
    t.start()
    b = pool.alloc(4096)
    memoryview(b)[:5] = b"later"
    pool.publish(name, b)
    t.join()
    assert bytes(got[0])[:5] == b"later"
    pool.unpublish(name)
    got[0].release()
    b.release()


# Workers: module-level, so that spawn and forkserver children import them.

def _echo_worker(q_in, q_out, go):
    keep, dropped = q_in.get()
    go.wait()  # the parent has dropped its Buffer by now
    memoryview(keep)[:6] = b"worker"  # in place: the parent sees it
    ok = bytes(dropped)[:7] == b"dropped"
    with scav.Pool("share") as p:
        r = p.alloc(1000)
    memoryview(r)[:5] = b"reply"
    q_out.put((ok, r))
    del r  # released right after pickling: kept for the parent all the same
    keep.release()
    dropped.release()


@pytest.mark.parametrize("method", METHODS)
def test_queue(pool, method):
    ctx = mp.get_context(method)
    q_in, q_out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    w = ctx.Process(target=_echo_worker, args=(q_in, q_out, go))
    w.start()
    keep = pool.alloc(4096)
    d = pool.alloc(MIB)
    memoryview(d)[:7] = b"dropped"
    q_in.put((keep, d))
    del d
    q_in.close()
    q_in.join_thread()  # pickled and sent
    gc.collect()
    go.set()
    ok, r = q_out.get(timeout=60)
    assert ok, "the worker did not read what the parent sent"
    assert bytes(r)[:5] == b"reply"
    w.join(60)
    assert w.exitcode == 0
    assert bytes(keep)[:6] == b"worker"
    r.release()
    keep.release()


def _double_slice(arg):
    a, i = arg
    a[i * 1000:(i + 1) * 1000] *= 2
    return float(a[i * 1000:(i + 1) * 1000].sum())


def _make_array(i):
    with scav.Pool("share") as p:
        a = p.ndarray((100, 10), np.int64)
    a[:] = i
    return a


@pytest.mark.parametrize("method", METHODS)
def test_pool_map(pool, method):
    arr = pool.ndarray(4000, np.float64)
    arr[:] = np.arange(4000)
    with mp.get_context(method).Pool(2) as workers:
        sums = workers.map_async(_double_slice, [(arr, i) for i in range(4)]).get(MP_TIMEOUT)
        made = workers.map_async(_make_array, range(4)).get(MP_TIMEOUT)
    # The workers wrote into the parent's array: it was passed by reference.
    assert (arr == np.arange(4000) * 2).all()
    assert sums == [float((np.arange(4000)[i * 1000:(i + 1) * 1000] * 2).sum()) for i in range(4)]
    for i, a in enumerate(made):
        assert isinstance(a.base, scav.Buffer) and a.shape == (100, 10) and (a == i).all()
    del made, arr
    gc.collect()


def _executor_worker(a):
    a += 1
    return a[::-2]  # a view: goes back as a reference too


def test_process_pool_executor(pool):
    arr = pool.ndarray((50, 20), np.float32)
    arr[:] = 1
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        views = list(ex.map(_executor_worker, [arr[i * 10:(i + 1) * 10] for i in range(5)],
                            timeout=MP_TIMEOUT))
    assert (arr == 2).all()
    for v in views:
        assert (v == 2).all() and isinstance(v.base, scav.Buffer)
    views[0][0, 0] = 7
    assert arr[9, 0] == 7  # views[0] is arr[0:10][::-2] (rows 9, 7, ...): its [0, 0] is arr[9, 0]


def test_plain_pickle_of_an_array_copies(pool):
    """Only multiprocessing's pickler passes arrays by reference; a pickle
    meant for a file keeps the bytes."""
    a = pool.ndarray(1000, np.uint8)
    a[:] = 5
    data = pickle.dumps(a)
    assert len(data) > 1000
    b = pickle.loads(data)
    assert not isinstance(b.base, scav.Buffer) and (b == 5).all()


def _holder(conn, arr):
    with scav.Pool("kill") as p:
        own = [p.alloc(n) for n in (4096, MIB, 16 * MIB)]
        for o in own:
            memoryview(o)[:] = b"\xee" * len(o)
    extra = conn.recv()  # another reference to the parent's array
    arr[:10] = 99
    conn.send(("ready", own[1]))  # in flight when killed
    signal.pause()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_sigkill_worker(daemon, method):
    pool = scav.Pool("kill")
    arr = pool.ndarray(2 * MIB, np.uint8)
    arr[:] = 7
    parent_end, child_end = mp.Pipe()
    ctx = mp.get_context(method)
    w = ctx.Process(target=_holder, args=(child_end, arr))
    w.start()
    parent_end.send(arr)
    assert parent_end.poll(60), "the worker did not get ready"
    msg = parent_end.recv_bytes()  # unpickled only after the kill
    assert len(daemon.clients("kill")) == 2
    during = pool.stats()
    assert during["refs"] > during["shared"]  # the worker holds a second reference to arr
    os.kill(w.pid, signal.SIGKILL)
    w.join(60)
    assert w.exitcode == -signal.SIGKILL
    wait_until(lambda: len(daemon.clients("kill")) == 1, "the dead worker's slot reclaimed")
    # The parent's data is intact (the worker's write went into it), and the
    # worker's references are gone with it.
    assert (arr[:10] == 99).all() and (arr[10:] == 7).all()
    after = pool.stats()
    # What is left shared (arr, the page of acknowledgements) is held once,
    # by the parent.
    assert after["shared"] >= 1 and after["refs"] == after["shared"], after
    # The Buffer the worker had in flight: its sender is gone, nobody holds it.
    with pytest.raises(scav.StaleError):
        pickle.loads(msg)  # ("ready", Buffer)
    # Nothing leaked once the parent lets go.
    del arr
    gc.collect()
    pool.close()
    wait_until(lambda: daemon.status("kill")["clients"] == 0, "the parent's slot gone")
    st = daemon.status("kill")
    assert st["inuse"] == 0, st
    daemon.ctl("scavenge", "kill")
    st = daemon.status("kill")
    assert st["retained"] == 0 and st["released"] == st["heap_sys"], st


def test_lookup_is_interruptible():
    """Ctrl-C ends a lookup that waits without limit in the main thread."""
    p = subprocess.Popen([sys.executable, "-c", """
import math, scav
pool = scav.Pool("share")
try:
    print("waiting", flush=True)
    pool.lookup("py-never-published", timeout=math.inf)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "waiting\n"
    # Asleep on the names' futex, then interrupted.
    wait_until(lambda: "futex" in open(f"/proc/{p.pid}/wchan").read(), "the lookup asleep")
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert out.strip() == "interrupted" and p.returncode == 0


def _send_and_exit(conn):
    with scav.Pool("share") as p:
        b = p.alloc(100)
    memoryview(b)[:5] = b"alive"
    conn.send(b)
    # b is released here, and the process exits: its slot, with every
    # reference of it, goes -- once the receiver has its own.


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_sender_exit_waits_for_the_receiver(pool, method):
    ctx = mp.get_context(method)
    mine, theirs = ctx.Pipe()
    w = ctx.Process(target=_send_and_exit, args=(theirs,))
    w.start()
    assert mine.poll(60)
    data = mine.recv_bytes()  # sent, not yet received
    w.join(1.0)
    assert w.is_alive(), "the worker exited before the receiver took its Buffer"
    b = pickle.loads(data)
    assert bytes(b)[:5] == b"alive"
    w.join(60)
    assert w.exitcode == 0
    b.release()


def test_worker_exits_before_the_receiver_opens_the_pool(tmp_path):
    """A worker returns a Buffer and exits; the parent opens the pool only to
    unpickle it (the worker's exit waits for a receiver that has not opened
    the pool for a while)."""
    script = tmp_path / "exits.py"
    script.write_text("""
import multiprocessing as mp
import scav

def worker(q):
    with scav.Pool("share") as p:
        b = p.alloc(100)
    memoryview(b)[:5] = b"alive"
    q.put(b)

if __name__ == "__main__":
    for method in ("fork", "spawn"):
        ctx = mp.get_context(method)
        q = ctx.Queue()
        w = ctx.Process(target=worker, args=(q,))
        w.start()
        b = q.get()  # opens the pool, takes a reference, acknowledges
        w.join()
        print(method, bytes(b)[:5].decode(), w.exitcode)
        b.release()
        scav.Pool("share").close()  # the next round opens it anew
""")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["fork alive 0", "spawn alive 0"], r.stdout + r.stderr
    assert "not received" not in r.stderr
