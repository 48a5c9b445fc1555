"""kronjit.dask.kron on a LocalCluster of two worker processes against the
plain dask route, a dask array whose blocks are ``np.kron`` of blocks of the
first factor with the second, on the same cluster and the same chunks.
Each benchmark sums a 512 MB product (the result never lives on one node).
"""
import logging

import numpy as np

from .common import side_by_side

SIZE_BYTES = 200 * 200 * 40 * 40 * 8
ROW_BLOCK = 50  # rows/cols of the first factor per chunk: chunks of 2000 x 2000 (32 MB)


def _cluster():
    from dask.distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return cluster, Client(cluster)


def make_arrays():
    import dask.array as da
    import kronjit.dask
    rng = np.random.default_rng(15)
    a, b = rng.random((200, 200)), rng.random((40, 40))
    side = ROW_BLOCK * 40
    ours = kronjit.dask.kron(a, b, chunks=(side, side))
    blocks = da.from_array(a, chunks=ROW_BLOCK)
    plain = blocks.map_blocks(np.kron, b, dtype=a.dtype,
                              chunks=tuple(tuple(c * 40 for c in cs) for cs in blocks.chunks))
    return {"kronjit.dask": ours.sum(), "np.kron blocks": plain.sum()}, a.sum() * b.sum()


class KronOnCluster:
    params = (["kronjit.dask", "np.kron blocks"],)
    param_names = ["impl"]
    timeout = 300

    def setup(self, impl):
        self.cluster, self.client = _cluster()
        sums, want = make_arrays()
        self.total = sums[impl]
        got = self.client.compute(self.total).result()  # warm-up: JIT on the workers
        assert np.isclose(got, want, rtol=1e-10)

    def teardown(self, impl):
        self.client.close()
        self.cluster.close()

    def time_sum(self, impl):
        self.client.compute(self.total).result()


class KronOnClusterRatios:
    timeout = 300

    def setup(self):
        self.cluster, self.client = _cluster()
        self.sums, _ = make_arrays()
        for s in self.sums.values():
            self.client.compute(s).result()

    def teardown(self):
        self.client.close()
        self.cluster.close()

    def track_speedup_vs_np_kron_blocks(self):
        run = lambda key: (lambda: self.client.compute(self.sums[key]).result())  # noqa: E731
        return side_by_side(run("np.kron blocks"), run("kronjit.dask"))
    track_speedup_vs_np_kron_blocks.unit = "x"

    def track_throughput_gb_per_s(self):
        import time
        t0 = time.perf_counter()
        self.client.compute(self.sums["kronjit.dask"]).result()
        return SIZE_BYTES / (time.perf_counter() - t0) / 1e9
    track_throughput_gb_per_s.unit = "GB/s of product generated and summed"
