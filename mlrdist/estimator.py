"""In-memory masked ridge regression with scikit-learn conventions."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import ImageRegressor, resolve_n_jobs
from ._validation import COLOURS, check_alpha
from .execution import thread_map
from .kernels.apply import apply_region
from .kernels.cost import SOLVERS, default_subtile
from .kernels.ridge import fit_region
from .kernels.windows import check_receptive_field, pad_samples_last
from .tiles import row_bands

__all__ = ["MaskedRidge", "fit_rows"]


class MaskedRidge(ImageRegressor):
    """Masked linear regression (Khan et al., IJCV 2020): one ridge problem per pixel.

    Every output pixel (and channel) is a ridge regression on the ``k x k`` window of the
    input centred on it, plus a bias: a locally connected layer fitted in closed form.

    Parameters
    ----------
    receptive_field : int, default 3
        Odd window side ``k`` in 1..31 (the paper's default is 3).
    alpha : float, default 0.4
        Ridge penalty (> 0), applied to the bias too (data are not centred).
    colour : {"per_channel", "joint"}, default "per_channel"
        ``per_channel`` (the paper): output channel ``c`` sees input channel ``c`` only.
        ``joint``: each output channel sees the ``k x k`` window of all input channels.
    dtype : float64 or float32
        Working precision. float32 builds Grams in single precision and factorises in
        double (windows centred first); predictions stay within 1e-4 of float64.
    scaling : {"unit", "minmax", "none"}, default "unit"
        Intensity scaling, see :mod:`mlrdist.scaling`.
    solver : {"auto", "primal", "gram", "dual", "box"}, default "auto"
        Exact solver path (all agree to rounding); ``auto`` picks the cheapest.
    n_jobs : int or None, default None
        Threads; ``None`` or ``-1`` uses every core (like a multi-threaded BLAS would).

    Shapes
    ------
    ``X``: ``(n, H, W)`` grayscale or ``(n, H, W, C)``. ``Y``: one stack shaped like
    ``X``; or several targets fitted together (one factorisation per pixel serves all) as
    an array with a leading target axis ``(m, *X.shape)`` or a dict ``{name: stack}``.
    ``predict`` returns the same form. Fitted attributes: ``coef_`` of shape
    ``(m, C, H, W, F)`` with ``F = k*k`` (per_channel) or ``k*k*C`` (joint), features in
    ``(dy, dx, channel)`` order, and ``intercept_`` of shape ``(m, C, H, W)``; ``m = 1``
    for a single target. ``targets_`` holds the target names.
    """

    def __init__(
        self,
        receptive_field: int = 3,
        alpha: float = 0.4,
        *,
        colour: str = "per_channel",
        dtype: Any = np.float64,
        scaling: str = "unit",
        solver: str = "auto",
        n_jobs: int | None = None,
    ) -> None:
        self.receptive_field = receptive_field
        self.alpha = alpha
        self.colour = colour
        self.dtype = dtype
        self.scaling = scaling
        self.solver = solver
        self.n_jobs = n_jobs

    def _check_params(self, image_shape: tuple[int, ...] | None = None) -> int:
        k = check_receptive_field(self.receptive_field)
        check_alpha(self.alpha)
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {self.colour!r}")
        if self.solver != "auto" and self.solver not in SOLVERS:
            raise ValueError(f"solver must be 'auto' or one of {SOLVERS}, got {self.solver!r}")
        resolve_n_jobs(self.n_jobs)
        if image_shape is not None:
            limit = 2 * max(image_shape[0], image_shape[1]) - 1
            if k > limit:
                raise ValueError(
                    f"receptive_field={k} is larger than useful for {image_shape[0]}x"
                    f"{image_shape[1]} images (at most {limit}: beyond that the window "
                    "sees only padding); use a smaller receptive_field"
                )
        return k

    def _validate_params(self) -> None:
        self._check_params()

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        k = self._check_params(X.shape[1:3])
        source = pad_samples_last(X, k // 2)  # (Hp, Wp, C, n)
        targets = np.ascontiguousarray(Y.transpose(2, 3, 0, 4, 1))  # (H, W, m, C, n)
        self.coef_, self.intercept_ = fit_rows(
            source, targets, receptive_field=k, alpha=float(self.alpha), colour=self.colour,
            solver=self.solver, n_jobs=resolve_n_jobs(self.n_jobs),
        )

    def _predict(self, X: np.ndarray) -> np.ndarray:
        k = check_receptive_field(self.receptive_field)
        bands = row_bands(X.shape[1], resolve_n_jobs(self.n_jobs))

        def run(rows: tuple[int, int]) -> np.ndarray:
            return apply_region(X, self.coef_, self.intercept_, colour=self.colour, pad=k // 2,
                                clip=self._clip_range, rows=rows)

        parts = thread_map(run, bands, len(bands))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)


def fit_rows(
    source: np.ndarray,
    targets: np.ndarray,
    *,
    receptive_field: int,
    alpha: float,
    colour: str = "per_channel",
    solver: str = "auto",
    n_jobs: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mlrdist.kernels.ridge.fit_region` over row bands on ``n_jobs`` threads.

    Bands are whole multiples of the kernel's sub-tiles, so the result is the same bytes
    for any ``n_jobs``. Shapes as :func:`~mlrdist.kernels.ridge.fit_region`.
    """
    k = receptive_field
    h = targets.shape[0]
    bands = row_bands(h, n_jobs, default_subtile(k))

    def run(rows: tuple[int, int]):
        y0, y1 = rows
        return fit_region(source[y0 : y1 + k - 1], targets[y0:y1], receptive_field=k, alpha=alpha,
                          colour=colour, solver=solver)

    parts = thread_map(run, bands, n_jobs)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts], axis=2), np.concatenate([p[1] for p in parts], axis=2)
