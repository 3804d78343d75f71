"""The mlrdist command line: the demo, train and synthesize end to end, and errors a
newcomer understands (exit code 2, one line naming what to change)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_faces_store

from mlrdist.cli import main


def test_demo_writes_a_report_with_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--folds", "3", "--scheduler", "threads"]) == 0
    markdown = (out / "report.md").read_text()
    assert "(evaluation/grid_smiling.png)" in markdown and "(photos-preview.png)" in markdown
    html = (out / "report.html").read_text()  # self-contained: the pictures are inlined
    assert html.count("src='data:image/png;base64,") >= 3
    assert (out / "evaluation" / "grid_smiling.png").stat().st_size > 10_000
    assert (out / "photos-preview.png").exists()
    summary = json.loads((out / "demo.json").read_text())
    assert "24 images ingested" in summary["summaries"]["ingest"]
    assert "report:" in capsys.readouterr().out


def test_train_and_synthesize_commands(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    faces = write_faces_store(str(tmp_path / "faces.zarr"), {"neutral": X, "smiling": X // 2})
    weights, outputs = str(tmp_path / "w.zarr"), str(tmp_path / "o.zarr")
    assert main(["train", faces, weights, "-k", "3", "--scheduler", "synchronous"]) == 0
    assert main(["synthesize", weights, faces, outputs, "--scheduler", "synchronous",
                 "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "trained" in out and "synthesised 12 of 12" in out
    assert json.loads((tmp_path / "r.json").read_text())["converted"] == 12


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "{tmp}/none.zarr", "{tmp}/w.zarr"], "no faces store at"),
        (["train", "{faces}", "{tmp}/w.zarr", "-k", "4", "--scheduler", "synchronous"],
         "receptive_field must be an odd integer in 1..31"),
        (["synthesize", "{tmp}/none.zarr", "{faces}", "{tmp}/o"], "no weights store at"),
        (["train", "{faces}", "{tmp}/w.zarr", "-S", "endpoint_url"], "--storage-option expects KEY=VALUE"),
        (["train", "{faces}", "{tmp}/w.zarr", "-k", "abc"], "invalid integer or 'auto' value: 'abc'"),
        (["synthesize", "{tmp}/w.zarr", "{faces}", "{tmp}/o.zarr", "--batch", "0"], "batch must be a positive integer"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, capsys, argv, message):
    faces = write_faces_store(str(tmp_path / "faces.zarr"), {"neutral": np.zeros((2, 8, 8, 1), np.uint8)})
    args = [a.format(tmp=tmp_path, faces=faces) for a in argv]
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("demo", "ingest", "train", "evaluate", "synthesize"):
        assert name in out
