import os
import subprocess
import sys
import textwrap

import numpy as np
from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, derandomize=True, max_examples=60,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Every dtype the kernels handle, in numpy's character codes.
KERNEL_DTYPES = [np.dtype(c) for c in "?bBhHiIlLqQfdFD"]


def assert_identical(got, expected):
    """Same type, dtype, shape and bytes (so -0.0, NaN payloads, wraparound count)."""
    assert type(got) is type(expected), (type(got), type(expected))
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert np.shape(got) == np.shape(expected), (np.shape(got), np.shape(expected))
    g, e = np.ascontiguousarray(got), np.ascontiguousarray(expected)
    if g.tobytes() != e.tobytes():
        bad = np.flatnonzero(g.view(np.uint8).reshape(-1) != e.view(np.uint8).reshape(-1))
        raise AssertionError(f"values differ at byte offsets {bad[:10]}...\n"
                             f"got {g.ravel()[:8]}\nexpected {e.ravel()[:8]}")


def run_python(code, env=None, timeout=300, cwd=None):
    """Run ``code`` in a fresh interpreter; return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_child_ok(proc, marker="OK"):
    assert proc.returncode == 0, (f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\n"
                                  f"stderr:\n{proc.stderr}")
    assert marker in proc.stdout, proc.stdout + proc.stderr
