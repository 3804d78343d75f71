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
    "GAN_METHODS",
    "METHOD_GRIDS",
    "EvaluationResult",
    "FoldJob",
    "count_parameters",
    "default_methods",
    "evaluate",
    "evaluate_store",
    "fit_fold",
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


# the GAN baselines of the paper's comparison (the optional 'gan' extra): chosen by name only
GAN_METHODS: dict[str, str] = {
    "pix2pix": "mlrdist.baselines.gan:Pix2Pix",
    "cyclegan": "mlrdist.baselines.gan:CycleGAN",
    "stargan": "mlrdist.baselines.gan:StarGAN",
}


def default_methods(names: Sequence[str] | None = None, *, tune: bool = False, folds: int = 3,
                    gan_epochs: int | None = None, progress: bool = False, **common: Any) -> dict[str, Any]:
    """The paper's comparison: MR against l2, l1, l0, SVD-based and kernel regression.

    Parameters
    ----------
    names : sequence of str, optional
        Keys of :data:`METHOD_GRIDS` (default: all of them) or of :data:`GAN_METHODS`.
    tune : bool
        Wrap each method in :class:`~mlrdist.baselines.TunedRegressor` over its grid
        (nested cross-validation inside :func:`evaluate`); otherwise the fixed defaults
        (MR: the paper's ``k = 3, alpha = 0.4``).
    folds : int
        Inner folds when tuning.
    gan_epochs : int, optional
        Training epochs of the GAN methods (default: each class's own).
    progress : bool
        GAN methods show a progress bar over their epochs.
    **common
        Parameters given to every method (e.g. ``scaling="minmax"``).
    """
    from importlib import import_module

    from .select import TunedRegressor

    names = list(METHOD_GRIDS) if names is None else list(names)
    unknown = sorted(set(names) - set(METHOD_GRIDS) - set(GAN_METHODS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {[*METHOD_GRIDS, *GAN_METHODS]}")
    out = {}
    for name in names:
        if name in GAN_METHODS:
            out[name] = _gan(name, gan_epochs, progress, common)
            continue
        path, params, grid = METHOD_GRIDS[name]
        module, cls = path.split(":")
        est = getattr(import_module(module), cls)(**params, **common)
        out[name] = TunedRegressor(est, grid, folds) if tune else est
    return out


def _gan(name: str, epochs: int | None, progress: bool, common: dict) -> Any:
    from importlib import import_module

    module, cls = GAN_METHODS[name].split(":")
    try:
        klass = getattr(import_module(module), cls)
    except ImportError as exc:
        raise ValueError(f"method {name!r}: {exc}") from None
    settings = {"progress": progress, **({"epochs": epochs} if epochs is not None else {}),
                **{k: v for k, v in common.items() if k == "scaling"}}
    return klass(**settings)


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


class _PeakRSS:
    """The process's resident set above its level at entry, sampled every 20 ms in a thread
    (what tracemalloc misses: JAX's and BLAS's own allocations)."""

    def __enter__(self) -> _PeakRSS:
        import threading

        import psutil

        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def grown(self) -> int:
        return self.peak - self.base


def _run_fold(est: Any, X: np.ndarray, Y: dict, train: np.ndarray, test: np.ndarray):
    """Fit + predict one fold; returns predictions (dict of 4-D) and resources."""
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    with _PeakRSS() as rss:
        t0 = time.perf_counter()
        est.fit(X[train], {t: y[train] for t, y in Y.items()})
        t1 = time.perf_counter()
        pred = _as_dict(est.predict(X[test]), list(Y))
        t2 = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1] - base
    if not was:
        tracemalloc.stop()
    return pred, {"fit_seconds": t1 - t0, "predict_seconds": t2 - t1, "peak_memory_bytes": max(peak, rss.grown)}


def _summary(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "folds": v.tolist()}


def _grid_subjects(subjects: Sequence[str], n: int) -> list[str]:
    uniq = sorted(set(subjects))
    pick = np.linspace(0, len(uniq) - 1, min(n, len(uniq))).round().astype(int)
    return [uniq[i] for i in np.unique(pick)]


def evaluate(
    methods: Mapping[str, Any], X: Any, Y: Any, subjects: Sequence[str], *, folds: int = 5, seed: int = 0,
    out_dir: str | Path | None = None, grid_rows: int = 6, progress: bool = False, client: Any = None,
    scheduler: str | None = "synchronous",
) -> EvaluationResult:
    """Compare methods by subject-disjoint K-fold cross-validation.

    Each (method, fold) is one Dask task, so a cluster fits them in parallel.

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
        Where to write figures and the report (:func:`mlrdist.report.write_report`).
    grid_rows : int
        Test subjects shown in the comparison grids.
    progress : bool
        Print one line per method and fold as they finish.
    client, scheduler :
        Where the folds run (see :mod:`mlrdist.execution`); default: in this process, one
        after the other.

    Returns
    -------
    EvaluationResult
        A method that raises (e.g. refuses the image size) is recorded in ``errors``.
    """
    from .execution import open_executor

    X = check_stack(np.asarray(X), "X")
    Y = dict(Y) if isinstance(Y, Mapping) else {"target": np.asarray(Y)}
    Y = {t: check_stack(np.asarray(y), t) for t, y in Y.items()}
    if len(subjects) != len(X):
        raise ValueError(f"subjects has {len(subjects)} entries for {len(X)} images")
    subjects = [str(s) for s in subjects]
    splits = group_kfold(subjects, folds, seed)
    shown = _grid_subjects(subjects, grid_rows)
    shown_idx = [subjects.index(s) for s in shown]
    jobs = [FoldJob(name, template, X, Y, train, test, shown_idx, f == len(splits) - 1)
            for name, template in methods.items() for f, (train, test) in enumerate(splits)]
    finished: dict[int, dict] = {}
    with open_executor(client, scheduler) as ex:
        for i, out in ex.imap(fit_fold, jobs, key=f"mlrdist-evaluate-{seed}", retries=0, progress=False):
            finished[i] = out
            if progress:
                n_done = sum(jobs[j].name == jobs[i].name for j in finished)
                print(f"  {jobs[i].name} fold {n_done}/{len(splits)}: {out.get('line', '')}", flush=True)
    # tasks finish in any order; the folds of a method are combined in fold order
    done = {name: [finished[i] for i, job in enumerate(jobs) if job.name == name] for name in methods}
    per, grids, fitted, errors = {}, {}, {}, {}
    for name, outs in done.items():
        failure = next((o["error"] for o in outs if "error" in o), None)
        if failure:
            errors[name] = failure
            continue
        per[name], grids[name], fitted[name] = _combine(outs, list(Y), len(shown_idx), X.shape[1:])
    result = EvaluationResult(
        methods=list(methods), targets=list(Y),
        metrics={m: p["metrics"] for m, p in per.items()},
        resources={m: p["resources"] for m, p in per.items()},
        folds=[sorted({subjects[i] for i in te}) for _, te in splits],
        info={"n_pairs": len(X), "image_shape": list(X.shape[1:]), "n_subjects": len(set(subjects)),
              "n_folds": folds, "seed": seed, "grid_subjects": shown,
              "params": {m: _jsonable(e.get_params()) for m, e in methods.items()},
              "models": {m: repr(e) for m, e in methods.items()},
              "memory": "peak during fit+predict: the traced heap (NumPy buffers) and the process's resident "
                        "set above its level at the start (JAX, BLAS)"},
        errors=errors,
    )
    if out_dir is not None:
        from .report import write_figures, write_report

        result.figures = write_figures(result, X, Y, shown_idx, grids, fitted, out_dir)
        write_report(result, out_dir)
    return result


def _jsonable(params: dict) -> dict:
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in params.items()}


@dataclass
class FoldJob:
    """One method on one fold: what a task needs."""

    name: str
    template: Any
    X: np.ndarray
    Y: dict[str, np.ndarray]
    train: np.ndarray
    test: np.ndarray
    shown_idx: list[int]
    keep_estimator: bool


def fit_fold(job: FoldJob) -> dict:
    """Fit, predict and score one fold (a task); ``{"error": ...}`` when the method refuses."""
    est = clone(job.template)
    try:
        pred, res = _run_fold(est, job.X, job.Y, job.train, job.test)
    except (ValueError, MemoryError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    truth = _scaled_targets(job.Y, job.test, est.scaling)
    scores = {t: {k: float(np.mean(score(k, pred[t], truth[t]))) for k in METRICS} for t in job.Y}
    rows = {t: {row: to_uint8(np.clip(pred[t][hit[0]], 0, 1))
                for row, i in enumerate(job.shown_idx) if (hit := np.flatnonzero(job.test == i)).size}
            for t in job.Y}
    first = next(iter(job.Y))
    out = {"scores": scores, "rows": rows, "resources": res, "n_parameters": count_parameters(est),
           "line": f"mse {scores[first]['mse']:.5f} fit {res['fit_seconds']:.1f}s"}
    if hasattr(est, "best_params_"):
        out["chosen"] = _jsonable(est.best_params_)
    if job.keep_estimator:
        fitted = getattr(est, "best_estimator_", est)
        out["estimator"] = fitted if type(fitted).__name__ == "MaskedRidge" else None
    return out


def _combine(outs: list[dict], targets: list[str], n_rows: int, shape) -> tuple[dict, dict, Any]:
    """The folds of one method: metrics (mean, std, per fold), resources, grid rows."""
    metrics = {t: {k: _summary([o["scores"][t][k] for o in outs]) for k in METRICS} for t in targets}
    grid = {t: np.zeros((n_rows, *shape), dtype=np.uint8) for t in targets}
    for o in outs:
        for t in targets:
            for row, img in o["rows"][t].items():
                grid[t][row] = img
    resources = {
        "n_parameters": outs[-1]["n_parameters"],
        "fit_seconds": float(np.mean([o["resources"]["fit_seconds"] for o in outs])),
        "predict_seconds": float(np.mean([o["resources"]["predict_seconds"] for o in outs])),
        "peak_memory_bytes": int(max(o["resources"]["peak_memory_bytes"] for o in outs)),
    }
    chosen = [o["chosen"] for o in outs if "chosen" in o]
    if chosen:
        resources["chosen_params"] = chosen
    fitted = next((o.get("estimator") for o in outs if o.get("estimator") is not None), None)
    return {"metrics": metrics, "resources": resources}, grid, fitted


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
                   gan_epochs: int | None = None, progress: bool = False, client: Any = None,
                   scheduler: str | None = "synchronous") -> EvaluationResult:
    """:func:`evaluate` the methods named in ``methods`` (default all of
    :data:`METHOD_GRIDS`; the GANs of :data:`GAN_METHODS` by name) on the pairs of ``faces``
    and write the report to ``out_dir``; the folds run where ``client``/``scheduler`` say."""
    estimators = default_methods(methods, tune=tune, scaling=scaling, gan_epochs=gan_epochs, progress=progress)
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer of at least 2, got {folds!r}")
    X, Y, subjects = load_pairs(faces, source, targets, gray=gray, size=size, storage_options=storage_options,
                                max_subjects=max_subjects)
    return evaluate(estimators, X, Y, list(subjects), folds=folds, seed=seed, out_dir=out_dir, progress=progress,
                    client=client, scheduler=scheduler)
