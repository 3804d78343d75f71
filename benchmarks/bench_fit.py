"""Fit/predict speed and memory of MaskedRidge on real faces, against baselines measured in
the same run.

    python benchmarks/bench_fit.py [--data DIR] [--n 100] [--size 128] [--ks 3 7 11 15]

Data: the London set (neutral -> smiling, grayscale) from ``--data``, ``MLRDIST_DATA`` or
``../shared/data``. Faces are cropped around the pupils of the neutral shot's template and
resized (the smiling shot with the same box: the studio set-up keeps a pair registered).

Reported per receptive field ``k`` (best of ``--repeat`` runs):

* fit / predict seconds, predict images/s on 1,000 images;
* peak memory of ``fit`` (tracemalloc: every NumPy buffer allocated during the call);
* ratio against a plain per-pixel implementation (a Python loop over pixels building
  ``[window, 1]`` and calling ``np.linalg.solve``), timed on a random subset of pixels and
  scaled to the whole image when the full loop would take minutes (marked ``~``);
* achieved GFLOP/s of the chosen solver's arithmetic, and that as a fraction of a large
  NumPy matmul measured in the same run;
* float32 vs float64 speed ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import best_of, find_data, load_london  # noqa: E402

from mlrdist import MaskedRidge  # noqa: E402
from mlrdist.kernels.ridge import choose_solver, default_subtile  # noqa: E402


def peak_bytes(fn) -> int:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def per_pixel_plain(X: np.ndarray, Y: np.ndarray, k: int, alpha: float, pixels) -> None:
    """The plain implementation: one design matrix and np.linalg.solve per pixel."""
    r = k // 2
    n = X.shape[0]
    Xp = np.pad(X, ((0, 0), (r, r), (r, r)))
    for y, x in pixels:
        A = np.empty((n, k * k + 1))
        A[:, :-1] = Xp[:, y : y + k, x : x + k].reshape(n, -1)
        A[:, -1] = 1.0
        np.linalg.solve(A.T @ A + alpha * np.eye(k * k + 1), A.T @ Y[:, y, x])


def solver_flops(n: int, k: int, npix: int, solver: str, subtile: int) -> float:
    F = k * k
    p = F + 1
    halo = ((subtile + k - 1) / subtile) ** 2
    if solver == "dual":
        per = 2 * n * n * F + 2 / 3 * n**3 + 2 * n * n + 2 * n * F
    elif solver == "gram":
        per = 2 * halo * n * (((2 * k - 1) ** 2 + 1) // 2) + 2 / 3 * p**3 + 2 * p * p + 2 * n * F
    else:
        per = 2 * n * p * p + 2 / 3 * p**3 + 2 * p * p + 2 * n * F
    return per * npix


def matmul_gflops() -> float:
    a = np.random.default_rng(0).random((2048, 2048))
    t = best_of(lambda: a @ a, 3)
    return 2 * 2048**3 / t / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--ks", type=int, nargs="+", default=[3, 7, 11, 15])
    ap.add_argument("--alpha", type=float, default=0.4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plain-pixels", type=int, default=2048, help="pixels timed for the plain loop")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_fit.json"))
    args = ap.parse_args()

    X8, Y8 = load_london(find_data(args.data), args.n, args.size)
    X, Y = X8 / 255.0, Y8 / 255.0
    n, H, W = X.shape
    Xpred = np.concatenate([X] * (1000 // n + 1))[:1000]
    peak_matmul = matmul_gflops()
    print(f"London neutral->smiling, n={n}, {H}x{W} gray; NumPy 2048^2 matmul: {peak_matmul:.1f} GFLOP/s")
    rng = np.random.default_rng(0)
    rows = []
    for k in args.ks:
        row = {"k": k}
        for dt in (np.float64, np.float32):
            model = MaskedRidge(k, args.alpha, dtype=dt)
            model.fit(X, Y)  # warm-up (index caches, thread pool)
            tag = np.dtype(dt).name
            row[f"fit_s_{tag}"] = best_of(lambda m=model: m.fit(X, Y), args.repeat)
            row[f"predict_s_{tag}"] = best_of(lambda m=model: m.predict(Xpred), args.repeat)
            if dt is np.float64:
                row["peak_mb"] = peak_bytes(lambda m=model: m.fit(X, Y)) / 2**20
                p64 = model.predict(Xpred[:100])
            else:
                row["max_abs_diff_32_64"] = float(np.abs(model.predict(Xpred[:100]) - p64).max())
        sub = default_subtile(k)
        solver = choose_solver(n, k, 1, 1, sub, sub)
        row["solver"] = solver
        row["gflops"] = solver_flops(n, k, H * W, solver, sub) / row["fit_s_float64"] / 1e9
        row["gflops_frac_matmul"] = row["gflops"] / peak_matmul
        all_pix = [(y, x) for y in range(H) for x in range(W)]
        m = min(len(all_pix), args.plain_pixels if k > 3 else len(all_pix))
        pick = [all_pix[i] for i in rng.choice(len(all_pix), m, replace=False)]
        t_plain = best_of(lambda p=pick, k=k: per_pixel_plain(X, Y, k, args.alpha, p), 1) * len(all_pix) / m
        row["plain_s"] = t_plain
        row["plain_extrapolated"] = m < len(all_pix)
        row["speedup_vs_plain"] = t_plain / row["fit_s_float64"]
        row["predict_img_s_float64"] = len(Xpred) / row["predict_s_float64"]
        row["predict_img_s_float32"] = len(Xpred) / row["predict_s_float32"]
        row["fit_ratio_32"] = row["fit_s_float64"] / row["fit_s_float32"]
        row["predict_ratio_32"] = row["predict_s_float64"] / row["predict_s_float32"]
        rows.append(row)
        print(json.dumps({a: (round(b, 4) if isinstance(b, float) else b) for a, b in row.items()}))

    print()
    print("| k | solver | fit f64 (s) | fit f32 (s) | f32 speed-up fit / predict | peak MB | plain loop (s) | speed-up | predict f64 (img/s) | predict f32 (img/s) | GFLOP/s (% of matmul) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        approx = "~" if r["plain_extrapolated"] else ""
        print(
            f"| {r['k']} | {r['solver']} | {r['fit_s_float64']:.3f} | {r['fit_s_float32']:.3f} | "
            f"{r['fit_ratio_32']:.2f}x / {r['predict_ratio_32']:.2f}x | {r['peak_mb']:.0f} | "
            f"{approx}{r['plain_s']:.1f} | {approx}{r['speedup_vs_plain']:.0f}x | "
            f"{r['predict_img_s_float64']:.0f} | {r['predict_img_s_float32']:.0f} | "
            f"{r['gflops']:.1f} ({100 * r['gflops_frac_matmul']:.0f}%) |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"matmul_gflops": peak_matmul, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
