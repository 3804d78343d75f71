"""Photo synthesis at the photos' own resolution: throughput with templates and with the face
detector, against a plain Pillow decode -> encode loop over the same files in the same run;
the detector's share of the time; worker memory as the collection grows.

    python benchmarks/bench_photos.py [--data DIR] [--repeat 4] [--workers 2]

Photos: the London set's ``wild/`` photos (composites 1350 px, lisa and zoom photos) with
their ``.tem`` templates, 40 of its 1350 px neutral shots with theirs, and the five-person
group photo built from the set (no template), as JPEGs. Weights: the London pairs ingested at
256 px and trained with k = 7, alpha = 10 on the first 80 subjects (the photos' subjects
include the held-out ones). Synthesis runs on a LocalCluster of ``--workers`` single-threaded
workers (``mlrdist synthesize`` as a user runs it); the baseline is one process decoding each
JPEG and writing it again at the same quality (a user's plain conversion loop). Memory: each
worker's peak RSS with the collection repeated 1x and ``--repeat`` x (hard links under other
names, so every photo is converted).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import find_data  # noqa: E402


def collection(data: Path, root: Path) -> Path:
    """The benchmark's photos (JPEG) and templates under ``root/photos``."""
    from _photos import make_group_photo

    photos = root / "photos"
    photos.mkdir(parents=True)
    london = data / "london-face-set"
    for p in sorted((london / "wild").iterdir()):
        shutil.copy(p, photos / p.name)
    for p in sorted((london / "neutral").glob("*_03.jpg"))[:40]:
        shutil.copy(p, photos / p.name)
        shutil.copy(p.with_suffix(".tem"), photos / p.with_suffix(".tem").name)
    group, _ = make_group_photo(london)
    group.save(photos / "group_five.jpg", quality=90)
    return photos


def weights(data: Path, root: Path) -> str:
    from mlrdist.ingest import ingest_images
    from mlrdist.io.faces_store import open_faces
    from mlrdist.train import fit_weights

    faces, out = str(root / "faces.zarr"), str(root / "weights.zarr")
    ingest_images(str(data / "london-face-set"), faces, size=256, scheduler="threads")
    subjects = sorted(set(open_faces(faces)["subject"].values.tolist()))[:80]
    fit_weights(faces, out, receptive_field=7, alpha=10.0, subjects=subjects, scheduler="threads")
    return out


def plain_loop(src: Path, dst: Path) -> float:
    """Photos per second of decode -> encode (same quality tables) -> write, one process."""
    from PIL import Image, JpegImagePlugin

    files = sorted(src.glob("*.jpg"))
    dst.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            tables, sampling = im.quantization, JpegImagePlugin.get_sampling(im)
            im.convert("RGB").save(dst / f.name, format="JPEG", qtables=tables, subsampling=sampling)
    return len(files) / (time.perf_counter() - t0)


def detector_cpu(src: Path) -> tuple[float, float]:
    """CPU seconds per photo of decoding and of face detection, one thread."""
    from mlrdist.detect import detect_faces
    from mlrdist.io.images import decode_array

    files = sorted(src.glob("*.jpg"))
    dec = det = 0.0
    for f in files:
        t0 = time.process_time()
        img = decode_array(f.read_bytes(), "rgb")
        t1 = time.process_time()
        detect_faces(img)
        t2 = time.process_time()
        dec, det = dec + t1 - t0, det + t2 - t1
    return dec / len(files), det / len(files)


def worker_peak_mb(dask_worker) -> float:
    return max(dask_worker.monitor.quantities["memory"]) / 2**20


def run(client, w: str, src: Path, out: Path, align: str) -> dict:
    from mlrdist.synthesize import synthesize

    client.restart()  # fresh worker processes: their own peak memory
    t0 = time.perf_counter()
    rep = synthesize(w, str(src), str(out), client=client, align=align, overwrite=True)
    seconds = time.perf_counter() - t0
    assert not rep.failed, rep.failed
    peaks = client.run(worker_peak_mb)
    return {"photos": rep.converted + len(rep.no_face), "faces": rep.faces_converted, "seconds": seconds,
            "photos_per_s": (rep.converted + len(rep.no_face)) / seconds, "worker_peak_mb": max(peaks.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--repeat", type=int, default=4, help="collection multiple for the memory check")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_photos.json"))
    args = ap.parse_args()
    data = find_data(args.data)
    from distributed import Client

    from mlrdist.execution import local_cluster

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="mlrdist-bench-photos-") as tmp:
        root = Path(tmp)
        src = collection(data, root)
        w = weights(data, root)
        n = len(list(src.glob("*.jpg")))
        results["photos"] = n
        results["plain_loop_photos_per_s"] = plain_loop(src, root / "plain")
        dec, det = detector_cpu(src)
        results["decode_cpu_s"], results["detect_cpu_s"] = dec, det
        big = root / "big"
        big.mkdir()
        for r in range(args.repeat):
            for p in src.iterdir():
                os.link(p, big / f"r{r}_{p.name}")
        with local_cluster(n_workers=args.workers) as cluster, Client(cluster) as client:
            for align in ("landmarks", "detector"):
                photos = src
                if align == "landmarks":  # the group photo has no template
                    photos = root / "templated"
                    photos.mkdir()
                    for p in src.iterdir():
                        if not p.name.startswith("group"):
                            os.link(p, photos / p.name)
                one = run(client, w, photos, root / f"out-{align}", align)
                one["vs_plain_loop"] = one["photos_per_s"] / results["plain_loop_photos_per_s"]
                results[align] = one
                print(align, json.dumps(one), flush=True)
            results["memory_1x"] = results["detector"]["worker_peak_mb"]
            many = run(client, w, big, root / "out-big", "detector")
            results[f"memory_{args.repeat}x"] = many["worker_peak_mb"]
            results[f"detector_{args.repeat}x"] = many
        per_photo = 1.0 / results["detector"]["photos_per_s"] * args.workers
        results["detector_share"] = det / per_photo
    print(json.dumps(results, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\n| photos | plain loop (1 process) | templates ({args.workers} workers) | detector | "
          f"detector share | worker peak 1x / {args.repeat}x |")
    print("|---|---|---|---|---|---|")
    print(f"| {n} | {results['plain_loop_photos_per_s']:.1f}/s | {results['landmarks']['photos_per_s']:.1f}/s "
          f"({results['landmarks']['vs_plain_loop']:.0%}) | {results['detector']['photos_per_s']:.1f}/s "
          f"({results['detector']['vs_plain_loop']:.0%}) | {results['detector_share']:.0%} | "
          f"{results['memory_1x']:.0f} / {results[f'memory_{args.repeat}x']:.0f} MB |")


if __name__ == "__main__":
    main()
