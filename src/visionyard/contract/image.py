"""Safe image decoding: the one place where bytes or files become 8-bit RGB Pillow images.

Pillow does the decoding. What Pillow does not do for us, and this module adds:
- the pixel limit is checked on the *declared* size before any pixel is decoded (decompression
  bombs), with our own error instead of Pillow's warning/exception;
- every failure (zero bytes, truncated, corrupt, unsupported) becomes one :class:`ImageError`
  naming the source;
- a defined conversion of every mode to RGB: greyscale replicated, palette expanded, 16-bit and
  32-bit integer and float greyscale scaled to 8 bits, CMYK converted, alpha composited over a
  background colour (or dropped), EXIF orientation applied or ignored.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visionyard.errors import ImageError, ImageTooLargeError

ImageSource = bytes | bytearray | memoryview | Path | str
RGB = tuple[int, int, int]
DEFAULT_MAX_PIXELS = 40_000_000


def open_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) and check the declared size; raises :class:`ImageError`."""
    name = _name(source)
    data = _read(source, name)
    if not data:
        raise ImageError(name, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"declared size too large: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(name, f"not a readable image ({_reason(exc)})") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(name, width, height, max_pixels)
    if width == 0 or height == 0:
        raise ImageError(name, "image has zero width or height")
    return image


def decode_rgb(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    apply_exif: bool = True,
    alpha: str = "composite",
    background: RGB = (255, 255, 255),
) -> Image.Image:
    """Decode fully to an 8-bit RGB image.

    ``alpha`` is ``"composite"`` (blend over ``background``) or ``"drop"`` (ignore the alpha).
    """
    image = open_image(source, max_pixels=max_pixels)
    name = _name(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            if apply_exif:
                image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(name, f"corrupt or truncated image data ({_reason(exc)})") from exc
    return to_rgb(image, alpha=alpha, background=background)


def verify_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Fully decode once to prove the image is readable; returns (width, height)."""
    image = decode_rgb(source, max_pixels=max_pixels, apply_exif=False)
    return image.size


def to_rgb(
    image: Image.Image, *, alpha: str = "composite", background: RGB = (255, 255, 255)
) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB by the rules in the module docstring."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}:
        return _wide_grey_to_rgb(image)
    if mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"}:
        rgba = image.convert("RGBA")
        if alpha == "drop":
            return rgba.convert("RGB")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    arr = np.asarray(image)
    if image.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        grey = np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)
    else:
        # 16-bit data (Pillow opens 16-bit PNGs as I;16 or I): 0..65535 -> 0..255
        grey = np.clip(arr.astype(np.float64) / 257.0, 0, 255).round().astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1))


def _read(source: ImageSource, name: str) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ImageError(name, f"cannot open file ({exc.strerror or exc})") from exc


def _name(source: ImageSource) -> str:
    return "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace(" <_io.BytesIO object at", "").split(" at 0x")[0]
