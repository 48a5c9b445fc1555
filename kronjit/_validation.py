"""Python-side checks shared by every public function.

Kernels never see a bad argument and never decide a dtype: everything here
runs before any output memory is allocated or written.
"""
import math
import os
import sys

import numpy as np

__all__ = ["KERNEL_DTYPES", "available_memory", "as_ndarray", "buffers", "check_out",
           "check_sparse", "ensure_allocatable", "ensure_arrays_allocatable", "format_bytes",
           "output_array", "into_out"]

#: Result dtypes the jitted kernels handle (native byte order).  Anything else
#: (float16, longdouble, object, datetime, ...) is left to the reference.
KERNEL_DTYPES = frozenset(np.dtype(c) for c in "?bBhHiIlLqQfdFD")

# Outputs below this size are not checked against available memory: reading
# /proc costs more than such an allocation, and it cannot fail for lack of RAM.
_MEMORY_CHECK_MIN_BYTES = 1 << 26


def format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory():
    """Bytes this process can still allocate, or None if unknown.

    The smaller of the system's MemAvailable and the room left under a cgroup
    (v2 or v1) memory limit, so that containers report their own limit.
    """
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < (1 << 60):
            candidates.append(max(limit - usage, 0))
    if not candidates and hasattr(os, "sysconf"):
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return min(candidates) if candidates else None


def ensure_allocatable(shape, dtype, what):
    """Raise MemoryError, naming shape and bytes, if an array cannot be allocated.

    Sizes are computed with Python integers, so shapes whose byte count
    overflows int64 are caught too.  Returns the array's size in bytes.
    """
    dtype = np.dtype(dtype)
    return _ensure_bytes(math.prod(shape) * dtype.itemsize,
                         lambda: f"{what} of shape {tuple(shape)} and dtype {dtype}")


def ensure_arrays_allocatable(arrays, what):
    """The same check for arrays allocated together, given as ``{name: (length, dtype)}``.

    The message names ``what`` and every array with its dtype and length.
    Returns their total size in bytes.
    """
    nbytes = sum(int(n) * np.dtype(dtype).itemsize for n, dtype in arrays.values())
    return _ensure_bytes(nbytes, lambda: what + " (" + ", ".join(
        f"{name} {np.dtype(dtype)}[{n}]" for name, (n, dtype) in arrays.items()) + ")")


def _ensure_bytes(nbytes, describe):
    """MemoryError unless ``nbytes`` can be allocated; ``describe()`` names the allocation."""
    if nbytes < _MEMORY_CHECK_MIN_BYTES:
        return nbytes
    if nbytes > sys.maxsize:
        raise MemoryError(f"{describe()} would need {nbytes} bytes ({format_bytes(nbytes)}), "
                          "more than any array can hold")
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{describe()} would need {nbytes} bytes ({format_bytes(nbytes)}), "
                          f"but only {avail} bytes ({format_bytes(avail)}) of memory are "
                          "available")
    return nbytes


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


def output_array(shape, dtype, out, inputs, what):
    """Where a result goes: a new array (after the memory check) or ``out`` (after check_out)."""
    if out is None:
        ensure_allocatable(shape, dtype, what)
        return np.empty(shape, dtype)
    check_out(out, shape, dtype, inputs)
    return out


def into_out(result, out, inputs):
    """A result computed elsewhere (by the reference), copied into ``out`` if one is given."""
    if out is None:
        return result
    result = np.asarray(result)
    check_out(out, result.shape, result.dtype, inputs)
    np.copyto(out, result)
    return out
