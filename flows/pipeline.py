"""End-to-end and scheduled flows: ingest -> train -> evaluate -> synthesize, and the weekly
retrain that only trains when the face dataset or the configuration changed."""

from __future__ import annotations

from prefect import flow

from flows import tasks
from flows.evaluate import evaluate_flow
from flows.ingest import ingest_flow
from flows.synthesize import synthesize_flow
from flows.train import train_flow
from mlrdist.config import IngestConfig, SynthesisConfig, TrainConfig


@flow(name="mlrdist-pipeline", flow_run_name="pipeline {images}", log_prints=True)
def pipeline_flow(
    images: str,
    workdir: str,
    ingest: IngestConfig = IngestConfig(),  # noqa: B008 - frozen; Prefect validates dicts into them
    train: TrainConfig = TrainConfig(),  # noqa: B008
    methods: list[str] | None = None,
    folds: int = 4,
    report_dir: str | None = None,
    scheduler: str | None = None,
    storage_options: dict | None = None,
    max_failed: int | float = 0,
):
    """Every stage into ``workdir`` (any URL): faces.zarr, weights.zarr, outputs.zarr; the
    evaluation report (HTML and PNGs, local files) into ``report_dir``, by default
    ``workdir/evaluation`` for a local ``workdir`` and ``./mlrdist-evaluation`` otherwise."""
    root = workdir.rstrip("/")
    if report_dir is None:
        report_dir = "mlrdist-evaluation" if "://" in root else f"{root}/evaluation"
    faces, weights = f"{root}/faces.zarr", f"{root}/weights.zarr"
    ingest_flow(images, faces, ingest, scheduler=scheduler, storage_options=storage_options, max_failed=max_failed)
    train_flow(faces, weights, train, scheduler=scheduler, overwrite=True, storage_options=storage_options)
    result = evaluate_flow(faces, report_dir, methods=methods, folds=folds, storage_options=storage_options)
    synthesize_flow(weights, faces, f"{root}/outputs.zarr", SynthesisConfig(), scheduler=scheduler,
                    overwrite=True, storage_options=storage_options, max_failed=max_failed)
    return result


@flow(name="mlrdist-retrain", flow_run_name="retrain {weights}", log_prints=True)
def retrain_flow(
    images: str,
    faces: str,
    weights: str,
    ingest: IngestConfig = IngestConfig(),  # noqa: B008 - frozen; Prefect validates dicts into them
    train: TrainConfig = TrainConfig(),  # noqa: B008
    scheduler: str | None = None,
    storage_options: dict | None = None,
    max_failed: int | float = 0,
):
    """Ingest new images; retrain only when the weights are not current (new pairs, another
    configuration, or no complete weights yet)."""
    ingest_flow(images, faces, ingest, scheduler=scheduler, storage_options=storage_options, max_failed=max_failed)
    if tasks.weights_current(faces, weights, train, storage_options=storage_options):
        print(f"{weights} is up to date with {faces}: nothing to train")
        return None
    print(f"retraining {weights}")
    result = tasks.train(faces, weights, train, scheduler=scheduler, overwrite=True,
                         storage_options=storage_options)
    tasks.publish_train_report(result)
    return result
