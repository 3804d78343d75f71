"""Ingest flow: image files / archives / s3:// -> faces.zarr (incremental)."""

from __future__ import annotations

from prefect import flow

from flows import tasks


@flow(name="mlrdist-ingest", flow_run_name="ingest {source}", log_prints=True)
def ingest_flow(
    source: str,
    faces: str,
    labels: str = "london",
    size: int = 128,
    colour: str = "rgb",
    align: str = "auto",
    scheduler: str | None = None,
    storage_options: dict | None = None,
):
    """Add the images under ``source`` to ``faces``; files ingested before are skipped."""
    from mlrdist.align import AlignSpec

    AlignSpec(size=size)  # fail fast on a bad size
    if colour not in ("rgb", "gray"):
        raise ValueError(f"colour must be 'rgb' or 'gray', got {colour!r}")
    report = tasks.ingest(source, faces, labels=labels, size=size, colour=colour, align=align,
                          scheduler=scheduler, storage_options=storage_options)
    tasks.publish_ingest_report(report)
    print(report.summary())
    return report
