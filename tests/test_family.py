"""The Kronecker family beyond np.kron: kron(op=), batch_kron, face_split, khatri_rao
(dense and sparse) and mttkrp, each against a reference written independently of it."""
import importlib

import numba
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import kronjit
from helpers import KERNEL_DTYPES, assert_identical, assert_sparse_identical, bad_outs, sample
from kronjit.study.references import (batch_kron_loop, face_split_rows,
                                      kron_op_outer, mttkrp_naive, sparse_face_split_numpy,
                                      sparse_face_split_rows)


@numba.vectorize
def _twice_minus(x, y):
    return 2 * x - y


#: compiled here (arithmetic, comparisons, logical, bitwise, min/max) and numpy's own loops
OPS = [np.add, np.subtract, np.multiply, np.true_divide, np.maximum, np.minimum, np.equal,
       np.not_equal, np.less, np.greater_equal, np.logical_and, np.logical_xor, np.bitwise_or,
       np.power, np.hypot, np.arctan2, np.fmax, np.floor_divide, np.remainder, np.ldexp]


def _reference_or_error(call):
    try:
        with np.errstate(all="ignore"):
            return call(), None
    except Exception as exc:  # noqa: BLE001 - compared with what kronjit raises
        return None, exc


def _check_op(a, b, op, *more):
    want, error = _reference_or_error(lambda: _chain(op, (a, b) + more))
    if error is not None:
        with pytest.raises(type(error)), np.errstate(all="ignore"):
            kronjit.kron(a, b, *more, op=op)
        return
    with np.errstate(all="ignore"):
        got = kronjit.kron(a, b, *more, op=op)
    assert_identical(got, want)


def _chain(op, factors):
    result = factors[0]
    for f in factors[1:]:
        result = kron_op_outer(result, f, op)
    return result


#: dtypes np.add is checked on: each kind, both float and complex widths, wide and
#: narrow integers
ADD_DTYPES = [np.dtype(d) for d in (np.bool_, np.int8, np.uint16, np.int64, np.uint64,
                                    np.float32, np.float64, np.complex64, np.complex128)]
#: every operator on float64, those whose integer loops differ (wraparound, integer
#: ties, bitwise) on int8, np.add on ADD_DTYPES, and the orderings where their loops
#: differ: float32 ties, bool, unsigned (each compiled pair costs a compilation)
OP_CASES = sorted({(op, np.dtype(np.float64)) for op in OPS}
                  | {(op, np.dtype(np.int8)) for op in OPS
                     if op not in (np.equal, np.not_equal, np.less, np.greater_equal,
                                   np.logical_and, np.logical_xor)}
                  | {(np.add, d) for d in ADD_DTYPES}
                  | {(np.maximum, np.dtype(np.float32)), (np.maximum, np.dtype(np.bool_)),
                     (np.less, np.dtype(np.uint32)), (np.logical_xor, np.dtype(np.bool_))},
                  key=lambda c: (c[0].__name__, c[1].num))


@pytest.mark.parametrize("op,dtype", OP_CASES, ids=[f"{o.__name__}-{d}" for o, d in OP_CASES])
def test_kron_op_matches_the_outer_table(op, dtype):
    a, b = sample((3, 4), dtype, seed=1), sample((5, 2), dtype, seed=2)
    _check_op(a, b, op)


@pytest.mark.parametrize("op", [np.add, np.maximum, np.less, np.hypot], ids=lambda o: o.__name__)
def test_kron_op_shapes_chains_and_mixed_dtypes(op):
    rng = np.random.default_rng(3)
    _check_op(rng.standard_normal((2, 3, 2)), rng.standard_normal((3, 2)), op)   # n-d, padded
    _check_op(rng.standard_normal(4)[::-2], rng.standard_normal((2, 1)).T, op)   # layouts
    _check_op(np.zeros((0, 3)), rng.standard_normal((2, 2)), op)                 # zero-size
    _check_op(np.arange(6, dtype=np.int8).reshape(2, 3), rng.standard_normal((2, 2)).astype(
        np.float32), op, np.arange(4, dtype=np.uint16).reshape(2, 2))            # chain, mixed
    _check_op(rng.standard_normal((2, 2)), rng.standard_normal((3, 1)), op,
              rng.standard_normal((1, 2)), rng.standard_normal(2))               # one pass
    got = kronjit.kron(np.float64(2.0), np.float64(3.0), op=op)                  # 0-d: a scalar
    assert type(got) is type(op(np.float64(2.0), np.float64(3.0)))


def test_kron_op_large_runs_in_parts_and_numba_ufuncs():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((64, 48)), rng.standard_normal((40, 33))  # parts on helpers
    for op in (np.add, np.maximum, np.arctan2, _twice_minus):
        want = kron_op_outer(a, b, op) if op is not _twice_minus else \
            2 * a[:, None, :, None] - b[None, :, None, :]
        assert_identical(kronjit.kron(a, b, op=op), want.reshape(64 * 40, 48 * 33))
    out = np.empty((64 * 40, 48 * 33))
    assert kronjit.kron(a, b, op=np.subtract, out=out) is out
    assert_identical(out, kron_op_outer(a, b, np.subtract))


def test_kron_op_errors():
    a = np.ones((2, 2))
    for bad in ("add", np.negative, np.matmul, lambda x, y: x + y, np.divmod):
        with pytest.raises(TypeError, match="op"):
            kronjit.kron(a, a, op=bad)
    with pytest.raises(TypeError):  # numpy's: no loop for floats
        kronjit.kron(a, a, op=np.bitwise_and)
    ints = np.array([[1, -1]])
    with pytest.raises(ValueError, match="negative"):  # numpy's, raised by its own loop
        kronjit.kron(ints, ints, op=np.power)
    # numpy's errstate reaches its loops on other threads
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError):
        kronjit.kron(np.ones((64, 64)), np.zeros((64, 64)), op=np.floor_divide)
    b = np.ones((2, 3))
    for make, exc, words in bad_outs((4, 6)).values():
        out = make()
        with pytest.raises(exc, match=words):
            kronjit.kron(a, b, op=np.add, out=out)


@given(dtype=st.sampled_from(ADD_DTYPES),
       shapes=st.tuples(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
                        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)),
       op=st.just(np.add), seed=st.integers(0, 2**16))
def test_kron_op_hypothesis(dtype, shapes, op, seed):
    _check_op(sample(shapes[0], dtype, seed), sample(shapes[1], dtype, seed + 1), op)


# --- batch_kron ------------------------------------------------------------------------

@pytest.mark.parametrize("shapes", [((4, 2, 3), (4, 3, 2)), ((2, 1, 2, 3), (5, 2, 2)),
                                    ((2, 3), (7, 3, 1)), ((3, 0, 2), (3, 2, 2)),
                                    ((1, 2, 2), (3, 1, 2), (3, 2, 1))])
@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
def test_batch_kron_matches_kron_per_item(shapes, dtype):
    factors = [sample(s, dtype, seed=i) for i, s in enumerate(shapes)]
    assert_identical(kronjit.batch_kron(*factors), batch_kron_loop(factors))


def test_batch_kron_mixed_dtypes_layouts_and_out():
    rng = np.random.default_rng(5)
    a = np.arange(24, dtype=np.int8).reshape(2, 3, 4)[:, ::-1, ::2]
    b = rng.standard_normal((3, 2, 2)).astype(np.float32)[:1]
    c = np.arange(4, dtype=np.uint32).reshape(2, 2)
    assert_identical(kronjit.batch_kron(a, b, c), batch_kron_loop([a, b, c]))
    want = batch_kron_loop([a, b])
    out = np.empty_like(want)
    assert kronjit.batch_kron(a, b, out=out) is out
    assert_identical(out, want)


def test_batch_kron_errors():
    with pytest.raises(ValueError, match="2 dimensions"):
        kronjit.batch_kron(np.ones(3), np.ones((2, 2)))
    with pytest.raises(ValueError, match="broadcast"):
        kronjit.batch_kron(np.ones((2, 2, 2)), np.ones((3, 2, 2)))
    with pytest.raises(MemoryError, match="batch_kron output"):
        kronjit.batch_kron(np.broadcast_to(np.ones((1, 1, 1)), (10**7, 100, 100)),
                           np.ones((1, 10, 10)))


# --- face_split and khatri_rao ---------------------------------------------------------

@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
def test_face_split_matches_kron_per_row(dtype):
    for shapes in [((5, 3), (5, 4)), ((4, 2), (4, 3), (4, 2)), ((0, 3), (0, 2)), ((3, 0), (3, 2))]:
        factors = [sample(s, dtype, seed=i) for i, s in enumerate(shapes)]
        assert_identical(kronjit.face_split(*factors), face_split_rows(factors))


def test_face_split_errors_and_out():
    with pytest.raises(ValueError, match="2-dimensional"):
        kronjit.face_split(np.ones(3), np.ones((3, 2)))
    with pytest.raises(ValueError, match="rows"):
        kronjit.face_split(np.ones((3, 2)), np.ones((4, 2)))
    a, b = np.arange(6.0).reshape(3, 2), np.arange(9.0).reshape(3, 3)
    out = np.empty((3, 6))
    assert kronjit.face_split(a, b, out=out) is out
    assert_identical(out, face_split_rows([a, b]))
    with pytest.raises(ValueError, match="shape"):
        kronjit.face_split(a, b, out=np.empty((3, 5)))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
def test_khatri_rao_is_scipys(dtype):
    for sa, sb in [((4, 3), (5, 3)), ((2, 4, 3), (5, 3)), ((3, 1, 2, 3), (2, 1, 3)),
                   ((0, 3), (2, 3)), ((3, 0), (4, 0)), ((2, 0, 3), (1, 3))]:
        a, b = sample(sa, dtype, seed=1), sample(sb, dtype, seed=2)
        want = scipy.linalg.khatri_rao(a, b)
        got = kronjit.khatri_rao(a, b)
        if want.size:
            assert_identical(got, want)
        else:
            assert got.shape == want.shape and got.dtype == want.dtype


def test_khatri_rao_chains_and_mixed_dtypes():
    rng = np.random.default_rng(6)
    a, b = np.arange(8, dtype=np.int16).reshape(4, 2), rng.standard_normal((3, 2))
    c = rng.standard_normal((2, 2)).astype(np.complex64)
    want = scipy.linalg.khatri_rao(scipy.linalg.khatri_rao(a, b), c)
    assert_identical(kronjit.khatri_rao(a, b, c), want)
    out = np.empty_like(want)
    assert kronjit.khatri_rao(a, b, c, out=out) is out
    assert_identical(out, want)


def test_scipys_own_khatri_rao_tests_pass(monkeypatch):
    module = importlib.import_module("scipy.linalg.tests.test_matfuncs")
    monkeypatch.setattr(module, "khatri_rao", kronjit.khatri_rao)
    suite = module.TestKhatriRao()
    names = [n for n in dir(suite) if n.startswith("test_")]
    assert len(names) >= 5
    for name in names:
        getattr(suite, name)()


def test_khatri_rao_errors():
    with pytest.raises(ValueError, match="2-dimensional"):
        kronjit.khatri_rao(np.ones(3), np.ones((3, 3)))
    with pytest.raises(ValueError, match="columns"):
        kronjit.khatri_rao(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="zero-size batches"):
        kronjit.khatri_rao(np.ones((0, 2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="columns"):
        kronjit.khatri_rao(np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 2)))


# --- sparse ----------------------------------------------------------------------------

def _sparse_pair(container, rng, dtype=np.float64, rows=40):
    a = sp.random_array((rows, 7), density=0.3, rng=rng, dtype=dtype)
    b = sp.random_array((rows, 5), density=0.4, rng=rng, dtype=dtype)
    a.data[::5] = 0  # stored zeros stay stored
    return container(a), container(b)


@pytest.mark.parametrize("container", [sp.csr_array, sp.csr_matrix, sp.coo_array, sp.csc_matrix])
def test_sparse_face_split_matches_kron_per_row(container):
    rng = np.random.default_rng(7)
    a, b = _sparse_pair(container, rng)
    got = kronjit.sparse.face_split(a, b)
    want = sparse_face_split_rows([a, b])
    kind = sp.csr_array if isinstance(a, sp.sparray) else sp.csr_matrix
    assert type(got) is kind and got.has_canonical_format and got.indices.dtype == np.int32
    assert_sparse_identical(sp.csr_array(got), want)
    c = sp.csr_array(rng.random((40, 3)) < 0.5)
    assert_sparse_identical(sp.csr_array(kronjit.sparse.face_split(a, b, c)),
                            sparse_face_split_rows([a, b, c]))
    assert kronjit.sparse.face_split(a, b, format="coo").format == "coo"


def test_sparse_face_split_is_the_fast_reference_and_the_dense_one():
    rng = np.random.default_rng(8)
    a, b = _sparse_pair(sp.csr_array, rng, rows=300)
    got, want = kronjit.sparse.face_split(a, b), sparse_face_split_numpy(a, b)
    for name in ("indptr", "indices"):  # the reference's are int64
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert_identical(got.data, want.data)
    assert_identical(kronjit.sparse.face_split(a, b).toarray(),
                     kronjit.face_split(a.toarray(), b.toarray()))


def test_sparse_khatri_rao_is_the_transposed_face_split():
    rng = np.random.default_rng(9)
    a, b = _sparse_pair(sp.csc_array, rng)
    got = kronjit.sparse.khatri_rao(a.T, b.T)
    assert got.format == "csc" and got.has_canonical_format
    assert_identical(got.toarray(), scipy.linalg.khatri_rao(a.T.toarray(), b.T.toarray()))


def test_sparse_family_errors():
    a = sp.csr_array(np.eye(3))
    with pytest.raises(TypeError, match="B must be a scipy sparse"):
        kronjit.sparse.face_split(a, np.eye(3))
    with pytest.raises(ValueError, match="rows"):
        kronjit.sparse.face_split(a, sp.csr_array(np.eye(4)))
    with pytest.raises(ValueError, match="columns"):
        kronjit.sparse.khatri_rao(a, sp.csc_array(np.ones((2, 2))))
    with pytest.raises(ValueError, match="format"):
        kronjit.sparse.face_split(a, a, format="nope")
    wide = sp.csr_array(np.ones((1, 10**5)))  # 10^10 entries in the product
    with pytest.raises(MemoryError, match="face_split"):
        kronjit.sparse.face_split(wide, wide)
    dup = sp.coo_array((np.array([1.0, 2.0]), (np.array([0, 0]), np.array([1, 1]))), shape=(1, 3))
    assert_identical(kronjit.sparse.face_split(dup, a[:1]).toarray(),
                     kronjit.face_split(dup.toarray(), a[:1].toarray()))


# --- mttkrp ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 4), (2, 3, 4, 5), (7, 1, 3), (30, 20, 40)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_mttkrp_matches_the_naive_formula(shape, dtype):
    rng = np.random.default_rng(10)
    X = (rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if
                                       np.dtype(dtype).kind == "c" else 0)).astype(dtype)
    factors = [rng.standard_normal((n, 3)).astype(dtype) for n in shape]
    tol = 1e-4 if np.dtype(dtype).itemsize <= 8 and np.dtype(dtype).kind == "f" or \
        dtype == np.complex64 else 1e-11
    for mode in range(-len(shape), len(shape)):
        got = kronjit.mttkrp(X, factors[:mode % len(shape)] + [None]
                             + factors[mode % len(shape) + 1:], mode)
        want = mttkrp_naive(X, factors, mode % len(shape))
        assert got.dtype == np.dtype(dtype) and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_mttkrp_slabs_and_integers(monkeypatch):
    module = importlib.import_module("kronjit.tensors")
    monkeypatch.setattr(module, "SLAB_BYTES", 64)  # many slabs
    rng = np.random.default_rng(11)
    X = rng.integers(-5, 5, (6, 5, 4))
    factors = [rng.integers(-3, 3, (n, 2)) for n in X.shape]
    for mode in range(3):
        got = kronjit.mttkrp(X, factors, mode)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, mttkrp_naive(X, factors, mode), rtol=1e-12)


def test_mttkrp_errors():
    X = np.ones((2, 3, 4))
    U = [np.ones((2, 2)), np.ones((3, 2)), np.ones((4, 2))]
    with pytest.raises(ValueError, match="X must have at least 2"):
        kronjit.mttkrp(np.ones(3), [np.ones((3, 1))], 0)
    with pytest.raises(ValueError, match="mode 3"):
        kronjit.mttkrp(X, U, 3)
    with pytest.raises(TypeError, match="mode must be an integer"):
        kronjit.mttkrp(X, U, 1.0)
    with pytest.raises(ValueError, match="factors has 2"):
        kronjit.mttkrp(X, U[:2], 0)
    with pytest.raises(ValueError, match=r"factors\[1\] must have shape \(3, R\)"):
        kronjit.mttkrp(X, [U[0], np.ones((4, 2)), U[2]], 0)
    with pytest.raises(ValueError, match=r"factors\[2\] has 3 columns"):
        kronjit.mttkrp(X, [None, U[1], np.ones((4, 3))], 0)
    with pytest.raises(TypeError, match="X has dtype object"):
        kronjit.mttkrp(X.astype(object), U, 0)
    with pytest.raises(TypeError, match="float32, float64"):
        kronjit.mttkrp(X.astype(np.longdouble), U, 0)
    with pytest.raises(TypeError, match="factors must be a sequence"):
        kronjit.mttkrp(X, np.ones((3, 2, 2)), 0)


def test_kron_op_from_several_threads_at_once():
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(12)
    pairs = [(rng.standard_normal((48, 40)), rng.standard_normal((40, 48))) for _ in range(6)]
    ops = [np.hypot, np.add, np.arctan2, np.maximum, np.hypot, np.less]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: kronjit.kron(*pairs[i], op=ops[i]), range(6)))
    for (a, b), op, g in zip(pairs, ops, got):
        assert_identical(g, kron_op_outer(a, b, op))


def _layout(x, flip):
    """``x`` as given, or as a reversed (negative-stride) view of a copy."""
    return np.ascontiguousarray(x[..., ::-1])[..., ::-1] if flip else x


@given(dtype=st.sampled_from(KERNEL_DTYPES), rows=st.integers(0, 5),
       widths=st.lists(st.integers(0, 4), min_size=2, max_size=3),
       batch=st.sampled_from([(), (3,), (2, 1)]), flip=st.booleans(),
       seed=st.integers(0, 2**16))
def test_batched_rowwise_and_columnwise_products_hypothesis(dtype, rows, widths, batch, flip,
                                                            seed):
    factors = [_layout(sample((rows, w), dtype, seed + i), flip) for i, w in enumerate(widths)]
    assert_identical(kronjit.face_split(*factors), face_split_rows(factors))
    columns = [_layout(sample((w, rows), dtype, seed + i), flip) for i, w in enumerate(widths)]
    want = columns[0]
    for c in columns[1:]:
        want = (want[:, None, :] * c[None, :, :]).reshape(len(want) * len(c), rows)
    got = kronjit.khatri_rao(*columns)
    assert got.shape == want.shape and got.dtype == want.dtype
    if want.size:
        assert_identical(got, want)
    stacks = [_layout(sample(batch + (w, w + 1), dtype, seed + i), flip)
              for i, w in enumerate(widths)]
    assert_identical(kronjit.batch_kron(*stacks), batch_kron_loop(stacks))


@pytest.mark.parametrize("call", [
    lambda big: kronjit.kron(big, big, op=np.add),
    lambda big: kronjit.face_split(big.reshape(1, -1), big.reshape(1, -1)),
    lambda big: kronjit.khatri_rao(big.reshape(-1, 1), big.reshape(-1, 1)),
], ids=["kron op", "face_split", "khatri_rao"])
def test_outputs_too_large_are_refused_before_allocating(call):
    big = np.broadcast_to(np.ones(1), (10**6,))  # 8 bytes of memory, 10^12 in the product
    with pytest.raises(MemoryError, match="output of shape"):
        call(big)


@pytest.mark.parametrize("threads", [1, 2])
def test_short_blocks_row_sets_across_parts(threads):
    """Short blocks done a set of rows at a time, with parts that start and end inside a
    set (kron of 2-D factors with short rows, and batches of them)."""
    rng = np.random.default_rng(13)
    cases = [((300, 8), (40, 8)), ((257, 3), (33, 5)), ((61, 7), (17, 1))]
    with kronjit.num_threads(threads):
        for sa, sb in cases:
            a, b = rng.standard_normal(sa), rng.standard_normal(sb)
            assert_identical(kronjit.kron(a, b), np.kron(a, b))
            assert_identical(kronjit.kron(a, b, op=np.subtract), kron_op_outer(a, b, np.subtract))
        stacks = [rng.standard_normal((500, 8, 8)), rng.standard_normal((1, 8, 8))]
        assert_identical(kronjit.batch_kron(*stacks), batch_kron_loop(stacks))
        rows = [rng.standard_normal((3000, 9)), rng.standard_normal((3000, 7))]
        assert_identical(kronjit.face_split(*rows), face_split_rows(rows))
