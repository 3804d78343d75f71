"""Input validation and intensity scaling of image stacks (pure NumPy).

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

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "SCALINGS",
    "apply_scaling",
    "check_alpha",
    "check_dtype",
    "check_positive_int",
    "check_stack",
    "scale_images",
    "scaling_params",
    "split_targets",
]

SCALINGS = ("unit", "minmax", "none")


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """Validate a ridge penalty: a finite number > 0."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {alpha!r}") from None
    if isinstance(alpha, bool) or not np.isfinite(value) or value <= 0:
        raise ValueError(
            f"{name} must be a finite number > 0 (the ridge penalty; the paper uses 0.4), "
            f"got {alpha!r}"
        )
    return value


def check_positive_int(value: Any, name: str, hint: str = "") -> int:
    """Validate a positive integer parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{hint}, got {value!r}")
    return int(value)


def check_dtype(dtype: Any) -> np.dtype:
    """Validate a model dtype: float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_stack(X: Any, name: str) -> np.ndarray:
    """Validate an image stack ``(n, H, W)`` or ``(n, H, W, C)``; return it as 4-D."""
    X = np.asarray(X)
    if X.dtype.kind not in "uif":
        raise ValueError(
            f"{name} must hold real numbers (uint8/uint16 images or floats), got dtype {X.dtype}"
        )
    if X.ndim not in (3, 4):
        raise ValueError(
            f"{name} must have shape (n, H, W) or (n, H, W, C), got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} holds no images (n = 0); give at least one image")
    if X.shape[1] == 0 or X.shape[2] == 0:
        raise ValueError(f"{name} has an empty image size {X.shape[1:3]}")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        bad = np.unique(np.nonzero(~np.isfinite(X))[0])
        raise ValueError(
            f"{name} contains NaN or infinite values (in image(s) {bad[:10].tolist()}); "
            "remove or repair those images"
        )
    return X if X.ndim == 4 else X[..., None]


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


def split_targets(Y: Any, x_shape: tuple[int, ...], name: str = "Y") -> tuple[np.ndarray, tuple, str]:
    """Normalise targets to a 4-D stack per target, ``(m, n, H, W, C)``.

    ``Y`` is one stack shaped like ``X``, a stack with an extra leading target axis
    (``(m, *X.shape)``), or a dict ``{name: stack}``. Returns the stacks, the target names
    and the form (``"single"``, ``"stacked"``, ``"dict"``) so that predictions come back
    in the same form.
    """
    if isinstance(Y, Mapping):
        if not Y:
            raise ValueError(f"{name} is an empty dict; give at least one target stack")
        names = tuple(Y)
        stacks = [_check_like(Y[key], x_shape, f"{name}[{key!r}]") for key in names]
        return np.stack(stacks), names, "dict"
    Y = np.asarray(Y)
    if Y.ndim == len(x_shape) + 1:
        stacks = [_check_like(y, x_shape, f"{name}[{i}]") for i, y in enumerate(Y)]
        if not stacks:
            raise ValueError(f"{name} has no target stacks (its first axis is empty)")
        return np.stack(stacks), tuple(range(len(stacks))), "stacked"
    return _check_like(Y, x_shape, name)[None], (0,), "single"


def _check_like(Y: Any, x_shape: tuple[int, ...], name: str) -> np.ndarray:
    Y4 = check_stack(Y, name)
    if np.shape(Y) != tuple(x_shape):
        raise ValueError(
            f"{name} must have the shape of X {tuple(x_shape)} (one target image per source "
            f"image), got {np.shape(Y)}"
        )
    return Y4
