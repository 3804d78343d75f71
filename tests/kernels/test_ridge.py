"""Every solver path against an independent oracle: scikit-learn Ridge on the explicit
per-pixel design ``[window, 1]`` built here by plain loops (not by the package)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge

from mlrdist.kernels import SOLVERS, fit_region, pad_samples_last, ridge

RTOL = 1e-8


def design(X: np.ndarray, y: int, x: int, k: int, channels) -> np.ndarray:
    """Explicit design of pixel (y, x): window values (zero outside), then 1. Plain loops."""
    n, H, W, _ = X.shape
    r = k // 2
    cols = []
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            for c in channels:
                yy, xx = y + dy, x + dx
                inside = 0 <= yy < H and 0 <= xx < W
                cols.append(X[:, yy, xx, c] if inside else np.zeros(n))
    cols.append(np.ones(n))
    return np.stack(cols, axis=1)


def oracle(X, Y, k, alpha, colour):
    """coef (m, C, H, W, F), intercept (m, C, H, W) from scikit-learn, pixel by pixel."""
    n, H, W, C = X.shape
    m = Y.shape[0]
    F = k * k * (C if colour == "joint" else 1)
    coef = np.zeros((m, C, H, W, F))
    intercept = np.zeros((m, C, H, W))
    for y in range(H):
        for x in range(W):
            for c in range(C):
                chans = range(C) if colour == "joint" else [c]
                A = design(X, y, x, k, chans)
                T = Y[:, :, y, x, c].T  # (n, m)
                w = np.atleast_2d(Ridge(alpha=alpha, fit_intercept=False, solver="cholesky").fit(A, T).coef_)
                coef[:, c, y, x] = w[:, :-1]
                intercept[:, c, y, x] = w[:, -1]
    return coef, intercept


def run(X, Y, k, alpha, colour, solver, subtile=None):
    source = pad_samples_last(X, k // 2)
    targets = np.ascontiguousarray(Y.transpose(2, 3, 0, 4, 1))
    return fit_region(
        source, targets, receptive_field=k, alpha=alpha, colour=colour, solver=solver, subtile=subtile,
    )


def assert_close(got, want, rtol=RTOL):
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("colour", ["per_channel", "joint"])
@pytest.mark.parametrize(("n", "k"), [(12, 3), (5, 3), (30, 1), (6, 5)])
def test_solvers_match_sklearn(solver, colour, n, k):
    rng = np.random.default_rng(n * 100 + k)
    X = rng.random((n, 7, 6, 2))
    Y = rng.random((2, n, 7, 6, 2))
    coef, intercept = run(X, Y, k, 0.4, colour, solver, subtile=4)
    ref_coef, ref_intercept = oracle(X, Y, k, 0.4, colour)
    assert_close(coef, ref_coef)
    assert_close(intercept, ref_intercept)


@pytest.mark.parametrize("solver", SOLVERS)
def test_real_faces_match_sklearn(london_small, solver):
    X, Y = london_small
    X, Y = X[..., None], Y[None, ..., None]
    coef, intercept = run(X, Y, 5, 0.4, "per_channel", solver)
    ref_coef, ref_intercept = oracle(X, Y, 5, 0.4, "per_channel")
    assert_close(coef, ref_coef)
    assert_close(intercept, ref_intercept)


def test_border_equals_truncated_window():
    """Zero padding == the paper's truncated windows: padded features get weight 0 and the
    rest equals a ridge on the in-image pixels only."""
    rng = np.random.default_rng(3)
    X = rng.random((10, 5, 6, 1))
    Y = rng.random((1, 10, 5, 6, 1))
    coef, intercept = run(X, Y, 3, 0.4, "per_channel", "auto")
    # top-left corner: only offsets (0,0), (0,1), (1,0), (1,1) are inside
    w = coef[0, 0, 0, 0].reshape(3, 3)
    assert np.all(w[0, :] == 0) and np.all(w[:, 0] == 0)
    A = np.stack([X[:, 0, 0, 0], X[:, 0, 1, 0], X[:, 1, 0, 0], X[:, 1, 1, 0], np.ones(10)], 1)
    ref = Ridge(alpha=0.4, fit_intercept=False).fit(A, Y[0, :, 0, 0, 0]).coef_
    assert_close(np.r_[w[1:, 1:].ravel(), intercept[0, 0, 0, 0]], ref)
    # bottom edge pixel: the bottom row of its window is outside
    assert np.all(coef[0, 0, 4, 3].reshape(3, 3)[2] == 0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 12),
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    C=st.integers(1, 3),
    k=st.sampled_from([1, 3, 5, 7]),
    alpha=st.floats(1e-2, 10.0),
    subtile=st.integers(1, 8),
    colour=st.sampled_from(["per_channel", "joint"]),
    seed=st.integers(0, 2**16),
)
def test_independent_of_subtile_and_path(n, H, W, C, k, alpha, subtile, colour, seed):
    rng = np.random.default_rng(seed)
    X = rng.random((n, H, W, C))
    Y = rng.random((2, n, H, W, C))
    ref = run(X, Y, k, alpha, colour, "primal", subtile=None)
    for solver in ("gram", "dual", "box", "auto"):
        got = run(X, Y, k, alpha, colour, solver, subtile=subtile)
        for g, r in zip(got, ref, strict=True):
            assert_close(g, r, rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_box_path_wide_tiles_and_many_samples(dtype):
    """The box path's running sums over a tile wider than the window, several targets and
    joint colour, against the GEMM dual path (itself checked against the oracle above)."""
    rng = np.random.default_rng(11)
    X = rng.random((9, 6, 40, 2)).astype(dtype)
    Y = rng.random((2, 9, 6, 40, 2)).astype(dtype)
    for colour in ("per_channel", "joint"):
        want = run(X, Y, 5, 0.4, colour, "dual", subtile=40)
        got = run(X, Y, 5, 0.4, colour, "box", subtile=40)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == dtype
            assert_close(g, w, rtol=1e-9 if dtype == np.float64 else 2e-4)


def test_float32_close_to_float64():
    rng = np.random.default_rng(5)
    X = rng.random((40, 16, 16, 1))
    Y = rng.random((1, 40, 16, 16, 1))
    for solver in SOLVERS:
        c64, i64 = run(X, Y, 7, 0.4, "per_channel", solver)
        c32, i32 = run(X.astype(np.float32), Y.astype(np.float32), 7, 0.4, "per_channel", solver)
        assert c32.dtype == np.float32
        assert_close(c32, c64, rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_any_memory_layout_of_the_inputs(dtype):
    rng = np.random.default_rng(12)
    source = rng.random((14, 13, 2, 9)).astype(dtype)
    targets = rng.random((10, 9, 2, 9)).astype(dtype)
    for solver in SOLVERS:
        want = ridge.fit_block(source, targets, receptive_field=5, alpha=0.4, solver=solver)
        for layout in (np.asfortranarray, lambda a: np.moveaxis(np.ascontiguousarray(np.moveaxis(a, -1, 0)), 0, -1)):
            got = ridge.fit_block(layout(source), layout(targets), receptive_field=5, alpha=0.4, solver=solver)
            for g, w in zip(got, want, strict=True):
                # float32: summation order differs with the layout (rounding, not error)
                assert_close(g, w, rtol=1e-4 if dtype == np.float32 else 1e-12)
