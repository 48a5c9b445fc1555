"""kronjit's asv suite, one module per kernel family (``common`` is shared).

asv installs each matrix entry of ``asv.conf.json`` in a pip call of its own, so a
later install can replace a pinned version (scipy pulling a newer numpy) while the
environment keeps the pinned name, and its results would be recorded under versions
they were not measured with.  The suite refuses to run in such an environment.
"""
import os
from importlib.metadata import PackageNotFoundError, version

#: The packages whose versions ``asv.conf.json``'s matrix pins.
PINNED = ("numba", "numpy", "scipy")


def check_requested_versions(env_name=None):
    """RuntimeError if asv's environment (``ASV_ENV_NAME``, which lists the versions the
    matrix asked for, ``numpy2.2.6``) holds another version of a ``PINNED`` package."""
    name = os.environ.get("ASV_ENV_NAME", "") if env_name is None else env_name
    for token in name.split("-"):
        for package in PINNED:
            wanted = token[len(package):]
            if not (token.startswith(package) and wanted[:1].isdigit()):
                continue
            try:
                got = version(package)
            except PackageNotFoundError:
                got = "none"
            if got != wanted and not got.startswith(wanted + "."):
                raise RuntimeError(
                    f"asv environment {name} asked for {package} {wanted} but has {got} "
                    "installed (a later pip call replaced it): its results would be "
                    "recorded under the wrong version. Fix the matrix in asv.conf.json.")


check_requested_versions()
