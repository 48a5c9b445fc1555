"""``python -m kronjit precompile``: it fills an empty cache that a second process then
loads without compiling, refuses a cache location it cannot write, and is safe to run
while another process uses the same cache.  In child processes, each with a cache
directory of its own; only the structured family, the quickest to compile."""
import os
import subprocess
import sys

import pytest

from helpers import assert_child_ok, run_python

pytestmark = pytest.mark.subprocess

#: Calls the structured family's warm-up covers (its dtypes), then the kernels' Numba
#: statistics: cache hits and misses summed over every kronjit kernel.
USE_STRUCTURED = """
import numpy as np, kronjit
from kronjit import _runtime, _precompile
for dtype in _precompile.FAMILIES["structured"][1]:
    c = _precompile._values((3, 2, 2), dtype)
    t = kronjit.block_toeplitz(c, _precompile._values((4, 2, 2), dtype, 1))
    assert t.shape == (6, 8) and t.dtype == np.dtype(dtype)
    kronjit.block_hankel(c), kronjit.block_circulant(c), kronjit.block_diag(c[0], c[1])
    big = _precompile._values((64, 8, 8), dtype)
    with _runtime.compiling_runners():  # in parts through the runner, whatever the load
        assert np.array_equal(kronjit.block_toeplitz(big), kronjit.block_toeplitz(big[:, :, :]))
runners = [d for d in _runtime._dispatchers if "_parts_" in d.py_func.__name__]
print("runner calls", sum(sum(d.stats.cache_hits.values()) + sum(d.stats.cache_misses.values())
                          for d in runners))
hits = sum(sum(d.stats.cache_hits.values()) for d in _runtime._dispatchers)
misses = sum(sum(d.stats.cache_misses.values()) for d in _runtime._dispatchers)
print("hits", hits, "misses", misses)
print("OK")
"""


def precompile(cache, *args):
    return subprocess.run([sys.executable, "-m", "kronjit", "precompile", *args],
                          env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)),
                          capture_output=True, text=True, timeout=600)


def counts(stdout):
    words = stdout.split()
    return int(words[words.index("hits") + 1]), int(words[words.index("misses") + 1])


def test_precompiled_cache_loads_without_compiling(tmp_path):
    done = precompile(tmp_path, "--only", "structured", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert "[1/1] structured: bool" in done.stdout and str(tmp_path) in done.stdout
    kernels = int(done.stdout.split("done in")[1].split(":")[1].split()[0])
    assert kernels >= 2
    # a second process finds every kernel it calls in the cache: loaded, never compiled
    child = run_python(USE_STRUCTURED, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert_child_ok(child)
    hits, misses = counts(child.stdout)
    assert hits >= 2 and misses == 0, child.stdout
    assert "runner calls 0" not in child.stdout  # the runners were precompiled too
    # info counts the same cache's entries
    info = run_python("import kronjit; print(kronjit.info()['cache_contents'])",
                      env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert f"'kernels': {kernels}" in info.stdout, info.stdout + info.stderr


def test_without_precompile_the_same_calls_compile(tmp_path):
    """The statistics the test above relies on do count compilations."""
    child = run_python(USE_STRUCTURED, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert_child_ok(child)
    hits, misses = counts(child.stdout)
    assert misses >= 2 and hits == 0, child.stdout


def test_unwritable_cache_location_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = precompile(blocker / "cache", "--only", "structured")
    assert done.returncode == 1
    assert "NUMBA_CACHE_DIR" in done.stderr and "not a writable directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_arguments_are_refused(tmp_path):
    done = precompile(tmp_path, "--only", "nonsense")
    assert done.returncode == 1 and "the families are dense, sparse" in done.stderr
    done = precompile(tmp_path, "--jobs", "0")
    assert done.returncode == 2 and "--jobs must be at least 1" in done.stderr


def test_precompile_beside_a_process_using_the_cache(tmp_path):
    """Two processes filling one cache at once (one compiling as it calls, the other
    precompiling in two processes) both finish with correct results."""
    user = subprocess.Popen(
        [sys.executable, "-c", USE_STRUCTURED], env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = precompile(tmp_path, "--only", "structured", "--only", "toeplitz", "--jobs", "2")
    out, err = user.communicate(timeout=600)
    assert done.returncode == 0, done.stderr
    assert user.returncode == 0 and "OK" in out, err
    # and a process after them loads what they left
    child = run_python(USE_STRUCTURED, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert_child_ok(child)
    assert counts(child.stdout)[1] == 0, child.stdout
