# SPDX-License-Identifier: MIT
"""Threads sharing one pool: one client slot, a page cache per thread."""

import threading

import scav

THREADS = 8
ROUNDS = 300


def test_threads_share_a_pool(daemon):
    pool = scav.Pool("threads")
    errors = []
    start = threading.Barrier(THREADS + 1)

    def work(t):
        try:
            start.wait()
            held = []
            for i in range(ROUNDS):
                n = 4096 * (1 + (i * 7 + t) % 40)  # 1 to 40 pages: every cache
                b = pool.alloc(n)
                m = memoryview(b)
                m[:] = bytes([t]) * n
                held.append((b, m, t))
                if len(held) > 5:
                    ob, om, ot = held.pop(0)
                    # Nobody else wrote into this thread's memory meanwhile.
                    if om.tobytes() != bytes([ot]) * len(ob):
                        errors.append(f"thread {t}: buffer at {ob.offset:#x} changed")
                    om.release()
                    ob.release()
            for ob, om, _ in held:
                om.release()
                ob.release()
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(f"thread {t}: {e!r}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    start.wait()
    stats = [pool.stats() for _ in range(20)]  # alongside: drops the GIL
    for th in threads:
        th.join()
    assert not errors, errors
    assert all(s["clients"] == 1 for s in stats)
    assert len(daemon.clients("threads")) == 1
    pool.close()
    assert daemon.status("threads")["inuse"] == 0
