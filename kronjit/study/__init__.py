"""The comparison study: ``python -m kronjit compare``, and what asv, the
pytest-benchmark files and the tests share with it.

One module per concern:

* ``cases``: the cases, one list per family, each checking kronjit against
  its reference before it is timed;
* ``references``: every numpy/scipy/peer reference, written once (the tests
  use them too);
* ``limits``: what bounds each kernel (a write pass, a copy pass, a same-flop
  GEMM), timed beside it;
* ``timing``: kronjit and its reference run alternately, as a program runs
  them (``--settle`` for isolated figures), and the memory each call peaks at;
* ``report``: the table, the plot, the changes against an earlier run and the HTML
  report over several;
* ``cli``: the command line;
* ``gate``: did a change make kronjit slower (``_gate_child`` measures one round).

The Gaussian-process case (solve and log-determinant with ``K1 ⊗ K2 + σ²I``)
has no limit column: its reference is the dense Cholesky route, which the
Kronecker route beats by changing the algorithm.
"""
