"""Matricized tensor times Khatri-Rao product (MTTKRP), without forming the product.

``mttkrp(X, factors, mode)`` is ``unfold(X, mode) @ khatri_rao(*others)``, the
step CP-ALS spends its time in.  The unfolding is C order,
``np.moveaxis(X, mode, 0).reshape(X.shape[mode], -1)`` (tensorly's
convention), so ``others`` are the factors but ``mode``'s, in order.  Formed
naively, the unfolding copies the tensor for every mode but the first and the
Khatri-Rao product has ``prod(shape) / shape[mode]`` rows.  Here neither is
formed: the tensor is read in place, a block at a time (of its second axis;
of its first for ``mode == 0``), and each block meets one factor in a GEMM
(the first factor; the last for ``mode == 0``) that does all the flops; the
other factors are contracted into that result (the block with the
contracted axis's length replaced by R), elementwise in the rank.  Working memory is one such result
(``SLAB_BYTES``), not the Khatri-Rao product.

Reference: tensorly's ``unfolding_dot_khatri_rao``.  Limit: a GEMM of the
same flops (``2 * X.size * R``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._memory import ensure_allocatable
from ._validation import as_ndarray

__all__ = ["mttkrp"]

#: Bytes of the partial result kept per block: large enough for BLAS to run at
#: speed, small against the tensor and the Khatri-Rao product.
SLAB_BYTES = 1 << 23


def _check(X, factors, mode):
    X = as_ndarray(X, "X")
    if X.ndim < 2:
        raise ValueError(f"X must have at least 2 dimensions, got shape {X.shape}")
    if isinstance(mode, bool) or not isinstance(mode, (int, np.integer)):
        raise TypeError(f"mode must be an integer, got {type(mode).__name__}")
    if not -X.ndim <= mode < X.ndim:
        raise ValueError(f"mode {mode} is out of range for X of {X.ndim} dimensions")
    mode = int(mode) % X.ndim
    if isinstance(factors, np.ndarray) or not isinstance(factors, Sequence):
        raise TypeError("factors must be a sequence (list or tuple) of matrices, one per "
                        f"dimension of X, got {type(factors).__name__}")
    if len(factors) != X.ndim:
        raise ValueError(f"factors has {len(factors)} matrices, expected one per dimension of "
                         f"X ({X.ndim}); factors[mode] is ignored and may be None")
    checked = []
    rank = None
    for k, U in enumerate(factors):
        if k == mode:
            checked.append(None)
            continue
        U = as_ndarray(U, f"factors[{k}]")
        if U.ndim != 2 or U.shape[0] != X.shape[k]:
            raise ValueError(f"factors[{k}] must have shape ({X.shape[k]}, R) (X.shape[{k}] rows), "
                             f"got {U.shape}")
        if rank is not None and U.shape[1] != rank:
            raise ValueError(f"factors[{k}] has {U.shape[1]} columns, expected {rank} like the "
                             "factors before it")
        rank = U.shape[1]
        checked.append(U)
    named = [("X", X)] + [(f"factors[{k}]", U) for k, U in enumerate(checked) if U is not None]
    for name, x in named:
        if x.dtype.kind not in "biufc":
            raise TypeError(f"{name} has dtype {x.dtype}; mttkrp takes bool, integer, float or "
                            "complex arrays")
    dtype = np.result_type(*(x.dtype for _, x in named))
    if dtype.kind in "biu":
        dtype = np.dtype(np.float64)
    if dtype not in _COMPUTE_DTYPES:
        raise TypeError(f"mttkrp computes in float32, float64, complex64 or complex128; X "
                        f"({X.dtype}) and the factors promote to {dtype}")
    return X, checked, mode, rank, dtype


_COMPUTE_DTYPES = frozenset(map(np.dtype, (np.float32, np.float64, np.complex64, np.complex128)))


def mttkrp(X: ArrayLike, factors: Sequence[ArrayLike | None], mode: int) -> np.ndarray:
    """Matricized tensor times Khatri-Rao product, without forming either.

    Parameters
    ----------
    X : array_like, shape ``(I_0, ..., I_{N-1})``
        A tensor of 2 or more dimensions.
    factors : sequence of N matrices
        ``factors[k]`` has shape ``(I_k, R)``, the same ``R`` for all;
        ``factors[mode]`` is ignored and may be ``None``.
    mode : int
        The dimension kept (negative counts from the end).

    Returns
    -------
    ndarray, shape ``(I_mode, R)``
        ``np.moveaxis(X, mode, 0).reshape(I_mode, -1) @ khatri_rao(*others)``
        (``others``: the factors but ``factors[mode]``, in order), equal to it
        up to rounding.  dtype: the inputs' result type, integers as float64;
        float32, float64, complex64 or complex128.

    Raises
    ------
    TypeError, ValueError
        Naming the argument: ``X`` of fewer than 2 dimensions, a factor of the
        wrong shape or column count, a ``mode`` out of range, dtypes other than
        real or complex floats (integers are computed in float64).

    Examples
    --------
    CP-ALS sweeps for a rank-3 model of a 3-way tensor:

    >>> import numpy as np
    >>> import kronjit
    >>> rng = np.random.default_rng(0)
    >>> A, B, C = (rng.standard_normal((n, 3)) for n in (10, 12, 14))
    >>> X = np.einsum("ir,jr,kr->ijk", A, B, C)             # a rank-3 tensor
    >>> factors = [rng.standard_normal((n, 3)) for n in X.shape]
    >>> for sweep in range(30):
    ...     for mode in range(3):
    ...         gram = np.ones((3, 3))
    ...         for k, U in enumerate(factors):
    ...             if k != mode:
    ...                 gram *= U.T @ U
    ...         factors[mode] = np.linalg.solve(gram, kronjit.mttkrp(X, factors, mode).T).T
    >>> fit = np.einsum("ir,jr,kr->ijk", *factors)
    >>> bool(np.linalg.norm(fit - X) < 1e-8 * np.linalg.norm(X))
    True
    """
    X, factors, mode, rank, dtype = _check(X, factors, mode)
    shape = X.shape
    ensure_allocatable((shape[mode], rank), dtype, "mttkrp output")
    # computed transposed, (R, I_mode): BLAS runs GEMMs with R rows faster than with R
    # columns (measured with OpenBLAS: 24 ms against 33 ms for 300^3 and R = 32)
    out_t = np.zeros((rank, shape[mode]), dtype)
    if X.size == 0 or rank == 0:
        return out_t.T.copy()
    X = X.astype(dtype, copy=False)
    factors = [None if U is None else U.astype(dtype, copy=False) for U in factors]
    if mode == 0:
        # slabs of the first axis, each times the trailing factors (R x slab rows)
        trailing = X.size // shape[0]
        per_row = rank * (trailing // shape[-1]) * dtype.itemsize
        step = max(1, min(shape[0], SLAB_BYTES // max(1, per_row)))
        for s0 in range(0, shape[0], step):
            s1 = min(shape[0], s0 + step)
            out_t[:, s0:s1] = _contract_after(X[s0:s1].reshape(s1 - s0, trailing), factors[1:],
                                              rank)
        return out_t.T.copy()
    # Otherwise the first factor meets X first, in one GEMM per block of the second axis:
    # (R x I_0) times the block, X's rows as they are (the GEMM shape OpenBLAS runs
    # fastest here); the block's other axes are then contracted with their factors.
    first_t = np.ascontiguousarray(factors[0].T)
    per_index = rank * (X.size // (shape[0] * shape[1])) * dtype.itemsize
    step = max(1, min(shape[1], SLAB_BYTES // max(1, per_index)))
    for j0 in range(0, shape[1], step):
        j1 = min(shape[1], j0 + step)
        partial = first_t @ X[:, j0:j1].reshape(shape[0], -1)
        partial = partial.reshape((rank, j1 - j0) + shape[2:])
        # einsum labels: 0 is the rank, k is X's axis k
        labels = list(range(1, X.ndim))
        for k in reversed(range(2, X.ndim)):
            if k != mode:
                kept = [label for label in labels if label != k]
                if k == labels[-1]:
                    partial = _contract_last(partial, factors[k])
                else:
                    partial = np.einsum(partial, [0, *labels], factors[k], [k, 0], [0, *kept])
                labels = kept
        if mode == 1:
            out_t[:, j0:j1] = partial
        else:
            out_t += np.einsum(partial, [0, 1, mode], factors[1][j0:j1], [1, 0], [0, mode])
    return out_t.T.copy()


def _contract_after(Y, after, rank):
    """The transposed product of ``Y`` (rows, prod of the trailing axes) and the
    Khatri-Rao product of ``after``, shape (R, rows): one GEMM with the last factor, then
    the others contracted one by one."""
    rows = Y.shape[0]
    partial = after[-1].T @ Y.reshape(-1, after[-1].shape[0]).T
    for U in reversed(after[:-1]):
        partial = _contract_last(partial.reshape(rank, -1, U.shape[0]), U)
    return partial.reshape(rank, rows)


def _contract_last(partial, U):
    """``sum_q partial[r, ..., q] * U[q, r]``: one matrix-vector product per rank index
    (a batched matmul, 3x faster here than einsum's reduction along the last axis)."""
    rank = partial.shape[0]
    vectors = np.ascontiguousarray(U.T)[:, :, None]
    return np.matmul(partial.reshape(rank, -1, U.shape[0]), vectors).reshape(partial.shape[:-1])
