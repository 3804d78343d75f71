"""One photo: find its faces, align each, predict the change, add it back at full resolution.

Masked regression predicts a face at the model's size, and its prediction is smooth: on
held-out London subjects at 256 px it keeps about a sixth of the target's fine detail. So a
photo is not given the prediction itself. For each face:

1. the face is aligned to the model's frame (eyes at the canonical positions of training);
2. the model predicts every target; the *change* ``D = P - X`` (prediction minus aligned
   input) is low-passed with a Gaussian of ``DETAIL_SIGMA`` times the aligned eye distance
   (3 px at 256 px), which keeps 96% of the expression's gain while dropping the model's
   blur, and scaled by the ``strength`` (for photos at half the aligned resolution, which a
   change this smooth allows);
3. ``D`` is mapped back through the inverse alignment at the photo's own resolution and added
   to the photo inside a feathered ellipse over the face.

Every pixel outside the ellipses keeps its value, the face keeps its resolution and texture,
and a 256 px model edits a 1350 px face. ``detail="none"`` pastes the (strength-scaled)
prediction itself instead, the paper's output.

Colour: a grayscale photo with colour weights gets the luminance of the colour change; a
colour photo with gray weights is predicted on its luminance and the change is added to R, G
and B alike. Either way the photo keeps its own mode and no tint appears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from .align import (
    AlignSpec,
    align_image,
    eye_transform,
    frame_box,
    implausible_eyes,
    template_eyes,
    warp_to_photo,
)
from .estimator import MaskedRidge
from .io.images import from_array

__all__ = [
    "DETAIL_MODES",
    "DETAIL_SIGMA",
    "DetailMaskedRidge",
    "FacePlan",
    "PhotoResult",
    "change_faces",
    "face_mask",
    "keep_detail",
    "locate_faces",
    "spec_from_weights",
    "synthesize_photos",
]

DETAIL_MODES = ("keep", "none")
DETAIL_SIGMA = 0.04  # low-pass of the change, in aligned eye distances (3 px at 256 px)
LUMA = np.array([0.299, 0.587, 0.114])
FEATHER = 0.08  # of the aligned image size
GRID = 2 / 3  # the change's sampling grid at the photo's resolution, in sigmas of its low-pass
# aligning a large face: shrink by a whole factor with a box filter down to at most this
# ratio, then bicubic; close to ingest, whose JPEG decode shrinks by a DCT scale (a 1350 px
# London shot: mean difference 1.11 levels to the ingested face, 1.14 with bicubic all the
# way, and 25% less time)
REDUCING_GAP = 1.25


def spec_from_weights(model) -> AlignSpec:
    """The alignment the training faces had (from the weights' faces attrs)."""
    H, W, _ = model.image_shape_
    alignment = (getattr(model, "meta", {}) or {}).get("faces_attrs", {}).get("alignment") or {}
    return AlignSpec(
        size=(H, W),
        left_eye=tuple(alignment.get("left_eye", AlignSpec.left_eye)),
        right_eye=tuple(alignment.get("right_eye", AlignSpec.right_eye)),
    )


def detail_sigma(spec: AlignSpec) -> float:
    """The change's low-pass, in aligned pixels, for a model of this alignment."""
    eyes = spec.eyes_px()
    return DETAIL_SIGMA * float(np.hypot(*(eyes[1] - eyes[0])))


def keep_detail(X: np.ndarray, P: np.ndarray, sigma: float, strength: float = 1.0) -> np.ndarray:
    """``X + G_sigma(strength (P - X))``: the input with the prediction's low-passed change.

    ``X``, ``P``: float ``(..., H, W, C)`` stacks; the Gaussian acts on the two spatial axes.
    """
    return X + _gaussian_hw(strength * (np.asarray(P, dtype=np.float64) - X), sigma)


def _gaussian_hw(D: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of a float ``(..., H, W, C)`` stack on its two spatial axes."""
    sig = [0.0] * D.ndim
    sig[-3] = sig[-2] = sigma
    return ndimage.gaussian_filter(D, sig, mode="nearest")


# --------------------------------------------------------------------------- the face mask


def _ellipse(spec: AlignSpec) -> tuple[float, float, float, float, float]:
    """Centre, radii and feather of the face ellipse, in aligned pixels: centred below the
    eyes (the mouth moves most), 2.1 x 2.9 eye distances."""
    H, W = spec.size
    eyes = spec.eyes_px()
    d = float(np.linalg.norm(eyes[1] - eyes[0]))
    cx, cy = eyes.mean(axis=0) + [0.0, 0.55 * d]
    rx, ry = 1.05 * d, 1.45 * d
    return cx, cy, rx, ry, FEATHER * max(H, W) / min(rx, ry)


def _smooth(r: np.ndarray, edge: float) -> np.ndarray:
    t = np.clip((1.0 - r) / edge, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def face_mask(size: tuple[int, int], spec: AlignSpec) -> np.ndarray:
    """The feathered face ellipse in aligned coordinates, values in [0, 1], shape (H, W)."""
    H, W = size
    cx, cy, rx, ry, edge = _ellipse(spec)
    y, x = np.mgrid[0:H, 0:W] + 0.5
    return _smooth(np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2), edge)


def _photo_mask(eyes: np.ndarray, spec: AlignSpec, shape: tuple[int, int], step: int = 1):
    """``(box, weights)``: the photo box ``(x0, y0, x1, y1)`` the face ellipse covers and the
    ellipse's weight at the centres of a grid of ``step`` x ``step`` photo pixels over the box
    (float32, ``ceil(h / step) x ceil(w / step)``): computed at the photo's resolution."""
    M = np.vstack([eye_transform(eyes, spec), [0, 0, 1]])  # aligned -> photo
    cx, cy, rx, ry, edge = _ellipse(spec)
    t = np.linspace(0, 2 * np.pi, 96)
    ring = np.c_[cx + rx * np.cos(t), cy + ry * np.sin(t), np.ones_like(t)] @ M.T
    Hp, Wp = shape
    x0, y0 = np.maximum(np.floor(ring[:, :2].min(axis=0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(ring[:, :2].max(axis=0)).astype(int) + 2, [Wp, Hp])
    box = (int(x0), int(y0), int(x1), int(y1))
    if x1 <= x0 or y1 <= y0:
        return box, np.zeros((0, 0), np.float32)
    inv = np.linalg.inv(M)
    ys = (y0 + (np.arange(-(-(y1 - y0) // step)) + 0.5) * step).astype(np.float32)[:, None]
    xs = (x0 + (np.arange(-(-(x1 - x0) // step)) + 0.5) * step).astype(np.float32)[None, :]
    u = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    v = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    return box, _smooth(np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2), edge).astype(np.float32)


def _step(eyes: np.ndarray, spec: AlignSpec) -> int:
    """The grid (in photo pixels, at least 1) on which the change and the mask are computed
    before being enlarged bilinearly: ``GRID`` of the change's Gaussian sigma. Both vary
    slowly (a low-passed change, a smooth ramp): on 58 London photos the outputs stay within
    3 levels of a warp at every photo pixel (1.4% of the pixels differ at all), at half the
    cost of a grid of one aligned pixel."""
    e = spec.eyes_px()
    ratio = np.hypot(*(eyes[1] - eyes[0])) / np.hypot(*(e[1] - e[0]))  # photo px per aligned px
    return max(1, int(GRID * detail_sigma(spec) * ratio))


def _add_enlarged(region: np.ndarray, field: np.ndarray, step: int) -> None:
    """Add a coarse ``(h, w, C)`` float field, enlarged ``step`` times (bilinear) and cut to
    the region's size, to the float32 ``region`` ``(H, W, C)`` in place."""
    H, W = region.shape[:2]
    if step == 1:
        region += field[:H, :W]
        return
    from PIL import Image

    big = (field.shape[1] * step, field.shape[0] * step)
    for c in range(field.shape[2]):
        layer = Image.fromarray(np.ascontiguousarray(field[..., c]), mode="F").resize(big, Image.Resampling.BILINEAR)
        region[..., c] += np.asarray(layer)[:H, :W]


def _low_passed_change(X: np.ndarray, P: np.ndarray, sigma: float, strength: float,
                       spec: AlignSpec) -> tuple[np.ndarray, AlignSpec]:
    """``G_sigma(strength (P - X))`` of one aligned face ``(H, W, C)`` and the frame it is in.

    A change this smooth is computed at half the resolution when ``sigma`` allows (a 2 x 2
    mean, variance 1/4 px^2, then a Gaussian of the remaining variance): 4 ms less per face
    at 256 px, and photos within 3 levels of the full-resolution filter (3% of the face
    pixels differ at all, on 58 London photos)."""
    D = strength * (P - X)
    H, W, C = D.shape
    if sigma < 1.5 or H % 2 or W % 2:
        return _gaussian_hw(D, sigma), spec
    rows = D[0::2] + D[1::2]  # (a multi-axis mean of a reshape is 8x slower)
    half = (rows[:, 0::2] + rows[:, 1::2]) * 0.25
    return _gaussian_hw(half, float(np.sqrt(sigma**2 - 0.25)) / 2), replace(spec, size=(H // 2, W // 2))


# --------------------------------------------------------------------------- faces


@dataclass(frozen=True)
class FacePlan:
    """Where one face is: eyes ``(2, 2)`` in photo pixels and where they came from
    (``template``, ``mtcnn``, ``dlib``)."""

    eyes: np.ndarray
    source: str


def locate_faces(image: np.ndarray, points: np.ndarray | None, align: str,
                 layouts: dict | None = None) -> tuple[list[FacePlan], str]:
    """The faces of a photo and a note on how they were found.

    ``landmarks``: the ``.tem`` template's eyes (a known layout, plausible for the photo);
    ``detector``: every face the detector finds; ``auto``: the template when it passes, else
    the detector. Returns ``([], reason)`` when no face is found.

    Raises
    ------
    ImportError
        When the detector is needed and not installed.
    """
    note = ""
    if points is not None and align in ("landmarks", "auto"):
        try:
            eyes = template_eyes(points, layouts)
            note = implausible_eyes(eyes, (image.shape[1], image.shape[0]), points) or ""
        except LookupError as exc:
            note = str(exc)
        if not note:
            return [FacePlan(eyes, "template")], ""
        note = f"template not used: {note}"
    if align == "landmarks":
        return [], note or "no landmark template (.tem) next to the photo"
    from .detect import detect_faces

    faces = detect_faces(image)
    if not faces:
        return [], "; ".join(filter(None, [note, "no face found by the detector"]))
    return [FacePlan(f.eyes, f.backend) for f in faces], note


# --------------------------------------------------------------------------- synthesis


@dataclass
class PhotoResult:
    """The outputs of one photo (``{target: uint8 (H, W, C)}``, the photo's own mode) and, per
    face, its box in the photo and whether it was converted."""

    outputs: dict[str, np.ndarray]
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def converted(self) -> int:
        return len(self.boxes)


def _aligned(photo: np.ndarray, eyes: np.ndarray, spec: AlignSpec, model_channels: int) -> np.ndarray:
    """The face in the model's frame and channels, uint8."""
    # only the part of the photo the aligned frame covers, with a margin wider than the
    # resampling filters reach, goes to Pillow: the same pixels, without copying the photo
    M = eye_transform(eyes, spec)
    margin = 8 + math.ceil(8 * np.hypot(M[0, 0], M[1, 0]))
    x0, y0, x1, y1 = frame_box(M, spec, (photo.shape[1], photo.shape[0]), margin)
    if x1 <= x0 or y1 <= y0:  # the frame misses the photo: align_image says so
        x0 = y0 = 0
        x1, y1 = photo.shape[1], photo.shape[0]
    crop = from_array(photo[y0:y1, x0:x1])
    face = np.asarray(align_image(crop, eyes - [x0, y0], spec, reducing_gap=REDUCING_GAP))
    face = face if face.ndim == 3 else face[..., None]
    if face.shape[2] == model_channels:
        return face
    if model_channels == 3:  # gray photo, colour weights
        return np.repeat(face, 3, axis=2)
    return np.rint(face @ LUMA).astype(np.uint8)[..., None]  # colour photo, gray weights


def _predict_unit(model, stack: np.ndarray) -> dict[str, np.ndarray]:
    """Predictions for uint8 faces in [0, 1] units, computed exactly (the same bytes for a
    face in any batch, on any worker: :mod:`mlrdist.kernels.exact`) when the model scales
    by a constant (``unit``, ``none``); a ``minmax`` model scales each face by its own range."""
    from .kernels.exact import apply_exact, quantize
    from .scaling import scaling_params

    if model.scaling in ("unit", "none"):
        ew = getattr(model, "_exact", None)
        if ew is None:
            span = 255.0 if model.scaling == "unit" else 1.0
            ew = model._exact = quantize(model.coef_, model.intercept_, model.colour, span=span)
        P = apply_exact(stack, ew)
        if model.scaling == "none":
            P /= 255.0
        np.clip(P, 0.0, 1.0, out=P)
        return {t: P[i] for i, t in enumerate(model.targets_)}
    lo, span = scaling_params(stack, model.scaling)
    shape = (-1,) + (1,) * (stack.ndim - 1)
    return {t: (np.asarray(p, dtype=np.float64) * span.reshape(shape) + lo.reshape(shape)) / 255.0
            for t, p in model.predict(stack).items()}


def _to_photo_channels(D: np.ndarray, photo_channels: int) -> np.ndarray:
    if D.shape[2] == photo_channels:
        return D
    if photo_channels == 1:  # the luminance of a colour change
        return (D @ LUMA)[..., None]
    return np.repeat(D, 3, axis=2)  # a gray change, added to R, G and B alike


def synthesize_photos(model, photos: list[np.ndarray], faces: list[list[FacePlan]], *,
                      detail: str = "keep", strength: float = 1.0) -> list[PhotoResult]:
    """Every target of ``model`` for every face of every photo.

    All faces of all photos are predicted in one call, so a batch of photos costs one
    batched synthesis. A face whose aligned frame falls entirely outside its photo is
    reported in ``failed``.

    Parameters
    ----------
    photos : list of uint8 (H, W, C) arrays, C = 1 or 3 (each photo's own mode)
    faces : list (per photo) of lists of :class:`FacePlan`
    detail : {"keep", "none"}
        ``keep``: add the low-passed change at the photo's resolution; ``none``: paste the
        prediction itself (the paper's output).
    strength : float
        Scale of the change: 0 returns the photo, 1 the model, above 1 exaggerates.
    """
    spec = spec_from_weights(model)
    C_model = model.image_shape_[2]
    stack = [_aligned(p, f.eyes, spec, C_model) for p, fs in zip(photos, faces, strict=True) for f in fs]
    targets = list(model.targets_)
    preds = _predict_unit(model, np.stack(stack)) if stack else {}
    sigma = detail_sigma(spec)
    results, k = [], 0
    for photo, fs in zip(photos, faces, strict=True):
        out = {t: photo.copy() for t in targets}  # only the faces' boxes are written to
        res = PhotoResult(outputs=out)
        for f in fs:
            X = stack[k] / 255.0
            step = _step(f.eyes, spec) if detail == "keep" else 1
            box, w = _photo_mask(f.eyes, spec, photo.shape[:2], step)
            k += 1
            if w.size == 0 or not w.any():
                res.failed.append("the face lies outside the photo")
                continue
            x0, y0, x1, y1 = box
            coarse = (x0, y0, x0 + w.shape[1] * step, y0 + w.shape[0] * step)
            for t in targets:
                P = np.asarray(preds[t][k - 1], dtype=np.float64)
                region = out[t][y0:y1, x0:x1].astype(np.float32)
                if detail == "keep":
                    low, frame = _low_passed_change(X, P, sigma, strength, spec)
                    change = _to_photo_channels(255.0 * low, photo.shape[2])
                    _add_enlarged(region, w[..., None] * warp_to_photo(change, f.eyes, frame, coarse, step), step)
                else:
                    face = _to_photo_channels(255.0 * np.clip(X + strength * (P - X), 0.0, 1.0), photo.shape[2])
                    region += w[..., None] * (warp_to_photo(face, f.eyes, spec, box) - region)
                # pixels outside the ellipse had 0 added: they round back to their own values
                np.clip(region, 0, 255, out=region)
                out[t][y0:y1, x0:x1] = np.rint(region, out=region)
            res.boxes.append(box)
        results.append(res)
    return results


def change_faces(model, images: np.ndarray, detail: str, strength: float) -> dict[str, np.ndarray]:
    """Aligned uint8 faces ``(n, H, W, C)`` -> ``{target: uint8 (n, H, W, C)}``: the
    prediction itself (``detail="none"``, strength 1: the paper's output), or the input plus
    the strength-scaled change, low-passed when ``detail="keep"``. Each face's bytes depend
    on that face only, not on its batch."""
    from .scaling import to_uint8

    preds = _predict_unit(model, images)
    if detail == "none" and strength == 1.0:
        return {t: to_uint8(p) for t, p in preds.items()}
    X = images.astype(np.float64) / 255.0
    if detail == "keep":
        sigma = detail_sigma(spec_from_weights(model))
        return {t: to_uint8(np.clip(keep_detail(X, p, sigma, strength), 0, 1)) for t, p in preds.items()}
    return {t: to_uint8(np.clip(X + strength * (p - X), 0, 1)) for t, p in preds.items()}



class DetailMaskedRidge(MaskedRidge):
    """:class:`~mlrdist.MaskedRidge` whose predictions keep the input's detail:
    ``X + G_sigma(P - X)`` on aligned faces, ``sigma`` = ``detail_sigma`` eye distances of the
    default alignment (0.3 of the width). The form photos get; for the comparison of
    :mod:`mlrdist.evaluate` beside the paper's (plain) MR."""

    def __init__(self, receptive_field: int = 3, alpha: float = 0.4, *, detail_sigma: float = DETAIL_SIGMA,
                 colour: str = "per_channel", dtype=np.float64, scaling: str = "unit", solver: str = "auto",
                 n_jobs: int | None = None) -> None:
        super().__init__(receptive_field, alpha, colour=colour, dtype=dtype, scaling=scaling, solver=solver,
                         n_jobs=n_jobs)
        self.detail_sigma = detail_sigma

    def _predict(self, X: np.ndarray) -> np.ndarray:
        P = super()._predict(X)
        sigma = float(self.detail_sigma) * 0.3 * X.shape[2]
        out = keep_detail(X[None].astype(np.float64), P, sigma).astype(P.dtype)
        return np.clip(out, *self._clip_range) if self._clip_range else out
