"""Stage 3: apply stored weights to collections in bulk, streaming on Dask.

Inputs are a Zarr of aligned images (a faces.zarr or any group with
``image(sample, y, x, channel)``) or a photo collection: a folder tree, glob, zip/tar
archive or ``s3://`` prefix. Each Dask task converts one *batch* with every target of the
weights store, so memory is bounded by the batch whatever the collection size.

outputs.zarr (Zarr inputs)::

    image(target, sample, y, x, channel)   uint8, chunks (1, batch, H, W, C)
    batch_done(batch)                      uint8, one chunk per batch: 1 once written
    coords  target + every coordinate of the input along ``sample``
    attrs   mlrdist = {weights, weights_fingerprint, inputs, batch, n, complete}

A batch task writes its images, then its flag; a rerun converts only batches without a
flag, and rewrites identical bytes for any batch it repeats.

Photo collections come out as a mirrored tree ``{outputs}/{target}/{relative path}`` (format
kept or chosen), or a zip of that tree (built in ``{name}.parts`` next to it, streamed into
the archive at the end, then removed unless ``keep_parts``). Each face is aligned with the
weights' canonical eye positions, synthesised and pasted back (:mod:`mlrdist.photo`), or
photos are taken as aligned (``align="none"``) or centre-cropped (``"resize"``).
Completion manifests (:mod:`mlrdist.io.outputs`) make reruns skip what is done. A folder is
listed one directory at a time as task slots free up, so the driver's memory does not grow
with the collection. A file that cannot be read, has the wrong size or shows no face is
reported with its URL and the reason, and the rest of the run completes.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .config import SynthesisConfig, build_config
from .execution import open_executor
from .io import outputs as out_io
from .io.faces_store import open_faces
from .io.images import decode_array, fit_resize, from_array, letterbox, to_array
from .io.location import Location
from .io.sources import InputFile, iter_inputs, read_batch
from .io.stores import filesystem, open_group, open_store
from .io.weights_store import StoredMaskedRidge, cached_model, load_weights
from .scaling import to_uint8

__all__ = ["SynthesisReport", "predict_batch", "synthesize"]

log = logging.getLogger(__name__)
ZARR_BATCH = 256
PHOTO_BATCH = 64


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
        return asdict(self)


def predict_batch(model, images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 ``(n, H, W, C)`` -> ``{target: uint8 (n, H, W, C)}``."""
    return {t: to_uint8(p) for t, p in model.predict(images).items()}


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
        Alignment, photos without a face, format, batch size, ``keep_parts`` (see
        :class:`~mlrdist.config.SynthesisConfig`); its fields may also be given as keywords.
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
        Photos: write a PNG grid (input | each target) of up to ``preview_rows`` converted
        photos to this local path.
    """
    t0 = time.perf_counter()
    cfg = build_config(SynthesisConfig, config, **settings)
    src = Location.resolve(inputs, storage_options)
    w_at = Location.resolve(weights, weights_storage_options, storage_options)
    o_at = Location.resolve(outputs, outputs_storage_options, storage_options)
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
        report = _synthesize_zarr(model, w_at, src, o_at, cfg.batch or ZARR_BATCH, client, scheduler, overwrite,
                                  progress)
    else:
        report = _synthesize_photos(model, w_at, src, o_at, cfg, client, scheduler, overwrite, progress,
                                    preview, preview_rows)
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


def convert_zarr_batch(job: ZarrBatchJob, b: int) -> int:
    """Convert samples ``[b * batch, (b + 1) * batch)`` and flag the batch done."""
    import zarr

    model = cached_model(job.weights)
    src = zarr.open_array(open_store(job.inputs, read_only=True), path="image", mode="r")
    s0, s1 = b * job.batch, min(job.n, (b + 1) * job.batch)
    out = predict_batch(model, np.asarray(src[s0:s1]))
    group = open_group(job.outputs, "r+")
    for t, name in enumerate(model.targets_):
        group["image"][t, s0:s1] = out[name]
    group["batch_done"][b] = 1
    return s1 - s0


def _convert_zarr_task(args) -> int:
    return convert_zarr_batch(*args)


def _synthesize_zarr(model: StoredMaskedRidge, w_at: Location, src: Location, o_at: Location, batch: int,
                     client, scheduler, overwrite: bool, progress: bool) -> SynthesisReport:
    ds = open_faces(src)  # committed samples of a faces.zarr, or any Zarr
    if "image" not in ds or ds["image"].dims != ("sample", "y", "x", "channel"):
        raise ValueError(f"{src.url!r} has no image(sample, y, x, channel) array to synthesise from")
    if tuple(ds["image"].shape[1:]) != tuple(model.image_shape_):
        raise ValueError(
            f"inputs {src.url!r} hold {ds['image'].shape[1:]} images but the weights expect "
            f"{model.image_shape_} (H, W, C); ingest them at the model's size and colour mode"
        )
    fingerprint = model.meta["fingerprint"]
    done = _zarr_template(ds, model, o_at, batch, fingerprint, src, overwrite)
    n = ds.sizes["sample"]
    todo = [b for b in range(len(done)) if not done[b]]
    job = ZarrBatchJob(w_at, src, o_at, batch, n)
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
                   overwrite: bool) -> np.ndarray:
    import dask.array as da
    import xarray as xr

    n, H, W, C = ds["image"].shape
    nb = -(-n // batch)
    group = None if overwrite else open_group(o_at, "r+")
    if group is not None:
        meta = dict(group.attrs).get("mlrdist", {})
        if meta.get("weights_fingerprint") == fingerprint and meta.get("batch") == batch and meta.get("n") == n:
            return np.asarray(group["batch_done"][...]).astype(bool)
        raise ValueError(
            f"outputs {o_at.url!r} already hold a synthesis from other weights or inputs; "
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
        "batch": batch, "n": n, "complete": False,
    }
    out.to_zarr(open_store(o_at), mode="w", compute=False, consolidated=False)
    return np.zeros(nb, dtype=bool)


# --------------------------------------------------------------------------- photo collections


@dataclass(frozen=True)
class PhotoBatchJob:
    weights: Location
    inputs: Location
    tree: Location
    fingerprint: str
    config: SynthesisConfig


def _read_photos(batch: list[InputFile], where: Location, colour: str) -> list:
    """(image (H, W, C) uint8, template points or None) per input, or the error met."""
    from .align import read_tem

    tems = [f.tem for f in batch if f.tem is not None]
    raw = read_batch([f.source for f in batch] + tems, storage_options=where.storage_options)
    tem_bytes = dict(zip([t.url for t in tems], raw[len(batch):], strict=True))
    out: list = []
    for f, data in zip(batch, raw[: len(batch)], strict=True):
        try:
            if isinstance(data, Exception):
                raise data
            image = decode_array(data, colour=colour)
            points = None
            if f.tem is not None and not isinstance(tem_bytes[f.tem.url], Exception):
                points = read_tem(tem_bytes[f.tem.url])
            out.append((image, points))
        except Exception as exc:  # noqa: BLE001 - reported per file
            out.append(exc)
    return out


def convert_photo_batch(job: PhotoBatchJob, batch: list[InputFile]) -> dict:
    """Convert one batch of photos; returns ``{"done": n, "failed": {...}, "no_face": [...]}``."""
    from .photo import find_eyes, synthesize_photo

    cfg = job.config
    model = cached_model(job.weights)
    fs, _ = filesystem(job.tree)
    H, W, C = model.image_shape_
    failed: dict[str, str] = {}
    no_face: list[str] = []
    entries: dict[str, dict] = {}
    aligned, ok = [], []
    for item, got in zip(batch, _read_photos(batch, job.inputs, "gray" if C == 1 else "rgb"), strict=True):
        if isinstance(got, Exception):
            failed[item.url] = f"{type(got).__name__}: {got}"
            continue
        image, points = got
        if cfg.align in ("none", "resize"):
            if cfg.align == "resize":
                image = to_array(fit_resize(from_array(image), (W, H)))
            if image.shape[:2] != (H, W):
                failed[item.url] = (
                    f"image is {image.shape[1]}x{image.shape[0]} but the weights expect {W}x{H}: "
                    "align the photos (--align auto) or resize them (--align resize)"
                )
                continue
            aligned.append(image)
            ok.append(item)
            continue
        try:
            outs = synthesize_photo(model, image, find_eyes(image, points, cfg.align))
        except LookupError:
            no_face.append(item.url)
            entries[item.relpath] = {"identity": item.identity, "status": "no_face"}
            if cfg.no_face == "copy":
                _write_outputs(fs, job, item, {t: image for t in model.targets_})
            continue
        except (ImportError, ValueError) as exc:
            failed[item.url] = f"{type(exc).__name__}: {exc}"
            continue
        _write_outputs(fs, job, item, outs)
        entries[item.relpath] = {"identity": item.identity, "status": "ok"}
    if aligned:
        preds = predict_batch(model, np.stack(aligned))
        for i, item in enumerate(ok):
            _write_outputs(fs, job, item, {t: p[i] for t, p in preds.items()})
            entries[item.relpath] = {"identity": item.identity, "status": "ok"}
    # failures are reported, not recorded: the next run tries (and reports) them again
    batch_id = hashlib.sha1("\n".join(sorted(b.relpath + b.identity for b in batch)).encode()).hexdigest()
    out_io.write_manifest(fs, job.tree.url, batch_id, entries, job.fingerprint)
    return {"done": sum(e["status"] == "ok" for e in entries.values()), "failed": failed, "no_face": no_face}


def _write_outputs(fs, job: PhotoBatchJob, item: InputFile, outs: dict[str, np.ndarray]) -> None:
    from .io.images import encode_image

    for target, image in outs.items():
        path = out_io.output_path(job.tree.url, target, item.relpath, job.config.format)
        fmt, _ = out_io.image_format(path)
        out_io.write_atomic(fs, path, encode_image(image, fmt))


def _convert_photo_task(args) -> dict:
    return convert_photo_batch(*args)


def _synthesize_photos(model: StoredMaskedRidge, w_at: Location, src: Location, o_at: Location,
                       cfg: SynthesisConfig, client, scheduler, overwrite: bool, progress: bool,
                       preview: str | None, preview_rows: int) -> SynthesisReport:
    from tqdm import tqdm

    from ._validation import check_positive_int

    if preview:
        preview_rows = check_positive_int(preview_rows, "preview_rows", " with a preview")
    if cfg.align is None:
        cfg = build_config(SynthesisConfig, cfg, align="none")
    batch = cfg.batch or PHOTO_BATCH
    archive = o_at.suffix == ".zip"
    tree = Location(o_at.url[: -len(".zip")] + ".parts", o_at.storage_options) if archive else o_at
    fingerprint = model.meta["fingerprint"]
    failed: dict[str, str] = {}
    files = iter_inputs(src, failed)
    fs, _ = filesystem(tree)
    done = {} if overwrite else out_io.read_manifests(fs, tree.url, fingerprint)
    job = PhotoBatchJob(w_at, src, tree, fingerprint, cfg)
    counts = {"inputs": 0, "skipped": 0}
    shown: list[InputFile] = []  # preview candidates: the first photos listed

    def batches() -> Iterator[tuple[PhotoBatchJob, list[InputFile]]]:
        todo: list[InputFile] = []
        for f in files:
            counts["inputs"] += 1
            if len(shown) < 4 * preview_rows:
                shown.append(f)
            if done.get(f.relpath) == f.identity:
                counts["skipped"] += 1
                continue
            todo.append(f)
            if len(todo) == batch:
                yield job, todo
                todo = []
        if todo:
            yield job, todo

    converted, faceless = 0, []
    # the collection's size is known only once listed: the bar counts photos done and shows
    # how many were listed so far
    bar = tqdm(desc="synthesising photos", unit="photo", disable=not progress, file=sys.stderr)
    with open_executor(client, scheduler) as ex, bar:
        # the listing streams into the task window: the driver holds one directory's
        # entries and the tasks in flight, however large the collection
        for _, r in ex.imap(_convert_photo_task, batches(), key=f"mlrdist-photos-{fingerprint[:8]}"):
            converted += r["done"]
            failed.update(r["failed"])
            faceless += r["no_face"]
            bar.update(r["done"] + len(r["failed"]) + len(r["no_face"]))
            bar.set_postfix(listed=counts["inputs"], skipped=counts["skipped"], refresh=False)
        dashboard = ex.dashboard
    done.clear()
    if archive:
        out_io.pack_zip(fs, tree.url, *filesystem(o_at))
    if preview:
        _write_preview(shown, tree, list(model.targets_), failed, faceless, preview, src, cfg.format,
                       preview_rows, "gray" if model.image_shape_[2] == 1 else "rgb")
    if archive and not cfg.keep_parts and fs.exists(tree.url):
        fs.rm(tree.url, recursive=True)
    return SynthesisReport(
        outputs=o_at.url, targets=list(model.targets_), n_inputs=counts["inputs"], converted=converted,
        skipped_done=counts["skipped"], failed=failed, no_face=faceless, dashboard=dashboard,
    )


def _write_preview(files, tree: Location, targets, failed, faceless, path, src: Location, fmt, rows, colour,
                   cell=192) -> None:
    """PNG grid of the first converted photos: input | one column per target."""
    from .report import application_grid

    shown = [f for f in files if f.url not in failed and f.url not in set(faceless)][:rows]
    if not shown:
        return
    fs, _ = filesystem(tree)
    inputs = [letterbox(img, cell) for img, _ in _read_photos(shown, src, colour)]
    preds = {
        t: np.stack([letterbox(decode_array(fs.cat_file(out_io.output_path(tree.url, t, f.relpath, fmt)), colour), cell)
                     for f in shown])
        for t in targets
    }
    labels = [f.relpath.rsplit("/", 1)[-1].rsplit(".", 1)[0][-9:] for f in shown]
    application_grid(np.stack(inputs), preds, labels, path, cell=cell)
