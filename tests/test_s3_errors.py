"""Object-store errors on a real SeaweedFS server with enforced credentials: an unreachable
endpoint, refused credentials and missing buckets end a command with exit status 2 and one
line naming the location and what to check, before any input is decoded; permanent errors
are not retried; the whole ingest -> train -> synthesize path works on the server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import _free_port, write_faces_store

import mlrdist
from mlrdist.cli import main
from mlrdist.io.location import S3_CONFIG_DEFAULTS, Location
from mlrdist.io.stores import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    check_readable,
    check_writable,
    close_s3_sessions,
    is_transient,
    retry_transient,
)

pytest.importorskip("s3fs")

SAMPLE = Path(mlrdist.__file__).parent / "data" / "sample"


def _cli(*argv: str, timeout: float = 60) -> tuple[int, str, str, float]:
    """``python -m mlrdist ARGV`` in a fresh process: (status, stdout, stderr, seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mlrdist", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - t0


def _options(server: dict, **changes) -> list[str]:
    return [f"-S{k}={v}" for k, v in {**server, **changes}.items()]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(autouse=True)
def _region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def stores(seaweed):
    """Buckets ``data`` (a small faces store and its weights) on the server."""
    import s3fs

    from mlrdist.train import fit_weights

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    fs = s3fs.S3FileSystem(**seaweed, skip_instance_cache=True)
    if not fs.exists("data"):
        fs.mkdir("data")
    close_s3_sessions([fs])
    X = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    faces = write_faces_store("s3://data/faces.zarr", {"neutral": X, "smiling": X // 2}, seaweed)
    fit_weights(faces, "s3://data/weights.zarr", receptive_field=3, scheduler="synchronous",
                storage_options=seaweed)
    return {"faces": faces, "weights": "s3://data/weights.zarr"}


# ----------------------------------------------------------------------------- the command line


def test_unreachable_endpoint_fails_in_seconds_in_one_line(tmp_path):
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    status, _, err, seconds = _cli("train", "s3://faces/faces.zarr", str(tmp_path / "w.zarr"),
                                   f"-Sendpoint_url={endpoint}", "-Skey=k", "-Ssecret=s", "--scheduler", "synchronous")
    line = _one_line(err)
    assert status == 2
    assert "s3://faces/faces.zarr" in line and endpoint in line and "connection refused" in line, line
    assert seconds < 20, seconds
    assert not (tmp_path / "w.zarr").exists()


def test_wrong_secret_names_the_store_and_the_credentials(seaweed, stores, tmp_path):
    status, _, err, _ = _cli("train", stores["faces"], str(tmp_path / "w.zarr"),
                             *_options(seaweed, secret="wrong"), "--scheduler", "synchronous")
    line = _one_line(err)
    assert status == 2
    assert stores["faces"] in line and "SignatureDoesNotMatch" in line and "AWS_SECRET_ACCESS_KEY" in line, line
    assert seaweed["endpoint_url"] in line


def test_missing_source_bucket_is_named(seaweed, tmp_path):
    status, _, err, _ = _cli("ingest", "s3://no-such-photos/london", str(tmp_path / "faces.zarr"),
                             *_options(seaweed), "--scheduler", "synchronous")
    line = _one_line(err)
    assert status == 2
    assert "s3://no-such-photos/london" in line and "bucket 'no-such-photos' does not exist" in line, line
    assert not (tmp_path / "faces.zarr").exists()


def _refuse(*_, **__):
    raise AssertionError("an input was read before the destination bucket was checked")


@pytest.mark.parametrize("stage", ["ingest", "train", "synthesize"])
def test_missing_destination_bucket_stops_before_any_input_is_read(stage, seaweed, stores, monkeypatch, capsys):
    import mlrdist.ingest
    import mlrdist.synthesize
    import mlrdist.train

    for module, name in [(mlrdist.ingest, "list_sources"), (mlrdist.ingest, "read_batch"),
                         (mlrdist.train, "_open_training_faces"), (mlrdist.synthesize, "load_weights"),
                         (mlrdist.synthesize, "open_group")]:
        monkeypatch.setattr(module, name, _refuse)
    dest = "s3://missing-bucket/out.zarr"
    argv = {"ingest": ["ingest", str(SAMPLE), dest, "--labels", "sample", "--size", "32"],
            "train": ["train", stores["faces"], dest],
            "synthesize": ["synthesize", stores["weights"], stores["faces"], dest]}[stage]
    capsys.readouterr()
    assert main([*argv, *_options(seaweed), "--scheduler", "synchronous"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert dest in line and "bucket 'missing-bucket' does not exist" in line, line


def test_ingest_train_synthesize_round_trip(seaweed, stores, capsys):
    import s3fs

    fs = s3fs.S3FileSystem(**seaweed, skip_instance_cache=True)
    for bucket in ("photos", "trip"):
        if not fs.exists(bucket):
            fs.mkdir(bucket)
    fs.put(str(SAMPLE / "neutral"), "photos/sample/", recursive=True)
    fs.put(str(SAMPLE / "smiling"), "photos/sample/", recursive=True)
    close_s3_sessions([fs])
    options = [*_options(seaweed), "--scheduler", "synchronous"]
    assert main(["ingest", "s3://photos/sample", "s3://trip/faces.zarr", "--labels", "sample", "--align", "none",
                 "--size", "32", *options]) == 0
    assert main(["train", "s3://trip/faces.zarr", "s3://trip/weights.zarr", "-k", "3", *options]) == 0
    assert main(["synthesize", "s3://trip/weights.zarr", "s3://trip/faces.zarr", "s3://trip/outputs.zarr",
                 *options]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ingested\s+24\b", out), out
    assert "synthesised 24 of 24" in out, out
    assert fs.exists("trip/outputs.zarr/zarr.json") and fs.exists("trip/faces.ingest-report.json")


# ----------------------------------------------------------------------------- the storage helpers


@pytest.mark.parametrize(("changes", "error", "code"), [
    ({"secret": "wrong"}, StorageAccessError, "SignatureDoesNotMatch"),
    ({"key": "nobody"}, StorageAccessError, "InvalidAccessKeyId"),
    ({"key": None, "secret": None, "anon": True}, StorageAccessError, "AccessDenied"),
])
def test_refused_credentials_are_named(seaweed, stores, changes, error, code):
    options = {k: v for k, v in {**seaweed, **changes}.items() if v is not None}
    with pytest.raises(error, match=code) as info:
        check_readable(Location.resolve(stores["faces"], options), "faces store")
    assert str(info.value).startswith(f"faces store {stores['faces']}: access denied")
    assert not is_transient(info.value)


def test_checks_pass_and_create_nothing(seaweed, stores, tmp_path):
    import s3fs

    check_readable(Location.resolve(stores["faces"], seaweed))
    check_writable(Location.resolve("s3://data/new/outputs.zarr", seaweed))
    fs = s3fs.S3FileSystem(**seaweed, skip_instance_cache=True)
    assert not fs.exists("data/new")
    close_s3_sessions([fs])
    check_writable(tmp_path / "not" / "yet" / "outputs")  # a local folder to be created later
    assert not (tmp_path / "not").exists()
    with pytest.raises(StorageNotFoundError, match="bucket 'missing-bucket' does not exist"):
        check_writable(Location.resolve("s3://missing-bucket/x.zarr", seaweed))


def test_permanent_errors_are_not_retried_and_connections_are(seaweed, stores):
    import s3fs

    from mlrdist.io.stores import read_bytes

    calls = []

    def read(url, options):
        calls.append(url)
        return read_bytes(url, options)

    bad_secret = {**seaweed, "secret": "wrong"}
    for url, options, error in [(stores["faces"] + "/zarr.json", bad_secret, PermissionError),
                                ("s3://missing-bucket/zarr.json", seaweed, FileNotFoundError)]:
        calls.clear()
        s3fs.S3FileSystem.clear_instance_cache()
        with pytest.raises(error):
            retry_transient(read, url, options, delays=(0.01, 0.01))
        assert len(calls) == 1, url
    refused = {**seaweed, "endpoint_url": f"http://127.0.0.1:{_free_port()}",
               "config_kwargs": {"retries": {"max_attempts": 1}}}
    calls.clear()
    with pytest.raises(Exception) as info:
        retry_transient(read, stores["faces"] + "/zarr.json", refused, delays=(0.01,))
    assert is_transient(info.value) and len(calls) == 2


def test_s3_locations_fail_fast_unless_told_otherwise():
    assert Location.resolve("s3://b/x", None, {"key": "k"}).options == {
        "key": "k", "config_kwargs": S3_CONFIG_DEFAULTS}
    mine = {"config_kwargs": {"connect_timeout": 60, "retries": {"max_attempts": 10}}}
    assert Location.resolve("s3://b/x", mine).options["config_kwargs"] == mine["config_kwargs"]
    kept = Location.resolve(Location("s3://b/x", {"config_kwargs": {"read_timeout": 7}}))
    assert kept.options["config_kwargs"] == {**S3_CONFIG_DEFAULTS, "read_timeout": 7}
    assert Location.resolve("/data/faces.zarr", None, {"key": "k"}).options == {"key": "k"}
    assert issubclass(StorageAccessError, StorageError) and issubclass(StorageNotFoundError, FileNotFoundError)
