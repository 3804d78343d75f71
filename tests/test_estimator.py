"""MaskedRidge and FullRidge: scikit-learn conventions, target forms, scaling, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from mlrdist import FullRidge, MaskedRidge


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.random((15, 10, 9, 3))
    Y = rng.random((15, 10, 9, 3))
    return X, Y


def test_fit_returns_self_and_predict_shape(data):
    X, Y = data
    model = MaskedRidge(3, 0.4)
    assert model.fit(X, Y) is model
    assert model.predict(X).shape == Y.shape
    assert model.coef_.shape == (1, 3, 10, 9, 9)
    assert model.intercept_.shape == (1, 3, 10, 9)


def test_grayscale_3d(data):
    X, Y = data
    model = MaskedRidge(5).fit(X[..., 0], Y[..., 0])
    assert model.predict(X[..., 0]).shape == Y[..., 0].shape


def test_multi_target_forms_agree(data):
    X, Y = data
    Y2 = np.clip(Y**2, 0, 1)
    stacked = MaskedRidge(3, colour="joint").fit(X, np.stack([Y, Y2]))
    as_dict = MaskedRidge(3, colour="joint").fit(X, {"smiling": Y, "surprised": Y2})
    single = MaskedRidge(3, colour="joint").fit(X, Y2)
    P = stacked.predict(X)
    D = as_dict.predict(X)
    assert P.shape == (2, *Y.shape)
    assert set(D) == {"smiling", "surprised"}
    np.testing.assert_allclose(P[1], D["surprised"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(P[1], single.predict(X), rtol=0, atol=1e-12)
    assert as_dict.targets_ == ("smiling", "surprised")


def test_get_set_params_roundtrip():
    model = MaskedRidge(7, 0.1, colour="joint")
    params = model.get_params()
    assert params["receptive_field"] == 7 and params["colour"] == "joint"
    clone = MaskedRidge(**params)
    assert clone.get_params() == params
    assert model.set_params(alpha=2.0) is model and model.alpha == 2.0
    with pytest.raises(ValueError, match="invalid parameter 'beta'"):
        model.set_params(beta=1)


def test_sklearn_clone_works():
    from sklearn.base import clone

    model = MaskedRidge(5, 0.3, dtype=np.float32)
    assert clone(model).get_params() == model.get_params()


def test_unit_scaling_of_uint8_and_clipping():
    rng = np.random.default_rng(1)
    X8 = rng.integers(0, 256, (12, 6, 6), dtype=np.uint8)
    Y8 = rng.integers(0, 256, (12, 6, 6), dtype=np.uint8)
    a = MaskedRidge(3).fit(X8, Y8)
    b = MaskedRidge(3).fit(X8 / 255.0, Y8 / 255.0)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-12)
    # extrapolating inputs produce out-of-range values without clipping
    P = a.predict(np.full((2, 6, 6), 255, np.uint8) * 0 + 255)
    assert P.min() >= 0.0 and P.max() <= 1.0
    raw = MaskedRidge(3, scaling="none").fit(X8 / 255.0 * 4, Y8 / 255.0 * 4).predict(X8 / 255.0 * 4)
    assert raw.max() > 1.0


def test_minmax_scaling_is_per_image():
    rng = np.random.default_rng(2)
    X = rng.random((10, 6, 6))
    Y = rng.random((10, 6, 6))
    a = MaskedRidge(3, scaling="minmax").fit(X, Y)
    b = MaskedRidge(3, scaling="minmax").fit(X * 0.5 + 0.2, Y * 3.0 - 1.0)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-10, atol=1e-12)
    const = MaskedRidge(3, scaling="minmax").fit(np.ones((3, 6, 6)), Y[:3])
    assert np.isfinite(const.coef_).all()


def test_full_ridge_matches_sklearn(data):
    X, Y = data
    n = X.shape[0]
    A = np.c_[X.reshape(n, -1), np.ones(n)]
    ref = Ridge(alpha=0.4, fit_intercept=False).fit(A, Y.reshape(n, -1))
    model = FullRidge(0.4, scaling="none").fit(X, Y)
    np.testing.assert_allclose(model.coef_, ref.coef_[:, :-1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.intercept_, ref.coef_[:, -1], rtol=0, atol=1e-10)
    Xt = np.random.default_rng(9).random(X.shape)
    np.testing.assert_allclose(
        model.predict(Xt).reshape(n, -1), ref.predict(np.c_[Xt.reshape(n, -1), np.ones(n)]),
        rtol=0, atol=1e-10,
    )


def test_full_ridge_is_masked_ridge_with_image_sized_window(data):
    X, Y = data
    full = FullRidge(0.4, scaling="none").fit(X, Y).predict(X)
    masked = MaskedRidge(19, 0.4, colour="joint", scaling="none").fit(X, Y).predict(X)
    np.testing.assert_allclose(masked, full, rtol=0, atol=1e-10)


def test_float32_predictions_within_1e4():
    rng = np.random.default_rng(4)
    X = rng.random((60, 24, 24))
    Y = np.clip(X * 0.8 + 0.1 * rng.random((60, 24, 24)), 0, 1)
    for k in (3, 7, 11, 15):  # k >= 11 takes the dual path (n = 60 < p)
        p64 = MaskedRidge(k).fit(X, Y).predict(X)
        p32 = MaskedRidge(k, dtype=np.float32).fit(X, Y).predict(X)
        assert p32.dtype == np.float32
        assert np.abs(p32 - p64).max() < 1e-4


# ----------------------------------------------------------------------------- bad input

GOOD = np.random.default_rng(0).random((4, 6, 6))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"receptive_field": 4}, r"receptive_field must be an odd integer in 1\.\.31"),
        ({"receptive_field": 0}, r"receptive_field must be an odd integer in 1\.\.31"),
        ({"receptive_field": 33}, r"receptive_field must be an odd integer in 1\.\.31"),
        ({"receptive_field": 3.0}, r"receptive_field must be an odd integer"),
        ({"receptive_field": 13}, r"receptive_field=13 is larger than useful for 6x6"),
        ({"alpha": 0}, r"alpha must be a finite number > 0"),
        ({"alpha": -1.0}, r"alpha must be a finite number > 0"),
        ({"alpha": float("nan")}, r"alpha must be a finite number > 0"),
        ({"alpha": "big"}, r"alpha must be a finite number > 0"),
        ({"colour": "rgb"}, r"colour must be one of \('per_channel', 'joint'\)"),
        ({"dtype": np.int32}, r"dtype must be float32 or float64"),
        ({"scaling": "zscore"}, r"scaling must be one of"),
        ({"solver": "qr"}, r"solver must be 'auto' or one of"),
        ({"n_jobs": 0}, r"n_jobs must be None, -1 or a positive integer"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        MaskedRidge(**params).fit(GOOD, GOOD)


@pytest.mark.parametrize(
    ("X", "Y", "match"),
    [
        (GOOD, GOOD[:3], r"Y must have the shape of X \(4, 6, 6\)"),
        (GOOD, GOOD[..., :5], r"Y must have the shape of X"),
        (GOOD[:0], GOOD[:0], r"X holds no images \(n = 0\)"),
        (np.where(GOOD > 0.9, np.nan, GOOD), GOOD, r"X contains NaN or infinite values"),
        (GOOD, np.where(GOOD > 0.9, np.inf, GOOD), r"Y contains NaN or infinite values"),
        (GOOD.astype(complex), GOOD, r"X must hold real numbers"),
        (GOOD.astype(str), GOOD, r"X must hold real numbers"),
        (GOOD[0], GOOD[0], r"X must have shape \(n, H, W\) or \(n, H, W, C\)"),
        (GOOD, {}, r"Y is an empty dict"),
        (GOOD, {"a": GOOD, "b": GOOD[:2]}, r"Y\['b'\] must have the shape of X"),
    ],
)
def test_bad_data(X, Y, match):
    with pytest.raises(ValueError, match=match):
        MaskedRidge(3).fit(X, Y)


def test_predict_errors():
    with pytest.raises(ValueError, match="not fitted yet"):
        MaskedRidge().predict(GOOD)
    model = MaskedRidge(3).fit(GOOD, GOOD)
    with pytest.raises(ValueError, match=r"X images must have the fitted shape \(6, 6, 1\)"):
        model.predict(np.zeros((2, 7, 6)))
    with pytest.raises(ValueError, match=r"FullRidge|alpha must be"):
        FullRidge(alpha=0).fit(GOOD, GOOD)


@pytest.mark.parametrize("k", [3, 7])
def test_threads_give_the_same_bytes(k):
    """Rows split across threads (fit and predict) give the bytes of one thread."""
    rng = np.random.default_rng(k)
    X = rng.random((12, 40, 37, 3))
    Y = np.clip(X * 0.7 + rng.random(X.shape) * 0.1, 0, 1)
    one = MaskedRidge(k, 0.4, n_jobs=1).fit(X, Y)
    two = MaskedRidge(k, 0.4, n_jobs=2).fit(X, Y)
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_array_equal(one.intercept_, two.intercept_)
    np.testing.assert_array_equal(one.predict(X), two.predict(X))
