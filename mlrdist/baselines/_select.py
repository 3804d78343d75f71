"""Subject-disjoint folds and grid search of any image regressor on held-out subjects."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..preprocess import check_stack, scale_images, split_targets

__all__ = ["TunedRegressor", "clone", "group_kfold", "grid_search"]


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
