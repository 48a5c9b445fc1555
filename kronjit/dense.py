"""Dense Kronecker products: ``kron`` (any binary ufunc in place of the multiply),
``batch_kron``, ``face_split`` and ``khatri_rao``.

``kron(a, b, c, ...)`` equals ``np.kron(np.kron(a, b), c) ...`` bit for bit.
The output, in C order, is a sequence of *runs*: each run is one row of the
last factor's last axis scaled by the product of one element from every other
factor.  The kernel walks the runs with an odometer over the remaining
(axis, factor) digits, so each output element is written exactly once, in
order, with no intermediate products.  Threads take disjoint ranges of runs.
The same kernel, given where each product's factors start, writes a batch of
products one after the other (``batch_kron``; ``face_split``, whose products
are of the factors' rows), and, bound to another scalar operator, ``kron``
with ``op=``.  ``khatri_rao``'s rows are elementwise products of factor rows,
a kernel of its own.

Reference: ``numpy.kron`` (``scipy.linalg.khatri_rao``; numpy's broadcast
formulations for the others).  Limit: the machine's write bandwidth (the time
to ``fill`` an array of the output's size).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from numba import njit
from numba.np.ufunc.dufunc import DUFunc

from ._arith import EXACT_DTYPES, complex_mul_mode, mul, scalar_op
from ._runtime import kernel, kernel_input, run_python_parts
from ._memory import ensure_arrays_allocatable, into_out, output_array
from ._validation import as_ndarray, check_out

__all__ = ["kron", "batch_kron", "face_split", "khatri_rao"]

_UINT = np.uint64  # unsigned indices: no negative-index wraparound, so loops vectorise


@njit(inline="always")
def _scaled_runs(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, run, combine, fused):
    """Write runs j0..j1-1 of one block: out[o:...] = p_j * last[lo:lo+run].

    ``*`` is ``combine`` (see ``_kron_fill``).  ``p_j`` is ``scale * pre[pb + j]``,
    or ``pre[pb + j]`` alone when there is no earlier factor (multiplying by a
    stand-in 1 would not be exact for complex infinities).
    """
    if use_scale:
        for j in range(j0, j1):
            p = combine(scale, pre[_UINT(pb + j)], fused)
            for i in range(run):
                out[_UINT(o + i)] = combine(p, last[_UINT(lo + i)], fused)
            o += run
    else:
        for j in range(j0, j1):
            p = pre[_UINT(pb + j)]
            for i in range(run):
                out[_UINT(o + i)] = combine(p, last[_UINT(lo + i)], fused)
            o += run


@njit(inline="always")
def _scaled_rows(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, run, combine, fused,
                 nrows, row_step):
    """``nrows`` blocks of ``_scaled_runs`` one after the other, the last factor's
    offset advancing ``row_step`` from each to the next (rows of the last factor)."""
    for _ in range(nrows):
        _scaled_runs(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, run, combine, fused)
        o += (j1 - j0) * run
        lo += row_step


combine = mul  # the product; ``_kron_fill.bound`` makes kernels for other operators
#: Runs of at most this many elements go to the kernel's twin bound with
#: ``SHORT_RUNS``, which gives each length a constant (4-5x faster for runs of 1
#: and 2); the other twin, compiled apart and only when used, never meets them
#: and compiles in half the time (the first ``kron`` of a dtype: 1.1 s, not 2.4).
SHORT_RUN_MAX = 4
SHORT_RUNS = False


@kernel
def _kron_fill(pre, last, plan, batches, fused, out, part, nparts):
    """Fill ``out`` (1-D, C order) with Kronecker products described by ``plan``.

    ``pre`` holds the flattened factors but the last, back to back; ``last``
    the flattened last factor; ``fused`` says how numpy rounds complex
    products here (see ``_arith``).  ``plan`` (see ``_plan``) is
    ``[npre, ndigits, run, base[npre+1], size[ndigits], factor[ndigits],
    stride[ndigits]]``; its last digit is the factor before the last one on
    the last axis (stride 1), looped over inside each block.  ``out`` holds
    ``len(batches)`` products one after the other; product ``b`` takes factor
    ``f`` from ``batches[b, f]`` elements past its base (``batch_kron``,
    ``face_split``; one row of zeros for ``kron``).  Elements are combined by
    the global ``combine(x, y, fused)``, left to right.
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
    nbatch = batches.shape[0]
    per_batch = out.size // run // nbatch
    nruns = per_batch * nbatch
    r0 = nruns * part // nparts
    r1 = nruns * (part + 1) // nparts
    if r0 >= r1:
        return
    batch = r0 // per_batch
    digit = np.zeros(max(nouter, 1), np.int64)
    offset = plan[b0:b0 + npre + 1] + batches[batch]
    rem = (r0 % per_batch) // inner
    for j in range(nouter - 1, -1, -1):
        digit[j] = rem % plan[s0 + j]
        rem //= plan[s0 + j]
        offset[plan[f0 + j]] += digit[j] * plan[t0 + j]
    r = r0
    j0 = r0 % inner
    use_scale = npre > 1
    while r < r1:
        # Where the digit outside the block runs over the last factor's rows (2-D
        # factors), short blocks are done a whole set of rows at a time: the odometer
        # steps once per set, not once per block.
        nrows, row_step = 1, 0
        if j0 == 0 and nouter >= 1 and inner * run < 256 and digit[nouter - 1] == 0 \
                and plan[f0 + nouter - 1] == npre and r + plan[s0 + nouter - 1] * inner <= r1:
            nrows, row_step = plan[s0 + nouter - 1], plan[t0 + nouter - 1]
        j1 = min(inner, j0 + (r1 - r))
        # Left to right, as the chained np.kron multiplies.
        scale = pre[offset[0]]
        for f in range(1, npre - 1):
            scale = combine(scale, pre[offset[f]], fused)
        pb = offset[npre - 1]
        lo = offset[npre]
        o = r * run
        if SHORT_RUNS:
            # a constant length, so that LLVM unrolls the run
            if run == 1:
                _scaled_rows(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, 1, combine,
                             fused, nrows, row_step)
            elif run == 2:
                _scaled_rows(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, 2, combine,
                             fused, nrows, row_step)
            elif run == 3:
                _scaled_rows(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, 3, combine,
                             fused, nrows, row_step)
            else:
                _scaled_rows(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, 4, combine,
                             fused, nrows, row_step)
        else:
            _scaled_rows(out, o, pre, pb, j0, j1, scale, use_scale, last, lo, run, combine,
                         fused, nrows, row_step)
        r += nrows * (j1 - j0)
        j0 = 0
        j = nouter - 1 if nrows == 1 else nouter - 2
        while j >= 0:
            digit[j] += 1
            offset[plan[f0 + j]] += plan[t0 + j]
            if digit[j] < plan[s0 + j]:
                break
            offset[plan[f0 + j]] -= plan[s0 + j] * plan[t0 + j]
            digit[j] = 0
            j -= 1
        if j < 0 and r < r1:  # every digit wrapped: the next product of the batch
            batch += 1
            for f in range(npre + 1):
                offset[f] += batches[batch, f] - batches[batch - 1, f]


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


def _binary_ufunc(op):
    """``op`` if it is a binary ufunc (numpy's, or a Numba ``@vectorize`` function)."""
    if isinstance(op, (np.ufunc, DUFunc)) and op.nin == 2 and op.nout == 1 \
            and getattr(op, "signature", None) is None:
        return op
    raise TypeError("op must be a binary ufunc: one of numpy's (np.add, np.maximum, ...) or a "
                    f"Numba @vectorize function of two arguments, got {op!r}")


def _interleaved(a, b):
    """``a`` and ``b`` reshaped so that ``op(a, b)`` broadcasts to ``np.kron``'s layout
    (axes ``a0, b0, a1, b1, ...``), and the result's shape."""
    nd = max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + a.shape
    sb = (1,) * (nd - b.ndim) + b.shape
    return (a.reshape(sum(((n, 1) for n in sa), ())), b.reshape(sum(((1, n) for n in sb), ())),
            tuple(m * n for m, n in zip(sa, sb)))


def _op_reference(a, b, op):
    """numpy's ``kron`` with ``op`` in place of its multiply (what it does for any input)."""
    if op is None:
        return np.kron(a, b)
    matrix = isinstance(a, np.matrix) or isinstance(b, np.matrix)
    if matrix:
        a, b = np.asarray(a), np.asarray(b)
    b = np.asanyarray(b)
    a = np.array(a, copy=None, subok=True, ndmin=b.ndim)
    if a.ndim == 0 or b.ndim == 0:
        return op(a, b)
    a_arr, b_arr, shape = _interleaved(a, b)
    result = op(a_arr, b_arr).reshape(shape)
    return np.asmatrix(result) if matrix else result


def _delegate(factors, op, out):
    """The reference itself, for inputs with no fast path (subclasses, float16, ...)."""
    result = factors[0]
    for f in factors[1:]:
        result = _op_reference(result, f, op)
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


def _product_chain(arrays):
    """The dtypes of the chained product, step by step (the result's last), and the first
    factor from which one pass with every factor cast to the result's dtype is exact; or
    None where numpy must answer (its own error, or a dtype with no kernel).  numpy
    multiplies pairwise, each step in its own result dtype; one pass equals that only
    from the first step whose dtype is already final."""
    try:
        chain = [arrays[0].dtype]
        for x in arrays[1:]:
            chain.append(np.result_type(chain[-1], x.dtype))
    except TypeError:
        return None
    dtype = chain[-1]
    if dtype not in EXACT_DTYPES or any(x.dtype.kind not in "biufc" for x in arrays):
        return None
    return chain, next(j for j in range(1, len(chain)) if chain[j] == dtype)


def kron(a: ArrayLike, b: ArrayLike, *more: ArrayLike, op: Callable | None = None,
         out: np.ndarray | None = None) -> np.ndarray:
    """Kronecker product of two or more arrays, in one parallel pass.

    Parameters
    ----------
    a, b, *more : array_like
        Factors of any shape and numeric dtype.  Factors of lower ndim are
        padded with leading axes of length 1, as ``np.kron`` does.
    op : ufunc, optional
        A binary ufunc to use in place of the multiply: any of numpy's
        (``np.add``, ``np.maximum``, ``np.equal``, ``np.power``, ...) or a Numba
        ``@vectorize`` function of two arguments (R's ``kronecker(X, Y, FUN=)``).
        Block ``(i, j)`` of a 2-D result is ``op(a[i, j], b)``; in general the
        result is ``np.kron``'s layout of ``op.outer(a, b)``, with numpy's type
        resolution and errors.  More factors chain left to right:
        ``kron(kron(a, b, op=op), c, op=op)``.
    out : ndarray, optional
        C-contiguous array of the result's exact shape and dtype, sharing no
        memory with the inputs.  It is checked before anything is written.

    Returns
    -------
    ndarray
        ``np.kron(np.kron(a, b), ...)`` (with ``op`` in place of the multiply):
        same values, dtype, shape and type.  Shape: the product, axis by axis,
        of the padded factor shapes.  Inputs with no fast path (ndarray
        subclasses, duck arrays, object, float16, longdouble, ... dtypes) are
        passed to numpy.  Operators with a compiled loop here (arithmetic,
        comparisons, ``maximum``/``minimum``, logical and bitwise ones on real
        dtypes) run as one parallel pass; any other runs numpy's own loop on
        disjoint blocks of the result from several threads.  Compiled loops
        do not emit numpy's floating-point warnings (overflow, division by
        zero).

    Raises
    ------
    MemoryError
        If the result would not fit in the available memory (raised before
        allocating, with the shape and byte count).
    TypeError, ValueError
        For an ``op`` that is not a binary ufunc, for dtypes ``op`` has no loop
        for (numpy's error), for an ``out`` of the wrong type, shape, dtype or
        layout, or one that overlaps an input.

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

    Any binary ufunc in place of the product, block by block:

    >>> kronjit.kron([[0, 10]], [[1, 2], [3, 4]], op=np.add)
    array([[ 1,  2, 11, 12],
           [ 3,  4, 13, 14]])
    >>> kronjit.kron([1, 2, 3], [2, 1], op=np.maximum).tolist()
    [2, 1, 2, 2, 3, 3]
    """
    if op is not None:
        op = _binary_ufunc(op)
        if op is np.multiply:
            op = None  # np.kron itself
    if (op is None and not more and type(a) is np.ndarray and type(b) is np.ndarray and a.ndim
            and b.ndim and a.dtype == b.dtype and a.dtype in EXACT_DTYPES):
        return _kron_uniform((a, b), a.dtype, out)  # the common call, without the general checks
    factors = (a, b) + more
    arrays = []
    for x in factors:
        arr = _as_plain_array(x)
        if arr is None:
            return _delegate(factors, op, out)
        arrays.append(arr)
    if all(x.ndim == 0 for x in arrays):
        return _delegate(arrays, op, out)  # numpy returns a scalar here
    if op is not None:
        return _kron_op(arrays, op, out)
    chain = _product_chain(arrays)
    if chain is None:
        return _delegate(arrays, op, out)
    chain, first_final = chain
    dtype = chain[-1]
    if first_final > 1:
        # size the result and the head before computing the head
        head_shape = _padded_shapes([x.shape for x in arrays[:first_final]])[1]
        out_shape = _padded_shapes([head_shape] + [x.shape for x in arrays[first_final:]])[1]
        _check_result(out_shape, dtype, out, arrays, {"intermediate product": (
            math.prod(head_shape), chain[first_final - 1])})
        head = kron(*arrays[:first_final])
        arrays = [head] + arrays[first_final:]
    return _kron_uniform(arrays, dtype, out)


def _check_result(shape, dtype, out, arrays, work, func="kron"):
    """Check ``out``, or that the result fits, and that the ``work`` arrays
    (``{name: (length, dtype)}``) fit beside it, before computing any."""
    if out is not None:
        check_out(out, shape, dtype, arrays)
    arrays_needed = dict(work) if out is not None else {"result": (math.prod(shape), dtype), **work}
    ensure_arrays_allocatable(arrays_needed, f"{func} output of shape {shape}")


def _padded_shapes(shapes):
    """Factor shapes padded with leading 1s to a common ndim, and the product's shape."""
    nd = max(len(s) for s in shapes)
    shapes = tuple((1,) * (nd - len(s)) + tuple(s) for s in shapes)
    return shapes, tuple(math.prod(s[t] for s in shapes) for t in range(nd))


@functools.lru_cache(maxsize=64)
def _no_batches(nfactors):
    """The ``batches`` of a single product."""
    batches = np.zeros((1, nfactors), np.int64)
    batches.flags.writeable = False
    return batches


def _flat_inputs(arrays, dtype):
    """The factors flattened in ``dtype``, C order (bools as 0/1 bytes, as numpy's loops
    read them)."""
    if dtype == np.bool_:
        return [np.not_equal(x, False).view(np.uint8).ravel() for x in arrays]
    return [kernel_input(np.ascontiguousarray(x, dtype=dtype).ravel()) for x in arrays]


def _flat_target(result):
    """The 1-D array a kernel writes ``result`` through (a bool result as bytes)."""
    target = result.reshape(-1)
    return target.view(np.uint8) if result.dtype == np.bool_ else target


class _FillTwins(NamedTuple):
    """A ``_kron_fill`` kernel as its two twins (see ``SHORT_RUN_MAX``)."""
    short: kernel
    long: kernel

    @classmethod
    def of(cls, name=None, **bindings):
        """The twins of ``_kron_fill`` (named ``name``, globals bound to ``bindings``)."""
        short = _kron_fill.bound(f"{name}_short" if name else "short", SHORT_RUNS=True,
                                 **bindings)
        return cls(short, _kron_fill.bound(name, **bindings) if name else _kron_fill)


_KRON_FILL = _FillTwins.of()


def _fill(twins, arrays, dtype, plan, batches, result):
    """Run a ``_kron_fill`` kernel (the twin for ``plan``'s run length) over ``arrays``
    (computed in ``dtype``) into ``result``."""
    if result.size:
        fill = twins.short if plan[2] <= SHORT_RUN_MAX else twins.long
        flat = _flat_inputs(arrays, dtype)
        pre = flat[0] if len(flat) == 2 else np.concatenate(flat[:-1])
        fill(pre, flat[-1], plan, batches, complex_mul_mode(dtype), _flat_target(result),
             nbytes=result.nbytes)
    return result


def _kron_uniform(arrays, dtype, out):
    out_shape, plan = _plan(_padded_shapes([x.shape for x in arrays])[0])
    result = output_array(out_shape, dtype, out, arrays, "kron output")
    return _fill(_KRON_FILL, arrays, dtype, plan, _no_batches(len(arrays)), result)


# --- kron with another operator -----------------------------------------------------

@functools.cache
def _op_kernel(name, scalar):
    return _FillTwins.of(name, combine=scalar)


def _loop(op, left, right):
    """The dtypes of the loop numpy runs for ``op(left, right)``: (input, input, output).

    Asked by calling ``op`` on empty arrays, so that dtypes with no loop raise numpy's
    own error (or compile a Numba ufunc's loop).  Inputs are None where numpy cannot
    say (a Numba ufunc).
    """
    res = op(np.empty(0, left), np.empty(0, right)).dtype
    if isinstance(op, np.ufunc):
        in1, in2, _ = op.resolve_dtypes((left, right, None))
        return np.dtype(in1), np.dtype(in2), res
    return None, None, res


def _kron_op(arrays, op, out):
    """``kron(*arrays, op=op)``: runs of steps that share one loop ``(T, T) -> T`` with a
    compiled scalar are one pass; any other step is a pass of its own."""
    loops = []
    dtype = arrays[0].dtype
    for x in arrays[1:]:
        loops.append(_loop(op, dtype, x.dtype))
        dtype = loops[-1][2]
    shapes = [x.shape for x in arrays]
    heads = [_padded_shapes(shapes[:j + 1])[1] for j in range(1, len(shapes) - 1)]
    out_shape = _padded_shapes(shapes)[1]
    _check_result(out_shape, dtype, out, arrays, {
        f"intermediate product {j + 1}": (math.prod(shape), loops[j][2])
        for j, shape in enumerate(heads)})
    head = arrays[0]
    i = 0
    while i < len(loops):
        loop = loops[i]
        scalar = scalar_op(op, loop) if loop[0] is not None else None
        j = i + 1
        if scalar is not None and loop[0] == loop[2]:
            while j < len(loops) and loops[j] == loop:
                j += 1
        group = [head] + arrays[i + 1:j + 1]
        target = out if j == len(loops) else None
        if scalar is None:
            head = _ufunc_pass(op, group[0], group[1], loop[2], target)
        else:
            shape, plan = _plan(_padded_shapes([x.shape for x in group])[0])
            result = output_array(shape, loop[2], target, group, "kron output")
            head = _fill(_op_kernel(*scalar), group, loop[0], plan, _no_batches(len(group)),
                         result)
        i = j
    return head


def _ufunc_pass(op, a, b, dtype, out):
    """``op``'s own numpy loop into ``np.kron``'s layout, on disjoint blocks of the result
    from several threads (numpy's loops run without the GIL)."""
    a_arr, b_arr, shape = _interleaved(a, b)
    result = output_array(shape, dtype, out, (a, b), "kron output")
    if result.size == 0:
        return result
    blocks = result.reshape(np.broadcast_shapes(a_arr.shape, b_arr.shape))
    # split the first axis long enough to give every thread parts
    axis = next((t for t, n in enumerate(blocks.shape) if n >= 16), int(np.argmax(blocks.shape)))

    def run(start, stop):
        part = (slice(None),) * axis + (slice(start, stop),)
        op(a_arr[part] if a_arr.shape[axis] > 1 else a_arr,
           b_arr[part] if b_arr.shape[axis] > 1 else b_arr, out=blocks[part])

    run_python_parts(run, blocks.shape[axis], result.nbytes)
    return result


# --- batched, row-wise and column-wise products ---------------------------------------

def _factor_names(count):
    """How errors name the factors: ``a``, ``b``, ``more[0]``, ..."""
    return ["a", "b"] + [f"more[{i}]" for i in range(count - 2)]


def _named_arrays(factors, func, numeric=True):
    """The factors as ndarrays, or the error naming the one that is not (``a``, ``b``,
    ``more[i]``), or (``numeric``) whose dtype is not bool, integer, float or complex."""
    names = _factor_names(len(factors))
    arrays = [as_ndarray(x, name) for x, name in zip(factors, names)]
    for x, name in zip(arrays, names):
        if numeric and x.dtype.kind not in "biufc":
            raise TypeError(f"{func}: {name} has dtype {x.dtype}; expected a bool, integer, "
                            "float or complex array")
    return arrays


def _batch_offsets(arrays, batch_shape, core_ndim):
    """``batches`` for ``_kron_fill``: where each factor's matrix of every item of the
    broadcast batch starts, in elements past the factor's own start."""
    columns = []
    for x in arrays:
        core = math.prod(x.shape[x.ndim - core_ndim:])
        own = x.shape[:x.ndim - core_ndim]
        starts = (np.arange(math.prod(own), dtype=np.int64) * core).reshape(own)
        columns.append(np.broadcast_to(starts, batch_shape).reshape(-1))
    return np.stack(columns, axis=1) if columns[0].size else np.zeros((0, len(arrays)), np.int64)


def _batched(arrays, batch_shape, core_ndim, out, func):
    """``kron`` of the factors' last ``core_ndim`` axes, for every item of the broadcast
    batch (leading axes), into one array of shape ``batch_shape + product shape``."""
    chain = _product_chain(arrays)
    if chain is None:
        return None
    chain, first_final = chain
    dtype = chain[-1]
    cores = [x.shape[x.ndim - core_ndim:] for x in arrays]
    out_shape = tuple(batch_shape) + tuple(math.prod(c[t] for c in cores) for t in range(core_ndim))
    nbatch = math.prod(batch_shape)
    _check_result(out_shape, dtype, out, arrays, {"batch offsets": (nbatch * len(arrays),
                                                                    np.int64)}, func)
    if first_final > 1:  # the dtype of the first steps is not final: they run first
        head = _batched(arrays[:first_final], batch_shape, core_ndim, None, func)
        arrays = [head] + arrays[first_final:]
    result = out if out is not None else np.empty(out_shape, dtype)
    if result.size == 0:
        return result
    _, plan = _plan(tuple(tuple(x.shape[x.ndim - core_ndim:]) for x in arrays))
    # the plan places factors one matrix apart; here each holds its whole batch
    npre = len(arrays) - 1
    starts = np.cumsum([0] + [x.size for x in arrays[:-2]] + [0])
    starts[-1] = 0
    batches = _batch_offsets(arrays, batch_shape, core_ndim) + (starts - plan[3:4 + npre])
    batches.flags.writeable = False  # as ``_no_batches``: one compiled signature for both
    return _fill(_KRON_FILL, arrays, dtype, plan, batches, result)


def _batch_reference(arrays, core_ndim):
    """numpy's formulation of the batched product: one broadcast multiply per factor."""
    result = arrays[0]
    for x in arrays[1:]:
        nb = max(result.ndim, x.ndim) - core_ndim
        r = result.reshape(result.shape[:result.ndim - core_ndim]
                           + sum(((n, 1) for n in result.shape[result.ndim - core_ndim:]), ()))
        y = x.reshape(x.shape[:x.ndim - core_ndim]
                      + sum(((1, n) for n in x.shape[x.ndim - core_ndim:]), ()))
        prod = np.multiply(r, y)
        result = prod.reshape(prod.shape[:nb] + tuple(
            prod.shape[nb + 2 * t] * prod.shape[nb + 2 * t + 1] for t in range(core_ndim)))
    return result


def batch_kron(a: ArrayLike, b: ArrayLike, *more: ArrayLike, out: np.ndarray | None = None
               ) -> np.ndarray:
    """Kronecker products of stacks of matrices, leading axes broadcast as in ``np.matmul``.

    Parameters
    ----------
    a, b, *more : array_like, shapes ``(..., m, n)``, ``(..., p, q)``, ...
        Stacks of matrices in the last two axes; the leading (batch) axes
        broadcast against each other.
    out : ndarray, optional
        C-contiguous array of the result's exact shape and dtype, sharing no
        memory with the inputs.

    Returns
    -------
    ndarray, shape ``(..., m*p*..., n*q*...)``
        ``result[i] = np.kron(np.kron(a[i], b[i]), ...)`` for every batch index
        ``i``: values and dtype as that chain of ``np.kron`` gives them.

    Raises
    ------
    ValueError
        If a factor has fewer than 2 dimensions, or the batch axes do not
        broadcast.
    MemoryError
        If the result would not fit in the available memory.

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> a = np.array([[[1, 2]], [[3, 4]]])      # two 1x2 matrices
    >>> kronjit.batch_kron(a, np.eye(2, dtype=int))
    array([[[1, 0, 2, 0],
            [0, 1, 0, 2]],
    <BLANKLINE>
           [[3, 0, 4, 0],
            [0, 3, 0, 4]]])
    """
    arrays = _named_arrays((a, b) + more, "batch_kron")
    for x, name in zip(arrays, _factor_names(len(arrays))):
        if x.ndim < 2:
            raise ValueError(f"batch_kron: {name} must have at least 2 dimensions "
                             f"(..., rows, columns), got shape {x.shape}")
    try:
        batch_shape = np.broadcast_shapes(*(x.shape[:-2] for x in arrays))
    except ValueError:
        raise ValueError("batch_kron: the leading (batch) axes of the factors do not broadcast: "
                         + ", ".join(str(x.shape[:-2]) for x in arrays)) from None
    result = _batched(arrays, batch_shape, 2, out, "batch_kron")
    if result is None:  # no kernel for these dtypes: numpy's own formulation
        return into_out(_batch_reference(arrays, 2), out, arrays)
    return result


def face_split(a: ArrayLike, b: ArrayLike, *more: ArrayLike, out: np.ndarray | None = None
               ) -> np.ndarray:
    """Row-wise Kronecker (face-splitting) product.

    Parameters
    ----------
    a, b, *more : array_like, shapes ``(I, J)``, ``(I, K)``, ...
        Matrices with the same number of rows.
    out : ndarray, optional
        C-contiguous array of the result's exact shape and dtype, sharing no
        memory with the inputs.

    Returns
    -------
    ndarray, shape ``(I, J*K*...)``
        Row ``i`` is ``np.kron(np.kron(a[i], b[i]), ...)``: the transposed
        Khatri-Rao product of the transposes.  Values and dtype as ``np.kron``.

    Raises
    ------
    ValueError
        If a factor is not 2-D or the row counts differ.

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> kronjit.face_split([[1, 2], [3, 4]], [[1, 10, 100], [2, 20, 200]])
    array([[  1,  10, 100,   2,  20, 200],
           [  6,  60, 600,   8,  80, 800]])
    """
    arrays = _named_arrays((a, b) + more, "face_split")
    _check_matrices(arrays, "face_split", axis=0, what="rows")
    result = _batched(arrays, arrays[0].shape[:1], 1, out, "face_split")
    if result is None:
        return into_out(_batch_reference(arrays, 1), out, arrays)
    return result


def _check_matrices(arrays, func, axis, what):
    for x, name in zip(arrays, _factor_names(len(arrays))):
        if x.ndim != 2:
            raise ValueError(f"{func}: {name} must be 2-dimensional, got shape {x.shape}")
    counts = [x.shape[axis] for x in arrays]
    if len(set(counts)) > 1:
        raise ValueError(f"{func}: the factors must have the same number of {what}, got "
                         + ", ".join(map(str, counts)))


@kernel
def _khatri_rao_fill(flat, rows, base, batches, ncols, fused, out, part, nparts):
    """Column-wise products: ``out`` (1-D, C order) holds ``len(batches)`` matrices of
    ``prod(rows)`` rows and ``ncols`` columns; row ``(i0, i1, ...)`` of batch item ``b`` is
    ``f0[i0] * f1[i1] * ...`` elementwise, factor ``f`` being the ``rows[f] x ncols``
    matrix at ``flat[base[f] + batches[b, f]:]``; products left to right."""
    nfactors = rows.size
    per_batch = 1
    for f in range(nfactors):
        per_batch *= rows[f]
    nrows = per_batch * batches.shape[0]
    r0 = nrows * part // nparts
    r1 = nrows * (part + 1) // nparts
    if r0 >= r1:
        return
    b = r0 // per_batch
    digit = np.empty(nfactors, np.int64)  # row index in each factor: an odometer, no division
    rem = r0 % per_batch
    for f in range(nfactors - 1, -1, -1):
        digit[f] = rem % rows[f]
        rem //= rows[f]
    for row in range(r0, r1):
        # row views: the inner loops index from 0, so LLVM vectorises them as in a plain loop
        target = out[row * ncols:(row + 1) * ncols]
        x = base[0] + batches[b, 0] + digit[0] * ncols
        y = base[1] + batches[b, 1] + digit[1] * ncols
        left, right = flat[x:x + ncols], flat[y:y + ncols]
        for c in range(ncols):
            target[_UINT(c)] = mul(left[_UINT(c)], right[_UINT(c)], fused)
        for f in range(2, nfactors):
            z = base[f] + batches[b, f] + digit[f] * ncols
            right = flat[z:z + ncols]
            for c in range(ncols):
                target[_UINT(c)] = mul(target[_UINT(c)], right[_UINT(c)], fused)
        f = nfactors - 1
        while f >= 0:
            digit[f] += 1
            if digit[f] < rows[f]:
                break
            digit[f] = 0
            f -= 1
        if f < 0:
            b += 1


def khatri_rao(a: ArrayLike, b: ArrayLike, *more: ArrayLike, out: np.ndarray | None = None
               ) -> np.ndarray:
    """Column-wise Kronecker (Khatri-Rao) product; a drop-in for ``scipy.linalg.khatri_rao``.

    Parameters
    ----------
    a, b, *more : array_like, shapes ``(..., I, R)``, ``(..., J, R)``, ...
        Matrices with the same number of columns in the last two axes; leading
        (batch) axes broadcast, as scipy's batched linear algebra does.
    out : ndarray, optional
        C-contiguous array of the result's exact shape and dtype, sharing no
        memory with the inputs.

    Returns
    -------
    ndarray, shape ``(..., I*J*..., R)``
        Column ``r`` is ``np.kron(np.kron(a[:, r], b[:, r]), ...)``.  For two
        factors: the values, dtype and shape ``scipy.linalg.khatri_rao`` gives
        (an empty product has ``a``'s dtype, as there).

    Raises
    ------
    ValueError
        If a factor has fewer than 2 dimensions, the column counts differ, the
        batch axes do not broadcast or their broadcast is empty (as scipy).

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> a = np.array([[1, 2, 3], [4, 5, 6]])
    >>> b = np.array([[3, 4, 5], [6, 7, 8], [2, 3, 9]])
    >>> kronjit.khatri_rao(a, b)
    array([[ 3,  8, 15],
           [ 6, 14, 24],
           [ 2,  6, 27],
           [12, 20, 30],
           [24, 35, 48],
           [ 8, 15, 54]])
    """
    arrays = _named_arrays((a, b) + more, "khatri_rao", numeric=False)  # scipy's errors
    if any(x.ndim < 2 for x in arrays):
        raise ValueError("The both arrays should be 2-dimensional." if not more else
                         "khatri_rao: every factor must have at least 2 dimensions, got shapes "
                         + ", ".join(str(x.shape) for x in arrays))
    if len({x.shape[-1] for x in arrays}) > 1:
        raise ValueError("The number of columns for both arrays should be equal." if not more
                         else "khatri_rao: the factors must have the same number of columns, "
                         "got " + ", ".join(str(x.shape[-1]) for x in arrays))
    batch_shape = np.broadcast_shapes(*(x.shape[:-2] for x in arrays))
    if batch_shape and math.prod(batch_shape) == 0:
        raise ValueError("`khatri_rao` does not support zero-size batches.")
    ncols = arrays[0].shape[-1]
    out_shape = batch_shape + (math.prod(x.shape[-2] for x in arrays), ncols)
    if any(x.size == 0 for x in arrays):  # scipy's answer for empty factors: a's dtype
        return output_array(out_shape, arrays[0].dtype, out, arrays, "khatri_rao output")
    chain = _product_chain(arrays)
    if chain is None:
        reference = arrays[0]
        for x in arrays[1:]:
            prod = reference[..., :, None, :] * x[..., None, :, :]
            reference = prod.reshape(prod.shape[:-3] + (-1, ncols))
        return into_out(reference, out, arrays)
    chain, first_final = chain
    dtype = chain[-1]
    _check_result(out_shape, dtype, out, arrays, {
        "batch offsets": (math.prod(batch_shape) * len(arrays), np.int64)}, "khatri_rao")
    if first_final > 1:
        arrays = [khatri_rao(*arrays[:first_final])] + arrays[first_final:]
    result = out if out is not None else np.empty(out_shape, dtype)
    starts = np.cumsum([0] + [x.size for x in arrays[:-1]], dtype=np.int64)
    rows = np.array([x.shape[-2] for x in arrays], np.int64)
    _khatri_rao_fill(np.concatenate(_flat_inputs(arrays, dtype)), rows, starts,
                     _batch_offsets(arrays, batch_shape, 2), ncols, complex_mul_mode(dtype),
                     _flat_target(result), nbytes=result.nbytes)
    return result
