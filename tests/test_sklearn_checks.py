"""scikit-learn's estimator checks on MaskedRidge and FullRidge.

The models regress image stacks on image stacks: ``X`` is ``(n, H, W[, C])`` and ``y`` has
the shape of ``X`` (or a dict of such stacks). scikit-learn's checks that feed tabular data
(``X (n, f)``, ``y (n,)``) do not apply; every one of them is listed below with the reason,
and the ones that matter have an image-stack analogue here. A check scikit-learn adds in a
later release fails the classification test until it is run or given a reason.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.utils import estimator_checks as ec  # noqa: E402

from mlrdist import FullRidge, MaskedRidge  # noqa: E402

ESTIMATORS = [MaskedRidge(), FullRidge()]

# checks of the estimator's API, without data: run as scikit-learn wrote them
RUN = (
    "check_estimator_cloneable", "check_estimator_tags_renamed", "check_valid_tag_types",
    "check_estimator_repr", "check_no_attributes_set_in_init", "check_mixin_order",
    "check_do_not_raise_errors_in_init_or_set_params", "check_parameters_default_constructible",
    "check_get_params_invariance", "check_set_params",
)

TABULAR = "feeds tabular X (n, f) and y (n,); the model maps image stacks (n, H, W[, C]) to stacks of the same shape"
NOT_APPLICABLE = {
    "check_fit_score_takes_y": TABULAR + "; it has no score method",
    "check_estimators_overwrite_params": TABULAR + "; see test_fit_leaves_parameters_and_is_idempotent",
    "check_dont_overwrite_parameters": TABULAR + "; see test_fit_leaves_parameters_and_is_idempotent",
    "check_estimators_fit_returns_self": TABULAR + "; tests/test_estimator.py checks fit returns self",
    "check_readonly_memmap_input": TABULAR + "; see test_read_only_inputs",
    "check_estimators_unfitted": TABULAR + "; tests/test_estimator.py checks predict before fit",
    "check_n_features_in_after_fitting": TABULAR + "; n_features_in_ = H * W * C is set by fit",
    "check_positive_only_tag_during_fit": TABULAR,
    "check_estimators_dtypes": TABULAR + "; uint8/uint16/float inputs are tested in tests/test_estimator.py",
    "check_sample_weights_pandas_series": "no sample weights: each pair counts once, as in the paper",
    "check_sample_weights_not_an_array": "no sample weights",
    "check_sample_weights_list": "no sample weights",
    "check_all_zero_sample_weights_error": "no sample weights",
    "check_sample_weights_shape": "no sample weights",
    "check_sample_weights_not_overwritten": "no sample weights",
    "check_sample_weight_equivalence_on_dense_data": "no sample weights",
    "check_sample_weight_equivalence_on_sparse_data": "no sample weights",
    "check_complex_data": TABULAR + "; complex images are refused (real numbers only)",
    "check_dtype_object": TABULAR,
    "check_estimators_empty_data_messages": TABULAR + "; empty stacks are refused in tests/test_estimator.py",
    "check_pipeline_consistency": TABULAR + "; no pipelines of image regressors",
    "check_estimators_nan_inf": TABULAR + "; NaN/inf images are refused in tests/test_estimator.py",
    "check_estimator_sparse_tag": "images are dense arrays",
    "check_estimator_sparse_array": "images are dense arrays",
    "check_estimator_sparse_matrix": "images are dense arrays",
    "check_estimators_pickle": TABULAR + "; see test_pickle_round_trip",
    "check_array_api_input": "NumPy only (the kernels are NumPy/LAPACK)",
    "check_array_api_mixed_inputs": "NumPy only",
    "check_array_api_same_namespace": "NumPy only",
    "check_f_contiguous_array_estimator": TABULAR + "; see test_read_only_inputs (any memory layout)",
    "check_regressors_train": TABULAR + "; accuracy is checked against Ridge per pixel in tests/kernels",
    "check_regressor_data_not_an_array": TABULAR,
    "check_estimators_partial_fit_n_features": "no partial_fit: the closed form needs all pairs",
    "check_regressor_multioutput": TABULAR + "; several targets are tested in tests/test_estimator.py",
    "check_regressors_no_decision_function": TABULAR,
    "check_supervised_y_2d": TABULAR,
    "check_supervised_y_no_nan": TABULAR + "; NaN targets are refused in tests/test_estimator.py",
    "check_regressors_int": TABULAR + "; uint8 images are the normal input",
    "check_non_transformer_estimators_n_iter": "closed form: no iterations",
    "check_methods_sample_order_invariance": TABULAR + "; see test_samples_are_independent",
    "check_methods_subset_invariance": TABULAR + "; see test_samples_are_independent",
    "check_fit2d_1sample": TABULAR,
    "check_fit2d_1feature": TABULAR,
    "check_dict_unchanged": TABULAR + "; see test_fit_leaves_parameters_and_is_idempotent",
    "check_fit_idempotent": TABULAR + "; see test_fit_leaves_parameters_and_is_idempotent",
    "check_fit_check_is_fitted": TABULAR,
    "check_n_features_in": TABULAR,
    "check_fit1d": TABULAR,
    "check_fit2d_predict1d": TABULAR,
    "check_requires_y_none": TABULAR,
}


def test_every_regressor_check_is_run_or_has_a_reason():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = {getattr(c, "func", c).__name__ for c in ec._yield_all_checks(Ridge(), legacy=True)}
    names.add("check_estimator_cloneable")
    unclassified = sorted(names - set(RUN) - set(NOT_APPLICABLE))
    assert not unclassified, f"scikit-learn checks neither run nor explained: {unclassified}"
    assert not set(RUN) & set(NOT_APPLICABLE)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", RUN)
def test_api_checks(estimator, check):
    getattr(ec, check)(type(estimator).__name__, estimator)


def stacks(seed=0, n=8):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 12, 10, 3))
    return X, np.clip(0.8 * X + 0.1 * rng.random(X.shape), 0, 1)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_fit_leaves_parameters_and_is_idempotent(estimator):
    X, Y = stacks()
    est = clone(estimator)
    params = est.get_params()
    first = est.fit(X, Y).predict(X)
    assert est.get_params() == params
    np.testing.assert_array_equal(est.fit(X, Y).predict(X), first)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_pickle_round_trip(estimator):
    X, Y = stacks(1)
    est = clone(estimator).fit(X, Y)
    again = pickle.loads(pickle.dumps(est))
    # equal up to BLAS's choice of kernel for differently aligned buffers
    np.testing.assert_allclose(again.predict(X), est.predict(X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_read_only_inputs(estimator):
    X, Y = stacks(2)
    want = clone(estimator).fit(X, Y).predict(X)
    Xr, Yr = np.asfortranarray(X), Y.copy()
    Xr.setflags(write=False)
    Yr.setflags(write=False)
    np.testing.assert_allclose(clone(estimator).fit(Xr, Yr).predict(Xr), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_samples_are_independent(estimator):
    """Predicting a subset or a permutation gives those samples' predictions."""
    X, Y = stacks(3)
    est = clone(estimator).fit(X, Y)
    full = est.predict(X)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(est.predict(X[order]), full[order], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(est.predict(X[:3]), full[:3], rtol=1e-12, atol=1e-12)
