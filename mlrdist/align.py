"""Face alignment: a similarity transform putting the two eye centres at canonical positions.

Eye centres come from, in order of preference:

* a WebMorph/Psychomorph template (``.tem``) of a known layout (:data:`TEMPLATE_EYES`: the
  London 189-point template, whose points 0 and 1 are the pupils, and others by a declared
  mapping of point indices), checked for plausibility (:func:`implausible_eyes`);
* registration to another image of the same person whose eyes are known
  (:func:`register_pair`: a similarity transform maximising the normalised cross-correlation
  of the upper face on downscaled grayscale images). The London set's smiling shots have no
  template but were taken in a fixed studio set-up, so they register to the neutral shot;
* a face detector (:mod:`mlrdist.detect`, the optional ``align`` extra).

Coordinates are continuous pixel coordinates ``(x, y)``, pixel ``i`` spanning ``[i, i + 1)``
(Pillow's convention for ``Image.transform``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._validation import check_size

__all__ = [
    "TEMPLATE_EYES",
    "AlignSpec",
    "align_image",
    "eye_transform",
    "frame_box",
    "implausible_eyes",
    "read_tem",
    "register_pair",
    "template_eyes",
    "warp_to_photo",
]

#: Template layouts by point count: (left-eye point indices, right-eye point indices), image
#: left/right; an eye is the mean of its points. 189: the WebMorph/Psychomorph template of
#: the London set and its composites (0 and 1 are the pupils); 106: the London ``lisa_*``
#: template (0 and 1 are the pupils); 83: the London ``zoom_*`` template, whose points 0 and 1
#: lie on the mouth (the pupils are 57/63 and 81/50).
TEMPLATE_EYES: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    189: ((0,), (1,)),
    106: ((0,), (1,)),
    83: ((57, 63), (81, 50)),
}


@dataclass(frozen=True, kw_only=True)
class AlignSpec:
    """Output geometry: size and canonical eye positions as fractions of width/height.

    The defaults put the eyes at (0.35 W, 0.4 H) and (0.65 W, 0.4 H): the eye distance is
    0.3 W and the side margin beyond each eye 0.35 W, enough for the chin and the cheeks.
    """

    size: tuple[int, int] = (128, 128)  # (H, W)
    left_eye: tuple[float, float] = (0.35, 0.4)  # (x / W, y / H)
    right_eye: tuple[float, float] = (0.65, 0.4)

    def __post_init__(self) -> None:
        size = check_size(self.size)
        object.__setattr__(self, "size", (size, size) if isinstance(size, int) else size)
        lx, ly = self.left_eye
        rx, ry = self.right_eye
        if not (0 < lx < rx < 1 and 0 < ly < 1 and 0 < ry < 1):
            raise ValueError(
                f"canonical eyes must lie inside the image with the left eye left of the right one, "
                f"got left_eye={self.left_eye}, right_eye={self.right_eye}"
            )

    def eyes_px(self) -> np.ndarray:
        """Canonical eye centres in output pixels, shape (2, 2): rows left, right; cols x, y."""
        H, W = self.size
        return np.array([[self.left_eye[0] * W, self.left_eye[1] * H], [self.right_eye[0] * W, self.right_eye[1] * H]])

    def to_attrs(self, method: str) -> dict:
        """JSON-able description stored in faces.zarr's ``alignment`` attribute."""
        d = asdict(self)
        d = {"method": method, "size": list(d["size"]), "left_eye": list(d["left_eye"]),
             "right_eye": list(d["right_eye"]), "margin": float(self.left_eye[0]),
             "eyes_px": self.eyes_px().tolist(), "coordinates": "continuous pixels (x, y)"}
        return d


def read_tem(path_or_text: str | Path | bytes) -> np.ndarray:
    """Points of a Psychomorph/WebMorph template.

    Parameters
    ----------
    path_or_text : path, or the file's bytes/text
        First line the point count, then one ``x<TAB>y`` line per point.

    Returns
    -------
    points : ndarray, shape (n_points, 2), float64 (x, y) in pixels
    """
    if isinstance(path_or_text, bytes):
        text = path_or_text.decode("utf-8", errors="replace")
    elif isinstance(path_or_text, Path) or "\n" not in str(path_or_text):
        text = Path(path_or_text).read_text()
    else:
        text = str(path_or_text)
    lines = text.strip().splitlines()
    try:
        n = int(lines[0].strip())
        pts = np.array([[float(v) for v in line.split()[:2]] for line in lines[1 : 1 + n]])
    except (ValueError, IndexError) as exc:
        raise ValueError(f"not a template file (count line, then x<TAB>y lines): {exc}") from None
    if pts.shape != (n, 2) or n < 2:
        raise ValueError(f"template declares {n} points but holds {pts.shape[0]} usable x/y lines")
    return pts


def template_eyes(points: np.ndarray, layouts: dict | None = None) -> np.ndarray:
    """Eye centres ``(2, 2)`` (rows image-left, image-right) of a template of known layout.

    Parameters
    ----------
    points : array, shape (n_points, 2)
    layouts : dict, optional
        More layouts, ``{n_points: (left indices, right indices)}``, beside
        :data:`TEMPLATE_EYES` (they take precedence).

    Raises
    ------
    LookupError
        When the template's point count is of no known layout.
    """
    known = {**TEMPLATE_EYES, **{int(k): v for k, v in (layouts or {}).items()}}
    n = len(points)
    if n not in known:
        raise LookupError(f"a {n}-point template is of no known layout (known: {sorted(known)} points); "
                          "declare its eye points (template_layouts) or let the detector find the eyes")
    left, right = known[n]
    try:
        eyes = np.array([points[list(left)].mean(axis=0), points[list(right)].mean(axis=0)], dtype=np.float64)
    except IndexError:
        raise LookupError(f"the declared eye points {known[n]} do not exist in a {n}-point template") from None
    return eyes[np.argsort(eyes[:, 0])]


def implausible_eyes(eyes: np.ndarray, size: tuple[int, int], points: np.ndarray | None = None, *,
                     min_px: float = 16.0, max_frac: float = 0.6, max_roll: float = 30.0) -> str | None:
    """Why an eye pair cannot be a face's eyes in an image of ``size`` (W, H), or None.

    Checks: finite and inside the image, at least ``min_px`` apart and at most ``max_frac``
    of the image's short side, the eye line within ``max_roll`` degrees of horizontal, and,
    with the whole template ``points``, an eye distance of 0.2–0.65 of the template's extent
    (0.22–0.45 on the London templates; a mouth read as eyes gives far less).
    """
    W, H = size
    eyes = np.asarray(eyes, dtype=np.float64)
    if eyes.shape != (2, 2) or not np.all(np.isfinite(eyes)):
        return "eye coordinates are not two finite (x, y) points"
    if np.any(eyes < 0) or np.any(eyes > [W, H]):
        return f"an eye lies outside the {W}x{H} image"
    v = eyes[1] - eyes[0]
    d = float(np.hypot(*v))
    if d < min_px:
        return f"the eyes are {d:.1f} px apart (at least {min_px:g} expected)"
    if d > max_frac * min(W, H):
        return f"the eyes are {d:.0f} px apart, more than {max_frac:g} of the image's short side"
    roll = float(np.degrees(np.arctan2(v[1], v[0])))
    if abs(roll) > max_roll:
        return f"the eye line is tilted {roll:.0f} degrees (at most {max_roll:g})"
    if points is not None:
        extent = float(np.max(np.ptp(np.asarray(points, dtype=np.float64), axis=0)))
        ratio = d / extent if extent > 0 else 0.0
        if not 0.2 <= ratio <= 0.65:
            return f"the eye distance is {ratio:.2f} of the template's extent (0.2-0.65 expected)"
    return None


def eye_transform(eyes: np.ndarray, spec: AlignSpec) -> np.ndarray:
    """The similarity mapping output pixels to input pixels (the form Pillow's AFFINE wants).

    Parameters
    ----------
    eyes : array, shape (2, 2)
        Left and right eye centres ``(x, y)`` in the input image.

    Returns
    -------
    M : ndarray, shape (2, 3)
        ``[x_in, y_in] = M @ [x_out, y_out, 1]``.
    """
    eyes = np.asarray(eyes, dtype=np.float64)
    if eyes.shape != (2, 2) or not np.all(np.isfinite(eyes)):
        raise ValueError(f"eyes must be a finite (2, 2) array of (x, y) rows, got {eyes!r}")
    src = complex(*eyes[0]), complex(*eyes[1])
    dst = [complex(*p) for p in spec.eyes_px()]
    if abs(src[1] - src[0]) < 1e-6:
        raise ValueError(f"the two eye centres coincide: {eyes.tolist()}")
    a = (src[1] - src[0]) / (dst[1] - dst[0])
    b = src[0] - a * dst[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _compose_scale(M: np.ndarray, factor: float) -> np.ndarray:
    """``M`` for an input image scaled by ``factor`` (input coords multiplied by it)."""
    return M * factor


def frame_box(M: np.ndarray, spec: AlignSpec, size: tuple[int, int], pad: int) -> tuple[int, int, int, int]:
    """The input box ``(x0, y0, x1, y1)`` the aligned frame covers, ``pad`` more pixels on
    every side, clipped to an input of ``size`` (W, H); ``M`` maps aligned to input pixels."""
    H, W = spec.size
    corners = np.array([[0, 0, 1], [W, 0, 1], [0, H, 1], [W, H, 1]], dtype=np.float64) @ M.T
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)) - pad, 0).astype(int)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)) + pad, size).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def align_image(img, eyes: np.ndarray, spec: AlignSpec, *, eye_scale: float = 1.0,
                reducing_gap: float | None = None):
    """Warp a Pillow image so its eyes land on the canonical positions of ``spec``.

    The input region needed is cropped and downscaled with an antialiasing filter first, so
    the final bicubic similarity warp resamples at about 1:1 (Pillow's ``transform`` does not
    antialias when shrinking).

    Parameters
    ----------
    img : PIL.Image.Image
        Mode ``RGB`` or ``L``, possibly decoded at reduced scale (``Image.draft``).
    eyes : array, shape (2, 2)
        Eye centres ``(x, y)`` in the original image's pixels.
    eye_scale : float
        Size of ``img`` relative to the image ``eyes`` refer to (e.g. 0.5 after a draft).
    reducing_gap : float, optional
        Pillow's: shrink by a whole factor with a box filter first, leaving at least this
        ratio to the bicubic filter (faster for large photos; None: bicubic all the way).

    Returns
    -------
    PIL.Image.Image of size ``spec.size`` (W x H), same mode.
    """
    from PIL import Image

    M = _compose_scale(eye_transform(eyes, spec), eye_scale)
    H, W = spec.size
    ratio = math.hypot(M[0, 0], M[1, 0])  # input pixels per output pixel
    if ratio > 1.25:
        x0, y0, x1, y1 = frame_box(M, spec, img.size, 2)
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ValueError("the aligned face lies outside the image: check the eye positions")
        cw, ch = int(x1 - x0), int(y1 - y0)
        tw, th = max(1, round(cw / ratio)), max(1, round(ch / ratio))
        small = img.resize((tw, th), Image.Resampling.BICUBIC, box=(x0, y0, x1, y1), reducing_gap=reducing_gap)
        sx, sy = tw / cw, th / ch
        # input = (small - 0) / s + (x0, y0): fold crop and scale into M
        M = np.array([[M[0, 0] * sx, M[0, 1] * sx, (M[0, 2] - x0) * sx],
                      [M[1, 0] * sy, M[1, 1] * sy, (M[1, 2] - y0) * sy]])
        img = small
    return img.transform((W, H), Image.Transform.AFFINE, tuple(M.ravel()), Image.Resampling.BICUBIC)


def warp_to_photo(face: np.ndarray, eyes: np.ndarray, spec: AlignSpec, box: tuple[int, int, int, int],
                  step: int = 1) -> np.ndarray:
    """Map an aligned float image back into a box of the photo (the inverse of
    :func:`align_image`), bicubic, in float32; with ``step`` > 1 on a grid of ``step`` x
    ``step`` photo pixels (for smooth images that are enlarged afterwards).

    Parameters
    ----------
    face : ndarray, shape (H, W, C)
        In the aligned frame of ``spec``.
    eyes : array, shape (2, 2)
        The face's eyes in the photo.
    box : (x0, y0, x1, y1)
        Photo pixels to fill.

    Returns
    -------
    ndarray, shape ((y1 - y0) / step, (x1 - x0) / step, C), float32 (zero where the aligned
    frame does not reach)
    """
    from PIL import Image

    x0, y0, x1, y1 = box
    M = np.vstack([eye_transform(eyes, spec), [0, 0, 1]])  # aligned -> photo
    # Pillow maps output pixels to input pixels: grid pixel (u, v) is photo (x0 + step u, y0 + step v)
    A = np.linalg.inv(M) @ np.array([[step, 0, x0], [0, step, y0], [0, 0, 1]], dtype=np.float64)
    data = tuple(A[:2].ravel())
    size = (-(-(x1 - x0) // step), -(-(y1 - y0) // step))
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(face[..., c], dtype=np.float32), mode="F").transform(
            size, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC))
        for c in range(face.shape[2])
    ]
    return np.stack(channels, axis=2)


# --------------------------------------------------------------------------- registration


def _gray(img, scale: float) -> np.ndarray:
    from PIL import Image

    g = img.convert("L")
    w, h = g.size
    g = g.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return np.asarray(g, dtype=np.float64)


def register_pair(reference, moving, ref_eyes: np.ndarray, *, ref_scale: float = 1.0,
                  moving_scale: float = 1.0, work_eye_distance: float = 40.0) -> tuple[np.ndarray, float]:
    """Eye centres in ``moving`` by registering it to ``reference`` (same person, similar pose).

    A similarity transform (scale, rotation, translation about the eye midpoint) maximising
    the normalised cross-correlation over the upper face of ``reference`` (from the brows to
    just above the mouth, cheeks and hair line included; the mouth is left out because the
    expression changes it), on grayscale images downscaled to ``work_eye_distance`` pixels
    between the eyes. Gauss-Newton (Lucas-Kanade) started from the identity or from the best
    pure shift (normalised template matching by FFT, within three eye distances), whichever
    correlates better; when it ends below 0.9, Powell's method from the same start, keeping
    the better. The photos must be roughly registered already (up to about 20 % of scale and
    a few degrees); shifts up to three eye distances are found.

    Parameters
    ----------
    reference, moving : PIL.Image.Image
        Possibly decoded at reduced scale; ``ref_scale``/``moving_scale`` give their size
        relative to the full-resolution images the eye coordinates refer to.
    ref_eyes : array, shape (2, 2)
        Eyes ``(x, y)`` of ``reference`` at full resolution.

    Returns
    -------
    eyes : ndarray, shape (2, 2)
        Estimated eyes of ``moving`` at full resolution.
    ncc : float
        Correlation reached (1 is perfect); below about 0.8 the registration is suspect.
    """
    from scipy import ndimage, optimize

    ref_eyes = np.asarray(ref_eyes, dtype=np.float64)
    d_full = float(np.hypot(*(ref_eyes[1] - ref_eyes[0])))
    k = work_eye_distance / d_full  # full-res -> work pixels
    ref = ndimage.gaussian_filter(_gray(reference, k / ref_scale), 1.0)
    mov = ndimage.gaussian_filter(_gray(moving, k / moving_scale), 1.0)
    eyes = ref_eyes * k
    c = eyes.mean(axis=0)
    d = work_eye_distance
    x0, x1 = int(max(0, c[0] - 1.3 * d)), int(min(ref.shape[1], c[0] + 1.3 * d))
    y0, y1 = int(max(0, c[1] - 1.0 * d)), int(min(ref.shape[0], c[1] + 0.75 * d))
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    a = ref[y0:y1, x0:x1].ravel()
    a = (a - a.mean()) / (a.std() + 1e-9)
    dx, dy = xs.ravel() - c[0], ys.ravel() - c[1]

    def warp(p):
        tx, ty, ds, th = p
        s, t = 1 + ds / d, th / d
        cs, sn = s * math.cos(t), s * math.sin(t)
        return cs * dx - sn * dy + c[0] + tx, sn * dx + cs * dy + c[1] + ty

    def cost(p):
        u, v = warp(p)
        b = ndimage.map_coordinates(mov, [v - 0.5, u - 0.5], order=1, mode="nearest")
        b = (b - b.mean()) / (b.std() + 1e-9)
        return -float(np.mean(a * b))

    r = int(3 * d)  # template search within three eye distances of the face in ``reference``
    sy0, sx0 = max(0, y0 - r), max(0, x0 - r)
    window = mov[sy0 : y1 + r, sx0 : x1 + r]
    shift = _best_shift(ref[y0:y1, x0:x1], window, x0 - sx0, y0 - sy0)
    start = min((np.zeros(4), np.array([*shift, 0.0, 0.0])), key=cost)
    tx, ty, ds, th = start
    q0 = np.array([tx, ty, (1 + ds / d) * math.cos(th / d) - 1, (1 + ds / d) * math.sin(th / d)])
    q, ncc = _gauss_newton(mov, a, dx, dy, c, q0)
    if ncc < 0.9:  # a poor or local optimum: try a derivative-free search, keep the better
        res = optimize.minimize(cost, start, method="Powell", options={"xtol": 0.05, "ftol": 1e-5, "maxfev": 600})
        if -res.fun > ncc:
            tx, ty, ds, th = res.x
            s, t = 1 + ds / d, th / d
            q, ncc = np.array([tx, ty, s * math.cos(t) - 1, s * math.sin(t)]), -float(res.fun)
    R = np.array([[1 + q[2], -q[3]], [q[3], 1 + q[2]]])
    moved = (eyes - c) @ R.T + c + q[:2]
    return moved / k, ncc


def _gauss_newton(mov, a, dx, dy, c, q, iters: int = 40):
    """Gauss-Newton (Lucas-Kanade, forward additive) on the normalised residual
    ``(B - mean B) / std B - a`` over the similarity ``q = (tx, ty, s cos t - 1, s sin t)``
    about ``c``; returns ``q`` and the correlation reached."""
    from scipy import ndimage

    gy, gx = np.gradient(mov)
    ncc = -1.0
    for _ in range(iters):
        u = (1 + q[2]) * dx - q[3] * dy + c[0] + q[0]
        v = q[3] * dx + (1 + q[2]) * dy + c[1] + q[1]
        at = [v - 0.5, u - 0.5]
        B = ndimage.map_coordinates(mov, at, order=1, mode="nearest")
        Ix = ndimage.map_coordinates(gx, at, order=1, mode="nearest")
        Iy = ndimage.map_coordinates(gy, at, order=1, mode="nearest")
        sd = B.std() + 1e-9
        Bn = (B - B.mean()) / sd
        ncc = float(np.mean(Bn * a))
        J = np.stack([Ix, Iy, Ix * dx + Iy * dy, Iy * dx - Ix * dy], axis=1) / sd
        J -= J.mean(axis=0)
        step = np.linalg.solve(J.T @ J + 1e-9 * np.eye(4), -J.T @ (Bn - a))
        q = q + step
        if np.max(np.abs(step[:2])) < 1e-3 and np.max(np.abs(step[2:])) < 1e-5:
            break
    return q, ncc


def _best_shift(template: np.ndarray, image: np.ndarray, x0: int, y0: int) -> tuple[float, float]:
    """Shift (dx, dy) of ``template`` (cut at ``x0, y0``) to its best normalised
    cross-correlation position in ``image``; (0, 0) when the image is smaller."""
    from scipy.signal import fftconvolve

    h, w = template.shape
    if image.shape[0] < h or image.shape[1] < w:
        return 0.0, 0.0
    t0 = template - template.mean()
    num = fftconvolve(image, t0[::-1, ::-1], mode="valid")
    ones = np.ones_like(template)
    s1 = fftconvolve(image, ones, mode="valid")
    s2 = fftconvolve(image**2, ones, mode="valid")
    var = np.maximum(s2 - s1**2 / template.size, 1e-6 * template.size)
    score = num / np.sqrt(var * max((t0**2).sum(), 1e-9))
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(ix - x0), float(iy - y0)
