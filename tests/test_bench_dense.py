"""pytest-benchmark micro-benchmarks (``--benchmark-disable`` in the normal run
makes each a single call, checked for correctness).  Time them with
``python -m pytest tests/test_bench_dense.py --benchmark-enable``.  The shapes
are the study's quick ones."""
import numpy as np
import pytest

import kronjit
from kronjit.study.cases import DENSE_QUICK, DENSE_SHAPES
from kronjit.study.references import chained_kron


@pytest.mark.parametrize("impl", ["kronjit", "numpy"])
@pytest.mark.parametrize("case", DENSE_QUICK)
def test_kron(benchmark, case, impl):
    benchmark.group = f"kron {case}"
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal(s) for s in DENSE_SHAPES[case]]
    expected = chained_kron(factors)
    if impl == "kronjit":
        kronjit.kron(*factors)  # compile outside the timing
        result = benchmark(kronjit.kron, *factors)
    else:
        result = benchmark(chained_kron, factors)
    assert np.array_equal(result, expected)
