"""The vec-trick: ``kron(A1, ..., Ad) @ x`` without forming the product.

With ``x`` reshaped (C order) to a tensor of shape ``(n1, ..., nd[, k])``,
``kron(A1, ..., Ad) @ x`` applies each factor ``At`` (``mt x nt``) along axis
``t``.  Factors on different axes commute, so they are applied in the order
that keeps the intermediates smallest (``(m - n) / (m n)`` ascending, an
exchange argument); each step reads the tensor as ``(pre, n, post)`` and
writes ``(pre, m, post)``:

* a large dense factor is one GEMM through numpy's BLAS (``A @ X`` when it is
  the leading axis, ``X @ A.T`` when it is the trailing one, batched
  ``matmul`` in between);
* consecutive small dense factors are one fused pass over memory: each thread
  takes tiles of ``(P, lane)`` elements (``P`` the product of the group's
  axes, ``lane`` consecutive positions of ``post``, or of ``pre`` transposed
  in when ``post`` is too short to vectorise), applies every factor of the
  group inside the tile, in cache, and writes the tile out;
* a scipy sparse factor is applied row by row with its sparsity;
* identity factors are skipped.

Intermediates ping-pong between at most two work buffers; the last step
writes the result (or ``out``).  Work buffers up to ``WORKSPACE_CACHE_BYTES``
are kept per thread for the next call, so that an iterative solver calling
the product again does not pay for fresh pages each time.

Reference: a numpy ``tensordot`` shuffle.  Limits: BLAS GEMM throughput for
large factors, memory bandwidth (one read and one write of the tensor per
fused group) for small ones.
"""
import math
import numbers
import operator
import threading

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from ._runtime import kernel
from ._validation import check_out, ensure_arrays_allocatable

__all__ = ["kron_matvec"]

_U = np.uint64  # unsigned offsets: no negative-index wraparound, so loops vectorise

#: Dense factors with both dimensions at most this go through the fused kernel;
#: larger ones through BLAS.
SMALL_FACTOR_MAX = 16
#: Positions of the vectorised axis per tile.
LANE = 32
#: Size of one tile buffer.
TILE_BYTES = 1 << 18
#: Work buffers up to this size are kept per thread between calls.
WORKSPACE_CACHE_BYTES = 1 << 26

# Dtypes computed natively (by the kernels and BLAS); others go through a
# wider one or through numpy's matmul alone.
_NATIVE = frozenset(np.dtype(c) for c in "bBhHiIlLqQfdFD")


# --- kernels -----------------------------------------------------------------

@njit(inline="always")
def _apply_factor(src, sbase, srs, dst, dbase, drs, cur, g, inner, w, fdata, off, m, n):
    """Apply one factor along tile axis ``g``.

    The tile's axes have sizes ``cur`` (then ``inner``), and each of its rows
    holds ``w`` lanes: element (row, lane) of ``src`` is at ``sbase + row *
    srs + lane`` (``dst`` likewise).  Output row ``(a, i, t)`` is
    ``sum_j F[i, j] * input row (a, j, t)``.
    """
    left = 1
    for s in range(g):
        left *= cur[s]
    rows = inner
    for s in range(g + 1, cur.size):
        rows *= cur[s]
    if srs == w and drs == w:
        # rows are back to back: the block of ``rows`` rows is one long row
        w = rows * w
        srs = w
        drs = w
        rows = 1
    n4 = n - n % 4
    for a in range(left):
        for i in range(m):
            fo = off + i * n
            for t in range(rows):
                d = _U(dbase + ((a * m + i) * rows + t) * drs)
                s0 = _U(sbase + (a * n * rows + t) * srs)
                step = _U(rows * srs)
                # (uint64 throughout: Numba turns int64 * uint64 into float64)
                s1 = s0 + step
                s2 = s1 + step
                s3 = s2 + step
                # the first up-to-four columns write, later blocks of four add
                if n >= 4:
                    f0 = fdata[fo]
                    f1 = fdata[fo + 1]
                    f2 = fdata[fo + 2]
                    f3 = fdata[fo + 3]
                    for lane in range(w):
                        q = _U(lane)
                        dst[d + q] = ((f0 * src[s0 + q] + f1 * src[s1 + q])
                                      + (f2 * src[s2 + q]
                                         + f3 * src[s3 + q]))
                    j0 = 4
                elif n == 3:
                    f0 = fdata[fo]
                    f1 = fdata[fo + 1]
                    f2 = fdata[fo + 2]
                    for lane in range(w):
                        q = _U(lane)
                        dst[d + q] = ((f0 * src[s0 + q] + f1 * src[s1 + q])
                                      + f2 * src[s2 + q])
                    j0 = 3
                elif n == 2:
                    f0 = fdata[fo]
                    f1 = fdata[fo + 1]
                    for lane in range(w):
                        q = _U(lane)
                        dst[d + q] = f0 * src[s0 + q] + f1 * src[s1 + q]
                    j0 = 2
                else:
                    f0 = fdata[fo]
                    for lane in range(w):
                        q = _U(lane)
                        dst[d + q] = f0 * src[s0 + q]
                    j0 = 1
                for j in range(j0, n4, 4):
                    f0 = fdata[fo + j]
                    f1 = fdata[fo + j + 1]
                    f2 = fdata[fo + j + 2]
                    f3 = fdata[fo + j + 3]
                    sj = s0 + _U(j) * step
                    sj1 = sj + step
                    sj2 = sj1 + step
                    sj3 = sj2 + step
                    for lane in range(w):
                        q = _U(lane)
                        dst[d + q] += ((f0 * src[sj + q] + f1 * src[sj1 + q])
                                       + (f2 * src[sj2 + q]
                                          + f3 * src[sj3 + q]))
                for j in range(max(j0, n4), n):
                    f0 = fdata[fo + j]
                    sj = s0 + _U(j) * step
                    for lane in range(w):
                        q = _U(lane)
                        dst[d + q] += f0 * src[sj + q]


@kernel
def _small_group(x, y, pre, post, fdata, foff, fm, fn, order, tile_elems, nchunks):
    """Apply the small factors of one group of consecutive axes, tile by tile.

    ``x`` is ``(pre, prod fn, post)`` and ``y`` ``(pre, prod fm, post)``,
    flat.  Factor ``g`` of the group (``fm[g] x fn[g]``, at ``foff[g]`` in
    ``fdata``; ``foff[g] < 0`` marks an identity axis) is applied in the
    order ``order``.  With ``post >= LANE`` a tile is ``LANE`` consecutive
    positions of ``post`` and the first and last factors read ``x`` and write
    ``y`` in place; otherwise a tile is ``ceil(LANE / post)`` consecutive
    positions of ``pre``, transposed into the tile and back.
    """
    ng = fn.size
    p_in = 1
    p_out = 1
    for g in range(ng):
        p_in *= fn[g]
        p_out *= fm[g]
    nsteps = 0
    for g in range(ng):
        if foff[g] >= 0:
            nsteps += 1
    by_post = post >= LANE
    if by_post:
        per_row = (post + LANE - 1) // LANE
        ntiles = pre * per_row
        inner = 1
        wide = LANE
    else:
        wide = (LANE + post - 1) // post
        ntiles = (pre + wide - 1) // wide
        inner = post
    for chunk in prange(nchunks):
        t0 = ntiles * chunk // nchunks
        t1 = ntiles * (chunk + 1) // nchunks
        if t0 >= t1:
            continue
        bufs = np.empty((2, tile_elems), x.dtype)
        cur = np.empty(ng, np.int64)
        p = 0
        q0 = 0
        p0 = 0
        for tile in range(t0, t1):
            for g in range(ng):
                cur[g] = fn[g]
            if by_post:
                p = tile // per_row
                q0 = (tile - p * per_row) * LANE
                w = min(LANE, post - q0)
                src = x
                sbase = p * p_in * post + q0
                srs = post
            else:
                p0 = tile * wide
                w = min(wide, pre - p0)
                rows_in = p_in * post
                xb = p0 * rows_in
                tb = bufs[0]
                for lane in range(w):
                    xl = _U(xb + lane * rows_in)
                    for r in range(rows_in):
                        tb[_U(r * w + lane)] = x[xl + _U(r)]
                src = tb
                sbase = 0
                srs = w
            done = 0
            side = 1
            for k in range(ng):
                g = order[k]
                if foff[g] < 0:
                    continue
                done += 1
                if done == nsteps and by_post:
                    dst = y
                    dbase = p * p_out * post + q0
                    drs = post
                else:
                    dst = bufs[side]
                    dbase = 0
                    drs = w
                _apply_factor(src, sbase, srs, dst, dbase, drs, cur, g, inner, w,
                              fdata, foff[g], fm[g], fn[g])
                cur[g] = fm[g]
                src = dst
                sbase = dbase
                srs = drs
                side = 1 - side
            if not by_post:
                rows_out = p_out * post
                yb = p0 * rows_out
                for lane in range(w):
                    yl = _U(yb + lane * rows_out)
                    for r in range(rows_out):
                        y[yl + _U(r)] = src[_U(r * w + lane)]


@kernel
def _sparse_axis(indptr, indices, data, x, y, pre, n, post, nchunks):
    """``y[p, i, :] = sum_k data[k] * x[p, indices[k], :]`` over row ``i`` of a CSR factor."""
    m = indptr.size - 1
    nrows = pre * m
    for chunk in prange(nchunks):
        r0 = nrows * chunk // nchunks
        r1 = nrows * (chunk + 1) // nchunks
        for row in range(r0, r1):
            p = row // m
            i = row - p * m
            d = _U(row * post)
            for q in range(post):
                y[d + _U(q)] = 0
            xb = p * n
            for k in range(indptr[i], indptr[i + 1]):
                v = data[k]
                s = _U((xb + indices[k]) * post)
                for q in range(post):
                    y[d + _U(q)] += v * x[s + _U(q)]


# --- planning ------------------------------------------------------------------

class _Factor:
    """One factor as the planner sees it: its kind, shape and data in the work dtype."""
    __slots__ = ("kind", "m", "n", "data")

    def __init__(self, kind, m, n, data):
        self.kind, self.m, self.n, self.data = kind, m, n, data


class _Step:
    """One pass: factors on axes ``axes`` (consecutive), applied together."""
    __slots__ = ("kind", "axes", "factors", "m", "n")

    def __init__(self, kind, axes, factors):
        self.kind, self.axes, self.factors = kind, axes, factors
        self.m = math.prod(f.m for f in factors if f.kind != "identity")
        self.n = math.prod(f.n for f in factors if f.kind != "identity")

    @property
    def key(self):
        return order_key(self.m, self.n)


def order_key(m, n):
    """Sort key of an ``m x n`` factor: applying a before b costs less iff a's key is smaller.

    (Exchange argument: a step costs ``m`` times the current size, and leaves
    it multiplied by ``m / n``.)
    """
    return (m - n) / (m * n) if m and n else 0.0


def _plan(factors, itemsize, native):
    """Group the factors into steps and order them (see the module docstring)."""
    p_cap = max(TILE_BYTES // (LANE * itemsize), 1)
    steps, group = [], []

    def close_group():
        if any(f.kind == "small" for _, f in group):
            steps.append(_Step("small", [a for a, _ in group], [f for _, f in group]))
        group.clear()

    for axis, f in enumerate(factors):
        groupable = native and f.kind in ("small", "identity")
        if groupable:
            size = math.prod(max(g.m, g.n) for _, g in group) * max(f.m, f.n)
            if group and size > p_cap:
                close_group()
            group.append((axis, f))
            continue
        close_group()
        if f.kind != "identity":
            steps.append(_Step(f.kind, [axis], [f]))
    close_group()
    steps.sort(key=operator.attrgetter("key"))
    return steps


def _is_identity(f):
    m, n = f.shape
    if m != n:
        return False
    if sp.issparse(f):
        f = f.tocsr(copy=True)  # a copy: summing duplicates must not touch the caller's matrix
        f.sum_duplicates()
        return (f.nnz == n and np.array_equal(f.indices, np.arange(n))
                and np.array_equal(f.indptr, np.arange(n + 1)) and bool(np.all(f.data == 1)))
    return np.count_nonzero(f) == n and bool(np.all(np.diagonal(f) == 1))


# --- workspace -------------------------------------------------------------------

_workspace = threading.local()


def _work_buffer(slot, size, dtype):
    """A flat buffer of ``size`` elements, reused from this thread's last call when it fits."""
    cache = getattr(_workspace, "buffers", None)
    if cache is None:
        cache = _workspace.buffers = [None, None]
    nbytes = size * dtype.itemsize
    buf = cache[slot]
    if buf is not None and buf.dtype == dtype and buf.size >= size:
        return buf[:size]
    buf = np.empty(size, dtype)
    cache[slot] = buf if nbytes <= WORKSPACE_CACHE_BYTES else None
    return buf


# --- public function -----------------------------------------------------------

_TRANS = {"N": "N", "T": "T", "C": "C", "H": "C", 0: "N", 1: "T", 2: "C"}


def _as_factor(f, i, trans):
    """Validate factor ``i``; return it (transposed as asked) and its dtype."""
    if sp.issparse(f):
        if f.ndim != 2:
            raise ValueError(f"factors[{i}] must be 2-D, got a {f.ndim}-D sparse array")
    else:
        if not isinstance(f, np.ndarray):
            try:
                f = np.asarray(f)
            except Exception as exc:
                raise TypeError(f"factors[{i}] must be a 2-D array or a scipy sparse matrix, "
                                f"got {type(f).__name__}") from exc
        if f.ndim != 2:
            raise ValueError(f"factors[{i}] must be 2-D, got shape {f.shape}")
        if f.dtype.kind not in "biufc":
            raise TypeError(f"factors[{i}] has dtype {f.dtype}; expected a numeric dtype")
    if trans != "N":
        f = f.T
        if trans == "C" and f.dtype.kind == "c":
            f = f.conj()
    return f


def kron_matvec(factors, x, out=None, *, trans="N"):
    """``kron(A1, ..., Ad) @ x`` without forming the Kronecker product.

    Parameters
    ----------
    factors : sequence of 2-D array_like or scipy sparse arrays/matrices
        The factors ``A1, ..., Ad``, ``At`` of shape ``(mt, nt)``; any number,
        rectangular allowed.  Sparse factors are applied with their sparsity;
        identity factors are detected and skipped.
    x : array_like, shape ``(N,)`` or ``(N, k)``
        ``N = n1 * ... * nd``, the product of the factors' column counts.
        Columns of a 2-D ``x`` are independent right-hand sides.
    out : ndarray, optional
        C-contiguous array of the result's shape and dtype, sharing no memory
        with the inputs; checked before anything is written.
    trans : {'N', 'T', 'C'}, optional
        Compute ``K @ x`` (``'N'``), ``K.T @ x`` (``'T'``) or ``K.conj().T @ x``
        (``'C'``, also ``'H'``), with ``K = kron(*factors)``: the transposed
        products go through the same kernels with the factors transposed.

    Returns
    -------
    ndarray, shape ``(M,)`` or ``(M, k)``
        ``M = m1 * ... * md`` (the row counts; column counts for ``'T'`` and
        ``'C'``).  The dtype is numpy's promotion of the factors' and ``x``'s
        dtypes, as ``kron(*factors) @ x`` gives; float16 is computed in
        float32, bool as integer counts, and longdouble/object through
        numpy's ``matmul``.  Sums are grouped differently from the dense
        product, so results agree with it to rounding, not bit for bit.

    Raises
    ------
    TypeError
        If ``factors`` is not a list or tuple, a factor or ``x`` is not
        numeric, or ``out`` has the wrong dtype.
    ValueError
        If a factor is not 2-D, ``x`` has the wrong length or ndim, or ``out``
        has the wrong shape, layout, or overlaps an input.
    MemoryError
        If the result and the work buffers would not fit in memory.

    Notes
    -----
    The row-major (C order) vec convention is used, the one ``np.kron``
    implies: ``kron(A, B) @ X.ravel() == (A @ X @ B.T).ravel()``.

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = (rng.standard_normal((n, n)) for n in (3, 4, 5))
    >>> x = rng.standard_normal(3 * 4 * 5)
    >>> np.allclose(kronjit.kron_matvec([A, B, C], x), np.kron(np.kron(A, B), C) @ x)
    True
    >>> X = rng.standard_normal((3, 4))
    >>> np.allclose(kronjit.kron_matvec([A, B], X.ravel()), (A @ X @ B.T).ravel())
    True
    """
    if not isinstance(factors, (list, tuple)):
        raise TypeError("factors must be a list or tuple of 2-D arrays or sparse matrices, "
                        f"got {type(factors).__name__}")
    if len(factors) == 0:
        raise ValueError("factors must hold at least one factor")
    try:
        trans = _TRANS[trans]
    except (KeyError, TypeError):
        raise ValueError(f"trans must be 'N', 'T' or 'C', got {trans!r}") from None
    mats = [_as_factor(f, i, trans) for i, f in enumerate(factors)]
    if sp.issparse(x):
        raise TypeError("x must be a dense array; got a scipy sparse matrix "
                        "(use x.toarray(), or a KronProduct operator)")
    x_in = x
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"x must be array_like, got {type(x).__name__}") from exc
    if x.dtype.kind not in "biufc":
        raise TypeError(f"x has dtype {x.dtype}; expected a numeric dtype")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must be 1-D of shape (N,) or 2-D of shape (N, k), got shape "
                         f"{x.shape}")
    ns = [f.shape[1] for f in mats]
    ms = [f.shape[0] for f in mats]
    big_n = math.prod(ns)
    if x.shape[0] != big_n:
        raise ValueError(
            f"x has {x.shape[0]} rows, but the factors' column counts {tuple(ns)} multiply to "
            f"{big_n}" + (" (trans='T'/'C' uses the row counts)" if trans != "N" else ""))
    k = x.shape[1] if x.ndim == 2 else 1
    dtype = np.result_type(*[f.dtype for f in mats], x.dtype)
    out_shape = (math.prod(ms),) + x.shape[1:]
    if out is not None:
        check_out(out, out_shape, dtype, [x_in] + [f for f in factors if isinstance(f, np.ndarray)])
    work = _work_dtype(dtype)
    native = work in _NATIVE
    flat_x = x.reshape(-1) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1)
    plan_factors = []
    for f in mats:
        m, n = f.shape
        if _is_identity(f):
            plan_factors.append(_Factor("identity", m, n, None))
        elif sp.issparse(f):
            plan_factors.append(_Factor("sparse", m, n, f))
        else:
            small = native and m <= SMALL_FACTOR_MAX and n <= SMALL_FACTOR_MAX
            plan_factors.append(_Factor("small" if small else "dense", m, n, f))
    if k > 1:
        plan_factors.append(_Factor("identity", k, k, None))
    steps = _plan(plan_factors, work.itemsize, native)
    # the tensor's axis sizes after each step, sized before anything is allocated
    sizes_after, sizes = [], [f.n for f in plan_factors]
    for step in steps:
        sizes = list(sizes)
        for a, f in zip(step.axes, step.factors):
            sizes[a] = f.m
        sizes_after.append(sizes)
    # step s writes work buffer s % 2, except the last when it can write the result
    writes_result = work == dtype
    slot_sizes = [0, 0]
    for s, sizes in enumerate(sizes_after):
        if not (writes_result and s == len(steps) - 1):
            slot_sizes[s % 2] = max(slot_sizes[s % 2], math.prod(sizes))
    need = {}
    if out is None:
        need["result"] = (math.prod(out_shape), dtype)
    for slot, size in enumerate(slot_sizes):
        if size:
            need[f"work buffer {slot + 1}"] = (size, work)
    if flat_x.dtype != work:
        need["x cast"] = (flat_x.size, work)
    ensure_arrays_allocatable(need, "kron_matvec")
    result = np.empty(out_shape, dtype) if out is None else out
    if result.size == 0:
        return result
    if big_n == 0 or not steps:
        if big_n == 0:
            result.fill(0)
        else:
            np.copyto(result, x.reshape(out_shape), casting="unsafe")
        return result
    cur = flat_x.astype(work, copy=False)
    final = result.reshape(-1) if writes_result else None
    sizes = [f.n for f in plan_factors]
    for s, (step, new_sizes) in enumerate(zip(steps, sizes_after)):
        if final is not None and s == len(steps) - 1:
            dst = final
        else:
            dst = _work_buffer(s % 2, math.prod(new_sizes), work)
        _run_step(step, cur, dst, sizes, work)
        cur, sizes = dst, new_sizes
    if final is None:
        if dtype == np.bool_:
            np.not_equal(cur, 0, out=result.reshape(-1))
        else:
            np.copyto(result.reshape(-1), cur, casting="unsafe")
    return result


def _work_dtype(dtype):
    """The dtype the kernels compute in for a result of ``dtype``."""
    if dtype == np.bool_:
        return np.dtype(np.int64)  # counts of true products; nonzero means True
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype


def _run_step(step, x, y, sizes, work):
    a0, a1 = step.axes[0], step.axes[-1] + 1
    pre = math.prod(sizes[:a0])
    post = math.prod(sizes[a1:])
    if step.kind == "small":
        fs = step.factors
        mats = [f.data for f in fs if f.kind != "identity"]
        fdata = np.concatenate([np.asarray(f, dtype=work).reshape(-1) for f in mats])
        foff = np.full(len(fs), -1, np.int64)
        at = 0
        for g, f in enumerate(fs):
            if f.kind != "identity":
                foff[g] = at
                at += f.m * f.n
        fm = np.array([f.m for f in fs], np.int64)
        fn = np.array([f.n for f in fs], np.int64)
        keys = [order_key(f.m, f.n) for f in fs]
        order = np.argsort(keys, kind="stable").astype(np.int64)
        # largest tile of the group, over the order the factors are applied in
        cur = list(fn)
        biggest = math.prod(cur)
        for g in order:
            cur[g] = fm[g]
            biggest = max(biggest, math.prod(cur))
        if post >= LANE:
            tile = biggest * LANE
        else:
            tile = biggest * post * -(-LANE // post)
        _small_group(x, y, pre, post, fdata, foff, fm, fn, order, tile,
                     nbytes=(x.size + y.size) * work.itemsize)
        return
    (f,) = step.factors
    m, n = f.m, f.n
    if step.kind == "sparse":
        csr = f.data.tocsr()  # duplicates need no summing: the kernel adds every entry
        if work not in _NATIVE:  # longdouble: scipy's own product, one slab at a time
            x3, y3 = x.reshape(pre, n, post), y.reshape(pre, m, post)
            for p in range(pre):
                y3[p] = csr @ x3[p]
            return
        data = csr.data.astype(work, copy=False)
        _sparse_axis(csr.indptr.astype(np.int64), csr.indices.astype(np.int64), data,
                     x, y, pre, n, post, nbytes=(x.size + y.size) * work.itemsize)
        return
    _gemm_step(np.asarray(f.data, dtype=work), x, y, pre, post)


def _gemm_step(a, x, y, pre, post):
    """``y(pre, m, post) = a @ x(pre, n, post)`` through numpy's matmul (BLAS)."""
    m, n = a.shape
    if pre == 1:
        np.matmul(a, x.reshape(n, post), out=y.reshape(m, post))
    elif post == 1:
        np.matmul(x.reshape(pre, n), a.T, out=y.reshape(pre, m))
    else:
        np.matmul(a, x.reshape(pre, n, post), out=y.reshape(pre, m, post))
