"""Training report artifacts: a confusion-matrix PNG and the per-class table (JSON, markdown).

The PNG is drawn with Pillow (already a dependency; matplotlib would add a slow import for one
picture). Cells are shaded by the row-normalised value (the recall of each true class) and show
the raw counts.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from visionyard.train.metrics import ClassificationMetrics, IntArray

CELL = 44
PAD = 8
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


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


def confusion_matrix_png(confusion: IntArray, labels: Sequence[str], title: str = "") -> bytes:
    """A PNG of the confusion matrix (rows: true class, columns: predicted class)."""
    font = _font()
    n = len(labels)
    label_w = max([_text_width(font, label) for label in labels] + [40]) + 2 * PAD
    top = label_w + (24 if title else 0)
    foot = f"rows: true class, columns: predicted class (n={int(confusion.sum())})"
    width = max(label_w + n * CELL, _text_width(font, foot), _text_width(font, title)) + PAD
    image = Image.new("RGB", (width, top + n * CELL + 24), "white")
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((PAD, PAD), title, fill="black", font=font)
    row_totals = confusion.sum(axis=1)
    for i, label in enumerate(labels):
        y = top + i * CELL
        draw.text((label_w - PAD, y + CELL // 2), label, fill="black", font=font, anchor="rm")
        image.paste(_vertical_label(label, font, label_w), (label_w + i * CELL, top - label_w))
        for j in range(n):
            _draw_cell(draw, font, (label_w + j * CELL, y), int(confusion[i, j]), row_totals[i])
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


def per_class_json(metrics: ClassificationMetrics) -> str:
    body = {
        "accuracy": metrics.accuracy,
        "macro_f1": metrics.macro_f1,
        "loss": metrics.loss,
        "classes": metrics.table(),
        "confusion_matrix": metrics.confusion.tolist(),
        "labels": list(metrics.labels),
    }
    return json.dumps(body, indent=2)


def per_class_markdown(metrics: ClassificationMetrics) -> str:
    lines = [
        "| class | precision | recall | f1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in metrics.table():
        lines.append(
            f"| {row['label']} | {row['precision']:.4f} | {row['recall']:.4f} "
            f"| {row['f1']:.4f} | {row['support']} |"
        )
    lines.append(
        f"\naccuracy {metrics.accuracy:.4f} · macro F1 {metrics.macro_f1:.4f} · "
        f"loss {metrics.loss:.4f}\n"
    )
    return "\n".join(lines)
