import numpy as np
import pytest

from mlrdist.baselines.lasso import FullLasso, MaskedLasso

from ._data import pairs, window_design

sklearn = pytest.importorskip("sklearn.linear_model")


@pytest.mark.parametrize("k,alpha", [(3, 1e-3), (5, 2e-3)])
def test_masked_lasso_matches_sklearn_per_pixel(k, alpha):
    X, Y = pairs()
    est = MaskedLasso(k, alpha, max_iter=5000, tol=1e-12, scaling="none").fit(X, Y)
    for y, x in [(0, 0), (4, 5), (9, 8), (3, 0)]:
        A = window_design(X, k, y, x)
        ref = sklearn.Lasso(alpha=alpha, fit_intercept=True, tol=1e-14, max_iter=100000).fit(A, Y[:, y, x])
        np.testing.assert_allclose(est.coef_[0, y, x, 0], ref.coef_, atol=1e-7)
        np.testing.assert_allclose(est.intercept_[0, y, x, 0], ref.intercept_, atol=1e-7)
    P = est.predict(X)
    A = window_design(X, k, 4, 5)
    np.testing.assert_allclose(P[:, 4, 5], A @ est.coef_[0, 4, 5, 0] + est.intercept_[0, 4, 5, 0], atol=1e-12)


def test_masked_lasso_multi_target_and_colour():
    X, Y = pairs(c=2)
    both = MaskedLasso(3, 1e-3, scaling="none").fit(X, {"a": Y, "b": 1 - Y})
    one = MaskedLasso(3, 1e-3, scaling="none").fit(X, 1 - Y)
    np.testing.assert_allclose(both.coef_[1], one.coef_[0], atol=1e-12)
    assert set(both.predict(X)) == {"a", "b"}
    assert both.coef_.shape == (2, 10, 9, 2, 9)


def test_large_alpha_gives_mean_image():
    X, Y = pairs()
    est = MaskedLasso(3, 10.0, scaling="none").fit(X, Y)
    assert not est.coef_.any()
    np.testing.assert_allclose(est.predict(X[:2]), np.broadcast_to(Y.mean(0), (2, 10, 9)), atol=1e-12)


def test_full_lasso_exact_matches_sklearn():
    X, Y = pairs(n=16, h=5, w=4)
    est = FullLasso(2e-3, n_components=None, max_iter=5000, tol=1e-12, scaling="none").fit(X, Y)
    A = X.reshape(16, -1)
    for j in (0, 7, 19):
        ref = sklearn.Lasso(alpha=2e-3, tol=1e-14, max_iter=100000).fit(A, Y.reshape(16, -1)[:, j])
        np.testing.assert_allclose(est.coef_[:, j], ref.coef_, atol=1e-7)
        np.testing.assert_allclose(est.intercept_[j] - est.mean_ @ est.coef_[:, j], ref.intercept_, atol=1e-7)


def test_full_lasso_pca_equals_lasso_on_scores():
    decomposition = pytest.importorskip("sklearn.decomposition")
    X, Y = pairs(n=16)
    est = FullLasso(1e-3, n_components=6, scaling="none").fit(X, Y)
    Z = decomposition.PCA(6, svd_solver="full").fit_transform(X.reshape(16, -1))
    ref = sklearn.Lasso(alpha=1e-3, tol=1e-12, max_iter=100000).fit(Z, Y.reshape(16, -1))
    np.testing.assert_allclose(est.predict(X).reshape(16, -1), ref.predict(Z), atol=1e-8)


def test_full_lasso_refuses_large_exact_with_memory():
    X, Y = pairs(n=4, h=40, w=40)
    with pytest.raises(ValueError, match=r"GiB.*n_components"):
        FullLasso(n_components=None).fit(X, Y)


@pytest.mark.parametrize("bad", [{"alpha": -1}, {"receptive_field": 4}, {"max_iter": 0}, {"batch": 0}])
def test_bad_parameters(bad):
    X, Y = pairs(n=4)
    with pytest.raises(ValueError):
        MaskedLasso(**bad).fit(X, Y)
