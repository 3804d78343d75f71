"""``mlrdist ingest SOURCE DEST``: images (folder, glob, archive, s3://) -> faces.zarr."""

from __future__ import annotations

import argparse
import posixpath
import sys

from ._common import EXIT_OK, EXIT_SKIPPED, add_dask_arguments, parse_options, quiet_logging

HELP = ("Decode, align and store face images in a faces.zarr. Exit status 3 when some files were skipped "
        "as bad inputs (listed with reasons in the summary and the report; files that match no label are "
        "ignored, not failures), 2 on an error.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mlrdist.config import INGEST_ALIGN

    p.add_argument("source", help="folder, glob, .zip/.tar(.gz) archive, or s3://bucket/prefix")
    p.add_argument("dest", help="faces.zarr URL (created, or appended to)")
    p.add_argument(
        "--labels", default="london",
        help="london, yale, sample, a regex with (?P<subject>..) and (?P<expression>..), or a manifest .csv "
        "(columns file, subject, expression); default london",
    )
    p.add_argument("--size", type=int, default=128, help="output side in pixels, 32..1024 (default 128)")
    p.add_argument("--colour", choices=["rgb", "gray"], default="rgb")
    p.add_argument("--align", choices=INGEST_ALIGN, default="auto")
    p.add_argument("--batch-size", type=int, default=16, help="files per Dask task (default 16)")
    p.add_argument("--report", help="report JSON path (default: next to DEST, named after it: faces.zarr -> "
                   "faces.ingest-report.json)")
    add_dask_arguments(p)


def default_report_path(dest: str) -> str:
    """Next to DEST and named after it (``faces.zarr`` -> ``faces.ingest-report.json``), so two
    stores in one folder keep their own reports."""
    dest = dest.rstrip("/")
    stem = posixpath.splitext(posixpath.basename(dest))[0] or "faces"
    return posixpath.join(posixpath.dirname(dest) or ".", f"{stem}.ingest-report.json")


def run(args: argparse.Namespace) -> int:
    from mlrdist.config import IngestConfig
    from mlrdist.ingest import ingest_images
    from mlrdist.io.location import Location
    from mlrdist.io.stores import write_bytes

    quiet_logging()
    options = parse_options(args.storage_option)
    config = IngestConfig(labels=args.labels, size=args.size, colour=args.colour, align=args.align,
                          batch_size=args.batch_size)
    report = ingest_images(args.source, args.dest, config, storage_options=options, scheduler=args.scheduler,
                           progress=True)
    print(report.summary())
    path = Location(args.report or default_report_path(args.dest), options)
    write_bytes(path, report.to_json().encode())
    print(f"report: {path}", file=sys.stderr)
    return EXIT_SKIPPED if report.count("skipped") else EXIT_OK
