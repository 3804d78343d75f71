import numpy as np
import pytest

from mlrdist.baselines.omp import MaskedOMP

from ._data import pairs, window_design

sklearn = pytest.importorskip("sklearn.linear_model")


@pytest.mark.parametrize("k,s", [(3, 1), (3, 4), (5, 7)])
def test_matches_sklearn_omp_per_pixel(k, s):
    X, Y = pairs(n=30)
    est = MaskedOMP(k, s, batch=17, scaling="none").fit(X, Y)
    for y in range(10):
        for x in (0, 4, 8):
            A = window_design(X, k, y, x)
            A = A[:, A.any(axis=0)]  # sklearn warns on all-zero (padding) columns
            keep = window_design(X, k, y, x).any(axis=0)
            ref = sklearn.OrthogonalMatchingPursuit(n_nonzero_coefs=min(s, A.shape[1]), fit_intercept=True)
            ref.fit(A, Y[:, y, x])
            np.testing.assert_allclose(est.coef_[0, y, x, 0][keep], ref.coef_, atol=1e-9)
            assert not est.coef_[0, y, x, 0][~keep].any()
            np.testing.assert_allclose(est.intercept_[0, y, x, 0], ref.intercept_, atol=1e-9)


def test_sparsity_and_shapes():
    X, Y = pairs(c=3)
    est = MaskedOMP(3, 2, scaling="none").fit(X, np.stack([Y, Y ** 2]))
    assert est.coef_.shape == (2, 10, 9, 3, 9)
    assert (np.count_nonzero(est.coef_, axis=-1) <= 2).all()
    assert est.predict(X).shape == (2, *X.shape)


def test_constant_target_stops_early():
    X, _ = pairs()
    est = MaskedOMP(3, 3, scaling="none").fit(X, np.full_like(X, 0.5))
    assert not est.coef_.any()
    np.testing.assert_allclose(est.predict(X), 0.5)


def test_too_many_atoms_is_refused():
    X, Y = pairs(n=4)
    with pytest.raises(ValueError, match="at most receptive_field"):
        MaskedOMP(3, 10).fit(X, Y)
