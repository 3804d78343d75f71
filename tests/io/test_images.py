"""decode_image: bad files raise ImageDecodeError with a reason; odd valid files are normalised."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlrdist.io.images import ImageDecodeError, decode_image, to_array
from tests._images import (
    bad_files,
    encode,
    exif_rotated_jpeg,
    face_like,
    odd_good_files,
    png_declaring,
)

REASONS = {"empty.png": "empty", "text.jpg": "not-an-image", "truncated.jpg": "truncated",
           "bomb.png": "decompression-bomb"}


@pytest.mark.parametrize("name", sorted(REASONS))
def test_bad_files_raise_with_reason(name):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bad_files()[name])
    assert info.value.reason == REASONS[name]


def test_truncated_png():
    data = encode(face_like(2), "PNG")
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data[: len(data) - 200])
    assert info.value.reason in ("truncated", "corrupt")


def test_bomb_under_pillow_limit_but_over_ours():
    """A declared size above ``max_pixels`` is refused before any pixel is decoded."""
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 1000"):
        decode_image(png_declaring(100, 100), max_pixels=1000)


def test_bomb_between_pillow_warning_and_error(monkeypatch):
    """Pillow only warns between MAX_IMAGE_PIXELS and twice it; we refuse."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(png_declaring(80, 80))
    assert info.value.reason == "decompression-bomb"


@pytest.mark.parametrize("name", sorted(odd_good_files()))
@pytest.mark.parametrize("colour", ["rgb", "gray"])
def test_odd_files_normalised(name, colour):
    dec = decode_image(odd_good_files()[name], colour=colour)
    assert dec.image.mode == ("RGB" if colour == "rgb" else "L")
    arr = to_array(dec.image)
    assert arr.dtype == np.uint8 and arr.shape[-1] == (3 if colour == "rgb" else 1)


def test_sixteen_bit_scaled_by_range_not_clipped():
    img = Image.fromarray(np.full((10, 10), 32768, dtype=np.uint16))
    arr = to_array(decode_image(encode(img), colour="gray").image)
    assert abs(int(arr.mean()) - 128) <= 1


def test_alpha_composited_on_white():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    arr = to_array(decode_image(encode(img)).image)
    assert arr.min() == 255


def test_exif_orientation_applied():
    data, upright = exif_rotated_jpeg()
    dec = decode_image(data)
    assert dec.image.size == upright.size == dec.full_size
    r, g, b = dec.image.getpixel((5, 20))
    assert r > 200 and g < 60  # the red band is on the left, as displayed
    assert dec.image.getpixel((50, 20))[1] > 200


def test_jpeg_draft_scale():
    data = encode(face_like(7, (800, 600)), "JPEG")
    dec = decode_image(data, min_scale=0.3)
    assert dec.full_size == (800, 600) and dec.scale == 0.5 and dec.image.size == (400, 300)
    assert decode_image(data, min_size=(90, 90)).image.size == (200, 150)  # both sides >= 90


def test_bad_colour_argument():
    with pytest.raises(ValueError, match="colour"):
        decode_image(b"x", colour="cmyk")
