"""``python -m kronjit precompile``: fill the kernel cache ahead of time.

Kernels compile on first call, for the types they meet, and are kept in
Numba's on-disk cache.  Here every public family is called on small inputs
of the dtypes users meet, so that a container image or a cluster worker
built after this step starts with every one of those kernels compiled.

Families that share a kernel are compiled in the same process: Numba keeps
one index file per kernel, which two processes adding entries at once could
each overwrite with their own.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

#: The dtypes of the numeric families, and of the copying constructors (by
#: element size: their kernels compile once per word size).
NUMERIC = ["float64", "float32", "complex128", "complex64", "int64", "int32"]
FLOATING = ["float64", "float32", "complex128", "complex64"]
WORD_SIZES = ["bool", "int16", "float32", "float64", "complex128"]


def _values(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        return rng.integers(-3, 4, shape).astype(dtype)
    values = rng.standard_normal(shape)
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


# Each family is called on small inputs (run on the calling thread) and on inputs
# with outputs over the runtime's PARALLEL_MIN_BYTES, whose kernels run in parts
# through runners compiled on first use.

def _dense(dtype):
    from . import dense, operators, vectrick
    for scale in (1, 8):
        big_a, big_b = _values((4 * scale, 4 * scale), dtype), _values((2 * scale, 2 * scale), dtype)
        dense.kron(big_a, big_b)
        dense.kron(big_a, big_b[:, :4])  # runs of at most 4: the kernel's other twin
        dense.kron(big_a[:8, :8], big_b[:8, :8], big_a[:8, :8])
        dense.kron(big_a[0], big_b[0])
        dense.batch_kron(_values((8 * scale, 4, 4), dtype), _values((8 * scale, 4, 4), dtype))
        dense.face_split(_values((64 * scale, 16), dtype), _values((64 * scale, 16), dtype))
        dense.khatri_rao(_values((8 * scale, 16), dtype), _values((8 * scale, 16), dtype))
    small = [_values((4, 4), dtype, s) for s in range(3)]
    vectrick.kron_matvec(small, _values(64, dtype))
    vectrick.kron_matvec(small, _values((64, 3), dtype))
    eights = [_values((8, 8), dtype, s) for s in range(6)]
    vectrick.kron_matvec(eights, _values(8 ** 6, dtype))
    odd = [_values(shape, dtype, s) for s, shape in enumerate([(3, 5), (6, 2), (5, 7)])]
    for k in (1, 4096):  # rows not in fours: the fused kernel's general twin
        vectrick.kron_matvec(odd, _values((70, k) if k > 1 else 70, dtype))
    if dtype in FLOATING:
        spd = [s @ s.conj().T + 4 * np.eye(4, dtype=dtype) for s in small[:2]]
        product = operators.KronProduct(spd)
        product.solve(_values(16, dtype), shift=0.1)
        product.logdet(shift=0.1)


def _sparse(dtype):
    import scipy.sparse as sp
    from . import sparse
    for n in (4, 100):
        a = sp.csr_array(_values((n, n), dtype) * (_values((n, n), "float64") > 1.5))
        b = sp.csr_array(_values((n, n), dtype, 1) * (_values((n, n), "float64", 1) > 1.5))
        for fmt in ("csr", "csc", "coo", "bsr", None):
            sparse.kron(a, b, format=fmt)
        sparse.kronsum(a, b)
        sparse.kronsum(a, b, format="csr")
        sparse.face_split(a, sp.csr_array(_values((n, 2 * n), dtype)))
        sparse.khatri_rao(a.tocsc(), sp.csc_array(_values((2 * n, n), dtype)))


def _structured(dtype):
    from . import structured
    for m, p in ((3, 2), (64, 8), (8, 64)):
        c = _values((m, p, p), dtype)
        structured.block_toeplitz(c, _values((m + 1, p, p), dtype, 1))
        structured.block_toeplitz(c[:, 0, 0], c[:, 1, 1])
        structured.block_hankel(c)
        structured.block_circulant(c)
        structured.block_diag(*c)


def _toeplitz(dtype):
    from . import toeplitz
    for p in (1, 2):
        c = _values((5, p, p), dtype)
        c[0] += 10 * np.eye(p, dtype=dtype)
        for b in (_values(5 * p, dtype), _values((5 * p, 2), dtype)):
            toeplitz.solve_toeplitz(c, b)
            toeplitz.solve_toeplitz((c, _values((5, p, p), dtype, 1)), b)


#: ``{family: (warm-up call taking a dtype, dtypes)}``; families that share a
#: kernel are one entry (one process).
FAMILIES = {
    "dense": (_dense, NUMERIC),  # with the vec-trick and the operators (kron of eigenvalues)
    "sparse": (_sparse, NUMERIC),
    "structured": (_structured, WORD_SIZES),
    "toeplitz": (_toeplitz, ["float64", "complex128"]),
}


def _compile_family(family):
    """Run one family's warm-up calls in this process; ``(family, [(dtype, seconds)])``."""
    from ._runtime import compiling_runners
    call, dtypes = FAMILIES[family]
    times = []
    for dtype in dtypes:
        start = time.perf_counter()
        with compiling_runners():
            call(dtype)
        times.append((dtype, time.perf_counter() - start))
    return family, times


def precompile(families=None, jobs=None, echo=print):
    """Compile and cache the kernels of ``families`` (default: all) for the dtypes in
    ``FAMILIES``, in ``jobs`` processes (default: one per family, at most the CPU
    count).  Raises RuntimeError if there is no writable cache location."""
    from . import _runtime
    if not _runtime.cache_enabled():
        raise RuntimeError(
            f"no writable kernel cache location: {_runtime.cache_location()}. Set "
            "NUMBA_CACHE_DIR to a writable directory (python -m kronjit info shows where "
            "kronjit looks)")
    requested = os.environ.get("NUMBA_CACHE_DIR")
    if requested and not os.path.abspath(_runtime.cache_location()).startswith(
            os.path.abspath(requested)):
        # Numba falls back to the next location it can write: say so, fill nothing
        raise RuntimeError(
            f"NUMBA_CACHE_DIR={requested} is not a writable directory (Numba would cache "
            f"in {_runtime.cache_location()} instead); create it or point it elsewhere")
    families = list(FAMILIES) if not families else list(families)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"no family {', '.join(unknown)}; the families are "
                         f"{', '.join(FAMILIES)}")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(families)))
    echo(f"compiling {len(families)} families into {_runtime.cache_location()} "
         f"({jobs} process{'es' if jobs > 1 else ''})")
    start = time.perf_counter()
    done = 0

    def report(family, times):
        nonlocal done
        done += 1
        detail = ", ".join(f"{dtype} {seconds:.1f} s" for dtype, seconds in times)
        echo(f"[{done}/{len(families)}] {family}: {detail}")

    if jobs == 1:
        for family in families:
            report(*_compile_family(family))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for future in as_completed([pool.submit(_compile_family, f) for f in families]):
                report(*future.result())
    entries = _runtime.cache_contents()
    echo(f"done in {time.perf_counter() - start:.1f} s: {entries['kernels']} kernels, "
         f"{entries['compiled']} compiled versions in the cache")
