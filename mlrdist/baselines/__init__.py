"""Baselines of the paper's comparison, with the fit/predict API of MaskedRidge."""

from ._select import TunedRegressor, grid_search, group_kfold
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
    "TunedRegressor",
    "group_kfold",
    "grid_search",
]
