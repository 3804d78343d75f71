"""On a real cluster (scheduler and worker processes): a worker killed with SIGKILL mid-run,
and a run whose driver is killed, still give the bytes of a local run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from _cluster import REPO, cluster_env
from conftest import write_faces_store

from mlrdist.io.stores import open_store
from mlrdist.synthesize import synthesize
from mlrdist.train import fit_weights

distributed = pytest.importorskip("distributed")
N_FACES = 150  # per expression: 300 inputs, 32 x 32 RGB


@pytest.fixture
def client(dask_cluster):
    with distributed.Client(dask_cluster.address, timeout=60) as cl:
        dask_cluster.wait_for_workers(cl)
        yield cl


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 32 x 32 RGB model (trained locally) and a faces.zarr of 300 inputs for it."""
    tmp = tmp_path_factory.mktemp("cluster")
    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, (N_FACES, 32, 32, 3), dtype=np.uint8)
    faces = write_faces_store(str(tmp / "faces.zarr"), {"neutral": X, "smiling": np.clip(X * 0.7 + 40, 0, 255).astype(np.uint8)})
    weights = str(tmp / "weights.zarr")
    fit_weights(faces, weights, receptive_field=3, subjects=[f"s{i:03d}" for i in range(12)], scheduler="synchronous")
    return faces, weights


def zarr_bytes(url: str, *names: str) -> list[bytes]:
    group = zarr.open_group(open_store(url), mode="r")
    return [np.asarray(group[name][...]).tobytes() for name in names]


def flags(url: str, name: str) -> np.ndarray:
    try:
        return np.asarray(zarr.open_group(open_store(url), mode="r")[name][...])
    except Exception:  # not created yet, or a chunk being written
        return np.zeros(0)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def run_killing_a_worker(client, run, started, timeout: float = 90):
    """``run()`` in a thread; once ``started()``, SIGKILL the process of a worker that has a
    task in progress. Returns ``run()``'s result."""
    pids = distributed_pids(client)
    result: dict = {}

    def target():
        try:
            result["value"] = run()
        except BaseException as exc:  # pragma: no cover - re-raised below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    killed = None
    deadline = time.monotonic() + timeout
    while thread.is_alive() and killed is None and time.monotonic() < deadline:
        if started():
            busy = [addr for addr, keys in client.processing().items() if keys and addr in pids]
            if busy:
                killed = pids[busy[0]]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.005)
    thread.join(timeout=max(1.0, deadline - time.monotonic()))
    assert not thread.is_alive(), "the run did not finish after a worker was killed"
    assert killed is not None, "the run finished before a worker could be killed; make it longer"
    if "error" in result:
        raise result["error"]
    return result["value"]


def distributed_pids(client) -> dict[str, int]:
    from _cluster import DaskCluster

    pids = DaskCluster.worker_pids(client)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    return pids


def test_train_with_a_worker_killed_equals_local_run(client, tmp_path):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (24, 64, 64, 1), dtype=np.uint8)
    Y = np.clip(X * 0.8 + rng.integers(0, 40, X.shape), 0, 255).astype(np.uint8)
    faces = write_faces_store(str(tmp_path / "faces.zarr"), {"neutral": X, "smiling": Y})
    local, remote = str(tmp_path / "local.zarr"), str(tmp_path / "remote.zarr")
    settings = dict(receptive_field=9, tile=8)
    fit_weights(faces, local, scheduler="synchronous", **settings)

    report = run_killing_a_worker(client, lambda: fit_weights(faces, remote, client=client, **settings),
                                  lambda: flags(remote, "tile_done").sum() >= 1)
    assert report.tiles_computed == report.tiles_total == 64
    assert zarr_bytes(remote, "coef", "intercept", "tile_done") == zarr_bytes(local, "coef", "intercept", "tile_done")


def test_zarr_synthesis_with_a_worker_killed_equals_local_run(client, trained, tmp_path):
    faces, weights = trained
    local, remote = str(tmp_path / "local.zarr"), str(tmp_path / "remote.zarr")
    synthesize(weights, faces, local, batch=64, scheduler="synchronous")
    report = run_killing_a_worker(client, lambda: synthesize(weights, faces, remote, batch=2, client=client),
                                  lambda: flags(remote, "batch_done").sum() >= 1)
    assert report.converted == 2 * N_FACES
    assert zarr_bytes(remote, "image") == zarr_bytes(local, "image")
    assert flags(remote, "batch_done").all()


def write_photos(folder: Path, faces: str) -> None:
    from PIL import Image

    image = zarr.open_group(open_store(faces), mode="r")["image"][...]
    for i, img in enumerate(image):
        sub = folder / f"d{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(sub / f"face{i:03d}.png")


def test_photo_synthesis_with_a_worker_killed_equals_local_run(client, trained, tmp_path):
    faces, weights = trained
    photos = tmp_path / "photos"
    write_photos(photos, faces)
    local, remote = tmp_path / "local", tmp_path / "remote"
    settings = dict(align="none", detail="none")
    synthesize(weights, str(photos), str(local), batch=50, scheduler="synchronous", **settings)
    report = run_killing_a_worker(
        client, lambda: synthesize(weights, str(photos), str(remote), batch=2, client=client, **settings),
        lambda: len(list(remote.rglob("*.png"))) >= 1,
    )
    assert report.converted == 2 * N_FACES and not report.failed
    got, want = files_under(remote), files_under(local)
    assert len(want) == 2 * N_FACES and got.keys() == want.keys()
    assert [k for k in want if got[k] != want[k]] == []


def test_synthesis_resumed_after_the_driver_was_killed(dask_cluster, client, trained, tmp_path):
    """SIGKILL the process driving a synthesis mid-run; a rerun converts only the batches
    not done and the outputs equal an uninterrupted run, byte for byte."""
    faces, weights = trained
    local, out = str(tmp_path / "local.zarr"), str(tmp_path / "out.zarr")
    synthesize(weights, faces, local, batch=300, scheduler="synchronous")
    code = textwrap.dedent(f"""
        from mlrdist.synthesize import synthesize
        synthesize({weights!r}, {faces!r}, {out!r}, batch=1, scheduler={dask_cluster.address!r})
    """)
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=cluster_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while driver.poll() is None and flags(out, "batch_done").sum() < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        driver.kill()
        _, err = driver.communicate(timeout=30)
    done = flags(out, "batch_done")
    assert driver.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert 0 < done.sum() < done.size, "the driver finished before it could be killed; make the run longer"

    report = synthesize(weights, faces, out, batch=1, client=client)
    assert 0 < report.converted < 2 * N_FACES and report.skipped_done > 0
    assert zarr_bytes(out, "image") == zarr_bytes(local, "image")
    assert flags(out, "batch_done").all()
