"""Receptive-field geometry: window offsets, zero padding and gathers.

Conventions used by every kernel
--------------------------------
* Image stacks are ``(n, H, W, C)``; kernels work on *samples-last* copies
  ``(H, W, C, n)`` so that the reductions over samples run over contiguous memory.
* A receptive field of odd size ``k`` has radius ``r = k // 2``. Window offsets are
  ordered row-major over ``(dy, dx)`` in ``-r..r``; features of a design row are ordered
  ``(dy, dx, channel)``, and the bias feature is stored separately (the intercept).
* Borders are zero padded. A zero feature receives a zero ridge weight, so this is
  identical to truncating the window at the border, which is what the paper's code does.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAX_RECEPTIVE_FIELD",
    "check_receptive_field",
    "extract_windows",
    "pad_samples_last",
    "window_offsets",
]

MAX_RECEPTIVE_FIELD = 31


def check_receptive_field(receptive_field: object) -> int:
    """Validate ``receptive_field`` (odd integer in 1..31) and return it as ``int``."""
    if isinstance(receptive_field, bool) or not isinstance(receptive_field, (int, np.integer)):
        raise ValueError(
            f"receptive_field must be an odd integer in 1..{MAX_RECEPTIVE_FIELD}, "
            f"got {receptive_field!r}"
        )
    k = int(receptive_field)
    if k < 1 or k > MAX_RECEPTIVE_FIELD or k % 2 == 0:
        raise ValueError(
            f"receptive_field must be an odd integer in 1..{MAX_RECEPTIVE_FIELD} "
            f"(the side of the square window centred on each pixel), got {k}"
        )
    return k


def window_offsets(k: int) -> np.ndarray:
    """Offsets ``(dy, dx)`` of a ``k x k`` window, row-major, shape ``(k*k, 2)``."""
    r = k // 2
    dy, dx = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    return np.stack([dy.ravel(), dx.ravel()], axis=1)


def pad_samples_last(X: np.ndarray, r: int, dtype: np.dtype | type | None = None) -> np.ndarray:
    """Zero-pad the spatial axes of ``X (n, H, W, C)`` by ``r`` and move samples last.

    Returns a C-contiguous array of shape ``(H + 2r, W + 2r, C, n)``.
    """
    n, H, W, C = X.shape
    out = np.zeros((H + 2 * r, W + 2 * r, C, n), dtype=dtype or X.dtype)
    out[r : r + H, r : r + W] = np.moveaxis(X, 0, -1)
    return out


def extract_windows(Spad: np.ndarray, k: int) -> np.ndarray:
    """Explicit design rows of every pixel of a padded samples-last tile.

    Parameters
    ----------
    Spad : ndarray, shape (th + k - 1, tw + k - 1, C, n)
        Padded source tile, samples last.
    k : int
        Receptive field.

    Returns
    -------
    ndarray, shape (th * tw, k * k * C, n)
        The transposed design ``A_i^T`` of every tile pixel: ``At[i, f, s]`` is feature
        ``f = (dy, dx, c)`` of sample ``s`` (without the bias row). Samples stay the
        contiguous axis, so the gather copies runs of ``n`` values.
    """
    th, tw = Spad.shape[0] - k + 1, Spad.shape[1] - k + 1
    C, n = Spad.shape[2], Spad.shape[3]
    At = np.empty((th, tw, k, k, C, n), dtype=Spad.dtype)
    for oy in range(k):
        for ox in range(k):
            At[:, :, oy, ox] = Spad[oy : oy + th, ox : ox + tw]
    return At.reshape(th * tw, k * k * C, n)
