"""The one storage object: where a store or collection lives, and how to reach it.

A :class:`Location` is an fsspec URL (local path, ``file://``, ``s3://``, ``memory://``,
``zip::...``) with the storage options its file system needs. Stages resolve every URL they
are given into a Location once, at the start, and pass it down; :mod:`mlrdist.io.stores`
opens it. :meth:`Location.resolve` is the one place where a location's own options default
to the run's shared ones, and where S3 locations get fast-fail connection settings
(:data:`S3_CONFIG_DEFAULTS`) that the user's own ``config_kwargs`` override.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field, replace

__all__ = ["S3_CONFIG_DEFAULTS", "Location"]

# botocore settings for s3:// locations unless the options say otherwise: an unreachable
# endpoint fails in seconds instead of minutes (train retries transient errors itself)
S3_CONFIG_DEFAULTS = {"connect_timeout": 5, "retries": {"max_attempts": 2, "mode": "standard"}}


def _defaulted(url: str, options: dict | None) -> dict | None:
    """``options`` with :data:`S3_CONFIG_DEFAULTS` under ``config_kwargs`` for an ``s3://`` URL."""
    if not url.startswith(("s3://", "s3a://")):
        return options
    options = dict(options or {})
    options["config_kwargs"] = {**S3_CONFIG_DEFAULTS, **(options.get("config_kwargs") or {})}
    return options


@dataclass(frozen=True)
class Location:
    """A store or collection: an fsspec URL (local path, ``file://``, ``s3://``,
    ``memory://``, ``zip::...``) and the storage options its file system needs.

    Stages resolve every URL they are given into a ``Location`` once, at the start, and
    pass it down; :mod:`mlrdist.io.stores` opens it.
    """

    url: str
    storage_options: dict | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        url = os.fspath(self.url) if isinstance(self.url, os.PathLike) else self.url
        if not isinstance(url, str) or not url:
            raise ValueError(f"a location must be a non-empty URL or path, got {self.url!r}")
        object.__setattr__(self, "url", url)
        if self.storage_options is not None and not isinstance(self.storage_options, dict):
            raise ValueError(f"storage_options must be a dict, got {self.storage_options!r}")

    @classmethod
    def resolve(cls, where: str | os.PathLike | Location, own: dict | None = None,
                shared: dict | None = None) -> Location:
        """``where`` as a Location with its own options, else the run's shared ones.

        A ``Location`` passed in keeps its options unless ``own`` are given. ``s3://``
        locations get :data:`S3_CONFIG_DEFAULTS` beneath their ``config_kwargs``.
        """
        if isinstance(where, Location):
            options = own if own is not None else where.storage_options
            return replace(where, storage_options=_defaulted(where.url, options))
        url = os.fspath(where)
        return cls(url, _defaulted(url, own if own is not None else shared))

    @property
    def options(self) -> dict:
        """The storage options as a fresh dict (empty when none)."""
        return dict(self.storage_options or {})

    @property
    def is_remote(self) -> bool:
        """Whether the URL names a non-local file system (``s3://``, ``memory://`` ...)."""
        return "://" in self.url and not self.url.startswith("file://")

    @property
    def suffix(self) -> str:
        """The URL's last name's suffix, lower case (``".zip"``, ``".zarr"``, ``""``)."""
        return posixpath.splitext(self.url.rstrip("/"))[1].lower()

    def join(self, *parts: str) -> Location:
        """A location below this one, with the same options."""
        return Location(posixpath.join(self.url.rstrip("/"), *parts), self.storage_options)

    def sibling(self, name: str) -> Location:
        """A location next to this one (same folder), with the same options."""
        return Location(posixpath.join(posixpath.dirname(self.url.rstrip("/")) or ".", name),
                        self.storage_options)

    def __str__(self) -> str:
        return self.url
