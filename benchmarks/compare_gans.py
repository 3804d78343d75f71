"""The paper's GAN comparison: masked regression (MR) against Pix2Pix, CycleGAN and StarGAN.

Experiments (each writes PNG grids and ``results.json`` under ``OUT/<experiment>/`` and
appends its tables to ``OUT/summary.md``):

a  In-dataset: London neutral -> smiling, 128 px colour, 5 subject-disjoint folds
   (:func:`mlrdist.baselines._select.group_kfold`, through :func:`mlrdist.evaluate.evaluate`).
   The GANs get equal shares of a wall-clock budget (``--budget-a`` minutes for the whole
   experiment, MR included): after MR, each GAN's seconds per epoch is measured on fold 1
   (two epochs, compilation excluded) and its epochs are set to fill its share. Each GAN
   holds out ``--val-fraction`` of its training pairs and records a validation L1 per
   epoch; the summary says whether that curve levelled off
   (:func:`mlrdist.baselines.gan.levelled_off`).
b  Out-of-dataset: every method fitted on all London pairs (grayscale), applied to Yale
   'normal' faces and scored against Yale 'happy' (``--yale-faces``: a faces.zarr made by
   ``mlrdist ingest yale-faces/original --labels yale --align detector --colour gray``;
   without it, the ``cropped/`` images centre-squared and resized), then to the ``wild/``
   and ``animals/`` photos of the London set (application grids, no targets).
c  Data size: MR and Pix2Pix trained on 10, 25, 50, ... pairs and tested on the same
   held-out subjects; Pix2Pix gets the same number of optimiser steps at every size.
v  Convergence check for a: each GAN of ``--gans`` trained on fold 1 of a for
   ``--long-epochs`` epochs, its validation L1 per epoch against the last value a reached
   (read from ``OUT/a/gans.json``). The learning rate decays to 0 over the second half of
   any run, which flattens every curve at its end, so a's own "levelled off" flag alone
   does not show that more epochs would not help; this run does.

Resources per method: fit seconds, parameters (generator only for the GANs), and the peak
resident memory above the level before the fit (sampled every 20 ms; it includes JAX's
buffers, which tracemalloc does not see).

Usage (``--faces`` from ``mlrdist ingest $MLRDIST_DATA/london-face-set london128.zarr
--labels london --size 128``)::

    python benchmarks/compare_gans.py a b c --faces london128.zarr --out runs/gans
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlrdist.evaluate import count_parameters, evaluate  # noqa: E402
from mlrdist.metrics import mse, psnr, ssim  # noqa: E402
from mlrdist.report import application_grid, comparison_grid  # noqa: E402
from mlrdist.select import clone, group_kfold  # noqa: E402

GANS = ("pix2pix", "cyclegan", "stargan")


# -- resources -------------------------------------------------------------------------------
class PeakRSS:
    """Peak resident set size above the level at entry, sampled in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        import psutil

        self._proc, self._interval = psutil.Process(), interval
        self.peak = 0

    def __enter__(self) -> PeakRSS:
        self._base = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss - self._base)
            self._stop.wait(self._interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss - self._base)


class Measured:
    """An estimator wrapper for :func:`evaluate` that records, per fold, the peak RSS of
    fit + predict and the fitted model's training history; ``log`` is shared by its clones."""

    def __init__(self, estimator: Any, log: list | None = None) -> None:
        self.estimator = estimator
        self.log = [] if log is None else log

    def get_params(self, deep: bool = True) -> dict:
        return {"estimator": self.estimator, "log": self.log}

    @property
    def scaling(self) -> str:
        return self.estimator.scaling

    def fit(self, X, Y) -> Measured:
        self._rss = PeakRSS().__enter__()
        self.best_estimator_ = clone(self.estimator).fit(X, Y)
        return self

    def predict(self, X):
        out = self.best_estimator_.predict(X)
        self._rss.__exit__()
        self.log.append({"peak_rss_bytes": self._rss.peak,
                         "history": getattr(self.best_estimator_, "history_", None)})
        return out


# -- data ------------------------------------------------------------------------------------
def load_london(faces: str, gray: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from mlrdist.evaluate import load_pairs

    X, Y, subjects = load_pairs(faces, "neutral", ["smiling"], gray=gray, size=None)
    return X, Y["smiling"], subjects


def load_yale(yale_faces: str | None, data: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Yale normal -> happy, ``(n, size, size, 1)`` uint8 each."""
    from PIL import Image

    from mlrdist.evaluate import load_pairs

    if yale_faces:
        X, Y, subjects = load_pairs(yale_faces, "normal", ["happy"], gray=True, size=size)
        return X, Y["happy"], subjects, f"{yale_faces} (detector-aligned to the London geometry)"
    root = data / "yale-faces" / "cropped"
    subjects = sorted(p.name[:2] for p in root.glob("*_normal.png") if (root / f"{p.name[:2]}_happy.png").exists())
    out = []
    for e in ("normal", "happy"):
        imgs = [_square(Image.open(root / f"{s}_{e}.png").convert("L"), size) for s in subjects]
        out.append(np.stack(imgs)[..., None])
    return out[0], out[1], subjects, "yale-faces/cropped, centred square crops"


def _square(img, size: int) -> np.ndarray:
    from PIL import Image

    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC, box=box))


def load_photos(data: Path, size: int, gray: bool) -> tuple[np.ndarray, list[str]]:
    """``wild/`` (aligned on the pupils when their template has them) and ``animals/``."""
    from PIL import Image

    from mlrdist.align import AlignSpec, align_image, read_tem

    mode = "L" if gray else "RGB"
    root = data / "london-face-set"
    imgs, names = [], []
    for jpg in sorted((root / "wild").glob("*.jpg")) + sorted((root / "animals").glob("*.jpg")):
        tem = jpg.with_suffix(".tem")
        pts = read_tem(tem) if tem.exists() else None
        img = Image.open(jpg).convert(mode)
        if pts is not None and len(pts) in (106, 189):  # FRL templates: points 0, 1 = pupils
            imgs.append(np.asarray(align_image(img, pts[:2], AlignSpec(size=size))))
        else:  # zoom_* (83 points, no pupils) and the animals: a centred square
            imgs.append(_square(img, size))
        names.append(jpg.stem.split("-")[0].replace("composite_", ""))
    X = np.stack(imgs)
    return (X[..., None] if gray else X), names


# -- methods -----------------------------------------------------------------------------------
def make_gan(name: str, args, epochs: int, **kw: Any):
    from mlrdist.baselines.gan import CycleGAN, Pix2Pix, StarGAN

    cls = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN, "stargan": StarGAN}[name]
    extra = {} if name == "pix2pix" else {"n_blocks": args.resnet_blocks}
    return cls(epochs=epochs, batch_size=args.batch_size, base_channels=args.width[name],
               seed=args.seed, **extra, **kw)


def seconds_per_epoch(est, X: np.ndarray, Y: np.ndarray) -> float:
    """Wall seconds of one epoch (the second of two, so compilation is excluded)."""
    probe = clone(est, epochs=2, progress=False).fit(X, Y)
    hist = next(iter(probe.history_.values()))
    return float(hist["seconds"][-1])


def convergence(history: dict, key: str) -> dict:
    from mlrdist.baselines.gan import levelled_off

    v = history.get(key, [])
    return {"key": key, "first": v[0] if v else None, "best": min(v) if v else None, "last": v[-1] if v else None,
            "levelled_off": levelled_off(v), "curve": [round(x, 5) for x in v]}


def _uint8(a: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(a, dtype=np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)


def _unit(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64) / 255.0


def _log(out: Path, text: str) -> None:
    print(text, flush=True)
    with open(out / "summary.md", "a") as fh:
        fh.write(text + "\n")


# -- experiment a ------------------------------------------------------------------------------
def experiment_a(args, out: Path) -> dict:
    from mlrdist import MaskedRidge

    t_start = time.perf_counter()
    X, Y, subjects = load_london(args.faces, gray=False)
    folds = group_kfold(subjects, args.folds, args.seed)
    logs: dict[str, list] = {"MR": []}
    methods: dict[str, Any] = {"MR": Measured(MaskedRidge(3, args.alpha), logs["MR"])}
    evaluate(methods, X, {"smiling": Y}, subjects, folds=args.folds, seed=args.seed)  # to time MR
    mr_seconds = time.perf_counter() - t_start
    print(f"a: MR done in {mr_seconds:.0f} s; measuring the GANs' epoch times", flush=True)
    train0 = folds[0][0]
    epochs, per_epoch = {}, {}
    for name in args.gans:
        probe = make_gan(name, args, 2, validation_fraction=args.val_fraction)
        per_epoch[name] = seconds_per_epoch(probe, X[train0], Y[train0])
    left = args.budget_a * 60 - (time.perf_counter() - t_start) - args.margin
    share = left / (len(args.gans) * args.folds)
    for name in args.gans:
        epochs[name] = max(2, int(share / per_epoch[name]))
        logs[name] = []
        methods[name] = Measured(make_gan(name, args, epochs[name], validation_fraction=args.val_fraction),
                                 logs[name])
    _log(out, f"\n## a: London neutral -> smiling, {X.shape[1]} px colour, {len(X)} pairs, {args.folds} folds\n\n"
              f"MR took {mr_seconds:.0f} s; {left:.0f} s left for the GANs, {share:.0f} s per GAN and fold. "
              "Seconds per epoch (fold 1, after compilation): "
              + ", ".join(f"{m} {per_epoch[m]:.1f}" for m in args.gans) + "; epochs: "
              + ", ".join(f"{m} {epochs[m]}" for m in args.gans) + ".")
    res = evaluate(methods, X, {"smiling": Y}, subjects, folds=args.folds, seed=args.seed,
                   out_dir=out / "a", progress=True)
    elapsed = time.perf_counter() - t_start
    report = {"elapsed_seconds": elapsed, "epochs": epochs, "seconds_per_epoch": per_epoch,
              "validation_fraction": args.val_fraction, "table": res.table(), "figures": res.figures,
              "errors": res.errors, "folds": res.folds, "peak_rss_bytes": {}, "convergence": {}}
    for name, log in logs.items():
        report["peak_rss_bytes"][name] = max(r["peak_rss_bytes"] for r in log)
        if name in args.gans:
            report["convergence"][name] = [convergence(next(iter(r["history"].values())), "val_l1") for r in log]
    _table(out, res.table(), report["peak_rss_bytes"])
    for name, conv in report["convergence"].items():
        flags = [c["levelled_off"] for c in conv]
        curve = ", ".join(f"{c['first']:.4f}->{c['last']:.4f} (best {c['best']:.4f})" for c in conv)
        _log(out, f"- {name}: {epochs[name]} epochs; validation L1 per fold {curve}; levelled off: {flags}")
    _log(out, f"\nExperiment a took {elapsed / 60:.1f} min (budget {args.budget_a} min). Grid: {res.figures}")
    (out / "a" / "gans.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def _table(out: Path, rows: list[dict], rss: dict) -> None:
    lines = ["", "| method | MSE | PSNR dB | SSIM | generator params | fit s | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['mse']:.5f} ± {r['mse_std']:.5f} | {r['psnr']:.2f} ± {r['psnr_std']:.2f} | "
                     f"{r['ssim']:.4f} ± {r['ssim_std']:.4f} | {r['n_parameters']:,} | {r['fit_seconds']:.1f} | "
                     f"{rss.get(r['method'], 0) / 2**20:.0f} |")
    _log(out, "\n".join(lines) + "\n")


# -- experiment b ------------------------------------------------------------------------------
def experiment_b(args, out: Path) -> dict:
    from mlrdist import MaskedRidge

    t_start = time.perf_counter()
    d = out / "b"
    d.mkdir(parents=True, exist_ok=True)
    X, Y, _ = load_london(args.faces, gray=True)
    size = X.shape[1]
    yx, yy, ysubj, yale_src = load_yale(args.yale_faces, Path(args.data), size)
    photos, names = load_photos(Path(args.data), size, gray=True)
    per_epoch = {m: seconds_per_epoch(make_gan(m, args, 2), X, Y) for m in args.gans}
    left = args.budget_b * 60 - (time.perf_counter() - t_start) - args.margin
    ests: dict[str, Any] = {"MR": MaskedRidge(3, args.alpha)}
    ests.update({m: make_gan(m, args, max(2, int(left / len(args.gans) / per_epoch[m]))) for m in args.gans})
    rows, preds_y, preds_p, conv = [], {}, {}, {}
    for name, est in ests.items():
        t0 = time.perf_counter()
        with PeakRSS() as rss:
            est.fit(X, Y)
            py, pp = est.predict(yx), est.predict(photos)
        preds_y[name], preds_p[name] = _uint8(py), _uint8(pp)
        truth = _unit(yy)
        rows.append({"method": name, "epochs": getattr(est, "epochs", None), "fit_seconds": time.perf_counter() - t0,
                     "mse": float(mse(py, truth).mean()), "psnr": float(psnr(py, truth).mean()),
                     "ssim": float(ssim(py, truth).mean()), "n_parameters": count_parameters(est),
                     "peak_rss_bytes": rss.peak})
        if hasattr(est, "history_"):
            conv[name] = convergence(next(iter(est.history_.values())), _train_key(name))
        print(f"b: {name} done", flush=True)
    comparison_grid(yx, yy, preds_y, [f"yale {s}" for s in ysubj], d / "yale_happy.png")
    application_grid(photos, preds_p, names, d / "wild_animals.png")
    identity = _unit(yx)
    base = {"mse": float(mse(identity, _unit(yy)).mean()), "ssim": float(ssim(identity, _unit(yy)).mean())}
    _log(out, f"\n## b: trained on London ({len(X)} pairs, {size} px gray), tested on Yale normal -> happy "
              f"({len(yx)} subjects; {yale_src})\n\nInput unchanged as a prediction: MSE {base['mse']:.5f}, "
              f"SSIM {base['ssim']:.4f}.\n\n| method | epochs | MSE | PSNR dB | SSIM | params | fit s | peak RSS MiB |\n"
              "|---|---|---|---|---|---|---|---|")
    for r in rows:
        _log(out, f"| {r['method']} | {r['epochs'] or '-'} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                  f"{r['n_parameters']:,} | {r['fit_seconds']:.1f} | {r['peak_rss_bytes'] / 2**20:.0f} |")
    for name, c in conv.items():
        _log(out, f"- {name} training {c['key']}: {c['first']:.4f} -> {c['last']:.4f}, levelled off: {c['levelled_off']}")
    elapsed = time.perf_counter() - t_start
    _log(out, f"\nGrids: {d / 'yale_happy.png'}, {d / 'wild_animals.png'}. Experiment b took {elapsed / 60:.1f} min.")
    report = {"rows": rows, "identity": base, "convergence": conv, "yale": yale_src, "elapsed_seconds": elapsed,
              "seconds_per_epoch": per_epoch}
    (d / "results.json").write_text(json.dumps(report, indent=1))
    return report


def _train_key(name: str) -> str:
    return {"pix2pix": "l1", "cyclegan": "cycle", "stargan": "rec"}[name]


# -- experiment c ------------------------------------------------------------------------------
def experiment_c(args, out: Path) -> dict:
    from mlrdist import MaskedRidge

    t_start = time.perf_counter()
    d = out / "c"
    d.mkdir(parents=True, exist_ok=True)
    X, Y, subjects = load_london(args.faces, gray=False)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(X))
    test, pool = np.sort(order[: args.test_subjects]), order[args.test_subjects :]
    sizes = [n for n in args.train_sizes if n <= len(pool)]
    skipped = [n for n in args.train_sizes if n > len(pool)]
    if skipped and len(pool) not in sizes:
        sizes.append(len(pool))
    bs = args.batch_size
    probe = make_gan("pix2pix", args, 2)
    per_step = seconds_per_epoch(probe, X[pool[: 4 * bs]], Y[pool[: 4 * bs]]) / 4
    left = args.budget_c * 60 - (time.perf_counter() - t_start) - args.margin
    steps = max(10, int(left / len(sizes) / per_step * 0.9))
    rows, grid = [], {}
    shown = test[: args.grid_rows]
    for n in sizes:
        train = np.sort(pool[:n])
        epochs = max(2, math.ceil(steps * bs / n))
        for name, est in (("MR", MaskedRidge(3, args.alpha)), ("pix2pix", make_gan("pix2pix", args, epochs))):
            t0 = time.perf_counter()
            with PeakRSS() as rss:
                est.fit(X[train], Y[train])
                fit_s = time.perf_counter() - t0
                p = est.predict(X[test])
            truth = _unit(Y[test])
            rows.append({"method": name, "n_train": n, "epochs": epochs if name != "MR" else None,
                         "steps": epochs * math.ceil(n / bs) if name != "MR" else None, "fit_seconds": fit_s,
                         "mse": float(mse(p, truth).mean()), "psnr": float(psnr(p, truth).mean()),
                         "ssim": float(ssim(p, truth).mean()), "n_parameters": count_parameters(est),
                         "peak_rss_bytes": rss.peak})
            grid[f"{name} n={n}"] = _uint8(p[: len(shown)])
            print(f"c: {name} n={n} mse {rows[-1]['mse']:.5f}", flush=True)
    comparison_grid(X[shown], Y[shown], grid, [subjects[i] for i in shown], d / "data_size.png", cell=96)
    _log(out, f"\n## c: data size, London {X.shape[1]} px colour, {len(test)} held-out subjects\n\n"
              f"Pix2Pix: about {steps} optimiser steps of {bs} pairs at every size."
              + (f" Sizes {skipped} exceed the {len(pool)} pairs left after the held-out subjects; "
                 f"{len(pool)} used instead." if skipped else "")
              + "\n\n| method | n train | epochs | MSE | PSNR dB | SSIM | fit s | peak RSS MiB |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        _log(out, f"| {r['method']} | {r['n_train']} | {r['epochs'] or '-'} | {r['mse']:.5f} | {r['psnr']:.2f} | "
                  f"{r['ssim']:.4f} | {r['fit_seconds']:.1f} | {r['peak_rss_bytes'] / 2**20:.0f} |")
    elapsed = time.perf_counter() - t_start
    _log(out, f"\nGrid: {d / 'data_size.png'}. Experiment c took {elapsed / 60:.1f} min.")
    report = {"rows": rows, "test_subjects": [subjects[i] for i in test], "sizes": sizes, "skipped": skipped,
              "elapsed_seconds": elapsed}
    (d / "results.json").write_text(json.dumps(report, indent=1))
    return report


# -- experiment v ------------------------------------------------------------------------------
def experiment_v(args, out: Path) -> dict:
    t_start = time.perf_counter()
    X, Y, subjects = load_london(args.faces, gray=False)
    train = group_kfold(subjects, args.folds, args.seed)[0][0]
    prev_path = out / "a" / "gans.json"
    prev = json.loads(prev_path.read_text()) if prev_path.exists() else {}
    report = {}
    _log(out, f"\n## v: convergence on fold 1 of a, {args.long_epochs} epochs\n")
    for name in args.gans:
        est = make_gan(name, args, args.long_epochs, validation_fraction=args.val_fraction, progress=True)
        est.fit(X[train], Y[train])
        c = convergence(next(iter(est.history_.values())), "val_l1")
        short = prev.get("epochs", {}).get(name)
        short_last = prev.get("convergence", {}).get(name, [{}])[0].get("last")
        curve = c["curve"]
        at = {e: curve[e - 1] for e in (short, len(curve) // 4, len(curve) // 2, 3 * len(curve) // 4) if e}
        report[name] = {**c, "short_epochs": short, "short_last": short_last, "at_epoch": at}
        _log(out, f"- {name}: validation L1 {c['first']:.4f} -> {c['last']:.4f} after {args.long_epochs} epochs "
                  f"(best {c['best']:.4f}); at epochs {at}; experiment a ended at {short_last} after {short} epochs")
    _log(out, f"\nExperiment v took {(time.perf_counter() - t_start) / 60:.1f} min.")
    (out / "v.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="+", choices="abcv")
    p.add_argument("--faces", required=True, help="ingested London faces.zarr (128 px colour)")
    p.add_argument("--data", default=os.environ.get("MLRDIST_DATA"),
                   help="folder with london-face-set/ and yale-faces/ (default $MLRDIST_DATA)")
    p.add_argument("--yale-faces", help="ingested, aligned Yale faces.zarr (experiment b)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gans"))
    p.add_argument("--gans", nargs="+", choices=GANS, default=list(GANS))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=0.4, help="MR penalty (k = 3)")
    p.add_argument("--budget-a", type=float, default=30, help="minutes for all of experiment a")
    p.add_argument("--budget-b", type=float, default=12, help="minutes for experiment b")
    p.add_argument("--budget-c", type=float, default=12, help="minutes for experiment c")
    p.add_argument("--margin", type=float, default=60, help="seconds kept back from each budget")
    p.add_argument("--val-fraction", type=float, default=0.1, help="GANs' held-out share in experiment a")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--width-pix2pix", type=int, default=16)
    p.add_argument("--width-cyclegan", type=int, default=8)
    p.add_argument("--width-stargan", type=int, default=8)
    p.add_argument("--resnet-blocks", type=int, help="CycleGAN/StarGAN residual blocks (default: by size)")
    p.add_argument("--train-sizes", type=int, nargs="+", default=[10, 25, 50, 100])
    p.add_argument("--test-subjects", type=int, default=20)
    p.add_argument("--grid-rows", type=int, default=6)
    p.add_argument("--long-epochs", type=int, default=80, help="epochs of experiment v")
    args = p.parse_args(argv)
    args.width = {"pix2pix": args.width_pix2pix, "cyclegan": args.width_cyclegan, "stargan": args.width_stargan}
    if ("b" in args.experiments) and not args.data:
        p.error("experiment b needs --data or MLRDIST_DATA (Yale, wild and animal photos)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = {"a": experiment_a, "b": experiment_b, "c": experiment_c, "v": experiment_v}
    results = {}
    for e in args.experiments:
        results[e] = run[e](args, out)
    (out / f"results_{''.join(args.experiments)}.json").write_text(
        json.dumps({"args": {k: v for k, v in vars(args).items()}, "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
