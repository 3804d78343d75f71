"""Projected cost of the solver paths: which one is cheapest for a tile, and its memory.

The constants are seconds per unit of work of the building blocks, measured on a 2-core
x86-64 machine with single-threaded OpenBLAS (``benchmarks/bench_fit.py``); only their
ratios steer the choice. :func:`block_nbytes` is an upper bound of what
:func:`mlrdist.kernels.ridge.fit_block` allocates (tested against tracemalloc), used by the
tile planner to refuse plans that cannot fit the workers.
"""

from __future__ import annotations

__all__ = ["SOLVERS", "block_nbytes", "choose_solver", "default_subtile", "solver_costs"]

SOLVERS = ("primal", "gram", "dual", "box")

_COPY = 2e-9  # gathering one window element
_GEMM = 2.5e-11  # one multiply-add inside a batched BLAS matmul
_EINSUM = 2.5e-10  # one multiply-add inside an einsum over samples
_GATHER = 3e-9  # one Gram entry gathered from the shared products
_SOLVE = 5e-9  # batched LAPACK solve of an m x m system costs about _SOLVE * m**2
_SMALL_GEMM = 1e-10  # one multiply-add inside the box path's thin (n x kC) (kC x n) GEMMs
_PASS = 4e-10  # one element of an elementwise pass over a tile's n x n Grams
_CALL = 3e-7  # one small matmul inside a stacked np.matmul (per pixel and window row)
GATHER_CHUNK = 2**20  # bytes of gather index per chunk of the gram path's gather


def solver_costs(n: int, k: int, channels: int, n_rhs: int, th: int, tw: int) -> dict[str, float]:
    """Projected seconds of each solver for one ``th x tw`` tile."""
    F = k * k * channels
    p = F + 1
    npix = th * tw
    halo = (th + k - 1) * (tw + k - 1) / npix
    n_deltas = ((2 * k - 1) ** 2 + 1) // 2
    rhs = n * F * n_rhs * _EINSUM
    per_pixel = {
        "primal": n * F * _COPY + n * p * p * _GEMM + p * p * _SOLVE + rhs,
        "gram": halo * n * n_deltas * channels**2 * _EINSUM
        + p * p * _GATHER
        + p * p * _SOLVE
        + rhs,
        "dual": n * F * _COPY + n * n * F * _GEMM + n * n * _SOLVE + n * F * n_rhs * _GEMM,
        "box": n * n * k * channels * (tw + k - 1) / tw * _SMALL_GEMM
        + 5 * n * n * _PASS
        + n * n * _SOLVE
        + n * F * n_rhs * _GEMM
        + k * _CALL,
    }
    return {name: cost * npix for name, cost in per_pixel.items()}


def choose_solver(n: int, k: int, channels: int, n_rhs: int, th: int, tw: int) -> str:
    """The cheapest exact solver for a tile by :func:`solver_costs`."""
    costs = solver_costs(n, k, channels, n_rhs, th, tw)
    return min(("gram", "box", "dual", "primal"), key=costs.__getitem__)


def block_nbytes(
    solver: str, n: int, k: int, channels: int, n_rhs: int, th: int, tw: int, itemsize: int
) -> int:
    """Peak working memory (bytes) of :func:`fit_block` for one tile, excluding its inputs.

    An upper bound of what the call allocates (``tests/kernels`` compares it with the peak
    that tracemalloc sees), including the ``gram`` path's cached gather index.
    """
    F = k * k * channels
    p = F + 1
    npix = th * tw
    reg = (th + k - 1) * (tw + k - 1)
    i = itemsize
    wide = 8 if i < 8 else 0  # float32 systems are solved in float64
    # right-hand sides, solutions (float64 for float32 data) and the split coef / intercept
    rhs = npix * p * n_rhs * (2 * i + 2 * wide) + 2 * npix * p * n_rhs * i
    if solver == "primal":
        work = npix * n * F * i + npix * p * p * (i + wide) + rhs
    elif solver == "gram":
        n_deltas = ((2 * k - 1) ** 2 + 1) // 2
        # pair products, the cached gather index (int64), G, one chunk of the gather
        chunk = min(npix, max(1, GATHER_CHUNK // (F * F * 8))) * F * F * (16 + i)
        work = reg * n_deltas * channels**2 * i + npix * F * F * 8 + npix * p * p * (i + wide) + chunk + rhs
    elif solver == "dual":  # windows, K (float64 next to the float32 product), A c
        work = npix * n * F * i + npix * n * n * (2 * i + wide) + reg * channels * n * i
        work += npix * F * n_rhs * (2 * i + 2 * wide) + npix * n * n_rhs * (i + wide) + npix * n * 8
    elif solver == "box":  # source copies, a row of column Grams, a row of float64 Grams
        work = 2 * reg * channels * n * i + (tw + k - 1 + tw) * n * n * i + tw * n * n * 8
        # solutions, one row's right-hand sides, coef = A c
        work += npix * n * n_rhs * (8 + i) + 2 * tw * n * n_rhs * 8
        work += npix * F * n_rhs * (max(i, wide) + wide + i) + npix * n_rhs * 8
        if wide:  # the mean image and its box sums
            Hr, Wr = th + k - 1, tw + k - 1
            work += reg * channels * (8 + i) + reg * n * 8 + (Hr + 1) * (Wr + 1) * n * 8 + 3 * npix * n * 8
    else:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    return int(work * 1.05) + 2**18  # NumPy's own small buffers


def default_subtile(k: int) -> int:
    """Side of the cache-sized sub-tiles a region is solved in (measured optimum)."""
    return 32 if k <= 3 else 16
