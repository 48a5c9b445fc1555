"""Lazy Kronecker operators: the Gaussian-process solve and log-determinant
with ``K1 ⊗ K2 + σ²I`` against the dense Cholesky route, and ``KronProduct``
matmat with 32 right-hand sides against pykronecker (``bench`` extra; skipped
where it is not installed).

The GP route computes the factors' eigendecompositions each time (a fresh
operator per call), so the figures include them.  Matmat's limit is the
vec-trick's: a same-flop GEMM for large factors, one memory pass for small.
"""
import numpy as np

from kronjit import KronProduct
from kronjit.study.cases import GP_GRIDS, MATMAT_SHAPES, gp_kronjit, gp_problem, vectrick_label
from kronjit.study.limits import vectrick_limit
from kronjit.study.references import VECTRICK_REFERENCES, gp_dense

from . import common
from .common import side_by_side

GP_IMPLS = {"kronjit": gp_kronjit, "dense Cholesky": gp_dense}


class GaussianProcess:
    """Solve and log-determinant on an n x n grid (N = n^2), both routes."""
    params = (GP_GRIDS, list(GP_IMPLS))
    param_names = ["n", "impl"]

    def setup(self, n, impl):
        self.problem = gp_problem(n)
        self.fn = GP_IMPLS[impl]
        self.fn(*self.problem)  # warm-up: JIT compilation is never timed

    def time_solve_logdet(self, n, impl):
        self.fn(*self.problem)

    def peakmem_solve_logdet(self, n, impl):
        self.fn(*self.problem)


class GaussianProcessLarge:
    """2000 x 2000 factors: N = 4e6, a covariance of 128 TB that the dense route
    could never form; only the Kronecker route runs."""
    params = ([2000],)
    param_names = ["n"]
    timeout = 300

    def setup(self, n):
        self.problem = gp_problem(common.scaled(n))
        gp_kronjit(*gp_problem(8))  # warm-up at a small size

    def time_solve_logdet(self, n):
        gp_kronjit(*self.problem)

    def peakmem_solve_logdet(self, n):
        gp_kronjit(*self.problem)


class GaussianProcessRatios:
    params = ([20, 60],)
    param_names = ["n"]

    def setup(self, n):
        self.problem = gp_problem(n)

    def track_speedup_vs_dense_cholesky(self, n):
        return side_by_side(lambda: gp_dense(*self.problem), lambda: gp_kronjit(*self.problem))
    track_speedup_vs_dense_cholesky.unit = "x"


MATMAT = {vectrick_label([(n, n) for n in shapes], 32): shapes for shapes in MATMAT_SHAPES}


def matmat_problem(case):
    shapes = MATMAT[case]
    rng = np.random.default_rng(14)
    factors = [rng.standard_normal((n, n)) for n in shapes]
    return factors, rng.standard_normal((int(np.prod(shapes)), 32))


def pykronecker_call(factors, x):
    try:
        return VECTRICK_REFERENCES["pykronecker"](factors, x)
    except ImportError:
        raise NotImplementedError("pykronecker is not installed") from None


class Matmat:
    params = (list(MATMAT), ["kronjit", "pykronecker"])
    param_names = ["case", "impl"]
    timeout = 300

    def setup(self, case, impl):
        factors, x = matmat_problem(case)
        if impl == "kronjit":
            op = KronProduct(factors)
            self.fn = lambda: op @ x
        else:
            self.fn = pykronecker_call(factors, x)
        self.fn()

    def time_matmat(self, case, impl):
        self.fn()


class MatmatRatios:
    """Side-by-side speedup over pykronecker, and the fraction of the vec-trick limit."""
    params = (list(MATMAT),)
    param_names = ["case"]
    timeout = 300

    def setup(self, case):
        factors, x = matmat_problem(case)
        op = KronProduct(factors)
        self.kronjit = lambda: op @ x
        self.kronjit()
        self.reference = pykronecker_call(factors, x)
        self.limit = vectrick_limit([f.shape for f in factors], 32, x)

    def track_speedup_vs_pykronecker(self, case):
        return side_by_side(self.reference, self.kronjit)
    track_speedup_vs_pykronecker.unit = "x"

    def track_limit_fraction(self, case):
        return side_by_side(self.limit, self.kronjit)
    track_limit_fraction.unit = "fraction of the GEMM or memory-pass limit"
