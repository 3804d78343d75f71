"""Writing synthesis outputs: image encoding, atomic writes, completion manifests.

A mirrored output tree holds ``{outputs}/{target}/{relative path of the input}``. Each
converted batch then writes one manifest ``{outputs}/_mlrdist/manifests/{id}.json`` listing
its inputs (with their size/ETag identity) and the weights fingerprint. A rerun reads the
manifests and skips inputs already converted by the same weights, so a scheduled run over a
growing inbox only converts new photos; a batch interrupted before its manifest is redone
and rewrites identical files (exactly one output per input).
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO

__all__ = [
    "MANIFEST_DIR",
    "image_format",
    "open_atomic",
    "output_path",
    "foreign_outputs",
    "is_own_archive",
    "pack_zip",
    "read_manifests",
    "write_pending",
    "write_atomic",
    "write_manifest",
]

_PACK_GROUP = 64  # output files read at once while zipping

MANIFEST_DIR = "_mlrdist/manifests"
PENDING_DIR = "_mlrdist/pending"  # batches writing their outputs, not finished yet
ZIP_MARK = b"written by mlrdist"  # the comment of every archive mlrdist writes
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


def image_format(path: str, override: str | None = None) -> tuple[str, str]:
    """(Pillow format, extension) for an output: the input's own, or ``override``."""
    ext = ("." + override.lower().lstrip(".")) if override else posixpath.splitext(path)[1].lower()
    if ext not in _FORMATS:
        ext = ".png"
    return _FORMATS[ext], ext


def output_path(outputs: str, target: str, relpath: str, fmt: str | None = None) -> str:
    """Where the ``target`` output of the input at ``relpath`` goes."""
    _, ext = image_format(relpath, fmt)
    stem = posixpath.splitext(relpath)[0]
    return posixpath.join(outputs.rstrip("/"), target, stem + ext)


def write_atomic(fs, path: str, data: bytes) -> None:
    """Write ``data`` so that ``path`` never shows a partial file.

    Local files: write a temporary sibling, then rename over the target. Object stores:
    a single PUT is already atomic.
    """
    if _is_local(fs):
        with open_atomic(fs, path) as f:
            f.write(data)
    else:
        fs.pipe_file(path, data)


@contextmanager
def open_atomic(fs, path: str) -> Iterator[IO[bytes]]:
    """A binary file to stream a large output into; ``path`` appears only when the block
    exits without an error, and never as a partial file.

    Local files: a temporary sibling renamed over the target (removed on error). Object
    stores (S3, GCS, Azure): the upload (multipart for large files) completes only on success
    and is aborted on error. Other file systems: a local temporary file, uploaded on success.
    """
    if _is_local(fs):
        parent = posixpath.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.part")
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, path)
        except BaseException:
            with suppress(OSError):
                os.remove(tmp)
            raise
        return
    if not set(_protocols(fs)) & _OBJECT_STORES:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mlrdist-") as tmp:
            local = os.path.join(tmp, "out")
            with open(local, "wb") as f:
                yield f
            fs.put_file(local, path)
        return
    f = fs.open(path, "wb")
    try:
        yield f
    except BaseException:
        with suppress(Exception):
            f.discard()  # abort the multipart upload
        with suppress(Exception):
            f.closed = True  # never complete the upload (close() would, also on garbage collection)
        raise
    f.close()


_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "abfs", "az", "abfss"}


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def write_manifest(fs, outputs: str, batch_id: str, entries: dict[str, dict], fingerprint: str) -> None:
    """Record a finished batch (the commit point of its outputs)."""
    doc = {"weights_fingerprint": fingerprint, "inputs": entries}
    path = posixpath.join(outputs.rstrip("/"), MANIFEST_DIR, f"{batch_id}.json")
    write_atomic(fs, path, json.dumps(doc, sort_keys=True).encode())


def read_manifests(fs, outputs: str, fingerprint: str) -> dict[str, str]:
    """Inputs recorded by finished batches of the same weights: ``{relpath: identity}``
    (only the identity, to keep the driver small for large collections)."""
    root = posixpath.join(outputs.rstrip("/"), MANIFEST_DIR)
    if not fs.exists(root):
        return {}
    done: dict[str, str] = {}
    for path in sorted(fs.find(root)):
        if not path.endswith(".json"):
            continue
        doc = json.loads(fs.cat_file(path))
        if doc.get("weights_fingerprint") == fingerprint:
            done.update((name, entry["identity"]) for name, entry in doc["inputs"].items())
    return done


def write_pending(fs, outputs: str, batch_id: str, names: list[str]) -> str:
    """Record, before a batch writes its outputs, which inputs it is converting (so that a
    batch killed while writing leaves files a rerun knows as mlrdist's); returns the record's
    path, removed once the batch's manifest is written."""
    path = posixpath.join(outputs.rstrip("/"), PENDING_DIR, f"{batch_id}.json")
    write_atomic(fs, path, json.dumps({"inputs": sorted(names)}).encode())
    return path


def _recorded_stems(fs, outputs: str) -> set[str]:
    """Inputs (relative path without suffix) recorded in any manifest or pending record of
    the tree, whatever the weights."""
    stems: set[str] = set()
    for folder in (MANIFEST_DIR, PENDING_DIR):
        root = posixpath.join(outputs.rstrip("/"), folder)
        if not fs.exists(root):
            continue
        for path in fs.find(root):
            if path.endswith(".json"):
                names = json.loads(fs.cat_file(path))["inputs"]
                stems.update(posixpath.splitext(n)[0] for n in names)
    return stems


def foreign_outputs(fs, outputs: str) -> set[str]:
    """Files in an output tree that mlrdist did not write (paths as ``fs`` names them): every
    ``{target}/{stem}.{ext}`` whose input is in no manifest or pending record."""
    base = fs._strip_protocol(outputs.rstrip("/"))
    if not fs.exists(base):
        return set()
    ours = _recorded_stems(fs, outputs)
    foreign = set()
    for path in fs.find(base):
        rel = posixpath.relpath(path, base)
        if rel.startswith("_mlrdist/") or "/" not in rel:
            continue
        if posixpath.splitext(rel.split("/", 1)[1])[0] not in ours:
            foreign.add(path)
    return foreign


def is_own_archive(fs, path: str) -> bool:
    """Whether the zip at ``path`` was written by mlrdist (its comment says so)."""
    import zipfile

    try:
        with fs.open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            return zf.comment.startswith(ZIP_MARK)
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def pack_zip(fs, tree: str, out_fs, out_path: str) -> None:
    """Zip a finished output tree (manifests and hidden files excluded) in a stable order into
    ``out_path`` of ``out_fs``, streamed: the driver holds one group of files, never the
    archive, and the archive appears only once complete."""
    import zipfile

    base = fs._strip_protocol(tree.rstrip("/"))
    members = [(p, posixpath.relpath(p, base)) for p in sorted(fs.find(base))]
    members = [(p, rel) for p, rel in members if not (rel.startswith("_mlrdist/") or posixpath.basename(rel).startswith("."))]
    with open_atomic(out_fs, out_path) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.comment = ZIP_MARK
        for i in range(0, len(members), _PACK_GROUP):
            group = members[i : i + _PACK_GROUP]
            # cat_ranges: concurrent on object stores, and no glob expansion of "[", "*", "?"
            got = fs.cat_ranges([p for p, _ in group], None, None, on_error="return")
            for (_, rel), data in zip(group, got, strict=True):
                if isinstance(data, BaseException):
                    raise data
                zf.writestr(rel, data)
