"""Runtime report: versions, threading layer, threads and kernel cache."""
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


def _threading_layer(start):
    try:
        return numba.threading_layer()
    except ValueError:
        pass
    if start and not _runtime.serial_only():
        # Launch one small parallel kernel so that Numba picks its layer.
        import numpy as np
        from .dense import kron
        with _runtime.num_threads(min(2, numba.config.NUMBA_NUM_THREADS)):
            kron(np.ones((1 << 9, 1 << 6)), np.ones((1, 2)))  # 512 KiB: goes parallel
        try:
            return numba.threading_layer()
        except ValueError:
            pass
    return "not started"


def info(start_threads=False):
    """Describe the runtime kronjit is running on.

    Parameters
    ----------
    start_threads : bool
        If Numba's thread pool has not started yet, start it (with one tiny
        parallel kernel) so that the threading layer can be reported.

    Returns
    -------
    dict
        Versions (kronjit, Python, numba, llvmlite, numpy, scipy), the
        threading layer (requested and in use), kronjit's thread count and
        Numba's maximum, whether this process is limited to serial kernels
        (a forked child), the CPU count, and the kernel cache location.

    Examples
    --------
    >>> import kronjit
    >>> report = kronjit.info()
    >>> report["kronjit"] == kronjit.__version__, report["num_threads"] >= 1
    (True, True)
    """
    from . import __version__
    return {
        "kronjit": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numba": numba.__version__,
        "llvmlite": _version("llvmlite"),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "threading_layer_requested": numba.config.THREADING_LAYER,
        "threading_layer": _threading_layer(start_threads),
        "num_threads": _runtime.get_num_threads(),
        "max_threads": _runtime.max_threads(),
        "serial_only": _runtime.serial_only(),
        "cpu_count": os.cpu_count(),
        "cache": _runtime.cache_location(),
        "numba_cache_dir_env": os.environ.get("NUMBA_CACHE_DIR") or None,
    }
