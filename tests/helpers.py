"""Helpers shared by the tests: exact comparisons, sample inputs, child processes.

The references the results are compared with (``np.kron`` chained, the
textbook Kronecker sum, the numpy vec-trick) are the study's, in
``kronjit.study.references``.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np

from kronjit import _validation
from kronjit.study.references import chained_kron as dense_kron, dense, textbook_kronsum

__all__ = ["KERNEL_DTYPES", "assert_identical", "assert_sparse_identical", "sample", "bad_outs",
           "run_python", "assert_child_ok", "assert_product_close", "rand", "dense", "dense_kron",
           "textbook_kronsum", "BoundsCheckedRun"]


#: Every dtype the kernels handle, in numpy's type order.
KERNEL_DTYPES = sorted(_validation.KERNEL_DTYPES, key=lambda d: d.num)


def assert_identical(got, expected):
    """Same type, dtype, shape and bytes (so -0.0 and wraparound count).

    The one freedom: where both sides hold a NaN (per real component), its
    sign and payload may differ.  IEEE 754 leaves them unspecified and x86
    takes them from whichever operand the compiler put first, so numpy's own
    SIMD and scalar loops disagree on them.
    """
    assert type(got) is type(expected), (type(got), type(expected))
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert np.shape(got) == np.shape(expected), (np.shape(got), np.shape(expected))
    g, e = np.ascontiguousarray(got), np.ascontiguousarray(expected)
    if g.dtype.kind in "fc":
        g, e = g.reshape(-1).view(g.real.dtype).copy(), e.reshape(-1).view(e.real.dtype).copy()
        both_nan = np.isnan(g) & np.isnan(e)
        g[both_nan] = e[both_nan] = np.nan
    if g.tobytes() != e.tobytes():
        bad = np.flatnonzero(g.view(np.uint8).reshape(-1) != e.view(np.uint8).reshape(-1))
        raise AssertionError(f"values differ at byte offsets {bad[:10]}...\n"
                             f"got {g.ravel()[:8]}\nexpected {e.ravel()[:8]}")


def assert_sparse_identical(got, expected):
    """Same scipy object: type, format, shape, dtype, flags and every stored array, bytewise.

    Index arrays are compared with their dtypes, so the index-dtype rule, the
    entry order, explicit zeros and NaN payloads all count.
    """
    import scipy.sparse as sp
    assert type(got) is type(expected), (type(got), type(expected))
    if not sp.issparse(expected):  # format="array" / "dense"
        assert_identical(got, expected)
        return
    assert got.format == expected.format and got.shape == expected.shape
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    fmt = expected.format
    if fmt in ("csr", "csc", "bsr"):
        names = ["indptr", "indices", "data"]
        if fmt == "bsr":
            assert got.blocksize == expected.blocksize
        assert got.has_canonical_format == expected.has_canonical_format
    elif fmt == "coo":
        names = ["row", "col", "data"]
        assert got.has_canonical_format == expected.has_canonical_format
    elif fmt == "dia":
        names = ["offsets", "data"]
    elif fmt == "lil":
        assert got.rows.tolist() == expected.rows.tolist()
        assert [np.asarray(r, got.dtype).tobytes() for r in got.data] == \
            [np.asarray(r, expected.dtype).tobytes() for r in expected.data]
        return
    else:  # dok
        assert sorted(got.keys()) == sorted(expected.keys())
        keys = sorted(expected.keys())
        assert_identical(np.array([got[k] for k in keys], got.dtype),
                         np.array([expected[k] for k in keys], expected.dtype))
        return
    for name in names:
        g, e = getattr(got, name), getattr(expected, name)
        try:
            assert_identical(g, e)
        except AssertionError as err:
            raise AssertionError(f"{fmt} {name} differ: {err}") from None


def sample(shape, dtype, seed=0):
    """Values that exercise the dtype: signs, wraparound, NaN, inf, -0.0."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300, -1e-300])
    if dtype.kind == "f":
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)
        x[: min(n, len(specials))] = specials[: min(n, len(specials))]
        rng.shuffle(x)
        with np.errstate(over="ignore"):
            return x.astype(dtype).reshape(shape)
    z = np.empty(shape, dtype)
    with np.errstate(over="ignore"):
        z.real, z.imag = sample(shape, np.float64, seed), sample(shape, np.float64, seed + 1)
    return z


def bad_outs(shape, dtype=np.float64):
    """``{name: (make, exception, words in its message)}`` for wrong ``out=`` arrays."""
    rows, cols = shape

    def readonly():
        x = np.zeros(shape, dtype)
        x.flags.writeable = False
        return x
    other = np.float32 if np.dtype(dtype) != np.float32 else np.float64
    return {
        "list": (lambda: [[0.0] * cols] * rows, TypeError, "numpy.ndarray"),
        "shape": (lambda: np.zeros((rows, cols + 1), dtype), ValueError, "shape"),
        "transposed shape": (lambda: np.zeros((cols, rows), dtype), ValueError, "shape"),
        "dtype": (lambda: np.zeros(shape, other), TypeError, "dtype"),
        "fortran": (lambda: np.zeros(shape, dtype, order="F"), ValueError, "C-contiguous"),
        "strided": (lambda: np.zeros((rows, 2 * cols), dtype)[:, ::2], ValueError,
                    "C-contiguous"),
        "readonly": (readonly, ValueError, "read-only"),
    }


def run_python(code, env=None, timeout=300, cwd=None):
    """Run ``code`` in a fresh interpreter; return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


class BoundsCheckedRun:
    """The kernel test modules run again in a child pytest with NUMBA_BOUNDSCHECK=1.

    On one kernel thread, so that every part runs where its IndexError reaches
    the test.  Started when the session is collected (conftest.py), so that it
    runs beside the rest of the suite on the second core; the test that
    asserts on it waits for it.
    """
    MODULES = ("dense", "sparse", "structured", "toeplitz", "vectrick", "operators")

    def __init__(self):
        import tempfile
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.cache = tempfile.TemporaryDirectory(prefix="kronjit-boundscheck-")
        env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=self.cache.name,
                   KRONJIT_TEST_THREADS="1")
        files = [os.path.join("tests", f"test_{m}.py") for m in self.MODULES]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
             "-m", "not subprocess", *files], cwd=root, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait(self, timeout=1800):
        """``(returncode, stdout, stderr)`` once the run has finished."""
        out, err = self.proc.communicate(timeout=timeout)
        self.cache.cleanup()
        return self.proc.returncode, out, err

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self.cache.cleanup()


def assert_child_ok(proc, marker="OK"):
    assert proc.returncode == 0, (f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\n"
                                  f"stderr:\n{proc.stderr}")
    assert marker in proc.stdout, proc.stdout + proc.stderr


def assert_product_close(got, k, x, inner):
    """``got`` is ``k @ x`` to rounding: ``4 (inner + 4) eps (|k| @ |x|)`` entry by entry.

    ``inner`` is the number of terms the computation sums over (for the
    vec-trick, the factors' inner dimensions added up); eps is that of the
    result dtype (float32 at least).
    """
    want = k @ x
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    work = np.result_type(got.dtype, np.float32)
    eps = np.finfo(work).eps if work.kind in "fc" else 0
    bound = 4 * (inner + 4) * eps * (np.abs(k) @ np.abs(x)) + np.finfo(np.float64).tiny
    err = np.abs(got.astype(want.dtype) - want)
    assert np.all(err <= bound), f"max error {err.max()} against bound {bound.ravel()[np.argmax(err)]}"


def rand(rng, shape, dtype):
    """Random values of ``dtype``: normal floats (complex parts), small integers, coin flips."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0 if dtype.kind == "u" else -5, 6, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.standard_normal(shape).astype(dtype)


def benchmark_problem(benchmark, calls, inputs, kind, impl):
    """Time a study problem (``calls()[kind]``, inputs ``inputs(kind, scale=10)``) with
    pytest-benchmark, kronjit's call or the reference's, compiled first; returns
    ``(result, the reference's result)`` for the caller to compare."""
    benchmark.group = kind
    _, reference, candidate = calls()[kind]
    args = inputs(kind, scale=10)
    expected = reference(*args)
    fn = candidate if impl == "kronjit" else reference
    fn(*args)  # compile outside the timing
    return benchmark(fn, *args), expected
