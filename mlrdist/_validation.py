"""Parameter and input checks shared by the estimators, the configs and the CLI (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "COLOURS",
    "check_alpha",
    "check_choice",
    "check_dtype",
    "check_either",
    "check_layouts",
    "check_number",
    "check_positive_int",
    "check_size",
    "check_stack",
    "split_targets",
]


COLOURS = ("per_channel", "joint")  # colour modes of masked regression


def check_choice(value: Any, name: str, choices: tuple) -> Any:
    """Validate that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_either(value: Any, name: str, first: str, second: str) -> str:
    """Validate that ``value`` is one of two strings."""
    if value not in (first, second):
        raise ValueError(f"{name} must be {first!r} or {second!r}, got {value!r}")
    return value


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


def check_number(value: Any, name: str, low: float, high: float) -> float:
    """Validate a finite number in ``[low, high]``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if isinstance(value, bool) or not np.isfinite(x) or not low <= x <= high:
        raise ValueError(f"{name} must be a number in {low:g}..{high:g}, got {value!r}")
    return x


def check_layouts(layouts: Any) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Validate template layouts ``{n_points: (left-eye indices, right-eye indices)}``."""
    out = {}
    try:
        for n, (left, right) in dict(layouts).items():
            n, left, right = int(n), tuple(int(i) for i in left), tuple(int(i) for i in right)
            if not left or not right or not all(0 <= i < n for i in left + right):
                raise ValueError
            out[n] = (left, right)
    except (TypeError, ValueError):
        raise ValueError("template_layouts must map a point count to two lists of point indices (left eye, "
                         f"right eye), each index below the count, e.g. {{83: [[57, 63], [81, 50]]}}; got {layouts!r}"
                         ) from None
    return out


def check_positive_int(value: Any, name: str, hint: str = "") -> int:
    """Validate a positive integer parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{hint}, got {value!r}")
    return int(value)


def check_size(size: Any) -> int | tuple[int, int]:
    """Validate an image size: an int or (H, W), each side in 32..1024 pixels."""
    try:
        sides = (int(size),) * 2 if isinstance(size, int | np.integer) else tuple(int(s) for s in size)
    except (TypeError, ValueError):
        sides = ()
    if isinstance(size, bool) or len(sides) != 2 or not all(32 <= s <= 1024 for s in sides):
        raise ValueError(f"size must be an int or (H, W), each in 32..1024, got {size!r}")
    return int(size) if isinstance(size, int | np.integer) else sides


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
