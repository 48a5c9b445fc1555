"""Block Toeplitz / Hankel / circulant / diagonal against np.block and scipy.linalg,
bit for bit; the FFT block Toeplitz matvec against the dense product."""
import numpy as np
import pytest
import scipy.linalg as sl
from hypothesis import given, strategies as st

import kronjit
from helpers import KERNEL_DTYPES, assert_identical, bad_outs, sample

# dtypes copied as words of every size: 1, 2, 4, 8, 16 and 32 bytes
COPY_DTYPES = KERNEL_DTYPES + [np.dtype(np.float16), np.dtype(np.longdouble),
                               np.dtype(np.clongdouble), np.dtype("M8[s]")]


def values(shape, dtype, seed):
    dtype = np.dtype(dtype)
    if dtype.kind == "M":
        return sample(shape, np.int64, seed).view(dtype)
    if dtype in (np.float16, np.longdouble, np.clongdouble):
        with np.errstate(all="ignore"):
            return sample(shape, np.complex128 if dtype.kind == "c" else np.float64,
                          seed).astype(dtype)
    return sample(shape, dtype, seed)


def block_reference(block, m, n, p, q, dtype):
    """np.block of ``block(i, j)`` (or the empty matrix when there are no blocks)."""
    if m == 0 or n == 0:
        return np.empty((m * p, n * q), dtype)
    return np.block([[np.asarray(block(i, j), dtype) for j in range(n)] for i in range(m)])


def toeplitz_reference(c, r):
    (m, p, q), n = c.shape, r.shape[0]
    return block_reference(lambda i, j: c[i - j] if i >= j else r[j - i], m, n, p, q,
                           np.result_type(c, r))


def hankel_reference(c, r):
    (m, p, q), n = c.shape, r.shape[0]
    return block_reference(lambda i, j: c[i + j] if i + j < m else r[i + j - m + 1], m, n,
                           p, q, np.result_type(c, r))


def circulant_reference(c):
    n, p, q = c.shape
    return block_reference(lambda i, j: c[(i - j) % n], n, n, p, q, c.dtype)


# --- scalar blocks: scipy.linalg bit for bit ---------------------------------------------

@pytest.mark.parametrize("dtype", COPY_DTYPES, ids=str)
@pytest.mark.parametrize("m,n", [(0, 0), (1, 1), (1, 4), (5, 1), (6, 3), (3, 7)])
def test_scalar_blocks_equal_scipy(dtype, m, n):
    c, r = values(m, dtype, 1), values(n, dtype, 2)
    assert_identical(kronjit.block_toeplitz(c, r), sl.toeplitz(c, r))
    assert_identical(kronjit.block_hankel(c, r), sl.hankel(c, r))
    assert_identical(kronjit.block_circulant(c), sl.circulant(c))
    assert_identical(kronjit.block_hankel(c), sl.hankel(c))
    if dtype.kind != "M":
        assert_identical(kronjit.block_toeplitz(c), sl.toeplitz(c))


@pytest.mark.parametrize("dc,dr", [("b", "f"), ("?", "i8"), ("u1", "i1"), ("f4", "c8"),
                                   ("i8", "f8"), ("c16", "f4")])
def test_scalar_mixed_dtypes_promote_like_scipy(dc, dr):
    c, r = values(4, dc, 3), values(5, dr, 4)
    assert_identical(kronjit.block_toeplitz(c, r), sl.toeplitz(c, r))
    assert_identical(kronjit.block_hankel(c, r), sl.hankel(c, r))


def test_scalars_lists_and_complex_hermitian_default():
    assert_identical(kronjit.block_toeplitz(3.5), sl.toeplitz(3.5))
    assert_identical(kronjit.block_toeplitz([1, 2, 3]), sl.toeplitz([1, 2, 3]))
    z = np.array([1 + 0j, 2 - 1j, -3j])
    t = kronjit.block_toeplitz(z)
    assert_identical(t, sl.toeplitz(z))
    np.testing.assert_array_equal(t, t.conj().T)


# --- blocks: np.block references -------------------------------------------------------

BLOCK_SHAPES = [(1, 1), (2, 3), (3, 2), (0, 2), (2, 0), (4, 4), (3, 20), (2, 9)]


@pytest.mark.parametrize("p,q", BLOCK_SHAPES, ids=str)
@pytest.mark.parametrize("m,n", [(1, 1), (3, 3), (4, 2), (2, 5), (0, 3), (3, 0)], ids=str)
@pytest.mark.parametrize("dtype", ["f8", "c16", "i1", "?"])
def test_blocks_equal_np_block(p, q, m, n, dtype):
    c, r = values((m, p, q), dtype, 5), values((n, p, q), dtype, 6)
    assert_identical(kronjit.block_toeplitz(c, r), toeplitz_reference(c, r))
    assert_identical(kronjit.block_hankel(c, r), hankel_reference(c, r))
    assert_identical(kronjit.block_circulant(c), circulant_reference(c))


@pytest.mark.parametrize("dc,dr", [("i2", "f4"), ("f4", "c16"), ("u1", "?"), ("f8", "i8")])
@pytest.mark.parametrize("q", [2, 17])
def test_blocks_mixed_dtypes(dc, dr, q):
    c, r = values((3, 2, q), dc, 7), values((4, 2, q), dr, 8)
    assert_identical(kronjit.block_toeplitz(c, r), toeplitz_reference(c, r))
    assert_identical(kronjit.block_hankel(c, r), hankel_reference(c, r))


@pytest.mark.parametrize("p", [1, 3, 16])
@pytest.mark.parametrize("dtype", ["f8", "c8", "c16"])
def test_hermitian_default_and_zero_hankel(p, dtype):
    c = values((4, p, p), dtype, 9)
    expected_r = c.conj().transpose(0, 2, 1)
    t = kronjit.block_toeplitz(c)
    assert_identical(t, toeplitz_reference(c, expected_r))
    if c.dtype.kind == "c" or p > 1:
        np.testing.assert_array_equal(t[p:, :p], c[1:].reshape(-1, p))
    assert_identical(kronjit.block_hankel(c), hankel_reference(c, np.zeros_like(c)))


def test_layouts_and_byte_orders():
    base = values((5, 3, 4), "f8", 10)
    for c in (np.asfortranarray(base), base[::-1], base.astype(">f8"),
              np.broadcast_to(base[:1], base.shape)):
        r = base[::2].copy()
        assert_identical(kronjit.block_toeplitz(c, r), toeplitz_reference(c, r))
        assert_identical(kronjit.block_hankel(c, r), hankel_reference(c, r))
        assert_identical(kronjit.block_circulant(c), circulant_reference(c))


def test_object_dtype_is_gathered_like_numpy():
    c = np.array([[[1]], [[2]], [[3]]], dtype=object)
    r = np.array([[[1]], [[7]]], dtype=object)
    got = kronjit.block_toeplitz(c, r)
    assert got.dtype == object and got.tolist() == toeplitz_reference(c, r).tolist()


@pytest.mark.parametrize("p,q", [(1, 1), (4, 4), (3, 40)])
def test_parallel_path_agrees(p, q):
    c, r = values((60, p, q), "f8", 11), values((50, p, q), "f8", 12)
    with kronjit.num_threads(2):
        assert_identical(kronjit.block_toeplitz(c, r), toeplitz_reference(c, r))
        assert_identical(kronjit.block_hankel(c, r), hankel_reference(c, r))
        assert_identical(kronjit.block_circulant(c), circulant_reference(c))


# --- block_diag ------------------------------------------------------------------------------

BLOCK_DIAG_ARGS = {
    "none": (),
    "empty list": ([],),
    "scalars": (1, 2.5, -3),
    "rows and matrices": ([[1, 2], [3, 4]], 5, [6, 7]),
    "empty blocks": (np.zeros((0, 3)), [[1.0]], np.zeros((2, 0)), []),
    "mixed dtypes": (np.ones((2, 2), np.int8), np.full((1, 3), 2.5, np.float32),
                     np.array([[1 + 2j]], np.complex64)),
    "bool": (np.eye(2, dtype=bool), [[True, False]]),
    "wide": (values((3, 40), "f8", 13), values((5, 2), "f8", 14)),
    "float16": (np.ones((2, 2), np.float16), [[3.0]]),
    "objects": (np.array([[1, None]], dtype=object), [[2]]),
}


@pytest.mark.parametrize("name", list(BLOCK_DIAG_ARGS))
def test_block_diag_equals_scipy(name):
    args = BLOCK_DIAG_ARGS[name]
    assert_identical(kronjit.block_diag(*args), sl.block_diag(*args))


def test_block_diag_nd_arguments_are_scipys():
    args = (np.ones((2, 2, 2)), np.eye(2))
    try:
        expected = sl.block_diag(*args)
    except ValueError as exc:  # older scipy: no batches
        with pytest.raises(ValueError):
            kronjit.block_diag(*args)
        assert "dimensions" in str(exc)
    else:
        assert_identical(kronjit.block_diag(*args), expected)


def test_block_diag_parallel_path():
    args = [values((k, 30 + k), "c16", k) for k in range(1, 30)]
    with kronjit.num_threads(2):
        assert_identical(kronjit.block_diag(*args), sl.block_diag(*args))


# --- out= ---------------------------------------------------------------------------------

CONSTRUCTORS = {
    "block_toeplitz": lambda c, r, **kw: kronjit.block_toeplitz(c, r, **kw),
    "block_hankel": lambda c, r, **kw: kronjit.block_hankel(c, r, **kw),
    "block_circulant": lambda c, r, **kw: kronjit.block_circulant(c, **kw),
    "block_diag": lambda c, r, **kw: kronjit.block_diag(*c, **kw),
}


@pytest.mark.parametrize("func", list(CONSTRUCTORS))
def test_out_is_filled_and_returned(func):
    c, r = values((2, 3, 6), "f8", 15), values((2, 3, 6), "f8", 16)
    expected = CONSTRUCTORS[func](c, r)
    out = np.full(expected.shape, np.nan)
    assert CONSTRUCTORS[func](c, r, out=out) is out
    assert_identical(out, expected)


@pytest.mark.parametrize("func", list(CONSTRUCTORS))
@pytest.mark.parametrize("name", list(bad_outs((6, 12))))
def test_bad_out_raises_and_writes_nothing(func, name):
    c, r = values((2, 3, 6), "f8", 15), values((2, 3, 6), "f8", 16)
    assert CONSTRUCTORS[func](c, r).shape == (6, 12)
    make, exc, words = bad_outs((6, 12))[name]
    out = make()
    before = np.array(out, copy=True)
    with pytest.raises(exc, match=words) as info:
        CONSTRUCTORS[func](c, r, out=out)
    assert "out" in str(info.value)
    assert np.array_equal(np.asarray(out), before)


def test_out_overlapping_input_is_rejected():
    buf = np.zeros((4, 4))
    with pytest.raises(ValueError, match="overlaps input 0"):
        kronjit.block_toeplitz(buf[0], buf[1], out=buf)


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("call,exc,words", [
    (lambda: kronjit.block_toeplitz([np.ones((2, 2)), np.ones((3, 2))]), ValueError,
     "c must be an array of equally shaped blocks"),
    (lambda: kronjit.block_toeplitz(np.ones((3, 3))), ValueError, "2-D is ambiguous"),
    (lambda: kronjit.block_hankel(np.ones((2, 2, 2, 2))), ValueError, "got a 4-D array"),
    (lambda: kronjit.block_toeplitz(np.ones((3, 2, 2)), np.ones((3, 2, 3))), ValueError,
     r"r has blocks of shape \(2, 3\), expected \(2, 2\)"),
    (lambda: kronjit.block_toeplitz(np.ones((3, 2, 3))), ValueError, "needs square blocks"),
    (lambda: kronjit.block_toeplitz(np.ones(3), np.ones((2, 2, 2))), ValueError,
     "r has blocks of shape"),
    (lambda: kronjit.block_toeplitz_matvec(np.ones((3, 2, 2)), None, np.ones(5)), ValueError,
     r"x must have shape \(6,\) or \(6, k\)"),
    (lambda: kronjit.block_toeplitz_matvec([1.0, 2.0], [1.0], np.ones((1, 1, 1))), ValueError,
     "x must have shape"),
    (lambda: kronjit.block_toeplitz_matvec([1, 2], [1, 2], np.array(["a", "b"])), TypeError,
     "x must be numeric"),
    (lambda: kronjit.block_toeplitz_matvec(np.ones((2, 2, 3)), None, np.ones(6)), ValueError,
     "needs square blocks"),
])
def test_bad_input_names_the_argument(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_output_beyond_memory_raises_before_allocating():
    with pytest.raises(MemoryError, match=r"block_toeplitz output of shape \(10000000, 10000000\)"):
        kronjit.block_toeplitz(np.ones(10**7))
    with pytest.raises(MemoryError, match="block_diag output"):
        kronjit.block_diag(np.ones((1, 10**6)), np.ones((10**6, 1)))


# --- the FFT matvec ------------------------------------------------------------------------------

def assert_close_to_dense(c, r, x):
    cb = np.asarray(c) if np.ndim(c) == 3 else np.asarray(c).reshape(-1, 1, 1)
    if r is None:
        rb = cb.conj().transpose(0, 2, 1)
    else:
        rb = np.asarray(r) if np.ndim(r) == 3 else np.asarray(r).reshape(-1, 1, 1)
    dense = toeplitz_reference(cb, rb)
    got = kronjit.block_toeplitz_matvec(c, r, x)
    expected = dense @ np.asarray(x)
    assert got.shape == expected.shape
    dtype = np.result_type(dense, x, 1.0)
    assert got.dtype == dtype
    # rounding of an FFT-based product: eps * log2(size) relative to |T| @ |x|
    scale = np.abs(dense) @ np.abs(np.asarray(x)) if dense.size else np.zeros(expected.shape)
    eps = np.finfo(dtype).eps
    blocks = cb.shape[0] + rb.shape[0]
    tol = 8 * eps * np.log2(blocks + 2) * (scale + scale.max(initial=0) * 1e-3)
    assert np.all(np.abs(got - expected) <= tol), np.max(np.abs(got - expected) - tol)


@pytest.mark.parametrize("dtype", ["f8", "c16", "f4", "c8"])
@pytest.mark.parametrize("m,n,p,q", [(1, 1, 1, 1), (5, 3, 2, 3), (3, 7, 3, 2), (16, 16, 4, 4),
                                     (9, 1, 2, 2), (1, 9, 1, 3)])
@pytest.mark.parametrize("k", [None, 1, 4])
def test_matvec_agrees_with_dense(dtype, m, n, p, q, k):
    rng = np.random.default_rng(m * 100 + n)
    c = rng.standard_normal((m, p, q)).astype(dtype)
    r = rng.standard_normal((n, p, q)).astype(dtype)
    if np.dtype(dtype).kind == "c":
        c += 1j * rng.standard_normal((m, p, q)).astype(dtype)
        r -= 1j * rng.standard_normal((n, p, q)).astype(dtype)
    x = rng.standard_normal(n * q if k is None else (n * q, k)).astype(dtype)
    assert_close_to_dense(c, r, x)


@pytest.mark.parametrize("dtype", ["f8", "c16"])
def test_matvec_hermitian_default_and_mixed_kinds(dtype):
    rng = np.random.default_rng(20)
    c = rng.standard_normal((6, 3, 3)).astype(dtype)
    if np.dtype(dtype).kind == "c":
        c = c + 1j * rng.standard_normal((6, 3, 3))
    assert_close_to_dense(c, None, rng.standard_normal((18, 2)))
    assert_close_to_dense(np.arange(5), np.arange(3) - 1, np.arange(3))     # ints: float64
    assert_close_to_dense(c.real, c.real[:4], rng.standard_normal(12) + 1j)  # complex x


def test_matvec_empty_dimensions():
    assert kronjit.block_toeplitz_matvec(np.zeros((0, 2, 2)), np.zeros((3, 2, 2)),
                                         np.ones(6)).shape == (0,)
    np.testing.assert_array_equal(
        kronjit.block_toeplitz_matvec(np.ones((2, 2, 0)), np.ones((3, 2, 0)),
                                      np.ones((0, 3))), np.zeros((4, 3)))


# --- properties ------------------------------------------------------------------------------

@given(st.integers(0, 5), st.integers(0, 5), st.integers(0, 4), st.integers(0, 4),
       st.sampled_from(["f8", "c8", "i2", "?", "u8"]), st.integers(0, 100))
def test_property_blocks_equal_references(m, n, p, q, dtype, seed):
    c, r = values((m, p, q), dtype, seed), values((n, p, q), dtype, seed + 1)
    assert_identical(kronjit.block_toeplitz(c, r), toeplitz_reference(c, r))
    assert_identical(kronjit.block_hankel(c, r), hankel_reference(c, r))
    assert_identical(kronjit.block_circulant(c), circulant_reference(c))
    blocks = [values((p + i, q), dtype, seed + i) for i in range(m)]
    assert_identical(kronjit.block_diag(*blocks), sl.block_diag(*blocks))
