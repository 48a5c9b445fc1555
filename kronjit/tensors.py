"""Matricized tensor times Khatri-Rao product (MTTKRP), without forming the product.

``mttkrp(X, factors, mode)`` is ``unfold(X, mode) @ khatri_rao(*others)``, the
step CP-ALS spends its time in.  The unfolding is C order,
``np.moveaxis(X, mode, 0).reshape(X.shape[mode], -1)`` (tensorly's
convention), so ``others`` are the factors but ``mode``'s, in order.  Formed
naively, the unfolding copies the tensor for every mode but the first and the
Khatri-Rao product has ``prod(shape) / shape[mode]`` rows.  Here the tensor is
read in place, a slab of its first axis at a time: the slab is multiplied by
the last factor in one GEMM (the flops of the whole MTTKRP), the other
factors are contracted into that smaller result, and the rows of the
Khatri-Rao product of the leading factors are formed for one slab only.

Reference: tensorly's ``unfolding_dot_khatri_rao``.  Limit: a GEMM of the
same flops (``2 * X.size * R``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._memory import ensure_allocatable
from ._validation import as_ndarray
from .dense import khatri_rao

__all__ = ["mttkrp"]

#: Bytes of the partial result kept per slab: large enough for BLAS to run at
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
    before, after = factors[:mode], factors[mode + 1:]
    kept = shape[mode]
    inner = math.prod(shape[1:mode])  # rows of a slab between its first axis and ``mode``
    trailing = math.prod(shape[mode + 1:])
    # slab of the first axis whose partial result (R x rows) stays near SLAB_BYTES
    if mode == 0:
        rows_per_item = trailing // shape[-1]
    elif after:
        rows_per_item = inner * kept * (trailing // shape[-1])
    else:
        rows_per_item = inner  # rows of the leading factors' Khatri-Rao product
    step = max(1, min(shape[0], SLAB_BYTES // max(1, rows_per_item * rank * dtype.itemsize)))
    for s0 in range(0, shape[0], step):
        s1 = min(shape[0], s0 + step)
        slab = X[s0:s1]
        if mode == 0:
            out_t[:, s0:s1] = _contract_after(slab.reshape(s1 - s0, trailing), after, rank)
            continue
        # rows of the Khatri-Rao product of the leading factors, for this slab only
        lead = before[0][s0:s1] if mode == 1 else khatri_rao(before[0][s0:s1], *before[1:])
        if not after:  # mode is the last axis: one GEMM against those rows
            out_t += lead.T @ slab.reshape(-1, kept)
        else:
            partial = _contract_after(slab.reshape(-1, trailing), after, rank)
            out_t += np.einsum("rpi,pr->ri", partial.reshape(rank, lead.shape[0], kept), lead)
    return out_t.T.copy()


def _contract_after(Y, after, rank):
    """The transposed product of ``Y`` (rows, prod of the trailing axes) and the
    Khatri-Rao product of ``after``, shape (R, rows): one GEMM with the last factor, then
    the others contracted one by one."""
    rows = Y.shape[0]
    partial = after[-1].T @ Y.reshape(-1, after[-1].shape[0]).T
    for U in reversed(after[:-1]):
        partial = np.einsum("rxq,qr->rx", partial.reshape(rank, -1, U.shape[0]), U)
    return partial.reshape(rank, rows)
