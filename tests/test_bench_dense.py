"""pytest-benchmark micro-benchmarks (``--benchmark-disable`` in the normal run
makes each a single call, checked for correctness).  Time them with
``python -m pytest tests/test_bench_dense.py --benchmark-enable``."""
import numpy as np
import pytest

import kronjit

CASES = {"8x8,8x8": [(8, 8), (8, 8)], "32x32,32x32": [(32, 32), (32, 32)],
         "300x300,4x4": [(300, 300), (4, 4)], "8x8,8x8,8x8": [(8, 8)] * 3}


@pytest.mark.parametrize("impl", ["kronjit", "numpy"])
@pytest.mark.parametrize("case", list(CASES))
def test_kron(benchmark, case, impl):
    benchmark.group = f"kron {case}"
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal(s) for s in CASES[case]]
    expected = factors[0]
    for f in factors[1:]:
        expected = np.kron(expected, f)
    if impl == "kronjit":
        kronjit.kron(*factors)  # compile outside the timing
        result = benchmark(kronjit.kron, *factors)
    else:
        result = benchmark(lambda: np.kron(np.kron(*factors[:2]), factors[2])
                           if len(factors) == 3 else np.kron(*factors))
    assert np.array_equal(result, expected)
