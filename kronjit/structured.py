"""Block Toeplitz, Hankel, circulant and diagonal matrices (products and solves: ``toeplitz.py``).

Each constructor's output row is a contiguous slice of one small array: with
the distinct blocks stacked as ``V`` (shape ``(L, p, q)``) and regrouped as
``W = V.transpose(1, 0, 2)`` (shape ``(p, L*q)``), row ``a`` of block row
``i`` is ``W[a, s*q : (s+n)*q]`` for a start block ``s = first + step*i``
(scipy's ``as_strided`` trick, block by block).  The kernel copies those
slices in parallel, writing each output element once.  A copy depends on the
dtype's size only, so values are copied as unsigned words: every numeric
dtype is handled exactly and the kernels compile once per word size.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
import scipy.linalg

from ._runtime import kernel
from ._memory import into_out, output_array
from ._validation import as_ndarray

__all__ = ["block_toeplitz", "block_hankel", "block_circulant", "block_diag"]

_U = np.uint64  # unsigned positions: no wraparound checks, so copy loops vectorise


# --- kernels -------------------------------------------------------------------------

@kernel
def _strided_rows(src, p, first, step, block_width, out, part, nparts):
    """``out[i*p + a, :] = src[a, s*block_width : s*block_width + out.shape[1]]``, s = first + step*i."""
    rows, width = out.shape
    for row in range(rows * part // nparts, rows * (part + 1) // nparts):
        i = row // p
        src_row = src[row - i * p]
        out_row = out[row]
        start = _U((first + step * i) * block_width)
        for t in range(_U(width)):
            out_row[t] = src_row[start + t]


@kernel
def _block_segments(x, y, m, x0, xs, y0, ys, first, step, out, part, nparts):
    """Block (i, j) of ``out`` is block ``k = first + step*i + j`` of a stack
    that is ``x[x0 + xs*k]`` for ``k < m`` and ``y[y0 + ys*(k - m)]`` beyond.

    ``x`` and ``y`` are (blocks, p, w) word arrays; ``out`` is (rows, n*w).
    Wide blocks only: each block row is one contiguous copy of w words.
    """
    rows, width = out.shape
    p, w = x.shape[1], x.shape[2]
    n = width // w
    for row in range(rows * part // nparts, rows * (part + 1) // nparts):
        i = row // p
        a = row - i * p
        out_row = out[row]
        k = first + step * i
        for j in range(n):
            if k < m:
                src = x[x0 + xs * k, a]
            else:
                src = y[y0 + ys * (k - m), a]
            offset = _U(j * w)
            for t in range(_U(w)):
                out_row[offset + t] = src[t]
            k += 1


@kernel
def _block_diag_rows(data, row_block, row_start, col_start, block_width, data_start, out,
                     part, nparts):
    """Each output row: zeros, one row of its block (from ``data``), zeros."""
    rows, width = out.shape
    for row in range(rows * part // nparts, rows * (part + 1) // nparts):
        b = row_block[row]
        c0 = _U(col_start[b])
        w = _U(block_width[b])
        src = _U(data_start[b] + (row - row_start[b]) * block_width[b])
        out_row = out[row]
        for t in range(c0):
            out_row[t] = 0
        for t in range(w):
            out_row[c0 + t] = data[src + t]
        for t in range(c0 + w, _U(width)):
            out_row[t] = 0


# --- Python side -----------------------------------------------------------------------

def _gather_blocks(stack, idx):
    """numpy's way: the matrix whose block (i, j) is ``stack[idx[i, j]]`` (gather, then reshape)."""
    (m, n), (p, q) = idx.shape, stack.shape[1:]
    return stack[idx].transpose(0, 2, 1, 3).reshape(m * p, n * q)


def _blocks(x, name):
    """``x`` as an (m, p, q) stack of blocks; 1-D and scalar inputs are 1x1 blocks."""
    arr = as_ndarray(x, name, "an array of equally shaped blocks")
    if arr.ndim <= 1:
        return arr.reshape(-1, 1, 1)
    if arr.ndim == 3:
        return arr
    raise ValueError(
        f"{name} must be an (m, p, q) array of m blocks, or 1-D for 1x1 blocks; got a "
        f"{arr.ndim}-D array of shape {arr.shape}"
        + (f" (2-D is ambiguous: {name}[:, None, None] is a column of 1x1 blocks, "
           f"{name}[None] a single block)" if arr.ndim == 2 else ""))


def _check_block_shape(blocks, expected, name):
    if blocks.shape[1:] != expected:
        raise ValueError(f"{name} has blocks of shape {blocks.shape[1:]}, expected {expected} "
                         "like c's")


def toeplitz_blocks(c: ArrayLike, r: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """(c, r) as block stacks, with r=None the block Hermitian ``r[k] = c[k].conj().T``."""
    cb = _blocks(c, "c")
    if r is None:
        if cb.shape[1] != cb.shape[2]:
            raise ValueError(f"r=None means r[k] = c[k].conj().T, which needs square blocks; "
                             f"c has blocks of shape {cb.shape[1:]}")
        return cb, cb.conj().transpose(0, 2, 1)
    rb = _blocks(r, "r")
    _check_block_shape(rb, cb.shape[1:], "r")
    return cb, rb


def _word_view(arr):
    """A C-contiguous native array viewed as unsigned words of the largest size dividing its items."""
    size = arr.dtype.itemsize
    word = next(w for w in (8, 4, 2, 1) if size % w == 0)
    return arr.view(np.dtype(f"u{word}")), size // word


def _copyable(dtype):
    """Dtypes whose values are their bytes (numbers, datetimes), in native order."""
    return dtype.kind in "biufcmM" and dtype.isnative


# Blocks at least this many words wide are copied straight from the inputs,
# one block row at a time; narrower ones are first regrouped so that each
# output row is a single copy.
_WIDE_BLOCK_WORDS = 16


def _strided_blocks(pieces, m, n, first, step, out, inputs, what):
    """The (m*p, n*q) matrix whose block (i, j) is block ``k = first + step*i + j`` of a stack.

    The stack is given as two pieces ``((x, x0, xs), (y, y0, ys))``: its block
    ``k`` is ``x[x0 + xs*k]`` for ``k < len(x)`` and ``y[y0 + ys*(k - len(x))]``
    beyond, so wide blocks are copied straight from the inputs.
    """
    (x, x0, xs), (y, y0, ys) = pieces
    dtype = np.result_type(x.dtype, y.dtype)
    p, q = x.shape[1:]
    result = output_array((m * p, n * q), dtype, out, inputs, what)
    if result.size == 0:
        return result
    k = np.arange(m + n - 1)
    in_x = k < len(x)
    take = np.where(in_x, x0 + xs * k, y0 + ys * (k - len(x)))  # block of x or of y
    if not _copyable(dtype):  # object, strings, non-native order: numpy's gather
        stack = np.empty((m + n - 1, p, q), dtype)
        stack[in_x], stack[~in_x] = x[take[in_x]], y[take[~in_x]]
        result[...] = _gather_blocks(stack, first + step * np.arange(m)[:, None]
                                    + np.arange(n)[None, :])
        return result
    target, words = _word_view(result)
    if q * words >= _WIDE_BLOCK_WORDS:
        xw = _word_view(np.ascontiguousarray(x, dtype=dtype))[0]
        yw = xw if y is x else _word_view(np.ascontiguousarray(y, dtype=dtype))[0]
        _block_segments(xw, yw, len(x), x0, xs, y0, ys, first, step, target,
                        nbytes=result.nbytes)
        return result
    rows = np.empty((p, m + n - 1, q), dtype)  # row a of every stack block, side by side
    rows[:, in_x] = x[take[in_x]].transpose(1, 0, 2)
    rows[:, ~in_x] = y[take[~in_x]].transpose(1, 0, 2)
    _strided_rows(_word_view(rows.reshape(p, -1))[0], p, first, step, q * words, target,
                  nbytes=result.nbytes)
    return result


def block_toeplitz(c: ArrayLike, r: ArrayLike | None = None, *, out: np.ndarray | None = None
                   ) -> np.ndarray:
    """Block Toeplitz matrix from its first block column and first block row.

    Block (i, j) is ``c[i - j]`` for ``i >= j`` and ``r[j - i]`` otherwise.

    Parameters
    ----------
    c : array_like, shape (m, p, q), or (m,) for 1x1 blocks
        Blocks of the first block column.
    r : array_like, shape (n, p, q), or (n,) for 1x1 blocks, optional
        Blocks of the first block row; ``r[0]`` is ignored (``c[0]`` wins).
        None means ``r[k] = c[k].conj().T`` (block Hermitian; needs square
        blocks).
    out : ndarray, shape (m*p, n*q), optional
        C-contiguous array of the result dtype to write into.

    Returns
    -------
    ndarray, shape (m*p, n*q)
        dtype ``np.result_type(c, r)``.  For 1-D ``c`` and ``r`` this equals
        ``scipy.linalg.toeplitz(c, r)`` bit for bit.

    Raises
    ------
    ValueError
        For ragged blocks, a 2-D or 4-D+ ``c``/``r``, blocks of ``r`` shaped
        unlike ``c``'s, or non-square blocks with ``r=None``.

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> kronjit.block_toeplitz([1, 2, 3], [1, 4, 5, 6])
    array([[1, 4, 5, 6],
           [2, 1, 4, 5],
           [3, 2, 1, 4]])
    >>> c = np.array([np.eye(2), 2 * np.ones((2, 2))])
    >>> kronjit.block_toeplitz(c)
    array([[1., 0., 2., 2.],
           [0., 1., 2., 2.],
           [2., 2., 1., 0.],
           [2., 2., 0., 1.]])
    """
    cb, rb = toeplitz_blocks(c, r)
    m, n = cb.shape[0], rb.shape[0]
    # stack = c reversed, then r[1:]; block (i, j) = stack[m - 1 - i + j]
    return _strided_blocks(((cb, m - 1, -1), (rb, 1, 1)), m, n, m - 1, -1, out, (c, r),
                           "block_toeplitz output")


def block_hankel(c: ArrayLike, r: ArrayLike | None = None, *, out: np.ndarray | None = None
                 ) -> np.ndarray:
    """Block Hankel matrix from its first block column and last block row.

    Block (i, j) is ``c[i + j]`` for ``i + j < m`` and ``r[i + j - m + 1]``
    otherwise.

    Parameters
    ----------
    c : array_like, shape (m, p, q), or (m,) for 1x1 blocks
        Blocks of the first block column.
    r : array_like, shape (n, p, q), or (n,) for 1x1 blocks, optional
        Blocks of the last block row; ``r[0]`` is ignored.  None means m zero
        blocks.
    out : ndarray, shape (m*p, n*q), optional
        C-contiguous array of the result dtype to write into.

    Returns
    -------
    ndarray, shape (m*p, n*q)
        dtype ``np.result_type(c, r)``; for 1-D inputs equal to
        ``scipy.linalg.hankel(c, r)`` bit for bit.

    Examples
    --------
    >>> import kronjit
    >>> kronjit.block_hankel([1, 2, 3], [3, 4, 5])
    array([[1, 2, 3],
           [2, 3, 4],
           [3, 4, 5]])
    """
    cb = _blocks(c, "c")
    if r is None:
        rb = np.zeros_like(cb)
    else:
        rb = _blocks(r, "r")
        _check_block_shape(rb, cb.shape[1:], "r")
    m, n = cb.shape[0], rb.shape[0]
    # stack = c, then r[1:]; block (i, j) = stack[i + j]
    return _strided_blocks(((cb, 0, 1), (rb, 1, 1)), m, n, 0, 1, out, (c, r),
                           "block_hankel output")


def block_circulant(c: ArrayLike, *, out: np.ndarray | None = None) -> np.ndarray:
    """Block circulant matrix: block (i, j) is ``c[(i - j) mod n]``.

    Parameters
    ----------
    c : array_like, shape (n, p, q), or (n,) for 1x1 blocks
        Blocks of the first block column.
    out : ndarray, shape (n*p, n*q), optional
        C-contiguous array of c's dtype to write into.

    Returns
    -------
    ndarray, shape (n*p, n*q)
        For 1-D ``c`` equal to ``scipy.linalg.circulant(c)`` bit for bit.

    Examples
    --------
    >>> import kronjit
    >>> kronjit.block_circulant([1, 2, 3])
    array([[1, 3, 2],
           [2, 1, 3],
           [3, 2, 1]])
    """
    cb = _blocks(c, "c")
    n = cb.shape[0]
    # stack = c reversed, then c[n-1], ..., c[1]; block (i, j) = stack[n - 1 - i + j]
    return _strided_blocks(((cb, n - 1, -1), (cb, n - 1, -1)), n, n, n - 1, -1, out, (c,),
                           "block_circulant output")


def block_diag(*arrs: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
    """Block diagonal matrix, as ``scipy.linalg.block_diag``.

    Parameters
    ----------
    *arrs : array_like
        The diagonal blocks, each up to 2-D (scalars and 1-D arrays are
        rows, as ``np.atleast_2d`` makes them; no argument is one empty
        ``(1, 0)`` block).  Arguments of more dimensions are passed to
        scipy, which treats them as it does (batches in recent versions).
    out : ndarray, optional
        C-contiguous array of the result shape and dtype to write into.

    Returns
    -------
    ndarray, shape (sum of rows, sum of columns)
        dtype ``np.result_type(*arrs)``; zeros off the diagonal blocks.

    Examples
    --------
    >>> import kronjit
    >>> kronjit.block_diag([[1, 2], [3, 4]], 5, [6, 7])
    array([[1, 2, 0, 0, 0],
           [3, 4, 0, 0, 0],
           [0, 0, 5, 0, 0],
           [0, 0, 0, 6, 7]])
    """
    if arrs == ():
        arrs = ([],)
    arrays = [np.atleast_2d(as_ndarray(a, f"block {i}", "an array of equally shaped blocks"))
              for i, a in enumerate(arrs)]
    if any(a.ndim > 2 for a in arrays):
        return into_out(scipy.linalg.block_diag(*arrays), out, arrays)
    dtype = np.result_type(*arrays)
    heights = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    widths = np.array([a.shape[1] for a in arrays], dtype=np.int64)
    shape = (int(heights.sum()), int(widths.sum()))
    result = output_array(shape, dtype, out, arrays, "block_diag output")
    if result.size == 0:
        return result
    if not _copyable(dtype):
        result[...] = np.zeros((), dtype)  # scipy's zeros: '' for strings, 0 for objects
        for a, r0, c0 in zip(arrays, np.cumsum(heights) - heights,
                             np.cumsum(widths) - widths):
            result[r0:r0 + a.shape[0], c0:c0 + a.shape[1]] = a
        return result
    blocks = [_word_view(np.ascontiguousarray(a, dtype=dtype))[0].ravel() for a in arrays]
    target, words = _word_view(result)
    block_width = widths * words
    sizes = np.array([b.size for b in blocks], dtype=np.int64)
    starts = lambda lengths: np.cumsum(lengths) - lengths  # noqa: E731 - exclusive prefix sums
    _block_diag_rows(np.concatenate(blocks), np.repeat(np.arange(len(arrays)), heights),
                     starts(heights), starts(block_width), block_width, starts(sizes),
                     target, nbytes=result.nbytes)
    return result
