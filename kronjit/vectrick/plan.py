"""The vec-trick's plan: which steps, in which order, with which kernel arguments.

A plan is made for factors already classified (``Factor``: identity, sparse,
dense), a result dtype and a column count ``k``.  Factors on different axes
commute, so they are applied in the order that keeps the intermediates
smallest (``order_key``).  Consecutive small dense factors are grouped into one
fused pass (``SmallGroup``); a large dense factor is one GEMM (``Gemm``, or
``RotatedGemm`` when every factor is large and they go in axis order); a
sparse factor is applied with its sparsity (``SparseAxis``).  Each step is a
named tuple of its kernel's arguments with ``bound(factors, work)`` (the step
with the factors' values, cast) and ``run(x, y)``, so the step kind is decided
once, here.

The constants below are the tuning; each states what it was measured against.
"""
import functools
import math
import operator
from typing import NamedTuple

import numpy as np

from .._runtime import max_threads
from .._validation import KERNEL_DTYPES
from .kernels import gemm, rotated_gemm, small_group, small_group_quads, sparse_axis, sparse_slabs

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
#: Size of one tile buffer (two per part; 512 KiB rather than 256 gives 32 x 32
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
#: The group on the last axes, when it gathers its lanes from ``pre`` (``post``
#: shorter than LANE), has at most GATHER_LANE of them: its rows are capped at
#: TILE_BYTES / (GATHER_LANE * itemsize) rather than by GROUP_LANE, when the
#: factor joining it is at least GATHERED_MIN_FACTOR wide (FastKron's 256_8x8^4
#: and 256_8x8^5 in float64 1.2x and 1.5x faster, 10^6 in float32 1.1x; factors
#: of 2 and 4 gained nothing, measured side by side).
GATHERED_MIN_FACTOR = 8

#: Dtypes computed natively (by the kernels and BLAS); bool and float16 go
#: through a wider one (``work_dtype``), others through numpy's matmul alone.
NATIVE_DTYPES = KERNEL_DTYPES - {np.dtype(np.bool_)}


def work_dtype(dtype):
    """The dtype the kernels compute in for a result of ``dtype``."""
    if dtype == np.bool_:
        return np.dtype(np.int64)  # counts of true products; nonzero means True
    if dtype == np.float16:
        return np.dtype(np.float32)
    return dtype


class Factor(NamedTuple):
    """One factor as the planner sees it.

    ``kind`` is ``'identity'`` (``data`` None), ``'sparse'`` (``data`` a CSR
    matrix), ``'dense'`` (an ndarray) or, in a plan, ``'small'`` (dense and
    fused by the jitted kernel).
    """
    kind: str
    m: int
    n: int
    data: object = None


def order_key(m, n):
    """Sort key of an ``m x n`` factor: applying a before b costs less iff a's key is smaller.

    (Exchange argument: a step costs ``m`` times the current size, and leaves
    it multiplied by ``m / n``.)
    """
    return (m - n) / (m * n) if m and n else 0.0


class Group(NamedTuple):
    """Factors on consecutive ``axes`` applied in one step, of one ``kind``
    (``'small'``: fused; ``'dense'``, ``'sparse'``: a single factor)."""
    kind: str
    axes: tuple
    factors: tuple

    @property
    def key(self):
        m = math.prod(f.m for f in self.factors if f.kind != "identity")
        n = math.prod(f.n for f in self.factors if f.kind != "identity")
        return order_key(m, n)


def group_factors(factors, itemsize, native, tensor_bytes):
    """The factors grouped into steps, in the order they are applied.

    Groups are formed from the last axis back, so that the group on the last
    axes, the one whose ``post`` may be too short to vectorise and whose lanes
    are gathered from ``pre``, is the full one.
    """
    wide_cap = max(TILE_BYTES // (LANE * itemsize), 1)
    long_cap = max(TILE_BYTES // (GROUP_LANE * itemsize), 1)
    if tensor_bytes < GROUP_LANE_MIN_BYTES:
        long_cap = wide_cap
    # the first group's post: the trailing identities (k columns)
    post = 1
    for f in reversed(factors):
        if f.kind != "identity":
            break
        post *= f.n
    gathered_cap = long_cap
    if post < LANE:
        gathered_cap = max(long_cap, TILE_BYTES // (GATHER_LANE * itemsize))
    groups, group = [], []

    def close_group():
        # identities inside a group bridge small factors; at its ends they only
        # shorten the pre/post runs the kernel vectorises over
        while group and group[-1][1].kind == "identity":
            group.pop()
        if group:
            group.reverse()
            groups.append(Group("small", tuple(a for a, _ in group), tuple(f for _, f in group)))
        group.clear()

    for axis in reversed(range(len(factors))):
        f = factors[axis]
        if native and f.kind in ("small", "identity"):
            if not group and f.kind == "identity":
                continue
            size = math.prod(max(g.m, g.n) for _, g in group) * max(f.m, f.n)
            held = sum(g.kind != "identity" for _, g in group)
            if held < 2:
                cap = wide_cap
            elif not groups and min(f.m, f.n) >= GATHERED_MIN_FACTOR:
                cap = gathered_cap  # the first group, on the last axes
            else:
                cap = long_cap
            if group and size > cap:
                close_group()
                if f.kind == "identity":
                    continue
            group.append((axis, f))
            continue
        close_group()
        if f.kind != "identity":
            groups.append(Group(f.kind, (axis,), (f,)))
    close_group()
    groups.reverse()  # back in axis order, which the stable sort keeps for equal keys
    groups.sort(key=operator.attrgetter("key"))
    return groups


# --- steps: a kernel and its arguments --------------------------------------------

def _nbytes(x, y):
    return (x.size + y.size) * x.dtype.itemsize


class SmallGroup(NamedTuple):
    """Small dense factors on consecutive axes, fused (``kernels.small_group``)."""
    pre: int
    post: int
    by_post: bool
    lane: int
    fdata: np.ndarray
    foff: np.ndarray
    fm: np.ndarray
    fn: np.ndarray
    order: np.ndarray
    tile_elems: int
    quads: bool  # every factor's rows in fours, four columns or more: small_group_quads

    def bound(self, factors, work):
        fdata = np.concatenate([f.data.ravel() for f in factors], dtype=work, casting="unsafe")
        return SmallGroup(self.pre, self.post, self.by_post, self.lane, fdata, self.foff,
                          self.fm, self.fn, self.order, self.tile_elems, self.quads)

    def run(self, x, y):
        kernel = small_group_quads if self.quads else small_group
        kernel(x, y, self.pre, self.post, self.by_post, self.lane, self.fdata, self.foff,
               self.fm, self.fn, self.order, self.tile_elems, nbytes=_nbytes(x, y))


class SparseAxis(NamedTuple):
    """A CSR factor applied with its sparsity (``kernels.sparse_axis``)."""
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    pre: int
    n: int
    post: int

    def bound(self, factors, work):
        (f,) = factors
        return SparseAxis(f.data.indptr.astype(np.int64), f.data.indices.astype(np.int64),
                          f.data.data.astype(work, copy=False), self.pre, self.n, self.post)

    def run(self, x, y):
        sparse_axis(self.indptr, self.indices, self.data, x, y, self.pre, self.n, self.post,
                    nbytes=_nbytes(x, y))


class SparseSlabs(NamedTuple):
    """A sparse factor in a dtype the kernels do not compute in: scipy's product."""
    csr: object
    pre: int
    n: int
    post: int

    def bound(self, factors, work):
        (f,) = factors
        return self._replace(csr=f.data)

    def run(self, x, y):
        sparse_slabs(x, y, self.csr, self.pre, self.n, self.post)


class Gemm(NamedTuple):
    """A large dense factor, one (possibly batched) GEMM."""
    a: np.ndarray
    pre: int
    post: int

    def bound(self, factors, work):
        (f,) = factors
        return Gemm(np.asarray(f.data, dtype=work), self.pre, self.post)

    def run(self, x, y):
        gemm(x, y, self.a, self.pre, self.post)


class RotatedGemm(NamedTuple):
    """A large dense factor on the leading axis, its output axis moved last."""
    a: np.ndarray
    rest: int

    def bound(self, factors, work):
        (f,) = factors
        return RotatedGemm(np.asarray(f.data, dtype=work), self.rest)

    def run(self, x, y):
        rotated_gemm(x, y, self.a, self.rest)


def _small_group_step(group, pre, post, work, threads):
    """A SmallGroup without its factors' values (``fdata`` None until ``bound``)."""
    fs = group.factors
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
               and pre * -(-post // (2 * lane)) >= MIN_TILES_PER_THREAD * threads):
            lane *= 2
        tile = biggest * min(lane, post)
    else:
        def gathered(lane):
            return biggest * post * min(-(-lane // max(post, 1)), pre)
        lane = GATHER_LANE
        while lane > LANE and gathered(lane) * work.itemsize > TILE_BYTES:
            lane //= 2
        tile = gathered(lane)
    quads = all(f.m % 4 == 0 and f.n >= 4 for f in fs if f.kind != "identity")
    return SmallGroup(pre, post, by_post, lane, None, foff, fm, fn, order, tile, quads)


def _step(group, sizes, work, threads):
    """The step that applies ``group`` to a tensor of axis sizes ``sizes``, without
    its factors' values."""
    pre = math.prod(sizes[:group.axes[0]])
    post = math.prod(sizes[group.axes[-1] + 1:])
    if group.kind == "small":
        return _small_group_step(group, pre, post, work, threads)
    (f,) = group.factors
    if group.kind == "sparse":
        if work not in NATIVE_DTYPES:
            return SparseSlabs(None, pre, f.n, post)
        return SparseAxis(None, None, None, pre, f.n, post)
    return Gemm(None, pre, post)


class Plan(NamedTuple):
    """Everything one product needs for a result dtype and column count.

    ``steps`` run in order; step ``s`` leaves ``sizes_after[s]`` elements and
    writes work buffer ``s % 2``, except the last when ``writes_result`` (the
    work dtype is the result's), which writes the result.  ``slot_sizes`` are
    the two work buffers' sizes.
    """
    work: np.dtype
    steps: tuple
    sizes_after: tuple
    slot_sizes: tuple
    writes_result: bool


def make_plan(factors, dtype, k):
    """The plan for ``factors`` (a sequence of ``Factor``), result ``dtype``, ``k`` columns.

    The steps depend only on the factors' kinds and shapes: they are made once
    per such signature (``layout``, cached) and bound to these factors' values.
    """
    which, unbound = layout(tuple((f.kind, f.m, f.n) for f in factors), dtype, k)
    return bind_plan(unbound, which, factors)


def layout(signature, dtype, k):
    """``(which, plan)`` for factors of ``signature`` (``(kind, m, n)`` each), cached: the
    plan's steps without the factors' values, and for each step the positions of the
    factors it applies (see ``bind_plan``)."""
    return _layout(signature, dtype, k, max_threads())


def bind_plan(unbound, which, factors):
    """``unbound`` (from ``layout``) with each step bound to its factors' values."""
    work = unbound.work
    steps = tuple([step.bound([factors[i] for i in positions], work)
                   for step, positions in zip(unbound.steps, which)])
    return Plan(work, steps, *unbound[2:])


class Call(NamedTuple):
    """What a product does with operands of one signature: ``x``'s length ``cols``, the
    result's shape and dtype, the plan (unbound from ``call_layout``, bound to factor
    values in a product's own), whether ``x`` is cast or made contiguous first, and
    the bytes the call allocates (result included)."""
    cols: int
    out_shape: tuple
    dtype: np.dtype
    which: tuple
    plan: Plan
    x_copy: bool
    nbytes: int


#: Operand signatures whose ``Call`` is kept between products (least recently used
#: first out): the decisions a one-shot ``kron_matvec`` would otherwise make again.
CALL_CACHE_SIZE = 256


@functools.lru_cache(maxsize=CALL_CACHE_SIZE)
def call_layout(signature, factor_dtype, x_dtype, tail, contiguous, threads):
    """The ``Call`` for factors of ``signature`` (``(kind, m, n)`` each, as applied: after
    any transpose) and promoted dtype ``factor_dtype``, on an ``x`` of ``x_dtype``,
    trailing shape ``tail`` and C contiguity ``contiguous``; ``threads`` is
    ``max_threads()``.  Cached: nothing here depends on values."""
    dtype = np.result_type(factor_dtype, x_dtype)
    k = math.prod(tail)
    which, plan = _layout(signature, dtype, k, threads)
    x_copy = x_dtype != plan.work or not contiguous
    cols = math.prod(n for _, _, n in signature)
    out_shape = (math.prod(m for _, m, _ in signature),) + tail
    nbytes = (math.prod(out_shape) * dtype.itemsize
              + (sum(plan.slot_sizes) + (cols * k if x_copy else 0)) * plan.work.itemsize)
    return Call(cols, out_shape, dtype, which, plan, x_copy, nbytes)


def clear_cache():
    """Forget the cached layouts and calls (after a tuning constant changed)."""
    _layout.cache_clear()
    call_layout.cache_clear()


def cache_info():
    """Hits, misses and size of the call cache (``functools.lru_cache``'s)."""
    return call_layout.cache_info()


@functools.lru_cache(maxsize=1024)
def _layout(signature, dtype, k, threads):
    """``(which, plan)`` for factors of ``signature`` (``(kind, m, n)`` each): the plan's
    steps without values, and for each step the positions of the factors it applies."""
    work = work_dtype(dtype)
    native = work in NATIVE_DTYPES
    tensor_bytes = math.prod(n for _, _, n in signature) * k * work.itemsize
    fuse_max = MID_FACTOR_MAX if tensor_bytes >= MID_FUSE_MIN_BYTES else SMALL_FACTOR_MAX
    # a factor's data here is its position, bound to its values by make_plan
    planned = [Factor("small" if kind == "dense" and native and max(m, n) <= fuse_max else kind,
                      m, n, i) for i, (kind, m, n) in enumerate(signature)]
    if k > 1:
        planned.append(Factor("identity", k, k))
    groups = group_factors(planned, work.itemsize, native, tensor_bytes)
    # Large dense factors on every axis, applied in axis order: each GEMM takes
    # the leading axis and leaves its output axis last, so that no step is a
    # batched GEMM over a middle axis (100^3: 4.9 ms for that step, 2.2 ms for
    # the others).
    rotate = (len(groups) == len(planned) >= 3
              and all(g.kind == "dense" for g in groups)
              and [g.axes[0] for g in groups] == list(range(len(planned))))
    sizes = [f.n for f in planned]
    steps, which, sizes_after = [], [], []
    for group in groups:
        which.append(tuple(f.data for f in group.factors if f.kind != "identity"))
        if rotate:
            (f,) = group.factors
            steps.append(RotatedGemm(None, math.prod(sizes[1:])))
            sizes = sizes[1:] + [f.m]
        else:
            steps.append(_step(group, sizes, work, threads))
            sizes = list(sizes)
            for a, f in zip(group.axes, group.factors):
                sizes[a] = f.m
        sizes_after.append(math.prod(sizes))
    writes_result = work == dtype
    slot_sizes = [0, 0]
    last = len(steps) - 1
    for s, size in enumerate(sizes_after):
        if not (writes_result and s == last):
            slot_sizes[s % 2] = max(slot_sizes[s % 2], size)
    return tuple(which), Plan(work, tuple(steps), tuple(sizes_after), tuple(slot_sizes),
                              writes_result)
