"""Zarr -> Zarr synthesis two ways, in the same run on the same cluster: mlrdist's batch tasks
(each reads its batch, predicts, writes its region and its done flag) against the same work
expressed as a dask array graph (``xarray`` + ``map_blocks`` + one ``to_zarr`` region write).

    python benchmarks/bench_zarr_synthesis.py [--n 4096] [--size 128] [--workers 2]

The input is the packaged sample's faces repeated to ``--n`` samples (a faces.zarr with
256-sample chunks); the weights are trained on the sample (k = 3). Both write a uint8
``image(target, sample, y, x, channel)`` with the same chunks. Reported: seconds and
images/s of each, best of ``--repeat``, and whether the outputs are equal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_inputs(root: Path, n: int) -> tuple[str, str]:
    import xarray as xr

    from mlrdist.datasets import load_sample
    from mlrdist.train import fit_weights

    sample = load_sample()
    faces = str(root / "faces.zarr")
    sample.to_zarr(faces, consolidated=False)
    weights = str(root / "weights.zarr")
    fit_weights(faces, weights, receptive_field=3, scheduler="synchronous")
    images = np.concatenate([sample["image"].values] * (-(-n // sample.sizes["sample"])))[:n]
    big = xr.Dataset({"image": (("sample", "y", "x", "channel"), images)},
                     coords={"subject": ("sample", np.array([f"s{i}" for i in range(n)], dtype=object))})
    inputs = str(root / "inputs.zarr")
    big["image"] = big["image"].chunk({"sample": 256})
    big.to_zarr(inputs, consolidated=False)
    return weights, inputs


def as_array_graph(client, weights: str, inputs: str, out: str, batch: int) -> None:
    """The same synthesis as one dask array graph: map_blocks over sample chunks."""
    import dask.array as da
    import xarray as xr

    from mlrdist.io.location import Location
    from mlrdist.io.weights_store import cached_model, load_weights
    from mlrdist.photo import change_faces

    model = load_weights(weights, check_finite=True)
    targets = list(model.targets_)
    ds = xr.open_zarr(inputs, consolidated=False)
    image = ds["image"].data.rechunk((batch, -1, -1, -1))
    where = Location(weights)

    def block(x: np.ndarray) -> np.ndarray:
        m = cached_model(where)
        out = change_faces(m, x, "none", 1.0)
        return np.stack([out[t] for t in targets])

    result = da.map_blocks(block, image, new_axis=0, chunks=((len(targets),), *image.chunks), dtype=np.uint8)
    xr.Dataset({"image": (("target", "sample", "y", "x", "channel"), result)},
               coords={"target": np.array(targets, dtype=object)}).to_zarr(out, mode="w", consolidated=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_zarr_synthesis.json"))
    args = ap.parse_args()
    import xarray as xr
    from distributed import Client

    from mlrdist.execution import local_cluster
    from mlrdist.synthesize import synthesize

    results: dict = {"n": args.n, "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="mlrdist-bench-zarr-") as tmp:
        root = Path(tmp)
        weights, inputs = make_inputs(root, args.n)
        with local_cluster(n_workers=args.workers) as cluster, Client(cluster) as client:
            times: dict[str, list[float]] = {"batch tasks": [], "array graph": []}
            for r in range(args.repeat):
                t0 = time.perf_counter()
                synthesize(weights, inputs, str(root / f"tasks{r}.zarr"), client=client, batch=args.batch)
                times["batch tasks"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                as_array_graph(client, weights, inputs, str(root / f"graph{r}.zarr"), args.batch)
                times["array graph"].append(time.perf_counter() - t0)
            a = xr.open_zarr(str(root / "tasks0.zarr"), consolidated=False)["image"].values
            b = xr.open_zarr(str(root / "graph0.zarr"), consolidated=False)["image"].values
        results["equal"] = bool(np.array_equal(a, b))
        for name, ts in times.items():
            results[name] = {"seconds": min(ts), "images_per_s": args.n / min(ts), "all_seconds": ts}
        results["graph_over_tasks"] = results["batch tasks"]["seconds"] / results["array graph"]["seconds"]
    print(json.dumps(results, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
