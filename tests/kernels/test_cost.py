"""The solver cost model: path choice, and projected memory bounding the measured peak."""

from __future__ import annotations

import numpy as np
import pytest

from mlrdist.kernels import SOLVERS, choose_solver, cost, ridge


def test_choose_solver_picks_a_dual_form_when_samples_are_few():
    assert choose_solver(n=100, k=15, channels=1, n_rhs=1, th=16, tw=16) == "box"
    assert choose_solver(n=100, k=11, channels=1, n_rhs=1, th=16, tw=16) == "box"
    assert choose_solver(n=100, k=3, channels=1, n_rhs=1, th=32, tw=32) == "gram"
    assert choose_solver(n=100, k=7, channels=1, n_rhs=1, th=16, tw=16) == "gram"
    assert choose_solver(n=20, k=5, channels=1, n_rhs=1, th=16, tw=16) == "dual"


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize(
    ("n", "k", "C", "R", "t", "dtype"),
    [(60, 9, 1, 1, 16, np.float64), (60, 9, 1, 1, 16, np.float32), (40, 5, 3, 3, 12, np.float64),
     (40, 5, 3, 3, 12, np.float32), (7, 3, 2, 4, 5, np.float32)],
)
def test_block_nbytes_bounds_the_measured_peak(solver, n, k, C, R, t, dtype):
    """The projected working memory the training planner relies on is an upper bound of what
    fit_block allocates (tracemalloc sees NumPy's buffers), and not a loose one."""
    import tracemalloc

    rng = np.random.default_rng(0)
    source = rng.random((t + k - 1, t + k - 1, C, n)).astype(dtype)
    targets = rng.random((t, t, R, n)).astype(dtype)
    ridge._gram_index.cache_clear()  # the gather index is part of the gram path's memory
    tracemalloc.start()
    try:
        ridge.fit_block(source, targets, receptive_field=k, alpha=0.4, solver=solver)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    projected = cost.block_nbytes(solver, n, k, C, R, t, t, np.dtype(dtype).itemsize)
    assert peak <= projected <= 2.5 * peak + 2**20
