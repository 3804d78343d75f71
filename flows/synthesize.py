"""Synthesis flow: stored weights + a collection -> outputs (Zarr or mirrored images)."""

from __future__ import annotations

from prefect import flow

from flows import tasks
from mlrdist.config import SynthesisConfig


@flow(name="mlrdist-synthesize", flow_run_name="synthesize {inputs}", log_prints=True)
def synthesize_flow(
    weights: str,
    inputs: str,
    outputs: str,
    config: SynthesisConfig = SynthesisConfig(keep_parts=True),  # noqa: B008 - frozen
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    max_failed: int | float = 0,
):
    """Convert every input with every target of the weights; already converted inputs are
    skipped, so a scheduled run over a growing inbox only processes new photos.

    For a ``.zip`` output the tree it is built in is kept by default (``keep_parts``), so
    that the next scheduled run into the same archive converts only new photos. The run ends
    Failed when more inputs failed than ``max_failed`` allows (a count, or a fraction of the
    inputs in (0, 1); default 0), after publishing its report.
    """
    report = tasks.synthesize(weights, inputs, outputs, config, scheduler=scheduler, overwrite=overwrite,
                              storage_options=storage_options)
    tasks.publish_synthesis_report(report)
    print(report.summary())
    report.raise_if_failed(max_failed)  # after the artifacts: the run ends Failed, its report published
    return report
