import numpy as np
import pytest

from mlrdist.baselines.kernel import KernelRidge
from mlrdist.baselines.svd import PCARegression, ReducedRankRidge

from ._data import pairs

pytest.importorskip("sklearn")


def test_pca_regression_matches_sklearn_pipeline():
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    X, Y = pairs(c=2)
    est = PCARegression(7, 0.3, scaling="none").fit(X, Y)
    ref = make_pipeline(PCA(7, svd_solver="full"), Ridge(alpha=0.3)).fit(X.reshape(24, -1), Y.reshape(24, -1))
    Xt, _ = pairs(n=5, c=2, seed=1)
    np.testing.assert_allclose(est.predict(Xt).reshape(5, -1), ref.predict(Xt.reshape(5, -1)), atol=1e-10)


def test_reduced_rank_ridge_matches_primal_closed_form():
    X, Y = pairs(n=12, h=4, w=5)
    A, T = X.reshape(12, -1), Y.reshape(12, -1)
    Ac, Tc = A - A.mean(0), T - T.mean(0)
    B = np.linalg.solve(Ac.T @ Ac + 0.5 * np.eye(20), Ac.T @ Tc)
    V = np.linalg.svd(Ac @ B)[2][:3].T
    est = ReducedRankRidge(3, 0.5, scaling="none").fit(X, Y)
    np.testing.assert_allclose(est.coef_, B @ V @ V.T, atol=1e-10)
    assert np.linalg.matrix_rank(est.coef_) == 3


def test_full_rank_rrr_is_centred_ridge():
    from sklearn.linear_model import Ridge

    X, Y = pairs(n=12, h=4, w=5)
    est = ReducedRankRidge(12, 0.5, scaling="none").fit(X, Y)
    ref = Ridge(alpha=0.5).fit(X.reshape(12, -1), Y.reshape(12, -1))
    np.testing.assert_allclose(est.predict(X).reshape(12, -1), ref.predict(X.reshape(12, -1)), atol=1e-10)


@pytest.mark.parametrize("kernel,gamma", [("rbf", 0.3), ("linear", None)])
def test_kernel_ridge_matches_sklearn(kernel, gamma):
    from sklearn.kernel_ridge import KernelRidge as Ref

    X, Y = pairs(h=4, w=4)
    est = KernelRidge(0.2, kernel, gamma, center_targets=False, scaling="none").fit(X, Y)
    ref = Ref(alpha=0.2, kernel=kernel, gamma=gamma).fit(X.reshape(24, -1), Y.reshape(24, -1))
    Xt, _ = pairs(n=3, h=4, w=4, seed=2)
    np.testing.assert_allclose(est.predict(Xt).reshape(3, -1), ref.predict(Xt.reshape(3, -1)), atol=1e-10)


def test_kernel_ridge_centred_targets_and_median_gamma():
    X, Y = pairs()
    est = KernelRidge(0.1).fit(X, Y)
    assert est.gamma_ > 0
    far = np.zeros_like(X[:1]) + 100.0  # kernel ~ 0 far from the data: the mean target
    np.testing.assert_allclose(KernelRidge(0.1, scaling="none").fit(X, Y).predict(far)[0], Y.mean(0), atol=1e-9)


def test_bad_kernel():
    X, Y = pairs(n=4)
    with pytest.raises(ValueError, match="kernel"):
        KernelRidge(kernel="poly").fit(X, Y)
