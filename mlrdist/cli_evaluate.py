"""``mlrdist evaluate [FACES]``: cross-validated comparison of MR with the baselines."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .cli import command


def resize_stack(X: np.ndarray, size: int | None, gray: bool) -> np.ndarray:
    """uint8 ``(n, H, W, C)`` -> ``(n, size, size, C')`` (bicubic), ``C' = 1`` when ``gray``."""
    from PIL import Image

    X = X if X.ndim == 4 else X[..., None]
    if gray and X.shape[-1] == 3:
        X = np.rint(X.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)[..., None]
    if size is None or X.shape[1:3] == (size, size):
        return X
    mode = "L" if X.shape[-1] == 1 else "RGB"
    out = [np.asarray(Image.fromarray(x[..., 0] if mode == "L" else x, mode).resize((size, size), Image.BICUBIC)) for x in X]
    return np.stack(out).reshape(len(X), size, size, X.shape[-1])


def load_pairs(faces: str | None, source: str, targets: list[str], *, gray: bool, size: int | None,
               storage_options: dict | None = None, max_subjects: int | None = None):
    """Pairs from a faces.zarr URL (or the packaged sample when ``faces`` is None)."""
    from . import datasets

    if faces is None:
        ds = datasets.load_sample()
    else:
        from .ingest import open_faces

        ds = open_faces(faces, storage_options)  # committed samples only
    X, Y, subjects = datasets.pairs(ds, source=source, targets=tuple(targets))
    if max_subjects:
        X, subjects = X[:max_subjects], subjects[:max_subjects]
        Y = {t: y[:max_subjects] for t, y in Y.items()}
    X = resize_stack(X, size, gray)
    return X, {t: resize_stack(y, size, gray) for t, y in Y.items()}, subjects


def _args(p: argparse.ArgumentParser) -> None:
    from .evaluate import METHOD_GRIDS

    p.add_argument("faces", nargs="?", help="faces.zarr URL (default: the packaged 12-subject London sample)")
    p.add_argument("--out", "-o", required=True, help="folder for report.md/.html, results.json and PNGs")
    p.add_argument("--source", default="neutral", help="source expression (default neutral)")
    p.add_argument("--targets", nargs="+", default=["smiling"], help="target expressions (one multi-target fit)")
    p.add_argument("--methods", default=",".join(METHOD_GRIDS),
                   help=f"comma-separated subset of {','.join(METHOD_GRIDS)} (default all)")
    p.add_argument("--size", type=int, help="resize images to SIZE x SIZE (default: as stored)")
    p.add_argument("--gray", action="store_true", help="convert colour images to grayscale")
    p.add_argument("--folds", type=int, default=5, help="subject-disjoint folds (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tune", action="store_true", help="nested grid search of every method's hyper-parameters")
    p.add_argument("--scaling", choices=("unit", "minmax"), default="unit", help="intensity scaling of every method")
    p.add_argument("--max-subjects", type=int, help="use only the first N subjects")
    p.add_argument("--storage-option", "-S", action="append", metavar="KEY=VALUE", help="fsspec option for URLs")


@command("evaluate", "Compare MR with l2/l1/l0/SVD/kernel baselines by subject-disjoint cross-validation", _args)
def run(args: argparse.Namespace) -> int:
    from .cli import parse_options
    from .evaluate import default_methods, evaluate

    X, Y, subjects = load_pairs(args.faces, args.source, args.targets, gray=args.gray, size=args.size,
                                storage_options=parse_options(args.storage_option), max_subjects=args.max_subjects)
    methods = default_methods([m.strip() for m in args.methods.split(",") if m.strip()], tune=args.tune,
                              scaling=args.scaling)
    print(f"{len(X)} pairs, images {X.shape[1:]}, targets {list(Y)}, {args.folds} folds", file=sys.stderr)
    result = evaluate(methods, X, Y, subjects, folds=args.folds, seed=args.seed, out_dir=args.out, progress=True)
    for row in result.table():
        print(f"{row['method']:<10} {row['target']:<10} mse {row['mse']:.5f} ± {row['mse_std']:.5f}  "
              f"psnr {row['psnr']:.2f}  ssim {row['ssim']:.4f}  fit {row['fit_seconds']:.2f}s")
    for name, err in result.errors.items():
        print(f"{name}: not run: {err}", file=sys.stderr)
    print(f"report: {args.out}/report.html")
    return 0
