"""Sparse Kronecker product and sum: kronjit.sparse against scipy.sparse.

Limit: write bandwidth, i.e. the time one parallel write pass
(``kronjit.study.limits.fresh_write_pass``) takes on fresh arrays the size of the
result's data and index arrays; and memory: the peak
allocated during a build (tracemalloc) over the bytes of the result.
"""
import tracemalloc

import numpy as np
import scipy.sparse as sp

import kronjit.sparse
from kronjit.study.cases import BSR_PAIRS, KRONSUM_PAIRS, SPARSE_FORMATS, SPARSE_PAIRS, random_sparse
from kronjit.study.limits import fresh_write_pass
from kronjit.study.references import result_arrays

from . import common
from .common import side_by_side

CASES = SPARSE_PAIRS
SUM_CASES = KRONSUM_PAIRS
IMPLS = {"kronjit": kronjit.sparse, "scipy": sp}


def factors(specs, dtype="float64"):
    """The factors of a case: (n, percent) a random sparse n x n, (n, None) a dense block."""
    return [np.random.default_rng(seed).standard_normal((n, n)).astype(dtype) if pct is None
            else random_sparse(common.scaled(n), pct, seed, dtype)
            for seed, (n, pct) in enumerate(specs)]


class SparseKron:
    params = (list(CASES), SPARSE_FORMATS, list(IMPLS))
    param_names = ["case", "format", "impl"]
    timeout = 600

    def setup(self, case, fmt, impl):
        self.factors = factors(CASES[case])
        self.kron = IMPLS[impl].kron
        self.kron(*self.factors, format=fmt)  # warm-up: JIT compilation is never timed

    def time_kron(self, case, fmt, impl):
        self.kron(*self.factors, format=fmt)

    def peakmem_kron(self, case, fmt, impl):
        self.kron(*self.factors, format=fmt)


class SparseKronDtypes:
    """The CSR build across dtypes (complex products round as numpy's do)."""
    params = (["float32", "complex128", "int64", "bool"], list(IMPLS))
    param_names = ["dtype", "impl"]

    def setup(self, dtype, impl):
        self.factors = factors(CASES["300²(1%)⊗300²(1%)"], dtype)
        self.kron = IMPLS[impl].kron
        self.kron(*self.factors, format="csr")

    def time_kron_csr(self, dtype, impl):
        self.kron(*self.factors, format="csr")


class SparseKronBSR:
    """scipy's default route for a dense second factor: one scaled block per entry of A."""
    params = (list(BSR_PAIRS), list(IMPLS))
    param_names = ["case", "impl"]

    def setup(self, case, impl):
        self.a, self.b = factors(BSR_PAIRS[case])
        self.kron = IMPLS[impl].kron
        self.kron(self.a, self.b)

    def time_kron_bsr(self, case, impl):
        self.kron(self.a, self.b)


class SparseKronsum:
    params = (list(SUM_CASES), list(IMPLS))
    param_names = ["case", "impl"]
    timeout = 300

    def setup(self, case, impl):
        self.factors = factors(SUM_CASES[case])
        self.kronsum = IMPLS[impl].kronsum
        self.kronsum(*self.factors)

    def time_kronsum(self, case, impl):
        self.kronsum(*self.factors)

    def peakmem_kronsum(self, case, impl):
        self.kronsum(*self.factors)


class SparseRatios:
    """Speedups over scipy measured side by side, the fill fraction, and peak memory."""
    params = (list(CASES), SPARSE_FORMATS)
    param_names = ["case", "format"]
    timeout = 600

    def setup(self, case, fmt):
        self.factors = factors(CASES[case])
        result = kronjit.sparse.kron(*self.factors, format=fmt)
        self.result_shapes = [(a.size, a.dtype) for a in result_arrays(result)]
        self.result_bytes = sum(a.nbytes for a in result_arrays(result))

    def _kronjit(self, fmt):
        return kronjit.sparse.kron(*self.factors, format=fmt)

    def track_speedup_vs_scipy(self, case, fmt):
        return side_by_side(lambda: sp.kron(*self.factors, format=fmt),
                            lambda: self._kronjit(fmt))
    track_speedup_vs_scipy.unit = "x"

    def track_fill_fraction(self, case, fmt):
        def fill():
            for size, dtype in self.result_shapes:
                fresh_write_pass(size, dtype)
        return side_by_side(fill, lambda: self._kronjit(fmt))
    track_fill_fraction.unit = "fraction of write bandwidth"

    def track_peak_memory_over_result(self, case, fmt):
        tracemalloc.start()
        try:
            self._kronjit(fmt)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak / self.result_bytes
    track_peak_memory_over_result.unit = "peak bytes / result bytes"


class SparseKronsumRatios:
    params = (list(SUM_CASES),)
    param_names = ["case"]

    def setup(self, case):
        self.factors = factors(SUM_CASES[case])
        kronjit.sparse.kronsum(*self.factors)

    def track_speedup_vs_scipy(self, case):
        return side_by_side(lambda: sp.kronsum(*self.factors),
                            lambda: kronjit.sparse.kronsum(*self.factors))
    track_speedup_vs_scipy.unit = "x"
