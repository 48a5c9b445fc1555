"""One measuring round of ``python -m kronjit gate``, in a process of its own.

Run as a script: ``python _gate_child.py SOURCE_TREE ROUNDS``.  kronjit is imported
from ``SOURCE_TREE`` (the commit being measured); the timing and the references are
this file's own study package, the same code for both commits, loaded under another
name so that the commit's ``kronjit.study`` does not replace them.  Prints one JSON
object: ``{case: median kronjit-over-reference speedup}`` over ``ROUNDS`` side-by-side
rounds, ``null`` for a case whose function the commit does not have.
"""
import importlib
import json
import os
import sys
import types

STUDY_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != STUDY_DIR]
sys.path.insert(0, sys.argv[1])

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import kronjit  # noqa: E402  (from SOURCE_TREE)

study = types.ModuleType("_kronjit_gate_study")
study.__path__ = [STUDY_DIR]
sys.modules[study.__name__] = study
timing = importlib.import_module(f"{study.__name__}.timing")
references = importlib.import_module(f"{study.__name__}.references")


def problems():
    """``{case: (reference call, kronjit call)}``: one mid-size case per kernel family
    and a small one where Python's overhead shows."""
    rng = np.random.default_rng(0)
    a64, b64 = rng.standard_normal((64, 64)), rng.standard_normal((64, 64))
    a8, b8 = rng.standard_normal((8, 8)), rng.standard_normal((8, 8))
    s1, s2 = references.random_sparse(300, 1, 1), references.random_sparse(300, 1, 2)
    f16 = [rng.standard_normal((16, 16)) for _ in range(4)]
    x16 = rng.standard_normal(16 ** 4)
    f8 = [rng.standard_normal((8, 8)) for _ in range(4)]
    x8 = rng.standard_normal(8 ** 4)
    blocks = rng.standard_normal((32, 16, 16))
    r = np.concatenate((blocks[:1], rng.standard_normal((31, 16, 16))))
    return {
        "kron 64x64⊗64x64": (lambda: np.kron(a64, b64), lambda: kronjit.kron(a64, b64)),
        "kron 8x8⊗8x8": (lambda: np.kron(a8, b8), lambda: kronjit.kron(a8, b8)),
        "sparse.kron 300²(1%)⊗300²(1%) csr": (
            lambda: sp.kron(s1, s2, format="csr"),
            lambda: kronjit.sparse.kron(s1, s2, format="csr")),
        "sparse.kronsum 300²(1%)⊕300²(1%) csr": (
            lambda: sp.kronsum(s1, s2, format="csr"),
            lambda: kronjit.sparse.kronsum(s1, s2, format="csr")),
        "kron_matvec 16^4": (lambda: references.shuffle_matvec(f16, x16),
                             lambda: kronjit.kron_matvec(f16, x16)),
        "kron_matvec 8^4": (lambda: references.shuffle_matvec(f8, x8),
                            lambda: kronjit.kron_matvec(f8, x8)),
        "block_toeplitz 32 blocks of 16x16": (
            lambda: references.block_toeplitz_gather(blocks, r),
            lambda: kronjit.block_toeplitz(blocks, r)),
    }


def main():
    rounds = int(sys.argv[2])
    kronjit.set_num_threads(int(sys.argv[3]))
    speedups = {}
    for case, (reference, candidate) in problems().items():
        try:
            speedups[case] = timing.side_by_side(reference, candidate, repeat=rounds)
        except AttributeError:  # the commit has no such function
            speedups[case] = None
    print(json.dumps(speedups))


if __name__ == "__main__":
    main()
