"""Python-side checks of arguments, shared by every public function.

Kernels never see a bad argument and never decide a dtype: everything here
runs before any output memory is allocated or written (``_memory`` checks and
allocates the outputs).
"""
import numpy as np

__all__ = ["KERNEL_DTYPES", "as_ndarray", "buffers", "check_out", "check_sparse"]

#: Result dtypes the jitted kernels handle (native byte order).  Anything else
#: (float16, longdouble, object, datetime, ...) is left to the reference.
KERNEL_DTYPES = frozenset(np.dtype(c) for c in "?bBhHiIlLqQfdFD")

def as_ndarray(x, name, what="array_like"):
    """``x`` as an exact ``numpy.ndarray``, the one conversion every kernel input goes through.

    ndarray subclasses (``np.matrix``, memmaps, ...) are viewed as plain
    ndarrays (``np.asarray``: same memory, plain indexing and reshaping), and
    array_likes are converted.  Masked arrays are refused: a kernel would
    silently drop the mask.  TypeError/ValueError naming ``name`` (and
    ``what`` it must be) otherwise.
    """
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, which kronjit's kernels do not support; "
                        f"pass {name}.filled(fill_value) or np.asarray({name}) to drop the mask")
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{name} must be {what}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - whatever __array__ raised
        raise TypeError(f"{name} must be array_like, got {type(x).__name__} ({exc})") from exc
    if type(arr) is not np.ndarray:
        raise TypeError(f"{name} must be array_like; np.asarray gave {type(arr).__name__}")
    return arr


def buffers(x):
    """The ndarrays holding ``x``'s values: itself, or a scipy sparse array's data and index arrays."""
    if isinstance(x, np.ndarray):
        return [x]
    return [v for k in ("data", "indices", "indptr", "row", "col", "offsets")
            if isinstance(v := getattr(x, k, None), np.ndarray)] + \
        [c for c in getattr(x, "coords", ()) if isinstance(c, np.ndarray)]


def check_out(out, shape, dtype, inputs, name="out"):
    """Check a user-supplied output array before anything is written to it.

    ``out`` must be an exact ndarray: a subclass (``np.matrix`` stays 2-D when
    flattened, a masked array keeps its mask) would not receive what a kernel
    writes.  It may share no memory with any input's buffers, sparse index
    and data arrays included; ``inputs`` is a sequence, or a dict that names
    each input for the message.
    """
    if type(out) is not np.ndarray:
        if isinstance(out, np.ndarray):
            raise TypeError(f"{name} must be a plain numpy.ndarray, got the subclass "
                            f"{type(out).__name__} (pass {name}.view(np.ndarray) to write into "
                            "its memory)")
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {np.dtype(dtype)} "
                        "(the result dtype of the inputs)")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not out.flags.aligned:
        raise ValueError(f"{name} must be aligned")
    named = inputs.items() if isinstance(inputs, dict) else (
        (f"input {i}", x) for i, x in enumerate(inputs))
    for what, x in named:
        if any(np.may_share_memory(out, buf) for buf in buffers(x)):
            raise ValueError(f"{name} overlaps {what}; pass an array that shares no memory "
                             "with the inputs")


# --- sparse structure --------------------------------------------------------------

def _malformed(x, name, detail):
    return ValueError(f"{name} is not a valid {x.format.upper()} matrix: {detail}")


def _index_array(x, attr, name, length=None):
    arr = getattr(x, attr)
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise _malformed(x, name, f"its {attr} must be a 1-D integer array")
    if length is not None and arr.size != length:
        raise _malformed(x, name, f"its {attr} has length {arr.size}, expected "
                         f"{length} for shape {x.shape}")
    return arr


def _check_compressed(x, name, n_major, n_minor):
    indptr = _index_array(x, "indptr", name, n_major + 1)
    indices = _index_array(x, "indices", name)
    data = x.data
    if not isinstance(data, np.ndarray) or data.ndim != (3 if x.format == "bsr" else 1):
        raise _malformed(x, name, "its data array has the wrong number of "
                         "dimensions")
    if indptr[0] != 0:
        raise _malformed(x, name, f"indptr[0] is {indptr[0]}, expected 0")
    nnz = int(indptr[-1])
    if indices.size != data.shape[0]:
        raise _malformed(x, name, f"its indices and data hold {indices.size} and "
                         f"{data.shape[0]} entries")
    if nnz > indices.size:
        raise _malformed(x, name, f"indptr[-1] is {nnz}, but indices and data "
                         f"hold {indices.size} entries")
    if n_major and bool(np.any(indptr[1:] < indptr[:-1])):
        raise _malformed(x, name, "indptr must be non-decreasing")
    used = indices[:nnz]
    if used.size and (int(used.min()) < 0 or int(used.max()) >= n_minor):
        raise _malformed(x, name, f"an index in indices lies outside [0, "
                         f"{n_minor}) for shape {x.shape}")
    if indices.size == nnz:
        return x
    # entries past indptr[-1] are not part of the matrix (scipy's check_format prunes
    # them in place; some of its conversions misread them): views without them
    extra = {"blocksize": x.blocksize} if x.format == "bsr" else {}
    pruned = type(x)((data[:nnz], used, indptr), shape=x.shape, **extra)
    pruned.data, pruned.indices, pruned.indptr = data[:nnz], used, indptr  # dtypes as given
    return pruned


def check_sparse(x, name):
    """``x`` (a scipy sparse array or matrix) after checking its index arrays against its shape.

    Returned as it is, or, when its arrays hold entries past ``indptr[-1]``, as
    a new object over views without them.

    What scipy's ``check_format(full_check=True)`` checks, before anything
    converts or reads ``x``: a malformed structure (an index out of range, a
    decreasing ``indptr``, arrays of the wrong length) would make scipy's
    compiled conversions and kronjit's kernels read or write out of bounds.
    ValueError naming ``name`` otherwise.  One vectorised pass over the index
    arrays (min, max, and a comparison of ``indptr`` with itself shifted).
    """
    fmt = x.format
    if x.ndim != 2:
        return x  # n-D sparse arrays are COO; scipy validates them on construction
    m, n = x.shape
    if fmt == "csr":
        return _check_compressed(x, name, m, n)
    if fmt == "csc":
        return _check_compressed(x, name, n, m)
    if fmt == "bsr":
        r, c = x.blocksize
        if r < 1 or c < 1 or m % r or n % c:
            raise _malformed(x, name, f"blocksize {x.blocksize} does not divide "
                             f"shape {x.shape}")
        if np.shape(x.data)[1:] != (r, c):
            raise _malformed(x, name, f"data blocks of shape {np.shape(x.data)[1:]}, "
                             f"expected {(r, c)}")
        return _check_compressed(x, name, m // r, n // c)
    if fmt == "coo":
        data = x.data
        nnz = data.shape[0] if isinstance(data, np.ndarray) and data.ndim == 1 else -1
        if nnz < 0:
            raise _malformed(x, name, "its data must be a 1-D array")
        for axis, (coords, bound) in enumerate(zip(x.coords, x.shape)):
            coords = np.asarray(coords)
            if coords.ndim != 1 or coords.dtype.kind not in "iu" or coords.size != nnz:
                raise _malformed(x, name, f"its {('row', 'col')[axis]} indices "
                                 f"must be a 1-D integer array of length nnz ({nnz})")
            if coords.size and (int(coords.min()) < 0 or int(coords.max()) >= bound):
                raise _malformed(x, name, f"a {('row', 'col')[axis]} index lies "
                                 f"outside [0, {bound}) for shape {x.shape}")
    elif fmt == "dia":
        if (x.data.ndim != 2 or x.offsets.ndim != 1
                or x.offsets.shape[0] != x.data.shape[0] or x.offsets.dtype.kind not in "iu"):
            raise _malformed(x, name, "DIA data must be 2-D with one offset per row")
    else:  # lil, dok: scipy's conversion to COO is pure numpy; check what it gives
        check_sparse(x.tocoo(), name)
    return x
