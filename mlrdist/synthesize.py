"""Stage 3: apply stored weights to image collections in bulk, streaming on Dask.

Inputs are a Zarr of aligned images (a faces.zarr or any group with
``image(sample, y, x, channel)``) or a photo collection (see :mod:`mlrdist.synthesize_files`).
Each Dask task converts one *batch* of images with every target of the weights store, so
memory is bounded by the batch whatever the collection size.

outputs.zarr (Zarr inputs)::

    image(target, sample, y, x, channel)   uint8, chunks (1, batch, H, W, C)
    batch_done(batch)                      uint8, one chunk per batch: 1 once written
    coords  target + every coordinate of the input along ``sample``
    attrs   mlrdist = {weights, weights_fingerprint, inputs, batch, complete}

A batch task writes its images, then its flag; a rerun converts only batches without a
flag, and rewrites identical bytes for any batch it repeats.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .execution import open_executor
from .io.stores import group_exists, open_store
from .preprocess import check_positive_int

__all__ = ["SynthesisReport", "synthesize", "to_uint8"]

log = logging.getLogger(__name__)
DEFAULT_BATCH = 256


@dataclass
class SynthesisReport:
    """What a synthesis run did; ``failed`` maps an input URL to the reason it was skipped."""

    outputs: str
    targets: list[str]
    n_inputs: int
    converted: int
    skipped_done: int
    failed: dict[str, str] = field(default_factory=dict)
    no_face: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dashboard: str | None = None

    def summary(self) -> str:
        rate = self.converted / self.seconds if self.seconds else 0.0
        return (
            f"synthesised {self.converted} of {self.n_inputs} inputs x {len(self.targets)} "
            f"target(s) into {self.outputs} ({self.skipped_done} already done, "
            f"{len(self.failed)} failed, {len(self.no_face)} without a face; {rate:.0f} img/s)"
        )

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def to_uint8(P: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8: ``floor(255 P + 0.5)``, clipped (float32 work arrays)."""
    Q = np.multiply(P, 255.0, dtype=np.float32)
    Q += 0.5
    np.clip(Q, 0.0, 255.0, out=Q)
    return Q.astype(np.uint8)


@functools.lru_cache(maxsize=4)
def cached_model(url: str, options_key: str):
    """One loaded model per worker process and weights store."""
    import json

    from .train import load_weights

    options = json.loads(options_key) or None
    model = load_weights(url, options)
    # Bulk synthesis predicts in float32: twice as fast, and the outputs are 8-bit, so they
    # differ from a float64 prediction by at most one grey level (tested).
    model._coef = model.coef_.astype(np.float32)
    model._intercept = model.intercept_.astype(np.float32)
    model.dtype = np.float32
    model.n_jobs = 1
    return model


def _options_key(options: dict | None) -> str:
    import json

    return json.dumps(options or {}, sort_keys=True)


def predict_batch(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 ``(n, H, W, C)`` -> ``{target: uint8 (n, H, W, C)}``."""
    out = model.predict(images)
    return {t: to_uint8(p) for t, p in out.items()}


# --------------------------------------------------------------------------- zarr inputs


@dataclass(frozen=True)
class ZarrBatchJob:
    weights: str
    weights_options: dict | None
    inputs: str
    inputs_options: dict | None
    outputs: str
    outputs_options: dict | None
    batch: int
    n: int


def convert_zarr_batch(job: ZarrBatchJob, b: int) -> int:
    """Convert samples ``[b * batch, (b + 1) * batch)`` and flag the batch done."""
    import zarr

    model = cached_model(job.weights, _options_key(job.weights_options))
    src = zarr.open_array(open_store(job.inputs, job.inputs_options, read_only=True), path="image", mode="r")
    s0, s1 = b * job.batch, min(job.n, (b + 1) * job.batch)
    out = predict_batch(model, np.asarray(src[s0:s1]))
    group = zarr.open_group(open_store(job.outputs, job.outputs_options), mode="r+")
    for t, name in enumerate(model.targets_):
        group["image"][t, s0:s1] = out[name]
    group["batch_done"][b] = 1
    return s1 - s0


def _convert_task(args) -> int:
    return convert_zarr_batch(*args)


def _zarr_template(ds, model, outputs, options, batch, fingerprint, inputs, overwrite) -> np.ndarray:
    import dask.array as da
    import xarray as xr
    import zarr

    n, H, W, C = ds["image"].shape
    nb = -(-n // batch)
    if not overwrite and group_exists(outputs, options):
        group = zarr.open_group(open_store(outputs, options), mode="r+")
        meta = dict(group.attrs).get("mlrdist", {})
        if meta.get("weights_fingerprint") == fingerprint and meta.get("batch") == batch and meta.get("n") == n:
            return np.asarray(group["batch_done"][...]).astype(bool)
        raise ValueError(
            f"outputs {outputs!r} already hold a synthesis from other weights or inputs; "
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
        "weights": str(model.url), "weights_fingerprint": fingerprint, "inputs": str(inputs),
        "batch": batch, "n": n, "complete": False,
    }
    out.to_zarr(open_store(outputs, options), mode="w", compute=False, consolidated=False)
    return np.zeros(nb, dtype=bool)


def synthesize_zarr(
    weights: str,
    inputs: str,
    outputs: str,
    *,
    batch: int = DEFAULT_BATCH,
    client: Any = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    weights_storage_options: dict | None = None,
    outputs_storage_options: dict | None = None,
    progress: bool = False,
) -> SynthesisReport:
    """Zarr of aligned images -> outputs.zarr (see the module docstring)."""
    import zarr

    from .train import load_weights

    batch = check_positive_int(batch, "batch")
    t0 = time.perf_counter()
    w_opts = weights_storage_options if weights_storage_options is not None else storage_options
    o_opts = outputs_storage_options if outputs_storage_options is not None else storage_options
    model = load_weights(weights, w_opts)
    from .ingest import open_faces

    ds = open_faces(inputs, storage_options)  # committed samples of a faces.zarr, or any Zarr
    if "image" not in ds or ds["image"].dims != ("sample", "y", "x", "channel"):
        raise ValueError(f"{inputs!r} has no image(sample, y, x, channel) array to synthesise from")
    if tuple(ds["image"].shape[1:]) != tuple(model.image_shape_):
        raise ValueError(
            f"inputs {inputs!r} hold {ds['image'].shape[1:]} images but the weights expect "
            f"{model.image_shape_} (H, W, C); ingest them at the model's size and colour mode"
        )
    done = _zarr_template(ds, model, outputs, o_opts, batch, model.meta["fingerprint"], inputs, overwrite)
    n = ds.sizes["sample"]
    todo = [b for b in range(len(done)) if not done[b]]
    job = ZarrBatchJob(weights, w_opts, inputs, storage_options, outputs, o_opts, batch, n)
    with open_executor(client, scheduler) as ex:
        counts = ex.map(
            _convert_task, [(job, b) for b in todo], key=f"mlrdist-synth-{model.meta['fingerprint'][:8]}",
            progress=progress, desc="synthesising batches",
        )
        dashboard = ex.dashboard
    group = zarr.open_group(open_store(outputs, o_opts), mode="r+")
    meta = dict(group.attrs["mlrdist"])
    meta["complete"] = bool(np.asarray(group["batch_done"][...]).all())
    group.attrs["mlrdist"] = meta
    return SynthesisReport(
        outputs=str(outputs), targets=list(model.targets_), n_inputs=n, converted=int(sum(counts)),
        skipped_done=n - int(sum(counts)), seconds=time.perf_counter() - t0, dashboard=dashboard,
    )


def synthesize(weights: str, inputs: str, outputs: str, **kwargs: Any) -> SynthesisReport:
    """Synthesise every target of ``weights`` for ``inputs`` into ``outputs``.

    ``inputs`` is a Zarr group with ``image(sample, y, x, channel)`` (a faces.zarr) or a
    photo collection (directory tree, glob, zip/tar archive, ``s3://`` prefix). See
    :func:`synthesize_zarr` and :func:`mlrdist.synthesize_files.synthesize_files` for the
    options of each.
    """
    options = kwargs.get("storage_options")
    if group_exists(inputs, options):
        if str(outputs).rstrip("/").endswith(".zip"):
            raise ValueError(
                f"outputs {outputs!r}: a .zip output is for photo collections; a Zarr input is "
                "synthesised into a Zarr store: name it e.g. outputs.zarr"
            )
        return synthesize_zarr(weights, inputs, outputs, **kwargs)
    from .synthesize_files import synthesize_files

    return synthesize_files(weights, inputs, outputs, **kwargs)
