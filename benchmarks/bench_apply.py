"""Synthesis kernel speed: banded GEMM against shift-and-add, measured in the same run.

    python benchmarks/bench_apply.py [--data DIR] [--repeat 3]

Inputs are real London faces (neutral, ``--data``, ``MLRDIST_DATA`` or ``../shared/data``)
repeated to the stack size; weights are fitted on 100 neutral -> smiling pairs of the same
size. Both formulations of :func:`mlrdist.kernels.apply_region` run on 2 threads; the
baseline is the shift-and-multiply-add formulation forced for every stack. Reported:
images/s (best of ``--repeat``), the speed-up, the largest difference between the two, and
the kernel's working memory beyond its output (tracemalloc).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from _data import best_of, find_data, load_london, peak_bytes  # noqa: E402

import mlrdist.kernels.apply as apply_mod  # noqa: E402
from mlrdist import MaskedRidge  # noqa: E402
from mlrdist.execution import thread_map  # noqa: E402
from mlrdist.tiles import row_bands  # noqa: E402


def threaded(func, src, coef, intercept, threads: int = 2, **kw):
    """``func`` over row bands on ``threads`` threads, as MaskedRidge.predict runs it."""
    bands = row_bands(coef.shape[2], threads)
    parts = thread_map(lambda rows: func(src, coef, intercept, rows=rows, **kw), bands, threads)
    return np.concatenate(parts, axis=2)


CASES = [  # (side, colour image, colour mode, k, stack size)
    (128, False, "per_channel", 3, 1000),
    (128, False, "per_channel", 7, 1000),
    (128, False, "per_channel", 15, 300),
    (256, True, "per_channel", 7, 200),
    (256, True, "joint", 5, 200),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bench_apply.json"))
    args = ap.parse_args()
    data = find_data(args.data)
    rows = []
    for side, colour_img, colour, k, n in CASES:
        X8, Y8 = load_london(data, 100, side, colour=colour_img)
        X, Y = X8 / 255.0, Y8 / 255.0
        if X.ndim == 3:
            X, Y = X[..., None], Y[..., None]
        model = MaskedRidge(k, 0.4, colour=colour).fit(X, Y)
        stack = np.concatenate([X] * (n // len(X) + 1))[:n]
        for dt in (np.float64, np.float32):
            coef, intercept = model.coef_.astype(dt), model.intercept_.astype(dt)
            src = stack.astype(dt)

            def run(src=src, coef=coef, intercept=intercept, colour=colour, k=k):
                return threaded(apply_mod.apply_region, src, coef, intercept, colour=colour, pad=k // 2,
                                clip=(0.0, 1.0))

            fast = run()
            t_fast = best_of(run, args.repeat)
            mem = max(0, peak_bytes(run) - fast.nbytes)  # working memory beyond the output
            saved = apply_mod._MIN_K_BANDED
            apply_mod._MIN_K_BANDED = 10**9  # force shift-and-add
            try:
                base = run()
                t_base = best_of(run, args.repeat)
            finally:
                apply_mod._MIN_K_BANDED = saved
            banded = k >= apply_mod._MIN_K_BANDED and n >= apply_mod._MIN_BANDED
            row = {
                "path": "banded GEMM" if banded else "shift-and-add (k < 5: the same path twice)",
                "case": f"{side}x{side} {'colour' if colour_img else 'gray'} {colour} k={k}",
                "dtype": np.dtype(dt).name,
                "images": n,
                "img_s": n / t_fast,
                "baseline_img_s": n / t_base,
                "speedup": t_base / t_fast,
                "max_abs_diff": float(np.abs(fast - base).max()),
                "working_mb": mem / 2**20,
            }
            rows.append(row)
            print(json.dumps({a: (round(b, 4) if isinstance(b, float) else b) for a, b in row.items()}), flush=True)
    print()
    print("| case | dtype | path | apply_region (img/s) | shift-and-add (img/s) | speed-up | max |diff| | working memory |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['dtype']} | {r['path'].split(' (')[0]} | {r['img_s']:,.0f} | "
            f"{r['baseline_img_s']:,.0f} | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} | "
            f"{r['working_mb']:.0f} MB |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
