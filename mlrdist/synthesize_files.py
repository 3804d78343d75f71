"""Synthesis for photo collections: a directory tree, glob or ``s3://`` prefix of images
in, a mirrored tree of images out (``{outputs}/{target}/{relative path}``, format kept or
chosen), or a zip archive of that tree (built in ``{name}.parts`` next to it, streamed into
the archive at the end, then removed unless ``keep_parts``).

Inputs must be aligned to the weights' size (``align="none"``, the default) or are aligned
per face with the weights' canonical eye positions and pasted back (``align`` other than
``"none"``, see :mod:`mlrdist.paste`). Batches of files are Dask tasks; completion manifests
(see :mod:`mlrdist.io.outputs`) make reruns skip what is done. A folder is listed one
directory at a time as task slots free up, so the driver's memory does not grow with the
collection (a rerun holds the finished files' names and identities from the manifests;
a glob or an archive is listed whole). A file that cannot be read,
has the wrong size or (when aligning) shows no face is reported with its URL and the reason,
and the rest of the run completes.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .execution import open_executor
from .io.outputs import (
    encode_image,
    image_format,
    open_atomic,
    output_path,
    read_manifests,
    write_atomic,
    write_manifest,
)
from .preprocess import check_positive_int
from .synthesize import SynthesisReport, _options_key, cached_model, predict_batch

__all__ = ["synthesize_files"]

log = logging.getLogger(__name__)
FILE_BATCH = 64
_PACK_GROUP = 64  # output files read at once while zipping
ALIGN_MODES = ("none", "resize", "auto", "landmarks", "detector")


@dataclass(frozen=True, slots=True)
class InputFile:
    source: Any  # mlrdist.io.sources.SourceFile
    tem: Any = None  # its .tem landmark sidecar, if any

    @property
    def url(self) -> str:
        return self.source.url

    @property
    def relpath(self) -> str:
        return self.source.name

    @property
    def identity(self) -> str:
        """Changes when the file does (its size): a changed file is converted again."""
        return str(self.source.size)


@dataclass(frozen=True)
class FileBatchJob:
    weights: str
    weights_options: dict | None
    inputs_options: dict | None
    outputs: str
    outputs_options: dict | None
    fingerprint: str
    fmt: str | None
    align: str
    no_face: str


def _iter_inputs(inputs: str, options: dict | None, rejected: dict[str, str]) -> Iterator[InputFile]:
    """The images under ``inputs`` with their ``.tem`` templates, one directory at a time;
    archive members refused are added to ``rejected`` (url -> reason) as they are met."""
    from .io.sources import iter_listings

    parts = iter_listings(inputs, storage_options=options)  # checks ``inputs`` now

    def files() -> Iterator[InputFile]:
        for part in parts:
            rejected.update(part.rejected)
            tems = part.sidecars
            for f in part.images:
                yield InputFile(f, tems.get(posixpath.splitext(f.name)[0]))

    return files()


def _read(batch: list[InputFile], options: dict | None, colour: str) -> list[tuple[np.ndarray, np.ndarray | None] | Exception]:
    """(image (H, W, C) uint8, template points or None) per input, or the error met."""
    from .align import read_tem
    from .io.images import decode_image, to_array
    from .io.sources import read_batch

    tems = [f.tem for f in batch if f.tem is not None]
    raw = read_batch([f.source for f in batch] + tems, storage_options=options)
    tem_bytes = dict(zip([t.url for t in tems], raw[len(batch):], strict=True))
    out: list = []
    for f, data in zip(batch, raw[: len(batch)], strict=True):
        try:
            if isinstance(data, Exception):
                raise data
            image = to_array(decode_image(data, colour=colour).image)
            points = None
            if f.tem is not None and not isinstance(tem_bytes[f.tem.url], Exception):
                points = read_tem(tem_bytes[f.tem.url])
            out.append((image, points))
        except Exception as exc:  # noqa: BLE001 - reported per file
            out.append(exc)
    return out


def find_eyes(image: np.ndarray, points: np.ndarray | None, align: str) -> list[np.ndarray]:
    """Eye centres of the faces in a photo: from its template (``landmarks``), a detector
    (``detector``), or the template when there is one and the detector otherwise (``auto``).

    Raises LookupError when no face is found and ImportError when a detector is needed but
    the ``align`` extra is not installed.
    """
    if points is not None and align in ("landmarks", "auto"):
        return [points[:2]]
    if align == "landmarks":
        raise LookupError("no landmark template (.tem) next to the photo")
    from PIL import Image

    from .align import detect_all_eyes

    try:
        return detect_all_eyes(Image.fromarray(image[..., 0] if image.shape[2] == 1 else image))
    except ValueError as exc:
        raise LookupError(str(exc)) from None


def convert_file_batch(job: FileBatchJob, batch: list[InputFile]) -> dict:
    """Convert one batch of files; returns ``{"done": n, "failed": {...}, "no_face": [...]}``."""
    import fsspec

    model = cached_model(job.weights, _options_key(job.weights_options))
    fs, _ = fsspec.core.url_to_fs(job.outputs, **(job.outputs_options or {}))
    H, W, C = model.image_shape_
    failed: dict[str, str] = {}
    no_face: list[str] = []
    entries: dict[str, dict] = {}
    aligned, ok = [], []
    for item, got in zip(batch, _read(batch, job.inputs_options, "gray" if C == 1 else "rgb"), strict=True):
        if isinstance(got, Exception):
            failed[item.url] = f"{type(got).__name__}: {got}"
            continue
        image, points = got
        if job.align in ("none", "resize"):
            if job.align == "resize":
                image = centre_crop_resize(image, (H, W))
            if image.shape[:2] != (H, W):
                failed[item.url] = (
                    f"image is {image.shape[1]}x{image.shape[0]} but the weights expect {W}x{H}: "
                    "align the photos (--align auto) or resize them (--align resize)"
                )
                continue
            aligned.append(image)
            ok.append(item)
            continue
        from .paste import synthesize_photo

        try:
            outs = synthesize_photo(model, image, find_eyes(image, points, job.align))
        except LookupError:
            no_face.append(item.url)
            entries[item.relpath] = {"identity": item.identity, "status": "no_face"}
            if job.no_face == "copy":
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
    write_manifest(fs, job.outputs, batch_id, entries, job.fingerprint)
    return {"done": sum(e["status"] == "ok" for e in entries.values()), "failed": failed, "no_face": no_face}


def centre_crop_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop the centre to the target aspect ratio, then resize (bicubic) to ``size``."""
    from PIL import Image

    H, W = size
    h, w = img.shape[:2]
    scale = min(h / H, w / W)
    ch, cw = int(round(H * scale)), int(round(W * scale))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = img[y0 : y0 + ch, x0 : x0 + cw]
    pil = Image.fromarray(crop[..., 0] if crop.shape[2] == 1 else crop)
    out = np.asarray(pil.resize((W, H), Image.BICUBIC))
    return out if out.ndim == 3 else out[..., None]


def _write_outputs(fs, job: FileBatchJob, item: InputFile, outs: dict[str, np.ndarray]) -> None:
    for target, image in outs.items():
        path = output_path(job.outputs, target, item.relpath, job.fmt)
        fmt, _ = image_format(path)
        write_atomic(fs, path, encode_image(image, fmt))


def _convert_task(args) -> dict:
    return convert_file_batch(*args)


def synthesize_files(
    weights: str,
    inputs: str,
    outputs: str,
    *,
    align: str = "none",
    no_face: str = "copy",
    format: str | None = None,  # noqa: A002 - the CLI's --format
    batch: int = FILE_BATCH,
    client: Any = None,
    scheduler: str | None = None,
    overwrite: bool = False,
    storage_options: dict | None = None,
    weights_storage_options: dict | None = None,
    outputs_storage_options: dict | None = None,
    progress: bool = False,
    preview: str | None = None,
    preview_rows: int = 12,
    keep_parts: bool = False,
) -> SynthesisReport:
    """Photo collection -> mirrored image tree (see the module docstring).

    Parameters
    ----------
    align : {"none", "resize", "auto", "landmarks", "detector"}
        ``none``: inputs are already aligned at the weights' size; ``resize``: centre-crop
        and resize each photo to that size (pre-cropped faces, animal photos). Otherwise
        every face is aligned like the training faces, synthesised and blended back into
        the photo.
    no_face : {"copy", "skip"}
        What to do with a photo without a face when aligning: copy it through unchanged or
        write nothing; either way it is reported.
    format : str, optional
        Output format (``png``, ``jpg``, ...); default: the input's own.
    overwrite : bool
        Convert everything again (ignore the completion manifests).
    preview : str, optional
        Write a PNG grid (input | each target) of the first ``preview_rows`` converted
        photos to this local path.
    keep_parts : bool
        For a ``.zip`` output: keep the image tree ``{name}.parts`` it is built in, with its
        completion manifests, so that a rerun converts only new or failed inputs. By default
        the tree is removed once the archive is written, and a rerun converts everything.
    """
    import fsspec

    from .train import load_weights

    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    if no_face not in ("copy", "skip"):
        raise ValueError(f"no_face must be 'copy' or 'skip', got {no_face!r}")
    if format is not None and "." + format.lower().lstrip(".") not in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"):
        raise ValueError(f"format must be one of png, jpg, webp, tif, bmp; got {format!r}")
    batch = check_positive_int(batch, "batch")
    if preview:
        preview_rows = check_positive_int(preview_rows, "preview_rows", " with a preview")
    t0 = time.perf_counter()
    w_opts = weights_storage_options if weights_storage_options is not None else storage_options
    o_opts = outputs_storage_options if outputs_storage_options is not None else storage_options
    archive = outputs.endswith(".zip")
    tree = outputs[: -len(".zip")] + ".parts" if archive else outputs
    model = load_weights(weights, w_opts)
    fingerprint = model.meta["fingerprint"]
    failed: dict[str, str] = {}
    files = _iter_inputs(inputs, storage_options, failed)
    fs, _ = fsspec.core.url_to_fs(tree, **(o_opts or {}))
    done = {} if overwrite else read_manifests(fs, tree, fingerprint)
    job = FileBatchJob(weights, w_opts, storage_options, tree, o_opts, fingerprint, format, align, no_face)
    counts = {"inputs": 0, "skipped": 0}
    shown: list[InputFile] = []  # preview candidates: the first photos listed

    def batches() -> Iterator[tuple[FileBatchJob, list[InputFile]]]:
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
        for _, r in ex.imap(_convert_task, batches(), key=f"mlrdist-photos-{fingerprint[:8]}"):
            converted += r["done"]
            failed.update(r["failed"])
            faceless += r["no_face"]
            bar.update(r["done"] + len(r["failed"]) + len(r["no_face"]))
            bar.set_postfix(listed=counts["inputs"], skipped=counts["skipped"], refresh=False)
        dashboard = ex.dashboard
    done.clear()
    if archive:
        _pack_zip(fs, tree, outputs, o_opts)
    if preview:
        write_preview(shown, tree, list(model.targets_), failed, faceless, preview, storage_options, o_opts,
                      format, preview_rows, "gray" if model.image_shape_[2] == 1 else "rgb")
    if archive and not keep_parts and fs.exists(tree):
        fs.rm(tree, recursive=True)
    return SynthesisReport(
        outputs=str(outputs), targets=list(model.targets_), n_inputs=counts["inputs"], converted=converted,
        skipped_done=counts["skipped"], failed=failed, no_face=faceless,
        seconds=time.perf_counter() - t0, dashboard=dashboard,
    )


def letterbox(image: np.ndarray, side: int) -> np.ndarray:
    """Fit ``image`` into a white ``side x side`` square, keeping its aspect ratio."""
    from PIL import Image

    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    pil = Image.fromarray(rgb)
    pil.thumbnail((side, side), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (side, side), "white")
    canvas.paste(pil, ((side - pil.size[0]) // 2, (side - pil.size[1]) // 2))
    return np.asarray(canvas)


def write_preview(files, tree, targets, failed, faceless, path, in_opts, out_opts, fmt, rows, colour, cell=192) -> None:
    """PNG grid of the first converted photos: input | one column per target."""
    import fsspec

    from .evaluate import application_grid
    from .io.images import decode_image, to_array

    shown = [f for f in files if f.url not in failed and f.url not in set(faceless)][:rows]
    if not shown:
        return
    fs, _ = fsspec.core.url_to_fs(tree, **(out_opts or {}))
    inputs = [letterbox(img, cell) for img, _ in (r for r in _read(shown, in_opts, colour))]
    preds = {
        t: np.stack([letterbox(to_array(decode_image(fs.cat_file(output_path(tree, t, f.relpath, fmt)), colour=colour).image), cell) for f in shown])
        for t in targets
    }
    application_grid(np.stack(inputs), preds, [posixpath.splitext(posixpath.basename(f.relpath))[0][-9:] for f in shown], path, cell=cell)


def _pack_zip(fs, tree: str, archive: str, options: dict | None) -> None:
    """Zip the finished output tree (manifests excluded) in a stable order, streamed into
    the archive: the driver holds one group of files, not the archive."""
    import zipfile

    import fsspec

    base = fs._strip_protocol(tree.rstrip("/"))
    members = [(p, posixpath.relpath(p, base)) for p in sorted(fs.find(base))]
    members = [(p, rel) for p, rel in members if not (rel.startswith("_mlrdist/") or posixpath.basename(rel).startswith("."))]
    out_fs, out_path = fsspec.core.url_to_fs(archive, **(options or {}))
    with open_atomic(out_fs, out_path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(0, len(members), _PACK_GROUP):
            group = members[i : i + _PACK_GROUP]
            # cat_ranges: concurrent on object stores, and no glob expansion of "[", "*", "?"
            got = fs.cat_ranges([p for p, _ in group], None, None, on_error="return")
            for (_, rel), data in zip(group, got, strict=True):
                if isinstance(data, BaseException):
                    raise data
                zf.writestr(rel, data)

