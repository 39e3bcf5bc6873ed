# SPDX-License-Identifier: MIT
"""NumPy arrays in a pool: Pool.ndarray, numpy.frombuffer, lifetime."""

import gc
import weakref

import pytest

import scav

np = pytest.importorskip("numpy")
MIB = 1 << 20


@pytest.fixture
def pool():
    with scav.Pool("np") as p:
        yield p


def test_ndarray(pool):
    a = pool.ndarray((3, 4), "int32")
    assert a.shape == (3, 4) and a.dtype == np.int32 and a.flags.c_contiguous and a.flags.writeable
    assert isinstance(a.base, scav.Buffer) and a.base.nbytes == 48
    a[:] = np.arange(12).reshape(3, 4)
    # The array's memory is the Buffer's.
    assert bytes(a.base)[:48] == np.arange(12, dtype=np.int32).tobytes()
    f = pool.ndarray([2, 5], dtype=float, order="F", zero=True)
    assert f.flags.f_contiguous and f.dtype == np.float64 and not f.any()
    d = pool.ndarray(7)
    assert d.shape == (7,) and d.dtype == np.float64
    e = pool.ndarray((0, 3))
    assert e.size == 0 and isinstance(e.base, scav.Buffer)


def test_ndarray_bad_arguments(pool):
    with pytest.raises(ValueError):
        pool.ndarray((2, -1))
    with pytest.raises(ValueError, match="objects"):
        pool.ndarray(3, object)
    with pytest.raises(ValueError, match="order"):
        pool.ndarray(3, order="K")
    with pytest.raises(TypeError):
        pool.ndarray(3, "no such dtype")
    with pytest.raises(TypeError):
        pool.ndarray("3")
    with pytest.raises(scav.PoolFullError):
        pool.ndarray((1 << 20, 1 << 20), np.uint8)


def test_frombuffer_is_zero_copy(pool):
    b = pool.alloc(8 * 1000)
    a = np.frombuffer(b, dtype=np.float64)
    a[:] = 1.5
    v = np.frombuffer(b, dtype=np.float64)
    assert (v == 1.5).all()
    with pytest.raises(BufferError):
        b.release()
    del a, v
    gc.collect()
    b.release()


def test_array_keeps_buffer_alive(pool):
    base = pool.stats()["inuse"]
    a = pool.ndarray(MIB, np.uint8)  # 256 pages: no page cache
    a[-1] = 9
    w = weakref.ref(a.base)
    assert pool.stats()["inuse"] == base + MIB
    view = a[10:20]
    del a
    gc.collect()
    assert w() is not None  # the slice's base chain holds it
    assert pool.stats()["inuse"] == base + MIB
    del view
    gc.collect()
    assert w() is None
    assert pool.stats()["inuse"] == base
