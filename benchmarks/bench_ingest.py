"""Ingest throughput and memory on the real London set, against a plain Pillow loop.

    python benchmarks/bench_ingest.py [--data DIR] [--size 256] [--repeat 10]

1. The 204 London photos (1350 x 1350 JPEG) -> 256 x 256 colour, eye-aligned (templates for
   the neutral shots, registration for the smiling ones), into a fresh faces.zarr on a
   2-worker LocalCluster (cluster start and the workers' first imports excluded; listing,
   reading, hashing, decoding, registration, alignment and the zarr writes included).
2. Baseline in the same run: a plain single-process loop over the same files,
   ``Image.open(f).convert("RGB").resize((256, 256), BICUBIC)`` (no alignment, no storage).
3. Dask's workers run with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand memory back to the OS),
   which makes large numpy/Pillow buffers fresh mmaps: in a single process that made this
   workload about 40 % slower (27 vs 19 ms per image) and ``MALLOC_TOP_PAD_=32 MiB`` restored
   it. Both settings are measured on the cluster (``distributed.nanny.pre-spawn-environ``).
   Baseline and pipeline alternate for ``--rounds`` rounds, the table shows the median ratio
   (the machine may be shared: load from elsewhere then hits both alike).
4. Peak memory at 1x and ``--repeat`` x the set (the files copied under new subject ids, a few
   bytes appended after the JPEG end marker so every digest differs): the largest RSS of the
   driver and of each worker process, sampled every 0.1 s with psutil.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import find_data  # noqa: E402

from mlrdist.ingest import ingest_images  # noqa: E402

LABELS = r"(?P<expression>neutral|smiling)/(?P<subject>\d+)_(?:03|08)\.jpg$"


class PeakRSS:
    """Samples the RSS of this process and its children; peaks per process (MB)."""

    def __init__(self, interval: float = 0.1) -> None:
        import psutil

        self.me = psutil.Process()
        self.interval = interval
        self.peaks: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            for p in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss / 2**20
                    self.names.setdefault(p.pid, " ".join(p.cmdline()[-2:]))
                except psutil.Error:
                    continue
                self.peaks[p.pid] = max(self.peaks.get(p.pid, 0.0), rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def driver(self) -> float:
        return self.peaks.get(self.me.pid, 0.0)

    def workers(self, pids) -> list[float]:
        return [self.peaks.get(pid, 0.0) for pid in pids]


def files_of(london: Path) -> list[Path]:
    return sorted((london / "neutral").glob("*_03.jpg")) + sorted((london / "smiling").glob("*_08.jpg"))


def baseline(files: list[Path], size: int) -> float:
    from PIL import Image

    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return len(files) / (time.perf_counter() - t0)


def make_copies(london: Path, dest: Path, repeat: int) -> Path:
    """``repeat`` copies of the pairs under subject ids k*1000 + id, each byte-distinct."""
    for expr, suffix in (("neutral", "_03"), ("smiling", "_08")):
        (dest / expr).mkdir(parents=True, exist_ok=True)
        for f in sorted((london / expr).glob(f"*{suffix}.*")):
            sid = f.name[:3]
            data = f.read_bytes()
            for k in range(repeat):
                name = f"{k * 1000 + int(sid)}{suffix}{f.suffix}"
                extra = bytes([k % 256]) * (k + 1) if f.suffix == ".jpg" else b""
                (dest / expr / name).write_bytes(data + extra)
    return dest


def warm_up() -> None:
    """Imports a worker needs for its first task (about 1.5 s once per worker process)."""
    import importlib

    for name in ("mlrdist.ingest", "scipy.optimize", "scipy.signal", "scipy.ndimage", "PIL.JpegImagePlugin"):
        importlib.import_module(name)


def run_pipeline(client, source: Path, size: int, tmp: Path, tag: str):
    dest = tmp / f"faces-{tag}.zarr"
    workers = list(client.run(__import__("os").getpid).values())
    client.run(lambda: __import__("gc").collect())
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        report = ingest_images(str(source), str(dest), labels=LABELS, size=size, client=client, batch_size=16)
        wall = time.perf_counter() - t0
    shutil.rmtree(dest)
    return report, wall, mem.driver(), mem.workers(workers)


TOP_PAD = {"distributed.nanny.pre-spawn-environ.MALLOC_TOP_PAD_": 32 << 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="alternated baseline/pipeline rounds per setting")
    args = ap.parse_args()
    import dask
    from distributed import Client, LocalCluster

    london = find_data(args.data) / "london-face-set"
    files = files_of(london)
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        big = make_copies(london, tmp / f"london-x{args.repeat}", args.repeat)
        for tag, config in (("default", {}), ("top-pad", TOP_PAD)):
            with dask.config.set(config), \
                    LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
                    Client(cluster) as client:
                client.run(warm_up)
                for r in range(args.rounds):  # alternate, so load from elsewhere hits both alike
                    base = baseline(files, args.size)
                    report, wall, drv, wrk = run_pipeline(client, london, args.size, tmp, f"{tag}-{r}")
                    n = report.count("ingested")
                    rows.setdefault(f"{tag} x1", []).append(
                        {"images": n, "wall_s": wall, "images_per_s": n / wall, "baseline_images_per_s": base,
                         "ratio": n / wall / base, "driver_peak_mb": drv, "worker_peak_mb": wrk})
                if tag == "top-pad":
                    base = baseline(files, args.size)
                    report, wall, drv, wrk = run_pipeline(client, big, args.size, tmp, f"{tag}-big")
                    n = report.count("ingested")
                    rows[f"{tag} x{args.repeat}"] = [
                        {"images": n, "wall_s": wall, "images_per_s": n / wall, "baseline_images_per_s": base,
                         "ratio": n / wall / base, "driver_peak_mb": drv, "worker_peak_mb": wrk}]
    print(f"\nLondon set -> {args.size}x{args.size} colour, eye-aligned, into faces.zarr on a 2-worker LocalCluster,")
    print("against a 1-process plain Pillow decode+resize loop measured right before each run (median of rounds)")
    print(f"{'':28}{'rounds':>7}{'images':>7}{'img/s':>8}{'Pillow img/s':>13}{'ratio':>7}{'ratios':>18}"
          f"{'driver MB':>10}{'workers MB':>12}")
    for tag, runs in rows.items():
        med = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
        ratios = "/".join(f"{r['ratio']:.2f}" for r in runs)
        w = "/".join(f"{v:.0f}" for v in med["worker_peak_mb"])
        drv = max(r["driver_peak_mb"] for r in runs)
        print(f"{'malloc ' + tag:28}{len(runs):>7}{med['images']:>7}{med['images_per_s']:>8.1f}"
              f"{med['baseline_images_per_s']:>13.1f}{med['ratio']:>7.2f}{ratios:>18}{drv:>10.0f}{w:>12}")
    x1, xk = rows["top-pad x1"], rows[f"top-pad x{args.repeat}"][0]
    print(f"peak memory x{args.repeat} / x1 (top-pad): driver "
          f"{xk['driver_peak_mb'] / max(r['driver_peak_mb'] for r in x1):.2f}, workers "
          f"{max(xk['worker_peak_mb']) / max(max(r['worker_peak_mb']) for r in x1):.2f}")
    print("malloc default: Dask's worker environment (MALLOC_TRIM_THRESHOLD_=65536); top-pad: plus "
          "MALLOC_TOP_PAD_=32 MiB (what mlrdist.execution.local_cluster sets)")
    out = REPO / "benchmarks" / "results" / "bench_ingest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
