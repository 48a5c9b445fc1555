"""The Kronecker family: ``kron(op=)``, ``batch_kron``, ``khatri_rao``, ``face_split``,
``sparse.face_split`` and ``mttkrp`` against their numpy / scipy / tensorly references
(``kronjit.study.cases.family_calls``).

Limits: write bandwidth for the constructors (one parallel write pass over a
fresh array the size of the result, or over the ``out=`` buffer); for
``mttkrp``, a square GEMM of the same flops (``2 * X.size * R`` per mode).
"""
import numpy as np

from kronjit.study.cases import FAMILY_OUT, family_calls, family_inputs, family_limit
from kronjit.study.limits import write_pass

from . import common
from .common import side_by_side

KINDS = list(family_calls())


def _problem(kind, impl):
    """The inputs (sizes divided by ``common.SIZE_DIVISOR``) and the call to time."""
    reference_name, reference, candidate = family_calls()[kind]
    inputs = family_inputs(kind, common.SIZE_DIVISOR)
    fn = candidate if impl == "kronjit" else reference
    try:
        fn(*inputs)  # warm-up: JIT compilation is never timed
    except ImportError:
        raise NotImplementedError(f"{reference_name} is not installed") from None
    return inputs, fn


class Family:
    params = (KINDS, ["kronjit", "reference"])
    param_names = ["kind", "impl"]
    timeout = 300

    def setup(self, kind, impl):
        self.inputs, self.fn = _problem(kind, impl)

    def time_call(self, kind, impl):
        self.fn(*self.inputs)

    def peakmem_call(self, kind, impl):
        self.fn(*self.inputs)


class FamilyRatios:
    """Speedups against the reference and fractions of the limit, side by side."""
    params = (KINDS,)
    param_names = ["kind"]
    timeout = 300

    def setup(self, kind):
        self.inputs, self.reference = _problem(kind, "reference")
        _, self.candidate = _problem(kind, "kronjit")
        self.limit = family_limit(kind, self.inputs, self.candidate(*self.inputs))

    def track_speedup(self, kind):
        return side_by_side(lambda: self.reference(*self.inputs),
                            lambda: self.candidate(*self.inputs))
    track_speedup.unit = "x"

    def track_fraction_of_limit(self, kind):
        return side_by_side(self.limit, lambda: self.candidate(*self.inputs))
    track_fraction_of_limit.unit = "fraction of the limit"


class FamilyOut:
    """``out=`` into a reused buffer, against a write pass over the same buffer."""
    params = (FAMILY_OUT,)
    param_names = ["kind"]
    timeout = 300

    def setup(self, kind):
        self.inputs, self.candidate = _problem(kind, "kronjit")
        self.out = np.empty_like(self.candidate(*self.inputs))

    def track_fraction_of_write_pass(self, kind):
        return side_by_side(lambda: write_pass(self.out),
                            lambda: self.candidate(*self.inputs, out=self.out))
    track_fraction_of_write_pass.unit = "fraction of write bandwidth"
