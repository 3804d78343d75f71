"""Opening a :class:`~mlrdist.config.Location`: its file system, its Zarr store and group.

Local paths (and ``file://``) open as Zarr ``LocalStore``; every other URL through fsspec
(``s3://``, ``memory://``, ...), with the location's storage options. Options given with a
local path are ignored, so one set of options can serve a whole run.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
from typing import Any

import zarr
from zarr.storage import FsspecStore, LocalStore

from .location import Location

__all__ = [
    "close_filesystems",
    "filesystem",
    "group_exists",
    "is_transient",
    "open_group",
    "open_store",
    "read_bytes",
    "retry_transient",
    "write_bytes",
]

RETRY_DELAYS = (0.5, 2.0, 8.0)  # seconds between attempts after a transient storage error


def _location(where: str | Location, storage_options: dict | None = None) -> Location:
    return Location.resolve(where, storage_options)


def _local_path(url: str) -> str | None:
    if url.startswith("file://"):
        return url[len("file://") :]
    return url if "://" not in url and "::" not in url else None


def filesystem(where: str | Location, storage_options: dict | None = None) -> tuple[Any, str]:
    """``(fsspec file system, path in it)`` of a location."""
    import fsspec

    loc = _location(where, storage_options)
    local = _local_path(loc.url)
    if local is not None:
        return fsspec.filesystem("file"), fsspec.filesystem("file")._strip_protocol(local)
    return fsspec.core.url_to_fs(loc.url, **loc.options)


def open_store(where: str | Location, storage_options: dict | None = None, *, read_only: bool = False):
    """A Zarr store for a location."""
    loc = _location(where, storage_options)
    local = _local_path(loc.url)
    if local is not None:
        return LocalStore(local, read_only=read_only)
    return FsspecStore.from_url(loc.url, storage_options=loc.options or None, read_only=read_only)


def open_group(where: str | Location, mode: str = "r", storage_options: dict | None = None):
    """The Zarr group at a location, or None when there is none (one open, no exists-check)."""
    try:
        return zarr.open_group(open_store(where, storage_options, read_only=mode == "r"), mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return None


def group_exists(where: str | Location, storage_options: dict | None = None) -> bool:
    """Whether a Zarr group exists at a location."""
    return open_group(where, "r", storage_options) is not None


def read_bytes(where: str | Location, storage_options: dict | None = None) -> bytes:
    """The whole content of a file."""
    fs, path = filesystem(where, storage_options)
    return fs.cat_file(path)


def write_bytes(where: str | Location, data: bytes, storage_options: dict | None = None) -> None:
    """Write a file so that it never shows partly written (see :func:`~mlrdist.io.outputs.write_atomic`)."""
    from .outputs import write_atomic

    fs, path = filesystem(where, storage_options)
    write_atomic(fs, path, data)


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error may pass on a second try (a dropped connection, a timeout, a
    throttled request), as opposed to a missing object or a refused permission."""
    return isinstance(exc, OSError | TimeoutError) and not isinstance(
        exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError | FileExistsError)


def retry_transient(fn, *args, delays: tuple[float, ...] | None = None, what: str = "storage operation", **kwargs):
    """``fn(*args, **kwargs)``, tried again after each of ``delays`` seconds (default
    :data:`RETRY_DELAYS`) when it fails with a transient storage error (see
    :func:`is_transient`); other errors are raised at once."""
    import logging
    import time

    delays = RETRY_DELAYS if delays is None else delays
    for attempt, delay in enumerate((*delays, None)):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if delay is None or not is_transient(exc):
                raise
            logging.getLogger(__name__).warning("%s failed (%s: %s); retrying in %.1f s (attempt %d of %d)",
                                                what, type(exc).__name__, exc, delay, attempt + 2, len(delays) + 1)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def close_filesystems(timeout: float = 10.0) -> None:
    """Close the HTTP sessions of every cached ``s3fs`` file system, then stop Zarr's I/O loop.

    Runs at interpreter exit (in the driver and in every worker process), before Zarr's own
    clean-up: s3fs gives a session 0.1 s to close and Zarr its loop thread 0.2 s, which on a
    loaded machine ends in "Unclosed client session" and "Cannot close a running event loop".
    """
    s3fs = sys.modules.get("s3fs")
    if s3fs is not None:
        from fsspec.asyn import sync
        from zarr.core.sync import sync as zarr_sync

        for fs in list(s3fs.S3FileSystem._cache.values()):
            creator = getattr(fs, "_s3creator", None)
            if creator is None:
                continue
            with contextlib.suppress(Exception):
                if fs.asynchronous:  # opened by Zarr: its session lives on Zarr's loop
                    zarr_sync(creator.__aexit__(None, None, None), timeout=timeout)
                elif fs.loop is not None and fs.loop.is_running():
                    sync(fs.loop, creator.__aexit__, None, None, None, timeout=timeout)
    zarr_loop = sys.modules.get("zarr.core.sync")
    if zarr_loop is not None and zarr_loop.loop[0] is not None and zarr_loop.iothread[0] is not None:
        with contextlib.suppress(Exception):
            zarr_loop.loop[0].call_soon_threadsafe(zarr_loop.loop[0].stop)
            zarr_loop.iothread[0].join(timeout=timeout)


atexit.register(close_filesystems)  # after Zarr's own handler, so it runs first
