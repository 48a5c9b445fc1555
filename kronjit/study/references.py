"""The references kronjit is measured and tested against, each written once.

numpy/scipy formulations of every family's result (the study times them, the
tests compare with them, as stumpy's ``tests/naive.py`` serves its tests),
the optional peers (pykronecker, pyfastkron), and helpers to compare results.
"""
import math

import numpy as np
import scipy.sparse as sp

__all__ = ["chained_kron", "textbook_kronsum", "gather_blocks", "block_toeplitz_gather",
           "shuffle_matvec", "pykronecker_call", "pyfastkron_call", "VECTRICK_REFERENCES",
           "gp_dense", "gp_numpy", "result_arrays", "same_sparse"]


def dense(f):
    """A factor as an ndarray (scipy sparse ones formed)."""
    return f.toarray() if sp.issparse(f) else np.asarray(f)


def chained_kron(factors):
    """``np.kron`` of the factors (sparse ones formed), chained left to right."""
    result = dense(factors[0])
    for f in factors[1:]:
        result = np.kron(result, dense(f))
    return result


def textbook_kronsum(factors):
    """``sum_i I ⊗ ... ⊗ Ai ⊗ ... ⊗ I`` with np.kron (the textbook convention)."""
    sizes = [f.shape[0] for f in factors]
    out = 0
    for i, f in enumerate(factors):
        pre, post = math.prod(sizes[:i]), math.prod(sizes[i + 1:])
        out = out + np.kron(np.kron(np.eye(pre), dense(f)), np.eye(post))
    return out


def gather_blocks(stack, idx):
    """numpy's way: the matrix whose block (i, j) is ``stack[idx[i, j]]`` (gather, then reshape)."""
    (m, n), (p, q) = idx.shape, stack.shape[1:]
    return stack[idx].transpose(0, 2, 1, 3).reshape(m * p, n * q)


def block_toeplitz_gather(c, r):
    """Block Toeplitz by numpy gather: block (i, j) is c[i - j] or r[j - i]."""
    m, n = c.shape[0], r.shape[0]
    idx = (m - 1) - np.arange(m)[:, None] + np.arange(n)[None, :]
    return gather_blocks(np.concatenate((c[::-1], r[1:])), idx)

def shuffle_matvec(factors, x):
    """The numpy reference for ``kron(*factors) @ x``: one tensordot per factor.

    Each step contracts the leading axis and rotates the new axis to the end,
    so after the last factor the axes are back in order.
    """
    tail = x.shape[1:]
    t = x.reshape([f.shape[1] for f in factors] + list(tail))
    for f in factors:
        t = np.moveaxis(np.tensordot(f, t, axes=(1, 0)), 0, len(factors) - 1)
    return t.reshape((-1,) + tail)

def pykronecker_call(factors, x):
    import pykronecker
    op = pykronecker.KroneckerProduct(factors)
    return lambda: op @ x

def pyfastkron_call(factors, x):
    from pyfastkron import fastkronnumpy
    # pyfastkron computes x @ kron(F1, ..., Fd) for row vectors: pass the transposes
    rows = np.ascontiguousarray(x.reshape(x.shape[0], -1).T)
    transposed = [np.ascontiguousarray(f.T) for f in factors]
    return lambda: fastkronnumpy.gemkm(rows, transposed)

#: The vec-trick references: name -> (factors, x) -> a call computing kron(*factors) @ x
#: (pyfastkron's in its own row layout).  The optional ones raise ImportError when missing.
VECTRICK_REFERENCES = {"numpy tensordot": lambda fs, x: (lambda: shuffle_matvec(fs, x)),
                       "pykronecker": pykronecker_call,
                       "pyfastkron": pyfastkron_call}

def gp_dense(k1, k2, y, noise):
    """The dense route: form ``K1 ⊗ K2 + noise I``, Cholesky, solve and log-determinant."""
    import scipy.linalg
    cov = np.kron(k1, k2)
    cov[np.diag_indices_from(cov)] += noise
    chol = scipy.linalg.cho_factor(cov, overwrite_a=True, check_finite=False)
    return (scipy.linalg.cho_solve(chol, y, check_finite=False),
            2.0 * float(np.log(np.diag(chol[0])).sum()))

def gp_numpy(k1, k2, y, noise):
    """The pure-numpy Kronecker GP step: eigendecompositions, two tensordot products for
    the solve, the log-determinant from the eigenvalues, and one product ``K y``."""
    w1, q1 = np.linalg.eigh(k1)
    w2, q2 = np.linalg.eigh(k2)
    y2 = y.reshape(k1.shape[0], k2.shape[0])
    lam = np.add.outer(w1, np.zeros_like(w2)) * w2 + noise
    alpha = q1 @ ((q1.T @ y2 @ q2) / lam) @ q2.T
    return alpha.ravel(), float(np.log(lam).sum()), (k1 @ y2 @ k2.T).ravel()

def result_arrays(result):
    """The arrays holding a result: the ndarray itself or a sparse object's index/data arrays."""
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, (tuple, list)):  # several results (a solve and a log-determinant)
        return [a for r in result if isinstance(r, (np.ndarray, tuple, list))
                for a in result_arrays(r)]
    names = ("data", "indices", "indptr") if hasattr(result, "indptr") else ("data",)
    return [getattr(result, n) for n in names] + list(getattr(result, "coords", ()))

def same_sparse(got, expected):
    return (type(got) is type(expected) and got.format == expected.format
            and got.dtype == expected.dtype and got.shape == expected.shape
            and all(g.dtype == e.dtype and np.array_equal(g, e, equal_nan=True)
                    for g, e in zip(result_arrays(got), result_arrays(expected))))
