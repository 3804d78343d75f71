"""Prefect's overhead on the sample pipeline: flows vs the same mlrdist calls, same run.

    python benchmarks/bench_flows.py

The packaged 128 x 128 sample goes through ingest -> train -> evaluate (MR, l2; 3 folds) ->
synthesize twice: once by calling the ``mlrdist`` functions, once as
``flows.pipeline.pipeline_flow``. Both use one shared 2-worker LocalCluster. Prefect talks to
a ``prefect server`` this script starts on 127.0.0.1 (as a deployment's worker would); the
server's start-up time is reported separately, and so is a flow run against an ephemeral
server, which Prefect starts itself when no API is configured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = str(resources.files("mlrdist") / "data" / "sample")


def direct(workdir: Path, scheduler: str) -> float:
    from mlrdist.datasets import pairs
    from mlrdist.evaluate import default_methods, evaluate
    from mlrdist.ingest import ingest_images
    from mlrdist.io.faces_store import open_faces
    from mlrdist.synthesize import synthesize
    from mlrdist.train import fit_weights

    t0 = time.perf_counter()
    faces, weights = str(workdir / "faces.zarr"), str(workdir / "weights.zarr")
    ingest_images(SAMPLE, faces, labels="sample", align="none", scheduler=scheduler)
    fit_weights(faces, weights, scheduler=scheduler, overwrite=True)
    X, Y, subjects = pairs(open_faces(faces))
    evaluate(default_methods(["MR", "l2"]), X, Y, list(subjects), folds=3, out_dir=str(workdir / "evaluation"))
    synthesize(weights, faces, str(workdir / "outputs.zarr"), scheduler=scheduler, overwrite=True)
    return time.perf_counter() - t0


def via_prefect(workdir: Path, scheduler: str) -> float:
    from flows.pipeline import pipeline_flow

    t0 = time.perf_counter()
    pipeline_flow(SAMPLE, str(workdir), {"labels": "sample", "align": "none"}, methods=["MR", "l2"], folds=3,
                  scheduler=scheduler)
    return time.perf_counter() - t0


def start_server(home: Path) -> tuple[subprocess.Popen, str, float]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            urllib.request.urlopen(api + "/health", timeout=2)
            return proc, api, time.perf_counter() - t0
        except OSError:
            if time.perf_counter() - t0 > 120:
                proc.kill()
                raise RuntimeError("prefect server did not start") from None
            time.sleep(0.5)


def ephemeral_run(workdir: Path, scheduler: str) -> float:
    """A fresh process with no PREFECT_API_URL: Prefect starts its own temporary server."""
    (workdir / "ephemeral-home").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(workdir / "ephemeral-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONPATH=str(REPO))
    code = (f"import sys, time; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import bench_flows as b; "
            f"from pathlib import Path; print(b.via_prefect(Path({str(workdir)!r}), {scheduler!r}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        print("ephemeral-server run failed:\n" + (out.stderr or out.stdout)[-3000:], file=sys.stderr)
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from distributed import Client

    from mlrdist.execution import local_cluster

    work = Path(tempfile.mkdtemp(prefix="bench-flows-", dir=REPO / "benchmarks" / "results"))
    server = None
    try:
        server, api, t_server = start_server(work / "prefect-home")
        os.environ.update(PREFECT_API_URL=api, PREFECT_HOME=str(work / "prefect-home"),
                          PREFECT_SERVER_ANALYTICS_ENABLED="false")
        with local_cluster(2) as cluster, Client(cluster):
            address = cluster.scheduler_address
            direct(work / "warm", address)  # warm-up: imports on driver and workers
            runs = {"direct": [], "prefect": []}
            for i in range(2):  # alternate, the machine is shared
                runs["direct"].append(direct(work / f"d{i}", address))
                runs["prefect"].append(via_prefect(work / f"p{i}", address))
            t_ephemeral = ephemeral_run(work / "e", address)
        d, p = min(runs["direct"]), min(runs["prefect"])
        result = {"direct_s": d, "prefect_s": p, "overhead_s": p - d, "runs": runs,
                  "server_start_s": t_server, "ephemeral_server_run_s": t_ephemeral,
                  "ephemeral_overhead_s": t_ephemeral - d}
        (REPO / "benchmarks" / "results" / "bench_flows.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=1))
        print("\n| measurement | value |\n|---|---|")
        print(f"| sample pipeline, direct mlrdist calls | {d:.1f} s |")
        print(f"| same as Prefect flows (running server) | {p:.1f} s: overhead {p - d:+.1f} s (target <= 15 s) |")
        print(f"| ... with an ephemeral server started by Prefect | {t_ephemeral:.1f} s: overhead {t_ephemeral - d:+.1f} s |")
        print(f"| `prefect server start` until healthy (once per deployment host) | {t_server:.1f} s |")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
