"""One catalogue of bad and unusual input, fed to every public function.

Each public function gets its arguments one at a time replaced by a value
from ``UNUSUAL`` (wrong types, wrong ndim, unsupported dtypes, big-endian,
NaN/inf, empty, strided, read-only, lists).  The outcome must be one of:

* the reference's result (numpy/scipy, or the dense product for the
  vec-trick and the operators), when the reference accepts the input;
* an exception of a standard type (never a Numba error) that names the
  replaced argument, or, for functions documented to defer to numpy/scipy,
  the reference's own exception type.

Wrong ``out=`` arrays raise an exception naming ``out`` and leave it untouched.
"""
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from numba.core.errors import NumbaError

import kronjit
from helpers import assert_identical, assert_sparse_identical, bad_outs, dense, textbook_kronsum
from kronjit.study.references import block_toeplitz_gather as gather_toeplitz
from kronjit.study.references import (batch_kron_loop, face_split_rows, kron_op_outer,
                                      mttkrp_naive, sparse_face_split_rows)

ALLOWED = (TypeError, ValueError, MemoryError, np.linalg.LinAlgError)


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


UNUSUAL = {
    "None": None,
    "str": "abc",
    "object": np.array([[1.0, None], [2.0, 3.0]], dtype=object),
    "strings": np.array([["a", "b"], ["c", "d"]]),
    "datetime": np.array([["2020-01-01", "2020-01-02"]] * 2, dtype="datetime64[D]"),
    "float16": np.arange(4, dtype=np.float16).reshape(2, 2),
    "big-endian": np.arange(4.0).reshape(2, 2).astype(">f8"),
    "nan-inf": np.array([[np.nan, np.inf], [-np.inf, -0.0]]),
    "empty": np.zeros((0, 2)),
    "1-d": np.arange(3.0),
    "3-d": np.ones((2, 2, 2)),
    "0-d": np.array(2.0),
    "strided": np.arange(16.0).reshape(4, 4)[::2, ::-2],
    "read-only": _readonly(np.arange(4.0).reshape(2, 2)),
    "list": [[1.0, 2.0], [3.0, 4.0]],
    "sparse": sp.csr_array(np.eye(2)),
}

rng = np.random.default_rng(0)
# 2 x 2 factors, so that a 2 x 2 unusual value keeps every shape consistent
A, B = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
S2, S3 = rng.standard_normal((2, 2)), rng.standard_normal((3, 3))
C3, R3 = rng.standard_normal((3, 2, 2)), rng.standard_normal((2, 2, 2))
X4, X6 = rng.standard_normal(4), rng.standard_normal(6)
# square block Toeplitz systems (a dominant first block: every leading block nonsingular)
C3S, R3S = rng.standard_normal((3, 2, 2)) + 8 * np.eye(2), rng.standard_normal((3, 2, 2))


def dense_kron_matvec(a, b, x):
    return np.kron(dense(a), dense(b)) @ np.asarray(x)


def toeplitz_reference(c, r):
    """gather_toeplitz, with r=None the block Hermitian default."""
    if r is None and np.ndim(c) == 3:
        r = np.conj(np.swapaxes(c, 1, 2))
    if np.ndim(c) == np.ndim(r) == 3:
        return gather_toeplitz(np.asarray(c), np.asarray(r))
    return scipy.linalg.toeplitz(c, r)


def multilevel_reference(t, x):
    """``scipy.signal.fftconvolve(t, x on the grid, mode="valid")``, flattened."""
    import scipy.signal
    t = np.asarray(t)
    if t.dtype.kind not in "biufc" or t.ndim == 0 or any(s % 2 == 0 for s in t.shape):
        raise ValueError("not a multilevel Toeplitz kernel")
    grid = tuple((s + 1) // 2 for s in t.shape)
    return scipy.signal.fftconvolve(t, np.asarray(x).reshape(grid), mode="valid").ravel()


def block_reference(c, index, scalar):
    """Blocks ``c[index(i, j, n)]`` (None: zeros) with np.block; ``scalar(c)`` (scipy's
    function) for ``c`` of at most one dimension."""
    c = np.asarray(c)  # (a sparse matrix is a 0-d object array here, as in scipy's)
    if c.ndim <= 1:
        return scalar(c.ravel())  # a scalar is one 1x1 block
    if c.ndim != 3:
        raise ValueError("not blocks")
    n = c.shape[0]
    zero = np.zeros_like(c[0])
    return np.block([[zero if index(i, j, n) is None else c[index(i, j, n)] for j in range(n)]
                     for i in range(n)])


def same_result(got, want):
    """Identical arrays; object arrays element by element (sparse elements by value)."""
    if isinstance(want, np.ndarray) and want.dtype == object:
        assert isinstance(got, np.ndarray) and got.dtype == object and got.shape == want.shape
        for g, w in zip(got.ravel(), want.ravel()):
            if sp.issparse(w):
                assert sp.issparse(g) and (g != w).nnz == 0
            else:
                assert g is w or g == w or (g != g and w != w), (g, w)
        return
    assert_identical(got, want)


#: scipy's LinearOperator checks the vector: its messages, which say what was expected
OPERATOR_X = ("dimension mismatch", "expected 1-d or 2-d", "Scalar operands", "x has dtype")


class Entry:
    """A public function: its call, good arguments, reference, and the name each
    argument goes by in error messages."""

    def __init__(self, call, good, reference=None, compare="identical", names=None,
                 defers=False):
        self.call, self.good, self.reference = call, good, reference
        self.compare, self.names, self.defers = compare, names or {}, defers


ENTRIES = {
    "kron": Entry(lambda a, b: kronjit.kron(a, b), {"a": A, "b": B},
                  lambda a, b: np.kron(a, b), defers=True),
    "sparse.kron": Entry(lambda A, B: kronjit.sparse.kron(A, B, format="csr"), {"A": A, "B": B},
                         lambda A, B: sp.kron(A, B, format="csr"), compare="sparse",
                         defers=True),
    "sparse.kronsum": Entry(lambda A, B: kronjit.sparse.kronsum(A, B), {"A": S2, "B": S3},
                            lambda A, B: sp.kronsum(A, B), compare="sparse", defers=True),
    "block_toeplitz": Entry(lambda c, r: kronjit.block_toeplitz(c, r), {"c": C3, "r": R3},
                            toeplitz_reference),
    "block_hankel": Entry(lambda c: kronjit.block_hankel(c), {"c": C3},
                          lambda c: block_reference(c, lambda i, j, n: i + j if i + j < n else None,
                                                    scipy.linalg.hankel)),
    "block_circulant": Entry(lambda c: kronjit.block_circulant(c), {"c": C3},
                             lambda c: block_reference(c, lambda i, j, n: (i - j) % n,
                                                       scipy.linalg.circulant)),
    "block_diag": Entry(lambda a, b: kronjit.block_diag(a, b), {"a": A, "b": B},
                        lambda a, b: scipy.linalg.block_diag(a, b), defers=True),
    "block_toeplitz_matvec": Entry(
        lambda c, r, x: kronjit.block_toeplitz_matvec(c, r, x), {"c": C3, "r": R3, "x": X6},
        lambda c, r, x: toeplitz_reference(c, r) @ np.asarray(x),
        compare="close"),
    "kron_matvec": Entry(lambda a, b, x: kronjit.kron_matvec([a, b], x),
                         {"a": A, "b": B, "x": X4}, dense_kron_matvec, compare="close",
                         names={"a": "factors[0]", "b": "factors[1]"}),
    "KronProduct": Entry(lambda a, b, x: kronjit.KronProduct([a, b]) @ x,
                         {"a": A, "b": B, "x": X4}, dense_kron_matvec, compare="close",
                         names={"a": "factors[0]", "b": "factors[1]", "x": OPERATOR_X}),
    "KronSum": Entry(lambda a, b, x: kronjit.KronSum([a, b]) @ x, {"a": A, "b": B, "x": X4},
                     lambda a, b, x: textbook_kronsum([np.asarray(dense(a)), np.asarray(dense(b))])
                     @ np.asarray(x), compare="close",
                     names={"a": "factors[0]", "b": "factors[1]", "x": OPERATOR_X}),
    "kron op=add": Entry(lambda a, b: kronjit.kron(a, b, op=np.add), {"a": A, "b": B},
                         lambda a, b: kron_op_outer(a, b, np.add), defers=True),
    "batch_kron": Entry(lambda a, b: kronjit.batch_kron(a, b), {"a": C3, "b": C3},
                        lambda a, b: batch_kron_loop([np.asarray(a), np.asarray(b)])),
    "face_split": Entry(lambda a, b: kronjit.face_split(a, b), {"a": A, "b": B},
                        lambda a, b: face_split_rows([np.asarray(a), np.asarray(b)])),
    "khatri_rao": Entry(lambda a, b: kronjit.khatri_rao(a, b), {"a": A, "b": B},
                        scipy.linalg.khatri_rao, defers=True),
    "sparse.face_split": Entry(lambda A, B: kronjit.sparse.face_split(A, B),
                               {"A": sp.csr_array(A), "B": sp.csr_array(B)},
                               lambda A, B: sparse_face_split_rows([A, B]), compare="sparse"),
    "mttkrp": Entry(lambda X, U: kronjit.mttkrp(X, [None, U], 0), {"X": A, "U": B},
                    lambda X, U: mttkrp_naive(np.asarray(X), [None, np.asarray(U)], 0),
                    compare="close", names={"U": "factors[1]"}),
    "solve_toeplitz": Entry(
        lambda c, r, b: kronjit.solve_toeplitz((c, r), b), {"c": C3S, "r": R3S, "b": X6},
        lambda c, r, b: np.linalg.solve(toeplitz_reference(c, r), np.asarray(b)),
        compare="close"),
    "matmul_toeplitz": Entry(
        lambda c, r, x: kronjit.matmul_toeplitz((c, r), x), {"c": C3, "r": R3, "x": X4},
        lambda c, r, x: toeplitz_reference(c, r) @ np.asarray(x), compare="close"),
    "BlockToeplitz": Entry(
        lambda c, r, x: kronjit.BlockToeplitz(c, r) @ x, {"c": C3S, "r": R3S, "x": X6},
        lambda c, r, x: toeplitz_reference(c, r) @ np.asarray(x), compare="close",
        # another number of blocks in r is a legal (rectangular) operator: x no longer fits
        names={"x": OPERATOR_X, "r": ("r",) + OPERATOR_X}),
    "BlockToeplitz.solve": Entry(
        lambda c, r, b: kronjit.BlockToeplitz(c, r).solve(b), {"c": C3S, "r": R3S, "b": X6},
        lambda c, r, b: np.linalg.solve(toeplitz_reference(c, r), np.asarray(b)),
        compare="close"),
    "MultilevelToeplitz": Entry(
        lambda t, x: kronjit.MultilevelToeplitz(t) @ x, {"t": S3, "x": X4},
        lambda t, x: multilevel_reference(t, x), compare="close", names={"x": OPERATOR_X}),
    "KronProduct.solve": Entry(
        lambda a, b, rhs: kronjit.KronProduct([a, b]).solve(rhs),
        {"a": A + 3 * np.eye(2), "b": B + 3 * np.eye(2), "rhs": X4},
        lambda a, b, rhs: np.linalg.solve(np.kron(dense(a), dense(b)), rhs), compare="close",
        names={"a": "factors[0]", "b": "factors[1]", "rhs": "b"}),
}

CASES = [(f, arg, kind) for f, e in ENTRIES.items() for arg in e.good for kind in UNUSUAL]


@pytest.mark.parametrize("func,arg,kind", CASES, ids=[f"{f}-{a}-{k}" for f, a, k in CASES])
def test_unusual_argument(func, arg, kind):
    entry = ENTRIES[func]
    args = dict(entry.good)
    args[arg] = UNUSUAL[kind]
    ref_value = ref_error = None
    if entry.reference is not None:
        try:
            ref_value = entry.reference(**args)
        except Exception as exc:
            ref_error = exc
    try:
        got = entry.call(**args)
    except Exception as exc:
        assert not isinstance(exc, NumbaError), f"a Numba error escaped: {exc!r}"
        same_as_reference = ref_error is not None and type(exc) is type(ref_error)
        assert isinstance(exc, ALLOWED) or (entry.defers and same_as_reference), \
            f"unexpected exception type: {exc!r}"
        names = entry.names.get(arg, arg)
        named = any(n in str(exc) for n in ([names] if isinstance(names, str) else names))
        assert named or (entry.defers and same_as_reference), \
            f"{type(exc).__name__} does not name {arg!r}: {exc}"
        return
    if entry.reference is None:
        assert isinstance(got, np.ndarray) and got.dtype.kind in "biufc?"
        return
    assert ref_error is None, f"accepted what the reference rejects ({ref_error!r})"
    if entry.compare == "sparse":
        assert_sparse_identical(got, ref_value)
    elif entry.compare == "identical":
        same_result(got, np.asarray(ref_value))
    else:
        # sums are grouped differently: non-finite where the reference is, close elsewhere
        ref_value = np.asarray(ref_value)
        assert got.shape == ref_value.shape
        finite = np.isfinite(ref_value)
        np.testing.assert_array_equal(np.isfinite(got), finite)
        scale = np.max(np.abs(ref_value[finite]), initial=1.0)
        np.testing.assert_allclose(got[finite], ref_value[finite], rtol=1e-6, atol=1e-6 * scale)


OUT_CALLS = {
    "kron": (lambda out: kronjit.kron(A, B, out=out), np.kron(A, B)),
    "block_toeplitz": (lambda out: kronjit.block_toeplitz(C3, R3, out=out),
                       gather_toeplitz(C3, R3)),
    "block_diag": (lambda out: kronjit.block_diag(A, B, out=out), scipy.linalg.block_diag(A, B)),
    "kron_matvec": (lambda out: kronjit.kron_matvec([A, B], X4.reshape(4, 1), out=out),
                    np.kron(A, B) @ X4.reshape(4, 1)),
    "kron op=maximum": (lambda out: kronjit.kron(A, X6.reshape(2, 3), op=np.maximum, out=out),
                        kron_op_outer(A, X6.reshape(2, 3), np.maximum)),
    "face_split": (lambda out: kronjit.face_split(A, B, out=out), face_split_rows([A, B])),
    "khatri_rao": (lambda out: kronjit.khatri_rao(A, B, out=out), scipy.linalg.khatri_rao(A, B)),
}
def _really_bad(make, want):
    out = make()  # a "transposed" square array or an F-ordered column is a good out
    return not (isinstance(out, np.ndarray) and out.shape == want.shape
                and out.dtype == want.dtype and out.flags.c_contiguous and out.flags.writeable)


OUT_CASES = [(f, bad) for f, (_, want) in OUT_CALLS.items()
             for bad, (make, _, _) in bad_outs(want.shape).items() if _really_bad(make, want)]


@pytest.mark.parametrize("func,bad", OUT_CASES, ids=[f"{f}-{b}" for f, b in OUT_CASES])
def test_bad_out_is_named_and_untouched(func, bad):
    call, want = OUT_CALLS[func]
    make, exc_type, words = bad_outs(want.shape)[bad]
    out = make()
    before = np.array(out, copy=True)
    with pytest.raises(exc_type, match=words):
        call(out)
    np.testing.assert_array_equal(np.asarray(out), before)


@pytest.mark.parametrize("func", list(OUT_CALLS))
def test_good_out_is_filled(func):
    call, want = OUT_CALLS[func]
    out = np.full(want.shape, np.nan)
    assert call(out) is out
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
