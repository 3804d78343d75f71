"""Thin Prefect tasks: one mlrdist call each, plus retries, run names and artifacts."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE


def transient(task, task_run, state) -> bool:
    """Retry only what may succeed on a second try: network and storage hiccups, not a bad
    parameter or a missing file."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError | TimeoutError) and not isinstance(exc, FileNotFoundError | PermissionError)


# Stages are idempotent and resumable themselves: Prefect retries re-run them safely, and
# caching is left to the stores' own completion flags (NO_CACHE).
IO_RETRIES = {"retries": 2, "retry_delay_seconds": [5, 30], "retry_condition_fn": transient,
              "cache_policy": NO_CACHE, "persist_result": True}


@task(name="ingest", task_run_name="ingest {source}", **IO_RETRIES)
def ingest(source: str, dest: str, config, **options: Any):
    from mlrdist.ingest import ingest_images

    return ingest_images(source, dest, config, **options)


@task(name="evaluate", task_run_name="evaluate {faces}", cache_policy=NO_CACHE, persist_result=True)
def evaluate(faces: str, out_dir: str, **options: Any):
    from mlrdist.evaluate import evaluate_store

    return evaluate_store(faces, out_dir, **options)


@task(name="train", task_run_name="train {weights}", **IO_RETRIES)
def train(faces: str, weights: str, config, **options: Any):
    from mlrdist.train import fit_weights

    return fit_weights(faces, weights, config, **options)


@task(name="weights-current", cache_policy=NO_CACHE)
def weights_current(faces: str, weights: str, config, **options: Any) -> bool:
    from mlrdist.train import weights_current as current

    return current(faces, weights, config, **options)


@task(name="synthesize", task_run_name="synthesize {inputs} -> {outputs}", **IO_RETRIES)
def synthesize(weights: str, inputs: str, outputs: str, config, **options: Any):
    from mlrdist.synthesize import synthesize as run

    return run(weights, inputs, outputs, config, **options)


@task(name="publish-train-report", cache_policy=NO_CACHE)
def publish_train_report(report) -> None:
    rows = [
        {"item": "weights", "value": report.weights},
        {"item": "training pairs", "value": report.n_pairs},
        {"item": "plan", "value": report.plan},
        {"item": "tiles computed / skipped", "value": f"{report.tiles_computed} / {report.tiles_skipped}"},
        {"item": "seconds", "value": round(report.seconds, 1)},
    ]
    if report.selection:
        rows.append({"item": "selected k / alpha", "value": f"{report.selection['receptive_field']} / {report.selection['alpha']}"})
    create_table_artifact(rows, key="train-report", description=report.summary())
    if report.dashboard:
        create_link_artifact(report.dashboard, link_text="Dask dashboard", key="dask-dashboard")


@task(name="publish-synthesis-report", cache_policy=NO_CACHE)
def publish_synthesis_report(report) -> None:
    lines = [f"**{report.summary()}**", ""]
    if report.failed:
        lines += ["| input | reason |", "|---|---|"]
        lines += [f"| `{url}` | {reason} |" for url, reason in sorted(report.failed.items())[:200]]
    if report.no_face:
        lines += ["", f"No face found in {len(report.no_face)} photo(s):", *[f"- `{u}`" for u in report.no_face[:200]]]
    create_markdown_artifact("\n".join(lines), key="synthesis-report", description=report.summary())


@task(name="publish-ingest-report", cache_policy=NO_CACHE)
def publish_ingest_report(report) -> None:
    rows = [{"file": r.url, "reason": r.reason} for r in report.skipped][:500]
    description = (f"{report.count('ingested')} ingested, {report.count('exists')} already present, "
                   f"{report.count('skipped')} skipped")
    create_markdown_artifact(f"```\n{report.summary()}\n```", key="ingest-report", description=description)
    if rows:
        create_table_artifact(rows, key="ingest-skipped", description="files skipped, with the reason")


@task(name="publish-evaluation", cache_policy=NO_CACHE)
def publish_evaluation(result, out_dir: str) -> None:
    from pathlib import Path

    rows = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in result.table()]
    create_table_artifact(rows, key="evaluation-metrics", description="MSE, PSNR, SSIM per method and target")
    report = Path(out_dir).resolve() / "report.html"
    create_link_artifact(report.as_uri(), link_text="evaluation report", key="evaluation-report")
    for name, path in sorted(result.figures.items()):
        create_link_artifact(Path(path).resolve().as_uri(), link_text=name, key=f"figure-{_slug(name)}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]
