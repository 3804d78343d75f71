"""Closed-form leave-one-out errors of ridge over a grid of penalties (pure NumPy).

For one pixel with design ``A`` (``n x p``, bias included) the dual Gram ``K = A A^T`` is
eigendecomposed once, ``K = U diag(s) U^T``. For every ``alpha`` the hat matrix is
``H = U diag(s / (s + alpha)) U^T`` and the leave-one-out residual of sample ``i`` is
``(y_i - (H y)_i) / (1 - H_ii)`` (Allen's PRESS identity): the whole grid costs one
eigendecomposition plus ``O(n^2)`` per penalty, batched over pixels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gather_windows", "loo_errors"]


def gather_windows(Spad: np.ndarray, k: int, ys: np.ndarray, xs: np.ndarray, bias: bool = True) -> np.ndarray:
    """Transposed designs of chosen pixels of a padded samples-last stack.

    Parameters
    ----------
    Spad : ndarray, shape (H + k - 1, W + k - 1, C, n)
    ys, xs : int arrays, shape (P,)
        Pixel coordinates in the *unpadded* image.

    Returns
    -------
    ndarray, shape (P, k * k * C (+ 1), n)
        Features ``(dy, dx, channel)`` (then a row of ones when ``bias``).
    """
    C, n = Spad.shape[2], Spad.shape[3]
    P = len(ys)
    F = k * k * C
    At = np.empty((P, F + int(bias), n), dtype=Spad.dtype)
    f = 0
    for oy in range(k):
        for ox in range(k):
            At[:, f : f + C] = Spad[ys + oy, xs + ox]
            f += C
    if bias:
        At[:, F] = 1.0
    return At


def loo_errors(At: np.ndarray, Y: np.ndarray, alphas) -> np.ndarray:
    """Mean squared leave-one-out error of every pixel and right-hand side per penalty.

    Parameters
    ----------
    At : ndarray, shape (P, p, n)
        Transposed designs (bias row included).
    Y : ndarray, shape (P, n, R)
        Targets.
    alphas : sequence of float, length A

    Returns
    -------
    ndarray, shape (A, P, R)
    """
    K = np.matmul(At.transpose(0, 2, 1).astype(np.float64), At.astype(np.float64))
    s, U = np.linalg.eigh(K)
    s = np.clip(s, 0.0, None)
    Y = Y.astype(np.float64)
    z = np.matmul(U.transpose(0, 2, 1), Y)  # (P, n, R)
    U2 = U * U
    out = np.empty((len(alphas), Y.shape[0], Y.shape[2]))
    for a, alpha in enumerate(alphas):
        d = s / (s + alpha)  # (P, n)
        fitted = np.matmul(U, d[:, :, None] * z)
        h = np.matmul(U2, d[:, :, None])  # (P, n, 1)
        resid = (Y - fitted) / (1.0 - h)
        out[a] = np.mean(resid**2, axis=1)
    return out
