"""list_sources / read_batch over folders, globs, zip and tar archives, and S3 (moto server)."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from mlrdist.io.sources import iter_listings, list_sources, read_batch


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "faces"
    for name in ("neutral/001_03.jpg", "neutral/001_03.tem", "smiling/001_08.jpg", "notes.txt",
                 ".hidden/x.png", "deep/er/002.PNG"):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(name.encode())
    return root


def test_folder_tree(tree):
    listing = list_sources(str(tree))
    assert [f.name for f in listing.files] == ["deep/er/002.PNG", "neutral/001_03.jpg", "neutral/001_03.tem",
                                               "smiling/001_08.jpg"]
    assert [f.name for f in listing.images] == ["deep/er/002.PNG", "neutral/001_03.jpg", "smiling/001_08.jpg"]
    assert set(listing.sidecars) == {"neutral/001_03"}
    data = read_batch(listing.files)
    assert data[1] == b"neutral/001_03.jpg"


def test_iter_listings_one_directory_at_a_time(tree):
    """Folders come in parts, one per directory holding wanted files, depth first in name order,
    each image with its template; together they are list_sources' listing."""
    (tree / "deep" / "a.jpg").write_bytes(b"a")
    parts = list(iter_listings(str(tree)))
    assert [[f.name for f in p.files] for p in parts] == [
        ["deep/a.jpg"], ["deep/er/002.PNG"], ["neutral/001_03.jpg", "neutral/001_03.tem"], ["smiling/001_08.jpg"],
    ]
    assert parts[2].sidecars["neutral/001_03"].name == "neutral/001_03.tem"
    merged = sorted(f.name for p in parts for f in p.files)
    assert merged == [f.name for f in list_sources(str(tree)).files]
    with pytest.raises(FileNotFoundError):
        iter_listings(str(tree / "nope"))  # checked on the call, before any iteration


def test_unlistable_subfolder_is_reported_and_the_rest_listed(tree):
    from fsspec.implementations.local import LocalFileSystem

    class Flaky(LocalFileSystem):  # a folder the file system refuses to list
        def ls(self, path, detail=False, **kwargs):
            if path.rstrip("/").endswith("/neutral"):
                raise PermissionError(13, "Permission denied", path)
            return super().ls(path, detail=detail, **kwargs)

    from mlrdist.io import sources

    parts = list(sources._walk(Flaky(), str(tree), str(tree)))
    assert [f.name for p in parts for f in p.files] == ["deep/er/002.PNG", "smiling/001_08.jpg"]
    [(url, why)] = [r for p in parts for r in p.rejected]
    assert url.endswith("/neutral") and "cannot list folder" in why and "Permission denied" in why


def test_file_url_and_glob(tree):
    listing = list_sources(f"file://{tree}/*/*.jpg")
    assert [f.name for f in listing.files] == ["neutral/001_03.jpg", "smiling/001_08.jpg"]
    assert read_batch(listing.files) == [b"neutral/001_03.jpg", b"smiling/001_08.jpg"]


def test_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_sources(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        list_sources(str(tmp_path / "nope.zip"))


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_rejects_traversal(tmp_path):
    path = _zip(tmp_path / "a.zip", {"ok/1.png": b"one", "../evil.png": b"x", "/abs.png": b"y",
                                     "a/../../b.png": b"z"})
    listing = list_sources(str(path))
    assert [f.name for f in listing.files] == ["ok/1.png"]
    reasons = dict(listing.rejected)
    assert len(reasons) == 3 and all("archive" in r for r in reasons.values())
    assert any("evil" in url for url in reasons)
    assert read_batch(listing.files) == [b"one"]
    assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_tar_rejects_traversal_and_links(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    with tarfile.open(path, "w:gz" if suffix.endswith("gz") else "w") as tf:
        for name, data in {"s/1.png": b"one", "s/2.jpg": b"two", "../up.png": b"x", "/etc/x.png": b"y"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("s/link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    listing = list_sources(str(path))
    assert [f.name for f in listing.files] == ["s/1.png", "s/2.jpg"]
    assert all(f.url.startswith("tar://") for f in listing.files)
    reasons = sorted(r for _, r in listing.rejected)
    assert reasons == ["absolute path in archive", "link member in archive", "path traversal ('..') in archive"]
    assert read_batch(listing.files) == [b"one", b"two"]


def test_read_batch_reports_missing_file_per_file(tree):
    listing = list_sources(str(tree))
    (tree / "smiling" / "001_08.jpg").unlink()
    out = read_batch(listing.files)
    assert isinstance(out[3], Exception) and out[1] == b"neutral/001_03.jpg"


def test_s3_prefix(s3):
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    fs.pipe({"test/in/neutral/001_03.jpg": b"a", "test/in/smiling/001_08.jpg": b"b", "test/in/x.txt": b"c"})
    listing = list_sources("s3://test/in", s3)
    assert [f.name for f in listing.files] == ["neutral/001_03.jpg", "smiling/001_08.jpg"]
    assert listing.files[0].url == "s3://test/in/neutral/001_03.jpg"
    assert read_batch(listing.files, s3) == [b"a", b"b"]
    assert [[f.name for f in p.files] for p in iter_listings("s3://test/in", s3)] == [
        ["neutral/001_03.jpg"], ["smiling/001_08.jpg"],
    ]


def test_s3_zip(s3, tmp_path):
    import s3fs

    path = _zip(tmp_path / "a.zip", {"p/1.png": b"one", "../2.png": b"two"})
    s3fs.S3FileSystem(**s3).put(str(path), "test/a.zip")
    listing = list_sources("s3://test/a.zip", s3)
    assert [f.name for f in listing.files] == ["p/1.png"] and len(listing.rejected) == 1
    assert read_batch(listing.files, s3) == [b"one"]
