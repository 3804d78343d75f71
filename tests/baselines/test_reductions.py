"""Special cases where methods of the comparison coincide."""

import numpy as np

from mlrdist import FullRidge, MaskedRidge
from mlrdist.baselines import MaskedLasso, MaskedOMP

from ._data import pairs


def test_masked_ridge_with_whole_image_window_is_full_ridge():
    X, Y = pairs(n=15, h=5, w=5)
    Xt, _ = pairs(n=4, h=5, w=5, seed=3)
    mr = MaskedRidge(9, 0.4, scaling="none").fit(X, Y)  # 9 = 2 * 5 - 1: every pixel sees all
    l2 = FullRidge(0.4, scaling="none").fit(X, Y)
    np.testing.assert_allclose(mr.predict(Xt), l2.predict(Xt), atol=1e-9)


def test_full_omp_and_unpenalised_lasso_are_least_squares():
    X, Y = pairs(n=40)
    omp = MaskedOMP(3, 9, scaling="none").fit(X, Y)
    lasso = MaskedLasso(3, 0.0, max_iter=20000, tol=1e-13, scaling="none").fit(X, Y)
    np.testing.assert_allclose(omp.coef_, lasso.coef_, atol=1e-6)
    np.testing.assert_allclose(omp.intercept_, lasso.intercept_, atol=1e-6)
