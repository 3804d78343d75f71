"""``mlrdist ingest SOURCE DEST``: images (folder, glob, archive, s3://) -> faces.zarr."""

from __future__ import annotations

import argparse
import posixpath
import sys

from .cli import EXIT_SKIPPED, add_dask_arguments, command, parse_options, quiet_logging


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="folder, glob, .zip/.tar(.gz) archive, or s3://bucket/prefix")
    p.add_argument("dest", help="faces.zarr URL (created, or appended to)")
    p.add_argument(
        "--labels", default="london",
        help="london, yale, a regex with (?P<subject>..) and (?P<expression>..), or a manifest .csv "
        "(columns file, subject, expression); default london",
    )
    p.add_argument("--size", type=int, default=128, help="output side in pixels, 32..1024 (default 128)")
    p.add_argument("--colour", choices=["rgb", "gray"], default="rgb")
    p.add_argument("--align", choices=["auto", "landmarks", "detector", "none"], default="auto")
    p.add_argument("--batch-size", type=int, default=16, help="files per Dask task (default 16)")
    p.add_argument("--report", help="report JSON path (default: DEST/../ingest-report.json)")
    add_dask_arguments(p)


def default_report_path(dest: str) -> str:
    """``DEST/../ingest-report.json`` (same file system as DEST)."""
    return posixpath.join(posixpath.dirname(dest.rstrip("/")) or ".", "ingest-report.json")


@command("ingest", "Decode, align and store face images in a faces.zarr. Exit status 3 when some "
         "files were skipped (listed with reasons in the summary and the report), 2 on an error.", _args)
def run(args: argparse.Namespace) -> int:
    import fsspec

    from .ingest import ingest_images

    quiet_logging()
    options = parse_options(args.storage_option)
    report = ingest_images(
        args.source, args.dest, labels=args.labels, size=args.size, colour=args.colour, align=args.align,
        storage_options=options, scheduler=args.scheduler, batch_size=args.batch_size, progress=True,
    )
    print(report.summary())
    path = args.report or default_report_path(args.dest)
    with fsspec.open(path, "w", **(options or {}) if "://" in path else {}) as f:
        f.write(report.to_json())
    print(f"report: {path}", file=sys.stderr)
    return EXIT_SKIPPED if report.count("skipped") else 0
