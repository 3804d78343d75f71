"""Train flow: faces.zarr -> weights.zarr on Dask."""

from __future__ import annotations

from prefect import flow

from flows import tasks


@flow(name="mlrdist-train", flow_run_name="train {weights}", log_prints=True)
def train_flow(
    faces: str,
    weights: str,
    source: str = "neutral",
    targets: list[str] = ["smiling"],  # noqa: B006 - Prefect parameters are copied
    receptive_field: int | str = 3,
    alpha: float | str = 0.4,
    colour: str = "per_channel",
    dtype: str = "float64",
    scaling: str = "unit",
    tile: int | None = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
):
    """Fit masked-regression weights; parameters are checked before any work."""
    from mlrdist.train import train_config

    train_config(source=source, targets=tuple(targets), receptive_field=receptive_field, alpha=alpha,
                 colour=colour, dtype=dtype, scaling=scaling)
    report = tasks.train(
        faces, weights, source=source, targets=tuple(targets), receptive_field=receptive_field,
        alpha=alpha, colour=colour, dtype=dtype, scaling=scaling, tile=tile, scheduler=scheduler,
        overwrite=overwrite, storage_options=storage_options,
    )
    tasks.publish_train_report(report)
    print(report.summary())
    return report
