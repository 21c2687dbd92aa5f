"""Decoding is the first thing untrusted bytes meet: every odd input gets RGB or a typed error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from models.errors import ImageDecodeError, ImageError, ImageTooLarge, UnsupportedImage
from models.preprocess import decode_image, probe_image

MAX = 40_000_000


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgb_jpeg_round_trip() -> None:
    data = encode(Image.new("RGB", (40, 30), (200, 10, 10)), "JPEG", quality=95)
    info = probe_image(data, max_pixels=MAX)
    assert (info.width, info.height, info.format, info.frames) == (40, 30, "JPEG", 1)
    img = decode_image(data, max_pixels=MAX)
    assert img.mode == "RGB" and img.size == (40, 30)
    assert abs(int(np.asarray(img)[15, 20, 0]) - 200) <= 3


def test_grayscale_becomes_rgb() -> None:
    img = decode_image(encode(Image.new("L", (8, 8), 77), "PNG"), max_pixels=MAX)
    assert img.mode == "RGB"
    assert np.asarray(img)[0, 0].tolist() == [77, 77, 77]


def test_palette_with_transparency_composites_on_white() -> None:
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] + [255, 0, 0] * 255)
    pal.putpixel((1, 1), 1)
    data = encode(pal, "PNG", transparency=0)
    arr = np.asarray(decode_image(data, max_pixels=MAX))
    assert arr[0, 0].tolist() == [255, 255, 255]  # transparent index → white, not black
    assert arr[1, 1].tolist() == [255, 0, 0]


def test_rgba_alpha_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 255, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    arr = np.asarray(decode_image(encode(rgba, "PNG"), max_pixels=MAX))
    assert arr[3, 3].tolist() == [255, 255, 255]
    assert arr[0, 0].tolist() == [0, 0, 255]
    assert 120 <= arr[0, 1, 0] <= 135  # half-transparent black over white = mid grey


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=95)
    arr = np.asarray(decode_image(data, max_pixels=MAX))
    assert arr.shape == (8, 8, 3)
    assert arr[4, 4, 0] > 200 and arr[4, 4, 1] < 60  # cyan-free, magenta+yellow = red


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    arr16 = np.full((6, 6), 32768, dtype=np.uint16)
    data = encode(Image.fromarray(arr16), "PNG")
    arr = np.asarray(decode_image(data, max_pixels=MAX))
    assert arr.shape == (6, 6, 3)
    assert 126 <= arr[0, 0, 0] <= 129  # half of 16-bit range = mid grey (clipping would give 255)


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    out = np.asarray(decode_image(data, max_pixels=MAX))
    assert out.shape == (40, 20, 3)  # portrait after rotation
    assert out[2, 10, 0] > 200 and out[2, 10, 1] < 60  # the strip is now at the top


def test_animated_gif_gives_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert probe_image(buf.getvalue(), max_pixels=MAX).frames == 2
    arr = np.asarray(decode_image(buf.getvalue(), max_pixels=MAX))
    assert arr[0, 0, 0] > 200 and arr[0, 0, 1] < 60


def test_truncated_jpeg_raises_instead_of_partial_image() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) // 2], max_pixels=MAX)


def test_truncated_png_raises() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2], max_pixels=MAX)
    with pytest.raises(ImageDecodeError):
        probe_image(data[: len(data) // 2], max_pixels=MAX)


def test_zero_bytes() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        probe_image(b"", max_pixels=MAX)


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
        b"<svg width='10' height='10'><rect/></svg>",
        b"<!DOCTYPE html><html><body>hi</body></html>",
        b"not an image at all, just text",
    ],
)
def test_text_is_unsupported(payload: bytes) -> None:
    with pytest.raises(UnsupportedImage, match="Not a raster image"):
        probe_image(payload, max_pixels=MAX)
    with pytest.raises(UnsupportedImage):
        decode_image(payload, max_pixels=MAX)


def test_bomb_dimensions_refused_before_decoding() -> None:
    # A 1-bit 20000x20000 PNG is a few kB on the wire but 400 Mpx decoded.
    data = encode(Image.new("1", (20_000, 20_000), 0), "PNG")
    assert len(data) < 200_000
    with pytest.raises(ImageTooLarge, match="limit of 40,000,000"):
        probe_image(data, max_pixels=MAX)
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=MAX)


def test_pixel_limit_is_ours_not_pils() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageTooLarge, match="100x100"):
        probe_image(data, max_pixels=9_999)
    assert probe_image(data, max_pixels=10_000).width == 100


def test_unaccepted_format_is_unsupported() -> None:
    data = encode(Image.new("RGB", (8, 8)), "PPM")
    with pytest.raises(UnsupportedImage, match="PPM"):
        probe_image(data, max_pixels=MAX)


def test_every_error_is_an_image_error_with_a_code() -> None:
    for cls in (ImageDecodeError, ImageTooLarge, UnsupportedImage):
        assert issubclass(cls, ImageError)
        assert cls.code != ImageError.code
