"""Reading photos out of archives in batches, as ingest and bulk synthesis do, against
opening and scanning the archive for every batch (the plain use of zipfile / tarfile).

    python benchmarks/bench_archives.py [--members 5000] [--kb 8] [--batch 64] [--s3]

One archive per format (zip stored, zip deflate, plain tar, tar.gz) holds ``--members``
incompressible payloads of ``--kb`` KB, read in batches of ``--batch`` with
:func:`mlrdist.io.sources.read_batch` (members by byte range; compressed tars scanned up to
the batch's last member). Baseline in the same run: per batch, open the archive and read the
members through ``zipfile.ZipFile.read`` (the central directory parsed again) or a full
``tarfile`` scan. ``--s3`` repeats it against a local ``moto_server`` (a real S3 API over
HTTP on 127.0.0.1) with a tenth of the members, where the baseline downloads the whole
archive for every batch. Reported: members/s and the speed-up.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlrdist.io.sources import list_sources, read_batch  # noqa: E402

FORMATS = {
    "zip (stored)": (".zip", zipfile.ZIP_STORED),
    "zip (deflate)": (".zip", zipfile.ZIP_DEFLATED),
    "tar": (".tar", "w"),
    "tar.gz": (".tar.gz", "w:gz"),
}


def build(folder: Path, label: str, members: int, kb: int) -> Path:
    import numpy as np

    suffix, how = FORMATS[label]
    path = folder / f"{label.split()[0]}-{len(list(folder.iterdir()))}{suffix}"
    rng = np.random.default_rng(0)
    payloads = ((f"photos/{i:06d}.jpg", rng.integers(0, 256, kb * 1024, dtype=np.uint8).tobytes()) for i in range(members))
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w", compression=how) as zf:
            for name, data in payloads:
                zf.writestr(name, data)
    else:
        with tarfile.open(path, how) as tf:
            for name, data in payloads:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def scan_batch(url: str, names: list[str], options: dict) -> list[bytes]:
    """The baseline: open the archive for this batch and read its members the plain way."""
    import fsspec

    with fsspec.open(url, "rb", **options) as f:
        if url.endswith(".zip"):
            with zipfile.ZipFile(f) as zf:
                return [zf.read(n) for n in names]
        want, got = set(names), {}
        with tarfile.open(fileobj=f, mode="r:*") as tf:
            for m in tf:
                if m.name in want:
                    got[m.name] = tf.extractfile(m).read()
        return [got[n] for n in names]


def run(url: str, batch: int, options: dict) -> dict:
    t0 = time.perf_counter()
    files = list_sources(url, options).files
    t_list = time.perf_counter() - t0
    batches = [files[i : i + batch] for i in range(0, len(files), batch)]
    t0 = time.perf_counter()
    for b in batches:
        out = read_batch(b, options)
        assert not any(isinstance(o, Exception) for o in out), out
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in batches:
        scan_batch(url, [f.name for f in b], options)
    t_plain = time.perf_counter() - t0
    n = len(files)
    return {
        "members": n, "list_s": round(t_list, 3), "read_s": round(t_ours, 3), "plain_s": round(t_plain, 3),
        "members_per_s": round(n / t_ours), "plain_members_per_s": round(n / t_plain),
        "speedup": round(t_plain / t_ours, 1),
    }


def moto(folder: Path):
    """A moto_server on a free port, a bucket ``bench``; returns (process, storage options)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    options = {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}
    import s3fs

    s3fs.S3FileSystem(**options).mkdir("bench")
    return proc, options


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=5000)
    ap.add_argument("--kb", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--s3", action="store_true", help="also read from a local moto_server")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_archives.json"))
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label in FORMATS:
            path = build(folder, label, args.members, args.kb)
            results[f"local {label}"] = run(str(path), args.batch, {})
            print(label, "local", json.dumps(results[f"local {label}"]), flush=True)
        if args.s3:
            import s3fs

            proc, options = moto(folder)
            try:
                fs = s3fs.S3FileSystem(**options)
                for label in FORMATS:
                    path = build(folder, label, args.members // 10, args.kb)
                    fs.put(str(path), f"bench/{path.name}")
                    results[f"s3 {label}"] = run(f"s3://bench/{path.name}", args.batch, options)
                    print(label, "s3", json.dumps(results[f"s3 {label}"]), flush=True)
            finally:
                proc.terminate()
                proc.wait()
    print()
    print("| source | members | ours (members/s) | open and scan per batch (members/s) | speed-up |")
    print("|---|---|---|---|---|")
    for key, r in results.items():
        print(f"| {key} | {r['members']:,} | {r['members_per_s']:,} | {r['plain_members_per_s']:,} | {r['speedup']}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
