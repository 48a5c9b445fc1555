"""Runtime report: versions, how kernels run in parallel, threads and kernel cache."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import numba

from . import _runtime


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def info(start_threads: bool = False) -> dict[str, object]:
    """Describe the runtime kronjit is running on.

    Parameters
    ----------
    start_threads : bool
        Start kronjit's helper threads first (they start with the first
        parallel kernel otherwise), so that their count is reported.

    Returns
    -------
    dict
        Versions (kronjit, Python, numba, llvmlite, numpy, scipy), how
        kernels run in parallel (kronjit's helper threads: Numba's threading
        layer is not used), kronjit's thread count and maximum, the helper
        threads started, the CPU count, the kernel cache location and how many
        kernels (and compiled versions of them) it holds.

    Examples
    --------
    >>> import kronjit
    >>> report = kronjit.info()
    >>> report["kronjit"] == kronjit.__version__, report["num_threads"] >= 1
    (True, True)
    """
    if start_threads and _runtime.max_threads() > 1:
        _runtime.start_helpers()
    from . import __version__
    return {
        "kronjit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numba": numba.__version__,
        "llvmlite": _version("llvmlite"),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "threading_layer": "kronjit helper threads (Numba's layer unused)",
        "num_threads": _runtime.get_num_threads(),
        "max_threads": _runtime.max_threads(),
        "helper_threads": _runtime.helper_threads(),
        "cpu_count": os.cpu_count(),
        "cache": _runtime.cache_location(),
        "cache_contents": _runtime.cache_contents(),
        "numba_cache_dir_env": os.environ.get("NUMBA_CACHE_DIR") or None,
    }
