"""A core install (``pip install mlrdist``, no extras) runs the pipeline on the packaged sample
with Dask's local schedulers, in a virtual environment of its own."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def core_env(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("core")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    done = run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(REPO)])
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        pytest.skip(f"a package index is needed to install the core dependencies: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir


def test_core_install_has_no_extras(core_env):
    code = ("import importlib.util as u, sys; "
            "sys.exit(any(u.find_spec(m) for m in ('distributed', 's3fs', 'prefect', 'dlib', 'sklearn')))")
    assert run([str(core_env / "python"), "-c", code]).returncode == 0, "an optional package was installed"


def test_core_install_runs_ingest_train_synthesize(core_env, tmp_path):
    from importlib import resources

    sample = str(resources.files("mlrdist") / "data" / "sample")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLRDIST_SCHEDULER")}
    mlrdist = str(core_env / "mlrdist")
    steps = [
        [mlrdist, "ingest", sample, "faces.zarr", "--labels", "sample", "--align", "none", "--scheduler", "threads"],
        [mlrdist, "train", "faces.zarr", "weights.zarr", "-k", "3", "--scheduler", "threads"],
        [mlrdist, "synthesize", "weights.zarr", "faces.zarr", "outputs.zarr", "--scheduler", "threads"],
    ]
    for cmd in steps:
        done = run(cmd, cwd=tmp_path, env=env)
        assert done.returncode == 0, f"{' '.join(cmd[1:3])}: {done.stderr[-3000:]}"
    assert "synthesised 24 of 24" in done.stdout
