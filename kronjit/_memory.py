"""Outputs and work buffers: whether they fit in memory, and allocating them.

A result that cannot fit raises MemoryError naming its shape and bytes before
anything is allocated, rather than a bare numpy error or the kernel of a
swapping machine.
"""
import math
import os
import sys

import numpy as np

from ._validation import check_out

__all__ = ["MEMORY_CHECK_MIN_BYTES", "available_memory", "ensure_allocatable",
           "ensure_arrays_allocatable", "format_bytes", "output_array", "into_out"]

# Outputs below this size are not checked against available memory: reading
# /proc costs more than such an allocation, and it cannot fail for lack of RAM.
MEMORY_CHECK_MIN_BYTES = 1 << 26


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
    if nbytes < MEMORY_CHECK_MIN_BYTES:
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
