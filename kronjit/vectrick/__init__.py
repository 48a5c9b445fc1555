"""The vec-trick: ``kron(A1, ..., Ad) @ x`` without forming the product.

With ``x`` reshaped (C order) to a tensor of shape ``(n1, ..., nd[, k])``,
``kron(A1, ..., Ad) @ x`` applies each factor ``At`` (``mt x nt``) along axis
``t``, in the order that keeps the intermediates smallest; each step reads the
tensor as ``(pre, n, post)`` and writes ``(pre, m, post)``:

* a large dense factor is one GEMM through numpy's BLAS;
* consecutive small dense factors are one fused pass over memory, tile by
  tile in cache;
* a scipy sparse factor is applied row by row with its sparsity;
* identity factors are skipped.

Intermediates ping-pong between at most two work buffers, kept per thread;
the last step writes the result (or ``out``).

The layers, one file each: ``plan.py`` (tuning constants, the grouping and
order of the steps, each step a named tuple of its kernel's arguments),
``kernels.py`` (the jitted code and the BLAS calls), ``product.py``
(``PreparedProduct``: factors checked and classified once, plans kept) and
this module's public function.

Reference: a numpy ``tensordot`` shuffle.  Limits: BLAS GEMM throughput for
large factors, memory bandwidth (one read and one write of the tensor per
fused group) for small ones.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._typing import ArrayLike, MatrixLike
from .product import PreparedProduct, check_factor_list, check_trans

__all__ = ["kron_matvec"]


def kron_matvec(factors: Sequence[MatrixLike], x: ArrayLike, out: np.ndarray | None = None, *,
                trans: str | int = "N") -> np.ndarray:
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
    trans = check_trans(trans)
    return PreparedProduct(check_factor_list(factors)).apply(x, out, trans)
