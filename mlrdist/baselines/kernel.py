"""Kernel baseline: kernel ridge regression on flattened images (``n x n`` Gram)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_alpha
from ._local import check_nonneg
from .svd import _Flat

__all__ = ["KERNELS", "KernelRidge"]

KERNELS = ("rbf", "linear")


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d, 0.0)


class KernelRidge(_Flat):
    """Kernel ridge regression from whole images to whole images.

    ``dual = (K + alpha I)^-1 (Y - y_mean)``, ``y_hat(x) = k(x, X_train) dual + y_mean``;
    with ``center_targets=False`` it is exactly ``sklearn.kernel_ridge.KernelRidge``
    (no intercept). Centring the targets (the default) makes a test face far from every
    training face fall back to the mean target face instead of black. Memory ``n^2 + n d``.

    Parameters
    ----------
    alpha : float, default 0.1
    kernel : {"rbf", "linear"}, default "rbf"
        ``exp(-gamma ||x - x'||^2)`` or ``x . x'`` (inputs not centred).
    gamma : float or None, default None
        RBF width; ``None``: ``1 / median`` of the training images' pairwise squared
        distances (the median heuristic; scikit-learn's ``1 / d`` makes the kernel nearly
        constant for images).
    center_targets : bool, default True
    dtype, scaling
        As in :class:`~mlrdist.MaskedRidge`.

    Attributes
    ----------
    dual_coef_ : ndarray, shape (n, m * d_out)
    support_ : ndarray, shape (n, d)
    gamma_ : float or None
    """

    def __init__(
        self, alpha: float = 0.1, kernel: str = "rbf", gamma: float | None = None, *,
        center_targets: bool = True, dtype: Any = np.float64, scaling: str = "unit",
    ) -> None:
        self.alpha = alpha
        self.kernel = kernel
        self.gamma = gamma
        self.center_targets = center_targets
        self.dtype = dtype
        self.scaling = scaling

    def _validate_params(self) -> None:
        check_alpha(self.alpha)
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.gamma is not None and check_nonneg(self.gamma, "gamma") == 0:
            raise ValueError("gamma must be > 0 or None (median heuristic)")

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        if self.kernel == "linear":
            return A @ B.T
        return np.exp(-self.gamma_ * _sq_dists(A, B))

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        _, Yc = self._flat(X, Y)
        if not self.center_targets:
            Yc, self.y_mean_ = Yc + self.y_mean_, np.zeros_like(self.y_mean_)
        self.support_ = X.reshape(X.shape[0], -1).astype(np.float64)
        self.gamma_ = None
        if self.kernel == "rbf":
            self.gamma_ = float(self.gamma) if self.gamma is not None else self._median_gamma()
        K = self._kernel(self.support_, self.support_)
        self.dual_coef_ = np.linalg.solve(K + float(self.alpha) * np.eye(len(K)), Yc)

    def _median_gamma(self) -> float:
        D = _sq_dists(self.support_, self.support_)
        off = D[~np.eye(len(D), dtype=bool)]
        med = float(np.median(off)) if off.size else 0.0
        return 1.0 / med if med > 0 else 1.0

    def _predict(self, X: np.ndarray) -> np.ndarray:
        Kx = self._kernel(X.reshape(X.shape[0], -1).astype(np.float64), self.support_)
        return self._unflat(Kx @ self.dual_coef_, X.dtype)

    @property
    def n_parameters_(self) -> int:
        return int(self.dual_coef_.size + self.support_.size + self.y_mean_.size)
