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
    from mlrdist.evaluate import METHOD_GRIDS

    unknown = sorted(set(methods or []) - set(METHOD_GRIDS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHOD_GRIDS)}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    result = tasks.evaluate(faces, out_dir, methods=methods, folds=folds, storage_options=storage_options)
    tasks.publish_evaluation(result, out_dir)
    return result
