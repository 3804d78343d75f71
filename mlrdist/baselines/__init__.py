"""Baselines of the paper's comparison, with the fit/predict API of MaskedRidge."""

from .l2 import FullRidge

__all__ = ["FullRidge"]
