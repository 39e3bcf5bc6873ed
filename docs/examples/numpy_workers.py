#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Four worker processes transform slices of one NumPy array in place.

The parent makes the array in a scavd pool and fills it; multiprocessing
hands each worker a slice -- a reference to the parent's memory, not a copy
of its bytes -- and the workers write their results into it; the parent
checks them. When the array goes, its pages go back to the pool, and the
daemon's scavenger gives them back to the kernel.

    make
    build/scavd --config conf/scavd.conf --socket /tmp/scavd.sock &
    SCAVD_SOCKET=/tmp/scavd.sock PYTHONPATH=build/python \\
        /usr/bin/python3 docs/examples/numpy_workers.py

Options: --pool NAME (default "default"), --rows N (of 1024 float64s; 2048:
16 MiB), --start-method fork|spawn|forkserver.
"""

import argparse
import multiprocessing as mp
import os
import time

import numpy as np

import scav

WORKERS = 4


def transform(job):
    """In a worker: the block is a view of the parent's array."""
    block, factor = job
    np.sqrt(block, out=block)
    block *= factor
    return os.getpid(), block.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", default="default")
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--start-method", default="fork", choices=["fork", "spawn", "forkserver"])
    args = ap.parse_args()

    with scav.Pool(args.pool) as pool:
        base = pool.stats()["inuse"]
        a = pool.ndarray((args.rows, 1024), np.float64)
        a[:] = np.square(np.arange(a.size, dtype=np.float64)).reshape(a.shape)
        print(f"parent {os.getpid()}: {a.nbytes >> 10} KiB array in pool '{pool.name}' "
              f"(in use {base >> 10} -> {pool.stats()['inuse'] >> 10} KiB)")

        t0 = time.monotonic()
        blocks = np.array_split(a, WORKERS)  # views: no copies
        with mp.get_context(args.start_method).Pool(WORKERS) as workers:
            done = workers.map(transform, [(b, 3.0) for b in blocks], chunksize=1)
            workers.close()
            workers.join()
        t = time.monotonic() - t0
        for pid, rows in done:
            print(f"worker {pid}: transformed {rows} rows in place")

        want = 3.0 * np.arange(a.size, dtype=np.float64).reshape(a.shape)
        if not np.array_equal(a, want):
            bad = np.argwhere(a != want)[0]
            raise SystemExit(f"wrong result at {tuple(bad)}: {a[tuple(bad)]} != {want[tuple(bad)]}")
        print(f"parent: every element is 3 * i: the workers wrote into the parent's memory "
              f"({args.start_method}, {t * 1000:.0f} ms)")

        del a, blocks
        # A worker that exits without dropping its references (multiprocessing
        # ends them with os._exit) loses them when the daemon reclaims its slot,
        # a moment after it exits.
        deadline = time.monotonic() + 5
        while pool.stats()["inuse"] > base and time.monotonic() < deadline:
            time.sleep(0.01)
        print(f"parent: array dropped, in use {pool.stats()['inuse'] >> 10} KiB")


if __name__ == "__main__":
    main()
