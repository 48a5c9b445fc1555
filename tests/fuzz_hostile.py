"""Hypothesis fuzzing with malformed sparse structures and ndarray subclasses.

Not collected by the main run (a crash here would take pytest down with it):
``test_hostile.py`` runs this module in a child pytest.  Every public function
that takes the input must either give the reference's answer or raise a
clear TypeError/ValueError naming the argument, and leave the input as it was.
"""
import re

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from hypothesis import given, note, strategies as st

import kronjit
from helpers import assert_identical, assert_sparse_identical

FORMATS = ["csr", "csc", "coo", "bsr"]


def index_arrays(M):
    return list(M.coords) if M.format == "coo" else [M.indices, M.indptr]


@st.composite
def sparse_structures(draw):
    """A small sparse matrix, valid or with its index arrays corrupted after construction."""
    fmt = draw(st.sampled_from(FORMATS))
    m, n = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    values = draw(st.lists(st.sampled_from([0.0, 0.0, 1.5, -2.0]), min_size=m * n,
                           max_size=m * n))
    M = sp.csr_array(np.array(values).reshape(m, n)).asformat(fmt)
    if fmt == "bsr":
        M = sp.bsr_array(M, blocksize=(1, 1))
    for _ in range(draw(st.integers(0, 3))):
        arrays = [a for a in index_arrays(M) if a.size]
        if not arrays:
            break
        arr = draw(st.sampled_from(arrays))
        pos = draw(st.integers(0, arr.size - 1))
        arr[pos] = draw(st.integers(-3, max(m, n) + 3))
    if fmt != "coo" and draw(st.booleans()) and M.indices.size:
        M.indices = M.indices[:-1]  # shorter than indptr promises
    # the cached flags no longer hold (stale flags are a separate matter: scipy trusts them)
    M.has_canonical_format = False
    if fmt != "coo":
        M.has_sorted_indices = False
    return M


def scipy_checked(M):
    """A copy of ``M`` that scipy's full format check accepted (and pruned of entries past
    ``indptr[-1]``, which some of scipy's conversions misread), or None."""
    try:
        if M.format == "coo":
            return sp.coo_array((M.data.copy(), tuple(c.copy() for c in M.coords)),
                                shape=M.shape)
        args = (M.data.copy(), M.indices.copy(), M.indptr.copy())
        copy = type(M)(args, shape=M.shape, **({"blocksize": M.blocksize}
                                               if M.format == "bsr" else {}))
        copy.check_format(full_check=True)
        return copy
    except (ValueError, IndexError, TypeError):
        return None


def structure_is_valid(M):
    """A naive check of what every index must satisfy (scipy's own check skips some
    malformed ``indptr`` when it ends at or below zero)."""
    m, n = M.shape
    if M.format == "coo":
        return all(((c >= 0) & (c < s)).all() for c, s in zip(M.coords, M.shape))
    r, c = M.blocksize if M.format == "bsr" else (1, 1)
    major, minor = (m // r, n // c) if M.format != "csc" else (n, m)
    ptr = M.indptr
    if len(ptr) != major + 1 or ptr[0] != 0 or ptr[-1] > len(M.indices):
        return False
    if any(ptr[i + 1] < ptr[i] for i in range(major)):
        return False
    return all(0 <= j < minor for j in M.indices[:ptr[-1]])


def dense_of(M):
    """The dense matrix a valid ``M`` stands for (duplicates summed)."""
    return sp.coo_array(M).toarray()


G = np.array([[1.0, -1.0], [0.5, 2.0]])


@given(sparse_structures(), st.sampled_from(["csr", "csc", "coo", None]))
def test_malformed_sparse_factors(M, out_format):
    before = [a.copy() for a in index_arrays(M)]
    note(f"{M.format} {M.shape} data={M.data} index arrays={before}")
    checked = scipy_checked(M)
    valid = checked is not None and structure_is_valid(M)
    m, n = M.shape
    x = np.arange(2.0 * n) - 1
    calls = {
        "sparse.kron": (lambda: kronjit.sparse.kron(M, G, format=out_format), "A",
                        lambda: sp.kron(checked, G, format=out_format)),
        "sparse.kron B": (lambda: kronjit.sparse.kron(G, M, format=out_format), "B",
                          lambda: sp.kron(G, checked, format=out_format)),
        "kron_matvec": (lambda: kronjit.kron_matvec([G, M], x), "factors[1]",
                        lambda: np.kron(G, dense_of(checked)) @ x),
        "KronProduct": (lambda: kronjit.KronProduct([M, G]) @ np.arange(2.0 * n),
                        "factors[0]", lambda: np.kron(dense_of(checked), G) @ np.arange(2.0 * n)),
    }
    if m == n:
        calls["kronsum"] = (lambda: kronjit.sparse.kronsum(M, G), "A",
                            lambda: sp.kronsum(checked, G))
        calls["KronSum"] = (lambda: kronjit.KronSum([G, M]) @ x, "factors[1]",
                            lambda: (np.kron(G, np.eye(n)) + np.kron(np.eye(2), dense_of(checked))) @ x)
    for label, (call, name, reference) in calls.items():
        if not valid:
            with pytest.raises(ValueError, match=re.escape(f"{name} is not a valid")):
                call()
        else:
            got, want = call(), reference()
            if sp.issparse(want):
                assert_sparse_identical(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=label)
        for arr, old in zip(index_arrays(M), before):
            np.testing.assert_array_equal(arr, old, err_msg=f"{label} changed its input")


class Tagged(np.ndarray):
    """A subclass that changes nothing: it must behave as its base array."""


SUBCLASSES = {
    "matrix": np.asmatrix,
    "masked": lambda a: np.ma.masked_array(a, mask=np.zeros(a.shape, bool)),
    "masked-holes": lambda a: np.ma.masked_array(a, mask=np.arange(a.size).reshape(a.shape) % 2),
    "tagged": lambda a: a.view(Tagged),
}


def outcome(call):
    try:
        return call(), None
    except Exception as exc:  # noqa: BLE001 - compared below
        return None, exc


@given(st.sampled_from(list(SUBCLASSES)), st.integers(1, 3), st.integers(1, 3))
def test_ndarray_subclasses(kind, m, n):
    wrap = SUBCLASSES[kind]
    rng = np.random.default_rng(m * 10 + n)
    a, b, x, c, xt = (rng.standard_normal(s) for s in ((m, n), (n, m), (n, 1), (m, 2, 2),
                                                        (2 * m, 1)))
    w = {name: wrap(v) for name, v in (("a", a), ("b", b), ("x", x), ("c", c[:, 0, 0]),
                                       ("xt", xt))}
    snapshot = {k: np.array(v, copy=True) for k, v in w.items()}

    # kron defers subclasses to np.kron: its result and type, or its error type
    got, err = outcome(lambda: kronjit.kron(w["a"], w["b"]))
    want, want_err = outcome(lambda: np.kron(w["a"], w["b"]))
    if want_err is not None:
        assert type(err) is type(want_err), (err, want_err)
    else:
        assert err is None and type(got) is type(want), (err, type(got), type(want))
        assert_identical(np.asarray(got), np.asarray(want))
    # a subclass as out= is refused, untouched
    out = wrap(np.zeros((m * n, n * m)))
    got, err = outcome(lambda: kronjit.kron(a, b, out=out))
    assert isinstance(err, TypeError) and "out" in str(err), err
    assert not np.asarray(out).any()

    # everything else: the reference's answer on the plain arrays, or an error naming
    # the argument (masked arrays are always refused: their mask would be dropped)
    calls = [
        ("x", lambda: kronjit.kron_matvec([b], w["x"]), lambda: b @ x),
        ("factors[0]", lambda: kronjit.kron_matvec([w["a"]], x), lambda: a @ x),
        ("b", lambda: kronjit.KronProduct([b @ b.T + np.eye(n)]).solve(w["x"]),
         lambda: np.linalg.solve(b @ b.T + np.eye(n), x)),
        ("c", lambda: kronjit.block_toeplitz(w["c"]),
         lambda: scipy.linalg.toeplitz(c[:, 0, 0])),
        ("x", lambda: kronjit.block_toeplitz_matvec(c, None, w["xt"]),
         lambda: kronjit.block_toeplitz(c) @ xt),
        ("block 0", lambda: kronjit.block_diag(w["a"], b), lambda: scipy.linalg.block_diag(a, b)),
    ]
    for name, call, reference in calls:
        got, err = outcome(call)
        if err is not None:
            assert isinstance(err, (TypeError, ValueError)) and name in str(err), \
                f"{name}: {err!r}"
            if kind.startswith("masked"):
                assert "masked" in str(err)
            continue
        assert not kind.startswith("masked"), f"{name}: a masked array was accepted"
        assert type(got) is np.ndarray, name
        if reference is not None:
            np.testing.assert_allclose(got, reference(), rtol=1e-10, atol=1e-12, err_msg=name)
    for k, v in w.items():
        np.testing.assert_array_equal(np.asarray(v), snapshot[k])
