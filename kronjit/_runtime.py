"""Everything Numba-specific lives here: compilation, caching, threads.

Policy (shared/design.md, "Architecture"):

* kernels compile lazily, on first call, for the types they meet;
* the on-disk cache is used only where Numba finds a writable location
  (``NUMBA_CACHE_DIR`` first), and a corrupt or unreadable cache entry is
  recompiled instead of raising;
* every parallel kernel has a serial twin.  The twin runs when another thread
  is already inside a parallel kernel (Numba's workqueue layer aborts the
  process on concurrent use), in a forked child of a process whose Numba
  thread pool was started (GNU OpenMP aborts after fork), when one thread is
  asked for, or when the work is too small to pay for a parallel launch;
* the threading layer is never set here; the thread count is a process-wide
  setting that is applied in whichever thread launches a kernel.
"""
import contextlib
import operator
import os
import threading
import types
import warnings

import numba
from numba.core.caching import FunctionCache
from numba.np.ufunc import parallel as _numba_parallel

__all__ = ["kernel", "serial_kernel", "get_num_threads", "set_num_threads", "num_threads",
           "cache_location"]

#: Work (bytes written) below which a parallel launch costs more than it saves.
PARALLEL_MIN_BYTES = 1 << 18


class _TolerantFunctionCache(FunctionCache):
    """Numba's function cache, but a failing load or save is not fatal.

    Numba lets a corrupt index or data file (a truncated write, a pickle from
    another version, a disk error) propagate out of the call; here the load
    reports a miss, so the kernel recompiles, and a failed save only warns.
    """

    @contextlib.contextmanager
    def _guard_against_spurious_io_errors(self):
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - any cache failure recompiles
            warnings.warn(f"kronjit: ignoring unusable Numba cache entry ({exc!r}); "
                          "recompiling", RuntimeWarning, stacklevel=2)


def _probe_cache():
    """Return (enabled, location or reason) for Numba's on-disk cache."""
    def _kronjit_cache_probe():  # pragma: no cover - never called
        return 0
    try:
        cache = _TolerantFunctionCache(_kronjit_cache_probe)
    except Exception as exc:  # noqa: BLE001 - no writable locator: run uncached
        return False, f"disabled ({exc})"
    return True, cache._cache_path


_CACHE_ENABLED, _CACHE_LOCATION = _probe_cache()


def cache_location():
    """Directory of the on-disk kernel cache, or why caching is disabled."""
    return _CACHE_LOCATION


def _renamed(func, suffix):
    # The parallel and serial twins share source; Numba keys cache files by
    # qualname and not by compile flags, so each twin gets its own qualname.
    twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix,
                              func.__defaults__, func.__closure__)
    twin.__qualname__ = func.__qualname__ + suffix
    twin.__module__ = func.__module__
    twin.__doc__ = func.__doc__
    return twin


def _jit(func, parallel):
    dispatcher = numba.njit(parallel=parallel, nogil=True, fastmath=False,
                            boundscheck=None, error_model="numpy")(func)
    if _CACHE_ENABLED:
        try:
            dispatcher._cache = _TolerantFunctionCache(dispatcher.py_func)
        except Exception:  # noqa: BLE001 - location vanished since the probe
            pass
    return dispatcher


# --- thread control ---------------------------------------------------------

_settings_lock = threading.Lock()
_num_threads = numba.config.NUMBA_NUM_THREADS
_parallel_lock = threading.Lock()
_serial_only = False  # set in a forked child whose parent had started Numba's pool


def _after_fork_in_child():
    global _parallel_lock, _settings_lock, _serial_only
    # A lock held by another parent thread at fork time stays held forever.
    _parallel_lock = threading.Lock()
    _settings_lock = threading.Lock()
    if _numba_parallel._is_initialized:
        _serial_only = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def max_threads():
    """The most threads a kernel can ever use (``NUMBA_NUM_THREADS``)."""
    return numba.config.NUMBA_NUM_THREADS


_thread_state = threading.local()


def get_num_threads():
    """Number of threads kronjit's parallel kernels use when called from this thread.

    The process-wide setting (:func:`set_num_threads`), unless this thread is
    inside a :func:`num_threads` block.

    Examples
    --------
    >>> import kronjit
    >>> with kronjit.num_threads(1):
    ...     kronjit.get_num_threads()
    1
    """
    n = getattr(_thread_state, "threads", None)
    return _num_threads if n is None else n


def _checked_count(n):
    limit = numba.config.NUMBA_NUM_THREADS
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an integer, got {type(n).__name__}") from None
    if not 1 <= n <= limit:
        raise ValueError(f"n must be between 1 and {limit} (NUMBA_NUM_THREADS), got {n}")
    return n


def set_num_threads(n):
    """Set the number of threads kronjit's kernels use; return the old value.

    The setting is process-wide: it applies to calls from every thread, unlike
    ``numba.set_num_threads`` which is per thread.  ``n`` must lie between 1
    and ``numba.config.NUMBA_NUM_THREADS`` (set by the ``NUMBA_NUM_THREADS``
    environment variable before Numba is imported).

    Examples
    --------
    >>> import kronjit
    >>> old = kronjit.set_num_threads(1)
    >>> kronjit.get_num_threads()
    1
    >>> kronjit.set_num_threads(old)
    1
    """
    global _num_threads
    n = _checked_count(n)
    with _settings_lock:
        old, _num_threads = _num_threads, n
    return old


@contextlib.contextmanager
def num_threads(n):
    """Context manager: kernels called from this thread use ``n`` threads inside the block.

    Only the calling thread is affected, so blocks in several threads never
    undo each other's setting; the process-wide setting is untouched.

    Examples
    --------
    >>> import numpy as np, kronjit
    >>> with kronjit.num_threads(1):            # the serial kernels, in this thread only
    ...     k = kronjit.kron(np.ones((300, 300)), np.ones((2, 2)))
    >>> k.shape
    (600, 600)
    """
    n = _checked_count(n)
    old = getattr(_thread_state, "threads", None)
    _thread_state.threads = n
    try:
        yield n
    finally:
        _thread_state.threads = old


@contextlib.contextmanager
def serial_in_this_thread():
    """Context manager: kernels called from this thread run their serial twins.

    For callers that already run one task per core (dask workers): a parallel
    kernel inside each task would only oversubscribe the cores.  Other
    threads are unaffected.
    """
    old = getattr(_thread_state, "serial", False)
    _thread_state.serial = True
    try:
        yield
    finally:
        _thread_state.serial = old


def serial_only():
    """True when this process must not start parallel kernels (forked child)."""
    return _serial_only


class kernel:
    """A jitted kernel with a parallel build and a serial twin.

    The decorated function takes the number of chunks to split its work into
    as its last argument and loops over chunks with ``numba.prange`` (which is
    a plain ``range`` in the serial build).  Call it with every argument but
    that one, plus ``nbytes=`` the size of the work, and the runtime picks the
    build and the chunk count.
    """

    def __init__(self, func):
        self.py_func = func
        self.parallel = _jit(_renamed(func, "_parallel"), parallel=True)
        self.serial = _jit(_renamed(func, "_serial"), parallel=False)
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__

    def __call__(self, *args, nbytes):
        n = get_num_threads()
        if (n > 1 and nbytes >= PARALLEL_MIN_BYTES and not _serial_only
                and not getattr(_thread_state, "serial", False)):
            lock = _parallel_lock
            if lock.acquire(blocking=False):
                try:
                    # numba.set_num_threads is per thread: apply ours here.
                    numba.set_num_threads(n)
                    return self.parallel(*args, n)
                finally:
                    lock.release()
        return self.serial(*args, 1)


def serial_kernel(func):
    """A jitted helper too small to parallelise: one serial build, same policy."""
    return _jit(func, parallel=False)
