"""Intensity scaling of image stacks (pure NumPy).

Two scalings are offered (``scaling=`` on every model):

``"unit"`` (default)
    Keeps absolute brightness: integer images are divided by their type's maximum
    (``uint8 / 255``), float images are taken to be in ``[0, 1]`` already. Predictions are
    clipped to ``[0, 1]``. A dark photo stays dark after synthesis.
``"minmax"``
    The paper's per-image min-max scaling: every image (all its pixels and channels) is
    mapped to ``[0, 1]``; a constant image maps to 0. Predictions are clipped to
    ``[0, 1]``. Removes global exposure differences between the two shots of a pair.
``"none"``
    Values are used as given (cast to the model dtype) and predictions are not clipped.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SCALINGS", "apply_scaling", "scale_images", "scaling_params", "to_uint8"]

SCALINGS = ("unit", "minmax", "none")


def scaling_params(X: np.ndarray, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-image offset and span ``(lo, span)``, each shape ``(n,)``, of a 4-D stack.

    ``scaled = (X - lo) / span`` (0 where ``span == 0``). Computing them once for whole
    images lets tiles of the same images be scaled identically (see ``train``).
    """
    n = X.shape[0]
    if scaling == "none" or (scaling == "unit" and X.dtype.kind == "f"):
        return np.zeros(n), np.ones(n)
    if scaling == "unit":
        return np.zeros(n), np.full(n, float(np.iinfo(X.dtype).max))
    if scaling == "minmax":
        lo = X.min(axis=(1, 2, 3)).astype(np.float64)
        return lo, X.max(axis=(1, 2, 3)).astype(np.float64) - lo
    raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")


def apply_scaling(X: np.ndarray, lo: np.ndarray, span: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``(X - lo) / span`` per image (``lo``, ``span`` of shape ``(n,)``), computed in ``dtype``.

    Every path (in-memory fit, training tiles, synthesis) scales through this function, so
    a tile of an image is scaled bit for bit like the whole image.
    """
    dtype = np.dtype(dtype)
    shape = (-1,) + (1,) * (X.ndim - 1)
    lo = np.asarray(lo, dtype=dtype).reshape(shape)
    span = np.asarray(span, dtype=dtype).reshape(shape)
    if not lo.any() and np.all(span == 1):
        return X.astype(dtype, copy=False)
    out = X.astype(dtype)
    out -= lo
    np.divide(out, span, out=out, where=span > 0)
    out[np.broadcast_to(span <= 0, out.shape)] = 0.0
    return out


def scale_images(X: np.ndarray, scaling: str, dtype: np.dtype) -> np.ndarray:
    """Scale a validated 4-D stack to the model's working range and dtype."""
    lo, span = scaling_params(X, scaling)
    return apply_scaling(X, lo, span, dtype)


def to_uint8(P: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8: ``floor(255 P + 0.5)``, clipped (float32 work arrays)."""
    Q = np.multiply(P, 255.0, dtype=np.float32)
    Q += 0.5
    np.clip(Q, 0.0, 255.0, out=Q)
    return Q.astype(np.uint8)
