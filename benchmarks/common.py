"""Helpers shared by the asv benchmark modules."""
from kronjit.study import timing

#: Repeats per side-by-side ratio (the benchmark smoke test sets it to 1).
REPEAT = 7
#: Sparse factor sizes and the largest problems' sizes are divided by this: the
#: benchmark smoke test sets it to 10, so that every case runs its code (on inputs
#: of the same density) in seconds.
SIZE_DIVISOR = 1


def scaled(n):
    """A factor size as the benchmarks build it (see ``SIZE_DIVISOR``)."""
    return max(2, n // SIZE_DIVISOR)


def side_by_side(reference, candidate, repeat=None):
    """Median over repeats of reference_time / candidate_time, timed alternately
    in batches exactly as ``python -m kronjit compare`` times them."""
    return timing.side_by_side(reference, candidate, REPEAT if repeat is None else repeat)


def call_benchmarks(module, prefix, calls, inputs, limit):
    """A family's two benchmark classes, from its problems ``calls()`` (``{kind:
    (reference name, reference, kronjit call)}``), ``inputs(kind, scale)`` and
    ``limit(kind, inputs, result)``: ``<prefix>`` times each implementation and its
    peak memory, ``<prefix>Ratios`` tracks the speedup and the fraction of the limit,
    side by side.  ``module`` is the defining module's ``__name__`` (asv and the smoke
    test look for benchmarks defined there)."""
    kinds = list(calls())

    def problem(kind, impl):
        """The inputs (sizes divided by ``SIZE_DIVISOR``) and the call to time."""
        reference_name, reference, candidate = calls()[kind]
        args = inputs(kind, SIZE_DIVISOR)
        fn = candidate if impl == "kronjit" else reference
        try:
            fn(*args)  # warm-up: JIT compilation is never timed
        except ImportError:
            raise NotImplementedError(f"{reference_name} is not installed") from None
        return args, fn

    class Calls:
        params = (kinds, ["kronjit", "reference"])
        param_names = ["kind", "impl"]
        timeout = 300

        def setup(self, kind, impl):
            self.inputs, self.fn = problem(kind, impl)

        def time_call(self, kind, impl):
            self.fn(*self.inputs)

        def peakmem_call(self, kind, impl):
            self.fn(*self.inputs)

    class Ratios:
        """Speedups against the reference and fractions of the limit, side by side."""
        params = (kinds,)
        param_names = ["kind"]
        timeout = 300

        def setup(self, kind):
            self.inputs, self.reference = problem(kind, "reference")
            _, self.candidate = problem(kind, "kronjit")
            self.limit = limit(kind, self.inputs, self.candidate(*self.inputs))

        def track_speedup(self, kind):
            return side_by_side(lambda: self.reference(*self.inputs),
                                lambda: self.candidate(*self.inputs))
        track_speedup.unit = "x"

        def track_fraction_of_limit(self, kind):
            return side_by_side(self.limit, lambda: self.candidate(*self.inputs))
        track_fraction_of_limit.unit = "fraction of the limit"

    for cls, name in ((Calls, prefix), (Ratios, prefix + "Ratios")):
        cls.__module__, cls.__name__, cls.__qualname__ = module, name, name
    return Calls, Ratios, problem
