"""Photos users keep: the change added at the photo's resolution keeps its detail, pixels
outside the faces keep their values, every face is edited, strength scales the change, gray
and colour photos keep their mode, a photo without a face comes back byte for byte."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mlrdist.align import read_tem, template_eyes
from mlrdist.datasets import load_sample
from mlrdist.io.weights_store import load_weights
from mlrdist.photo import (
    FacePlan,
    _photo_mask,
    face_mask,
    keep_detail,
    locate_faces,
    spec_from_weights,
    synthesize_photos,
)
from mlrdist.synthesize import synthesize
from mlrdist.train import fit_weights
from tests._images import tem_text


def _train(tmp, gray: bool) -> str:
    ds = load_sample()
    if gray:
        luma = np.rint(ds["image"].values @ [0.299, 0.587, 0.114]).astype(np.uint8)[..., None]
        ds = ds.drop_vars("image").assign(image=(("sample", "y", "x", "channel"), luma))
    faces, weights = str(tmp / "faces.zarr"), str(tmp / "weights.zarr")
    ds.to_zarr(faces, consolidated=False)
    fit_weights(faces, weights, receptive_field=5, alpha=1.0, scheduler="synchronous")
    return weights


@pytest.fixture(scope="module")
def colour_weights(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("colour"), gray=False)


@pytest.fixture(scope="module")
def gray_weights(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("gray"), gray=True)


def portrait(size: int = 360) -> tuple[np.ndarray, np.ndarray]:
    """A sample face (128 px, eyes at the canonical positions) placed at 2x in a larger photo
    with a textured background; returns the photo and its true eyes."""
    face = Image.fromarray(load_sample()["image"].values[0]).resize((256, 256), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(120, 25, (size, size + 40, 3)), 0, 255).astype(np.uint8)
    photo[50:306, 70:326] = np.asarray(face)
    eyes = np.array([[0.35 * 256 + 70, 0.4 * 256 + 50], [0.65 * 256 + 70, 0.4 * 256 + 50]])
    return photo, eyes


def hf_energy(img: np.ndarray, weight: np.ndarray) -> float:
    """Energy of the detail finer than a 2 px Gaussian, weighted (per channel, summed)."""
    img = img.astype(np.float64)
    low = ndimage.gaussian_filter(img, (2, 2, 0)[: img.ndim])
    return float((((img - low) ** 2).sum(axis=-1) * weight).sum())


def test_keep_detail_is_the_input_plus_the_low_passed_change():
    rng = np.random.default_rng(1)
    X, P = rng.random((2, 20, 20, 3)), rng.random((2, 20, 20, 3))
    np.testing.assert_allclose(keep_detail(X, P, 0.0, 1.0), P)
    np.testing.assert_allclose(keep_detail(X, P, 2.0, 0.0), X)
    got = keep_detail(X, P, 2.0, 2.0) - X
    np.testing.assert_allclose(got, 2 * (keep_detail(X, P, 2.0, 1.0) - X))
    assert np.abs(ndimage.laplace(got[0, ..., 0])).mean() < np.abs(ndimage.laplace((P - X)[0, ..., 0])).mean()


def test_strength_zero_returns_the_photo_and_two_doubles_the_change(colour_weights):
    model = load_weights(colour_weights)
    photo, eyes = portrait()
    faces = [[FacePlan(eyes, "template")]]
    zero, one, two = (synthesize_photos(model, [photo], faces, strength=s)[0].outputs["smiling"] for s in (0, 1, 2))
    np.testing.assert_array_equal(zero, photo)
    d1, d2 = one.astype(float) - photo, two.astype(float) - photo
    moved = np.abs(d1) > 4
    assert moved.sum() > 500
    np.testing.assert_allclose(d2[moved], 2 * d1[moved], atol=1.5)  # rounding of each output


def test_pixels_outside_the_face_are_untouched_and_the_face_changes(colour_weights, tmp_path):
    photo, eyes = portrait()
    root = tmp_path / "photos"
    root.mkdir()
    Image.fromarray(photo).save(root / "face.png")
    (root / "face.tem").write_text(tem_text(eyes))
    report = synthesize(colour_weights, str(root), str(tmp_path / "out"), scheduler="synchronous")
    assert report.converted == 1 and report.photos[0][1:] == [1, 1]
    got = np.asarray(Image.open(tmp_path / "out" / "smiling" / "face.png"))
    (x0, y0, x1, y1), _ = _photo_mask(eyes, spec_from_weights(load_weights(colour_weights)), photo.shape[:2])
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(got[outside], photo[outside])  # lossless: byte-equal pixels
    assert np.abs(got.astype(int) - photo)[~outside].max() > 10  # the face did change


def test_photo_without_a_face_is_copied_byte_for_byte(colour_weights, tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    wall = np.full((200, 300, 3), 180, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(wall).save(buf, "JPEG", quality=71)
    (root / "wall.jpg").write_bytes(buf.getvalue())
    report = synthesize(colour_weights, str(root), str(tmp_path / "out"), scheduler="synchronous")
    assert [u.rsplit("/", 1)[-1] for u in report.no_face] == ["wall.jpg"] and not report.failed
    assert (tmp_path / "out" / "smiling" / "wall.jpg").read_bytes() == buf.getvalue()


def test_gray_photo_with_colour_weights_stays_gray(colour_weights):
    model = load_weights(colour_weights)
    photo, eyes = portrait()
    gray = np.rint(photo @ [0.299, 0.587, 0.114]).astype(np.uint8)[..., None]
    out = synthesize_photos(model, [gray], [[FacePlan(eyes, "template")]])[0].outputs["smiling"]
    assert out.shape == gray.shape and np.abs(out.astype(int) - gray).max() > 10


def test_colour_photo_with_gray_weights_gets_no_tint(gray_weights):
    model = load_weights(gray_weights)
    photo, eyes = portrait()
    out = synthesize_photos(model, [photo], [[FacePlan(eyes, "template")]])[0].outputs["smiling"]
    change = out.astype(int) - photo
    assert out.shape == photo.shape and np.abs(change).max() > 10
    spread = change.max(axis=2) - change.min(axis=2)  # the same change in R, G and B
    assert spread.max() <= 2  # rounding (and clipping at 0/255 nowhere here)


def test_detail_mode_keeps_the_photos_detail_on_real_photos(colour_weights, data_dir):
    """London photos unlike the training set (composites, lisa): the face region keeps at
    least 80% of the input's fine detail with detail='keep', far more than the pasted
    prediction ('none')."""
    model = load_weights(colour_weights)
    wild = data_dir / "london-face-set" / "wild"
    for stem in ("composite_f_white", "lisa_lisa1", "lisa_lisa3"):
        photo = np.asarray(Image.open(wild / f"{stem}.jpg").convert("RGB"))
        eyes = template_eyes(read_tem(wild / f"{stem}.tem"))
        faces = [[FacePlan(eyes, "template")]]
        kept = synthesize_photos(model, [photo], faces, detail="keep")[0]
        pasted = synthesize_photos(model, [photo], faces, detail="none")[0]
        x0, y0, x1, y1 = kept.boxes[0]
        w = np.zeros(photo.shape[:2])
        w[y0:y1, x0:x1] = 1.0
        base = hf_energy(photo, w)
        ratio_keep = hf_energy(kept.outputs["smiling"], w) / base
        ratio_none = hf_energy(pasted.outputs["smiling"], w) / base
        assert ratio_keep >= 0.8, (stem, ratio_keep)
        assert ratio_none < ratio_keep - 0.2, (stem, ratio_none, ratio_keep)


def test_every_face_of_a_group_photo_is_edited(colour_weights, data_dir, tmp_path):
    from mlrdist.detect import detector_available

    if detector_available() is None:
        pytest.skip("no face detector installed (pip install 'mlrdist[align]')")
    from benchmarks._photos import make_group_photo

    photo, truth = make_group_photo(data_dir / "london-face-set")
    root = tmp_path / "group"
    root.mkdir()
    photo.save(root / "five.png")
    report = synthesize(colour_weights, str(root), str(tmp_path / "out"), scheduler="synchronous")
    assert report.photos == [[str(report.photos[0][0]), 5, 5]]
    got = np.asarray(Image.open(tmp_path / "out" / "smiling" / "five.png")).astype(int)
    src = np.asarray(photo).astype(int)
    for eyes in truth:
        d = float(np.hypot(*(eyes[1] - eyes[0])))
        x, y = eyes.mean(axis=0)
        mouth = (slice(int(y + 0.8 * d), int(y + 1.4 * d)), slice(int(x - 0.5 * d), int(x + 0.5 * d)))
        assert np.abs(got[mouth] - src[mouth]).mean() > 1.0, d


def test_templates_of_unknown_layout_fall_back_to_the_detector_or_fail_visibly(colour_weights, monkeypatch):
    photo, eyes = portrait()
    weird = np.vstack([eyes[::-1] + [0, 150], np.zeros((10, 2))])  # 12 points: no known layout
    monkeypatch.setattr("mlrdist.detect.detector_available", lambda: None)
    with pytest.raises(ImportError, match=r"mlrdist\[align\]"):
        locate_faces(photo, weird, "auto")
    faces, note = locate_faces(photo, weird, "landmarks")
    assert not faces and "12-point template is of no known layout" in note
    faces, note = locate_faces(photo, np.vstack([eyes, tem_points(eyes)]), "auto")
    assert len(faces) == 1 and faces[0].source == "template" and not note


def tem_points(eyes) -> np.ndarray:
    lines = tem_text(eyes).splitlines()[3:]
    return np.array([[float(v) for v in line.split()] for line in lines])


def test_face_mask_is_a_feathered_ellipse():
    from mlrdist.align import AlignSpec

    m = face_mask((128, 128), AlignSpec(size=128))
    assert m.max() == 1.0 and m[0, 0] == 0.0 and m[64, 64] == 1.0
