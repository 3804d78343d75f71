"""Bulk synthesis from Zarr inputs: equals in-memory prediction, resumable, one output per
input, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import write_faces_store

from mlrdist.io.stores import open_store
from mlrdist.io.weights_store import load_weights
from mlrdist.kernels.apply import apply_region
from mlrdist.scaling import to_uint8
from mlrdist.synthesize import synthesize
from mlrdist.train import fit_weights


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("syn")
    rng = np.random.default_rng(11)
    X = rng.integers(0, 256, (10, 16, 12, 3), dtype=np.uint8)
    stacks = {
        "neutral": X,
        "smiling": np.clip(X * 0.8 + 30, 0, 255).astype(np.uint8),
        "sad": np.clip(X * 0.6, 0, 255).astype(np.uint8),
    }
    faces = write_faces_store(str(tmp / "faces.zarr"), stacks)
    weights = str(tmp / "weights.zarr")
    fit_weights(faces, weights, targets=("smiling", "sad"), receptive_field=3, scheduler="synchronous")
    return faces, weights


def float64_reference(weights: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """The stored weights' predictions in float64, rounded to 8 bits: what exact synthesis
    (:mod:`mlrdist.kernels.exact`) must give, byte for byte."""
    model = load_weights(weights)
    coef, intercept = (np.asarray(a, np.float64) for a in (model.coef_, model.intercept_))
    P = apply_region(images / 255.0, coef, intercept, colour=model.colour, pad=model.receptive_field // 2)
    return {t: to_uint8(P[i]) for i, t in enumerate(model.targets_)}


def test_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(
        to_uint8(np.array([-0.2, 0.0, 0.5 / 255, 0.49 / 255, 0.5, 1.0, 1.3])), [0, 0, 1, 0, 128, 255, 255]
    )


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_zarr_to_zarr_equals_in_memory(trained, tmp_path, scheduler):
    faces, weights = trained
    out = str(tmp_path / "out.zarr")
    report = synthesize(weights, faces, out, batch=7, scheduler=scheduler)
    assert report.converted == 30 and report.targets == ["smiling", "sad"]
    ds = xr.open_zarr(faces, consolidated=False)
    got = xr.open_zarr(out, consolidated=False)
    ref = float64_reference(weights, ds["image"].values)
    for t in ("smiling", "sad"):
        np.testing.assert_array_equal(got["image"].sel(target=t).values, ref[t])
    # the inputs' sample coordinates come along
    assert list(got["subject"].values) == list(ds["subject"].values)


def test_the_same_bytes_for_any_batch_size(trained, tmp_path):
    """A face's output depends on that face only: not on its batch, its neighbours in the
    batch or the number of them (the kernel switches path at eight images)."""
    faces, weights = trained
    outs = []
    for batch in (1, 7, 9, 30):
        out = str(tmp_path / f"out{batch}.zarr")
        synthesize(weights, faces, out, batch=batch, scheduler="threads")
        outs.append(zarr.open_group(open_store(out))["image"][...])
    for other in outs[1:]:
        np.testing.assert_array_equal(other, outs[0])


def test_resume_converts_only_missing_batches(trained, tmp_path):
    faces, weights = trained
    out = str(tmp_path / "out.zarr")
    synthesize(weights, faces, out, batch=8, scheduler="threads")
    group = zarr.open_group(open_store(out), mode="r+")
    before = group["image"][...]
    group["batch_done"][1] = 0
    group["image"][:, 8:16] = 0
    again = synthesize(weights, faces, out, batch=8, scheduler="threads")
    assert (again.converted, again.skipped_done) == (8, 22)
    np.testing.assert_array_equal(zarr.open_group(open_store(out))["image"][...], before)
    assert synthesize(weights, faces, out, batch=8, scheduler="threads").converted == 0


def test_refuses_other_weights_without_overwrite(trained, tmp_path):
    faces, weights = trained
    out = str(tmp_path / "out.zarr")
    synthesize(weights, faces, out, batch=8, scheduler="synchronous")
    with pytest.raises(ValueError, match="already hold a synthesis from other weights, inputs or settings"):
        synthesize(weights, faces, out, batch=4, scheduler="synchronous")
    assert synthesize(weights, faces, out, batch=4, scheduler="synchronous", overwrite=True).converted == 30


def test_size_mismatch_is_explained(trained, tmp_path):
    _, weights = trained
    other = write_faces_store(str(tmp_path / "small.zarr"), {"neutral": np.zeros((2, 8, 8, 3), np.uint8)})
    with pytest.raises(ValueError, match=r"hold \(8, 8, 3\) images but the weights expect \(16, 12, 3\)"):
        synthesize(weights, other, str(tmp_path / "o.zarr"), scheduler="synchronous")


def test_incomplete_weights_are_refused(trained, tmp_path):
    faces, weights = trained
    import shutil

    broken = str(tmp_path / "broken.zarr")
    shutil.copytree(weights, broken)
    group = zarr.open_group(broken, mode="r+")
    group["tile_done"][0, 0] = 0
    meta = dict(group.attrs["mlrdist"])
    meta["complete"] = False
    group.attrs["mlrdist"] = meta
    with pytest.raises(ValueError, match="is incomplete"):
        synthesize(broken, faces, str(tmp_path / "o.zarr"), scheduler="synchronous")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("nan_coef", "coef holds non-finite values"),
        ("inf_intercept", "intercept holds non-finite values"),
        ("dtype", "unknown dtype 'float16'"),
        ("targets", "coef has shape"),
    ],
)
def test_damaged_weights_are_refused_before_any_input(tmp_path, capsys, damage, message):
    """NaN or infinite weights, an unknown dtype or targets inconsistent with the arrays: exit
    status 2, one line naming what is wrong, nothing written."""
    import zarr

    from mlrdist.cli import main

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    faces = write_faces_store(str(tmp_path / "faces.zarr"), {"neutral": X, "smiling": X // 2})
    weights = str(tmp_path / "w.zarr")
    fit_weights(faces, weights, receptive_field=3, scheduler="synchronous")
    g = zarr.open_group(weights, mode="r+")
    meta = dict(g.attrs["mlrdist"])
    if damage == "nan_coef":
        g["coef"][0, 0, 5, 7, 3] = np.nan
    elif damage == "inf_intercept":
        g["intercept"][0, 0, 2, 2] = np.inf
    elif damage == "dtype":
        meta["config"] = {**meta["config"], "dtype": "float16"}
    else:
        meta["config"] = {**meta["config"], "targets": ["smiling", "sad"]}
    g.attrs["mlrdist"] = meta
    out = tmp_path / "out.zarr"
    assert main(["synthesize", weights, faces, str(out), "--scheduler", "synchronous"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "w.zarr" in err[0], err
    assert not out.exists()
