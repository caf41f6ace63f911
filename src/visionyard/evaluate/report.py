"""Evaluation report artifacts: a confusion-matrix PNG, the report JSON, and writing both.

The PNG is drawn with Pillow (already a dependency; matplotlib would add a slow import for one
picture). Cells are shaded by the row-normalised value (the recall of each true class) and show
the raw counts. The trainer (:mod:`visionyard.train.report`) draws its validation matrix with
the same function.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from visionyard.evaluate.classification import ClassificationReport
from visionyard.evaluate.detection import DetectionReport

CELL = 44
PAD = 8
REPORT_JSON = "report.json"
CONFUSION_PNG = "confusion_matrix.png"
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Report = ClassificationReport | DetectionReport


def _font(size: int = 13) -> Font:
    return ImageFont.load_default(size)


def _text_width(font: Font, text: str) -> int:
    return int(font.getlength(text)) + 1


def _shade(fraction: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1)."""
    f = min(max(fraction, 0.0), 1.0)
    return (int(255 - 222 * f), int(255 - 180 * f), int(255 - 75 * f))


def _vertical_label(text: str, font: Font, height: int) -> Image.Image:
    strip = Image.new("RGB", (height, CELL), "white")
    ImageDraw.Draw(strip).text((PAD, CELL // 2), text, fill="black", font=font, anchor="lm")
    return strip.rotate(90, expand=True)


def confusion_matrix_png(
    confusion: npt.NDArray[np.integer] | Sequence[Sequence[int]],
    labels: Sequence[str],
    title: str = "",
) -> bytes:
    """A PNG of the confusion matrix (rows: true class, columns: predicted class)."""
    matrix = np.asarray(confusion, dtype=np.int64)
    font = _font()
    n = len(labels)
    label_w = max([_text_width(font, label) for label in labels] + [40]) + 2 * PAD
    top = label_w + (24 if title else 0)
    foot = f"rows: true class, columns: predicted class (n={int(matrix.sum())})"
    width = max(label_w + n * CELL, _text_width(font, foot), _text_width(font, title)) + PAD
    image = Image.new("RGB", (width, top + n * CELL + 24), "white")
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((PAD, PAD), title, fill="black", font=font)
    row_totals = matrix.sum(axis=1)
    for i, label in enumerate(labels):
        y = top + i * CELL
        draw.text((label_w - PAD, y + CELL // 2), label, fill="black", font=font, anchor="rm")
        image.paste(_vertical_label(label, font, label_w), (label_w + i * CELL, top - label_w))
        for j in range(n):
            _draw_cell(draw, font, (label_w + j * CELL, y), int(matrix[i, j]), int(row_totals[i]))
    draw.text((PAD, top + n * CELL + 4), foot, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _draw_cell(
    draw: ImageDraw.ImageDraw, font: Font, corner: tuple[int, int], count: int, total: int
) -> None:
    x, y = corner
    fraction = count / total if total else 0.0
    draw.rectangle([x, y, x + CELL - 1, y + CELL - 1], fill=_shade(fraction), outline="#bbbbbb")
    ink = "white" if fraction > 0.5 else "black"
    draw.text((x + CELL // 2, y + CELL // 2), str(count), fill=ink, font=font, anchor="mm")


def write_report(report: Report, folder: Path, title: str = "") -> list[Path]:
    """Write ``report.json`` (and, for a classifier, ``confusion_matrix.png``) into ``folder``;
    returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / REPORT_JSON]
    written[0].write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    if isinstance(report, ClassificationReport):
        png = folder / CONFUSION_PNG
        png.write_bytes(confusion_matrix_png(report.confusion_matrix, report.labels, title))
        written.append(png)
    return written
