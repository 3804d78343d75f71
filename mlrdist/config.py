"""Frozen, keyword-only settings of each stage, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .estimator import COLOURS
from .kernels.windows import check_receptive_field
from .preprocess import SCALINGS, check_alpha, check_dtype

__all__ = ["TrainConfig"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """What a weights store is trained with; every field enters its fingerprint."""

    source: str = "neutral"
    targets: tuple[str, ...] = ("smiling",)
    receptive_field: int = 3
    alpha: float = 0.4
    colour: str = "per_channel"
    dtype: str = "float64"
    scaling: str = "unit"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", (self.targets,))
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets:
            raise ValueError("targets must name at least one target expression, e.g. ('smiling',)")
        if self.source in self.targets:
            raise ValueError(f"source expression {self.source!r} is also among targets {self.targets}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"targets contain duplicates: {self.targets}")
        check_receptive_field(self.receptive_field)
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {self.colour!r}")
        object.__setattr__(self, "dtype", check_dtype(self.dtype).name)
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d
