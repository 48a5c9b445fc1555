"""Helpers shared by the asv benchmark modules."""
from kronjit.study import timing

#: Repeats per side-by-side ratio (the benchmark smoke test sets it to 1).
REPEAT = 7
#: Sparse factor sizes are divided by this: the benchmark smoke test sets it to 10,
#: so that every case runs its code, on inputs of the same density, in seconds.
SIZE_DIVISOR = 1


def scaled(n):
    """A factor size as the benchmarks build it (see ``SIZE_DIVISOR``)."""
    return max(2, n // SIZE_DIVISOR)


def side_by_side(reference, candidate, repeat=None):
    """Median over repeats of reference_time / candidate_time, timed alternately
    in batches exactly as ``python -m kronjit compare`` times them."""
    return timing.side_by_side(reference, candidate, REPEAT if repeat is None else repeat)
