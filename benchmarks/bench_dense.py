"""Dense Kronecker product: kronjit.kron against np.kron (chained for 3+ factors).

Limit: write bandwidth, i.e. the time one parallel write pass
(``kronjit.study.limits.write_pass``) takes over an array of the output's size (a
fresh array for allocating calls, the same buffer for ``out=``).
"""
import numpy as np

import kronjit
from kronjit.study.cases import DENSE_SHAPES
from kronjit.study.limits import fresh_write_pass, write_pass
from kronjit.study.references import chained_kron

from .common import side_by_side

SHAPES = DENSE_SHAPES


def make_factors(case, dtype):
    rng = np.random.default_rng(1234)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES[case]]


IMPLS = {"kronjit": lambda fs: kronjit.kron(*fs), "numpy": chained_kron}


class Kron:
    params = (list(SHAPES), ["float64", "float32", "complex128"], list(IMPLS))
    param_names = ["shapes", "dtype", "impl"]
    timeout = 300

    def setup(self, case, dtype, impl):
        self.factors = make_factors(case, dtype)
        self.fn = IMPLS[impl]
        self.fn(self.factors)  # warm-up: JIT compilation is never timed

    def time_kron(self, case, dtype, impl):
        self.fn(self.factors)

    def peakmem_kron(self, case, dtype, impl):
        self.fn(self.factors)


class KronOut:
    """``out=`` into a reused buffer, against a write pass over the same buffer."""
    params = (list(SHAPES), ["kronjit", "write pass"])
    param_names = ["shapes", "impl"]

    def setup(self, case, impl):
        self.factors = make_factors(case, "float64")
        self.out = np.empty(chained_kron(self.factors).shape)
        kronjit.kron(*self.factors, out=self.out)
        write_pass(self.out)

    def time_kron_out(self, case, impl):
        if impl == "kronjit":
            kronjit.kron(*self.factors, out=self.out)
        else:
            write_pass(self.out)


class KronRatios:
    """Speedups measured side by side in one process (medians of ratios)."""
    params = (list(SHAPES),)
    param_names = ["shapes"]
    timeout = 300

    def setup(self, case):
        self.factors = make_factors(case, "float64")
        self.shape = chained_kron(self.factors).shape
        self.out = np.empty(self.shape)
        kronjit.kron(*self.factors)

    def track_speedup_vs_numpy(self, case):
        return side_by_side(lambda: chained_kron(self.factors),
                            lambda: kronjit.kron(*self.factors))
    track_speedup_vs_numpy.unit = "x"

    def track_fill_fraction_fresh(self, case):
        return side_by_side(lambda: fresh_write_pass(self.shape, np.float64),
                            lambda: kronjit.kron(*self.factors))
    track_fill_fraction_fresh.unit = "fraction of write bandwidth"

    def track_fill_fraction_out(self, case):
        return side_by_side(lambda: write_pass(self.out),
                            lambda: kronjit.kron(*self.factors, out=self.out))
    track_fill_fraction_out.unit = "fraction of write bandwidth"
