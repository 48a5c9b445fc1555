"""Helpers shared by the asv benchmark modules."""
import time

import numpy as np


#: Repeats per side-by-side ratio (the benchmark smoke test sets it to 1).
REPEAT = 7


def side_by_side(reference, candidate, repeat=None):
    """Median over repeats of reference_time / candidate_time, run alternately."""
    repeat = REPEAT if repeat is None else repeat
    reference(), candidate()
    ratios = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        reference()
        t1 = time.perf_counter()
        candidate()
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / max(t2 - t1, 1e-9))
    return float(np.median(ratios))
