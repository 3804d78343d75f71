"""Stage 3 for photo collections: batches of photos converted on workers, outputs and
manifests written, reruns skipping what is done, a preview grid of face crops.

A collection is a folder tree, glob, zip/tar archive or ``s3://`` prefix; outputs are a
mirrored tree ``{outputs}/{target}/{relative path}`` (format kept or chosen), or a zip of that
tree (built in ``{name}.parts`` next to it, streamed into the archive at the end, then removed
unless ``keep_parts``). With ``align`` ``auto``/``landmarks``/``detector`` every face is found,
changed and put back at the photo's resolution (:mod:`mlrdist.photo`): pixels outside the
faces keep their values, a JPEG is written with the input's own quantization tables and
chroma subsampling, and a photo without a face is copied byte for byte. ``none`` takes photos
as aligned faces of the model's size, ``resize`` centre-crops them to it.

A folder is listed one directory at a time as task slots free up, so the driver's memory does
not grow with the collection. Each finished batch writes a manifest (:mod:`mlrdist.io.outputs`)
so a rerun converts only what is new or failed. A file that cannot be read, has the wrong size
or has a face that cannot be aligned is reported with its URL and the reason (and retried on
the next run); the rest of the run completes.
"""

from __future__ import annotations

import hashlib
import heapq
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import SynthesisConfig, build_config
from .execution import open_executor
from .io import outputs as out_io
from .io.images import decode_image, encode_image, fit_resize, from_array, letterbox, to_array
from .io.location import Location
from .io.sources import InputFile, iter_inputs, read_batch
from .io.stores import filesystem
from .io.weights_store import StoredMaskedRidge, cached_model
from .photo import change_faces, locate_faces, synthesize_photos
from .report import SynthesisReport

__all__ = ["PHOTO_BATCH", "convert_photo_batch", "synthesize_collection"]

# photos per task when faces are aligned: the faces of a task are predicted together (at 32
# faces the exact kernel costs 0.72x per face of 16), and a task holds its photos decoded, so
# it also closes at PHOTO_BATCH_BYTES of files (JPEGs decode to ~10x their size: a batch of
# 24-megapixel photos holds two or three)
PHOTO_BATCH = 32
PHOTO_BATCH_BYTES = 24 << 20
ALIGNED_BATCH = 64  # photos per task when they are aligned faces already
ALIGNING = ("auto", "landmarks", "detector")


@dataclass(frozen=True)
class PhotoBatchJob:
    weights: Location
    inputs: Location
    tree: Location
    fingerprint: str
    config: SynthesisConfig


@dataclass
class _Photo:
    """A photo read and decoded: its bytes, pixels (its own mode), how it was encoded, and
    its template's points."""

    data: bytes
    image: np.ndarray
    format: str | None
    encoding: dict
    points: np.ndarray | None


def _read_photos(batch: list[InputFile], where: Location, colour: str) -> list[_Photo | Exception]:
    """Each input read and decoded, or the error met."""
    from .align import read_tem

    tems = [f.tem for f in batch if f.tem is not None]
    raw = read_batch([f.source for f in batch] + tems, storage_options=where.storage_options)
    tem_bytes = dict(zip([t.url for t in tems], raw[len(batch):], strict=True))
    out: list = []
    for f, data in zip(batch, raw[: len(batch)], strict=True):
        try:
            if isinstance(data, Exception):
                raise data
            dec = decode_image(data, colour=colour)
            points = None
            if f.tem is not None and not isinstance(tem_bytes[f.tem.url], Exception):
                points = read_tem(tem_bytes[f.tem.url])
            out.append(_Photo(data, to_array(dec.image), dec.format, dec.encoding, points))
        except Exception as exc:  # noqa: BLE001 - reported per file
            out.append(exc)
    return out


def _write_outputs(fs, job: PhotoBatchJob, item: InputFile, outs: dict[str, np.ndarray], photo: _Photo) -> None:
    for target, image in outs.items():
        path = out_io.output_path(job.tree.url, target, item.relpath, job.config.format)
        fmt, _ = out_io.image_format(path)
        like = photo.encoding if fmt == photo.format else None
        out_io.write_atomic(fs, path, encode_image(image, fmt, like=like))


def _copy_outputs(fs, job: PhotoBatchJob, item: InputFile, targets, photo: _Photo) -> None:
    """A photo left as it was: its own bytes when the output format is the input's."""
    for target in targets:
        path = out_io.output_path(job.tree.url, target, item.relpath, job.config.format)
        fmt, _ = out_io.image_format(path)
        data = photo.data if fmt == photo.format else encode_image(photo.image, fmt, like=None)
        out_io.write_atomic(fs, path, data)


def convert_photo_batch(job: PhotoBatchJob, batch: list[InputFile]) -> dict:
    """Convert one batch of photos (on a worker).

    Returns ``{"failed": {url: reason}, "no_face": [url], "photos": [(url, relative path,
    faces found, faces converted, first face box or None)]}`` for the photos converted.
    """
    cfg = job.config
    model = cached_model(job.weights)
    fs, _ = filesystem(job.tree)
    aligning = cfg.align in ALIGNING
    colour = "auto" if aligning else ("gray" if model.image_shape_[2] == 1 else "rgb")
    out: dict[str, Any] = {"failed": {}, "no_face": [], "photos": []}
    entries: dict[str, dict] = {}
    batch_id = hashlib.sha1("\n".join(sorted(b.relpath + b.identity for b in batch)).encode()).hexdigest()
    pending = out_io.write_pending(fs, job.tree.url, batch_id, [b.relpath for b in batch])
    photos = [(item, got) for item, got in zip(batch, _read_photos(batch, job.inputs, colour), strict=True)]
    for item, got in photos:
        if isinstance(got, Exception):
            out["failed"][item.url] = f"{type(got).__name__}: {got}"
    photos = [(item, got) for item, got in photos if not isinstance(got, Exception)]
    if aligning:
        _convert_faces(job, model, fs, photos, out, entries)
    else:
        _convert_aligned(job, model, fs, photos, out, entries)
    # failures are reported, not recorded: the next run tries (and reports) them again
    out_io.write_manifest(fs, job.tree.url, batch_id, entries, job.fingerprint)
    fs.rm(pending)
    return out


def _convert_faces(job: PhotoBatchJob, model, fs, photos, out: dict, entries: dict) -> None:
    cfg = job.config
    ready = []
    for item, photo in photos:
        try:
            faces, note = locate_faces(photo.image, photo.points, cfg.align, cfg.template_layouts)
        except ImportError as exc:
            out["failed"][item.url] = str(exc)
            continue
        if faces:
            ready.append((item, photo, faces))
        elif note and photo.points is not None:  # a template was given, yet no face could be aligned
            out["failed"][item.url] = f"no face aligned: {note}"
        else:
            out["no_face"].append(item.url)
            entries[item.relpath] = {"identity": item.identity, "status": "no_face", "faces": 0}
            if cfg.no_face == "copy":
                _copy_outputs(fs, job, item, model.targets_, photo)
    results = synthesize_photos(model, [p.image for _, p, _ in ready], [f for _, _, f in ready],
                                detail=cfg.detail or "keep", strength=cfg.strength)
    for (item, photo, faces), res in zip(ready, results, strict=True):
        if not res.converted:
            out["failed"][item.url] = "no face converted: " + "; ".join(res.failed)
            continue
        _write_outputs(fs, job, item, res.outputs, photo)
        entries[item.relpath] = {"identity": item.identity, "status": "ok", "faces": len(faces),
                                 "converted": res.converted}
        out["photos"].append((item.url, item.relpath, len(faces), res.converted, res.boxes[0]))


def _convert_aligned(job: PhotoBatchJob, model, fs, photos, out: dict, entries: dict) -> None:
    """Photos that are faces of the model's size already (``none``) or made so (``resize``)."""
    cfg = job.config
    H, W, _ = model.image_shape_
    ok = []
    for item, photo in photos:
        if cfg.align == "resize":
            photo.image = to_array(fit_resize(from_array(photo.image), (W, H)))
        if photo.image.shape[:2] != (H, W):
            out["failed"][item.url] = (
                f"image is {photo.image.shape[1]}x{photo.image.shape[0]} but the weights expect {W}x{H}: "
                "align the photos (--align auto) or resize them (--align resize)"
            )
            continue
        ok.append((item, photo))
    if not ok:
        return
    stack = np.stack([p.image for _, p in ok])
    preds = change_faces(model, stack, cfg.detail or "keep", cfg.strength)
    for i, (item, photo) in enumerate(ok):
        _write_outputs(fs, job, item, {t: p[i] for t, p in preds.items()}, photo)
        entries[item.relpath] = {"identity": item.identity, "status": "ok", "faces": 1, "converted": 1}
        out["photos"].append((item.url, item.relpath, 1, 1, None))


def _convert_photo_task(args) -> dict:
    return convert_photo_batch(*args)


def synthesize_collection(model: StoredMaskedRidge, w_at: Location, src: Location, o_at: Location,
                          cfg: SynthesisConfig, client, scheduler, overwrite: bool, progress: bool,
                          preview: str | None, preview_rows: int, preview_cell: int = 320) -> SynthesisReport:
    """Convert a photo collection (see the module docstring); called by
    :func:`mlrdist.synthesize.synthesize`."""
    from tqdm import tqdm

    from ._validation import check_positive_int

    if preview:
        preview_rows = check_positive_int(preview_rows, "preview_rows", " with a preview")
        preview_cell = check_positive_int(preview_cell, "preview_cell", " with a preview")
    if cfg.align is None:
        cfg = build_config(SynthesisConfig, cfg, align="auto")
    batch = cfg.batch or (PHOTO_BATCH if cfg.align in ALIGNING else ALIGNED_BATCH)
    archive = o_at.suffix == ".zip"
    tree = Location(o_at.url[: -len(".zip")] + ".parts", o_at.storage_options) if archive else o_at
    fingerprint = model.meta["fingerprint"]
    report = SynthesisReport(outputs=o_at.url, targets=list(model.targets_), n_inputs=0, converted=0,
                             skipped_done=0)
    files = iter_inputs(src, report.failed)
    fs, _ = filesystem(tree)
    done = {} if overwrite else out_io.read_manifests(fs, tree.url, fingerprint)
    foreign = set() if overwrite else _check_outputs_are_ours(fs, tree, o_at, archive)
    job = PhotoBatchJob(w_at, src, tree, fingerprint, cfg)
    spread: list[tuple[int, str, str, Any]] = []  # the preview's photos: the smallest hashes seen

    def batches() -> Iterator[tuple[PhotoBatchJob, list[InputFile]]]:
        todo: list[InputFile] = []
        todo_bytes = 0
        budget = PHOTO_BATCH_BYTES if cfg.align in ALIGNING else None
        for f in files:
            report.n_inputs += 1
            if done.get(f.relpath) == f.identity:
                report.skipped_done += 1
                continue
            if foreign:
                _refuse_foreign(fs, tree, f, list(model.targets_), cfg.format, foreign)
            todo.append(f)
            todo_bytes += f.source.size or 0
            if len(todo) == batch or (budget is not None and todo_bytes >= budget):
                yield job, todo
                todo, todo_bytes = [], 0
        if todo:
            yield job, todo

    # the collection's size is known only once listed: the bar counts photos done and shows
    # how many were listed so far
    bar = tqdm(desc="synthesising photos", unit="photo", disable=not progress, file=sys.stderr)
    with open_executor(client, scheduler) as ex, bar:
        # the listing streams into the task window: the driver holds one directory's
        # entries and the tasks in flight, however large the collection
        for _, r in ex.imap(_convert_photo_task, batches(), key=f"mlrdist-photos-{fingerprint[:8]}"):
            report.add_photos(r["photos"], r["failed"], r["no_face"])
            for url, rel, _, _, box in r["photos"]:
                _keep_spread(spread, url, rel, box, preview_rows if preview else 0)
            bar.update(len(r["photos"]) + len(r["failed"]) + len(r["no_face"]))
            bar.set_postfix(listed=report.n_inputs, skipped=report.skipped_done, refresh=False)
        report.dashboard = ex.dashboard
    done.clear()
    if archive:
        out_io.pack_zip(fs, tree.url, *filesystem(o_at))
    if preview and spread:
        shown = sorted(spread, key=lambda s: s[2])
        frame = model.image_shape_[1::-1] if cfg.align == "resize" else None
        _write_preview(shown, src, tree, list(model.targets_), cfg.format, preview, preview_cell, frame)
    if archive and not cfg.keep_parts and fs.exists(tree.url):
        fs.rm(tree.url, recursive=True)
    return report


def _check_outputs_are_ours(fs, tree: Location, o_at: Location, archive: bool) -> set[str]:
    """Refuse an existing ``.zip`` mlrdist did not write; the files of the output tree
    mlrdist did not write (each refused when an input would replace it)."""
    if archive:
        out_fs, out_path = filesystem(o_at)
        if out_fs.exists(out_path) and not out_io.is_own_archive(out_fs, out_path):
            raise ValueError(f"{o_at.url} exists and was not written by mlrdist; pass overwrite=True "
                             "(CLI: --overwrite) to replace it, or choose another output")
    return out_io.foreign_outputs(fs, tree.url)


def _refuse_foreign(fs, tree: Location, f: InputFile, targets, fmt, foreign: set[str]) -> None:
    for t in targets:
        path = fs._strip_protocol(out_io.output_path(tree.url, t, f.relpath, fmt))
        if path in foreign:
            raise ValueError(f"{path} exists and was not written by mlrdist (it would be replaced by the "
                             f"conversion of {f.url}); pass overwrite=True (CLI: --overwrite) to replace it, "
                             "or choose another output")


def _keep_spread(heap: list, url: str, rel: str, box, rows: int) -> None:
    """Keep the ``rows`` photos whose relative paths hash smallest: a spread over the whole
    collection, chosen while it streams, the same on every run and wherever the collection
    lies (a local copy and its S3 original give the same preview)."""
    if rows <= 0:
        return
    key = -int(hashlib.sha1(rel.encode()).hexdigest()[:12], 16)
    entry = (key, url, rel, box)
    if len(heap) < rows:
        heapq.heappush(heap, entry)
    elif key > heap[0][0]:
        heapq.heapreplace(heap, entry)


def _face_crop(image: np.ndarray, box) -> np.ndarray:
    """A square crop around a face box (margin 15%), or the whole image without a box."""
    if box is None:
        return image
    x0, y0, x1, y1 = box
    side = int(1.15 * max(x1 - x0, y1 - y0))
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    H, W = image.shape[:2]
    xa, ya = max(0, min(cx - side // 2, W - side)), max(0, min(cy - side // 2, H - side))
    return image[ya : ya + side, xa : xa + side]


def _write_preview(shown, src: Location, tree: Location, targets, fmt, path, cell: int = 320,
                   frame: tuple[int, int] | None = None) -> None:
    """PNG grid of converted photos spread over the collection: the face as it came in,
    then as each target, large; ``frame`` (W, H): inputs centre-cropped as they were converted."""
    from .io.stores import read_bytes
    from .report import application_grid

    fs, _ = filesystem(tree)
    rows_in, rows_out, labels = [], {t: [] for t in targets}, []
    for _, url, rel, box in shown:
        try:
            image = to_array(decode_image(read_bytes(url, src.storage_options), colour="auto").image)
            outs = {t: to_array(decode_image(fs.cat_file(out_io.output_path(tree.url, t, rel, fmt)), colour="auto").image)
                    for t in targets}
        except (OSError, ValueError):  # changed or gone since: not shown
            continue
        if frame is not None:
            image = to_array(fit_resize(from_array(image), frame))
        rows_in.append(letterbox(_face_crop(image, box), cell))
        for t in targets:
            rows_out[t].append(letterbox(_face_crop(outs[t], box), cell))
        labels.append(rel)
    if rows_in:
        application_grid(np.stack(rows_in), {t: np.stack(v) for t, v in rows_out.items()}, labels, path, cell=cell)
