"""The vec-trick: kronjit.kron_matvec against a numpy tensordot shuffle,
pykronecker and pyfastkron (the last two from the ``bench`` extra; their
benchmarks are skipped where they are not installed).

Limits: BLAS GEMM throughput for large factors (``track_gemm_fraction``: a
square GEMM with the same flop count, over kronjit's time) and memory
bandwidth for small ones (``track_copy_fraction``: one parallel copy of ``x``,
``kronjit.study.limits.copy_pass``).
"""
import numpy as np

import kronjit
from kronjit.study.cases import VECTRICK_SHAPES, vectrick_label
from kronjit.study.limits import copy_pass, vectrick_flops
from kronjit.study.references import VECTRICK_REFERENCES, shuffle_matvec

from .common import side_by_side

CASES = {vectrick_label(shapes, k): (shapes, k) for shapes, k in VECTRICK_SHAPES}
IMPLS = ["kronjit", *VECTRICK_REFERENCES]


def make_problem(case, dtype="float64"):
    shapes, k = CASES[case]
    rng = np.random.default_rng(11)
    factors = [rng.standard_normal(s).astype(dtype) for s in shapes]
    n = int(np.prod([s[1] for s in shapes]))
    return factors, rng.standard_normal((n, k) if k > 1 else n).astype(dtype)


def make_call(impl, factors, x):
    if impl == "kronjit":
        return lambda: kronjit.kron_matvec(factors, x)
    try:
        return VECTRICK_REFERENCES[impl](factors, x)
    except ImportError:
        raise NotImplementedError(f"{impl} is not installed") from None
    except AssertionError:
        raise NotImplementedError(f"{impl} does not take these factors") from None


class KronMatvec:
    params = (list(CASES), IMPLS)
    param_names = ["case", "impl"]
    timeout = 300

    def setup(self, case, impl):
        factors, x = make_problem(case)
        self.fn = make_call(impl, factors, x)
        self.fn()  # warm-up: JIT compilation is never timed

    def time_matvec(self, case, impl):
        self.fn()

    def peakmem_matvec(self, case, impl):
        self.fn()


class KronMatvecDtypes:
    params = (["4^10", "16^5"], ["float32", "complex128"], ["kronjit", "numpy tensordot"])
    param_names = ["case", "dtype", "impl"]

    def setup(self, case, dtype, impl):
        shapes = {"4^10": [(4, 4)] * 10, "16^5": [(16, 16)] * 5}[case]
        rng = np.random.default_rng(12)
        factors = [rng.standard_normal(s).astype(dtype) for s in shapes]
        x = rng.standard_normal(int(np.prod([s[1] for s in shapes]))).astype(dtype)
        self.fn = make_call(impl, factors, x)
        self.fn()

    def time_matvec(self, case, dtype, impl):
        self.fn()


class KronMatvecRatios:
    """Speedups side by side (medians of ratios), and the fractions of the limits reached."""
    params = (list(CASES),)
    param_names = ["case"]
    timeout = 300

    def setup(self, case):
        self.factors, self.x = make_problem(case)
        self.kronjit = make_call("kronjit", self.factors, self.x)
        self.kronjit()
        shapes, k = CASES[case]
        side = max(2, round((vectrick_flops(shapes, k) / 2) ** (1 / 3)))
        rng = np.random.default_rng(13)
        self.a, self.b = rng.standard_normal((side, side)), rng.standard_normal((side, side))

    def track_speedup_vs_numpy(self, case):
        return side_by_side(lambda: shuffle_matvec(self.factors, self.x), self.kronjit)
    track_speedup_vs_numpy.unit = "x"

    def track_gemm_fraction(self, case):
        return side_by_side(lambda: self.a @ self.b, self.kronjit)
    track_gemm_fraction.unit = "fraction of BLAS GEMM throughput"

    def track_copy_fraction(self, case):
        return side_by_side(lambda: copy_pass(self.x), self.kronjit)
    track_copy_fraction.unit = "fraction of one memory pass"
