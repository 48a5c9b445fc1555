"""kronjit inside numpy/scipy programs: speedups over the pure-numpy peer and over
kronjit on one thread, timed as the program runs (no busy-wait between calls).

The cases are ``python -m kronjit compare --only programs``'s: scipy's cg on a
KronProduct, a loop alternating a numpy matmul and a vec-trick product, a GP
hyperparameter scan, and three kernels beside a process that keeps one core
busy (started and stopped around each measurement).
"""
from kronjit.study import cases

from .common import side_by_side

PROGRAMS = {f"{c.name} vs {c.reference}": c for c in cases.cases() if c.family == "programs"}


class ProgramRatios:
    params = (list(PROGRAMS),)
    param_names = ["program"]
    timeout = 600

    def setup(self, program):
        self.case = PROGRAMS[program]
        try:
            self.reference, self.kronjit, _ = self.case.setup()
        except cases.CaseSkipped as why:
            raise NotImplementedError(str(why)) from None

    def track_speedup(self, program):
        with self.case.conditions():
            return side_by_side(self.reference, self.kronjit)
    track_speedup.unit = "x"
