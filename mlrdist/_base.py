"""scikit-learn conventions without a scikit-learn dependency."""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np

from ._validation import check_dtype, check_stack, split_targets
from .scaling import SCALINGS, scale_images

__all__ = ["ImageRegressor", "resolve_n_jobs"]


def resolve_n_jobs(n_jobs: int | None) -> int:
    """``None`` or ``-1``: all cores; a positive int: that many threads."""
    if n_jobs is None or n_jobs == -1:
        return os.cpu_count() or 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise ValueError(f"n_jobs must be None, -1 or a positive integer, got {n_jobs!r}")
    return int(n_jobs)


class ImageRegressor:
    """Base of the image-to-image regressors: parameters, scaling and target forms.

    Subclasses implement ``_fit(X, Y)`` on scaled arrays ``X (n, H, W, C)``,
    ``Y (m, n, H, W, C)`` and ``_predict(X) -> (m, n, H, W, C)``; predictions are
    clipped to ``[0, 1]`` unless ``scaling="none"`` (``_clip_range``).
    """

    scaling: str
    dtype: Any

    # -- parameters (the scikit-learn protocol) ------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> ImageRegressor:
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid: {valid}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __sklearn_tags__(self):
        """scikit-learn's estimator tags (for its tools and checks; imported only when asked):
        a multi-output regressor of image stacks, ``X`` 3-D or 4-D and ``y`` shaped like ``X``."""
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type="regressor",
            target_tags=TargetTags(required=True, multi_output=True, single_output=False),
            input_tags=InputTags(two_d_array=False, three_d_array=True),
            regressor_tags=RegressorTags(),
        )

    # -- data handling --------------------------------------------------------------------
    def _check_scaling(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")

    def _prepare(self, X: Any, Y: Any, dtype: np.dtype):
        self._check_scaling()
        X = np.asarray(X)
        X4 = check_stack(X, "X")
        Ys, names, form = split_targets(Y, X.shape)
        Xs = scale_images(X4, self.scaling, dtype)
        Ys = np.stack([scale_images(y, self.scaling, dtype) for y in Ys])
        self.n_features_in_ = int(np.prod(X4.shape[1:]))
        self.image_shape_ = X4.shape[1:]
        self.targets_ = names
        self._form = (form, X.ndim)
        return Xs, Ys

    def _prepare_X(self, X: Any, dtype: np.dtype) -> np.ndarray:
        if not hasattr(self, "image_shape_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(X, Y) first")
        X = np.asarray(X)
        X4 = check_stack(X, "X")
        if X4.shape[1:] != self.image_shape_:
            raise ValueError(
                f"X images must have the fitted shape {self.image_shape_} (H, W, C), "
                f"got {X4.shape[1:]}; resize or re-align them first"
            )
        return scale_images(X4, self.scaling, dtype)

    def _format(self, P: np.ndarray) -> Any:
        """``(m, n, H, W, C)`` predictions -> the form of the fitted targets."""
        form, ndim = self._form
        if ndim == 3:
            P = P[..., 0]
        if form == "single":
            return P[0]
        if form == "dict":
            return {name: P[i] for i, name in enumerate(self.targets_)}
        return P

    # -- public API -----------------------------------------------------------------------
    def fit(self, X: Any, Y: Any) -> ImageRegressor:
        """Fit from sources ``X`` to targets ``Y``; see the class docstring for shapes."""
        self._validate_params()
        Xs, Ys = self._prepare(X, Y, self._work_dtype())
        self._fit(Xs, Ys)
        return self

    def predict(self, X: Any) -> Any:
        """Synthesise targets for ``X``; returns the form (and shape) of the fitted ``Y``."""
        return self._format(self._predict(self._prepare_X(X, self._work_dtype())))

    @property
    def _clip_range(self) -> tuple[float, float] | None:
        return None if self.scaling == "none" else (0.0, 1.0)

    def _validate_params(self) -> None:
        """Fail fast on bad hyper-parameters, before any data is touched."""

    def _work_dtype(self) -> np.dtype:
        return check_dtype(getattr(self, "dtype", np.float64))
