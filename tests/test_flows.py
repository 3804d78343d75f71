"""Prefect flows under prefect_test_harness: S3 stores on the moto server, Dask on a
LocalCluster, artifacts published, bad parameters refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_faces_store

prefect = pytest.importorskip("prefect")


@pytest.fixture(scope="session", autouse=True)
def harness(tmp_path_factory):
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def scheduler_address():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def s3_faces(s3):
    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, (8, 12, 10, 1), dtype=np.uint8)
    stacks = {"neutral": X, "smiling": np.clip(X * 0.9 + 20, 0, 255).astype(np.uint8)}
    return write_faces_store("s3://test/faces.zarr", stacks, storage_options=s3), s3


def artifacts(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))


def test_train_and_synthesize_flows_on_s3_and_cluster(s3_faces, scheduler_address):
    from flows.synthesize import synthesize_flow
    from flows.train import train_flow

    faces, opts = s3_faces
    report = train_flow(faces, "s3://test/weights.zarr", receptive_field=3, scheduler=scheduler_address, storage_options=opts)
    assert report.tiles_computed == report.tiles_total > 0
    syn = synthesize_flow("s3://test/weights.zarr", faces, "s3://test/out.zarr", scheduler=scheduler_address, storage_options=opts)
    assert syn.converted == 16
    again = synthesize_flow("s3://test/weights.zarr", faces, "s3://test/out.zarr", scheduler=scheduler_address, storage_options=opts)
    assert again.converted == 0 and again.skipped_done == 16
    assert artifacts("train-report") and artifacts("synthesis-report")


def test_bad_parameters_fail_before_work(tmp_path):
    from prefect.exceptions import ParameterTypeError

    from flows.train import train_flow

    out = tmp_path / "w.zarr"
    with pytest.raises(ValueError, match="receptive_field must be an odd integer"):
        train_flow(str(tmp_path / "faces.zarr"), str(out), receptive_field=4)
    with pytest.raises((ParameterTypeError, ValueError)):
        train_flow(str(tmp_path / "faces.zarr"), str(out), alpha="lots")
    assert not out.exists()


def test_synthesize_flow_refuses_missing_weights(tmp_path):
    from flows.synthesize import synthesize_flow

    with pytest.raises(FileNotFoundError, match="no weights store at .*nope.zarr.*mlrdist train"):
        synthesize_flow(str(tmp_path / "nope.zarr"), str(tmp_path), str(tmp_path / "out"))
