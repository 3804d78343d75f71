"""Closed-form leave-one-out against scikit-learn's RidgeCV and brute-force refits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV

from mlrdist.kernels.loo import gather_windows, loo_errors
from mlrdist.kernels.windows import extract_windows, pad_samples_last
from mlrdist.select import select_hyperparameters

ALPHAS = [0.01, 0.1, 0.4, 2.0, 10.0]


def test_loo_matches_ridgecv_and_refits():
    rng = np.random.default_rng(0)
    n, p = 15, 6
    A = np.c_[rng.random((n, p - 1)), np.ones(n)]
    y = rng.random(n)
    got = loo_errors(A.T[None], y[None, :, None], ALPHAS)[:, 0, 0]
    cv = RidgeCV(alphas=ALPHAS, fit_intercept=False, store_cv_results=True).fit(A, y)
    np.testing.assert_allclose(got, cv.cv_results_.mean(axis=0), rtol=1e-9)
    brute = [
        np.mean([(y[i] - Ridge(alpha=a, fit_intercept=False).fit(np.delete(A, i, 0), np.delete(y, i)).predict(A[i:i + 1])[0]) ** 2 for i in range(n)])
        for a in ALPHAS
    ]
    np.testing.assert_allclose(got, brute, rtol=1e-9)


def test_gather_windows_equals_extract():
    rng = np.random.default_rng(1)
    X = rng.random((4, 5, 6, 2))
    S = pad_samples_last(X, 1)
    ys, xs = np.divmod(np.arange(30), 6)
    At = gather_windows(S, 3, ys, xs, bias=False)
    np.testing.assert_array_equal(At, extract_windows(S, 3))


def test_selection_prefers_the_generating_receptive_field():
    rng = np.random.default_rng(2)
    n, H, W = 40, 12, 12
    X = rng.random((n, H, W, 1))
    # targets made by a 3x3 local linear map plus noise: k = 3 should win over k = 1
    Xp = np.pad(X[..., 0], ((0, 0), (1, 1), (1, 1)))
    Y = sum(Xp[:, dy : dy + H, dx : dx + W] * w for (dy, dx), w in zip([(0, 0), (1, 1), (2, 2)], [0.3, 0.4, 0.3], strict=True))
    Y = (Y + 0.01 * rng.standard_normal(Y.shape))[None, ..., None]
    sel = select_hyperparameters(X, Y, receptive_fields=(1, 3), alphas=ALPHAS, max_pixels=64)
    assert sel.receptive_field == 3
    assert len(sel.scores) == 2 and len(sel.scores[0]["loo_mse"]) == len(ALPHAS)
    assert sel.n_train + sel.n_holdout == n


def test_selection_errors():
    X = np.zeros((2, 4, 4, 1))
    with pytest.raises(ValueError, match="at least 3 training pairs"):
        select_hyperparameters(X, X[None])
    with pytest.raises(ValueError, match="receptive_field must be an odd integer"):
        select_hyperparameters(np.zeros((5, 4, 4, 1)), np.zeros((1, 5, 4, 4, 1)), receptive_fields=(2,))
