"""The comparison study: ``python -m kronjit compare``.

Each case times kronjit against its reference side by side: both are warmed
up (so JIT compilation is never timed), then run alternately in batches, each
batch after a short busy-wait (``settle``) so that no thread woken by the
previous batch competes with it, and the table reports medians over repeats of
each time and of each repeat's ratio.  The
limit column ("fill") times what bounds the kernel, as a fraction of
kronjit's time.  For constructors it is the machine's write bandwidth: the
time one write pass (``write_pass``, kronjit's threads, like its kernels)
takes over an array of the output's size (a fresh array for calls that
allocate, the same buffer for ``out=`` calls).  For the vec-trick it is BLAS
GEMM throughput (a square GEMM doing the same number of flops) where a factor
is large, and otherwise memory bandwidth (``copy_pass``: one parallel copy of
``x`` into a fresh array, a single read and write pass); the operators'
matmat likewise.  The Gaussian-process case (solve and log-determinant with
``K1 ⊗ K2 + σ²I``) has no such limit: its reference is the dense Cholesky
route, which the Kronecker route beats by changing the algorithm.
"""
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ._runtime import kernel
from .structured import gather_blocks

__all__ = ["Case", "cases", "run_case", "run", "add_arguments", "random_sparse", "shuffle_matvec",
           "vectrick_label", "vectrick_flops", "VECTRICK_REFERENCES", "VECTRICK_SHAPES",
           "result_arrays", "gather_blocks", "gather_toeplitz", "vectrick_limit", "gp_problem",
           "gp_dense", "gp_kronjit", "MATMAT_SHAPES", "traced_peak", "write_pass",
           "fresh_write_pass", "copy_pass", "settle", "SETTLE_S", "alternate", "side_by_side",
           "CaseSkipped"]


# --- the bandwidth limits: one pass over memory with kronjit's threads -------
# numpy's fill and copy run on one thread, which on most machines is short of
# the memory bandwidth that kronjit's parallel kernels reach.

@kernel
def _fill_bytes(dst, part, nparts):
    n = dst.size  # a slice, not an index loop: it compiles to memset
    dst[part * n // nparts:(part + 1) * n // nparts] = 1


@kernel
def _copy_bytes(src, dst, part, nparts):
    n = dst.size
    lo, hi = part * n // nparts, (part + 1) * n // nparts
    dst[lo:hi] = src[lo:hi]


def _raw_bytes(a):
    return a.reshape(-1).view(np.uint8)  # a must be C-contiguous


def write_pass(out):
    """Write every byte of the C-contiguous array ``out`` once (write bandwidth)."""
    _fill_bytes(_raw_bytes(out), nbytes=out.nbytes)
    return out


def fresh_write_pass(shape, dtype):
    """Allocate an array and write it once: the limit for calls that allocate."""
    return write_pass(np.empty(shape, dtype))


def copy_pass(x):
    """Copy ``x`` into a fresh array in one parallel pass (read plus write bandwidth)."""
    src = np.ascontiguousarray(x)
    out = np.empty_like(src)
    _copy_bytes(_raw_bytes(src), _raw_bytes(out), nbytes=2 * src.nbytes)
    return out


@dataclass
class Case:
    """One comparison: ``setup()`` returns (reference, kronjit, fill) callables."""
    family: str
    name: str
    reference: str
    setup: callable
    quick: bool = False  # part of the --quick set
    params: dict = field(default_factory=dict)
    busy_neighbour: bool = False  # timed while another process keeps one core busy

    def conditions(self):
        """The context the case is timed in: beside a busy process, or as it is."""
        return busy_neighbour() if self.busy_neighbour else contextlib.nullcontext()


def _chained_np_kron(factors):
    result = factors[0]
    for f in factors[1:]:
        result = np.kron(result, f)
    return result


def _dense_case(shapes, dtype="float64", use_out=False, quick=False):
    label = "⊗".join("x".join(map(str, s)) for s in shapes)
    name = f"{label} {dtype}" + (" out=" if use_out else "")

    def setup():
        from .dense import kron
        rng = np.random.default_rng(0)
        factors = [rng.standard_normal(s).astype(dtype) for s in shapes]
        expected = _chained_np_kron(factors)
        got = kron(*factors)
        if got.dtype != expected.dtype or not np.array_equal(got, expected):
            raise AssertionError(f"kronjit.kron disagrees with np.kron on {name}")
        if use_out:
            buf = np.empty_like(expected)
            return (lambda: _chained_np_kron(factors),
                    lambda: kron(*factors, out=buf),
                    lambda: write_pass(buf))
        return (lambda: _chained_np_kron(factors),
                lambda: kron(*factors),
                lambda: fresh_write_pass(expected.shape, expected.dtype))

    ref = "np.kron" if len(shapes) == 2 else "chained np.kron"
    return Case("dense", name, ref, setup, quick,
                {"shapes": [list(s) for s in shapes], "dtype": dtype, "out": use_out})


def random_sparse(n, percent, seed, dtype="float64"):
    """An n x n CSR array with ``percent`` % of its entries stored, at random (seeded)."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    nnz = round(n * n * percent / 100)
    flat = rng.choice(n * n, size=nnz, replace=False)
    return sp.csr_array((rng.standard_normal(nnz).astype(dtype), (flat // n, flat % n)),
                        shape=(n, n))


def result_arrays(result):
    """The arrays holding a result: the ndarray itself or a sparse object's index/data arrays."""
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, (tuple, list)):  # several results (a solve and a log-determinant)
        return [a for r in result if isinstance(r, (np.ndarray, tuple, list))
                for a in result_arrays(r)]
    names = ("data", "indices", "indptr") if hasattr(result, "indptr") else ("data",)
    return [getattr(result, n) for n in names] + list(getattr(result, "coords", ()))


def _same_sparse(got, expected):
    return (type(got) is type(expected) and got.format == expected.format
            and got.dtype == expected.dtype and got.shape == expected.shape
            and all(g.dtype == e.dtype and np.array_equal(g, e, equal_nan=True)
                    for g, e in zip(result_arrays(got), result_arrays(expected))))


def _sparse_case(a_spec, b_spec, format="csr", op="kron", quick=False):
    """kronjit.sparse.kron/kronsum against scipy's on random float64 factors.

    A spec is (n, percent) for an n x n random sparse factor, or (n, None) for
    a dense n x n block (scipy's BSR route).
    """
    def label(spec):
        n, percent = spec
        return f"{n}x{n} dense" if percent is None else f"{n}²({percent:g}%)"
    symbol = "⊗" if op == "kron" else "⊕"
    name = f"{label(a_spec)}{symbol}{label(b_spec)} {format or 'default'}"

    def setup():
        import scipy.sparse as sp
        from . import sparse
        factors = [np.random.default_rng(9).standard_normal((n, n)) if pct is None
                   else random_sparse(n, pct, seed)
                   for seed, (n, pct) in enumerate((a_spec, b_spec))]
        reference = lambda: getattr(sp, op)(*factors, format=format)  # noqa: E731
        candidate = lambda: getattr(sparse, op)(*factors, format=format)  # noqa: E731
        expected, got = reference(), candidate()
        if not _same_sparse(got, expected):
            raise AssertionError(f"kronjit.sparse.{op} disagrees with scipy on {name}")
        shapes = [(a.size, a.dtype) for a in result_arrays(expected)]
        del expected, got

        def fill():  # the result's arrays, freshly allocated and written once
            for size, dtype in shapes:
                fresh_write_pass(size, dtype)
        return reference, candidate, fill

    return Case("sparse", name, f"scipy.sparse.{op}", setup, quick,
                {"a": list(a_spec), "b": list(b_spec), "format": format, "op": op})


def gather_toeplitz(c, r):
    """Block Toeplitz by numpy gather: block (i, j) is c[i - j] or r[j - i]."""
    m, n = c.shape[0], r.shape[0]
    idx = (m - 1) - np.arange(m)[:, None] + np.arange(n)[None, :]
    return gather_blocks(np.concatenate((c[::-1], r[1:])), idx)


def _structured_case(m, p, use_out=False, quick=False):
    """kronjit.block_toeplitz of m x m blocks of p x p against numpy's gather (scipy for p = 1)."""
    scalar = p == 1
    name = (f"toeplitz {m}x{m}" if scalar else f"block_toeplitz {m}x{m} blocks of {p}x{p}") \
        + (" out=" if use_out else "")

    def setup():
        import scipy.linalg
        from .structured import block_toeplitz
        rng = np.random.default_rng(3)
        shape = (m,) if scalar else (m, p, p)
        c, r = rng.standard_normal(shape), rng.standard_normal(shape)
        reference = ((lambda: scipy.linalg.toeplitz(c, r)) if scalar
                     else (lambda: gather_toeplitz(c, r)))
        expected = reference()
        if not np.array_equal(block_toeplitz(c, r), expected):
            raise AssertionError(f"kronjit.block_toeplitz disagrees with the reference on {name}")
        if use_out:
            buf = np.empty_like(expected)
            return reference, lambda: block_toeplitz(c, r, out=buf), lambda: write_pass(buf)
        return (reference, lambda: block_toeplitz(c, r),
                lambda: fresh_write_pass(expected.shape, expected.dtype))

    reference = "scipy.linalg.toeplitz" if scalar else "numpy gather"
    return Case("structured", name, reference, setup, quick,
                {"m": m, "p": p, "out": use_out})


def _matvec_case(m, p, quick=False):
    """The FFT block Toeplitz matvec against a dense matvec with the matrix already built."""
    name = f"block_toeplitz_matvec {m}x{m} blocks of {p}x{p}"

    def setup():
        from .structured import block_toeplitz, block_toeplitz_matvec
        rng = np.random.default_rng(4)
        c, r = rng.standard_normal((m, p, p)), rng.standard_normal((m, p, p))
        x = rng.standard_normal(m * p)
        dense = block_toeplitz(c, r)
        expected = dense @ x
        got = block_toeplitz_matvec(c, r, x)
        if not np.allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max()):
            raise AssertionError(f"block_toeplitz_matvec disagrees with the dense product on {name}")
        return (lambda: dense @ x), (lambda: block_toeplitz_matvec(c, r, x)), None

    return Case("structured", name, "dense matvec (matrix built)", setup, quick,
                {"m": m, "p": p})


def shuffle_matvec(factors, x):
    """The numpy reference for ``kron(*factors) @ x``: one tensordot per factor.

    Each step contracts the leading axis and rotates the new axis to the end,
    so after the last factor the axes are back in order.
    """
    tail = x.shape[1:]
    t = x.reshape([f.shape[1] for f in factors] + list(tail))
    for f in factors:
        t = np.moveaxis(np.tensordot(f, t, axes=(1, 0)), 0, len(factors) - 1)
    return t.reshape((-1,) + tail)


def _pykronecker_call(factors, x):
    import pykronecker
    op = pykronecker.KroneckerProduct(factors)
    return lambda: op @ x


def _pyfastkron_call(factors, x):
    from pyfastkron import fastkronnumpy
    # pyfastkron computes x @ kron(F1, ..., Fd) for row vectors: pass the transposes
    rows = np.ascontiguousarray(x.reshape(x.shape[0], -1).T)
    transposed = [np.ascontiguousarray(f.T) for f in factors]
    return lambda: fastkronnumpy.gemkm(rows, transposed)


#: The vec-trick references: name -> (factors, x) -> a call computing kron(*factors) @ x
#: (pyfastkron's in its own row layout).  The optional ones raise ImportError when missing.
VECTRICK_REFERENCES = {"numpy tensordot": lambda fs, x: (lambda: shuffle_matvec(fs, x)),
                  "pykronecker": _pykronecker_call, "pyfastkron": _pyfastkron_call}


def vectrick_label(shapes, k):
    """A short name for a vec-trick problem: ``8^6 k=1``, ``30x50⊗40x20 k=1``."""
    label = "⊗".join(f"{m}x{n}" if m != n else str(n) for m, n in shapes)
    if len(set(shapes)) == 1 and len(shapes) > 2:
        m, n = shapes[0]
        label = (f"{m}x{n}" if m != n else str(n)) + f"^{len(shapes)}"
    return f"{label} k={k}"


def _vectrick_case(shapes, k=1, reference="numpy tensordot", quick=False):
    """kronjit.kron_matvec (float64) against one vec-trick reference."""
    name = vectrick_label(shapes, k)

    def setup():
        from .vectrick import kron_matvec
        rng = np.random.default_rng(5)
        factors = [rng.standard_normal(s) for s in shapes]
        n = math.prod(s[1] for s in shapes)
        x = rng.standard_normal((n, k) if k > 1 else n)
        try:
            ref_call = VECTRICK_REFERENCES[reference](factors, x)
        except ImportError:
            raise CaseSkipped(f"{reference} is not installed (python -m pip install '.[bench]')")
        except AssertionError:
            raise CaseSkipped(f"{reference} does not take these factors")
        expected = shuffle_matvec(factors, x)
        got = np.asarray(ref_call()).reshape(-1)
        scale = np.abs(expected).max()
        check = np.asarray(kron_matvec(factors, x))
        if not np.allclose(check, expected, rtol=1e-9, atol=1e-9 * scale):
            raise AssertionError(f"kron_matvec disagrees with the dense product on {name}")
        if not np.allclose(np.sort(got), np.sort(expected.reshape(-1)), rtol=1e-9,
                           atol=1e-9 * scale):
            raise AssertionError(f"{reference} disagrees with numpy on {name}")
        return ref_call, (lambda: kron_matvec(factors, x)), vectrick_limit(shapes, k, x)

    return Case("vectrick", name, reference, setup, quick,
                {"shapes": [list(s) for s in shapes], "k": k})


def vectrick_limit(shapes, k, x):
    """What bounds a vec-trick product: a square GEMM of the same flops where a
    factor is large (BLAS throughput), else one parallel copy of ``x`` (memory bandwidth)."""
    from .vectrick.plan import SMALL_FACTOR_MAX
    if max(max(s) for s in shapes) > SMALL_FACTOR_MAX:
        side = max(2, round((vectrick_flops(shapes, k) / 2) ** (1 / 3)))
        rng = np.random.default_rng(13)
        a, b = rng.standard_normal((side, side)), rng.standard_normal((side, side))
        return lambda: a @ b
    return lambda: copy_pass(x)


def vectrick_flops(shapes, k):
    """Flops of the vec-trick in kronjit's order (shrinking factors first)."""
    size = math.prod(n for _, n in shapes) * k
    flops = 0
    from .vectrick.plan import order_key
    for m, n in sorted(shapes, key=lambda s: order_key(*s)):
        flops += 2 * m * size
        size = size // n * m
    return flops


#: The vec-trick shapes of the study (issue 5): (factor shapes, k).
VECTRICK_SHAPES = [([(1000, 1000)] * 2, 1), ([(100, 100)] * 3, 1), ([(10, 10)] * 6, 1),
                   ([(4, 4)] * 10, 1), ([(2, 2)] * 20, 1), ([(8, 8)] * 6, 1),
                   ([(16, 16)] * 5, 1), ([(30, 50), (40, 20), (60, 70)], 1),
                   ([(32, 32)] * 4, 16)]


def gp_problem(n, seed=6):
    """A Gaussian process on an ``n x n`` grid with a separable squared-exponential
    kernel: ``(K1, K2, y, noise)``, the covariance being ``K1 ⊗ K2 + noise I``."""
    rng = np.random.default_rng(seed)
    t1, t2 = np.linspace(0, 1, n), np.linspace(0, 2, n)
    k1 = np.exp(-0.5 * np.subtract.outer(t1, t1) ** 2 / 0.2 ** 2)
    k2 = 1.5 * np.exp(-0.5 * np.subtract.outer(t2, t2) ** 2 / 0.3 ** 2)
    return k1, k2, rng.standard_normal(n * n), 0.1


def gp_dense(k1, k2, y, noise):
    """The dense route: form ``K1 ⊗ K2 + noise I``, Cholesky, solve and log-determinant."""
    import scipy.linalg
    cov = np.kron(k1, k2)
    cov[np.diag_indices_from(cov)] += noise
    chol = scipy.linalg.cho_factor(cov, overwrite_a=True, check_finite=False)
    return (scipy.linalg.cho_solve(chol, y, check_finite=False),
            2.0 * float(np.log(np.diag(chol[0])).sum()))


def gp_kronjit(k1, k2, y, noise):
    """The Kronecker route, from scratch (factor eigendecompositions included)."""
    from .operators import KronProduct
    cov = KronProduct([k1, k2])
    return cov.solve(y, shift=noise), cov.logdet(shift=noise)


def _gp_case(n, quick=False):
    name = f"GP solve+logdet {n}x{n} ⊗ {n}x{n} + σ²I"

    def setup():
        problem = gp_problem(n)
        want, got = gp_dense(*problem), gp_kronjit(*problem)
        if not (np.allclose(got[0], want[0], rtol=1e-6, atol=1e-6 * np.abs(want[0]).max())
                and math.isclose(got[1], want[1], rel_tol=1e-8, abs_tol=1e-8)):
            raise AssertionError(f"KronProduct.solve/logdet disagree with Cholesky on {name}")
        return (lambda: gp_dense(*problem)), (lambda: gp_kronjit(*problem)), None

    return Case("operators", name, "dense Cholesky", setup, quick, {"n": n})


def _matmat_case(shapes, k, quick=False):
    """KronProduct @ X with k right-hand sides against pykronecker's operator."""
    name = "matmat " + vectrick_label([(n, n) for n in shapes], k)

    def setup():
        from .operators import KronProduct
        rng = np.random.default_rng(7)
        factors = [rng.standard_normal((n, n)) for n in shapes]
        x = rng.standard_normal((math.prod(shapes), k))
        try:
            ref_call = _pykronecker_call(factors, x)
        except ImportError:
            raise CaseSkipped("pykronecker is not installed (python -m pip install '.[bench]')")
        op = KronProduct(factors)
        expected = shuffle_matvec(factors, x)
        for got in (op @ x, ref_call()):
            if not np.allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max()):
                raise AssertionError(f"matmat disagrees with numpy on {name}")
        return ref_call, (lambda: op @ x), vectrick_limit([(n, n) for n in shapes], k, x)

    return Case("operators", name, "pykronecker", setup, quick, {"shapes": shapes, "k": k})


#: The matmat shapes of the study (issue 6): factor sizes, with k = 32.
MATMAT_SHAPES = [[8] * 3, [16, 16], [32, 32], [8] * 4, [16] * 3, [64, 64], [8] * 5, [32] * 3,
                 [16] * 4, [100, 100]]


# --- programs: kronjit inside numpy/scipy code, as users run it -----------------------

def _one_thread(fn):
    """``fn`` run with kronjit limited to one thread (in the calling thread)."""
    from ._runtime import num_threads

    def call():
        with num_threads(1):
            return fn()
    return call


def _cg_program(k_matvec, n_iter=50, shift=0.5):
    """scipy's cg on ``K + shift I``, ``K @ x`` given by ``k_matvec``, ``n_iter`` iterations."""
    from scipy.sparse.linalg import LinearOperator, cg
    rng = np.random.default_rng(11)
    size = 64 * 64 * 16
    b = rng.standard_normal(size)
    op = LinearOperator((size, size), matvec=lambda x: k_matvec(x) + shift * x, dtype=float)
    return lambda: cg(op, b, rtol=1e-300, maxiter=n_iter)[0]


def _spd_factors(sizes, seed=12):
    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        a = rng.standard_normal((n, n))
        out.append(a @ a.T / n + np.eye(n))
    return out


def _alternating_program(matvec, rounds=5):
    """``rounds`` times: a 400x400 numpy matmul, then ``matvec`` of a 16^5 vec-trick product."""
    rng = np.random.default_rng(13)
    m = rng.standard_normal((400, 400))
    factors = [rng.standard_normal((16, 16)) for _ in range(5)]
    x = rng.standard_normal(16 ** 5)

    def run():
        for _ in range(rounds):
            m @ m
            y = matvec(factors, x)
        return y
    return run


def _rbf(points, scale):
    return np.exp(-0.5 * np.subtract.outer(points, points) ** 2 / scale ** 2)


def _gp_scan_program(solve_logdet, scales=8):
    """A GP hyperparameter scan: for each length scale, two RBF factors built with numpy
    (80 and 60 points), then ``solve_logdet(k1, k2, y, 0.1)``."""
    y = np.sin(np.arange(80 * 60.0))
    t1, t2 = np.linspace(0, 1, 80), np.linspace(0, 2, 60)

    def run():
        return [solve_logdet(_rbf(t1, s), _rbf(t2, s), y, 0.1)
                for s in np.linspace(0.2, 1.0, scales)]
    return run


def gp_numpy(k1, k2, y, noise):
    """The pure-numpy Kronecker GP step: eigendecompositions, two tensordot products for
    the solve, the log-determinant from the eigenvalues, and one product ``K y``."""
    w1, q1 = np.linalg.eigh(k1)
    w2, q2 = np.linalg.eigh(k2)
    y2 = y.reshape(k1.shape[0], k2.shape[0])
    lam = np.add.outer(w1, np.zeros_like(w2)) * w2 + noise
    alpha = q1 @ ((q1.T @ y2 @ q2) / lam) @ q2.T
    return alpha.ravel(), float(np.log(lam).sum()), (k1 @ y2 @ k2.T).ravel()


def gp_kronjit_step(k1, k2, y, noise):
    """The same step with ``KronProduct``: solve and log-determinant with a shift, a product."""
    from .operators import KronProduct
    cov = KronProduct([k1, k2])
    return cov.solve(y, shift=noise), cov.logdet(shift=noise), cov @ y


def _program_case(name, reference, make, quick=False, busy=False):
    """A whole program, timed run against run: ``make()`` gives (reference, kronjit)."""
    def setup():
        ref, new = make()
        return ref, new, None
    return Case("programs", name, reference, setup, quick, busy_neighbour=busy)


def _pykronecker_operator(factors):
    try:
        import pykronecker
    except ImportError:
        raise CaseSkipped("pykronecker is not installed (python -m pip install '.[bench]')")
    return pykronecker.KroneckerProduct(factors)


def _program_cases():
    from .dense import kron
    from .operators import KronProduct
    from .structured import block_toeplitz
    from .vectrick import kron_matvec

    def cg_against(peer):
        factors = _spd_factors([64, 64, 16])
        op = KronProduct(factors)
        ours = _cg_program(lambda x: op @ x)
        if peer == "one thread":
            return _one_thread(ours), ours
        other = _pykronecker_operator(factors)
        return _cg_program(lambda x: other @ x), ours

    def alternating(peer):
        ours = _alternating_program(kron_matvec)
        return (_one_thread(ours) if peer == "one thread"
                else _alternating_program(shuffle_matvec)), ours

    def gp_scan(peer):
        ours = _gp_scan_program(gp_kronjit_step)
        return (_one_thread(ours) if peer == "one thread" else _gp_scan_program(gp_numpy)), ours

    rng = np.random.default_rng(14)
    a32 = rng.standard_normal((32, 32))
    blocks = rng.standard_normal((32, 16, 16))
    f8 = [rng.standard_normal((8, 8)) for _ in range(6)]
    x8 = rng.standard_normal(8 ** 6)
    neighbour_calls = {
        "kron 32x32⊗32x32": lambda: kron(a32, a32),
        "block_toeplitz 32 blocks of 16x16": lambda: block_toeplitz(blocks),
        "kron_matvec 8^6": lambda: kron_matvec(f8, x8),
    }
    cases = []
    for peer, label in (("pykronecker", "pykronecker"), ("one thread", "kronjit, 1 thread")):
        cases.append(_program_case("cg 50 iterations, KronProduct(64,64,16) + 0.5 I", label,
                                   lambda peer=peer: cg_against(peer)))
    for peer, label in (("numpy", "numpy tensordot"), ("one thread", "kronjit, 1 thread")):
        cases.append(_program_case("5 x (400x400 matmul, kron_matvec 16^5)", label,
                                   lambda peer=peer: alternating(peer)))
    for peer, label in (("numpy", "numpy eigh + tensordot"), ("one thread", "kronjit, 1 thread")):
        cases.append(_program_case("GP scan: 8 length scales, 80x60 grid", label,
                                   lambda peer=peer: gp_scan(peer), quick=peer == "numpy"))
    cases.append(_program_case("busy neighbour: kron 32x32⊗32x32", "np.kron",
                               lambda: (lambda: np.kron(a32, a32),
                                        neighbour_calls["kron 32x32⊗32x32"]), busy=True))
    for name, call in neighbour_calls.items():
        cases.append(_program_case(f"busy neighbour: {name}", "kronjit, 1 thread",
                                   lambda call=call: (_one_thread(call), call), busy=True))
    return cases


@contextlib.contextmanager
def busy_neighbour(seconds=600):
    """Another process keeping one core busy (a CPU-bound Python loop) while the block runs.

    The loop stops by itself after ``seconds``, and is terminated when the block ends.
    """
    code = f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.05)  # let it reach its loop
        yield proc
    finally:
        proc.terminate()
        proc.wait()


class CaseSkipped(Exception):
    """A case that cannot run here (an optional reference is not installed)."""


def cases():
    """The default study, family by family."""
    return [
        _dense_case([(8, 8), (8, 8)], quick=True),
        _dense_case([(64, 64), (64, 64)]),
        _dense_case([(64, 64), (64, 64)], use_out=True),
        _dense_case([(1000, 1000), (4, 4)]),
        _dense_case([(1000, 1000), (4, 4)], use_out=True),
        _dense_case([(2000, 2000), (2, 2)]),
        _dense_case([(2000, 2000), (2, 2)], use_out=True),
        _dense_case([(16, 16)] * 3),
        _dense_case([(32, 32), (32, 32)], quick=True),
        _dense_case([(32, 32), (32, 32)], use_out=True, quick=True),
        _dense_case([(300, 300), (4, 4)], quick=True),
        _dense_case([(8, 8)] * 3, quick=True),
        _dense_case([(64, 64), (64, 64)], dtype="float32"),
        _dense_case([(64, 64), (64, 64)], dtype="complex128"),
        _dense_case([(32, 32), (32, 32)], dtype="complex128", quick=True),
        _sparse_case((300, 1), (300, 1), "csr", quick=True),
        _sparse_case((300, 1), (300, 1), "csc", quick=True),
        _sparse_case((300, 1), (300, 1), "coo", quick=True),
        _sparse_case((300, 1), (300, 1), "csr", op="kronsum", quick=True),
        _sparse_case((300, 1), (4, None), None, quick=True),
        *[_sparse_case(a, b, fmt) for a, b in [((1000, 1), (1000, 1)), ((10000, 0.1), (100, 10)),
                                               ((100, 10), (10000, 0.1))]
          for fmt in ("csr", "csc", "coo")],
        _sparse_case((1000, 1), (1000, 1), None, op="kronsum"),
        _sparse_case((1000, 1), (4, None), None),
        _structured_case(32, 16, quick=True),
        _structured_case(1024, 1, quick=True),
        _matvec_case(256, 4, quick=True),
        _structured_case(64, 64),
        _structured_case(64, 64, use_out=True),
        _structured_case(1000, 4),
        _structured_case(16, 256),
        _structured_case(16, 256, use_out=True),
        _structured_case(4096, 1),
        _structured_case(4096, 1, use_out=True),
        _matvec_case(2048, 4),
        _vectrick_case([(8, 8)] * 4, quick=True),
        _vectrick_case([(40, 40), (3, 5)], k=4, quick=True),
        *[_vectrick_case(shapes, k, ref) for ref in VECTRICK_REFERENCES
          for shapes, k in VECTRICK_SHAPES],
        _gp_case(20, quick=True),
        _gp_case(60),
        *[_matmat_case(shapes, 32, quick=shapes == [8] * 3) for shapes in MATMAT_SHAPES],
        *_program_cases(),
    ]


#: Seconds of busy-waiting before each timed batch (see ``settle``).
SETTLE_S = 0.12


def settle(seconds=None):
    """Busy-wait ``seconds`` (default ``SETTLE_S``) so that threads the previous
    batch woke go idle before the next one is timed.

    OpenBLAS's threads spin for about 0.1 s after each multithreaded call; a
    parallel kernel launched in that window waits for a core, a scheduler tick
    (4 ms here) per launch, which turned 30 us calls into 5 ms ones in this
    study.  Busy-waiting rather than sleeping: an idle process lets the
    machine's cores halt, and waking them costs milliseconds as well.
    """
    end = time.perf_counter() + (SETTLE_S if seconds is None else seconds)
    while time.perf_counter() < end:
        pass


def _time(fn, inner, settle_s=0.0):
    if settle_s:
        settle(settle_s)
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def alternate(fns, repeat=7, min_time=0.02, settle_s=0.0):
    """Time callables side by side, as a program runs them: warm each up, then
    ``repeat`` rounds that time every one of ``fns`` in turn, each in a batch
    of calls.  The batch holds enough calls for the slower of the first two to
    take ``min_time``, above timer noise.  With ``settle_s``, each batch starts
    after that long a busy-wait (``settle``: isolated figures, free of the
    threads the previous batch woke).  Returns a list of per-call times
    (seconds) per callable, and the batch size."""
    for fn in fns:  # warm-up: compilation, page cache
        fn()
    t_one = max(max(_time(fn, 1, settle_s) for fn in fns[:2]), 1e-7)
    inner = max(1, math.ceil(min_time / t_one))
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, fn_times in zip(fns, times):
            fn_times.append(_time(fn, inner, settle_s))
    return times, inner


def side_by_side(reference, candidate, repeat=7, min_time=0.02, settle_s=0.0):
    """Median over ``repeat`` rounds of reference time / candidate time (``alternate``)."""
    (ref_t, new_t), _ = alternate([reference, candidate], repeat, min_time, settle_s)
    return float(np.median([r / c for r, c in zip(ref_t, new_t)]))


def run_case(case, repeat=7, min_time=0.02, settle_s=0.0):
    """Time one case; return a dict of medians (seconds) and ratios."""
    reference, candidate, fill = case.setup()  # fill is None where no write limit applies
    with case.conditions():
        (ref_t, new_t, *fill_t), inner = alternate(
            [f for f in (reference, candidate, fill) if f], repeat, min_time, settle_s)
    fill_t = fill_t[0] if fill_t else []
    median = lambda xs: float(np.median(xs)) if xs else None  # noqa: E731
    return {
        "family": case.family, "case": case.name, "reference": case.reference,
        "params": case.params, "repeat": repeat, "inner": inner,
        "reference_s": median(ref_t), "kronjit_s": median(new_t), "fill_s": median(fill_t),
        "speedup": median([r / c for r, c in zip(ref_t, new_t)]),
        "fill_fraction": median([f / c for f, c in zip(fill_t, new_t)]),
        "settle_s": settle_s,
        **_memory(candidate),
    }


def traced_peak(fn):
    """``(fn(), peak bytes numpy and Python allocated during the call)``, by tracemalloc."""
    import tracemalloc
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _memory(candidate):
    """Bytes of one call's result, and the peak allocated during it (tracemalloc) over them."""
    result, peak = traced_peak(candidate)
    size = sum(a.nbytes for a in result_arrays(result))
    return {"result_bytes": size, "peak_memory_over_result": peak / size if size else float("nan")}


def _fmt_time(s):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def format_table(results):
    header = ("case", "reference", "ref time", "kronjit", "speedup", "fill", "of fill bw",
              "peak/result")
    rows = [header] + [(r["family"] + ": " + r["case"], r["reference"],
                        _fmt_time(r["reference_s"]), _fmt_time(r["kronjit_s"]),
                        f"{r['speedup']:.2f}x",
                        "-" if r["fill_s"] is None else _fmt_time(r["fill_s"]),
                        "-" if r["fill_s"] is None else f"{100 * r['fill_fraction']:.0f}%",
                        f"{r['peak_memory_over_result']:.2f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help="small cases and few repeats (under a minute)")
    parser.add_argument("--only", metavar="FAMILY", action="append",
                        help="run only this family (repeatable)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="repeats per case (default 7, 3 with --quick)")
    parser.add_argument("--settle", action="store_true",
                        help=f"busy-wait {SETTLE_S} s before each timed batch: isolated "
                             "figures, free of the threads the previous batch woke (by default "
                             "kronjit and its reference alternate as in a program)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw speedup against output size, one panel per family "
                             "(.png or .svg; needs matplotlib)")


def run(args):
    from ._info import info
    all_cases = cases()
    families = list(dict.fromkeys(c.family for c in all_cases))
    unknown = sorted(set(args.only or ()) - set(families))
    if unknown:
        print(f"--only: no family {', '.join(unknown)}; the families are "
              f"{', '.join(families)}", file=sys.stderr)
        return 2
    selected = [c for c in all_cases if (c.quick or not args.quick)
                and (not args.only or c.family in args.only)]
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 7)
    if repeat < 1:
        print(f"--repeat must be at least 1, got {repeat}", file=sys.stderr)
        return 2
    # every output is checked before the study runs, not after
    problems = [_plot_problem(args.plot)] if args.plot else []
    problems += [_unwritable(path, flag) for flag, path in (("--json", args.json),
                                                            ("--plot", args.plot)) if path]
    problem = next((p for p in problems if p), None)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    runtime = info(start_threads=True)
    print(f"kronjit {runtime['kronjit']}  numba {runtime['numba']}  numpy {runtime['numpy']}  "
          f"threads {runtime['num_threads']} ({runtime['threading_layer']})  "
          f"repeat {repeat}; medians of side-by-side ratios, "
          + (f"each batch after a {SETTLE_S} s busy-wait (--settle)" if args.settle
             else "kronjit and reference alternating as in a program"), flush=True)
    results, skipped = [], {}
    tty = sys.stderr.isatty()
    for i, case in enumerate(selected, 1):
        msg = f"[{i}/{len(selected)}] {case.family}: {case.name}"
        print(("\r" + msg.ljust(70)) if tty else msg, end="" if tty else "\n",
              file=sys.stderr, flush=True)
        try:
            results.append(run_case(case, repeat=repeat,
                                    settle_s=SETTLE_S if args.settle else 0.0))
        except CaseSkipped as why:
            skipped.setdefault(str(why), []).append(case.name)
    if tty:
        print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
    print(format_table(results))
    for why, names in skipped.items():
        print(f"skipped {len(names)} case(s): {why}: {', '.join(names)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runtime": runtime, "results": results}, f, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args.plot, title=f"kronjit {runtime['kronjit']}, "
             f"{runtime['num_threads']} threads ({runtime['threading_layer']})")
        print(f"wrote {args.plot}")
    return 0


def _plot_problem(path):
    """Why ``--plot path`` cannot be drawn (no matplotlib, a format it cannot write), or None."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return "--plot needs matplotlib (python -m pip install matplotlib)"
    formats = Figure().canvas.get_supported_filetypes()
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in formats:
        return (f"--plot {path}: the file name must end in a format matplotlib writes "
                f"({', '.join('.' + f for f in sorted(formats))})")
    return None


def _unwritable(path, flag):
    """Why ``path`` cannot be written (checked by opening it), or None."""
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        return f"{flag} {path}: cannot write there ({exc.strerror or exc})"
    if not existed:
        os.remove(path)
    return None


def plot(results, path=None, title=""):
    """Speedup over the reference against output size, one panel per family;
    written to ``path``, or returned as a matplotlib figure when ``path`` is None.

    The dashed line is 1x; an open marker is the speedup a call running at
    the case's limit would have (reference time / limit time: a write pass
    for constructors, one memory pass or a same-flop GEMM for the
    vec-trick), joined by a dotted line to kronjit's speedup.
    """
    import matplotlib
    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    families = list(dict.fromkeys(r["family"] for r in results))
    ncols = min(3, len(families))
    nrows = math.ceil(len(families) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 5.2 * nrows), squeeze=False)
    for ax in axes.flat[len(families):]:
        ax.set_visible(False)
    for ax, family in zip(axes.flat, families):
        rows = [r for r in results if r["family"] == family]
        size = [max(r["result_bytes"], 1) for r in rows]
        ax.scatter(size, [r["speedup"] for r in rows], color="C0", zorder=3,
                   label="kronjit speedup")
        limited = [(s, r["speedup"], r["reference_s"] / r["fill_s"])
                   for s, r in zip(size, rows) if r["fill_s"]]
        if limited:
            ax.scatter([s for s, _, _ in limited], [lim for _, _, lim in limited],
                       facecolors="none", edgecolors="C1", zorder=3, label="at the limit")
            for s, got, lim in limited:
                ax.plot([s, s], [got, lim], color="C1", linestyle=":", linewidth=1)
        for s, r in zip(size, rows):
            ax.annotate(r["case"], (s, r["speedup"]), fontsize=7, xytext=(4, -3),
                        textcoords="offset points")
        ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="1x (reference)")
        ax.set(xscale="log", yscale="log", title=family, xlabel="output size (bytes)",
               ylabel="speedup over reference (x)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    if path is None:
        return fig
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
