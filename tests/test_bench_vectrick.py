"""pytest-benchmark micro-benchmarks for kron_matvec (single checked calls in the
normal run; time them with ``python -m pytest tests/test_bench_vectrick.py
--benchmark-enable``).  The problems are the study's quick ones."""
import math

import numpy as np
import pytest

import kronjit
from kronjit.study.cases import VECTRICK_QUICK, vectrick_label
from kronjit.study.references import shuffle_matvec


@pytest.mark.parametrize("impl", ["kronjit", "numpy tensordot"])
@pytest.mark.parametrize("shapes,k", VECTRICK_QUICK, ids=[vectrick_label(*c) for c in VECTRICK_QUICK])
def test_kron_matvec(benchmark, shapes, k, impl):
    benchmark.group = f"kron_matvec {vectrick_label(shapes, k)}"
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal(s) for s in shapes]
    n = math.prod(s[1] for s in shapes)
    x = rng.standard_normal((n, k) if k > 1 else n)
    fn = kronjit.kron_matvec if impl == "kronjit" else shuffle_matvec
    fn(factors, x)
    y = benchmark(fn, factors, x)
    expected = shuffle_matvec(factors, x)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
