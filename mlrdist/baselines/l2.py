"""Full (unmasked) ridge regression: the paper's "l2 regression" baseline."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._base import ImageRegressor
from .._validation import check_alpha

__all__ = ["FullRidge"]


class FullRidge(ImageRegressor):
    """Ridge regression from the whole input image to every output pixel.

    Each output value is a ridge regression on *all* ``d = H*W*C`` input values plus a
    bias (penalised like the weights): masked regression with an unbounded receptive
    field and ``colour="joint"``. Solved in the dual, ``c = (X X^T + 1 + alpha I)^-1 Y``,
    which costs ``O(n^2 d)`` and stores ``c`` and the training inputs, ``2 n d`` numbers,
    instead of the ``d x d`` primal weights (2 GB at 128 x 128 grayscale).

    Parameters
    ----------
    alpha : float, default 0.4
        Ridge penalty (> 0).
    dtype : float64 or float32
    scaling : {"unit", "minmax", "none"}

    Attributes
    ----------
    dual_coef_ : ndarray, shape (n, m * d)
    support_ : ndarray, shape (n, d)
        Training inputs (flattened, scaled).
    coef_ : ndarray, shape (m * d, d)
        Primal weights, formed on access (can be large).
    intercept_ : ndarray, shape (m * d,)
    """

    def __init__(self, alpha: float = 0.4, *, dtype: Any = np.float64, scaling: str = "unit") -> None:
        self.alpha = alpha
        self.dtype = dtype
        self.scaling = scaling

    def _validate_params(self) -> None:
        check_alpha(self.alpha)

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        n = X.shape[0]
        self._out_shape = Y.shape[2:]
        self._m = Y.shape[0]
        Xf = X.reshape(n, -1)
        Yf = Y.transpose(1, 0, 2, 3, 4).reshape(n, -1)  # (n, m * d_out)
        K = Xf @ Xf.T
        K += 1.0
        K[np.diag_indices(n)] += float(self.alpha)
        self.dual_coef_ = np.linalg.solve(K.astype(np.float64), Yf.astype(np.float64)).astype(X.dtype)
        self.support_ = Xf

    def _predict(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        Kx = X.reshape(n, -1) @ self.support_.T + 1.0
        P = Kx @ self.dual_coef_  # (n, m * d_out)
        if self._clip_range is not None:
            np.clip(P, *self._clip_range, out=P)
        return P.reshape(n, self._m, *self._out_shape).transpose(1, 0, 2, 3, 4)

    @property
    def coef_(self) -> np.ndarray:
        return (self.support_.T @ self.dual_coef_).T

    @property
    def intercept_(self) -> np.ndarray:
        return self.dual_coef_.sum(axis=0)
