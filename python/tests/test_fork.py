# SPDX-License-Identifier: MIT
"""os.fork(): the child gets a slot of its own and its own references to
the Buffers it inherited, before the parent can release them."""

import os
import struct

import pytest

import scav
from conftest import wait_until

MIB = 1 << 20


def child(fn):
    """Runs fn in a forked child; returns its exit status (0: passed)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException as e:  # noqa: BLE001 -- the child reports and exits
            os.write(2, f"child: {e!r}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_child_allocates_in_a_slot_of_its_own(daemon):
    pool = scav.Pool("fork")
    pool.alloc(10).release()  # the parent's slot exists

    def body():
        b = pool.alloc(100)  # the inherited Pool opens a slot for the child
        memoryview(b)[0] = 1
        assert len(daemon.clients("fork")) == 2
        b.release()

    assert child(body) == 0
    wait_until(lambda: len(daemon.clients("fork")) == 1, "the child's slot reclaimed")
    pool.close()


def test_inherited_buffer_survives_parent_release(daemon):
    """The parent releases an inherited Buffer and allocates again at once:
    the child, holding its own reference, keeps reading its data; it writes
    through the inherited view and the parent sees it (zero-copy)."""
    pool = scav.Pool("fork")
    b = pool.alloc(2 * MIB)  # above the page caches
    view = memoryview(b)
    view[:] = b"A" * len(view)
    off = b.offset
    r, w = os.pipe()
    r2, w2 = os.pipe()

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(w)
            os.close(r2)
            os.read(r, 1)  # the parent has released and reused
            assert view.tobytes() == b"A" * len(view), "inherited memory was reused"
            assert not b.released and b.offset == off
            view[0:4] = b"KID!"
            view.release()
            os.write(w2, b"x")
            b.release()
            code = 0
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"child: {e!r}\n".encode())
        finally:
            os._exit(code)
    os.close(r)
    os.close(w2)
    # os.fork returned: the child has its own reference already.
    assert len(daemon.clients("fork")) == 2
    view.release()
    b.release()
    again = pool.alloc(2 * MIB)
    assert again.offset != off, "the child's reference did not keep the allocation"
    memoryview(again)[:] = b"B" * (2 * MIB)
    os.write(w, b"x")
    os.read(r2, 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    again.release()
    pool.close()
    wait_until(lambda: daemon.status("fork")["clients"] == 0, "every slot gone")
    assert daemon.status("fork")["inuse"] == 0


def test_child_without_a_slot_reads_a_private_copy(daemon, monkeypatch):
    """When the child cannot open the pool, its inherited Buffers become
    private copies: old views read what they read, new uses fail clearly."""
    pool = scav.Pool("fork")
    b = pool.alloc(3 * 4096)
    view = memoryview(b)
    view[:8] = struct.pack("Q", 0x1234)
    monkeypatch.setenv("SCAVD_SOCKET", "/nonexistent/scavd.sock")  # the child cannot open

    def body():
        assert struct.unpack("Q", view[:8])[0] == 0x1234
        view[:8] = struct.pack("Q", 0x9999)  # private: the parent must not see it
        with pytest.raises(ConnectionRefusedError, match="inherited across fork"):
            memoryview(b)
        assert "detached" in repr(b)
        view.release()
        b.release()  # no reference of its own to drop

    assert child(body) == 0
    assert struct.unpack("Q", view[:8])[0] == 0x1234
    view.release()
    b.release()
    pool.close()
