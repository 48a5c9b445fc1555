"""pytest-benchmark micro-benchmarks for kronjit.sparse (single checked calls in the
normal run; time them with ``python -m pytest tests/test_bench_sparse.py
--benchmark-enable``)."""
import pytest
import scipy.sparse as sp

import kronjit.sparse
from kronjit.study.cases import KRONSUM_PAIRS, SPARSE_PAIRS, SPARSE_QUICK, random_sparse

CASES = {label: SPARSE_PAIRS[label] for label in SPARSE_QUICK if label in SPARSE_PAIRS}
(SUM_CASE,) = (label for label in SPARSE_QUICK if label in KRONSUM_PAIRS)
IMPLS = {"kronjit": kronjit.sparse, "scipy": sp}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("fmt", ["csr", "coo"])
@pytest.mark.parametrize("case", list(CASES))
def test_sparse_kron(benchmark, case, fmt, impl):
    benchmark.group = f"sparse.kron {case} {fmt}"
    a, b = (random_sparse(n, pct, seed) for seed, (n, pct) in enumerate(CASES[case]))
    kron = IMPLS[impl].kron
    kron(a, b, format=fmt)  # compile outside the timing
    result = benchmark(kron, a, b, format=fmt)
    assert result.format == fmt and (result != sp.kron(a, b, format=fmt)).nnz == 0


@pytest.mark.parametrize("impl", list(IMPLS))
def test_sparse_kronsum(benchmark, impl):
    benchmark.group = f"sparse.kronsum {SUM_CASE}"
    a, b = (random_sparse(n, pct, seed) for seed, (n, pct) in enumerate(KRONSUM_PAIRS[SUM_CASE]))
    kronsum = IMPLS[impl].kronsum
    kronsum(a, b)
    result = benchmark(kronsum, a, b)
    assert result.format == "csr" and (result != sp.kronsum(a, b)).nnz == 0
