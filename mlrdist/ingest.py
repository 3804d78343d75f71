"""Stage 1: image files (folders, globs, archives, s3://) -> faces.zarr, aligned and resized.

faces.zarr (an xarray Dataset, zarr 3, ``consolidated=False``)::

    image       (sample, y, x, channel) uint8, chunks (<=256, tile, tile, C), zstd
    subject     (sample) str          expression (sample) str
    source      (sample) str, the original file's URL
    digest      (sample) str, sha256 of the original file's bytes (the key of idempotence)
    attrs       size [H, W], colour "rgb"|"gray", alignment {method, eyes, margin, ...},
                citation, mlrdist_version, n_committed

Work runs on Dask in batches of files (a subject's files always share a batch, so a smiling
shot can be registered to the same person's neutral one), a few batches per worker per wave;
after each wave the driver appends the new rows. Appending is crash-consistent: the arrays
are grown and written first, and ``n_committed`` is raised last; :func:`open_faces` reads
only committed rows, and the next ingest cuts any uncommitted tail before appending.
Re-running adds nothing (known digests are skipped); a grown source adds only new files.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import re
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .align import AlignSpec, align_image, read_tem, register_pair
from .io.images import ImageDecodeError, decode_image, to_array
from .io.sources import Listing, SourceFile, list_sources, read_batch

__all__ = ["ALIGN_MODES", "LABEL_PRESETS", "FileRecord", "IngestReport", "ingest_images", "open_faces"]

ALIGN_MODES = ("auto", "landmarks", "detector", "none")
LABEL_PRESETS = {
    # Face Research Lab London Set: neutral/NNN_03.jpg, smiling/NNN_08.jpg
    "london": (r"(?:^|/)(?P<expression>neutral|smiling)/(?P<subject>\d{3})_(?:03|08)\.jpe?g$",
               ("neutral", "smiling")),
    # Yale faces: SS_expression.png (e.g. 01_happy.png)
    "yale": (r"(?:^|/)(?P<subject>\d{2})_(?P<expression>[a-z]+)\.(?:png|gif|pgm)$", None),
}
CITATIONS = {
    "london": "DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
              "doi:10.6084/m9.figshare.5047666.v5 (CC BY 4.0)",
    "yale": "Belhumeur, Hespanha, Kriegman, 'Eigenfaces vs. Fisherfaces', IEEE TPAMI 19(7), 1997",
}
COORDS = ("subject", "expression", "source", "digest")
NEUTRAL = ("neutral", "normal")
MIN_NCC = 0.75  # registrations correlating less are refused (large pose or scale changes)


# --------------------------------------------------------------------------- report


@dataclass
class FileRecord:
    """What happened to one file."""

    url: str
    status: str  # "ingested", "exists", "skipped"
    reason: str = ""
    subject: str | None = None
    expression: str | None = None
    method: str | None = None  # landmarks, registration, detector, none
    ncc: float | None = None  # registration correlation
    eye_error_px: float | None = None  # vs the file's own template, output pixels
    eyes: list[list[float]] | None = None  # eye centres (x, y) used, full-resolution pixels


@dataclass
class IngestReport:
    """Per-file outcome of an ingest run; ``to_json()`` for the run's report file."""

    source: str
    dest: str
    records: list[FileRecord] = field(default_factory=list)
    unpaired_subjects: dict[str, list[str]] = field(default_factory=dict)
    invalid_pairs: list[dict] = field(default_factory=list)
    n_samples: int = 0
    elapsed_s: float = 0.0
    dashboard: str | None = None

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def skipped(self) -> list[FileRecord]:
        return [r for r in self.records if r.status == "skipped"]

    @property
    def eye_errors(self) -> list[float]:
        return [r.eye_error_px for r in self.records if r.eye_error_px is not None]

    def to_json(self) -> str:
        d = asdict(self)
        d["counts"] = {s: self.count(s) for s in ("ingested", "exists", "skipped")}
        return json.dumps(d, indent=1)

    def summary(self) -> str:
        """A printable table: counts, methods, skipped files with reasons, unpaired subjects."""
        lines = [f"ingest {self.source} -> {self.dest}  ({self.elapsed_s:.1f} s)",
                 f"  {'ingested':<12}{self.count('ingested'):>6}",
                 f"  {'already in':<12}{self.count('exists'):>6}",
                 f"  {'skipped':<12}{self.count('skipped'):>6}",
                 f"  {'store size':<12}{self.n_samples:>6} samples"]
        methods = defaultdict(int)
        for r in self.records:
            if r.status == "ingested":
                methods[r.method] += 1
        lines += [f"  aligned by {m}: {n}" for m, n in sorted(methods.items())]
        nccs = [r.ncc for r in self.records if r.ncc is not None and r.status == "ingested"]
        if nccs:
            lines.append(f"  registration correlation: min {min(nccs):.3f}, median {np.median(nccs):.3f}")
        if self.eye_errors:
            lines.append(f"  residual eye error: max {max(self.eye_errors):.2f} px (output pixels)")
        if self.skipped:
            lines.append("  skipped files:")
            by = defaultdict(list)
            for r in self.skipped:
                by[r.reason.split(":")[0]].append(r.url)
            for reason, urls in sorted(by.items()):
                lines.append(f"    {reason} ({len(urls)}): " + ", ".join(urls[:3]) + (" ..." if len(urls) > 3 else ""))
        if self.unpaired_subjects:
            lines.append(f"  unpaired subjects ({len(self.unpaired_subjects)}): " + ", ".join(
                f"{s} lacks {'/'.join(m)}" for s, m in list(self.unpaired_subjects.items())[:8]))
        for p in self.invalid_pairs:
            lines.append(f"  invalid pair: subject {p['subject']} {p['expressions']}: {p['reason']}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class _Item:
    file: SourceFile
    subject: str
    expression: str
    template: SourceFile | None
    method: str  # landmarks | register | detector | none
    reference: int | None = None  # index in the batch of the image to register to


def _label_rule(labels: str, storage_options) -> tuple[Any, tuple[str, ...] | None, str]:
    """(labeller(name) -> (subject, expression) | None, expected expressions, citation)."""
    if labels in LABEL_PRESETS:
        pattern, expected = LABEL_PRESETS[labels]
        rx = re.compile(pattern)
        return _regex_labeller(rx), expected, CITATIONS[labels]
    if labels.lower().endswith(".csv"):
        return _manifest_labeller(labels, storage_options), None, ""
    try:
        rx = re.compile(labels)
    except re.error as exc:
        raise ValueError(f"labels is neither a preset {sorted(LABEL_PRESETS)}, a manifest .csv, nor a valid regex: {exc}") from None
    if not {"subject", "expression"} <= set(rx.groupindex):
        raise ValueError("a labels regex needs the named groups (?P<subject>...) and (?P<expression>...), "
                         f"got {labels!r}")
    return _regex_labeller(rx), None, ""


def _regex_labeller(rx: re.Pattern):
    def label(name: str):
        m = rx.search(name)
        return (m["subject"], m["expression"]) if m else None

    return label


def _manifest_labeller(path: str, storage_options):
    """A CSV with columns ``file`` (name relative to the source, or URL), ``subject``, ``expression``."""
    import csv
    import io

    import fsspec

    with fsspec.open(path, "rb", **(storage_options or {}) if "://" in path else {}) as f:
        rows = list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8")))
    if not rows or not {"file", "subject", "expression"} <= set(rows[0]):
        raise ValueError(f"manifest {path!r} needs the columns file, subject, expression")
    table = {r["file"].strip().lstrip("./"): (r["subject"].strip(), r["expression"].strip()) for r in rows}

    def label(name: str):
        return table.get(name) or table.get(name.rsplit("/", 1)[-1])

    return label


def _check_args(size, colour: str, align: str, batch_size: int) -> AlignSpec:
    if colour not in ("rgb", "gray"):
        raise ValueError(f"colour must be 'rgb' or 'gray', got {colour!r}")
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return AlignSpec(size=size)


def _detector_available() -> bool:
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        return False
    return True


def _plan_items(listing: Listing, label, align: str, report: IngestReport) -> list[list[_Item]]:
    """Label the images and choose each one's alignment; returns groups by subject."""
    sidecars = listing.sidecars
    groups: dict[str, list[tuple]] = defaultdict(list)
    for f in listing.images:
        lab = label(f.name)
        if lab is None:
            report.records.append(FileRecord(f.url, "skipped", "unlabelled: name matches no label pattern"))
            continue
        groups[lab[0]].append((f, lab[1], sidecars.get(f.name.rsplit(".", 1)[0])))
    if listing.images and not groups:
        examples = ", ".join(f.name for f in listing.images[:3])
        raise ValueError(
            f"none of the {len(listing.images)} images matches the labels (e.g. {examples}): pass labels "
            "(--labels) 'london', 'yale', a regex with (?P<subject>...) and (?P<expression>...), "
            "or a manifest .csv (columns file, subject, expression)"
        )
    planned, need_detector = [], 0
    for subject, members in sorted(groups.items()):
        members.sort(key=lambda m: (m[2] is None, m[0].name))  # templated images first
        has_ref = members[0][2] is not None
        items = []
        for f, expr, tem in members:
            if align == "none":
                method = "none"
            elif align == "detector":
                method = "detector"
            elif tem is not None:
                method = "landmarks"
            elif has_ref:
                method = "register"
            elif align == "landmarks":
                report.records.append(FileRecord(f.url, "skipped", "no landmarks: no .tem for it or its subject",
                                                 subject, expr))
                continue
            else:
                method = "detector"
            need_detector += method == "detector"
            items.append(_Item(f, subject, expr, tem, method, 0 if method == "register" else None))
        if items:
            planned.append(items)
    if need_detector and not _detector_available():
        raise ValueError(
            f"{need_detector} image(s) have no .tem landmarks (nor a templated image of the same subject "
            "to register to), so they need the face detector: pip install 'mlrdist[align]' "
            "(dlib-bin, face_recognition_models), or pass align='none' for pre-aligned images"
        )
    return planned


def _batches(groups: list[list[_Item]], batch_size: int) -> list[list[_Item]]:
    """Whole subject groups packed into batches of about ``batch_size`` files."""
    out, cur = [], []
    for g in groups:
        if cur and len(cur) + len(g) > batch_size:
            out.append(cur)
            cur = []
        base = len(cur)
        cur.extend(_Item(**{**asdict_shallow(it), "reference": None if it.reference is None else base + it.reference})
                   for it in g)
    if cur:
        out.append(cur)
    return out


def asdict_shallow(it: _Item) -> dict:
    return {k: getattr(it, k) for k in it.__dataclass_fields__}


# --------------------------------------------------------------------------- worker


@dataclass(frozen=True)
class _Job:
    items: list[_Item]
    spec: AlignSpec
    colour: str
    storage_options: dict | None
    known: frozenset


@dataclass
class _Result:
    images: np.ndarray  # (k, H, W, C) uint8
    coords: dict[str, list[str]]
    records: list[FileRecord]
    invalid_pairs: list[dict]


def _process_batch(job: _Job) -> _Result:
    """Read, hash, decode and align one batch of files (runs on a worker)."""
    items = job.items
    tems = [it.template for it in items if it.template is not None]
    raw = read_batch([it.file for it in items] + tems, job.storage_options)
    tem_bytes = dict(zip([t.url for t in tems], raw[len(items):], strict=True))
    digests = [hashlib.sha256(b).hexdigest() if isinstance(b, bytes) else None for b in raw[: len(items)]]
    records: list[FileRecord | None] = [None] * len(items)
    invalid = _identical_within_subject(items, digests, records)
    eyes_of: dict[int, tuple] = {}
    rows, coords = [], {k: [] for k in COORDS}
    for i, it in enumerate(items):
        if records[i] is not None:
            continue
        if isinstance(raw[i], Exception):
            records[i] = _skip(it, f"unreadable: {type(raw[i]).__name__}: {raw[i]}")
            continue
        needed_as_ref = any(o.reference == i and digests[j] not in job.known for j, o in enumerate(items) if j != i)
        if digests[i] in job.known and not needed_as_ref:
            records[i] = FileRecord(it.file.url, "exists", "digest already in the store", it.subject, it.expression)
            continue
        try:
            img, rec = _align_one(it, raw[i], tem_bytes, eyes_of, i, items, job)
        except (ImageDecodeError, ValueError, ImportError) as exc:
            records[i] = _skip(it, str(exc) if isinstance(exc, ImageDecodeError) else f"alignment failed: {exc}")
            continue
        if digests[i] in job.known:
            records[i] = FileRecord(it.file.url, "exists", "digest already in the store", it.subject, it.expression)
            continue
        records[i] = rec
        rows.append(to_array(img))
        for k, v in zip(COORDS, (it.subject, it.expression, it.file.url, digests[i]), strict=True):
            coords[k].append(v)
    H, W = job.spec.size
    C = 3 if job.colour == "rgb" else 1
    images = np.stack(rows) if rows else np.zeros((0, H, W, C), np.uint8)
    return _Result(images, coords, [r for r in records if r is not None], invalid)


def _skip(it: _Item, reason: str) -> FileRecord:
    return FileRecord(it.file.url, "skipped", reason, it.subject, it.expression)


def _identical_within_subject(items, digests, records) -> list[dict]:
    """Files of one subject with identical bytes under different expressions: the pair is
    reported invalid and only one file kept, a neutral/normal one if among them (e.g. Yale's
    04_sad.png is a copy of 04_normal.png: the sad one is skipped)."""
    by: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (it, d) in enumerate(zip(items, digests, strict=True)):
        if d is not None:
            by[(it.subject, d)].append(i)
    invalid = []
    for idx in by.values():
        if len({items[i].expression for i in idx}) < 2:
            continue
        keep = min(idx, key=lambda i: (items[i].expression not in NEUTRAL, i))
        for i in idx:
            if i == keep:
                continue
            it, kept = items[i], items[keep]
            reason = f"identical bytes to {kept.file.url} ({kept.expression}): invalid pair"
            records[i] = FileRecord(it.file.url, "skipped", f"duplicate: {reason}", it.subject, it.expression)
            invalid.append({"subject": it.subject, "expressions": [kept.expression, it.expression], "reason": reason})
    return invalid


def _align_one(it: _Item, data: bytes, tem_bytes, eyes_of, i, items, job: _Job):
    """(aligned image, record) for one file; eyes remembered for registrations to it.

    JPEGs are decoded at the smallest DCT scale (1/8 .. 1) that keeps at least the output's
    resolution around the face: DCT scaling is itself an antialiased downscale, and the
    final resize (:func:`mlrdist.align.align_image`) antialiases the rest.
    """
    spec = job.spec
    H, W = spec.size
    rec = FileRecord(it.file.url, "ingested", "", it.subject, it.expression,
                     method="registration" if it.method == "register" else it.method)
    out_eye_dist = float(np.ptp(spec.eyes_px()[:, 0]))
    if it.method == "none":
        dec = decode_image(data, colour=job.colour, min_size=(W, H))
        return _fit_resize(dec.image, (W, H)), rec
    if it.method == "landmarks":
        eyes = _template_eyes(tem_bytes[it.template.url], it.template.url)
        ed = float(np.hypot(*(eyes[1] - eyes[0])))
        dec = decode_image(data, colour=job.colour, min_scale=out_eye_dist / ed)
        _check_eyes_inside(eyes, dec.full_size)
    elif it.method == "register":
        if it.reference not in eyes_of:
            raise ValueError(f"its reference {items[it.reference].file.url} could not be aligned")
        ref_dec, ref_eyes = eyes_of[it.reference]
        ed = float(np.hypot(*(ref_eyes[1] - ref_eyes[0])))
        dec = decode_image(data, colour=job.colour, min_scale=out_eye_dist / ed)
        eyes, ncc = register_pair(ref_dec.image, dec.image, ref_eyes, ref_scale=ref_dec.scale, moving_scale=dec.scale)
        rec.ncc = round(ncc, 4)
        if ncc < MIN_NCC:
            raise ValueError(f"registration to {items[it.reference].file.url} failed (correlation {ncc:.2f})")
    else:
        from .align import detect_eyes

        dec = decode_image(data, colour=job.colour, min_size=(1024, 1024))
        eyes = detect_eyes(dec.image) / dec.scale
        if it.template is not None:
            rec.eye_error_px = _eye_error(eyes, _template_eyes(tem_bytes[it.template.url], it.template.url), spec)
    eyes_of[i] = (dec, eyes)
    rec.eyes = np.round(eyes, 2).tolist()
    return align_image(dec.image, eyes, spec, eye_scale=dec.scale), rec


def _template_eyes(data, url: str) -> np.ndarray:
    if isinstance(data, Exception):
        raise ValueError(f"template {url} unreadable: {data}")
    return read_tem(data)[:2]


def _check_eyes_inside(eyes: np.ndarray, size: tuple[int, int]) -> None:
    if np.any(eyes < 0) or np.any(eyes > np.array(size)):
        raise ValueError(f"template eyes {eyes.tolist()} lie outside the {size[0]}x{size[1]} image")


def _eye_error(eyes: np.ndarray, truth: np.ndarray, spec: AlignSpec) -> float:
    """Largest distance, in output pixels, between where ``truth`` lands and the canonical eyes
    when aligning with ``eyes``."""
    from .align import eye_transform

    M = eye_transform(eyes, spec)  # output -> input
    A = np.vstack([M, [0, 0, 1]])
    out = np.c_[truth, np.ones(2)] @ np.linalg.inv(A).T
    return round(float(np.max(np.hypot(*(out[:, :2] - spec.eyes_px()).T))), 3)


def _fit_resize(img, size: tuple[int, int]):
    """Centre-crop to the aspect of ``size`` (W, H) and resize (bicubic, antialiased)."""
    from PIL import Image

    W, H = size
    w, h = img.size
    if w * H > h * W:
        cw, ch = h * W / H, h
    else:
        cw, ch = w, w * H / W
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return img.resize((W, H), Image.Resampling.BICUBIC, box=box)


# --------------------------------------------------------------------------- store


def open_faces(url: str, storage_options: dict | None = None):
    """A faces.zarr as an xarray Dataset (lazy), committed samples only."""
    import xarray as xr
    import zarr

    from .io.stores import open_store

    store = open_store(url, storage_options, read_only=True)
    n = zarr.open_group(store, mode="r").attrs.get("n_committed")
    ds = _open_arrays(store) if n is not None else xr.open_zarr(store, consolidated=False)
    return ds.isel(sample=slice(0, n)) if n is not None else ds


def _open_arrays(store):
    """Open a faces store whose arrays may disagree in length after a killed append."""
    import xarray as xr
    import zarr

    g = zarr.open_group(store, mode="r")
    n = int(g.attrs["n_committed"])
    image = xr.open_zarr(store, consolidated=False, drop_variables=list(COORDS))["image"]
    ds = image.isel(sample=slice(0, n)).to_dataset()
    for k in COORDS:
        ds = ds.assign_coords({k: ("sample", np.asarray(g[k][:n]).astype(object))})
    ds.attrs.update({k: v for k, v in g.attrs.items()})
    return ds


def _prepare_store(dest, storage_options, spec: AlignSpec, colour: str, align: str):
    """(zarr group or None, known digests). Checks a store's settings; cuts an uncommitted tail."""
    import zarr

    from .io.stores import group_exists, open_store

    if not group_exists(dest, storage_options):
        return None, frozenset()
    g = zarr.open_group(open_store(dest, storage_options), mode="a")
    attrs = g.attrs.asdict()
    if "image" not in g or "n_committed" not in attrs:
        raise ValueError(f"{dest!r} exists but is not a faces store written by mlrdist ingest; choose another dest")
    want = {"size": list(spec.size), "colour": colour}
    have = {k: attrs.get(k) for k in want}
    if have != want:
        raise ValueError(f"{dest!r} holds images with {have}; this run asks for {want}: use another dest")
    if attrs.get("alignment", {}).get("eyes_px") != spec.to_attrs(align)["eyes_px"]:
        raise ValueError(f"{dest!r} was aligned with other canonical eye positions; use another dest")
    n = int(attrs["n_committed"])
    for k in ("image", *COORDS):
        if g[k].shape[0] != n:
            g[k].resize((n, *g[k].shape[1:]))
    return g, frozenset(str(d) for d in np.asarray(g["digest"][:n]).tolist())


def _create_store(dest, storage_options, result: _Result, spec, colour, align, citation):
    import xarray as xr
    import zarr
    from zarr.codecs import BloscCodec

    from . import __version__
    from .io.stores import open_store

    H, W = spec.size
    C = result.images.shape[-1]
    tile = min(128, H), min(128, W)
    ds = xr.Dataset({"image": (("sample", "y", "x", "channel"), result.images)},
                    coords={k: ("sample", np.array(v, dtype=object)) for k, v in result.coords.items()})
    ds.attrs.update({"size": [H, W], "colour": colour, "alignment": spec.to_attrs(align), "citation": citation,
                     "mlrdist_version": __version__, "n_committed": 0})
    enc = {"image": {"chunks": (_sample_chunk(spec, colour), *tile, C), "compressors": [BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")]}}
    store = open_store(dest, storage_options)
    ds.to_zarr(store, mode="w-", consolidated=False, encoding=enc)
    g = zarr.open_group(store, mode="a")
    g.attrs["n_committed"] = len(result.images)
    return g


def _append(g, result: _Result) -> int:
    """Grow every array, write the rows, then raise ``n_committed`` (the commit point)."""
    n = int(g.attrs["n_committed"])
    k = len(result.images)
    if k:
        image = g["image"]
        image.resize((n + k, *image.shape[1:]))
        image[n : n + k] = result.images
        for name in COORDS:
            arr = g[name]
            arr.resize((n + k,))
            arr[n : n + k] = np.array(result.coords[name], dtype=object)
        g.attrs["n_committed"] = n + k
    return n + k


def _sample_chunk(spec: AlignSpec, colour: str, budget: int = 32 << 20) -> int:
    """Samples per chunk: up to 256, fewer for large images (about ``budget`` bytes of whole
    images per chunk column), a power of two, at least 8."""
    H, W = spec.size
    per = H * W * (3 if colour == "rgb" else 1)
    return int(min(256, max(8, 2 ** int(math.log2(max(1, budget // per))))))


def _concat(results: list[_Result]) -> _Result:
    if len(results) == 1:
        return results[0]
    return _Result(np.concatenate([r.images for r in results]),
                   {k: [v for r in results for v in r.coords[k]] for k in COORDS}, [], [])


def _take(res: _Result, sl: slice) -> _Result:
    return _Result(res.images[sl], {k: v[sl] for k, v in res.coords.items()}, [], [])


class _Writer:
    """Buffers new rows and appends them in whole sample chunks (no chunk is rewritten while
    a run appends; at most one chunk of rows is held), the remainder at :meth:`flush`."""

    def __init__(self, group, create, chunk: int) -> None:
        self.group, self.create, self.pending = group, create, []
        self.chunk = int(group["image"].chunks[0]) if group is not None else chunk

    @property
    def committed(self) -> int:
        return int(self.group.attrs["n_committed"]) if self.group is not None else 0

    def add(self, res: _Result) -> None:
        if len(res.images):
            self.pending.append(res)
        buffered = sum(len(r.images) for r in self.pending)
        room = self.chunk - self.committed % self.chunk
        if buffered >= room:
            rows = _concat(self.pending)
            self._write(_take(rows, slice(0, room)))
            self.pending = [_take(rows, slice(room, None))]
            self.add(_Result(rows.images[:0], {k: [] for k in COORDS}, [], []))

    def flush(self) -> None:
        rows = [r for r in self.pending if len(r.images)]
        if rows:
            self._write(_concat(rows))
        self.pending = []

    def _write(self, res: _Result) -> None:
        if self.group is None:
            self.group = self.create(res)
        else:
            _append(self.group, res)


def _dedupe(result: _Result, known: set, records: list[FileRecord]) -> _Result:
    """Drop rows whose digest is already stored or was written earlier in this run."""
    keep = []
    for j, d in enumerate(result.coords["digest"]):
        if d in known:
            url = result.coords["source"][j]
            for r in records:
                if r.url == url and r.status == "ingested":
                    r.status, r.reason = "exists", "same bytes as an image already in the store"
        else:
            known.add(d)
            keep.append(j)
    if len(keep) == len(result.images):
        return result
    return _Result(result.images[keep], {k: [v[j] for j in keep] for k, v in result.coords.items()},
                   result.records, result.invalid_pairs)


# --------------------------------------------------------------------------- stage


def ingest_images(
    source: str,
    dest: str,
    *,
    labels: str = "london",
    size: int | tuple[int, int] = 128,
    colour: str = "rgb",
    align: str = "auto",
    storage_options: dict | None = None,
    dest_storage_options: dict | None = None,
    client: Any = None,
    scheduler: str | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> IngestReport:
    """Decode, align and append the images under ``source`` to the faces.zarr at ``dest``.

    Parameters
    ----------
    source : str
        Folder, glob, zip/tar archive, on any fsspec file system (``s3://bucket/prefix``).
    dest : str
        faces.zarr URL; created on first use, appended to afterwards.
    labels : str
        ``"london"`` (``neutral/NNN_03.jpg``, ``smiling/NNN_08.jpg``), ``"yale"``
        (``SS_expression.png``), a regex with named groups ``subject`` and ``expression``
        (searched in the path relative to ``source``), or a manifest ``.csv`` (columns
        ``file, subject, expression``).
    size : int or (H, W)
        Output size, 32..1024.
    colour : {"rgb", "gray"}
    align : {"auto", "landmarks", "detector", "none"}
        ``auto``: eyes from a ``.tem`` template beside the image, else registration to a
        templated image of the same subject, else the detector (``mlrdist[align]``).
        ``landmarks``: templates and registration only (others are skipped).
        ``detector``: the detector for every image. ``none``: centre crop and resize.
    storage_options, dest_storage_options : dict, optional
        fsspec options for ``source`` and ``dest`` (``dest_storage_options`` defaults to
        ``storage_options``).
    client, scheduler :
        A ``distributed.Client``, or a scheduler name/address (see :mod:`mlrdist.execution`);
        default an embedded LocalCluster.
    batch_size : int
        Files per Dask task (a subject's files are never split).

    Returns
    -------
    IngestReport
    """

    from .execution import open_executor

    t0 = time.perf_counter()
    spec = _check_args(size, colour, align, batch_size)
    dest_options = storage_options if dest_storage_options is None else dest_storage_options
    label, expected, citation = _label_rule(labels, storage_options)
    report = IngestReport(source=str(source), dest=str(dest))
    listing = list_sources(source, storage_options)
    report.records += [FileRecord(url, "skipped", f"rejected: {why}") for url, why in listing.rejected]
    groups = _plan_items(listing, label, align, report)
    method = {"auto": "landmarks+registration", "none": "none"}.get(align, align)
    g, known = _prepare_store(dest, dest_options, spec, colour, method)
    known_all = set(known)
    batches = _batches(groups, batch_size)
    writer = _Writer(g, lambda res: _create_store(dest, dest_options, res, spec, colour, method, citation),
                     _sample_chunk(spec, colour))
    with open_executor(client=client, scheduler=scheduler) as ex:
        report.dashboard = ex.dashboard
        token = hashlib.sha256(f"{source}{dest}{time.time()}".encode()).hexdigest()[:8]
        jobs = (_Job(b, spec, colour, storage_options, known) for b in batches)
        for res in _imap(ex, _process_batch, jobs, len(batches), f"ingest-{token}", progress):
            report.records += res.records
            report.invalid_pairs += res.invalid_pairs
            writer.add(_dedupe(res, known_all, res.records))
        writer.flush()
    g = writer.group
    report.n_samples = int(g.attrs["n_committed"]) if g is not None else 0
    if g is not None:
        report.unpaired_subjects = _unpaired(g, expected)
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    return report


def _imap(ex, func, jobs, n: int, key: str, progress: bool):
    """``func`` over ``jobs`` on the executor, results in order, at most a few tasks per worker
    in flight (so memory stays flat however many files there are).

    On a distributed client a sliding window of futures keeps every worker busy while the
    driver writes; on Dask's local schedulers, waves of ``2 * workers`` tasks.
    """
    from tqdm.auto import tqdm

    window = max(2, 3 * ex.n_workers)
    jobs = iter(jobs)
    with tqdm(total=n, desc="ingest", unit="batch", disable=not progress, file=sys.stderr) as bar:
        if ex.client is None:
            for w in itertools.count():
                wave = list(itertools.islice(jobs, window))
                if not wave:
                    return
                for res in ex.map(func, wave, key=f"{key}-{w}"):
                    bar.update()
                    yield res
        futures = collections.deque()
        for i, job in enumerate(jobs):
            futures.append(ex.client.submit(func, job, key=f"{key}-{i}", retries=2, pure=False))
            if len(futures) >= window:
                yield futures.popleft().result()
                bar.update()
        while futures:
            yield futures.popleft().result()
            bar.update()


def _unpaired(g, expected: tuple[str, ...] | None) -> dict[str, list[str]]:
    """Subjects in the store lacking an expression (the preset's, or any other subject's)."""
    n = int(g.attrs["n_committed"])
    have: dict[str, set[str]] = defaultdict(set)
    for s, e in zip(np.asarray(g["subject"][:n]).tolist(), np.asarray(g["expression"][:n]).tolist(), strict=True):
        have[str(s)].add(str(e))
    if not expected:
        return {s: ["any other expression"] for s, e in sorted(have.items()) if len(e) < 2}
    return {s: sorted(set(expected) - e) for s, e in sorted(have.items()) if set(expected) - e}
