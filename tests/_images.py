"""Helpers building good and bad image files for the ingest tests (no fixtures here)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def face_like(seed: int = 0, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A smooth random RGB image, (W, H) = ``size``."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header declares ``width`` x ``height`` (a bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def exif_rotated_jpeg() -> tuple[bytes, Image.Image]:
    """A JPEG stored sideways with EXIF orientation 6 (display rotated 90 degrees clockwise),
    and the upright image it should decode to."""
    upright = Image.new("RGB", (60, 40), (255, 255, 255))
    upright.paste((255, 0, 0), (0, 0, 20, 40))  # red band on the left when upright
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: 40 x 60
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", exif=exif.tobytes(), quality=95), upright


def bad_files() -> dict[str, bytes]:
    """name -> bytes of files that must be skipped, each with a distinct reason."""
    good_jpeg = encode(face_like(1), "JPEG")
    return {
        "empty.png": b"",
        "text.jpg": b"this is not an image at all\n" * 10,
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 2],
        "bomb.png": png_declaring(20000, 20000),
    }


def odd_good_files() -> dict[str, bytes]:
    """name -> bytes of unusual but valid images that must be normalised and ingested."""
    rng = np.random.default_rng(3)
    g16 = Image.fromarray((rng.integers(0, 65535, (40, 50))).astype(np.uint16))
    rgba = face_like(4).convert("RGBA")
    rgba.putalpha(128)
    return {
        "gray16.png": encode(g16, "PNG"),
        "cmyk.jpg": encode(face_like(5).convert("CMYK"), "JPEG"),
        "palette.png": encode(face_like(6).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "rgba.png": encode(rgba, "PNG"),
        "exif.jpg": exif_rotated_jpeg()[0],
    }


def tem_text(eyes, n_points: int = 189) -> str:
    """A template of the London layout (``n_points`` 189: points 0 and 1 the pupils) whose other
    points lie on an ellipse around the face, as a real template's outline does."""
    eyes = np.asarray(eyes, dtype=np.float64)
    d = float(np.hypot(*(eyes[1] - eyes[0])))
    cx, cy = eyes.mean(axis=0) + [0.0, 0.55 * d]
    t = np.linspace(0, 2 * np.pi, n_points - 2, endpoint=False)
    ring = np.c_[cx + 1.1 * d * np.cos(t), cy + 1.5 * d * np.sin(t)]
    pts = np.vstack([eyes, ring])
    return f"{n_points}\n" + "\n".join(f"{x:.3f}\t{y:.3f}" for x, y in pts) + "\n"
