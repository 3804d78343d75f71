"""ingest_images: layout, alignment, idempotence, crash consistency, bad inputs, S3, schedulers."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from PIL import Image

from mlrdist.align import AlignSpec
from mlrdist.datasets import load_sample
from mlrdist.ingest import ingest_images
from mlrdist.io.faces_store import open_faces
from tests._images import bad_files, encode, face_like, odd_good_files, tem_text

SCALE = 3  # fake London photos: the 128 px sample upscaled to 384 px
SHIFT = np.array([7.0, -5.0])  # smiling shots moved by a small similarity (scale, rotation, shift)
ROT, ZOOM = 2.0, 1.02


def _moved(img: Image.Image, centre: np.ndarray):
    th = math.radians(ROT)
    A = ZOOM * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    Ainv = np.linalg.inv(A)
    off = centre - Ainv @ (centre + SHIFT)
    data = (*Ainv[0], off[0], *Ainv[1], off[1])
    moved = img.transform(img.size, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)
    return moved, lambda p: (np.asarray(p) - centre) @ A.T + centre + SHIFT


def make_london(root, subjects=None):
    """A London-like tree from the packaged sample: neutral/NNN_03.jpg + .tem (pupils known),
    smiling/NNN_08.jpg moved by a similarity and without a template. Returns the smiling
    shots' true eyes by file name."""
    ds = load_sample()
    eyes = AlignSpec(size=128).eyes_px() * SCALE
    truth = {}
    for i in range(ds.sizes["sample"]):
        sid, expr = str(ds["subject"].values[i]), str(ds["expression"].values[i])
        if subjects is not None and sid not in subjects:
            continue
        img = Image.fromarray(ds["image"].values[i]).resize((128 * SCALE,) * 2, Image.Resampling.BICUBIC)
        folder = root / expr
        folder.mkdir(parents=True, exist_ok=True)
        if expr == "neutral":
            img.save(folder / f"{sid}_03.jpg", quality=92)
            (folder / f"{sid}_03.tem").write_text(tem_text(eyes))
        else:
            moved, fwd = _moved(img, eyes.mean(axis=0))
            moved.save(folder / f"{sid}_08.jpg", quality=92)
            truth[f"{sid}_08.jpg"] = fwd(eyes)
    return truth


@pytest.fixture
def london(tmp_path):
    root = tmp_path / "london"
    truth = make_london(root, {"001", "002", "003", "010"})
    return root, truth


def test_layout_and_alignment(london, tmp_path):
    root, truth = london
    dest = str(tmp_path / "faces.zarr")
    report = ingest_images(str(root), dest, size=64, scheduler="synchronous", batch_size=3)
    assert report.count("ingested") == 8 and not report.skipped and not report.unpaired_subjects
    ds = xr.open_zarr(dest, consolidated=False)
    assert ds["image"].dims == ("sample", "y", "x", "channel") and ds["image"].dtype == np.uint8
    assert ds["image"].shape == (8, 64, 64, 3)
    assert ds.attrs["size"] == [64, 64] and ds.attrs["colour"] == "rgb"
    assert ds.attrs["alignment"]["method"] == "landmarks+registration" and "mlrdist_version" in ds.attrs
    assert "figshare" in ds.attrs["citation"] and ds.attrs["n_committed"] == 8
    for i, url in enumerate(ds["source"].values):
        assert hashlib.sha256(open(url.replace("file://", ""), "rb").read()).hexdigest() == ds["digest"].values[i]
    arr = zarr.open_group(dest, mode="r")["image"]
    assert arr.chunks == (64, 64, 64, 3) and arr.compressors  # about 1 MB per chunk
    for rec in report.records:  # smiling shots: registered eyes within a pixel of the truth (384 px)
        if rec.method == "registration":
            err = np.hypot(*(np.array(rec.eyes) - truth[rec.url.rsplit("/", 1)[1]]).T)
            assert err.max() < 1.0 and rec.ncc > 0.9, (rec.url, err)
    # the aligned neutral equals the sample (same geometry, JPEG round trip and resampling aside)
    sample = load_sample()
    ref = sample["image"].values[0].astype(float)
    got = open_faces(dest)["image"].values[0].astype(float)
    assert np.abs(np.asarray(Image.fromarray(ref.astype(np.uint8)).resize((64, 64))) - got).mean() < 6


def test_rerun_adds_nothing_grown_source_adds_new(tmp_path):
    root, dest = tmp_path / "src", str(tmp_path / "faces.zarr")
    make_london(root, {"001", "002"})
    first = ingest_images(str(root), dest, size=48, scheduler="threads")
    before = open_faces(dest).load()
    again = ingest_images(str(root), dest, size=48, scheduler="threads")
    assert again.count("ingested") == 0 and again.count("exists") == 4 and again.n_samples == 4
    make_london(root, {"001", "002", "003"})  # rewrites 001/002 with the same bytes, adds 003
    grown = ingest_images(str(root), dest, size=48, scheduler="threads")
    assert (first.count("ingested"), grown.count("ingested"), grown.count("exists")) == (4, 2, 4)
    after = open_faces(dest).load()
    assert after.sizes["sample"] == 6 and sorted(after["subject"].values[4:]) == ["003", "003"]
    xr.testing.assert_identical(after.isel(sample=slice(0, 4)).drop_attrs(), before.drop_attrs())


def test_killed_append_is_invisible_and_repaired(tmp_path):
    root, dest = tmp_path / "src", str(tmp_path / "faces.zarr")
    make_london(root, {"001", "002"})
    ingest_images(str(root), dest, size=48, scheduler="synchronous")
    g = zarr.open_group(dest, mode="a")  # a run killed after growing image and one coord
    g["image"].resize((7, 48, 48, 3))
    g["image"][4:7] = 255
    g["subject"].resize((6,))
    assert open_faces(dest).sizes["sample"] == 4
    make_london(root, {"001", "002", "003"})
    report = ingest_images(str(root), dest, size=48, scheduler="synchronous")
    assert report.count("ingested") == 2
    ds = xr.open_zarr(dest, consolidated=False)
    assert ds.sizes["sample"] == 6 and ds.attrs["n_committed"] == 6
    assert (ds["image"].values[4:] != 255).any() and list(ds["subject"].values[4:]) == ["003", "003"]


def _flat_folder(root):
    root.mkdir(parents=True)
    good = {f"p{i}_happy.png": encode(face_like(10 + i)) for i in range(3)}
    files = {**good, **{f"{n.split('.')[0]}_x.{n.split('.')[1]}": b for n, b in bad_files().items()},
             **{f"{n.split('.')[0]}_x.{n.split('.')[1]}": b for n, b in odd_good_files().items()}}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


PATTERN = r"(?P<subject>[^/_]+)_(?P<expression>[^/.]+)\.\w+$"


def test_bad_inputs_skipped_with_url_and_reason(tmp_path):
    _flat_folder(tmp_path / "src")
    report = ingest_images(str(tmp_path / "src"), str(tmp_path / "f.zarr"), labels=PATTERN, size=32,
                           colour="gray", align="none", scheduler="threads", batch_size=2)
    skipped = {r.url.rsplit("/", 1)[1]: r.reason for r in report.skipped}
    assert set(skipped) == {"empty_x.png", "text_x.jpg", "truncated_x.jpg", "bomb_x.png"}
    assert skipped["empty_x.png"].startswith("empty") and skipped["bomb_x.png"].startswith("decompression-bomb")
    assert skipped["text_x.jpg"].startswith("not-an-image") and skipped["truncated_x.jpg"].startswith("truncated")
    assert report.count("ingested") == 3 + len(odd_good_files()) == report.n_samples
    ds = open_faces(str(tmp_path / "f.zarr"))
    assert ds["image"].shape == (8, 32, 32, 1) and ds.attrs["colour"] == "gray"
    text = report.summary()
    assert "decompression-bomb (1)" in text and "bomb_x.png" in text
    assert json.loads(report.to_json())["counts"] == {"ingested": 8, "exists": 0, "skipped": 4, "ignored": 0}


def test_zip_source_rejects_traversal(tmp_path):
    path = tmp_path / "faces.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(2):
            zf.writestr(f"d/s{i}_neutral.png", encode(face_like(i)))
            zf.writestr(f"d/s{i}_smiling.png", encode(face_like(i + 5)))
        zf.writestr("../s9_neutral.png", encode(face_like(9)))
    report = ingest_images(str(path), str(tmp_path / "f.zarr"), labels=PATTERN, size=32, align="none",
                           scheduler="synchronous")
    assert report.count("ingested") == 4
    assert [r.reason for r in report.skipped] == ["rejected: path traversal ('..') in archive"]
    assert report.skipped[0].url.startswith("zip://../s9_neutral.png::")
    assert not (tmp_path.parent / "s9_neutral.png").exists()


def test_identical_files_within_subject_are_an_invalid_pair(tmp_path):
    root = tmp_path / "yale"
    root.mkdir()
    for sid in ("04", "05"):
        for j, expr in enumerate(("normal", "happy")):
            (root / f"{sid}_{expr}.png").write_bytes(encode(face_like(int(sid) * 10 + j).convert("L")))
    shutil.copy(root / "04_normal.png", root / "04_sad.png")
    report = ingest_images(str(root), str(tmp_path / "f.zarr"), labels="yale", size=32, colour="gray",
                           align="none", scheduler="synchronous")
    assert [r.url.rsplit("/", 1)[1] for r in report.skipped] == ["04_sad.png"]
    assert report.invalid_pairs and report.invalid_pairs[0]["expressions"] == ["normal", "sad"]
    assert report.n_samples == 4 and report.unpaired_subjects == {}


def test_no_image_matching_the_labels_is_an_error_with_a_hint(tmp_path):
    root = tmp_path / "yale"
    root.mkdir()
    for sid in ("04", "05"):
        (root / f"{sid}_normal.png").write_bytes(encode(face_like(int(sid)).convert("L")))
    with pytest.raises(ValueError, match=r"none of the 2 images matches the labels .*'yale'"):
        ingest_images(str(root), str(tmp_path / "f.zarr"), size=32, colour="gray", align="none",
                      scheduler="synchronous")  # the default labels are London's
    assert not (tmp_path / "f.zarr").exists()


def test_unpaired_subjects_reported(tmp_path):
    root = tmp_path / "src"
    make_london(root, {"001", "002"})
    (root / "smiling" / "002_08.jpg").unlink()
    report = ingest_images(str(root), str(tmp_path / "f.zarr"), size=32, scheduler="synchronous")
    assert report.unpaired_subjects == {"002": ["smiling"]}
    assert "002 lacks smiling" in report.summary()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"colour": "cmyk"}, "colour"), ({"align": "magic"}, "align"), ({"size": 20}, "32..1024"),
     ({"labels": "(?P<subject>x)"}, "named groups"), ({"labels": "(unclosed"}, "regex"),
     ({"batch_size": 0}, "batch_size")],
)
def test_configuration_errors_fail_fast(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ingest_images(str(tmp_path / "does-not-matter"), str(tmp_path / "f.zarr"), **kwargs)


@pytest.fixture
def no_detector(monkeypatch):
    """As if the 'align' extra were not installed."""
    from mlrdist import detect

    monkeypatch.setattr(detect, "detector_available", lambda: None)
    monkeypatch.setattr("mlrdist.ingest.detector_available", lambda: None)


def test_detector_requested_but_missing_fails_fast_with_the_fix(tmp_path, no_detector):
    root = tmp_path / "src"
    root.mkdir()
    (root / "a_neutral.png").write_bytes(encode(face_like(1)))
    with pytest.raises(ValueError, match=r"mlrdist\[align\].*align='none'"):
        ingest_images(str(root), str(tmp_path / "f.zarr"), labels=PATTERN, align="detector", scheduler="synchronous")
    assert not (tmp_path / "f.zarr").exists()


def test_images_needing_a_missing_detector_are_skipped_not_fatal(london, tmp_path, no_detector):
    """align='auto': an image without landmarks is reported (a corrupt one as corrupt) and the
    rest is ingested."""
    root, _ = london
    (root / "neutral" / "777_03.jpg").write_bytes(encode(face_like(7), "JPEG"))  # fine, but no template
    (root / "neutral" / "888_03.jpg").write_bytes(b"not a jpeg at all")
    report = ingest_images(str(root), str(tmp_path / "f.zarr"), size=32, scheduler="synchronous")
    assert report.count("ingested") == 8
    reasons = {r.url.rsplit("/", 1)[-1]: r.reason for r in report.skipped}
    assert "mlrdist[align]" in reasons["777_03.jpg"]
    assert reasons["888_03.jpg"].startswith("not-an-image")


def test_store_with_other_settings_refused(london, tmp_path):
    root, _ = london
    dest = str(tmp_path / "f.zarr")
    ingest_images(str(root), dest, size=32, scheduler="synchronous")
    with pytest.raises(ValueError, match="size"):
        ingest_images(str(root), dest, size=48, scheduler="synchronous")


def test_s3_source_and_dest(s3, tmp_path):
    import s3fs

    root = tmp_path / "src"
    make_london(root, {"001", "002"})
    s3fs.S3FileSystem(**s3).put(str(root), "test/london", recursive=True)
    report = ingest_images("s3://test/london", "s3://test/faces.zarr", size=32, storage_options=s3,
                           scheduler="threads")
    assert report.count("ingested") == 4, report.summary()
    remote = open_faces("s3://test/faces.zarr", s3).load()
    assert remote["source"].values[0].startswith("s3://test/london/")
    local = ingest_images(str(root), str(tmp_path / "f.zarr"), size=32, scheduler="threads")
    assert local.count("ingested") == 4
    np.testing.assert_array_equal(remote["image"].values, open_faces(str(tmp_path / "f.zarr"))["image"].values)
    again = ingest_images("s3://test/london", "s3://test/faces.zarr", size=32, storage_options=s3,
                          scheduler="threads")
    assert again.count("exists") == 4 and again.n_samples == 4


def test_local_cluster(london, tmp_path):
    distributed = pytest.importorskip("distributed")
    root, _ = london
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        report = ingest_images(str(root), str(tmp_path / "f.zarr"), size=32, client=client, batch_size=2)
    assert report.count("ingested") == 8 and report.dashboard
    same = ingest_images(str(root), str(tmp_path / "g.zarr"), size=32, scheduler="synchronous")
    np.testing.assert_array_equal(open_faces(str(tmp_path / "f.zarr"))["image"].values,
                                  open_faces(str(tmp_path / "g.zarr"))["image"].values)
    assert same.count("ingested") == 8


def test_cli_writes_report(london, tmp_path, capsys):
    from mlrdist.cli import main

    root, _ = london
    dest = tmp_path / "out" / "faces.zarr"
    code = main(["ingest", str(root), str(dest), "--size", "32"])  # embedded LocalCluster
    assert code == 0
    assert "ingested" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "faces.ingest-report.json").read_text())
    assert report["counts"]["ingested"] == 8
    # a second store in the same folder keeps its own report
    assert main(["ingest", str(root), str(tmp_path / "out" / "other.zarr"), "--size", "32", "--scheduler", "threads"]) == 0
    assert (tmp_path / "out" / "other.ingest-report.json").exists()
    assert json.loads((tmp_path / "out" / "faces.ingest-report.json").read_text()) == report


def test_pairs_from_an_ingested_store(london, tmp_path):
    from mlrdist.datasets import pairs

    root, _ = london
    ingest_images(str(root), str(tmp_path / "f.zarr"), size=32, scheduler="synchronous")
    X, Y, subjects = pairs(open_faces(str(tmp_path / "f.zarr")))
    assert X.shape == Y["smiling"].shape == (4, 32, 32, 3) and subjects == ["001", "002", "003", "010"]


@pytest.mark.full_data
def test_full_london_set(data_dir, tmp_path):
    from mlrdist.cli import main

    report = ingest_images(str(data_dir / "london-face-set"), str(tmp_path / "f.zarr"), size=64,
                           scheduler="threads", batch_size=24)
    assert report.count("ingested") == 204 and report.n_samples == 204
    assert not report.skipped and report.count("ignored") == 22  # wild/, animals/: not failures
    # the README's own command exits 0 on the whole set (its wild/ and animals/ are ignored)
    assert main(["ingest", str(data_dir / "london-face-set"), str(tmp_path / "f.zarr"), "--size", "64",
                 "--scheduler", "threads"]) == 0
    assert min(r.ncc for r in report.records if r.ncc is not None) > 0.8
    assert not report.unpaired_subjects


def test_commits_every_batch(london, tmp_path, monkeypatch):
    """With 3-sample chunks and 2-file batches, rows are committed batch by batch across
    chunk boundaries and equal a one-shot synchronous run."""
    from mlrdist.io import faces_store

    root, _ = london
    monkeypatch.setattr(faces_store, "sample_chunk", lambda shape, colour: 3)
    dest = str(tmp_path / "f.zarr")
    ingest_images(str(root), dest, size=32, scheduler="threads", batch_size=2)
    arr = zarr.open_group(dest, mode="r")["image"]
    assert arr.chunks[0] == 3 and arr.shape[0] == 8
    monkeypatch.undo()
    ingest_images(str(root), str(tmp_path / "g.zarr"), size=32, scheduler="synchronous", batch_size=64)
    xr.testing.assert_identical(open_faces(dest).load().drop_attrs(),
                                open_faces(str(tmp_path / "g.zarr")).load().drop_attrs())


KILL_SCRIPT = """
import sys
from mlrdist.io import faces_store
from mlrdist.ingest import ingest_images
faces_store.sample_chunk = lambda shape, colour: 2  # small chunks
ingest_images(sys.argv[1], sys.argv[2], size=32, scheduler="synchronous", batch_size=2)
"""


def test_sigkilled_run_leaves_a_consistent_store(tmp_path):
    """SIGKILL an ingest between commits: the committed rows are intact, and a rerun completes
    the store without duplicates."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root, dest = tmp_path / "src", str(tmp_path / "f.zarr")
    make_london(root)
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(script), str(root), dest], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if zarr.open_group(dest, mode="r").attrs.get("n_committed", 0) >= 4:
                break
        except Exception:  # noqa: BLE001 - not created yet
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ds = open_faces(dest).load()
    n = ds.sizes["sample"]
    assert 4 <= n < 24, n  # killed mid-run
    for url, digest in zip(ds["source"].values, ds["digest"].values, strict=True):
        assert hashlib.sha256(open(url.replace("file://", ""), "rb").read()).hexdigest() == digest
    report = ingest_images(str(root), dest, size=32, scheduler="synchronous")
    full = open_faces(dest).load()
    assert full.sizes["sample"] == 24 and len(set(full["digest"].values)) == 24
    assert report.count("exists") == n and report.count("ingested") == 24 - n


def test_empty_source_is_an_error_at_once(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images found in"):
        ingest_images(str(tmp_path / "empty"), str(tmp_path / "f.zarr"), scheduler="synchronous")
    assert not (tmp_path / "f.zarr").exists()


def test_rerun_skips_unchanged_files_without_reading_them(london, tmp_path):
    """A rerun knows files by URL and content version: a file whose version is unchanged is
    not read. Shown by scrambling files in place and putting their version (size, mtime,
    inode) back: read, they would be corrupt."""
    import os

    root, _ = london
    dest = str(tmp_path / "f.zarr")
    ingest_images(str(root), dest, size=32, scheduler="synchronous")
    for p in sorted(root.rglob("*_0[38].jpg")):
        st = os.stat(p)
        with open(p, "r+b") as f:
            f.write(b"\0" * st.st_size)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = ingest_images(str(root), dest, size=32, scheduler="synchronous")
    assert again.count("exists") == 8 and not again.skipped
    assert all("not read again" in r.reason for r in again.records if r.status == "exists")


def test_rerun_reads_a_replaced_file_again(london, tmp_path):
    import os

    root, _ = london
    dest = str(tmp_path / "f.zarr")
    ingest_images(str(root), dest, size=32, scheduler="synchronous")
    victim = sorted((root / "neutral").glob("*.jpg"))[0]
    data = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(data)  # the same bytes in a new file: another inode and mtime
    os.utime(victim, (1, 1))
    again = ingest_images(str(root), dest, size=32, scheduler="synchronous")
    by_url = {r.url.rsplit("/", 1)[-1]: r.reason for r in again.records}
    assert by_url[victim.name] == "digest already in the store"  # read, hashed, known
    assert sum("not read again" in r for r in by_url.values()) == 7


def test_killed_ingest_keeps_every_finished_batch(tmp_path):
    """40 images in batches of 4, killed after a few batches: the store keeps them all."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "src"
    root.mkdir()
    for i in range(40):
        (root / f"{i:02d}_normal.png").write_bytes(encode(face_like(i)))
    dest = str(tmp_path / "f.zarr")
    code = (
        "import sys; from mlrdist.ingest import ingest_images; "
        f"ingest_images({str(root)!r}, {dest!r}, labels='yale', size=32, align='none', "
        "scheduler='synchronous', batch_size=4)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 60
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            n = int(zarr.open_group(dest, mode="r").attrs.get("n_committed", 0))
        except Exception:  # noqa: BLE001 - not created yet
            n = 0
        if n >= 12:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = open_faces(dest).sizes["sample"]
    assert kept >= 12 and kept % 4 == 0 and kept < 40
