"""Photo collections: aligned files, incremental inbox runs, bad inputs, archives, and
paste-back of faces located by landmark templates."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import write_faces_store
from PIL import Image
from test_synthesize import float64_reference

from mlrdist.synthesize import synthesize as synthesize_files
from mlrdist.train import fit_weights
from tests._images import tem_text


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w")
    rng = np.random.default_rng(2)
    X = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    Y = np.clip(X * 0.8 + 25, 0, 255).astype(np.uint8)
    faces = write_faces_store(str(tmp / "faces.zarr"), {"neutral": X, "smiling": Y})
    out = str(tmp / "weights.zarr")
    fit_weights(faces, out, receptive_field=3, scheduler="synchronous")
    return out


def save(path: Path, arr: np.ndarray, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


@pytest.fixture
def inbox(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "inbox"
    images = {}
    for i in range(5):
        rel = f"batch{i % 2}/face{i}.png"
        images[rel] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        save(root / rel, images[rel])
    return root, images


def test_aligned_files_equal_in_memory(weights, inbox, tmp_path):
    """Byte for byte the float64 model's prediction, whatever the batch."""
    root, images = inbox
    for batch in (1, 2, 5):
        out = tmp_path / f"out{batch}"
        report = synthesize_files(weights, str(root), str(out), batch=batch, align="none", detail="none",
                                  scheduler="threads")
        assert (report.converted, report.failed) == (5, {})
        for rel, img in images.items():
            got = np.asarray(Image.open(out / "smiling" / rel))
            np.testing.assert_array_equal(got, float64_reference(weights, img[None])["smiling"][0])


def test_incremental_inbox_converts_only_new_photos(weights, inbox, tmp_path):
    root, images = inbox
    out = tmp_path / "out"
    synthesize_files(weights, str(root), str(out), batch=2, align="none", scheduler="synchronous")
    stamp = (out / "smiling" / "batch0/face0.png").stat().st_mtime_ns
    save(root / "new/face9.png", np.zeros((32, 32, 3), np.uint8))
    again = synthesize_files(weights, str(root), str(out), batch=2, align="none", scheduler="synchronous")
    assert (again.converted, again.skipped_done) == (1, 5)
    assert (out / "smiling" / "new/face9.png").exists()
    assert (out / "smiling" / "batch0/face0.png").stat().st_mtime_ns == stamp
    # no partial files are left behind
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


def test_bad_inputs_reported_rest_converted(weights, inbox, tmp_path):
    root, _ = inbox
    (root / "zero.png").write_bytes(b"")
    (root / "notes.jpg").write_bytes(b"this is not an image")
    good = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good, format="PNG")
    (root / "truncated.png").write_bytes(good.getvalue()[:40])
    save(root / "small.png", np.zeros((20, 24, 3), np.uint8))
    out = tmp_path / "out"
    report = synthesize_files(weights, str(root), str(out), align="none", scheduler="threads")
    assert report.converted == 5
    reasons = {Path(k).name: v for k, v in report.failed.items()}
    assert set(reasons) == {"zero.png", "notes.jpg", "truncated.png", "small.png"}
    assert "empty" in reasons["zero.png"] and "not-an-image" in reasons["notes.jpg"]
    assert "image is 24x20 but the weights expect 32x32" in reasons["small.png"]
    # failures are not recorded as done: the next run reports them again
    assert set(synthesize_files(weights, str(root), str(out), align="none", scheduler="threads").failed) == set(report.failed)


def test_zip_output_and_format_choice(weights, inbox, tmp_path):
    root, images = inbox
    archive = tmp_path / "converted.zip"
    synthesize_files(weights, str(root), str(archive), format="jpg", align="none", scheduler="synchronous")
    with zipfile.ZipFile(archive) as zf:
        names = sorted(zf.namelist())
        assert zf.testzip() is None  # every member's CRC checks out
    assert names == sorted(f"smiling/{rel[:-4]}.jpg" for rel in images)
    # the tree the archive was built in is gone, and no temporary file is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted.zip", "inbox"]


def test_zip_output_keep_parts_makes_reruns_incremental(weights, inbox, tmp_path):
    root, images = inbox
    archive = tmp_path / "converted.zip"
    first = synthesize_files(weights, str(root), str(archive), keep_parts=True, align="none", scheduler="synchronous")
    assert first.converted == len(images) and (tmp_path / "converted.parts" / "smiling").is_dir()
    save(root / "late" / "new.png", np.zeros((32, 32, 3), np.uint8))
    again = synthesize_files(weights, str(root), str(archive), keep_parts=True, align="none", scheduler="synchronous")
    assert (again.converted, again.skipped_done) == (1, len(images))
    with zipfile.ZipFile(archive) as zf:
        assert len(zf.namelist()) == len(images) + 1


def test_cli_relative_zip_output_and_exit_status(weights, inbox, tmp_path, monkeypatch, capsys):
    """The README's form ``mlrdist synthesize W INPUTS converted.zip`` (a bare relative name);
    exit status 3 when some inputs were skipped, 2 on bad parameters."""
    from mlrdist.cli import main

    root, images = inbox
    monkeypatch.chdir(tmp_path)
    assert main(["synthesize", weights, str(root), "converted.zip", "--align", "none", "--scheduler", "synchronous"]) == 0
    with zipfile.ZipFile(tmp_path / "converted.zip") as zf:
        assert len(zf.namelist()) == len(images)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n")
    assert main(["synthesize", weights, str(root), "again.zip", "--align", "none", "--scheduler", "synchronous"]) == 3
    assert "broken.png" in capsys.readouterr().out
    for argv, message in [
        (["--batch", "0"], "batch must be a positive integer"),
        (["--preview", "p.png", "--preview-rows", "0"], "preview_rows must be a positive integer"),
    ]:
        assert main(["synthesize", weights, str(root), "out3", *argv, "--scheduler", "synchronous"]) == 2
        assert message in capsys.readouterr().err
    faces = str(tmp_path / "faces.zarr")
    write_faces_store(faces, {"neutral": np.zeros((2, 32, 32, 3), np.uint8)})
    assert main(["synthesize", weights, faces, "faces-out.zip", "--scheduler", "synchronous"]) == 2
    assert "a .zip output is for photo collections" in capsys.readouterr().err
    assert not (tmp_path / "faces-out.zip").exists()


def test_paste_back_with_landmark_templates(weights, tmp_path):
    rng = np.random.default_rng(4)
    photo = np.full((120, 100, 3), 90, np.uint8)
    photo[30:80, 25:75] = rng.integers(0, 256, (50, 50, 3))
    root = tmp_path / "wild"
    save(root / "person.jpg", photo, "JPEG")
    # eyes at (40, 45) and (60, 45): a 20 px eye distance
    (root / "person.tem").write_text(tem_text([[40, 45], [60, 45]]))
    save(root / "noface.png", np.zeros((50, 60, 3), np.uint8))
    out = tmp_path / "out"
    report = synthesize_files(weights, str(root), str(out), align="landmarks", no_face="skip", scheduler="synchronous")
    assert report.converted == 1 and [Path(u).name for u in report.no_face] == ["noface.png"]
    got = np.asarray(Image.open(out / "smiling" / "person.jpg"))
    src = np.asarray(Image.open(root / "person.jpg"))
    assert got.shape == photo.shape
    assert np.abs(got[:8].astype(int) - src[:8]).max() <= 6  # far from the face: unchanged (JPEG noise)
    assert np.abs(got[40:70, 35:65].astype(int) - src[40:70, 35:65]).mean() > 3  # the face changed
    assert not (out / "smiling" / "noface.png").exists()
    copied = synthesize_files(weights, str(root), str(tmp_path / "out2"), align="landmarks", scheduler="synchronous")
    assert (tmp_path / "out2" / "smiling" / "noface.png").exists() and copied.no_face


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"align": "magic"}, "align must be one of"),
        ({"no_face": "drop"}, "no_face must be 'copy' or 'skip'"),
        ({"format": "gif"}, "format must be one of"),
        ({"batch": 0}, "batch must be a positive integer"),
    ],
)
def test_bad_options(weights, inbox, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthesize_files(weights, str(inbox[0]), str(tmp_path / "o"), **kwargs)


def test_missing_inputs(weights, tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder, archive or glob match"):
        synthesize_files(weights, str(tmp_path / "nope"), str(tmp_path / "o"), scheduler="synchronous")


def test_detector_handles_every_face_of_a_photo(weights, data_dir, tmp_path):
    """Two real Yale faces side by side: both are detected, synthesised and pasted back."""
    from mlrdist.detect import detect_faces, detector_available

    if detector_available() is None:
        pytest.skip("no face detector installed (pip install 'mlrdist[align]')")
    yale = data_dir / "yale-faces" / "original"
    a = np.asarray(Image.open(yale / "01_normal.png").convert("RGB"))
    b = np.asarray(Image.open(yale / "02_normal.png").convert("RGB"))
    photo = np.concatenate([a, b], axis=1)
    eyes = [f.eyes for f in detect_faces(photo)]
    assert len(eyes) == 2 and {int(e[0, 0] > a.shape[1]) for e in eyes} == {0, 1}
    root = tmp_path / "photos"
    save(root / "two.png", photo)
    report = synthesize_files(weights, str(root), str(tmp_path / "out"), align="detector", scheduler="synchronous")
    assert report.converted == 1 and not report.no_face
    got = np.asarray(Image.open(tmp_path / "out" / "smiling" / "two.png")).astype(int)
    for e in eyes:
        x, y = e.mean(axis=0).astype(int)
        assert np.abs(got[y : y + 40, x - 20 : x + 20] - photo[y : y + 40, x - 20 : x + 20]).mean() > 2
    np.testing.assert_array_equal(got[:10, :10], photo[:10, :10])  # far from both faces


def test_photos_from_and_to_s3(weights, inbox, s3):
    import s3fs

    root, images = inbox
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(root), "test/inbox", recursive=True)
    report = synthesize_files(weights, "s3://test/inbox", "s3://test/out", storage_options=s3, align="none",
                              weights_storage_options=None, scheduler="threads")
    assert report.converted == 5 and not report.failed
    assert sorted(fs.find("test/out/smiling")) == sorted(f"test/out/smiling/{rel}" for rel in images)
    again = synthesize_files(weights, "s3://test/inbox", "s3://test/out", storage_options=s3, align="none",
                             weights_storage_options=None, scheduler="threads")
    assert again.converted == 0 and again.skipped_done == 5


def test_zip_output_streamed_to_s3(weights, inbox, s3):
    """The output archive is streamed into an (unseekable) S3 upload."""
    import io

    import s3fs

    root, images = inbox
    fs = s3fs.S3FileSystem(**s3)
    report = synthesize_files(weights, str(root), "s3://test/converted.zip", storage_options=s3, align="none", scheduler="synchronous")
    assert report.converted == len(images)
    with zipfile.ZipFile(io.BytesIO(fs.cat_file("test/converted.zip"))) as zf:
        assert sorted(zf.namelist()) == sorted(f"smiling/{rel}" for rel in images)
        assert zf.testzip() is None


def test_glob_characters_in_names_and_an_empty_collection(weights, tmp_path):
    """Names with "[", "*", "?" are files, not patterns (reading and zipping); an empty
    collection gives an empty archive and a zero report."""
    rng = np.random.default_rng(8)
    root = tmp_path / "odd"
    for name in ("face[1].png", "face1.png", "what?.png"):
        save(root / name, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(root.iterdir()):
            zf.write(p, p.name)
    for source in (root, archive):
        out = tmp_path / f"from-{source.name}.zip"
        report = synthesize_files(weights, str(source), str(out), align="none", scheduler="synchronous")
        assert (report.converted, report.failed) == (3, {})
        with zipfile.ZipFile(out) as zf:
            assert sorted(zf.namelist()) == ["smiling/face1.png", "smiling/face[1].png", "smiling/what?.png"]
            one, bracket = zf.read("smiling/face1.png"), zf.read("smiling/face[1].png")
        assert one != bracket
    (tmp_path / "empty").mkdir()
    report = synthesize_files(weights, str(tmp_path / "empty"), str(tmp_path / "none.zip"), align="none", scheduler="synchronous")
    assert (report.n_inputs, report.converted) == (0, 0)
    with zipfile.ZipFile(tmp_path / "none.zip") as zf:
        assert zf.namelist() == []


def test_never_overwrites_what_mlrdist_did_not_write(weights, inbox, tmp_path, capsys):
    """A user's file at an output path, or a .zip mlrdist did not write, is refused (exit 2,
    naming the path) unless --overwrite; mlrdist's own outputs (even from a run killed before
    its manifest) are rewritten freely."""
    from mlrdist.cli import main

    root, images = inbox
    out = tmp_path / "out"
    mine = out / "smiling" / "batch0" / "face0.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own file")
    args = ["--align", "none", "--scheduler", "synchronous"]
    assert main(["synthesize", weights, str(root), str(out), *args]) == 2
    err = capsys.readouterr().err
    assert "face0.png exists and was not written by mlrdist" in err and "--overwrite" in err
    assert mine.read_bytes() == b"my own file"
    assert main(["synthesize", weights, str(root), str(out), *args, "--overwrite"]) == 0
    assert mine.read_bytes() != b"my own file"
    # outputs of a batch killed before its manifest are mlrdist's: a rerun rewrites them
    pending = out / "_mlrdist" / "pending"
    pending.mkdir(exist_ok=True)
    for manifest in (out / "_mlrdist" / "manifests").iterdir():
        manifest.rename(pending / manifest.name)
    assert main(["synthesize", weights, str(root), str(out), *args]) == 0
    # a zip archive mlrdist did not write
    theirs = tmp_path / "theirs.zip"
    with zipfile.ZipFile(theirs, "w") as zf:
        zf.writestr("a.txt", "keep me")
    assert main(["synthesize", weights, str(root), str(theirs), *args]) == 2
    assert "theirs.zip exists and was not written by mlrdist" in capsys.readouterr().err
    ours = tmp_path / "ours.zip"
    assert main(["synthesize", weights, str(root), str(ours), *args]) == 0
    assert main(["synthesize", weights, str(root), str(ours), *args]) == 0  # its own archive: rewritten


def test_photo_tasks_close_at_the_byte_budget(weights, tmp_path, monkeypatch):
    """Photos with faces to align are batched up to PHOTO_BATCH, a task closing earlier once
    its files reach PHOTO_BATCH_BYTES (it holds them decoded); one manifest per task, and the
    outputs do not depend on the split."""
    import mlrdist.synthesize_photos as sp

    rng = np.random.default_rng(5)
    root = tmp_path / "wild"
    for i in range(6):
        photo = np.full((120, 100, 3), 90, np.uint8)
        photo[30:80, 25:75] = rng.integers(0, 256, (50, 50, 3))
        save(root / f"p{i}.png", photo)
        (root / f"p{i}.tem").write_text(tem_text([[40, 45], [60, 45]]))
    sizes = sorted(p.stat().st_size for p in root.glob("*.png"))
    assert sizes[-1] < 2 * sizes[0]  # any two files reach twice the smallest, no single one does
    outs = {}
    for budget, tasks in ((1 << 30, 1), (2 * sizes[0], 3), (1, 6)):
        monkeypatch.setattr(sp, "PHOTO_BATCH_BYTES", budget)
        out = tmp_path / f"out{tasks}"
        report = synthesize_files(weights, str(root), str(out), align="landmarks", scheduler="synchronous")
        assert report.converted == 6
        assert len(list((out / "_mlrdist" / "manifests").glob("*.json"))) == tasks
        outs[tasks] = {p.name: p.read_bytes() for p in (out / "smiling").glob("*.png")}
    assert outs[1] == outs[3] == outs[6]


def test_preview_spreads_over_the_collection_wherever_it_lies(weights, tmp_path):
    """The preview's photos are a spread of the collection (not its first files), chosen by
    their relative paths: a copy of the collection elsewhere gives the same preview."""
    from mlrdist.synthesize_photos import _keep_spread

    rels = [f"d{i // 10}/p{i:02d}.png" for i in range(40)]
    picks = []
    for prefix in ("/data/a/", "s3://bucket/b/"):
        heap: list = []
        for rel in rels:
            _keep_spread(heap, prefix + rel, rel, None, 5)
        picks.append(sorted(rel for _, _, rel, _ in heap))
    assert picks[0] == picks[1] and len(picks[0]) == 5
    assert picks[0] != rels[:5] and len({r.split("/")[0] for r in picks[0]}) >= 2
    rng = np.random.default_rng(6)
    previews = []
    for where in ("one", "two/deeper"):
        root = tmp_path / where / "inbox"
        for i in range(12):
            save(root / f"face{i:02d}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) if where == "one"
                 else np.asarray(Image.open(tmp_path / "one" / "inbox" / f"face{i:02d}.png")))
        png = tmp_path / where / "preview.png"
        synthesize_files(weights, str(root), str(tmp_path / where / "out"), align="none", preview=str(png),
                         preview_rows=3, scheduler="synchronous")
        previews.append(np.asarray(Image.open(png)))
    np.testing.assert_array_equal(previews[0], previews[1])
