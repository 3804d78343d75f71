"""End-to-end and scheduled flows: ingest -> train -> evaluate -> synthesize, and the weekly
retrain that only trains when the face dataset grew."""

from __future__ import annotations

from prefect import flow

from flows import tasks
from flows.evaluate import evaluate_flow
from flows.ingest import ingest_flow
from flows.synthesize import synthesize_flow
from flows.train import train_flow


@flow(name="mlrdist-pipeline", flow_run_name="pipeline {images}", log_prints=True)
def pipeline_flow(
    images: str,
    workdir: str,
    labels: str = "london",
    size: int = 128,
    align: str = "auto",
    receptive_field: int = 3,
    alpha: float = 0.4,
    methods: list[str] | None = None,
    folds: int = 4,
    report_dir: str | None = None,
    scheduler: str | None = None,
    storage_options: dict | None = None,
):
    """Every stage into ``workdir`` (any URL): faces.zarr, weights.zarr, outputs.zarr; the
    evaluation report (HTML and PNGs, local files) into ``report_dir``, by default
    ``workdir/evaluation`` for a local ``workdir`` and ``./mlrdist-evaluation`` otherwise."""
    root = workdir.rstrip("/")
    if report_dir is None:
        report_dir = "mlrdist-evaluation" if "://" in root else f"{root}/evaluation"
    faces, weights = f"{root}/faces.zarr", f"{root}/weights.zarr"
    ingest_flow(images, faces, labels=labels, size=size, align=align, scheduler=scheduler,
                storage_options=storage_options)
    train_flow(faces, weights, receptive_field=receptive_field, alpha=alpha, scheduler=scheduler,
               overwrite=True, storage_options=storage_options)
    result = evaluate_flow(faces, report_dir, methods=methods, folds=folds,
                           storage_options=storage_options)
    synthesize_flow(weights, faces, f"{root}/outputs.zarr", scheduler=scheduler, overwrite=True,
                    storage_options=storage_options)
    return result


@flow(name="mlrdist-retrain", flow_run_name="retrain {weights}", log_prints=True)
def retrain_flow(
    images: str,
    faces: str,
    weights: str,
    labels: str = "london",
    size: int = 128,
    align: str = "auto",
    receptive_field: int = 3,
    alpha: float = 0.4,
    scheduler: str | None = None,
    storage_options: dict | None = None,
):
    """Ingest new images; retrain only when pairs were added (or no weights exist yet)."""
    from mlrdist.io.stores import group_exists

    report = ingest_flow(images, faces, labels=labels, size=size, align=align, scheduler=scheduler,
                         storage_options=storage_options)
    added = report.count("ingested")
    if added == 0 and group_exists(weights, storage_options):
        print(f"no new images in {images}: {weights} is up to date")
        return None
    print(f"{added} new image(s): retraining {weights}")
    result = tasks.train(faces, weights, receptive_field=receptive_field, alpha=alpha, scheduler=scheduler,
                         overwrite=True, storage_options=storage_options)
    tasks.publish_train_report(result)
    return result
