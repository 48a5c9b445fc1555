"""Block Toeplitz family and the FFT block Toeplitz matvec.

References: a numpy gather (``blocks[idx]`` then transpose/reshape) for block
Toeplitz, ``scipy.linalg.toeplitz``/``block_diag`` for scalars and block
diagonals, a dense matvec with the matrix already built for the FFT matvec.
Limit: write bandwidth (``kronjit.study.limits.fresh_write_pass``: one parallel
write pass over a fresh array of the output's size).
"""
import numpy as np
import scipy.linalg

import kronjit
from kronjit.study.cases import BLOCK_TOEPLITZ
from kronjit.study.limits import fresh_write_pass
from kronjit.study.references import block_toeplitz_gather, gather_blocks

from .common import side_by_side

# (m, p): m x m blocks of p x p (the study's scalar Toeplitz cases aside)
BLOCK_CASES = {label: (m, p) for label, (m, p) in BLOCK_TOEPLITZ.items() if p > 1}


def blocks(m, p, seed):
    return np.random.default_rng(seed).standard_normal((m, p, p))


class BlockToeplitz:
    params = (list(BLOCK_CASES), ["kronjit", "numpy gather"])
    param_names = ["case", "impl"]

    def setup(self, case, impl):
        m, p = BLOCK_CASES[case]
        self.c, self.r = blocks(m, p, 0), blocks(m, p, 1)
        self.fn = kronjit.block_toeplitz if impl == "kronjit" else block_toeplitz_gather
        self.fn(self.c, self.r)  # warm-up: JIT compilation is never timed

    def time_block_toeplitz(self, case, impl):
        self.fn(self.c, self.r)

    def peakmem_block_toeplitz(self, case, impl):
        self.fn(self.c, self.r)


class ScalarToeplitz:
    params = ([1024, 4096], ["kronjit", "scipy"])
    param_names = ["n", "impl"]

    def setup(self, n, impl):
        rng = np.random.default_rng(2)
        self.c, self.r = rng.standard_normal(n), rng.standard_normal(n)
        self.fn = kronjit.block_toeplitz if impl == "kronjit" else scipy.linalg.toeplitz
        self.fn(self.c, self.r)

    def time_toeplitz(self, n, impl):
        self.fn(self.c, self.r)


class HankelCirculantDiag:
    params = (["block_hankel", "block_circulant", "block_diag"], ["kronjit", "reference"])
    param_names = ["func", "impl"]

    def setup(self, func, impl):
        c = blocks(64, 32, 3)
        calls = {
            ("block_hankel", "kronjit"): lambda: kronjit.block_hankel(c, c),
            ("block_hankel", "reference"): lambda: gather_blocks(
                np.concatenate((c, c[1:])), np.add.outer(np.arange(64), np.arange(64))),
            ("block_circulant", "kronjit"): lambda: kronjit.block_circulant(c),
            ("block_circulant", "reference"): lambda: block_toeplitz_gather(
                c, np.concatenate((c[:1], c[:0:-1]))),
            ("block_diag", "kronjit"): lambda: kronjit.block_diag(*c),
            ("block_diag", "reference"): lambda: scipy.linalg.block_diag(*c),
        }
        self.fn = calls[func, impl]
        self.fn()

    def time_construct(self, func, impl):
        self.fn()


class ToeplitzMatvec:
    params = ([256, 2048], [1, 16], ["kronjit fft", "dense built"])
    param_names = ["m", "k", "impl"]
    timeout = 300

    def setup(self, m, k, impl):
        self.c, self.r = blocks(m, 4, 4), blocks(m, 4, 5)
        self.x = np.random.default_rng(6).standard_normal((m * 4, k))
        if impl == "dense built":
            dense = kronjit.block_toeplitz(self.c, self.r)
            self.fn = lambda: dense @ self.x
        else:
            self.fn = lambda: kronjit.block_toeplitz_matvec(self.c, self.r, self.x)
        self.fn()

    def time_matvec(self, m, k, impl):
        self.fn()


class StructuredRatios:
    """Speedups side by side, and the fraction of write bandwidth reached."""
    params = (list(BLOCK_CASES),)
    param_names = ["case"]

    def setup(self, case):
        m, p = BLOCK_CASES[case]
        self.c, self.r = blocks(m, p, 0), blocks(m, p, 1)
        self.shape = (m * p, m * p)
        kronjit.block_toeplitz(self.c, self.r)

    def track_speedup_vs_gather(self, case):
        return side_by_side(lambda: block_toeplitz_gather(self.c, self.r),
                            lambda: kronjit.block_toeplitz(self.c, self.r))
    track_speedup_vs_gather.unit = "x"

    def track_fill_fraction(self, case):
        return side_by_side(lambda: fresh_write_pass(self.shape, np.float64),
                            lambda: kronjit.block_toeplitz(self.c, self.r))
    track_fill_fraction.unit = "fraction of write bandwidth"
