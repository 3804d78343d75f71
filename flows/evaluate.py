"""Evaluate flow: MR against the paper's baselines on a faces.zarr, with a report."""

from __future__ import annotations

from prefect import flow

from flows import tasks


@flow(name="mlrdist-evaluate", flow_run_name="evaluate {faces}", log_prints=True)
def evaluate_flow(
    faces: str,
    out_dir: str,
    methods: list[str] | None = None,
    folds: int = 5,
    storage_options: dict | None = None,
):
    """Subject-disjoint K-fold comparison; publishes the metric table and report links."""
    result = tasks.evaluate(faces, out_dir, methods=methods, folds=folds, storage_options=storage_options)
    tasks.publish_evaluation(result, out_dir)
    return result
