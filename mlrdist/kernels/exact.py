"""Synthesis whose result does not depend on the batch, the kernel path, BLAS or the CPU.

The float32 synthesis kernel (:func:`~mlrdist.kernels.apply.apply_region`) sums a pixel's
products in an order that depends on how many images are in the call (shift-and-add below
eight images, a banded GEMM above) and, in some BLAS kernels (OpenBLAS on AVX2 CPUs), on an
image's row in its GEMM; last-bit differences then cross the uint8 rounding for about one
output value in 10^5. Bulk synthesis must give the same bytes for an input whatever its batch,
worker or rerun, so it computes exactly instead:

* the pixels enter as their integer values and the weights, divided by the scaling's
  ``span`` (255 for uint8 images in ``[0, 1]`` units), are rounded once to integers on a
  common power-of-two scale ``2**-e`` chosen so that every product and every partial sum of a
  window is an integer below ``2**53``;
* every float64 operation of the dot products is then exact, so any summation order (FMA or
  not, any BLAS kernel, thread count, batch size or path) gives the same integer ``acc``;
* the prediction is ``fl64(acc * 2**-e + b)``: one rounding, the same everywhere.

The weights' quantisation error (``2**-(e+1)`` each, ``e`` about 45) is far below float32's;
predictions agree with the float64 model to about 1e-12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .apply import apply_region

__all__ = ["ExactWeights", "apply_exact", "quantize"]


@dataclass(frozen=True)
class ExactWeights:
    """Integer-valued weights ``W`` (float64, ``round(coef / span * 2**e)``), the scale
    exponent ``e``, the intercepts ``b`` and the window geometry."""

    W: np.ndarray  # (m, C, H, W, F)
    e: int
    b: np.ndarray  # (m, C, H, W)
    k: int
    colour: str


def quantize(coef: np.ndarray, intercept: np.ndarray, colour: str = "per_channel", span: float = 255.0,
             max_pixel: float = 255.0) -> ExactWeights:
    """Quantise weights ``coef`` ``(m, C, H, W, F)`` for inputs of integers in
    ``[0, max_pixel]`` that the model scales by ``1 / span``."""
    coef = np.asarray(coef)
    b = np.asarray(intercept, dtype=np.float64)
    m, C, H, W, F = coef.shape
    cin = C if colour == "joint" else 1
    k = int(round((F // cin) ** 0.5))
    l1 = float(np.abs(coef).sum(axis=-1, dtype=np.float64).max()) / span if coef.size else 0.0
    # a window's partial sums are at most max_pixel * sum|W| <= max_pixel * (l1 * 2**e + F / 2):
    # below 2**53 they are exact integers in float64
    room = 2.0**53 / max_pixel - F
    e = min(52, math.floor(math.log2(room / l1))) if l1 > 0 else 52
    Wq = coef.astype(np.float64)  # one float64 buffer, scaled and rounded in place
    Wq *= 2.0**e / span
    return ExactWeights(np.rint(Wq, out=Wq), e, b, k, colour)


def apply_exact(images: np.ndarray, ew: ExactWeights) -> np.ndarray:
    """Predictions of integer images ``(n, H, W, C)`` (uint8 or integer-valued), exactly:
    float64 ``(m, n, H, W, C)``, the same bytes for an image in any batch."""
    acc = apply_region(np.asarray(images, dtype=np.float64), ew.W, np.zeros_like(ew.b), colour=ew.colour,
                       pad=ew.k // 2)
    acc *= 2.0**-ew.e
    acc += np.moveaxis(ew.b, 1, -1)[:, None]  # (m, 1, H, W, C)
    return acc
