"""Distributed training (fit_weights) on real faces: wall time, per-worker peak memory,
overhead over the in-memory fit and strong scaling, all measured in the same run.

    python benchmarks/bench_train.py [--data DIR] [--skip-1024]

1. London 1024 x 1024 colour, 90 training pairs, k = 7, per_channel and joint colour, on a
   2-worker LocalCluster: wall time and the peak RSS of each worker process (getrusage).
2. 128 x 128 grayscale (all pairs), k = 3: ``fit_weights`` on a running LocalCluster and
   with its start-up included, against ``MaskedRidge.fit`` in memory.
3. Strong scaling at 512 x 512 colour, k = 7 per_channel: 1 worker vs 2 workers.

Faces stores are built once from the London set into benchmarks/results/cache/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import find_data, london_faces_store  # noqa: E402

from mlrdist import MaskedRidge  # noqa: E402
from mlrdist.train import fit_weights  # noqa: E402


def peak_rss_mb(dask_worker) -> float:
    """Largest RSS the worker's own SystemMonitor sampled (every 0.5 s) in this process.

    (``getrusage().ru_maxrss`` would be wrong here: Linux carries the parent's peak over
    into spawned children.)
    """
    return max(dask_worker.monitor.quantities["memory"]) / 2**20


def cluster(n_workers: int):
    from distributed import Client

    from mlrdist.execution import local_cluster

    lc = local_cluster(n_workers, memory_limit="10GiB")
    return lc, Client(lc)


def timed_fit(faces: str, client, **kw) -> tuple[float, dict]:
    out = tempfile.mkdtemp(suffix=".zarr", dir=REPO / "benchmarks" / "results")
    try:
        t0 = time.perf_counter()
        report = fit_weights(faces, out, client=client, overwrite=True, **kw)
        return time.perf_counter() - t0, {"plan": report.plan, "tiles": report.tiles_total}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_1024(data, results: dict) -> None:
    """1. 1024 x 1024 colour, 90 pairs, k = 7, per_channel and joint, 2 workers."""
    faces1024 = london_faces_store(data, 1024, colour=True)
    subjects = [f"{i:03d}" for i in range(90)]
    for colour in ("per_channel", "joint"):
        lc, client = cluster(2)
        t, info = timed_fit(faces1024, client, receptive_field=7, colour=colour, subjects=subjects, progress=True)
        rss = client.run(peak_rss_mb)
        results[f"london_1024_k7_{colour}"] = {"wall_s": t, "peak_rss_mb_per_worker": rss, **info}
        print(json.dumps(results[f"london_1024_k7_{colour}"]))
        client.close()
        lc.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--skip-1024", action="store_true", help="skip the 1024 x 1024 runs")
    ap.add_argument("--only-1024", action="store_true", help="run only the 1024 x 1024 runs")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_train.json"))
    args = ap.parse_args()
    data = find_data(args.data)
    results: dict = {}

    if args.only_1024:
        run_1024(data, results)
        Path(args.out).with_suffix(".1024.json").write_text(json.dumps(results, indent=2, default=str))
        print(json.dumps(results, indent=1, default=str))
        return
    # 2. overhead at 128 x 128, k = 3
    import xarray as xr

    faces128 = london_faces_store(data, 128, colour=False)
    ds = xr.open_zarr(faces128, consolidated=False)
    img = ds["image"].values
    neutral = img[(ds["expression"].values == "neutral")]
    smiling = img[(ds["expression"].values == "smiling")]
    t0 = time.perf_counter()
    MaskedRidge(3, 0.4).fit(neutral, smiling)
    t_mem = time.perf_counter() - t0
    t0 = time.perf_counter()
    lc, client = cluster(2)
    t_start = time.perf_counter() - t0
    timed_fit(faces128, client, receptive_field=3)  # warm-up: imports on the workers
    t_dist, info = timed_fit(faces128, client, receptive_field=3)
    results["overhead_128_k3"] = {
        "in_memory_s": t_mem, "distributed_s": t_dist, "cluster_start_s": t_start,
        "added_s": t_dist - t_mem, "added_with_start_s": t_dist + t_start - t_mem, **info,
    }
    print(json.dumps(results["overhead_128_k3"]))
    client.close()
    lc.close()

    # 3. strong scaling at 512 x 512
    faces512 = london_faces_store(data, 512, colour=True)
    scaling = {}
    for workers in (1, 2):
        lc, client = cluster(workers)
        t, info = timed_fit(faces512, client, receptive_field=7, tile=128)
        scaling[workers] = {"wall_s": t, **info}
        client.close()
        lc.close()
    scaling["speedup_2_vs_1"] = scaling[1]["wall_s"] / scaling[2]["wall_s"]
    results["strong_scaling_512_k7"] = scaling
    print(json.dumps(scaling))

    if not args.skip_1024:
        run_1024(data, results)

    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    o = results["overhead_128_k3"]
    print("\n| measurement | value |\n|---|---|")
    print(f"| 128x128 k=3: in-memory fit | {o['in_memory_s']:.2f} s |")
    print(f"| 128x128 k=3: fit_weights on a running 2-worker cluster | {o['distributed_s']:.2f} s (+{o['added_s']:.2f} s) |")
    print(f"| ... including LocalCluster start-up | +{o['added_with_start_s']:.2f} s |")
    print(f"| 512x512 colour k=7: 1 worker / 2 workers | {scaling[1]['wall_s']:.1f} s / {scaling[2]['wall_s']:.1f} s = {scaling['speedup_2_vs_1']:.2f}x |")
    for colour in ("per_channel", "joint"):
        r = results.get(f"london_1024_k7_{colour}")
        if r:
            peak = max(r["peak_rss_mb_per_worker"].values())
            print(f"| 1024x1024 colour k=7 {colour}, 90 pairs, 2 workers | {r['wall_s']:.0f} s, peak RSS/worker {peak:.0f} MB |")


if __name__ == "__main__":
    main()
