"""The synthesis kernel against the explicit per-pixel dot product."""

from __future__ import annotations

import numpy as np
import pytest

from mlrdist.kernels import apply_region


def explicit(X, coef, intercept, colour):
    """y[t, s, i, c] = coef . [window] + intercept, by plain loops over pixels."""
    n, H, W, C = X.shape
    m, _, _, _, F = coef.shape
    k = int(round((F // (C if colour == "joint" else 1)) ** 0.5))
    r = k // 2
    Xp = np.pad(X, ((0, 0), (r, r), (r, r), (0, 0)))
    out = np.zeros((m, n, H, W, C))
    for y in range(H):
        for x in range(W):
            win = Xp[:, y : y + k, x : x + k, :]  # (n, k, k, C)
            for c in range(C):
                feats = win.reshape(n, -1) if colour == "joint" else win[..., c].reshape(n, -1)
                out[:, :, y, x, c] = coef[:, c, y, x] @ feats.T + intercept[:, c, y, x][:, None]
    return out


@pytest.mark.parametrize("colour", ["per_channel", "joint"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_apply_matches_explicit(colour, k):
    rng = np.random.default_rng(k)
    n, H, W, C, m = 9, 6, 7, 3, 2
    X = rng.random((n, H, W, C))
    F = k * k * (C if colour == "joint" else 1)
    coef = rng.standard_normal((m, C, H, W, F))
    intercept = rng.standard_normal((m, C, H, W))
    got = apply_region(X, coef, intercept, colour=colour, pad=k // 2, n_jobs=2)
    np.testing.assert_allclose(got, explicit(X, coef, intercept, colour), rtol=1e-12, atol=1e-12)


def test_apply_clip_and_halo():
    rng = np.random.default_rng(0)
    X = rng.random((3, 8, 8, 1))
    coef = rng.standard_normal((1, 1, 8, 8, 9)) * 3
    intercept = np.zeros((1, 1, 8, 8))
    full = apply_region(X, coef, intercept, pad=1)
    clipped = apply_region(X, coef, intercept, pad=1, clip=(0.0, 1.0))
    np.testing.assert_array_equal(clipped, np.clip(full, 0, 1))
    # a region with its halo taken from the image gives the same pixels as the full image
    Xp = np.pad(X, ((0, 0), (1, 1), (1, 1), (0, 0)))
    part = apply_region(Xp[:, 2:8, 3:9], coef[:, :, 2:6, 3:7], intercept[:, :, 2:6, 3:7])
    np.testing.assert_allclose(part, full[:, :, 2:6, 3:7], rtol=1e-12)


def test_apply_rejects_mismatched_region():
    with pytest.raises(ValueError, match="does not match"):
        apply_region(np.zeros((1, 5, 5, 1)), np.zeros((1, 1, 5, 5, 9)), np.zeros((1, 1, 5, 5)))
