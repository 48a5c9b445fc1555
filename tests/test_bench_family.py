"""pytest-benchmark micro-benchmarks of the Kronecker family (``--benchmark-disable`` in
the normal run makes each a single call, checked against the reference).  Time them
with ``python -m pytest tests/test_bench_family.py --benchmark-enable``.  The problems
are the study's (``family_calls``), a tenth of their size."""
import numpy as np
import pytest
import scipy.sparse as sp

from helpers import benchmark_problem
from kronjit.study.cases import family_calls, family_inputs

KINDS = [k for k in family_calls() if "tensorly" not in k]


@pytest.mark.parametrize("impl", ["kronjit", "reference"])
@pytest.mark.parametrize("kind", KINDS)
def test_family(benchmark, kind, impl):
    result, expected = benchmark_problem(benchmark, family_calls, family_inputs, kind, impl)
    for got, want in zip(*(r if isinstance(r, list) else [r] for r in (result, expected))):
        if sp.issparse(want):
            assert (got != want).nnz == 0
        elif kind.startswith("mttkrp"):
            np.testing.assert_allclose(got, want, rtol=1e-10)
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want)
