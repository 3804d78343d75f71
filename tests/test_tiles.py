"""Tile planning: coverage, halos, chunk alignment and the memory check (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlrdist.tiles import MEMORY_FRACTION, plan_tiles

COMMON = dict(receptive_field=3, n_samples=50, channels=3, n_targets=1, colour="per_channel", itemsize=8)


@settings(max_examples=60, deadline=None)
@given(H=st.integers(1, 700), W=st.integers(1, 700), tile=st.integers(1, 300))
def test_tiles_cover_image_once_and_align_with_chunks(H, W, tile):
    assume(-(-H // tile) * -(-W // tile) <= 4000)  # a million 1-pixel tiles only slow the test
    plan = plan_tiles(H, W, tile=tile, **COMMON)
    cover = np.zeros((H, W), dtype=int)
    for t in plan.tiles():
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert t.y0 % plan.chunk == 0 and t.x0 % plan.chunk == 0
    assert (cover == 1).all()
    assert plan.tile % plan.chunk == 0 and plan.chunk <= max(128, plan.tile if plan.chunk == plan.tile else 0)


@settings(max_examples=40, deadline=None)
@given(
    H=st.integers(8, 2048), k=st.sampled_from([1, 3, 7, 15]), n=st.integers(1, 300),
    memory=st.integers(50 * 2**20, 16 * 2**30),
)
def test_default_plan_fits_memory_or_is_refused(H, k, n, memory):
    kw = {**COMMON, "receptive_field": k, "n_samples": n}
    try:
        plan = plan_tiles(H, H, worker_memory=memory, min_tiles=4, **kw)
    except ValueError as exc:
        assert "smaller tile" in str(exc)
        return
    assert plan.task_nbytes() <= MEMORY_FRACTION * memory
    assert plan.tile <= max(H, 16)


def test_memory_grows_with_tile_and_samples():
    small = plan_tiles(512, 512, tile=64, **COMMON).task_nbytes()
    assert plan_tiles(512, 512, tile=128, **COMMON).task_nbytes() > 3 * small
    assert plan_tiles(512, 512, tile=64, **{**COMMON, "n_samples": 100}).task_nbytes() > 1.5 * small


def test_refusal_names_the_setting():
    with pytest.raises(ValueError, match=r"use a smaller tile \(tile=256 now; try tile=128\)"):
        plan_tiles(1024, 1024, tile=256, worker_memory=100 * 2**20, **COMMON)
