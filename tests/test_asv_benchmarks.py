"""Every asv benchmark runs once, so a broken benchmark fails the test suite (and CI).

Nothing is timed: each benchmark class is set up for every parameter
combination and each of its ``time_``/``peakmem_``/``track_`` methods is
called once, with side-by-side ratios measured over a single repeat and
sparse factors a tenth of their size (``benchmarks.common.SIZE_DIVISOR``).
"""
import importlib
import importlib.util
import inspect
import itertools
import math
import pathlib
import time

import pytest

import benchmarks.common
import kronjit.study.timing

BENCH_DIR = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
KINDS = ("time_", "peakmem_", "track_")
#: References from the bench extra, whose benchmarks asv (and this test) skip where absent.
OPTIONAL_REFERENCES = ("pykronecker", "pyfastkron", "tensorly")


def benchmark_cases():
    for path in sorted(BENCH_DIR.glob("bench_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            methods = [m for m in dir(cls) if m.startswith(KINDS)]
            if not methods:
                continue
            params = getattr(cls, "params", ())
            if params and not isinstance(params[0], (list, tuple)):
                params = (params,)
            for combo in itertools.product(*params):
                yield pytest.param(cls, combo, methods, id=f"{path.stem}.{name}{list(combo)}")


def _call_each_once(fns, repeat=1, min_time=0.0, settle_s=0.0):
    """``kronjit.study.timing.alternate`` with one call of each callable: a ratio the benchmark can
    compute and return, without warm-up calls, probes or batches."""
    times = []
    for fn in fns:
        start = time.perf_counter()
        fn()
        times.append([max(time.perf_counter() - start, 1e-9)])
    return times, 1


@pytest.mark.parametrize("cls,combo,methods", list(benchmark_cases()))
def test_benchmark_runs_once(cls, combo, methods, monkeypatch):
    monkeypatch.setattr(benchmarks.common, "REPEAT", 1)
    monkeypatch.setattr(benchmarks.common, "SIZE_DIVISOR", 10)
    monkeypatch.setattr(kronjit.study.timing, "alternate", _call_each_once)  # nothing is timed here
    bench = cls()
    if hasattr(bench, "setup"):
        try:
            bench.setup(*combo)
        except NotImplementedError as why:  # asv's skip: an optional reference is missing
            missing = [name for name in OPTIONAL_REFERENCES if str(why).startswith(name)]
            # the skip must be true: the reference really is absent, or really refuses the input
            assert missing, why
            assert "does not take" in str(why) or importlib.util.find_spec(missing[0]) is None, why
            pytest.skip(str(why))
    try:
        for method in methods:
            value = getattr(bench, method)(*combo)
            if method.startswith("track_"):
                assert isinstance(value, float) and math.isfinite(value) and value > 0, \
                    (method, value)
    finally:
        if hasattr(bench, "teardown"):
            bench.teardown(*combo)


def test_every_module_is_collected():
    names = {p.stem for p in BENCH_DIR.glob("bench_*.py")}
    collected = {c.values[0].__module__.split(".")[-1] for c in benchmark_cases()}
    assert names == collected


def test_an_environment_holding_other_versions_than_asv_asked_for_is_refused():
    from importlib.metadata import version

    import benchmarks
    numpy, scipy = version("numpy"), version("scipy")
    benchmarks.check_requested_versions(f"virtualenv-py3.11-dask-numpy{numpy}-scipy{scipy}")
    benchmarks.check_requested_versions("virtualenv-py3.11-numba-numpy-scipy")  # newest: any
    benchmarks.check_requested_versions(f"virtualenv-py3.11-numpy{numpy.rsplit('.', 1)[0]}")
    with pytest.raises(RuntimeError, match=f"asked for numpy 1.0.1 but has {numpy}"):
        benchmarks.check_requested_versions("virtualenv-py3.11-numpy1.0.1-scipy" + scipy)
    with pytest.raises(RuntimeError, match="asked for scipy 0.1"):
        benchmarks.check_requested_versions("virtualenv-py3.11-scipy0.1")
