"""Stage 4: subject-disjoint cross-validated comparison of MR with the paper's baselines.

* :func:`evaluate` -- every method fitted and scored on the same subject-disjoint K folds
  (all targets in one multi-target fit); per method and target the mean and std over folds
  of each metric of :mod:`mlrdist.metrics` (a fold's value is the mean over its test
  images), the parameter count, the fit and predict wall time, and the **peak traced heap**
  during fit + predict measured with :mod:`tracemalloc` (NumPy reports its buffers to it;
  memory allocated inside BLAS or by other processes is not counted).
* :func:`evaluate_store` -- the same on the pairs of a faces.zarr (or the packaged sample),
  with the figures and the report of :mod:`mlrdist.report`.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import check_stack
from .metrics import METRICS, score
from .scaling import scale_images, to_uint8
from .select import clone, group_kfold

__all__ = [
    "METHOD_GRIDS",
    "EvaluationResult",
    "count_parameters",
    "default_methods",
    "evaluate",
    "evaluate_store",
    "load_pairs",
]


# -- the compared methods ---------------------------------------------------------------
# name -> (class path, untuned parameters, grid searched when tuning)
METHOD_GRIDS: dict[str, tuple[str, dict, dict]] = {
    "MR": ("mlrdist.estimator:MaskedRidge", {"receptive_field": 3, "alpha": 0.4},
           {"receptive_field": [3, 5, 7], "alpha": [0.4, 4.0, 40.0]}),
    # MR as photos get it: the input plus the prediction's low-passed change (mlrdist.photo)
    "MR-detail": ("mlrdist.photo:DetailMaskedRidge", {"receptive_field": 3, "alpha": 0.4},
                  {"receptive_field": [3, 5, 7], "alpha": [0.4, 4.0, 40.0]}),
    "l2": ("mlrdist.baselines.l2:FullRidge", {"alpha": 0.4}, {"alpha": [4.0, 40.0, 400.0]}),
    "l1-masked": ("mlrdist.baselines.lasso:MaskedLasso", {"receptive_field": 3, "alpha": 1e-4},
                  {"alpha": [1e-4, 1e-3, 1e-2]}),
    "l1-full": ("mlrdist.baselines.lasso:FullLasso", {"alpha": 1e-4, "n_components": 64},
                {"alpha": [1e-4, 1e-3, 1e-2]}),
    "l0-masked": ("mlrdist.baselines.omp:MaskedOMP", {"receptive_field": 3, "n_nonzero": 3},
                  {"n_nonzero": [1, 3, 5]}),
    "rrr": ("mlrdist.baselines.svd:ReducedRankRidge", {"rank": 10, "alpha": 0.4},
            {"rank": [10, 20, 40, 60], "alpha": [4.0, 40.0, 400.0]}),
    "pcr": ("mlrdist.baselines.svd:PCARegression", {"n_components": 20, "alpha": 0.4},
            {"n_components": [10, 20, 40, 60], "alpha": [4.0, 40.0, 400.0]}),
    "kernel": ("mlrdist.baselines.kernel:KernelRidge", {"alpha": 0.1, "kernel": "rbf"},
               {"alpha": [1e-3, 1e-2, 1e-1]}),
}


def default_methods(names: Sequence[str] | None = None, *, tune: bool = False, folds: int = 3,
                    **common: Any) -> dict[str, Any]:
    """The paper's comparison: MR against l2, l1, l0, SVD-based and kernel regression.

    Parameters
    ----------
    names : sequence of str, optional
        Keys of :data:`METHOD_GRIDS` (default: all).
    tune : bool
        Wrap each method in :class:`~mlrdist.baselines.TunedRegressor` over its grid
        (nested cross-validation inside :func:`evaluate`); otherwise the fixed defaults
        (MR: the paper's ``k = 3, alpha = 0.4``).
    folds : int
        Inner folds when tuning.
    **common
        Parameters given to every method (e.g. ``scaling="minmax"``).
    """
    from importlib import import_module

    from .select import TunedRegressor

    names = list(METHOD_GRIDS) if names is None else list(names)
    unknown = sorted(set(names) - set(METHOD_GRIDS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHOD_GRIDS)}")
    out = {}
    for name in names:
        path, params, grid = METHOD_GRIDS[name]
        module, cls = path.split(":")
        est = getattr(import_module(module), cls)(**params, **common)
        out[name] = TunedRegressor(est, grid, folds) if tune else est
    return out


# -- results -----------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate`.

    ``metrics[method][target][metric]`` is ``{"mean", "std", "folds"}`` over folds;
    ``resources[method]`` holds ``n_parameters``, ``fit_seconds`` and ``predict_seconds``
    (mean over folds) and ``peak_memory_bytes`` (max over folds, tracemalloc).
    """

    methods: list[str]
    targets: list[str]
    metrics: dict[str, dict[str, dict[str, dict[str, Any]]]]
    resources: dict[str, dict[str, Any]]
    folds: list[list[str]]
    info: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        """One row per (method, target): means and stds of the metrics and resources."""
        rows = []
        for m in self.methods:
            if m not in self.metrics:
                continue
            for t in self.targets:
                row = {"method": m, "target": t}
                for k in METRICS:
                    row[k], row[f"{k}_std"] = self.metrics[m][t][k]["mean"], self.metrics[m][t][k]["std"]
                rows.append(row | self.resources[m])
        return rows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_parameters(estimator: Any) -> int | None:
    """Numbers a fitted model needs to predict (primal weights for FullRidge; non-zeros for
    the sparse models)."""
    estimator = getattr(estimator, "best_estimator_", estimator)
    if hasattr(estimator, "n_parameters_"):
        return int(estimator.n_parameters_)
    if type(estimator).__name__ == "FullRidge":
        d_out = estimator.dual_coef_.shape[1]
        return int(estimator.support_.shape[1] * d_out + d_out)
    if hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"):
        return int(np.size(estimator.coef_) + np.size(estimator.intercept_))
    return None


def _scaled_targets(Y: Mapping[str, np.ndarray], idx: np.ndarray, scaling: str) -> dict[str, np.ndarray]:
    return {t: scale_images(check_stack(np.asarray(y)[idx], t), scaling, np.float64) for t, y in Y.items()}


def _as_dict(pred: Any, targets: Sequence[str]) -> dict[str, np.ndarray]:
    if isinstance(pred, Mapping):
        return {t: check_stack(pred[t], t) for t in targets}
    return {targets[0]: check_stack(pred, "prediction")}


def _run_fold(est: Any, X: np.ndarray, Y: dict, train: np.ndarray, test: np.ndarray):
    """Fit + predict one fold; returns predictions (dict of 4-D) and resources."""
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    est.fit(X[train], {t: y[train] for t, y in Y.items()})
    t1 = time.perf_counter()
    pred = _as_dict(est.predict(X[test]), list(Y))
    t2 = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1] - base
    if not was:
        tracemalloc.stop()
    return pred, {"fit_seconds": t1 - t0, "predict_seconds": t2 - t1, "peak_memory_bytes": peak}


def _summary(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "folds": v.tolist()}


def _grid_subjects(subjects: Sequence[str], n: int) -> list[str]:
    uniq = sorted(set(subjects))
    pick = np.linspace(0, len(uniq) - 1, min(n, len(uniq))).round().astype(int)
    return [uniq[i] for i in np.unique(pick)]


def evaluate(
    methods: Mapping[str, Any], X: Any, Y: Any, subjects: Sequence[str], *, folds: int = 5, seed: int = 0,
    out_dir: str | Path | None = None, grid_rows: int = 6, progress: bool = False,
) -> EvaluationResult:
    """Compare methods by subject-disjoint K-fold cross-validation.

    Parameters
    ----------
    methods : dict of str -> estimator
        Unfitted templates (cloned for every fold) with the ``ImageRegressor`` API.
    X : array, shape (n, H, W) or (n, H, W, C)
        Source images (uint8, or floats in [0, 1]).
    Y : dict of str -> array shaped like X, or one array
        Target images per expression; every method fits all targets at once.
    subjects : sequence of str, length n
        Subject of each pair; a subject's pairs are all in one test fold.
    folds, seed : int
        Number of folds and the shuffling of subjects.
    out_dir : path, optional
        Where to write figures and the report (:func:`write_report`).
    grid_rows : int
        Test subjects shown in the comparison grids.
    progress : bool
        Print one line per method and fold.

    Returns
    -------
    EvaluationResult
        A method that raises (e.g. refuses the image size) is recorded in ``errors``.
    """
    X = check_stack(np.asarray(X), "X")
    Y = dict(Y) if isinstance(Y, Mapping) else {"target": np.asarray(Y)}
    Y = {t: check_stack(np.asarray(y), t) for t, y in Y.items()}
    if len(subjects) != len(X):
        raise ValueError(f"subjects has {len(subjects)} entries for {len(X)} images")
    subjects = [str(s) for s in subjects]
    splits = group_kfold(subjects, folds, seed)
    shown = _grid_subjects(subjects, grid_rows)
    shown_idx = [subjects.index(s) for s in shown]
    per: dict[str, Any] = {}
    grids: dict[str, dict[str, np.ndarray]] = {}
    fitted: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, template in methods.items():
        try:
            per[name], grids[name], fitted[name] = _evaluate_method(name, template, X, Y, splits, shown_idx, progress)
        except (ValueError, MemoryError) as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            if progress:
                print(f"  {name}: skipped ({errors[name]})", flush=True)
    result = EvaluationResult(
        methods=list(methods), targets=list(Y),
        metrics={m: p["metrics"] for m, p in per.items()},
        resources={m: p["resources"] for m, p in per.items()},
        folds=[sorted({subjects[i] for i in te}) for _, te in splits],
        info={"n_pairs": len(X), "image_shape": list(X.shape[1:]), "n_subjects": len(set(subjects)),
              "n_folds": folds, "seed": seed, "grid_subjects": shown,
              "params": {m: _jsonable(e.get_params()) for m, e in methods.items()},
              "models": {m: repr(e) for m, e in methods.items()},
              "memory": "peak tracemalloc heap during fit+predict (NumPy buffers; not BLAS-internal)"},
        errors=errors,
    )
    if out_dir is not None:
        from .report import write_figures, write_report

        result.figures = write_figures(result, X, Y, shown_idx, grids, fitted, out_dir)
        write_report(result, out_dir)
    return result


def _jsonable(params: dict) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in params.items()}


def _evaluate_method(name, template, X, Y, splits, shown_idx, progress):
    scores = {t: {k: [] for k in METRICS} for t in Y}
    res: dict[str, list] = {"fit_seconds": [], "predict_seconds": [], "peak_memory_bytes": []}
    chosen = []
    grid = {t: np.zeros((len(shown_idx), *X.shape[1:]), dtype=np.uint8) for t in Y}
    est = None
    for f, (train, test) in enumerate(splits):
        est = clone(template)
        pred, r = _run_fold(est, X, Y, train, test)
        truth = _scaled_targets(Y, test, est.scaling)
        for t in Y:
            for k in METRICS:
                scores[t][k].append(float(np.mean(score(k, pred[t], truth[t]))))
            for row, i in enumerate(shown_idx):
                hit = np.flatnonzero(test == i)
                if hit.size:
                    grid[t][row] = to_uint8(np.clip(pred[t][hit[0]], 0, 1))
        for key, v in r.items():
            res[key].append(v)
        if hasattr(est, "best_params_"):
            chosen.append(_jsonable(est.best_params_))
        if progress:
            t0 = next(iter(Y))
            print(f"  {name} fold {f + 1}/{len(splits)}: mse {scores[t0]['mse'][-1]:.5f} "
                  f"fit {r['fit_seconds']:.1f}s", flush=True)
    resources = {
        "n_parameters": count_parameters(est),
        "fit_seconds": float(np.mean(res["fit_seconds"])),
        "predict_seconds": float(np.mean(res["predict_seconds"])),
        "peak_memory_bytes": int(max(res["peak_memory_bytes"])),
    }
    if chosen:
        resources["chosen_params"] = chosen
    metrics = {t: {k: _summary(v) for k, v in scores[t].items()} for t in Y}
    return {"metrics": metrics, "resources": resources}, grid, getattr(est, "best_estimator_", est)


def load_pairs(faces: str | None = None, source: str = "neutral", targets: Sequence[str] = ("smiling",), *,
               gray: bool = False, size: int | None = None, storage_options: dict | None = None,
               max_subjects: int | None = None):
    """Training pairs ``(X, {target: Y}, subjects)`` of a faces.zarr URL (or of the packaged
    sample when ``faces`` is None), optionally resized to ``size`` and made gray."""
    from .datasets import load_sample, pairs
    from .io.faces_store import open_faces
    from .io.images import resize_stack

    ds = load_sample() if faces is None else open_faces(faces, storage_options)  # committed samples
    X, Y, subjects = pairs(ds, source=source, targets=tuple(targets))
    if max_subjects:
        X, subjects = X[:max_subjects], subjects[:max_subjects]
        Y = {t: y[:max_subjects] for t, y in Y.items()}
    return resize_stack(X, size, gray), {t: resize_stack(y, size, gray) for t, y in Y.items()}, subjects


def evaluate_store(faces: str | None, out_dir: str | Path, methods: Sequence[str] | None = None, *,
                   source: str = "neutral", targets: Sequence[str] = ("smiling",), folds: int = 5,
                   seed: int = 0, tune: bool = False, scaling: str = "unit", size: int | None = None,
                   gray: bool = False, max_subjects: int | None = None, storage_options: dict | None = None,
                   progress: bool = False) -> EvaluationResult:
    """:func:`evaluate` the methods named in ``methods`` (default all of
    :data:`METHOD_GRIDS`) on the pairs of ``faces`` and write the report to ``out_dir``."""
    estimators = default_methods(methods, tune=tune, scaling=scaling)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer of at least 2, got {folds!r}")
    X, Y, subjects = load_pairs(faces, source, targets, gray=gray, size=size, storage_options=storage_options,
                                max_subjects=max_subjects)
    return evaluate(estimators, X, Y, list(subjects), folds=folds, seed=seed, out_dir=out_dir, progress=progress)
