import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if os.environ.get("KRONJIT_TEST_THREADS"):
    # kernel threads for this run (1: the serial twins, which Numba bounds-checks)
    import kronjit
    kronjit.set_num_threads(int(os.environ["KRONJIT_TEST_THREADS"]))


#: Where the session keeps the bounds-checked run (tests/test_runtime.py), if selected.
BOUNDS_RUN = pytest.StashKey()
BOUNDS_TEST = "test_kernel_suites_pass_with_bounds_checking"


def pytest_collection_modifyitems(config, items):
    if any(item.name == BOUNDS_TEST for item in items):
        from helpers import BoundsCheckedRun
        config.stash[BOUNDS_RUN] = BoundsCheckedRun()


def pytest_unconfigure(config):
    run = config.stash.get(BOUNDS_RUN, None)
    if run is not None:
        run.stop()


@pytest.fixture
def bounds_checked_run(request):
    """The bounds-checked run started at collection (see helpers.BoundsCheckedRun)."""
    return request.config.stash[BOUNDS_RUN]
