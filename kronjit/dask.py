"""Dask-backed Kronecker kernels, for results larger than one machine's memory.

``pip install kronjit[dask]``.  Every function returns a lazy ``dask.array``
whose chunks are computed on the workers by kronjit's own kernels; the small
inputs (factors, blocks) are shipped to the workers once, as single-chunk
arrays, and nothing large is ever gathered on one node.  The same graphs run
under dask's threaded scheduler, a ``dask.distributed`` ``LocalCluster`` and
a real cluster.

Chunks follow the structure, so that each is one kronjit call (run serially:
dask already runs one task per core):

* ``kron``: a chunk of ``A1 ⊗ ... ⊗ Ad`` covers, along each axis, a range
  of one factor's index with every outer factor's index fixed and every
  inner factor whole; it is ``kronjit.kron`` of sub-blocks of the factors.
* ``block_toeplitz``: a chunk covering block rows ``i0:i1`` and block
  columns ``j0:j1`` is itself block Toeplitz, built by
  ``kronjit.block_toeplitz``.
* ``kron_matvec``: ``x`` is regrouped (``rechunk``, no gather) so that each
  chunk holds whole slabs of the first factor's index; the other factors are
  applied chunk by chunk with ``kronjit.kron_matvec``, and the first one,
  which mixes slabs, by dask's distributed matrix product.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np
from numpy.typing import ArrayLike
import scipy.sparse as sp
from dask.base import tokenize
from dask.layers import ArrayBlockIdDep

from ._runtime import serial_in_this_thread
from ._typing import MatrixLike
from ._validation import as_ndarray
from .dense import kron as _kron
from .structured import block_toeplitz as _block_toeplitz, toeplitz_blocks
from .vectrick import kron_matvec as _kron_matvec
from .vectrick.product import check_factor_list, check_vectors, dense_factor

__all__ = ["kron", "kron_matvec", "block_toeplitz"]


# --- helpers ---------------------------------------------------------------------

def _shipped(arrays):
    """numpy or dask arrays as one Delayed tuple of numpy arrays: a single task that every
    chunk depends on, so each input reaches a worker once, and block indices alone
    decide the chunks (the graph is never materialised chunk by chunk)."""
    parts = [a.rechunk(-1).to_delayed().ravel()[0] if isinstance(a, da.Array)
             else dask.delayed(np.asarray(a), pure=True) for a in arrays]
    return dask.delayed(tuple, pure=True)(parts)


def _lazy_array(func, chunks, dtype, *literals):
    """A dask array whose chunk at block index ``(i, j)`` is ``func((i, j), *literals)``.

    A Blockwise layer over the block indices: constructing it costs what
    ``da.ones`` costs, whatever the number of chunks.
    """
    return da.blockwise(func, "ij", ArrayBlockIdDep(chunks), "ij",
                        *[x for lit in literals for x in (lit, None)],
                        align_arrays=False, concatenate=True, dtype=dtype,
                        meta=np.empty((0, 0), dtype),
                        name=f"kronjit-{func.__name__.strip('_')}-" + tokenize(chunks, *literals))


def _target_chunk(chunks, itemsize, ndim=2):
    """The chunk shape asked for: ``(rows, cols)``, or ``"auto"`` (dask's chunk size)."""
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(f"chunks must be 'auto' or a tuple of {ndim} ints, got {chunks!r}")
        limit = dask.utils.parse_bytes(dask.config.get("array.chunk-size"))
        side = max(1, int(math.sqrt(limit // itemsize)))
        return (side,) * ndim
    try:
        shape = tuple(int(c) for c in chunks)
    except (TypeError, ValueError):
        raise TypeError(f"chunks must be 'auto' or a tuple of {ndim} ints, got {chunks!r}") from None
    if len(shape) != ndim or min(shape) < 1:
        raise ValueError(f"chunks must be 'auto' or a tuple of {ndim} positive ints, got {chunks!r}")
    return shape


class _AxisChunks:
    """Chunks of one axis of ``kron`` with factor sizes ``sizes`` along it.

    A chunk fixes the index of factors ``0..L-1``, takes a run of ``step``
    values of factor ``L``'s and all of the later ones: the outermost ``L``
    whose later factors fit in ``target``.  ``lengths`` are the chunk
    lengths; ``span(c)`` gives chunk ``c``'s ``(start, stop)`` in every
    factor, computed when the chunk is.
    """

    def __init__(self, sizes, target):
        d = len(sizes)
        self.sizes = tuple(sizes)
        self.level = next((t for t in range(d) if math.prod(sizes[t + 1:]) <= target), d - 1)
        inner = math.prod(sizes[self.level + 1:])
        n = sizes[self.level]
        self.step = max(1, min(n, target // max(inner, 1)))
        pieces = tuple((min(s + self.step, n) - s) * inner for s in range(0, n, self.step))
        self.npieces = len(pieces)
        self.lengths = pieces * math.prod(sizes[:self.level])

    def span(self, c):
        prefix, piece = divmod(c, self.npieces)
        outer = np.unravel_index(prefix, self.sizes[:self.level]) if self.level else ()
        start = piece * self.step
        stop = min(start + self.step, self.sizes[self.level])
        return ([(int(i), int(i) + 1) for i in outer] + [(start, stop)]
                + [(0, n) for n in self.sizes[self.level + 1:]])


def _kron_chunk(block_id, factors, rows, cols):
    subs = [f[r0:r1, c0:c1] for f, (r0, r1), (c0, c1)
            in zip(factors, rows.span(block_id[0]), cols.span(block_id[1]))]
    with serial_in_this_thread():  # dask runs one task per core already
        return _kron(*subs) if len(subs) > 1 else np.array(subs[0], copy=True)


# --- kron -------------------------------------------------------------------------

def kron(a: ArrayLike, b: ArrayLike, *more: ArrayLike, chunks: str | tuple = "auto") -> da.Array:
    """``kronjit.kron(a, b, *more)`` as a lazy dask array.

    Parameters
    ----------
    a, b, *more : 2-D array_like or dask arrays
        The factors (small enough for one worker each; the product need not be).
    chunks : "auto" or (int, int)
        Target chunk shape; chunks follow the Kronecker structure (see the
        module docstring), so they are at most this size except where one
        factor's inner block is larger.  "auto" uses dask's
        ``array.chunk-size``.

    Returns
    -------
    dask.array.Array
        Shape ``(prod m_i, prod n_i)``, the dtype ``kronjit.kron`` gives; each
        chunk equals the corresponding block of ``kronjit.kron(a, b, *more)``
        bit for bit.  The graph is lazy: building it costs the same for ten
        chunks or 10^8.

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit.dask
    >>> a, b = np.arange(6.0).reshape(2, 3), np.ones((400, 300))
    >>> big = kronjit.dask.kron(a, b, chunks=(400, 300))
    >>> big.shape, big.numblocks
    ((800, 900), (2, 3))
    >>> bool(float(big.sum().compute()) == a.sum() * b.sum())
    True
    """
    factors = tuple(f if isinstance(f, da.Array) else as_ndarray(f, f"factor {i}")
                    for i, f in enumerate((a, b) + more))
    for i, f in enumerate(factors):
        if np.ndim(f) != 2:
            raise ValueError(f"factor {i} must be 2-D, got shape {np.shape(f)}")
        if np.dtype(f.dtype).kind not in "biufc":
            raise TypeError(f"factor {i} must be a numeric numpy or dask array, got dtype "
                            f"{f.dtype}")
    # kronjit.kron's dtype rule (chained, so intermediate dtypes count), on 1x1 samples
    dtype = _kron(*[np.zeros((1, 1), f.dtype) for f in factors]).dtype
    row_target, col_target = _target_chunk(chunks, dtype.itemsize)
    rows = _AxisChunks([f.shape[0] for f in factors], row_target)
    cols = _AxisChunks([f.shape[1] for f in factors], col_target)
    return _lazy_array(_kron_chunk, (rows.lengths, cols.lengths), dtype, _shipped(factors),
                       rows, cols)


# --- block Toeplitz -------------------------------------------------------------

def _toeplitz_chunk(block_id, blocks, rows_per_chunk, cols_per_chunk, m, n):
    """One chunk of the block Toeplitz matrix of ``blocks = (c, r)``: block rows
    ``i0:i1`` and block columns ``j0:j1``, itself block Toeplitz."""
    cb, rb = blocks
    i0, j0 = block_id[0] * rows_per_chunk, block_id[1] * cols_per_chunk
    i1, j1 = min(i0 + rows_per_chunk, m), min(j0 + cols_per_chunk, n)

    def block(i, j):
        return cb[i - j] if i >= j else rb[j - i]
    c_sub = np.stack([block(i, j0) for i in range(i0, i1)])
    r_sub = np.stack([block(i0, j) for j in range(j0, j1)])
    with serial_in_this_thread():
        return _block_toeplitz(c_sub, r_sub)


def block_toeplitz(c: ArrayLike, r: ArrayLike | None = None, chunks: str | tuple = "auto"
                   ) -> da.Array:
    """``kronjit.block_toeplitz(c, r)`` as a lazy dask array.

    ``c`` and ``r`` as for :func:`kronjit.block_toeplitz` (numpy arrays of
    ``(m, p, q)`` and ``(n, p, q)`` blocks, 1-D for 1x1 blocks, ``r=None``
    block Hermitian).  ``chunks``: "auto" or a target ``(rows, cols)``,
    rounded to whole blocks.  Each chunk is itself block Toeplitz and is
    built by ``kronjit.block_toeplitz`` on a worker; the graph is lazy.

    Examples
    --------
    >>> import numpy as np, scipy.linalg
    >>> import kronjit.dask
    >>> c, r = np.arange(1.0, 7.0), np.arange(10.0, 15.0)
    >>> t = kronjit.dask.block_toeplitz(c, r, chunks=(4, 3))
    >>> bool(np.array_equal(t.compute(), scipy.linalg.toeplitz(c, r)))
    True
    """
    cb, rb = toeplitz_blocks(c, r)
    m, p, q = cb.shape
    n = rb.shape[0]
    dtype = np.result_type(cb, rb)
    row_target, col_target = _target_chunk(chunks, dtype.itemsize)
    kr, kc = max(1, row_target // max(p, 1)), max(1, col_target // max(q, 1))
    lengths = [tuple((min(s + k, total) - s) * size for s in range(0, total, k))
               for k, total, size in ((kr, m, p), (kc, n, q))]
    return _lazy_array(_toeplitz_chunk, tuple(lengths), dtype, _shipped([cb, rb]), kr, kc, m, n)


# --- vec-trick ----------------------------------------------------------------------

def _apply_tail(block, tail, rest, dtype):
    """``(I_c ⊗ tail) @ block`` for a block of ``c`` whole slabs of ``rest`` rows,
    one output slab per row."""
    c = block.shape[0] // rest
    eye = sp.identity(c, dtype=np.bool_, format="csr")
    with serial_in_this_thread():
        y = _kron_matvec([eye, *tail], block)
    return y.astype(dtype, copy=False).reshape(c, -1)


def kron_matvec(factors: Sequence[MatrixLike], x: ArrayLike) -> da.Array:
    """``kronjit.kron_matvec(factors, x)`` for a dask array ``x`` chunked along rows.

    Parameters
    ----------
    factors : list or tuple of 2-D arrays or scipy sparse matrices
        Small: they are shipped to every worker.
    x : dask array (or array_like), shape ``(N,)`` or ``(N, k)``

    Returns
    -------
    dask.array.Array
        Shape ``(M,)`` or ``(M, k)``, the dtype ``kronjit.kron_matvec`` gives.
        Agrees with it to rounding (the first factor's sums are grouped by
        chunk).

    Notes
    -----
    ``x`` is rechunked so that every chunk holds whole slabs ``x[i1, ...]``
    of the first factor's column index (about the chunk size it had); the
    other factors are applied to each chunk where it lies, and the first by
    ``dask.array.matmul``, whose partial products are summed across
    workers.  Nothing is gathered on one node.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import kronjit, kronjit.dask
    >>> rng = np.random.default_rng(0)
    >>> fs = [rng.standard_normal((n, n)) for n in (6, 5, 4)]
    >>> x = da.from_array(rng.standard_normal(120), chunks=40)
    >>> y = kronjit.dask.kron_matvec(fs, x)
    >>> bool(np.allclose(y.compute(), kronjit.kron_matvec(fs, x.compute())))
    True
    """
    mats = check_factor_list(factors)
    if not isinstance(x, da.Array):
        x = da.from_array(check_vectors(x, "x"))
    elif x.ndim not in (1, 2) or np.dtype(x.dtype).kind not in "biufc":
        raise ValueError(f"x must be a numeric dask array of shape (N,) or (N, k), got shape "
                         f"{x.shape} and dtype {x.dtype}")
    ns, ms = [f.shape[1] for f in mats], [f.shape[0] for f in mats]
    if x.shape[0] != math.prod(ns):
        raise ValueError(f"x has {x.shape[0]} rows, but the factors' column counts "
                         f"{tuple(ns)} multiply to {math.prod(ns)}")
    vector = x.ndim == 1
    x2 = x[:, None] if vector else x
    k = x2.shape[1]
    # kron_matvec's dtype rule, on 1x1 samples
    dtype = _kron_matvec([np.zeros((1, 1), f.dtype) for f in mats], np.zeros(1, x.dtype)).dtype
    first, tail = mats[0], mats[1:]
    rest, rest_out = math.prod(ns[1:]), math.prod(ms[1:])
    # chunks of whole slabs, about the size x's first chunk had
    slabs = max(1, round(x2.chunks[0][0] / max(rest, 1))) if x2.chunks[0] else 1
    cuts = [min(slabs, ns[0] - s) for s in range(0, ns[0], slabs)] or [0]
    x2 = x2.rechunk((tuple(c * rest for c in cuts), k))
    # z: one row per slab of the first factor's index, the others applied
    z = x2.map_blocks(_apply_tail, tail, rest, dtype, dtype=dtype,
                      chunks=(tuple(cuts), (rest_out * k,)))
    # the first factor mixes slabs: a distributed product over chunks of the slab
    # index, its output cut into column chunks (whole multiples of k) of about
    # x's chunk size
    width = max(k, (x2.chunks[0][0] * k) // max(ns[0], 1) // k * k)
    z = z.rechunk((tuple(cuts), width))
    a = dense_factor(first)
    ad = da.from_array(a.astype(np.result_type(a.dtype, dtype), copy=False),
                       chunks=(ms[0], tuple(cuts)))
    y = da.matmul(ad, z).astype(dtype)
    y = y.reshape(ms[0], rest_out, k).reshape(ms[0] * rest_out, k)
    return y[:, 0] if vector else y
