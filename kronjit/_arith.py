"""Scalar arithmetic that rounds exactly as numpy's ufunc loops do.

numpy's complex multiply is a fused multiply-add on CPUs where its SIMD
dispatch uses FMA (``re = fma(ar, br, -(ai*bi))``, ``im = fma(ar, bi, ai*br)``)
and two rounded products otherwise.  Numba's ``*`` is always the latter, so
kernels multiply through ``mul`` and are told, per call, which rounding numpy
uses here (a runtime flag, so a cached kernel stays right if numpy's dispatch
changes, e.g. under ``NPY_DISABLE_CPU_FEATURES``).
"""
from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._validation import KERNEL_DTYPES

__all__ = ["mul", "muladd", "complex_mul_mode", "EXACT_DTYPES"]

FUSED, PLAIN, UNKNOWN = 1, 0, -1


@intrinsic
def _fma(typingctx, a, b, c):
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        t = context.get_value_type(sig.return_type)
        fn = builder.module.declare_intrinsic("llvm.fma", [t], ir.FunctionType(t, [t, t, t]))
        return builder.call(fn, args)
    return a(a, b, c), codegen


def mul(x, y, fused):
    """``x * y`` in the operands' (common) dtype, rounded as numpy rounds it.

    Jitted code uses the overload below; this body runs only with
    ``NUMBA_DISABLE_JIT=1``, where numpy's own loop does the fused product.
    """
    if fused:
        return np.multiply(np.array([x]), np.array([y]))[0]
    return x * y


@overload(mul, inline="always")
def _mul_impl(x, y, fused):
    if isinstance(x, types.Complex) and isinstance(y, types.Complex):
        def impl(x, y, fused):
            if fused:
                ar, ai, br, bi = x.real, x.imag, y.real, y.imag
                return complex(_fma(ar, br, -(ai * bi)), _fma(ar, bi, ai * br))
            return x * y
        return impl

    def impl(x, y, fused):
        return x * y
    return impl


def muladd(a, x, acc):
    """``a * x + acc`` with one rounding (a fused multiply-add) for real floats.

    For sums of products (the vec-trick), where no numpy result is to be met
    bit for bit: an explicit FMA rounds the same way in vector and scalar
    code, unlike leaving contraction to the compiler (``fastmath`` stays off).
    Complex and integer operands use ``a * x + acc``.  This body (two
    roundings) runs only with ``NUMBA_DISABLE_JIT=1``.
    """
    return a * x + acc


@overload(muladd, inline="always")
def _muladd_impl(a, x, acc):
    if isinstance(a, types.Float) and a == x == acc:
        def impl(a, x, acc):
            return _fma(a, x, acc)
        return impl

    def impl(a, x, acc):
        return a * x + acc
    return impl


def _probe(dtype, eps_exp):
    """How numpy rounds the complex product on this machine for ``dtype``."""
    one_plus = 1.0 + 2.0 ** -eps_exp
    a = np.array([complex(one_plus, 1.0)], dtype=dtype)
    got = (a * a)[0].real  # (1+e)^2 - 1: exact only when the first product is fused
    exact = Fraction(one_plus) ** 2 - 1
    real = np.finfo(dtype).dtype.type
    plain = real(one_plus) * real(one_plus) - real(1)
    if Fraction(float(got)) == exact:
        return FUSED
    if float(got) == float(plain):
        return PLAIN
    return UNKNOWN


_MODES = {np.dtype(np.complex128): _probe(np.complex128, 30),
          np.dtype(np.complex64): _probe(np.complex64, 13)}


def complex_mul_mode(dtype):
    """FUSED or PLAIN for complex ``dtype`` (UNKNOWN: leave it to numpy); 0 otherwise."""
    return _MODES.get(np.dtype(dtype), PLAIN)


#: Kernel dtypes whose products the kernels round exactly as numpy does on
#: this machine; results of any other dtype are left to the reference.
EXACT_DTYPES = frozenset(d for d in KERNEL_DTYPES if complex_mul_mode(d) != UNKNOWN)
