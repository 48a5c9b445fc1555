"""The references kronjit is measured and tested against, each written once.

numpy/scipy formulations of every family's result (the study times them, the
tests compare with them, as stumpy's ``tests/naive.py`` serves its tests),
the optional peers (pykronecker, pyfastkron), and helpers to compare results.
"""
import math

import numpy as np
import scipy.sparse as sp

__all__ = ["random_sparse", "chained_kron", "textbook_kronsum", "gather_blocks", "block_toeplitz_gather",
           "shuffle_matvec", "pykronecker_call", "pyfastkron_call", "VECTRICK_REFERENCES",
           "gp_dense", "gp_numpy", "cholesky_solve_logdet", "block_toeplitz_solve_dense",
           "block_toeplitz_gp_dense", "result_arrays", "same_sparse",
           "kron_op_outer", "kron_op_broadcast", "batch_kron_loop", "batch_kron_broadcast",
           "face_split_rows", "face_split_broadcast", "sparse_face_split_rows",
           "sparse_face_split_numpy", "mttkrp_naive", "mttkrp_tensorly"]


def random_sparse(n, percent, seed, dtype="float64"):
    """An n x n CSR array with ``percent`` % of its entries stored, at random (seeded):
    the study's, the tests' and the gate's sparse inputs."""
    rng = np.random.default_rng(seed)
    nnz = round(n * n * percent / 100)
    flat = rng.choice(n * n, size=nnz, replace=False)
    return sp.csr_array((rng.standard_normal(nnz).astype(dtype), (flat // n, flat % n)),
                        shape=(n, n))


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

def cholesky_solve_logdet(cov, y):
    """``(cov^-1 y, log det cov)`` by dense Cholesky (``cov`` is overwritten)."""
    import scipy.linalg
    chol = scipy.linalg.cho_factor(cov, overwrite_a=True, check_finite=False)
    return (scipy.linalg.cho_solve(chol, y, check_finite=False),
            2.0 * float(np.log(np.diag(chol[0])).sum()))

def gp_dense(k1, k2, y, noise):
    """The dense route: form ``K1 ⊗ K2 + noise I``, Cholesky, solve and log-determinant."""
    cov = np.kron(k1, k2)
    cov[np.diag_indices_from(cov)] += noise
    return cholesky_solve_logdet(cov, y)

def block_toeplitz_solve_dense(c, r, b):
    """``scipy.linalg.solve`` on the block Toeplitz matrix formed by gather."""
    import scipy.linalg
    return scipy.linalg.solve(block_toeplitz_gather(c, r), b)

def block_toeplitz_gp_dense(c, y):
    """Solve and log-determinant of the block Hermitian Toeplitz covariance of blocks
    ``c``, formed, by dense Cholesky."""
    return cholesky_solve_logdet(block_toeplitz_gather(c, np.conj(np.swapaxes(c, 1, 2))), y)

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


# --- the Kronecker family -------------------------------------------------------------

def kron_op_outer(a, b, op):
    """``np.kron``'s layout of ``op.outer(a, b)``: the outer table, axes interleaved."""
    a, b = np.asarray(a), np.asarray(b)
    nd = max(a.ndim, b.ndim)
    a = a.reshape((1,) * (nd - a.ndim) + a.shape)
    b = b.reshape((1,) * (nd - b.ndim) + b.shape)
    table = op.outer(a, b)
    return table.transpose([t for i in range(nd) for t in (i, nd + i)]).reshape(
        [a.shape[i] * b.shape[i] for i in range(nd)])


def kron_op_broadcast(a, b, op):
    """The fastest numpy formulation of ``kron(a, b, op=op)`` for 2-D factors: one
    broadcast call of ``op`` into the interleaved layout (how ``np.kron`` multiplies)."""
    (m, n), (p, q) = a.shape, b.shape
    return op(a[:, None, :, None], b[None, :, None, :]).reshape(m * p, n * q)


def batch_kron_loop(factors):
    """``np.kron`` chained over every item of the broadcast batch, one item at a time."""
    batch = np.broadcast_shapes(*(np.shape(f)[:-2] for f in factors))
    stacks = [np.broadcast_to(f, batch + np.shape(f)[-2:]) for f in factors]
    items = [chained_kron([s[i] for s in stacks]) for i in np.ndindex(batch)]
    core = chained_kron([np.zeros(np.shape(f)[-2:], np.asarray(f).dtype) for f in factors])
    return np.array(items, dtype=core.dtype).reshape(batch + core.shape)


def batch_kron_broadcast(a, b):
    """The fastest numpy formulation of ``batch_kron(a, b)``: one broadcast multiply."""
    m, n = a.shape[-2:]
    p, q = b.shape[-2:]
    prod = a[..., :, None, :, None] * b[..., None, :, None, :]
    return prod.reshape(prod.shape[:-4] + (m * p, n * q))


def face_split_rows(factors):
    """Row ``i`` is ``np.kron`` chained over the factors' rows ``i``."""
    rows = [chained_kron([np.asarray(f)[i] for f in factors]) for i in range(len(factors[0]))]
    width = math.prod(np.shape(f)[1] for f in factors)
    dtype = chained_kron([np.zeros(1, np.asarray(f).dtype) for f in factors]).dtype
    return np.array(rows, dtype=dtype).reshape(len(factors[0]), width)


def face_split_broadcast(a, b):
    """The fastest numpy formulation of ``face_split(a, b)``: one broadcast multiply."""
    return (a[:, :, None] * b[:, None, :]).reshape(a.shape[0], -1)


def sparse_face_split_rows(factors):
    """Row ``i`` is ``scipy.sparse.kron`` of the factors' rows ``i``, stacked (canonical CSR)."""
    csr = [sp.csr_array(f) for f in factors]
    rows = []
    for i in range(csr[0].shape[0]):
        row = csr[0][[i]]
        for f in csr[1:]:
            row = sp.kron(row, f[[i]], format="csr")
        rows.append(row)
    result = sp.vstack(rows, format="csr")
    result.sort_indices()
    return result


def sparse_face_split_numpy(A, B):
    """The fastest scipy formulation found for the face-splitting product of CSR ``A`` and
    ``B``: every output entry's source positions at once with numpy (repeat, arange),
    then one gather and multiply; a CSR array over the results.  (Column indexing,
    ``A[:, cols].multiply(B[:, cols])``, or stacking row products are 100-1000x slower.)"""
    ka, kb = np.diff(A.indptr), np.diff(B.indptr)
    counts = ka * kb
    indptr = np.concatenate([[0], np.cumsum(counts)])
    offset = np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts)
    kb_rep = np.repeat(kb, counts)
    ia = np.repeat(A.indptr[:-1], counts) + offset // kb_rep
    ib = np.repeat(B.indptr[:-1], counts) + offset % kb_rep
    indices = A.indices[ia].astype(np.int64) * B.shape[1] + B.indices[ib]
    return sp.csr_array((A.data[ia] * B.data[ib], indices, indptr),
                        shape=(A.shape[0], A.shape[1] * B.shape[1]))


def mttkrp_naive(X, factors, mode):
    """``unfold(X, mode) @ khatri_rao(others)`` as written: the unfolding copies ``X`` for
    every mode but the first, and the Khatri-Rao product is formed."""
    import scipy.linalg
    others = [U for k, U in enumerate(factors) if k != mode]
    kr = others[0]
    for U in others[1:]:
        kr = scipy.linalg.khatri_rao(kr, U)
    rest = math.prod(n for k, n in enumerate(X.shape) if k != mode)
    return np.moveaxis(X, mode, 0).reshape(X.shape[mode], rest) @ kr


def mttkrp_tensorly(X, factors, mode):
    """tensorly's ``unfolding_dot_khatri_rao`` (numpy backend); ImportError without it."""
    import tensorly
    from tensorly.cp_tensor import unfolding_dot_khatri_rao
    tensorly.set_backend("numpy")
    return unfolding_dot_khatri_rao(X, (None, list(factors)), mode)
