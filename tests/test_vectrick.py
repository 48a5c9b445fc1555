"""kron_matvec against the dense product ``kron(*factors) @ x``.

Factor shapes are distinct and rectangular wherever possible, so that a
swapped axis or a transposed factor cannot give the right shape by accident.
The tolerance is scaled to the problem: ``c * eps * (|K| @ |x|)``, entry by
entry, with ``|K| = kron(|A1|, ..., |Ad|)`` and ``c`` growing with the
inner dimensions summed over.
"""
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, strategies as st

import kronjit
from helpers import assert_product_close, dense, dense_kron, rand
from kronjit.vectrick import plan as vplan
from kronjit.vectrick.plan import Factor
from kronjit.vectrick.product import PreparedProduct
from kronjit.study.references import shuffle_matvec


@pytest.fixture
def tuned(monkeypatch):
    """``tuned(name, value)`` sets a plan constant for one test; the layouts cached
    with it are forgotten before and after."""
    vplan.clear_cache()
    yield lambda name, value: monkeypatch.setattr(vplan, name, value)
    vplan.clear_cache()


def assert_matvec_close(got, factors, x, trans="N"):
    # the product formed in the result dtype (numpy would round a float32
    # kron before multiplying a float64 x)
    dtype = np.result_type(*[f.dtype for f in factors], np.asarray(x).dtype)
    inner = sum(dense(f).shape[1 if trans == "N" else 0] for f in factors)
    mats = [dense(f).astype(dtype) for f in factors]
    got, x = np.asarray(got), np.asarray(x)
    # a trailing identity is more columns, not a bigger matrix to form:
    # kron(K, I_p) @ x is K @ x.reshape(n, p k), row-major
    while (len(mats) > 1 and x.size and got.size and len(mats[-1])
           and np.array_equal(mats[-1], np.eye(len(mats[-1])))):
        p = len(mats.pop())
        x, got = x.reshape(x.shape[0] // p, -1), got.reshape(got.shape[0] // p, -1)
    k = dense_kron(mats)
    if trans == "T":
        k = k.T
    elif trans == "C":
        k = k.conj().T
    assert_product_close(got, k, x, inner)


# Each exercises a different route: fused small groups (through pre or post),
# BLAS on the first / middle / last axis, and mixtures of the two.
SHAPES = {
    "small": [(2, 3), (4, 5), (3, 2)],
    "small4": [(3, 4), (5, 3), (2, 2), (4, 3)],
    "many_tiny": [(2, 2)] * 9,
    "gemm_first": [(20, 18), (3, 4)],
    "gemm_last": [(3, 4), (19, 17)],
    "gemm_middle": [(2, 3), (18, 17), (3, 2)],
    "gemm_all": [(17, 21), (19, 20), (18, 17)],  # in axis order: rotated GEMMs for k = 1
    "mixed": [(5, 4), (17, 20), (2, 3), (4, 4)],
    "one": [(6, 7)],
    "wide": [(1, 6), (7, 1), (2, 5)],
}
DTYPES = ["float32", "float64", "complex64", "complex128"]


@pytest.mark.parametrize("k", [None, 1, 3, 40])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SHAPES))
def test_against_dense_product(case, dtype, k):
    rng = np.random.default_rng(abs(hash((case, dtype, k))) % 2**32)
    factors = [rand(rng, s, dtype) for s in SHAPES[case]]
    n = math.prod(s[1] for s in SHAPES[case])
    x = rand(rng, (n,) if k is None else (n, k), dtype)
    assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)


@pytest.mark.parametrize("trans", ["T", "C", "H", 1, 2])
@pytest.mark.parametrize("case", ["small4", "mixed", "gemm_middle"])
def test_transposed_products(case, trans):
    rng = np.random.default_rng(7)
    factors = [rand(rng, s, "complex128") for s in SHAPES[case]]
    m = math.prod(s[0] for s in SHAPES[case])
    x = rand(rng, (m, 3), "complex128")
    named = {"H": "C", 1: "T", 2: "C"}.get(trans, trans)
    assert_matvec_close(kronjit.kron_matvec(factors, x, trans=trans), factors, x, named)


def test_adjoint_identity():
    rng = np.random.default_rng(8)
    factors = [rand(rng, s, "complex128") for s in [(3, 4), (18, 17), (5, 2)]]
    x = rand(rng, 4 * 17 * 2, "complex128")
    y = rand(rng, 3 * 18 * 5, "complex128")
    lhs = np.vdot(y, kronjit.kron_matvec(factors, x))
    rhs = np.vdot(kronjit.kron_matvec(factors, y, trans="C"), x)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs) * 100


@pytest.mark.parametrize("dtypes", [("float32", "float64"), ("float32", "complex64"),
                                    ("int32", "float32"), ("int64", "int8"), ("complex64", "float64"),
                                    ("bool", "bool"), ("bool", "int16"), ("uint8", "uint8")])
def test_mixed_dtypes_promote_like_numpy(dtypes):
    fdt, xdt = dtypes
    rng = np.random.default_rng(9)
    factors = [rand(rng, (3, 2), fdt), rand(rng, (2, 4), "float32" if fdt == "complex64" else fdt)]
    x = rand(rng, (8, 2), xdt)
    got = kronjit.kron_matvec(factors, x)
    want = dense_kron(factors) @ x
    assert got.dtype == want.dtype
    if want.dtype.kind in "biu":
        assert np.array_equal(got, want)  # integer arithmetic is exact (wrapping as numpy's)
    else:
        assert_matvec_close(got, factors, x)


def test_integer_wraparound_matches_numpy():
    factors = [np.full((2, 2), 100, np.int8), np.full((3, 3), 7, np.int8)]
    x = np.arange(6, dtype=np.int8)
    assert np.array_equal(kronjit.kron_matvec(factors, x), dense_kron(factors) @ x)


def test_float16_and_longdouble():
    rng = np.random.default_rng(10)
    for dtype in (np.float16, np.longdouble):
        middle = rand(rng, (2, 3), dtype) * (rng.random((2, 3)) < 0.5)
        if dtype == np.longdouble:  # (scipy.sparse has no float16)
            middle = sp.csr_array(middle)
        factors = [rand(rng, (3, 4), dtype), middle, rand(rng, (20, 18), dtype)]
        x = rand(rng, 4 * 3 * 18, dtype)
        got = kronjit.kron_matvec(factors, x)
        want = dense_kron(factors).astype(np.float64) @ x.astype(np.float64)
        assert got.dtype == dtype
        tol = 1e-2 if dtype == np.float16 else 1e-12
        assert np.allclose(got.astype(np.float64), want, rtol=tol, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dia"])
@pytest.mark.parametrize("array", [True, False])
def test_sparse_factors(fmt, array):
    rng = np.random.default_rng(11)
    def make(shape, density):
        s = sp.random_array(shape, density=density, format=fmt, rng=rng)
        return s if array else sp.csr_matrix(s).asformat(fmt)
    s1 = make((20, 30), 0.2)
    s2 = make((4, 3), 0.5)
    factors = [s1, rand(rng, (2, 5), "float64"), s2]
    x = rand(rng, (30 * 5 * 3, 4), "float64")
    assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)
    y = rand(rng, (20 * 2 * 4, 4), "float64")
    assert_matvec_close(kronjit.kron_matvec(factors, y, trans="T"), factors, y, "T")


@pytest.mark.parametrize("fmt", ["coo", "csr"])
def test_sparse_factor_with_duplicates_and_complex(fmt):
    rows, cols = np.array([0, 0, 2, 1]), np.array([1, 1, 0, 2])
    s = sp.coo_array((np.array([1 + 1j, 2, 3j, -1]), (rows, cols)), shape=(3, 3))
    if fmt == "csr":  # a CSR holding the duplicates as given
        s = sp.csr_array((s.data, s.col, np.array([0, 2, 3, 4])), shape=(3, 3))
    snapshot = [a.copy() for a in ((s.data, s.row, s.col) if fmt == "coo"
                                   else (s.data, s.indices, s.indptr))]
    rng = np.random.default_rng(12)
    factors = [rand(rng, (2, 4), "float32"), s]
    x = rand(rng, 12, "float64")
    got = kronjit.kron_matvec(factors, x)
    assert got.dtype == np.complex128
    assert_matvec_close(got, factors, x)
    now = (s.data, s.row, s.col) if fmt == "coo" else (s.data, s.indices, s.indptr)
    assert all(np.array_equal(a, b) for a, b in zip(now, snapshot))  # the caller's matrix untouched


def test_sparse_identity_with_duplicate_halves_is_skipped():
    half = np.full(4, 0.5)
    ident = sp.coo_array((np.r_[half, half], (np.r_[0:4, 0:4], np.r_[0:4, 0:4])), shape=(4, 4))
    x = np.arange(8.0)
    x[3] = np.inf
    got = kronjit.kron_matvec([np.ones((1, 2)), ident], x)
    assert np.isinf(got[3]) and np.isfinite(np.delete(got, 3)).all()
    assert ident.nnz == 8  # not summed in place


@pytest.mark.parametrize("identity", [lambda n: np.eye(n), lambda n: sp.identity(n, format="csr"),
                                      lambda n: sp.eye_array(n, format="dia")])
def test_identity_factors_are_skipped(identity):
    rng = np.random.default_rng(13)
    a, b = rand(rng, (3, 4), "float64"), rand(rng, (5, 2), "float64")
    factors = [a, identity(6), b]
    x = rand(rng, 4 * 6 * 2, "float64")
    assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)
    # Skipped, not multiplied: an infinity stays where the identity puts it,
    # where the dense product would spread 0 * inf = nan over the whole block.
    x3 = x.reshape(4, 6, 2).copy()
    x3[:, 2, :] = np.inf
    got = kronjit.kron_matvec(factors, x3.ravel()).reshape(3, 6, 5)
    assert np.isfinite(np.delete(got, 2, axis=1)).all()
    assert not np.isfinite(got[:, 2, :]).all()


def test_all_identity_copies_x():
    x = np.arange(12.0)
    got = kronjit.kron_matvec([np.eye(3), sp.identity(4)], x)
    assert np.array_equal(got, x) and not np.shares_memory(got, x)


def test_factor_order_shrinks_first():
    # The (2 x 40) factor shrinks the tensor 20-fold: applied first, every
    # later step works on 20x less; the (50 x 5) one grows it, so it goes last.
    grow = Factor("dense", 50, 5)
    shrink = Factor("dense", 2, 40)
    square = Factor("dense", 30, 30)
    steps = vplan.group_factors([grow, square, shrink], 8, True, 1 << 30)
    assert [s.factors[0] for s in steps] == [shrink, square, grow]


@pytest.mark.parametrize("big", [False, True])
def test_small_factors_are_grouped_into_few_passes(big):
    """Groups are as large as the tile allows: TILE_BYTES / (LANE * itemsize) rows
    on small tensors, TILE_BYTES / (GROUP_LANE * itemsize) on big ones; they are
    formed from the last axis back, so that the last group is a full one."""
    small = [Factor("small", 4, 4) for _ in range(10)]
    tensor_bytes = vplan.GROUP_LANE_MIN_BYTES if big else vplan.GROUP_LANE_MIN_BYTES - 1
    steps = vplan.group_factors(small, 8, True, tensor_bytes)
    per_group = math.floor(math.log(vplan.TILE_BYTES // ((vplan.GROUP_LANE if big else
                                                          vplan.LANE) * 8), 4))
    assert per_group >= 2
    assert [len(s.axes) for s in steps][1:] == [per_group] * (len(steps) - 1)
    assert len(steps) == math.ceil(10 / per_group)
    assert [a for s in steps for a in s.axes] == list(range(10))


def test_two_mid_size_factors_share_a_pass():
    mid = [Factor("small", 32, 32) for _ in range(4)]
    eye = Factor("identity", 16, 16)
    steps = vplan.group_factors(mid + [eye], 8, True, 1 << 30)
    assert [s.axes for s in steps] == [(0, 1), (2, 3)]


def test_identities_at_the_ends_do_not_join_a_group():
    # an identity at either end (the k axis) would only shorten the post run the kernel vectorises over
    f = Factor("small", 4, 4)
    eye = Factor("identity", 32, 32)
    for factors in ([f, eye], [eye, f], [eye, f, eye]):
        (step,) = vplan.group_factors(factors, 8, True, 1 << 30)
        assert step.factors == (f,)


@pytest.mark.parametrize("extra", [0, 37])
def test_long_lanes_from_post(extra):
    """Wide post runs get tiles of more than LANE lanes; the result is unchanged."""
    k = 1024 * kronjit._runtime.max_threads() + extra  # enough tiles for every thread
    rng = np.random.default_rng(30)
    factors = [rand(rng, (3, 4), "float64"), rand(rng, (5, 3), "float64")]
    x = rand(rng, (12, k), "float64")
    (step,) = PreparedProduct(factors).plan(np.dtype(np.float64), k).steps
    assert step.lane > vplan.LANE
    assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)


@pytest.mark.parametrize("gather_lane", [8, 128])
@pytest.mark.parametrize("post", [1, 2, 5, 16, 31])
@pytest.mark.parametrize("dtype", DTYPES)
def test_short_post_gathered_from_pre(tuned, dtype, post, gather_lane):
    """A group whose post is too short to vectorise gathers whole post runs of
    several positions of pre into its tiles: 37 positions (not a multiple of the
    eight moved together) of pre, one or several tiles, results unchanged."""
    tuned("GATHER_LANE", gather_lane)
    rng = np.random.default_rng(post)
    # (the 37 x 39 factor shrinks the tensor, so BLAS applies it first)
    factors = [rand(rng, (37, 39), dtype), rand(rng, (3, 4), dtype), rand(rng, (5, 2), dtype)]
    if post > 1:
        factors.append(np.eye(post, dtype=dtype))
    x = rand(rng, (39 * 8 * post,), dtype)
    steps = PreparedProduct(factors).plan(np.dtype(dtype), 1).steps
    small = [s for s in steps if isinstance(s, vplan.SmallGroup)]
    assert [(list(s.fn), s.pre, s.post, s.by_post) for s in small] == [([4, 2], 37, post, False)]
    assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)


@pytest.mark.parametrize("dtype", ["int8", "int32", "float32", "float64", "complex64",
                                   "complex128"])
def test_transpose8_moves_one_block_and_nothing_else(dtype):
    """The tile gathers' 8 x 8 transpose (registers for real and integer elements, a
    loop for complex ones), compiled and as Python, at offsets and strides that are not
    multiples of the block: exactly the transposed block, every other element kept."""
    from numba import njit

    from kronjit.vectrick.kernels import transpose8

    @njit
    def compiled(src, s, ss, dst, d, ds):
        transpose8(src, s, ss, dst, d, ds)

    rng = np.random.default_rng(8)
    src = rand(rng, (200,), dtype)
    s, ss, d, ds = 3, 21, 5, 13
    want = np.zeros(120, dtype)
    for r in range(8):
        want[d + r * ds:d + r * ds + 8] = src[s + r:s + r + 21 * 8:21]
    for run in (compiled, transpose8):
        dst = np.zeros(120, dtype)
        run(src, np.uint64(s), np.uint64(ss), dst, np.uint64(d), np.uint64(ds))
        assert np.array_equal(dst, want)


@pytest.mark.parametrize("shape,count,k,want", [
    (8, 4, 1, [[8], [8, 8, 8]]),  # gathered lanes: up to 512 rows of float64 in one group
    (8, 4, 32, [[8, 8], [8, 8]]),  # lanes from post: 256 rows (GROUP_LANE lanes)
    (2, 10, 1, [[2, 2], [2] * 8]),  # factors under GATHERED_MIN_FACTOR: 256 rows
])
def test_gathered_group_rows_capped_by_its_lanes(tuned, shape, count, k, want):
    """On a tensor of GROUP_LANE_MIN_BYTES or more, the group on the last axes takes
    as many rows as its gathered lanes (GATHER_LANE) leave room for when its post is
    short and its factors are 8 or wider; other groups as many as GROUP_LANE lanes do."""
    tuned("GROUP_LANE_MIN_BYTES", 0)
    rng = np.random.default_rng(45)
    factors = [rand(rng, (shape, shape), "float64") for _ in range(count)]
    x = rand(rng, (shape ** count, k) if k > 1 else (shape ** count,), "float64")
    steps = PreparedProduct(factors).plan(np.dtype(np.float64), k).steps
    assert sorted(list(s.fn) for s in steps) == sorted(want)
    assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)


@pytest.mark.parametrize("dtype", DTYPES + ["int64"])
def test_all_large_factors_rotate_through_plain_gemms(dtype):
    """Three or more large factors that go in axis order are each one GEMM on the
    leading axis with the output axis moved last; any other order or k > 1 keeps
    the batched GEMM in the middle."""
    rng = np.random.default_rng(33)
    factors = [rand(rng, s, dtype) for s in SHAPES["gemm_all"]]
    assert step_kinds(factors) == ["RotatedGemm"] * 3
    assert step_kinds(factors, 2) == ["Gemm"] * 3
    assert step_kinds(factors[::-1]) == ["Gemm"] * 3  # keys out of axis order
    assert step_kinds(factors[:2]) == ["Gemm"] * 2
    x = rand(rng, (21 * 20 * 17,), dtype)
    assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)
    y = rand(rng, (17 * 19 * 18,), dtype)
    assert_matvec_close(kronjit.kron_matvec(factors, y, trans="C"), factors, y, trans="C")


def step_kinds(factors, k=1):
    product = PreparedProduct(factors)
    return [type(s).__name__ for s in product.plan(product.dtype, k).steps]


def test_mid_size_factors_are_fused_only_on_big_tensors():
    rng = np.random.default_rng(31)
    mid = [rand(rng, (24, 20), "float64"), rand(rng, (17, 32), "float64")]
    assert step_kinds(mid) == ["Gemm", "Gemm"]  # 640 entries: BLAS
    big_k = -(-vplan.MID_FUSE_MIN_BYTES // (20 * 32 * 8))
    assert step_kinds(mid, big_k) == ["SmallGroup"]
    assert step_kinds([rand(rng, (33, 4), "float64")] * 2, big_k) == ["Gemm", "Gemm"]


@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_mid_size_factors_fused(tuned, dtype, k):
    tuned("MID_FUSE_MIN_BYTES", 0)
    rng = np.random.default_rng(32)
    shapes = [(20, 18), (3, 2), (17, 32)]  # two fused groups, a dense check of 1020 x 1152
    factors = [rand(rng, s, dtype) for s in shapes]
    assert set(step_kinds(factors, k or 1)) == {"SmallGroup"}
    n = math.prod(s[1] for s in shapes)
    x = rand(rng, (n,) if k is None else (n, k), dtype)
    assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)


@pytest.mark.parametrize("post", [1, 64])  # tiles through pre (transposed) or post
@pytest.mark.parametrize("n", [3, 4, 7, 9])
def test_fused_rows_round_alike(post, n):
    """Rows 0-3 go through the four-row kernel, row 4 through the one-row one:
    with equal factor rows they must give bit-identical results."""
    rng = np.random.default_rng(n)
    f = rng.standard_normal((5, n))
    f[4] = f[0]
    g = rng.standard_normal((3, 3))
    x = rng.standard_normal(3 * n * post)
    y = kronjit.kron_matvec([g, f, np.eye(post)], x).reshape(3, 5, post)
    assert np.array_equal(y[:, 4], y[:, 0])
    assert not np.array_equal(y[:, 1], y[:, 0])


@pytest.mark.parametrize("layout", ["fortran", "strided", "negative", "readonly", "list"])
def test_input_layouts(layout):
    rng = np.random.default_rng(14)
    factors = [np.asfortranarray(rand(rng, (3, 4), "float64")), rand(rng, (5, 6), "float64")[:, ::-1],
               rand(rng, (18, 17), "float64").T]
    n = 4 * 6 * 18
    base = rand(rng, (2 * n, 6), "float64")
    x = {"fortran": np.asfortranarray(base[:n]), "strided": base[::2, ::3],
         "negative": base[n:0:-1, ::-1], "readonly": base[:n].copy(), "list": base[:n].tolist()}[layout]
    if layout == "readonly":
        x.flags.writeable = False
        for f in factors:
            f.flags.writeable = False
    got = kronjit.kron_matvec(factors, x)
    assert_matvec_close(got, factors, np.asarray(x))


def test_zero_sizes():
    rng = np.random.default_rng(15)
    a = rand(rng, (3, 0), "float64")
    got = kronjit.kron_matvec([a, rand(rng, (2, 2), "float64")], np.zeros(0))
    assert got.shape == (6,) and not got.any()
    got = kronjit.kron_matvec([rand(rng, (0, 3), "float64"), rand(rng, (2, 2), "float64")],
                              np.ones((6, 2)))
    assert got.shape == (0, 2)
    got = kronjit.kron_matvec([rand(rng, (3, 3), "float64")], np.ones((3, 0)))
    assert got.shape == (3, 0)


def test_out_receives_result_and_is_returned():
    rng = np.random.default_rng(16)
    factors = [rand(rng, s, "float64") for s in SHAPES["mixed"]]
    x = rand(rng, (4 * 20 * 3 * 4, 3), "float64")
    out = np.full((5 * 17 * 2 * 4, 3), np.nan)
    got = kronjit.kron_matvec(factors, x, out=out)
    assert got is out
    assert_matvec_close(out, factors, x)
    # and again into the same buffer: the work buffers kept from the last call serve
    x2 = rand(rng, x.shape, "float64")
    kronjit.kron_matvec(factors, x2, out=out)
    assert_matvec_close(out, factors, x2)


def test_repeated_calls_with_changing_shapes_and_dtypes():
    rng = np.random.default_rng(17)
    for shapes, dtype in [(SHAPES["small4"], "float64"), (SHAPES["many_tiny"], "complex128"),
                          (SHAPES["small"], "float32"), (SHAPES["small4"], "float64")]:
        factors = [rand(rng, s, dtype) for s in shapes]
        x = rand(rng, (math.prod(s[1] for s in shapes), 33), dtype)
        assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)


def test_one_product_serves_changing_operands():
    """A prepared product keeps what each operand signature (dtype, trailing shape,
    layout, transpose) needs: alternating signatures on one product must each get
    their own, and a full cache must start over without losing correctness."""
    rng = np.random.default_rng(18)
    factors = [rand(rng, (4, 3), "float64"), rand(rng, (5, 2), "float64")]
    product = PreparedProduct(factors)
    base, tall = rand(rng, (12, 4), "complex128"), rand(rng, (20, 2), "complex128")
    operands = [(base[::2, 0].real.copy(), "N"), (base[:6, :3].real, "N"), (base[::2, 0], "N"),
                (base[:6, 1].astype(np.float32), "N"), (tall[:, 0].real.copy(), "T"),
                (np.asfortranarray(tall), "C"), (base[::2, :1].real, "N"),
                (base[:6, 0].real.astype(np.int64), "N")]
    for _ in range(3):  # more signatures than MAX_PLANS: the cache is refilled
        for x, trans in operands:
            got = product.apply(x, trans=trans)
            assert_matvec_close(got, factors, x, trans=trans)
            assert got.dtype == np.result_type(np.float64, x.dtype)
    assert len(product._calls) <= PreparedProduct.MAX_PLANS
    with pytest.raises(ValueError, match="x has 5 rows"):
        product.apply(np.ones(5))


def bad_out_cases(shape, dtype):
    good = np.zeros(shape, dtype)
    return [
        ("list", [0.0], TypeError, "numpy.ndarray"),
        ("shape", np.zeros((shape[0] + 1,) + shape[1:], dtype), ValueError, "shape"),
        ("dtype", np.zeros(shape, np.float32), TypeError, "dtype"),
        ("layout", np.zeros(shape[::-1], dtype).T if len(shape) == 2 else
         np.zeros(2 * shape[0], dtype)[::2], ValueError, "C-contiguous"),
        ("readonly", np.frombuffer(good.tobytes(), dtype).reshape(shape), ValueError, "read-only"),
    ]


@pytest.mark.parametrize("k", [None, 3])
def test_bad_out_rejected_before_writing(k):
    rng = np.random.default_rng(18)
    factors = [rand(rng, s, "float64") for s in SHAPES["small"]]
    x = rand(rng, (30,) if k is None else (30, k), "float64")
    shape = (24,) if k is None else (24, k)
    for name, out, exc, words in bad_out_cases(shape, np.float64):
        before = np.array(out, copy=True) if isinstance(out, np.ndarray) else None
        with pytest.raises(exc, match=words):
            kronjit.kron_matvec(factors, x, out=out)
        if before is not None:
            assert np.array_equal(out, before), name


def test_out_overlapping_input_rejected():
    buf = np.arange(60.0)
    factors = [np.ones((2, 3)), np.ones((10, 10))]
    with pytest.raises(ValueError, match="overlaps"):
        kronjit.kron_matvec(factors, buf[:30], out=buf[20:40])
    a = np.ones((4, 4))
    with pytest.raises(ValueError, match="overlaps"):
        kronjit.kron_matvec([a], np.ones(4), out=a[0])


@pytest.mark.parametrize("factors, x, exc, words", [
    (np.ones((2, 2)), np.ones(2), TypeError, "factors must be a list or tuple"),
    ([], np.ones(1), ValueError, "at least one factor"),
    ([np.ones((2, 2)), np.ones(3)], np.ones(6), ValueError, r"factors\[1\] must be 2-D"),
    ([np.ones((2, 2, 2))], np.ones(2), ValueError, r"factors\[0\] must be 2-D"),
    ([np.ones((2, 2)), object()], np.ones(4), ValueError, r"factors\[1\] must be 2-D"),
    ([np.array([["a", "b"]])], np.ones(2), TypeError, r"factors\[0\] has dtype"),
    ([np.ones((2, 3)), np.ones((4, 5))], np.ones(20), ValueError, r"column counts \(3, 5\)"),
    ([np.ones((2, 3))], np.ones((3, 2, 2)), ValueError, "x must be 1-D"),
    ([np.ones((2, 3))], np.array(["a", "b", "c"]), TypeError, "x has dtype"),
    ([np.ones((2, 3))], sp.csr_array(np.ones((3, 1))), TypeError, "x must be a dense array"),
])
def test_bad_inputs(factors, x, exc, words):
    with pytest.raises(exc, match=words):
        kronjit.kron_matvec(factors, x)


def test_bad_trans():
    with pytest.raises(ValueError, match="trans must be"):
        kronjit.kron_matvec([np.ones((2, 2))], np.ones(2), trans="X")


def test_transposed_length_message():
    with pytest.raises(ValueError, match="row counts"):
        kronjit.kron_matvec([np.ones((2, 3))], np.ones(3), trans="T")


def test_result_too_large_for_memory():
    tall = np.ones((1 << 21, 1))
    with pytest.raises(MemoryError, match="kron_matvec"):
        kronjit.kron_matvec([tall, tall, tall], np.ones(1))


@given(shapes=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=5),
       k=st.sampled_from([None, 1, 2, 33]), dtype=st.sampled_from(["float64", "complex128", "int64"]),
       seed=st.integers(0, 2**16))
def test_property_against_dense(shapes, k, dtype, seed):
    rng = np.random.default_rng(seed)
    factors = [rand(rng, s, dtype) for s in shapes]
    n = math.prod(s[1] for s in shapes)
    x = rand(rng, (n,) if k is None else (n, k), dtype)
    got = kronjit.kron_matvec(factors, x)
    if np.dtype(dtype).kind == "i":
        assert np.array_equal(got, dense_kron(factors) @ x) and got.dtype == np.int64
    else:
        assert_matvec_close(got, factors, x)


@pytest.mark.parametrize("shapes", [[(8, 8)] * 4, [(40, 40), (3, 5)], [(30, 30)] * 3])
def test_layouts_are_shared_values_are_not(shapes):
    """Products of the same shapes share one cached layout, each bound to its own values
    (fused groups, BLAS steps, rotated GEMMs, sparse factors)."""
    rng = np.random.default_rng(40)
    x = rng.standard_normal(math.prod(s[1] for s in shapes))
    vplan.clear_cache()
    for sparse_last in (False, True, False):
        factors = [rng.standard_normal(s) for s in shapes]
        if sparse_last:
            factors[-1] = sp.random(*shapes[-1], density=0.5, random_state=rng, format="csr")
        want = shuffle_matvec([dense(f) for f in factors], x)  # K is not formed: 27000^2
        np.testing.assert_allclose(kronjit.kron_matvec(factors, x), want, rtol=1e-10,
                                   atol=1e-10 * np.abs(want).max())
    assert vplan.cache_info().hits >= 1


@pytest.mark.parametrize("dtype,shapes", [
    *[(dtype, [(3, 5), (6, 2), (7, 4)]) for dtype in DTYPES + ["int64"]],
    *[(dtype, [(5, 5)] * 3) for dtype in DTYPES],
    # groups in fours run the quads twin: the same code, one dtype (compile time)
    ("float64", [(4, 4)] * 3), ("float64", [(16, 16)] * 2)])
def test_single_lane_tile_rounds_like_the_lanes(dtype, shapes):
    """A whole tensor in one tile (k = 1) leaves one lane on its last axis, which is
    applied row by row (F's rows vectorised); the sums are the ones the lane loops
    make: the same product with two columns gives each column bit for bit."""
    rng = np.random.default_rng(41)
    factors = [rand(rng, s, dtype) for s in shapes]
    x = rand(rng, (math.prod(n for _, n in shapes),), dtype)
    (step,) = PreparedProduct(factors).plan(np.dtype(dtype), 1).steps
    assert (step.pre, step.post) == (1, 1)
    got = kronjit.kron_matvec(factors, x)
    assert_matvec_close(got, factors, x)
    both = kronjit.kron_matvec(factors, np.stack([x, 2 * x], axis=1))
    assert np.array_equal(got, both[:, 0]) and np.array_equal(2 * got, both[:, 1])


@pytest.mark.parametrize("dtype", ["float64", "complex64"])
@pytest.mark.parametrize("shapes,quads", [([(8, 8)] * 3, True), ([(4, 12), (16, 4)], True),
                                          ([(8, 8), (6, 8)], False), ([(4, 3), (8, 4)], False)])
def test_groups_in_fours_run_the_quads_twin(dtype, shapes, quads):
    """A fused group whose factors all have rows in fours and four columns or more runs
    small_group_quads (compiled without the remainder rows' code), others small_group;
    on a group both can run, the two agree bit for bit."""
    rng = np.random.default_rng(46)
    factors = [rand(rng, s, dtype) for s in shapes]
    x = rand(rng, (math.prod(n for _, n in shapes), 3), dtype)
    plan = PreparedProduct(factors).plan(np.dtype(dtype), 3)
    (step,) = plan.steps
    assert step.quads == quads
    got = kronjit.kron_matvec(factors, x)
    assert_matvec_close(got, factors, x)
    general = np.empty(got.size, got.dtype)
    step._replace(quads=False).run(np.ascontiguousarray(x).reshape(-1), general)
    assert np.array_equal(general.reshape(got.shape), got)


@pytest.fixture
def call_cache():
    """The call cache emptied before and after a test; returns its counters' reader."""
    vplan.clear_cache()
    yield vplan.cache_info
    vplan.clear_cache()


def test_call_cache_hits_and_misses(call_cache):
    """Calls on operands of one signature reuse one call layout, each bound to its own
    values; a change of x's dtype, column count or layout, of the transpose or of an
    identity factor is a new entry."""
    rng = np.random.default_rng(42)
    shapes = [(3, 4), (2, 2), (2, 6)]
    x = rng.standard_normal(4 * 2 * 6)
    for _ in range(3):
        factors = [rng.standard_normal(s) for s in shapes]
        assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)
    assert (call_cache().misses, call_cache().hits) == (1, 2)
    identity = [factors[0], np.eye(2), factors[2]]
    news = [(factors, x.astype(np.float32), "N"), (factors, np.stack([x, x], 1), "N"),
            (factors, np.stack([x, x], 1)[:, 0], "N"),  # not contiguous
            (factors, rng.standard_normal(3 * 2 * 2), "T"), (identity, x, "N")]
    for fs, v, trans in news:
        assert_matvec_close(kronjit.kron_matvec(fs, v, trans=trans), fs, v, trans=trans)
    assert (call_cache().misses, call_cache().hits) == (1 + len(news), 2)
    negated = [factors[0], -np.eye(2), factors[2]]  # dense, like the first calls'
    assert_matvec_close(kronjit.kron_matvec(negated, x), negated, x)
    assert (call_cache().misses, call_cache().hits) == (1 + len(news), 3)


def test_call_cache_evicts_least_recently_used(call_cache):
    """The cache holds CALL_CACHE_SIZE signatures; the least recently used goes first."""
    rng = np.random.default_rng(43)
    size = vplan.CALL_CACHE_SIZE
    problems = [([rng.standard_normal((2, n))], rng.standard_normal(n))
                for n in range(1, size + 2)]
    for factors, x in problems:
        assert_matvec_close(kronjit.kron_matvec(factors, x), factors, x)
    info = call_cache()
    assert (info.currsize, info.misses, info.hits) == (size, size + 1, 0)
    kronjit.kron_matvec(*problems[-1])  # still there
    kronjit.kron_matvec(*problems[0])  # evicted by the last one
    assert (call_cache().hits, call_cache().misses) == (1, size + 2)


def test_call_cache_from_many_threads(call_cache):
    """Threads calling with a mix of signatures, the cache filling and evicting under
    them, get exactly the results a single thread gets."""
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(44)
    problems = []
    for i in range(12):
        shapes = [(2 + i % 3, 3), (4, 1 + i % 4), (3, 3)]
        factors = [rand(rng, s, DTYPES[i % 4]) for s in shapes]
        problems.append((factors, rand(rng, (math.prod(n for _, n in shapes),), "float64")))
    want = [kronjit.kron_matvec(f, x) for f, x in problems]
    vplan.clear_cache()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: (i % 12, kronjit.kron_matvec(*problems[i % 12])),
                            range(480)))
    assert all(np.array_equal(g, want[i]) for i, g in got)
    assert call_cache().currsize <= 12 and call_cache().hits + call_cache().misses == 480


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,p,n", [(16, 4, 3), (8, 8, 2), (3, 2, 5)])
def test_fastkron_layout(dtype, m, p, n):
    """FastKron's GeMKM, ``x @ kron(F1, ..., FN)`` as the study computes it
    (``kron(I, F1, ..., FN)^T vec(x)``): computed in the input's precision, float32
    included, and equal to the dense product to that precision's rounding
    (``eps * sum(n_i)``)."""
    from kronjit.study.cases import fastkron_inputs, fastkron_kronjit
    x, factors = fastkron_inputs(m, p, n, dtype)
    got = fastkron_kronjit(x, factors)
    want = x.astype(np.float64) @ dense_kron([f.astype(np.float64) for f in factors])
    assert got.dtype == np.dtype(dtype) and got.shape == (m, p ** n)
    scale = np.abs(x.astype(np.float64)) @ dense_kron([np.abs(f.astype(np.float64)) for f in factors])
    assert np.all(np.abs(got - want) <= 4 * np.finfo(dtype).eps * n * p * scale)
