"""Training report artifacts: a confusion-matrix PNG and the per-class table (JSON, markdown).

The PNG is drawn by :func:`visionyard.evaluate.report.confusion_matrix_png` (Pillow only, shared
with ``visionyard evaluate``); it is re-exported here for the trainer.
"""

from __future__ import annotations

import json

from visionyard.evaluate.report import _shade as _shade  # re-exported for the tests
from visionyard.evaluate.report import confusion_matrix_png as confusion_matrix_png
from visionyard.train.metrics import ClassificationMetrics


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
