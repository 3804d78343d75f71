"""SVD-based baselines: reduced-rank ridge regression and PCA (principal-component) regression.

Both work on flattened images (``d = H*W*C`` inputs, ``q = m*d`` outputs for ``m`` targets)
with an **unpenalised** intercept (inputs and targets centred over the training samples),
and both only ever form ``n x n`` or ``n x d`` matrices, never ``d x d``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._base import ImageRegressor
from .._validation import check_alpha, check_positive_int

__all__ = ["PCARegression", "ReducedRankRidge"]


class _Flat(ImageRegressor):
    """Shared flattening, centring and output formatting."""

    def _flat(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = X.shape[0]
        self._m, self._out_shape = Y.shape[0], Y.shape[2:]
        Xf = X.reshape(n, -1).astype(np.float64)
        Yf = Y.transpose(1, 0, 2, 3, 4).reshape(n, -1).astype(np.float64)
        self.x_mean_, self.y_mean_ = Xf.mean(axis=0), Yf.mean(axis=0)
        return Xf - self.x_mean_, Yf - self.y_mean_

    def _unflat(self, P: np.ndarray, dtype: np.dtype) -> np.ndarray:
        P = (P + self.y_mean_).astype(dtype)
        if self._clip_range is not None:
            np.clip(P, *self._clip_range, out=P)
        return P.reshape(P.shape[0], self._m, *self._out_shape).transpose(1, 0, 2, 3, 4)


class ReducedRankRidge(_Flat):
    """Reduced-rank ridge regression (Mukherjee & Zhu, 2011).

    Fit ridge ``B = (Xc^T Xc + alpha I)^-1 Xc^T Yc`` (in the dual, ``B = Xc^T D`` with
    ``D = (Xc Xc^T + alpha I)^-1 Yc``), then project onto the top-``rank`` right singular
    vectors ``V_r`` of the fitted values ``Xc B``: ``B_r = B V_r V_r^T``. Predictions
    ``(x - x_mean) Xc^T D V_r V_r^T + y_mean``; cost ``O(n^2 (d + q))``.

    Parameters
    ----------
    rank : int, default 10
        Rank of the coefficient matrix (at most ``n - 1`` is useful after centring).
    alpha : float, default 0.4
        Ridge penalty on the weights (not on the intercept).
    dtype, scaling
        As in :class:`~mlrdist.MaskedRidge`.

    Attributes
    ----------
    support_ : ndarray, shape (n, d)
        Centred training inputs.
    dual_coef_ : ndarray, shape (n, r)
        ``D V_r``.
    components_ : ndarray, shape (r, q)
        ``V_r^T``.
    """

    def __init__(self, rank: int = 10, alpha: float = 0.4, *, dtype: Any = np.float64, scaling: str = "unit") -> None:
        self.rank = rank
        self.alpha = alpha
        self.dtype = dtype
        self.scaling = scaling

    def _validate_params(self) -> None:
        check_positive_int(self.rank, "rank")
        check_alpha(self.alpha)

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        Xc, Yc = self._flat(X, Y)
        K = Xc @ Xc.T
        D = np.linalg.solve(K + float(self.alpha) * np.eye(len(K)), Yc)
        _, _, Vt = np.linalg.svd(K @ D, full_matrices=False)
        self.components_ = Vt[: int(self.rank)]
        self.dual_coef_ = D @ self.components_.T
        self.support_ = Xc

    def _predict(self, X: np.ndarray) -> np.ndarray:
        Kx = (X.reshape(X.shape[0], -1) - self.x_mean_) @ self.support_.T
        return self._unflat(Kx @ self.dual_coef_ @ self.components_, X.dtype)

    @property
    def coef_(self) -> np.ndarray:
        """Primal weights ``(d, q)`` (formed on access; can be large)."""
        return self.support_.T @ self.dual_coef_ @ self.components_

    @property
    def n_parameters_(self) -> int:
        """Factorised size: ``r (d + q) + d + q`` (low-rank weights, means)."""
        r, q = self.components_.shape
        d = self.support_.shape[1]
        return int(r * (d + q) + d + q)


class PCARegression(_Flat):
    """Principal-component regression: PCA of the inputs, ridge on the scores.

    Equals ``make_pipeline(PCA(n_components), Ridge(alpha))`` of scikit-learn (no
    whitening; the ridge intercept unpenalised) on flattened images.

    Parameters
    ----------
    n_components : int, default 20
        Leading principal components of the training inputs (at most ``n - 1`` are
        informative).
    alpha : float, default 0.4
        Ridge penalty on the score weights.
    dtype, scaling
        As in :class:`~mlrdist.MaskedRidge`.

    Attributes
    ----------
    components_ : ndarray, shape (q_c, d)
    coef_ : ndarray, shape (q_c, m * d_out)
    """

    def __init__(
        self, n_components: int = 20, alpha: float = 0.4, *, dtype: Any = np.float64, scaling: str = "unit"
    ) -> None:
        self.n_components = n_components
        self.alpha = alpha
        self.dtype = dtype
        self.scaling = scaling

    def _validate_params(self) -> None:
        check_positive_int(self.n_components, "n_components")
        check_alpha(self.alpha)

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        Xc, Yc = self._flat(X, Y)
        _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
        self.components_ = Vt[: int(self.n_components)]
        Z = Xc @ self.components_.T
        G = Z.T @ Z + float(self.alpha) * np.eye(Z.shape[1])
        self.coef_ = np.linalg.solve(G, Z.T @ Yc)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        Z = (X.reshape(X.shape[0], -1) - self.x_mean_) @ self.components_.T
        return self._unflat(Z @ self.coef_, X.dtype)

    @property
    def n_parameters_(self) -> int:
        return int(self.components_.size + self.coef_.size + self.x_mean_.size + self.y_mean_.size)
