"""The vec-trick's kernels: what one step of a plan runs (see ``plan.py``).

* ``small_group``: consecutive small dense factors in one fused pass over
  memory.  Each part takes tiles of ``(P, lane)`` elements (``P`` the product
  of the group's axes, ``lane`` consecutive positions of ``post``, or, when
  ``post`` is too short to vectorise, whole ``post`` runs of several positions
  of ``pre`` gathered side by side), applies every factor of the group inside
  the tile, in cache, and writes the tile out.
* ``sparse_axis``: a CSR factor applied row by row with its sparsity.
* ``gemm`` and ``rotated_gemm``: a large dense factor as one GEMM through
  numpy's BLAS; ``sparse_slabs``: scipy's own sparse product, for dtypes the
  jitted kernels do not compute in.

Every kernel reads the tensor flat, as ``(pre, n, post)``, and writes
``(pre, m, post)``.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import config
from numba.extending import intrinsic, overload

from .._arith import muladd
from .._runtime import kernel

_U = np.uint64  # unsigned offsets: no negative-index wraparound, so loops vectorise


@njit(inline="always")
def _apply_factor(src, sbase, srs, dst, dbase, drs, cur, g, w, fdata, off, m, n, ft, quads):
    """Apply one factor along tile axis ``g``.

    The tile's axes have sizes ``cur``, and each of its rows
    holds ``w`` lanes: element (row, lane) of ``src`` is at ``sbase + row *
    srs + lane`` (``dst`` likewise).  Output row ``(a, i, t)`` is
    ``sum_j F[i, j] * input row (a, j, t)``.  Output rows go four at a time
    (each input lane loaded once feeds four sums) while there are four left.
    A single lane on the tile's last axis goes to _one_lane (``ft`` its scratch);
    with ``quads`` (a constant) ``m`` is a multiple of four and ``n`` at least four.
    """
    left = 1
    for s in range(g):
        left *= cur[s]
    rows = 1
    for s in range(g + 1, cur.size):
        rows *= cur[s]
    if srs == w and drs == w:
        # rows are back to back: the block of ``rows`` rows is one long row
        w = rows * w
        srs = w
        drs = w
        rows = 1
        if w == 1:
            _one_lane(src, sbase, dst, dbase, left, fdata, off, m, n, ft)
            return
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
            if not quads:
                for i in range(m4, m):
                    d = _U(dbase + ((a * m + i) * rows + t) * drs)
                    _one_row(src, s0, step, dst, d, fdata, off + i * n, n, w)


@njit(inline="always")
def _one_lane(src, sbase, dst, dbase, left, fdata, off, m, n, ft):
    """_apply_factor on the tile's last axis when it holds one lane: output row ``a``
    is ``F @ input row a``, vectorised over F's rows ``i`` through ``ft``, F
    transposed, in the same rounding as _one_row (``F[i, 0] * x0``, then one
    fused multiply-add per ``j`` in order)."""
    for j in range(n):
        for i in range(m):
            ft[j * m + i] = fdata[off + i * n + j]
    for a in range(left):
        s = _U(sbase + a * n)
        d = _U(dbase + a * m)
        x0 = src[s]
        for i in range(m):
            dst[d + _U(i)] = ft[i] * x0
        for j in range(1, n):
            xj = src[s + _U(j)]
            fo = _U(j * m)
            for i in range(m):
                dst[d + _U(i)] = muladd(ft[fo + _U(i)], xj, dst[d + _U(i)])


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


#: Positions of ``pre`` moved together by the tile gathers: a cache line of the tile,
#: and the side of ``transpose8``'s blocks.
_GATHER_BLOCK = 8


def transpose8(src, s, ss, dst, d, ds):
    """``dst[d + r * ds + c] = src[s + c * ss + r]`` for ``r, c < 8``: an 8 x 8 block
    transposed.  Jitted, for real and integer elements, it is eight vector loads, a
    shuffle network and eight vector stores (``_transpose8_registers``, in the
    elements' own type, the type the kernel reads the tile back in); this loop for
    complex elements (no faster in vectors) and under NUMBA_BOUNDSCHECK, so that
    checked runs check the blocks' indices too."""
    for r in range(8):
        for c in range(8):
            dst[d + _U(r) * ds + _U(c)] = src[s + _U(c) * ss + _U(r)]


def _shuffle_masks(span):
    """The masks of one stage of the 8 x 8 transpose: rows ``i`` and ``i + span``
    (``i & span == 0``) exchange their blocks of ``span`` columns."""
    low = [8 + c - span if c & span else c for c in range(8)]
    high = [8 + c if c & span else c + span for c in range(8)]
    return low, high


@intrinsic
def _transpose8_registers(typingctx, src, s, ss, dst, d, ds):
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)
            and src.dtype == dst.dtype):
        return None

    def codegen(context, builder, sig, args):
        src_arr, s, ss, dst_arr, d, ds = args
        elem = context.get_data_type(sig.args[0].dtype)
        size = context.get_abi_sizeof(elem)
        vector = ir.VectorType(elem, 8)
        i64 = ir.IntType(64)
        src_data, dst_data = (context.make_array(aty)(context, builder, ary).data
                              for aty, ary in ((sig.args[0], src_arr), (sig.args[3], dst_arr)))

        def row_pointer(data, base, stride, row):
            at = builder.add(base, builder.mul(stride, ir.Constant(i64, row)))
            return builder.bitcast(builder.gep(data, [at]), vector.as_pointer())

        rows = [builder.load(row_pointer(src_data, s, ss, c), align=size) for c in range(8)]
        for span in (4, 2, 1):
            low, high = (ir.Constant(ir.VectorType(ir.IntType(32), 8), m)
                         for m in _shuffle_masks(span))
            for i in range(8):
                if not i & span:
                    a, b = rows[i], rows[i + span]
                    rows[i] = builder.shuffle_vector(a, b, low)
                    rows[i + span] = builder.shuffle_vector(a, b, high)
        for r in range(8):
            builder.store(rows[r], row_pointer(dst_data, d, ds, r), align=size)
        return context.get_dummy_value()
    return types.void(src, types.uint64, types.uint64, dst, types.uint64, types.uint64), codegen


@overload(transpose8)
def _transpose8_impl(src, s, ss, dst, d, ds):
    if config.BOUNDSCHECK or not isinstance(src.dtype, (types.Float, types.Integer)):
        return transpose8

    def impl(src, s, ss, dst, d, ds):
        _transpose8_registers(src, s, ss, dst, d, ds)
    return impl


@njit(inline="always")
def _move_run(x, xs, stride, tb, tr, n, gather):
    """``tb[tr + pos] = x[xs + pos * stride]`` for ``pos < n`` (the reverse if not ``gather``)."""
    for pos in range(n):
        if gather:
            tb[tr + _U(pos)] = x[xs + _U(pos * stride)]
        else:
            x[xs + _U(pos * stride)] = tb[tr + _U(pos)]


@njit(inline="always")
def _move_tile(x, xb, rows, post, tb, lanes, gather):
    """Gather ``lanes`` consecutive positions of ``pre`` into a tile, their
    ``post`` runs side by side in its rows (or, ``gather`` False, scatter back).

    Position ``pos`` of ``pre`` is the ``rows x post`` block of ``x`` at ``xb + pos
    * rows * post``; its row ``r`` is ``tb[r * W + pos * post : + post]``, ``W =
    lanes * post``, so that each tile row holds ``W`` lanes.  With ``post == 1``
    this is a transpose, of 8 x 8 blocks in registers (``transpose8``: 1.2-2.4x
    faster than element by element), the rows left over eight positions at a time
    so that each tile access fills a cache line.
    """
    wide = lanes * post
    if post == 1:
        for l0 in range(0, lanes, _GATHER_BLOCK):
            nl = min(_GATHER_BLOCK, lanes - l0)
            xl = xb + l0 * rows
            blocked = rows - rows % _GATHER_BLOCK if nl == _GATHER_BLOCK else 0
            for r in range(0, blocked, _GATHER_BLOCK):
                if gather:
                    transpose8(x, _U(xl + r), _U(rows), tb, _U(r * wide + l0), _U(wide))
                else:
                    transpose8(tb, _U(r * wide + l0), _U(wide), x, _U(xl + r), _U(rows))
            for r in range(blocked, rows):
                xs, tr = _U(xl + r), _U(r * wide + l0)
                if nl == _GATHER_BLOCK:  # a constant trip count, unrolled: 4-8% faster
                    _move_run(x, xs, rows, tb, tr, _GATHER_BLOCK, gather)
                else:
                    _move_run(x, xs, rows, tb, tr, nl, gather)
    else:
        for r in range(rows):
            for pos in range(lanes):
                _move_run(x, _U(xb + (pos * rows + r) * post), 1, tb, _U(r * wide + pos * post),
                          post, gather)


#: Bound True in ``small_group_quads``, the twin for groups whose factors all have
#: rows in fours and at least four columns: it leaves out _one_row, the remainder
#: rows' loops, and compiles in 3.7 s instead of 4.8.
QUADS = False


@kernel
def small_group(x, y, pre, post, by_post, lane, fdata, foff, fm, fn, order, tile_elems,
                part, nparts):
    """Apply the small factors of one group of consecutive axes, tile by tile.

    ``x`` is ``(pre, prod fn, post)`` and ``y`` ``(pre, prod fm, post)``,
    flat.  Factor ``g`` of the group (``fm[g] x fn[g]``, at ``foff[g]`` in
    ``fdata``; ``foff[g] < 0`` marks an identity axis) is applied in the
    order ``order``.  With ``by_post`` a tile is up to ``lane``
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
        wide = lane
    else:
        wide = (lane + post - 1) // post
        ntiles = (pre + wide - 1) // wide
    t0 = ntiles * part // nparts
    t1 = ntiles * (part + 1) // nparts
    if t0 >= t1:
        return
    bufs = np.empty((2, tile_elems), x.dtype)
    most = 0
    for g in range(ng):
        most = max(most, fm[g] * fn[g])
    ft = np.empty(most, x.dtype)
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
            _apply_factor(src, sbase, srs, dst, dbase, drs, cur, g, w,
                          fdata, foff[g], fm[g], fn[g], ft, QUADS)
            cur[g] = fm[g]
            src = dst
            sbase = dbase
            srs = drs
            side = 1 - side
        if not by_post:
            _move_tile(y, p0 * p_out * post, p_out, post, src, lanes, False)


small_group_quads = small_group.bound("quads", QUADS=True)


@kernel
def sparse_axis(indptr, indices, data, x, y, pre, n, post, part, nparts):
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


def sparse_slabs(x, y, csr, pre, n, post):
    """``sparse_axis`` through scipy's product, one ``(n, post)`` slab at a time."""
    x3, y3 = x.reshape(pre, n, post), y.reshape(pre, csr.shape[0], post)
    for p in range(pre):
        y3[p] = csr @ x3[p]


def gemm(x, y, a, pre, post):
    """``y(pre, m, post) = a @ x(pre, n, post)`` through numpy's matmul (BLAS)."""
    m, n = a.shape
    if pre == 1:
        np.matmul(a, x.reshape(n, post), out=y.reshape(m, post))
    elif post == 1:
        np.matmul(x.reshape(pre, n), a.T, out=y.reshape(pre, m))
    else:
        np.matmul(a, x.reshape(pre, n, post), out=y.reshape(pre, m, post))


def rotated_gemm(x, y, a, rest):
    """``y(rest, m) = x(n, rest).T @ a.T``: ``a`` applied to the tensor's leading axis,
    its output axis moved last (BLAS reads both transposes in place).  After one
    such step per axis, in axis order, the axes are back in order."""
    m, n = a.shape
    np.matmul(x.reshape(n, rest).T, a.T, out=y.reshape(rest, m))
