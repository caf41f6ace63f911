"""Confusion matrix, per-class precision/recall/F1 and the report artifacts."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from visionyard.train.metrics import classification_metrics, confusion_matrix, metric_safe
from visionyard.train.report import _shade, confusion_matrix_png, per_class_json, per_class_markdown

LABELS = ("cat", "dog", "bird")
TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
PRED = [0, 0, 1, 1, 1, 2, 0, 2]


def test_confusion_matrix_counts_true_rows_predicted_columns() -> None:
    cm = confusion_matrix(TRUE, PRED, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]


def test_confusion_matrix_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix([0, 1], [0], 2)


def test_per_class_precision_recall_f1() -> None:
    m = classification_metrics(TRUE, PRED, LABELS, loss=0.5)
    assert m.accuracy == pytest.approx(6 / 8)
    np.testing.assert_allclose(m.precision, [2 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(m.recall, [2 / 3, 1.0, 2 / 3])
    np.testing.assert_allclose(m.f1, [2 / 3, 0.8, 0.8])
    assert m.support.tolist() == [3, 2, 3]
    assert m.macro_f1 == pytest.approx((2 / 3 + 0.8 + 0.8) / 3)


def test_never_predicted_class_scores_zero_not_nan() -> None:
    m = classification_metrics([0, 1, 2], [0, 0, 0], LABELS)
    assert m.precision.tolist() == [pytest.approx(1 / 3), 0.0, 0.0]
    assert m.f1[1] == 0.0
    assert not np.isnan(m.f1).any()


def test_metric_names() -> None:
    m = classification_metrics(TRUE, PRED, ("a cat", "dog/wolf", "bird"), loss=0.25)
    assert m.summary("val") == {
        "val_loss": 0.25,
        "val_accuracy": 0.75,
        "val_macro_f1": pytest.approx(m.macro_f1),
    }
    names = set(m.per_class("val"))
    assert {"val_precision.a cat", "val_recall.dog_wolf", "val_f1.bird"} <= names
    assert len(names) == 9
    assert metric_safe("") == "_"


def test_confusion_matrix_png_is_a_picture_of_the_matrix() -> None:
    m = classification_metrics(TRUE, PRED, LABELS)
    png = confusion_matrix_png(m.confusion, m.labels, title="val")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert min(image.size) > 3 * 44
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    unique, counts = np.unique(pixels, axis=0, return_counts=True)
    colours = {tuple(int(v) for v in c): int(n) for c, n in zip(unique, counts, strict=True)}
    # cells are shaded by row fraction: dog->dog is 2/2, cat->cat 2/3, cat->dog 1/3
    for fraction in (1.0, 2 / 3, 1 / 3):
        assert colours.get(_shade(fraction), 0) > 30 * 30


def test_per_class_tables() -> None:
    m = classification_metrics(TRUE, PRED, LABELS, loss=0.5)
    body = json.loads(per_class_json(m))
    assert [row["label"] for row in body["classes"]] == list(LABELS)
    assert body["confusion_matrix"] == m.confusion.tolist()
    assert body["accuracy"] == 0.75
    markdown = per_class_markdown(m)
    assert "| dog | 0.6667 | 1.0000 | 0.8000 | 2 |" in markdown
    assert "accuracy 0.7500" in markdown
