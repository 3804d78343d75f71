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
    report = train_flow(faces, "s3://test/weights.zarr", {"receptive_field": 3}, scheduler=scheduler_address,
                        storage_options=opts)
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
    with pytest.raises(ParameterTypeError, match="receptive_field must be an odd integer"):
        train_flow(str(tmp_path / "faces.zarr"), str(out), {"receptive_field": 4})
    with pytest.raises(ParameterTypeError, match="alpha must be a finite number"):
        train_flow(str(tmp_path / "faces.zarr"), str(out), {"alpha": "lots"})
    assert not out.exists()


def test_synthesize_flow_refuses_missing_weights(tmp_path):
    from flows.synthesize import synthesize_flow

    with pytest.raises(FileNotFoundError, match="no weights store at .*nope.zarr.*mlrdist train"):
        synthesize_flow(str(tmp_path / "nope.zarr"), str(tmp_path), str(tmp_path / "out"))


@pytest.fixture(scope="module")
def sample_images():
    from importlib import resources

    return str(resources.files("mlrdist") / "data" / "sample")


def test_pipeline_flow_on_the_sample(sample_images, tmp_path):
    from flows.pipeline import pipeline_flow

    result = pipeline_flow(sample_images, str(tmp_path), {"labels": "sample", "align": "none"},
                           methods=["MR", "l2"], folds=2, scheduler="threads")
    assert {r["method"] for r in result.table()} == {"MR", "l2"}
    assert (tmp_path / "evaluation" / "report.html").exists()
    assert (tmp_path / "outputs.zarr").exists()
    for key in ("ingest-report", "train-report", "evaluation-metrics", "evaluation-report", "synthesis-report"):
        assert artifacts(key), key


def test_pipeline_flow_on_s3_and_a_cluster(sample_images, s3, scheduler_address, tmp_path):
    import s3fs

    from flows.pipeline import pipeline_flow

    fs = s3fs.S3FileSystem(**s3)
    fs.put(sample_images, "test/raw", recursive=True)
    result = pipeline_flow("s3://test/raw", "s3://test/work", {"labels": "sample", "align": "none"},
                           methods=["MR"], folds=2, report_dir=str(tmp_path / "report"),
                           scheduler=scheduler_address, storage_options=s3)
    assert [r["method"] for r in result.table()] == ["MR"]
    assert fs.exists("test/work/outputs.zarr") and fs.exists("test/work/weights.zarr")
    assert (tmp_path / "report" / "report.html").exists()


def test_nightly_conversion_twice_does_no_repeated_work(sample_images, tmp_path):
    import shutil

    from flows.synthesize import synthesize_flow
    from mlrdist.datasets import load_sample
    from mlrdist.train import fit_weights

    faces = str(tmp_path / "faces.zarr")
    load_sample().to_zarr(faces, consolidated=False)
    weights = str(tmp_path / "w.zarr")
    fit_weights(faces, weights, scheduler="synchronous")
    inbox = tmp_path / "inbox"
    shutil.copytree(f"{sample_images}/neutral", inbox)
    aligned = {"align": "none", "keep_parts": True}
    first = synthesize_flow(weights, str(inbox), str(tmp_path / "out"), aligned, scheduler="threads")
    second = synthesize_flow(weights, str(inbox), str(tmp_path / "out"), aligned, scheduler="threads")
    assert (first.converted, second.converted, second.skipped_done) == (12, 0, 12)
    # into an archive, as unaligned photos: the next night converts only what arrived
    archive = str(tmp_path / "converted.zip")
    resized = {"align": "resize", "format": "jpg", "keep_parts": True}
    first = synthesize_flow(weights, str(inbox), archive, resized, scheduler="threads")
    (inbox / "late.png").write_bytes(next(inbox.glob("*.png")).read_bytes())
    second = synthesize_flow(weights, str(inbox), archive, resized, scheduler="threads")
    assert (first.converted, second.converted, second.skipped_done) == (12, 1, 12)
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        assert len(zf.namelist()) == 13 and all(n.endswith(".jpg") for n in zf.namelist())


def test_retrain_only_when_the_dataset_grew(sample_images, tmp_path):
    import shutil

    from flows.pipeline import retrain_flow

    images = tmp_path / "raw"
    for expr in ("neutral", "smiling"):
        (images / expr).mkdir(parents=True)
        for name in ("001.png", "002.png", "003.png"):  # of the 12 sample subjects
            shutil.copy(f"{sample_images}/{expr}/{name}", images / expr / name)
    args = dict(faces=str(tmp_path / "faces.zarr"), weights=str(tmp_path / "w.zarr"),
                ingest={"labels": "sample", "align": "none"}, scheduler="synchronous")
    assert retrain_flow(str(images), **args).n_pairs == 3
    assert retrain_flow(str(images), **args) is None  # nothing new: no training
    for expr in ("neutral", "smiling"):
        shutil.copy(f"{sample_images}/{expr}/010.png", images / expr / "010.png")
    assert retrain_flow(str(images), **args).n_pairs == 4


@pytest.mark.slow
def test_deployment_on_a_real_prefect_server(tmp_path, sample_images):
    """Start `prefect server`, serve the synthesis flow as a deployment, run it through the API."""
    import os
    import subprocess
    import sys
    import time

    from conftest import _free_port, start_server

    from mlrdist.datasets import load_sample
    from mlrdist.train import fit_weights

    faces, weights = str(tmp_path / "faces.zarr"), str(tmp_path / "w.zarr")
    load_sample().to_zarr(faces, consolidated=False)
    fit_weights(faces, weights, scheduler="synchronous")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": os.getcwd()}
    server, _ = start_server([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                              "--port", str(port)], port, "/api/health", env=env, timeout=90)
    serve = None
    try:
        serve = subprocess.Popen([sys.executable, "-c", (
            "from flows.synthesize import synthesize_flow; "
            "synthesize_flow.serve(name='nightly', cron='0 2 * * *')")], env=env)
        code = (
            "import sys; from prefect.deployments import run_deployment; "
            f"r = run_deployment('mlrdist-synthesize/nightly', parameters=dict(weights={weights!r}, "
            f"inputs={sample_images + '/neutral'!r}, outputs={str(tmp_path / 'out')!r}, scheduler='threads'), timeout=240); "
            "print(r.state.type.value); sys.exit(0 if r.state.is_completed() else 1)"
        )
        for _ in range(60):  # the served deployment registers within a few seconds
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
            if done.returncode == 0 or "not found" not in (done.stderr + done.stdout).lower():
                break
            time.sleep(1)
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(list((tmp_path / "out" / "smiling").glob("*.png"))) == 12
    finally:
        for proc in (serve, server):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=20)


def _weights_from_sample(tmp_path) -> str:
    from mlrdist.datasets import load_sample
    from mlrdist.train import fit_weights

    faces, weights = str(tmp_path / "faces.zarr"), str(tmp_path / "w.zarr")
    load_sample().to_zarr(faces, consolidated=False)
    fit_weights(faces, weights, scheduler="synchronous")
    return weights


def test_a_run_with_failed_inputs_ends_failed_after_publishing_its_report(sample_images, tmp_path):
    import shutil

    from flows.synthesize import synthesize_flow

    weights = _weights_from_sample(tmp_path)
    inbox = tmp_path / "inbox"
    shutil.copytree(f"{sample_images}/neutral", inbox)
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n truncated")
    aligned = {"align": "none"}
    state = synthesize_flow(weights, str(inbox), str(tmp_path / "out"), aligned, scheduler="threads",
                            return_state=True)
    assert state.is_failed() and "1 of 13 inputs failed" in state.message
    report = [a for a in artifacts("synthesis-report") if "broken.png" in (a.data or "")]
    assert report, "the failed run published its report first"
    allowed = synthesize_flow(weights, str(inbox), str(tmp_path / "out2"), aligned, scheduler="threads",
                              max_failed=0.1, return_state=True)
    assert allowed.is_completed() and allowed.result().converted == 12


def test_nightly_defaults_convert_real_photos(data_dir, tmp_path):
    """The deployment's defaults (align auto) on the London set's wild photos: every photo is
    converted, and the run is Completed."""
    from flows.synthesize import synthesize_flow

    weights = _weights_from_sample(tmp_path)
    state = synthesize_flow(weights, str(data_dir / "london-face-set" / "wild"), str(tmp_path / "out"),
                            scheduler="threads", return_state=True)
    assert state.is_completed(), state.message
    report = state.result()
    assert report.converted == report.n_inputs == 18 and not report.failed and not report.no_face
