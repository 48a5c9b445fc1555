"""
Speedups against numpy and scipy
================================

A few cases of ``python -m kronjit compare``, timed here side by side
(kronjit and its reference alternately, each batch after a short busy-wait,
as ``compare --settle`` times them: isolated figures), drawn as ``compare
--plot`` draws them: a row per case with its speedup, the 1x line, and the
speedup a call running at the machine's limit would have.  The cases are the
study's small ones, so that the figure builds in seconds; run ``python -m
kronjit compare --plot speedups.png`` for the whole study.
"""
import matplotlib.pyplot as plt

from kronjit.study import cases, report, timing

names = {"32x32⊗32x32 float64", "8x8⊗8x8⊗8x8 float64", "300²(1%)⊗300²(1%) csr",
         "block_toeplitz 32x32 blocks of 16x16", "8^4 k=1"}
results = [timing.run_case(case, repeat=3, settle_s=timing.SETTLE_S) for case in cases.cases()
           if case.name in names]
for row in results:
    print(f"{row['family']:>10}: {row['case']:<40} {row['speedup']:.2f}x {row['reference']}")
fig = report.plot(results, title="kronjit against its references (this build)")
plt.show()
