"""Frozen, keyword-only settings of each stage, validated once, on construction.

* :class:`IngestConfig`, :class:`TrainConfig`, :class:`SynthesisConfig` -- what each stage
  does. Stage functions take a config (or its fields as keywords) and Prefect flows take the
  configs as parameters, so the settings are declared once, here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ._validation import (
    COLOURS,
    check_alpha,
    check_choice,
    check_dtype,
    check_either,
    check_layouts,
    check_number,
    check_positive_int,
    check_size,
)
from .kernels.windows import check_receptive_field
from .labels import check_labels
from .scaling import SCALINGS

__all__ = [
    "INGEST_ALIGN",
    "PHOTO_ALIGN",
    "IngestConfig",
    "SynthesisConfig",
    "TrainConfig",
    "build_config",
]

INGEST_ALIGN = ("auto", "landmarks", "detector", "none")
PHOTO_ALIGN = ("auto", "landmarks", "detector", "resize", "none")
IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp")


def build_config(cls: type, config: Any = None, **settings: Any) -> Any:
    """``config`` (an instance of ``cls``, a dict of its fields or None) with ``settings``
    overriding fields; unknown settings are an error naming the valid ones."""
    if config is None:
        config = cls()
    elif isinstance(config, dict):
        config = cls(**config)
    elif not isinstance(config, cls):
        raise ValueError(f"config must be a {cls.__name__}, a dict of its fields or None, got {config!r}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; valid: {sorted(names)}")
    return replace(config, **settings) if settings else config


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """How images become a faces store.

    Attributes
    ----------
    labels : str
        ``"london"`` (``neutral/NNN_03.jpg``, ``smiling/NNN_08.jpg``), ``"yale"``
        (``SS_expression.png``), ``"sample"`` (the packaged sample's ``expression/NNN.png``),
        a regex with named groups ``subject`` and ``expression`` (searched in the path
        relative to the source), or a manifest ``.csv`` (columns ``file, subject, expression``).
    size : int or (H, W)
        Output size, 32..1024.
    colour : {"rgb", "gray"}
    align : {"auto", "landmarks", "detector", "none"}
        ``auto``: eyes from a ``.tem`` template beside the image, else registration to a
        templated image of the same subject, else the detector (``mlrdist[align]``).
        ``landmarks``: templates and registration only (others are skipped).
        ``detector``: the detector for every image. ``none``: centre crop and resize.
    batch_size : int
        Files per Dask task (a subject's files are never split).
    """

    labels: str = "london"
    size: int | tuple[int, int] = 128
    colour: str = "rgb"
    align: str = "auto"
    batch_size: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", check_size(self.size))
        check_either(self.colour, "colour", "rgb", "gray")
        check_choice(self.align, "align", INGEST_ALIGN)
        object.__setattr__(self, "batch_size", check_positive_int(self.batch_size, "batch_size"))
        check_labels(self.labels)

    @property
    def shape(self) -> tuple[int, int]:
        """Output (H, W)."""
        if isinstance(self.size, int):
            return self.size, self.size
        height, width = self.size
        return height, width

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What a weights store is trained with.

    The model fields (``source`` to ``scaling`` and ``extra``) enter the store's
    fingerprint; ``"auto"`` for ``receptive_field`` or ``alpha`` marks a hyper-parameter to
    select (over ``receptive_fields`` / ``alphas``, see :mod:`mlrdist.select`) before
    training. ``tile`` is the side of one training task's tile (default: planned from the
    workers' memory).
    """

    source: str = "neutral"
    targets: tuple[str, ...] = ("smiling",)
    receptive_field: int | str = 3
    alpha: float | str = 0.4
    colour: str = "per_channel"
    dtype: str = "float64"
    scaling: str = "unit"
    tile: int | None = None
    receptive_fields: tuple[int, ...] | None = None
    alphas: tuple[float, ...] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        object.__setattr__(self, "targets", targets)
        if not self.targets:
            raise ValueError("targets must name at least one target expression, e.g. ('smiling',)")
        if self.source in self.targets:
            raise ValueError(f"source expression {self.source!r} is also among targets {self.targets}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets contain duplicates: {self.targets}")
        if self.receptive_field != "auto":
            object.__setattr__(self, "receptive_field", check_receptive_field(self.receptive_field))
        if self.alpha != "auto":
            object.__setattr__(self, "alpha", check_alpha(self.alpha))
        check_choice(self.colour, "colour", COLOURS)
        object.__setattr__(self, "dtype", check_dtype(self.dtype).name)
        check_choice(self.scaling, "scaling", SCALINGS)
        if self.tile is not None:
            check_positive_int(self.tile, "tile", " (pixels per tile side)")
        if self.receptive_fields is not None:
            object.__setattr__(self, "receptive_fields",
                               tuple(check_receptive_field(k) for k in self.receptive_fields))
        if self.alphas is not None:
            object.__setattr__(self, "alphas", tuple(check_alpha(a, "alphas") for a in self.alphas))

    @property
    def needs_selection(self) -> bool:
        """Whether ``receptive_field`` or ``alpha`` is still ``"auto"``."""
        return self.receptive_field == "auto" or self.alpha == "auto"

    def to_dict(self) -> dict:
        """The model fields (what the fingerprint covers), JSON-able."""
        return {"source": self.source, "targets": list(self.targets),
                "receptive_field": self.receptive_field, "alpha": self.alpha, "colour": self.colour,
                "dtype": self.dtype, "scaling": self.scaling, "extra": dict(self.extra)}


@dataclass(frozen=True, kw_only=True)
class SynthesisConfig:
    """How stored weights are applied to a collection.

    Attributes
    ----------
    align : {"auto", "landmarks", "detector", "resize", "none"} or None
        Photo collections: ``none`` -- already aligned at the weights' size; ``resize`` --
        centre-crop and resize (pre-cropped faces, animal photos); otherwise every face is
        aligned like the training faces, synthesised and blended back into the photo. None:
        the default for the kind of input. Zarr inputs are aligned faces and take no ``align``.
    no_face : {"copy", "skip"}
        A photo without a face (when aligning): copied through unchanged or not written;
        reported either way.
    format : str, optional
        Output image format (png, jpg, webp, tif, bmp); default: the input's own.
    batch : int, optional
        Images per Dask task (default 256 for Zarr inputs; for photos with faces to align
        32, a task closing earlier at 24 MiB of files; 64 for aligned photos).
    keep_parts : bool
        For a ``.zip`` output: keep the image tree ``{name}.parts`` it is built in, with its
        completion manifests, so that a rerun converts only new or failed inputs.
    detail : {"keep", "none"} or None
        ``keep``: add the model's low-passed change to the input, at the photo's resolution,
        keeping its detail (see :mod:`mlrdist.photo`); ``none``: the prediction itself, the
        paper's output. None: ``keep`` for photos, ``none`` for Zarr inputs.
    strength : float
        output = input + strength x change: 0 returns the input, 1 is the model, above 1
        exaggerates a faint expression (0 to 4).
    template_layouts : dict, optional
        ``.tem`` layouts beyond the known ones, ``{n_points: [left-eye indices, right-eye
        indices]}`` (see :data:`mlrdist.align.TEMPLATE_EYES`).
    """

    align: str | None = None
    no_face: str = "copy"
    format: str | None = None
    batch: int | None = None
    keep_parts: bool = False
    detail: str | None = None
    strength: float = 1.0
    template_layouts: dict | None = None

    def __post_init__(self) -> None:
        if self.align is not None:
            check_choice(self.align, "align", PHOTO_ALIGN)
        if self.detail is not None:
            check_choice(self.detail, "detail", ("keep", "none"))
        strength = check_number(self.strength, "strength", 0.0, 4.0)
        object.__setattr__(self, "strength", strength)
        if self.template_layouts is not None:
            object.__setattr__(self, "template_layouts", check_layouts(self.template_layouts))
        check_either(self.no_face, "no_face", "copy", "skip")
        if self.format is not None:
            fmt = str(self.format).lower().lstrip(".")
            if fmt not in IMAGE_FORMATS:
                raise ValueError(f"format must be one of png, jpg, webp, tif, bmp; got {self.format!r}")
            object.__setattr__(self, "format", fmt)
        if self.batch is not None:
            object.__setattr__(self, "batch", check_positive_int(self.batch, "batch"))

    @property
    def photo_options_set(self) -> list[str]:
        """The photo-only settings that were set (refused for Zarr inputs; ``keep_parts`` only
        concerns ``.zip`` outputs and is ignored otherwise)."""
        return [name for name in ("align", "format", "template_layouts") if getattr(self, name) is not None]

    def to_dict(self) -> dict:
        return asdict(self)
