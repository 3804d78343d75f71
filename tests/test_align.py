"""Eye-based similarity alignment, template reading and pair registration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mlrdist.align import (
    AlignSpec,
    align_image,
    eye_transform,
    implausible_eyes,
    read_tem,
    register_pair,
    template_eyes,
)


def _dots(size, eyes, r=6):
    img = Image.new("L", size, 0)
    d = ImageDraw.Draw(img)
    for x, y in eyes:
        d.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return img


def _centroids(arr):
    """Centroids (x, y) of the bright blobs in the left and right half."""
    H, W = arr.shape
    out = []
    for sl in (slice(0, W // 2), slice(W // 2, W)):
        part = arr[:, sl].astype(float)
        ys, xs = np.mgrid[0:H, 0:W][0][:, sl], np.mgrid[0:H, 0:W][1][:, sl]
        out.append(((xs + 0.5) * part).sum() / part.sum())
        out[-1] = (out[-1], ((ys + 0.5) * part).sum() / part.sum())
    return np.array(out)


def test_eye_transform_maps_canonical_to_eyes():
    spec = AlignSpec(size=(100, 80))
    eyes = np.array([[300.0, 410.0], [520.0, 380.0]])
    M = eye_transform(eyes, spec)
    got = np.c_[spec.eyes_px(), np.ones(2)] @ M.T
    np.testing.assert_allclose(got, eyes, atol=1e-9)


@pytest.mark.parametrize("size", [64, (96, 80), 256])
def test_align_image_puts_eyes_on_canonical_positions(size):
    eyes = np.array([[412.0, 530.0], [640.0, 470.0]])  # tilted about 15 degrees, eye distance 236
    img = _dots((1000, 900), eyes, r=14)
    spec = AlignSpec(size=size)
    out = np.asarray(align_image(img, eyes, spec))
    assert out.shape == spec.size
    np.testing.assert_allclose(_centroids(out), spec.eyes_px(), atol=0.35)


def test_align_image_with_draft_scale():
    eyes = np.array([[400.0, 500.0], [600.0, 500.0]])
    half = _dots((1000, 1000), eyes / 2, r=8)  # as if decoded at 1/2 scale
    spec = AlignSpec(size=128)
    out = np.asarray(align_image(half, eyes, spec, eye_scale=0.5))
    np.testing.assert_allclose(_centroids(out), spec.eyes_px(), atol=0.35)


@pytest.mark.parametrize("kwargs", [{"size": 16}, {"size": 2048}, {"size": (64, 64, 3)},
                                    {"left_eye": (0.7, 0.4), "right_eye": (0.3, 0.4)},
                                    {"left_eye": (0.3, 1.2)}])
def test_align_spec_rejects(kwargs):
    with pytest.raises(ValueError):
        AlignSpec(**kwargs)


def test_coincident_eyes_rejected():
    with pytest.raises(ValueError, match="coincide"):
        eye_transform(np.array([[5.0, 5.0], [5.0, 5.0]]), AlignSpec())


def test_read_tem(tmp_path):
    p = tmp_path / "a.tem"
    p.write_text("3\n565.0\t632.0\n778.0\t624.0\n1\t2\n0\n")
    np.testing.assert_array_equal(read_tem(p)[:2], [[565, 632], [778, 624]])
    assert read_tem(p.read_bytes()).shape == (3, 2)
    with pytest.raises(ValueError, match="template"):
        read_tem(b"not a template\n1 2\n")
    with pytest.raises(ValueError, match="declares 5"):
        read_tem(b"5\n1\t2\n3\t4\n")


def _similar(img, s, theta_deg, t, centre):
    """``img`` moved by a similarity about ``centre``: returns the image and the point map."""
    th = math.radians(theta_deg)
    A = s * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    c = np.asarray(centre)

    def fwd(p):
        return (np.asarray(p) - c) @ A.T + c + t

    Ainv = np.linalg.inv(A)
    off = c - Ainv @ (c + t)  # output -> input
    data = (*Ainv[0], off[0], *Ainv[1], off[1])
    return img.transform(img.size, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC), fwd


def test_register_pair_recovers_a_known_similarity():
    """The packaged sample's neutral face, moved by 3 % scale, 2.5 degrees and (9, -6) px:
    the registered eyes land within half a pixel of the truth."""
    from mlrdist.datasets import load_sample

    ds = load_sample()
    face = Image.fromarray(ds["image"].values[0]).resize((384, 384), Image.Resampling.BICUBIC)
    eyes = AlignSpec(size=384).eyes_px()
    moved, fwd = _similar(face, 1.03, 2.5, np.array([9.0, -6.0]), eyes.mean(axis=0))
    got, ncc = register_pair(face, moved, eyes)
    assert ncc > 0.95
    np.testing.assert_allclose(got, fwd(eyes), atol=0.5)


@pytest.mark.full_data
def test_register_pair_on_london_photo(data_dir):
    """A full-size London photo (1350 px) moved by a similarity, decoded at 1/4 scale."""
    london = data_dir / "london-face-set" / "neutral"
    eyes = read_tem(london / "016_03.tem")[:2]
    full = Image.open(london / "016_03.jpg").convert("RGB")
    moved, fwd = _similar(full, 0.97, -3.0, np.array([-40.0, 25.0]), eyes.mean(axis=0))
    ref, mov = full.reduce(4), moved.reduce(4)
    got, ncc = register_pair(ref, mov, eyes, ref_scale=0.25, moving_scale=0.25)
    err = np.hypot(*(got - fwd(eyes)).T)
    assert ncc > 0.95 and err.max() < 2.0, err  # full-resolution pixels; eye distance is about 200


def test_template_layouts_give_the_pupils():
    pts = np.random.default_rng(0).random((189, 2)) * 500
    pts[0], pts[1] = (300, 200), (200, 202)  # right pupil listed first: sorted to image order
    np.testing.assert_allclose(template_eyes(pts), [[200, 202], [300, 200]])
    zoom = np.random.default_rng(1).random((83, 2))
    zoom[[57, 63]] = (10, 20), (12, 22)
    zoom[[81, 50]] = (50, 20), (52, 22)
    np.testing.assert_allclose(template_eyes(zoom), [[11, 21], [51, 21]])
    with pytest.raises(LookupError, match="12-point template is of no known layout"):
        template_eyes(np.zeros((12, 2)))
    np.testing.assert_allclose(template_eyes(np.arange(24.0).reshape(12, 2), {12: ((4,), (5,))}), [[8, 9], [10, 11]])


@pytest.mark.parametrize(
    ("eyes", "points", "why"),
    [
        ([[40, 50], [70, 50]], None, None),
        ([[40, 50], [700, 50]], None, "outside"),
        ([[40, 50], [45, 50]], None, "apart"),
        ([[20, 20], [60, 60]], None, "tilted"),
        ([[40, 50], [70, 50]], [[0, 0], [400, 300]], "extent"),
    ],
)
def test_implausible_eyes(eyes, points, why):
    got = implausible_eyes(np.array(eyes, float), (100, 120), None if points is None else np.array(points, float))
    assert (got is None) if why is None else (why in got)


def test_london_template_layouts_are_plausible_and_zoom_mouth_is_not(data_dir):
    """Every template of the London set gives plausible eyes by its layout; zoom's points 0 and
    1, which lie on the mouth, are refused when read as eyes."""
    wild = data_dir / "london-face-set" / "wild"
    for tem in sorted(wild.glob("*.tem")):
        pts = read_tem(tem)
        size = Image.open(tem.with_suffix(".jpg")).size
        assert implausible_eyes(template_eyes(pts), size, pts) is None, tem.name
        if tem.name.startswith("zoom"):
            assert implausible_eyes(pts[:2], size, pts) is not None, tem.name
