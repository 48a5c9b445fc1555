"""KronProduct and KronSum against the dense matrices they stand for.

Products are checked with the vec-trick's rounding bound (see
``helpers.assert_product_close``); solves and determinants with a bound
scaled to the condition number.  Factor shapes are distinct so a swapped or
transposed factor cannot pass by accident.
"""
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from hypothesis import given, strategies as st
from scipy.sparse.linalg import LinearOperator, aslinearoperator, cg, eigsh, expm_multiply, gmres, lsqr

from helpers import assert_identical, assert_product_close, assert_sparse_identical, dense_kron, \
    rand, textbook_kronsum
from kronjit import KronProduct, KronSum, KronVector


def spd(rng, n, dtype=np.float64, cond=10.0):
    """A Hermitian positive definite n x n matrix with condition number about ``cond``."""
    q, _ = np.linalg.qr(rand(rng, (n, n), dtype))
    w = np.geomspace(1.0, cond, n)
    a = (q * w) @ q.conj().T
    return ((a + a.conj().T) / 2).astype(dtype)


def assert_solve_close(got, a, b):
    """``got`` solves ``a x = b`` to within ``cond(a)`` times rounding."""
    want = np.linalg.solve(a, b)
    assert got.shape == want.shape
    eps = np.finfo(np.result_type(got.dtype, np.float32)).eps
    tol = 50 * a.shape[0] * np.linalg.cond(a) * eps * max(np.abs(want).max(), 1)
    assert np.abs(got - want).max() <= tol, (np.abs(got - want).max(), tol)


# --- KronProduct products ---------------------------------------------------------

def product_factors(rng, case, dtype):
    if case == "rect":
        return [rand(rng, (3, 4), dtype), rand(rng, (5, 2), dtype), rand(rng, (2, 3), dtype)]
    if case == "big_and_small":  # one BLAS factor, two fused
        return [rand(rng, (3, 2), dtype), rand(rng, (20, 18), dtype), rand(rng, (4, 5), dtype)]
    if case == "sparse":
        s = sp.random_array((6, 5), density=0.4, rng=rng, format="csr").astype(dtype)
        return [rand(rng, (3, 2), dtype), s]
    if case == "identity":
        return [np.eye(3, dtype=dtype), rand(rng, (4, 2), dtype), sp.identity(2, dtype=dtype)]
    if case == "nested":
        return [KronProduct([rand(rng, (2, 3), dtype), rand(rng, (3, 2), dtype)]),
                rand(rng, (4, 5), dtype)]
    raise ValueError(case)


CASES = ["rect", "big_and_small", "sparse", "identity", "nested"]
FLOATS = ["float32", "float64", "complex64", "complex128"]


def flat(factors):
    out = []
    for f in factors:
        out.extend(f.factors if isinstance(f, KronProduct) else [f])
    return out


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("k", [None, 1, 3])
def test_product_matvec_matmat_rmatvec(case, dtype, k):
    rng = np.random.default_rng(0)
    factors = product_factors(rng, case, dtype)
    op = KronProduct(factors)
    d = dense_kron(flat(factors))
    assert op.shape == d.shape and op.dtype == d.dtype
    inner = sum(f.shape[1] for f in flat(factors))
    x = rand(rng, (d.shape[1],) if k is None else (d.shape[1], k), dtype)
    y = rand(rng, (d.shape[0],) if k is None else (d.shape[0], k), dtype)
    assert_product_close(op @ x, d, x, inner)
    assert_product_close(op.matvec(x) if k in (None, 1) else op.matmat(x), d, x, inner)
    assert_product_close(op.rmatvec(y) if k in (None, 1) else op.rmatmat(y), d.conj().T, y,
                         inner)
    assert_product_close(op.T @ y, d.T, y, inner)
    assert_product_close(op.H @ y, d.conj().T, y, inner)


@pytest.mark.parametrize("op_kind", ["product", "sum"])
def test_adjoint_identity(op_kind):
    """<A x, y> = <x, A^H y> for complex operators and vectors."""
    rng = np.random.default_rng(1)
    if op_kind == "product":
        op = KronProduct([rand(rng, (3, 5), "complex128"), rand(rng, (4, 2), "complex128"),
                          sp.random_array((2, 3), density=0.7, rng=rng).astype(complex)])
    else:
        op = KronSum([rand(rng, (3, 3), "complex128"), rand(rng, (4, 4), "complex128")])
    x = rand(rng, op.shape[1], "complex128")
    y = rand(rng, op.shape[0], "complex128")
    lhs, rhs = np.vdot(y, op @ x), np.vdot(op.H @ y, x)
    assert abs(lhs - rhs) <= 1e-12 * np.linalg.norm(x) * np.linalg.norm(y) * 50


def test_mixed_dtypes_follow_numpy_promotion():
    rng = np.random.default_rng(2)
    a = rng.integers(-3, 4, (3, 2)).astype(np.int16)
    b = rand(rng, (2, 4), "float32")
    op = KronProduct([a, b])
    assert op.dtype == np.result_type(a, b) == np.float32
    x = rand(rng, 8, "float64")
    assert (op @ x).dtype == np.float64
    ints = KronProduct([a, a.T.astype(np.int8)])
    xi = rng.integers(-3, 4, 6).astype(np.int32)
    assert_identical(ints @ xi, np.kron(a, a.T.astype(np.int8)) @ xi)


def test_scalar_multiples_and_negation():
    rng = np.random.default_rng(3)
    a, b = rand(rng, (3, 4), "float64"), sp.csr_array(rand(rng, (2, 3), "float64"))
    op = KronProduct([a, b])
    d = dense_kron([a, b])
    x = rand(rng, 12, "float64")
    for scaled, factor in [(2.5 * op, 2.5), (op * 2.5, 2.5), (np.float32(3) * op, 3.0),
                           (-op, -1.0), (op / 4, 0.25), (op.dot(2.0), 2.0)]:
        assert isinstance(scaled, KronProduct)
        np.testing.assert_allclose(scaled @ x, factor * (d @ x), rtol=1e-13, atol=1e-13)
    c = (1 + 2j) * op
    assert c.dtype == np.complex128
    np.testing.assert_allclose(c @ x, (1 + 2j) * (d @ x), rtol=1e-13)
    assert op.dtype == np.float64 and np.array_equal(op.factors[0], a)  # not modified
    with pytest.raises(TypeError, match="scaled by a number"):
        op * "2"
    with pytest.raises(ValueError, match="Scalar operands"):
        op @ 2.0


def test_product_of_products_is_factorwise():
    rng = np.random.default_rng(4)
    a, b, c, d = (rand(rng, s, "float64") for s in [(3, 4), (2, 5), (4, 2), (5, 3)])
    p = KronProduct([a, b]) @ KronProduct([c, d])
    assert isinstance(p, KronProduct)
    assert [f.shape for f in p.factors] == [(3, 2), (2, 3)]
    np.testing.assert_allclose(p.todense(), np.kron(a, b) @ np.kron(c, d), rtol=1e-12, atol=1e-12)
    # total shapes agree but factor shapes do not: scipy's lazy product, still right
    q = KronProduct([a, b]) @ KronProduct([rand(rng, (10, 3), "float64"), np.eye(2)])
    assert not isinstance(q, KronProduct) and isinstance(q, LinearOperator)
    x = rand(rng, 6, "float64")
    np.testing.assert_allclose(q @ x, np.kron(a, b) @ (dense_kron(q.args[1].factors) @ x),
                               rtol=1e-12)
    with pytest.raises(ValueError):
        KronProduct([a, b]) @ KronProduct([a, b])  # 6x20 @ 6x20


def test_todense_tosparse_diagonal_trace():
    rng = np.random.default_rng(5)
    a = rand(rng, (3, 3), "float32")
    b = sp.random_array((4, 4), density=0.5, rng=rng, format="coo").astype(np.float32)
    c = rand(rng, (2, 2), "float64")
    op = KronProduct([a, b, c])
    want = np.kron(np.kron(a, b.toarray()), c)
    assert_identical(op.todense(), want)
    assert_identical(op.toarray(), want)
    for fmt in ["csr", "csc", "coo", "bsr"]:
        assert_sparse_identical(op.tosparse(fmt), sp.kron(sp.kron(a, b), c, format=fmt))
    assert_identical(op.diagonal(), np.diag(want).copy())
    np.testing.assert_allclose(op.trace(), np.trace(want), rtol=1e-6)
    # rectangular factors: the diagonal is not the kron of diagonals
    r = KronProduct([rand(rng, (2, 3), "float64"), sp.csr_array(rand(rng, (4, 2), "float64"))])
    rd = r.todense()
    np.testing.assert_array_equal(r.diagonal(), np.diag(rd))
    np.testing.assert_allclose(r.trace(), np.trace(rd), rtol=1e-13)
    one = KronProduct([sp.csr_array(c)])
    assert_sparse_identical(one.tosparse(), sp.kron(sp.csr_array(c), np.ones((1, 1)), format="csr"))


# --- inverse, solve, determinants, eigen ------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
@pytest.mark.parametrize("k", [None, 4])
def test_inv_and_solve(dtype, k):
    rng = np.random.default_rng(6)
    factors = [rand(rng, (3, 3), dtype) + 3 * np.eye(3, dtype=dtype),
               sp.csr_array(rand(rng, (4, 4), dtype) + 4 * np.eye(4, dtype=dtype)),
               np.eye(2, dtype=dtype)]
    op = KronProduct(factors)
    d = dense_kron(factors)
    b = rand(rng, (24,) if k is None else (24, k), dtype)
    assert_solve_close(op.solve(b), d, b)
    inv = op.inv()
    assert isinstance(inv, KronProduct)
    assert_solve_close(inv @ b, d, b)
    assert inv.factors[2] is factors[2]  # identities are not inverted


def test_solve_errors():
    rng = np.random.default_rng(7)
    rect = KronProduct([rand(rng, (3, 4), "float64"), np.eye(2)])
    with pytest.raises(ValueError, match=r"square factors; factors\[0\] has shape \(3, 4\)"):
        rect.inv()
    with pytest.raises(ValueError, match="square factors"):
        rect.solve(np.ones(6))
    with pytest.raises(ValueError, match="square factors"):
        rect.logdet()
    with pytest.raises(ValueError, match="square factors"):
        rect.eigh()
    sing = KronProduct([np.eye(2), np.ones((3, 3))])
    with pytest.raises(np.linalg.LinAlgError, match=r"factors\[1\] is singular"):
        sing.solve(np.ones(6))
    op = KronProduct([np.eye(2) * 2, np.eye(3) * 3])
    with pytest.raises(ValueError, match=r"b has shape \(5,\); expected \(6,\) or \(6, k\)"):
        op.solve(np.ones(5))
    with pytest.raises(ValueError, match=r"b must be 1-D of shape \(N,\) or 2-D"):
        op.solve(np.ones((6, 2, 1)))
    with pytest.raises(TypeError, match="b has dtype"):
        op.solve(np.array(["a"] * 6))
    with pytest.raises(TypeError, match="b must be a dense array"):
        op.solve(sp.csr_array(np.ones((6, 1))))


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_eigh_is_lazy_and_exact(dtype):
    rng = np.random.default_rng(8)
    factors = [spd(rng, 3, dtype), spd(rng, 4, dtype), spd(rng, 2, dtype)]
    op = KronProduct(factors)
    d = dense_kron(factors)
    w, q = op.eigh()
    assert isinstance(w, KronVector) and isinstance(q, KronProduct)
    assert len(w) == 24 and w.dtype == np.float64
    qd = q.todense()
    np.testing.assert_allclose((qd * np.asarray(w)) @ qd.conj().T, d, atol=1e-12)
    np.testing.assert_allclose(np.sort(w.toarray()), np.linalg.eigvalsh(d), rtol=1e-12)
    assert w.min() == pytest.approx(np.linalg.eigvalsh(d)[0], rel=1e-12)
    assert w.max() == pytest.approx(np.linalg.eigvalsh(d)[-1], rel=1e-12)
    assert w.sum() == pytest.approx(np.trace(d).real, rel=1e-12)
    assert op.eigh() is op.eigh()  # factor decompositions are computed once


def test_eigh_rejects_non_hermitian():
    rng = np.random.default_rng(9)
    a = rand(rng, (3, 3), "float64")
    with pytest.raises(ValueError, match=r"Hermitian \(symmetric\) factors; factors\[1\] is not"):
        KronProduct([spd(rng, 2), a]).eigh()
    with pytest.raises(ValueError, match="Hermitian"):
        KronProduct([spd(rng, 2), a]).solve(np.ones(6), shift=1.0)
    # asymmetry at rounding level is accepted
    s = spd(rng, 3)
    s[0, 1] += 1e-15
    KronProduct([s]).eigh()
    # a complex diagonal entry off the real axis is asymmetry too
    c = spd(rng, 3).astype(np.complex128)
    c[1, 1] += 1e-3j
    with pytest.raises(ValueError, match=r"factors\[0\] is not"):
        KronProduct([c]).eigh()


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128", "int64", "bool"])
def test_factor_eigh_is_scipys(dtype):
    """Each factor's eigendecomposition is scipy.linalg.eigh's, bit for bit, in the dtype
    LAPACK computes it in (integers and bools as scipy converts them)."""
    rng = np.random.default_rng(13)
    a = rng.integers(-3, 4, (5, 5)) if dtype in ("int64", "bool") else rand(rng, (5, 5), dtype)
    a = (a + a.conj().T).astype(dtype)
    (w,), (q,) = (KronProduct([a]).eigh()[0].factors, KronProduct([a]).eigh()[1].factors)
    want_w, want_q = scipy.linalg.eigh(a)
    assert_identical(w, want_w)
    assert_identical(q, want_q)


def test_shifted_eigenvalues_follow_the_shift():
    """An operator keeps the eigenvalues of the last shift it was asked for: other
    shifts, and a complex shift equal to a real one, must not reuse them."""
    rng = np.random.default_rng(14)
    k1, k2 = spd(rng, 4), spd(rng, 3)
    b = rng.standard_normal(12)
    op = KronProduct([k1, k2])
    for shift in (0.1, 0.5, 0.1, 0.5 + 0j, 0.5, 1, 1.0):
        fresh = KronProduct([k1, k2])
        assert_identical(op.solve(b, shift=shift), fresh.solve(b, shift=shift))
        assert op.slogdet(shift=shift) == fresh.slogdet(shift=shift)
        assert op.logdet(shift=shift) == fresh.logdet(shift=shift)
    assert op.solve(b, shift=0.5 + 0j).dtype == np.complex128
    assert op.solve(b, shift=0.5).dtype == np.float64


def test_kron_vector_extremes_with_signs():
    v = KronVector([np.array([-2.0, 1.0, 3.0]), np.array([-1.0, 0.5]), np.array([4.0, -0.5])])
    full = v.toarray()
    assert_identical(full, np.kron(np.kron(v.factors[0], v.factors[1]), v.factors[2]))
    assert (v.min(), v.max()) == (full.min(), full.max())
    assert v.sum() == pytest.approx(full.sum())
    s = KronVector([np.array([1, 5]), np.array([0.5, -2.0, 3.0])], kind="sum")
    assert_identical(np.asarray(s), np.add.outer([1, 5], [0.5, -2.0, 3.0]).ravel())
    assert (s.min(), s.max(), s.sum()) == (-1.0, 8.0, pytest.approx(s.toarray().sum()))
    with pytest.raises(ValueError, match="kind"):
        KronVector([np.ones(2)], kind="other")
    with pytest.raises(ValueError, match=r"factors\[0\] must be 1-D"):
        KronVector([np.ones((2, 2))])
    with pytest.raises(TypeError, match="real"):
        KronVector([np.ones(2) * 1j]).min()


@pytest.mark.parametrize("signs", [(1, 1), (-1, 1), (-1, -1)])
def test_slogdet_and_logdet(signs):
    rng = np.random.default_rng(10)
    a = rand(rng, (3, 3), "float64") + 3 * np.eye(3)
    b = rand(rng, (2, 2), "float64") + 3 * np.eye(2)
    # flip determinant signs by swapping rows
    if signs[0] < 0:
        a = a[[1, 0, 2]]
    if signs[1] < 0:
        b = b[[1, 0]]
    op = KronProduct([a, b])
    d = np.kron(a, b)
    sign, logabs = op.slogdet()
    want_sign, want_logabs = np.linalg.slogdet(d)
    assert sign == want_sign
    assert logabs == pytest.approx(want_logabs, rel=1e-12)
    if want_sign > 0:
        assert op.logdet() == pytest.approx(want_logabs, rel=1e-12)
    else:
        assert np.isnan(op.logdet())


def test_logdet_singular_and_complex():
    op = KronProduct([np.ones((2, 2)), np.eye(3)])
    assert op.slogdet() == (0.0, -np.inf)
    assert op.logdet() == -np.inf
    rng = np.random.default_rng(11)
    a, b = rand(rng, (2, 2), "complex128"), rand(rng, (3, 3), "complex128")
    sign, logabs = KronProduct([a, b]).slogdet()
    want_sign, want_logabs = np.linalg.slogdet(np.kron(a, b))
    assert sign == pytest.approx(want_sign, rel=1e-12)
    assert logabs == pytest.approx(want_logabs, rel=1e-12)
    assert KronProduct([a, b]).logdet() == pytest.approx(np.log(want_sign) + want_logabs)


@pytest.mark.parametrize("k", [None, 3])
def test_gaussian_process_shift(k):
    """solve(b, shift) and logdet(shift) for K1 ⊗ K2 + σ² I against dense Cholesky."""
    x1, x2 = np.linspace(0, 1, 7), np.linspace(0, 2, 5)
    k1 = np.exp(-0.5 * np.subtract.outer(x1, x1) ** 2 / 0.3 ** 2)
    k2 = np.exp(-0.5 * np.subtract.outer(x2, x2) ** 2 / 0.5 ** 2)
    noise = 0.1
    op = KronProduct([k1, k2])
    full = np.kron(k1, k2) + noise * np.eye(35)
    rng = np.random.default_rng(12)
    b = rng.standard_normal((35,) if k is None else (35, k))
    chol = scipy.linalg.cho_factor(full)
    assert_solve_close(op.solve(b, shift=noise), full, b)
    np.testing.assert_allclose(op.solve(b, shift=noise), scipy.linalg.cho_solve(chol, b),
                               rtol=1e-9, atol=1e-9)
    assert op.logdet(shift=noise) == pytest.approx(2 * np.log(np.diag(chol[0])).sum(),
                                                   rel=1e-10, abs=1e-10)
    assert op.slogdet(shift=noise)[0] == 1.0
    # a shift that makes the matrix indefinite: sign from the eigenvalues
    lo = np.linalg.eigvalsh(np.kron(k1, k2))
    shift = -(lo[-1] + lo[-2]) / 2
    sign, logabs = op.slogdet(shift=shift)
    assert (sign, logabs) == (pytest.approx(np.linalg.slogdet(full - (noise - shift) * np.eye(35))[0]),
                              pytest.approx(np.linalg.slogdet(full - (noise - shift) * np.eye(35))[1]))


# --- KronSum ------------------------------------------------------------------------

def sum_factors(rng, dtype):
    return [rand(rng, (3, 3), dtype), sp.csr_array(rand(rng, (4, 4), dtype)),
            rand(rng, (2, 2), dtype)]


@pytest.mark.parametrize("dtype", FLOATS + ["int32"])
@pytest.mark.parametrize("k", [None, 3])
def test_sum_products_against_textbook_dense(dtype, k):
    rng = np.random.default_rng(13)
    factors = sum_factors(rng, dtype)
    op = KronSum(factors)
    d = textbook_kronsum(factors).astype(dtype)
    assert op.shape == (24, 24) and op.dtype == np.dtype(dtype)
    x = rand(rng, (24,) if k is None else (24, k), dtype)
    inner = sum(f.shape[0] for f in factors)
    assert_product_close(op @ x, d, x, inner)
    assert_product_close(op.H @ x, d.conj().T, x, inner)
    assert_product_close(op.T @ x, d.T, x, inner)
    assert_product_close(op.rmatvec(x) if k is None else op.rmatmat(x), d.conj().T, x, inner)


def test_sum_forms_and_diagonal():
    rng = np.random.default_rng(14)
    factors = [rand(rng, (3, 3), "float64"), sp.random_array((4, 4), density=0.5, rng=rng),
               rand(rng, (2, 2), "float32")]
    op = KronSum(factors)
    want = textbook_kronsum(factors)
    assert_identical(op.todense(), want)
    # scipy's kronsum(A, B) is B ⊕ A in the textbook convention
    chained = sp.kronsum(factors[2], sp.kronsum(factors[1], factors[0]), format="csr")
    for fmt in ["csr", "csc", "coo"]:
        got = op.tosparse(fmt)
        assert got.format == fmt and got.dtype == op.dtype
        np.testing.assert_array_equal(got.toarray(), chained.toarray())
        np.testing.assert_array_equal(got.toarray(), want)
    assert_identical(op.diagonal(), np.diag(want).copy())
    assert op.trace() == pytest.approx(np.trace(want), rel=1e-13)


def test_sum_with_a_product_factor():
    rng = np.random.default_rng(15)
    p = KronProduct([spd(rng, 2), spd(rng, 3)])
    a = spd(rng, 4)
    op = KronSum([a, p])
    d = np.kron(a, np.eye(6)) + np.kron(np.eye(4), p.todense())
    x = rng.standard_normal(24)
    assert_product_close(op @ x, d, x, 10)
    np.testing.assert_allclose(op.todense(), d, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(op.tosparse().toarray(), d, rtol=1e-14, atol=1e-14)
    w, q = op.eigh()
    assert len(q.factors) == 3
    np.testing.assert_allclose(np.sort(w.toarray()), np.linalg.eigvalsh(d), rtol=1e-12)
    assert_solve_close(op.solve(x), d, x)
    np.testing.assert_allclose(op.expm(0.2).todense(), scipy.linalg.expm(0.2 * d), rtol=1e-11,
                               atol=1e-13)


@pytest.mark.parametrize("k", [None, 2])
def test_sum_eigh_solve_logdet(k):
    rng = np.random.default_rng(16)
    factors = [spd(rng, 3), spd(rng, 4), sp.csr_array(spd(rng, 2))]
    op = KronSum(factors)
    d = textbook_kronsum(factors)
    w, q = op.eigh()
    assert w.kind == "sum"
    qd = q.todense()
    np.testing.assert_allclose((qd * w.toarray()) @ qd.T, d, atol=1e-12)
    b = rng.standard_normal((24,) if k is None else (24, k))
    assert_solve_close(op.solve(b), d, b)
    assert_solve_close(op.solve(b, shift=0.7), d + 0.7 * np.eye(24), b)
    assert op.logdet() == pytest.approx(np.linalg.slogdet(d)[1], rel=1e-12)
    assert op.logdet(shift=0.7) == pytest.approx(np.linalg.slogdet(d + 0.7 * np.eye(24))[1],
                                                 rel=1e-12)


def path_laplacian(n):
    return sp.diags_array([-np.ones(n - 1), np.r_[1, 2 * np.ones(n - 2), 1], -np.ones(n - 1)],
                          offsets=[-1, 0, 1]).tocsr()


def test_grid_laplacian_is_singular_and_diffuses():
    lap = KronSum([path_laplacian(5), path_laplacian(4)])
    d = lap.todense()
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        lap.solve(np.ones(20))
    x = np.zeros(20)
    x[7] = 1.0
    heat = lap.expm(-0.3) @ x
    np.testing.assert_allclose(heat, scipy.linalg.expm(-0.3 * d) @ x, rtol=1e-12, atol=1e-14)
    assert heat.sum() == pytest.approx(1.0)  # heat is conserved on a graph
    scaled = -0.3 * lap
    np.testing.assert_allclose(expm_multiply(scaled, x, traceA=scaled.trace()), heat,
                               rtol=1e-8, atol=1e-12)


def test_sum_rejects_non_square_and_scales():
    rng = np.random.default_rng(17)
    with pytest.raises(ValueError, match=r"KronSum needs square factors; factors\[1\] has shape"):
        KronSum([np.eye(2), rand(rng, (2, 3), "float64")])
    with pytest.raises(ValueError, match="square"):
        KronSum([np.eye(2), KronProduct([np.ones((2, 3))])])
    factors = sum_factors(rng, "float64")
    op = KronSum(factors)
    x = rng.standard_normal(24)
    for scaled, c in [(3 * op, 3.0), (-op, -1.0), (op / 2, 0.5)]:
        assert isinstance(scaled, KronSum)
        np.testing.assert_allclose(scaled @ x, c * (op @ x), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="Hermitian"):
        op.eigh()


def test_sum_of_one_factor():
    a = np.arange(9.0).reshape(3, 3)
    op = KronSum([a])
    assert_identical(op.todense(), a)
    np.testing.assert_array_equal(op @ np.ones(3), a @ np.ones(3))
    np.testing.assert_array_equal(op.tosparse().toarray(), a)


# --- scipy's solvers ----------------------------------------------------------------

def test_scipy_iterative_solvers_take_the_operators():
    rng = np.random.default_rng(18)
    factors = [spd(rng, 5), spd(rng, 4), spd(rng, 3)]
    op = KronProduct(factors)
    d = dense_kron(factors)
    b = rng.standard_normal(60)
    x, info = cg(op, b, rtol=1e-12, maxiter=500)
    assert info == 0
    assert_solve_close(x, d, b)
    x, info = gmres(op, b, rtol=1e-12, restart=60)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(d, b), rtol=1e-8, atol=1e-8)
    rect = KronProduct([rand(rng, (6, 3), "float64"), rand(rng, (5, 4), "float64")])
    rb = rng.standard_normal(30)
    got = lsqr(rect, rb, atol=1e-14, btol=1e-14, iter_lim=500)[0]
    np.testing.assert_allclose(got, np.linalg.lstsq(rect.todense(), rb, rcond=None)[0],
                               rtol=1e-8, atol=1e-8)
    vals = eigsh(op, k=4, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(vals), np.linalg.eigvalsh(d)[-4:], rtol=1e-10)
    lap = KronSum([path_laplacian(6), path_laplacian(5)])
    vals = eigsh(lap, k=3, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(vals), np.sort(lap.eigh().eigenvalues.toarray())[-3:],
                               rtol=1e-10)


# --- bad input --------------------------------------------------------------------

@pytest.mark.parametrize("cls", [KronProduct, KronSum])
def test_bad_factors(cls):
    with pytest.raises(TypeError, match="factors must be a list or tuple"):
        cls(np.eye(3))
    with pytest.raises(ValueError, match="at least one factor"):
        cls([])
    with pytest.raises(ValueError, match=r"factors\[1\] must be 2-D, got shape \(3,\)"):
        cls([np.eye(2), np.ones(3)])
    with pytest.raises(TypeError, match=r"factors\[0\] has dtype <U1"):
        cls([np.array([["a"]])])
    with pytest.raises(TypeError, match=r"factors\[1\] is a .*LinearOperator"):
        cls([np.eye(2), aslinearoperator(np.eye(2))])
    with pytest.raises(TypeError, match=r"factors\[0\] is a KronSum"):
        cls([KronSum([np.eye(2)])])


def test_bad_vectors_name_the_problem():
    op = KronProduct([np.eye(2) * 2, np.ones((3, 4))])
    with pytest.raises(ValueError, match="dimension mismatch"):
        op @ np.ones(6)
    with pytest.raises(ValueError, match="dimension mismatch"):
        op.rmatvec(np.ones(8))
    with pytest.raises(TypeError, match="x has dtype"):
        op @ np.array(["a"] * 8)


# --- property -------------------------------------------------------------------------

@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=4),
       st.integers(0, 2**32 - 1))
def test_product_and_sum_match_dense(shapes, seed):
    rng = np.random.default_rng(seed)
    factors = [rng.standard_normal(s) for s in shapes]
    op = KronProduct(factors)
    d = dense_kron(factors)
    x = rng.standard_normal(d.shape[1])
    assert_product_close(op @ x, d, x, sum(n for _, n in shapes))
    squares = [rng.standard_normal((m, m)) for m, _ in shapes]
    s = KronSum(squares)
    sd = textbook_kronsum(squares)
    xs = rng.standard_normal(sd.shape[1])
    assert_product_close(s @ xs, sd, xs, sum(m for m, _ in shapes))
