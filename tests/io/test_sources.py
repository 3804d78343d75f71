"""list_sources / read_batch over folders, globs, zip and tar archives, and S3 (moto server)."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
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


def _payloads(count=6):
    rng = np.random.default_rng(0)
    return {f"faces/{i:03d}.png": rng.integers(0, 256, 3000 + 517 * i, dtype=np.uint8).tobytes() for i in range(count)}


def _tar(path, members, mode="w"):
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_zip_members_read_by_byte_range_in_every_codec(tmp_path):
    members = _payloads(8)
    codecs = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for j, (name, data) in enumerate(members.items()):
            zf.writestr(name, data, compress_type=codecs[j % 4])
    listing = list_sources(str(path))
    assert all(f.span is not None for f in listing.files)
    assert read_batch(listing.files) == [members[f.name] for f in listing.files]
    # the central directory is not read again: members still read once it is gone
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        cd_start = min(i.header_offset for i in zf.infolist()) + sum(
            30 + len(i.filename.encode()) + len(i.extra) + i.compress_size for i in zf.infolist()
        )
    with open(path, "r+b") as fh:
        fh.seek(cd_start)
        fh.write(b"\0" * (size - cd_start))
    got = read_batch(listing.files)
    by_range = [f for f in listing.files if f.span[2] != zipfile.ZIP_LZMA]
    assert [got[listing.files.index(f)] for f in by_range] == [members[f.name] for f in by_range]
    lzma_read = [got[listing.files.index(f)] for f in listing.files if f.span[2] == zipfile.ZIP_LZMA]
    assert lzma_read and all(isinstance(g, zipfile.BadZipFile) for g in lzma_read)  # needs zipfile


def test_damaged_zip_member_is_reported_alone(tmp_path):
    members = _payloads(3)
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    listing = list_sources(str(path))
    victim = listing.files[1]
    with open(path, "r+b") as fh:  # flip a byte inside the second member's data
        fh.seek(victim.span[0] + 30 + len(victim.name) + 100)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    got = read_batch(listing.files)
    assert isinstance(got[1], zipfile.BadZipFile) and "CRC-32" in str(got[1]) and victim.url in str(got[1])
    assert got[0] == members[listing.files[0].name] and got[2] == members[listing.files[2].name]


def test_plain_tar_read_by_byte_range_without_scanning(tmp_path):
    members = _payloads(5)
    path = _tar(tmp_path / "a.tar", members)
    listing = list_sources(str(path))
    assert [f.span[:2] is not None for f in listing.files] == [True] * 5
    assert read_batch(listing.files[3:]) == [members[f.name] for f in listing.files[3:]]
    with open(path, "r+b") as fh:  # a scan from the start would stop at this header
        fh.write(b"\xff" * 512)
    assert read_batch(listing.files[2:4]) == [members[f.name] for f in listing.files[2:4]]
    # rewritten with the same size (members in another order): every header is checked
    size = path.stat().st_size
    _tar(path, dict(reversed(members.items())))
    assert path.stat().st_size == size
    got = read_batch(listing.files)
    assert all(g == members[f.name] or isinstance(g, OSError) for f, g in zip(listing.files, got, strict=True))
    assert sum(isinstance(g, OSError) for g in got) >= 4
    assert any("no valid tar header" in str(g) or "the archive changed" in str(g) for g in got)
    # truncated since it was listed: members past the end are reported, the others read
    _tar(path, members)
    with open(path, "r+b") as fh:
        fh.truncate(listing.files[4].span[0] + 10)
    got = read_batch(listing.files[3:])
    assert got[0] == members[listing.files[3].name]
    assert isinstance(got[1], OSError) and "truncated" in str(got[1])


def test_compressed_tar_has_no_ranges_and_stops_after_its_last_member(tmp_path):
    members = _payloads(4)
    path = _tar(tmp_path / "a.tar.gz", members, mode="w:gz")
    listing = list_sources(str(path))
    assert [f.span[0] for f in listing.files] == [0, 1, 2, 3]  # positions in the scan, no byte ranges
    assert read_batch(listing.files[:2]) == [members[f.name] for f in listing.files[:2]]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # the tail is damaged: the first members still read
    assert read_batch(listing.files[:1]) == [members[listing.files[0].name]]


def test_s3_archives_read_by_range(s3, tmp_path):
    import s3fs

    members = _payloads(4)
    fs = s3fs.S3FileSystem(**s3)
    fs.put(str(_tar(tmp_path / "a.tar", members)), "test/a.tar")
    fs.put(str(_zip(tmp_path / "a.zip", members)), "test/a.zip")
    for url in ("s3://test/a.tar", "s3://test/a.zip"):
        listing = list_sources(url, s3)
        assert all(f.span is not None for f in listing.files)
        assert read_batch(listing.files, s3) == [members[f.name] for f in listing.files]


@pytest.mark.parametrize("suffix", [".zip", ".tar", ".tar.gz"])
def test_the_last_member_of_a_name_wins(tmp_path, suffix):
    """As extraction would: an archive appended to (``tar -r``, a zip rewritten in place) may
    hold a name twice; the later member is read and the earlier one reported."""
    import warnings

    path = tmp_path / f"a{suffix}"
    entries = [("p/a.png", b"old"), ("p/b.png", b"bee"), ("p/a.png", b"new")]
    if suffix == ".zip":
        with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
            warnings.simplefilter("ignore")  # "Duplicate name"
            for name, data in entries:
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz" if suffix == ".tar.gz" else "w") as tf:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    listing = list_sources(str(path))
    assert [f.name for f in listing.files] == ["p/a.png", "p/b.png"]
    assert [r for _, r in listing.rejected] == ["superseded by a later member of the same name in the archive"]
    assert read_batch(listing.files) == [b"new", b"bee"]


def test_zip_symlink_member_is_a_rejected_link(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/face.png", b"\x89PNG")
        link = zipfile.ZipInfo("ok/evil.png")
        link.external_attr = (0o120777 << 16)  # a Unix symbolic link; its data is the target
        zf.writestr(link, "/etc/passwd")
    listing = list_sources(str(archive))
    assert [f.name for f in listing.files] == ["ok/face.png"]
    assert [(url.split("::")[0], why) for url, why in listing.rejected] == [("zip://ok/evil.png", "link member in archive")]


def test_s3_keys_with_dot_dot_are_reported_not_dropped(s3):
    import boto3

    client = boto3.client("s3", endpoint_url=s3["endpoint_url"], aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    for key in ("inbox/a.png", "inbox/sub/../b.png", "inbox/../c.png"):
        client.put_object(Bucket="test", Key=key, Body=b"x")
    listing = list_sources("s3://test/inbox", s3)
    assert [f.name for f in listing.files] == ["a.png"]
    assert sorted(url for url, _ in listing.rejected) == ["s3://test/inbox/..", "s3://test/inbox/sub/.."]
    assert all("path traversal" in why for _, why in listing.rejected)
