"""Helpers for the pipeline tests: a scene whose two objects sit where the fixed detector
(:func:`tests.fixtures.runtime.fixed_detector_onnx`) puts its boxes, and spec files.

On a 64x64 image the detector's boxes are ``(8, 8, 24, 24)`` (cat) and ``(32, 32, 56, 60)``
(dog) in the image's own pixels; painting each box a colour makes the colour classifier's answer
for each crop depend on the crop's pixels alone.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageDraw

from tests.fixtures.runtime import COLOURS, DETECTOR_BOXES

BACKGROUND = (128, 128, 128)


def scene(first: str, second: str, size: int = 64, fmt: str = "PNG") -> bytes:
    """A grey image with the first box painted ``first`` and the second ``second``."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    scale = size / 64
    for (box, _), colour in zip(DETECTOR_BOXES, (first, second), strict=True):
        x1, y1, x2, y2 = (v * scale for v in box)
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=COLOURS[colour])
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def write_spec(path: Path, detector: str, classifier: str, **extra: Any) -> Path:
    body = {"pipeline": 1, "detector": detector, "classifier": classifier, **extra}
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path
