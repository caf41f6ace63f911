"""Classification metrics from a numpy confusion matrix: accuracy and per-class P/R/F1.

A few lines of numpy; scikit-learn is not a dependency and would be a large one for this.
Classes that are never predicted (or never present) get precision (or recall) 0, not NaN.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def confusion_matrix(
    y_true: Sequence[int] | IntArray, y_pred: Sequence[int] | IntArray, num_classes: int
) -> IntArray:
    """``cm[t, p]`` counts samples of true class ``t`` predicted as ``p``."""
    true = np.asarray(y_true, dtype=np.int64)
    pred = np.asarray(y_pred, dtype=np.int64)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has shape {true.shape}, y_pred {pred.shape}")
    flat = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class ClassificationMetrics:
    """Loss, accuracy and per-class precision/recall/F1/support for one evaluation pass."""

    labels: tuple[str, ...]
    loss: float
    confusion: IntArray
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    support: IntArray

    @property
    def accuracy(self) -> float:
        total = int(self.confusion.sum())
        return float(np.trace(self.confusion)) / total if total else 0.0

    @property
    def macro_f1(self) -> float:
        return float(self.f1.mean()) if self.f1.size else 0.0

    def summary(self, prefix: str) -> dict[str, float]:
        """Headline metrics: ``{prefix}_loss``, ``{prefix}_accuracy``, ``{prefix}_macro_f1``."""
        return {
            f"{prefix}_loss": self.loss,
            f"{prefix}_accuracy": self.accuracy,
            f"{prefix}_macro_f1": self.macro_f1,
        }

    def per_class(self, prefix: str) -> dict[str, float]:
        """``{prefix}_{precision|recall|f1}.{label}`` for every class (MLflow-safe names)."""
        out: dict[str, float] = {}
        for i, label in enumerate(self.labels):
            name = metric_safe(label)
            out[f"{prefix}_precision.{name}"] = float(self.precision[i])
            out[f"{prefix}_recall.{name}"] = float(self.recall[i])
            out[f"{prefix}_f1.{name}"] = float(self.f1[i])
        return out

    def table(self) -> list[dict[str, object]]:
        """One row per class: label, precision, recall, f1, support."""
        return [
            {
                "label": label,
                "precision": round(float(self.precision[i]), 6),
                "recall": round(float(self.recall[i]), 6),
                "f1": round(float(self.f1[i]), 6),
                "support": int(self.support[i]),
            }
            for i, label in enumerate(self.labels)
        ]


def classification_metrics(
    y_true: Sequence[int] | IntArray,
    y_pred: Sequence[int] | IntArray,
    labels: Sequence[str],
    loss: float = 0.0,
) -> ClassificationMetrics:
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, actual)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return ClassificationMetrics(
        tuple(labels), float(loss), cm, precision, recall, f1, cm.sum(axis=1).astype(np.int64)
    )


def metric_safe(name: str) -> str:
    """A label as an MLflow metric-name part (letters, digits, ``_ - .`` and spaces kept)."""
    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", name) or "_"
