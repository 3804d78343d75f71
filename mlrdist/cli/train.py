"""``mlrdist train FACES WEIGHTS``: fit masked-regression weights on Dask."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK, add_dask_arguments, parse_options, quiet_logging

HELP = "Fit masked-regression weights from a faces.zarr into a weights.zarr (Dask)."


def _int_or_auto(text: str):
    return text if text == "auto" else int(text)


def _float_or_auto(text: str):
    return text if text == "auto" else float(text)


# argparse names these in its messages ("invalid ... value: 'abc'")
_int_or_auto.__name__ = "integer or 'auto'"
_float_or_auto.__name__ = "number or 'auto'"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("faces", help="faces.zarr URL (from `mlrdist ingest`)")
    p.add_argument("weights", help="weights.zarr URL to write (resumed when it exists)")
    p.add_argument("--source", default="neutral", help="source expression (default: neutral)")
    p.add_argument("--targets", nargs="+", default=["smiling"], help="target expression(s)")
    p.add_argument(
        "-k", "--receptive-field", type=_int_or_auto, default=3,
        help="odd window side (default 3), or 'auto' to choose on held-out subjects",
    )
    p.add_argument(
        "--alpha", type=_float_or_auto, default=0.4,
        help="ridge penalty (default 0.4), or 'auto' for closed-form leave-one-out",
    )
    p.add_argument("--colour", choices=["per_channel", "joint"], default="per_channel")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--scaling", choices=["unit", "minmax", "none"], default="unit")
    p.add_argument("--tile", type=int, help="tile side in pixels (default: planned)")
    p.add_argument("--overwrite", action="store_true", help="replace a store trained differently")
    add_dask_arguments(p)


def run(args: argparse.Namespace) -> int:
    from mlrdist.config import TrainConfig
    from mlrdist.train import fit_weights

    quiet_logging()
    config = TrainConfig(source=args.source, targets=tuple(args.targets), receptive_field=args.receptive_field,
                         alpha=args.alpha, colour=args.colour, dtype=args.dtype, scaling=args.scaling,
                         tile=args.tile)
    report = fit_weights(args.faces, args.weights, config, scheduler=args.scheduler, overwrite=args.overwrite,
                         storage_options=parse_options(args.storage_option), progress=True)
    print(report.summary())
    if report.selection:
        print(f"selected receptive_field={report.selection['receptive_field']} alpha={report.selection['alpha']:g}")
    if report.dropped_subjects:
        print(f"subjects without a complete pair (skipped): {', '.join(report.dropped_subjects)}")
    return EXIT_OK
