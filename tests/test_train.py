"""Training on Dask: same answer on every scheduler and tile size, resume, refusal of mixed
configurations, memory planning, S3 stores, and a worker killed mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import zarr
from conftest import write_faces_store

from mlrdist import MaskedRidge
from mlrdist.io.stores import open_store
from mlrdist.io.weights_store import load_weights
from mlrdist.labels import pair_indices
from mlrdist.train import fit_weights

TOL = 1e-10


@pytest.fixture(scope="module")
def stacks():
    rng = np.random.default_rng(7)
    shape = (14, 23, 19, 3)
    X = rng.integers(0, 256, shape, dtype=np.uint8)
    smile = np.clip(X * 0.7 + rng.integers(0, 60, shape), 0, 255).astype(np.uint8)
    sad = rng.integers(0, 256, shape, dtype=np.uint8)
    return {"neutral": X, "smiling": smile, "sad": sad}


@pytest.fixture
def faces(tmp_path, stacks):
    return write_faces_store(str(tmp_path / "faces.zarr"), stacks)


def reference(stacks, k, colour, targets=("smiling",), scaling="unit", dtype=np.float64):
    Y = {t: stacks[t] for t in targets}
    return MaskedRidge(k, 0.4, colour=colour, scaling=scaling, dtype=dtype).fit(stacks["neutral"], Y)


def assert_same(model, ref, tol=TOL):
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=0, atol=tol * scale)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("scheduler", ["synchronous", "threads", "processes"])
@pytest.mark.parametrize("tile", [5, 8, 64])
def test_equals_in_memory_on_local_schedulers(faces, stacks, tmp_path, scheduler, tile):
    out = str(tmp_path / "w.zarr")
    report = fit_weights(faces, out, receptive_field=5, tile=tile, scheduler=scheduler)
    assert report.n_pairs == 14 and report.tiles_computed == report.tiles_total
    model = load_weights(out)
    ref = reference(stacks, 5, "per_channel")
    assert_same(model, ref)
    P = model.predict(stacks["neutral"])
    np.testing.assert_allclose(P["smiling"], ref.predict(stacks["neutral"])["smiling"], atol=1e-10)


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.parametrize("colour", ["per_channel", "joint"])
def test_equals_in_memory_on_local_cluster_multi_target(faces, stacks, tmp_path, cluster_client, colour):
    out = str(tmp_path / "w.zarr")
    fit_weights(
        faces, out, targets=("smiling", "sad"), receptive_field=3, colour=colour, tile=7,
        client=cluster_client, scaling="minmax", dtype="float64",
    )
    model = load_weights(out)
    assert model.targets_ == ("smiling", "sad")
    assert_same(model, reference(stacks, 3, colour, ("smiling", "sad"), scaling="minmax"))


def test_resume_computes_only_missing_tiles(faces, stacks, tmp_path):
    out = str(tmp_path / "w.zarr")
    first = fit_weights(faces, out, receptive_field=3, tile=8, scheduler="threads")
    group = zarr.open_group(open_store(out), mode="r+")
    before = group["coef"][...]
    # simulate a run killed after some tiles: clear two completion flags and their data
    group["tile_done"][0, 1] = 0
    group["tile_done"][2, 0] = 0
    group["coef"][:, :, 0:8, 8:16, :] = np.nan
    meta = dict(group.attrs["mlrdist"])
    meta["complete"] = False
    group.attrs["mlrdist"] = meta
    with pytest.raises(ValueError, match="incomplete \\(7 of 9 tiles\\)"):
        load_weights(out)
    again = fit_weights(faces, out, receptive_field=3, tile=8, scheduler="threads")
    assert (first.tiles_computed, again.tiles_computed, again.tiles_skipped) == (9, 2, 7)
    np.testing.assert_array_equal(zarr.open_group(open_store(out))["coef"][...], before)
    assert fit_weights(faces, out, receptive_field=3, tile=8, scheduler="threads").tiles_computed == 0


def test_refuses_to_mix_configurations(faces, tmp_path):
    out = str(tmp_path / "w.zarr")
    fit_weights(faces, out, receptive_field=3, tile=8, scheduler="synchronous")
    with pytest.raises(ValueError, match=r"different configuration.*alpha: 0.4 -> 1.0.*overwrite=True"):
        fit_weights(faces, out, receptive_field=3, alpha=1.0, tile=8, scheduler="synchronous")
    report = fit_weights(faces, out, receptive_field=3, alpha=1.0, tile=8, scheduler="synchronous", overwrite=True)
    assert report.tiles_computed == 9
    assert load_weights(out).alpha == 1.0


def test_memory_plan_refused_before_work(faces, tmp_path, cluster_client, monkeypatch):
    from mlrdist import execution

    monkeypatch.setattr(execution.Executor, "worker_memory", property(lambda self: 4 * 2**20))
    out = str(tmp_path / "w.zarr")
    with pytest.raises(ValueError, match=r"needs ~\d+ MiB but a worker offers 4 MiB.*smaller tile"):
        fit_weights(faces, out, receptive_field=3, tile=64, client=cluster_client)
    assert not os.path.exists(out)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"receptive_field": 4}, "receptive_field must be an odd integer"),
        ({"alpha": 0}, "alpha must be a finite number > 0"),
        ({"targets": ("neutral",)}, "source expression 'neutral' is also among targets"),
        ({"targets": ("angry",)}, r"no subject has both .*'angry'.*expressions in the store"),
        ({"tile": 0}, "tile must be a positive integer"),
        ({"scheduler": "gpu"}, "scheduler must be a Dask scheduler address"),
        ({"colour": "rgb"}, "colour must be one of"),
    ],
)
def test_bad_configuration_fails_fast(faces, tmp_path, kwargs, match):
    out = str(tmp_path / "w.zarr")
    with pytest.raises(ValueError, match=match):
        fit_weights(faces, out, **{"scheduler": "synchronous", **kwargs})
    assert not os.path.exists(out)


def test_missing_faces_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `mlrdist ingest` first"):
        fit_weights(str(tmp_path / "nope.zarr"), str(tmp_path / "w.zarr"), scheduler="synchronous")


def test_pairs_by_subject_drop_incomplete():
    subjects = ["a", "b", "a", "c", "b", "a"]
    expressions = ["neutral", "neutral", "smiling", "smiling", "smiling", "neutral"]
    pairs = pair_indices(subjects, expressions, "neutral", ("smiling",))
    assert pairs.subjects == ("a", "b")
    assert pairs.source.tolist() == [0, 1] and pairs.targets.tolist() == [[2, 4]]
    assert pairs.dropped == ("c",)


def test_s3_faces_and_weights(s3, stacks, tmp_path):
    faces = write_faces_store("s3://test/faces.zarr", stacks, storage_options=s3)
    fit_weights(faces, "s3://test/weights.zarr", receptive_field=3, tile=8, scheduler="threads", storage_options=s3)
    model = load_weights("s3://test/weights.zarr", storage_options=s3)
    assert_same(model, reference(stacks, 3, "per_channel"))


def test_worker_killed_mid_training(tmp_path):
    """SIGKILL one worker process of a LocalCluster while tiles run: the run completes and
    equals the reference (lost tasks are recomputed; finished tiles are not lost)."""
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (60, 64, 64, 1), dtype=np.uint8)
    Y = np.clip(X * 0.8 + rng.integers(0, 40, X.shape), 0, 255).astype(np.uint8)
    faces = write_faces_store(str(tmp_path / "faces.zarr"), {"neutral": X, "smiling": Y})
    out = str(tmp_path / "w.zarr")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)
        result: dict = {}

        def train():
            try:
                result["report"] = fit_weights(faces, out, receptive_field=9, tile=8, client=client)
            except Exception as exc:  # pragma: no cover - reported below
                result["error"] = exc

        thread = threading.Thread(target=train)
        thread.start()
        killed = False
        deadline = time.monotonic() + 60
        while thread.is_alive() and time.monotonic() < deadline:
            try:
                done = zarr.open_group(open_store(out), mode="r")["tile_done"][...]
            except Exception:
                done = np.zeros(1)
            if not killed and 0 < done.sum() < done.size // 2:
                os.kill(next(iter(pids.values())), signal.SIGKILL)
                killed = True
            time.sleep(0.02)
        thread.join(timeout=120)
    assert killed, "the run finished before a worker could be killed; make it longer"
    assert "error" not in result, result.get("error")
    assert result["report"].tiles_computed == 64
    assert_same(load_weights(out), MaskedRidge(9, 0.4).fit(X, Y))


def test_auto_hyperparameters_stored_in_attrs(faces, tmp_path):
    out = str(tmp_path / "w.zarr")
    report = fit_weights(
        faces, out, receptive_field="auto", alpha="auto", receptive_fields=(1, 3),
        alphas=(0.1, 1.0, 10.0), tile=8, scheduler="synchronous",
    )
    sel = report.selection
    assert sel["receptive_field"] in (1, 3) and sel["alpha"] in (0.1, 1.0, 10.0)
    model = load_weights(out)
    assert model.receptive_field == sel["receptive_field"] and model.alpha == sel["alpha"]
    stored = model.meta["selection"]
    assert [s["receptive_field"] for s in stored["scores"]] == [1, 3]
    assert len(stored["scores"][0]["loo_mse"]) == 3


def test_train_on_a_subset_of_subjects(faces, stacks, tmp_path):
    out = str(tmp_path / "w.zarr")
    keep = [f"s{i:03d}" for i in range(0, 14, 2)]
    report = fit_weights(faces, out, receptive_field=3, tile=8, scheduler="synchronous", subjects=keep)
    assert report.n_pairs == 7
    ref = MaskedRidge(3, 0.4).fit(stacks["neutral"][::2], stacks["smiling"][::2])
    assert_same(load_weights(out), ref)
    with pytest.raises(ValueError, match=r"subjects without a complete pair in the store: \['zz'\]"):
        fit_weights(faces, str(tmp_path / "w2.zarr"), scheduler="synchronous", subjects=["zz"])


def test_tile_reads_and_writes_retry_transient_storage_errors(tmp_path, monkeypatch):
    """A dropped connection while reading or writing a tile is retried (with backoff) and the
    weights are those of an undisturbed run; a missing store is not retried."""
    from mlrdist.io import stores, weights_store

    monkeypatch.setattr(stores, "RETRY_DELAYS", (0.0, 0.0))
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    faces = write_faces_store(str(tmp_path / "faces.zarr"), {"neutral": X, "smiling": X // 2})
    fit_weights(faces, str(tmp_path / "calm.zarr"), receptive_field=3, tile=8, scheduler="synchronous")
    real_write = weights_store.write_tile
    failures = {"write": 2}

    def flaky_write(*args, **kwargs):
        if failures["write"]:
            failures["write"] -= 1
            raise ConnectionResetError("connection reset by peer")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(weights_store, "write_tile", flaky_write)
    fit_weights(faces, str(tmp_path / "flaky.zarr"), receptive_field=3, tile=8, scheduler="synchronous")
    assert failures["write"] == 0
    calm, flaky = load_weights(str(tmp_path / "calm.zarr")), load_weights(str(tmp_path / "flaky.zarr"))
    np.testing.assert_array_equal(calm.coef_, flaky.coef_)
    calls = {"n": 0}

    def missing(*args, **kwargs):
        calls["n"] += 1
        raise FileNotFoundError("no such store")

    monkeypatch.setattr(weights_store, "write_tile", missing)
    with pytest.raises(FileNotFoundError):
        fit_weights(faces, str(tmp_path / "gone.zarr"), receptive_field=3, tile=8, scheduler="synchronous")
    assert calls["n"] == 1
