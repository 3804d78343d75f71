"""Synthesis flow: stored weights + a collection -> outputs (Zarr or mirrored images)."""

from __future__ import annotations

from prefect import flow

from flows import tasks


@flow(name="mlrdist-synthesize", flow_run_name="synthesize {inputs}", log_prints=True)
def synthesize_flow(
    weights: str,
    inputs: str,
    outputs: str,
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    align: str = "none",
    no_face: str = "copy",
    format: str | None = None,  # noqa: A002 - as the CLI's --format
    keep_parts: bool = True,
):
    """Convert every input with every target of the weights; already converted inputs are
    skipped, so a scheduled run over a growing inbox only processes new photos.

    ``align``, ``no_face`` and ``format`` apply to photo collections (see
    :func:`mlrdist.synthesize_files.synthesize_files`). For a ``.zip`` output the tree it is
    built in is kept by default (``keep_parts``), so that the next scheduled run into the same
    archive converts only new photos.
    """
    from mlrdist.io.stores import group_exists
    from mlrdist.train import load_weights

    load_weights(str(weights), storage_options)  # fail fast: missing or incomplete weights
    options = {}
    if not group_exists(inputs, storage_options):  # a photo collection
        options = dict(align=align, no_face=no_face, format=format, keep_parts=keep_parts)
    elif align != "none" or format is not None:
        raise ValueError("align and format apply to photo collections, not to Zarr inputs")
    report = tasks.synthesize(
        weights, inputs, outputs, scheduler=scheduler, overwrite=overwrite, storage_options=storage_options,
        **options,
    )
    tasks.publish_synthesis_report(report)
    print(report.summary())
    return report
