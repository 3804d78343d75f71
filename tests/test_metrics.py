"""Image metrics against closed forms and scikit-image's SSIM."""

import numpy as np
import pytest

from mlrdist.metrics import mse, psnr, ssim


def test_mse_and_known_psnr():
    a = np.zeros((2, 8, 8))
    b = a + np.array([0.1, 0.01])[:, None, None]
    np.testing.assert_allclose(mse(a, b), [0.01, 1e-4])
    np.testing.assert_allclose(psnr(a, b), [20.0, 40.0])
    assert np.isinf(psnr(a, a)).all()


def test_ssim_identical_is_one_and_constant_shift_formula():
    rng = np.random.default_rng(0)
    a = rng.random((3, 20, 20, 2))
    np.testing.assert_allclose(ssim(a, a), 1.0)
    # constant images: SSIM reduces to the luminance term (2 m1 m2 + C1) / (m1^2 + m2^2 + C1)
    x, y = np.full((1, 16, 16), 0.2), np.full((1, 16, 16), 0.6)
    c1 = 0.01**2
    np.testing.assert_allclose(ssim(x, y), (2 * 0.2 * 0.6 + c1) / (0.04 + 0.36 + c1))


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.random((24, 20, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ref = metrics.structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, channel_axis=-1)
    np.testing.assert_allclose(ssim(a[None], b[None])[0], ref, rtol=1e-10)
    ref2 = metrics.structural_similarity(a[..., 0], b[..., 0], data_range=1.0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
    np.testing.assert_allclose(ssim(a[..., 0], b[..., 0])[0], ref2, rtol=1e-10)


def test_detail_kept_is_one_for_the_truth_and_falls_with_blur():
    from scipy import ndimage

    from mlrdist.metrics import detail_kept

    rng = np.random.default_rng(2)
    truth = rng.random((2, 32, 32, 3))
    np.testing.assert_allclose(detail_kept(truth, truth), 1.0)
    blurred = ndimage.gaussian_filter(truth, (0, 2, 2, 0))
    assert (detail_kept(blurred, truth) < 0.2).all()
    np.testing.assert_allclose(detail_kept(2 * truth, truth), 4.0)  # energy is quadratic
