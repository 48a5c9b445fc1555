"""Helpers shared by the asv benchmark modules."""
import time

import numpy as np


def side_by_side(reference, candidate, repeat=7):
    """Median over repeats of reference_time / candidate_time, run alternately."""
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
