"""The runtime policy: helper threads, fork, caches, thread control, info.

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
from helpers import assert_child_ok, run_python

def _tbb_installed():
    try:
        importlib.metadata.version("tbb")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


# kronjit does not use Numba's threading layer; each one selected must still work.
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
import os, sys, threading
import numpy as np, scipy.sparse as sp, kronjit
import numba
import scipy.linalg
from kronjit.study.cases import random_sparse
from kronjit.study.references import block_toeplitz_gather as gather_toeplitz, result_arrays
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
from numba.np.ufunc import parallel
assert not parallel._is_initialized  # Numba's pool was never started
print("OK", os.environ["NUMBA_THREADING_LAYER"], kronjit.info(start_threads=True)["helper_threads"])
"""


@pytest.mark.subprocess
@pytest.mark.parametrize("layer", LAYERS)
def test_eight_threads_fifty_calls_each(layer):
    proc = run_python(CONCURRENT, env=layer_env(layer))
    assert_child_ok(proc, marker=f"OK {layer} {_runtime.max_threads() - 1}")


FORK = """
import os
import numpy as np, kronjit, numba
from kronjit import _runtime
a, b = np.random.default_rng(1).standard_normal((128, 64)), np.ones((4, 4))
expected = np.kron(a, b)
assert np.array_equal(kronjit.kron(a, b), expected)
_runtime.start_helpers()  # (the call above starts them only if a core was free)
helpers = _runtime.helper_threads()
assert helpers == _runtime.max_threads() - 1, helpers
pid = os.fork()
if pid == 0:
    # the parent's helpers do not exist here: the child starts its own
    ok = _runtime.helper_threads() == 0
    _runtime.start_helpers()
    ok = ok and _runtime.helper_threads() == helpers and all(
        np.array_equal(kronjit.kron(a, b), expected) for _ in range(3))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
assert np.array_equal(kronjit.kron(a, b), expected)  # parent still parallel and right
assert _runtime.helper_threads() == helpers
print("OK")
"""


@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("layer", LAYERS)
def test_forked_child_starts_its_own_helpers(layer):
    proc = run_python(FORK.format(layer=layer), env=layer_env(layer))
    assert_child_ok(proc)


MULTIPROCESSING = """
import multiprocessing as mp
import sys
import numpy as np, kronjit
from kronjit.study.cases import random_sparse


def work(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((128, 64)), rng.standard_normal((4, 4))
    s = random_sparse(150, 5, seed)
    c = rng.standard_normal((32, 16, 16))
    k = kronjit.sparse.kron(s, s[:60, :60], format="csr")  # compared array by array, not formed
    return kronjit.kron(a, b), k.data, k.indices, k.indptr, kronjit.block_toeplitz(c)


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
def test_fork_before_any_parallel_kernel_lets_child_start_helpers():
    proc = run_python("""
        import os, numpy as np, kronjit
        from kronjit import _runtime
        pid = os.fork()
        if pid == 0:
            a = np.ones((128, 64))
            _runtime.start_helpers()
            ok = _runtime.helper_threads() == _runtime.max_threads() - 1
            ok = ok and np.array_equal(kronjit.kron(a, a[:4, :4]), np.kron(a, a[:4, :4]))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        print("OK")
    """)
    assert_child_ok(proc)


# --- caching -----------------------------------------------------------------------

#: A cached kernel quick to compile (block_diag's, 0.3 s; kron's takes 3 s).
CACHE_RUN = """
import numpy as np, scipy.linalg, kronjit
from kronjit import _runtime
a = np.arange(12.0).reshape(3, 4)
assert np.array_equal(kronjit.block_diag(a, a.T), scipy.linalg.block_diag(a, a.T))
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


#: sparse.kron's three kernels too: each process adds its entries to the same index
#: files as it compiles.
CACHE_RACE = CACHE_RUN + """
s = kronjit.sparse.kron(np.eye(3), a, format="csr")
assert np.array_equal(s.toarray(), np.kron(np.eye(3), a))
print("OK2")
"""


@pytest.mark.subprocess
def test_processes_build_one_cache_at_once(tmp_path):
    """Four interpreters (twice the cores CI has) compiling into the same empty cache
    at the same time all succeed, and a fifth then runs from the cache they wrote."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", CACHE_RACE], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "OK2" in out, err
    assert list(tmp_path.rglob("*.nbc"))
    assert_child_ok(run_python(CACHE_RACE, env={"NUMBA_CACHE_DIR": str(tmp_path)}), "OK2")


@pytest.mark.subprocess
def test_kernel_suites_pass_with_bounds_checking(bounds_checked_run):
    """The kernel test modules pass with NUMBA_BOUNDSCHECK=1 (on one thread, so
    that every part runs where its IndexError reaches the test), so an
    out-of-bounds index in a kernel raises instead of corrupting memory.  The
    run starts when the session is collected and goes on beside the others."""
    returncode, out, err = bounds_checked_run.wait()
    assert returncode == 0, out[-4000:] + err[-2000:]
    assert " passed" in out


def test_read_only_inputs_run_the_version_compiled_for_writable_ones():
    """Kernels only read their inputs, so a read-only input (a different Numba type)
    is handed to them as a writable alias: same memory, no second compilation."""
    from kronjit.dense import _KRON_FILL
    from kronjit.vectrick.kernels import small_group
    _kron_fill = _KRON_FILL.short  # the twin for kron(a, a)'s runs of 4
    a = np.arange(12.0).reshape(3, 4)
    factors, x = [a[:2, :2], a[1:, 1:]], np.arange(6.0)
    kronjit.kron(a, a), kronjit.kron_matvec(factors, x)
    counts = len(_kron_fill.compiled.signatures), len(small_group.compiled.signatures)
    frozen = [v.copy() for v in (a, x)]
    for v in frozen:
        v.flags.writeable = False
    assert np.array_equal(kronjit.kron(frozen[0], frozen[0]), np.kron(a, a))
    assert np.array_equal(kronjit.kron_matvec(factors, frozen[1]),
                          np.kron(*factors) @ x)
    assert (len(_kron_fill.compiled.signatures), len(small_group.compiled.signatures)) == counts
    alias = _runtime.kernel_input(frozen[0])
    assert alias.flags.writeable and alias.ctypes.data == frozen[0].ctypes.data
    assert not frozen[0].flags.writeable  # the caller's array keeps its flags


def test_kernels_compile_without_parallel_regions():
    """A part and its runner are plain nogil functions: no Numba parallel region,
    which would start Numba's pool; each has its own cache identity."""
    from kronjit.dense import _kron_fill
    for dispatcher in (_kron_fill.compiled, _kron_fill.runner):
        options = dispatcher.targetoptions
        assert options["nogil"] and not options.get("parallel")
    assert _kron_fill.runner.py_func.__qualname__ != _kron_fill.compiled.py_func.__qualname__
    # the runner's cache entry is keyed by its template too (Numba checks one file's stamp)
    assert _kron_fill.runner.py_func.__qualname__.endswith(_runtime._RUNNER_DIGEST)


# --- numpy's complex rounding -------------------------------------------------------

@pytest.mark.subprocess
def test_complex_rounding_follows_numpy_dispatch():
    proc = run_python("""
        import numpy as np, kronjit
        from kronjit import _arith
        z = np.array([1 + 2**-30 + 1j, 3.3 + 0.7j, -1e-3 + 7j])
        if np.lib.NumpyVersion(np.__version__) >= "2.4.0":
            # numpy 2.4's baseline loops do not fuse (earlier ones do): the plain path
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


def _spy_on_single_calls(kernel):
    """Record ``nparts`` of each call of ``kernel`` that runs whole on the calling thread."""
    calls, original = [], kernel.compiled

    def spy(*args):
        calls.append(args[-1])
        return original(*args)
    return calls, original, spy


@pytest.mark.skipif(_runtime.max_threads() < 2, reason="needs 2+ threads")
def test_thread_count_applies_to_calls_from_other_threads():
    import threading
    from kronjit.dense import _KRON_FILL
    _kron_fill = _KRON_FILL.short  # the twin for runs of 4
    a, b = np.ones((256, 64)), np.ones((4, 4))
    limit = _runtime.max_threads()
    old = kronjit.set_num_threads(limit)
    try:
        # Set from a non-main thread, obeyed by the main thread: one thread
        # means the whole output as one part on the calling thread.
        t = threading.Thread(target=kronjit.set_num_threads, args=(1,))
        t.start(), t.join()
        calls, original, _kron_fill.compiled = _spy_on_single_calls(_kron_fill)
        try:
            assert np.array_equal(kronjit.kron(a, b), np.kron(a, b))
        finally:
            _kron_fill.compiled = original
        assert calls == [1]
    finally:
        kronjit.set_num_threads(old)


def test_busy_helpers_leave_a_second_caller_on_its_own_thread():
    a = np.random.default_rng(0).standard_normal((256, 64))
    b = np.ones((4, 4))
    from kronjit.dense import _KRON_FILL
    _kron_fill = _KRON_FILL.short  # the twin for runs of 4
    calls, original, _kron_fill.compiled = _spy_on_single_calls(_kron_fill)
    try:
        with _runtime._parallel_lock:  # another thread's call has the helpers
            got = kronjit.kron(a, b)
    finally:
        _kron_fill.compiled = original
    assert calls == [1]
    assert np.array_equal(got, np.kron(a, b))


# --- helper threads: a late or failing helper -------------------------------------

@_runtime.kernel
def _mark_parts(out, fail_part, part, nparts):
    """out[i] = i + 1 for part ``part`` of ``nparts``; raise in part ``fail_part``."""
    if part == fail_part:
        raise ValueError("part failed")
    n = out.size
    for i in range(n * part // nparts, n * (part + 1) // nparts):
        out[i] = i + 1


def _parallel_size(mib=8):
    return mib << 17  # MiB of float64: above PARALLEL_MIN_BYTES, several parts per thread


@pytest.fixture
def cores_free(monkeypatch):
    """Every call offers its parts to the helpers, however busy the machine is."""
    monkeypatch.setattr(_runtime._helpers, "free_cores", lambda: _runtime.max_threads())


@pytest.mark.skipif(_runtime.max_threads() < 2, reason="needs 2+ threads")
def test_late_helper_costs_nothing_and_takes_no_part(monkeypatch, cores_free):
    """A helper that starts after the caller has taken every part (its core was
    busy) leaves the call complete and correct, and runs nothing afterwards."""
    import threading
    import time
    _runtime.start_helpers()
    held = threading.Event()
    taken = []
    original = _runtime._Job.run_parts

    def late(job, flag, seen, rounds):
        if threading.current_thread().name.startswith("kronjit-helper"):
            held.wait(5)  # held back until the caller has returned
            taken.append(int(job.tickets[0]))
        return original(job, flag, seen, rounds)

    # helpers that watch for 1 s after a call instead of 200 us: awake for the next
    monkeypatch.setattr(_runtime._helpers, "rounds", _runtime._helpers.rounds * 5000)
    warm, out = np.zeros(_parallel_size()), np.zeros(_parallel_size())
    # On a loaded machine the helper may only run once the call is over and then finds
    # no job at all: try again until it comes to one in time and is held inside it.
    for _ in range(20):
        held.clear()
        with kronjit.num_threads(2):
            _mark_parts(warm, -1, nbytes=warm.nbytes)  # compiles, wakes the helpers
            _mark_parts(warm, -1, nbytes=warm.nbytes)
            monkeypatch.setattr(_runtime._Job, "run_parts", late)
            out[:] = 0
            _mark_parts(out, -1, nbytes=out.nbytes)
            monkeypatch.setattr(_runtime._Job, "run_parts", original)
        assert np.array_equal(out, np.arange(1, out.size + 1))
        held.set()
        deadline = time.monotonic() + 1
        while not taken and time.monotonic() < deadline:
            time.sleep(0.01)
        if taken:
            break
    # every part was taken (and finished) before the helper looked
    assert taken and taken[0] >= _runtime.parts_for(out.nbytes, 2)


@pytest.mark.skipif(_runtime.max_threads() < 2, reason="needs 2+ threads")
def test_helpers_take_parts_and_sleep_between_calls(monkeypatch, cores_free):
    import threading
    import time
    ran = []
    original = _runtime._Job.run_parts

    def counted(job, flag, slot, rounds):
        if slot:
            before = int(job.tickets[0])
            result = original(job, flag, slot, rounds)
            ran.append(before < job.nparts)
            return result
        return original(job, flag, slot, rounds)

    out = np.zeros(_parallel_size(64))  # a call long enough for a woken helper to join
    with kronjit.num_threads(2):
        _mark_parts(out, -1, nbytes=out.nbytes)  # compiles and starts the helpers
        monkeypatch.setattr(_runtime._Job, "run_parts", counted)
        for _ in range(20):
            deadline = time.monotonic() + 2  # past HELPER_SPIN_SECONDS the helpers sleep
            while not all(h.sleeping for h in _runtime._helpers.helpers):
                assert time.monotonic() < deadline, "a helper never went to sleep"
                time.sleep(0.001)
            out[:] = 0
            _mark_parts(out, -1, nbytes=out.nbytes)  # wakes them; never waits for them
            assert np.array_equal(out, np.arange(1, out.size + 1))
    assert any(ran), "no woken helper ever found a part left"
    assert _runtime.helper_threads() == _runtime.max_threads() - 1
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("kronjit-helper"))


@pytest.mark.skipif(_runtime.max_threads() < 2, reason="needs 2+ threads")
@pytest.mark.parametrize("fail_part", [0, 5])
def test_a_failing_part_raises_in_the_caller(fail_part, cores_free):
    """The caller raises the part's error after every part that was taken has
    finished (none is left writing into the output), whichever thread ran it."""
    out = np.zeros(_parallel_size())
    with kronjit.num_threads(2):
        for _ in range(5):
            with pytest.raises(ValueError, match="part failed"):
                _mark_parts(out, fail_part, nbytes=out.nbytes)
            assert _runtime._helpers.job is None
        _mark_parts(out, -1, nbytes=out.nbytes)  # the helpers still serve
    assert np.array_equal(out, np.arange(1, out.size + 1))


def test_free_cores_counts_running_threads_but_watching_helpers(monkeypatch, tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_bytes(b"0.52 0.58 0.59 3/467 12345\n")
    fd = os.open(loadavg, os.O_RDONLY)
    try:
        monkeypatch.setattr(_runtime, "_LOADAVG", fd)
        monkeypatch.setattr(_runtime, "_CPU_COUNT", 4)
        helpers = _runtime._Helpers()
        assert helpers.free_cores() == 1  # 4 CPUs, 3 threads running
        helpers.helpers = [_runtime._Helper(), _runtime._Helper()]
        helpers.helpers[0].sleeping = True
        assert helpers.free_cores() == 2  # a watching helper's core is its own to use
        monkeypatch.setattr(_runtime, "_LOADAVG", None)  # no /proc/loadavg: every helper,
        assert helpers.free_cores() == _runtime.max_threads()  # started or not yet
    finally:
        os.close(fd)


@pytest.mark.skipif(_runtime.max_threads() < 2, reason="needs 2+ threads")
def test_no_free_core_means_the_caller_alone(monkeypatch):
    from kronjit.dense import _KRON_FILL
    _kron_fill = _KRON_FILL.short  # the twin for runs of 4
    a, b = np.random.default_rng(3).standard_normal((256, 64)), np.ones((4, 4))
    monkeypatch.setattr(_runtime._helpers, "free_cores", lambda: 0)
    calls, original, _kron_fill.compiled = _spy_on_single_calls(_kron_fill)
    try:
        with kronjit.num_threads(2):
            got = kronjit.kron(a, b)
    finally:
        _kron_fill.compiled = original
    assert calls == [1]
    assert np.array_equal(got, np.kron(a, b))


@pytest.mark.skipif(_runtime.max_threads() < 2, reason="needs 2+ threads")
@pytest.mark.parametrize("free_from", [2, None])
def test_long_call_looks_again_for_free_cores(monkeypatch, free_from):
    """A call of RECHECK_MIN_BYTES or more that finds no free core runs its parts one by
    one on the caller and looks again before each: the parts left when a core frees
    (here from the third look) go to the helpers; with none ever free, the caller runs
    them all.  Every element is written once, by its part."""
    looks, runs = [], []
    monkeypatch.setattr(_runtime, "RECHECK_MIN_BYTES", _parallel_size(1))

    def free_cores():
        looks.append(1)
        return int(free_from is not None and len(looks) > free_from)
    monkeypatch.setattr(_runtime._helpers, "free_cores", free_cores)
    original_run = _runtime._helpers.run

    def run(*args):
        runs.append((args[2], args[3], args[4] if len(args) > 4 else 0))
        return original_run(*args)
    monkeypatch.setattr(_runtime._helpers, "run", run)
    calls, original, _mark_parts.compiled = _spy_on_single_calls(_mark_parts)
    out = np.zeros(_parallel_size())
    try:
        with kronjit.num_threads(2):
            _mark_parts(out, -1, nbytes=out.nbytes)
    finally:
        _mark_parts.compiled = original
    nparts = _runtime.parts_for(out.nbytes, 2)
    assert np.array_equal(out, np.arange(1, out.size + 1))
    if free_from is None:
        assert runs == [] and calls == [nparts] * nparts and len(looks) == nparts - 1
    else:
        # looks: at the call, then before parts 1 and 2; part 2 on goes to the job
        assert len(looks) == free_from + 1
        assert runs == [(nparts, 1, free_from)] and calls == [nparts] * free_from


@pytest.mark.subprocess
def test_no_setting_leaks_into_the_process():
    """kronjit's parallel kernels change no environment variable, no BLAS or OpenMP
    thread count and no Numba setting, and start no Numba thread pool."""
    proc = run_python("""
        import os, numba, numpy as np, threadpoolctl
        env = dict(os.environ)
        import kronjit, scipy.linalg  # every library loaded before the first snapshot
        from numba.np.ufunc import parallel
        pools = {p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info()}
        a = np.ones((256, 64))
        kronjit.kron(a, a[:4, :4]); kronjit.kron_matvec([a[:64], a[:64]], np.ones(4096))
        a @ a.T
        spd = np.eye(80) + 0.1
        op = kronjit.KronProduct([spd, spd[:60, :60]])  # its LAPACK calls limit BLAS threads
        op.solve(np.ones(4800), shift=0.1), op.logdet(), op.inv()
        with kronjit.num_threads(1):
            kronjit.block_toeplitz(np.ones((32, 16, 16)))
        assert dict(os.environ) == env
        after = {p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info()}
        assert all(after[path] == n for path, n in pools.items()), (pools, after)
        assert any("openblas" in path for path in pools)
        assert not parallel._is_initialized
        assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # starts Numba's pool
        print("OK")
    """)
    assert_child_ok(proc)


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
        print("COMMIT", data["commit"])
        import importlib.util
        optional = {{"fastkron"}} if importlib.util.find_spec("pyfastkron") else set()
        assert {{r["family"] for r in data["results"]}} == {{
            "dense", "sparse", "structured", "vectrick", "operators", "programs", "family",
            "toeplitz"}} | optional
        assert main(["compare", "--quick", "--repeat", "1", "--only", "structured",
                     "--plot", {str(tmp_path / "s.svg")!r}]) == 0
        print("OK")
    """)
    assert_child_ok(proc)
    assert "threading_layer" in proc.stdout and "speedup" in proc.stdout
    # the results name the commit of the source run (this checkout), when git knows one
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    recorded = proc.stdout.split("COMMIT ")[1].split()[0]
    if head.returncode == 0:
        assert recorded.split("-")[0] == head.stdout.strip(), recorded
    else:
        assert recorded == "None"
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "s.svg").read_bytes()[:1000]


# --- Python parts (numpy's own loops on threads) and bound kernels --------------------

def _python_parts_log(length, nbytes, fail=None, delay=0.0):
    import threading
    import time
    ranges, threads = [], set()

    def fn(start, stop):
        threads.add(threading.current_thread().name)
        if delay:
            time.sleep(delay)  # without the GIL, as numpy's loops run
        if fail is not None and start <= fail < stop:
            raise ValueError("part failed")
        ranges.append((start, stop))
    return fn, ranges, threads


@pytest.mark.skipif(_runtime.max_threads() < 2, reason="needs 2+ threads")
def test_python_parts_cover_the_range_once_on_several_threads():
    fn, ranges, threads = _python_parts_log(100, 1 << 24, delay=0.01)
    with kronjit.num_threads(2):
        _runtime.run_python_parts(fn, 100, 1 << 24)
    covered = sorted(i for start, stop in ranges for i in range(start, stop))
    assert covered == list(range(100)) and len(ranges) > 2
    assert any(name.startswith("kronjit-python") for name in threads)


def test_python_parts_small_work_serial_or_one_thread_stay_on_the_caller():
    import threading
    me = threading.current_thread().name
    for length, nbytes, threads_allowed in ((100, 1000, 2), (100, 1 << 24, 1), (1, 1 << 24, 2)):
        fn, ranges, threads = _python_parts_log(length, nbytes)
        with kronjit.num_threads(threads_allowed):
            _runtime.run_python_parts(fn, length, nbytes)
        assert ranges == [(0, length)] and threads == {me}
    fn, ranges, threads = _python_parts_log(100, 1 << 24)
    with _runtime.serial_in_this_thread():
        _runtime.run_python_parts(fn, 100, 1 << 24)
    assert ranges == [(0, 100)] and threads == {me}
    fn, ranges, _ = _python_parts_log(0, 1 << 24)
    _runtime.run_python_parts(fn, 0, 1 << 24)
    assert ranges == []


@pytest.mark.skipif(_runtime.max_threads() < 2, reason="needs 2+ threads")
@pytest.mark.parametrize("fail", [0, 99])
def test_python_parts_raise_after_every_started_part_finished(fail):
    fn, ranges, _ = _python_parts_log(100, 1 << 24, fail=fail, delay=0.005)
    with kronjit.num_threads(2), pytest.raises(ValueError, match="part failed"):
        _runtime.run_python_parts(fn, 100, 1 << 24)
    done = len(ranges)
    import time
    time.sleep(0.05)
    assert len(ranges) == done, "a part ran after the call had returned"
    fn, ranges, _ = _python_parts_log(100, 1 << 24)  # the workers still serve
    with kronjit.num_threads(2):
        _runtime.run_python_parts(fn, 100, 1 << 24)
    assert sorted(i for s, e in ranges for i in range(s, e)) == list(range(100))


def test_bound_kernel_runs_its_own_scalar_and_leaves_the_template():
    from kronjit import dense
    plus = dense._kron_fill.bound("test_plus", combine=numba.njit(lambda x, y, fused: x + y))
    assert plus.__name__ == "_kron_fill_test_plus" and plus.py_func.__name__ == plus.__name__
    a, b = np.arange(4.0), np.arange(3.0)
    out = np.empty(12)
    _, plan = dense._plan(((4,), (3,)))
    plus(a, b, plan, dense._no_batches(2), 0, out, nbytes=out.nbytes)
    np.testing.assert_array_equal(out, np.add.outer(a, b).ravel())
    assert np.array_equal(kronjit.kron(a, b), np.kron(a, b))  # the template still multiplies


FORKED_PYTHON_PARTS = """
import os
import numpy as np, kronjit
a, b = np.random.default_rng(0).random((64, 64)), np.random.default_rng(1).random((64, 64))
want = kronjit.kron(a, b, op=np.hypot)  # the parent's workers exist now
pid = os.fork()
if pid == 0:
    ok = np.array_equal(kronjit.kron(a, b, op=np.hypot), want)
    os._exit(0 if ok else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
print("OK")
"""


@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_python_parts():
    assert_child_ok(run_python(FORKED_PYTHON_PARTS))


def test_cli_version_and_its_name(monkeypatch, capsys):
    from kronjit.__main__ import main
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"kronjit {kronjit.__version__}"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/kronjit"])  # the console script
    with pytest.raises(SystemExit):
        main([])
    assert capsys.readouterr().err.startswith("usage: kronjit ")
    monkeypatch.setattr(sys, "argv", ["/repo/kronjit/__main__.py"])  # python -m kronjit
    with pytest.raises(SystemExit):
        main([])
    assert capsys.readouterr().err.startswith("usage: python -m kronjit ")
