"""pytest-benchmark micro-benchmarks for kron_matvec (single checked calls in the
normal run; time them with ``python -m pytest tests/test_bench_vectrick.py
--benchmark-enable``)."""
import numpy as np
import pytest

import kronjit
from kronjit.compare import shuffle_matvec


@pytest.mark.parametrize("impl", ["kronjit", "numpy tensordot"])
@pytest.mark.parametrize("n,d,k", [(4, 8, 1), (8, 4, 1), (64, 2, 8)])
def test_kron_matvec(benchmark, n, d, k, impl):
    benchmark.group = f"kron_matvec {n}^{d} k={k}"
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal((n, n)) for _ in range(d)]
    x = rng.standard_normal((n ** d, k) if k > 1 else n ** d)
    fn = kronjit.kron_matvec if impl == "kronjit" else shuffle_matvec
    fn(factors, x)
    y = benchmark(fn, factors, x)
    expected = shuffle_matvec(factors, x)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
