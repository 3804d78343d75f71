"""The synthesis kernel against the explicit per-pixel dot product."""

from __future__ import annotations

import numpy as np
import pytest

import mlrdist.kernels.apply as apply_mod
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
    got = apply_region(X, coef, intercept, colour=colour, pad=k // 2)
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


# The two formulations: shift-and-add for small stacks or k < 5, banded GEMM otherwise.
@pytest.mark.parametrize("colour", ["per_channel", "joint"])
@pytest.mark.parametrize(("n", "k"), [(3, 5), (12, 3), (12, 5), (20, 7)])
def test_apply_paths_match_explicit(colour, n, k):
    rng = np.random.default_rng(100 * n + k)
    H, W, C, m = 19, 37, 3, 2  # W not a multiple of the 16-pixel segments
    X = rng.random((n, H, W, C))
    F = k * k * (C if colour == "joint" else 1)
    coef = rng.standard_normal((m, C, H, W, F))
    intercept = rng.standard_normal((m, C, H, W))
    got = apply_region(X, coef, intercept, colour=colour, pad=k // 2)
    np.testing.assert_allclose(got, explicit(X, coef, intercept, colour), rtol=1e-11, atol=1e-11)
    # rows computed in bands (as threads split them) are the same bytes as the whole image
    bands = [apply_region(X, coef, intercept, colour=colour, pad=k // 2, rows=r) for r in ((0, 1), (1, 11), (11, H))]
    np.testing.assert_array_equal(np.concatenate(bands, axis=2), got)


def test_apply_rejects_bad_rows():
    with pytest.raises(ValueError, match="rows must satisfy"):
        apply_region(np.zeros((1, 5, 5, 1)), np.zeros((1, 1, 5, 5, 9)), np.zeros((1, 1, 5, 5)), pad=1, rows=(3, 9))


@pytest.mark.parametrize("colour", ["per_channel", "joint"])
def test_apply_banded_independent_of_tiling(colour, monkeypatch):
    """Bands of rows, chunks of images and segment width do not change the result."""
    rng = np.random.default_rng(7)
    n, H, W, C, k = 23, 21, 40, 3, 5
    X = rng.random((n, H, W, C)).astype(np.float32)
    F = k * k * (C if colour == "joint" else 1)
    coef = rng.standard_normal((1, C, H, W, F)).astype(np.float32)
    intercept = rng.standard_normal((1, C, H, W)).astype(np.float32)
    default = apply_region(X, coef, intercept, colour=colour, pad=2)
    assert default.dtype == np.float32
    monkeypatch.setattr(apply_mod, "_BAND_BYTES", 1)  # one row per band
    monkeypatch.setattr(apply_mod, "_GEMM_IMAGES", 5)  # 5 chunks of images
    monkeypatch.setattr(apply_mod, "_SEGMENT", 8)
    tiled = apply_region(X, coef, intercept, colour=colour, pad=2)
    np.testing.assert_allclose(tiled, default, rtol=1e-5, atol=1e-5)
    ref = explicit(X.astype(np.float64), coef.astype(np.float64), intercept.astype(np.float64), colour)
    np.testing.assert_allclose(tiled, ref, rtol=1e-4, atol=1e-4)


def test_apply_banded_region_with_halo():
    """A region cut with its halo (pad=0) gives the pixels of the whole image."""
    rng = np.random.default_rng(1)
    n, H, W, k = 10, 30, 34, 7
    X = rng.random((n, H, W, 1))
    coef = rng.standard_normal((1, 1, H, W, k * k))
    intercept = rng.standard_normal((1, 1, H, W))
    full = apply_region(X, coef, intercept, pad=3)
    Xp = np.pad(X, ((0, 0), (3, 3), (3, 3), (0, 0)))
    part = apply_region(Xp[:, 5:25, 2:36], coef[:, :, 5:19, 2:30], intercept[:, :, 5:19, 2:30])
    np.testing.assert_allclose(part, full[:, :, 5:19, 2:30], rtol=1e-12, atol=1e-12)
