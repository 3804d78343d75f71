"""Stage 2: faces.zarr -> weights.zarr, tile-parallel on Dask.

Three layers, as in xarray's polyfit stack: the pure kernel
(:func:`mlrdist.kernels.ridge.fit_region`), the per-tile task :func:`solve_tile` that reads
a tile (plus halo) from faces.zarr and writes its own aligned chunk of weights.zarr (see
:mod:`mlrdist.io.weights_store` for the layout), and the labelled stage function
:func:`fit_weights`. The fingerprint (configuration + training-pair digests + tile) guards
against mixing runs: a store with the same fingerprint is resumed, another one is refused
unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .config import TrainConfig, build_config
from .estimator import fit_rows
from .execution import open_executor
from .io import weights_store
from .io.faces_store import open_faces
from .io.location import Location
from .io.stores import check_readable, check_writable, open_store, retry_transient
from .labels import Pairs, pair_indices
from .scaling import apply_scaling
from .tiles import Tile, TilePlan, plan_tiles

__all__ = ["TileJob", "TrainReport", "fit_weights", "solve_tile", "weights_current"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileJob:
    """Everything a tile task needs; small and picklable."""

    faces: Location
    weights: Location
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
    """Fit one tile's weights from faces.zarr and write them to its chunk of weights.zarr;
    transient storage errors (dropped connections, timeouts) are retried with backoff."""
    source, targets = retry_transient(_read_tile, job, tile, what=f"reading tile {tile.iy},{tile.ix}")
    cfg = job.config
    coef, intercept = fit_rows(
        source, targets, receptive_field=cfg.receptive_field, alpha=cfg.alpha, colour=cfg.colour, n_jobs=job.n_jobs
    )
    retry_transient(weights_store.write_tile, job.weights, slice(tile.y0, tile.y1), slice(tile.x0, tile.x1),
                    (tile.iy, tile.ix), coef, intercept, what=f"writing tile {tile.iy},{tile.ix}")
    return tile.iy, tile.ix


def _read_tile(job: TileJob, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """A tile's sources (with halo, zero-padded, samples last) and targets, scaled."""
    import zarr

    cfg = job.config
    k = cfg.receptive_field
    r = k // 2
    H, W = job.image_size
    dtype = np.dtype(cfg.dtype)
    image = zarr.open_array(open_store(job.faces, read_only=True), path="image", mode="r")
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
    return source, targets


def _solve_tile_task(args: tuple[TileJob, Tile]) -> tuple[int, int]:
    return solve_tile(*args)


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


def fit_weights(
    faces: str | Location,
    weights: str | Location,
    config: TrainConfig | dict | None = None,
    *,
    subjects: Any = None,
    client: Any = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    weights_storage_options: dict | None = None,
    progress: bool = False,
    **settings: Any,
) -> TrainReport:
    """Train masked-regression weights from a faces.zarr into a weights.zarr on Dask.

    Parameters
    ----------
    faces, weights : str or Location
        fsspec URLs (local path, ``s3://``, ``memory://`` ...) of the stores.
    config : TrainConfig, optional
        What to train (see :class:`~mlrdist.config.TrainConfig`); any of its fields may also
        be given as keywords (``receptive_field=7, alpha=0.4, targets=("smiling",)``).
        ``"auto"`` for ``receptive_field``/``alpha`` selects them first (leave-one-out and
        held-out subjects, see :mod:`mlrdist.select`); the choice and its scores are stored
        in the weights attrs (``mlrdist.selection``).
    subjects : sequence of str, optional
        Train on these subjects only (e.g. to hold others out for evaluation).
    client, scheduler
        Where to run: see :mod:`mlrdist.execution` (default: an embedded LocalCluster).
    overwrite : bool
        Replace a weights store trained with a different configuration or data. Without
        it such a store is refused; a store with the same fingerprint is resumed.
    storage_options, weights_storage_options : dict, optional
        fsspec options for the faces and weights URLs (the latter default to the former).
    progress : bool
        Show a progress bar.
    """
    t0 = time.perf_counter()
    cfg = build_config(TrainConfig, config, **settings)
    faces_at = Location.resolve(faces, storage_options)
    weights_at = Location.resolve(weights, weights_storage_options, storage_options)
    check_readable(faces_at, "faces store")  # a wrong endpoint, key or bucket fails here, before any work
    check_writable(weights_at, "weights store")
    ds = _open_training_faces(faces_at)
    pairs = pair_indices(ds["subject"].values, ds["expression"].values, cfg.source, cfg.targets)
    if subjects is not None:
        pairs = pairs.restrict(subjects)
    H, W, C = ds["image"].shape[1:]
    with open_executor(client, scheduler) as ex:
        lo, span = _scaling(ds, pairs, cfg.scaling)
        selection = None
        if cfg.needs_selection:
            cfg, selection = _select(ds, pairs, lo, span, cfg, progress)
        plan = plan_tiles(
            H, W, receptive_field=cfg.receptive_field, n_samples=len(pairs.subjects), channels=C,
            n_targets=len(cfg.targets), colour=cfg.colour, itemsize=np.dtype(cfg.dtype).itemsize,
            tile=cfg.tile, worker_memory=ex.worker_memory, min_tiles=2 * ex.n_workers,
        )
        fingerprint = _fingerprint(cfg, ds, pairs, plan)
        done = _prepare_weights(weights_at, ds, cfg, plan, pairs, fingerprint, overwrite, selection)
        todo = [t for t in plan.tiles() if not done[t.iy, t.ix]]
        log.info("training %s: %s; %d tiles to do", weights_at.url, plan.describe(), len(todo))
        job = TileJob(
            faces=faces_at, weights=weights_at, source=pairs.source, targets=pairs.targets, lo=lo,
            span=span, config=cfg, image_size=(H, W),
            n_jobs=ex.n_workers if ex.scheduler == "synchronous" else 1,
        )
        ex.map(_solve_tile_task, [(job, t) for t in todo], key=f"mlrdist-train-{fingerprint[:12]}",
               progress=progress, desc="training tiles")
        weights_store.mark_complete(weights_at)
        return TrainReport(
            weights=weights_at.url, plan=plan.describe(), n_pairs=len(pairs.subjects),
            tiles_total=len(plan.tiles()), tiles_computed=len(todo),
            tiles_skipped=len(plan.tiles()) - len(todo), seconds=time.perf_counter() - t0,
            fingerprint=fingerprint, dropped_subjects=list(pairs.dropped), dashboard=ex.dashboard,
            selection=selection.to_dict() if selection is not None else None,
        )


def weights_current(faces: str | Location, weights: str | Location, config: TrainConfig | dict | None = None,
                    *, storage_options: dict | None = None, weights_storage_options: dict | None = None,
                    **settings: Any) -> bool:
    """Whether ``weights`` is a complete store trained with ``config`` on exactly the pairs
    ``faces`` holds now (so a scheduled retrain has nothing to do)."""
    cfg = build_config(TrainConfig, config, **settings)
    weights_at = Location.resolve(weights, weights_storage_options, storage_options)
    try:
        model = weights_store.load_weights(weights_at)
    except (FileNotFoundError, ValueError):
        return False
    ds = _open_training_faces(Location.resolve(faces, storage_options))
    pairs = pair_indices(ds["subject"].values, ds["expression"].values, cfg.source, cfg.targets)
    stored = model.meta.get("config", {})
    if not cfg.needs_selection and {**stored, "extra": stored.get("extra", {})} != cfg.to_dict():
        return False
    return model.meta.get("pairs_digest") == _pairs_digest(ds, pairs)


def _open_training_faces(where: Location):
    """A faces store's committed samples, checked to hold what training needs."""
    ds = open_faces(where)
    for name in ("image", "subject", "expression"):
        if name not in ds.variables:
            raise ValueError(f"{where.url!r} is not a faces store: it has no {name!r} variable")
    return ds


def _select(ds, pairs: Pairs, lo, span, cfg: TrainConfig, progress: bool = False):
    from .select import DEFAULT_ALPHAS, DEFAULT_RECEPTIVE_FIELDS, select_hyperparameters

    auto_k, auto_alpha = cfg.receptive_field == "auto", cfg.alpha == "auto"
    X, Y = _load_pairs(ds, pairs, lo, span)
    selection = select_hyperparameters(
        X, Y, colour=cfg.colour,
        receptive_fields=(cfg.receptive_fields or DEFAULT_RECEPTIVE_FIELDS) if auto_k else (cfg.receptive_field,),
        alphas=(cfg.alphas or DEFAULT_ALPHAS) if auto_alpha else (cfg.alpha,), progress=progress,
    )
    log.info("selected receptive_field=%d alpha=%g", selection.receptive_field, selection.alpha)
    return replace(cfg, receptive_field=selection.receptive_field, alpha=selection.alpha), selection


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


def _pair_ids(ds, pairs: Pairs) -> list:
    digests = [str(d) for d in ds["digest"].values.tolist()] if "digest" in ds.variables else None
    ident = (lambda i: digests[i]) if digests is not None else (lambda i: int(i))
    return [[s, ident(pairs.source[j]), [ident(t[j]) for t in pairs.targets]] for j, s in enumerate(pairs.subjects)]


def _pairs_digest(ds, pairs: Pairs) -> str:
    return hashlib.sha256(json.dumps(_pair_ids(ds, pairs), default=str).encode()).hexdigest()


def _fingerprint(cfg: TrainConfig, ds, pairs: Pairs, plan: TilePlan) -> str:
    payload = {
        "config": cfg.to_dict(),
        "tile": plan.tile,
        "size": [plan.height, plan.width],
        "pairs": _pair_ids(ds, pairs),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _prepare_weights(where: Location, ds, cfg: TrainConfig, plan: TilePlan, pairs: Pairs, fingerprint: str,
                     overwrite: bool, selection=None) -> np.ndarray:
    """Resume a matching store (its ``tile_done``) or write a fresh template."""
    done, old = weights_store.resume_weights(where, fingerprint)
    if done is not None:
        return done
    if old is not None and not overwrite:
        raise ValueError(
            f"weights store {where.url!r} already holds a model trained with a different "
            f"configuration or data ({_diff(old.get('config', {}), cfg.to_dict())}); pass "
            "overwrite=True (CLI: --overwrite) to replace it, or choose another path"
        )
    channel = ds["channel"].values if "channel" in ds.coords else None
    weights_store.create_weights(
        where, config=cfg.to_dict(), targets=cfg.targets, channel_coord=channel, grid=plan.grid,
        shape=(plan.height, plan.width, plan.channels), chunk=plan.chunk, n_features=plan.n_features,
        receptive_field=cfg.receptive_field, joint=cfg.colour == "joint", dtype=cfg.dtype,
        meta={
            "image_size": [plan.height, plan.width], "channels": plan.channels, "tile": plan.tile,
            "chunk": plan.chunk, "fingerprint": fingerprint, "n_pairs": len(pairs.subjects),
            "subjects": list(pairs.subjects), "pairs_digest": _pairs_digest(ds, pairs),
            "normalisation": cfg.scaling,
            "faces_attrs": {k: v for k, v in ds.attrs.items() if weights_store.jsonable(v)},
            "selection": selection.to_dict() if selection is not None else None,
        },
    )
    ny, nx = plan.grid
    return np.zeros((ny, nx), dtype=bool)


def _diff(old: dict, new: dict) -> str:
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
    return "; ".join(changed) if changed else "same settings, different training data or tile"
