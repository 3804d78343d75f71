"""faces.zarr: create, append and commit rows crash-consistently; open committed rows.

Layout (an xarray Dataset, zarr 3, ``consolidated=False``)::

    image       (sample, y, x, channel) uint8, chunks (8..256 samples, <=128, <=128, C), zstd
    subject     (sample) str          expression (sample) str
    source      (sample) str, the original file's URL
    digest      (sample) str, sha256 of the original file's bytes (the key of idempotence)
    version     (sample) str, the file's content version when read (ETag, mtime + size + inode)
    attrs       size [H, W], colour "rgb"|"gray", alignment {method, eyes, margin, ...},
                citation, mlrdist_version, n_committed

Appending is crash-consistent: the arrays are grown and written first, and ``n_committed``
is raised last (the commit point, once per appended batch); :func:`open_faces` reads only
committed rows, and the next writer cuts any uncommitted tail before appending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .location import Location
from .stores import open_group, open_store

__all__ = ["COORDS", "FacesWriter", "Rows", "open_faces", "sample_chunk"]

COORDS = ("subject", "expression", "source", "digest", "version")


@dataclass
class Rows:
    """New samples: images ``(k, H, W, C)`` uint8 and their coordinates (lists of str)."""

    images: np.ndarray
    coords: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in COORDS})

    def __len__(self) -> int:
        return len(self.images)

    def select(self, keep: list[int]) -> Rows:
        return Rows(self.images[keep], {k: [v[j] for j in keep] for k, v in self.coords.items()})


def open_faces(where: str | Location, storage_options: dict | None = None):
    """A faces.zarr as an xarray Dataset (lazy), committed samples only.

    Any Zarr group with ``image(sample, y, x, channel)`` opens too (all its samples).

    Raises
    ------
    FileNotFoundError
        When there is no Zarr group at ``where``.
    """
    import xarray as xr

    loc = Location.resolve(where, storage_options)
    g = open_group(loc, "r")
    if g is None:
        raise FileNotFoundError(f"no faces store at {loc.url!r}: run `mlrdist ingest` first")
    store = g.store
    n = g.attrs.get("n_committed")
    if n is None:
        return xr.open_zarr(store, consolidated=False)
    n = int(n)
    # the arrays may disagree in length after a killed append: open each to its committed rows
    image = xr.open_zarr(store, consolidated=False, drop_variables=[k for k in g.array_keys() if k != "image"])
    ds = image["image"].isel(sample=slice(0, n)).to_dataset()
    for k in COORDS:
        if k in g:
            ds = ds.assign_coords({k: ("sample", np.asarray(g[k][:n]).astype(object))})
    ds.attrs.update(dict(g.attrs))
    return ds


def sample_chunk(shape: tuple[int, int], colour: str, budget: int = 1 << 20) -> int:
    """Samples per chunk: about ``budget`` bytes per chunk of a spatial tile (at most
    128 x 128 px), a power of two from 8 to 256. Small chunks keep the commit after every
    batch cheap: a batch rewrites (and recompresses) only the chunks it touches."""
    H, W = shape
    per = min(H, 128) * min(W, 128) * (3 if colour == "rgb" else 1)
    return int(min(256, max(8, 2 ** int(math.log2(max(1, budget // per))))))


class FacesWriter:
    """Appends rows to a faces.zarr, committing after every :meth:`append`.

    Parameters
    ----------
    where : Location
    attrs : dict
        The store's attributes (``size``, ``colour``, ``alignment``, ``citation``, ...);
        a store that exists must match them in ``size``, ``colour`` and the canonical eyes.
    """

    def __init__(self, where: Location, attrs: dict[str, Any]) -> None:
        self.where = where
        self.attrs = attrs
        self.group = self._open_existing()

    @property
    def committed(self) -> int:
        return int(self.group.attrs["n_committed"]) if self.group is not None else 0

    def known_digests(self) -> frozenset[str]:
        if self.group is None:
            return frozenset()
        n = self.committed
        return frozenset(str(d) for d in np.asarray(self.group["digest"][:n]).tolist())

    def known_versions(self) -> frozenset[tuple[str, str]]:
        """``(source URL, content version)`` of the committed rows: files unchanged since."""
        if self.group is None:
            return frozenset()
        return frozenset(zip(self.column("source"), self.column("version"), strict=True))

    def column(self, name: str) -> list[str]:
        """A committed coordinate, as strings."""
        if self.group is None:
            return []
        return [str(v) for v in np.asarray(self.group[name][: self.committed]).tolist()]

    def _open_existing(self):
        g = open_group(self.where, "r+")
        if g is None:
            return None
        attrs = g.attrs.asdict()
        url = self.where.url
        if "image" not in g or "n_committed" not in attrs:
            raise ValueError(f"{url!r} exists but is not a faces store written by mlrdist ingest; choose another dest")
        want = {k: self.attrs[k] for k in ("size", "colour")}
        have = {k: attrs.get(k) for k in want}
        if have != want:
            raise ValueError(f"{url!r} holds images with {have}; this run asks for {want}: use another dest")
        if attrs.get("alignment", {}).get("eyes_px") != self.attrs["alignment"]["eyes_px"]:
            raise ValueError(f"{url!r} was aligned with other canonical eye positions; use another dest")
        n = int(attrs["n_committed"])
        for k in ("image", *COORDS):
            if k not in g:  # a coordinate added since the store was made: empty for its rows
                _add_coordinate(self.where, k, n)
                g = open_group(self.where, "r+")
            if g[k].shape[0] != n:  # an uncommitted tail of a killed run
                g[k].resize((n, *g[k].shape[1:]))
        return g

    def append(self, rows: Rows) -> int:
        """Write ``rows`` and commit them; returns the number of committed samples."""
        if not len(rows):
            return self.committed
        if self.group is None:
            self.group = self._create(rows)
            return self.committed
        g = self.group
        n, k = self.committed, len(rows)
        image = g["image"]
        image.resize((n + k, *image.shape[1:]))
        image[n : n + k] = rows.images
        for name in COORDS:
            arr = g[name]
            arr.resize((n + k,))
            arr[n : n + k] = np.array(rows.coords[name], dtype=object)
        g.attrs["n_committed"] = n + k  # the commit point
        return n + k

    def _create(self, rows: Rows):
        import xarray as xr
        import zarr
        from zarr.codecs import BloscCodec

        H, W = self.attrs["size"]
        C = rows.images.shape[-1]
        tile = min(128, H), min(128, W)
        ds = xr.Dataset({"image": (("sample", "y", "x", "channel"), rows.images)},
                        coords={k: ("sample", np.array(v, dtype=object)) for k, v in rows.coords.items()})
        ds.attrs.update({**self.attrs, "n_committed": 0})
        chunks = (sample_chunk((H, W), self.attrs["colour"]), *tile, C)
        enc = {"image": {"chunks": chunks,
                         "compressors": [BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")]}}
        store = open_store(self.where)
        ds.to_zarr(store, mode="w-", consolidated=False, encoding=enc)
        g = zarr.open_group(store, mode="a")
        g.attrs["n_committed"] = len(rows)
        return g


def _add_coordinate(where: Location, name: str, n: int) -> None:
    import xarray as xr

    xr.Dataset(coords={name: ("sample", np.array([""] * n, dtype=object))}).to_zarr(
        open_store(where), mode="a", consolidated=False)
