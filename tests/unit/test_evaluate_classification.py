"""Classification metrics against hand-computed values, and over a real session."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.runtime import COLOURS, flat_png
from visionyard.bundle.store import Bundle
from visionyard.data.imagefolder import read_imagefolder
from visionyard.errors import DatasetError
from visionyard.evaluate import check_labels, classification_report, evaluate_classification
from visionyard.evaluate.classification import class_probabilities, top_k_accuracy
from visionyard.runtime import InferenceSession

# true:      0  0  0  1  1  2      confusion  [[2, 1, 0],
# predicted: 0  0  1  1  2  2                  [0, 1, 1],
#                                              [0, 0, 1]]
TRUTH = np.array([0, 0, 0, 1, 1, 2])
PREDICTED = [0, 0, 1, 1, 2, 2]


def probabilities(predicted: list[int], classes: int = 3) -> np.ndarray:
    """0.7 on the predicted class, the rest spread evenly."""
    probs = np.full((len(predicted), classes), 0.3 / (classes - 1))
    probs[np.arange(len(predicted)), predicted] = 0.7
    return probs


def test_hand_computed_metrics() -> None:
    report = classification_report(TRUTH, probabilities(PREDICTED), ["a", "b", "c"])
    assert report.sample_count == 6
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.confusion_matrix == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    rows = {c.label: c for c in report.per_class}
    assert (rows["a"].precision, rows["a"].recall, rows["a"].f1) == pytest.approx((1, 2 / 3, 0.8))
    assert (rows["b"].precision, rows["b"].recall, rows["b"].f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (rows["c"].precision, rows["c"].recall, rows["c"].f1) == pytest.approx((0.5, 1, 2 / 3))
    assert [c.support for c in report.per_class] == [3, 2, 1]
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report.mean_loss == pytest.approx(-(4 * math.log(0.7) + 2 * math.log(0.15)) / 6)
    assert report.top5_accuracy is None


def test_classes_absent_from_the_dataset_are_left_out_of_macro_averages() -> None:
    report = classification_report(TRUTH, probabilities(PREDICTED, 4), ["a", "b", "c", "d"])
    assert report.per_class[3].support == 0
    assert report.per_class[3].f1 == 0.0
    assert report.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert "f1/d" not in report.metrics()


def test_top_k_accuracy() -> None:
    probs = np.array([[0.5, 0.3, 0.2, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.0]])
    truth = np.array([1, 0])
    assert top_k_accuracy(truth, probs, 1) == 0.0
    assert top_k_accuracy(truth, probs, 2) == 0.5
    assert top_k_accuracy(truth, probs, 5) == 1.0
    report = classification_report(truth, probs, list("abcde"))
    assert report.top5_accuracy == 1.0


def test_metrics_are_flat_for_tracking() -> None:
    metrics = classification_report(TRUTH, probabilities(PREDICTED), ["a", "b", "c"]).metrics()
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["f1/a"] == pytest.approx(0.8)
    assert {"loss", "macro_f1", "macro_precision", "macro_recall"} <= set(metrics)


def test_label_policy() -> None:
    check_labels(["red", "blue"], ["red", "green", "blue"], allow_subset=True)
    with pytest.raises(DatasetError, match="not in the model's contract: cyan, magenta"):
        check_labels(["red", "magenta", "cyan"], ["red", "green"], allow_subset=True)
    with pytest.raises(DatasetError, match="missing from the dataset: green"):
        check_labels(["red"], ["red", "green"], allow_subset=False)


@dataclass(frozen=True)
class Sample:
    path: Path
    class_name: str


def write_images(root: Path, shades: dict[str, list[tuple[int, int, int]]]) -> None:
    for name, colours in shades.items():
        (root / name).mkdir(parents=True)
        for i, colour in enumerate(colours):
            (root / name / f"{i}.png").write_bytes(flat_png(colour))


def test_evaluate_over_an_imagefolder_maps_labels_by_name(
    colour_bundle: Bundle, tmp_path: Path
) -> None:
    # ImageFolder sorts classes (black, blue, green, red, white): not the contract's order
    write_images(tmp_path, {name: [colour, colour] for name, colour in COLOURS.items()})
    dataset = read_imagefolder(tmp_path)
    calls: list[tuple[int, int]] = []
    report = evaluate_classification(
        InferenceSession.open(colour_bundle),
        dataset,
        batch_size=4,
        progress=lambda done, total: calls.append((done, total)),
        dataset_labels=dataset.classes,
        dataset_digest="sha256:abc",
    )
    assert report.accuracy == 1.0
    assert report.top5_accuracy == 1.0
    assert report.labels == list(COLOURS)
    assert report.dataset_digest == "sha256:abc"
    assert report.variant == "fp32"
    assert calls == [(4, 10), (8, 10), (10, 10)]


def test_evaluate_counts_mistakes(colour_bundle: Bundle, tmp_path: Path) -> None:
    # a dark red is nearer to black than to red: one of three "red" images is misclassified
    write_images(tmp_path, {"red": [(255, 0, 0), (60, 0, 0)], "blue": [(0, 0, 250)]})
    samples = [Sample(p, p.parent.name) for p in sorted(tmp_path.rglob("*.png"))]
    report = evaluate_classification(InferenceSession.open(colour_bundle), samples)
    assert report.accuracy == pytest.approx(2 / 3)
    rows = {c.label: c for c in report.per_class}
    assert rows["red"].recall == 0.5
    assert report.confusion_matrix[0][4] == 1  # red predicted as black


def test_evaluate_refuses_unknown_labels(colour_bundle: Bundle, tmp_path: Path) -> None:
    write_images(tmp_path, {"cyan": [(0, 255, 255)]})
    samples = [Sample(p, "cyan") for p in tmp_path.rglob("*.png")]
    with pytest.raises(DatasetError, match="cyan"):
        evaluate_classification(InferenceSession.open(colour_bundle), samples)
    with pytest.raises(DatasetError, match="no samples"):
        evaluate_classification(InferenceSession.open(colour_bundle), [])


def test_class_probabilities_apply_softmax_to_logits(colour_bundle: Bundle) -> None:
    logits = np.array([[0.0, math.log(3.0), 0.0, 0.0, 0.0]])
    probs = class_probabilities({"logits": logits}, colour_bundle.contract)
    np.testing.assert_allclose(probs, [[1 / 7, 3 / 7, 1 / 7, 1 / 7, 1 / 7]])
