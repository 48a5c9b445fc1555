"""kronjit.sparse.kron / kronsum against scipy.sparse.kron / kronsum, object for object."""
import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, strategies as st

import kronjit
from kronjit import sparse as ks
from helpers import KERNEL_DTYPES, assert_sparse_identical, sample

FORMATS = [None, "csr", "csc", "coo", "bsr", "dia", "lil", "dok"]


def sparse_dense(shape, dtype, density, seed):
    """A dense array with about ``density`` of its entries drawn from ``sample``."""
    values = sample(shape, dtype, seed)
    mask = np.random.default_rng(seed + 1000).random(shape) < density
    dense = values.copy()
    dense[~mask] = 0
    return dense


KINDS = {
    "csr_array": sp.csr_array, "csr_matrix": sp.csr_matrix,
    "csc_array": sp.csc_array, "csc_matrix": sp.csc_matrix,
    "coo_array": sp.coo_array, "coo_matrix": sp.coo_matrix,
    "bsr_array": sp.bsr_array, "dia_array": sp.dia_array, "dia_matrix": sp.dia_matrix,
    "lil_array": sp.lil_array, "dok_array": sp.dok_array, "dok_matrix": sp.dok_matrix,
    "ndarray": np.asarray, "list": lambda x: x.tolist(),
}


def as_kind(dense, kind):
    return KINDS[kind](dense)


def both(func, *args, **kwargs):
    """(kronjit result, scipy result) of the same call, warnings from either silenced."""
    reference = getattr(sp, func)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        expected = reference(*args, **kwargs)
        got = getattr(ks, func)(*args, **kwargs)
    return got, expected


def check(func, *args, **kwargs):
    got, expected = both(func, *args, **kwargs)
    assert_sparse_identical(got, expected)
    return got


# --- formats x input kinds --------------------------------------------------------

KIND_PAIRS = ([(k, "csr_array") for k in KINDS] + [("csr_matrix", k) for k in KINDS]
              + [("ndarray", "list"), ("coo_matrix", "dia_matrix")])


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("kind_a,kind_b", KIND_PAIRS, ids=[f"{a}-{b}" for a, b in KIND_PAIRS])
@pytest.mark.parametrize("density_b", [0.3, 0.8], ids=["coo-route", "bsr-route"])
def test_kron_formats_and_input_kinds(fmt, kind_a, kind_b, density_b):
    a = as_kind(sparse_dense((4, 5), np.float64, 0.4, 1), kind_a)
    b = as_kind(sparse_dense((3, 2), np.float64, density_b, 2), kind_b)
    check("kron", a, b, format=fmt)


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("kind_a,kind_b", KIND_PAIRS, ids=[f"{a}-{b}" for a, b in KIND_PAIRS])
def test_kronsum_formats_and_input_kinds(fmt, kind_a, kind_b):
    a = as_kind(sparse_dense((4, 4), np.float64, 0.5, 3), kind_a)
    b = as_kind(sparse_dense((3, 3), np.float64, 0.5, 4), kind_b)
    check("kronsum", a, b, format=fmt)


@pytest.fixture
def forbid_scipy_kron(monkeypatch):
    """A switch after which any fallback to scipy's kron/kronsum fails the test."""
    def fail(*args, **kwargs):
        raise AssertionError("kronjit fell back to scipy")

    def forbid():
        monkeypatch.setattr(sp, "kron", fail)
        monkeypatch.setattr(sp, "kronsum", fail)
    return forbid


def test_kernels_build_every_format_without_scipy_kron(forbid_scipy_kron):
    """The direct paths really are direct: scipy's kron and kronsum are never called."""
    expected = {}
    a = sp.csr_array(sparse_dense((4, 5), np.complex64, 0.5, 30))
    b_sparse = sp.csc_array(sparse_dense((3, 2), np.float64, 0.3, 31))
    b_dense = sparse_dense((2, 2), np.int16, 1.0, 32)
    s_a, s_b = a[:, :4].tocsr()[:4], sp.coo_array(sparse_dense((3, 3), np.float32, 0.5, 33))
    calls = [("kron", (a, b_sparse), fmt) for fmt in FORMATS]
    calls += [("kron", (a, b_dense), fmt) for fmt in (None, "bsr")]
    calls += [("kronsum", (s_a, s_b), fmt) for fmt in FORMATS]
    with np.errstate(all="ignore"):
        for i, (func, args, fmt) in enumerate(calls):
            expected[i] = getattr(sp, func)(*args, format=fmt)
        forbid_scipy_kron()
        for i, (func, args, fmt) in enumerate(calls):
            assert_sparse_identical(getattr(ks, func)(*args, format=fmt), expected[i])


def test_sparse_array_or_matrix_follows_scipy():
    a, b = np.eye(2), sp.csr_matrix(np.ones((2, 2)))
    assert isinstance(ks.kron(a, b), sp.spmatrix)
    assert isinstance(ks.kron(a, a), sp.spmatrix)  # dense only: a matrix, as scipy's
    assert isinstance(ks.kron(sp.csr_array(a), b), sp.sparray)
    assert isinstance(ks.kronsum(a, sp.coo_array(a)), sp.sparray)


# --- dtypes -------------------------------------------------------------------------

@pytest.mark.parametrize("da", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("db", KERNEL_DTYPES, ids=str)
def test_kron_every_dtype_pair(da, db):
    a = sp.csr_array(sparse_dense((4, 3), da, 0.6, 5))
    b_sparse = sp.coo_array(sparse_dense((3, 5), db, 0.3, 6))
    b_dense = sparse_dense((2, 2), db, 1.0, 7)  # the BSR route
    for fmt in (None, "csr", "csc", "coo"):
        check("kron", a, b_sparse, format=fmt)
    check("kron", a, b_dense)


@pytest.mark.parametrize("da", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("db", ["?", "b", "B", "i", "f", "d", "F", "D"])
def test_kronsum_dtype_pairs(da, db):
    a = sp.csr_array(sparse_dense((3, 3), da, 0.7, 8))
    b = sp.csc_array(sparse_dense((4, 4), db, 0.7, 9))
    for fmt in (None, "csc", "coo"):
        check("kronsum", a, b, format=fmt)


@pytest.mark.parametrize("dtype", ["f4", "f8", "c8", "c16"])
def test_special_values_round_like_numpy(dtype):
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 3.5, 1e-300, 1e300])
    with np.errstate(over="ignore"):
        values = specials.astype(dtype)
        if np.dtype(dtype).kind == "c":
            values = np.empty((10, 10), dtype)
            values.real, values.imag = specials[:, None], specials[None, :]
            values = values.ravel()
    n = values.size
    # every special value stored explicitly (zeros too), in one row and one column
    row = sp.csr_array((values, np.arange(n), np.array([0, n])), shape=(1, n))
    col = sp.csc_array((values, np.arange(n), np.array([0, n])), shape=(n, 1))
    for fmt in ("csr", "csc", "coo", None):
        check("kron", row, col, format=fmt)
        check("kron", col, row, format=fmt)
    diag = sp.dia_array((values[None, :8], [0]), shape=(8, 8))
    check("kronsum", diag, diag)
    check("kronsum", diag.tocsr(), -diag.tocsr(), format="coo")


def test_kronsum_drops_zero_sums_like_scipy():
    # diagonal sums that cancel, int8 sums that wrap to zero, explicit zeros
    a = sp.csr_array(np.array([[1, 2], [0, -128]], dtype=np.int8))
    b = sp.csr_array(np.array([[-1, 0], [5, -128]], dtype=np.int8))
    got = check("kronsum", a, b)
    assert got.nnz < a.nnz * 2 + b.nnz * 2
    zeros = sp.csr_array((np.zeros(2), np.array([0, 1]), np.array([0, 1, 2])), shape=(2, 2))
    check("kronsum", zeros, b.astype(float))
    check("kronsum", zeros, zeros)
    check("kronsum", sp.csr_array(np.array([[True, False], [True, True]])),
          sp.csr_array(np.array([[True, True], [False, True]])))


def test_kronsum_empty_factor_dtype_quirk():
    """A factor with no stored entries makes scipy's sum float64 (complex128 for complex64)."""
    empty_int = sp.csr_array((3, 3), dtype=np.int32)
    eye_c8 = sp.csr_array(np.eye(2, dtype=np.complex64))
    assert check("kronsum", empty_int, sp.csr_array(np.eye(2, dtype=np.int32))).dtype == np.float64
    assert check("kronsum", eye_c8, sp.csr_array((3, 3), dtype=np.int8)).dtype == np.complex128
    check("kronsum", sp.csr_array((0, 0)), eye_c8)
    # two complex factors with no entries: scipy's float64, with no ComplexWarning (scipy
    # gives none either)
    empty_c16 = sp.csr_array((3, 3), dtype=np.complex128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ks.kronsum(empty_c16, empty_c16)
    assert_sparse_identical(got, sp.kronsum(empty_c16, empty_c16))
    assert got.dtype == np.float64


# --- shapes, empty and all-zero ----------------------------------------------------

SHAPES = [(0, 0), (0, 3), (3, 0), (1, 1), (1, 5), (5, 1), (4, 4)]


@pytest.mark.parametrize("sa,sb", list(itertools.product(SHAPES, SHAPES)), ids=str)
@pytest.mark.parametrize("density", [0.0, 0.5, 1.0])
def test_kron_shapes(sa, sb, density):
    a = sp.csr_array(sparse_dense(sa, np.float32, density, 10))
    b = sp.coo_array(sparse_dense(sb, np.int16, density, 11))
    for fmt in (None, "csr", "csc", "coo", "bsr"):
        check("kron", a, b, format=fmt)


@pytest.mark.parametrize("n", [0, 1, 2, 5])
@pytest.mark.parametrize("density", [0.0, 0.4, 1.0])
def test_kronsum_shapes(n, density):
    a = sp.csr_array(sparse_dense((n, n), np.float64, density, 12))
    b = sp.csr_array(sparse_dense((3, 3), np.float64, density, 13))
    for fmt in (None, "csc", "coo"):
        check("kronsum", a, b, format=fmt)
        check("kronsum", b, a, format=fmt)


def test_one_dimensional_and_nd_sparse_arrays_match_scipy():
    v = sp.coo_array(np.array([1.0, 0.0, 2.0]))
    check("kron", v, np.array([3.0, 4.0]))
    check("kron", sp.csr_array(np.eye(2)), v)
    check("kron", np.ones(3), np.ones(2))  # dense 1-D: (1, n) matrices
    cube = sp.coo_array(np.arange(8.0).reshape(2, 2, 2))
    check("kron", cube, sp.coo_array(np.eye(2)))


# --- non-canonical inputs -------------------------------------------------------------

def unsorted_csr():
    # rows with reversed column order, an explicit zero, an empty row
    data = np.array([3.0, 1.0, 0.0, 2.0, -1.0])
    indices = np.array([2, 0, 1, 3, 1])
    indptr = np.array([0, 2, 4, 4, 5])
    return sp.csr_array((data, indices, indptr), shape=(4, 4))


def duplicate_coo():
    row, col = np.array([0, 1, 0, 2, 0]), np.array([1, 1, 1, 0, 1])
    return sp.coo_array((np.array([0.1, 2.0, 0.2, 3.0, 0.3]), (row, col)), shape=(3, 3))


def duplicate_csr():
    return sp.csr_array((np.array([1.0, 2.0, 3.0]), np.array([1, 1, 0]), np.array([0, 2, 3])),
                        shape=(2, 2))


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("make", [unsorted_csr, duplicate_coo, duplicate_csr], ids=lambda f: f.__name__)
def test_noncanonical_inputs(fmt, make):
    x = make()
    other = sp.csr_array(sparse_dense((2, 3), np.float64, 0.5, 14))
    check("kron", x, other, format=fmt)
    check("kron", other, x, format=fmt)
    check("kron", x, x, format=fmt)
    square = x.tocsr()[:2, :2] if x.shape[0] >= 2 else x
    check("kronsum", x, sp.csr_array(np.eye(2)), format=fmt)
    check("kronsum", square, x, format=fmt)


def test_stale_canonical_flag_is_not_trusted():
    x = unsorted_csr()
    x.has_canonical_format = True  # a lie: rows 0 and 1 are unsorted
    expected = sp.kron(unsorted_csr(), np.eye(2), format="csr")
    got = ks.kron(x, np.eye(2), format="csr")
    assert_sparse_identical(got, expected)


def test_inputs_unchanged_and_not_shared():
    a, b = unsorted_csr(), sp.csr_array(np.ones((2, 2)))
    before = [arr.copy() for arr in (a.data, a.indices, a.indptr)]
    result = ks.kron(a, b)  # BSR route: A's structure becomes the result's
    assert result.format == "bsr"
    for arr, old in zip((a.data, a.indices, a.indptr), before):
        np.testing.assert_array_equal(arr, old)
        for out in (result.data, result.indices, result.indptr):
            assert not np.shares_memory(arr, out)


# --- chains -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", [None, "csr", "csc", "coo", "bsr"], ids=str)
def test_chain_of_factors_equals_chained_scipy(fmt):
    f1 = sp.csr_matrix(sparse_dense((2, 3), np.int8, 0.6, 15))
    f2 = np.ones((2, 2), dtype=np.float32)   # dense: the BSR route, with its explicit zeros
    f3 = sp.coo_array(sparse_dense((3, 2), np.complex64, 0.5, 16))
    f4 = sp.dia_matrix(np.eye(2))
    with np.errstate(all="ignore"):
        for factors in [(f1, f2, f3), (f1, f3, f2, f4), (f4, f4, f4)]:
            expected = factors[0]
            for i, f in enumerate(factors[1:], start=1):
                expected = sp.kron(expected, f, format=fmt if i == len(factors) - 1 else None)
            assert_sparse_identical(ks.kron(*factors, format=fmt), expected)


# --- index dtype and memory ----------------------------------------------------------

def test_index_dtype_rule_at_the_int32_boundary():
    assert ks.index_dtype(2**31 - 1) == np.int32
    assert ks.index_dtype(2**31) == np.int64
    assert ks.index_dtype(0) == np.int32


def column_indices(x):
    return x.col if x.format == "coo" else x.indices


def one_row(ncols, cols, container, index_dtype):
    cols = np.array(cols, dtype=index_dtype)
    return container((np.arange(1.0, cols.size + 1), cols,
                      np.array([0, cols.size], dtype=index_dtype)), shape=(1, ncols))


@pytest.mark.parametrize("container", [sp.csr_array, sp.csr_matrix])
@pytest.mark.parametrize("fmt", ["csr", "coo", None])
@pytest.mark.parametrize("ncols_a,ncols_b,expected", [
    (2**31 - 1, 1, np.int32),   # largest column count that fits (2^31 - 1 is prime)
    (2**16, 2**15, np.int64),   # 2^31 columns: the shape no longer fits
])
def test_index_dtype_switches_at_2_31_without_big_arrays(container, fmt, ncols_a, ncols_b,
                                                         expected):
    a = one_row(ncols_a, [0, ncols_a - 1], container, np.int32)
    b = one_row(ncols_b, [ncols_b - 1], container, np.int32)
    got = check("kron", a, b, format=fmt)
    assert column_indices(got).dtype == expected


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", None])
def test_int64_indices_of_sparse_arrays_are_kept_like_scipy(fmt):
    """scipy's sparse arrays keep an input's int64 indices; sparse matrices shrink them."""
    wide = one_row(5, [1, 3], sp.csr_array, np.int64)
    assert wide.indices.dtype == np.int64
    got = check("kron", wide, sp.csr_array(np.eye(2)), format=fmt)
    assert column_indices(got).dtype == np.int64
    got = check("kron", sp.csr_matrix(wide), sp.csr_matrix(np.eye(2)), format=fmt)
    assert column_indices(got).dtype == np.int32
    square = sp.csr_array(wide.T @ wide)
    check("kronsum", square, sp.eye_array(2), format=fmt)


def test_nnz_beyond_memory_raises_before_allocating():
    rng = np.random.default_rng(0)
    n = 10**5
    a = sp.csr_array((rng.random(n), rng.integers(0, n, n), np.arange(n + 1)), shape=(n, n))
    with pytest.raises(MemoryError, match=r"sparse.kron CSR output.*data float64\[10000000000\]"):
        ks.kron(a, a, format="csr")
    with pytest.raises(MemoryError, match=r"COO output.*bytes"):
        ks.kron(a, a, format="coo")


def test_shape_beyond_memory_raises_before_allocating():
    wide = sp.csr_array((np.ones(1), np.array([0]), np.array([0, 1])), shape=(1, 2**20))
    with pytest.raises(MemoryError, match=r"indptr int\d+\[1099511627777\]"):
        ks.kron(wide, wide, format="csc")
    eye = sp.eye_array(10**6, format="csr")
    with pytest.raises(MemoryError, match=r"kronsum row counts"):
        ks.kronsum(eye, eye)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_build_allocates_little_beyond_the_result(fmt):
    """Peak memory of a build (tracemalloc sees numpy's allocations) stays under 1.2x the result."""
    import tracemalloc
    from kronjit.study.cases import random_sparse
    from kronjit.study.references import result_arrays
    a, b = random_sparse(200, 5, 0), random_sparse(100, 10, 1)  # 2e6 entries, ~24 MB
    ks.kron(a, b, format=fmt)
    tracemalloc.start()
    try:
        result = ks.kron(a, b, format=fmt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    result_bytes = sum(x.nbytes for x in result_arrays(result))
    assert result_bytes > 20e6
    assert peak <= 1.2 * result_bytes, (peak, result_bytes)


# --- bad input -----------------------------------------------------------------------

def test_unknown_or_bad_format():
    a = sp.csr_array(np.eye(2))
    with pytest.raises(ValueError, match="format 'xyz' is unknown"):
        ks.kron(a, a, format="xyz")
    with pytest.raises(ValueError, match="format 'xyz' is unknown"):
        ks.kronsum(a, a, format="xyz")
    with pytest.raises(TypeError, match="format must be a str or None"):
        ks.kron(a, a, format=3)


@pytest.mark.parametrize("bad,exc", [
    (np.ones((2, 2, 2)), TypeError),              # 3-D dense with spmatrix factors
    (np.ones((2, 2), dtype=np.float16), ValueError),
    (np.array([[object()]]), ValueError),
])
def test_bad_factor_raises_scipys_error_naming_it(bad, exc):
    good = sp.csr_matrix(np.eye(2))
    with pytest.raises(exc):
        sp.kron(good, bad)
    with pytest.raises(exc, match="^B: "):
        ks.kron(good, bad)
    with pytest.raises(exc, match="^A: "):
        ks.kron(bad, good, format="csr")


def test_malformed_compressed_input_is_rejected_by_name():
    bad = sp.csr_array((np.ones(2), np.array([0, 1]), np.array([0, 2])), shape=(1, 2))
    bad.indices[1] = 7  # out of range for 2 columns, written after construction
    with pytest.raises(ValueError, match="B is not a valid CSR matrix"):
        ks.kron(np.eye(2), bad, format="csr")


def test_kronsum_rejects_non_square_and_non_2d_by_name():
    with pytest.raises(ValueError, match="A is not square: shape \\(2, 3\\)"):
        ks.kronsum(np.ones((2, 3)), np.eye(2))
    with pytest.raises(ValueError, match="B is not square"):
        ks.kronsum(np.eye(2), sp.csr_array(np.ones((3, 2))))
    with pytest.raises(ValueError, match="B is 1-D"):
        ks.kronsum(sp.eye_array(2), sp.coo_array(np.ones(3)))
    with pytest.raises(ValueError):
        sp.kronsum(sp.eye_array(2), sp.coo_array(np.ones(3)))


def test_dtypes_without_kernel_are_scipys():
    a = sp.csr_array(np.eye(2, dtype=np.longdouble))
    check("kron", a, sp.csr_array(np.ones((2, 2))), format="csr")
    check("kronsum", a, a)


# --- the parallel kernels --------------------------------------------------------------

@pytest.mark.parametrize("fmt", [None, "csr", "csc", "coo", "bsr"])
def test_parallel_path_agrees(fmt):
    a = sp.csr_array(sparse_dense((150, 120), np.float64, 0.05, 17))
    b = sp.csc_array(sparse_dense((80, 90), np.complex128, 0.05, 18))
    with kronjit.num_threads(2):
        check("kron", a, b, format=fmt)
        check("kron", a, b.toarray()[:3, :3], format=fmt)
        check("kronsum", a[:, :120].tocsr()[:120], b[:, :80].tocsc(), format=fmt)


# --- properties -------------------------------------------------------------------------

@st.composite
def sparse_factor(draw, square=False):
    m = draw(st.integers(0, 5))
    n = m if square else draw(st.integers(0, 5))
    dtype = draw(st.sampled_from(["?", "i1", "u2", "i8", "f4", "f8", "c8", "c16"]))
    density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
    kind = draw(st.sampled_from(["csr_array", "csc_matrix", "coo_array", "ndarray",
                                 "dia_array"]))
    return as_kind(sparse_dense((m, n), dtype, density, draw(st.integers(0, 50))), kind)


@given(sparse_factor(), sparse_factor(), st.sampled_from(FORMATS))
def test_property_kron_equals_scipy(a, b, fmt):
    check("kron", a, b, format=fmt)


@given(sparse_factor(square=True), sparse_factor(square=True), st.sampled_from(FORMATS))
def test_property_kronsum_equals_scipy(a, b, fmt):
    check("kronsum", a, b, format=fmt)
