"""The vec-trick: ``kron(A1, ..., Ad) @ x`` without forming the product.

With ``x`` reshaped (C order) to a tensor of shape ``(n1, ..., nd[, k])``,
``kron(A1, ..., Ad) @ x`` applies each factor ``At`` (``mt x nt``) along axis
``t``.  Factors on different axes commute, so they are applied in the order
that keeps the intermediates smallest (``(m - n) / (m n)`` ascending, an
exchange argument); each step reads the tensor as ``(pre, n, post)`` and
writes ``(pre, m, post)``:

* a large dense factor is one GEMM through numpy's BLAS (``A @ X`` when it is
  the leading axis, ``X @ A.T`` when it is the trailing one, batched
  ``matmul`` in between; when all of three or more factors are large and go
  in axis order, each GEMM takes the leading axis and leaves its output axis
  last, ``Y = X.T @ A.T``, so that none is batched);
* consecutive small dense factors are one fused pass over memory: each thread
  takes tiles of ``(P, lane)`` elements (``P`` the product of the group's
  axes, ``lane`` consecutive positions of ``post``, or, when ``post`` is too
  short to vectorise, whole ``post`` runs of several positions of ``pre``
  gathered side by side), applies every factor of the group inside the tile,
  in cache, and writes the tile out;
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
import operator
import threading

import numpy as np
import scipy.sparse as sp
from numba import njit

from ._arith import muladd
from ._runtime import kernel, max_threads
from ._validation import as_ndarray, check_out, check_sparse, ensure_arrays_allocatable

__all__ = ["kron_matvec"]

_U = np.uint64  # unsigned offsets: no negative-index wraparound, so loops vectorise

#: Dense factors with both dimensions at most this go through the fused kernel;
#: larger ones through BLAS ...
SMALL_FACTOR_MAX = 16
#: ... except those up to MID_FACTOR_MAX on a tensor of at least
#: MID_FUSE_MIN_BYTES, where one BLAS pass over memory per factor costs more
#: than the fused kernel's arithmetic (measured: 32^4 with k = 16 and 24^4
#: 1.6x faster fused; 32^3 and 32x32 with k = 32, 256 KiB, faster by BLAS).
MID_FACTOR_MAX = 32
MID_FUSE_MIN_BYTES = 1 << 21
#: Positions of the vectorised axis per tile, at least LANE.  Where they come
#: straight from ``post`` they double up to LANE_MAX while the group's tile
#: stays in TILE_BYTES and every thread still gets MIN_TILES_PER_THREAD tiles
#: (longer rows amortise each inner loop's setup); where ``post < LANE`` they are
#: GATHER_LANE positions of ``pre`` and ``post`` gathered into the tile, halved
#: while the tile exceeds TILE_BYTES.
LANE = 32
LANE_MAX = 256
GATHER_LANE = 128
MIN_TILES_PER_THREAD = 8
#: Size of one tile buffer (two per thread; 512 KiB rather than 256 gives 32 x 32
#: factor pairs 64 lanes: 32^4 with k = 16 1.13x faster, others unchanged).
TILE_BYTES = 1 << 19
#: Rows (the product of the factors' sizes) of a fused group's tile: at most
#: TILE_BYTES / (GROUP_LANE * itemsize), so that tiles hold GROUP_LANE lanes,
#: except that a group's first two factors may take TILE_BYTES / (LANE *
#: itemsize), and so may all of them on tensors under GROUP_LANE_MIN_BYTES.
#: Fewer factors per pass but longer rows: a pass over a tensor in cache costs
#: less than short rows do (16^5 1.4x, 8^6 1.3x, 2^20 1.2x faster, measured),
#: while two mid-size factors on a big tensor, or a tensor small enough that
#: kernel launches dominate, are faster in one pass.
GROUP_LANE = 256
GROUP_LANE_MIN_BYTES = 1 << 21
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
    ``sum_j F[i, j] * input row (a, j, t)``.  Output rows go four at a time
    (each input lane loaded once feeds four sums) while there are four left.
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
    m4 = m - m % 4 if n >= 4 else 0
    # (uint64 throughout: Numba turns int64 * uint64 into float64)
    step = _U(rows * srs)
    dstep = _U(rows * drs)
    for a in range(left):
        for t in range(rows):
            s0 = _U(sbase + (a * n * rows + t) * srs)
            for i in range(0, m4, 4):
                d0 = _U(dbase + ((a * m + i) * rows + t) * drs)
                _four_rows(src, s0, step, dst, d0, dstep, fdata, off + i * n, n, w)
            for i in range(m4, m):
                d = _U(dbase + ((a * m + i) * rows + t) * drs)
                _one_row(src, s0, step, dst, d, fdata, off + i * n, n, w)


@njit(inline="always")
def _one_row(src, s0, step, dst, d, fdata, fo, n, w):
    """``dst[d:d+w] = sum_j F[i, j] * src[s0 + j*step : +w]``, F's row ``i`` at ``fo``.

    The sum runs over ``j`` in order, one fused multiply-add per term
    (``muladd``); _four_rows rounds exactly the same way.
    """
    n4 = n - n % 4
    s1 = s0 + step
    s2 = s1 + step
    s3 = s2 + step
    f0 = fdata[fo]
    if n >= 4:
        f1 = fdata[fo + 1]
        f2 = fdata[fo + 2]
        f3 = fdata[fo + 3]
        for lane in range(w):
            q = _U(lane)
            dst[d + q] = muladd(f3, src[s3 + q], muladd(f2, src[s2 + q],
                                muladd(f1, src[s1 + q], f0 * src[s0 + q])))
        j0 = 4
    else:
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
            dst[d + q] = muladd(f3, src[sj3 + q], muladd(f2, src[sj2 + q],
                                muladd(f1, src[sj1 + q], muladd(f0, src[sj + q], dst[d + q]))))
    for j in range(max(j0, n4), n):
        f0 = fdata[fo + j]
        sj = s0 + _U(j) * step
        for lane in range(w):
            q = _U(lane)
            dst[d + q] = muladd(f0, src[sj + q], dst[d + q])


@njit(inline="always")
def _four_rows(src, s0, step, dst, d0, dstep, fdata, fo, n, w):
    """_one_row for four consecutive output rows at once (``n >= 4``), in the same
    rounding: a 4 x 4 block of F stays in registers while the lanes stream by."""
    n4 = n - n % 4
    d1 = d0 + dstep
    d2 = d1 + dstep
    d3 = d2 + dstep
    for j in range(0, n4, 4):
        r0 = fo + j
        r1 = r0 + n
        r2 = r1 + n
        r3 = r2 + n
        a00 = fdata[r0]
        a01 = fdata[r0 + 1]
        a02 = fdata[r0 + 2]
        a03 = fdata[r0 + 3]
        a10 = fdata[r1]
        a11 = fdata[r1 + 1]
        a12 = fdata[r1 + 2]
        a13 = fdata[r1 + 3]
        a20 = fdata[r2]
        a21 = fdata[r2 + 1]
        a22 = fdata[r2 + 2]
        a23 = fdata[r2 + 3]
        a30 = fdata[r3]
        a31 = fdata[r3 + 1]
        a32 = fdata[r3 + 2]
        a33 = fdata[r3 + 3]
        sj = s0 + _U(j) * step
        sj1 = sj + step
        sj2 = sj1 + step
        sj3 = sj2 + step
        if j == 0:
            for lane in range(w):
                q = _U(lane)
                x0 = src[sj + q]
                x1 = src[sj1 + q]
                x2 = src[sj2 + q]
                x3 = src[sj3 + q]
                dst[d0 + q] = muladd(a03, x3, muladd(a02, x2, muladd(a01, x1, a00 * x0)))
                dst[d1 + q] = muladd(a13, x3, muladd(a12, x2, muladd(a11, x1, a10 * x0)))
                dst[d2 + q] = muladd(a23, x3, muladd(a22, x2, muladd(a21, x1, a20 * x0)))
                dst[d3 + q] = muladd(a33, x3, muladd(a32, x2, muladd(a31, x1, a30 * x0)))
        else:
            for lane in range(w):
                q = _U(lane)
                x0 = src[sj + q]
                x1 = src[sj1 + q]
                x2 = src[sj2 + q]
                x3 = src[sj3 + q]
                dst[d0 + q] = muladd(a03, x3, muladd(a02, x2, muladd(a01, x1,
                                     muladd(a00, x0, dst[d0 + q]))))
                dst[d1 + q] = muladd(a13, x3, muladd(a12, x2, muladd(a11, x1,
                                     muladd(a10, x0, dst[d1 + q]))))
                dst[d2 + q] = muladd(a23, x3, muladd(a22, x2, muladd(a21, x1,
                                     muladd(a20, x0, dst[d2 + q]))))
                dst[d3 + q] = muladd(a33, x3, muladd(a32, x2, muladd(a31, x1,
                                     muladd(a30, x0, dst[d3 + q]))))
    for j in range(n4, n):
        sj = s0 + _U(j) * step
        f0 = fdata[fo + j]
        f1 = fdata[fo + n + j]
        f2 = fdata[fo + 2 * n + j]
        f3 = fdata[fo + 3 * n + j]
        for lane in range(w):
            q = _U(lane)
            x0 = src[sj + q]
            dst[d0 + q] = muladd(f0, x0, dst[d0 + q])
            dst[d1 + q] = muladd(f1, x0, dst[d1 + q])
            dst[d2 + q] = muladd(f2, x0, dst[d2 + q])
            dst[d3 + q] = muladd(f3, x0, dst[d3 + q])


#: Positions of ``pre`` moved together by the tile gathers: a cache line of the tile.
_GATHER_BLOCK = 8


@njit(inline="always")
def _move_run(x, xs, stride, tb, tr, n, gather):
    """``tb[tr + l] = x[xs + l * stride]`` for ``l < n`` (the reverse if not ``gather``)."""
    for l in range(n):
        if gather:
            tb[tr + _U(l)] = x[xs + _U(l * stride)]
        else:
            x[xs + _U(l * stride)] = tb[tr + _U(l)]


@njit(inline="always")
def _move_tile(x, xb, rows, post, tb, lanes, gather):
    """Gather ``lanes`` consecutive positions of ``pre`` into a tile, their
    ``post`` runs side by side in its rows (or, ``gather`` False, scatter back).

    Position ``l`` of ``pre`` is the ``rows x post`` block of ``x`` at ``xb + l
    * rows * post``; its row ``r`` is ``tb[r * W + l * post : + post]``, ``W =
    lanes * post``, so that each tile row holds ``W`` lanes.  With ``post == 1``
    this is a transpose, done eight positions at a time so that each tile
    access fills a cache line and the eight rows of ``x`` stream side by side.
    """
    wide = lanes * post
    if post == 1:
        for l0 in range(0, lanes, _GATHER_BLOCK):
            nl = min(_GATHER_BLOCK, lanes - l0)
            xl = xb + l0 * rows
            for r in range(rows):
                xs, tr = _U(xl + r), _U(r * wide + l0)
                if nl == _GATHER_BLOCK:  # a constant trip count, unrolled: 4-8% faster
                    _move_run(x, xs, rows, tb, tr, _GATHER_BLOCK, gather)
                else:
                    _move_run(x, xs, rows, tb, tr, nl, gather)
    else:
        for r in range(rows):
            for l in range(lanes):
                _move_run(x, _U(xb + (l * rows + r) * post), 1, tb, _U(r * wide + l * post),
                          post, gather)


@kernel
def _small_group(x, y, pre, post, by_post, lane, fdata, foff, fm, fn, order, tile_elems,
                 part, nparts):
    """Apply the small factors of one group of consecutive axes, tile by tile.

    ``x`` is ``(pre, prod fn, post)`` and ``y`` ``(pre, prod fm, post)``,
    flat.  Factor ``g`` of the group (``fm[g] x fn[g]``, at ``foff[g]`` in
    ``fdata``; ``foff[g] < 0`` marks an identity axis) is applied in the
    order ``order``.  With ``by_post`` (``post >= LANE``) a tile is up to ``lane``
    consecutive positions of ``post`` and the first and last factors read
    ``x`` and write ``y`` in place; otherwise a tile is ``ceil(lane / post)``
    consecutive positions of ``pre``, gathered into the tile's rows and
    scattered back (_move_tile).
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
    if by_post:
        per_row = (post + lane - 1) // lane
        ntiles = pre * per_row
        inner = 1
        wide = lane
    else:
        wide = (lane + post - 1) // post
        ntiles = (pre + wide - 1) // wide
        inner = 1
    t0 = ntiles * part // nparts
    t1 = ntiles * (part + 1) // nparts
    if t0 >= t1:
        return
    bufs = np.empty((2, tile_elems), x.dtype)
    cur = np.empty(ng, np.int64)
    p = 0
    q0 = 0
    p0 = 0
    lanes = 0
    for tile in range(t0, t1):
        for g in range(ng):
            cur[g] = fn[g]
        if by_post:
            p = tile // per_row
            q0 = (tile - p * per_row) * lane
            w = min(lane, post - q0)
            src = x
            sbase = p * p_in * post + q0
            srs = post
        else:
            p0 = tile * wide
            lanes = min(wide, pre - p0)
            w = lanes * post
            tb = bufs[0]
            _move_tile(x, p0 * p_in * post, p_in, post, tb, lanes, True)
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
            _move_tile(y, p0 * p_out * post, p_out, post, src, lanes, False)


@kernel
def _sparse_axis(indptr, indices, data, x, y, pre, n, post, part, nparts):
    """``y[p, i, :] = sum_k data[k] * x[p, indices[k], :]`` over row ``i`` of a CSR factor."""
    m = indptr.size - 1
    nrows = pre * m
    r0 = nrows * part // nparts
    r1 = nrows * (part + 1) // nparts
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
    """One factor as the planner sees it: its kind, shape and data.

    ``kind`` is ``'identity'``, ``'sparse'`` (data: CSR), ``'dense'`` or, once
    a work dtype is known, ``'small'`` (dense, fused by the Numba kernel).
    """
    __slots__ = ("kind", "m", "n", "data")

    def __init__(self, kind, m, n, data):
        self.kind, self.m, self.n, self.data = kind, m, n, data


class _Step:
    """One pass: factors on axes ``axes`` (consecutive), applied together."""
    __slots__ = ("kind", "axes", "factors", "m", "n", "args")

    def __init__(self, kind, axes, factors):
        self.kind, self.axes, self.factors = kind, axes, factors
        self.m = math.prod(f.m for f in factors if f.kind != "identity")
        self.n = math.prod(f.n for f in factors if f.kind != "identity")
        self.args = None  # the kernel's arguments, bound by _Program

    @property
    def key(self):
        return order_key(self.m, self.n)


def order_key(m, n):
    """Sort key of an ``m x n`` factor: applying a before b costs less iff a's key is smaller.

    (Exchange argument: a step costs ``m`` times the current size, and leaves
    it multiplied by ``m / n``.)
    """
    return (m - n) / (m * n) if m and n else 0.0


def _plan(factors, itemsize, native, tensor_bytes):
    """Group the factors into steps and order them (see the module docstring).

    Groups are formed from the last axis back, so that the group on the last
    axes, the one whose ``post`` may be too short to vectorise and whose lanes
    are gathered from ``pre``, is the full one.
    """
    wide_cap = max(TILE_BYTES // (LANE * itemsize), 1)
    long_cap = max(TILE_BYTES // (GROUP_LANE * itemsize), 1)
    if tensor_bytes < GROUP_LANE_MIN_BYTES:
        long_cap = wide_cap
    steps, group = [], []

    def close_group():
        # identities inside a group bridge small factors; at its ends they only
        # shorten the pre/post runs the kernel vectorises over
        while group and group[-1][1].kind == "identity":
            group.pop()
        if group:
            group.reverse()
            steps.append(_Step("small", [a for a, _ in group], [f for _, f in group]))
        group.clear()

    for axis in reversed(range(len(factors))):
        f = factors[axis]
        if native and f.kind in ("small", "identity"):
            if not group and f.kind == "identity":
                continue
            size = math.prod(max(g.m, g.n) for _, g in group) * max(f.m, f.n)
            held = sum(g.kind != "identity" for _, g in group)
            if group and size > (wide_cap if held < 2 else long_cap):
                close_group()
                if f.kind == "identity":
                    continue
            group.append((axis, f))
            continue
        close_group()
        if f.kind != "identity":
            steps.append(_Step(f.kind, [axis], [f]))
    close_group()
    steps.reverse()  # back in axis order, which the stable sort keeps for equal keys
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


class _Program:
    """Everything one product needs for a result dtype and column count, computed once.

    The steps in order with their kernel arguments bound (factors cast to the
    work dtype, small groups packed), the tensor's axis sizes after each step,
    and the work buffer sizes.
    """
    __slots__ = ("dtype", "work", "k", "steps", "sizes_in", "sizes_after", "slot_sizes",
                 "writes_result")

    def __init__(self, factors, dtype, k):
        self.dtype, self.k = dtype, k
        work = self.work = _work_dtype(dtype)
        native = work in _NATIVE
        planned = []
        tensor_bytes = math.prod(f.n for f in factors) * k * work.itemsize
        fuse_max = MID_FACTOR_MAX if tensor_bytes >= MID_FUSE_MIN_BYTES else SMALL_FACTOR_MAX
        for f in factors:
            small = f.kind == "dense" and native and max(f.m, f.n) <= fuse_max
            planned.append(_Factor("small", f.m, f.n, f.data) if small else f)
        if k > 1:
            planned.append(_Factor("identity", k, k, None))
        self.steps = _plan(planned, work.itemsize, native, tensor_bytes)
        # Large dense factors on every axis, applied in axis order: each GEMM takes
        # the leading axis and leaves its output axis last (_rotate_step), so that
        # no step is a batched GEMM over a middle axis (100^3: 4.9 ms for that
        # step, 2.2 ms for the others).
        rotate = (len(self.steps) == len(planned) >= 3
                  and all(s.kind == "dense" for s in self.steps)
                  and [s.axes[0] for s in self.steps] == list(range(len(planned))))
        sizes = self.sizes_in = [f.n for f in planned]
        self.sizes_after = []
        for step in self.steps:
            if rotate:
                (f,) = step.factors
                step.kind = "rotate"
                step.args = (np.asarray(f.data, dtype=work), math.prod(sizes[1:]))
                sizes = sizes[1:] + [f.m]
            else:
                step.args = _bind(step, sizes, work)
                sizes = list(sizes)
                for a, f in zip(step.axes, step.factors):
                    sizes[a] = f.m
            self.sizes_after.append(sizes)
        # step s writes work buffer s % 2, except the last when it can write the result
        self.writes_result = work == dtype
        self.slot_sizes = [0, 0]
        last = len(self.steps) - 1
        for s, sizes in enumerate(self.sizes_after):
            if not (self.writes_result and s == last):
                self.slot_sizes[s % 2] = max(self.slot_sizes[s % 2], math.prod(sizes))


class _Prepared:
    """Factors validated and classified once, with their programs cached.

    ``kron_matvec`` builds one per call; the operators in
    :mod:`kronjit.operators` keep theirs, so repeated products (an iterative
    solver's) skip the validation, identity detection and planning.
    """
    __slots__ = ("factors", "ms", "ns", "dtype", "arrays", "_programs")
    _MAX_PROGRAMS = 8

    def __init__(self, mats):
        self.ms = [f.shape[0] for f in mats]
        self.ns = [f.shape[1] for f in mats]
        self.dtype = np.result_type(*[f.dtype for f in mats])
        self.arrays = list(mats)  # for out='s overlap check: dense and sparse buffers
        self.factors = []
        for f in mats:
            m, n = f.shape
            if _is_identity(f):
                self.factors.append(_Factor("identity", m, n, None))
            elif sp.issparse(f):
                # duplicates need no summing: the kernel adds every entry
                self.factors.append(_Factor("sparse", m, n, f.tocsr()))
            else:
                self.factors.append(_Factor("dense", m, n, f))
        self._programs = {}

    def program(self, dtype, k):
        key = (dtype, k)
        prog = self._programs.get(key)
        if prog is None:
            prog = _Program(self.factors, dtype, k)
            if len(self._programs) >= self._MAX_PROGRAMS:
                self._programs.clear()
            self._programs[key] = prog
        return prog


def _bind(step, sizes, work):
    """The arguments ``_run_step`` passes to the step's kernel, the tensor having ``sizes``."""
    a0, a1 = step.axes[0], step.axes[-1] + 1
    pre = math.prod(sizes[:a0])
    post = math.prod(sizes[a1:])
    if step.kind == "small":
        fs = step.factors
        fdata = np.concatenate([np.asarray(f.data, dtype=work).reshape(-1)
                                for f in fs if f.kind != "identity"])
        foff = np.full(len(fs), -1, np.int64)
        at = 0
        for g, f in enumerate(fs):
            if f.kind != "identity":
                foff[g] = at
                at += f.m * f.n
        fm = np.array([f.m for f in fs], np.int64)
        fn = np.array([f.n for f in fs], np.int64)
        order = np.argsort([order_key(f.m, f.n) for f in fs], kind="stable").astype(np.int64)
        # largest tile of the group, over the order the factors are applied in
        cur = list(fn)
        biggest = math.prod(cur)
        for g in order:
            cur[g] = fm[g]
            biggest = max(biggest, math.prod(cur))
        # (decided here, not in the kernel, which would freeze LANE when compiled)
        # tile elements: lanes of post, or whole post runs of pre positions (no more
        # than there are; an empty tensor never runs a step, post == 0 sizes nothing)
        by_post = post >= LANE
        if by_post:
            lane = LANE
            while (lane < LANE_MAX and 2 * lane * biggest * work.itemsize <= TILE_BYTES
                   and pre * -(-post // (2 * lane)) >= MIN_TILES_PER_THREAD * max_threads()):
                lane *= 2
            tile = biggest * min(lane, post)
        else:
            def gathered(lane):
                return biggest * post * min(-(-lane // max(post, 1)), pre)
            lane = GATHER_LANE
            while lane > LANE and gathered(lane) * work.itemsize > TILE_BYTES:
                lane //= 2
            tile = gathered(lane)
        return (pre, post, by_post, lane, fdata, foff, fm, fn, order, tile)
    (f,) = step.factors
    if step.kind == "sparse":
        if work not in _NATIVE:  # longdouble: scipy's own product, one slab at a time
            return (pre, f.n, post, f.data)
        return (f.data.indptr.astype(np.int64), f.data.indices.astype(np.int64),
                f.data.data.astype(work, copy=False), pre, f.n, post)
    return (np.asarray(f.data, dtype=work), pre, post)


def _run_step(step, x, y):
    nbytes = (x.size + y.size) * x.dtype.itemsize
    if step.kind == "small":
        _small_group(x, y, *step.args, nbytes=nbytes)
    elif step.kind == "sparse":
        if x.dtype not in _NATIVE:
            pre, n, post, csr = step.args
            x3, y3 = x.reshape(pre, n, post), y.reshape(pre, csr.shape[0], post)
            for p in range(pre):
                y3[p] = csr @ x3[p]
        else:
            indptr, indices, data, pre, n, post = step.args
            _sparse_axis(indptr, indices, data, x, y, pre, n, post, nbytes=nbytes)
    elif step.kind == "rotate":
        _rotate_step(x, y, *step.args)
    else:
        _gemm_step(x, y, *step.args)


def _gemm_step(x, y, a, pre, post):
    """``y(pre, m, post) = a @ x(pre, n, post)`` through numpy's matmul (BLAS)."""
    m, n = a.shape
    if pre == 1:
        np.matmul(a, x.reshape(n, post), out=y.reshape(m, post))
    elif post == 1:
        np.matmul(x.reshape(pre, n), a.T, out=y.reshape(pre, m))
    else:
        np.matmul(a, x.reshape(pre, n, post), out=y.reshape(pre, m, post))


def _rotate_step(x, y, a, rest):
    """``y(rest, m) = x(n, rest).T @ a.T``: ``a`` applied to the tensor's leading axis,
    its output axis moved last (BLAS reads both transposes in place).  After one
    such step per axis, in axis order, the axes are back in order."""
    m, n = a.shape
    np.matmul(x.reshape(n, rest).T, a.T, out=y.reshape(rest, m))


def _work_dtype(dtype):
    """The dtype the kernels compute in for a result of ``dtype``."""
    if dtype == np.bool_:
        return np.dtype(np.int64)  # counts of true products; nonzero means True
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype


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


def check_factor(f, name):
    """``f`` as a 2-D numeric ndarray or a checked scipy sparse array; TypeError/ValueError
    naming ``name``."""
    if sp.issparse(f):
        if f.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got a {f.ndim}-D sparse array")
        if f.dtype.kind not in "biufc":
            raise TypeError(f"{name} has dtype {f.dtype}; expected a numeric dtype")
        return check_sparse(f, name)
    f = as_ndarray(f, name)
    if f.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {f.shape}")
    if f.dtype.kind not in "biufc":
        raise TypeError(f"{name} has dtype {f.dtype}; expected a numeric dtype")
    return f


def dense_factor(f):
    """A factor as an ndarray (scipy sparse ones formed)."""
    return f.toarray() if sp.issparse(f) else np.asarray(f)


def transposed(f, trans):
    """``f``, ``f.T`` or ``f.conj().T`` for ``trans`` 'N', 'T' or 'C'."""
    if trans != "N":
        f = f.T
        if trans == "C" and f.dtype.kind == "c":
            f = f.conj()
    return f


def check_vectors(x, name):
    """``x`` as a dense numeric ndarray of shape ``(N,)`` or ``(N, k)``; TypeError or
    ValueError naming ``name`` otherwise."""
    if sp.issparse(x):
        raise TypeError(f"{name} must be a dense array; got a scipy sparse matrix "
                        f"(use {name}.toarray(), or a KronProduct operator)")
    x = as_ndarray(x, name)
    if x.dtype.kind not in "biufc":
        raise TypeError(f"{name} has dtype {x.dtype}; expected a numeric dtype")
    if x.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D of shape (N,) or 2-D of shape (N, k), got shape "
                         f"{x.shape}")
    return x


def check_factor_list(factors, name="factors"):
    """A non-empty list or tuple of factors, each checked by check_factor."""
    if not isinstance(factors, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of 2-D arrays or sparse matrices, "
                        f"got {type(factors).__name__}")
    if len(factors) == 0:
        raise ValueError(f"{name} must hold at least one factor")
    return [check_factor(f, f"{name}[{i}]") for i, f in enumerate(factors)]


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
    try:
        trans = _TRANS[trans]
    except (KeyError, TypeError):
        raise ValueError(f"trans must be 'N', 'T' or 'C', got {trans!r}") from None
    mats = [transposed(f, trans) for f in check_factor_list(factors)]
    return apply_prepared(_Prepared(mats), x, out, trans=trans)


def apply_prepared(prep, x, out=None, *, trans="N"):
    """``kron_matvec`` for factors already checked and prepared (see ``_Prepared``)."""
    x_in = x
    x = check_vectors(x, "x")
    big_n = math.prod(prep.ns)
    if x.shape[0] != big_n:
        raise ValueError(
            f"x has {x.shape[0]} rows, but the factors' column counts {tuple(prep.ns)} multiply "
            f"to {big_n}" + (" (trans='T'/'C' uses the row counts)" if trans != "N" else ""))
    k = x.shape[1] if x.ndim == 2 else 1
    dtype = np.result_type(prep.dtype, x.dtype)
    out_shape = (math.prod(prep.ms),) + x.shape[1:]
    if out is not None:
        check_out(out, out_shape, dtype,
                  {"x": x_in, **{f"factors[{i}]": f for i, f in enumerate(prep.arrays)}})
    prog = prep.program(dtype, k)
    work = prog.work
    need = {}
    if out is None:
        need["result"] = (math.prod(out_shape), dtype)
    for slot, size in enumerate(prog.slot_sizes):
        if size:
            need[f"work buffer {slot + 1}"] = (size, work)
    if x.dtype != work or not x.flags.c_contiguous:
        need["x copy"] = (x.size, work)
    ensure_arrays_allocatable(need, "kron_matvec")
    flat_x = x.reshape(-1) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1)
    result = np.empty(out_shape, dtype) if out is None else out
    if result.size == 0:
        return result
    if big_n == 0 or not prog.steps:
        if big_n == 0:
            result.fill(0)
        else:
            np.copyto(result, x.reshape(out_shape), casting="unsafe")
        return result
    cur = flat_x.astype(work, copy=False)
    final = result.reshape(-1) if prog.writes_result else None
    last = len(prog.steps) - 1
    for s, (step, sizes) in enumerate(zip(prog.steps, prog.sizes_after)):
        if final is not None and s == last:
            dst = final
        else:
            dst = _work_buffer(s % 2, math.prod(sizes), work)
        _run_step(step, cur, dst)
        cur = dst
    if final is None:
        if dtype == np.bool_:
            np.not_equal(cur, 0, out=result.reshape(-1))
        else:
            np.copyto(result.reshape(-1), cur, casting="unsafe")
    return result
