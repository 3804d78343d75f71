"""Executor.map / imap: input order, streaming consumption of generators, on Dask's local
schedulers and on a real distributed LocalCluster; a CLI run on the embedded cluster ends
without shutdown noise."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, write_faces_store

from mlrdist.execution import Executor


def _double(x: int) -> int:
    time.sleep(0.002 * (x % 3))  # finish out of order on parallel back-ends
    return 2 * x


class Counting:
    """An iterable that records how many items were taken from it."""

    def __init__(self, n: int):
        self.n, self.taken = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.taken += 1
            yield i


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as cl:
        yield cl


@pytest.fixture(params=["synchronous", "threads", "distributed"])
def executor(request):
    if request.param == "distributed":
        return Executor(client=request.getfixturevalue("client"))
    return Executor(scheduler=request.param)


def test_map_keeps_input_order(executor):
    assert executor.map(_double, range(37), key="t-map", max_in_flight=5) == [2 * i for i in range(37)]
    assert executor.map(_double, [], key="t-empty") == []


def test_imap_consumes_a_generator_only_as_slots_free(executor):
    items = Counting(50)
    seen = {}
    for i, result in executor.imap(_double, items, key="t-imap", max_in_flight=4):
        # never more than the window ahead of the results (plus the one submitted as this finished)
        assert items.taken - len(seen) <= 4 + 1
        seen[i] = result
    assert items.taken == 50
    assert seen == {i: 2 * i for i in range(50)}


def test_imap_reports_the_task_error(executor):
    def boom(x):
        if x == 3:
            raise ValueError("bad item 3")
        return x

    with pytest.raises(ValueError, match="bad item 3"):
        list(executor.imap(boom, range(6), key="t-err", retries=0, max_in_flight=2))


SHUTDOWN_NOISE = ("Worker process still alive", "Unclosed client session", "Unclosed connector",
                  "Cannot close a running event loop", "Traceback")


def _faces(url: str, storage_options=None) -> str:
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    return write_faces_store(url, {"neutral": X, "smiling": X // 2 + 60}, storage_options)


def _quiet_cli(*args: str, env: dict | None = None) -> str:
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    env.pop("MLRDIST_SCHEDULER", None)  # the embedded LocalCluster
    run = subprocess.run([sys.executable, "-m", "mlrdist", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [m for m in SHUTDOWN_NOISE if m in run.stderr] == [], run.stderr[-3000:]
    return run.stderr


def test_cli_on_the_embedded_cluster_ends_quietly(tmp_path):
    faces = _faces(str(tmp_path / "faces.zarr"))
    err = _quiet_cli("train", faces, str(tmp_path / "weights.zarr"), "--tile", "8")
    assert "Dask dashboard" in err


def test_cli_on_s3_ends_quietly(s3, tmp_path):
    from mlrdist.train import fit_weights

    fit_weights(_faces("s3://test/faces.zarr", s3), "s3://test/weights.zarr", tile=8, scheduler="synchronous",
                storage_options=s3)
    env = {"AWS_ENDPOINT_URL": s3["endpoint_url"], "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    _quiet_cli("synthesize", "s3://test/weights.zarr", "s3://test/faces.zarr", "s3://test/out.zarr", env=env)


def test_embedded_cluster_workers_get_the_malloc_settings():
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which switches off glibc's adaptive mmap
    threshold; the embedded cluster's worker processes must also get WORKER_ENV (a 64 MiB mmap
    threshold and a 32 MiB top pad), read by glibc when the process starts."""
    distributed = pytest.importorskip("distributed")
    from mlrdist.execution import WORKER_ENV, local_cluster

    with local_cluster(n_workers=1) as cluster, distributed.Client(cluster) as cl:
        (env,) = cl.run(lambda: {k: os.environ.get(k) for k in (*WORKER_ENV, "MALLOC_TRIM_THRESHOLD_")}).values()
    assert {k: env[k] for k in WORKER_ENV} == WORKER_ENV
    assert env["MALLOC_TRIM_THRESHOLD_"] is not None  # Dask's own, kept: memory is still handed back
    assert int(WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]) >= 32 << 20
