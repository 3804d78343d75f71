"""``mlrdist demo``: the whole pipeline on the packaged sample, ending with a report."""

from __future__ import annotations

import argparse

from ._common import EXIT_OK, quiet_logging

HELP = "Run ingest -> train -> evaluate -> synthesize on the packaged sample and write a report."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="mlrdist-demo", help="output folder (default ./mlrdist-demo)")
    p.add_argument("--data", help="a local London set (folder holding london-face-set/ or neutral/, smiling/) "
                                  "instead of the packaged 12-subject sample")
    p.add_argument("-k", "--receptive-field", type=int, default=3, help="odd window side (default 3)")
    p.add_argument("--alpha", type=float, default=0.4, help="ridge penalty (default 0.4)")
    p.add_argument("--folds", type=int, default=4, help="cross-validation folds of the comparison")
    p.add_argument("--scheduler", help="Dask scheduler address (default: an embedded LocalCluster)")


def run(args: argparse.Namespace) -> int:
    from mlrdist.demo import run_demo

    quiet_logging()
    res = run_demo(args.out, data=args.data, receptive_field=args.receptive_field, alpha=args.alpha,
                   folds=args.folds, scheduler=args.scheduler)
    print()
    for stage, line in res.summaries.items():
        print(f"{stage:>10}: {line}")
    print(f"\nreport: {res.report}")
    for name, path in res.paths.items():
        print(f"{name:>10}: {path}")
    print(f"finished in {res.seconds:.0f} s")
    return EXIT_OK
