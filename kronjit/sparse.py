"""Sparse Kronecker products and sums, built straight into CSR, CSC, COO or BSR.

``kron`` and ``kronsum`` are drop-ins for ``scipy.sparse.kron`` and
``scipy.sparse.kronsum``: same values (bit for bit), dtype, format, index
dtype, sparray-or-spmatrix type and errors.  scipy builds every product as a
COO array and converts it; here the target format is written directly by
count-then-fill kernels.  Kronecker structure gives each output row's length
in closed form (``kron``) or from the factors' rows alone (``kronsum``), so
rows are filled in parallel, each by one thread, with no reduction.

Inputs scipy would sum duplicate entries of (a COO input with repeated
coordinates, a CSR/CSC input with a repeated index in a row) are passed to
scipy itself: its sum order comes from an unstable sort and cannot be
reproduced; so are n-D sparse arrays and dtypes without a kernel
(longdouble, ...).
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
import scipy.sparse as sp
from numba import njit

from ._arith import EXACT_DTYPES, complex_mul_mode, mul
from ._runtime import kernel, serial_kernel
from ._typing import MatrixLike, SparseLike
from ._memory import ensure_arrays_allocatable
from ._validation import check_sparse

__all__ = ["kron", "kronsum", "face_split", "khatri_rao", "index_dtype"]

_INT32_MAX = int(np.iinfo(np.int32).max)
_U = np.uint64  # kernel positions: unsigned indices skip wraparound checks and vectorise

# Output formats the kernels write; any other goes through scipy's conversion
# from the one scipy itself would convert from.
_FROM_CSR = frozenset({"csr", "bsr", "lil"})

# Whether scipy's CSR -> COO conversion keeps the canonical flag (it does
# from scipy 1.15 on); asked of scipy itself, so the flag matches any version.
_TOCOO_KEEPS_CANONICAL = bool(sp.csr_array(np.eye(1)).tocoo().has_canonical_format)

_CONTAINERS = {
    True: {"csr": sp.csr_array, "csc": sp.csc_array, "coo": sp.coo_array, "bsr": sp.bsr_array},
    False: {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix,
            "bsr": sp.bsr_matrix},
}


def index_dtype(maxval, wide=False):
    """scipy's index dtype for the result's index arrays.

    int32 while ``maxval`` (the largest of nnz and the shape, i.e. every index
    and index pointer) fits in it, int64 beyond -- and int64 when ``wide``:
    scipy's sparse arrays (not matrices) keep the int64 indices of an input.
    """
    return np.dtype(np.int64 if wide or maxval > _INT32_MAX else np.int32)


def _wide(x, sparse_array):
    """Whether scipy's COO view of ``x`` carries int64 indices into a sparse-array result.

    Conversions to sparse matrices shrink indices to what the shape needs;
    conversions to sparse arrays keep an int64 index array as it is.
    """
    if not (sparse_array and isinstance(x, sp.sparray)):
        return False
    arrays = x.coords if x.format == "coo" else (x.indices,)
    return any(not np.can_cast(i.dtype, np.int32) for i in arrays)


# --- kernels -------------------------------------------------------------------

@kernel
def _kron_compressed_ptr(a_ptr, b_ptr, out_ptr, part, nparts):
    """Index pointers of kron(A, B) in CSR (or CSC) from those of A and B.

    Output row ``ia * mb + ib`` is A's row ``ia`` times B's row ``ib``: its
    length is their product and it starts at ``a_ptr[ia] * nnz(B) +
    len(A_ia) * b_ptr[ib]``.  Rows are walked as (ia, ib) pairs: a division
    per row would cost more than a short row's writes.
    """
    mb = b_ptr.size - 1
    rows = out_ptr.size - 1
    nnz_b = b_ptr[mb]
    r0 = rows * part // nparts
    r1 = rows * (part + 1) // nparts
    if r0 < r1:
        ia = r0 // mb
        ib = r0 - ia * mb
        for r in range(r0, r1):
            out_ptr[r] = a_ptr[ia] * nnz_b + (a_ptr[ia + 1] - a_ptr[ia]) * b_ptr[ib]
            ib += 1
            if ib == mb:
                ib = 0
                ia += 1
    out_ptr[rows] = a_ptr[a_ptr.size - 1] * nnz_b


@kernel
def _kron_compressed_fill(a_ptr, a_idx, a_val, b_ptr, b_idx, b_val, b_minor, rowwise, fused,
                          out_ptr, out_idx, out_val, part, nparts):
    """Indices and values of kron(A, B) in CSR (or CSC), ``out_ptr`` filled by
    _kron_compressed_ptr; with ``rowwise``, of the face-splitting product (row ``r``
    of the output is A's row ``r`` times B's row ``r``).  Sorted rows in give sorted
    rows out."""
    mb = b_ptr.size - 1
    rows = out_ptr.size - 1
    total = out_ptr[rows]
    # chunks of equal nnz: the rows whose first entry falls in the part
    r0 = np.searchsorted(out_ptr, total * part // nparts)
    r1 = np.searchsorted(out_ptr, total * (part + 1) // nparts)
    if r0 < r1:
        ia = r0 if rowwise else r0 // mb
        ib = r0 if rowwise else r0 - ia * mb
        for r in range(r0, r1):
            # unsigned positions: no negative-index wraparound, so the
            # inner loop vectorises
            b0 = _U(b_ptr[ib])
            length = _U(b_ptr[ib + 1]) - b0
            pos = _U(out_ptr[r])
            ka0, ka1 = a_ptr[ia], a_ptr[ia + 1]
            # B rows of one or two entries (identity and banded factors)
            # keep them in registers and loop over A's row instead
            if length == 1:
                c0, v0 = b_idx[b0], b_val[b0]
                for ka in range(ka0, ka1):
                    out_idx[pos] = a_idx[ka] * b_minor + c0
                    out_val[pos] = mul(a_val[ka], v0, fused)
                    pos += _U(1)
            elif length == 2:
                c0, v0 = b_idx[b0], b_val[b0]
                c1, v1 = b_idx[b0 + _U(1)], b_val[b0 + _U(1)]
                for ka in range(ka0, ka1):
                    base = a_idx[ka] * b_minor
                    av = a_val[ka]
                    out_idx[pos] = base + c0
                    out_val[pos] = mul(av, v0, fused)
                    out_idx[pos + _U(1)] = base + c1
                    out_val[pos + _U(1)] = mul(av, v1, fused)
                    pos += _U(2)
            elif length > 2:
                for ka in range(ka0, ka1):
                    base = a_idx[ka] * b_minor
                    av = a_val[ka]
                    for t in range(length):
                        out_idx[pos + t] = base + b_idx[b0 + t]
                        out_val[pos + t] = mul(av, b_val[b0 + t], fused)
                    pos += length
            ib += 1
            if rowwise:
                ia += 1
            elif ib == mb:
                ib = 0
                ia += 1


@kernel
def _kron_coo_fill(a_row, a_col, a_val, b_row, b_col, b_val, mb, nb, fused,
                   out_row, out_col, out_val, part, nparts):
    """COO of kron(A, B) in scipy's order: A's entries in turn, each times all of B."""
    nnz_b = b_val.size
    total = a_val.size * nnz_b
    e = total * part // nparts
    stop = total * (part + 1) // nparts
    ka = e // max(nnz_b, 1)
    kb = e - ka * nnz_b
    while e < stop:
        count = min(nnz_b - kb, stop - e)
        r = a_row[ka] * mb
        c = a_col[ka] * nb
        av = a_val[ka]
        off = _U(e - kb)
        for t in range(_U(kb), _U(kb + count)):
            out_row[off + t] = r + b_row[t]
            out_col[off + t] = c + b_col[t]
            out_val[off + t] = mul(av, b_val[t], fused)
        e += count
        ka += 1
        kb = 0


@kernel
def _scaled_blocks(a_val, block, fused, out, part, nparts):
    """``out[k] = a_val[k] * block``: the BSR data of kron(A, dense B)."""
    size = block.size
    n = a_val.size
    for k in range(n * part // nparts, n * (part + 1) // nparts):
        av = a_val[k]
        base = _U(k * size)
        for t in range(_U(size)):
            out[base + t] = mul(av, block[t], fused)


@njit(inline="always")
def _diagonal_sum(a_has, a_raw, a_only, b_has, b_raw, b_only):
    """``(present, value)`` of the (diagonal) entry of a kronsum row, from the
    entries of A's row ``ia`` and B's row ``ib`` (scalars: array arguments
    would cost reference counting in every row)."""
    if a_has:
        if b_has:
            return True, a_raw + b_raw  # L + R, in that order
        return True, a_only
    return b_has, b_only


@njit(inline="always")
def _diagonal_entry(ia, ib, a_has, a_raw, a_only, b_has, b_raw, b_only, tmp):
    """Put the (diagonal) entry of kronsum row (ib, ia) in tmp[0]; return whether it is kept.

    Storing into ``tmp`` rounds or wraps the sum to the output dtype before
    the zero test, as scipy's ``csr_plus_csr`` does.
    """
    present, value = _diagonal_sum(a_has[ia], a_raw[ia], a_only[ia], b_has[ib], b_raw[ib],
                                   b_only[ib])
    if not present:
        return False
    tmp[0] = value
    return tmp[0] != 0


@njit(inline="always")
def _copy_shifted(idx, val, lo, hi, scale, shift, out_idx, out_val, pos):
    """Entries lo..hi to ``out[pos:]`` with indices ``idx * scale + shift``; returns the new pos."""
    for k in range(lo, hi):
        out_idx[pos] = idx[k] * scale + shift
        out_val[pos] = val[k]
        pos += _U(1)
    return pos


@kernel
def _kronsum_count(a_ptr, a_has, a_raw, a_only, b_ptr, b_has, b_raw, b_only, counts, part, nparts):
    """counts[r + 1] = length of kronsum row r = ib * m + ia."""
    m = a_ptr.size - 1
    rows = counts.size - 1
    r0 = rows * part // nparts
    r1 = rows * (part + 1) // nparts
    tmp = np.empty(1, a_raw.dtype)
    if r0 < r1:
        ib = r0 // m
        ia = r0 - ib * m
        for r in range(r0, r1):
            c = (a_ptr[ia + 1] - a_ptr[ia]) + (b_ptr[ib + 1] - b_ptr[ib])
            if _diagonal_entry(ia, ib, a_has, a_raw, a_only, b_has, b_raw, b_only, tmp):
                c += 1
            counts[r + 1] = c
            ia += 1
            if ia == m:
                ia = 0
                ib += 1
    counts[0] = 0


@kernel
def _kronsum_fill(a_ptr, a_idx, a_val, a_split, a_has, a_raw, a_only,
                  b_ptr, b_idx, b_val, b_split, b_has, b_raw, b_only,
                  out_ptr, out_idx, out_val, out_row, part, nparts):
    """Row r = ib * m + ia of I_n ⊗ A + B ⊗ I_m, merged in column order.

    B's entries left of the diagonal block come first (columns jb * m + ia,
    jb < ib), then A's row left of the diagonal, the diagonal, A's row right
    of it, and B's entries right of the block.  ``*_split`` counts each
    row's off-diagonal entries left of the diagonal.  ``out_row`` (COO) gets
    the row index of each entry when it is not empty.
    """
    m = a_ptr.size - 1
    rows = out_ptr.size - 1
    total = out_ptr[rows]
    with_rows = out_row.size > 0
    r0 = np.searchsorted(out_ptr, total * part // nparts)
    r1 = np.searchsorted(out_ptr, total * (part + 1) // nparts)
    tmp = np.empty(1, out_val.dtype)
    if r0 < r1:
        ib = r0 // m
        ia = r0 - ib * m
        for r in range(r0, r1):
            start = _U(out_ptr[r])
            pos = start
            base = ib * m
            b_lo, b_mid, b_hi = _U(b_ptr[ib]), _U(b_ptr[ib] + b_split[ib]), _U(b_ptr[ib + 1])
            a_lo, a_mid, a_hi = _U(a_ptr[ia]), _U(a_ptr[ia] + a_split[ia]), _U(a_ptr[ia + 1])
            # B's entries go to columns jb * m + ia, A's to ib * m + ja
            pos = _copy_shifted(b_idx, b_val, b_lo, b_mid, m, ia, out_idx, out_val, pos)
            pos = _copy_shifted(a_idx, a_val, a_lo, a_mid, 1, base, out_idx, out_val, pos)
            if _diagonal_entry(ia, ib, a_has, a_raw, a_only, b_has, b_raw, b_only, tmp):
                out_idx[pos] = base + ia
                out_val[pos] = tmp[0]
                pos += _U(1)
            pos = _copy_shifted(a_idx, a_val, a_mid, a_hi, 1, base, out_idx, out_val, pos)
            pos = _copy_shifted(b_idx, b_val, b_mid, b_hi, m, ia, out_idx, out_val, pos)
            if with_rows:
                for p in range(start, pos):
                    out_row[p] = r
            ia += 1
            if ia == m:
                ia = 0
                ib += 1


_CANONICAL, _UNSORTED, _DUPLICATES, _INVALID = 0, 1, 2, 3


@serial_kernel
def _compressed_status(indptr, indices, n_minor):
    """Whether compressed arrays are canonical, unsorted, hold duplicates, or are invalid."""
    n = indptr.size - 1
    if indptr[0] != 0 or indptr[n] > indices.size:
        return _INVALID
    status = _CANONICAL
    for i in range(n):
        lo, hi = indptr[i], indptr[i + 1]
        if hi < lo:
            return _INVALID
        prev = -1
        for k in range(lo, hi):
            j = indices[k]
            if j < 0 or j >= n_minor:
                return _INVALID
            if j == prev:
                return _DUPLICATES
            if j < prev:
                status = _UNSORTED
            prev = j
    return status


# --- Python side ----------------------------------------------------------------

def _check_format(format):
    if format is None:
        return
    if not isinstance(format, str):
        raise TypeError(f"format must be a str or None, got {type(format).__name__}")
    if not hasattr(sp.coo_array, "to" + format):
        raise ValueError(f"format {format!r} is unknown; expected None or one of 'bsr', "
                         "'coo', 'csc', 'csr', 'dia', 'dok', 'lil'")


def _entries(x, coo_container, name):
    """``x`` as scipy sees it inside kron: its stored entries, in a CSR/CSC/COO object.

    (The public functions have checked sparse factors' index arrays before:
    scipy's compiled conversions trust them.)
    """
    if sp.issparse(x) and x.format in ("csr", "csc", "coo"):
        return x
    return _converted(coo_container, x, name)


def _converted(container, x, name, **kwargs):
    """scipy's own conversion of ``x``, with its error naming the argument."""
    try:
        return container(x, **kwargs)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from exc


def _kernel_values(values, dtype):
    """Data cast once to the result dtype; bool canonicalised to 0/1 bytes."""
    if dtype == np.bool_:
        return np.not_equal(values, 0)
    return np.asarray(values, dtype=dtype)


def _canonical_arrays(x, orient, name):
    """Sorted, duplicate-free ``(indptr, indices, data)`` of ``x`` in ``orient``.

    None when ``x`` holds duplicate entries (scipy sums them in an order that
    cannot be reproduced).  Cached "canonical" flags are not trusted.
    """
    y = x if x.format == orient else x.asformat(orient)
    if x.format == "coo" and y.nnz != x.nnz:
        return None  # the conversion summed duplicates
    n_minor = y.shape[1] if orient == "csr" else y.shape[0]
    nnz = y.nnz
    indptr = y.indptr.astype(np.int64)
    indices = y.indices[:nnz].astype(np.int64)
    status = _compressed_status(indptr, indices, n_minor)
    if status == _UNSORTED:
        y = y.sorted_indices()
        indices = y.indices[:nnz].astype(np.int64)
        status = _compressed_status(indptr, indices, n_minor)
    if status == _INVALID:
        raise ValueError(f"{name} is not a valid {orient.upper()} matrix: its index pointers "
                         f"or indices are out of range for shape {y.shape}")
    if status == _DUPLICATES:
        return None
    return indptr, indices, y.data[:nnz]


def _allocate(arrays, what):
    """Check then allocate ``{name: (length, dtype)}`` arrays, returning them and their bytes."""
    nbytes = ensure_arrays_allocatable(arrays, what)
    return {name: np.empty(n, dt) for name, (n, dt) in arrays.items()}, nbytes


def _coo_result(container, shape, row, col, data, canonical):
    """A COO object over our arrays, skipping the constructor's O(nnz) bounds scans."""
    result = container(shape, dtype=data.dtype)
    result.coords, result.data = (row, col), data
    result.has_canonical_format = canonical
    return result


def _kron_compressed(a, b, orient, shape, dtype, wide, containers, names):
    arrays_a = _canonical_arrays(a, orient, names[0])
    arrays_b = _canonical_arrays(b, orient, names[1])
    if arrays_a is None or arrays_b is None:
        return None
    a_ptr, a_idx, a_val = arrays_a
    b_ptr, b_idx, b_val = arrays_b
    nnz = int(a_ptr[-1]) * int(b_ptr[-1])
    n_major, _ = shape if orient == "csr" else shape[::-1]
    b_minor = b.shape[1] if orient == "csr" else b.shape[0]
    idx = index_dtype(max(nnz, *shape), wide)
    out, nbytes = _allocate({"data": (nnz, dtype), "indices": (nnz, idx),
                             "indptr": (n_major + 1, idx)}, f"sparse.kron {orient.upper()} output")
    values = out["data"]
    _kron_compressed_ptr(a_ptr, b_ptr, out["indptr"], nbytes=out["indptr"].nbytes)
    _kron_compressed_fill(a_ptr, a_idx, _kernel_values(a_val, dtype),
                          b_ptr, b_idx, _kernel_values(b_val, dtype), b_minor, False,
                          complex_mul_mode(dtype), out["indptr"], out["indices"], values,
                          nbytes=nbytes)
    result = containers[orient]((values, out["indices"], out["indptr"]), shape=shape)
    result.has_canonical_format = True
    return result


def _kron_coo(a, b, shape, dtype, wide, containers):
    a, b = a.tocoo(), b.tocoo()  # scipy's entry order; no copy for COO inputs
    nnz = a.nnz * b.nnz
    idx = index_dtype(max(shape), wide)
    out, nbytes = _allocate({"data": (nnz, dtype), "row": (nnz, idx), "col": (nnz, idx)},
                            "sparse.kron COO output")
    as_int64 = [np.asarray(v, dtype=np.int64) for v in (a.row, a.col, b.row, b.col)]
    _kron_coo_fill(as_int64[0], as_int64[1], _kernel_values(a.data, dtype),
                   as_int64[2], as_int64[3], _kernel_values(b.data, dtype),
                   b.shape[0], b.shape[1], complex_mul_mode(dtype),
                   out["row"], out["col"], out["data"], nbytes=nbytes)
    return _coo_result(containers["coo"], shape, out["row"], out["col"], out["data"],
                       canonical=False)


def _kron_bsr(A, b, format, containers, names):
    """scipy's dense-B route: A's CSR structure, one ``a * B`` block per entry of A."""
    a = _converted(containers["csr"], A, names[0], copy=True)
    shape = (a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])
    if a.nnz == 0 or b.nnz == 0:
        return containers["coo"](shape).asformat(format)
    block = b.toarray()
    dtype = np.result_type(a.dtype, block.dtype)
    if dtype not in EXACT_DTYPES:
        data = a.data.repeat(block.size).reshape(-1, *block.shape) * block
    else:
        out, nbytes = _allocate({"data": (a.nnz * block.size, dtype)}, "sparse.kron BSR output")
        data = out["data"]
        _scaled_blocks(_kernel_values(a.data[:a.nnz], dtype),
                       _kernel_values(block.ravel(), dtype), complex_mul_mode(dtype), data,
                       nbytes=nbytes)
        data = data.reshape(-1, *block.shape)
    return containers["bsr"]((data, a.indices, a.indptr), shape=shape)


def _check_kron_size(a, b, shape, dtype, wide, format):
    """MemoryError, before any conversion, unless the result's arrays (scipy's
    nnz(A) nnz(B) entries) and the factors' int64 index copies fit in memory."""
    nnz = a.nnz * b.nnz
    idx = index_dtype(max(nnz, *shape), wide)
    compressed = format in _FROM_CSR or format == "csc"
    major = 1 if format == "csc" else 0
    arrays = {"data": (nnz, dtype), "indices": (nnz, idx)}
    if compressed:
        arrays["indptr"] = (shape[major] + 1, idx)
    else:
        arrays["row"] = (nnz, idx)
    arrays["factor index copies"] = (2 * (a.nnz + b.nnz + a.shape[major] + b.shape[major] + 2),
                                     np.int64)
    ensure_arrays_allocatable(arrays, "sparse.kron " + ("CSC" if major else "CSR" if compressed
                                                        else "COO") + " output")


def _kron_pair(A, B, format, names):
    """``scipy.sparse.kron(A, B, format)``, with scipy's decisions in scipy's order."""
    sparse_array = isinstance(A, sp.sparray) or isinstance(B, sp.sparray)
    containers = _CONTAINERS[sparse_array]
    b = _entries(B, containers["coo"], names[1])
    if ((format is None or format == "bsr") and b.ndim == 2
            and 2 * b.nnz >= math.prod(b.shape)):
        a = A if getattr(A, "ndim", None) == 2 else _entries(A, containers["coo"], names[0])
        if a.ndim == 2:
            return _kron_bsr(a, b, format, containers, names)
    a = _entries(A, containers["coo"], names[0])
    if a.ndim != 2 or b.ndim != 2:
        return sp.kron(A, B, format=format)  # 1-D / n-D sparse arrays: scipy's own rules
    shape = (a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])
    if a.nnz == 0 or b.nnz == 0:
        return containers["coo"](shape).asformat(format)  # float64, as scipy's
    dtype = np.result_type(a.dtype, b.dtype)
    if dtype not in EXACT_DTYPES:
        return sp.kron(A, B, format=format)
    wide = _wide(a, sparse_array) or _wide(b, sparse_array)
    _check_kron_size(a, b, shape, dtype, wide, format)
    if format in _FROM_CSR or format == "csc":
        built = _kron_compressed(a, b, "csc" if format == "csc" else "csr", shape, dtype,
                                 wide, containers, names)
        if built is None:
            return sp.kron(A, B, format=format)
    else:
        built = _kron_coo(a, b, shape, dtype, wide, containers)
    return built.asformat(format)


def kron(A: MatrixLike, B: MatrixLike, *more: MatrixLike, format: str | None = None
         ) -> SparseLike:
    """Kronecker product of sparse (or dense) matrices, as a sparse matrix.

    A drop-in for :func:`scipy.sparse.kron`, chained left to right over any
    number of factors (``kron(A, B, C) == scipy.sparse.kron(
    scipy.sparse.kron(A, B), C)``): same values bit for bit, dtype, format,
    index dtype and type.  CSR, CSC, COO and BSR results are written directly
    by parallel kernels; other formats are converted from the one scipy
    converts from.

    Parameters
    ----------
    A, B, *more : sparse arrays or matrices (any format) or array_like
        The factors, each 2-D; shapes ``(m_i, n_i)``.
    format : str, optional
        Format of the result ("csr", "csc", "coo", "bsr", "dia", "lil",
        "dok").  None follows scipy: BSR when the last factor is at least half
        nonzero, else COO.  Only the final product gets this format; each
        intermediate product is formed with ``format=None``, as scipy's
        chained calls would.

    Returns
    -------
    sparse array or matrix, shape ``(prod m_i, prod n_i)``
        A sparse array if any factor of the step is a sparse array, else a
        sparse matrix (scipy's rule).  The dtype is numpy's promotion of the
        factors' dtypes; a product with no stored entries is float64, as
        scipy's is.

    Raises
    ------
    ValueError, TypeError
        For what scipy rejects (3-D dense factors, unsupported dtypes such as
        float16), naming the factor; ``ValueError`` for an unknown ``format``
        or malformed CSR/CSC index arrays.
    MemoryError
        Before allocating, when the result's arrays would not fit in memory.

    Notes
    -----
    CSR/CSC results are canonical (sorted indices, no duplicates) and keep
    explicit zeros of the factors, like scipy's.  Factors holding duplicate
    entries are passed to scipy, which sums them in an order this library does
    not reproduce; so are 1-D and n-D sparse arrays and dtypes without a
    kernel (longdouble, clongdouble).

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> import kronjit
    >>> A = sp.csr_array(np.array([[0, 2], [5, 0]]))
    >>> B = sp.csr_array(np.array([[1, 2], [3, 4]]))
    >>> K = kronjit.sparse.kron(A, B, format="csr")
    >>> K.toarray()
    array([[ 0,  0,  2,  4],
           [ 0,  0,  6,  8],
           [ 5, 10,  0,  0],
           [15, 20,  0,  0]])
    >>> K.indptr, K.indices.dtype
    (array([0, 2, 4, 6, 8], dtype=int32), dtype('int32'))
    >>> kronjit.sparse.kron(sp.eye_array(2), [[1, 2]], [[3], [4]]).shape
    (4, 4)
    """
    _check_format(format)
    factors = [check_sparse(f, "A" if i == 0 else "B" if i == 1 else f"factor {i}")
               if sp.issparse(f) else f for i, f in enumerate((A, B) + more)]
    result = factors[0]
    for i, factor in enumerate(factors[1:], start=1):
        step_format = format if i == len(factors) - 1 else None
        names = ("A" if i == 1 else "the product of the first factors",
                 "B" if i == 1 else f"factor {i}")
        result = _kron_pair(result, factor, step_format, names)
    return result


# --- kronsum ---------------------------------------------------------------------

# One factor of a Kronecker sum, split for the kernels: its off-diagonal
# entries that survive (CSR-like ptr/indices/values, with split = how many lie
# left of the diagonal), and its diagonal (has, raw term, term plus zero).
_Side = namedtuple("_Side", "ptr indices values split has diag_raw diag_only")


def _kronsum_side(arrays, size, raw, only):
    """Split one factor's rows into off-diagonal entries (kept if nonzero) and the diagonal.

    ``raw`` holds the factor's terms (``1 * a`` or ``b * 1``) in the result
    dtype, ``only`` the same plus zero: what scipy's sum stores for an entry
    with no partner in the other term.
    """
    indptr, indices, _ = arrays
    rows = np.repeat(np.arange(size, dtype=np.int64), np.diff(indptr))
    diagonal = indices == rows
    keep = ~diagonal & (only != 0)
    kept_rows = rows[keep]
    ptr = np.zeros(size + 1, np.int64)
    np.cumsum(np.bincount(kept_rows, minlength=size), out=ptr[1:])
    split = np.bincount(kept_rows[indices[keep] < kept_rows], minlength=size).astype(np.int64)
    has = np.zeros(size, np.bool_)
    has[rows[diagonal]] = True
    diag_raw = np.zeros(size, raw.dtype)
    diag_raw[rows[diagonal]] = raw[diagonal]
    diag_only = np.zeros(size, raw.dtype)
    diag_only[rows[diagonal]] = only[diagonal]
    return _Side(ptr, indices[keep], only[keep], split, has, diag_raw, diag_only)


def _kronsum_terms(values, term_dtype, dtype, first):
    """scipy's ``1 * a`` (L) or ``b * 1`` (R), computed in the factors' dtype, cast to ``dtype``."""
    if values.size == 0:  # (an empty complex term, cast to scipy's float64: no warning)
        return np.empty(0, dtype)
    one, values = np.ones(1, term_dtype), values.astype(term_dtype)
    return _kernel_values(one * values if first else values * one, dtype)


def kronsum(A: MatrixLike, B: MatrixLike, format: str | None = None) -> SparseLike:
    """Kronecker sum of two square sparse matrices, as a sparse matrix.

    A drop-in for :func:`scipy.sparse.kronsum`, with scipy's convention
    ``kronsum(A, B) = kron(I_n, A) + kron(B, I_m)`` for ``A`` of shape
    ``(m, m)`` and ``B`` of shape ``(n, n)`` (note: the textbook ``A ⊕ B``
    is ``kronsum(B, A)``).  Same values bit for bit, dtype, format, index
    dtype and type as scipy's; CSR, CSC and COO results are written directly.

    Parameters
    ----------
    A : sparse array or matrix (any format) or array_like, shape (m, m)
    B : sparse array or matrix (any format) or array_like, shape (n, n)
    format : str, optional
        Format of the result; None gives CSR, as scipy does.

    Returns
    -------
    sparse array or matrix, shape ``(m*n, m*n)``
        Canonical (sorted, no duplicates).  As scipy's sum, entries that are
        zero (explicit zeros of the factors, or diagonal sums that cancel) are
        not stored.  A sparse array if ``A`` or ``B`` is one.

    Raises
    ------
    ValueError
        If a factor is not 2-D or not square (naming it), or for an unknown
        ``format``.
    MemoryError
        Before allocating, when the result would not fit in memory.

    Examples
    --------
    The 2-D finite-difference Laplacian from the 1-D one:

    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> import kronjit
    >>> D = sp.diags_array([-np.ones(2), 2 * np.ones(3), -np.ones(2)], offsets=[-1, 0, 1])
    >>> L = kronjit.sparse.kronsum(D, D)
    >>> L.shape, L.format, L.nnz
    ((9, 9), 'csr', 33)
    >>> L.toarray()[4]
    array([ 0., -1.,  0., -1.,  4., -1.,  0., -1.,  0.])
    """
    _check_format(format)
    A, B = (check_sparse(x, name) if sp.issparse(x) else x for x, name in ((A, "A"), (B, "B")))
    sparse_array = isinstance(A, sp.sparray) or isinstance(B, sp.sparray)
    containers = _CONTAINERS[sparse_array]
    a = _entries(A, containers["coo"], "A")
    b = _entries(B, containers["coo"], "B")
    for x, name in ((a, "A"), (b, "B")):
        if x.ndim != 2:
            raise ValueError(f"kronsum requires 2-D inputs; {name} is {x.ndim}-D")
    for x, name in ((a, "A"), (b, "B")):
        if x.shape[0] != x.shape[1]:
            raise ValueError(f"{name} is not square: shape {x.shape}")
    term_dtype = np.result_type(a.dtype, b.dtype)
    if term_dtype not in EXACT_DTYPES:
        return sp.kronsum(A, B, format=format)
    m, n = a.shape[0], b.shape[0]
    # scipy forms L = kron(I_n, A) and R = kron(B, I_m); an L or R with no
    # entries is scipy's float64 empty product, which then sets the dtype.
    left_empty, right_empty = a.nnz == 0 or n == 0, b.nnz == 0 or m == 0
    dtype = np.result_type(np.float64 if left_empty else term_dtype,
                           np.float64 if right_empty else term_dtype)
    orient = "csc" if format == "csc" else "csr"
    # the row counts and the factors' int64 copies, before converting anything
    ensure_arrays_allocatable({"indptr": (m * n + 1, np.int64),
                               "factor copies": (2 * (a.nnz + b.nnz + m + n + 2), np.int64)},
                              "sparse.kronsum row counts")
    arrays_a = _canonical_arrays(a, orient, "A")
    arrays_b = _canonical_arrays(b, orient, "B")
    if arrays_a is None or arrays_b is None:
        return sp.kronsum(A, B, format=format)
    zero = np.zeros(1, dtype)
    raw_a = _kronsum_terms(arrays_a[2], term_dtype, dtype, first=True)
    raw_b = _kronsum_terms(arrays_b[2], term_dtype, dtype, first=False)
    side_a = _kronsum_side(arrays_a, m, raw_a, _kernel_values(raw_a + zero, dtype))
    side_b = _kronsum_side(arrays_b, n, raw_b, _kernel_values(zero + raw_b, dtype))
    rows = m * n
    shape = (rows, rows)
    counts, _ = _allocate({"indptr": (rows + 1, np.int64)}, "sparse.kronsum row counts")
    counts = counts["indptr"]
    _kronsum_count(side_a.ptr, side_a.has, side_a.diag_raw, side_a.diag_only,
                   side_b.ptr, side_b.has, side_b.diag_raw, side_b.diag_only, counts,
                   nbytes=counts.nbytes)
    np.cumsum(counts, out=counts)
    nnz = int(counts[-1])
    with_rows = format == "coo"
    # scipy sizes the sum's indices for every stored term (its maxnnz), not
    # for the entries that survive; a sparse matrix's COO shrinks them again
    stored_terms = (0 if left_empty else a.nnz * n) + (0 if right_empty else b.nnz * m)
    wide = _wide(a, sparse_array) or _wide(b, sparse_array)
    if with_rows and not sparse_array:
        idx = index_dtype(rows)
    else:
        idx = index_dtype(max(stored_terms, rows), wide)
    out, nbytes = _allocate({"data": (nnz, dtype), "indices": (nnz, idx),
                             "row": (nnz if with_rows else 0, idx)},
                            "sparse.kronsum output")
    _kronsum_fill(*side_a, *side_b, counts, out["indices"], out["data"], out["row"],
                  nbytes=nbytes)
    if with_rows:
        # scipy converts its canonical CSR sum to COO
        return _coo_result(containers["coo"], shape, out["row"], out["indices"], out["data"],
                           canonical=_TOCOO_KEEPS_CANONICAL)
    indptr = counts.astype(idx, copy=False)
    result = containers[orient]((out["data"], out["indices"], indptr), shape=shape)
    result.has_canonical_format = True
    return result.asformat(format)


# --- row-wise and column-wise products ------------------------------------------------

def _rowwise_pair(a, b, orient, containers, names):
    """The face-splitting product of ``a`` and ``b`` (sparse, 2-D) in ``orient``: row ``i``
    (column ``i`` for CSC) is ``kron(a[i], b[i])``."""
    major = 0 if orient == "csr" else 1
    if a.shape[major] != b.shape[major]:
        what = "rows" if orient == "csr" else "columns"
        raise ValueError(f"{names[1]} has {b.shape[major]} {what}, expected {a.shape[major]} "
                         f"like {names[0]}")
    minor = a.shape[1 - major] * b.shape[1 - major]
    shape = (a.shape[0], minor) if orient == "csr" else (minor, a.shape[1])
    dtype = np.result_type(a.dtype, b.dtype)
    func = "face_split" if orient == "csr" else "khatri_rao"
    if dtype not in EXACT_DTYPES:
        raise TypeError(f"sparse.{func}: no kernel for the result dtype {dtype} of "
                        f"{a.dtype} and {b.dtype}")
    parts = []
    for x, name in ((a, names[0]), (b, names[1])):
        arrays = _canonical_arrays(x, orient, name)
        if arrays is None:  # duplicate entries: summed first, in scipy's order
            y = x.asformat(orient, copy=True)
            y.sum_duplicates()
            arrays = _canonical_arrays(y, orient, name)
        parts.append(arrays)
    (a_ptr, a_idx, a_val), (b_ptr, b_idx, b_val) = parts
    counts = np.diff(a_ptr) * np.diff(b_ptr)
    nnz = int(counts.sum())
    wide = _wide(a, isinstance(a, sp.sparray)) or _wide(b, isinstance(b, sp.sparray))
    idx = index_dtype(max(nnz, *shape), wide)
    out, nbytes = _allocate({"data": (nnz, dtype), "indices": (nnz, idx),
                             "indptr": (shape[major] + 1, idx)},
                            f"sparse.{func} {orient.upper()} output")
    out["indptr"][0] = 0
    np.cumsum(counts, out=out["indptr"][1:])
    if nnz:
        _kron_compressed_fill(a_ptr, a_idx, _kernel_values(a_val, dtype), b_ptr, b_idx,
                              _kernel_values(b_val, dtype), b.shape[1 - major], True,
                              complex_mul_mode(dtype), out["indptr"], out["indices"],
                              out["data"], nbytes=nbytes)
    result = containers[orient]((out["data"], out["indices"], out["indptr"]), shape=shape)
    result.has_canonical_format = True
    return result


def _rowwise(factors, orient, format, func):
    _check_format(format)
    names = ["A", "B"] + [f"more[{i}]" for i in range(len(factors) - 2)]
    sparse_array = any(isinstance(x, sp.sparray) for x in factors)
    containers = _CONTAINERS[sparse_array]
    checked = []
    for x, name in zip(factors, names):
        if not sp.issparse(x):
            raise TypeError(f"sparse.{func}: {name} must be a scipy sparse array or matrix, got "
                            f"{type(x).__name__} (use kronjit.{func} for dense arrays)")
        check_sparse(x, name)
        if x.ndim != 2:
            raise ValueError(f"sparse.{func}: {name} must be 2-dimensional, got shape {x.shape}")
        checked.append(x if x.format in ("csr", "csc", "coo") else x.asformat(orient))
    result = _rowwise_pair(checked[0], checked[1], orient, containers, names[:2])
    for x, name in zip(checked[2:], names[2:]):
        result = _rowwise_pair(result, x, orient, containers, ("the product so far", name))
    return result if format is None else result.asformat(format)


def face_split(A: SparseLike, B: SparseLike, *more: SparseLike, format: str | None = "csr"
               ) -> SparseLike:
    """Row-wise Kronecker (face-splitting) product of sparse matrices.

    Row ``i`` of the result is ``kron(A[i], B[i])`` (then with ``more[0][i]``,
    ...): the feature crosses of two sparse feature matrices, every pair of a
    feature of ``A`` and one of ``B`` that are both stored in a row.  Built
    directly as canonical CSR (sorted indices, no duplicates; stored zeros of
    the inputs give stored zeros), one row per thread, count then fill.

    Parameters
    ----------
    A, B, *more : sparse arrays or matrices, shapes ``(I, J)``, ``(I, K)``, ...
        Same number of rows.  Entries stored twice are summed first.
    format : str, optional
        Output format (default ``"csr"``, written directly; others converted).

    Returns
    -------
    sparse array or matrix, shape ``(I, J*K*...)``
        A sparse array if any input is one, else a sparse matrix; values (bit
        for bit) and dtype as ``scipy.sparse.kron`` gives each row; int32
        indices while they fit.

    Examples
    --------
    Crossing a one-hot "country" feature with a one-hot "device" feature:

    >>> import numpy as np, scipy.sparse as sp
    >>> import kronjit
    >>> country = sp.csr_array(np.array([[1, 0, 0], [0, 0, 1]]))   # 3 countries
    >>> device = sp.csr_array(np.array([[0, 1], [1, 0]]))          # 2 devices
    >>> cross = kronjit.sparse.face_split(country, device)
    >>> cross.shape, cross.indices.tolist()   # feature = 2 * country + device
    ((2, 6), [1, 4])
    """
    return _rowwise((A, B) + more, "csr", format, "face_split")


def khatri_rao(A: SparseLike, B: SparseLike, *more: SparseLike, format: str | None = "csc"
               ) -> SparseLike:
    """Column-wise Kronecker (Khatri-Rao) product of sparse matrices.

    Column ``r`` of the result is ``kron(A[:, r], B[:, r])``: the transpose of
    ``face_split`` of the transposes, built directly as canonical CSC.

    Parameters
    ----------
    A, B, *more : sparse arrays or matrices, shapes ``(I, R)``, ``(J, R)``, ...
        Same number of columns.
    format : str, optional
        Output format (default ``"csc"``).

    Returns
    -------
    sparse array or matrix, shape ``(I*J*..., R)``

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> import kronjit
    >>> a = sp.csc_array(np.array([[1, 0], [0, 2]]))
    >>> b = sp.csc_array(np.array([[3, 4], [5, 0]]))
    >>> kronjit.sparse.khatri_rao(a, b).toarray()
    array([[3, 0],
           [5, 0],
           [0, 8],
           [0, 0]])
    """
    return _rowwise((A, B) + more, "csc", format, "khatri_rao")
