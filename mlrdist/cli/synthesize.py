"""``mlrdist synthesize WEIGHTS INPUTS OUTPUTS``: convert collections in bulk."""

from __future__ import annotations

import argparse
import json

from ._common import EXIT_OK, EXIT_SKIPPED, add_dask_arguments, parse_options, quiet_logging

HELP = ("Apply stored weights to a photo collection or a Zarr of faces (Dask). Exit status 3 when some "
        "inputs were skipped (listed with reasons; photos without a face are reported but not counted), "
        "2 on an error.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mlrdist.config import PHOTO_ALIGN

    p.add_argument("weights", help="weights.zarr URL (from `mlrdist train`)")
    p.add_argument(
        "inputs",
        help="a faces.zarr (or any Zarr with image(sample, y, x, channel)), or a photo collection: "
        "folder, glob, .zip/.tar(.gz) archive or s3:// prefix",
    )
    p.add_argument(
        "outputs",
        help="where to write: an outputs.zarr for Zarr inputs; for photos a folder mirrored as "
        "OUTPUTS/<target>/<relative path>, or a .zip",
    )
    p.add_argument(
        "--align", choices=PHOTO_ALIGN, default=None,
        help="photos (default auto): auto = each face from its .tem template when it is of a known layout "
        "and plausible, else the face detector; landmarks = templates only; detector = the detector only; "
        "every face found is changed at the photo's resolution. resize = centre-crop and resize to the "
        "model's size; none = photos are aligned faces of the model's size already",
    )
    p.add_argument("--detail", choices=["keep", "none"], default=None,
                   help="keep (default for photos) = add the model's low-passed change to the photo, keeping its "
                   "detail and resolution; none (default for Zarr inputs) = the prediction itself, the paper's output")
    p.add_argument("--strength", type=float, default=1.0,
                   help="output = input + STRENGTH x change: 0 returns the input, 1 is the model (default), "
                   "above 1 exaggerates a faint expression")
    p.add_argument("--no-face", choices=["copy", "skip"], default="copy",
                   help="photos without a face (when aligning): copy through or skip; reported either way")
    p.add_argument("--format", help="output image format (png, jpg, webp, tif, bmp); default: the input's")
    p.add_argument("--batch", type=int, help="images per Dask task (default 256 for Zarr; 32 photos, or fewer "
                   "reaching 24 MiB of files, when aligning faces; 64 otherwise)")
    p.add_argument("--preview", metavar="PNG", help="write a grid of face crops (input | each target) of photos "
                   "spread over the collection")
    p.add_argument("--preview-rows", type=int, default=12, help="photos in the preview grid (default 12)")
    p.add_argument("--preview-cell", type=int, default=320, help="side of each preview picture in pixels (default 320)")
    p.add_argument("--report", metavar="JSON", help="write the run report (failures with reasons) here")
    p.add_argument("--overwrite", action="store_true", help="convert everything again, replacing existing outputs, "
                   "also files (or a .zip) mlrdist did not write, which are otherwise refused")
    p.add_argument("--keep-parts", action="store_true",
                   help="for a .zip output: keep the tree OUTPUTS.parts it is built in (with the completion "
                   "manifests), so that a rerun converts only new or failed photos")
    add_dask_arguments(p)


def run(args: argparse.Namespace) -> int:
    from mlrdist.config import SynthesisConfig
    from mlrdist.synthesize import synthesize

    quiet_logging()
    config = SynthesisConfig(align=args.align, no_face=args.no_face, format=args.format, batch=args.batch,
                             keep_parts=args.keep_parts, detail=args.detail, strength=args.strength)
    report = synthesize(args.weights, args.inputs, args.outputs, config, scheduler=args.scheduler,
                        overwrite=args.overwrite, storage_options=parse_options(args.storage_option),
                        progress=True, preview=args.preview, preview_rows=args.preview_rows,
                        preview_cell=args.preview_cell)
    print(report.summary())
    for url, reason in sorted(report.failed.items()):
        print(f"  skipped {url}: {reason}")
    for url in report.no_face:
        print(f"  no face: {url}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report.to_dict(), f, indent=2)
    if args.preview:
        print(f"preview: {args.preview}")
    return EXIT_SKIPPED if report.failed else EXIT_OK
