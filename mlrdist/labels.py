"""File names and manifests -> (subject, expression), and training pairs by subject.

Labels are a preset (``london``, ``yale``, ``sample``), a regex with the named groups
``subject`` and ``expression`` (searched in the path relative to the source), or a manifest
CSV with the columns ``file, subject, expression``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["CITATIONS", "LABEL_PRESETS", "LabelRule", "Pairs", "check_labels", "label_rule", "pair_indices"]

Labeller = Callable[[str], "tuple[str, str] | None"]

LABEL_PRESETS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    # Face Research Lab London Set: neutral/NNN_03.jpg, smiling/NNN_08.jpg
    "london": (r"(?:^|/)(?P<expression>neutral|smiling)/(?P<subject>\d{3})_(?:03|08)\.jpe?g$",
               ("neutral", "smiling")),
    # Yale faces: SS_expression.png (e.g. 01_happy.png)
    "yale": (r"(?:^|/)(?P<subject>\d{2})_(?P<expression>[a-z]+)\.(?:png|gif|pgm)$", None),
    # the sample shipped in the package: neutral/NNN.png, smiling/NNN.png (already aligned)
    "sample": (r"(?:^|/)(?P<expression>neutral|smiling)/(?P<subject>\d+)\.png$", ("neutral", "smiling")),
}
CITATIONS = {
    "london": "DeBruine, L., & Jones, B. (2017). Face Research Lab London Set (Version 5). figshare. "
              "doi:10.6084/m9.figshare.5047666.v5 (CC BY 4.0)",
    "yale": "Belhumeur, Hespanha, Kriegman, 'Eigenfaces vs. Fisherfaces', IEEE TPAMI 19(7), 1997",
}
CITATIONS["sample"] = CITATIONS["london"]


@dataclass(frozen=True)
class LabelRule:
    """How to label a file name, which expressions a preset expects, and whom to cite."""

    label: Labeller
    expected: tuple[str, ...] | None
    citation: str


def check_labels(labels: str) -> None:
    """Validate a labels setting without reading anything (a manifest is read later)."""
    if not isinstance(labels, str) or not labels:
        raise ValueError(f"labels must be a preset {sorted(LABEL_PRESETS)}, a regex or a manifest .csv, got {labels!r}")
    if labels in LABEL_PRESETS or labels.lower().endswith(".csv"):
        return
    _compile(labels)


def _compile(labels: str) -> re.Pattern:
    try:
        rx = re.compile(labels)
    except re.error as exc:
        raise ValueError(
            f"labels is neither a preset {sorted(LABEL_PRESETS)}, a manifest .csv, nor a valid regex: {exc}"
        ) from None
    if not {"subject", "expression"} <= set(rx.groupindex):
        raise ValueError("a labels regex needs the named groups (?P<subject>...) and (?P<expression>...), "
                         f"got {labels!r}")
    return rx


def label_rule(labels: str, read: Callable[[str], bytes] | None = None) -> LabelRule:
    """The rule for ``labels``; a manifest ``.csv`` is read now with ``read(url) -> bytes``."""
    if labels in LABEL_PRESETS:
        pattern, expected = LABEL_PRESETS[labels]
        return LabelRule(_regex_labeller(re.compile(pattern)), expected, CITATIONS[labels])
    if labels.lower().endswith(".csv"):
        if read is None:
            raise ValueError(f"labels {labels!r} is a manifest: give a function to read it")
        return LabelRule(_manifest_labeller(labels, read(labels)), None, "")
    return LabelRule(_regex_labeller(_compile(labels)), None, "")


def _regex_labeller(rx: re.Pattern) -> Labeller:
    def label(name: str):
        m = rx.search(name)
        return (m["subject"], m["expression"]) if m else None

    return label


def _manifest_labeller(url: str, data: bytes) -> Labeller:
    """A CSV with columns ``file`` (name relative to the source, or URL), ``subject``,
    ``expression``."""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    if not rows or not {"file", "subject", "expression"} <= set(rows[0]):
        raise ValueError(f"manifest {url!r} needs the columns file, subject, expression")
    table = {r["file"].strip().lstrip("./"): (r["subject"].strip(), r["expression"].strip()) for r in rows}

    def label(name: str):
        return table.get(name) or table.get(name.rsplit("/", 1)[-1])

    return label


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pairs:
    """Training pairs by subject: sample indices of the source and of each target."""

    subjects: tuple[str, ...]
    source: np.ndarray  # (n,)
    targets: np.ndarray  # (m, n)
    dropped: tuple[str, ...] = ()

    def restrict(self, subjects) -> Pairs:
        """Only the pairs of ``subjects`` (order kept)."""
        wanted = {str(s) for s in subjects}
        missing = sorted(wanted - set(self.subjects))
        if missing:
            raise ValueError(f"subjects without a complete pair in the store: {missing[:10]}")
        keep = [j for j, s in enumerate(self.subjects) if s in wanted]
        if not keep:
            raise ValueError("subjects selects no training pair; give at least one subject")
        return Pairs(subjects=tuple(self.subjects[j] for j in keep), source=self.source[keep],
                     targets=self.targets[:, keep], dropped=self.dropped)


def pair_indices(subjects, expressions, source: str, targets: tuple[str, ...]) -> Pairs:
    """Pair samples by subject: each subject with the source and every target expression.

    The first sample (in store order) of a subject/expression is used; subjects are sorted.
    Subjects lacking any of the expressions are listed in ``dropped``.
    """
    subjects = [str(s) for s in np.asarray(subjects).tolist()]
    expressions = [str(e) for e in np.asarray(expressions).tolist()]
    first: dict[tuple[str, str], int] = {}
    for i, key in enumerate(zip(subjects, expressions, strict=True)):
        first.setdefault(key, i)
    wanted = (source, *targets)
    everyone = sorted(set(subjects))
    keep = [s for s in everyone if all((s, e) in first for e in wanted)]
    if not keep:
        raise ValueError(
            f"no subject has both the source expression {source!r} and the target(s) "
            f"{list(targets)}; expressions in the store: {sorted(set(expressions))}"
        )
    kept = set(keep)
    return Pairs(
        subjects=tuple(keep),
        source=np.array([first[(s, source)] for s in keep]),
        targets=np.array([[first[(s, t)] for s in keep] for t in targets]),
        dropped=tuple(s for s in everyone if s not in kept),
    )
