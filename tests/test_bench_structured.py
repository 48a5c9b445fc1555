"""pytest-benchmark micro-benchmarks for the block structured constructors and the
FFT matvec (single checked calls in the normal run; time them with
``python -m pytest tests/test_bench_structured.py --benchmark-enable``)."""
import numpy as np
import pytest
import scipy.linalg

import kronjit
from kronjit.compare import gather_toeplitz


@pytest.mark.parametrize("impl", ["kronjit", "numpy gather"])
@pytest.mark.parametrize("m,p", [(16, 8), (128, 2)])
def test_block_toeplitz(benchmark, m, p, impl):
    benchmark.group = f"block_toeplitz {m}x{m} blocks of {p}x{p}"
    rng = np.random.default_rng(0)
    c, r = rng.standard_normal((m, p, p)), rng.standard_normal((m, p, p))
    fn = kronjit.block_toeplitz if impl == "kronjit" else gather_toeplitz
    fn(c, r)
    assert np.array_equal(benchmark(fn, c, r), gather_toeplitz(c, r))


@pytest.mark.parametrize("impl", ["kronjit", "scipy"])
def test_toeplitz_scalar(benchmark, impl):
    benchmark.group = "toeplitz 512x512"
    rng = np.random.default_rng(1)
    c, r = rng.standard_normal(512), rng.standard_normal(512)
    fn = kronjit.block_toeplitz if impl == "kronjit" else scipy.linalg.toeplitz
    fn(c, r)
    assert np.array_equal(benchmark(fn, c, r), scipy.linalg.toeplitz(c, r))


@pytest.mark.parametrize("impl", ["kronjit fft", "dense built"])
def test_block_toeplitz_matvec(benchmark, impl):
    benchmark.group = "block_toeplitz_matvec 128x128 blocks of 4x4"
    rng = np.random.default_rng(2)
    c, r, x = rng.standard_normal((128, 4, 4)), rng.standard_normal((128, 4, 4)), \
        rng.standard_normal(512)
    dense = kronjit.block_toeplitz(c, r)
    if impl == "dense built":
        y = benchmark(lambda: dense @ x)
    else:
        kronjit.block_toeplitz_matvec(c, r, x)
        y = benchmark(kronjit.block_toeplitz_matvec, c, r, x)
    np.testing.assert_allclose(y, dense @ x, rtol=1e-10, atol=1e-10 * np.abs(dense @ x).max())
