"""Toeplitz solves and products: ``solve_toeplitz`` (scalar and block),
``BlockToeplitz``'s solve and log-determinant for a multi-output GP, and
``matmul_toeplitz``, against scipy's Levinson and FFT product and dense LAPACK on
the formed matrix (``kronjit.study.cases.toeplitz_calls``).

Limits: a square GEMM of the recursion's flops (``levinson_flops``); for the FFT
product, one pass copying its right-hand sides.
"""
from kronjit.study.cases import toeplitz_calls, toeplitz_inputs, toeplitz_limit

from . import common

Toeplitz, ToeplitzRatios, _ = common.call_benchmarks(
    __name__, "Toeplitz", toeplitz_calls, toeplitz_inputs,
    lambda kind, inputs, result: toeplitz_limit(kind, inputs))
