"""Small synthetic face-like pairs for the baseline tests."""

import numpy as np


def pairs(n=24, h=10, w=9, c=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    X = rng.random(shape)
    Y = np.clip(0.6 * X + 0.2 * np.roll(X, 1, axis=2) + 0.1 + 0.05 * rng.standard_normal(shape), 0, 1)
    return X, Y


def window_design(X, k, y, x):
    """Explicit ``(n, k*k)`` zero-padded window design of pixel (y, x) of a gray stack."""
    r = k // 2
    P = np.pad(X, ((0, 0), (r, r), (r, r)))
    return P[:, y : y + k, x : x + k].reshape(len(X), -1)
