"""Image quality metrics on images scaled to ``[0, 1]``.

* :func:`mse` -- the paper's: mean squared error over pixels (and channels) of each image;
* :func:`psnr` -- ``10 log10(R^2 / MSE)``;
* :func:`ssim` -- Gaussian-window SSIM of Wang et al. 2004 (``sigma = 1.5``, population
  covariances, a border of ``(win-1)/2`` pixels cropped before averaging): scikit-image's
  ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)``;
* :func:`detail_kept` -- the fine detail of a prediction relative to the truth's: the energy
  of what a Gaussian of ``sigma = 2`` px removes. MSE, PSNR and SSIM reward blur (a blurred
  face is close to every face); this says how much texture a method gives back (1 = as much
  as the real photo, masked regression's prediction keeps a sixth of it).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["METRICS", "detail_kept", "mse", "psnr", "score", "ssim"]

METRICS = ("mse", "psnr", "ssim", "detail")


def _pairs4(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    if a.ndim == 3:  # (n, H, W)
        a, b = a[..., None], b[..., None]
    if a.ndim != 4:
        raise ValueError(f"expected (H, W), (n, H, W) or (n, H, W, C) images, got shape {a.shape}")
    return a, b


def mse(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error over pixels (and channels) of each image.

    Parameters
    ----------
    pred, truth : ndarray, shape (H, W), (n, H, W) or (n, H, W, C), values in [0, 1]

    Returns
    -------
    ndarray, shape (n,)
    """
    a, b = _pairs4(pred, truth)
    return ((a - b) ** 2).mean(axis=(1, 2, 3))


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each image, ``10 log10(R^2 / MSE)`` (inf if equal).

    Returns
    -------
    ndarray, shape (n,)
    """
    err = mse(pred, truth)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / err)


def ssim(
    pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0, sigma: float = 1.5,
    k1: float = 0.01, k2: float = 0.03, truncate: float = 3.5,
) -> np.ndarray:
    """Mean structural similarity of each image (Gaussian window, per channel, averaged).

    Returns
    -------
    ndarray, shape (n,)
    """
    a, b = _pairs4(pred, truth)
    pad = int(truncate * sigma + 0.5)
    if min(a.shape[1:3]) <= 2 * pad:
        raise ValueError(f"SSIM needs images larger than {2 * pad + 1} pixels, got {a.shape[1:3]}")

    def blur(z: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(z, sigma=(0, sigma, sigma, 0), truncate=truncate, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s[:, pad:-pad, pad:-pad].mean(axis=(1, 2, 3))


def detail_kept(pred: np.ndarray, truth: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """High-frequency energy of each predicted image over that of its true image.

    The high frequencies are ``img - G_sigma(img)`` (Gaussian per channel, reflected borders).

    Returns
    -------
    ndarray, shape (n,)
    """
    a, b = _pairs4(pred, truth)

    def energy(z: np.ndarray) -> np.ndarray:
        high = z - ndimage.gaussian_filter(z, sigma=(0, sigma, sigma, 0), mode="reflect")
        return (high**2).sum(axis=(1, 2, 3))

    return energy(a) / np.maximum(energy(b), 1e-12)


_METRIC_FUNCS = {"mse": mse, "psnr": psnr, "ssim": ssim, "detail": detail_kept}


def score(metric: str, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """One of :data:`METRICS` per image."""
    return _METRIC_FUNCS[metric](pred, truth)
