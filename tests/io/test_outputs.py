"""open_atomic: a streamed output appears whole or not at all (local files and S3)."""

from __future__ import annotations

import fsspec
import pytest

from mlrdist.io.outputs import open_atomic


def test_local_output_appears_only_on_success(tmp_path):
    fs = fsspec.filesystem("file")
    target = tmp_path / "out" / "big.zip"
    with pytest.raises(RuntimeError, match="boom"):
        with open_atomic(fs, str(target)) as f:
            f.write(b"half")
            raise RuntimeError("boom")
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []
    with open_atomic(fs, str(target)) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in (tmp_path / "out").iterdir()] == ["big.zip"]


def test_s3_upload_is_aborted_on_error(s3):
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    big = b"x" * (6 * 2**20)  # past the first multipart block
    with pytest.raises(RuntimeError, match="boom"):
        with open_atomic(fs, "test/big.bin") as f:
            f.write(big)
            raise RuntimeError("boom")
    fs.invalidate_cache()
    assert not fs.exists("test/big.bin")
    with open_atomic(fs, "test/big.bin") as f:
        f.write(big)
        f.write(b"end")
    assert fs.cat_file("test/big.bin") == big + b"end"


def test_other_file_systems_get_the_file_only_on_success():
    fs = fsspec.filesystem("memory")
    with pytest.raises(RuntimeError, match="boom"):
        with open_atomic(fs, "/atomic/out.zip") as f:
            f.write(b"half")
            assert not fs.exists("/atomic/out.zip")
            raise RuntimeError("boom")
    assert not fs.exists("/atomic/out.zip")
    with open_atomic(fs, "/atomic/out.zip") as f:
        f.write(b"whole")
    assert fs.cat_file("/atomic/out.zip") == b"whole"
