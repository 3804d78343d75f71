"""One photo: find its faces, align each, synthesise, warp back and blend into the photo.

Each face is mapped with the similarity transform of :mod:`mlrdist.align` (eyes to the
canonical positions the weights were trained with), synthesised at the model size, mapped
back with the inverse transform and alpha-blended into the original photo through a
feathered elliptical mask, so the user gets their own photo back with the new expression.
"""

from __future__ import annotations

import numpy as np

from .align import AlignSpec, align_image, eye_transform
from .io.images import from_array
from .scaling import to_uint8

__all__ = ["face_mask", "find_eyes", "paste_face", "spec_from_weights", "synthesize_photo"]


def spec_from_weights(model) -> AlignSpec:
    """The alignment the training faces had (from the weights' faces attrs)."""
    H, W, _ = model.image_shape_
    alignment = (getattr(model, "meta", {}) or {}).get("faces_attrs", {}).get("alignment") or {}
    return AlignSpec(
        size=(H, W),
        left_eye=tuple(alignment.get("left_eye", AlignSpec.left_eye)),
        right_eye=tuple(alignment.get("right_eye", AlignSpec.right_eye)),
    )


def face_mask(size: tuple[int, int], spec: AlignSpec, feather: float = 0.08) -> np.ndarray:
    """A feathered ellipse over the face in aligned coordinates, values in [0, 1], (H, W).

    The ellipse is centred between the eyes and below them (the mouth moves most) and its
    edge ramps smoothly over ``feather`` of the image size.
    """
    H, W = size
    eyes = spec.eyes_px()
    d = np.linalg.norm(eyes[1] - eyes[0])
    cx, cy = eyes.mean(axis=0) + [0.0, 0.55 * d]
    rx, ry = 1.05 * d, 1.45 * d
    y, x = np.mgrid[0:H, 0:W] + 0.5
    r = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    edge = feather * max(H, W) / min(rx, ry)
    return np.clip((1.0 - r) / edge, 0.0, 1.0) ** 2 * (3 - 2 * np.clip((1.0 - r) / edge, 0.0, 1.0))


def paste_face(photo: np.ndarray, face: np.ndarray, eyes: np.ndarray, spec: AlignSpec) -> np.ndarray:
    """Blend an aligned synthesised ``face`` back into ``photo`` (both uint8, (H, W, C))."""
    from PIL import Image

    M = np.vstack([eye_transform(eyes, spec), [0, 0, 1]])  # aligned -> photo
    inv = np.linalg.inv(M)  # photo -> aligned
    h, w = face.shape[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64) @ M.T
    Hp, Wp = photo.shape[:2]
    x0, y0 = np.maximum(np.floor(corners[:, :2].min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners[:, :2].max(axis=0)).astype(int), [Wp, Hp])
    if x1 <= x0 or y1 <= y0:
        return photo
    # Pillow's AFFINE maps output pixels to input pixels: box pixel (u, v) is photo (u + x0, v + y0)
    A = inv @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    data = tuple(A[:2].ravel())
    box = (int(x1 - x0), int(y1 - y0))
    mode_face = face[..., 0] if face.shape[2] == 1 else face
    warped = np.asarray(Image.fromarray(np.ascontiguousarray(mode_face)).transform(
        box, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC))
    mask = face_mask((h, w), spec).astype(np.float32)
    alpha = np.asarray(Image.fromarray(mask, mode="F").transform(
        box, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR))
    warped = warped if warped.ndim == 3 else warped[..., None]
    out = photo.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    out[y0:y1, x0:x1] = np.clip(np.rint(a * warped + (1 - a) * region), 0, 255).astype(np.uint8)
    return out


def synthesize_photo(model, photo: np.ndarray, eyes_list: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every target of ``model`` for every face of ``photo`` (uint8, (H, W, C)).

    Parameters
    ----------
    eyes_list : list of (2, 2) arrays
        Left and right eye centres ``(x, y)`` of each face, in photo pixels.

    Raises
    ------
    LookupError
        When ``eyes_list`` is empty (no face).
    """
    if not eyes_list:
        raise LookupError("no face found")
    spec = spec_from_weights(model)
    pil = from_array(photo)
    faces = []
    for eyes in eyes_list:
        aligned = np.asarray(align_image(pil, eyes, spec))
        faces.append(aligned if aligned.ndim == 3 else aligned[..., None])
    preds = model.predict(np.stack(faces))
    out = {}
    for target, stack in preds.items():
        result = photo
        for eyes, face in zip(eyes_list, to_uint8(stack), strict=True):
            result = paste_face(result, face, eyes, spec)
        out[target] = result
    return out


def find_eyes(image: np.ndarray, points: np.ndarray | None, align: str) -> list[np.ndarray]:
    """Eye centres of the faces in a photo: from its template (``landmarks``), a detector
    (``detector``), or the template when there is one and the detector otherwise (``auto``).

    Raises LookupError when no face is found and ImportError when a detector is needed but
    the ``align`` extra is not installed.
    """
    if points is not None and align in ("landmarks", "auto"):
        return [points[:2]]
    if align == "landmarks":
        raise LookupError("no landmark template (.tem) next to the photo")
    from .align import detect_all_eyes

    try:
        return detect_all_eyes(from_array(image))
    except ValueError as exc:
        raise LookupError(str(exc)) from None
