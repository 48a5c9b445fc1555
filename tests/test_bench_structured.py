"""pytest-benchmark micro-benchmarks for the block structured constructors and the
FFT matvec (single checked calls in the normal run; time them with
``python -m pytest tests/test_bench_structured.py --benchmark-enable``).  The
sizes are the study's quick ones."""
import numpy as np
import pytest
import scipy.linalg

import kronjit
from kronjit.study.cases import (BLOCK_TOEPLITZ, BLOCK_TOEPLITZ_QUICK, TOEPLITZ_MATVEC,
                                 TOEPLITZ_MATVEC_QUICK)
from kronjit.study.references import block_toeplitz_gather


@pytest.mark.parametrize("impl", ["kronjit", "reference"])
@pytest.mark.parametrize("case", BLOCK_TOEPLITZ_QUICK)
def test_block_toeplitz(benchmark, case, impl):
    """Blocks against numpy's gather; scalars (p = 1) against scipy.linalg.toeplitz."""
    m, p = BLOCK_TOEPLITZ[case]
    benchmark.group = f"block_toeplitz {case}"
    rng = np.random.default_rng(0)
    shape = (m,) if p == 1 else (m, p, p)
    c, r = rng.standard_normal(shape), rng.standard_normal(shape)
    reference = scipy.linalg.toeplitz if p == 1 else block_toeplitz_gather
    fn = kronjit.block_toeplitz if impl == "kronjit" else reference
    fn(c, r)
    assert np.array_equal(benchmark(fn, c, r), reference(c, r))


@pytest.mark.parametrize("impl", ["kronjit fft", "dense built"])
@pytest.mark.parametrize("case", TOEPLITZ_MATVEC_QUICK)
def test_block_toeplitz_matvec(benchmark, case, impl):
    m, p = TOEPLITZ_MATVEC[case]
    benchmark.group = f"block_toeplitz_matvec {case}"
    rng = np.random.default_rng(2)
    c, r, x = (rng.standard_normal((m, p, p)), rng.standard_normal((m, p, p)),
               rng.standard_normal(m * p))
    dense = kronjit.block_toeplitz(c, r)
    if impl == "dense built":
        y = benchmark(lambda: dense @ x)
    else:
        kronjit.block_toeplitz_matvec(c, r, x)
        y = benchmark(kronjit.block_toeplitz_matvec, c, r, x)
    np.testing.assert_allclose(y, dense @ x, rtol=1e-10, atol=1e-10 * np.abs(dense @ x).max())
