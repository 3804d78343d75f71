"""Opening a :class:`~mlrdist.config.Location`: its file system, its Zarr store and group.

Local paths (and ``file://``) open as Zarr ``LocalStore``; every other URL through fsspec
(``s3://``, ``memory://``, ...), with the location's storage options. Options given with a
local path are ignored, so one set of options can serve a whole run.

Stages check their object-store locations first (:func:`check_readable`,
:func:`check_writable`: one LIST request each), so that a wrong endpoint, refused
credentials or a missing bucket stop a run before any input is decoded, as a
:class:`StorageError` naming the location and what to check (:func:`describe_storage_error`).
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
    "StorageAccessError",
    "StorageError",
    "StorageNotFoundError",
    "check_readable",
    "check_writable",
    "close_filesystems",
    "close_s3_sessions",
    "describe_storage_error",
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
    throttled request), as opposed to a missing object or bucket or a refused permission."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError
                  | FileExistsError):
        return False
    if isinstance(exc, OSError | TimeoutError):
        return True
    # botocore's connection errors (EndpointConnectionError ...) are no OSError
    return any(cls.__module__ == "botocore.exceptions" and cls.__name__ in ("ConnectionError", "HTTPClientError")
               for cls in type(exc).__mro__)


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


# ----------------------------------------------------------------------------- storage errors


class StorageError(OSError):
    """A storage location that cannot be used, in one line naming it and what to check."""


class StorageAccessError(StorageError, PermissionError):
    """The object store refused the credentials or the request."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """The bucket does not exist."""


_DENIED = {"AccessDenied", "Forbidden", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
           "ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidSecurity",
           "RequestTimeTooSkewed"}
_CREDENTIALS = ("check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or -S key=... -S secret=...) "
                "and the endpoint (-S endpoint_url=...)")


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and all(exc is not e for e in seen):
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None


def _endpoint(options: dict | None) -> str:
    import os

    options = options or {}
    return (options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3")


def _classify(exc: BaseException) -> tuple[str, str] | None:
    """``(kind, detail)`` of an object store's error (kind ``denied``, ``no-bucket``, ``unreachable``), else None."""
    import socket

    chain = _chain(exc)
    if not any(type(e).__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp", "s3fs") for e in chain):
        return None  # not an object store's error (a Dask connection, a local file)
    for e in chain:
        code = _error_code(e)
        if type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return "denied", "none"
        if code in _DENIED:
            return "denied", code
        if code == "NoSuchBucket" or "specified bucket does not exist" in str(e):
            return "no-bucket", "NoSuchBucket"
    errors = [getattr(e, "os_error", None) for e in chain] + chain  # aiohttp keeps the OSError aside
    if any(isinstance(e, ConnectionRefusedError) for e in errors):
        return "unreachable", "connection refused"
    if any(isinstance(e, socket.gaierror) for e in errors):
        return "unreachable", "host not found"
    if any(isinstance(e, TimeoutError) or "timeout" in type(e).__name__.lower() for e in errors):
        return "unreachable", "timed out"
    if any(type(e).__module__.startswith(("botocore", "aiohttp")) and "Connect" in type(e).__name__
           for e in chain):
        return "unreachable", "cannot connect"
    return None


def describe_storage_error(exc: BaseException, url: str | None = None, storage_options: dict | None = None, *,
                           what: str = "", bucket: str | None = None) -> str | None:
    """One line naming the location (``what`` and ``url``), the cause and what to check, for an
    error of an object store (unreachable endpoint, refused credentials, missing bucket);
    None for any other error. ``bucket``: the error answers a request about this bucket, so a
    plain "not found" means that the bucket does not exist."""
    if isinstance(exc, StorageError):
        return str(exc)
    kind = _classify(exc)
    if kind is None and bucket is not None and isinstance(exc, FileNotFoundError):
        kind = ("no-bucket", "NoSuchBucket")
    if kind is None:
        return None
    endpoint = _endpoint(storage_options)
    where = " ".join(p for p in (what, url) if p) or "storage"
    if kind[0] == "unreachable":
        return (f"{where}: cannot reach the storage endpoint {endpoint} ({kind[1]}): check -S endpoint_url=... "
                "(or AWS_ENDPOINT_URL) and that the server is running and reachable")
    if kind == ("denied", "none"):
        return (f"{where}: no credentials found for {endpoint}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or -S key=... -S secret=... (-S anon=true for a public bucket)")
    if kind[0] == "denied":
        return f"{where}: access denied by {endpoint} ({kind[1]}): {_CREDENTIALS}"
    named = f"bucket {bucket!r}" if bucket else "the bucket"
    return (f"{where}: {named} does not exist at {endpoint}: create it, or check the URL and the endpoint "
            "(-S endpoint_url=...)")


def _check(where: str | Location, what: str) -> None:
    loc = _location(where)
    if not loc.url.startswith(("s3://", "s3a://")):
        return  # local paths as they are; other file systems have no cheap check here
    fs, path = filesystem(loc)
    bucket = path.split("/", 1)[0]
    try:
        fs.call_s3("list_objects_v2", Bucket=bucket, MaxKeys=1)
    except Exception as exc:
        message = describe_storage_error(exc, loc.url, loc.storage_options, what=what, bucket=bucket)
        if message is None:
            raise
        kind = _classify(exc)
        cls = (StorageError if kind and kind[0] == "unreachable"
               else StorageAccessError if kind and kind[0] == "denied" else StorageNotFoundError)
        raise cls(message) from exc


def check_readable(where: str | Location, what: str = "input") -> None:
    """Raise a :class:`StorageError` naming ``where`` when its object store cannot be reached,
    refuses the credentials, or has no such bucket (one LIST request; local paths: nothing)."""
    _check(where, what)


def check_writable(where: str | Location, what: str = "output") -> None:
    """As :func:`check_readable`, for a destination: nothing is created; a local folder that does
    not exist yet is fine."""
    _check(where, what)


def close_s3_sessions(filesystems=None, timeout: float = 10.0) -> None:
    """Close the HTTP sessions of ``s3fs`` file systems (default: every cached one); a closed
    file system must not be used again, so drop it from the cache too
    (``S3FileSystem.clear_instance_cache()``)."""
    s3fs = sys.modules.get("s3fs")
    if s3fs is None:
        return
    from fsspec.asyn import sync
    from zarr.core.sync import sync as zarr_sync

    for fs in list(s3fs.S3FileSystem._cache.values()) if filesystems is None else filesystems:
        creator = getattr(fs, "_s3creator", None)
        if creator is None:
            continue
        with contextlib.suppress(Exception):
            if fs.asynchronous:  # opened by Zarr: its session lives on Zarr's loop
                zarr_sync(creator.__aexit__(None, None, None), timeout=timeout)
            elif fs.loop is not None and fs.loop.is_running():
                sync(fs.loop, creator.__aexit__, None, None, None, timeout=timeout)
            fs._s3creator = fs._s3 = None


def close_filesystems(timeout: float = 10.0) -> None:
    """Close the HTTP sessions of every cached ``s3fs`` file system, then stop Zarr's I/O loop.

    Runs at interpreter exit (in the driver and in every worker process), before Zarr's own
    clean-up: s3fs gives a session 0.1 s to close and Zarr its loop thread 0.2 s, which on a
    loaded machine ends in "Unclosed client session" and "Cannot close a running event loop".
    """
    close_s3_sessions(timeout=timeout)
    zarr_loop = sys.modules.get("zarr.core.sync")
    if zarr_loop is not None and zarr_loop.loop[0] is not None and zarr_loop.iothread[0] is not None:
        with contextlib.suppress(Exception):
            zarr_loop.loop[0].call_soon_threadsafe(zarr_loop.loop[0].stop)
            zarr_loop.iothread[0].join(timeout=timeout)


atexit.register(close_filesystems)  # after Zarr's own handler, so it runs first
