"""pytest-benchmark micro-benchmarks of the Toeplitz solves and products
(``--benchmark-disable`` in the normal run makes each a single call, checked against
the reference).  Time them with ``python -m pytest tests/test_bench_toeplitz.py
--benchmark-enable``.  The problems are the study's (``toeplitz_calls``), a tenth of
their size."""
import numpy as np
import pytest

from helpers import benchmark_problem
from kronjit.study.cases import toeplitz_calls, toeplitz_inputs


@pytest.mark.parametrize("impl", ["kronjit", "reference"])
@pytest.mark.parametrize("kind", list(toeplitz_calls()))
def test_toeplitz(benchmark, kind, impl):
    result, expected = benchmark_problem(benchmark, toeplitz_calls, toeplitz_inputs, kind, impl)
    for got, want in zip(*(r if isinstance(r, tuple) else (r,) for r in (result, expected))):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8 * np.max(np.abs(want)))
