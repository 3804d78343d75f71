"""Choosing the penalty ``alpha`` and the receptive field ``k`` (in memory).

``alpha``: closed-form leave-one-out error over a grid, one eigendecomposition per pixel
(:func:`mlrdist.kernels.select.loo_errors`). ``k``: for each candidate, the model with its
best ``alpha`` is scored on held-out subjects. Both are evaluated on a regular grid of at
most ``max_pixels`` pixels, exactly for those pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .kernels.select import gather_windows, loo_errors
from .kernels.windows import check_receptive_field, pad_samples_last
from .preprocess import check_alpha

__all__ = ["DEFAULT_ALPHAS", "DEFAULT_RECEPTIVE_FIELDS", "Selection", "select_hyperparameters"]

DEFAULT_ALPHAS = tuple(float(a) for a in np.round(np.logspace(-2, 2, 9), 6))
DEFAULT_RECEPTIVE_FIELDS = (1, 3, 5, 7, 9, 11, 15)


@dataclass
class Selection:
    """The chosen ``receptive_field`` and ``alpha`` and every score behind the choice."""

    receptive_field: int
    alpha: float
    alphas: list[float]
    scores: list[dict] = field(default_factory=list)  # per k: loo_mse curve, best alpha, holdout_mse
    n_train: int = 0
    n_holdout: int = 0
    n_pixels: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _pixel_grid(H: int, W: int, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    stride = max(1, int(np.ceil(np.sqrt(H * W / max_pixels))))
    ys, xs = np.meshgrid(np.arange(stride // 2, H, stride), np.arange(stride // 2, W, stride), indexing="ij")
    return ys.ravel(), xs.ravel()


def _designs(X, Y, k, colour, ys, xs):
    """Designs (P', p, n) and targets (P', n, R) at the chosen pixels, channels folded in."""
    Spad = pad_samples_last(X, k // 2)
    T = Y[:, :, ys, xs, :]  # (m, n, P, C)
    if colour == "joint":
        At = gather_windows(Spad, k, ys, xs)
        R = T.transpose(2, 1, 0, 3).reshape(len(ys), X.shape[0], -1)
        return At, R
    C = X.shape[-1]
    At = np.concatenate([gather_windows(Spad[:, :, c : c + 1], k, ys, xs) for c in range(C)])
    R = np.concatenate([T[..., c].transpose(2, 1, 0) for c in range(C)])
    return At, R


def select_hyperparameters(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    receptive_fields=DEFAULT_RECEPTIVE_FIELDS,
    alphas=DEFAULT_ALPHAS,
    colour: str = "per_channel",
    holdout: float = 0.2,
    seed: int = 0,
    max_pixels: int = 2048,
) -> Selection:
    """Pick ``alpha`` by leave-one-out and ``k`` on held-out subjects.

    Parameters
    ----------
    X : ndarray, shape (n, H, W, C)
        Scaled sources, one subject per sample.
    Y : ndarray, shape (m, n, H, W, C)
        Scaled targets.
    receptive_fields, alphas : sequences
        Candidates.
    holdout : float
        Fraction of subjects held out to score ``k`` (at least one, and at least two kept).
    """
    ks = [check_receptive_field(k) for k in receptive_fields]
    alphas = [check_alpha(a, "alphas") for a in alphas]
    if not ks or not alphas:
        raise ValueError("receptive_fields and alphas must each hold at least one candidate")
    n = X.shape[0]
    if n < 3:
        raise ValueError(f"hyper-parameter selection needs at least 3 training pairs, got {n}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}")
    order = np.random.default_rng(seed).permutation(n)
    n_out = min(n - 2, max(1, int(round(holdout * n))))
    test, train = np.sort(order[:n_out]), np.sort(order[n_out:])
    ys, xs = _pixel_grid(X.shape[1], X.shape[2], max_pixels)
    scores = []
    for k in ks:
        At, R = _designs(X[train], Y[:, train], k, colour, ys, xs)
        curve = loo_errors(At, R, alphas).mean(axis=(1, 2))
        best = alphas[int(np.argmin(curve))]
        K = np.matmul(At.transpose(0, 2, 1), At)
        K[:, np.arange(len(train)), np.arange(len(train))] += best
        w = np.matmul(At, np.linalg.solve(K, R))  # (P', p, R)
        At_te, R_te = _designs(X[test], Y[:, test], k, colour, ys, xs)
        pred = np.matmul(At_te.transpose(0, 2, 1), w)
        scores.append({
            "receptive_field": k,
            "loo_mse": [float(v) for v in curve],
            "alpha": best,
            "holdout_mse": float(np.mean((pred - R_te) ** 2)),
        })
    chosen = min(scores, key=lambda s: s["holdout_mse"])
    return Selection(
        receptive_field=chosen["receptive_field"], alpha=chosen["alpha"], alphas=alphas,
        scores=scores, n_train=len(train), n_holdout=len(test), n_pixels=len(ys),
    )
