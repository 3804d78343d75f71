"""Model selection: subject-disjoint folds, grid search, and MR's ``alpha`` and ``k``.

* :func:`group_kfold`, :func:`grid_search`, :class:`TunedRegressor` -- any image regressor,
  scored on held-out subjects (nested cross-validation inside :func:`mlrdist.evaluate.evaluate`).
* :func:`select_hyperparameters` -- masked regression's penalty ``alpha`` by closed-form
  leave-one-out error over a grid, one eigendecomposition per pixel
  (:func:`mlrdist.kernels.loo.loo_errors`), and its receptive field ``k`` by scoring the
  model with its best ``alpha`` on held-out subjects. Both are evaluated on a regular grid
  of at most ``max_pixels`` pixels, exactly for those pixels.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._validation import check_alpha, check_stack, split_targets
from .kernels.loo import gather_windows, loo_errors
from .kernels.windows import check_receptive_field, pad_samples_last
from .scaling import scale_images

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_RECEPTIVE_FIELDS",
    "Selection",
    "TunedRegressor",
    "clone",
    "grid_search",
    "group_kfold",
    "select_hyperparameters",
]

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
    progress: bool = False,
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
    progress : bool
        Show a progress bar over the candidates (with the best so far).
    """
    from tqdm import tqdm

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
    bar = tqdm(ks, desc="choosing k and alpha", unit="k", disable=not progress, file=sys.stderr)
    for k in bar:
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
        best_so_far = min(scores, key=lambda s: s["holdout_mse"])
        bar.set_postfix(k=best_so_far["receptive_field"], alpha=best_so_far["alpha"], refresh=False)
    chosen = min(scores, key=lambda s: s["holdout_mse"])
    return Selection(
        receptive_field=chosen["receptive_field"], alpha=chosen["alpha"], alphas=alphas,
        scores=scores, n_train=len(train), n_holdout=len(test), n_pixels=len(ys),
    )


# --------------------------------------------------------------------------- any regressor


def clone(estimator: Any, **params: Any) -> Any:
    """A fresh, unfitted copy of ``estimator`` with ``params`` overridden."""
    return type(estimator)(**{**estimator.get_params(), **params})


def group_kfold(groups: Sequence, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split sample indices into ``folds`` subject-disjoint (train, test) pairs.

    Parameters
    ----------
    groups : sequence, length n
        Subject of each sample; all samples of a subject land in the same test fold.
    folds : int
        ``2 <= folds <= number of subjects``.
    seed : int
        Shuffles the subjects before dealing them round-robin into folds.

    Returns
    -------
    list of (train_idx, test_idx) int arrays
    """
    groups = np.asarray([str(g) for g in groups])
    subjects = np.unique(groups)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= len(subjects):
        raise ValueError(f"folds must be an integer in 2..{len(subjects)} (the number of subjects), got {folds!r}")
    order = np.random.default_rng(seed).permutation(subjects)
    out = []
    for f in range(folds):
        test = np.isin(groups, order[f::folds])
        out.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return out


def take(Y: Any, idx: np.ndarray, x_ndim: int) -> Any:
    """Samples ``idx`` of a target in any accepted form (stack, stacked, dict)."""
    if isinstance(Y, Mapping):
        return {k: np.asarray(v)[idx] for k, v in Y.items()}
    Y = np.asarray(Y)
    return Y[:, idx] if Y.ndim == x_ndim + 1 else Y[idx]


def held_out_mse(estimator: Any, X: np.ndarray, Y: Any, train: np.ndarray, test: np.ndarray) -> float:
    """Fit on ``train``, mean squared error on ``test`` in the estimator's scaled units."""
    estimator.fit(X[train], take(Y, train, X.ndim))
    Xt = X[test]
    Ys, _, _ = split_targets(take(Y, test, X.ndim), Xt.shape)
    truth = np.stack([scale_images(check_stack(y, "Y"), estimator.scaling, np.float64) for y in Ys])
    pred = estimator.predict(Xt)
    P, _, _ = split_targets(pred, Xt.shape)
    return float(np.mean((P.astype(np.float64) - truth) ** 2))


def grid_search(
    estimator: Any, grid: Mapping[str, Sequence], X: Any, Y: Any, groups: Sequence, folds: int = 3,
    *, seed: int = 0,
) -> tuple[dict, list[dict]]:
    """Grid search by subject-disjoint K-fold cross-validation (mean held-out MSE).

    Parameters
    ----------
    estimator : ImageRegressor
        Template; never fitted itself.
    grid : dict of str -> sequence
        Parameter values; every combination is tried.
    X : array, shape (n, H, W[, C])
    Y : targets in any form the estimator accepts
    groups : sequence, length n
        Subject of each sample.
    folds : int, default 3

    Returns
    -------
    best : dict
        Best parameter combination.
    scores : list of dict
        ``{"params": ..., "mse": mean, "mse_std": std}`` per combination, in grid order.
    """
    X = np.asarray(X)
    splits = group_kfold(groups, folds, seed)
    keys = list(grid)
    scores = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        errs = [held_out_mse(clone(estimator, **params), X, Y, tr, te) for tr, te in splits]
        scores.append({"params": params, "mse": float(np.mean(errs)), "mse_std": float(np.std(errs))})
    best = min(scores, key=lambda s: s["mse"])["params"]
    return best, scores


class TunedRegressor:
    """Meta-estimator: grid search on its own training data, then refit the best.

    Inside :func:`mlrdist.evaluate.evaluate` this gives nested cross-validation (the
    hyper-parameters never see the outer test subjects). The inner folds treat every
    training pair as its own subject, which is right when each subject contributes one
    pair (as :func:`mlrdist.datasets.pairs` returns).

    Parameters
    ----------
    estimator : ImageRegressor
    grid : dict of str -> sequence
    folds : int, default 3
    seed : int, default 0

    Attributes
    ----------
    best_params_ : dict
    best_estimator_ : ImageRegressor
    cv_scores_ : list of dict
    """

    def __init__(self, estimator: Any, grid: Mapping[str, Sequence], folds: int = 3, seed: int = 0) -> None:
        self.estimator = estimator
        self.grid = grid
        self.folds = folds
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"estimator": self.estimator, "grid": self.grid, "folds": self.folds, "seed": self.seed}

    @property
    def scaling(self) -> str:
        return self.estimator.scaling

    def fit(self, X: Any, Y: Any) -> TunedRegressor:
        X = np.asarray(X)
        self.best_params_, self.cv_scores_ = grid_search(
            self.estimator, self.grid, X, Y, list(range(len(X))), self.folds, seed=self.seed
        )
        self.best_estimator_ = clone(self.estimator, **self.best_params_).fit(X, Y)
        return self

    def predict(self, X: Any) -> Any:
        return self.best_estimator_.predict(X)

    def __repr__(self) -> str:
        return f"TunedRegressor({self.estimator!r}, grid={dict(self.grid)!r}, folds={self.folds})"
