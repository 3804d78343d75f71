"""Image decoding with Pillow: every failure becomes an :class:`ImageDecodeError` with a reason.

:func:`decode_image` turns file bytes into an upright 8-bit ``RGB`` or ``L`` Pillow image:

* EXIF orientation applied (``ImageOps.exif_transpose``);
* modes normalised: CMYK/YCbCr/LAB/HSV -> RGB, palette -> RGB(A), alpha composited on white,
  16-bit and 32-bit integer (``I;16``, ``I``) and float (``F``) scaled to 8 bits by the type's
  range (not stretched per image, so brightness is kept), 1-bit -> L;
* decompression bombs refused before decoding: more than ``max_pixels`` (default Pillow's
  ``Image.MAX_IMAGE_PIXELS``, about 89 M) declared pixels is an error, not a warning;
* zero-byte, truncated, non-image and unsupported files are errors.

JPEGs can be decoded at a reduced scale (``draft``: DCT scaling by 1/2, 1/4, 1/8), which
makes large photos several times cheaper to decode when the output is small.

:func:`encode_image` writes arrays back (PNG at a fast zlib level, JPEG/WebP at a quality),
and :func:`fit_resize`, :func:`resize_stack` and :func:`letterbox` resize for the stages and
figures, so Pillow is imported here, in :mod:`mlrdist.align` (warps) and in
:mod:`mlrdist.report` (drawing) only.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DecodedImage",
    "ImageDecodeError",
    "decode_image",
    "decode_array",
    "encode_image",
    "fit_resize",
    "from_array",
    "letterbox",
    "resize_stack",
    "to_array",
]

PNG_COMPRESS_LEVEL = 3  # zlib level: 4x faster than Pillow's default 6 for ~4% larger files (measured)


class ImageDecodeError(ValueError):
    """A file that is not a usable image; ``reason`` says why (one of ``REASONS``)."""

    REASONS = ("empty", "not-an-image", "truncated", "decompression-bomb", "unsupported-mode", "corrupt")

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass
class DecodedImage:
    """An upright 8-bit image and how it was obtained.

    ``scale`` is the decoded size over the file's full size (below 1 after a JPEG draft);
    coordinates of the full image (e.g. landmarks) are multiplied by it. ``encoding`` holds
    what :func:`encode_image` needs to write the image back as the file was written: for a
    JPEG its quantization tables and chroma subsampling; for any format its ICC profile,
    resolution and EXIF (with the orientation reset, since the pixels are now upright).
    """

    image: object  # PIL.Image.Image, mode "RGB" or "L"
    full_size: tuple[int, int]  # (W, H) of the file, after EXIF orientation
    scale: float
    format: str | None
    original_mode: str
    encoding: dict = field(default_factory=dict)


def decode_image(data: bytes, *, colour: str = "rgb", min_size: tuple[int, int] | None = None,
                 min_scale: float | None = None, max_pixels: int | None = None) -> DecodedImage:
    """Decode ``data`` into an upright 8-bit Pillow image.

    Parameters
    ----------
    data : bytes
        The file's content.
    colour : {"rgb", "gray", "auto"}
        Output mode ``RGB`` or ``L``; ``auto`` keeps the file's own: ``L`` for grayscale
        files (1-bit, 8 and 16-bit gray, with or without alpha), ``RGB`` otherwise.
    min_size : (W, H), optional
        For JPEG, decode at the smallest DCT scale that still covers this size (``draft``).
    min_scale : float, optional
        For JPEG, decode at the smallest DCT scale of at least this fraction of the full size.
    max_pixels : int, optional
        Refuse images declaring more pixels (default ``PIL.Image.MAX_IMAGE_PIXELS``).

    Raises
    ------
    ImageDecodeError
        With ``reason`` in ``ImageDecodeError.REASONS``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if colour not in ("rgb", "gray", "auto"):
        raise ValueError(f"colour must be 'rgb', 'gray' or 'auto', got {colour!r}")
    if not data:
        raise ImageDecodeError("empty", "zero-byte file")
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError("not-an-image", "Pillow cannot identify the format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError("decompression-bomb", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("corrupt", str(exc)) from None
    W, H = img.size
    if limit and W * H > limit:
        raise ImageDecodeError("decompression-bomb", f"{W}x{H} = {W * H} pixels exceeds the limit of {limit}")
    original_mode = img.mode
    fmt = img.format
    if colour == "auto":
        colour = "gray" if original_mode in GRAY_MODES else "rgb"
    try:
        orientation = img.getexif().get(0x0112, 1)
        if (min_size is not None or min_scale is not None) and fmt == "JPEG":
            want = np.array(min_size if min_size is not None else (1, 1), dtype=np.float64)
            if orientation >= 5:
                want = want[::-1]
            if min_scale is not None:
                want = np.maximum(want, np.ceil(np.array([W, H]) * min(1.0, min_scale)))
            img.draft("RGB" if colour == "rgb" else "L", tuple(int(v) for v in want))
        img.load()
        encoding = _encoding(img)
        ImageOps.exif_transpose(img, in_place=True)  # (not a copy when already upright)
        img = _to_8bit(img, colour)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, MemoryError) as exc:
        raise ImageDecodeError("decompression-bomb", str(exc)) from None
    except OSError as exc:
        reason = "truncated" if "truncat" in str(exc).lower() or "broken data" in str(exc).lower() else "corrupt"
        raise ImageDecodeError(reason, str(exc)) from None
    except (SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise ImageDecodeError("corrupt", f"{type(exc).__name__}: {exc}") from None
    full = (W, H) if orientation < 5 else (H, W)
    return DecodedImage(image=img, full_size=full, scale=img.size[0] / full[0], format=fmt, original_mode=original_mode,
                        encoding=encoding)


GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _encoding(img) -> dict:
    """How a decoded file was written, to write it back alike (see :class:`DecodedImage`)."""
    out: dict = {}
    for key in ("icc_profile", "dpi"):
        if img.info.get(key):
            out[key] = img.info[key]
    exif = img.getexif()
    if len(exif):
        from PIL import Image

        upright = Image.Exif()  # a copy: the image's own EXIF must keep its orientation for exif_transpose
        upright.load(exif.tobytes())
        upright[0x0112] = 1  # the pixels are made upright on decoding
        out["exif"] = upright.tobytes()
    if img.format == "JPEG" and getattr(img, "quantization", None):
        from PIL import JpegImagePlugin

        out["qtables"] = img.quantization
        sampling = JpegImagePlugin.get_sampling(img)
        if sampling >= 0:
            out["subsampling"] = sampling
    return out


def _to_8bit(img, colour: str):
    """RGB or L, 8 bits per channel; alpha composited on white."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) <= 65535) else None
        if top is None:
            top = 1.0 if mode == "F" and arr.max(initial=0) <= 1.0 else float(arr.max(initial=1)) or 1.0
        img = Image.fromarray(np.clip(np.rint(arr / top * 255), 0, 255).astype(np.uint8), "L")
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "PA", "La"):
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode not in ("RGB", "L", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        raise ImageDecodeError("unsupported-mode", f"Pillow mode {img.mode!r}")
    want = "RGB" if colour == "rgb" else "L"
    return img if img.mode == want else img.convert(want)  # convert() to its own mode copies


def to_array(img) -> np.ndarray:
    """A Pillow ``RGB``/``L`` image as uint8, shape (H, W, C) with C = 3 or 1."""
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def from_array(arr: np.ndarray):
    """A uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` array as a Pillow ``L``/``RGB`` image."""
    from PIL import Image

    a = arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    return Image.fromarray(np.ascontiguousarray(a))


def decode_array(data: bytes, colour: str = "rgb") -> np.ndarray:
    """File bytes -> uint8 ``(H, W, C)`` (see :func:`decode_image`)."""
    return to_array(decode_image(data, colour=colour).image)


def encode_image(image: np.ndarray, fmt: str, quality: int = 95, like: dict | None = None) -> bytes:
    """uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` -> encoded bytes in Pillow format ``fmt``.

    ``like``: the :attr:`DecodedImage.encoding` of the input, to write the output as the
    input was written (a JPEG with the input's own quantization tables and chroma subsampling,
    so that pixels the synthesis did not change stay within a level or two of the input's; the
    ICC profile, resolution and EXIF of any format).
    """
    like = like or {}
    options: dict = {k: like[k] for k in ("icc_profile", "dpi", "exif") if k in like}
    if fmt == "JPEG" and "qtables" in like:
        options["qtables"] = like["qtables"]
        if "subsampling" in like:
            options["subsampling"] = like["subsampling"]
    elif fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    elif fmt == "PNG":
        options["compress_level"] = PNG_COMPRESS_LEVEL
    buf = io.BytesIO()
    from_array(image).save(buf, format=fmt, **options)
    return buf.getvalue()


def fit_resize(img, size: tuple[int, int]):
    """Centre-crop a Pillow image to the aspect of ``size`` (W, H) and resize it (bicubic,
    antialiased)."""
    from PIL import Image

    W, H = size
    w, h = img.size
    if w * H > h * W:
        cw, ch = h * W / H, h
    else:
        cw, ch = w, w * H / W
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return img.resize((W, H), Image.Resampling.BICUBIC, box=box)


def resize_stack(X: np.ndarray, size: int | None, gray: bool = False) -> np.ndarray:
    """uint8 ``(n, H, W[, C])`` -> ``(n, size, size, C')`` (bicubic), ``C' = 1`` when ``gray``
    (luminance of colour images); ``size=None`` keeps the size."""
    from PIL import Image

    X = X if X.ndim == 4 else X[..., None]
    if gray and X.shape[-1] == 3:
        X = np.rint(X.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)[..., None]
    if size is None or X.shape[1:3] == (size, size):
        return X
    out = [np.asarray(from_array(x).resize((size, size), Image.Resampling.BICUBIC)) for x in X]
    return np.stack(out).reshape(len(X), size, size, X.shape[-1])


def letterbox(image: np.ndarray, side: int) -> np.ndarray:
    """Fit a uint8 ``(H, W, C)`` image into a white ``side x side`` RGB square, keeping its
    aspect ratio: shrunk with Lanczos, enlarged with bicubic (small faces shown large)."""
    from PIL import Image

    pil = from_array(image).convert("RGB")
    scale = min(side / pil.size[0], side / pil.size[1])
    size = (max(1, round(pil.size[0] * scale)), max(1, round(pil.size[1] * scale)))
    pil = pil.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (side, side), "white")
    canvas.paste(pil, ((side - pil.size[0]) // 2, (side - pil.size[1]) // 2))
    return np.asarray(canvas)
