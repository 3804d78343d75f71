"""Evaluation: metrics, subject-disjoint cross-validation of several methods, figures, report.

* Metrics on images scaled to ``[0, 1]`` (each method's own ``scaling``): :func:`mse` (the
  paper's: mean squared error over pixels), :func:`psnr`, :func:`ssim` (Gaussian-window SSIM
  of Wang et al. 2004, ``sigma = 1.5``, population covariances, border of ``(win-1)/2``
  pixels cropped before averaging: scikit-image's ``structural_similarity(...,
  gaussian_weights=True, use_sample_covariance=False)``).
* :func:`evaluate` -- every method fitted and scored on the same subject-disjoint K folds
  (all targets in one multi-target fit); per method and target the mean and std over folds
  of each metric (a fold's value is the mean over its test images), the parameter count,
  the fit and predict wall time, and the **peak traced heap** during fit + predict measured
  with :mod:`tracemalloc` (NumPy reports its buffers to it; memory allocated inside BLAS or
  by other processes is not counted).
* :func:`write_report` -- ``results.json``, ``report.md`` (links the PNGs) and a
  self-contained ``report.html`` (PNGs inlined as data URIs) with the metric table,
  the comparison grids (rows test subjects, columns input | target | methods) and the
  receptive-field/weight images of masked ridge models.

Pillow is needed for the figures only.
"""

from __future__ import annotations

import base64
import html
import json
import time
import tracemalloc
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .baselines._select import clone, group_kfold
from .preprocess import check_stack, scale_images

__all__ = [
    "METHOD_GRIDS",
    "EvaluationResult",
    "application_grid",
    "comparison_grid",
    "count_parameters",
    "default_methods",
    "evaluate",
    "mse",
    "psnr",
    "ssim",
    "weight_figure",
    "write_report",
]

METRICS = ("mse", "psnr", "ssim")


# -- the compared methods ---------------------------------------------------------------
# name -> (class path, untuned parameters, grid searched when tuning)
METHOD_GRIDS: dict[str, tuple[str, dict, dict]] = {
    "MR": ("mlrdist.estimator:MaskedRidge", {"receptive_field": 3, "alpha": 0.4},
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

    from .baselines._select import TunedRegressor

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


# -- metrics ----------------------------------------------------------------------------
def _pairs4(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    if a.ndim == 3:  # (n, H, W)
        a, b = a[..., None], b[..., None]
    if a.ndim != 4:
        raise ValueError(f"expected (H, W), (n, H, W) or (n, H, W, C) images, got shape {a.shape}")
    return a, b


def mse(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error over pixels (and channels) of each image.

    Parameters
    ----------
    pred, truth : ndarray, shape (H, W), (n, H, W) or (n, H, W, C), values in [0, 1]

    Returns
    -------
    ndarray, shape (n,)
    """
    a, b = _pairs4(pred, truth)
    return ((a - b) ** 2).mean(axis=(1, 2, 3))


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each image, ``10 log10(R^2 / MSE)`` (inf if equal).

    Returns
    -------
    ndarray, shape (n,)
    """
    err = mse(pred, truth)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / err)


def ssim(
    pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0, sigma: float = 1.5,
    k1: float = 0.01, k2: float = 0.03, truncate: float = 3.5,
) -> np.ndarray:
    """Mean structural similarity of each image (Gaussian window, per channel, averaged).

    Returns
    -------
    ndarray, shape (n,)
    """
    a, b = _pairs4(pred, truth)
    pad = int(truncate * sigma + 0.5)
    if min(a.shape[1:3]) <= 2 * pad:
        raise ValueError(f"SSIM needs images larger than {2 * pad + 1} pixels, got {a.shape[1:3]}")

    def blur(z: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(z, sigma=(0, sigma, sigma, 0), truncate=truncate, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s[:, pad:-pad, pad:-pad].mean(axis=(1, 2, 3))


_METRIC_FUNCS = {"mse": mse, "psnr": psnr, "ssim": ssim}


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
                scores[t][k].append(float(np.mean(_METRIC_FUNCS[k](pred[t], truth[t]))))
            for row, i in enumerate(shown_idx):
                hit = np.flatnonzero(test == i)
                if hit.size:
                    grid[t][row] = _to_uint8(pred[t][hit[0]])
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


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(img, dtype=np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)


# -- figures -----------------------------------------------------------------------------
def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]


def _label_sheet(cells: list[list[np.ndarray]], labels: list[str], cell: int, row_labels=None):
    """Compose rows of equally sized RGB uint8 cells with a header row of labels."""
    from PIL import Image, ImageDraw

    head, left, gap = 18, (60 if row_labels else 0), 3
    cols = max(len(r) for r in cells)
    step = cell + gap
    sheet = Image.new("RGB", (left + cols * step, head + len(cells) * step), "white")
    draw = ImageDraw.Draw(sheet)
    for j, text in enumerate(labels):
        draw.text((left + j * step + 2, 3), text[: max(cell // 6, 4)], fill="black")
    for i, row in enumerate(cells):
        if row_labels:
            draw.text((3, head + i * step + cell // 2 - 5), str(row_labels[i])[:9], fill="black")
        for j, img in enumerate(row):
            small = img.shape[0] < cell // 2
            tile = Image.fromarray(_rgb(img)).resize((cell, cell), Image.NEAREST if small else Image.BICUBIC)
            sheet.paste(tile, (left + j * step, head + i * step))
    return sheet


def comparison_grid(inputs, targets, preds: dict[str, np.ndarray], row_labels, path, cell: int = 128) -> None:
    """PNG grid: rows subjects, columns input | target | one per method.

    ``inputs``, ``targets``, each ``preds[m]``: uint8 ``(rows, H, W, C)``.
    """
    labels = ["input", "target", *preds]
    cells = [[inputs[i], targets[i], *(p[i] for p in preds.values())] for i in range(len(inputs))]
    _label_sheet(cells, labels, cell, row_labels).save(path)


def application_grid(inputs, preds: dict[str, np.ndarray], row_labels, path, cell: int = 128) -> None:
    """PNG grid without ground truth: rows images, columns input | one per method.

    ``inputs``, each ``preds[m]``: uint8 ``(rows, H, W, C)``.
    """
    cells = [[inputs[i], *(p[i] for p in preds.values())] for i in range(len(inputs))]
    _label_sheet(cells, ["input", *preds], cell, row_labels).save(path)


def _diverging(a: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Blue (negative) - white - red (positive), symmetric at ``scale`` (default: the 99th
    percentile of ``|a|``)."""
    s = scale or float(np.percentile(np.abs(a), 99)) or 1.0
    v = np.clip(a / s, -1, 1)[..., None]
    pos, neg = np.array([1.0, 0.2, 0.1]), np.array([0.1, 0.3, 1.0])
    rgb = np.where(v >= 0, 1 - v * (1 - pos), 1 + v * (1 - neg))
    return (rgb * 255 + 0.5).astype(np.uint8)


def weight_figure(est: Any, path, target: int = 0, channel: int = 0, cell: int = 160) -> None:
    """Receptive-field images of a fitted MaskedRidge: centre-weight, window-sum and
    intercept maps, then the ``k x k`` weights at five pixels (eyes, nose, mouth corners)."""
    coef, b = np.asarray(est.coef_)[target, channel], np.asarray(est.intercept_)[target, channel]
    H, W, F = coef.shape
    k = int(est.receptive_field)
    C = F // (k * k)
    win = coef.reshape(H, W, k * k, C)[..., min(channel, C - 1)] if C > 1 else coef
    spots = [(0.40, 0.33), (0.40, 0.67), (0.58, 0.50), (0.75, 0.38), (0.75, 0.62)]
    pix = [(min(int(fy * H), H - 1), min(int(fx * W), W - 1)) for fy, fx in spots]
    maps = [("centre weight", win[..., k * k // 2]), ("window sum", win.sum(-1)), ("intercept", b)]
    scale = float(np.percentile(np.abs(win), 99)) or 1.0
    cells = [[_diverging(m) for _, m in maps] + [_diverging(win[y, x].reshape(k, k), scale) for y, x in pix]]
    maps += [(f"{k}x{k} @{y},{x}", None) for y, x in pix]
    _label_sheet(cells, [m for m, _ in maps], cell).save(path)


def write_figures(result, X, Y, shown_idx, grids, fitted, out_dir) -> dict[str, str]:
    """Comparison grid per target and weight images per masked ridge method; returns paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = _to_uint8(scale_images(X[shown_idx], "unit", np.float64))
    figs = {}
    cell = max(96, min(160, X.shape[1]))
    for t, y in Y.items():
        targets = _to_uint8(scale_images(y[shown_idx], "unit", np.float64))
        path = out / f"grid_{_slug(t)}.png"
        comparison_grid(inputs, targets, {m: g[t] for m, g in grids.items()}, result.info["grid_subjects"], path, cell)
        figs[f"grid {t}"] = str(path)
    for m, est in fitted.items():
        if type(est).__name__ == "MaskedRidge":
            path = out / f"weights_{_slug(m)}.png"
            weight_figure(est, path)
            figs[f"weights {m}"] = str(path)
    return figs


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(s))


# -- report ------------------------------------------------------------------------------
_COLS = [("MSE", "mse", "{:.5f}"), ("PSNR dB", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.4f}")]


def _rows_text(result: EvaluationResult) -> tuple[list[str], list[list[str]]]:
    head = ["method", "target", *(c for c, _, _ in _COLS), "parameters", "fit s", "peak MiB"]
    rows = []
    for r in result.table():
        cells = [r["method"], r["target"]]
        cells += [f"{fmt.format(r[k])} ± {fmt.format(r[k + '_std'])}" for _, k, fmt in _COLS]
        n = r["n_parameters"]
        cells += [f"{n:,}" if n is not None else "?", f"{r['fit_seconds']:.2f}", f"{r['peak_memory_bytes'] / 2**20:.0f}"]
        rows.append(cells)
    return head, rows


def write_report(result: EvaluationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and a self-contained ``report.html``.

    Returns
    -------
    dict of str -> Path
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = _collect_figures(result.figures, out)
    head, rows = _rows_text(result)
    info = result.info
    intro = (f"{info.get('n_pairs')} pairs of {info.get('n_subjects')} subjects, images "
             f"{info.get('image_shape')}, {info.get('n_folds')}-fold subject-disjoint cross-validation "
             f"(seed {info.get('seed')}); metrics on [0, 1] images, mean ± std over folds. "
             f"Memory: {info.get('memory')}.")
    md = ["# Method comparison", "", intro, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    for m, e in result.errors.items():
        md.append(f"\n*{m}* not run: {e}")
    for m, r in result.resources.items():
        if r.get("chosen_params"):
            md.append(f"\n*{m}* hyper-parameters chosen per fold (inner CV): {r['chosen_params']}")
    for title, name in names.items():
        md += ["", f"## {title}", "", f"![{title}]({name})"]
    paths = {"json": out / "results.json", "md": out / "report.md", "html": out / "report.html"}
    paths["md"].write_text("\n".join(md) + "\n")
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1, default=str))
    paths["html"].write_text(_html(intro, head, rows, result, names, out))
    return paths


def _collect_figures(figures: dict[str, str], out: Path) -> dict[str, str]:
    """Copy figures written elsewhere into ``out``; return title -> file name."""
    import shutil

    names = {}
    for title, path in figures.items():
        src = Path(path)
        if src.resolve().parent != out.resolve():
            shutil.copyfile(src, out / src.name)
        names[title] = src.name
    return names


def _html(intro, head, rows, result, names, out: Path) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>mlrdist comparison</title>",
             "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ccc}</style>",
             f"</head><body><h1>Method comparison</h1><p>{e(intro)}</p><table><tr>"]
    parts += [f"<th>{e(h)}</th>" for h in head] + ["</tr>"]
    parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
    parts.append("</table>")
    parts += [f"<p><b>{e(m)}</b> not run: {e(err)}</p>" for m, err in result.errors.items()]
    for title, name in names.items():
        data = base64.b64encode((out / name).read_bytes()).decode()
        parts.append(f"<h2>{e(title)}</h2><img alt='{e(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
