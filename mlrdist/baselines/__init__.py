"""Baselines of the paper's comparison, with the fit/predict API of MaskedRidge.

Model selection for any of them (folds, grid search, :class:`~mlrdist.select.TunedRegressor`)
lives in :mod:`mlrdist.select`.
"""

from .kernel import KernelRidge
from .l2 import FullRidge
from .lasso import FullLasso, MaskedLasso
from .omp import MaskedOMP
from .svd import PCARegression, ReducedRankRidge

__all__ = [
    "FullLasso",
    "FullRidge",
    "KernelRidge",
    "MaskedLasso",
    "MaskedOMP",
    "PCARegression",
    "ReducedRankRidge",
]
