"""Detection report pictures: precision-recall curves at IoU 0.5, and a grid of validation
images with their true boxes (green) and predicted boxes (red, with label and score).

Drawn with Pillow like the confusion matrix (:mod:`visionyard.evaluate.report`): matplotlib
would be a slow import for two pictures.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from visionyard.evaluate.detection import DetectionLike, ImageTruth

PLOT = 320  # the curve area's side, pixels
MARGIN = 40
TILE = 192
COLOURS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip


def pr_curves_png(curves: dict[str, list[float]], title: str = "") -> bytes:
    """One line per class: precision (y) over recall (x), each 0..1."""
    font = ImageFont.load_default(12)
    legend = 16 * len(curves)
    image = Image.new("RGB", (PLOT + 2 * MARGIN, PLOT + 2 * MARGIN + legend), "white")
    draw = ImageDraw.Draw(image)
    x0, y0 = MARGIN, MARGIN + PLOT
    draw.rectangle((x0, MARGIN, x0 + PLOT, y0), outline="black")
    for tick in range(0, 11, 2):
        value = tick / 10
        draw.text((x0 + value * PLOT, y0 + 4), f"{value:.1f}", fill="black", font=font, anchor="mt")
        draw.text((x0 - 4, y0 - value * PLOT), f"{value:.1f}", fill="black", font=font, anchor="rm")
    draw.text((x0 + PLOT / 2, 8), title or "precision / recall, IoU 0.5", fill="black", font=font,
              anchor="mt")  # fmt: skip
    for index, (label, precision) in enumerate(curves.items()):
        colour = COLOURS[index % len(COLOURS)]
        points = [(x0 + r / 100 * PLOT, y0 - p * PLOT) for r, p in enumerate(precision) if p >= 0]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        row = y0 + 24 + 16 * index
        draw.line((x0, row, x0 + 20, row), fill=colour, width=3)
        draw.text((x0 + 26, row), label, fill="black", font=font, anchor="lm")
    return _png(image)


def boxes_grid_png(
    images: Sequence[Image.Image],
    truth: Sequence[ImageTruth],
    found: Sequence[Sequence[DetectionLike]],
    labels: Sequence[str],
    limit: int = 16,
) -> bytes:
    """Up to ``limit`` images in a square grid, each scaled to fit a tile."""
    count = min(limit, len(images))
    side = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / side))
    grid = Image.new("RGB", (side * TILE, rows * TILE), "white")
    font = ImageFont.load_default(11)
    for i in range(count):
        tile = _tile(images[i], truth[i], found[i], labels, font)
        grid.paste(tile, ((i % side) * TILE, (i // side) * TILE))
    return _png(grid)


def _tile(
    image: Image.Image,
    truth: ImageTruth,
    found: Sequence[DetectionLike],
    labels: Sequence[str],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> Image.Image:
    scale = (TILE - 4) / max(image.size)
    picture = image.convert("RGB").resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    )
    draw = ImageDraw.Draw(picture)
    for obj in truth.objects:
        x, y, w, h = (v * scale for v in obj.bbox)
        draw.rectangle((x, y, x + w, y + h), outline=(0, 200, 0), width=2)
    for det in found:
        x1, y1, x2, y2 = (v * scale for v in det.box)
        draw.rectangle((x1, y1, x2, y2), outline=(230, 0, 0), width=1)
        draw.text((x1 + 1, y1), f"{labels[det.index]} {det.score:.2f}", fill=(230, 0, 0),
                  font=font)  # fmt: skip
    tile = Image.new("RGB", (TILE, TILE), "white")
    tile.paste(picture, (2, 2))
    return tile


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
