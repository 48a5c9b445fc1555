"""Toeplitz solves and products: ``solve_toeplitz`` (scalar and block),
``BlockToeplitz``'s solve and log-determinant for a multi-output GP, and
``matmul_toeplitz``, against scipy's Levinson and FFT product and dense LAPACK on
the formed matrix (``kronjit.study.cases.toeplitz_calls``).

Limits: a square GEMM of the recursion's flops (``levinson_flops``); for the FFT
product, one pass copying its right-hand sides.
"""
from kronjit.study.cases import toeplitz_calls, toeplitz_inputs, toeplitz_limit

from . import common
from .common import side_by_side

KINDS = list(toeplitz_calls())


def _problem(kind, impl):
    """The inputs (sizes divided by ``common.SIZE_DIVISOR``) and the call to time."""
    _, reference, candidate = toeplitz_calls()[kind]
    inputs = toeplitz_inputs(kind, common.SIZE_DIVISOR)
    fn = candidate if impl == "kronjit" else reference
    fn(*inputs)  # warm-up: JIT compilation is never timed
    return inputs, fn


class Toeplitz:
    params = (KINDS, ["kronjit", "reference"])
    param_names = ["kind", "impl"]
    timeout = 300

    def setup(self, kind, impl):
        self.inputs, self.fn = _problem(kind, impl)

    def time_call(self, kind, impl):
        self.fn(*self.inputs)

    def peakmem_call(self, kind, impl):
        self.fn(*self.inputs)


class ToeplitzRatios:
    """Speedups against the reference and fractions of the limit, side by side."""
    params = (KINDS,)
    param_names = ["kind"]
    timeout = 300

    def setup(self, kind):
        self.inputs, self.reference = _problem(kind, "reference")
        _, self.candidate = _problem(kind, "kronjit")
        self.limit = toeplitz_limit(kind, self.inputs)

    def track_speedup(self, kind):
        return side_by_side(lambda: self.reference(*self.inputs),
                            lambda: self.candidate(*self.inputs))
    track_speedup.unit = "x"

    def track_fraction_of_limit(self, kind):
        return side_by_side(self.limit, lambda: self.candidate(*self.inputs))
    track_fraction_of_limit.unit = "fraction of the limit"
