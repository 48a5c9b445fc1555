"""Working memory of every kernel, measured with tracemalloc on representative sizes.

tracemalloc sees what numpy allocates (results, work buffers, casts); the
jitted kernels' own tile scratch (up to 1 MiB per thread) is not
numpy's and is covered by the slack.  Each bound is the one the function's
documentation gives.
"""
import math
import numpy as np
import pytest

import kronjit
from kronjit import _runtime
from kronjit.study.cases import random_sparse
from kronjit.study.timing import traced_peak

SLACK = 1 << 20  # bytes: Python objects, small index arrays


def peak_bytes(fn):
    # warm-up: compilation and cached work buffers are not the call's working memory; a
    # call large enough to run in parts compiles its runner too, even if no core was
    # free for a helper now (the traced call may find one)
    fn()
    with _runtime.compiling_runners():
        fn()
    result, peak = traced_peak(fn)
    return peak, result


rng = np.random.default_rng(0)


@pytest.mark.parametrize("use_out", [False, True])
def test_kron_allocates_only_its_result(use_out):
    a, b = rng.standard_normal((300, 200)), rng.standard_normal((8, 9))
    out = np.empty((2400, 1800)) if use_out else None
    peak, result = peak_bytes(lambda: kronjit.kron(a, b, out=out))
    assert peak <= (0 if use_out else result.nbytes) + SLACK


def test_kron_of_three_factors_has_no_intermediate():
    fs = [rng.standard_normal((20, 20)), rng.standard_normal((12, 12)), rng.standard_normal((9, 9))]
    peak, result = peak_bytes(lambda: kronjit.kron(*fs))
    assert peak <= result.nbytes + SLACK


@pytest.mark.parametrize("func", ["block_toeplitz", "block_hankel", "block_circulant"])
def test_structured_constructors_allocate_only_their_result(func):
    c = rng.standard_normal((64, 16, 16))
    peak, result = peak_bytes(lambda: getattr(kronjit, func)(c))
    assert peak <= result.nbytes + SLACK


def test_block_diag_allocates_its_result_and_one_packed_copy_of_the_blocks():
    blocks = [rng.standard_normal((100, 80)) for _ in range(20)]
    peak, result = peak_bytes(lambda: kronjit.block_diag(*blocks))
    assert peak <= result.nbytes + sum(b.nbytes for b in blocks) + SLACK


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_kron_stays_near_its_result(fmt):
    a, b = random_sparse(600, 2, 1), random_sparse(500, 2, 2)
    peak, result = peak_bytes(lambda: kronjit.sparse.kron(a, b, format=fmt))
    arrays = [result.data] + ([result.indices, result.indptr] if fmt != "coo"
                              else list(result.coords))
    assert peak <= 1.2 * sum(x.nbytes for x in arrays) + SLACK


@pytest.mark.parametrize("shapes,k", [([(16, 16)] * 5, 1), ([(40, 30), (5, 6), (50, 60)], 16),
                                      ([(8, 8)] * 6, 4)])
def test_kron_matvec_uses_at_most_two_work_buffers(shapes, k):
    """The result plus two buffers of the largest intermediate, as documented."""
    factors = [rng.standard_normal(s) for s in shapes]
    n = math.prod(s[1] for s in shapes)
    x = rng.standard_normal((n, k))
    sizes, largest = [s[1] for s in shapes], n
    for m_, _ in shapes:  # any application order stays within the largest prefix product
        sizes = sizes[1:] + [m_]
        largest = max(largest, math.prod(sizes))
    peak, result = peak_bytes(lambda: kronjit.kron_matvec(factors, x))
    assert peak <= result.nbytes + 2 * largest * k * 8 + SLACK


def test_kron_product_solve_with_shift_is_linear_in_n():
    """K + s I on a 300 x 200 grid: a few vectors of N = 60000, never an N x N matrix."""
    t1, t2 = np.linspace(0, 1, 300), np.linspace(0, 1, 200)
    k1, k2 = (np.exp(-np.subtract.outer(t, t) ** 2) for t in (t1, t2))
    y = rng.standard_normal(60000)
    op = kronjit.KronProduct([k1, k2])
    op.eigh()  # the factors' eigenvectors (n_i^2 each) are the operator's, not the solve's
    peak, _ = peak_bytes(lambda: op.solve(y, shift=0.1))
    assert peak <= 6 * y.nbytes + SLACK


def test_block_toeplitz_matvec_is_linear_in_blocks():
    m, p = 512, 4
    c, r = rng.standard_normal((m, p, p)), rng.standard_normal((m, p, p))
    x = rng.standard_normal(m * p)
    peak, _ = peak_bytes(lambda: kronjit.block_toeplitz_matvec(c, r, x))
    dense_bytes = (m * p) ** 2 * 8
    assert peak <= dense_bytes / 8  # O((m + n) p q), far from the matrix's size
    assert peak <= 64 * (2 * m) * p * p * 16 + SLACK


def test_too_large_outputs_raise_before_allocating():
    """Broadcast (zero-memory) inputs whose outputs cannot fit: MemoryError with the
    sizes, before anything is allocated (sparse: tests/test_sparse.py)."""
    huge = np.broadcast_to(1.0, (1 << 17, 1 << 17))
    with pytest.raises(MemoryError, match="bytes"):
        kronjit.kron(huge, np.ones((4, 4)))
    with pytest.raises(MemoryError, match="bytes"):
        kronjit.KronProduct([huge, np.ones((8, 8))]).todense()
    with pytest.raises(MemoryError, match="kron_matvec"):
        kronjit.kron_matvec([np.broadcast_to(1.0, (1 << 40, 1)), np.ones((4, 1))], np.ones(1))
    with pytest.raises(MemoryError, match="bytes"):
        kronjit.block_toeplitz(np.broadcast_to(1.0, (1 << 10, 1 << 8, 1 << 8)))
