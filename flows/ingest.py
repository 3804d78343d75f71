"""Ingest flow: image files / archives / s3:// -> faces.zarr (incremental)."""

from __future__ import annotations

from prefect import flow

from flows import tasks
from mlrdist.config import IngestConfig


@flow(name="mlrdist-ingest", flow_run_name="ingest {source}", log_prints=True)
def ingest_flow(
    source: str,
    faces: str,
    config: IngestConfig = IngestConfig(),  # noqa: B008 - frozen; Prefect validates a dict into it
    scheduler: str | None = None,
    storage_options: dict | None = None,
    max_failed: int | float = 0,
):
    """Add the images under ``source`` to ``faces``; files ingested before are skipped.

    ``config`` (labels, size, colour, align, batch_size) is validated before the run starts.
    The run ends Failed when more files were skipped as bad inputs than ``max_failed`` allows
    (a count, or a fraction in (0, 1); default 0), after publishing its report; files that
    match no label are ignored, not failures.
    """
    report = tasks.ingest(source, faces, config, scheduler=scheduler, storage_options=storage_options)
    tasks.publish_ingest_report(report)
    print(report.summary())
    report.raise_if_failed(max_failed)  # after the artifacts: the run ends Failed, its report published
    return report
