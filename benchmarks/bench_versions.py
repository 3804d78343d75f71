"""The same workloads on two versions of mlrdist, alternated in one run: is this tree slower?

    python benchmarks/bench_versions.py OLD_REF [--data DIR] [--rounds 3]

``OLD_REF`` (a commit, tag or branch) is checked out into a temporary git worktree; each
workload then runs in a fresh subprocess with ``PYTHONPATH`` set to one tree or the other,
old and new alternated ``--rounds`` times, and the best time of each is kept. The inputs
(real London faces) are made once by this tree and shared. Only the public API is used
(``MaskedRidge``, ``train.fit_weights``, ``synthesize.synthesize``, ``ingest.ingest_images``), so any two versions
that have it can be compared. Workloads:

* ``fit k=3`` / ``fit k=7``: ``MaskedRidge.fit`` on 100 pairs, 128 x 128 gray, one thread;
* ``predict k=7``: ``MaskedRidge.predict`` of 1,000 faces, 128 x 128 gray, one thread;
* ``train``: ``fit_weights`` of 102 pairs, 256 x 256 colour, k = 7, threads scheduler;
* ``synthesize zarr``: 2,048 faces 256 x 256 colour, k = 7, threads scheduler;
* ``synthesize photos``: 1,000 aligned 128 x 128 PNG faces, ``align="none"``, threads;
* ``ingest``: the 204 London photos (1350 px JPEG) to 128 px, threads scheduler.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import find_data, load_london, london_faces_store  # noqa: E402

WORKLOAD = r'''
import json, shutil, sys, time
from pathlib import Path
import numpy as np
import mlrdist
from mlrdist.ingest import ingest_images
from mlrdist.synthesize import synthesize
from mlrdist.train import fit_weights
assert mlrdist.__file__.startswith(sys.argv[1]), mlrdist.__file__
name, tmp, data = sys.argv[2], Path(sys.argv[3]), sys.argv[4]
out = tmp / ("out-" + name.replace(" ", "-"))
shutil.rmtree(out, ignore_errors=True)
def timed(fn):
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0
if name.startswith("fit"):
    d = np.load(tmp / "gray128.npz")
    k = int(name.split("=")[1])
    t = timed(lambda: mlrdist.MaskedRidge(k, 0.4, n_jobs=1).fit(d["X"], d["Y"]))
elif name == "predict k=7":
    d = np.load(tmp / "gray128.npz")
    m = mlrdist.MaskedRidge(7, 0.4, n_jobs=1).fit(d["X"], d["Y"])
    stack = np.concatenate([d["X"]] * 10)
    t = timed(lambda: m.predict(stack))
elif name == "train":
    t = timed(lambda: fit_weights(str(tmp / "faces256.zarr"), str(out), receptive_field=7, scheduler="threads"))
elif name == "synthesize zarr":
    t = timed(lambda: synthesize(str(tmp / "weights256.zarr"), str(tmp / "inputs256.zarr"), str(out),
                                         scheduler="threads"))
elif name == "synthesize photos":
    def run():
        try:
            synthesize(str(tmp / "weights128.zarr"), str(tmp / "photos"), str(out), align="none",
                               detail="none", scheduler="threads")
        except TypeError:  # versions without the detail option
            synthesize(str(tmp / "weights128.zarr"), str(tmp / "photos"), str(out), align="none",
                               scheduler="threads")
    t = timed(run)
elif name == "ingest":
    t = timed(lambda: ingest_images(data + "/london-face-set", str(out), size=128, scheduler="threads"))
print(json.dumps({"seconds": t}))
'''

NAMES = ["fit k=3", "fit k=7", "predict k=7", "train", "synthesize zarr", "synthesize photos", "ingest"]


def prepare(data: Path, tmp: Path) -> None:
    """Inputs shared by both trees, made by this one."""
    import xarray as xr
    from PIL import Image

    from mlrdist import fit_weights

    X, Y = load_london(data, 100, 128)
    np.savez(tmp / "gray128.npz", X=X[..., None], Y=Y[..., None])
    faces = london_faces_store(data, 256, colour=True)
    shutil.copytree(faces, tmp / "faces256.zarr")
    fit_weights(str(tmp / "faces256.zarr"), str(tmp / "weights256.zarr"), receptive_field=7, scheduler="threads")
    ds = xr.open_zarr(faces, consolidated=False)
    neutral = ds["image"].values[ds["expression"].values == "neutral"]
    big = np.concatenate([neutral] * 21)[:2048]
    xr.Dataset({"image": (("sample", "y", "x", "channel"), big)}).chunk({"sample": 256}).to_zarr(
        str(tmp / "inputs256.zarr"), mode="w", consolidated=False)
    gray = london_faces_store(data, 128, colour=False)
    fit_weights(gray, str(tmp / "weights128.zarr"), receptive_field=3, scheduler="threads")
    for i in range(1000):
        sub = tmp / "photos" / f"d{i // 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(X[i % len(X)]).save(sub / f"face{i:04d}.png")


def run(tree: Path, name: str, tmp: Path, data: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", WORKLOAD, str(tree), name, str(tmp), str(data)], env=env,
                          capture_output=True, text=True, cwd=tmp)
    if done.returncode:
        raise RuntimeError(f"{name} in {tree}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("--data")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="+", choices=NAMES, default=NAMES)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_versions.json"))
    args = ap.parse_args()
    data = find_data(args.data)
    tmp = Path(tempfile.mkdtemp(prefix="bench-versions-"))
    old = tmp / "old-tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old), args.old], check=True,
                   capture_output=True)
    try:
        prepare(data, tmp)
        rows = []
        for name in args.only:
            times: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                for label, tree in (("old", old), ("new", REPO)):
                    times[label].append(run(tree, name, tmp, data))
            row = {"workload": name, "old_s": min(times["old"]), "new_s": min(times["new"]),
                   "new_speed_vs_old": min(times["old"]) / min(times["new"]), "times": times}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "times"}), flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n| workload | {args.old} (s) | this tree (s) | speed, this tree / old |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['old_s']:.2f} | {r['new_s']:.2f} | {r['new_speed_vs_old']:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"old": args.old, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
