"""The packaged sample, pairing, data_home and fetch_london's argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from mlrdist import datasets


def test_load_sample_layout():
    ds = datasets.load_sample()
    assert ds["image"].dims == ("sample", "y", "x", "channel")
    assert ds["image"].shape == (24, 128, 128, 3) and ds["image"].dtype == np.uint8
    for name in ("subject", "expression", "source", "digest"):
        assert ds[name].dims == ("sample",)
    assert set(ds["expression"].values) == {"neutral", "smiling"}
    assert len(set(ds["subject"].values)) == 12
    assert ds.attrs["size"] == [128, 128] and ds.attrs["colour"] == "rgb"
    assert "10.6084/m9.figshare.5047666.v5" in ds.attrs["citation"]
    assert ds.attrs["alignment"]["left_eye"] == [0.35, 0.4]
    assert all(len(d) == 64 for d in ds["digest"].values)


def test_sample_is_aligned():
    """Across subjects and expressions the eye rows are darker than the cheeks at the same x
    (a crude check that faces are upright and the eyes sit at 0.4 H)."""
    ds = datasets.load_sample()
    gray = ds["image"].values.mean(axis=-1)
    eye_row = gray[:, 49:54, 40:50].mean(axis=(1, 2))
    cheek = gray[:, 62:67, 40:50].mean(axis=(1, 2))
    assert np.all(eye_row < cheek)


def test_pairs_by_subject():
    ds = datasets.load_sample()
    X, Y, subjects = datasets.pairs(ds)
    assert X.shape == (12, 128, 128, 3) and Y["smiling"].shape == X.shape
    assert subjects == sorted(subjects)
    i = int(np.flatnonzero((ds["subject"].values == subjects[3]) & (ds["expression"].values == "smiling"))[0])
    np.testing.assert_array_equal(Y["smiling"][3], ds["image"].values[i])


def test_pairs_drops_incomplete_subjects():
    ds = datasets.load_sample()
    ds = ds.isel(sample=[i for i in range(ds.sizes["sample"]) if not (
        ds["subject"].values[i] == "001" and ds["expression"].values[i] == "smiling")])
    X, Y, subjects = datasets.pairs(ds, "neutral", "smiling")
    assert "001" not in subjects and len(subjects) == 11
    with pytest.raises(ValueError, match="no subject"):
        datasets.pairs(ds, "neutral", ("angry",))


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MLRDIST_DATA", raising=False)
    assert datasets.data_home() is None
    monkeypatch.setenv("MLRDIST_DATA", str(tmp_path / "missing"))
    assert datasets.data_home() is None
    monkeypatch.setenv("MLRDIST_DATA", str(tmp_path))
    assert datasets.data_home() == tmp_path


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"sha256": "abc"}, "64 hex"), ({"url": "ftp://x"}, "http"), ({"sha256": "z" * 64}, "64 hex")],
)
def test_fetch_london_checks_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.fetch_london(tmp_path, **kwargs)


def test_fetch_london_checksum_mismatch(tmp_path):
    """A local file:// 'download' with the wrong digest is deleted and reported."""
    src = tmp_path / "fake.zip"
    src.write_bytes(b"not the set")
    with pytest.raises(ValueError, match="checksum mismatch"):
        datasets.fetch_london(tmp_path / "out", url=src.as_uri(), sha256="0" * 64)
    assert not list((tmp_path / "out").iterdir())
