"""weights.zarr: the template, tile writes, completion, validation and loading.

Layout (xarray, zarr 3, ``consolidated=False``)::

    coef(target, channel, y, x, feature)    float32/64, chunks (all, all, tile, tile, all)
    intercept(target, channel, y, x)
    tile_done(tile_y, tile_x)              uint8, one chunk per tile: 1 once written
    coords  target, channel, dy(feature), dx(feature), feature_channel(feature)
    attrs   mlrdist = {config, image_size, channels, tile, chunk, fingerprint, n_pairs,
                       subjects, pairs_digest, normalisation, faces_attrs, version, complete,
                       selection}

A tile's task writes its coef and intercept chunks, then its ``tile_done`` flag, so a rerun
after a crash recomputes exactly the tiles without a flag; retried tiles rewrite identical
bytes. A stored model is only Zarr arrays and JSON attributes: never pickle. Loading checks
the attributes against the arrays and that every weight is finite.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np

from .._validation import COLOURS
from ..estimator import MaskedRidge
from ..kernels.windows import check_receptive_field, window_offsets
from ..scaling import SCALINGS
from .location import Location
from .stores import open_group, open_store

__all__ = [
    "StoredMaskedRidge",
    "cached_model",
    "create_weights",
    "load_weights",
    "mark_complete",
    "resume_weights",
    "write_tile",
]

DTYPES = ("float32", "float64")


def resume_weights(where: Location, fingerprint: str) -> tuple[np.ndarray | None, dict | None]:
    """``(tile_done, None)`` for a store with the same fingerprint (to resume it), else
    ``(None, its mlrdist attrs or None when there is no store)``."""
    group = open_group(where, "r+")
    if group is None:
        return None, None
    meta = dict(group.attrs).get("mlrdist", {})
    if meta.get("fingerprint") == fingerprint and "tile_done" in group:
        return np.asarray(group["tile_done"][...]).astype(bool), None
    return None, meta


def create_weights(where: Location, *, config: dict, targets: tuple[str, ...], channel_coord: Any,
                   grid: tuple[int, int], shape: tuple[int, int, int], chunk: int, n_features: int,
                   receptive_field: int, joint: bool, dtype: str, meta: dict) -> None:
    """Write the template of a weights store (arrays of zeros, not computed) over any old one.

    ``shape`` is (H, W, C); ``meta`` goes to the ``mlrdist`` attribute with ``config``,
    ``complete: False`` and the package version.
    """
    import dask.array as da
    import xarray as xr

    from .. import __version__

    H, W, C = shape
    m, F, t, k = len(targets), n_features, chunk, receptive_field
    cin = C if joint else 1
    offs = np.repeat(window_offsets(k), cin, axis=0)
    coords = {
        "target": np.array(targets, dtype=object),
        "dy": ("feature", offs[:, 0]),
        "dx": ("feature", offs[:, 1]),
        "feature_channel": ("feature", np.tile(np.arange(cin), k * k)),
    }
    if channel_coord is not None:
        coords["channel"] = channel_coord.astype(object) if channel_coord.dtype.kind == "U" else channel_coord
    ny, nx = grid
    out = xr.Dataset(
        {
            "coef": (("target", "channel", "y", "x", "feature"),
                     da.zeros((m, C, H, W, F), chunks=(m, C, t, t, F), dtype=dtype)),
            "intercept": (("target", "channel", "y", "x"),
                          da.zeros((m, C, H, W), chunks=(m, C, t, t), dtype=dtype)),
            "tile_done": (("tile_y", "tile_x"), da.zeros((ny, nx), chunks=(1, 1), dtype=np.uint8)),
        },
        coords=coords,
    )
    out.attrs["mlrdist"] = {"config": config, **meta, "version": __version__, "complete": False}
    out.to_zarr(open_store(where), mode="w", compute=False, consolidated=False)


def write_tile(where: Location, ys: slice, xs: slice, index: tuple[int, int], coef: np.ndarray,
               intercept: np.ndarray) -> None:
    """Write one tile's weights into its own chunks, then its done flag."""
    group = open_group(where, "r+")
    if group is None:
        raise FileNotFoundError(f"weights store {where.url!r} disappeared while training")
    group["coef"][:, :, ys, xs, :] = coef
    group["intercept"][:, :, ys, xs] = intercept
    group["tile_done"][index] = 1


def mark_complete(where: Location) -> None:
    """Flag a store complete once every tile is done."""
    group = open_group(where, "r+")
    if not np.asarray(group["tile_done"][...]).all():
        raise RuntimeError(f"training of {where.url!r} finished with tiles missing; rerun to complete it")
    meta = dict(group.attrs["mlrdist"])
    meta["complete"] = True
    group.attrs["mlrdist"] = meta


def jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- loading


class StoredMaskedRidge(MaskedRidge):
    """A :class:`~mlrdist.MaskedRidge` whose weights live in a weights.zarr (read on first use)."""

    def __init__(self, url: str | Location, storage_options: dict | None = None) -> None:
        loc = Location.resolve(url, storage_options)
        group = open_group(loc, "r")
        if group is None:
            raise FileNotFoundError(f"no weights store at {loc.url!r}: train one with `mlrdist train` first")
        meta = dict(group.attrs).get("mlrdist")
        if meta is None:
            raise ValueError(f"{loc.url!r} is not an mlrdist weights store (no 'mlrdist' attrs)")
        if not meta.get("complete"):
            done = np.asarray(group["tile_done"][...]) if "tile_done" in group else np.zeros(1)
            raise ValueError(
                f"weights store {loc.url!r} is incomplete ({int(done.sum())} of {done.size} tiles): "
                "rerun the same `mlrdist train` command to finish it"
            )
        cfg = _check_meta(loc.url, meta, group)
        super().__init__(
            cfg["receptive_field"], cfg["alpha"], colour=cfg["colour"], dtype=cfg["dtype"],
            scaling=cfg["scaling"],
        )
        self.url = loc.url
        self.location = loc
        self.meta = meta
        self._group = group
        H, W = meta["image_size"]
        self.image_shape_ = (H, W, meta["channels"])
        self.targets_ = tuple(cfg["targets"])

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"url": self.url}

    @property
    def coef_(self) -> np.ndarray:
        if "_coef" not in self.__dict__:
            self._coef = np.asarray(self._group["coef"][...])
        return self._coef

    @property
    def intercept_(self) -> np.ndarray:
        if "_intercept" not in self.__dict__:
            self._intercept = np.asarray(self._group["intercept"][...])
        return self._intercept

    def check_finite(self) -> None:
        """Raise ValueError naming where, if any weight is NaN or infinite (read chunk by chunk)."""
        for name in ("coef", "intercept"):
            arr = self._group[name]
            step = max(1, arr.chunks[2])
            for y0 in range(0, arr.shape[2], step):
                block = np.asarray(arr[:, :, y0 : y0 + step])
                bad = ~np.isfinite(block)
                if bad.any():
                    t, c, y, x = np.argwhere(bad)[0][:4]
                    raise ValueError(
                        f"weights store {self.url!r} is damaged: {name} holds non-finite values (NaN or "
                        f"infinity), first at target {self.targets_[t]!r}, channel {c}, pixel y={y0 + y}, "
                        f"x={x}; retrain it (`mlrdist train ... --overwrite`)"
                    )

    def predict(self, X: Any) -> Any:
        """Synthesise every stored target: a dict ``{target: stack}`` (shapes of ``X``)."""
        X = np.asarray(X)
        self._form = ("dict", X.ndim)
        return super().predict(X)

    def fit(self, X: Any, Y: Any):  # pragma: no cover - guard
        raise TypeError("a stored model is read-only; train a new one with fit_weights")


def _check_meta(url: str, meta: dict, group) -> dict:
    """The stored configuration, checked against itself and the arrays (one line per problem)."""

    def bad(what: str) -> ValueError:
        return ValueError(f"weights store {url!r} is inconsistent: {what}; retrain it (`mlrdist train ... --overwrite`)")

    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise bad("its attributes have no 'config'")
    if cfg.get("dtype") not in DTYPES:
        raise bad(f"unknown dtype {cfg.get('dtype')!r} (expected one of {DTYPES})")
    if cfg.get("colour") not in COLOURS:
        raise bad(f"unknown colour mode {cfg.get('colour')!r} (expected one of {COLOURS})")
    if cfg.get("scaling") not in SCALINGS:
        raise bad(f"unknown scaling {cfg.get('scaling')!r} (expected one of {SCALINGS})")
    try:
        k = check_receptive_field(cfg.get("receptive_field"))
    except ValueError as exc:
        raise bad(str(exc)) from None
    targets = cfg.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise bad(f"targets attribute {targets!r} is not a list of expression names")
    for name in ("coef", "intercept"):
        if name not in group:
            raise bad(f"it has no {name!r} array")
    try:
        H, W = (int(v) for v in meta["image_size"])
        C = int(meta["channels"])
    except (KeyError, TypeError, ValueError):
        raise bad("image_size/channels attributes are missing or malformed") from None
    F = k * k * (C if cfg["colour"] == "joint" else 1)
    want = {"coef": (len(targets), C, H, W, F), "intercept": (len(targets), C, H, W)}
    for name, shape in want.items():
        arr = group[name]
        if tuple(arr.shape) != shape:
            raise bad(f"{name} has shape {tuple(arr.shape)} but its attributes ({len(targets)} targets "
                      f"{targets}, {H}x{W}x{C}, k={k}) need {shape}")
        if str(arr.dtype) != cfg["dtype"]:
            raise bad(f"{name} is {arr.dtype} but its attributes say {cfg['dtype']}")
    return cfg


def load_weights(url: str | Location, storage_options: dict | None = None, *,
                 check_finite: bool = False) -> StoredMaskedRidge:
    """Open a weights.zarr (any fsspec URL) as a ready-to-predict model.

    The attributes are always checked against the arrays; ``check_finite`` also reads every
    weight once and refuses NaN or infinite values (synthesis does, before any input).
    """
    model = StoredMaskedRidge(url, storage_options)
    if check_finite:
        model.check_finite()
    return model


@functools.lru_cache(maxsize=4)
def _cached(url: str, options_key: str) -> StoredMaskedRidge:
    model = load_weights(url, json.loads(options_key) or None)
    # Bulk synthesis predicts in float32: twice as fast, and the outputs are 8-bit, so they
    # differ from a float64 prediction by at most one grey level (tested).
    model._coef = model.coef_.astype(np.float32)
    model._intercept = model.intercept_.astype(np.float32)
    model.dtype = np.float32
    model.n_jobs = 1
    return model


def cached_model(where: Location) -> StoredMaskedRidge:
    """One loaded float32 model per worker process and weights store."""
    return _cached(where.url, json.dumps(where.options, sort_keys=True))
