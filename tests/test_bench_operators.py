"""pytest-benchmark micro-benchmarks for the operators (single checked calls in
the normal run; time them with ``python -m pytest tests/test_bench_operators.py
--benchmark-enable``)."""
import math

import numpy as np
import pytest

from kronjit import KronProduct
from kronjit.study.cases import GP_GRIDS, MATMAT_SHAPES, gp_kronjit, gp_problem
from kronjit.study.references import gp_dense, shuffle_matvec


@pytest.mark.parametrize("impl", ["kronjit", "dense Cholesky"])
def test_gp_solve_logdet(benchmark, impl):
    benchmark.group = f"GP solve+logdet {GP_GRIDS[0]}x{GP_GRIDS[0]} grid"
    problem = gp_problem(GP_GRIDS[0])
    fn = gp_kronjit if impl == "kronjit" else gp_dense
    alpha, logdet = benchmark(fn, *problem)
    want_alpha, want_logdet = gp_dense(*problem)
    np.testing.assert_allclose(alpha, want_alpha, rtol=1e-7, atol=1e-7 * np.abs(want_alpha).max())
    assert logdet == pytest.approx(want_logdet, rel=1e-9)


@pytest.mark.parametrize("impl", ["kronjit", "numpy tensordot"])
def test_matmat(benchmark, impl):
    sizes = MATMAT_SHAPES[0]
    benchmark.group = f"matmat {sizes} k=32"
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal((n, n)) for n in sizes]
    x = rng.standard_normal((math.prod(sizes), 32))
    op = KronProduct(factors)
    fn = (lambda: op @ x) if impl == "kronjit" else (lambda: shuffle_matvec(factors, x))
    y = benchmark(fn)
    expected = shuffle_matvec(factors, x)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
