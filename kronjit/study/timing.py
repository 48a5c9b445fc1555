"""Timing as a program runs: kronjit and its reference alternately, in batches.

Each callable is warmed up (so JIT compilation is never timed), then all are
run in turn, ``repeat`` rounds, each a batch of calls long enough to be above
timer noise; the study reports medians over the rounds of each time and of
each round's ratio.  ``settle`` (``--settle``) busy-waits before each batch
for isolated figures, free of the threads the previous batch woke.
"""
import math
import time

import numpy as np

from .references import result_arrays

__all__ = ["SETTLE_S", "settle", "alternate", "side_by_side", "run_case", "traced_peak"]


#: Seconds of busy-waiting before each timed batch (see ``settle``).
SETTLE_S = 0.12

def settle(seconds=None):
    """Busy-wait ``seconds`` (default ``SETTLE_S``) so that threads the previous
    batch woke go idle before the next one is timed.

    OpenBLAS's threads spin for about 0.1 s after each multithreaded call; a
    parallel kernel launched in that window waits for a core, a scheduler tick
    (4 ms here) per launch, which turned 30 us calls into 5 ms ones in this
    study.  Busy-waiting rather than sleeping: an idle process lets the
    machine's cores halt, and waking them costs milliseconds as well.
    """
    end = time.perf_counter() + (SETTLE_S if seconds is None else seconds)
    while time.perf_counter() < end:
        pass

def _time(fn, inner, settle_s=0.0):
    if settle_s:
        settle(settle_s)
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner

def alternate(fns, repeat=7, min_time=0.02, settle_s=0.0):
    """Time callables side by side, as a program runs them: warm each up, then
    ``repeat`` rounds that time every one of ``fns`` in turn, each in a batch
    of calls.  The batch holds enough calls for the slower of the first two to
    take ``min_time``, above timer noise.  With ``settle_s``, each batch starts
    after that long a busy-wait (``settle``: isolated figures, free of the
    threads the previous batch woke).  Returns a list of per-call times
    (seconds) per callable, and the batch size."""
    for fn in fns:  # warm-up: compilation, page cache
        fn()
    t_one = max(max(_time(fn, 1, settle_s) for fn in fns[:2]), 1e-7)
    inner = max(1, math.ceil(min_time / t_one))
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, fn_times in zip(fns, times):
            fn_times.append(_time(fn, inner, settle_s))
    return times, inner

def side_by_side(reference, candidate, repeat=7, min_time=0.02, settle_s=0.0):
    """Median over ``repeat`` rounds of reference time / candidate time (``alternate``)."""
    (ref_t, new_t), _ = alternate([reference, candidate], repeat, min_time, settle_s)
    return float(np.median([r / c for r, c in zip(ref_t, new_t)]))

def run_case(case, repeat=7, min_time=0.02, settle_s=0.0):
    """Time one case; return a dict of medians (seconds) and ratios."""
    reference, candidate, fill = case.setup()  # fill is None where no write limit applies
    with case.conditions():
        (ref_t, new_t, *fill_t), inner = alternate(
            [f for f in (reference, candidate, fill) if f], repeat, min_time, settle_s)
    fill_t = fill_t[0] if fill_t else []
    median = lambda xs: float(np.median(xs)) if xs else None  # noqa: E731
    return {
        "family": case.family, "case": case.name, "reference": case.reference,
        "params": case.params, "repeat": repeat, "inner": inner,
        "reference_s": median(ref_t), "kronjit_s": median(new_t), "fill_s": median(fill_t),
        "speedup": median([r / c for r, c in zip(ref_t, new_t)]),
        "speedup_samples": [r / c for r, c in zip(ref_t, new_t)],  # one per round
        "fill_fraction": median([f / c for f, c in zip(fill_t, new_t)]),
        "settle_s": settle_s,
        **_rates(case.params.get("flops"), median(ref_t), median(new_t)),
        **_memory(candidate),
    }

def _rates(flops, reference_s, kronjit_s):
    """GFLOP/s of both sides, for cases that state their flops."""
    if not flops:
        return {}
    return {"reference_gflops": flops / reference_s / 1e9, "kronjit_gflops": flops / kronjit_s / 1e9}

def traced_peak(fn):
    """``(fn(), peak bytes numpy and Python allocated during the call)``, by tracemalloc."""
    import tracemalloc
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

def _memory(candidate):
    """Bytes of one call's result, and the peak allocated during it (tracemalloc) over them."""
    result, peak = traced_peak(candidate)
    size = sum(a.nbytes for a in result_arrays(result))
    return {"result_bytes": size, "peak_memory_over_result": peak / size if size else float("nan")}
