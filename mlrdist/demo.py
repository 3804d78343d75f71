"""The whole pipeline on the packaged sample (or a local copy of the London set).

ingest -> train (Dask) -> evaluate (MR against the baselines) -> synthesize -> report.
One embedded LocalCluster (or the given scheduler) serves every stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEMO_METHODS", "DemoResult", "run_demo"]

DEMO_METHODS = ("MR", "MR-detail", "l2", "l1-masked", "l0-masked", "rrr", "pcr", "kernel")


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    paths: dict[str, str] = field(default_factory=dict)
    summaries: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _sources(data: str | Path | None) -> tuple[str, dict, str | None, str]:
    """(images, ingest options, wild photos or None, description)."""
    from importlib import resources

    if data is None:
        root = resources.files("mlrdist") / "data" / "sample"
        return str(root), {"labels": "sample", "align": "none"}, str(root / "neutral"), (
            "the packaged sample: 12 London subjects, neutral and smiling, 128 x 128 colour "
            "(DeBruine & Jones 2017, CC BY 4.0)"
        )
    london = Path(data) / "london-face-set" if (Path(data) / "london-face-set").is_dir() else Path(data)
    if not (london / "neutral").is_dir():
        raise FileNotFoundError(f"--data {data!r} holds no London set (neutral/, smiling/)")
    wild = london / "wild"
    return str(london), {"labels": "london", "align": "auto"}, str(wild) if wild.is_dir() else None, (
        f"the London set at {london} (102 subjects, aligned on the eyes at 128 x 128)"
    )


def run_demo(
    out_dir: str | Path = "mlrdist-demo",
    *,
    data: str | Path | None = None,
    receptive_field: int = 3,
    alpha: float = 0.4,
    folds: int = 4,
    methods: tuple[str, ...] = DEMO_METHODS,
    scheduler: str | None = None,
    progress: bool = True,
    log=print,
) -> DemoResult:
    """Run every stage and write ``out_dir/report.html``; returns the paths written."""
    import numpy as np

    from .datasets import pairs
    from .evaluate import default_methods, evaluate
    from .execution import open_executor
    from .ingest import ingest_images
    from .io.faces_store import open_faces
    from .synthesize import synthesize
    from .train import fit_weights

    t0 = time.perf_counter()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    images, ingest_opts, photos, described = _sources(data)
    res = DemoResult(out_dir=out, report=out / "report.html")
    p = res.paths
    p.update(faces=str(out / "faces.zarr"), weights=str(out / "weights.zarr"),
             outputs=str(out / "outputs.zarr"), photos=str(out / "photos"),
             evaluation=str(out / "evaluation"), preview=str(out / "photos-preview.png"))
    with open_executor(scheduler=scheduler) as ex:
        log(f"1/4 ingest {described}")
        rep = ingest_images(images, p["faces"], size=128, client=ex.client, scheduler=ex.scheduler,
                            progress=progress, **ingest_opts)
        res.summaries["ingest"] = (f"{rep.count('ingested')} images ingested, {rep.count('exists')} already "
                                   f"present, {rep.count('skipped')} skipped")
        log("2/4 train masked regression on Dask")
        ds = open_faces(p["faces"])
        X, Y, subjects = pairs(ds)
        train = fit_weights(p["faces"], p["weights"], receptive_field=receptive_field, alpha=alpha,
                            client=ex.client, scheduler=ex.scheduler, overwrite=True, progress=progress)
        res.summaries["train"] = train.summary()
        log(f"3/4 evaluate MR against {', '.join(m for m in methods if m != 'MR')} ({folds} subject-disjoint folds)")
        est = default_methods([m for m in methods])
        est["MR"].set_params(receptive_field=receptive_field, alpha=alpha)
        result = evaluate(est, X, Y, list(subjects), folds=min(folds, len(set(subjects))),
                          out_dir=p["evaluation"], progress=progress)
        res.summaries["evaluate"] = _best_line(result)
        log("4/4 synthesize")
        syn = synthesize(p["weights"], p["faces"], p["outputs"], client=ex.client, scheduler=ex.scheduler,
                         overwrite=True)
        res.summaries["synthesize"] = syn.summary()
        if photos:
            align = "none" if data is None else "landmarks"
            syn_photos = synthesize(p["weights"], photos, p["photos"], client=ex.client, scheduler=ex.scheduler,
                                    align=align, preview=p["preview"], preview_rows=6, overwrite=True)
            res.summaries["photos"] = syn_photos.summary()
    res.seconds = time.perf_counter() - t0
    _write_report(res, result, described, np)
    return res


def _best_line(result) -> str:
    rows = [r for r in result.table() if "mse" in r]
    if not rows:
        return "no method completed"
    best = min(rows, key=lambda r: r["mse"])
    mr = next((r for r in rows if r["method"] == "MR"), None)
    text = f"lowest MSE: {best['method']} ({best['mse']:.5f})"
    return text + (f"; MR {mr['mse']:.5f}" if mr else "")


def _write_report(res: DemoResult, result, described: str, np) -> None:
    from .report import Page

    out = res.out_dir
    rows = [[r["method"], f"{r['mse']:.5f} ± {r['mse_std']:.5f}", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
             f"{r.get('n_parameters') or ''}", f"{r.get('fit_seconds', 0):.2f}"]
            for r in sorted(result.table(), key=lambda r: r["mse"])]
    page = Page("mlrdist demo").text(f"Data: {described}. Finished in {res.seconds:.0f} s.")
    page.heading("Stages").items([f"{k}: {v}" for k, v in res.summaries.items()])
    page.heading("Comparison (subject-disjoint cross-validation)")
    page.table(["method", "MSE", "PSNR (dB)", "SSIM", "parameters", "fit (s)"], rows)
    if result.errors:
        page.text("Not run:").items([f"{m}: {e}" for m, e in result.errors.items()])
    page.text("Full evaluation report: evaluation/report.html")
    for name, path in result.figures.items():
        if Path(path).suffix == ".png" and Path(path).is_relative_to(out):
            page.heading(name).image(name, path)
    preview = Path(res.paths["preview"])
    if preview.exists():
        page.heading("Synthesis of photos").image("photo preview", preview)
    page.heading("Files written").items([f"{k}: {v}" for k, v in res.paths.items()])
    page.write(out, "report")
    (out / "demo.json").write_text(json.dumps({"summaries": res.summaries, "paths": res.paths,
                                               "seconds": res.seconds}, indent=1))
