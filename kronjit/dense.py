"""Dense Kronecker product of any number of factors, in one pass.

``kron(a, b, c, ...)`` equals ``np.kron(np.kron(a, b), c) ...`` bit for bit.
The output, in C order, is a sequence of *runs*: each run is one row of the
last factor's last axis scaled by the product of one element from every other
factor.  The kernel walks the runs with an odometer over the remaining
(axis, factor) digits, so each output element is written exactly once, in
order, with no intermediate products.  Threads take disjoint ranges of runs.

Reference: ``numpy.kron``.  Limit: the machine's write bandwidth (the time to
``fill`` an array of the output's size).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numpy.typing import ArrayLike
from numba import njit

from ._arith import EXACT_DTYPES, complex_mul_mode, mul
from ._runtime import kernel
from ._memory import ensure_arrays_allocatable, into_out, output_array
from ._validation import check_out

__all__ = ["kron"]

_UINT = np.uint64  # unsigned indices: no negative-index wraparound, so loops vectorise


@njit(inline="always")
def _scaled_runs(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, run, fused):
    """Write runs j0..j1-1 of one block: out[o:...] = p_j * last[lo:lo+run].

    ``p_j`` is ``scale * pre[pb + j]``, or ``pre[pb + j]`` alone when there is
    no earlier factor (multiplying by a stand-in 1 would not be exact for
    complex infinities).
    """
    if use_scale:
        for j in range(j0, j1):
            p = mul(scale, pre[_UINT(pb + j)], fused)
            for i in range(run):
                out[_UINT(o + i)] = mul(p, last[_UINT(lo + i)], fused)
            o += run
    else:
        for j in range(j0, j1):
            p = pre[_UINT(pb + j)]
            for i in range(run):
                out[_UINT(o + i)] = mul(p, last[_UINT(lo + i)], fused)
            o += run


@kernel
def _kron_fill(pre, last, plan, fused, out, part, nparts):
    """Fill ``out`` (1-D, C order) with the Kronecker product described by ``plan``.

    ``pre`` holds the flattened factors but the last, back to back; ``last``
    the flattened last factor; ``fused`` says how numpy rounds complex
    products here (see ``_arith``).  ``plan`` (see ``_plan``) is
    ``[npre, ndigits, run, base[npre+1], size[ndigits], factor[ndigits],
    stride[ndigits]]``; its last digit is the factor before the last one on
    the last axis (stride 1), looped over inside each block.
    """
    npre = plan[0]
    ndigits = plan[1]
    run = plan[2]
    b0 = 3
    s0 = b0 + npre + 1
    f0 = s0 + ndigits
    t0 = f0 + ndigits
    nouter = ndigits - 1
    inner = plan[s0 + nouter]  # runs per block
    nruns = out.size // run
    r0 = nruns * part // nparts
    r1 = nruns * (part + 1) // nparts
    if r0 >= r1:
        return
    digit = np.zeros(max(nouter, 1), np.int64)
    offset = plan[b0:b0 + npre + 1].copy()
    rem = r0 // inner
    for j in range(nouter - 1, -1, -1):
        digit[j] = rem % plan[s0 + j]
        rem //= plan[s0 + j]
        offset[plan[f0 + j]] += digit[j] * plan[t0 + j]
    r = r0
    j0 = r0 % inner
    while r < r1:
        j1 = min(inner, j0 + (r1 - r))
        # Left to right, as the chained np.kron multiplies.
        scale = pre[offset[0]]
        for f in range(1, npre - 1):
            scale = mul(scale, pre[offset[f]], fused)
        pb = offset[npre - 1]
        lo = offset[npre]
        o = r * run
        use_scale = npre > 1
        # Short runs get a constant length so that LLVM unrolls them.
        if run == 1:
            _scaled_runs(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, 1, fused)
        elif run == 2:
            _scaled_runs(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, 2, fused)
        elif run == 3:
            _scaled_runs(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, 3, fused)
        elif run == 4:
            _scaled_runs(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, 4, fused)
        else:
            _scaled_runs(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, run, fused)
        r += j1 - j0
        j0 = 0
        j = nouter - 1
        while j >= 0:
            digit[j] += 1
            offset[plan[f0 + j]] += plan[t0 + j]
            if digit[j] < plan[s0 + j]:
                break
            offset[plan[f0 + j]] -= plan[s0 + j] * plan[t0 + j]
            digit[j] = 0
            j -= 1


@functools.lru_cache(maxsize=512)
def _plan(shapes):
    """Output shape and kernel plan for factors of the given (padded) shapes."""
    nd = len(shapes[0])
    k = len(shapes)
    out_shape = tuple(math.prod(s[t] for s in shapes) for t in range(nd))
    strides = [[math.prod(s[t + 1:]) for t in range(nd)] for s in shapes]
    base, acc = [], 0
    for s in shapes[:-1]:
        base.append(acc)
        acc += math.prod(s)
    base.append(0)
    sizes, facs, steps = [], [], []
    for t in range(nd):
        for f in range(k):
            if t == nd - 1 and f == k - 1:
                continue  # the run itself
            sizes.append(shapes[f][t])
            facs.append(f)
            steps.append(strides[f][t])
    plan = np.array([k - 1, len(sizes), shapes[-1][-1], *base, *sizes, *facs, *steps],
                    dtype=np.int64)
    plan.flags.writeable = False
    return out_shape, plan


def _delegate(factors, out):
    """The reference itself, for inputs with no fast path (subclasses, float16, ...)."""
    result = factors[0]
    for f in factors[1:]:
        result = np.kron(result, f)
    return into_out(result, out, factors)


def _as_plain_array(x):
    """``x`` as a base-class ndarray, or None if numpy must handle it itself."""
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ndarray) or (hasattr(x, "__array_function__")
                                     and not isinstance(x, np.generic)):
        return None  # subclasses (matrix, masked, ...) and duck arrays keep their semantics
    x = np.asarray(x)
    return x if type(x) is np.ndarray else None


def kron(a: ArrayLike, b: ArrayLike, *more: ArrayLike, out: np.ndarray | None = None
         ) -> np.ndarray:
    """Kronecker product of two or more arrays, in one parallel pass.

    Parameters
    ----------
    a, b, *more : array_like
        Factors of any shape and numeric dtype.  Factors of lower ndim are
        padded with leading axes of length 1, as ``np.kron`` does.
    out : ndarray, optional
        C-contiguous array of the result's exact shape and dtype, sharing no
        memory with the inputs.  It is checked before anything is written.

    Returns
    -------
    ndarray
        ``np.kron(np.kron(a, b), ...)``: same values, dtype, shape and type.
        Shape: the product, axis by axis, of the padded factor shapes.
        Inputs with no fast path (ndarray subclasses, duck arrays, object,
        float16, longdouble, ... dtypes) are passed to ``np.kron``.

    Raises
    ------
    MemoryError
        If the result would not fit in the available memory (raised before
        allocating, with the shape and byte count).
    TypeError, ValueError
        For an ``out`` of the wrong type, shape, dtype or layout, or one that
        overlaps an input.

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> kronjit.kron(np.array([[1, 2], [3, 4]]), np.eye(2, dtype=int))
    array([[1, 0, 2, 0],
           [0, 1, 0, 2],
           [3, 0, 4, 0],
           [0, 3, 0, 4]])
    >>> kronjit.kron([1, 10], [1, 2], [1, -1]).tolist()
    [1, -1, 2, -2, 10, -10, 20, -20]
    """
    if (not more and type(a) is np.ndarray and type(b) is np.ndarray and a.ndim and b.ndim
            and a.dtype == b.dtype and a.dtype in EXACT_DTYPES):
        return _kron_uniform((a, b), a.dtype, out)  # the common call, without the general checks
    factors = (a, b) + more
    arrays = []
    for x in factors:
        arr = _as_plain_array(x)
        if arr is None:
            return _delegate(factors, out)
        arrays.append(arr)
    if all(x.ndim == 0 for x in arrays):
        return _delegate(arrays, out)  # numpy returns a scalar here
    try:
        chain = [arrays[0].dtype]
        for x in arrays[1:]:
            chain.append(np.result_type(chain[-1], x.dtype))
    except TypeError:
        return _delegate(arrays, out)  # numpy raises its own error
    dtype = chain[-1]
    if dtype not in EXACT_DTYPES or any(x.dtype.kind not in "biufc" for x in arrays):
        return _delegate(arrays, out)
    # np.kron multiplies pairwise, each step in its own result dtype; one pass
    # with every factor cast to the final dtype equals that only from the
    # first step whose dtype is already final.  Earlier steps run first.
    first_final = next(j for j in range(1, len(chain)) if chain[j] == dtype)
    if first_final > 1:
        # size the result and the head before computing the head
        head_shape = _padded_shapes([x.shape for x in arrays[:first_final]])[1]
        out_shape = _padded_shapes([head_shape] + [x.shape for x in arrays[first_final:]])[1]
        if out is not None:
            check_out(out, out_shape, dtype, arrays)
        else:
            ensure_arrays_allocatable({"result": (math.prod(out_shape), dtype),
                                       "intermediate product": (math.prod(head_shape),
                                                                chain[first_final - 1])},
                                      f"kron output of shape {out_shape}")
        head = kron(*arrays[:first_final])
        arrays = [head] + arrays[first_final:]
    return _kron_uniform(arrays, dtype, out)


def _padded_shapes(shapes):
    """Factor shapes padded with leading 1s to a common ndim, and the product's shape."""
    nd = max(len(s) for s in shapes)
    shapes = tuple((1,) * (nd - len(s)) + tuple(s) for s in shapes)
    return shapes, tuple(math.prod(s[t] for s in shapes) for t in range(nd))


def _kron_uniform(arrays, dtype, out):
    out_shape, plan = _plan(_padded_shapes([x.shape for x in arrays])[0])
    result = output_array(out_shape, dtype, out, arrays, "kron output")
    nbytes = result.nbytes
    if nbytes == 0:
        return result
    if dtype == np.bool_:
        # numpy's bool product is a logical and of nonzero bytes: canonicalise
        # to 0/1 and multiply as uint8.
        flat = [np.not_equal(x, False).view(np.uint8).ravel() for x in arrays]
        target = result.reshape(-1).view(np.uint8)
    else:
        flat = [np.ascontiguousarray(x, dtype=dtype).ravel() for x in arrays]
        target = result.reshape(-1)
    pre = flat[0] if len(flat) == 2 else np.concatenate(flat[:-1])
    _kron_fill(pre, flat[-1], plan, complex_mul_mode(dtype), target, nbytes=nbytes)
    return result
