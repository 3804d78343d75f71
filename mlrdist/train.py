"""Stage 2: faces.zarr -> weights.zarr, tile-parallel on Dask.

Three layers, as in xarray's polyfit stack: the pure kernel
(:func:`mlrdist.kernels.ridge.fit_region`), the per-tile task :func:`solve_tile` that
reads a tile (plus halo) from faces.zarr and writes its own aligned chunk of weights.zarr,
and the labelled stage function :func:`fit_weights`.

weights.zarr (xarray layout)::

    coef(target, channel, y, x, feature)    float32/64, chunks (all, all, tile, tile, all)
    intercept(target, channel, y, x)
    tile_done(tile_y, tile_x)              uint8, one chunk per tile: 1 once written
    coords  target, channel, dy(feature), dx(feature), feature_channel(feature)
    attrs   mlrdist = {config, image_size, tile, fingerprint, n_pairs, subjects, version, complete}

A tile's task writes its coef and intercept chunks, then its ``tile_done`` flag, so a rerun
after a crash recomputes exactly the tiles without a flag; retried tiles rewrite identical
bytes. The fingerprint (configuration + training-pair digests) guards against mixing runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .blocks import Tile, TilePlan, plan_tiles
from .config import TrainConfig
from .estimator import MaskedRidge
from .execution import open_executor
from .io.stores import group_exists, open_store
from .kernels.ridge import fit_region
from .kernels.windows import window_offsets
from .preprocess import apply_scaling

__all__ = ["StoredMaskedRidge", "TrainReport", "fit_weights", "load_weights", "pair_indices", "train_config"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pairs:
    """Training pairs by subject: sample indices of the source and of each target."""

    subjects: tuple[str, ...]
    source: np.ndarray  # (n,)
    targets: np.ndarray  # (m, n)
    dropped: tuple[str, ...] = ()


def pair_indices(subjects, expressions, source: str, targets: tuple[str, ...]) -> Pairs:
    """Pair samples by subject: each subject with the source and every target expression.

    The first sample (in store order) of a subject/expression is used. Subjects lacking
    any of the expressions are listed in ``dropped``.
    """
    subjects = np.array([str(s) for s in np.asarray(subjects).tolist()], dtype=object)
    expressions = np.array([str(e) for e in np.asarray(expressions).tolist()], dtype=object)
    first: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(subjects.tolist(), expressions.tolist(), strict=True)):
        first.setdefault(key, i)
    wanted = (source, *targets)
    everyone = sorted(set(subjects.tolist()))
    keep = [s for s in everyone if all((s, e) in first for e in wanted)]
    if not keep:
        have = sorted(set(expressions.tolist()))
        raise ValueError(
            f"no subject has both the source expression {source!r} and the target(s) "
            f"{list(targets)}; expressions in the store: {have}"
        )
    return Pairs(
        subjects=tuple(keep),
        source=np.array([first[(s, source)] for s in keep]),
        targets=np.array([[first[(s, t)] for s in keep] for t in targets]),
        dropped=tuple(s for s in everyone if s not in set(keep)),
    )


def restrict_pairs(pairs: Pairs, subjects) -> Pairs:
    """Keep only the pairs of ``subjects`` (order of ``pairs`` kept)."""
    wanted = {str(s) for s in subjects}
    keep = [j for j, s in enumerate(pairs.subjects) if s in wanted]
    missing = sorted(wanted - set(pairs.subjects))
    if missing:
        raise ValueError(f"subjects without a complete pair in the store: {missing[:10]}")
    if not keep:
        raise ValueError("subjects selects no training pair; give at least one subject")
    return Pairs(
        subjects=tuple(pairs.subjects[j] for j in keep), source=pairs.source[keep],
        targets=pairs.targets[:, keep], dropped=pairs.dropped,
    )


# --------------------------------------------------------------------------- tile task


@dataclass(frozen=True)
class TileJob:
    """Everything a tile task needs; small and picklable."""

    faces: str
    faces_options: dict | None
    weights: str
    weights_options: dict | None
    source: np.ndarray
    targets: np.ndarray
    lo: np.ndarray  # scaling of every store sample, (n_store,)
    span: np.ndarray
    config: TrainConfig
    image_size: tuple[int, int]
    n_jobs: int = 1


def _read(arr, samples: np.ndarray, ys: slice, xs: slice) -> np.ndarray:
    order = np.argsort(samples, kind="stable")
    block = arr.get_orthogonal_selection((samples[order], ys, xs, slice(None)))
    out = np.empty_like(block)
    out[order] = block
    return out


def solve_tile(job: TileJob, tile: Tile) -> tuple[int, int]:
    """Fit one tile's weights from faces.zarr and write them to its chunk of weights.zarr."""
    import zarr

    cfg = job.config
    k = cfg.receptive_field
    r = k // 2
    H, W = job.image_size
    dtype = np.dtype(cfg.dtype)
    image = zarr.open_array(open_store(job.faces, job.faces_options, read_only=True), path="image", mode="r")
    ry0, ry1, rx0, rx1 = max(0, tile.y0 - r), min(H, tile.y1 + r), max(0, tile.x0 - r), min(W, tile.x1 + r)
    region = apply_scaling(
        _read(image, job.source, slice(ry0, ry1), slice(rx0, rx1)), job.lo[job.source], job.span[job.source], dtype
    )
    th, tw = tile.shape
    C = region.shape[-1]
    n = len(job.source)
    source = np.zeros((th + 2 * r, tw + 2 * r, C, n), dtype=dtype)  # zeros beyond the image
    oy, ox = ry0 - (tile.y0 - r), rx0 - (tile.x0 - r)
    source[oy : oy + ry1 - ry0, ox : ox + rx1 - rx0] = np.moveaxis(region, 0, -1)
    targets = np.empty((th, tw, len(job.targets), C, n), dtype=dtype)
    for t, idx in enumerate(job.targets):
        block = _read(image, idx, slice(tile.y0, tile.y1), slice(tile.x0, tile.x1))
        targets[:, :, t] = np.moveaxis(apply_scaling(block, job.lo[idx], job.span[idx], dtype), 0, -1)
    coef, intercept = fit_region(
        source, targets, receptive_field=k, alpha=cfg.alpha, colour=cfg.colour, n_jobs=job.n_jobs
    )
    group = zarr.open_group(open_store(job.weights, job.weights_options), mode="r+")
    group["coef"][:, :, tile.y0 : tile.y1, tile.x0 : tile.x1, :] = coef
    group["intercept"][:, :, tile.y0 : tile.y1, tile.x0 : tile.x1] = intercept
    group["tile_done"][tile.iy, tile.ix] = 1
    return tile.iy, tile.ix


# --------------------------------------------------------------------------- stage


@dataclass
class TrainReport:
    """What a training run did."""

    weights: str
    plan: str
    n_pairs: int
    tiles_total: int
    tiles_computed: int
    tiles_skipped: int
    seconds: float
    fingerprint: str
    dropped_subjects: list[str] = field(default_factory=list)
    dashboard: str | None = None
    selection: dict | None = None

    def summary(self) -> str:
        return (
            f"trained {self.weights}: {self.n_pairs} pairs, {self.plan}; computed "
            f"{self.tiles_computed} tiles, skipped {self.tiles_skipped} already done, "
            f"{self.seconds:.1f} s"
        )


def train_config(*, receptive_field: int | str = 3, alpha: float | str = 0.4, **fields: Any):
    """Validate training settings; ``"auto"`` marks a hyper-parameter to select.

    Returns ``(config, auto_receptive_field, auto_alpha)``; the config holds placeholders
    (the paper's defaults) for the settings to select. Raises ValueError on bad settings.
    """
    auto_k, auto_alpha = receptive_field == "auto", alpha == "auto"
    cfg = TrainConfig(
        receptive_field=3 if auto_k else receptive_field, alpha=0.4 if auto_alpha else alpha, **fields
    )
    return cfg, auto_k, auto_alpha


def fit_weights(
    faces: str,
    weights: str,
    *,
    source: str = "neutral",
    targets: tuple[str, ...] | str = ("smiling",),
    receptive_field: int | str = 3,
    alpha: float | str = 0.4,
    colour: str = "per_channel",
    dtype: str = "float64",
    scaling: str = "unit",
    tile: int | None = None,
    receptive_fields: tuple[int, ...] | None = None,
    alphas: tuple[float, ...] | None = None,
    subjects: Any = None,
    client: Any = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    weights_storage_options: dict | None = None,
    progress: bool = False,
) -> TrainReport:
    """Train masked-regression weights from a faces.zarr into a weights.zarr on Dask.

    Parameters
    ----------
    faces, weights : str
        fsspec URLs (local path, ``s3://``, ``memory://`` ...) of the stores.
    source, targets
        Expressions to map from and to; pairs are formed by subject.
    receptive_field, alpha, colour, dtype, scaling
        As :class:`~mlrdist.MaskedRidge`. ``"auto"`` chooses ``alpha`` by closed-form
        leave-one-out and/or ``receptive_field`` on held-out subjects (over ``alphas`` /
        ``receptive_fields``); see :mod:`mlrdist.select`. The choice and its scores are
        stored in the weights attrs (``mlrdist.selection``).
    subjects : sequence of str, optional
        Train on these subjects only (e.g. to hold others out for evaluation).
    tile : int, optional
        Tile side in pixels (one task and one Zarr chunk each); default: planned from the
        workers' memory.
    client, scheduler
        Where to run: see :mod:`mlrdist.execution` (default: an embedded LocalCluster).
    overwrite : bool
        Replace a weights store trained with a different configuration or data. Without
        it such a store is refused; a store with the same fingerprint is resumed.
    storage_options, weights_storage_options : dict, optional
        fsspec options for the faces and weights URLs (e.g. S3 endpoint and keys).
    progress : bool
        Show a progress bar.
    """
    t0 = time.perf_counter()
    cfg, auto_k, auto_alpha = train_config(
        source=source, targets=targets, receptive_field=receptive_field, alpha=alpha, colour=colour,
        dtype=dtype, scaling=scaling,
    )
    weights_options = weights_storage_options if weights_storage_options is not None else storage_options
    ds = _open_faces(faces, storage_options)
    pairs = pair_indices(ds["subject"].values, ds["expression"].values, cfg.source, cfg.targets)
    if subjects is not None:
        pairs = restrict_pairs(pairs, subjects)
    n_store, H, W, C = ds["image"].shape
    with open_executor(client, scheduler) as ex:
        lo, span = _scaling(ds, pairs, cfg.scaling)
        selection = None
        if auto_k or auto_alpha:
            from .select import DEFAULT_ALPHAS, DEFAULT_RECEPTIVE_FIELDS, select_hyperparameters

            X, Y = _load_pairs(ds, pairs, lo, span)
            selection = select_hyperparameters(
                X, Y, colour=cfg.colour,
                receptive_fields=(receptive_fields or DEFAULT_RECEPTIVE_FIELDS) if auto_k else (cfg.receptive_field,),
                alphas=(alphas or DEFAULT_ALPHAS) if auto_alpha else (cfg.alpha,),
            )
            del X, Y
            cfg = replace(cfg, receptive_field=selection.receptive_field, alpha=selection.alpha)
            log.info("selected receptive_field=%d alpha=%g", cfg.receptive_field, cfg.alpha)
        plan = plan_tiles(
            H, W, receptive_field=cfg.receptive_field, n_samples=len(pairs.subjects), channels=C,
            n_targets=len(cfg.targets), colour=cfg.colour, itemsize=np.dtype(cfg.dtype).itemsize,
            tile=tile, worker_memory=ex.worker_memory, min_tiles=2 * ex.n_workers,
        )
        fingerprint = _fingerprint(cfg, ds, pairs, plan)
        done = _prepare_store(weights, weights_options, ds, cfg, plan, pairs, fingerprint, overwrite, selection)
        todo = [t for t in plan.tiles() if not done[t.iy, t.ix]]
        log.info("training %s: %s; %d tiles to do", weights, plan.describe(), len(todo))
        job = TileJob(
            faces=str(faces), faces_options=storage_options, weights=str(weights),
            weights_options=weights_options, source=pairs.source, targets=pairs.targets, lo=lo,
            span=span, config=cfg, image_size=(H, W),
            n_jobs=ex.n_workers if ex.scheduler == "synchronous" else 1,
        )
        _run_tiles(ex, job, todo, fingerprint, progress)
        _mark_complete(weights, weights_options)
        return TrainReport(
            weights=str(weights), plan=plan.describe(), n_pairs=len(pairs.subjects),
            tiles_total=len(plan.tiles()), tiles_computed=len(todo),
            tiles_skipped=len(plan.tiles()) - len(todo), seconds=time.perf_counter() - t0,
            fingerprint=fingerprint, dropped_subjects=list(pairs.dropped), dashboard=ex.dashboard,
            selection=selection.to_dict() if selection is not None else None,
        )


def _solve_tile_task(args: tuple[TileJob, Tile]) -> tuple[int, int]:
    return solve_tile(*args)


def _run_tiles(ex, job: TileJob, todo: list[Tile], fingerprint: str, progress: bool) -> None:
    ex.map(
        _solve_tile_task, [(job, t) for t in todo], key=f"mlrdist-train-{fingerprint[:12]}",
        progress=progress, desc="training tiles",
    )


def _open_faces(url: str, storage_options: dict | None):
    """A faces store's committed samples (see :func:`mlrdist.ingest.open_faces`)."""
    from .ingest import open_faces

    if not group_exists(url, storage_options):
        raise FileNotFoundError(f"no faces store at {url!r}: run `mlrdist ingest` first")
    ds = open_faces(url, storage_options)
    for name in ("image", "subject", "expression"):
        if name not in ds.variables:
            raise ValueError(f"{url!r} is not a faces store: it has no {name!r} variable")
    return ds


def _scaling(ds, pairs: Pairs, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    n_store = ds.sizes["sample"]
    if scaling == "none":
        return np.zeros(n_store), np.ones(n_store)
    if scaling == "unit":
        return np.zeros(n_store), np.full(n_store, 255.0)
    used = np.unique(np.concatenate([pairs.source, pairs.targets.ravel()]))
    img = ds["image"].isel(sample=used)
    lo = np.zeros(n_store)
    span = np.ones(n_store)
    lo[used] = img.min(dim=("y", "x", "channel")).values
    span[used] = img.max(dim=("y", "x", "channel")).values - lo[used]
    return lo, span


def _load_pairs(ds, pairs: Pairs, lo, span) -> tuple[np.ndarray, np.ndarray]:
    """All training pairs in memory, scaled: X (n, H, W, C), Y (m, n, H, W, C)."""
    image = ds["image"]
    X = apply_scaling(image.isel(sample=pairs.source).values, lo[pairs.source], span[pairs.source], np.float64)
    Y = np.stack([apply_scaling(image.isel(sample=t).values, lo[t], span[t], np.float64) for t in pairs.targets])
    return X, Y


def _fingerprint(cfg: TrainConfig, ds, pairs: Pairs, plan: TilePlan) -> str:
    digests = [str(d) for d in ds["digest"].values.tolist()] if "digest" in ds.variables else None
    ident = (lambda i: digests[i]) if digests is not None else (lambda i: int(i))
    payload = {
        "config": cfg.to_dict(),
        "tile": plan.tile,
        "size": [plan.height, plan.width],
        "pairs": [
            [s, ident(pairs.source[j]), [ident(t[j]) for t in pairs.targets]]
            for j, s in enumerate(pairs.subjects)
        ],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _prepare_store(url, options, ds, cfg, plan, pairs, fingerprint, overwrite, selection=None) -> np.ndarray:
    """Create the weights template, or resume a matching store; returns ``tile_done``."""
    import zarr

    if group_exists(url, options):
        group = zarr.open_group(open_store(url, options), mode="r+")
        meta = dict(group.attrs).get("mlrdist", {})
        if meta.get("fingerprint") == fingerprint and "tile_done" in group:
            return np.asarray(group["tile_done"][...]).astype(bool)
        if not overwrite:
            raise ValueError(
                f"weights store {url!r} already holds a model trained with a different "
                f"configuration or data ({_diff(meta.get('config', {}), cfg.to_dict())}); pass "
                "overwrite=True (CLI: --overwrite) to replace it, or choose another path"
            )
    _write_template(url, options, ds, cfg, plan, pairs, fingerprint, selection)
    ny, nx = plan.grid
    return np.zeros((ny, nx), dtype=bool)


def _diff(old: dict, new: dict) -> str:
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
    return "; ".join(changed) if changed else "same settings, different training data or tile"


def _write_template(url, options, ds, cfg, plan, pairs, fingerprint, selection=None) -> None:
    import dask.array as da
    import xarray as xr

    from . import __version__

    m, C, t = len(cfg.targets), ds.sizes["channel"], plan.chunk
    k = cfg.receptive_field
    F = plan.n_features
    cin = C if cfg.colour == "joint" else 1
    offs = np.repeat(window_offsets(k), cin, axis=0)
    ny, nx = plan.grid
    H, W = plan.height, plan.width
    coords = {
        "target": np.array(cfg.targets, dtype=object),
        "dy": ("feature", offs[:, 0]),
        "dx": ("feature", offs[:, 1]),
        "feature_channel": ("feature", np.tile(np.arange(cin), k * k)),
    }
    if "channel" in ds.coords:
        channels = ds["channel"].values
        coords["channel"] = channels.astype(object) if channels.dtype.kind == "U" else channels
    out = xr.Dataset(
        {
            "coef": (("target", "channel", "y", "x", "feature"),
                     da.zeros((m, C, H, W, F), chunks=(m, C, t, t, F), dtype=cfg.dtype)),
            "intercept": (("target", "channel", "y", "x"),
                          da.zeros((m, C, H, W), chunks=(m, C, t, t), dtype=cfg.dtype)),
            "tile_done": (("tile_y", "tile_x"), da.zeros((ny, nx), chunks=(1, 1), dtype=np.uint8)),
        },
        coords=coords,
    )
    out.attrs["mlrdist"] = {
        "config": cfg.to_dict(),
        "image_size": [H, W],
        "channels": C,
        "tile": plan.tile,
        "chunk": t,
        "fingerprint": fingerprint,
        "n_pairs": len(pairs.subjects),
        "subjects": list(pairs.subjects),
        "normalisation": cfg.scaling,
        "faces_attrs": {k2: v for k2, v in ds.attrs.items() if _jsonable(v)},
        "version": __version__,
        "complete": False,
        "selection": selection.to_dict() if selection is not None else None,
    }
    out.to_zarr(open_store(url, options), mode="w", compute=False, consolidated=False)


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _mark_complete(url, options) -> None:
    import zarr

    group = zarr.open_group(open_store(url, options), mode="r+")
    if not np.asarray(group["tile_done"][...]).all():
        raise RuntimeError(f"training of {url!r} finished with tiles missing; rerun to complete it")
    meta = dict(group.attrs["mlrdist"])
    meta["complete"] = True
    group.attrs["mlrdist"] = meta


# --------------------------------------------------------------------------- loading


class StoredMaskedRidge(MaskedRidge):
    """A :class:`MaskedRidge` whose weights live in a weights.zarr (loaded on first use)."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        import zarr

        if not group_exists(url, storage_options):
            raise FileNotFoundError(f"no weights store at {url!r}: train one with `mlrdist train` first")
        group = zarr.open_group(open_store(url, storage_options, read_only=True), mode="r")
        meta = dict(group.attrs).get("mlrdist")
        if meta is None:
            raise ValueError(f"{url!r} is not an mlrdist weights store (no 'mlrdist' attrs)")
        if not meta.get("complete"):
            done = np.asarray(group["tile_done"][...])
            raise ValueError(
                f"weights store {url!r} is incomplete ({int(done.sum())} of {done.size} tiles): "
                "rerun the same `mlrdist train` command to finish it"
            )
        cfg = meta["config"]
        super().__init__(
            cfg["receptive_field"], cfg["alpha"], colour=cfg["colour"], dtype=cfg["dtype"],
            scaling=cfg["scaling"],
        )
        self.url = url
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

    def predict(self, X: Any) -> Any:
        """Synthesise every stored target: a dict ``{target: stack}`` (shapes of ``X``)."""
        X = np.asarray(X)
        self._form = ("dict", X.ndim)
        return super().predict(X)

    def fit(self, X: Any, Y: Any):  # pragma: no cover - guard
        raise TypeError("a stored model is read-only; train a new one with fit_weights")


def load_weights(url: str, storage_options: dict | None = None) -> StoredMaskedRidge:
    """Open a weights.zarr (any fsspec URL) as a ready-to-predict model."""
    return StoredMaskedRidge(url, storage_options)
