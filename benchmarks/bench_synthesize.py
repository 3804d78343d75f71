"""Bulk synthesis of aligned photos: throughput against a plain Pillow loop and memory at
10,000 and 100,000 photos, measured in the same run.

    python benchmarks/bench_synthesize.py [--n-rate 2000] [--sizes 10000 100000]

Inputs are the packaged sample's aligned 128 x 128 PNG faces, hard-linked under distinct
names (so every file is read, decoded and converted, without filling the disk). The weights
are trained on the sample (k = 3). Synthesis runs on a 2-worker LocalCluster; the baseline
is one process decoding each PNG, re-encoding it and writing it (a user's plain conversion
loop). Peak memory: the driver's RSS sampled every 0.2 s (and its growth from the start of
the run; the driver also hosts the LocalCluster's scheduler) and each worker's own sampled RSS;
and the driver's listing alone (tracemalloc peak): the whole sorted listing against the
stream of one directory at a time that synthesis consumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import peak_bytes  # noqa: E402


def make_collection(root: Path, n: int) -> Path:
    sample = sorted((resources.files("mlrdist") / "data" / "sample" / "neutral").iterdir())
    for i in range(n):
        sub = root / f"{i // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        os.link(sample[i % len(sample)], sub / f"photo{i:06d}.png")
    return root


def plain_loop(src: Path, dst: Path) -> float:
    from PIL import Image

    files = sorted(src.rglob("*.png"))
    t0 = time.perf_counter()
    for f in files:
        out = dst / f.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as im:
            im.convert("RGB").save(out, format="PNG")
    return len(files) / (time.perf_counter() - t0)


class RssSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        import psutil

        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()
        self.start_rss = self.proc.memory_info().rss

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.2)


def worker_peak_mb(dask_worker) -> float:
    return max(dask_worker.monitor.quantities["memory"]) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-rate", type=int, default=2000, help="photos for the throughput comparison")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000], help="collection sizes for memory")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_synthesize.json"))
    args = ap.parse_args()

    import dask
    from distributed import Client

    from mlrdist.datasets import load_sample
    from mlrdist.execution import local_cluster, worker_environ
    from mlrdist.io.location import Location
    from mlrdist.io.sources import iter_inputs, list_sources
    from mlrdist.synthesize import synthesize
    from mlrdist.train import fit_weights

    work = Path(tempfile.mkdtemp(prefix="bench-synth-", dir=REPO / "benchmarks" / "results"))
    results: dict = {}
    try:
        faces, weights = str(work / "faces.zarr"), str(work / "weights.zarr")
        load_sample().to_zarr(faces, consolidated=False)
        fit_weights(faces, weights, receptive_field=3, scheduler="synchronous")
        with dask.config.set(worker_environ()), local_cluster(2) as lc, Client(lc) as client:
            src = make_collection(work / "rate", args.n_rate)
            base = plain_loop(src, work / "plain")
            synthesize(weights, str(src), str(work / "warm"), client=client)  # warm-up: imports, model cache
            t0 = time.perf_counter()
            rep = synthesize(weights, str(src), str(work / "out-rate"), client=client)
            rate = rep.converted / (time.perf_counter() - t0)
            results["throughput"] = {"files": args.n_rate, "plain_pillow_img_s": base, "mlrdist_img_s": rate,
                                     "ratio": rate / base, "workers": 2}
            print(json.dumps(results["throughput"]))
            for n in args.sizes:
                src = make_collection(work / f"n{n}", n)
                listing_whole = peak_bytes(lambda s=src: list_sources(str(s)))
                listing_stream = peak_bytes(lambda s=src: sum(1 for _ in iter_inputs(Location(str(s)), {})))
                client.restart()  # fresh worker processes: per-size peaks
                sampler = RssSampler()
                sampler.start()
                t0 = time.perf_counter()
                rep = synthesize(weights, str(src), str(work / f"out{n}"), client=client, progress=True)
                wall = time.perf_counter() - t0
                sampler.stop.set()
                results[f"n{n}"] = {
                    "converted": rep.converted, "failed": len(rep.failed), "wall_s": wall, "img_s": rep.converted / wall,
                    "driver_peak_rss_mb": sampler.peak / 2**20,
                    "driver_growth_mb": (sampler.peak - sampler.start_rss) / 2**20,
                    "listing_whole_bytes_per_photo": listing_whole / n,
                    "listing_stream_peak_mb": listing_stream / 2**20,
                    "worker_peak_rss_mb": client.run(worker_peak_mb),
                }
                print(json.dumps(results[f"n{n}"]))
                shutil.rmtree(src)
                shutil.rmtree(work / f"out{n}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    t = results["throughput"]
    print("\n| measurement | value |\n|---|---|")
    print(f"| plain Pillow decode -> encode -> write, 1 process | {t['plain_pillow_img_s']:.0f} img/s |")
    print(f"| mlrdist synthesize, 2 workers (decode, MR, encode, write) | {t['mlrdist_img_s']:.0f} img/s = {100 * t['ratio']:.0f}% |")
    for n in args.sizes:
        r = results[f"n{n}"]
        w = max(r["worker_peak_rss_mb"].values())
        print(f"| {n:,} photos | {r['wall_s']:.0f} s ({r['img_s']:.0f} img/s); peak RSS driver {r['driver_peak_rss_mb']:.0f} MB "
              f"(+{r['driver_growth_mb']:.0f} MB during the run), worker {w:.0f} MB |")
        print(f"| {n:,} photos, driver listing | whole: {r['listing_whole_bytes_per_photo']:.0f} B/photo; "
              f"streamed: {r['listing_stream_peak_mb']:.2f} MB peak |")


if __name__ == "__main__":
    main()
