# SPDX-License-Identifier: MIT
"""Pool and Buffer in one process: zero-copy views, release semantics,
errors. Needs no NumPy and nothing of the sharing API."""

import errno
import gc
import os
import pickle
import weakref

import pytest

import scav
from conftest import OTHER_UID, run_python, wait_until

MIB = 1 << 20


@pytest.fixture
def pool():
    with scav.Pool("default") as p:
        yield p


def test_views_are_the_shared_memory(pool):
    b = pool.alloc(10000)
    assert len(b) == b.nbytes == 10000
    assert b.pool == "default" and b.offset % pool.page_size == 0
    m1, m2 = memoryview(b), memoryview(b)
    assert not m1.readonly and m1.nbytes == 10000 and m1.format == "B"
    m1[100:105] = b"hello"
    # Another view of the same Buffer, and the bytes at its offset, see it.
    assert bytes(m2[100:105]) == b"hello"
    assert bytes(b)[100:105] == b"hello"
    m1.release()
    m2.release()
    # Anything that takes a writable buffer writes into the pool.
    r, w = os.pipe()
    os.write(w, b"from a pipe")
    with os.fdopen(r, "rb", buffering=0) as f:
        assert f.readinto(b) == 11
    os.close(w)
    assert bytes(b)[:11] == b"from a pipe"
    b.release()


def test_indexing_as_mmap(pool):
    """buf[i] an int, buf[a:b] a copy; assignment writes the shared memory
    in place, never resizes, and leaves no export behind."""
    b = pool.alloc(16, zero=True)
    b[0:5] = b"hello"
    b[5] = ord("!")
    b[-1] = 7
    assert b[0:6] == b"hello!" and isinstance(b[0:6], bytes)
    assert b[0] == ord("h") and b[-1] == 7 and b[::5] == b"h!\x00\x07"
    assert bytes(memoryview(b)[:6]) == b"hello!"  # the same memory
    with pytest.raises(ValueError):
        b[0:3] = b"too long"
    with pytest.raises(ValueError):
        b[0] = 256
    with pytest.raises(TypeError):
        b[0] = "h"
    with pytest.raises(IndexError):
        b[16]
    with pytest.raises(TypeError):
        del b[0]
    assert b[0:6] == b"hello!", "a refused assignment changed nothing"
    b.release()  # no export left by any of the above
    with pytest.raises(ValueError, match="released"):
        b[0]
    with pytest.raises(ValueError, match="released"):
        b[0] = 1


def test_zero(pool):
    n = 3 * MIB  # no page cache: the next allocation gets the same pages
    b = pool.alloc(n)
    off = b.offset
    memoryview(b)[:] = b"\xff" * n
    b.release()
    z = pool.alloc(n, zero=True)
    assert z.offset == off, "the test wants the freed pages back"
    assert bytes(z) == bytes(n)
    z.release()


def test_release_and_use_after_release(pool):
    b = pool.alloc(4096)
    assert not b.released
    b.release()
    assert b.released and repr(b) == "<scav.Buffer released>"
    b.release()  # twice: nothing
    for use in (lambda: memoryview(b), lambda: len(b), lambda: b.nbytes, lambda: b.offset,
                lambda: b.handle(), lambda: pickle.dumps(b), lambda: b.__enter__()):
        with pytest.raises(ValueError, match="released"):
            use()


def test_release_while_exported(pool):
    b = pool.alloc(4096)
    m = memoryview(b)
    with pytest.raises(BufferError, match="1 export"):
        b.release()
    m[0] = 7  # still there
    m.release()
    b.release()
    assert b.released


def test_with_block_releases(pool):
    with pool.alloc(100) as b:
        memoryview(b)[0] = 1
    assert b.released


def test_collection_releases():
    # Allocations above the page caches (> 128 pages): in use drops at once.
    with scav.Pool("gc") as p:
        base = p.stats()["inuse"]
        b = p.alloc(2 * MIB)
        assert p.stats()["inuse"] == base + 2 * MIB
        w = weakref.ref(b)
        del b
        gc.collect()
        assert w() is None
        assert p.stats()["inuse"] == base


def test_a_view_keeps_the_buffer():
    with scav.Pool("gc") as p:
        base = p.stats()["inuse"]
        b = p.alloc(2 * MIB)
        m = memoryview(b)
        m[:4] = b"keep"
        w = weakref.ref(b)
        del b
        gc.collect()
        assert w() is not None and p.stats()["inuse"] == base + 2 * MIB
        assert bytes(m[:4]) == b"keep"
        m.release()
        del m
        gc.collect()
        assert w() is None and p.stats()["inuse"] == base


def test_errors(pool, monkeypatch):
    with pytest.raises(FileNotFoundError) as e:
        scav.Pool("nosuch")
    assert e.value.errno == errno.ENOENT and "nosuch" in str(e.value)
    for bad in ("", "a/b", "x" * 64, "sp ace"):
        with pytest.raises(ValueError, match="bad pool name"):
            scav.Pool(bad)
    with pytest.raises(TypeError):
        scav.Pool(3)
    for n in (0, -1):
        with pytest.raises(ValueError):
            pool.alloc(n)
    with pytest.raises(TypeError):
        pool.alloc("10")
    with pytest.raises(TypeError):
        scav.Buffer()
    with pytest.raises(ValueError):
        pool.scavenge(-1)
    # No daemon behind the socket (a pool not open in this process yet).
    monkeypatch.setenv("SCAVD_SOCKET", "/nonexistent/scavd.sock")
    with pytest.raises(ConnectionRefusedError, match="cannot reach scavd"):
        scav.Pool("small")


def test_full_pool():
    with scav.Pool("small") as p:
        with pytest.raises(scav.PoolFullError) as e:
            p.alloc(64 * MIB)
        assert isinstance(e.value, MemoryError) and isinstance(e.value, OSError)
        assert e.value.errno == errno.ENOMEM and "small" in str(e.value)
        bufs = []
        with pytest.raises(MemoryError):
            while True:
                bufs.append(p.alloc(256 * 1024))
        assert len(bufs) >= 4  # it did hold what fits
        for b in bufs:
            b.release()
        p.alloc(256 * 1024).release()  # and has room again


def test_denied_user():
    # root is always admitted: try as a user the pool does not allow.
    code = f"""
import os, scav
os.setgid(65534); os.setuid(65534)
try:
    scav.Pool("denied")
except PermissionError as e:
    print("denied", e.errno)
"""
    if os.getuid() != 0:
        pytest.skip("needs root to try as another user")
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"denied {errno.EACCES}", r.stdout + r.stderr


def test_stats_and_scavenge(pool):
    st = pool.stats()
    for k in ("capacity", "page_size", "heap_sys", "inuse", "released", "retained", "gen",
              "released_total", "clients", "memory_limit", "peak_inuse", "shared", "refs", "names"):
        assert isinstance(st[k], int), k
    assert st["capacity"] == pool.capacity == 256 * MIB and st["page_size"] == pool.page_size
    assert st["retained_goal"] is None or isinstance(st["retained_goal"], int)
    assert st["clients"] >= 1
    r = pool.scavenge()
    assert isinstance(r, int) and r >= 0


def test_pool_close(daemon):
    p = scav.Pool("closing")
    q = scav.Pool("closing")  # the same slot
    assert len(daemon.clients("closing")) == 1
    b = p.alloc(MIB)
    p.close()
    q.close()
    assert p.closed and "closed" in repr(p)
    with pytest.raises(ValueError, match="closed"):
        p.alloc(10)
    # The Buffer keeps the slot until it goes.
    memoryview(b)[0] = 1
    assert len(daemon.clients("closing")) == 1
    b.release()
    wait_until(lambda: daemon.clients("closing") == [], "the slot given back")
    assert daemon.status("closing")["inuse"] == 0


def test_import_without_numpy():
    r = run_python("""
import sys
sys.modules["numpy"] = None  # import numpy fails
import scav
p = scav.Pool()
b = p.alloc(100)
memoryview(b)[0] = 42
assert bytes(b)[0] == 42
try:
    p.ndarray(3)
except ImportError:
    print("ok")
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
