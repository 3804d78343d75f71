"""Helpers shared by the benchmarks: real data (London set from --data, MLRDIST_DATA or
../shared/data) and timing."""

from __future__ import annotations

import hashlib
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "results" / "cache"


def find_data(arg: str | None = None) -> Path:
    for cand in (arg, os.environ.get("MLRDIST_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "london-face-set").is_dir():
            return Path(cand)
    sys.exit("London set not found: pass --data DIR or set MLRDIST_DATA")


def load_london(data: Path, n: int, size: int, colour: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` neutral/smiling pairs as uint8 stacks, cropped around the neutral shot's pupils
    (from its template) and resized; the smiling shot uses the same box (the studio set-up
    keeps a pair nearly registered)."""
    from PIL import Image

    X, Y = [], []
    mode = "RGB" if colour else "L"
    for tem in sorted((data / "london-face-set" / "neutral").glob("*_03.tem"))[:n]:
        pts = np.loadtxt(tem, skiprows=1, max_rows=2)
        eye_dist = np.ptp(pts[:, 0])
        centre = pts.mean(axis=0) + [0, 0.5 * eye_dist]
        half = 1.6 * eye_dist
        box = tuple(int(v) for v in (*(centre - half), *(centre + half)))
        smile = data / "london-face-set" / "smiling" / tem.name.replace("_03.tem", "_08.jpg")
        for path, out in ((tem.with_suffix(".jpg"), X), (smile, Y)):
            img = Image.open(path)
            img.draft(mode, (size, size))  # JPEG: decode at reduced scale when possible
            scale = img.size[0] / 1350
            crop = tuple(int(round(v * scale)) for v in box)
            out.append(np.asarray(img.convert(mode).crop(crop).resize((size, size), Image.BICUBIC)))
    return np.stack(X), np.stack(Y)


def london_faces_store(data: Path, size: int, colour: bool = True) -> str:
    """A cached faces.zarr of the London pairs at ``size`` (built once)."""
    import xarray as xr

    path = CACHE / f"london-{size}-{'rgb' if colour else 'gray'}.zarr"
    if path.exists():
        return str(path)
    X, Y = load_london(data, 200, size, colour)
    if not colour:
        X, Y = X[..., None], Y[..., None]
    n = len(X)
    img = np.concatenate([X, Y])
    subjects = np.array([f"{i:03d}" for i in range(n)] * 2, dtype=object)
    expressions = np.array(["neutral"] * n + ["smiling"] * n, dtype=object)
    digests = np.array([hashlib.sha256(im.tobytes()).hexdigest() for im in img], dtype=object)
    ds = xr.Dataset(
        {"image": (("sample", "y", "x", "channel"), img)},
        coords={"subject": ("sample", subjects), "expression": ("sample", expressions), "digest": ("sample", digests)},
    )
    chunks = {"sample": n * 2, "y": min(size, 128), "x": min(size, 128), "channel": img.shape[-1]}
    path.parent.mkdir(parents=True, exist_ok=True)
    ds["image"] = ds["image"].chunk(chunks)
    ds.to_zarr(str(path), mode="w", consolidated=False)
    return str(path)


def best_of(fn, repeat: int) -> float:
    """Fastest of ``repeat`` timed calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_bytes(fn) -> int:
    """Peak bytes NumPy and Python allocated during ``fn()`` (tracemalloc)."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak
