"""Toeplitz solves, products and the BlockToeplitz operator against dense references.

Solves go through three code paths, all tested: the scalar recursion (1x1
blocks), the jitted block recursion (blocks up to GEMM_BLOCK_MIN - 1) and the
GEMM one (larger blocks).
"""
import numpy as np
import pytest
import scipy.linalg
from scipy.sparse.linalg import cg, gmres

import kronjit
from helpers import assert_identical, rand
from kronjit import toeplitz as tz
from kronjit.study.references import block_toeplitz_gather, block_toeplitz_solve_dense

#: block orders through each path: scalar, jitted blocks, GEMMs
ORDERS = [1, 2, 3, tz.GEMM_BLOCK_MIN]


def well_posed(rng, m, p, dtype, hermitian=False):
    """Blocks ``c``, ``r`` of a block Toeplitz matrix whose leading block principal
    submatrices are all well conditioned (a dominant first block)."""
    c, r = rand(rng, (m, p, p), dtype), rand(rng, (m, p, p), dtype)
    c[0] += (2 * m * p) * np.eye(p, dtype=dtype)
    if hermitian:
        c[0] = (c[0] + c[0].conj().T) / 2
        r = c.conj().transpose(0, 2, 1)
    return c, r


def assert_solves(x, t, b, dtype):
    """``x`` solves ``t x = b`` to a tolerance scaled to the dtype it was computed in."""
    eps = np.finfo(np.result_type(dtype, np.float64)).eps
    scale = np.abs(t) @ np.abs(x) + np.abs(b)
    assert np.all(np.abs(t @ x - b) <= 1e3 * eps * t.shape[0] * scale)


@pytest.mark.parametrize("p", ORDERS)
@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
@pytest.mark.parametrize("k", [None, 1, 5])
@pytest.mark.parametrize("hermitian", [False, True])
def test_solve_against_dense(p, dtype, k, hermitian):
    rng = np.random.default_rng(p + 10 * (k or 0))
    m = 7
    c, r = well_posed(rng, m, p, dtype, hermitian)
    b = rand(rng, (m * p,) if k is None else (m * p, k), dtype)
    c_or_cr = c if hermitian else (c, r)
    if p == 1:
        c_or_cr = c[:, 0, 0] if hermitian else (c[:, 0, 0], r[:, 0, 0])
    x = kronjit.solve_toeplitz(c_or_cr, b)
    assert x.shape == b.shape
    assert x.dtype == (np.complex128 if dtype == "complex128" else np.float64)  # scipy's rule
    t = block_toeplitz_gather(c, r).astype(x.dtype)
    assert_solves(x.reshape(m * p, -1), t, b.reshape(m * p, -1).astype(x.dtype), x.dtype)
    want = block_toeplitz_solve_dense(*(a.astype(x.dtype) for a in (c, r, b)))
    np.testing.assert_allclose(x, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("p", ORDERS)
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_persymmetric_blocks(p, dtype):
    """r[k] = c[k] (the matrix equals itself with its block order reversed; blocks
    neither symmetric nor Hermitian): the backward predictor is the forward one
    reversed, a path of its own."""
    rng = np.random.default_rng(60 + p)
    c, _ = well_posed(rng, 8, p, dtype)
    t = block_toeplitz_gather(c, c)
    assert np.array_equal(t, t[::-1, ::-1].reshape(8, p, 8, p)[:, ::-1, :, ::-1].reshape(8 * p, -1))
    b = rand(rng, (8 * p, 3), dtype)
    np.testing.assert_allclose(kronjit.solve_toeplitz((c, c), b), np.linalg.solve(t, b),
                               rtol=1e-10, atol=1e-12)
    sign, logabs = kronjit.BlockToeplitz(c, c).slogdet()
    want_sign, want_logabs = np.linalg.slogdet(t)
    assert logabs == pytest.approx(want_logabs, rel=1e-12) and sign == pytest.approx(want_sign)


@pytest.mark.parametrize("p", ORDERS)
def test_many_right_hand_sides_are_each_one_solve(p):
    """All columns go through one recursion: each equals its own solve."""
    rng = np.random.default_rng(20 + p)
    c, r = well_posed(rng, 9, p, "float64")
    b = rng.standard_normal((9 * p, 6))
    x = kronjit.solve_toeplitz((c, r), b)
    for j in range(6):
        np.testing.assert_allclose(x[:, j], kronjit.solve_toeplitz((c, r), b[:, j]),
                                   rtol=1e-12, atol=1e-14)


def test_integer_and_bool_inputs_solve_in_float64():
    c, b = np.array([4, 1, 0, 1]), np.array([1, 2, 3, 4])
    x = kronjit.solve_toeplitz(c, b)
    assert x.dtype == np.float64
    np.testing.assert_allclose(x, scipy.linalg.solve_toeplitz(c, b), rtol=1e-13)
    assert kronjit.solve_toeplitz(np.array([True, False]), np.array([1, 0])).dtype == np.float64


@pytest.mark.parametrize("p", ORDERS)
def test_breakdown_raises(p):
    """An exactly singular leading block principal submatrix stops the recursion, on
    every path, even where the whole matrix is invertible."""
    eye = np.eye(p)
    zero_first = np.stack([0 * eye, eye, 2 * eye])
    with pytest.raises(np.linalg.LinAlgError, match="leading 1"):
        kronjit.solve_toeplitz(zero_first, np.ones(3 * p))
    # [[2, 2, 1], [2, 2, 2], [1, 2, 2]] per block: its leading 2 x 2 is singular
    singular_2 = np.stack([2 * eye, 2 * eye, eye])
    assert abs(np.linalg.det(block_toeplitz_gather(singular_2, singular_2))) > 1e-9
    with pytest.raises(np.linalg.LinAlgError, match="leading 2"):
        kronjit.solve_toeplitz(singular_2, np.ones(3 * p))
    with pytest.raises(np.linalg.LinAlgError, match="leading 2"):
        kronjit.BlockToeplitz(singular_2).slogdet()


@pytest.mark.parametrize("call", [
    lambda: kronjit.solve_toeplitz(np.ones((3, 2, 3)), np.ones(6)),
    lambda: kronjit.solve_toeplitz((np.ones(3), np.ones(4)), np.ones(3)),
    lambda: kronjit.solve_toeplitz([1.0, 0.5], np.ones(3)),
    lambda: kronjit.solve_toeplitz([1.0, 0.5], np.ones((2, 2, 2))),
    lambda: kronjit.solve_toeplitz(np.ones((2, 2)), np.ones(2)),
    lambda: kronjit.solve_toeplitz([1.0, np.nan], np.ones(2)),
    lambda: kronjit.solve_toeplitz([1.0, 0.5], [1.0, np.inf]),
    lambda: kronjit.solve_toeplitz([1.0, 0.5], None),
    lambda: kronjit.solve_toeplitz((np.ones(2),), np.ones(2)),
    lambda: kronjit.BlockToeplitz(np.ones((3, 2, 2)), np.ones((4, 2, 2))).solve(np.ones(6)),
    lambda: kronjit.BlockToeplitz(np.ones((3, 2, 3)), np.ones((3, 2, 3))).slogdet(),
], ids=["non-square blocks", "c and r lengths", "b length", "b ndim", "2-D c", "nan in c",
        "inf in b", "b None", "1-tuple", "non-square operator solve", "rectangular slogdet"])
def test_bad_solves_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="c must be numeric"):
        kronjit.solve_toeplitz(np.array(["a", "b"]), np.ones(2))
    with pytest.raises(TypeError, match="b must be numeric"):
        kronjit.solve_toeplitz([1.0, 0.5], np.array(["a", "b"]))
    # check_finite=False lets NaN through: the result is NaN, not an exception
    assert np.isnan(kronjit.solve_toeplitz([1.0, 0.5], [np.nan, 1.0],
                                           check_finite=False)).any()


@pytest.mark.parametrize("shape", [(0,), (0, 0), (0, 3)])
def test_empty_solves(shape):
    x = kronjit.solve_toeplitz(np.zeros(0), np.zeros(shape))
    assert x.shape == shape and x.dtype == np.float64
    assert kronjit.solve_toeplitz(np.zeros(0), np.zeros(shape, complex)).dtype == np.complex128


# --- products ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32", "int64"])
@pytest.mark.parametrize("shape", [(5, 1, 1, 3), (4, 2, 3, 6), (1, 3, 2, 1), (3, 2, 2, 1)])
@pytest.mark.parametrize("k", [None, 4])
def test_matmul_against_dense(dtype, shape, k):
    m, p, q, n = shape
    rng = np.random.default_rng(m * n + p)
    c, r = rand(rng, (m, p, q), dtype), rand(rng, (n, p, q), dtype)
    x = rand(rng, (n * q,) if k is None else (n * q, k), dtype)
    got = kronjit.matmul_toeplitz((c, r), x)
    want = block_toeplitz_gather(c, r).astype(got.dtype) @ x.astype(got.dtype)
    assert got.shape == want.shape
    assert got.dtype == (np.complex128 if dtype == "complex128" else np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    if p == q == 1:  # the same call with 1-D c and r is scipy's
        want = scipy.linalg.matmul_toeplitz((c.ravel(), r.ravel()), x)
        np.testing.assert_allclose(kronjit.matmul_toeplitz((c.ravel(), r.ravel()), x), want,
                                   rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_matmul_default_r_and_workers():
    rng = np.random.default_rng(3)
    c = rng.standard_normal(6) + 1j * rng.standard_normal(6)
    x = rng.standard_normal((6, 2))
    want = scipy.linalg.toeplitz(c) @ x
    for workers in (None, 1, 2):
        np.testing.assert_allclose(kronjit.matmul_toeplitz(c, x, workers=workers), want,
                                   rtol=1e-12, atol=1e-12)


# --- the operator ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
@pytest.mark.parametrize("shape", [(5, 2, 3, 4), (6, 1, 1, 6), (3, 3, 3, 3)])
def test_block_toeplitz_operator(dtype, shape):
    m, p, q, n = shape
    rng = np.random.default_rng(m + n)
    c, r = rand(rng, (m, p, q), dtype), rand(rng, (n, p, q), dtype)
    op = kronjit.BlockToeplitz(c, r)
    t = block_toeplitz_gather(c, r)
    assert op.shape == t.shape and op.dtype == np.result_type(dtype, 1.0)
    assert_identical(op.todense(), kronjit.block_toeplitz(c, r))
    err = 1e-4 if dtype == "float32" else 1e-10
    tol = {"rtol": err, "atol": err}
    x, y = rand(rng, (n * q, 3), dtype), rand(rng, (m * p, 3), dtype)
    for got, want in [(op @ x, t @ x), (op @ x[:, 0], t @ x[:, 0]), (op.matmat(x), t @ x),
                      (op.rmatvec(y[:, 0]), t.conj().T @ y[:, 0]), (op.H @ y, t.conj().T @ y),
                      (op.T @ y, t.T @ y), (op.rmatmat(y), t.conj().T @ y)]:
        assert got.dtype == np.result_type(dtype, 1.0)
        np.testing.assert_allclose(got, want, **tol)
    # the adjoint identity, and the transposes as block Toeplitz operators of their own
    np.testing.assert_allclose(np.vdot(y, op @ x), np.vdot(op.H @ y, x), **tol)
    assert_identical(op.T.todense(), t.T)
    assert_identical(op.H.todense(), t.conj().T)
    # a complex vector through a real operator
    z = x + 1j
    np.testing.assert_allclose(op @ z, t @ z, **tol)


@pytest.mark.parametrize("p", ORDERS)
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_operator_solve_and_determinant(p, dtype):
    rng = np.random.default_rng(40 + p)
    c, r = well_posed(rng, 6, p, dtype, hermitian=True)
    op = kronjit.BlockToeplitz(c)
    t = block_toeplitz_gather(c, r)
    b = rand(rng, (6 * p, 2), dtype)
    fresh = kronjit.BlockToeplitz(c).slogdet()  # by a recursion of its own
    np.testing.assert_allclose(op.solve(b), np.linalg.solve(t, b), rtol=1e-10, atol=1e-12)
    sign, logabs = op.slogdet()  # kept from the solve's recursion
    want_sign, want_logabs = np.linalg.slogdet(t)
    assert (sign, logabs) == fresh
    assert logabs == pytest.approx(want_logabs, rel=1e-12)
    assert sign == pytest.approx(want_sign)
    assert isinstance(sign, complex if dtype == "complex128" else float)
    assert op.logdet() == pytest.approx(np.log(want_sign) + want_logabs if dtype == "complex128"
                                        else want_logabs, rel=1e-12)


def test_determinant_sign_and_gp_against_cholesky():
    # an indefinite matrix: a negative determinant, nan log-determinant
    op = kronjit.BlockToeplitz([1.0, 3.0, 0.5], [1.0, 2.0, 0.25])
    t = op.todense()
    sign, logabs = op.slogdet()
    assert (sign, logabs) == (np.linalg.slogdet(t)[0], pytest.approx(np.linalg.slogdet(t)[1]))
    assert sign < 0 and np.isnan(op.logdet())
    # a two-output stationary covariance: solve and log-determinant against Cholesky
    lags = np.arange(40)
    c = np.exp(-lags / 8.0)[:, None, None] * np.array([[1.0, 0.4], [0.4, 1.0]])
    c[0] += 0.1 * np.eye(2)
    y = np.sin(np.arange(80) / 3.0)
    cov = kronjit.BlockToeplitz(c)
    chol = scipy.linalg.cho_factor(cov.todense())
    np.testing.assert_allclose(cov.solve(y), scipy.linalg.cho_solve(chol, y), rtol=1e-10)
    assert cov.logdet() == pytest.approx(2 * np.log(np.diag(chol[0])).sum(), rel=1e-12)


@pytest.mark.parametrize("solver", [cg, gmres])
def test_iterative_solvers_take_the_operator(solver):
    rng = np.random.default_rng(5)
    c, _ = well_posed(rng, 12, 2, "float64", hermitian=True)
    op = kronjit.BlockToeplitz(c)
    b = rng.standard_normal(24)
    x, info = solver(op, b, rtol=1e-12, atol=0)
    assert info == 0
    np.testing.assert_allclose(x, op.solve(b), rtol=1e-8, atol=1e-10)


def test_empty_operator():
    op = kronjit.BlockToeplitz(np.zeros((0, 2, 2)))
    assert op.shape == (0, 0)
    assert (op @ np.zeros(0)).shape == (0,)
    assert op.slogdet() == (1.0, 0.0) and op.logdet() == 0.0
    assert op.solve(np.zeros(0)).shape == (0,)


# --- multilevel ------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7,), (5, 7), (3, 5, 3), (1, 5), (1,)])
@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
def test_multilevel_against_dense(shape, dtype):
    rng = np.random.default_rng(len(shape) * 10 + shape[0])
    t = rand(rng, shape, dtype)
    op = kronjit.MultilevelToeplitz(t)
    assert op.grid == tuple((s + 1) // 2 for s in shape)
    dense = op.todense()
    # entry (i, j) is t[i - j + n - 1], grid points in row-major order
    points = list(np.ndindex(op.grid))
    n = np.array(op.grid)
    assert all(dense[i, j] == t[tuple(np.array(p) - np.array(q) + n - 1)]
               for i, p in enumerate(points) for j, q in enumerate(points))
    err = 1e-4 if dtype == "float32" else 1e-10
    x = rand(rng, (op.shape[0], 3), dtype)
    assert (op @ x).dtype == np.result_type(dtype, 1.0)
    for got, want in [(op @ x, dense @ x), (op @ x[:, 0], dense @ x[:, 0]),
                      (op.H @ x, dense.conj().T @ x), (op.T @ x, dense.T @ x),
                      (op.rmatvec(x[:, 0]), dense.conj().T @ x[:, 0]), (op @ (x + 1j), dense @ (x + 1j))]:
        np.testing.assert_allclose(got, want, rtol=err, atol=err * max(1.0, np.abs(want).max()))
    # the same product computed from scratch by scipy
    import scipy.signal
    np.testing.assert_allclose((op @ x[:, 0]).reshape(op.grid),
                               scipy.signal.fftconvolve(t, x[:, 0].reshape(op.grid), mode="valid"),
                               rtol=err, atol=err * np.abs(dense @ x[:, 0]).max())


def test_multilevel_levels_are_toeplitz_and_bttb():
    rng = np.random.default_rng(8)
    t1 = rng.standard_normal(9)  # one level: scipy's Toeplitz of c = t[4:], r = t[4::-1]
    assert_identical(kronjit.MultilevelToeplitz(t1).todense(), scipy.linalg.toeplitz(t1[4:], t1[4::-1]))
    t2 = rng.standard_normal((5, 7))  # two levels: block Toeplitz with Toeplitz blocks
    blocks = np.stack([scipy.linalg.toeplitz(row[3:], row[3::-1]) for row in t2])
    bttb = kronjit.block_toeplitz(blocks[2:], blocks[2::-1])
    assert_identical(kronjit.MultilevelToeplitz(t2).todense(), bttb)


def test_multilevel_gp_with_cg():
    """K + s I for a non-separable stationary kernel on a 2-D grid, by conjugate gradients."""
    lags = np.meshgrid(np.arange(-9, 10), np.arange(-11, 12), indexing="ij")
    d = np.hypot(*lags) / 3.0
    op = kronjit.MultilevelToeplitz((1 + np.sqrt(3) * d) * np.exp(-np.sqrt(3) * d))
    from scipy.sparse.linalg import aslinearoperator
    shifted = op + 0.1 * aslinearoperator(np.eye(op.shape[0]))
    y = np.sin(np.arange(op.shape[0]) / 7.0)
    x, info = cg(shifted, y, rtol=1e-12, atol=0)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(op.todense() + 0.1 * np.eye(op.shape[0]), y),
                               rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("t, exc", [(np.ones((4, 5)), ValueError), (np.ones(6), ValueError),
                                    (np.array(1.0), ValueError), (np.array(["a"]), TypeError),
                                    (None, TypeError)])
def test_multilevel_bad_kernels(t, exc):
    with pytest.raises(exc, match="t"):
        kronjit.MultilevelToeplitz(t)


def test_multilevel_todense_too_large():
    with pytest.raises(MemoryError, match="MultilevelToeplitz"):
        kronjit.MultilevelToeplitz(np.ones((1023, 1023))).todense()  # 2^38 entries
