"""The documentation: the README is a guide of bounded size whose test command is CI's, and the
mkdocs site (API reference included) builds with --strict."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_readme_is_a_guide_and_ci_runs_its_test_command():
    readme = (REPO / "README.md").read_text()
    assert len(readme) <= 16_000, f"README.md has {len(readme)} characters (at most 16,000)"
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert len(ci) == 1 and ci[0].strip() in readme, "the README's test command differs from .ci/run"
    for page in ("docs/design.md", "docs/operations.md", "docs/performance.md", "docs/comparison.md"):
        assert f"]({page})" in readme and (REPO / page).is_file(), page


def test_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install --group docs)")
    done = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "fit_weights" in api and "MaskedRidge" in api and "Location" in api
