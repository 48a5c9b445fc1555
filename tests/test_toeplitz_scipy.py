"""scipy's own tests of ``solve_toeplitz`` and ``matmul_toeplitz``, run against
kronjit's: each test module's global name is rebound to kronjit's function,
and its tests are collected here as they stand (marks and parameters
included)."""
import scipy.linalg.tests.test_matmul_toeplitz as scipy_matmul_tests
import scipy.linalg.tests.test_solve_toeplitz as scipy_solve_tests

import kronjit

scipy_solve_tests.solve_toeplitz = kronjit.solve_toeplitz
scipy_matmul_tests.matmul_toeplitz = kronjit.matmul_toeplitz

from scipy.linalg.tests.test_matmul_toeplitz import TestMatmulToeplitz  # noqa: E402,F401
from scipy.linalg.tests.test_solve_toeplitz import *  # noqa: E402,F401,F403


def test_names_are_rebound():
    """The collected tests call kronjit's functions, not scipy's."""
    assert scipy_solve_tests.solve_toeplitz is kronjit.solve_toeplitz
    assert scipy_matmul_tests.matmul_toeplitz is kronjit.matmul_toeplitz
