"""Shared plumbing of the per-pixel (masked) baselines: window designs, batching, apply.

Every masked baseline solves one small problem per output pixel and channel ("problem"),
on the ``k x k`` window of the *same* input channel centred on the pixel (the paper's
per-channel colour handling), zero padded at the borders. Problems are enumerated in
``(y, x, channel)`` order and solved in batches of ``batch`` problems at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..kernels.windows import check_receptive_field

__all__ = ["apply_local", "iter_batches", "window_design"]


def _padded(X: np.ndarray, r: int) -> np.ndarray:
    """``(n, H, W, C)`` -> ``(n, H + 2r, W + 2r, C)`` zero padded."""
    return np.pad(X, ((0, 0), (r, r), (r, r), (0, 0)))


def window_design(Xpad: np.ndarray, k: int, idx: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Designs of a batch of problems.

    Parameters
    ----------
    Xpad : ndarray, shape (n, H + k - 1, W + k - 1, C)
    k : int
    idx : int array, shape (B,)
        Flat problem indices into ``(H, W, C)``.
    shape : (H, W, C)

    Returns
    -------
    ndarray, shape (B, n, k * k)
        Features in row-major ``(dy, dx)`` order, the samples on axis 1.
    """
    ys, xs, cs = np.unravel_index(idx, shape)
    A = np.empty((len(idx), Xpad.shape[0], k * k), dtype=Xpad.dtype)
    f = 0
    for oy in range(k):
        for ox in range(k):
            A[:, :, f] = Xpad[:, ys + oy, xs + ox, cs].T
            f += 1
    return A


def iter_batches(X: np.ndarray, k: int, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(idx (B,), A (B, n, k*k))`` over all problems of ``X (n, H, W, C)``."""
    k = check_receptive_field(k)
    Xpad = _padded(X, k // 2)
    shape = X.shape[1:]
    total = int(np.prod(shape))
    for start in range(0, total, batch):
        idx = np.arange(start, min(start + batch, total))
        yield idx, window_design(Xpad, k, idx, shape)


def targets_of(Y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``Y (m, n, H, W, C)`` -> the batch's targets ``(B, m, n)``."""
    m, n = Y.shape[:2]
    return Y.reshape(m, n, -1)[:, :, idx].transpose(2, 0, 1)


def apply_local(
    X: np.ndarray, coef: np.ndarray, intercept: np.ndarray, k: int, batch: int,
    clip: tuple[float, float] | None,
) -> np.ndarray:
    """Predict with per-problem weights.

    Parameters
    ----------
    X : ndarray, shape (n, H, W, C)
    coef : ndarray, shape (m, H, W, C, k*k)
    intercept : ndarray, shape (m, H, W, C)

    Returns
    -------
    ndarray, shape (m, n, H, W, C)
    """
    m = coef.shape[0]
    n, H, W, C = X.shape
    W2 = coef.reshape(m, -1, k * k)
    b2 = intercept.reshape(m, -1)
    out = np.empty((m, n, H * W * C), dtype=X.dtype)
    for idx, A in iter_batches(X, k, batch):
        out[:, :, idx] = np.einsum("bnf,mbf->mnb", A, W2[:, idx]) + b2[:, None, idx]
    if clip is not None:
        np.clip(out, *clip, out=out)
    return out.reshape(m, n, H, W, C)


def check_nonneg(value, name: str) -> float:
    """Validate a finite number >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v
