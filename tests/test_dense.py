"""kronjit.kron against np.kron, bit for bit."""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import kronjit
from helpers import KERNEL_DTYPES, assert_identical, bad_outs, sample


def np_kron_chain(*factors):
    result = factors[0]
    for f in factors[1:]:
        result = np.kron(result, f)
    return result


# --- dtypes --------------------------------------------------------------------

@pytest.mark.parametrize("da", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("db", KERNEL_DTYPES, ids=str)
def test_every_dtype_pair(da, db):
    a, b = sample((3, 4), da, 1), sample((2, 5), db, 2)
    with np.errstate(all="ignore"):
        assert_identical(kronjit.kron(a, b), np.kron(a, b))


@pytest.mark.parametrize("dtype", ["f4", "f8", "c8", "c16"])
def test_nan_inf_signed_zero_products(dtype):
    vals = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 3.5], dtype=dtype)
    if np.dtype(dtype).kind == "c":
        z = np.empty((8, 8), dtype)
        z.real, z.imag = vals[:, None].real, vals[None, :].real
        vals = z.ravel()
    with np.errstate(all="ignore"):
        assert_identical(kronjit.kron(vals, vals), np.kron(vals, vals))
        a, b = vals.reshape(-1, 4), vals[::-1].reshape(4, -1)
        assert_identical(kronjit.kron(a, b), np.kron(a, b))


def test_integer_wraparound_matches_numpy():
    a = np.array([[127, -128], [100, 3]], dtype=np.int8)
    assert_identical(kronjit.kron(a, a), np.kron(a, a))
    u = np.array([2**63 + 5, 3], dtype=np.uint64)
    assert_identical(kronjit.kron(u, u), np.kron(u, u))


def test_mixed_dtype_chain_keeps_intermediate_precision():
    # np.kron(np.kron(int8, int8), float64) wraps in int8 before the float step;
    # float32 intermediates round before a float64 step.
    a = np.array([100, -90], dtype=np.int8)
    f = np.array([0.5, 3.0])
    assert_identical(kronjit.kron(a, a, f), np_kron_chain(a, a, f))
    x = np.array([1 / 3, 0.1], dtype=np.float32)
    assert_identical(kronjit.kron(x, x, f, x), np_kron_chain(x, x, f, x))
    b = np.array([True, False])
    assert_identical(kronjit.kron(b, b, np.int16([7, -3]), f),
                     np_kron_chain(b, b, np.int16([7, -3]), f))


def test_noncanonical_bool_bytes():
    a = np.array([2, 0, 128, 1], dtype=np.uint8).view(np.bool_)
    assert_identical(kronjit.kron(a, a), np.kron(a, a))


def test_big_endian_inputs():
    a = sample((3, 2), "f8").astype(">f8")
    b = sample((2, 3), "i4").astype(">i4")
    assert not b.dtype.isnative
    assert_identical(kronjit.kron(a, b), np.kron(a, b))


# --- shapes and layouts -------------------------------------------------------------

SHAPE_PAIRS = [
    ((), ()), ((), (3,)), ((4,), ()), ((2, 3), ()), ((3,), (4,)), ((2, 3), (4,)),
    ((4,), (2, 3)), ((2, 3), (4, 5)), ((1, 1), (3, 3)), ((3, 3), (1, 1)),
    ((2, 3, 4), (3, 2)), ((2,), (3, 1, 2)), ((2, 1, 3, 2), (1, 2, 2, 3)),
    ((0,), (3,)), ((2, 0), (3, 4)), ((3, 4), (0, 2)), ((0, 0), (0, 0)), ((0,), ()),
    ((1,), (1,)), ((5, 1), (1, 5)), ((1, 7), (6, 1)),
]


@pytest.mark.parametrize("sa,sb", SHAPE_PAIRS, ids=str)
def test_shapes(sa, sb):
    a, b = sample(sa, "f8", 3), sample(sb, "f8", 4)
    with np.errstate(all="ignore"):
        assert_identical(kronjit.kron(a, b), np.kron(a, b))


def test_zero_d_pair_returns_numpy_scalar_like_np_kron():
    got, expected = kronjit.kron(np.float32(2), np.float64(3)), np.kron(np.float32(2), np.float64(3))
    assert type(got) is type(expected)
    assert got == expected


@pytest.mark.parametrize("shapes", [
    [(2, 3), (3, 2), (2, 2)], [(2,), (3,), (4,), (5,)], [(), (2, 2), ()],
    [(2, 2)] * 5, [(1, 3), (2, 1), (3,), (2, 2, 1)], [(3,), (0, 2), (2,)],
    [(), (), ()], [(4, 4), (4, 4), (4, 4)],
], ids=str)
def test_many_factors(shapes):
    factors = [sample(s, "f8", i) for i, s in enumerate(shapes)]
    with np.errstate(all="ignore"):
        assert_identical(kronjit.kron(*factors), np_kron_chain(*factors))


def _layouts(x):
    yield "C", x
    yield "F", np.asfortranarray(x)
    yield "reversed", x[::-1, ::-1]
    yield "strided", np.repeat(np.repeat(x, 2, 0), 2, 1)[::2, ::2]
    readonly = x.copy()
    readonly.flags.writeable = False
    yield "readonly", readonly
    yield "broadcast", np.broadcast_to(x[:1], x.shape)
    yield "transposed", x.T


@pytest.mark.parametrize("dtype", ["f8", "c8", "i2", "?"])
def test_memory_layouts(dtype):
    a, b = sample((3, 4), dtype, 5), sample((4, 3), dtype, 6)
    for (na, la), (nb, lb) in itertools.product(_layouts(a), _layouts(b)):
        try:
            assert_identical(kronjit.kron(la, lb), np.kron(la, lb))
        except AssertionError as exc:
            raise AssertionError(f"layouts {na} x {nb}: {exc}") from None


def test_inputs_are_not_modified():
    a, b = sample((3, 3), "f8", 1), sample((2, 2), "f8", 2)
    a0, b0 = a.copy(), b.copy()
    kronjit.kron(a, b)
    assert_identical(a, a0)
    assert_identical(b, b0)


def test_array_likes_and_scalars():
    assert_identical(kronjit.kron([[1, 2]], [3, 4]), np.kron([[1, 2]], [3, 4]))
    assert_identical(kronjit.kron(2.5, [1, 2]), np.kron(2.5, [1, 2]))
    assert_identical(kronjit.kron([1j], np.int8([3])), np.kron([1j], np.int8([3])))
    assert_identical(kronjit.kron(True, [[True, False]]), np.kron(True, [[True, False]]))


def test_large_output_runs_parallel_kernel_and_agrees():
    a, b = sample((300, 200), "f8", 7), sample((7, 9), "f8", 8)
    with np.errstate(all="ignore"):
        expected = np.kron(a, b)
        for n in (1, 2):
            with kronjit.num_threads(min(n, kronjit._runtime.numba.config.NUMBA_NUM_THREADS)):
                assert_identical(kronjit.kron(a, b), expected)
        c = sample((2, 2), "c16", 9)  # a 3-factor complex chain, still a parallel launch
        assert_identical(kronjit.kron(a, b, c), np_kron_chain(a, b, c))


@pytest.mark.parametrize("run", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("dtype", ["f8", "c16", "i1"])
def test_short_runs_go_to_their_own_twin(monkeypatch, dtype, run):
    """Runs (the last factor's rows) of up to SHORT_RUN_MAX elements go to the kernel's
    twin with a constant length for each, longer ones to the other twin, which is
    compiled only when used; either way numpy's bits, batched products too."""
    from kronjit import dense
    used = []
    for twin, name in zip(dense._KRON_FILL, ("short", "long")):
        def spy(*args, original=twin.compiled, name=name):
            used.append(name)
            return original(*args)
        monkeypatch.setattr(twin, "compiled", spy)
    a, b = sample((5, 3), dtype, 1), sample((2, run), dtype, 2)
    with np.errstate(all="ignore"):
        assert_identical(kronjit.kron(a, b), np.kron(a, b))
        stack = sample((3, 2, run), dtype, 3)
        assert_identical(kronjit.batch_kron(a, stack), np.stack([np.kron(a, s) for s in stack]))
    assert used == ["short" if run <= dense.SHORT_RUN_MAX else "long"] * 2


# --- delegated inputs ------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda: (np.ones((2, 2), np.float16), np.arange(3, dtype=np.float16)),
    lambda: (np.array([[1, 2]], dtype=object), np.array([3, 4])),
    lambda: (np.ones(3, np.longdouble), np.arange(2.0)),
    lambda: (np.ones(2, np.clongdouble), np.arange(2.0)),
    lambda: (np.matrix([[1, 2], [3, 4]]), np.eye(2)),
    lambda: (np.ma.masked_array([1.0, 2.0], mask=[0, 1]), np.array([1.0, 3.0])),
    lambda: (np.array([1, 2], "m8[s]"), np.array([3, 4])),
], ids=["float16", "object", "longdouble", "clongdouble", "matrix", "masked", "timedelta"])
def test_inputs_without_fast_path_match_numpy(make):
    a, b = make()
    expected, got = np.kron(a, b), kronjit.kron(a, b)
    assert type(got) is type(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if isinstance(expected, np.ma.MaskedArray):
        assert np.array_equal(got.mask, expected.mask)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


def test_unsupported_inputs_raise_numpys_error():
    with pytest.raises(TypeError) as ours:
        kronjit.kron(np.array(["a"]), np.array([1]))
    with pytest.raises(TypeError) as theirs:
        np.kron(np.array(["a"]), np.array([1]))
    assert type(ours.value) is type(theirs.value)


# --- out= ------------------------------------------------------------------------

def test_out_is_filled_and_returned():
    a, b = sample((3, 4), "f8", 1), sample((5, 2), "f8", 2)
    out = np.full((15, 8), 7.0)
    result = kronjit.kron(a, b, out=out)
    assert result is out
    with np.errstate(all="ignore"):
        assert_identical(out, np.kron(a, b))


def test_out_bool_and_multi_factor():
    a = np.array([[True, False], [True, True]])
    out = np.zeros((8, 8), bool)
    kronjit.kron(a, a, a, out=out)
    assert_identical(out, np_kron_chain(a, a, a))


BAD_OUTS = bad_outs((6, 12))


@pytest.mark.parametrize("name", list(BAD_OUTS))
def test_bad_out_raises_and_writes_nothing(name):
    a, b = sample((3, 4), "f8", 1), sample((2, 3), "f8", 2)
    make, exc, words = BAD_OUTS[name]
    out = make()
    before = np.array(out, copy=True)
    with pytest.raises(exc, match=words) as info:
        kronjit.kron(a, b, out=out)
    assert "out" in str(info.value)
    assert np.array_equal(np.asarray(out), before), name


def test_out_overlapping_input_is_rejected():
    big = np.zeros((4, 4))
    view = big[:2, :2]
    snapshot = big.copy()
    with pytest.raises(ValueError, match="overlaps input 0"):
        kronjit.kron(view, np.ones((2, 2)), out=big)
    assert np.array_equal(big, snapshot)


def test_out_with_delegated_dtype():
    a = np.ones((2, 2), np.float16)
    out = np.zeros((4, 4), np.float16)
    assert kronjit.kron(a, a, out=out) is out
    assert_identical(out, np.kron(a, a))
    with pytest.raises(TypeError, match="out has dtype float32"):
        kronjit.kron(a, a, out=np.zeros((4, 4), np.float32))


# --- memory ----------------------------------------------------------------------

def test_output_larger_than_memory_raises_before_allocating():
    a = np.ones((200_000, 1))
    b = np.ones((1, 200_000))  # 4e10 float64 = 320 GB
    with pytest.raises(MemoryError, match=r"shape \(200000, 200000\).*320000000000 bytes"):
        kronjit.kron(a, b)


def test_output_beyond_int64_raises_memory_error():
    huge = np.broadcast_to(np.True_, (2**31, 2**31))  # 2**62 bytes of view, none of memory
    with pytest.raises(MemoryError, match="more than any array can hold"):
        kronjit.kron(huge, huge)


# --- properties ------------------------------------------------------------------

factor_dtypes = st.sampled_from([np.dtype(c) for c in "?bBiIqfdFD"])
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def factors(draw, min_count=2, max_count=4):
    count = draw(st.integers(min_count, max_count))
    out = []
    for _ in range(count):
        dtype = draw(factor_dtypes)
        x = draw(hnp.arrays(dtype, draw(shapes),
                            elements=hnp.from_dtype(dtype, allow_subnormal=True)
                            if dtype.kind != "f" else None))
        layout = draw(st.sampled_from(["C", "F", "reversed"]))
        if layout == "F":
            x = np.asfortranarray(x)
        elif layout == "reversed" and x.ndim:
            x = x[::-1]
        out.append(x)
    return out


@given(factors())
def test_property_equals_chained_np_kron(fs):
    with np.errstate(all="ignore"):
        expected = np_kron_chain(*fs)
        assert_identical(kronjit.kron(*fs), expected)


@given(factors(2, 3))
def test_property_out_equals_result(fs):
    with np.errstate(all="ignore"):
        expected = np_kron_chain(*fs)
        if np.ndim(expected) == 0:
            return
        out = np.empty_like(expected)
        kronjit.kron(*fs, out=out)
        assert_identical(out, expected)
