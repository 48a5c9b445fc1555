"""Toeplitz products and solves: scalar, block and multilevel, as functions and
operators (``BlockToeplitz``, ``MultilevelToeplitz``).

``solve_toeplitz`` and ``matmul_toeplitz`` are drop-ins for scipy's (1-D
``c`` and ``r``: same results to rounding, same dtypes, shapes and errors)
that also take blocks: ``c`` of shape ``(m, p, q)`` is the first block column
of ``block_toeplitz(c, r)``.

* Solves run the block Levinson recursion (Whittle; Levinson-Wiggins-Robinson):
  forward and backward predictors ``F``, ``B`` with ``T_n F = e_1`` and
  ``T_n B = e_n`` grow one block at a time, and every right-hand side is
  updated in the same pass, ``O(m^2 p^3 + m^2 p^2 k)`` time and
  ``O(m p^2 + m p k)`` memory.  The predictors' error terms give the
  determinant: with ``S_1 = T_0`` and ``S_{n+1} = (I - e_f e_b) S_n``,
  ``det T = prod det S_n``.  Like scipy's Levinson, the recursion needs every
  leading block principal submatrix to be nonsingular (it raises
  ``LinAlgError`` when one is exactly singular) and is not backward stable
  for indefinite matrices; for Hermitian positive definite ones (covariances)
  it is.
* Products embed the matrix in a block circulant one (a d-level circulant one
  for ``MultilevelToeplitz``) and multiply by FFT.

References: ``scipy.linalg.solve_toeplitz`` (scalar Levinson, one column at a
time), ``scipy.linalg.solve`` or a dense Cholesky on the formed matrix,
``scipy.linalg.matmul_toeplitz``, ``scipy.signal.fftconvolve``.  Limits: a
same-flop GEMM for the solves (the recursion runs on one core, step after
step); the products are FFT-bound.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg
from numpy.typing import ArrayLike
from scipy.sparse.linalg import LinearOperator

from ._runtime import get_num_threads, serial_kernel, small_lapack
from ._memory import ensure_allocatable
from ._validation import as_ndarray
from .operators import logdet_from_slogdet
from .structured import block_toeplitz, toeplitz_blocks

__all__ = ["solve_toeplitz", "matmul_toeplitz", "block_toeplitz_matvec", "BlockToeplitz",
           "MultilevelToeplitz"]

#: Blocks from this order on are solved with GEMMs per step (``_levinson_gemm``),
#: smaller ones by the jitted loops.  Measured (general blocks, one right-hand side):
#: 8x8, m = 512, 72 ms by GEMMs against 70 ms jitted (the crossover); 6x6, m = 512,
#: 42 against 31 ms; 4x4, m = 1024, 77 against 32 ms.
GEMM_BLOCK_MIN = 8


# --- kernels -------------------------------------------------------------------------

@serial_kernel
def _dot(a, a0, b, b0, n):
    """``sum(a[a0:a0+n] * b[b0:b0+n])`` with four running sums (a fixed grouping: the
    same result on every machine and thread count, four times the throughput of one
    dependent chain)."""
    s0 = s1 = s2 = s3 = a[0] * 0
    i = 0
    while i + 4 <= n:
        s0 += a[a0 + i] * b[b0 + i]
        s1 += a[a0 + i + 1] * b[b0 + i + 1]
        s2 += a[a0 + i + 2] * b[b0 + i + 2]
        s3 += a[a0 + i + 3] * b[b0 + i + 3]
        i += 4
    while i < n:
        s0 += a[a0 + i] * b[b0 + i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@serial_kernel
def _levinson_scalar(crev, r, b, x, logdet):
    """Solve the Toeplitz system with first column ``c`` and first row ``r`` for every
    column of ``b`` (``(m, k)``) into ``x`` (zeros, ``(m, k)``).

    ``crev[i] = c[m - 1 - i]``, so that ``sum_j c[n-j] f[j]`` is a forward dot
    product.  ``logdet`` receives ``log|det T|`` and the sign (or phase) of
    ``det T``.  Returns -1, or the order of the first leading principal
    submatrix found singular.
    """
    m, k = b.shape
    f = np.zeros(m, crev.dtype)  # forward predictor: T_n f = e_1
    bs = np.zeros(m + 1, crev.dtype)  # bs[j + 1] = backward predictor: T_n bk = e_n
    c0 = crev[m - 1]
    if c0 == 0:
        return 1
    f[0] = 1 / c0
    bs[1] = f[0]
    logabs = np.log(np.abs(c0))
    phase = c0 / np.abs(c0)
    s_abs, s_phase = np.abs(c0), phase  # |S_n| and its phase, S_1 = c0
    for q in range(k):
        x[0, q] = f[0] * b[0, q]
    for n in range(1, m):
        ef = _dot(f, 0, crev, m - 1 - n, n)  # sum_j c[n-j] f[j]
        eb = _dot(bs, 1, r, 1, n)  # sum_j r[j+1] bk[j]
        d = 1 - ef * eb
        if d == 0:
            return n + 1
        alpha = 1 / d
        beta, gamma = -ef * alpha, -eb * alpha
        # new f[j] = f[j] alpha + bk[j-1] beta, new bk[j] = f[j] gamma + bk[j-1] alpha,
        # j from n down, so that bs[j] (old bk[j-1]) is read before bs[j+1] is written
        for j in range(n, -1, -1):
            fj, bj = f[j], bs[j]
            f[j] = fj * alpha + bj * beta
            bs[j + 1] = fj * gamma + bj * alpha
        if k == 1:
            rho = b[n, 0] - _dot(x[:, 0], 0, crev, m - 1 - n, n)
            for j in range(n + 1):
                x[j, 0] += bs[j + 1] * rho
        else:
            rho = b[n].copy()
            for j in range(n):
                cj = crev[m - 1 - n + j]
                for q in range(k):
                    rho[q] -= cj * x[j, q]
            for j in range(n + 1):
                bj = bs[j + 1]
                for q in range(k):
                    x[j, q] += bj * rho[q]
        s_abs *= np.abs(d)
        s_phase *= d / np.abs(d)
        logabs += np.log(s_abs)
        phase *= s_phase
    logdet[0] = logabs
    logdet[1] = phase
    return -1


@serial_kernel
def _small_inverse(a, out):
    """``out = inv(a)`` for a small square block by Gauss-Jordan elimination with
    partial pivoting; returns ``(log|det a|, phase of det a)``, or ``(nan, 0)`` if
    a pivot is exactly zero (``a`` singular)."""
    p = a.shape[0]
    w = a.copy()
    out[:] = 0
    for i in range(p):
        out[i, i] = 1
    logabs = 0.0
    phase = w[0, 0] * 0 + 1
    for col in range(p):
        piv = col
        for i in range(col + 1, p):
            if np.abs(w[i, col]) > np.abs(w[piv, col]):
                piv = i
        v = w[piv, col]
        if v == 0:
            return np.nan, phase * 0
        if piv != col:
            phase = -phase
            for t in range(p):
                w[col, t], w[piv, t] = w[piv, t], w[col, t]
                out[col, t], out[piv, t] = out[piv, t], out[col, t]
        logabs += np.log(np.abs(v))
        phase *= v / np.abs(v)
        inv = 1 / v
        for t in range(p):
            w[col, t] *= inv
            out[col, t] *= inv
        for i in range(p):
            if i != col:
                g = w[i, col]
                if g != 0:
                    for t in range(p):
                        w[i, t] -= g * w[col, t]
                        out[i, t] -= g * out[col, t]
    return logabs, phase


@serial_kernel
def _levinson_blocks(cr, rr, b, x, logdet, hermitian, persymmetric):
    """The block recursion, every array indexed ``[row, column, block]`` so that each
    inner loop runs along the block index (long, contiguous: dot products, through
    BLAS's, and axpys, however small the blocks).

    ``cr[:, :, s]`` is block ``c[m-1-s]`` (reversed: ``sum_j c[n-j] F_j`` is a forward
    dot product), ``rr[:, :, s]`` is ``r[s]``; ``b`` and ``x`` are ``(p, k, m)``.
    Same contract as ``_levinson_scalar``; returns the block order of the first
    singular leading block principal submatrix, or -1.

    For a Hermitian matrix the backward error comes from the forward one:
    ``[0; B]^H T [F; 0]`` is both ``B_{n-1}^H e_f`` and ``e_b^H F_0``, so
    ``e_b = F_0^-H e_f^H B_{n-1}`` (``O(p^3)`` instead of ``O(n p^3)``).  When
    ``r[k] = c[k]`` (``persymmetric``: the matrix equals itself with its block order
    reversed, as a covariance with symmetric blocks does) the backward predictor is
    the forward one reversed, ``B_j = F_{n-1-j}``, so ``e_b = e_f`` and only ``F`` is
    updated: half the work.
    """
    p, _, m = cr.shape
    k = b.shape[1]
    dt = cr.dtype
    f, f2 = np.zeros((p, p, m + 1), dt), np.zeros((p, p, m + 1), dt)  # F_j at [:, :, j]
    bs, bs2 = np.zeros((p, p, m + 1), dt), np.zeros((p, p, m + 1), dt)  # B_j at [:, :, j+1]
    ef, eb = np.empty((p, p), dt), np.empty((p, p), dt)
    ma, md = np.empty((p, p), dt), np.empty((p, p), dt)
    alpha, beta = np.empty((p, p), dt), np.empty((p, p), dt)
    gamma, delta = np.empty((p, p), dt), np.empty((p, p), dt)
    rho = np.empty((p, k), dt)
    f0, f0inv, tmp = np.empty((p, p), dt), np.empty((p, p), dt), np.empty((p, p), dt)
    c0, inv0 = np.ascontiguousarray(cr[:, :, m - 1]), np.empty((p, p), dt)
    logabs, phase = _small_inverse(c0, inv0)
    if np.isnan(logabs):
        return 1
    s_abs, s_phase = logabs, phase  # log|det S_n| and its phase
    for a in range(p):
        for t in range(p):
            f[a, t, 0] = bs[a, t, 1] = inv0[a, t]
        for q in range(k):
            acc = inv0[a, 0] * 0
            for cc in range(p):
                acc += inv0[a, cc] * b[cc, q, 0]
            x[a, q, 0] = acc
    for n in range(1, m):
        off = m - 1 - n
        for a in range(p):
            for t in range(p):
                sf = se = inv0[0, 0] * 0
                for cc in range(p):
                    sf += np.dot(cr[a, cc, off:off + n], f[cc, t, :n])  # sum_j c[n-j] F_j
                    if not (hermitian or persymmetric):
                        se += np.dot(rr[a, cc, 1:n + 1], bs[cc, t, 1:n + 1])  # sum_j r[j+1] B_j
                ef[a, t], eb[a, t] = sf, se
        if persymmetric:
            eb[:] = ef
        elif hermitian:  # eb = F_0^-H ef^H B_{n-1}
            for a in range(p):
                for t in range(p):
                    f0[a, t] = f[a, t, 0]
            _small_inverse(f0, f0inv)
            for a in range(p):
                for t in range(p):
                    acc = inv0[0, 0] * 0
                    for cc in range(p):
                        acc += np.conj(ef[cc, a]) * bs[cc, t, n]
                    tmp[a, t] = acc
            for a in range(p):
                for t in range(p):
                    acc = inv0[0, 0] * 0
                    for cc in range(p):
                        acc += np.conj(f0inv[cc, a]) * tmp[cc, t]
                    eb[a, t] = acc
        for a in range(p):  # I - eb ef and I - ef eb
            for t in range(p):
                sa = sd = inv0[0, 0] * 0
                for cc in range(p):
                    sa += eb[a, cc] * ef[cc, t]
                    sd += ef[a, cc] * eb[cc, t]
                ident = 1 if a == t else 0
                ma[a, t] = ident - sa
                md[a, t] = ident - sd
        la, _ = _small_inverse(ma, alpha)
        ld, pd = _small_inverse(md, delta)
        if np.isnan(la) or np.isnan(ld):
            return n + 1
        for a in range(p):  # beta = -ef alpha, gamma = -eb delta
            for t in range(p):
                sb = sg = inv0[0, 0] * 0
                for cc in range(p):
                    sb += ef[a, cc] * alpha[cc, t]
                    sg += eb[a, cc] * delta[cc, t]
                beta[a, t] = -sb
                gamma[a, t] = -sg
        # F'_j = F_j alpha + B_{j-1} beta, B'_j = F_j gamma + B_{j-1} delta, j = 0..n
        for a in range(p):
            for t in range(p):
                fo, bo = f2[a, t], bs2[a, t]
                bo[0] = 0
                if persymmetric:  # B_{j-1} = F_{n-j}; B' is F' reversed
                    for cc in range(p):
                        fi, al, be = f[a, cc], alpha[cc, t], beta[cc, t]
                        if cc == 0:
                            for j in range(n + 1):
                                fo[j] = fi[j] * al + fi[n - j] * be
                        else:
                            for j in range(n + 1):
                                fo[j] += fi[j] * al + fi[n - j] * be
                    for j in range(n + 1):
                        bo[j + 1] = fo[n - j]
                    continue
                for cc in range(p):
                    fi, bi = f[a, cc], bs[a, cc]
                    al, be, ga, de = alpha[cc, t], beta[cc, t], gamma[cc, t], delta[cc, t]
                    if cc == 0:  # the first term assigns: no zeroing pass
                        for j in range(n + 1):
                            fo[j] = fi[j] * al + bi[j] * be
                            bo[j + 1] = fi[j] * ga + bi[j] * de
                    else:
                        for j in range(n + 1):
                            fo[j] += fi[j] * al + bi[j] * be
                            bo[j + 1] += fi[j] * ga + bi[j] * de
        f, f2 = f2, f
        bs, bs2 = bs2, bs
        # X_j += B_j (b_n - sum_j c[n-j] X_j)
        for a in range(p):
            for q in range(k):
                acc = b[a, q, n]
                for cc in range(p):
                    acc -= np.dot(cr[a, cc, off:off + n], x[cc, q, :n])
                rho[a, q] = acc
        for a in range(p):
            for q in range(k):
                xo = x[a, q]
                for cc in range(p):
                    bi, u = bs[a, cc], rho[cc, q]
                    for j in range(n + 1):
                        xo[j] += bi[j + 1] * u
        # S_{n+1} = (I - ef eb) S_n
        s_abs += ld
        s_phase *= pd
        logabs += s_abs
        phase *= s_phase
    logdet[0] = logabs
    logdet[1] = phase
    return -1


def _levinson_gemm(c, r, b, dtype):
    """The block recursion for large blocks, each step a few GEMMs through numpy's BLAS
    (from ``GEMM_BLOCK_MIN``: faster than the jitted loops, and Python's per-step cost
    is small beside ``p^3``).  ``c``, ``r`` ``(m, p, p)``, ``b`` ``(m p, k)``.  Returns
    ``(status, x, logabsdet, phase)`` as the jitted kernels do."""
    m, p, _ = c.shape
    k = b.shape[1]
    ctr = np.zeros((m * p, p), dtype)  # block s >= 1: c[m - s]^T
    ctr[p:] = c[:0:-1].transpose(0, 2, 1).reshape(-1, p)
    rt = np.ascontiguousarray(r.transpose(0, 2, 1).reshape(-1, p))  # block s: r[s]^T
    # F_j in rows j of the left half, B_j in rows j + 1 of the right half
    fb = np.zeros(((m + 1) * p, 2 * p), dtype)
    x = np.zeros((m * p, k), dtype)
    sign, logabs = np.linalg.slogdet(c[0])
    if sign == 0:
        return 1, x, 0.0, sign
    inv0 = np.linalg.inv(c[0])
    fb[:p, :p] = inv0
    fb[p:2 * p, p:] = inv0
    x[:p] = inv0 @ b[:p]
    s_abs, s_phase, phase = logabs, sign, sign
    eye = np.eye(p, dtype=dtype)
    step = np.empty((2 * p, 2 * p), dtype)
    for n in range(1, m):
        rows = n * p
        window = ctr[(m - n) * p:m * p]
        ef = (fb[:rows, :p].T @ window).T  # sum_j c[n-j] F_j
        eb = (fb[p:rows + p, p:].T @ rt[p:rows + p]).T  # sum_j r[j+1] B_j
        shrink, grow = eye - ef @ eb, eye - eb @ ef
        sign_d, log_d = np.linalg.slogdet(shrink)
        if sign_d == 0 or np.linalg.slogdet(grow)[0] == 0:
            return n + 1, x, 0.0, sign
        alpha, delta = np.linalg.inv(grow), np.linalg.inv(shrink)
        step[:p, :p], step[p:, :p] = alpha, -ef @ alpha
        step[:p, p:], step[p:, p:] = -eb @ delta, delta
        new = fb[:rows + p] @ step  # [F_j, B_{j-1}] -> [F'_j, B'_j]
        fb[:rows + p, :p] = new[:, :p]
        fb[p:rows + 2 * p, p:] = new[:, p:]
        x[:rows + p] += new[:, p:] @ (b[rows:rows + p] - (x[:rows].T @ window).T)
        s_abs += log_d
        s_phase *= sign_d
        logabs += s_abs
        phase *= s_phase
    return -1, x, logabs, phase


# --- arguments -----------------------------------------------------------------------

def _numeric(arr, name):
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be numeric (bool, integer, float or complex); got dtype "
                        f"{arr.dtype}")
    return arr


def _finite(arr, name):
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must not contain infs or NaNs (or pass check_finite=False)")
    return arr


def _c_and_r(c_or_cr):
    """scipy's ``c_or_cr``: ``c``, or a tuple ``(c, r)``."""
    if isinstance(c_or_cr, tuple):
        if len(c_or_cr) != 2:
            raise ValueError(f"c_or_cr must be c or a tuple (c, r); got a tuple of "
                             f"{len(c_or_cr)} items")
        return c_or_cr
    return c_or_cr, None


def _toeplitz_args(c_or_cr, x, name, check_finite):
    """``(cb, rb, x)``: the blocks of the first block column and row (``(m, p, q)``,
    ``(n, p, q)``; 1-D inputs are 1x1 blocks, ``r`` omitted is ``c``'s conjugate
    transpose) and ``x`` as an ndarray of shape ``(N,)`` or ``(N, k)``."""
    c, r = _c_and_r(c_or_cr)
    if x is None:
        raise ValueError(f"{name} must be an array, not None")
    cb, rb = toeplitz_blocks(_numeric(as_ndarray(c, "c"), "c"),
                             None if r is None else _numeric(as_ndarray(r, "r"), "r"))
    x = _numeric(as_ndarray(x, name), name)
    n, q = rb.shape[0], cb.shape[2]
    if x.ndim not in (1, 2) or x.shape[0] != n * q:
        raise ValueError(f"{name} must have shape ({n * q},) or ({n * q}, k) for a Toeplitz "
                         f"matrix of {n} block columns of width {q}; got shape {x.shape}")
    if check_finite:
        for arr, what in ((cb, "c"), (rb, "r"), (x, name)):
            _finite(arr, what)
    return cb, rb, x


def _float_dtype(*arrays):
    """scipy's rule for Toeplitz solves and products: complex128 if any input is
    complex, float64 otherwise."""
    return np.dtype(np.complex128 if any(a.dtype.kind == "c" for a in arrays) else np.float64)


# --- solves --------------------------------------------------------------------------

def _levinson(cb, rb, b, dtype, what):
    """``(x, logabsdet, phase)``: ``T^-1 b`` (``b`` of shape ``(m p, k)``, ``k`` may be 0)
    and ``det T`` for the square block Toeplitz matrix of blocks ``cb``, ``rb``."""
    m, p, _ = cb.shape
    k = b.shape[1]
    rhs = np.ascontiguousarray(b, dtype=dtype).reshape(m, p, k)
    logdet = np.zeros(2, dtype)
    c = np.ascontiguousarray(cb, dtype=dtype)
    r = np.ascontiguousarray(rb, dtype=dtype)
    if p >= GEMM_BLOCK_MIN:
        # one BLAS thread: hundreds of small GEMMs, each of which would otherwise wait
        # for OpenBLAS's other threads (64 ms alone and 149 ms right after a dense
        # solve on two threads, 64 ms either way on one; 256 blocks of 16x16)
        with small_lapack(p):
            status, x, logabs, phase = _levinson_gemm(c, r, rhs.reshape(m * p, k), dtype)
        logdet[:] = logabs, phase
    elif p == 1:
        x = np.zeros((m, k), dtype)
        status = _levinson_scalar(np.ascontiguousarray(c[::-1, 0, 0]), r[:, 0, 0],
                                  rhs.reshape(m, k), x, logdet)
    else:
        soa = np.zeros((p, k, m), dtype)
        status = _levinson_blocks(np.ascontiguousarray(c[::-1].transpose(1, 2, 0)),
                                  np.ascontiguousarray(r.transpose(1, 2, 0)),
                                  np.ascontiguousarray(rhs.transpose(1, 2, 0)), soa, logdet,
                                  _hermitian(c, r), bool(np.array_equal(r[1:], c[1:])))
        x = soa.transpose(2, 0, 1)
    if status >= 0:
        lead = f"{status}x{status}" if p == 1 else f"{status} x {status} block"
        raise np.linalg.LinAlgError(
            f"{what}: the leading {lead} principal submatrix is singular, so the Levinson "
            "recursion cannot continue (the matrix itself may still be invertible: use "
            "scipy.linalg.solve on block_toeplitz(c, r))")
    return x.reshape(m * p, k), float(logdet[0].real), logdet[1]


def _hermitian(c, r):
    """Whether the square block Toeplitz matrix of blocks ``c``, ``r`` is Hermitian
    (exactly: ``r[k] = c[k]^H`` and ``c[0] = c[0]^H``)."""
    ch = c.conj().transpose(0, 2, 1)
    return bool(np.array_equal(r[1:], ch[1:]) and np.array_equal(c[0], ch[0]))


def _square(cb, rb, what):
    m, p, q = cb.shape
    if p != q:
        raise ValueError(f"{what} needs square blocks; c has blocks of shape {(p, q)}")
    if rb.shape[0] != m:
        raise ValueError(f"{what} needs a square matrix: c has {m} blocks, r has "
                         f"{rb.shape[0]}")


def solve_toeplitz(c_or_cr: ArrayLike | tuple[ArrayLike, ArrayLike], b: ArrayLike,
                   check_finite: bool = True) -> np.ndarray:
    """Solve ``T x = b`` for a Toeplitz or block Toeplitz matrix ``T``.

    A drop-in for :func:`scipy.linalg.solve_toeplitz` (1-D ``c`` and ``r``),
    extended to blocks: ``T = block_toeplitz(c, r)``.  All right-hand sides go
    through one Levinson recursion.

    Parameters
    ----------
    c_or_cr : array_like or tuple of (array_like, array_like)
        ``c``, or ``(c, r)``: the first column and first row (``r[0]`` is
        ignored), or the ``(m, p, p)`` blocks of the first block column and
        row.  ``r`` omitted means ``r = conjugate(c)`` (1-D), ``r[k] =
        c[k].conj().T`` (blocks): a Hermitian matrix if ``c[0]`` is.
    b : array_like, shape ``(m p,)`` or ``(m p, k)``
        Right-hand sides.
    check_finite : bool, optional
        Check that ``c``, ``r`` and ``b`` hold only finite numbers.

    Returns
    -------
    ndarray, shape of ``b``
        complex128 if any input is complex, float64 otherwise (scipy's rule).

    Raises
    ------
    numpy.linalg.LinAlgError
        If a leading (block) principal submatrix of ``T`` is exactly singular:
        the recursion cannot continue, as scipy's cannot.
    ValueError
        For non-square blocks, ``c`` and ``r`` of different lengths, ``b`` of
        the wrong length or ndim, a 2-D ``c`` or ``r`` (ambiguous: blocks are
        3-D), or non-finite values with ``check_finite``.

    Notes
    -----
    Block Levinson (Whittle; Levinson-Wiggins-Robinson):
    ``O(m^2 p^3 + m^2 p^2 k)`` time, ``O(m p^2 + m p k)`` memory.  Not
    backward stable for indefinite matrices (nor is scipy's); for Hermitian
    positive definite ones, such as covariances, it is.

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> c, r, b = [1, 3, 6, 10], [1, -1, -2, -3], [1, 2, 2, 5]
    >>> kronjit.solve_toeplitz((c, r), b)
    array([ 1.66666667, -1.        , -2.66666667,  2.33333333])

    Blocks: a 2 x 2 block Hermitian matrix of four blocks (8 x 8).

    >>> rng = np.random.default_rng(0)
    >>> c = np.stack([4 * np.eye(2)] + [rng.standard_normal((2, 2)) for _ in range(3)])
    >>> b = rng.standard_normal(8)
    >>> x = kronjit.solve_toeplitz(c, b)
    >>> np.allclose(kronjit.block_toeplitz(c) @ x, b)
    True
    """
    cb, rb, b = _toeplitz_args(c_or_cr, b, "b", check_finite)
    _square(cb, rb, "solve_toeplitz")
    dtype = _float_dtype(cb, rb, b)
    if b.size == 0:
        return np.empty(b.shape, dtype)
    x, _, _ = _levinson(cb, rb, b.reshape(b.shape[0], -1), dtype, "solve_toeplitz")
    return x.reshape(b.shape)


# --- products ------------------------------------------------------------------------

class _Spectrum:
    """The block circulant embedding of a block Toeplitz matrix, transformed once:
    ``T @ x`` is the first ``m`` blocks of ``C [x; 0]``, ``C`` diagonalised by FFTs
    along the block index (``spectrum[f]`` is block ``f`` of its diagonal)."""

    def __init__(self, cb, rb, dtype, workers):
        (m, p, q), n = cb.shape, rb.shape[0]
        self.m, self.n, self.p, self.q = m, n, p, q
        self.dtype, self.workers = dtype, workers
        real = dtype.kind == "f"
        self.size = scipy.fft.next_fast_len(m + n - 1, real=real)
        column = np.zeros((self.size, p, q), dtype)
        column[:m] = cb
        if n > 1:
            column[self.size - n + 1:] = rb[:0:-1]  # column[size - s] = r[s]
        self._forward, self._inverse = ((scipy.fft.rfft, scipy.fft.irfft) if real
                                        else (scipy.fft.fft, scipy.fft.ifft))
        self.spectrum = self._forward(column, axis=0, workers=self._workers())

    def _workers(self):
        return get_num_threads() if self.workers is None else self.workers

    def apply(self, x, adjoint=False):
        """``T @ x`` (or ``T^H @ x``) for ``x`` of shape ``(n q, k)`` (``(m p, k)``)."""
        m, n, p, q = self.m, self.n, self.p, self.q
        if adjoint:
            m, n, p, q = n, m, q, p
        k = x.shape[1]
        workers = self._workers()
        xs = np.zeros((self.size, q, k), self.dtype)
        xs[:n] = x.reshape(n, q, k)
        spectrum = self.spectrum.conj().transpose(0, 2, 1) if adjoint else self.spectrum
        y = self._inverse(np.matmul(spectrum, self._forward(xs, axis=0, workers=workers)),
                          n=self.size, axis=0, workers=workers)
        return np.array(y[:m].reshape(m * p, k), dtype=self.dtype)  # not a view of all blocks


def _product(cb, rb, x, dtype, workers):
    out_shape = (cb.shape[0] * cb.shape[1],) + x.shape[1:]
    if 0 in cb.shape or 0 in rb.shape or x.size == 0:  # an empty sum, or nothing to sum into
        return np.zeros(out_shape, dtype)
    y = _Spectrum(cb, rb, dtype, workers).apply(x.reshape(x.shape[0], -1))
    return y.reshape(out_shape)


def matmul_toeplitz(c_or_cr: ArrayLike | tuple[ArrayLike, ArrayLike], x: ArrayLike,
                    check_finite: bool = False, workers: int | None = None) -> np.ndarray:
    """``T @ x`` by FFT for a Toeplitz or block Toeplitz matrix ``T``, never formed.

    A drop-in for :func:`scipy.linalg.matmul_toeplitz` (1-D ``c`` and ``r``,
    rectangular allowed), extended to blocks: ``T = block_toeplitz(c, r)`` with
    ``c`` of shape ``(m, p, q)`` and ``r`` of shape ``(n, p, q)``.

    Parameters
    ----------
    c_or_cr : array_like or tuple of (array_like, array_like)
        As for :func:`solve_toeplitz`; blocks may be rectangular.
    x : array_like, shape ``(n q,)`` or ``(n q, k)``
    check_finite : bool, optional
        Check that the inputs hold only finite numbers.
    workers : int, optional
        Threads for the FFTs (``scipy.fft``'s ``workers``); default: kronjit's
        thread count.

    Returns
    -------
    ndarray, shape ``(m p,)`` or ``(m p, k)``
        complex128 if any input is complex, float64 otherwise (scipy's rule).

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> c, r = [1, 3, 6, 10], [1, -1, -2, -3]
    >>> x = np.array([[1, 10], [2, 11], [2, 11], [5, 19]])
    >>> kronjit.matmul_toeplitz((c, r), x)
    array([[-20., -80.],
           [ -7.,  -8.],
           [  9.,  85.],
           [ 33., 218.]])
    """
    cb, rb, x = _toeplitz_args(c_or_cr, x, "x", check_finite)
    return _product(cb, rb, x, _float_dtype(cb, rb, x), workers)


def block_toeplitz_matvec(c: ArrayLike, r: ArrayLike | None, x: ArrayLike) -> np.ndarray:
    """``block_toeplitz(c, r) @ x`` by FFT, without forming the matrix.

    The block Toeplitz matrix is embedded in a block circulant one of
    ``N >= m + n - 1`` blocks, which FFTs along the block index diagonalise:
    ``O((m+n) p q log(m+n) + (m+n) p q k)`` time and ``O((m+n)(pq + qk + pk))``
    memory for ``k`` right-hand sides.  :func:`matmul_toeplitz` is the same
    product with scipy's signature and dtype rule.

    Parameters
    ----------
    c, r : array_like
        As for :func:`block_toeplitz` (``r=None`` is the block Hermitian
        default).
    x : array_like, shape (n*q,) or (n*q, k)

    Returns
    -------
    ndarray, shape (m*p,) or (m*p, k)
        Floating dtype: ``np.result_type(c, r, x)`` if that is floating or
        complex, float64 for integer and bool inputs.  Agrees with the dense
        product to rounding (about ``eps * log(m+n)`` relative to
        ``|T| @ |x|``).

    Examples
    --------
    >>> import numpy as np
    >>> import kronjit
    >>> c, r, x = [1.0, 2.0, 3.0], [1.0, 4.0], [1.0, -1.0]
    >>> kronjit.block_toeplitz_matvec(c, r, x)
    array([-3.,  1.,  1.])
    >>> kronjit.block_toeplitz(c, r) @ x
    array([-3.,  1.,  1.])
    """
    cb, rb, x = _toeplitz_args((c, r), x, "x", False)
    return _product(cb, rb, x, np.result_type(cb.dtype, rb.dtype, x.dtype, 1.0), None)


# --- the operator --------------------------------------------------------------------

class BlockToeplitz(LinearOperator):
    """``block_toeplitz(c, r)`` as a lazy :class:`scipy.sparse.linalg.LinearOperator`.

    Products go by FFT, the blocks' transforms computed once per operator
    (``O((m+n) p q k)`` per product after an ``O((m+n) p q log(m+n))`` setup);
    square operators also solve and give their determinant by the Levinson
    recursion of :func:`solve_toeplitz`.

    Parameters
    ----------
    c : array_like, shape ``(m, p, q)``, or ``(m,)`` for 1x1 blocks
        Blocks of the first block column.
    r : array_like, shape ``(n, p, q)``, or ``(n,)``, optional
        Blocks of the first block row (``r[0]`` ignored); None means
        ``r[k] = c[k].conj().T`` (block Hermitian; square blocks).

    Attributes
    ----------
    c, r : ndarray
        The blocks, ``(m, p, q)`` and ``(n, p, q)``.
    shape : tuple
        ``(m p, n q)``.
    dtype : numpy.dtype
        ``np.result_type(c, r, 1.0)``: products keep float32 and complex64.

    Examples
    --------
    A stationary two-output process on 200 time points: its covariance is
    block Toeplitz with 2 x 2 blocks.

    >>> import numpy as np
    >>> import kronjit
    >>> lags = np.arange(200)
    >>> mix = np.array([[1.0, 0.6], [0.6, 1.0]])
    >>> c = np.exp(-lags / 20.0)[:, None, None] * mix + 1e-1 * (lags == 0)[:, None, None] * np.eye(2)
    >>> K = kronjit.BlockToeplitz(c)
    >>> K.shape
    (400, 400)
    >>> y = np.sin(np.arange(400) / 7.0)
    >>> alpha = K.solve(y)
    >>> np.allclose(K @ alpha, y)
    True
    >>> bool(np.isclose(K.logdet(), np.linalg.slogdet(K.todense())[1]))
    True
    """

    def __init__(self, c: ArrayLike, r: ArrayLike | None = None) -> None:
        self.c, self.r = toeplitz_blocks(_numeric(as_ndarray(c, "c"), "c"),
                                         None if r is None else _numeric(as_ndarray(r, "r"), "r"))
        (m, p, q), n = self.c.shape, self.r.shape[0]
        self._spectra = {}
        self._slogdet = None
        super().__init__(np.result_type(self.c.dtype, self.r.dtype, 1.0), (m * p, n * q))

    def __repr__(self):
        (m, p, q), n = self.c.shape, self.r.shape[0]
        return (f"<{self.shape[0]}x{self.shape[1]} BlockToeplitz ({m} x {n} blocks of {p}x{q}) "
                f"with dtype={self.dtype}>")

    # products -------------------------------------------------------------------
    def _apply(self, x, adjoint):
        dtype = np.result_type(self.dtype, x.dtype)
        rows = self.shape[1] if adjoint else self.shape[0]
        if 0 in self.shape or x.shape[1] == 0:
            return np.zeros((rows, x.shape[1]), dtype)
        spectrum = self._spectra.get(dtype)
        if spectrum is None:
            spectrum = self._spectra[dtype] = _Spectrum(self.c, self.r, dtype, None)
        return spectrum.apply(x, adjoint)

    def _matmat(self, x):
        return self._apply(x, False)

    def _matvec(self, x):
        return self._apply(x.reshape(-1, 1), False).reshape(-1)

    def _rmatmat(self, x):
        return self._apply(x, True)

    def _rmatvec(self, x):
        return self._apply(x.reshape(-1, 1), True).reshape(-1)

    def _transpose(self):
        return self._flipped(lambda blocks: blocks.transpose(0, 2, 1))

    def _adjoint(self):
        return self._flipped(lambda blocks: blocks.conj().transpose(0, 2, 1))

    def _flipped(self, each):
        """The operator of the transposed blocks, their roles swapped (``T^T``'s first
        block column is ``T``'s first block row transposed, and ``c[0]`` stays)."""
        c, r = each(self.r).copy(), each(self.c)
        if len(c):
            c[0] = r[0]
        return BlockToeplitz(c, r)

    def todense(self) -> np.ndarray:
        """The matrix formed: :func:`kronjit.block_toeplitz` ``(c, r)``, bit for bit."""
        return block_toeplitz(self.c, self.r)

    toarray = todense

    # solves and determinants ---------------------------------------------------------
    def _require_square(self, what):
        _square(self.c, self.r, what)

    def solve(self, b: ArrayLike) -> np.ndarray:
        """Solve ``T x = b`` by block Levinson (see :func:`solve_toeplitz`),
        ``O(m^2 p^3 + m^2 p^2 k)`` for ``b`` of shape ``(m p,)`` or ``(m p, k)``;
        complex128 or float64.  ValueError for a non-square operator."""
        self._require_square("BlockToeplitz.solve")
        _, _, b = _toeplitz_args((self.c, self.r), b, "b", False)
        dtype = _float_dtype(self.c, self.r, b)
        if b.size == 0:
            return np.empty(b.shape, dtype)
        x, logabs, phase = _levinson(self.c, self.r, b.reshape(b.shape[0], -1), dtype,
                                     "BlockToeplitz.solve")
        self._slogdet = self._signed(logabs, phase)  # the recursion gave it: kept
        return x.reshape(b.shape)

    def _signed(self, logabs, phase):
        return (complex(phase) if _float_dtype(self.c, self.r).kind == "c"
                else float(phase.real)), logabs

    def slogdet(self) -> tuple[Any, float]:
        """``(sign, log|det T|)`` from the Levinson recursion's prediction error
        covariances (``O(m^2 p^3)``, or free after a :meth:`solve`, whose
        recursion gives it): sign +-1.0, or a complex phase.

        Raises ``LinAlgError`` where the recursion breaks down (a leading block
        principal submatrix exactly singular), ValueError for a non-square
        operator."""
        self._require_square("BlockToeplitz.slogdet")
        if self._slogdet is None:
            dtype = _float_dtype(self.c, self.r)
            if self.shape[0] == 0:
                return self._signed(0.0, dtype.type(1))
            _, logabs, phase = _levinson(self.c, self.r, np.zeros((self.shape[0], 0), dtype),
                                         dtype, "BlockToeplitz.slogdet")
            self._slogdet = self._signed(logabs, phase)
        return self._slogdet

    def logdet(self) -> float | complex:
        """``log det T``: ``nan`` for a negative real determinant, complex for a
        complex one (see :meth:`slogdet`)."""
        return logdet_from_slogdet(*self.slogdet())


class MultilevelToeplitz(LinearOperator):
    """The d-level Toeplitz matrix of a stationary operator on a d-D grid, lazily.

    On a grid of shape ``n = (n1, ..., nd)`` (points in row-major order),
    entry ``(i, j)`` is ``t[i - j + n - 1]``: the operator's value for the lag
    ``i - j``.  One level is a Toeplitz matrix (``t =
    concatenate([r[:0:-1], c])``), two levels block Toeplitz with Toeplitz
    blocks (BTTB), and so on: the covariance of a stationary field on a regular
    grid, or a convolution with the kernel ``t`` restricted to the grid.

    Products go by d-D FFT of a circulant embedding of ``2 n_i - 1`` points per
    axis (at least), the kernel's transform computed once per operator and
    dtype: ``O(N log N)`` time and ``O(2^d N)`` memory for ``N = prod n_i``
    points.  ``A @ X`` equals ``scipy.signal.fftconvolve(t, X, mode="valid")``
    for ``X`` of the grid's shape, flattened.

    Parameters
    ----------
    t : array_like, shape ``(2*n1 - 1, ..., 2*nd - 1)``
        The operator's values, lag ``0`` at the centre; every extent odd.

    Attributes
    ----------
    t : ndarray
    grid : tuple
        ``(n1, ..., nd)``.
    shape : tuple
        ``(N, N)``.
    dtype : numpy.dtype
        ``np.result_type(t, 1.0)``.

    Examples
    --------
    A Gaussian process on a 40 x 50 grid with a non-separable Matérn-3/2
    covariance, solved with scipy's conjugate gradients on ``K + 0.1 I``:

    >>> import numpy as np
    >>> import kronjit
    >>> from scipy.sparse.linalg import LinearOperator, cg
    >>> lags = np.meshgrid(np.arange(-39, 40), np.arange(-49, 50), indexing="ij")
    >>> d = np.hypot(*lags) / 6.0
    >>> K = kronjit.MultilevelToeplitz((1 + np.sqrt(3) * d) * np.exp(-np.sqrt(3) * d))
    >>> K.grid, K.shape
    ((40, 50), (2000, 2000))
    >>> A = LinearOperator(K.shape, matvec=lambda v: K @ v + 0.1 * v, dtype=K.dtype)
    >>> y = np.sin(np.arange(2000) / 30.0)
    >>> alpha, info = cg(A, y, rtol=1e-10)
    >>> info, bool(np.allclose(K.todense() @ alpha + 0.1 * alpha, y, atol=1e-6))
    (0, True)
    """

    def __init__(self, t: ArrayLike) -> None:
        t = _numeric(as_ndarray(t, "t"), "t")
        if t.ndim == 0 or any(s % 2 == 0 for s in t.shape):
            raise ValueError(f"t must have an odd extent 2*n - 1 along every axis (lag 0 at "
                             f"the centre); got shape {t.shape}")
        self.t = t
        self.grid = tuple((s + 1) // 2 for s in t.shape)
        self._spectra = {}
        size = math.prod(self.grid)
        super().__init__(np.result_type(t.dtype, 1.0), (size, size))

    def __repr__(self):
        grid = " x ".join(map(str, self.grid))
        return (f"<{self.shape[0]}x{self.shape[1]} MultilevelToeplitz (grid {grid}) with "
                f"dtype={self.dtype}>")

    def _spectrum(self, dtype):
        spectrum = self._spectra.get(dtype)
        if spectrum is None:
            real = dtype.kind == "f"
            lengths = [scipy.fft.next_fast_len(s, real=real) for s in self.t.shape]
            forward = scipy.fft.rfftn if real else scipy.fft.fftn
            spectrum = self._spectra[dtype] = (
                lengths, forward(self.t.astype(dtype, copy=False), s=lengths,
                                 workers=get_num_threads()))
        return spectrum

    def _matmat(self, x):
        dtype = np.result_type(self.dtype, x.dtype)
        k = x.shape[1]
        if self.shape[0] == 0 or k == 0:
            return np.zeros((self.shape[0], k), dtype)
        lengths, spectrum = self._spectrum(dtype)
        d, workers = len(self.grid), get_num_threads()
        axes = tuple(range(1, d + 1))
        grid = np.ascontiguousarray(x.T, dtype=dtype).reshape((k,) + self.grid)
        if dtype.kind == "f":
            y = scipy.fft.irfftn(spectrum * scipy.fft.rfftn(grid, s=lengths, axes=axes,
                                                            workers=workers),
                                 s=lengths, axes=axes, workers=workers)
        else:
            y = scipy.fft.ifftn(spectrum * scipy.fft.fftn(grid, s=lengths, axes=axes,
                                                          workers=workers),
                                axes=axes, workers=workers)
        valid = (slice(None),) + tuple(slice(n - 1, 2 * n - 1) for n in self.grid)
        return np.ascontiguousarray(y[valid].reshape(k, -1).T, dtype=dtype)

    def _matvec(self, x):
        return self._matmat(x.reshape(-1, 1)).reshape(-1)

    def _adjoint(self):
        return MultilevelToeplitz(np.conj(self.t[(slice(None, None, -1),) * self.t.ndim]))

    def _transpose(self):
        return MultilevelToeplitz(self.t[(slice(None, None, -1),) * self.t.ndim])

    def _rmatmat(self, x):
        return self._adjoint()._matmat(x)

    def _rmatvec(self, x):
        return self._adjoint()._matvec(x)

    def todense(self) -> np.ndarray:
        """The matrix formed, ``(N, N)``, entry ``(i, j) = t[i - j + n - 1]`` (for small
        grids: ``N^2`` entries)."""
        n = self.shape[0]
        ensure_allocatable((n, n), self.t.dtype, "MultilevelToeplitz.todense()")
        points = np.indices(self.grid).reshape(len(self.grid), -1)
        centre = np.array(self.grid)[:, None, None] - 1
        return self.t[tuple(points[:, :, None] - points[:, None, :] + centre)]

    toarray = todense
