"""The study's cases, one list per family: ``python -m kronjit compare``, the
asv suite (``benchmarks/``) and the pytest-benchmark files take theirs from here.

A ``Case`` builds its inputs lazily (``setup()``), checks kronjit against the
reference once, and returns the callables to time: the reference, kronjit and
the limit (see ``limits``), or None where no limit applies.
"""
import contextlib
import functools
import importlib
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import limits, references
from .references import random_sparse

__all__ = ["Case", "CaseSkipped", "cases", "random_sparse", "busy_neighbour", "vectrick_label",
           "gp_problem", "gp_kronjit", "gp_kronjit_step", "rbf", "VECTRICK_SHAPES",
           "MATMAT_SHAPES", "DENSE_SHAPES", "DENSE_QUICK", "SPARSE_PAIRS", "SPARSE_QUICK",
           "SPARSE_FORMATS", "KRONSUM_PAIRS", "BLOCK_TOEPLITZ", "BLOCK_TOEPLITZ_QUICK",
           "TOEPLITZ_MATVEC", "TOEPLITZ_MATVEC_QUICK", "VECTRICK_QUICK", "GP_GRIDS",
           "family_inputs", "family_calls", "family_limit", "result_fill", "random_rows",
           "FAMILY_OUT", "FAMILY_QUICK", "FULL_ONLY", "TOEPLITZ_SOLVES", "TOEPLITZ_QUICK", "toeplitz_calls",
           "toeplitz_inputs", "toeplitz_limit", "levinson_flops", "FASTKRON_TABLE",
           "FASTKRON_DTYPES", "fastkron_flops", "fastkron_inputs", "fastkron_kronjit",
           "fastkron_calls", "fastkron_problem_inputs", "fastkron_limit"]


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
    full: bool = False  # run only by --full (see FULL_ONLY)

    def conditions(self):
        """The context the case is timed in: beside a busy process, or as it is."""
        return busy_neighbour() if self.busy_neighbour else contextlib.nullcontext()

class CaseSkipped(Exception):
    """A case that cannot run here (an optional reference is not installed)."""

#: The extra of pyproject.toml that installs each optional reference.
_EXTRAS = {"pyfastkron": "peers", "pykronecker": "bench", "tensorly": "bench"}

def _optional(name, call, *args):
    """``call(*args)``, which needs the optional reference ``name``; CaseSkipped saying
    how to install it where it is not installed."""
    try:
        return call(*args)
    except ImportError:
        raise CaseSkipped(f"{name} is not installed (python -m pip install "
                          f"'.[{_EXTRAS.get(name, 'bench')}]')") from None

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

def _dense_case(shapes, dtype="float64", use_out=False, quick=False):
    label = "⊗".join("x".join(map(str, s)) for s in shapes)
    name = f"{label} {dtype}" + (" out=" if use_out else "")

    def setup():
        from ..dense import kron
        rng = np.random.default_rng(0)
        factors = [rng.standard_normal(s).astype(dtype) for s in shapes]
        expected = references.chained_kron(factors)
        got = kron(*factors)
        if got.dtype != expected.dtype or not np.array_equal(got, expected):
            raise AssertionError(f"kronjit.kron disagrees with np.kron on {name}")
        if use_out:
            buf = np.empty_like(expected)
            return (lambda: references.chained_kron(factors),
                    lambda: kron(*factors, out=buf),
                    lambda: limits.write_pass(buf))
        return (lambda: references.chained_kron(factors),
                lambda: kron(*factors),
                lambda: limits.fresh_write_pass(expected.shape, expected.dtype))

    ref = "np.kron" if len(shapes) == 2 else "chained np.kron"
    return Case("dense", name, ref, setup, quick,
                {"shapes": [list(s) for s in shapes], "dtype": dtype, "out": use_out})

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
        from .. import sparse
        factors = [np.random.default_rng(9).standard_normal((n, n)) if pct is None
                   else random_sparse(n, pct, seed)
                   for seed, (n, pct) in enumerate((a_spec, b_spec))]
        reference = lambda: getattr(sp, op)(*factors, format=format)  # noqa: E731
        candidate = lambda: getattr(sparse, op)(*factors, format=format)  # noqa: E731
        expected, got = reference(), candidate()
        if not references.same_sparse(got, expected):
            raise AssertionError(f"kronjit.sparse.{op} disagrees with scipy on {name}")
        fill = result_fill(expected)
        del expected, got
        return reference, candidate, fill

    return Case("sparse", name, f"scipy.sparse.{op}", setup, quick,
                {"a": list(a_spec), "b": list(b_spec), "format": format, "op": op})

def _structured_case(m, p, use_out=False, quick=False):
    """kronjit.block_toeplitz of m x m blocks of p x p against numpy's gather (scipy for p = 1)."""
    scalar = p == 1
    name = (f"toeplitz {m}x{m}" if scalar else f"block_toeplitz {m}x{m} blocks of {p}x{p}") \
        + (" out=" if use_out else "")

    def setup():
        import scipy.linalg
        from ..structured import block_toeplitz
        rng = np.random.default_rng(3)
        shape = (m,) if scalar else (m, p, p)
        c, r = rng.standard_normal(shape), rng.standard_normal(shape)
        reference = ((lambda: scipy.linalg.toeplitz(c, r)) if scalar
                     else (lambda: references.block_toeplitz_gather(c, r)))
        expected = reference()
        if not np.array_equal(block_toeplitz(c, r), expected):
            raise AssertionError(f"kronjit.block_toeplitz disagrees with the reference on {name}")
        if use_out:
            buf = np.empty_like(expected)
            return reference, lambda: block_toeplitz(c, r, out=buf), lambda: limits.write_pass(buf)
        return (reference, lambda: block_toeplitz(c, r),
                lambda: limits.fresh_write_pass(expected.shape, expected.dtype))

    reference = "scipy.linalg.toeplitz" if scalar else "numpy gather"
    return Case("structured", name, reference, setup, quick,
                {"m": m, "p": p, "out": use_out})

def _matvec_case(m, p, quick=False):
    """The FFT block Toeplitz matvec against a dense matvec with the matrix already built."""
    name = f"block_toeplitz_matvec {m}x{m} blocks of {p}x{p}"

    def setup():
        from ..structured import block_toeplitz
        from ..toeplitz import block_toeplitz_matvec
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
        from ..vectrick import kron_matvec
        rng = np.random.default_rng(5)
        factors = [rng.standard_normal(s) for s in shapes]
        n = math.prod(s[1] for s in shapes)
        x = rng.standard_normal((n, k) if k > 1 else n)
        try:
            ref_call = _optional(reference, references.VECTRICK_REFERENCES[reference], factors, x)
        except AssertionError:
            raise CaseSkipped(f"{reference} does not take these factors") from None
        expected = references.shuffle_matvec(factors, x)
        got = np.asarray(ref_call()).reshape(-1)
        scale = np.abs(expected).max()
        check = np.asarray(kron_matvec(factors, x))
        if not np.allclose(check, expected, rtol=1e-9, atol=1e-9 * scale):
            raise AssertionError(f"kron_matvec disagrees with the dense product on {name}")
        if not np.allclose(np.sort(got), np.sort(expected.reshape(-1)), rtol=1e-9,
                           atol=1e-9 * scale):
            raise AssertionError(f"{reference} disagrees with numpy on {name}")
        return ref_call, (lambda: kron_matvec(factors, x)), limits.vectrick_limit(shapes, k, x)

    return Case("vectrick", name, reference, setup, quick,
                {"shapes": [list(s) for s in shapes], "k": k})

#: The vec-trick shapes of the study: (factor shapes, k).
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

def gp_kronjit(k1, k2, y, noise):
    """The Kronecker route, from scratch (factor eigendecompositions included)."""
    from ..operators import KronProduct
    cov = KronProduct([k1, k2])
    return cov.solve(y, shift=noise), cov.logdet(shift=noise)

def _gp_case(n, quick=False):
    name = f"GP solve+logdet {n}x{n} ⊗ {n}x{n} + σ²I"

    def setup():
        problem = gp_problem(n)
        want, got = references.gp_dense(*problem), gp_kronjit(*problem)
        if not (np.allclose(got[0], want[0], rtol=1e-6, atol=1e-6 * np.abs(want[0]).max())
                and math.isclose(got[1], want[1], rel_tol=1e-8, abs_tol=1e-8)):
            raise AssertionError(f"KronProduct.solve/logdet disagree with Cholesky on {name}")
        return (lambda: references.gp_dense(*problem)), (lambda: gp_kronjit(*problem)), None

    return Case("operators", name, "dense Cholesky", setup, quick, {"n": n})

def _matmat_case(shapes, k, quick=False):
    """KronProduct @ X with k right-hand sides against pykronecker's operator."""
    name = "matmat " + vectrick_label([(n, n) for n in shapes], k)

    def setup():
        from ..operators import KronProduct
        rng = np.random.default_rng(7)
        factors = [rng.standard_normal((n, n)) for n in shapes]
        x = rng.standard_normal((math.prod(shapes), k))
        ref_call = _optional("pykronecker", references.pykronecker_call, factors, x)
        op = KronProduct(factors)
        expected = references.shuffle_matvec(factors, x)
        for got in (op @ x, ref_call()):
            if not np.allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max()):
                raise AssertionError(f"matmat disagrees with numpy on {name}")
        return ref_call, (lambda: op @ x), limits.vectrick_limit([(n, n) for n in shapes], k, x)

    return Case("operators", name, "pykronecker", setup, quick, {"shapes": shapes, "k": k})

#: The matmat shapes of the study: factor sizes, with k = 32.
MATMAT_SHAPES = [[8] * 3, [16, 16], [32, 32], [8] * 4, [16] * 3, [64, 64], [8] * 5, [32] * 3,
                 [16] * 4, [100, 100]]

def _one_thread(fn):
    """``fn`` run with kronjit limited to one thread (in the calling thread)."""
    from .._runtime import num_threads

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

def rbf(points, scale):
    return np.exp(-0.5 * np.subtract.outer(points, points) ** 2 / scale ** 2)

def _gp_scan_program(solve_logdet, scales=8):
    """A GP hyperparameter scan: for each length scale, two RBF factors built with numpy
    (80 and 60 points), then ``solve_logdet(k1, k2, y, 0.1)``."""
    y = np.sin(np.arange(80 * 60.0))
    t1, t2 = np.linspace(0, 1, 80), np.linspace(0, 2, 60)

    def run():
        return [solve_logdet(rbf(t1, s), rbf(t2, s), y, 0.1)
                for s in np.linspace(0.2, 1.0, scales)]
    return run

def gp_kronjit_step(k1, k2, y, noise):
    """The same step with ``KronProduct``: solve and log-determinant with a shift, a product."""
    from ..operators import KronProduct
    cov = KronProduct([k1, k2])
    return cov.solve(y, shift=noise), cov.logdet(shift=noise), cov @ y

def _program_case(name, reference, make, quick=False, busy=False):
    """A whole program, timed run against run: ``make()`` gives (reference, kronjit)."""
    def setup():
        ref, new = make()
        return ref, new, None
    return Case("programs", name, reference, setup, quick, busy_neighbour=busy)

def _pykronecker_operator(factors):
    pykronecker = _optional("pykronecker", importlib.import_module, "pykronecker")
    return pykronecker.KroneckerProduct(factors)

def _program_cases():
    from ..dense import kron
    from ..operators import KronProduct
    from ..structured import block_toeplitz
    from ..vectrick import kron_matvec

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
                else _alternating_program(references.shuffle_matvec)), ours

    def gp_scan(peer):
        ours = _gp_scan_program(gp_kronjit_step)
        return (_one_thread(ours) if peer == "one thread" else _gp_scan_program(references.gp_numpy)), ours

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

#: Dense kron: the factor shapes of the study, asv and pytest-benchmark.
DENSE_SHAPES = {"⊗".join("x".join(map(str, s)) for s in shapes): shapes for shapes in [
    [(8, 8), (8, 8)], [(32, 32), (32, 32)], [(64, 64), (64, 64)], [(300, 300), (4, 4)],
    [(1000, 1000), (4, 4)], [(2000, 2000), (2, 2)], [(8, 8)] * 3, [(16, 16)] * 3]}
#: The small ones: ``compare --quick`` and the pytest-benchmark file.
DENSE_QUICK = ["8x8⊗8x8", "32x32⊗32x32", "300x300⊗4x4", "8x8⊗8x8⊗8x8"]
#: Timed with ``out=`` as well, and in other dtypes (quick: 32x32⊗32x32).
DENSE_OUT = ["32x32⊗32x32", "64x64⊗64x64", "1000x1000⊗4x4", "2000x2000⊗2x2"]
DENSE_DTYPES = {"float32": ["64x64⊗64x64"], "complex128": ["64x64⊗64x64", "32x32⊗32x32"]}

#: Sparse kron and kronsum: (n, percent stored) per square factor, (n, None) a dense block.
SPARSE_PAIRS = {"300²(1%)⊗300²(1%)": ((300, 1), (300, 1)),
                "1000²(1%)⊗1000²(1%)": ((1000, 1), (1000, 1)),
                "10000²(0.1%)⊗100²(10%)": ((10000, 0.1), (100, 10)),
                "100²(10%)⊗10000²(0.1%)": ((100, 10), (10000, 0.1))}
SPARSE_QUICK = ["300²(1%)⊗300²(1%)", "300²(1%)⊕300²(1%)", "300²(1%)⊗4x4 dense"]
SPARSE_FORMATS = ["csr", "csc", "coo"]
KRONSUM_PAIRS = {"300²(1%)⊕300²(1%)": ((300, 1), (300, 1)),
                 "1000²(1%)⊕1000²(1%)": ((1000, 1), (1000, 1))}
#: A sparse factor and a dense block: scipy's BSR route.
BSR_PAIRS = {"300²(1%)⊗4x4 dense": ((300, 1), (4, None)),
             "1000²(1%)⊗4x4 dense": ((1000, 1), (4, None))}

#: Block Toeplitz: m x m blocks of p x p (p = 1: scalar Toeplitz, against scipy).
BLOCK_TOEPLITZ = {"32x32 of 16x16": (32, 16), "64x64 of 64x64": (64, 64),
                  "1000x1000 of 4x4": (1000, 4), "16x16 of 256x256": (16, 256),
                  "1024x1024 scalar": (1024, 1), "4096x4096 scalar": (4096, 1)}
BLOCK_TOEPLITZ_QUICK = ["32x32 of 16x16", "1024x1024 scalar"]
BLOCK_TOEPLITZ_OUT = ["64x64 of 64x64", "16x16 of 256x256", "4096x4096 scalar"]
#: The FFT block Toeplitz matvec: m x m blocks of p x p.
TOEPLITZ_MATVEC = {"256x256 of 4x4": (256, 4), "2048x2048 of 4x4": (2048, 4)}
TOEPLITZ_MATVEC_QUICK = ["256x256 of 4x4"]

#: Small vec-trick problems: ``compare --quick`` and the pytest-benchmark file.
VECTRICK_QUICK = [([(8, 8)] * 4, 1), ([(40, 40), (3, 5)], 4), ([(4, 4)] * 3, 1)]

def _family_calls():
    """The Kronecker family's problems (``family_inputs`` builds their inputs): reference
    name, reference, and kronjit's call (taking ``out=`` where it has one)."""
    from .. import dense, sparse, tensors
    ops = {"add": np.add, "maximum": np.maximum, "hypot": np.hypot}
    calls = {
        f"kron op={name}": (f"numpy broadcast {name} (np.kron's own way)",
                            lambda a, b, op=op: references.kron_op_broadcast(a, b, op),
                            lambda a, b, out=None, op=op: dense.kron(a, b, op=op, out=out))
        for name, op in ops.items()}
    calls.update({
        "batch_kron": ("numpy broadcast multiply", references.batch_kron_broadcast,
                       dense.batch_kron),
        "khatri_rao": ("scipy.linalg.khatri_rao", _scipy_khatri_rao, dense.khatri_rao),
        "face_split": ("numpy broadcast multiply", references.face_split_broadcast,
                       dense.face_split),
        "sparse.face_split": ("numpy gather (repeat/arange)", references.sparse_face_split_numpy,
                              sparse.face_split),
    })
    for mode in ("all modes", 0, 1, 2):
        for ref_name, ref in (("tensorly", references.mttkrp_tensorly),
                              ("naive unfold @ khatri_rao", references.mttkrp_naive)):
            calls[f"mttkrp {mode} vs {ref_name}"] = (
                ref_name, lambda X, factors, ref=ref, mode=mode: _modes(ref, X, factors, mode),
                lambda X, factors, mode=mode: _modes(tensors.mttkrp, X, factors, mode))
    return calls

def _scipy_khatri_rao(a, b):
    import scipy.linalg
    return scipy.linalg.khatri_rao(a, b)

def _modes(fn, X, factors, mode):
    """``fn(X, factors, mode)``, or over every mode in turn (one CP-ALS sweep's MTTKRPs)."""
    if mode == "all modes":
        return [fn(X, factors, m) for m in range(X.ndim)]
    return fn(X, factors, mode)

def family_inputs(kind, scale=1):
    """The inputs of a family problem (``FAMILY_KINDS``), sizes divided by ``scale``."""
    rng = np.random.default_rng(21)
    def size(n):
        return max(2, n // scale)
    if kind.startswith("kron"):
        return [rng.standard_normal((size(64), 64)), rng.standard_normal((64, 64))]
    if kind == "batch_kron":
        return [rng.standard_normal((size(4096), 8, 8)) for _ in range(2)]
    if kind == "khatri_rao":
        return [rng.standard_normal((size(500), 64)), rng.standard_normal((size(400), 64))]
    if kind == "face_split":
        return [rng.standard_normal((size(20000), 32)) for _ in range(2)]
    if kind == "sparse.face_split":
        return [random_rows(size(100000), 1000, 1.0, 1), random_rows(size(100000), 500, 2.0, 2)]
    if kind.startswith("mttkrp"):
        n = size(300)
        return [rng.standard_normal((n, n, n)), [rng.standard_normal((n, 32)) for _ in range(3)]]
    raise ValueError(f"no family problem {kind!r}")

def random_rows(rows, cols, percent, seed):
    """A rows x cols CSR array with ``percent`` % of its entries stored, at random (seeded)."""
    import scipy.sparse as sp
    return sp.random_array((rows, cols), density=percent / 100, format="csr",
                           rng=np.random.default_rng(seed))

def result_fill(result):
    """The write limit of a call that allocates ``result``: fresh arrays of the size of
    each of its arrays (a sparse result's data and index arrays), written once."""
    shapes = [(a.shape, a.dtype) for a in references.result_arrays(result)]

    def fill():
        for shape, dtype in shapes:
            limits.fresh_write_pass(shape, dtype)
    return fill

def family_limit(kind, inputs, result):
    """What bounds a family problem: a square GEMM of the same flops for ``mttkrp``
    (``2 * X.size * R`` per mode), else writing the result once (``result_fill``)."""
    if kind.startswith("mttkrp"):
        X, factors = inputs
        modes = X.ndim if "all" in kind else 1
        return limits.same_flop_gemm(2 * X.size * factors[0].shape[1] * modes)
    return result_fill(result)

@functools.lru_cache(maxsize=1)
def family_calls():
    """``{kind: (reference name, reference, kronjit call)}`` of the Kronecker family."""
    return _family_calls()

#: The family's problems timed with ``out=`` too, and the quick ones.
FAMILY_OUT = ["kron op=add", "batch_kron", "khatri_rao", "face_split"]
FAMILY_QUICK = ["kron op=add", "khatri_rao", "face_split", "mttkrp all modes vs naive unfold @ "
                "khatri_rao"]

def _family_case(kind, use_out=False, quick=False):
    name = kind + (" out=" if use_out else "")
    reference_name = family_calls()[kind][0]

    def setup():
        _, reference, candidate = family_calls()[kind]
        inputs = family_inputs(kind)
        expected = _optional(reference_name, reference, *inputs)
        got = candidate(*inputs)
        if kind.startswith("mttkrp"):
            as_list = lambda r: r if isinstance(r, list) else [r]  # noqa: E731
            for g, e in zip(as_list(got), as_list(expected)):
                if not np.allclose(g, e, rtol=1e-9, atol=1e-9 * np.abs(e).max()):
                    raise AssertionError(f"kronjit.mttkrp disagrees with {reference_name}")
        elif kind.startswith("sparse"):
            if not references.same_sparse(got, expected) and not (
                    np.array_equal(got.indptr, expected.indptr)
                    and np.array_equal(got.indices, expected.indices)
                    and np.array_equal(got.data, expected.data)):
                raise AssertionError(f"kronjit.{kind} disagrees with {reference_name}")
        elif got.dtype != expected.dtype or not np.array_equal(got, expected):
            raise AssertionError(f"kronjit.{kind} disagrees with {reference_name}")
        if use_out:
            buf = np.empty_like(expected)
            return (lambda: reference(*inputs), lambda: candidate(*inputs, out=buf),
                    lambda: limits.write_pass(buf))
        # numpy's own loop on every core (hypot) is bound by its compute, not by writing
        limit = None if "hypot" in kind else family_limit(kind, inputs, got)
        del expected, got
        return lambda: reference(*inputs), lambda: candidate(*inputs), limit

    return Case("family", name, reference_name, setup, quick, {"kind": kind, "out": use_out})

# --- FastKron's own table -------------------------------------------------------------

#: FastKron's GeMKM benchmark ``M_PxQ^N``: ``Y = X @ kron(F1, ..., FN)``, ``X`` of shape
#: ``(M, P^N)``, N square factors ``P x P``: ``(M, P, N)``, in float32 and float64.
FASTKRON_TABLE = [(256, 8, 4), (256, 8, 5), (256, 16, 3), (256, 16, 4), (256, 32, 3),
                  (256, 64, 2), (128, 64, 3), (256, 128, 2)]
FASTKRON_DTYPES = ["float32", "float64"]
FASTKRON_QUICK = [(256, 16, 3)]

def fastkron_flops(m, p, n):
    """FastKron's flop count of ``M_PxP^N``: ``2 M N P^(N+1)``."""
    return 2 * m * n * p ** (n + 1)

def fastkron_inputs(m, p, n, dtype, seed=24):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, p ** n)).astype(dtype)
    return x, [rng.standard_normal((p, p)).astype(dtype) for _ in range(n)]

def fastkron_kronjit(x, factors):
    """``x @ kron(*factors)`` with kronjit: ``x``'s rows are the leading axis of one
    tensor, so the product is ``kron(I_M, *factors)^T vec(x)`` (the identity factor is
    skipped), with no transposed copy of ``x`` (``kron_matvec(factors, x.T,
    trans="T")`` makes one: twice the time on this table)."""
    from ..vectrick import kron_matvec
    m = x.shape[0]
    return kron_matvec([np.eye(m, dtype=x.dtype), *factors], x.reshape(-1),
                       trans="T").reshape(m, -1)

def _pyfastkron_gemkm(x, factors):
    from pyfastkron import fastkronnumpy
    return fastkronnumpy.gemkm(x, factors)

def _fastkron_kind(m, p, n, dtype):
    return f"{m}_{p}x{p}^{n} {dtype}"

@functools.lru_cache(maxsize=1)
def fastkron_calls():
    """``{kind: (reference name, reference, kronjit call)}`` of FastKron's table; the
    reference raises ImportError without pyfastkron."""
    return {_fastkron_kind(*shape, dtype): ("pyfastkron gemkm", _pyfastkron_gemkm,
                                            fastkron_kronjit)
            for shape in FASTKRON_TABLE for dtype in FASTKRON_DTYPES}

def _fastkron_shape(kind):
    size, dtype = kind.split()
    m, rest = size.split("_")
    p, n = rest.split("x")[1].split("^")
    return int(m), int(p), int(n), dtype

def fastkron_problem_inputs(kind, scale=1):
    """A table problem's ``(x, factors)``, ``M`` divided by ``scale``."""
    m, p, n, dtype = _fastkron_shape(kind)
    return list(fastkron_inputs(max(1, m // scale), p, n, dtype))

def fastkron_limit(kind, inputs, result=None):
    """A square GEMM of the problem's flops in its dtype (FastKron's count, for ``x``'s
    rows)."""
    x, factors = inputs
    _, p, n, dtype = _fastkron_shape(kind)
    return limits.same_flop_gemm(fastkron_flops(x.shape[0], p, n), dtype)

def _fastkron_case(kind, quick=False):
    reference_name = fastkron_calls()[kind][0]
    m, p, n, dtype = _fastkron_shape(kind)

    def setup():
        _, reference, candidate = fastkron_calls()[kind]
        inputs = fastkron_problem_inputs(kind)
        want = _optional("pyfastkron", reference, *inputs)
        got = candidate(*inputs)
        # float rounding scaled to the sums' length and size
        bound = 4 * np.finfo(dtype).eps * n * p * np.abs(want).max()
        if got.dtype != np.dtype(dtype) or not np.all(np.abs(got - want) <= bound):
            raise AssertionError(f"kronjit disagrees with pyfastkron on {kind}")
        return ((lambda: reference(*inputs)), (lambda: candidate(*inputs)),
                fastkron_limit(kind, inputs))

    return Case("fastkron", kind, reference_name, setup, quick,
                {"m": m, "p": p, "n": n, "dtype": dtype, "flops": fastkron_flops(m, p, n)})


# --- Toeplitz solves and products ------------------------------------------------------

def _stationary_blocks(m, p, seed):
    """The ``(m, p, p)`` blocks of a stationary process's autocovariance (exponential
    decay in the lag, a fixed positive definite mix of the outputs, a nugget): the
    first block column of a block Hermitian positive definite Toeplitz matrix."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((p, p))
    mix = g @ g.T / p + np.eye(p)
    c = np.exp(-np.arange(m) / (m / 16))[:, None, None] * mix
    c[0] += 0.1 * np.eye(p)
    return c[:, 0, 0].copy() if p == 1 else c

def levinson_flops(m, p, k):
    """Flops of the block Levinson recursion: predictors ``6 m^2 p^3``, right-hand sides
    ``2 m^2 p^2 k``."""
    return m * m * (6 * p ** 3 + 2 * p * p * k)

#: ``{kind: (m, p, k)}`` of the Toeplitz solves; the quick ones.
TOEPLITZ_SOLVES = {"solve_toeplitz n=4096": (4096, 1, 1),
                   "solve_toeplitz n=4096 k=32": (4096, 1, 32),
                   "solve_toeplitz 256 blocks of 16x16": (256, 16, 1),
                   "GP solve+logdet 1024 steps x 4 outputs": (1024, 4, 1)}
TOEPLITZ_QUICK = ["solve_toeplitz n=4096", "matmul_toeplitz n=2^17 k=4"]

def _gp_toeplitz(c, y):
    from ..toeplitz import BlockToeplitz
    cov = BlockToeplitz(c)
    return cov.solve(y), cov.logdet()

def _toeplitz_calls():
    import scipy.linalg
    from .. import toeplitz
    return {
        "solve_toeplitz n=4096": ("scipy.linalg.solve_toeplitz", scipy.linalg.solve_toeplitz,
                                  toeplitz.solve_toeplitz),
        "solve_toeplitz n=4096 k=32": ("scipy.linalg.solve_toeplitz",
                                       scipy.linalg.solve_toeplitz, toeplitz.solve_toeplitz),
        "solve_toeplitz 256 blocks of 16x16": (
            "scipy.linalg.solve (matrix built)",
            lambda c, b, dense: scipy.linalg.solve(dense, b),
            lambda c, b, dense: toeplitz.solve_toeplitz(c, b)),
        "GP solve+logdet 1024 steps x 4 outputs": (
            "dense Cholesky (matrix built)",
            lambda c, y, dense: references.cholesky_solve_logdet(dense.copy(), y),
            lambda c, y, dense: _gp_toeplitz(c, y)),
        "matmul_toeplitz n=2^17 k=4": ("scipy.linalg.matmul_toeplitz",
                                       scipy.linalg.matmul_toeplitz, toeplitz.matmul_toeplitz),
        "MultilevelToeplitz 512x512 grid matvec": (
            "scipy.signal.fftconvolve(t, X, 'valid')", _fftconvolve_valid,
            lambda t, X, op: (op @ X.ravel()).reshape(X.shape)),
    }

def _fftconvolve_valid(t, X, op):
    import scipy.signal
    return scipy.signal.fftconvolve(t, X, mode="valid")

@functools.lru_cache(maxsize=1)
def toeplitz_calls():
    """``{kind: (reference name, reference, kronjit call)}`` of the Toeplitz family."""
    return _toeplitz_calls()

def toeplitz_inputs(kind, scale=1):
    """The inputs of a Toeplitz problem, sizes divided by ``scale``."""
    rng = np.random.default_rng(22)
    if kind.startswith("Multilevel"):
        from ..toeplitz import MultilevelToeplitz
        n = max(3, 512 // scale)
        lags = np.meshgrid(np.arange(1 - n, n), np.arange(1 - n, n), indexing="ij")
        t = np.exp(-np.hypot(*lags) / (n / 8))  # a non-separable stationary kernel
        op = MultilevelToeplitz(t)
        op @ np.zeros(op.shape[1])  # the kernel's transform, made once per operator
        return [t, rng.standard_normal((n, n)), op]
    if kind.startswith("matmul"):
        n = max(2, (1 << 17) // scale)
        return [(rng.standard_normal(n), rng.standard_normal(n)), rng.standard_normal((n, 4))]
    m, p, k = TOEPLITZ_SOLVES[kind]
    m = max(2, m // scale)
    c = _stationary_blocks(m, p, 23)
    b = rng.standard_normal(m * p if k == 1 else (m * p, k))
    if p == 1:
        return [c, b]
    return [c, b, references.block_toeplitz_gather(c, np.conj(np.swapaxes(c, 1, 2)))]

def toeplitz_limit(kind, inputs):
    """A square GEMM of the solve's flops (``levinson_flops``); for the FFT products, one
    pass copying their right-hand sides."""
    if kind.startswith(("matmul", "Multilevel")):
        x = inputs[1]
        return lambda: limits.copy_pass(x)
    m, p, k = TOEPLITZ_SOLVES[kind]
    return limits.same_flop_gemm(levinson_flops(len(inputs[0]), p, k))

def _toeplitz_case(kind, quick=False):
    reference_name = toeplitz_calls()[kind][0]

    def setup():
        _, reference, candidate = toeplitz_calls()[kind]
        inputs = toeplitz_inputs(kind)
        want, got = reference(*inputs), candidate(*inputs)
        for g, w in zip(*(r if isinstance(r, tuple) else (r,) for r in (got, want))):
            if not np.allclose(g, w, rtol=1e-8, atol=1e-8 * np.max(np.abs(w))):
                raise AssertionError(f"kronjit's {kind} disagrees with {reference_name}")
        return (lambda: reference(*inputs)), (lambda: candidate(*inputs)), \
            toeplitz_limit(kind, inputs)

    return Case("toeplitz", kind, reference_name, setup, quick)


#: Gaussian-process grids (n x n points).
GP_GRIDS = [20, 60]


#: ``{family: name prefixes}`` of the cases only ``compare --full`` runs: big inputs
#: (the sparse products of 10^8 entries, 5-7 GB between them and their references) or
#: slow references (scipy's Toeplitz solves of 0.8 s a call), about five of the full
#: study's seven minutes.  The default study keeps every family at representative
#: sizes, within 2 minutes and 2 GB here.
FULL_ONLY = {
    "sparse": ["1000²(1%)⊗1000²(1%)", "10000²(0.1%)⊗100²(10%)", "100²(10%)⊗10000²(0.1%)"],
    "vectrick": ["32^4 k=16"],
    "toeplitz": ["solve_toeplitz n=4096 k=32", "solve_toeplitz 256 blocks of 16x16"],
    "family": ["kron op=maximum", "mttkrp 0 ", "mttkrp 1 ", "mttkrp 2 "],
}


def cases():
    """The full study, family by family (``Case.full`` marks what the default leaves out)."""
    every = _every_case()
    for case in every:
        case.full = case.name.startswith(tuple(FULL_ONLY.get(case.family, ())))
    return every


def _every_case():
    return [
        *[_dense_case(shapes, quick=label in DENSE_QUICK) for label, shapes in DENSE_SHAPES.items()],
        *[_dense_case(DENSE_SHAPES[label], use_out=True, quick=label in DENSE_QUICK)
          for label in DENSE_OUT],
        *[_dense_case(DENSE_SHAPES[label], dtype, quick=label in DENSE_QUICK)
          for dtype, labels in DENSE_DTYPES.items() for label in labels],
        *[_sparse_case(*pair, fmt, quick=label in SPARSE_QUICK)
          for label, pair in SPARSE_PAIRS.items() for fmt in SPARSE_FORMATS],
        # (the small sum built into CSR, the large one in scipy's default format)
        *[_sparse_case(*pair, "csr" if label in SPARSE_QUICK else None, op="kronsum",
                       quick=label in SPARSE_QUICK) for label, pair in KRONSUM_PAIRS.items()],
        *[_sparse_case(*pair, None, quick=label in SPARSE_QUICK)
          for label, pair in BSR_PAIRS.items()],
        *[_structured_case(m, p, quick=label in BLOCK_TOEPLITZ_QUICK)
          for label, (m, p) in BLOCK_TOEPLITZ.items()],
        *[_structured_case(*BLOCK_TOEPLITZ[label], use_out=True) for label in BLOCK_TOEPLITZ_OUT],
        *[_matvec_case(m, p, quick=label in TOEPLITZ_MATVEC_QUICK)
          for label, (m, p) in TOEPLITZ_MATVEC.items()],
        *[_vectrick_case(shapes, k, quick=True) for shapes, k in VECTRICK_QUICK],
        *[_vectrick_case(shapes, k, ref) for ref in references.VECTRICK_REFERENCES
          for shapes, k in VECTRICK_SHAPES],
        *[_gp_case(n, quick=n == GP_GRIDS[0]) for n in GP_GRIDS],
        *[_matmat_case(shapes, 32, quick=shapes == [8] * 3) for shapes in MATMAT_SHAPES],
        *_program_cases(),
        *[_family_case(kind, quick=kind in FAMILY_QUICK) for kind in family_calls()],
        *[_family_case(kind, use_out=True) for kind in FAMILY_OUT],
        *[_toeplitz_case(kind, quick=kind in TOEPLITZ_QUICK) for kind in toeplitz_calls()],
        *[_fastkron_case(kind, quick=_fastkron_shape(kind)[:3] in FASTKRON_QUICK)
          for kind in fastkron_calls()],
    ]
