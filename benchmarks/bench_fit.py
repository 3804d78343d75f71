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
* float32 vs float64 speed ratios;
* the per-pixel factorisation: microseconds per batched ``np.linalg.solve`` of the fit's
  system size in float64 and float32 (one thread), its share of a one-thread float64 fit,
  and the float32 fit speed-up that share allows (Amdahl: everything else twice as fast),
  since batched LAPACK is no faster in single precision for these small systems;
* the float32 speed-up of the fit's batched GEMM at its own shapes (one thread; the ``dual``
  and ``primal`` solvers form their Grams this way, ``box`` its column Grams, ``gram``
  gathers them instead), which shows how far the BLAS itself gets from the 2x of a large
  matmul on such small products.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import best_of, find_data, load_london, peak_bytes  # noqa: E402

from mlrdist import MaskedRidge  # noqa: E402
from mlrdist.kernels.cost import choose_solver, default_subtile  # noqa: E402


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
    elif solver == "box":  # thin column GEMMs, running sums, then as dual
        per = (2 * n * n * k * (subtile + k - 1) / subtile + 3 * n * n) + 2 / 3 * n**3 + 2 * n * n + 2 * n * F
    elif solver == "gram":
        per = 2 * halo * n * (((2 * k - 1) ** 2 + 1) // 2) + 2 / 3 * p**3 + 2 * p * p + 2 * n * F
    else:
        per = 2 * n * p * p + 2 / 3 * p**3 + 2 * p * p + 2 * n * F
    return per * npix


def lapack_solve_us(m: int, dtype, count: int = 2048) -> float:
    """Microseconds per system of a batched ``np.linalg.solve`` of ``m x m`` SPD systems on
    one thread (the factorisations every fit performs, one per pixel)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(m)
    A = rng.random((count, m, 2 * m)) / m
    G = (A @ A.transpose(0, 2, 1) + 0.4 * np.eye(m)).astype(dtype)
    b = rng.random((count, m, 1)).astype(dtype)
    with threadpool_limits(limits=1, user_api="blas"):
        return best_of(lambda: np.linalg.solve(G, b), 3) / count * 1e6


def gemm_ratio_32(n: int, k: int, solver: str, subtile: int, repeat: int = 5) -> float | None:
    """float64 / float32 time of the batched Gram GEMM of one sub-tile, at the fit's shapes
    (one thread); None for the ``gram`` solver, which forms no Gram by GEMM."""
    from threadpoolctl import threadpool_limits

    if solver == "gram":
        return None
    rng = np.random.default_rng(k)
    if solver == "box":  # a row of column Grams: (n x k) (k x n) per tile column
        At = rng.random((subtile + k - 1, k, n))
    else:
        At = rng.random((subtile * subtile, k * k, n))  # (npix, F, n)
    times = {}
    for dt in (np.float64, np.float32):
        a = At.astype(dt)
        if solver in ("dual", "box"):  # A A^T: (n x F) (F x n) per pixel
            op = lambda a=a: np.matmul(a.transpose(0, 2, 1), a)  # noqa: E731
        else:  # A^T A: (F x n) (n x F) per pixel
            op = lambda a=a: np.matmul(a, a.transpose(0, 2, 1))  # noqa: E731
        with threadpool_limits(limits=1, user_api="blas"):
            times[dt] = best_of(op, repeat)
    return times[np.float64] / times[np.float32]


def solve_share(X: np.ndarray, Y: np.ndarray, k: int, alpha: float, dtype) -> float:
    """Fraction of a one-thread fit spent in the per-pixel factorisations (``_solve_spd``)."""
    from mlrdist.kernels import ridge

    spent = [0.0]
    original = ridge._solve_spd

    def timed(G, b):
        t0 = time.perf_counter()
        x = original(G, b)
        spent[0] += time.perf_counter() - t0
        return x

    model = MaskedRidge(k, alpha, dtype=dtype, n_jobs=1)
    model.fit(X, Y)  # warm-up
    ridge._solve_spd = timed
    try:
        t0 = time.perf_counter()
        model.fit(X, Y)
        total = time.perf_counter() - t0
    finally:
        ridge._solve_spd = original
    return spent[0] / total


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
        m_solve = n if solver in ("dual", "box") else k * k + 1
        row["lapack_us_float64"] = lapack_solve_us(m_solve, np.float64)
        row["lapack_us_float32"] = lapack_solve_us(m_solve, np.float32)
        row["gemm_ratio_32"] = gemm_ratio_32(n, k, solver, sub)
        row["solve_share"] = solve_share(X, Y, k, args.alpha, np.float64)
        # the float32 fit if everything but the factorisation ran twice as fast
        row["fit_ratio_32_bound"] = 1 / (row["solve_share"] + (1 - row["solve_share"]) / 2)
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
    print("| k | solver | fit f64 (s) | fit f32 (s) | f32 speed-up fit / predict | peak MB | plain loop (s) | speed-up | predict f64 (img/s) | predict f32 (img/s) | GFLOP/s (% of matmul) | LAPACK solve f64 / f32 (us) | solve share (1 thread) | f32 fit bound | f32 GEMM speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        approx = "~" if r["plain_extrapolated"] else ""
        print(
            f"| {r['k']} | {r['solver']} | {r['fit_s_float64']:.3f} | {r['fit_s_float32']:.3f} | "
            f"{r['fit_ratio_32']:.2f}x / {r['predict_ratio_32']:.2f}x | {r['peak_mb']:.0f} | "
            f"{approx}{r['plain_s']:.1f} | {approx}{r['speedup_vs_plain']:.0f}x | "
            f"{r['predict_img_s_float64']:.0f} | {r['predict_img_s_float32']:.0f} | "
            f"{r['gflops']:.1f} ({100 * r['gflops_frac_matmul']:.0f}%) | "
            f"{r['lapack_us_float64']:.0f} / {r['lapack_us_float32']:.0f} | {100 * r['solve_share']:.0f}% | "
            f"{r['fit_ratio_32_bound']:.2f}x | "
            + (f"{r['gemm_ratio_32']:.2f}x |" if r["gemm_ratio_32"] is not None else "- |")
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"matmul_gflops": peak_matmul, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
