import json

import numpy as np
import pytest

from mlrdist import FullRidge, MaskedRidge
from mlrdist.baselines import MaskedOMP
from mlrdist.evaluate import count_parameters, default_methods, evaluate
from mlrdist.report import write_report
from mlrdist.select import TunedRegressor


def _faces(n=10, size=16, c=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if c is None else (n, size, size, c)
    X = rng.integers(0, 256, shape, dtype=np.uint8)
    Y = np.clip(0.7 * X + 40 + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)
    return X, Y


def test_evaluate_folds_metrics_and_report(tmp_path):
    X, Y = _faces(12)
    subjects = [f"s{i:02d}" for i in range(12)]
    methods = {"MR": MaskedRidge(3, 0.4), "l2": FullRidge(), "l0": MaskedOMP(3, 2), "too big": MaskedOMP(3, 10)}
    res = evaluate(methods, X, {"smiling": Y, "dark": Y // 2}, subjects, folds=3, out_dir=tmp_path)
    tests = [set(f) for f in res.folds]
    assert set().union(*tests) == set(subjects) and sum(map(len, tests)) == 12
    assert "too big" in res.errors and "at most" in res.errors["too big"]
    assert {r["method"] for r in res.table()} == {"MR", "l2", "l0"}
    mr = res.metrics["MR"]["smiling"]["mse"]
    assert len(mr["folds"]) == 3 and np.isclose(mr["mean"], np.mean(mr["folds"]))
    assert res.resources["MR"]["n_parameters"] == 2 * 16 * 16 * 10
    assert res.resources["l2"]["n_parameters"] == 2 * 256 * 256 + 2 * 256
    assert res.resources["MR"]["peak_memory_bytes"] > 0
    for name in ("report.md", "report.html", "results.json", "grid_smiling.png", "grid_dark.png", "weights_MR.png"):
        assert (tmp_path / name).is_file(), name
    md = (tmp_path / "report.md").read_text()
    assert "](grid_smiling.png)" in md and "](weights_MR.png)" in md and "| MR | smiling |" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert json.loads((tmp_path / "results.json").read_text())["errors"]["too big"]


def test_folds_are_subject_disjoint_with_repeated_subjects():
    X, Y = _faces(12)
    subjects = [f"s{i // 3}" for i in range(12)]
    res = evaluate({"MR": MaskedRidge()}, X, Y, subjects, folds=4)
    assert all(len(f) == 1 for f in res.folds) and len(set().union(*map(set, res.folds))) == 4


def test_mr_beats_mean_on_local_structure():
    X, _ = _faces(16)
    Y = np.roll(X, 1, axis=2)  # a purely local map
    res = evaluate({"MR": MaskedRidge(3, 1e-3), "l2": FullRidge(0.4)}, X, Y, list(range(16)), folds=4)
    assert res.metrics["MR"]["target"]["mse"]["mean"] < 0.5 * res.metrics["l2"]["target"]["mse"]["mean"]


def test_tuned_and_default_methods(tmp_path):
    X, Y = _faces(9, c=3)
    methods = default_methods(["MR", "pcr"], tune=True)
    assert isinstance(methods["MR"], TunedRegressor)
    res = evaluate(methods, X, Y, list(range(9)), folds=3, out_dir=tmp_path)
    assert len(res.resources["MR"]["chosen_params"]) == 3
    assert (tmp_path / "weights_MR.png").is_file()
    write_report(res, tmp_path / "again")
    assert (tmp_path / "again" / "report.html").is_file()
    with pytest.raises(ValueError, match="unknown methods"):
        default_methods(["nope"])


def test_count_parameters_fallback():
    X, Y = _faces(6)
    assert count_parameters(MaskedRidge(1).fit(X, Y)) == 16 * 16 * 2


def test_cli_evaluate_on_sample(tmp_path, capsys):
    pytest.importorskip("PIL")
    from mlrdist.cli import main

    rc = main(["evaluate", "--out", str(tmp_path), "--gray", "--size", "16", "--folds", "3",
               "--methods", "MR,l2", "--max-subjects", "9"])
    assert rc == 0
    assert "MR" in capsys.readouterr().out
    assert (tmp_path / "report.html").is_file()


def test_folds_run_as_dask_tasks_and_agree_with_one_process():
    from distributed import Client

    from mlrdist.execution import local_cluster

    X, Y = _faces(n=8, size=16, c=3, seed=4)
    subjects = [f"s{i}" for i in range(8)]
    methods = default_methods(["MR", "l2"])
    here = evaluate(methods, X, Y, subjects, folds=2)
    with local_cluster(n_workers=2) as cluster, Client(cluster) as client:
        there = evaluate(methods, X, Y, subjects, folds=2, client=client)
    for m in ("MR", "l2"):
        np.testing.assert_allclose(there.metrics[m]["target"]["mse"]["folds"],
                                   here.metrics[m]["target"]["mse"]["folds"], rtol=1e-10)


def test_cli_evaluate_with_the_gan_baselines(tmp_path, capsys):
    """MR beside pix2pix, CycleGAN and StarGAN on the packaged sample at 32 px: every method
    scored on the same folds, with its parameters, fit time and peak memory in the report."""
    pytest.importorskip("jax")
    import os

    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")  # compile faster
    from mlrdist.cli import main

    out = tmp_path / "gans"
    assert main(["evaluate", "--out", str(out), "--methods", "MR,pix2pix,cyclegan,stargan", "--gan-epochs", "1",
                 "--size", "32", "--folds", "2", "--scheduler", "synchronous"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert set(result["metrics"]) == {"MR", "pix2pix", "cyclegan", "stargan"} and not result["errors"]
    for m in ("pix2pix", "cyclegan", "stargan"):
        res = result["resources"][m]
        assert res["n_parameters"] > 10_000 and res["fit_seconds"] > 0 and res["peak_memory_bytes"] > 0
    assert "pix2pix" in (out / "report.md").read_text()
