# SPDX-License-Identifier: MIT
"""docs/examples/numpy_workers.py does what the README says."""

import os
import subprocess
import sys

import pytest

from conftest import TOP

EXAMPLE = os.path.join(TOP, "docs", "examples", "numpy_workers.py")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_numpy_workers(daemon, method):
    r = subprocess.run([sys.executable, EXAMPLE, "--pool", "example", "--rows", "64", "--start-method", method],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "every element is 3 * i" in r.stdout
    assert r.stdout.count("transformed") == 4
    assert r.stdout.rstrip().endswith("in use 0 KiB"), r.stdout
