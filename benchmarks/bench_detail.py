"""The detail trade-off of photo synthesis: the prediction itself against the input plus the
prediction's low-passed change, on held-out London subjects at 256 px.

    python benchmarks/bench_detail.py [--data DIR] [--sigmas 1 2 3 4]

The London pairs are ingested at 256 px (eyes aligned), MR (k = 7, alpha = 10, per channel)
is trained on the first 80 subjects and scored on the other 22, inside the face ellipse
(:func:`mlrdist.photo.face_mask`):

* MSE against the real smile (which rewards blur: a blurred face is close to every face);
* detail kept: the energy of what a 2 px Gaussian removes, over the real smile's;
* expression gain kept: at a coarse scale (both blurred by a 3 px Gaussian), the share of the
  prediction's improvement over the input (MSE against the real smile) that survives.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import find_data  # noqa: E402


def blur(stack: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(stack, (0, sigma, sigma, 0), mode="reflect")


def scores(out: np.ndarray, X: np.ndarray, Y: np.ndarray, w: np.ndarray) -> dict:
    def weighted(e):  # per image: face-weighted mean over pixels and channels
        return (e.mean(axis=3) * w).sum(axis=(1, 2)) / w.sum()

    def detail(a):
        return weighted((a - blur(a, 2.0)) ** 2)

    return {"mse": float(weighted((out - Y) ** 2).mean()),
            "detail_kept": float((detail(out) / detail(Y)).mean()),
            "coarse_mse": float(weighted((blur(out, 3.0) - blur(Y, 3.0)) ** 2).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_detail.json"))
    args = ap.parse_args()
    data = find_data(args.data)
    from mlrdist import MaskedRidge
    from mlrdist.align import AlignSpec
    from mlrdist.datasets import pairs
    from mlrdist.ingest import ingest_images
    from mlrdist.io.faces_store import open_faces
    from mlrdist.photo import face_mask, keep_detail

    with tempfile.TemporaryDirectory(prefix="mlrdist-bench-detail-") as tmp:
        faces = str(Path(tmp) / "faces.zarr")
        ingest_images(str(data / "london-face-set"), faces, size=256, scheduler="threads")
        X8, Y8, _ = pairs(open_faces(faces))
    Y8 = Y8["smiling"]
    model = MaskedRidge(7, 10.0).fit(X8[:80], Y8[:80])
    X, Y = X8[80:] / 255.0, Y8[80:] / 255.0
    P = np.asarray(model.predict(X8[80:]), dtype=np.float64)
    w = face_mask((256, 256), AlignSpec(size=256))
    rows = {"the prediction (detail none)": scores(P, X, Y, w), "the input (no change)": scores(X, X, Y, w)}
    for s in args.sigmas:
        rows[f"input + change low-passed at {s:g} px"] = scores(np.clip(keep_detail(X, P, s), 0, 1), X, Y, w)
    e_in, e_pred = rows["the input (no change)"]["coarse_mse"], rows["the prediction (detail none)"]["coarse_mse"]
    for r in rows.values():
        r["gain_kept"] = (e_in - r["coarse_mse"]) / (e_in - e_pred)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print("| output | MSE vs the real smile | detail kept | expression gain kept |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['mse']:.5f} | {r['detail_kept']:.2f} | {r['gain_kept']:.2f} |")


if __name__ == "__main__":
    main()
