"""Machine limits quoted beside each figure: what bounds a kernel.

For constructors, the machine's write bandwidth: one parallel write pass
(kronjit's threads, like its kernels) over an array of the output's size, a
fresh one for calls that allocate, the same buffer for ``out=`` calls.  For
the vec-trick, BLAS GEMM throughput (a square GEMM doing the same number of
flops) where a factor is large, and otherwise memory bandwidth (one parallel
copy of ``x`` into a fresh array, a single read and write pass).
"""
import math

import numpy as np

from .._runtime import kernel
from ..vectrick.plan import SMALL_FACTOR_MAX, order_key

__all__ = ["write_pass", "fresh_write_pass", "copy_pass", "same_flop_gemm", "vectrick_flops",
           "vectrick_limit"]

# numpy's fill and copy run on one thread, which on most machines is short of
# the memory bandwidth that kronjit's parallel kernels reach.

@kernel
def _fill_bytes(dst, part, nparts):
    n = dst.size  # a slice, not an index loop: it compiles to memset
    dst[part * n // nparts:(part + 1) * n // nparts] = 1

@kernel
def _copy_bytes(src, dst, part, nparts):
    n = dst.size
    lo, hi = part * n // nparts, (part + 1) * n // nparts
    dst[lo:hi] = src[lo:hi]

def _raw_bytes(a):
    return a.reshape(-1).view(np.uint8)  # a must be C-contiguous

def write_pass(out):
    """Write every byte of the C-contiguous array ``out`` once (write bandwidth)."""
    _fill_bytes(_raw_bytes(out), nbytes=out.nbytes)
    return out

def fresh_write_pass(shape, dtype):
    """Allocate an array and write it once: the limit for calls that allocate."""
    return write_pass(np.empty(shape, dtype))

def copy_pass(x):
    """Copy ``x`` into a fresh array in one parallel pass (read plus write bandwidth)."""
    src = np.ascontiguousarray(x)
    out = np.empty_like(src)
    _copy_bytes(_raw_bytes(src), _raw_bytes(out), nbytes=2 * src.nbytes)
    return out

def vectrick_limit(shapes, k, x):
    """What bounds a vec-trick product: a square GEMM of the same flops where a
    factor is large (BLAS throughput), else one parallel copy of ``x`` (memory bandwidth)."""
    if max(max(s) for s in shapes) > SMALL_FACTOR_MAX:
        return same_flop_gemm(vectrick_flops(shapes, k))
    return lambda: copy_pass(x)

def same_flop_gemm(flops, dtype=np.float64):
    """A square GEMM in ``dtype`` doing ``flops`` floating-point operations (BLAS
    throughput)."""
    side = max(2, round((flops / 2) ** (1 / 3)))
    rng = np.random.default_rng(13)
    a, b = (rng.standard_normal((side, side)).astype(dtype) for _ in range(2))
    return lambda: a @ b

def vectrick_flops(shapes, k):
    """Flops of the vec-trick in kronjit's order (shrinking factors first)."""
    size = math.prod(n for _, n in shapes) * k
    flops = 0
    for m, n in sorted(shapes, key=lambda s: order_key(*s)):
        flops += 2 * m * size
        size = size // n * m
    return flops
