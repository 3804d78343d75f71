"""l1 baselines: the lasso per output pixel (masked) and over the whole image.

Both minimise scikit-learn's lasso objective per output value ``t``:

    (1 / (2 n)) ||t - A w - b||^2 + alpha ||w||_1

with an **unpenalised** intercept ``b`` (design and target centred over the samples, as
``sklearn.linear_model.Lasso(fit_intercept=True)`` does). This differs from MaskedRidge,
whose bias is penalised: with an l1 penalty a penalised bias would be shrunk to zero and
the model would have to rebuild the mean face from sparse weights, which is not a useful
baseline. ``alpha`` is therefore on scikit-learn's per-sample scale, not MaskedRidge's.

The solver is covariance-form coordinate descent (cyclic, like scikit-learn's
``enet_coordinate_descent_gram``) vectorised over a batch of problems: every pixel (and
target) updates coordinate ``j`` at the same time, so a sweep is ``p`` NumPy operations
on ``(batch, m, p)`` arrays instead of a Python loop per pixel. It stops after
``max_iter`` sweeps or once every problem's largest coordinate change in a sweep is at most
``tol`` times its largest weight (scikit-learn's first-stage criterion; it does not
compute the duality gap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._base import ImageRegressor
from .._validation import check_positive_int
from ..kernels.windows import check_receptive_field
from ._local import apply_local, check_nonneg, iter_batches, targets_of

__all__ = ["FullLasso", "MaskedLasso", "lasso_cd_gram"]

_GIB = 2.0**30


def lasso_cd_gram(
    G: np.ndarray, c: np.ndarray, alpha: float, *, max_iter: int = 200, tol: float = 1e-4
) -> tuple[np.ndarray, int]:
    """Batched lasso by coordinate descent on Grams.

    Parameters
    ----------
    G : ndarray, shape (B, p, p)
        ``A^T A / n`` of each (centred) design.
    c : ndarray, shape (B, m, p)
        ``A^T t / n`` for ``m`` targets sharing the design.
    alpha : float
        l1 penalty (scikit-learn scale).
    max_iter, tol : int, float
        Sweep limit; stop when ``max_j |dw_j| <= tol * max_j |w_j|`` for every problem.

    Returns
    -------
    w : ndarray, shape (B, m, p)
    n_iter : int
        Sweeps run.
    """
    B, m, p = c.shape
    w = np.zeros_like(c)
    q = np.zeros_like(c)  # G @ w, kept up to date
    diag = np.einsum("bjj->bj", G)
    safe = np.where(diag > 0, diag, 1.0)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - reported
        dmax = np.zeros((B, m), dtype=c.dtype)
        for j in range(p):
            wj = w[:, :, j]
            rho = c[:, :, j] - q[:, :, j] + diag[:, None, j] * wj
            new = np.sign(rho) * np.maximum(np.abs(rho) - alpha, 0.0) / safe[:, None, j]
            new[diag[:, j] <= 0] = 0.0  # an all-zero (padding) feature keeps a zero weight
            delta = new - wj
            if np.any(delta):
                q += delta[:, :, None] * G[:, None, j, :]
                w[:, :, j] = new
            np.maximum(dmax, np.abs(delta), out=dmax)
        if np.all(dmax <= tol * np.abs(w).max(axis=2)):
            break
    return w, n_iter


def _centred_moments(A: np.ndarray, T: np.ndarray):
    """Centred Grams and cross-moments of a batch.

    ``A (B, n, p)``, ``T (B, m, n)`` -> ``G (B, p, p)``, ``c (B, m, p)``, means
    ``a (B, p)``, ``t (B, m)``.
    """
    n = A.shape[1]
    a = A.mean(axis=1)
    t = T.mean(axis=2)
    Ac = A - a[:, None, :]
    Tc = T - t[:, :, None]
    G = np.einsum("bnp,bnq->bpq", Ac, Ac) / n
    c = np.einsum("bmn,bnp->bmp", Tc, Ac) / n
    return G, c, a, t


class MaskedLasso(ImageRegressor):
    """Lasso per output pixel on its ``k x k`` input window (the paper's "l1" masked).

    Parameters
    ----------
    receptive_field : int, default 3
        Odd window side ``k``.
    alpha : float, default 1e-4
        l1 penalty on scikit-learn's scale (loss divided by ``2 n``); intercept
        unpenalised (see the module docstring).
    max_iter : int, default 200
        Coordinate-descent sweeps at most.
    tol : float, default 1e-4
        Relative stopping tolerance on the coordinate updates.
    batch : int, default 4096
        Pixels (problems) solved at once; memory ~ ``batch * (n + p + m) * p * 8`` bytes.
    dtype, scaling
        As in :class:`~mlrdist.MaskedRidge`. Colour is per channel (the paper's).

    Attributes
    ----------
    coef_ : ndarray, shape (m, H, W, C, k*k)
    intercept_ : ndarray, shape (m, H, W, C)
    n_iter_ : int
        Most sweeps any batch needed.
    """

    def __init__(
        self, receptive_field: int = 3, alpha: float = 1e-4, *, max_iter: int = 200,
        tol: float = 1e-4, batch: int = 4096, dtype: Any = np.float64, scaling: str = "unit",
    ) -> None:
        self.receptive_field = receptive_field
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.batch = batch
        self.dtype = dtype
        self.scaling = scaling

    def _validate_params(self) -> None:
        check_receptive_field(self.receptive_field)
        check_nonneg(self.alpha, "alpha")
        check_nonneg(self.tol, "tol")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_int(self.batch, "batch")

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        k = int(self.receptive_field)
        m = Y.shape[0]
        coef = np.zeros((m, X[0].size, k * k), dtype=X.dtype)
        intercept = np.zeros((m, X[0].size), dtype=X.dtype)
        self.n_iter_ = 0
        for idx, A in iter_batches(X, k, int(self.batch)):
            G, c, a, t = _centred_moments(A.astype(np.float64), targets_of(Y, idx).astype(np.float64))
            w, it = lasso_cd_gram(G, c, float(self.alpha), max_iter=int(self.max_iter), tol=float(self.tol))
            self.n_iter_ = max(self.n_iter_, it)
            coef[:, idx] = w.transpose(1, 0, 2)
            intercept[:, idx] = (t - np.einsum("bmp,bp->bm", w, a)).T
        self.coef_ = coef.reshape(m, *X.shape[1:], k * k)
        self.intercept_ = intercept.reshape(m, *X.shape[1:])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return apply_local(X, self.coef_, self.intercept_, int(self.receptive_field), int(self.batch), self._clip_range)

    @property
    def n_parameters_(self) -> int:
        """Non-zero weights plus intercepts."""
        return int(np.count_nonzero(self.coef_) + self.intercept_.size)


class FullLasso(ImageRegressor):
    """Lasso from the whole input image to every output pixel (the paper's "l1" baseline).

    Two forms:

    * ``n_components=None``: exact lasso over all ``d = H*W*C`` input pixels, by
      coordinate descent on the shared ``d x d`` Gram. Memory ``(d^2 + 3 d d_out) * 8``
      bytes and ``d^2 d_out`` flops per sweep: feasible up to about 32 x 32 grayscale
      (``d = 1024``: 32 MiB, ~1 s per sweep). Larger inputs are refused (``max_features``)
      with the memory they would need.
    * ``n_components=q``: lasso on the ``q`` leading principal-component scores of the
      inputs (PCA fitted on the training inputs). The scores are orthogonal, so the lasso
      is a soft-thresholding of principal-component regression coefficients; feasible at
      any image size (``O(n d q)``).

    Parameters
    ----------
    alpha : float, default 1e-4
        l1 penalty on scikit-learn's scale; intercept unpenalised.
    n_components : int or None, default 64
        Principal components kept (at most ``n - 1`` are informative); ``None``: exact.
    max_iter, tol : int, float
        Coordinate-descent limits (as :class:`MaskedLasso`).
    max_features : int, default 1024
        Largest ``d`` the exact form accepts.
    dtype, scaling
        As in :class:`~mlrdist.MaskedRidge`.

    Attributes
    ----------
    components_ : ndarray, shape (q, d) or None
    mean_ : ndarray, shape (d,)
    coef_ : ndarray, shape (q or d, m * d_out)
        Lasso weights on the scores (or on the pixels).
    intercept_ : ndarray, shape (m * d_out,)
    """

    def __init__(
        self, alpha: float = 1e-4, *, n_components: int | None = 64, max_iter: int = 200,
        tol: float = 1e-4, max_features: int = 1024, dtype: Any = np.float64, scaling: str = "unit",
    ) -> None:
        self.alpha = alpha
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.max_features = max_features
        self.dtype = dtype
        self.scaling = scaling

    def _validate_params(self) -> None:
        check_nonneg(self.alpha, "alpha")
        check_nonneg(self.tol, "tol")
        check_positive_int(self.max_iter, "max_iter")
        check_positive_int(self.max_features, "max_features")
        if self.n_components is not None:
            check_positive_int(self.n_components, "n_components", " or None (exact)")

    def _check_exact(self, d: int, d_out: int) -> None:
        if d > int(self.max_features):
            need = (d * d + 3 * d * d_out) * 8
            raise ValueError(
                f"FullLasso(n_components=None) on {d} input features needs {need / _GIB:.1f} GiB "
                f"for the {d}x{d} Gram and the weights and ~{d * d * d_out:.1e} flops per sweep; "
                f"refused above max_features={self.max_features}. Use n_components=q (lasso on "
                "principal-component scores) or smaller images"
            )

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        n = X.shape[0]
        self._m, self._out_shape = Y.shape[0], Y.shape[2:]
        Xf = X.reshape(n, -1).astype(np.float64)
        Yf = Y.transpose(1, 0, 2, 3, 4).reshape(n, -1).astype(np.float64)
        self.mean_ = Xf.mean(axis=0)
        Xc = Xf - self.mean_
        if self.n_components is None:
            self._check_exact(Xf.shape[1], Yf.shape[1])
            self.components_ = None
            Z = Xc
        else:
            _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
            self.components_ = Vt[: int(self.n_components)]
            Z = Xc @ self.components_.T
        ymean = Yf.mean(axis=0)
        G = (Z.T @ Z / n)[None]
        c = ((Yf - ymean).T @ Z / n)[None]
        w, self.n_iter_ = lasso_cd_gram(G, c, float(self.alpha), max_iter=int(self.max_iter), tol=float(self.tol))
        self.coef_ = w[0].T.astype(X.dtype)  # (q, m * d_out)
        self.intercept_ = ymean.astype(X.dtype)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        n = X.shape[0]
        Z = X.reshape(n, -1) - self.mean_
        if self.components_ is not None:
            Z = Z @ self.components_.T
        P = (Z @ self.coef_ + self.intercept_).astype(X.dtype)
        if self._clip_range is not None:
            np.clip(P, *self._clip_range, out=P)
        return P.reshape(n, self._m, *self._out_shape).transpose(1, 0, 2, 3, 4)

    @property
    def n_parameters_(self) -> int:
        """Non-zero weights, intercepts, input mean and principal axes."""
        extra = 0 if self.components_ is None else self.components_.size
        return int(np.count_nonzero(self.coef_) + self.intercept_.size + self.mean_.size + extra)
