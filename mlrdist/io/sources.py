"""Image files from any fsspec URL: a local folder tree, a glob, a zip or tar archive, s3://.

:func:`list_sources` lists the files (on the client, no content read) and the archive members
refused; :func:`read_batch` reads the bytes of a batch of them (on a worker), opening each
archive once per batch. Archive members are only ever read into memory, never extracted to
disk; members with an absolute path, a ``..`` component, or that are links/devices are
refused and reported anyway, as they are a sign of a malicious or broken archive.

A file's ``url`` is a valid fsspec URL (``zip://member::archive``, ``tar://member::archive``
for members); its ``name`` is the POSIX path relative to the source root (what label
patterns match).

Members of zip and uncompressed tar archives carry their byte range in the archive (from the
listing), so a batch reads just its members with ranged reads (``fs.cat_ranges``: concurrent
requests on S3) however large the archive, and checks each zip member's CRC. Compressed tars
(``.tar.gz`` ...) allow no random access: each batch decompresses the archive from the start
up to its last member, so for large collections prefer zip or plain tar.
"""

from __future__ import annotations

import bz2
import posixpath
import struct
import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ARCHIVE_SUFFIXES", "IMAGE_SUFFIXES", "Listing", "SourceFile", "iter_listings", "list_sources", "read_batch",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm")
SIDECAR_SUFFIXES = (".tem",)
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file to ingest: ``name`` relative to the source root, where to read it from."""

    name: str
    url: str
    size: int | None = None
    archive: str | None = None  # the archive's URL for members
    kind: str = "file"  # "file", "zip" or "tar"
    # where the member lies: (offset, length, zip method or -1 for raw tar data, zip CRC-32);
    # offset is the zip local header or the tar member's data. A member read this way is
    # checked against its zip CRC or its tar header (the archive may have changed since it
    # was listed). Compressed tars: (ordinal, length, -2, 0), the member's position in a scan
    span: tuple[int, int, int, int] | None = None


@dataclass
class Listing:
    """Files found under a source (images and ``.tem`` sidecars) and members refused."""

    root: str
    files: list[SourceFile] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)

    @property
    def images(self) -> list[SourceFile]:
        return [f for f in self.files if f.name.lower().endswith(IMAGE_SUFFIXES)]

    @property
    def sidecars(self) -> dict[str, SourceFile]:
        """``.tem`` files by name without suffix."""
        return {posixpath.splitext(f.name)[0]: f for f in self.files if f.name.lower().endswith(SIDECAR_SUFFIXES)}


def _wanted(name: str) -> bool:
    parts = name.split("/")
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return name.lower().endswith(IMAGE_SUFFIXES + SIDECAR_SUFFIXES)


def _unsafe_member(name: str) -> str | None:
    """Why an archive member name is refused, or None."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path in archive"
    if ".." in name.replace("\\", "/").split("/"):
        return "path traversal ('..') in archive"
    return None


def list_sources(source: str, storage_options: dict[str, Any] | None = None) -> Listing:
    """List the image files (and ``.tem`` templates) under ``source``.

    Parameters
    ----------
    source : str
        A folder (``/data/faces``, ``file://...``, ``s3://bucket/prefix``), a glob
        (``/data/*/*.jpg``; to use ``.tem`` templates, let it match them too, e.g.
        ``/data/*/0*_0[38].*``), or an archive (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ...)
        on any fsspec file system.
    storage_options : dict, optional
        Passed to the fsspec file system (e.g. ``endpoint_url``, ``key``, ``secret`` for S3).

    Returns
    -------
    Listing, files sorted by name.

    Raises
    ------
    FileNotFoundError
        When nothing exists at ``source``.
    """
    listing = Listing(root=str(source))
    for part in iter_listings(source, storage_options):
        listing.files += part.files
        listing.rejected += part.rejected
    listing.files.sort(key=lambda f: f.name)
    return listing


def iter_listings(source: str, storage_options: dict[str, Any] | None = None) -> Iterator[Listing]:
    """:func:`list_sources` in parts, for collections too large to list at once.

    A folder is listed one directory at a time, depth first in name order, and yields one
    :class:`Listing` per directory (its files sorted, each image next to its ``.tem``
    template), so memory holds one directory's entries, not the collection's. A glob or an
    archive yields a single part. ``source`` is checked before this returns.

    Raises
    ------
    FileNotFoundError
        When nothing exists at ``source``.
    """
    import fsspec

    source = str(source)
    fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
    if source.lower().endswith(ARCHIVE_SUFFIXES):
        if not fs.exists(path):
            raise FileNotFoundError(f"no archive at {source!r}")
        return iter([_finish(_list_archive(fs, path, source))])
    if fsspec.core.has_magic(path):
        found = fs.glob(path, detail=True)
        base = _glob_base(path)
        files = [_plain(fs, p, info, base) for p, info in found.items() if info.get("type") != "directory"]
        return iter([_finish(Listing(root=source, files=files))])
    if not fs.isdir(path):
        raise FileNotFoundError(f"no folder, archive or glob match at {source!r}")
    return _walk(fs, path, source)


def _walk(fs, root: str, source: str) -> Iterator[Listing]:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = fs.ls(folder, detail=True)
        except OSError as exc:  # e.g. no permission: reported, the rest is still listed
            if folder == root:
                raise
            yield Listing(root=source, rejected=[(fs.unstrip_protocol(folder), f"cannot list folder: {exc}")])
            continue
        dirs = sorted(e["name"] for e in entries if e.get("type") == "directory")
        files = [_plain(fs, e["name"], e, root) for e in entries if e.get("type") != "directory"]
        del entries
        stack += [d for d in reversed(dirs) if d.rstrip("/") != folder.rstrip("/")]
        part = _finish(Listing(root=source, files=files))
        if part.files:
            yield part


def _finish(listing: Listing) -> Listing:
    listing.files = sorted((f for f in listing.files if _wanted(f.name)), key=lambda f: f.name)
    return listing


def _glob_base(path: str) -> str:
    parts = path.split("/")
    for i, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return "/".join(parts[:i])
    return posixpath.dirname(path)


def _plain(fs, p: str, info: dict, base: str) -> SourceFile:
    name = posixpath.relpath(p, base.rstrip("/") or "/") if base else p
    return SourceFile(name=name, url=fs.unstrip_protocol(p), size=info.get("size"))


def _list_archive(fs, path: str, source: str) -> Listing:
    listing = Listing(root=source)
    url = fs.unstrip_protocol(path)
    with fs.open(path, "rb") as f:
        if path.lower().endswith(".zip"):
            with zipfile.ZipFile(f) as zf:
                members = [
                    (m.filename, m.file_size, "dir" if m.is_dir() else None,
                     None if m.flag_bits & 0x1 else (m.header_offset, m.compress_size, m.compress_type, m.CRC))
                    for m in zf.infolist()
                ]
            kind = "zip"
        else:
            with tarfile.open(fileobj=f, mode="r:*") as tf:
                raw = tf.fileobj is f  # uncompressed: member data at fixed offsets
                members = [
                    (m.name, m.size, _tar_type(m),
                     None if m.issparse() else (m.offset_data, m.size, -1, 0) if raw else (j, m.size, _SCAN, 0))
                    for j, m in enumerate(tf)
                ]
            kind = "tar"
    last = {name: j for j, (name, _, special, _) in enumerate(members) if special != "dir"}
    for j, (name, size, special, span) in enumerate(members):
        if special == "dir":
            continue
        member_url = f"{kind}://{name}::{url}"
        why = _unsafe_member(name) or (special if special else None)
        if not why and last[name] != j:  # as when extracting: the last member of a name wins
            why = "superseded by a later member of the same name in the archive"
        if why:
            listing.rejected.append((member_url, why))
            continue
        listing.files.append(SourceFile(name=name, url=member_url, size=size, archive=url, kind=kind, span=span))
    return listing


def _tar_type(m: tarfile.TarInfo) -> str | None:
    if m.isdir():
        return "dir"
    if m.issym() or m.islnk():
        return "link member in archive"
    if not m.isfile():
        return "special file (device/fifo) in archive"
    return None


def read_batch(files: list[SourceFile], storage_options: dict[str, Any] | None = None) -> list[bytes | Exception]:
    """The bytes of each file, or the exception met reading it; archives opened once.

    Returns a list aligned with ``files``.
    """
    import fsspec

    out: list[bytes | Exception] = [OSError("not read")] * len(files)
    groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for i, f in enumerate(files):
        groups[(f.kind, f.archive)].append(i)
    for (kind, archive), idx in groups.items():
        try:
            if kind == "file":
                fs, _ = fsspec.core.url_to_fs(files[idx[0]].url, **(storage_options or {}))
                paths = [fs._strip_protocol(files[i].url) for i in idx]
                # cat_ranges, not cat: file names may hold glob characters ("[", "*", "?")
                got = fs.cat_ranges(paths, None, None, on_error="return")
                for i, data in zip(idx, got, strict=True):
                    out[i] = data
            else:
                _read_archive(kind, archive, [files[i] for i in idx], idx, out, storage_options)
        except Exception as exc:  # noqa: BLE001 - reported per file
            for i in idx:
                out[i] = exc
    return out


def _read_archive(kind, archive, files, idx, out, storage_options) -> None:
    """Members by byte range where the listing recorded one, the others by a scan; an error
    opening the archive is reported for the members read that way."""
    ranged = [(f, i) for f, i in zip(files, idx, strict=True) if _random_access(f)]
    # scanned members by position (compressed tars) or name
    want = {
        f.span[0] if f.span and f.span[2] == _SCAN else f.name: i
        for f, i in zip(files, idx, strict=True) if not _random_access(f)
    }
    for todo, read, slots in (
        (ranged, _read_spans, [i for _, i in ranged]),
        (want, _scan_archive, list(want.values())),
    ):
        if not todo:
            continue
        try:
            read(kind, archive, todo, out, storage_options)
        except Exception as exc:  # noqa: BLE001 - reported per file
            for i in slots:
                out[i] = exc


def _scan_archive(kind, archive, want, out, storage_options) -> None:
    """Read members through zipfile / tarfile (compressed tars, zip codecs such as LZMA)."""
    import fsspec

    with fsspec.open(archive, "rb", **(storage_options or {})) as f:
        if kind == "zip":
            with zipfile.ZipFile(f) as zf:
                for name, i in want.items():
                    try:
                        out[i] = zf.read(name)
                    except Exception as exc:  # noqa: BLE001 - e.g. bad CRC: reported per file
                        out[i] = exc
            return
        with tarfile.open(fileobj=f, mode="r:*") as tf:
            for j, m in enumerate(tf):
                i = want.pop(j, None)
                if i is None and m.name in want:
                    i = want.pop(m.name)
                if i is not None:
                    out[i] = tf.extractfile(m).read() if m.isfile() else OSError(f"{m.name}: not a regular file")
                    if not want:  # the rest of the archive is not decompressed
                        break


_ZIP_CODECS = {zipfile.ZIP_STORED: None, zipfile.ZIP_DEFLATED: -15, zipfile.ZIP_BZIP2: "bz2"}
_ZIP_LOCAL = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length
_ZIP_SLACK = 256  # bytes read past the name for the local extra field (usually enough)
_MAX_GAP = 2**20  # member ranges closer than this are read as one request
_MAX_BLOCK = 64 * 2**20  # but no request longer than this (unless one member is)


_SCAN = -2  # span marker: a compressed tar's member, found by its position in a scan


def _random_access(f: SourceFile) -> bool:
    """Whether a member is read by its byte range (plain tar; zip: stored, deflate or bzip2)."""
    return f.span is not None and f.span[2] != _SCAN and (f.kind == "tar" or f.span[2] in _ZIP_CODECS)


def _read_spans(kind, archive, items, out, storage_options) -> None:
    """Read archive members by their byte ranges, neighbours coalesced into one request (a
    second read for a zip member whose local extra field is unusually long)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(archive, **(storage_options or {}))
    starts, ends = [], []
    for f, _ in items:
        offset, length = f.span[:2]
        if kind == "zip":  # local header, name, extra field, data
            starts.append(offset)
            ends.append(offset + _ZIP_LOCAL.size + len(f.name.encode()) + _ZIP_SLACK + length)
        else:  # the member's own header block, then its data
            starts.append(offset - tarfile.BLOCKSIZE)
            ends.append(offset + length)
    for (f, i), blob in zip(items, _coalesced(fs, path, starts, ends), strict=True):
        if isinstance(blob, Exception):
            out[i] = blob
            continue
        try:
            out[i] = _zip_member(fs, path, f, blob) if kind == "zip" else _tar_member(f, blob)
        except Exception as exc:  # noqa: BLE001 - reported per file
            out[i] = exc


def _coalesced(fs, path: str, starts: list[int], ends: list[int]) -> list[bytes | Exception]:
    """The byte ranges of one file, read as few larger ranges: members of a batch usually lie
    close together, and one request per member would make small photos latency-bound."""
    from fsspec.utils import merge_offset_ranges

    _, bstarts, bends = merge_offset_ranges([path] * len(starts), starts, ends, max_gap=_MAX_GAP, max_block=_MAX_BLOCK)
    blocks = fs.cat_ranges([path] * len(bstarts), bstarts, bends, on_error="return")
    out: list[bytes | Exception] = []
    for start, end in zip(starts, ends, strict=True):
        j = next(j for j in range(len(bstarts)) if bstarts[j] <= start and end <= bends[j])
        block = blocks[j]
        out.append(block if isinstance(block, Exception) else block[start - bstarts[j] : end - bstarts[j]])
    return out


def _exact(url: str, blob: bytes, length: int) -> bytes:
    if len(blob) != length:
        raise OSError(f"{url}: the archive ends early ({len(blob)} of {length} bytes); it is truncated")
    return blob


def _tar_member(f: SourceFile, blob: bytes) -> bytes:
    """The data after the member's header block, once the header checks out."""
    length = f.span[1]
    try:
        header = tarfile.TarInfo.frombuf(blob[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.TarError as exc:
        raise OSError(f"{f.url}: no valid tar header before the member ({exc}); the archive is damaged") from None
    if header.size != length and length < 8**11:  # PAX may carry larger sizes itself
        raise OSError(f"{f.url}: the tar header gives {header.size} bytes, the listing {length}; the archive changed")
    return _exact(f.url, blob[tarfile.BLOCKSIZE :], length)


def _zip_member(fs, path: str, f: SourceFile, blob: bytes) -> bytes:
    offset, length, method, crc = f.span
    if len(blob) < _ZIP_LOCAL.size:
        raise OSError(f"{f.url}: the archive ends early, at its local file header; it is truncated")
    sig, n_name, n_extra = _ZIP_LOCAL.unpack_from(blob)
    if sig != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{f.url}: no local file header at offset {offset}; the archive is damaged")
    start = _ZIP_LOCAL.size + n_name + n_extra
    data = blob[start : start + length]
    if len(data) < length:  # a local extra field longer than the slack, or a truncated archive
        data = _exact(f.url, fs.cat_file(path, start=offset + start, end=offset + start + length), length)
    codec = _ZIP_CODECS[method]
    if codec == "bz2":
        data = bz2.decompress(data)
    elif codec is not None:
        data = zlib.decompress(data, codec)
    if zlib.crc32(data) != crc:
        raise zipfile.BadZipFile(f"{f.url}: CRC-32 mismatch; the member is damaged or the archive changed")
    return data
