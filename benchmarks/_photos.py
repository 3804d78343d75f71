"""A reproducible five-person group photo built from the London set (CC BY 4.0), for the
detector's tests and the photo benchmark.

    make_group_photo(london_dir) -> (PIL.Image RGB 1000 x 667, eyes)

``eyes`` is a list of five (2, 2) float arrays, rows (left eye, right eye) in image
left/right order, columns (x, y) in continuous pixel coordinates (pixel i spans [i, i+1),
Pillow's ``transform`` convention), derived exactly from the templates' pupil points 0 and 1
through the same similarity used to place each person. ``meta`` (third return value when
``with_meta=True``) lists subject, eye distance, rotation and whether sunglasses were drawn.

Construction (deterministic, no randomness except a seeded backdrop texture):
* canvas: the mean backdrop colour of the five source shots with a mild vertical gradient
  and seeded low-amplitude noise;
* each person: the neutral 1350 px shot is downscaled (LANCZOS) so the pupil distance is the
  target eye distance, then rotated about the eye midpoint (bicubic) and placed; a soft
  person matte (coloured or dark pixels vs the neutral grey backdrop, cleaned) times a
  feathered head-and-shoulders box (2.3 d either side of the eyes' midpoint, fading out at
  the source's bottom edge) is alpha-composited, back to front (smaller = further = first);
* sunglasses on one person: two opaque near-black elliptical lenses (1.0 d x 0.62 d) centred
  on the pupils, a bridge between them and short temple arms, drawn supersampled 4x and
  rotated with the head.

"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

W, H = 1000, 667
# (subject, eye distance px, eye-midpoint x, y, rotation degrees (counter-clockwise), sunglasses)
# all five are among the last 22 subjects in id order (held out by the photo benchmark)
PEOPLE = [
    ("127", 32.0, 120.0, 330.0, 0.0, False),
    ("125", 40.0, 300.0, 290.0, -7.0, False),
    ("137", 46.0, 725.0, 300.0, 4.0, True),
    ("136", 54.0, 890.0, 440.0, 0.0, False),
    ("126", 60.0, 515.0, 470.0, 0.0, False),
]


def _read_tem(path: Path) -> np.ndarray:
    lines = path.read_text().strip().splitlines()
    n = int(lines[0])
    return np.array([[float(v) for v in ln.split()[:2]] for ln in lines[1 : 1 + n]])


def _similarity(src_eyes: np.ndarray, dst_mid: np.ndarray, d: float, theta_deg: float):
    """2x3 matrix A mapping source (continuous) px -> canvas px, and its inverse (for Pillow)."""
    e = np.asarray(src_eyes, float)
    d_src = float(np.hypot(*(e[1] - e[0])))
    s = d / d_src
    t = math.radians(-theta_deg)  # keep the source's own slight tilt, then rotate
    # canvas y points down: a counter-clockwise rotation on screen is a negative angle here
    c, sn = s * math.cos(t), s * math.sin(t)
    R = np.array([[c, -sn], [sn, c]])
    mid = e.mean(axis=0)
    A = np.hstack([R, (dst_mid - R @ mid)[:, None]])
    A3 = np.vstack([A, [0, 0, 1]])
    return A, np.linalg.inv(A3)[:2]


def _backdrop_matte(img: Image.Image, eyes: np.ndarray) -> np.ndarray:
    """Soft person matte (H, W) in [0, 1] of a London studio shot: pixels with colour
    (chroma > 12) or darker than the backdrop (luma < 157) are person; cleaned (closing, hole
    filling, largest component) and softened; everything 2.7 d below the eyes and every very
    bright pixel (luma > 232: white shirts) is kept."""
    from scipy import ndimage

    a = np.asarray(img, float)
    h, w = a.shape[:2]
    d = float(np.hypot(*(eyes[1] - eyes[0])))
    mid = eyes.mean(axis=0)
    yy, xx = np.mgrid[0:h, 0:w]
    # the studio backdrop is a light neutral grey (chroma ~4, luma 180-230, brighter behind
    # the sitter): person = coloured (skin, hair) or clearly darker than the backdrop
    chroma = a.max(axis=2) - a.min(axis=2)
    luma = a @ [0.299, 0.587, 0.114]
    diff = np.maximum(chroma - 4, 165 - luma)
    diff = ndimage.gaussian_filter(diff, 0.02 * d)
    person = diff > 8
    person = ndimage.binary_closing(person, iterations=max(1, int(0.05 * d)))
    person = ndimage.binary_fill_holes(person)
    person |= (yy > mid[1] + 2.7 * d) | (luma > 232)
    lab, n = ndimage.label(person)
    if n > 1:
        sizes = ndimage.sum(person, lab, range(1, n + 1))
        person = lab == (1 + int(np.argmax(sizes)))
    m = ndimage.gaussian_filter(person.astype(float), 0.03 * d)
    return m


def _region_alpha(small: Image.Image, eyes, d_src, feather) -> Image.Image:
    """Person matte times a feathered head-and-shoulders box (source pixel coords, mode 'F')."""
    w, h = small.size
    mid = eyes.mean(axis=0)
    x0, x1 = mid[0] - 2.3 * d_src, mid[0] + 2.3 * d_src
    y0 = mid[1] - 2.2 * d_src
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    dx = np.minimum(xx - x0, x1 - xx)
    dy = np.minimum(yy - y0, h - yy)  # shirts fade out at the source's bottom edge
    a = np.clip(np.minimum(dx, dy) / feather, 0, 1)
    a = a * a * (3 - 2 * a)
    a = a * _backdrop_matte(small, eyes)
    return Image.fromarray(a.astype(np.float32), mode="F")


def _sunglasses(d: float, scale: int = 4):
    """Alpha (L) and size of sunglasses drawn in a local frame whose eyes are at
    (cx -+ d/2, cy); returns (mask PIL L, local eyes (2,2) continuous px)."""
    w, h = int(3.2 * d * scale), int(1.4 * d * scale)
    img = Image.new("L", (w, h), 0)
    dr = ImageDraw.Draw(img)
    cx, cy = w / 2, h / 2
    lw, lh = 1.0 * d * scale, 0.62 * d * scale
    for ex in (cx - d * scale / 2, cx + d * scale / 2):
        dr.ellipse([ex - lw / 2, cy - lh / 2, ex + lw / 2, cy + lh / 2], fill=255)
    bw = max(2, int(0.09 * d * scale))
    dr.line([(cx - d * scale / 2 + lw / 2 - bw, cy - lh * 0.15), (cx + d * scale / 2 - lw / 2 + bw, cy - lh * 0.15)],
            fill=255, width=bw)
    # temple arms towards the ears
    dr.line([(cx - d * scale / 2 - lw / 2 + bw, cy - lh * 0.2), (cx - 1.45 * d * scale, cy - lh * 0.3)], fill=255, width=bw)
    dr.line([(cx + d * scale / 2 + lw / 2 - bw, cy - lh * 0.2), (cx + 1.45 * d * scale, cy - lh * 0.3)], fill=255, width=bw)
    small = img.resize((w // scale, h // scale), Image.Resampling.BOX)
    return small


def make_group_photo(london_dir, *, with_meta: bool = False, people=None):
    """Build the group photo; see the module docstring. ``people`` overrides PEOPLE (same
    tuple layout) for stress variants."""
    london_dir = Path(london_dir)
    people = PEOPLE if people is None else people
    srcs = []
    for subj, _d, _x, _y, _rot, _glasses in people:
        img = Image.open(london_dir / "neutral" / f"{subj}_03.jpg").convert("RGB")
        eyes = _read_tem(london_dir / "neutral" / f"{subj}_03.tem")[:2]
        srcs.append((img, eyes))
    # backdrop: mean of the top corners of the sources
    bg = np.mean([np.asarray(im)[20:120, list(range(20, 120)) + list(range(1230, 1330))].reshape(-1, 3).mean(0)
                  for im, _ in srcs], axis=0)
    rng = np.random.default_rng(20261203)
    grad = np.linspace(0.97, 1.03, H)[:, None, None]
    noise = rng.normal(0, 1.5, (H // 4 + 1, W // 4 + 1, 1))
    noise = np.asarray(Image.fromarray(noise[..., 0].astype(np.float32), mode="F").resize((W, H), Image.Resampling.BICUBIC))[..., None]
    canvas = np.clip(bg[None, None, :] * grad + noise, 0, 255).astype(np.float64)

    truth, meta = [], []
    order = sorted(range(len(people)), key=lambda i: people[i][1])  # far (small) to near (large)
    for i in order:
        subj, d, x, y, rot, glasses = people[i]
        img, eyes = srcs[i]
        d_src = float(np.hypot(*(eyes[1] - eyes[0])))
        s = d / d_src
        # antialiased downscale first, then a ~1:1 bicubic similarity
        sw, sh = max(1, round(img.width * s)), max(1, round(img.height * s))
        small = img.resize((sw, sh), Image.Resampling.LANCZOS)
        k = np.array([sw / img.width, sh / img.height])
        e_small = eyes * k
        A, Ainv = _similarity(e_small, np.array([x, y]), d, rot)  # A: small -> canvas
        layer = np.asarray(small.transform((W, H), Image.Transform.AFFINE, tuple(Ainv.ravel()), Image.Resampling.BICUBIC), float)
        alpha_src = _region_alpha(small, e_small, float(np.hypot(*(e_small[1] - e_small[0]))), 0.2 * d)
        alpha = np.asarray(alpha_src.transform((W, H), Image.Transform.AFFINE, tuple(Ainv.ravel()), Image.Resampling.BILINEAR))[..., None]
        canvas = alpha * layer + (1 - alpha) * canvas
        e_canvas = e_small @ A[:, :2].T + A[:, 2]
        if glasses:
            g = _sunglasses(d)
            # local frame: eyes at (gw/2 -+ d/2, gh/2), unrotated; map canvas -> local with the head's rotation
            gw, gh = g.size
            mid = e_canvas.mean(axis=0)
            t = math.atan2(e_canvas[1, 1] - e_canvas[0, 1], e_canvas[1, 0] - e_canvas[0, 0])
            c, sn = math.cos(t), math.sin(t)
            # local = R(-t) (canvas - mid) + (gw/2, gh/2)
            Mi = (c, sn, -c * mid[0] - sn * mid[1] + gw / 2, -sn, c, sn * mid[0] - c * mid[1] + gh / 2)
            ga = np.asarray(g.transform((W, H), Image.Transform.AFFINE, Mi, Image.Resampling.BILINEAR), float)[..., None] / 255
            lens = np.array([18.0, 18.0, 22.0])
            canvas = ga * lens + (1 - ga) * canvas
        truth.append((i, e_canvas))
        meta.append({"subject": subj, "eye_distance": d, "rotation_deg": rot, "sunglasses": glasses})
    truth.sort(key=lambda t: t[0])
    eyes_list = [np.array(sorted(e.tolist(), key=lambda p: p[0])) for _, e in truth]
    meta = [meta[order.index(i)] for i in range(len(people))]
    photo = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    if with_meta:
        return photo, eyes_list, meta
    return photo, eyes_list


def make_group_photo_gray(london_dir):
    """The grayscale variant (Pillow 'L', ITU-R 601 luma) with the same eye truth."""
    photo, eyes = make_group_photo(london_dir)
    return photo.convert("L"), eyes


def sample_photos(data_dir, out_dir) -> list[Path]:
    """The README's sample of photos unlike the training set: two London composites, a
    selfie (lisa), a zoomed portrait, the group photo in colour and in gray, and a Yale face;
    with their templates where they have one."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wild = data_dir / "london-face-set" / "wild"
    for stem in ("composite_f_white", "composite_m_african", "lisa_lisa1", "zoom_30cm"):
        for suffix in (".jpg", ".tem"):
            (out_dir / f"{stem}{suffix}").write_bytes((wild / f"{stem}{suffix}").read_bytes())
    photo, _ = make_group_photo(data_dir / "london-face-set")
    photo.save(out_dir / "group_five.jpg", quality=90)
    photo.convert("L").save(out_dir / "group_five_gray.png")
    yale = data_dir / "yale-faces" / "original" / "03_normal.png"
    (out_dir / "yale_03_normal.png").write_bytes(yale.read_bytes())
    return sorted(out_dir.iterdir())


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/_photos.py DATA_DIR OUT_DIR   (DATA_DIR holds london-face-set/)")
    for path in sample_photos(sys.argv[1], sys.argv[2]):
        print(path)
