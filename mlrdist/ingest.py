"""Stage 1: image files (folders, globs, archives, s3://) -> faces.zarr, aligned and resized.

Work runs on Dask in batches of files (a subject's files always share a batch, so a smiling
shot can be registered to the same person's neutral one), a few batches per worker in
flight; the driver appends and commits each batch's rows as it arrives (see
:mod:`mlrdist.io.faces_store` for the layout and the commit protocol). Re-running adds
nothing (known digests are skipped); a grown source adds only new files.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .align import AlignSpec, align_image, implausible_eyes, read_tem, register_pair, template_eyes
from .config import IngestConfig, build_config
from .detect import INSTALL, detect_faces, detector_available
from .execution import open_executor
from .io.faces_store import COORDS, FacesWriter, Rows
from .io.images import ImageDecodeError, decode_image, fit_resize, to_array
from .io.location import Location
from .io.sources import IMAGE_SUFFIXES, Listing, SourceFile, list_sources, read_batch
from .io.stores import check_readable, check_writable, read_bytes
from .labels import label_rule
from .report import check_failures, format_rate

__all__ = ["FileRecord", "IngestReport", "ingest_images"]

NEUTRAL = ("neutral", "normal")
MIN_NCC = 0.75  # registrations correlating less are refused (large pose or scale changes)


# --------------------------------------------------------------------------- report


@dataclass
class FileRecord:
    """What happened to one file."""

    url: str
    status: str  # "ingested", "exists", "skipped" (a bad input), "ignored" (not a labelled face)
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

    @property
    def rate(self) -> float:
        """Images read per second (ingested or found unchanged)."""
        done = self.count("ingested") + self.count("exists")
        return done / self.elapsed_s if self.elapsed_s else 0.0

    def raise_if_failed(self, max_failed: int | float = 0) -> None:
        """Raise :class:`~mlrdist.report.InputsFailed` when more files were skipped as bad
        inputs than ``max_failed`` allows (files that match no label do not count)."""
        attempted = sum(r.status != "ignored" for r in self.records)
        check_failures({r.url: r.reason for r in self.skipped}, attempted, max_failed, "files")

    def to_json(self) -> str:
        d = asdict(self)
        d["counts"] = {s: self.count(s) for s in ("ingested", "exists", "skipped", "ignored")}
        return json.dumps(d, indent=1)

    def summary(self) -> str:
        """A printable table: counts, methods, skipped files with reasons, unpaired subjects."""
        lines = [f"ingest {self.source} -> {self.dest}  ({self.elapsed_s:.1f} s, {format_rate(self.rate)})",
                 f"  {'ingested':<12}{self.count('ingested'):>6}",
                 f"  {'already in':<12}{self.count('exists'):>6}",
                 f"  {'skipped':<12}{self.count('skipped'):>6}  (bad inputs, listed below)",
                 f"  {'ignored':<12}{self.count('ignored'):>6}  (files that match no label: not faces of this set)",
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




# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Item:
    file: SourceFile
    subject: str
    expression: str
    template: SourceFile | None
    method: str  # landmarks | register | detector | none
    reference: int | None = None  # index in the batch of the image to register to


def _plan_items(listing: Listing, label, align: str, report: IngestReport) -> list[list[_Item]]:
    """Label the images and choose each one's alignment; returns groups by subject."""
    sidecars = listing.sidecars
    groups: dict[str, list[tuple]] = defaultdict(list)
    for f in listing.images:
        lab = label(f.name)
        if lab is None:
            report.records.append(FileRecord(f.url, "ignored", "unlabelled: name matches no label pattern"))
            continue
        groups[lab[0]].append((f, lab[1], sidecars.get(f.name.rsplit(".", 1)[0])))
    if not listing.images:
        raise ValueError(f"no images found in {listing.root!r} (image files: "
                         f"{', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}); check the source URL")
    if not groups:
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
    if align == "detector" and need_detector and detector_available() is None:
        raise ValueError(f"align='detector' needs a face detector: {INSTALL}; or pass align='auto' to use "
                         ".tem landmarks, or align='none' for pre-aligned images")
    # with align='auto', an image that needs the detector when none is installed is skipped
    # and reported by its batch (after decoding, so a corrupt file is reported as corrupt)
    return planned


def _drop_unchanged(groups: list[list[_Item]], known: frozenset, report: IngestReport) -> list[list[_Item]]:
    """Files ingested before and unchanged since (same URL and content version) are reported
    as already in the store without being read; a subject's reference image stays when a new
    image of the subject is registered to it."""
    kept = []
    for items in groups:
        unchanged = [(it.file.url, it.file.version) in known for it in items]
        needs_ref = any(it.reference is not None and not u for it, u in zip(items, unchanged, strict=True))
        keep = [it for i, (it, u) in enumerate(zip(items, unchanged, strict=True)) if not u or (i == 0 and needs_ref)]
        for it, u in zip(items, unchanged, strict=True):
            if u and not (it is items[0] and needs_ref):
                report.records.append(FileRecord(it.file.url, "exists", "unchanged since ingested (same URL and "
                                                 "content version): not read again", it.subject, it.expression))
        if keep:
            kept.append(keep)
    return kept


def _batches(groups: list[list[_Item]], batch_size: int) -> list[list[_Item]]:
    """Whole subject groups packed into batches of about ``batch_size`` files."""
    out, cur = [], []
    for g in groups:
        if cur and len(cur) + len(g) > batch_size:
            out.append(cur)
            cur = []
        base = len(cur)
        cur.extend(replace(it, reference=None if it.reference is None else base + it.reference) for it in g)
    if cur:
        out.append(cur)
    return out


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
    rows: Rows
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
        for k, v in zip(COORDS, (it.subject, it.expression, it.file.url, digests[i], it.file.version or ""),
                        strict=True):
            coords[k].append(v)
    H, W = job.spec.size
    C = 3 if job.colour == "rgb" else 1
    images = np.stack(rows) if rows else np.zeros((0, H, W, C), np.uint8)
    return _Result(Rows(images, coords), [r for r in records if r is not None], invalid)


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
        return fit_resize(dec.image, (W, H)), rec
    if it.method == "landmarks":
        eyes, points = _template_eyes(tem_bytes[it.template.url], it.template.url)
        ed = float(np.hypot(*(eyes[1] - eyes[0])))
        dec = decode_image(data, colour=job.colour, min_scale=out_eye_dist / ed)
        why = implausible_eyes(eyes, dec.full_size, points)
        if why:
            raise ValueError(f"template {it.template.url}: {why}")
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
        dec = decode_image(data, colour=job.colour, min_size=(1024, 1024))
        faces = detect_faces(to_array(dec.image))
        if not faces:
            raise ValueError("no face found by the detector")
        eyes = faces[0].eyes / dec.scale
        if it.template is not None:
            rec.eye_error_px = _eye_error(eyes, _template_eyes(tem_bytes[it.template.url], it.template.url)[0], spec)
    eyes_of[i] = (dec, eyes)
    rec.eyes = np.round(eyes, 2).tolist()
    return align_image(dec.image, eyes, spec, eye_scale=dec.scale), rec


def _template_eyes(data, url: str) -> tuple[np.ndarray, np.ndarray]:
    """(eyes, all points) of a template of known layout."""
    if isinstance(data, Exception):
        raise ValueError(f"template {url} unreadable: {data}")
    points = read_tem(data)
    try:
        return template_eyes(points), points
    except LookupError as exc:
        raise ValueError(f"template {url}: {exc}") from None


def _eye_error(eyes: np.ndarray, truth: np.ndarray, spec: AlignSpec) -> float:
    """Largest distance, in output pixels, between where ``truth`` lands and the canonical eyes
    when aligning with ``eyes``."""
    from .align import eye_transform

    M = eye_transform(eyes, spec)  # output -> input
    A = np.vstack([M, [0, 0, 1]])
    out = np.c_[truth, np.ones(2)] @ np.linalg.inv(A).T
    return round(float(np.max(np.hypot(*(out[:, :2] - spec.eyes_px()).T))), 3)



# --------------------------------------------------------------------------- stage


def ingest_images(
    source: str | Location,
    dest: str | Location,
    config: IngestConfig | dict | None = None,
    *,
    storage_options: dict | None = None,
    dest_storage_options: dict | None = None,
    client: Any = None,
    scheduler: str | None = None,
    progress: bool = False,
    **settings: Any,
) -> IngestReport:
    """Decode, align and append the images under ``source`` to the faces.zarr at ``dest``.

    Parameters
    ----------
    source : str or Location
        Folder, glob, zip/tar archive, on any fsspec file system (``s3://bucket/prefix``).
    dest : str or Location
        faces.zarr URL; created on first use, appended to afterwards.
    config : IngestConfig, optional
        Labels, size, colour, alignment and batch size (see
        :class:`~mlrdist.config.IngestConfig`); its fields may also be given as keywords
        (``labels="yale", size=64``).
    storage_options, dest_storage_options : dict, optional
        fsspec options for ``source`` and ``dest`` (``dest_storage_options`` defaults to
        ``storage_options``).
    client, scheduler :
        A ``distributed.Client``, or a scheduler name/address (see :mod:`mlrdist.execution`);
        default an embedded LocalCluster.
    progress : bool
        Show a progress bar.

    Returns
    -------
    IngestReport
    """
    t0 = time.perf_counter()
    cfg = build_config(IngestConfig, config, **settings)
    src = Location.resolve(source, storage_options)
    dst = Location.resolve(dest, dest_storage_options, storage_options)
    check_readable(src, "source")  # a wrong endpoint, key or bucket fails here, before any decoding
    check_writable(dst, "faces store")
    spec = AlignSpec(size=cfg.size)
    rule = label_rule(cfg.labels, lambda url: read_bytes(url, src.storage_options))
    report = IngestReport(source=src.url, dest=dst.url)
    listing = list_sources(src.url, src.storage_options)
    report.records += [FileRecord(url, "skipped", f"rejected: {why}") for url, why in listing.rejected]
    groups = _plan_items(listing, rule.label, cfg.align, report)
    method = {"auto": "landmarks+registration", "none": "none"}.get(cfg.align, cfg.align)
    writer = FacesWriter(dst, {"size": list(spec.size), "colour": cfg.colour, "alignment": spec.to_attrs(method),
                               "citation": rule.citation, "mlrdist_version": _version()})
    known = writer.known_digests()
    seen = set(known)
    groups = _drop_unchanged(groups, writer.known_versions(), report)
    batches = _batches(groups, cfg.batch_size)
    with open_executor(client=client, scheduler=scheduler) as ex:
        report.dashboard = ex.dashboard
        token = hashlib.sha256(f"{src.url}{dst.url}{time.time()}".encode()).hexdigest()[:8]
        jobs = (_Job(b, spec, cfg.colour, src.storage_options, known) for b in batches)
        for _, res in ex.imap(_process_batch, jobs, key=f"ingest-{token}", ordered=True, total=len(batches),
                              max_in_flight=max(2, 3 * ex.n_workers), progress=progress, desc="ingest",
                              unit="batch"):
            report.records += res.records
            report.invalid_pairs += res.invalid_pairs
            writer.append(_dedupe(res, seen))
    report.n_samples = writer.committed
    if writer.group is not None:
        report.unpaired_subjects = _unpaired(writer, rule.expected)
    report.elapsed_s = round(time.perf_counter() - t0, 3)
    return report


def _version() -> str:
    from . import __version__

    return __version__


def _dedupe(result: _Result, seen: set) -> Rows:
    """The rows whose digest is neither stored nor written earlier in this run."""
    rows, keep = result.rows, []
    for j, d in enumerate(rows.coords["digest"]):
        if d in seen:
            url = rows.coords["source"][j]
            for r in result.records:
                if r.url == url and r.status == "ingested":
                    r.status, r.reason = "exists", "same bytes as an image already in the store"
        else:
            seen.add(d)
            keep.append(j)
    return rows if len(keep) == len(rows) else rows.select(keep)


def _unpaired(writer: FacesWriter, expected: tuple[str, ...] | None) -> dict[str, list[str]]:
    """Subjects in the store lacking an expression (the preset's, or any other subject's)."""
    have: dict[str, set[str]] = defaultdict(set)
    for s, e in zip(writer.column("subject"), writer.column("expression"), strict=True):
        have[s].add(e)
    if not expected:
        return {s: ["any other expression"] for s, e in sorted(have.items()) if len(e) < 2}
    return {s: sorted(set(expected) - e) for s, e in sorted(have.items()) if set(expected) - e}
