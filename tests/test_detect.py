"""Face detection: every face of a group photo, eyes on the pupils, and a clear error without
the 'align' extra."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlrdist import detect


def test_without_a_detector_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(detect, "detector_available", lambda: None)
    with pytest.raises(ImportError, match=r"mlrdist\[align\]"):
        detect.detect_faces(np.zeros((64, 64, 3), np.uint8))


def test_debias_moves_eyes_up_the_face():
    eyes = np.array([[100.0, 100.0], [140.0, 100.0]])
    got = detect._debias(eyes, "dlib")
    np.testing.assert_allclose(got, eyes - [0, 0.05 * 40])  # 'down' is +y for an upright face
    turned = detect._debias(eyes[:, ::-1].copy() * [1, 1], "dlib")  # a face lying on its side
    assert np.allclose(np.diff(turned[:, 1]), 40)


@pytest.fixture(scope="module")
def group(data_dir):
    from benchmarks._photos import make_group_photo

    photo, eyes = make_group_photo(data_dir / "london-face-set")
    return np.asarray(photo), eyes


@pytest.mark.parametrize("gray", [False, True])
def test_finds_every_face_of_a_group_photo_with_sunglasses(group, gray):
    if detect.detector_available() is None:
        pytest.skip("no face detector installed (pip install 'mlrdist[align]')")
    photo, truth = group
    if gray:
        photo = np.rint(photo @ [0.299, 0.587, 0.114]).astype(np.uint8)
    t0 = time.process_time()
    faces = detect.detect_faces(photo)
    cpu = time.process_time() - t0
    assert len(faces) == 5
    for eyes in truth:
        d = float(np.hypot(*(eyes[1] - eyes[0])))
        err = min(float(np.hypot(*(f.eyes - eyes).T).max()) for f in faces) / d
        assert err < 0.12, (d, err)  # the person in sunglasses included
    assert cpu < 4.0  # about 0.2 s on 2 cores; generous for a loaded CI machine


def test_london_shots_align_on_the_pupils(data_dir):
    """Detected eyes of full-size London shots land within 6% of the eye distance of the
    templates' pupils (training aligns on those)."""
    if detect.detector_available() is None:
        pytest.skip("no face detector installed (pip install 'mlrdist[align]')")
    from PIL import Image

    from mlrdist.align import read_tem, template_eyes

    errors = []
    for jpg in sorted((data_dir / "london-face-set" / "neutral").glob("*_03.jpg"))[:6]:
        truth = template_eyes(read_tem(jpg.with_suffix(".tem")))
        faces = detect.detect_faces(np.asarray(Image.open(jpg).convert("RGB")))
        d = float(np.hypot(*(truth[1] - truth[0])))
        errors.append(min(float(np.hypot(*(f.eyes - truth).T).max()) for f in faces) / d)
    assert max(errors) < 0.06, errors


def test_threads_detect_at_once(data_dir):
    """The threads scheduler runs detection in several threads of one process: each gets its
    own network (OpenCV's DNN fails when one is shared), with the same results."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    if detect.detector_available() is None:
        pytest.skip("no face detector installed (pip install 'mlrdist[align]')")
    paths = sorted((data_dir / "yale-faces" / "original").glob("*_happy.png"))[:8]
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    alone = [detect.detect_faces(p) for p in photos]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(detect.detect_faces, photos * 3))
    for got, want in zip(together, alone * 3, strict=True):
        assert [f.box for f in got] == [f.box for f in want]
