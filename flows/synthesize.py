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
):
    """Convert every input with every target of the weights; already converted inputs are
    skipped, so a scheduled run over a growing inbox only processes new photos."""
    from mlrdist.train import load_weights

    load_weights(str(weights), storage_options)  # fail fast: missing or incomplete weights
    report = tasks.synthesize(
        weights, inputs, outputs, scheduler=scheduler, overwrite=overwrite, storage_options=storage_options
    )
    tasks.publish_synthesis_report(report)
    print(report.summary())
    return report
