"""Everything Numba-specific lives here: compilation, caching, threads.

The policy (docs/guide/runtime.md says why):

* kernels compile lazily, on first call, for the types they meet;
* the on-disk cache is used only where Numba finds a writable location
  (``NUMBA_CACHE_DIR`` first), and a corrupt or unreadable cache entry is
  recompiled instead of raising;
* a kernel is one serial build (``nogil``) that computes one *part* of its
  output.  A parallel call splits the work into more parts than threads and
  runs them on the calling thread and on helper threads, each thread taking
  the next part when it has a core (``_Helpers``).  Numba's thread pool and
  threading layer are not used: nothing can abort the process after ``fork``
  or under concurrent use, and no thread spins for long after a call, so
  kronjit's kernels and numpy's BLAS do not take cores from each other; a
  call offers parts to helpers only when cores are free at that moment
  (``_Helpers.free_cores``), a long call also from the first part before
  which it finds one;
* kronjit's own LAPACK calls on small matrices run on one BLAS thread
  (``small_lapack``), the only setting of another library it touches;
* the thread count is a process-wide setting (or a per-thread one inside
  ``num_threads``), read by whichever thread launches a kernel.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import itertools
import operator
import os
import platform
import queue
import threading
import time
import types
import warnings
from collections.abc import Iterator

import numba
import numpy as np
from llvmlite import ir
from numba import types as nbtypes
from numba.core.caching import FunctionCache
from numba.extending import intrinsic

__all__ = ["kernel", "serial_kernel", "run_python_parts", "get_num_threads", "set_num_threads",
           "num_threads", "cache_location", "cache_enabled", "cache_contents",
           "compiling_runners", "kernel_input"]

#: Work (bytes written) below which the calling thread does it all: handing
#: parts to helper threads costs more than it saves.
PARALLEL_MIN_BYTES = 1 << 18
#: A parallel call is split into about this many parts per thread (none smaller
#: than MIN_PART_BYTES), taken one at a time: a thread that starts late because
#: its core is busy (BLAS threads spinning, another process) leaves its parts
#: to the others instead of stalling the call.
PARTS_PER_THREAD = 4
MIN_PART_BYTES = 1 << 16
#: After a call, helper threads watch for the next one this long, without the
#: GIL and pausing between looks, before they sleep: back-to-back calls skip
#: the wake-up of a sleeping thread (30-100 us on a virtual machine), and a
#: BLAS call that follows has the core back within this time (an OpenMP pool
#: spins the same way, for longer).
HELPER_SPIN_SECONDS = 2e-4
#: How long a calling thread that has run out of parts watches for the parts
#: helpers took before it sleeps until they finish.
CALLER_WAIT_SECONDS = 1e-3
#: Work from which a call that finds no free core runs its parts one by one and
#: looks again before each: the threads that took the cores (an OpenMP pool
#: spinning for milliseconds after its call, OpenBLAS's for 200 ms) stop, and
#: the parts left go to helpers.  (Such calls take milliseconds; a look costs
#: a few microseconds.)
RECHECK_MIN_BYTES = 1 << 26


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


def cache_enabled():
    """Whether kernels are kept in an on-disk cache (a writable location was found)."""
    return _CACHE_ENABLED


#: Every kernel build made here (``cache_contents`` looks up their cache entries).
_dispatchers = []


def cache_contents():
    """``{"kernels": n, "compiled": m}``: how many of kronjit's kernels have an entry in
    the on-disk cache, and how many compiled versions (one per argument types) those
    entries hold."""
    # the directories Numba keeps kronjit's modules' entries in (one per source
    # directory; nothing else is written there but Python's own .pyc files)
    folders = {files._cache_path for d in list(_dispatchers)
               if (files := getattr(d._cache, "_cache_file", None)) is not None}
    names = [name for folder in folders if os.path.isdir(folder) for name in os.listdir(folder)]
    return {"kernels": sum(n.endswith(".nbi") for n in names),
            "compiled": sum(n.endswith(".nbc") for n in names)}


def _jit(func):
    dispatcher = numba.njit(nogil=True, fastmath=False, boundscheck=None,
                            error_model="numpy")(func)
    if _CACHE_ENABLED:
        try:
            dispatcher._cache = _TolerantFunctionCache(dispatcher.py_func)
        except Exception:  # noqa: BLE001 - location vanished since the probe
            pass
    _dispatchers.append(dispatcher)
    return dispatcher


# --- thread control ---------------------------------------------------------

_settings_lock = threading.Lock()
_num_threads = numba.config.NUMBA_NUM_THREADS
_parallel_lock = threading.Lock()


def _after_fork_in_child():
    global _parallel_lock, _settings_lock, _helpers
    # A lock held by another parent thread at fork time stays held forever, and
    # the parent's helper threads do not exist in the child.
    _parallel_lock = threading.Lock()
    _settings_lock = threading.Lock()
    _helpers = _Helpers()
    _python_workers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def max_threads():
    """The most threads a kernel can ever use (``NUMBA_NUM_THREADS``)."""
    return numba.config.NUMBA_NUM_THREADS


_thread_state = threading.local()


def get_num_threads() -> int:
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


def set_num_threads(n: int) -> None:
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
def num_threads(n: int) -> Iterator[None]:
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
def _in_this_thread(flag):
    """``flag`` set in this thread's state while the block runs (then restored)."""
    previous = getattr(_thread_state, flag, False)
    setattr(_thread_state, flag, True)
    try:
        yield
    finally:
        setattr(_thread_state, flag, previous)


def serial_in_this_thread():
    """Context manager: kernels called from this thread run on it alone.

    For callers that already run one task per core (dask workers): a parallel
    kernel inside each task would only oversubscribe the cores.  Other
    threads are unaffected.
    """
    return _in_this_thread("serial")


# --- parallel calls ---------------------------------------------------------

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _load_acquire(typingctx, counters, index):
    """``counters[index]`` read with acquire ordering: never hoisted out of a polling loop."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(ary.data, [args[1]]), ordering="acquire",
                                   align=8)
    return nbtypes.int64(counters, index), codegen


@intrinsic
def _store_release(typingctx, counters, index, value):
    """``counters[index] = value`` with release ordering."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        builder.store_atomic(args[2], builder.gep(ary.data, [args[1]]), ordering="release",
                             align=8)
        return context.get_dummy_value()
    return nbtypes.void(counters, index, nbtypes.int64), codegen


@intrinsic
def _cpu_pause(typingctx):
    """The spin-loop hint (x86 ``pause``; nothing elsewhere)."""
    def codegen(context, builder, sig, args):
        if _X86:
            fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause",
                                                  fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(fn, [])
        return context.get_dummy_value()
    return nbtypes.void(), codegen


@intrinsic
def _fetch_add(typingctx, counters, index):
    """``counters[index] += 1``, atomically; returns the value before.

    Acquire-release: a part's writes happen before the count that reports it
    finished, and a thread that reads that count sees them.
    """
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        return builder.atomic_rmw("add", ptr, ir.Constant(ir.IntType(64), 1), "acq_rel")
    return nbtypes.int64(counters, index), codegen


# A helper's state, in its slot of the helpers' ``flag`` array.  The caller of a
# job waits for helpers in the states _COMING to _LEAVING to be back watching
# before it returns, so that it never has to take the GIL from one of them.
_WATCHING, _COMING, _RUNNING, _LEAVING, _ELSEWHERE = 0, 1, 2, 3, 4


def _watch(flag, seen, rounds, slot):
    """Whether ``flag[0]`` moves away from ``seen`` within ``rounds`` pauses."""
    _store_release(flag, slot, _WATCHING)
    for _ in range(rounds):
        if _load_acquire(flag, 0) != seen:
            _store_release(flag, slot, _COMING)
            return True
        _cpu_pause()
    _store_release(flag, slot, _ELSEWHERE)
    return False


def _run_parts(flag, slot, rounds, tickets, nparts, *args):  # pragma: no cover - a template
    """Take parts (``tickets[0]`` counts those taken) and run them until none is
    left, counting each finished one in ``tickets[1]``: one call per thread, no
    GIL between parts.

    A helper passes its ``slot`` in ``flag``.  The calling thread passes
    ``slot = 0``: it announces the job (``flag[0]``) only now that it holds no
    GIL, so that a helper that sees it takes the GIL at once; when no part is
    left it watches, ``rounds`` pauses at most, for the parts that helpers
    took to finish and for the helpers that came to be back watching.  It
    returns the pauses it waited, or -1 if parts are still running.
    """
    if slot:
        _store_release(flag, slot, _RUNNING)
    else:
        _fetch_add(flag, 0)
    while _fetch_add(tickets, 0) < nparts:
        # the caller takes parts from the front, helpers from the back: from call
        # to call each thread tends to write the same region, still in its cache
        part = nparts - 1 - _fetch_add(tickets, 3) if slot else _fetch_add(tickets, 2)
        body(*(args + (part, nparts)))  # noqa: F821 - bound per kernel (_parts_runner)
        _fetch_add(tickets, 1)
    if slot:
        _store_release(flag, slot, _LEAVING)
        return 0
    for waited in range(rounds):
        if _load_acquire(tickets, 1) >= nparts:
            for h in range(1, flag.size):
                if _COMING <= _load_acquire(flag, h) <= _LEAVING:
                    break
            else:
                return waited
        _cpu_pause()
    return rounds if _load_acquire(tickets, 1) >= nparts else -1


_RUNNER_DIGEST = hashlib.sha1(_run_parts.__code__.co_code
                              + repr(_run_parts.__code__.co_consts).encode()
                              + repr(_run_parts.__code__.co_names).encode()).hexdigest()[:10]


def _relocated(template, home, name, bindings):
    """A copy of ``template`` named ``name`` with ``bindings`` added to its globals, its code
    placed in ``home``'s file and line: Numba's cache keys an entry by that file, line and
    name, and checks only that file's timestamp, so the entry lives and expires with
    ``home`` and one template bound differently gets one entry per name."""
    code = template.__code__.replace(co_filename=home.__code__.co_filename,
                                     co_firstlineno=home.__code__.co_firstlineno,
                                     co_name=name)
    func = types.FunctionType(code, {**template.__globals__, **bindings})
    func.__qualname__ = home.__qualname__.rsplit(".", 1)[0] + "." + name \
        if "." in home.__qualname__ else name
    func.__module__ = home.__module__
    func.__doc__ = template.__doc__
    return func


def _parts_runner(func, body):
    """``_run_parts`` compiled for one kernel: ``body`` bound as a global (not a closure
    variable, which Numba's cache would key by object identity) and the code placed with
    the kernel (``_relocated``).  The name carries a digest of the template: a changed
    template is a new cache entry, not a stale one."""
    return _jit(_relocated(_run_parts, func, f"{func.__name__}_parts_{_RUNNER_DIGEST}",
                           {"body": body}))


class _Job:
    """One parallel call: ``runner`` on the calling thread and on at most ``helpers``
    helper threads, which share the parts through ``tickets``."""
    __slots__ = ("runner", "args", "nparts", "helpers", "tickets", "seat", "failed", "error",
                 "holding")

    def __init__(self, runner, args, nparts, helpers, done=0):
        self.runner, self.args, self.nparts, self.helpers = runner, args, nparts, helpers
        # parts taken, finished, taken from the front (by the caller), from the back;
        # the first ``done`` parts are the caller's, already run
        self.tickets = np.array([done, done, done, 0], np.int64)
        self.seat = itertools.count().__next__  # atomic under the GIL
        self.failed = 0  # threads whose part raised (each takes no further part)
        self.error = None
        self.holding = 0  # helpers holding ``args`` (the caller's arrays)

    def run_parts(self, flag, slot, rounds):
        """``runner`` on this thread (see ``_run_parts``)."""
        if slot and self.tickets[0] >= self.nparts:
            return 0  # nothing left to take
        args = self.args
        if args is None:  # the call has returned
            return 0
        self.holding += bool(slot)
        try:
            return self.runner(flag, slot, rounds, self.tickets, self.nparts, *args)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            self.error = exc
            self.failed += 1
            return -1
        finally:
            del args
            self.holding -= bool(slot)

    def settled(self):
        """Whether every part that was taken has finished or failed."""
        return int(self.tickets[1]) + self.failed >= min(int(self.tickets[0]), self.nparts)


class _Helper:
    __slots__ = ("wake", "sleeping")

    def __init__(self):
        self.wake = queue.SimpleQueue()
        self.sleeping = False


class _Helpers:
    """Daemon threads that run parts of the calling thread's kernels.

    The caller publishes a job (``job``, then, from its jitted runner, a new
    generation in ``flag[0]``) and runs parts itself; each helper takes parts
    once it sees the job.  The caller waits only for parts already taken,
    never for a helper that has not started, so a helper whose core is busy
    costs the call nothing.  A helper watches ``flag`` for HELPER_SPIN_SECONDS
    after each job, then sleeps on its queue until woken: between calls it
    takes no core from BLAS or from other processes.  ``flag[1 + i]`` holds
    helper ``i``'s state (``_WATCHING`` ... ``_ELSEWHERE``).
    """

    def __init__(self):
        self.helpers = []
        self.lock = threading.Lock()
        self.flag = np.zeros(max_threads(), np.int64)
        self.job = None
        self.rounds = self.wait_rounds = 0

    def start(self, n):
        with self.lock:
            if not self.rounds:
                per_round = _seconds_per_round()
                self.rounds = max(1, int(HELPER_SPIN_SECONDS / per_round))
                self.wait_rounds = max(1, int(CALLER_WAIT_SECONDS / per_round))
            while len(self.helpers) < n:
                helper = _Helper()
                self.flag[1 + len(self.helpers)] = _ELSEWHERE
                threading.Thread(target=self._serve, args=(helper, 1 + len(self.helpers)),
                                 daemon=True,
                                 name=f"kronjit-helper-{len(self.helpers)}").start()
                self.helpers.append(helper)

    def _serve(self, helper, slot):
        flag = self.flag
        seen = int(flag[0])
        watched = _watch_kernel(flag, seen, self.rounds, slot)
        while True:
            if not watched:
                # run() publishes ``job`` and then queues a wake-up if it finds this
                # helper asleep; both under the GIL, so a job published while the
                # helper goes to sleep is seen here or comes with a wake-up
                helper.sleeping = True
                if self.job is None:
                    helper.wake.get()
                helper.sleeping = False
            seen = int(flag[0])
            job = self.job
            if job is not None and job.seat() < job.helpers:
                job.run_parts(flag, slot, 0)
            job = None  # the arrays are the caller's to free, as soon as it returns
            watched = _watch_kernel(flag, seen, self.rounds, slot)

    def run(self, runner, args, nparts, nhelpers, done=0):
        if len(self.helpers) < nhelpers:
            self.start(nhelpers)
        job = _Job(runner, args, nparts, nhelpers, done)
        self.job = job
        for helper in self.helpers[:nhelpers]:
            if helper.sleeping:
                helper.sleeping = False  # runnable from now on (free_cores counts it)
                helper.wake.put(None)
        if job.run_parts(self.flag, 0, self.wait_rounds) < 0:
            while not job.settled():  # a part a helper took runs long, or failed
                time.sleep(1e-4)
        self.job = None
        job.args = None  # a helper that looks later takes no part and must not keep the arrays
        while job.holding:  # one that took them has no part left; its references go now, so
            time.sleep(0)   # that the arrays are freed (and their memory reused) on time
        if job.error is not None:
            raise job.error

    def free_cores(self):
        """Cores that helpers could use now: the CPU count less the threads running on
        the machine (``/proc/loadavg``: the caller, OpenBLAS's spinning threads, other
        processes), not counting helpers that are watching for a call."""
        try:
            running = int(os.pread(_LOADAVG, 64, 0).split()[3].split(b"/")[0])
        except (OSError, ValueError, IndexError, TypeError):
            return max_threads()  # unknown (no /proc/loadavg): every helper is offered parts
        watching = sum(not helper.sleeping for helper in self.helpers)
        return _CPU_COUNT - running + watching


_watch_kernel = None


def _seconds_per_round():
    """How long one pause of a watching loop takes on this machine (compiling it first)."""
    global _watch_kernel
    if _watch_kernel is None:
        _watch_kernel = _jit(_watch)
    flag = np.zeros(2, np.int64)
    _watch_kernel(flag, 0, 1, 1)
    start = time.perf_counter()
    _watch_kernel(flag, 0, 4096, 1)
    return max((time.perf_counter() - start) / 4096, 1e-9)


_CPU_COUNT = os.cpu_count() or 1
try:
    _LOADAVG = os.open("/proc/loadavg", os.O_RDONLY)  # read with pread: 2 us a call
except OSError:  # not Linux: every call offers parts to every helper
    _LOADAVG = None
_helpers = _Helpers()


def helper_threads():
    """How many helper threads this process has started."""
    return len(_helpers.helpers)


def start_helpers():
    """Start the helper threads now rather than at the first parallel kernel."""
    _helpers.start(max_threads() - 1)


def parts_for(nbytes, threads):
    """How many parts a kernel writing ``nbytes`` is split into on ``threads`` threads."""
    if threads < 2 or nbytes < PARALLEL_MIN_BYTES:
        return 1
    return int(max(2, min(PARTS_PER_THREAD * threads, nbytes // MIN_PART_BYTES)))


class kernel:
    """A jitted kernel that runs in parts on several threads.

    The decorated function takes two last arguments, ``part`` and ``nparts``,
    and computes part ``part`` of ``nparts`` of its output (disjoint parts:
    any thread may run any part, in any order).  Call it with every argument
    but those two, plus ``nbytes=`` the size of the work: the runtime picks
    the number of parts and runs them on the calling thread and, when the
    work is large enough, more than one thread is allowed and cores are free,
    on helper threads.  A call made while another thread's call has the
    helpers, or inside ``serial_in_this_thread``, runs all parts on its own
    thread.
    """

    def __init__(self, func):
        self.py_func = func
        self.compiled = _jit(func)
        self.runner = _parts_runner(func, self.compiled)
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__

    def bound(self, suffix: str, **bindings) -> kernel:
        """This kernel with some of its globals bound to other objects (a scalar
        function in place of a default one, say), compiled and cached as a kernel of
        its own, ``<name>_<suffix>``."""
        return kernel(_relocated(self.py_func, self.py_func, f"{self.__name__}_{suffix}",
                                 bindings))

    def __call__(self, *args, nbytes):
        if nbytes >= PARALLEL_MIN_BYTES:
            threads = get_num_threads()
            nparts = parts_for(nbytes, threads)
            if nparts > 1 and not getattr(_thread_state, "serial", False):
                lock = _parallel_lock
                if lock.acquire(blocking=False):
                    try:
                        helpers = min(threads, nparts) - 1
                        if helpers > 0:
                            free = _helpers.free_cores()
                            if free > 0:
                                return _helpers.run(self.runner, args, nparts,
                                                    min(helpers, free))
                            if (nbytes >= RECHECK_MIN_BYTES
                                    and not getattr(_thread_state, "compile_runners", False)):
                                return self._run_until_cores_free(args, nparts, helpers)
                    finally:
                        lock.release()
            if getattr(_thread_state, "compile_runners", False):
                _helpers.start(0)  # (measures the watching loops the runner pauses in)
                return _helpers.run(self.runner, args, max(nparts, 2), 0)
        return self.compiled(*args, 0, 1)

    def _run_until_cores_free(self, args, nparts, helpers):
        """Parts one by one on this thread, looking for free cores before each: from
        the first look that finds one, the parts left run with helpers."""
        for part in range(nparts):
            if 0 < part < nparts - 1:
                free = _helpers.free_cores()
                if free > 0:
                    return _helpers.run(self.runner, args, nparts, min(helpers, free), part)
            self.compiled(*args, part, nparts)


def compiling_runners():
    """Context manager: in this block (this thread), a kernel call large enough to run
    in parts does, through its runner, even when it finds no free core or one thread
    allowed (the caller then runs every part): ``python -m kronjit precompile``
    compiles the runners with the kernels, whatever the machine's load or core count."""
    return _in_this_thread("compile_runners")


# --- parallel calls of Python code that releases the GIL ----------------------

class _PythonJob:
    """``fn(part)`` for every part, shared by the caller and worker threads: each takes
    the next part when it runs, so a worker that starts late costs the call nothing."""

    def __init__(self, fn, nparts):
        self.fn, self.nparts = fn, nparts
        self.take = itertools.count().__next__  # atomic under the GIL
        self.context = contextvars.copy_context()  # numpy's errstate is a context variable
        self.running = 0
        self.idle = threading.Condition()
        self.error = None

    def work(self):
        with self.idle:
            self.running += 1
        try:
            self.context.copy().run(self._take_parts)
        finally:
            with self.idle:
                self.running -= 1
                self.idle.notify_all()

    def _take_parts(self):
        while self.error is None:
            fn = self.fn
            part = self.take()
            if fn is None or part >= self.nparts:
                return
            try:
                fn(part)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
                self.error = exc


def _python_worker(jobs):
    while True:
        jobs.get().work()


_python_workers = []
_python_workers_lock = threading.Lock()


def run_python_parts(fn, length, nbytes):
    """Call ``fn(start, stop)`` over disjoint ranges that cover ``range(length)``, on this
    thread and, for work of ``nbytes`` large enough and more than one thread allowed,
    on worker threads.

    For Python code whose time is spent in calls that release the GIL (numpy's ufunc
    loops on disjoint blocks of one output).  The parts run under the caller's
    context variables (numpy's ``errstate``); the first exception a part raises is
    raised here once every part that started has finished.
    """
    threads = get_num_threads()
    nparts = min(length, parts_for(nbytes, threads))
    if nparts < 2 or getattr(_thread_state, "serial", False):
        if length:
            fn(0, length)
        return
    job = _PythonJob(lambda part: fn(length * part // nparts, length * (part + 1) // nparts),
                     nparts)
    nworkers = min(threads, nparts) - 1
    with _python_workers_lock:
        while len(_python_workers) < nworkers:
            jobs = queue.SimpleQueue()
            threading.Thread(target=_python_worker, args=(jobs,), daemon=True,
                             name=f"kronjit-python-{len(_python_workers)}").start()
            _python_workers.append(jobs)
    for jobs in _python_workers[:nworkers]:
        jobs.put(job)
    job.work()
    with job.idle:
        job.fn = None  # a worker that comes to the job from now on finds nothing to do
        job.idle.wait_for(lambda: job.running == 0)
    if job.error is not None:
        raise job.error


# --- BLAS and LAPACK calls made by kronjit -------------------------------------

#: Order up to which kronjit's own LAPACK calls (factor eigendecompositions,
#: inverses, determinants) run on one BLAS thread.  Measured with OpenBLAS on 2
#: cores: eigh of 256x256 takes 6 ms on one thread and 6-15 ms on two, and a
#: GP scan of 80x80 and 60x60 factors alternating with numpy runs 31 ms instead
#: of 7.6 ms, because OpenBLAS's threads hand tiny jobs to each other while the
#: previous call's threads still spin; from 512 on two threads pay.
SMALL_LAPACK_ORDER = 256

_blas_libraries = None


@contextlib.contextmanager
def small_lapack(order):
    """Context manager for kronjit's own LAPACK call on an ``order x order`` matrix.

    Small matrices run on one BLAS thread: each BLAS library threadpoolctl
    finds is set to one thread for the block and then back to its count (the
    setting is the library's, process-wide, while the block runs).
    """
    global _blas_libraries
    if order > SMALL_LAPACK_ORDER:
        yield
        return
    if _blas_libraries is None:
        import threadpoolctl
        _blas_libraries = threadpoolctl.ThreadpoolController().select(
            user_api="blas").lib_controllers
    counts = [lib.num_threads for lib in _blas_libraries]
    for lib in _blas_libraries:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(_blas_libraries, counts):
            lib.set_num_threads(n)


class _WritableAlias:
    """An array interface for ``x``'s memory that does not say read-only."""

    def __init__(self, x):
        self.base = x  # keeps the memory alive as long as the alias
        self.__array_interface__ = dict(x.__array_interface__, data=(x.ctypes.data, False))


def kernel_input(x: np.ndarray) -> np.ndarray:
    """``x``, or where it is read-only a writable alias of the same memory.

    Numba types a read-only array differently and compiles every kernel again for
    it (2-4 s each); kernels never write their inputs, so they are given the alias
    instead: one compiled version whatever the input's flags, and no copy."""
    if x.flags.writeable:
        return x
    return np.asarray(_WritableAlias(x))


def serial_kernel(func):
    """A jitted helper too small to parallelise: one build, same policy."""
    return _jit(func)
