"""Zarr stores from fsspec URLs: local paths, ``file://``, ``s3://``, ``memory://``, ..."""

from __future__ import annotations

from typing import Any

import zarr
from zarr.storage import FsspecStore, LocalStore

__all__ = ["group_exists", "open_store"]


def open_store(url: str, storage_options: dict[str, Any] | None = None, *, read_only: bool = False):
    """A zarr store for ``url``: a local path (or ``file://``) or any fsspec URL.

    ``storage_options`` apply to remote URLs; a run's one set of options (e.g. S3 keys) may be
    passed along with local paths too, and is ignored for them.
    """
    url = str(url)
    if url.startswith("file://"):
        url = url[len("file://") :]
    if "://" not in url and "::" not in url:
        return LocalStore(url, read_only=read_only)
    return FsspecStore.from_url(url, storage_options=storage_options, read_only=read_only)


def group_exists(url: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether a zarr group exists at ``url``."""
    try:
        zarr.open_group(open_store(url, storage_options, read_only=True), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return False
    return True
