"""kronjit.dask against the in-memory kernels, under the threaded scheduler and
on a LocalCluster of two worker processes (dask is in the test extra)."""
import logging
import os

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from dask.distributed import Client, LocalCluster

import kronjit
import kronjit.dask as kd
from helpers import assert_identical

pytestmark = pytest.mark.subprocess  # worker processes


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           memory_limit="600MiB", dashboard_address=None,
                           silence_logs=logging.ERROR)
    with Client(cluster) as c:
        yield c
    cluster.close()


SCHEDULERS = ["threads", "cluster"]


def compute(arr, scheduler, client):
    if scheduler == "cluster":
        return client.compute(arr).result()
    return arr.compute(scheduler="threads")


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("chunks", [(1, 1), (2, 3), (5, 7), (10, 10), (1000, 1000), "auto"])
def test_kron_matches_in_memory(chunks, scheduler, client):
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((3, 4)), rng.standard_normal((5, 2)), rng.standard_normal((2, 3))
    got = kd.kron(a, b, c, chunks=chunks)
    assert got.shape == (30, 24) and got.dtype == np.float64
    assert_identical(compute(got, scheduler, client), kronjit.kron(a, b, c))


@pytest.mark.parametrize("dtypes", [("int8", "int8", "float32"), ("complex64", "float64"),
                                    ("bool", "uint16")])
def test_kron_dtypes_and_dask_inputs(dtypes, client):
    rng = np.random.default_rng(1)
    factors = [(rng.standard_normal((3, 4)) * 5).astype(d) for d in dtypes]
    lazy = [da.from_array(f, chunks=2) for f in factors]
    got = kd.kron(*lazy, chunks=(7, 9))
    want = kronjit.kron(*factors)
    assert got.dtype == want.dtype
    assert_identical(compute(got, "cluster", client), want)


def test_kron_bigger_than_the_workers(client):
    """A 2.7 GiB product, 4.6x a worker's 600 MiB limit, summed on the cluster:
    right, and no worker was killed for memory on the way."""
    rng = np.random.default_rng(2)
    a, b = rng.random((300, 300)), rng.random((64, 64))
    big = kd.kron(a, b, chunks=(2400, 2400))
    assert big.nbytes > 4 * 600 * 2**20
    pids = client.run(os.getpid)
    total = client.compute(big.sum()).result()
    assert total == pytest.approx(a.sum() * b.sum(), rel=1e-12)
    assert client.run(os.getpid) == pids  # no worker restarted


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("chunks", [5, 7, 24, 100])
def test_kron_matvec_matches_in_memory(chunks, k, scheduler, client):
    rng = np.random.default_rng(3)
    factors = [rng.standard_normal((3, 4)), sp.random_array((5, 2), density=0.5, rng=rng),
               rng.standard_normal((2, 3))]
    x = rng.standard_normal((24,) if k is None else (24, k))
    got = kd.kron_matvec(factors, da.from_array(x, chunks=chunks))
    want = kronjit.kron_matvec(factors, x)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(compute(got, scheduler, client), want, rtol=1e-12, atol=1e-12)


def test_kron_matvec_stays_distributed():
    rng = np.random.default_rng(4)
    factors = [rng.standard_normal((20, 20)), rng.standard_normal((10, 10))]
    x = da.from_array(rng.standard_normal((200, 4)), chunks=(40, 4))
    y = kd.kron_matvec(factors, x)
    assert y.numblocks[0] > 1  # the result is not one chunk on one node
    np.testing.assert_allclose(y.compute(), kronjit.kron_matvec(factors, x.compute()),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("chunks", [(2, 3), (4, 6), (5, 100), "auto"])
def test_block_toeplitz_matches_in_memory(chunks, scheduler, client):
    rng = np.random.default_rng(5)
    c, r = rng.standard_normal((5, 2, 3)), rng.standard_normal((4, 2, 3))
    assert_identical(compute(kd.block_toeplitz(c, r, chunks=chunks), scheduler, client),
                     kronjit.block_toeplitz(c, r))
    h = (rng.standard_normal((4, 2, 2)) + 1j).astype(np.complex128)
    assert_identical(kd.block_toeplitz(h, chunks=(4, 2)).compute(), kronjit.block_toeplitz(h))
    s, t = np.arange(1.0, 8.0), np.arange(10.0, 16.0)
    assert_identical(kd.block_toeplitz(s, t, chunks=(3, 4)).compute(),
                     scipy.linalg.toeplitz(s, t))


def test_bad_input():
    with pytest.raises(ValueError, match="factor 1 must be 2-D"):
        kd.kron(np.eye(2), np.ones(3))
    with pytest.raises(TypeError, match="factor 0 must be a numeric numpy or dask array, got dtype <U1"):
        kd.kron([["a"]], np.eye(2))
    assert_identical(kd.kron([[1, 2]], np.eye(2)).compute(), kronjit.kron([[1, 2]], np.eye(2)))
    with pytest.raises(ValueError, match="chunks must be"):
        kd.kron(np.eye(2), np.eye(2), chunks=(0, 3))
    with pytest.raises(ValueError, match="chunks must be"):
        kd.kron(np.eye(2), np.eye(2), chunks="big")
    with pytest.raises(ValueError, match=r"x has 5 rows"):
        kd.kron_matvec([np.eye(2), np.eye(3)], da.ones(5))
    with pytest.raises(ValueError, match=r"factors\[0\] must be 2-D"):
        kd.kron_matvec([np.ones(3)], da.ones(3))
    with pytest.raises(ValueError, match="r has blocks of shape"):
        kd.block_toeplitz(np.ones((3, 2, 2)), np.ones((3, 2, 3)))
    with dask.config.set({"array.chunk-size": "1MiB"}):
        assert kd.kron(np.ones((100, 100)), np.ones((50, 50))).numblocks[0] > 1
