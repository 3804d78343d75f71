"""The packaged sample, pairing, data_home and fetch_london (over a local HTTP server)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile

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


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path / "www"``; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_london_downloads_checks_and_unpacks(tmp_path, http_root):
    """figshare's article zip wraps one zip per folder: both levels are unpacked in place, the
    download is verified and removed, and a second call finds the set without downloading."""
    root, base = http_root
    jpg = b"\xff\xd8 not really a jpeg \xff\xd9"
    tem = b"189\n1\t2\n"
    archive = _zip_bytes({
        "neutral.zip": _zip_bytes({"neutral/001_03.jpg": jpg, "neutral/001_03.tem": tem}),
        "smiling.zip": _zip_bytes({"smiling/001_08.jpg": jpg[::-1]}),
        "info.csv": b"face_id,face_age\n001,24\n",
    })
    (root / "london.zip").write_bytes(archive)
    digest = hashlib.sha256(archive).hexdigest()

    target = datasets.fetch_london(tmp_path / "data", url=f"{base}/london.zip", sha256=digest.upper())
    assert target == tmp_path / "data" / "london-face-set"
    assert (target / "neutral" / "001_03.jpg").read_bytes() == jpg
    assert (target / "neutral" / "001_03.tem").read_bytes() == tem
    assert (target / "smiling" / "001_08.jpg").read_bytes() == jpg[::-1]
    assert (target / "info.csv").exists()
    leftovers = [p.name for p in (tmp_path / "data").rglob("*") if p.suffix in (".zip", ".part")]
    assert leftovers == []
    # already there: no request is made (the server no longer has the file)
    (root / "london.zip").unlink()
    assert datasets.fetch_london(tmp_path / "data", url=f"{base}/london.zip") == target


def test_fetch_london_refuses_members_outside_dest(tmp_path, http_root):
    root, base = http_root
    (root / "evil.zip").write_bytes(_zip_bytes({"../../escaped.txt": b"x"}))
    with pytest.raises(ValueError, match="escapes"):
        datasets.fetch_london(tmp_path / "data", url=f"{base}/evil.zip")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "data" / "escaped.txt").exists()
    assert list((tmp_path / "data").iterdir()) == []  # neither the download nor a partial set stays


@pytest.mark.parametrize("where", ["missing file", "closed port"])
def test_fetch_london_download_failure_says_what_to_do(tmp_path, http_root, where):
    _, base = http_root
    if where == "closed port":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(OSError, match="MLRDIST_DATA") as info:
        datasets.fetch_london(tmp_path / "data", url=f"{base}/london.zip", timeout=5)
    assert "could not download" in str(info.value) and base in str(info.value)
    assert not list((tmp_path / "data").glob("*.part"))


def test_fetch_london_rejects_an_archive_without_the_expression_folders(tmp_path, http_root):
    root, base = http_root
    (root / "other.zip").write_bytes(_zip_bytes({"neutral_front/001_03.jpg": b"x"}))
    with pytest.raises(ValueError, match=r"no smiling/ folder|no neutral/ or smiling/ folder") as info:
        datasets.fetch_london(tmp_path / "data", url=f"{base}/other.zip")
    assert "neutral_front" in str(info.value)
    assert list((tmp_path / "data").iterdir()) == []
