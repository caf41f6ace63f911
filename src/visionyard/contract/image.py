"""Safe image decoding: the one place where bytes or files become 8-bit RGB Pillow images.

Pillow does the decoding. What Pillow does not do for us, and this module adds:
- the pixel limit is checked on the *declared* size before any pixel is decoded (decompression
  bombs), with our own error instead of Pillow's warning/exception;
- every failure (zero bytes, truncated, corrupt, unsupported) becomes one :class:`ImageError`
  naming the source;
- a defined conversion of every mode to RGB: greyscale replicated, palette expanded, 16-bit and
  32-bit integer and float greyscale scaled to 8 bits, CMYK converted, alpha composited over a
  background colour (or dropped), EXIF orientation applied or ignored; modes Pillow would convert
  wrongly (LAB: its channels are copied, not converted) are refused instead.
- Pillow refuses images above twice its own limit inside ``Image.open``, before their size can be
  read; the format plugin is then asked for the declared size directly (header parse only) so the
  error is still an :class:`ImageTooLargeError` that names the dimensions. Pillow's warning below
  that is silenced with a standing filter (:mod:`visionyard.quiet`), not ``catch_warnings``: this
  runs on the server's worker threads.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visionyard.errors import ImageError, ImageTooLargeError
from visionyard.quiet import ignore_warning

ImageSource = bytes | bytearray | memoryview | Path | str
RGB = tuple[int, int, int]
DEFAULT_MAX_PIXELS = 40_000_000
_UNSUPPORTED_MODES = frozenset({"LAB"})
_WIDE_GREY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def open_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) and check the declared size; raises :class:`ImageError`."""
    name = _name(source)
    data = _read(source, name)
    if not data:
        raise ImageError(name, "file is empty (0 bytes)")
    try:
        ignore_warning(Image.DecompressionBombWarning)  # our own limit decides, just below
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        width, height = _declared_size(data)
        raise ImageTooLargeError(name, width, height, max_pixels) from exc
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
        image.load()
        if apply_exif:
            ImageOps.exif_transpose(image, in_place=True)  # no copy when upright
    except Exception as exc:  # Pillow raises assorted exception types on hostile data
        raise ImageError(name, f"corrupt or truncated image data ({_reason(exc)})") from exc
    return to_rgb(image, alpha=alpha, background=background, source=name)


def verify_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Fully decode once to prove the image is readable; returns (width, height)."""
    image = decode_rgb(source, max_pixels=max_pixels, apply_exif=False)
    return image.size


def to_rgb(
    image: Image.Image,
    *,
    alpha: str = "composite",
    background: RGB = (255, 255, 255),
    source: str = "<image>",
) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB by the rules in the module docstring."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _UNSUPPORTED_MODES:
        raise ImageError(source, f"unsupported colour mode {mode}; convert it to RGB first")
    if mode in _WIDE_GREY_MODES:
        return _wide_grey_to_rgb(image)
    if mode == "P":
        has_alpha = "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    if mode in _ALPHA_MODES:
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


def _declared_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header, asking each matching format plugin directly.

    Only reached for images Pillow itself refused as bombs, so a plugin that accepts the prefix
    exists; (0, 0) is a fallback that still reports the image as too large.
    """
    Image.init()
    for factory, accept in Image.OPEN.values():
        verdict = True if accept is None else accept(data[:16])
        if not verdict or isinstance(verdict, str):  # a str verdict is a rejection with a reason
            continue
        try:
            width, height = factory(io.BytesIO(data), "").size
        except Exception:  # try the next plugin, as Image.open does
            continue
        return width, height
    return 0, 0


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
    """The exception text without Pillow's ``<_io.BytesIO object at 0x...>`` noise."""
    text = str(exc).strip() or type(exc).__name__
    return re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", text).strip() or type(exc).__name__
