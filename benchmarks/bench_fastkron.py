"""FastKron's own GeMKM table ``M_PxQ^N`` (``Y = X @ kron(F1, ..., FN)``), kronjit's
vec-trick against pyfastkron in float32 and float64
(``kronjit.study.cases.fastkron_calls``; skipped without pyfastkron, which the
``peers`` extra installs).

Limit: a square GEMM of the same flops (``2 M N P^(N+1)``) in the problem's dtype.
"""
from kronjit.study.cases import fastkron_calls, fastkron_limit, fastkron_problem_inputs

from . import common

FastKron, FastKronRatios, _ = common.call_benchmarks(
    __name__, "FastKron", fastkron_calls, fastkron_problem_inputs, fastkron_limit)
