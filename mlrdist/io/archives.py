"""Archive members as sources: zip and tar listing, safety checks, ranged reads.

Members are only ever read into memory, never extracted to disk; members with an absolute
path, a ``..`` component, or that are links/devices are refused and reported, as they are a
sign of a malicious or broken archive. When a name occurs twice (an appended tar, a
rewritten zip) the last member wins, as on extraction, and the earlier one is reported.

Members of zip and uncompressed tar archives carry their byte range in the archive (from the
listing), so a batch reads just its members with ranged reads (``fs.cat_ranges``: concurrent
requests on S3) however large the archive, and checks each zip member's CRC and each tar
member's header. Compressed tars (``.tar.gz`` ...) allow no random access: each batch
decompresses the archive from the start up to its last member.

The functions here take any objects with the attributes ``name``, ``url``, ``kind`` and
``span`` (see :class:`mlrdist.io.sources.SourceFile`).
"""

from __future__ import annotations

import bz2
import stat
import struct
import tarfile
import zipfile
import zlib
from typing import Any

__all__ = ["ARCHIVE_SUFFIXES", "list_archive", "read_members"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _unsafe_member(name: str) -> str | None:
    """Why an archive member name is refused, or None."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path in archive"
    if ".." in name.replace("\\", "/").split("/"):
        return "path traversal ('..') in archive"
    return None


def list_archive(fs, path: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """``(members, rejected)``: each member as the fields of a
    :class:`~mlrdist.io.sources.SourceFile`, and ``(url, reason)`` of members refused."""
    files: list[dict] = []
    rejected: list[tuple[str, str]] = []
    url = fs.unstrip_protocol(path)
    with fs.open(path, "rb") as f:
        if path.lower().endswith(".zip"):
            with zipfile.ZipFile(f) as zf:
                members = [
                    (m.filename, m.file_size, "dir" if m.is_dir() else _zip_type(m),
                     None if m.flag_bits & 0x1 else (m.header_offset, m.compress_size, m.compress_type, m.CRC),
                     f"crc32:{m.CRC:08x}-{m.file_size}")
                    for m in zf.infolist()
                ]
            kind = "zip"
        else:
            with tarfile.open(fileobj=f, mode="r:*") as tf:
                raw = tf.fileobj is f  # uncompressed: member data at fixed offsets
                members = [
                    (m.name, m.size, _tar_type(m),
                     None if m.issparse() else (m.offset_data, m.size, -1, 0) if raw else (j, m.size, _SCAN, 0),
                     f"mtime:{m.mtime}-{m.size}")
                    for j, m in enumerate(tf)
                ]
            kind = "tar"
    last = {name: j for j, (name, _, special, _, _) in enumerate(members) if special != "dir"}
    for j, (name, size, special, span, version) in enumerate(members):
        if special == "dir":
            continue
        member_url = f"{kind}://{name}::{url}"
        why = _unsafe_member(name) or (special if special else None)
        if not why and last[name] != j:  # as when extracting: the last member of a name wins
            why = "superseded by a later member of the same name in the archive"
        if why:
            rejected.append((member_url, why))
            continue
        files.append({"name": name, "url": member_url, "size": size, "archive": url, "kind": kind, "span": span,
                      "version": version})
    return files, rejected


def _zip_type(m: zipfile.ZipInfo) -> str | None:
    """A zip member stored as a Unix symbolic link (its data would be the link's target)."""
    mode = m.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "link member in archive"
    if mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
        return "special file (device/fifo) in archive"
    return None


def _tar_type(m: tarfile.TarInfo) -> str | None:
    if m.isdir():
        return "dir"
    if m.issym() or m.islnk():
        return "link member in archive"
    if not m.isfile():
        return "special file (device/fifo) in archive"
    return None


def read_members(kind: str, archive: str, files: list, storage_options: dict[str, Any] | None = None
                 ) -> list[bytes | Exception]:
    """The bytes of archive members (all of one archive), or the exception met for each."""
    out: list[bytes | Exception] = [OSError("not read")] * len(files)
    _read_archive(kind, archive, files, list(range(len(files))), out, storage_options)
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


def _random_access(f) -> bool:
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


def _tar_member(f, blob: bytes) -> bytes:
    """The data after the member's header block, once the header checks out."""
    length = f.span[1]
    try:
        header = tarfile.TarInfo.frombuf(blob[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.TarError as exc:
        raise OSError(f"{f.url}: no valid tar header before the member ({exc}); the archive is damaged") from None
    if header.size != length and length < 8**11:  # PAX may carry larger sizes itself
        raise OSError(f"{f.url}: the tar header gives {header.size} bytes, the listing {length}; the archive changed")
    return _exact(f.url, blob[tarfile.BLOCKSIZE :], length)


def _zip_member(fs, path: str, f, blob: bytes) -> bytes:
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
