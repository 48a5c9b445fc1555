"""The Numba runtime policy: threads, fork, caches, thread control, info.

Anything that could abort the interpreter runs in a child process.
"""
import importlib.metadata
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import kronjit
from kronjit import _runtime
from conftest import assert_child_ok, run_python

def _tbb_installed():
    try:
        importlib.metadata.version("tbb")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# tbb where its wheel is installed (the test extra installs it on x86-64)
LAYERS = ["omp", "workqueue"] + (["tbb"] if _tbb_installed() else [])


def layer_env(layer):
    """Environment selecting a threading layer; the tbb wheel's library lives in sys.prefix/lib."""
    env = {"NUMBA_THREADING_LAYER": layer}
    if layer == "tbb":
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (os.path.join(sys.prefix, "lib"), os.environ.get("LD_LIBRARY_PATH")) if p)
    return env

# 8 threads x 50 calls on outputs big enough for the parallel kernel, each
# checked against a result computed before the threads start.
CONCURRENT = """
import sys, threading
import numpy as np, scipy.sparse as sp, kronjit
import numba
import scipy.linalg
from kronjit.compare import gather_toeplitz, random_sparse, result_arrays
rng = np.random.default_rng(0)
dense = [[rng.standard_normal((64, 64)), rng.standard_normal((8, 8))],
         [rng.standard_normal((300, 40)), rng.standard_normal((3, 5))],
         [rng.standard_normal((6, 6)), rng.standard_normal((7, 7)), rng.standard_normal((5, 4))],
         [rng.integers(-9, 9, (128, 64)).astype(np.int32), rng.integers(-9, 9, (4, 4)).astype(np.int32)],
         [(rng.standard_normal((40, 40)) + 1j).astype(np.complex64), rng.standard_normal((6, 6))]]
a, b = random_sparse(150, 5, 1), random_sparse(80, 5, 2)
c, r = rng.standard_normal((32, 16, 16)), rng.standard_normal((24, 16, 16))
vt_factors = [rng.standard_normal((12, 10)), rng.standard_normal((8, 9)), rng.standard_normal((10, 11))]
vt_x = rng.standard_normal((10 * 9 * 11, 40))  # big enough for the parallel build
calls = [(lambda f=f: kronjit.kron(*f),
          np.kron(np.kron(f[0], f[1]), f[2]) if len(f) == 3 else np.kron(*f)) for f in dense]
# sparse results compared array by array (formed densely, 8 threads would hold 9 GB)
calls += [(lambda: kronjit.sparse.kron(a, b, format="csr"), sp.kron(a, b, format="csr")),
          (lambda: kronjit.sparse.kron(a, b, format="coo"), sp.kron(a, b, format="coo")),
          (lambda: kronjit.sparse.kronsum(a, b[:80]), sp.kronsum(a, b)),
          (lambda: kronjit.block_toeplitz(c, r), gather_toeplitz(c, r)),
          (lambda: kronjit.block_diag(*c), scipy.linalg.block_diag(*c)),
          (lambda: kronjit.kron_matvec(vt_factors, vt_x), kronjit.kron_matvec(vt_factors, vt_x))]
# operators shared by every thread, whose plans are built on first use (by the threads)
gp_factors = [np.exp(-np.subtract.outer(t, t) ** 2) for t in (np.linspace(0, 2, 30),
                                                              np.linspace(0, 3, 40))]
gp_b = rng.standard_normal((1200, 8))
gp_want = kronjit.KronProduct(gp_factors).solve(gp_b, shift=0.1)
gp = kronjit.KronProduct(gp_factors)
gp.eigh()  # LAPACK once, so every solve applies the same eigenvectors
op = kronjit.KronProduct(vt_factors)
calls += [(lambda: op @ vt_x, kronjit.kron_matvec(vt_factors, vt_x)),
          (lambda: gp.solve(gp_b, shift=0.1), gp_want)]
def same(got, want):
    if sp.issparse(want):
        return (type(got) is type(want) and got.format == want.format
                and all(g.dtype == w.dtype and np.array_equal(g, w)
                        for g, w in zip(result_arrays(got), result_arrays(want))))
    return got.dtype == want.dtype and np.array_equal(got, want)
errors = []
def work(t):
    try:
        for i in range(50):
            call, want = calls[(t + i) % len(calls)]
            if not same(call(), want):
                errors.append((t, i))
    except BaseException as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
for th in threads: th.start()
for th in threads: th.join()
assert not errors, errors[:5]
# the same calls from inside another thread pool
from concurrent.futures import ThreadPoolExecutor
def check(i):
    call, want = calls[i % len(calls)]
    return same(call(), want)
with ThreadPoolExecutor(max_workers=8) as pool:
    assert all(pool.map(check, range(8 * len(calls))))
print("OK", numba.threading_layer())
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("layer", LAYERS)
def test_eight_threads_fifty_calls_each(layer):
    proc = run_python(CONCURRENT, env=layer_env(layer))
    assert_child_ok(proc, marker=f"OK {layer}")


FORK = """
import os
import numpy as np, kronjit, numba
from kronjit import _runtime
a, b = np.random.default_rng(1).standard_normal((128, 64)), np.ones((4, 4))
expected = np.kron(a, b)
assert np.array_equal(kronjit.kron(a, b), expected)  # starts the thread pool
assert numba.threading_layer() == "{layer}"
pid = os.fork()
if pid == 0:
    ok = _runtime.serial_only() and all(np.array_equal(kronjit.kron(a, b), expected)
                                        for _ in range(3))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
assert not _runtime.serial_only()
assert np.array_equal(kronjit.kron(a, b), expected)  # parent still parallel and right
print("OK")
"""


@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("layer", LAYERS)
def test_forked_child_uses_serial_twin(layer):
    proc = run_python(FORK.format(layer=layer), env=layer_env(layer))
    assert_child_ok(proc)


MULTIPROCESSING = """
import multiprocessing as mp
import sys
import numpy as np, kronjit
from kronjit.compare import random_sparse


def work(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((128, 64)), rng.standard_normal((4, 4))
    s = random_sparse(150, 5, seed)
    c = rng.standard_normal((32, 16, 16))
    return (kronjit.kron(a, b), kronjit.sparse.kron(s, s[:60, :60], format="csr").toarray(),
            kronjit.block_toeplitz(c))


if __name__ == "__main__":
    method = sys.argv[1]
    expected = [work(seed) for seed in range(3)]  # the parent starts the thread pool first
    with mp.get_context(method).Pool(2) as pool:
        got = pool.map(work, range(3))
    assert all(np.array_equal(x, y) for g, e in zip(got, expected) for x, y in zip(g, e))
    print("OK", method)
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("method", [m for m in ("fork", "spawn", "forkserver")
                                    if m in __import__("multiprocessing").get_all_start_methods()])
def test_multiprocessing_children_after_parallel_kernels(method, tmp_path):
    script = tmp_path / "mp_script.py"
    script.write_text(MULTIPROCESSING)
    proc = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert_child_ok(proc, marker=f"OK {method}")


@pytest.mark.subprocess
def test_fork_before_any_parallel_kernel_keeps_child_parallel():
    proc = run_python("""
        import os, numpy as np, kronjit
        from kronjit import _runtime
        pid = os.fork()
        if pid == 0:
            a = np.ones((128, 64))
            ok = not _runtime.serial_only() and np.array_equal(kronjit.kron(a, a[:4, :4]),
                                                                np.kron(a, a[:4, :4]))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        print("OK")
    """)
    assert_child_ok(proc)


# --- caching -----------------------------------------------------------------------

CACHE_RUN = """
import numpy as np, kronjit
from kronjit import _runtime
a = np.arange(12.0).reshape(3, 4)
assert np.array_equal(kronjit.kron(a, a.T), np.kron(a, a.T))
print("CACHE", _runtime.cache_location())
print("OK")
"""


@pytest.mark.subprocess
def test_cache_honours_numba_cache_dir(tmp_path):
    proc = run_python(CACHE_RUN, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert_child_ok(proc)
    assert str(tmp_path) in proc.stdout
    assert list(tmp_path.rglob("*.nbi")), "no index written to NUMBA_CACHE_DIR"


@pytest.mark.subprocess
def test_corrupt_cache_is_recompiled(tmp_path):
    assert_child_ok(run_python(CACHE_RUN, env={"NUMBA_CACHE_DIR": str(tmp_path)}))
    files = list(tmp_path.rglob("*.nbi")) + list(tmp_path.rglob("*.nbc"))
    assert files
    for f in files:
        f.write_bytes(b"\x80\x04 this is not a pickle" + os.urandom(64))
    proc = run_python(CACHE_RUN, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert_child_ok(proc)


@pytest.mark.subprocess
def test_no_writable_cache_location_runs_uncached(tmp_path):
    # Every place Numba could cache in is made unusable in a way that holds
    # for root too: a copy of the package whose __pycache__ is a regular file,
    # and NUMBA_CACHE_DIR, HOME and XDG_CACHE_HOME below a regular file.
    import shutil
    pkg = tmp_path / "pkg"
    shutil.copytree(os.path.dirname(kronjit.__file__), pkg / "kronjit",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "kronjit" / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    proc = run_python(CACHE_RUN + "import kronjit; print('FROM', kronjit.__file__)\n", env={
        "PYTHONPATH": str(pkg), "PYTHONDONTWRITEBYTECODE": "1",
        "NUMBA_CACHE_DIR": str(blocker / "cache"), "HOME": str(blocker / "home"),
        "XDG_CACHE_HOME": str(blocker / "xdg")}, cwd=tmp_path)
    assert_child_ok(proc)
    assert f"FROM {pkg}" in proc.stdout
    assert "CACHE disabled" in proc.stdout


CACHE_RACE = CACHE_RUN + """
x = np.arange(60.0)
fs = [np.arange(12.0).reshape(3, 4), np.eye(5) * 2, np.ones((2, 3))]
assert np.allclose(kronjit.kron_matvec(fs, x), np.kron(np.kron(fs[0], fs[1]), fs[2]) @ x)
s = kronjit.sparse.kron(np.eye(3), a, format="csr")
assert np.array_equal(s.toarray(), np.kron(np.eye(3), a))
print("OK2")
"""


@pytest.mark.subprocess
def test_eight_processes_build_one_cache_at_once(tmp_path):
    """Eight interpreters compiling into the same empty cache at the same time all
    succeed, and a ninth then runs from the cache they wrote."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", CACHE_RACE], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(8)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "OK2" in out, err
    assert list(tmp_path.rglob("*.nbc"))
    assert_child_ok(run_python(CACHE_RACE, env={"NUMBA_CACHE_DIR": str(tmp_path)}), "OK2")


@pytest.mark.subprocess
def test_kernel_suites_pass_with_bounds_checking(tmp_path):
    """The kernel test modules pass with NUMBA_BOUNDSCHECK=1 on the serial twins
    (Numba checks no bounds inside prange), so an out-of-bounds index in a
    kernel raises IndexError instead of corrupting memory."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = [os.path.join("tests", f"test_{m}.py")
             for m in ("dense", "sparse", "structured", "vectrick", "operators")]
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path),
               KRONJIT_TEST_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "-m", "not subprocess", *files], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_twins_have_distinct_cache_identities():
    from kronjit.dense import _kron_fill
    assert _kron_fill.parallel.py_func.__qualname__ != _kron_fill.serial.py_func.__qualname__
    assert _kron_fill.parallel.targetoptions.get("parallel")
    assert not _kron_fill.serial.targetoptions.get("parallel")


# --- numpy's complex rounding -------------------------------------------------------

@pytest.mark.subprocess
def test_complex_rounding_follows_numpy_dispatch():
    proc = run_python("""
        import numpy as np, kronjit
        from kronjit import _arith
        z = np.array([1 + 2**-30 + 1j, 3.3 + 0.7j, -1e-3 + 7j])
        assert _arith.complex_mul_mode(np.complex128) == _arith.PLAIN, _arith._MODES
        for x in (z, z.astype(np.complex64)):
            assert kronjit.kron(x, x).tobytes() == np.kron(x, x).tobytes()
        print("OK")
    """, env={"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4"})
    assert_child_ok(proc)


# --- thread control ---------------------------------------------------------------

def test_set_num_threads_roundtrip_and_validation():
    limit = numba.config.NUMBA_NUM_THREADS
    old = kronjit.set_num_threads(1)
    try:
        assert kronjit.get_num_threads() == 1
        with kronjit.num_threads(limit):
            assert kronjit.get_num_threads() == limit
        assert kronjit.get_num_threads() == 1
    finally:
        kronjit.set_num_threads(old)
    for bad, exc in ((0, ValueError), (limit + 1, ValueError), (1.5, TypeError),
                     ("2", TypeError), (True, TypeError)):
        with pytest.raises(exc, match="n must"):
            kronjit.set_num_threads(bad)
    assert kronjit.set_num_threads(np.int64(1)) == old
    kronjit.set_num_threads(old)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2+ Numba threads")
def test_thread_count_applies_to_calls_from_other_threads():
    import threading
    from kronjit.dense import _kron_fill
    a, b = np.ones((256, 64)), np.ones((4, 4))
    limit = numba.config.NUMBA_NUM_THREADS
    seen = {}

    def worker():
        numba.set_num_threads(1)  # Numba's setting is per thread...
        kronjit.kron(a, b)
        seen["after"] = numba.get_num_threads()  # ...kronjit's applies anyway

    old = kronjit.set_num_threads(limit)
    try:
        t = threading.Thread(target=worker)
        t.start(), t.join()
        assert seen["after"] == limit
        # Set from a non-main thread, obeyed by the main thread: one thread
        # means the serial twin with a single chunk.
        t = threading.Thread(target=kronjit.set_num_threads, args=(1,))
        t.start(), t.join()
        calls, original = [], _kron_fill.serial
        _kron_fill.serial = lambda *args: calls.append(args[-1]) or original(*args)
        try:
            assert np.array_equal(kronjit.kron(a, b), np.kron(a, b))
        finally:
            _kron_fill.serial = original
        assert calls == [1]
    finally:
        kronjit.set_num_threads(old)


def test_busy_parallel_lock_falls_back_to_serial():
    a = np.random.default_rng(0).standard_normal((256, 64))
    b = np.ones((4, 4))
    calls = []
    from kronjit.dense import _kron_fill
    original = _kron_fill.serial

    class Spy:
        def __call__(self, *args):
            calls.append(args[-1])
            return original(*args)

    _kron_fill.serial = Spy()
    try:
        with _runtime._parallel_lock:
            got = kronjit.kron(a, b)
    finally:
        _kron_fill.serial = original
    assert calls == [1]
    assert np.array_equal(got, np.kron(a, b))


def test_info_reports_runtime():
    report = kronjit.info()
    for key in ("kronjit", "numba", "numpy", "scipy", "llvmlite", "threading_layer",
                "num_threads", "max_threads", "cache"):
        assert key in report
    assert report["num_threads"] == kronjit.get_num_threads()
    assert report["numba"] == numba.__version__


@pytest.mark.subprocess
def test_cli_info_and_compare_quick_run(tmp_path):
    out = tmp_path / "r.json"
    proc = run_python(f"""
        import sys, json
        from kronjit.__main__ import main
        assert main(["info"]) == 0
        assert main(["compare", "--quick", "--repeat", "1", "--json", {str(out)!r},
                     "--plot", {str(tmp_path / "s.png")!r}]) == 0
        data = json.load(open({str(out)!r}))
        assert data["results"] and all(r["speedup"] > 0 for r in data["results"])
        assert {{r["family"] for r in data["results"]}} == {{"dense", "sparse", "structured", "vectrick", "operators", "programs"}}
        assert main(["compare", "--quick", "--repeat", "1", "--only", "structured",
                     "--plot", {str(tmp_path / "s.svg")!r}]) == 0
        print("OK")
    """)
    assert_child_ok(proc)
    assert "threading_layer" in proc.stdout and "speedup" in proc.stdout
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "s.svg").read_bytes()[:1000]
