"""l0 baseline: orthogonal matching pursuit per output pixel on its ``k x k`` window.

Each output pixel (and channel, and target) greedily selects ``n_nonzero`` of its ``k*k``
window pixels and least-squares fits them, with an unpenalised intercept (design and
target centred, as ``sklearn.linear_model.OrthogonalMatchingPursuit(fit_intercept=True)``).
The greedy steps run for a whole batch of pixels at once on their Grams (the
``orthogonal_mp_gram`` recursion): selection is an ``argmax`` over ``(batch, m, p)``
correlations and the active-set refit a batched ``np.linalg.solve`` of
``(batch, m, s, s)`` systems. A problem whose residual correlations vanish stops early
(its remaining slots are masked out), like scikit-learn's early exit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._base import ImageRegressor
from .._validation import check_positive_int
from ..kernels.windows import check_receptive_field
from ._local import apply_local, iter_batches, targets_of
from .lasso import _centred_moments

__all__ = ["MaskedOMP", "omp_gram"]


def omp_gram(G: np.ndarray, c: np.ndarray, n_nonzero: int) -> np.ndarray:
    """Batched orthogonal matching pursuit on Grams.

    Parameters
    ----------
    G : ndarray, shape (B, p, p)
        Gram ``A^T A`` of each (centred) design (any common positive scale).
    c : ndarray, shape (B, m, p)
        ``A^T t`` on the same scale.
    n_nonzero : int
        Atoms to select, ``<= p``.

    Returns
    -------
    ndarray, shape (B, m, p)
        Coefficients, at most ``n_nonzero`` non-zero per problem.
    """
    B, m, p = c.shape
    b = np.arange(B)[:, None, None]
    active = np.zeros((B, m, n_nonzero), dtype=np.intp)
    valid = np.zeros((B, m, n_nonzero), dtype=bool)
    gamma = np.zeros((B, m, 0))
    corr = c.copy()
    floor = 1e-12 * np.abs(c).max(axis=2)
    chosen = np.zeros((B, m, p), dtype=bool)
    for t in range(n_nonzero):
        score = np.where(chosen, -1.0, np.abs(corr))
        lam = score.argmax(axis=2)
        ok = np.take_along_axis(score, lam[..., None], axis=2)[..., 0] > floor
        active[..., t], valid[..., t] = lam, ok
        chosen |= (np.arange(p) == lam[..., None]) & ok[..., None]
        act, val = active[..., : t + 1], valid[..., : t + 1]
        GA = G[b[..., None], act[..., :, None], act[..., None, :]]  # (B, m, t+1, t+1)
        both = val[..., :, None] & val[..., None, :]
        eye = np.eye(t + 1, dtype=bool)
        GA = np.where(both, GA, eye)
        rhs = np.where(val, np.take_along_axis(c, act, axis=2), 0.0)
        gamma = np.linalg.solve(GA, rhs[..., None])[..., 0]
        corr = c - np.einsum("bmtp,bmt->bmp", G[b, act], gamma)
    w = np.zeros_like(c)
    for t in range(n_nonzero):
        w += (np.arange(p) == active[..., t, None]) * (gamma[..., t] * valid[..., t])[..., None]
    return w


class MaskedOMP(ImageRegressor):
    """Orthogonal matching pursuit per output pixel (the paper's "l0" baseline, masked).

    Parameters
    ----------
    receptive_field : int, default 3
        Odd window side ``k``.
    n_nonzero : int, default 3
        Window pixels each output pixel may use (``1 <= n_nonzero <= k*k``).
    batch : int, default 4096
        Pixels solved at once.
    dtype, scaling
        As in :class:`~mlrdist.MaskedRidge`; colour per channel.

    Attributes
    ----------
    coef_ : ndarray, shape (m, H, W, C, k*k)
    intercept_ : ndarray, shape (m, H, W, C)
    """

    def __init__(
        self, receptive_field: int = 3, n_nonzero: int = 3, *, batch: int = 4096,
        dtype: Any = np.float64, scaling: str = "unit",
    ) -> None:
        self.receptive_field = receptive_field
        self.n_nonzero = n_nonzero
        self.batch = batch
        self.dtype = dtype
        self.scaling = scaling

    def _validate_params(self) -> None:
        k = check_receptive_field(self.receptive_field)
        s = check_positive_int(self.n_nonzero, "n_nonzero")
        if s > k * k:
            raise ValueError(f"n_nonzero must be at most receptive_field**2 = {k * k}, got {s}")
        check_positive_int(self.batch, "batch")

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        k = int(self.receptive_field)
        m = Y.shape[0]
        coef = np.zeros((m, X[0].size, k * k), dtype=X.dtype)
        intercept = np.zeros((m, X[0].size), dtype=X.dtype)
        for idx, A in iter_batches(X, k, int(self.batch)):
            G, c, a, t = _centred_moments(A.astype(np.float64), targets_of(Y, idx).astype(np.float64))
            w = omp_gram(G, c, int(self.n_nonzero))
            coef[:, idx] = w.transpose(1, 0, 2)
            intercept[:, idx] = (t - np.einsum("bmp,bp->bm", w, a)).T
        self.coef_ = coef.reshape(m, *X.shape[1:], k * k)
        self.intercept_ = intercept.reshape(m, *X.shape[1:])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return apply_local(X, self.coef_, self.intercept_, int(self.receptive_field), int(self.batch), self._clip_range)

    @property
    def n_parameters_(self) -> int:
        m = self.coef_.shape[0]
        return int(np.count_nonzero(self.coef_) + self.intercept_.size) if m else 0
