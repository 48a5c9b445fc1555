import os
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
