"""Train flow: faces.zarr -> weights.zarr on Dask."""

from __future__ import annotations

from prefect import flow

from flows import tasks
from mlrdist.config import TrainConfig


@flow(name="mlrdist-train", flow_run_name="train {weights}", log_prints=True)
def train_flow(
    faces: str,
    weights: str,
    config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen; Prefect validates a dict into it
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
):
    """Fit masked-regression weights; ``config`` is validated before the run starts."""
    report = tasks.train(faces, weights, config, scheduler=scheduler, overwrite=overwrite,
                         storage_options=storage_options)
    tasks.publish_train_report(report)
    print(report.summary())
    return report
