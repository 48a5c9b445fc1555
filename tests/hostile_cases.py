"""Hostile input that once corrupted memory, crashed, answered wrongly or blew up memory.

Each case is a function that raises AssertionError when kronjit misbehaves.
They run in a child process (``test_hostile.py``), because a regression here
is a segfault or an out-of-memory kill, not a failed assertion.  Run as a
script, this module runs the cases named on the command line and prints one
JSON line per case: ``{"case": name, "error": null or the failure}``.
"""
import json
import resource
import sys
import threading
import traceback

import numpy as np
import scipy.sparse as sp

import kronjit

CASES = {}


def case(func):
    CASES[func.__name__] = func
    return func


def raises(call, exc_type, *words):
    """``call()`` raises ``exc_type`` whose message holds every one of ``words``."""
    try:
        call()
    except exc_type as exc:
        missing = [w for w in words if w not in str(exc)]
        assert not missing, f"{type(exc).__name__} does not mention {missing}: {exc}"
        return exc
    except Exception as exc:  # noqa: BLE001 - reported as the failure
        raise AssertionError(f"expected {exc_type.__name__}, got {type(exc).__name__}: "
                             f"{exc}") from exc
    raise AssertionError(f"expected {exc_type.__name__}, nothing was raised")


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stays_small(call, exc_type, *words, limit=1 << 30):
    """``call`` refuses with ``exc_type`` while the process's peak stays under ``limit``
    above what it was (ru_maxrss only grows, so a blow-up cannot hide)."""
    before = peak_rss_bytes()
    raises(call, exc_type, *words)
    grown = peak_rss_bytes() - before
    assert grown < limit, f"peak memory grew by {grown / 2**20:.0f} MiB before the refusal"


A2 = np.arange(4.0).reshape(2, 2)
B3 = np.arange(9.0).reshape(3, 3)
S3 = sp.csr_array(np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]))


# --- ndarray subclasses --------------------------------------------------------------------

@case
def kron_out_matrix():
    backing = np.zeros(36 * 40)
    out = np.asmatrix(backing[:36].reshape(6, 6))
    raises(lambda: kronjit.kron(A2, B3, out=out), TypeError, "out", "matrix")
    assert not backing.any(), "kron wrote through a refused out="


@case
def kron_out_matrix_delegated():
    # float16 goes to np.kron; its out= is checked the same way
    out = np.asmatrix(np.zeros((6, 6), np.float16))
    raises(lambda: kronjit.kron(A2.astype(np.float16), B3.astype(np.float16), out=out),
           TypeError, "out")
    assert not out.any()


@case
def kron_matvec_out_matrix_sparse_factor():
    backing = np.zeros(3 * 40)
    out = np.asmatrix(backing[:3].reshape(1, 3))
    raises(lambda: kronjit.kron_matvec([S3], np.ones(3), out=out), TypeError, "out")
    raises(lambda: kronjit.kron_matvec([S3], np.ones((3, 1)), out=np.asmatrix(backing[:3]).T),
           TypeError, "out")
    assert not backing.any()


@case
def matrix_inputs_are_viewed_as_arrays():
    x = np.asmatrix(np.arange(6.0)).T  # (6, 1)
    fs = [A2, B3]
    got = kronjit.kron_matvec([np.asmatrix(f) for f in fs], np.asmatrix(np.ones((6, 1))))
    assert type(got) is np.ndarray and got.shape == (6, 1)
    np.testing.assert_allclose(got, np.kron(A2, B3) @ np.ones((6, 1)))
    got = kronjit.KronProduct([np.asmatrix(A2)]).solve(np.asarray(x[:2]).ravel() + 1)
    np.testing.assert_allclose(A2 @ got, np.arange(2.0) + 1)
    np.testing.assert_array_equal(kronjit.block_toeplitz(np.asmatrix([[1, 2], [3, 4]])[None]),
                                  np.array([[1, 2], [3, 4]]))
    np.testing.assert_allclose(kronjit.block_toeplitz_matvec([1.0, 2.0], [1.0, 3.0],
                                                             np.asmatrix([[1.0], [1.0]])),
                               [[4.0], [3.0]])
    np.testing.assert_array_equal(kronjit.block_diag(np.asmatrix(A2), 5),
                                  np.array([[0, 1, 0], [2, 3, 0], [0, 0, 5]]))


@case
def masked_inputs_are_refused():
    m = np.ma.masked_array(np.ones(6), mask=[0, 1, 0, 0, 0, 0])
    raises(lambda: kronjit.kron_matvec([A2, B3[:, :3]], m), TypeError, "x", "masked")
    raises(lambda: kronjit.kron_matvec([np.ma.masked_array(A2)], np.ones(2)), TypeError,
           "factors[0]", "masked")
    raises(lambda: kronjit.KronProduct([A2, B3]).solve(np.ma.masked_array(np.ones(6))),
           TypeError, "b", "masked")
    raises(lambda: kronjit.block_toeplitz(m), TypeError, "c", "masked")
    raises(lambda: kronjit.block_toeplitz_matvec(np.ones(3), None, m[:3]), TypeError, "x")
    raises(lambda: kronjit.block_diag(A2, np.ma.masked_array(B3)), TypeError, "block 1")
    out = np.ma.masked_array(np.zeros((6, 6)))
    raises(lambda: kronjit.kron(A2, B3, out=out), TypeError, "out")
    raises(lambda: kronjit.block_toeplitz(np.ones(6), out=out), TypeError, "out")


# --- out= sharing memory with a sparse factor ---------------------------------------------

@case
def out_sharing_a_sparse_factor():
    S = S3.copy()
    before = [S.data.copy(), S.indices.copy(), S.indptr.copy()]
    raises(lambda: kronjit.kron_matvec([S], np.ones(3), out=S.data[:3]), ValueError,
           "out", "factors[0]")
    for got, want in zip([S.data, S.indices, S.indptr], before):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(kronjit.kron_matvec([S], np.ones(3)), [3.0, 1.0, 3.0])
    C = S.T.tocsr().T  # a CSC view of the same kind: trans='T' reads S's arrays
    raises(lambda: kronjit.kron_matvec([C], np.ones(3), out=C.data[:3], trans="T"), ValueError,
           "factors[0]")


# --- malformed sparse structures ------------------------------------------------------------

def _malformed(fmt, what):
    """A 3x3 sparse matrix of ``fmt`` whose arrays were corrupted after construction."""
    M = sp.eye_array(3, format=fmt) * 2.0
    if fmt == "coo":
        M.coords[0][1] = 7 if what == "index" else -1
    elif what == "index":
        M.indices[1] = 5
    elif what == "negative":
        M.indices[1] = -4
    else:  # indptr
        M.indptr[1], M.indptr[2] = 3, 1
    return M


MALFORMED = [("csr", "index"), ("csr", "negative"), ("csr", "indptr"), ("csc", "index"),
             ("csc", "indptr"), ("coo", "index"), ("coo", "negative")]


@case
def malformed_sparse_everywhere():
    for fmt, what in MALFORMED:
        M = _malformed(fmt, what)
        copy = [a.copy() for a in (M.coords if fmt == "coo" else (M.indices, M.indptr))]
        calls = {
            "sparse.kron A": (lambda: kronjit.sparse.kron(M, np.eye(2), format="csr"), "A"),
            "sparse.kron B": (lambda: kronjit.sparse.kron(np.eye(2), M, format="coo"), "B"),
            "sparse.kron C": (lambda: kronjit.sparse.kron(np.eye(2), np.eye(2), M), "factor 2"),
            "sparse.kron bsr": (lambda: kronjit.sparse.kron(M, np.ones((2, 2))), "A"),
            "kronsum": (lambda: kronjit.sparse.kronsum(M, np.eye(2)), "A"),
            "kron_matvec": (lambda: kronjit.kron_matvec([np.eye(2) * 3, M], np.ones(6)),
                            "factors[1]"),
            "KronProduct": (lambda: kronjit.KronProduct([M, np.ones((2, 2))]) @ np.ones(6),
                            "factors[0]"),
            "KronSum": (lambda: kronjit.KronSum([np.ones((2, 2)), M]) @ np.ones(6),
                        "factors[1]"),
        }
        for label, (call, name) in calls.items():
            try:
                raises(call, ValueError, name, "not a valid")
            except AssertionError as exc:
                raise AssertionError(f"{fmt} with a bad {what}, {label}: {exc}") from None
        for got, want in zip(M.coords if fmt == "coo" else (M.indices, M.indptr), copy):
            np.testing.assert_array_equal(got, want)


@case
def malformed_bsr_and_short_arrays():
    B = sp.bsr_array(np.eye(4), blocksize=(2, 2))
    B.indices[0] = 9
    raises(lambda: kronjit.sparse.kron(B, np.eye(2), format="csr"), ValueError, "A", "not a valid")
    S = sp.csr_array(np.eye(3))
    S.indices = S.indices[:1]  # indptr promises 3 entries
    raises(lambda: kronjit.kron_matvec([S], np.ones(3)), ValueError, "factors[0]", "not a valid")


# --- memory: refuse before allocating ---------------------------------------------------------

@case
def sparse_kron_huge_shape_refused_at_once():
    for exp in (27, 31):
        A = sp.coo_array((np.ones(1), (np.zeros(1, int), np.zeros(1, int))),
                         shape=(2 ** exp, 2 ** exp))
        stays_small(lambda: kronjit.sparse.kron(A, A, format="csr"), MemoryError, "sparse.kron")
        stays_small(lambda: kronjit.sparse.kronsum(A, A), MemoryError, "sparse.kronsum")


@case
def mixed_dtype_chain_refused_before_the_intermediate():
    a = np.ones((200, 200), np.int8)
    stays_small(lambda: kronjit.kron(a, a, np.ones((10, 10))), MemoryError,
                "intermediate product", limit=1 << 28)
    b = np.ones((300, 300), np.int8)
    stays_small(lambda: kronjit.kron(b, b, np.ones((3, 3)), out=np.empty(3)), ValueError,
                "out", limit=1 << 28)


@case
def dask_graphs_are_lazy():
    import kronjit.dask
    before = peak_rss_bytes()
    x = kronjit.dask.kron(np.ones((1000, 1000)), np.ones((1000, 1000)), chunks=(100, 100))
    t = kronjit.dask.block_toeplitz(np.ones(10 ** 6), chunks=(100, 100))
    for arr in (x, t):
        assert arr.numblocks == (10 ** 4, 10 ** 4)
        assert not arr.dask.layers[arr.name].is_materialized()
    grown = peak_rss_bytes() - before
    assert grown < 1 << 28, f"building the graphs took {grown / 2**20:.0f} MiB"
    np.testing.assert_array_equal(x[12345:12347, 5:8].compute(), np.ones((2, 3)))


# --- smaller items ---------------------------------------------------------------------------

@case
def operator_edge_cases():
    def path(n):
        return 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    lap = kronjit.KronSum([path(3) - np.diag([1.0, 0, 1]), path(4) - np.diag([1.0, 0, 0, 1])])
    raises(lambda: lap.solve(np.ones(12)), np.linalg.LinAlgError, "singular")
    assert lap.logdet() == -np.inf and lap.slogdet()[0] == 0
    K = kronjit.KronProduct([np.eye(2) * 2, np.eye(3)])
    for bad in (np.nan, np.inf):
        raises(lambda: K.logdet(shift=bad), ValueError, "shift")
        raises(lambda: K.solve(np.ones(6), shift=bad), ValueError, "shift")
    assert kronjit.KronProduct([np.zeros((0, 0)), np.eye(2)]).slogdet() == (1.0, 0.0)
    U = kronjit.KronProduct([np.array([[1, 2], [3, 4]], np.uint8), np.eye(2, dtype=np.uint8)])
    np.testing.assert_array_equal((-U).todense(), -U.todense())
    V = kronjit.KronSum([np.array([[1, 2], [3, 4]], np.uint8), U])
    np.testing.assert_array_equal((-V).todense(), -V.todense())


@case
def overlapping_thread_count_blocks():
    """Two threads' num_threads(1) blocks overlap, entered and left in the same order
    (a process-wide setting restored by each block would end at 1)."""
    start = kronjit.get_num_threads()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with kronjit.num_threads(1):
            first_in.set()
            second_in.wait()
            seen["first"] = kronjit.get_num_threads()
        first_out.set()

    def second():
        first_in.wait()
        with kronjit.num_threads(1):
            second_in.set()
            first_out.wait()
            seen["second"] = kronjit.get_num_threads()
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert seen == {"first": 1, "second": 1}, seen
    assert kronjit.get_num_threads() == start, "the blocks left a changed thread count"
    with kronjit.num_threads(1):
        other = []
        t = threading.Thread(target=lambda: other.append(kronjit.get_num_threads()))
        t.start(), t.join()
        assert other == [start], "a num_threads block leaked into another thread"


def main(names):
    for name in names:
        try:
            CASES[name]()
            error = None
        except Exception:  # noqa: BLE001 - every failure is reported to the parent
            error = traceback.format_exc(limit=4)
        print(json.dumps({"case": name, "error": error}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(CASES))
