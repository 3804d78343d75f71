"""Stage 3: apply stored weights to collections in bulk, streaming on Dask.

Inputs are a Zarr of aligned images (a faces.zarr or any group with
``image(sample, y, x, channel)``), converted here, or a photo collection (a folder tree,
glob, zip/tar archive or ``s3://`` prefix), converted by :mod:`mlrdist.synthesize_photos`.
Each Dask task converts one *batch* with every target of the weights store, so memory is
bounded by the batch whatever the collection size. The weights are checked (attributes and
finite values) before any input is read.

outputs.zarr (Zarr inputs)::

    image(target, sample, y, x, channel)   uint8, chunks (1, batch, H, W, C)
    batch_done(batch)                      uint8, one chunk per batch: 1 once written
    coords  target + every coordinate of the input along ``sample``
    attrs   mlrdist = {weights, weights_fingerprint, inputs, batch, n, detail, strength, complete}

A batch task writes its images, then its flag; a rerun converts only batches without a
flag, and rewrites identical bytes for any batch it repeats. Zarr inputs get the paper's
output by default (the prediction itself, ``detail="none"``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import SynthesisConfig, build_config
from .execution import open_executor
from .io.faces_store import open_faces
from .io.location import Location
from .io.stores import check_readable, check_writable, open_group, open_store
from .io.weights_store import StoredMaskedRidge, cached_model, load_weights
from .photo import change_faces
from .report import SynthesisReport
from .synthesize_photos import synthesize_collection

__all__ = ["SynthesisReport", "synthesize"]

log = logging.getLogger(__name__)
ZARR_BATCH = 256


def synthesize(
    weights: str | Location,
    inputs: str | Location,
    outputs: str | Location,
    config: SynthesisConfig | dict | None = None,
    *,
    client: Any = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    weights_storage_options: dict | None = None,
    outputs_storage_options: dict | None = None,
    progress: bool = False,
    preview: str | None = None,
    preview_rows: int = 12,
    preview_cell: int = 320,
    **settings: Any,
) -> SynthesisReport:
    """Synthesise every target of ``weights`` for ``inputs`` into ``outputs``.

    Parameters
    ----------
    weights : str or Location
        A weights.zarr (from :func:`~mlrdist.train.fit_weights`).
    inputs : str or Location
        A Zarr group with ``image(sample, y, x, channel)`` (a faces.zarr), or a photo
        collection (directory tree, glob, zip/tar archive, ``s3://`` prefix).
    outputs : str or Location
        An outputs.zarr for Zarr inputs; for photos a folder (mirrored as
        ``outputs/<target>/<relative path>``) or a ``.zip``.
    config : SynthesisConfig, optional
        Alignment (photos: ``auto`` by default), detail and strength, photos without a face,
        format, batch size, ``keep_parts`` (see :class:`~mlrdist.config.SynthesisConfig`); its
        fields may also be given as keywords.
    client, scheduler
        Where to run: see :mod:`mlrdist.execution` (default: an embedded LocalCluster).
    overwrite : bool
        Convert everything again (Zarr: replace outputs made from other weights or inputs).
    storage_options, weights_storage_options, outputs_storage_options : dict, optional
        fsspec options for the inputs, and for the weights and outputs (default: the
        inputs' options).
    progress : bool
        Show a progress bar.
    preview : str, optional
        Photos: write a PNG grid (the face as it came in | as each target) of up to
        ``preview_rows`` converted photos, spread over the collection, to this local path;
        each picture ``preview_cell`` pixels square.
    """
    t0 = time.perf_counter()
    cfg = build_config(SynthesisConfig, config, **settings)
    src = Location.resolve(inputs, storage_options)
    w_at = Location.resolve(weights, weights_storage_options, storage_options)
    o_at = Location.resolve(outputs, outputs_storage_options, storage_options)
    check_readable(w_at, "weights store")  # a wrong endpoint, key or bucket fails here, before any decoding
    check_readable(src, "inputs")
    check_writable(o_at, "outputs")
    model = load_weights(w_at, check_finite=True)
    group = open_group(src, "r")
    if group is not None:
        if o_at.suffix == ".zip":
            raise ValueError(
                f"outputs {o_at.url!r}: a .zip output is for photo collections; a Zarr input is "
                "synthesised into a Zarr store: name it e.g. outputs.zarr"
            )
        if cfg.photo_options_set or preview:
            raise ValueError(
                f"{', '.join(cfg.photo_options_set + (['preview'] if preview else []))} apply to photo "
                f"collections, not to the Zarr input {src.url!r}"
            )
        report = _synthesize_zarr(model, w_at, src, o_at, cfg, client, scheduler, overwrite, progress)
    else:
        report = synthesize_collection(model, w_at, src, o_at, cfg, client, scheduler, overwrite, progress,
                                       preview, preview_rows, preview_cell)
    report.seconds = time.perf_counter() - t0
    return report


# --------------------------------------------------------------------------- zarr inputs


@dataclass(frozen=True)
class ZarrBatchJob:
    weights: Location
    inputs: Location
    outputs: Location
    batch: int
    n: int
    detail: str = "none"
    strength: float = 1.0


def convert_zarr_batch(job: ZarrBatchJob, b: int) -> int:
    """Convert samples ``[b * batch, (b + 1) * batch)`` and flag the batch done."""
    import zarr

    model = cached_model(job.weights)
    src = zarr.open_array(open_store(job.inputs, read_only=True), path="image", mode="r")
    s0, s1 = b * job.batch, min(job.n, (b + 1) * job.batch)
    out = change_faces(model, np.asarray(src[s0:s1]), job.detail, job.strength)
    group = open_group(job.outputs, "r+")
    for t, name in enumerate(model.targets_):
        group["image"][t, s0:s1] = out[name]
    group["batch_done"][b] = 1
    return s1 - s0


def _convert_zarr_task(args) -> int:
    return convert_zarr_batch(*args)


def _synthesize_zarr(model: StoredMaskedRidge, w_at: Location, src: Location, o_at: Location,
                     cfg: SynthesisConfig, client, scheduler, overwrite: bool, progress: bool) -> SynthesisReport:
    ds = open_faces(src)  # committed samples of a faces.zarr, or any Zarr
    if "image" not in ds or ds["image"].dims != ("sample", "y", "x", "channel"):
        raise ValueError(f"{src.url!r} has no image(sample, y, x, channel) array to synthesise from")
    if tuple(ds["image"].shape[1:]) != tuple(model.image_shape_):
        raise ValueError(
            f"inputs {src.url!r} hold {ds['image'].shape[1:]} images but the weights expect "
            f"{model.image_shape_} (H, W, C); ingest them at the model's size and colour mode"
        )
    fingerprint = model.meta["fingerprint"]
    batch = cfg.batch or ZARR_BATCH
    detail = cfg.detail or "none"
    done = _zarr_template(ds, model, o_at, batch, fingerprint, src, overwrite, detail, cfg.strength)
    n = ds.sizes["sample"]
    todo = [b for b in range(len(done)) if not done[b]]
    job = ZarrBatchJob(w_at, src, o_at, batch, n, detail, cfg.strength)
    with open_executor(client, scheduler) as ex:
        counts = ex.map(_convert_zarr_task, [(job, b) for b in todo], key=f"mlrdist-synth-{fingerprint[:8]}",
                        progress=progress, desc="synthesising batches")
        dashboard = ex.dashboard
    group = open_group(o_at, "r+")
    meta = dict(group.attrs["mlrdist"])
    meta["complete"] = bool(np.asarray(group["batch_done"][...]).all())
    group.attrs["mlrdist"] = meta
    return SynthesisReport(
        outputs=o_at.url, targets=list(model.targets_), n_inputs=n, converted=int(sum(counts)),
        skipped_done=n - int(sum(counts)), dashboard=dashboard,
    )


def _zarr_template(ds, model, o_at: Location, batch: int, fingerprint: str, src: Location,
                   overwrite: bool, detail: str, strength: float) -> np.ndarray:
    import dask.array as da
    import xarray as xr

    n, H, W, C = ds["image"].shape
    nb = -(-n // batch)
    group = None if overwrite else open_group(o_at, "r+")
    if group is not None:
        meta = dict(group.attrs).get("mlrdist", {})
        same = (meta.get("weights_fingerprint"), meta.get("batch"), meta.get("n"), meta.get("detail", "none"),
                meta.get("strength", 1.0)) == (fingerprint, batch, n, detail, strength)
        if same:
            return np.asarray(group["batch_done"][...]).astype(bool)
        raise ValueError(
            f"outputs {o_at.url!r} already hold a synthesis from other weights, inputs or settings; "
            "pass overwrite=True (CLI: --overwrite) to replace them, or choose another path"
        )
    m = len(model.targets_)
    coords = {name: ("sample", c.values) for name, c in ds.coords.items() if c.dims == ("sample",)}
    coords = {k: (d, v.astype(object) if v.dtype.kind in "UT" else v) for k, (d, v) in coords.items()}
    coords["target"] = np.array(model.targets_, dtype=object)
    out = xr.Dataset(
        {
            "image": (("target", "sample", "y", "x", "channel"),
                      da.zeros((m, n, H, W, C), chunks=(1, batch, H, W, C), dtype=np.uint8)),
            "batch_done": (("batch",), da.zeros((nb,), chunks=(1,), dtype=np.uint8)),
        },
        coords=coords,
    )
    out.attrs["mlrdist"] = {
        "weights": str(model.url), "weights_fingerprint": fingerprint, "inputs": src.url,
        "batch": batch, "n": n, "detail": detail, "strength": strength, "complete": False,
    }
    out.to_zarr(open_store(o_at), mode="w", compute=False, consolidated=False)
    return np.zeros(nb, dtype=bool)
