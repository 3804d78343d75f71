"""The cost of exact synthesis: the integer-exact float64 kernel against the float32 kernel,
and the whole Zarr -> Zarr synthesis stage with each, measured in the same run.

    python benchmarks/bench_exact.py [--data DIR] [--repeat 3] [--n 2048]

Bulk synthesis computes each face exactly (:mod:`mlrdist.kernels.exact`) so that its bytes
do not depend on its batch, worker or BLAS kernel. This measures what that costs:

* kernel: one thread, one batch of 256 real London faces (the Zarr stage's batch), float32
  :func:`~mlrdist.kernels.apply.apply_region` on ``[0, 1]`` inputs against
  :func:`~mlrdist.kernels.exact.apply_exact` on the uint8 faces;
* stage: :func:`mlrdist.synthesize.synthesize` of ``--n`` faces on the threads scheduler
  (2 threads), as shipped, against the same stage with its per-batch prediction swapped for
  the float32 kernel (``model.predict``), alternated ``--repeat`` times; the share of
  output values that differ between the two is reported too.
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
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import best_of, find_data, load_london, london_faces_store  # noqa: E402

import mlrdist.photo as photo_mod  # noqa: E402
from mlrdist import MaskedRidge  # noqa: E402
from mlrdist.kernels.apply import apply_region  # noqa: E402
from mlrdist.kernels.exact import apply_exact, quantize  # noqa: E402

CASES = [(128, False, 3), (128, False, 7), (256, True, 7)]  # (side, colour, k)


def kernel_rows(data: Path, repeat: int) -> list[dict]:
    rows = []
    for side, colour, k in CASES:
        X8, Y8 = load_london(data, 100, side, colour=colour)
        if X8.ndim == 3:
            X8, Y8 = X8[..., None], Y8[..., None]
        model = MaskedRidge(k, 0.4, n_jobs=1).fit(X8, Y8)
        stack = np.concatenate([X8] * 3)[:256]
        c32, b32 = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
        ew = quantize(model.coef_, model.intercept_, model.colour)

        def f32(stack=stack, c32=c32, b32=b32, k=k):
            return apply_region((stack / np.float32(255)).astype(np.float32), c32, b32, pad=k // 2)

        def exact(stack=stack, ew=ew):
            return apply_exact(stack, ew)

        t32, tex = best_of(f32, repeat), best_of(exact, repeat)
        rows.append({"case": f"{side}x{side} {'colour' if colour else 'gray'} k={k}, 256 images, 1 thread",
                     "float32_img_s": 256 / t32, "exact_img_s": 256 / tex, "ratio": t32 / tex})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def stage_row(data: Path, repeat: int, n: int) -> dict:
    import xarray as xr
    import zarr

    from mlrdist.io.stores import open_store
    from mlrdist.synthesize import synthesize
    from mlrdist.train import fit_weights

    src = london_faces_store(data, 256, colour=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-exact-"))
    weights = str(tmp / "weights.zarr")
    fit_weights(src, weights, receptive_field=7, scheduler="threads")
    faces = xr.open_zarr(src, consolidated=False)
    neutral = faces["image"].values[faces["expression"].values == "neutral"]
    big = np.concatenate([neutral] * (n // len(neutral) + 1))[:n]
    inputs = str(tmp / "inputs.zarr")
    xr.Dataset({"image": (("sample", "y", "x", "channel"), big)}).chunk({"sample": 256}).to_zarr(
        inputs, mode="w", consolidated=False)
    exact_predict = photo_mod._predict_unit

    def float32_predict(model, stack):
        return {t: np.asarray(p, np.float64) for t, p in model.predict(stack).items()}

    times: dict[str, list[float]] = {"exact": [], "float32": []}
    outs = {}
    for r in range(repeat):
        for name, fn in (("exact", exact_predict), ("float32", float32_predict)):
            photo_mod._predict_unit = fn
            out = str(tmp / f"{name}-{r}.zarr")
            t0 = time.perf_counter()
            try:
                synthesize(weights, inputs, out, scheduler="threads")
            finally:
                photo_mod._predict_unit = exact_predict
            times[name].append(time.perf_counter() - t0)
            outs[name] = out
    a, b = (zarr.open_group(open_store(outs[k]))["image"][...] for k in ("exact", "float32"))
    row = {"case": f"Zarr -> Zarr, 256x256 colour k=7, {n} faces, threads scheduler (2 threads)",
           "exact_img_s": n / min(times["exact"]), "float32_img_s": n / min(times["float32"]),
           "ratio": min(times["float32"]) / min(times["exact"]),
           "values_differing": float((a != b).mean()), "max_level_difference": int(np.abs(a.astype(int) - b).max())}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_exact.json"))
    args = ap.parse_args()
    data = find_data(args.data)
    rows = kernel_rows(data, args.repeat) + [stage_row(data, args.repeat, args.n)]
    print("\n| case | float32 (img/s) | exact (img/s) | exact / float32 speed |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['float32_img_s']:,.0f} | {r['exact_img_s']:,.0f} | {r['ratio']:.2f}x |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
