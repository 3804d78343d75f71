"""Pure planning of tile-parallel training: tile grid, halos, projected memory per task.

One *tile* is one Dask task and one Zarr chunk of the weights: its task reads the source
images of the tile plus a halo of ``k // 2`` pixels (zeros beyond the image border) and the
target images of the tile, for all training samples, and writes the tile's weights. The
planner projects each task's peak memory before anything runs, so a plan that cannot fit
the workers is refused up front with the setting to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .kernels.cost import block_nbytes, choose_solver, default_subtile

__all__ = ["Tile", "TilePlan", "plan_tiles", "row_bands"]

# Fraction of a worker's memory limit a task may plan to use (Dask's spill threshold is 0.6).
MEMORY_FRACTION = 0.5
DEFAULT_TILE_CANDIDATES = (256, 128, 64, 32, 16)
MAX_CHUNK = 128


@dataclass(frozen=True)
class Tile:
    """One tile of output pixels: grid index and half-open pixel bounds."""

    iy: int
    ix: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


@dataclass(frozen=True, kw_only=True)
class TilePlan:
    """Tile grid over an ``height x width`` image and the projected cost of its tasks."""

    height: int
    width: int
    tile: int
    receptive_field: int
    n_samples: int
    channels: int
    n_targets: int
    colour: str
    itemsize: int

    @property
    def halo(self) -> int:
        return self.receptive_field // 2

    @property
    def grid(self) -> tuple[int, int]:
        return math.ceil(self.height / self.tile), math.ceil(self.width / self.tile)

    @property
    def n_features(self) -> int:
        k = self.receptive_field
        return k * k * (self.channels if self.colour == "joint" else 1)

    @property
    def chunk(self) -> int:
        """Zarr chunk side of the weights: the largest divisor of the tile up to 128 px.

        Tiles are whole multiples of chunks, so each task still writes only chunks it owns;
        smaller chunks keep partial reads (a region's receptive fields) cheap. Falls back to
        the tile itself when it has no divisor of at least 32 px.
        """
        best = max(d for d in range(1, min(self.tile, MAX_CHUNK) + 1) if self.tile % d == 0)
        return best if best >= min(32, self.tile) else self.tile

    def tiles(self) -> list[Tile]:
        t = self.tile
        ny, nx = self.grid
        return [
            Tile(iy, ix, iy * t, min(self.height, (iy + 1) * t), ix * t, min(self.width, (ix + 1) * t))
            for iy in range(ny)
            for ix in range(nx)
        ]

    def task_nbytes(self) -> int:
        """Projected peak bytes of one task (the largest, full-size tile)."""
        k, n, C, m = self.receptive_field, self.n_samples, self.channels, self.n_targets
        th = tw = self.tile
        reg = (th + k - 1) * (tw + k - 1)
        inputs = n * reg * C * (1 + 2 * self.itemsize)  # uint8 read, scaled, samples-last
        targets = m * n * th * tw * C * (1 + 2 * self.itemsize)
        outputs = 2 * m * C * th * tw * (self.n_features + 1) * self.itemsize
        sub = min(default_subtile(k), self.tile)
        cg = C if self.colour == "joint" else 1
        rhs = m * cg
        solver = choose_solver(n, k, cg, rhs, sub, sub)
        kernel = block_nbytes(solver, n, k, cg, rhs, sub, sub, self.itemsize)
        return int(inputs + targets + outputs + kernel)

    def describe(self) -> str:
        ny, nx = self.grid
        return (
            f"{ny * nx} tiles of {self.tile}x{self.tile} px (halo {self.halo}) over "
            f"{self.height}x{self.width}, {self.n_samples} samples, ~"
            f"{self.task_nbytes() / 2**20:.1f} MiB per task"
        )

    def check_memory(self, worker_memory: int | None) -> None:
        """Refuse a plan whose tasks cannot fit ``worker_memory`` bytes per task slot."""
        if worker_memory is None:
            return
        need = self.task_nbytes()
        if need > MEMORY_FRACTION * worker_memory:
            raise ValueError(
                f"a training task needs ~{need / 2**20:.0f} MiB but a worker offers "
                f"{worker_memory / 2**20:.0f} MiB per task ({MEMORY_FRACTION:.0%} of it "
                f"usable): use a smaller tile (tile={self.tile} now; try "
                f"tile={max(8, self.tile // 2)}), fewer training pairs, float32, or workers "
                "with more memory (or fewer threads per worker)"
            )


def plan_tiles(
    height: int,
    width: int,
    *,
    receptive_field: int,
    n_samples: int,
    channels: int,
    n_targets: int,
    colour: str,
    itemsize: int,
    tile: int | None = None,
    worker_memory: int | None = None,
    min_tiles: int = 1,
) -> TilePlan:
    """Lay out training tiles and check them against the workers' memory.

    ``tile=None`` picks the largest candidate side (256, 128, ...) whose task fits
    ``worker_memory`` and that gives at least ``min_tiles`` tiles (e.g. twice the number of
    workers), never larger than the image.
    """
    common = dict(
        height=height, width=width, receptive_field=receptive_field, n_samples=n_samples,
        channels=channels, n_targets=n_targets, colour=colour, itemsize=itemsize,
    )
    if tile is not None:
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
            raise ValueError(f"tile must be a positive integer (pixels per tile side), got {tile!r}")
        plan = TilePlan(tile=tile, **common)
        plan.check_memory(worker_memory)
        return plan
    side = max(height, width)
    candidates = [t for t in DEFAULT_TILE_CANDIDATES if t < side] or [side]
    if side <= DEFAULT_TILE_CANDIDATES[0]:
        candidates = [side, *candidates]
    plan = None
    for t in candidates:
        plan = TilePlan(tile=t, **common)
        ny, nx = plan.grid
        fits = worker_memory is None or plan.task_nbytes() <= MEMORY_FRACTION * worker_memory
        if fits and ny * nx >= min_tiles:
            return plan
    for t in candidates:  # enough tiles was not possible: take the largest that fits
        plan = TilePlan(tile=t, **common)
        if worker_memory is None or plan.task_nbytes() <= MEMORY_FRACTION * worker_memory:
            return plan
    plan.check_memory(worker_memory)  # raises with advice
    return plan


def row_bands(height: int, parts: int, multiple: int = 1) -> list[tuple[int, int]]:
    """Split ``height`` rows into at most ``parts`` contiguous bands ``(y0, y1)`` whose
    boundaries fall on multiples of ``multiple`` (so sub-tiles are never cut)."""
    units = -(-height // max(1, multiple))
    parts = max(1, min(parts, units))
    edges = [min(height, (units * i // parts) * multiple) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
