"""Image files from any fsspec URL: a local folder tree, a glob, a zip or tar archive, s3://.

:func:`list_sources` lists the files (on the client, no content read) and the archive members
refused; :func:`iter_listings` does so one directory at a time; :func:`read_batch` reads the
bytes of a batch of them (on a worker), each archive's members with ranged reads (see
:mod:`mlrdist.io.archives`).

A file's ``url`` is a valid fsspec URL (``zip://member::archive``, ``tar://member::archive``
for members); its ``name`` is the POSIX path relative to the source root (what label
patterns match).
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .archives import ARCHIVE_SUFFIXES, list_archive, read_members

__all__ = [
    "ARCHIVE_SUFFIXES",
    "IMAGE_SUFFIXES",
    "InputFile",
    "Listing",
    "SourceFile",
    "content_version",
    "iter_inputs",
    "iter_listings",
    "list_sources",
    "read_batch",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm")
SIDECAR_SUFFIXES = (".tem",)


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
    # the content version when listed: an object store's version id or ETag, else the
    # modification time, size and inode; a zip member's CRC and size, a tar member's mtime
    # and size. A file replaced by another (even of the same size) has another version.
    version: str | None = None


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
        files, rejected = list_archive(fs, path)
        return iter([_finish(Listing(root=source, files=[SourceFile(**m) for m in files], rejected=rejected))])
    if fsspec.core.has_magic(path):
        found = fs.glob(path, detail=True)
        base = _glob_base(path)
        files = [_plain(fs, p, info, base) for p, info in found.items() if info.get("type") != "directory"]
        return iter([_finish(Listing(root=source, files=files))])
    if not fs.isdir(path):
        raise FileNotFoundError(f"no folder, archive or glob match at {source!r}")
    return _walk(fs, path, source)


@dataclass(frozen=True, slots=True)
class InputFile:
    """A photo to convert and its ``.tem`` landmark template, if any."""

    source: SourceFile
    tem: SourceFile | None = None

    @property
    def url(self) -> str:
        return self.source.url

    @property
    def relpath(self) -> str:
        return self.source.name

    @property
    def identity(self) -> str:
        """The file's content version: a replaced file is converted again."""
        return self.source.version or str(self.source.size)


def iter_inputs(where, rejected: dict[str, str]) -> Iterator[InputFile]:
    """The images under a location with their ``.tem`` templates, one directory at a time;
    archive members refused are added to ``rejected`` (url -> reason) as they are met.
    ``where`` is checked now (FileNotFoundError), the files are listed as consumed."""
    parts = iter_listings(where.url, storage_options=where.storage_options)

    def files() -> Iterator[InputFile]:
        for part in parts:
            rejected.update(part.rejected)
            tems = part.sidecars
            for f in part.images:
                yield InputFile(f, tems.get(posixpath.splitext(f.name)[0]))

    return files()


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
        # object keys may hold '.' or '..' components, which would name files outside the
        # collection when mirrored into outputs: such keys are reported, never read
        odd = [e["name"] for e in entries if _traversal(e["name"])]
        entries = [e for e in entries if not _traversal(e["name"])]
        dirs = sorted(e["name"] for e in entries if e.get("type") == "directory")
        files = [_plain(fs, e["name"], e, root) for e in entries if e.get("type") != "directory"]
        del entries
        stack += [d for d in reversed(dirs) if d.rstrip("/") != folder.rstrip("/")]
        part = _finish(Listing(root=source, files=files, rejected=[
            (fs.unstrip_protocol(name), "path traversal ('.' or '..') in an object key: not read") for name in odd]))
        if part.files or part.rejected:
            yield part


def _traversal(name: str) -> bool:
    return name.rstrip("/").rsplit("/", 1)[-1] in (".", "..")


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
    base = base.rstrip("/")
    # not posixpath.relpath: it would resolve '..' in an object key
    name = p[len(base) + 1 :] if base and p.startswith(base + "/") else posixpath.relpath(p, base or "/") if base else p
    return SourceFile(name=name, url=fs.unstrip_protocol(p), size=info.get("size"), version=content_version(info))


# listing keys naming a content version, object stores first (S3, GCS, Azure)
_VERSION_KEYS = ("VersionId", "ETag", "etag", "generation", "md5Hash", "content_md5")


def content_version(info: dict) -> str:
    """A string that changes when a listed file's content does: an object store's version id
    or ETag; otherwise the size with the modification time and the inode (a file replaced by
    another of the same size has another mtime or inode)."""
    for key in _VERSION_KEYS:
        value = info.get(key)
        if value:
            return f"{key}:{str(value).strip(chr(34))}"
    parts = [f"size:{info.get('size')}"]
    when = next((k for k in ("mtime", "LastModified", "created") if info.get(k) is not None), None)
    if when:
        parts.append(f"{when}:{info[when]}")
    if info.get("ino") is not None:
        parts.append(f"ino:{info['ino']}")
    return "-".join(parts)


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
                got = read_members(kind, archive, [files[i] for i in idx], storage_options)
                for i, data in zip(idx, got, strict=True):
                    out[i] = data
        except Exception as exc:  # noqa: BLE001 - reported per file
            for i in idx:
                out[i] = exc
    return out


