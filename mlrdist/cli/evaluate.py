"""``mlrdist evaluate [FACES]``: cross-validated comparison of MR with the baselines."""

from __future__ import annotations

import argparse
import sys

from ._common import EXIT_OK, add_dask_arguments, parse_options, quiet_logging

HELP = ("Compare MR with the paper's baselines (l2/l1/l0/SVD/kernel regression; GANs with the 'gan' extra) by "
        "subject-disjoint cross-validation, each fold a Dask task")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mlrdist.evaluate import GAN_METHODS, METHOD_GRIDS

    p.add_argument("faces", nargs="?", help="faces.zarr URL (default: the packaged 12-subject London sample)")
    p.add_argument("--out", "-o", required=True, help="folder for report.md/.html, results.json and PNGs")
    p.add_argument("--source", default="neutral", help="source expression (default neutral)")
    p.add_argument("--targets", nargs="+", default=["smiling"], help="target expressions (one multi-target fit)")
    p.add_argument("--methods", default=",".join(METHOD_GRIDS),
                   help=f"comma-separated methods of {','.join(METHOD_GRIDS)} (default all of these) and "
                   f"{','.join(GAN_METHODS)} (GANs: pip install 'mlrdist[gan]')")
    p.add_argument("--gan-epochs", type=int, help="training epochs of the GAN methods (default: each one's own)")
    p.add_argument("--size", type=int, help="resize images to SIZE x SIZE (default: as stored)")
    p.add_argument("--gray", action="store_true", help="convert colour images to grayscale")
    p.add_argument("--folds", type=int, default=5, help="subject-disjoint folds (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tune", action="store_true", help="nested grid search of every method's hyper-parameters")
    p.add_argument("--scaling", choices=("unit", "minmax"), default="unit", help="intensity scaling of every method")
    p.add_argument("--max-subjects", type=int, help="use only the first N subjects")
    add_dask_arguments(p)


def run(args: argparse.Namespace) -> int:
    from mlrdist.evaluate import evaluate_store

    quiet_logging()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    print(f"evaluating {', '.join(methods)} with {args.folds} folds", file=sys.stderr)
    result = evaluate_store(
        args.faces, args.out, methods, source=args.source, targets=args.targets, folds=args.folds,
        seed=args.seed, tune=args.tune, scaling=args.scaling, size=args.size, gray=args.gray,
        max_subjects=args.max_subjects, storage_options=parse_options(args.storage_option),
        gan_epochs=args.gan_epochs, progress=True, scheduler=args.scheduler,
    )
    info = result.info
    print(f"{info['n_pairs']} pairs, images {tuple(info['image_shape'])}, targets {result.targets}", file=sys.stderr)
    for row in result.table():
        print(f"{row['method']:<10} {row['target']:<10} mse {row['mse']:.5f} ± {row['mse_std']:.5f}  "
              f"psnr {row['psnr']:.2f}  ssim {row['ssim']:.4f}  detail {row['detail']:.2f}  "
              f"fit {row['fit_seconds']:.2f}s  params {row['n_parameters'] or '?'}  "
              f"peak {row['peak_memory_bytes'] / 2**20:.0f} MiB")
    for name, err in result.errors.items():
        print(f"{name}: not run: {err}", file=sys.stderr)
    print(f"report: {args.out}/report.html")
    return EXIT_OK
