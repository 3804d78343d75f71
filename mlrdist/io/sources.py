"""Image files from any fsspec URL: a local folder tree, a glob, a zip or tar archive, s3://.

:func:`list_sources` lists the files (on the client, no content read) and the archive members
refused; :func:`read_batch` reads the bytes of a batch of them (on a worker), opening each
archive once per batch. Archive members are only ever read into memory, never extracted to
disk; members with an absolute path, a ``..`` component, or that are links/devices are
refused and reported anyway, as they are a sign of a malicious or broken archive.

A file's ``url`` is a valid fsspec URL (``zip://member::archive``, ``tar://member::archive``
for members); its ``name`` is the POSIX path relative to the source root (what label
patterns match).
"""

from __future__ import annotations

import posixpath
import tarfile
import zipfile
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
                members = [(m.filename, m.file_size, None if not m.is_dir() else "dir") for m in zf.infolist()]
            kind = "zip"
        else:
            with tarfile.open(fileobj=f, mode="r:*") as tf:
                members = [(m.name, m.size, _tar_type(m)) for m in tf]
            kind = "tar"
    for name, size, special in members:
        if special == "dir":
            continue
        member_url = f"{kind}://{name}::{url}"
        why = _unsafe_member(name) or (special if special else None)
        if why:
            listing.rejected.append((member_url, why))
            continue
        listing.files.append(SourceFile(name=name, url=member_url, size=size, archive=url, kind=kind))
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
                got = fs.cat(paths, on_error="return")
                for i, p in zip(idx, paths, strict=True):
                    out[i] = got.get(p, FileNotFoundError(files[i].url))
            else:
                _read_archive(kind, archive, [files[i].name for i in idx], idx, out, storage_options)
        except Exception as exc:  # noqa: BLE001 - reported per file
            for i in idx:
                out[i] = exc
    return out


def _read_archive(kind, archive, names, idx, out, storage_options) -> None:
    import fsspec

    want = dict(zip(names, idx, strict=True))
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
            for m in tf:
                if m.name in want and m.isfile():
                    out[want[m.name]] = tf.extractfile(m).read()
