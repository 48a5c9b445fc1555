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

Family, FamilyRatios, _problem = common.call_benchmarks(__name__, "Family", family_calls,
                                                       family_inputs, family_limit)


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
