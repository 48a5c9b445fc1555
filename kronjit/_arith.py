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
from numba import njit, types
from numba.extending import intrinsic, overload

from ._validation import KERNEL_DTYPES

__all__ = ["mul", "muladd", "complex_mul_mode", "EXACT_DTYPES", "scalar_op"]

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


# --- other binary ufuncs ------------------------------------------------------------
# Scalar functions ``f(x, y, fused)`` (the signature of ``mul``) that give what numpy's
# loop of the same ufunc gives for two inputs of one dtype.  Bools arrive as 0/1 bytes.

def _binary(body):
    return njit(inline="always")(body)


_add = _binary(lambda x, y, fused: x + y)
_subtract = _binary(lambda x, y, fused: x - y)
_divide = _binary(lambda x, y, fused: x / y)
_bit_and = _binary(lambda x, y, fused: x & y)
_bit_or = _binary(lambda x, y, fused: x | y)
_bit_xor = _binary(lambda x, y, fused: x ^ y)
_equal = _binary(lambda x, y, fused: x == y)
_not_equal = _binary(lambda x, y, fused: x != y)
_less = _binary(lambda x, y, fused: x < y)
_less_equal = _binary(lambda x, y, fused: x <= y)
_greater = _binary(lambda x, y, fused: x > y)
_greater_equal = _binary(lambda x, y, fused: x >= y)
_logical_and = _binary(lambda x, y, fused: (x != 0) & (y != 0))
_logical_or = _binary(lambda x, y, fused: (x != 0) | (y != 0))
_logical_xor = _binary(lambda x, y, fused: (x != 0) != (y != 0))
# maximum and minimum propagate a NaN in either operand; on a tie (0.0 and -0.0)
# numpy's loops return one operand or the other depending on the machine (asked below)
_max_first = _binary(lambda x, y, fused: x if (x >= y or x != x) else y)
_max_second = _binary(lambda x, y, fused: x if (x > y or x != x) else y)
_min_first = _binary(lambda x, y, fused: x if (x <= y or x != x) else y)
_min_second = _binary(lambda x, y, fused: x if (x < y or x != x) else y)


def _tie_choice(op, first, second):
    """Which of ``first``/``second`` matches numpy's ``op`` on signed-zero ties, in the
    layout kron uses (one operand broadcast), for every float dtype; None if neither."""
    ok_first = ok_second = True
    for dtype in (np.float32, np.float64):
        for n in (1, 3, 17, 64):
            x = np.array([0.0, -0.0], dtype)[:, None]
            y = np.array([-0.0, 0.0] * n, dtype)[None, :]
            got = np.signbit(op(x, y))
            tie_x = np.broadcast_to(np.signbit(x), got.shape)
            tie_y = np.broadcast_to(np.signbit(y), got.shape)
            ok_first &= bool(np.array_equal(got, tie_x))
            ok_second &= bool(np.array_equal(got, tie_y))
    return first if ok_first else second if ok_second else None


_ORDERED = "biuf"  # kinds whose comparisons, logical and min/max loops are ordinary
_SCALAR_OPS = {
    # ufunc: (name, {input kind: scalar})
    np.add: ("add", {"b": _bit_or, "i": _add, "u": _add, "f": _add, "c": _add}),
    np.subtract: ("subtract", dict.fromkeys("iufc", _subtract)),
    np.multiply: ("multiply", {"b": _bit_and, **dict.fromkeys("iufc", mul)}),
    np.true_divide: ("divide", {"f": _divide}),
    np.maximum: ("maximum", {**dict.fromkeys("biu", _max_second),
                             "f": _tie_choice(np.maximum, _max_first, _max_second)}),
    np.minimum: ("minimum", {**dict.fromkeys("biu", _min_second),
                             "f": _tie_choice(np.minimum, _min_first, _min_second)}),
    np.bitwise_and: ("bitwise_and", dict.fromkeys("biu", _bit_and)),
    np.bitwise_or: ("bitwise_or", dict.fromkeys("biu", _bit_or)),
    np.bitwise_xor: ("bitwise_xor", dict.fromkeys("biu", _bit_xor)),
    np.equal: ("equal", dict.fromkeys(_ORDERED, _equal)),
    np.not_equal: ("not_equal", dict.fromkeys(_ORDERED, _not_equal)),
    np.less: ("less", dict.fromkeys(_ORDERED, _less)),
    np.less_equal: ("less_equal", dict.fromkeys(_ORDERED, _less_equal)),
    np.greater: ("greater", dict.fromkeys(_ORDERED, _greater)),
    np.greater_equal: ("greater_equal", dict.fromkeys(_ORDERED, _greater_equal)),
    np.logical_and: ("logical_and", dict.fromkeys(_ORDERED, _logical_and)),
    np.logical_or: ("logical_or", dict.fromkeys(_ORDERED, _logical_or)),
    np.logical_xor: ("logical_xor", dict.fromkeys(_ORDERED, _logical_xor)),
}


def scalar_op(op, loop):
    """``(name, scalar)`` for compiled code that computes ufunc ``op`` exactly as its
    numpy loop ``loop`` (input, input, output dtypes) does, or None when only numpy's
    own loop is known to (transcendentals, complex orderings, mixed or other dtypes)."""
    in1, in2, res = loop
    if in1 != in2 or in1 not in EXACT_DTYPES or res not in KERNEL_DTYPES:
        return None
    name, scalars = _SCALAR_OPS.get(op, (None, {}))
    scalar = scalars.get(in1.kind)
    return None if scalar is None else (f"{name}_{in1.kind}", scalar)
