"""The hostile-input cases of ``hostile_cases.py``, each run in a child process.

One child runs the cases in turn and reports each; a case that kills the child
(a segfault, an abort, the OOM killer) fails with the child's output, and the
cases after it run in a fresh child.
"""
import json
import os


import pytest

from helpers import run_python
from hostile_cases import CASES

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def outcomes():
    results, pending = {}, list(CASES)
    while pending:
        proc = run_python(f"import sys; sys.path.insert(0, {HERE!r}); import hostile_cases; "
                          f"hostile_cases.main({pending!r})", timeout=600)
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                report = json.loads(line)
                results[report["case"]] = report["error"]
        crashed = [n for n in pending if n not in results]
        if crashed:  # the first unreported case killed the child
            results[crashed[0]] = (f"the child died (exit code {proc.returncode}) in this case"
                                   f"\nstderr:\n{proc.stderr[-3000:]}")
        pending = crashed[1:]
    return results


@pytest.mark.subprocess
@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input(outcomes, name):
    assert outcomes[name] is None, outcomes[name]


@pytest.mark.subprocess
def test_runs_without_the_jit():
    """NUMBA_DISABLE_JIT=1 (for debugging kernels) runs them as Python, same results."""
    proc = run_python("""
        import numpy as np, scipy.sparse as sp, kronjit
        a, b = np.arange(6.0).reshape(2, 3), np.arange(4).reshape(2, 2) - 1.5
        assert np.array_equal(kronjit.kron(a, b), np.kron(a, b))
        z = a + 1j * a[::-1]
        assert np.array_equal(kronjit.kron(z, z), np.kron(z, z))
        S = sp.random_array((4, 3), density=0.5, random_state=1, format="csr")
        assert (kronjit.sparse.kron(S, S, format="csr") != sp.kron(S, S, format="csr")).nnz == 0
        fs = [np.arange(1.0, 10).reshape(3, 3), np.eye(2) + 1]
        x = np.arange(6.0)
        assert np.allclose(kronjit.kron_matvec(fs, x), np.kron(*fs) @ x)
        assert np.array_equal(kronjit.block_toeplitz([1, 2, 3], [1, 4]),
                              np.array([[1, 4], [2, 1], [3, 2]]))
        print("OK")
    """, env={"NUMBA_DISABLE_JIT": "1"})
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.subprocess
def test_fuzz_in_a_child_process():
    """fuzz_hostile.py (hypothesis: malformed sparse structures, ndarray subclasses)
    in a child pytest, so that a crash fails this test instead of ending the run."""
    proc = run_python(f"import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
                      f"'-W', 'ignore::PendingDeprecationWarning', "
                      f"{os.path.join(HERE, 'fuzz_hostile.py')!r}]))", cwd=os.path.dirname(HERE),
                      timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-2000:]
