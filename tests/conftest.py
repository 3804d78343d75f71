"""Shared fixtures.

The full face sets are looked up in ``MLRDIST_DATA`` and then in ``../shared/data`` next to
the repository; tests that need them skip with the reason when neither exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path | None:
    for candidate in (os.environ.get("MLRDIST_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "london-face-set").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = find_data_dir()
    if path is None:
        pytest.skip(
            "full face sets not found: set MLRDIST_DATA to the folder holding "
            "london-face-set/ and yale-faces/ (or place them at ../shared/data)"
        )
    return path


@pytest.fixture(scope="session")
def london_small(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """Eight real London pairs, 24 x 20 grayscale float64 in [0, 1] (crude centre crop)."""
    from PIL import Image

    def load(path: Path) -> np.ndarray:
        img = Image.open(path).convert("L").crop((375, 375, 975, 1095)).resize((20, 24))
        return np.asarray(img, dtype=np.float64) / 255.0

    neutral = sorted((data_dir / "london-face-set" / "neutral").glob("*_03.jpg"))[:8]
    X = np.stack([load(p) for p in neutral])
    Y = np.stack(
        [load(data_dir / "london-face-set" / "smiling" / p.name.replace("_03", "_08")) for p in neutral]
    )
    return X, Y
