"""Safe decoding: bad input becomes one ImageError naming the source; every mode becomes RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.images import bomb_png, encode, palette_png, two_colour_jpeg
from visionyard.contract.image import decode_rgb, open_image, to_rgb, verify_image
from visionyard.errors import ImageError, ImageTooLargeError


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


def test_zero_byte_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg.*0 bytes") as info:
        decode_rgb(path)
    assert info.value.source == str(path)


def test_missing_file_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="missing.png.*cannot open file"):
        decode_rgb(str(tmp_path / "missing.png"))


def test_corrupt_bytes_message_has_no_object_address() -> None:
    with pytest.raises(ImageError, match="not a readable image") as info:
        decode_rgb(b"definitely not an image")
    assert info.value.source == "<bytes>"
    assert "0x" not in str(info.value)
    assert "BytesIO" not in str(info.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=rf"cut\.{fmt.lower()}.*truncated"):
        decode_rgb(path)


def test_bomb_over_our_limit_reports_dimensions() -> None:
    with pytest.raises(ImageTooLargeError) as info:
        open_image(bomb_png(10_000, 5_000), max_pixels=40_000_000)
    assert (info.value.width, info.value.height, info.value.limit) == (10_000, 5_000, 40_000_000)
    assert "10000x5000" in str(info.value)


def test_bomb_over_pillow_limit_is_still_too_large(tmp_path: Path) -> None:
    """Pillow refuses these inside Image.open; the error must still be image.too_large."""
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(100_000, 100_000))
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png.*100000x100000") as info:
        decode_rgb(path)
    assert info.value.code == "image.too_large"


def test_small_limit_is_enforced_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError):
        verify_image(encode(Image.new("RGB", (20, 20))), max_pixels=399)
    assert verify_image(encode(Image.new("RGB", (20, 20))), max_pixels=400) == (20, 20)


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk_is_converted(fmt: str) -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), fmt)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    got = pixels(decode_rgb(data))
    np.testing.assert_allclose(got[8, 8], [255, 0, 0], atol=2)


def test_palette_without_transparency_is_expanded() -> None:
    got = pixels(decode_rgb(palette_png(transparent=False)))
    assert got[0, 0].tolist() == [10, 20, 30]
    assert got[1, 1].tolist() == [200, 100, 50]


def test_palette_transparency_is_composited_over_background() -> None:
    got = pixels(decode_rgb(palette_png(transparent=True), background=(0, 0, 255)))
    assert got[0, 0].tolist() == [0, 0, 255]
    assert got[1, 1].tolist() == [200, 100, 50]


def test_palette_transparency_dropped_keeps_palette_colour() -> None:
    got = pixels(decode_rgb(palette_png(transparent=True), alpha="drop"))
    assert got[0, 0].tolist() == [10, 20, 30]


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    grey16 = np.array([[0, 257 * 100], [65535, 1000]], dtype=np.uint16)
    data = encode(Image.fromarray(grey16), "PNG")
    got = pixels(decode_rgb(data))
    assert got[..., 0].tolist() == [[0, 100], [255, 4]]
    assert (got[..., 0] == got[..., 1]).all()
    assert (got[..., 1] == got[..., 2]).all()


def test_rgba_half_transparent_composite_and_drop() -> None:
    rgba = Image.new("RGBA", (2, 2), (200, 0, 0, 128))
    data = encode(rgba, "PNG")
    composite = pixels(decode_rgb(data, background=(0, 0, 0)))
    np.testing.assert_allclose(composite[0, 0], [100, 0, 0], atol=1)
    white = pixels(decode_rgb(data))
    np.testing.assert_allclose(white[0, 0], [227, 127, 127], atol=1)
    assert pixels(decode_rgb(data, alpha="drop"))[0, 0].tolist() == [200, 0, 0]


def test_greyscale_and_grey_alpha_are_replicated() -> None:
    grey = pixels(decode_rgb(encode(Image.new("L", (3, 3), 77))))
    assert grey[1, 1].tolist() == [77, 77, 77]
    grey_alpha = pixels(decode_rgb(encode(Image.new("LA", (3, 3), (77, 0))), background=(1, 2, 3)))
    assert grey_alpha[1, 1].tolist() == [1, 2, 3]


def test_exif_orientation_six_is_applied() -> None:
    image = decode_rgb(two_colour_jpeg(orientation=6))
    assert image.size == (20, 40)  # rotated 90 degrees clockwise: portrait
    got = pixels(image)
    # the left (red) half of the stored image ends up on top after a clockwise rotation
    np.testing.assert_allclose(got[5, 10], [255, 0, 0], atol=40)
    np.testing.assert_allclose(got[35, 10], [0, 0, 255], atol=40)


def test_exif_orientation_can_be_ignored() -> None:
    image = decode_rgb(two_colour_jpeg(orientation=6), apply_exif=False)
    assert image.size == (40, 20)
    np.testing.assert_allclose(pixels(image)[10, 5], [255, 0, 0], atol=40)


def test_lab_is_refused_not_silently_miscoloured() -> None:
    data = encode(Image.new("LAB", (4, 4), (50, 0, 0)), "TIFF")
    with pytest.raises(ImageError, match="unsupported colour mode LAB"):
        decode_rgb(data)


def test_to_rgb_keeps_rgb_untouched(rgb_image: Image.Image) -> None:
    assert to_rgb(rgb_image) is rgb_image
