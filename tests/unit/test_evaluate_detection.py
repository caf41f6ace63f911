"""COCO mAP through faster-coco-eval: known answers, and over a real session and COCO file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.runtime import flat_png
from visionyard.bundle.store import Bundle
from visionyard.contract.postprocess import Detection
from visionyard.data.coco import read_coco
from visionyard.errors import DatasetError
from visionyard.evaluate import ImageTruth, TruthBox, detection_report, evaluate_detection
from visionyard.runtime import InferenceSession

LABELS = ["a", "b", "c"]
TRUTH = [
    ImageTruth(1, 100, 100, (TruthBox((10, 10, 30, 30), 0),)),
    ImageTruth(2, 100, 100, (TruthBox((50, 50, 20, 20), 1), TruthBox((5, 5, 20, 20), 1))),
]


def det(box: tuple[float, float, float, float], score: float, index: int) -> Detection:
    return Detection(box, score, index, LABELS[index])


PERFECT = [
    [det((10, 10, 40, 40), 0.9, 0)],
    [det((50, 50, 70, 70), 0.8, 1), det((5, 5, 25, 25), 0.7, 1)],
]


def test_perfect_predictions_score_one() -> None:
    report = detection_report(TRUTH, PERFECT, LABELS)
    assert (report.map_50_95, report.map_50) == (1.0, 1.0)
    assert [(c.label, c.ap, c.support) for c in report.per_class] == [
        ("a", 1.0, 1),
        ("b", 1.0, 2),
        ("c", None, 0),
    ]
    assert report.image_count == 2
    assert report.object_count == 3


def test_a_shifted_box_lowers_the_strict_thresholds_only() -> None:
    # shifted by (2, 2): IoU = 28*28 / (2*900 - 784) = 0.77, a hit at IoU 0.50..0.75 (6 of 10)
    shifted = [[det((12, 12, 42, 42), 0.9, 0)], PERFECT[1]]
    report = detection_report(TRUTH, shifted, LABELS)
    rows = {c.label: c for c in report.per_class}
    assert rows["a"].ap == pytest.approx(0.6)
    assert rows["a"].ap50 == pytest.approx(1.0)
    assert report.map_50_95 == pytest.approx((0.6 + 1.0) / 2)
    assert report.map_50 == pytest.approx(1.0)


def test_wrong_class_and_missing_detections() -> None:
    wrong_class = [[det((10, 10, 40, 40), 0.9, 1)], PERFECT[1]]
    report = detection_report(TRUTH, wrong_class, LABELS)
    assert report.per_class[0].ap == 0.0
    assert detection_report(TRUTH, [[], []], LABELS).map_50_95 == 0.0


def test_crowd_only_ground_truth_is_refused() -> None:
    crowd = [ImageTruth(1, 10, 10, (TruthBox((0, 0, 5, 5), 0, iscrowd=1),))]
    with pytest.raises(DatasetError, match="no \\(non-crowd\\) objects"):
        detection_report(crowd, [[]], LABELS)
    with pytest.raises(ValueError, match="2 images but 1"):
        detection_report(TRUTH, [[]], LABELS)


def test_metrics_are_flat_for_tracking() -> None:
    metrics = detection_report(TRUTH, PERFECT, LABELS).metrics()
    assert metrics == {"map_50_95": 1.0, "map_50": 1.0, "ap/a": 1.0, "ap/b": 1.0}


def write_coco(root: Path, boxes: list[tuple[str, list[float]]]) -> Path:
    """Two 64x64 images with the same objects; categories deliberately in a different order
    (and ids) than the contract's labels (cat, dog)."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in (1, 2)]
    for image in images:
        (root / str(image["file_name"])).write_bytes(flat_png((0, 0, 0), (64, 64)))
    ids = {"dog": 7, "cat": 9}
    annotations = [
        {"id": n, "image_id": i, "category_id": ids[name], "bbox": bbox}
        for n, (i, (name, bbox)) in enumerate(((i, b) for i in (1, 2) for b in boxes), start=1)
    ]
    categories = [{"id": 7, "name": "dog"}, {"id": 9, "name": "cat"}]
    path = root / "annotations.json"
    path.write_text(
        json.dumps({"images": images, "categories": categories, "annotations": annotations})
    )
    return path


def test_evaluate_detection_end_to_end(detector_bundle: Bundle, tmp_path: Path) -> None:
    # the fixed detector finds cat (8, 8, 24, 24) and dog (32, 32, 56, 60) in every 64x64 image
    path = write_coco(tmp_path, [("cat", [8, 8, 16, 16]), ("dog", [32, 32, 24, 28])])
    calls: list[tuple[int, int]] = []
    report = evaluate_detection(
        InferenceSession.open(detector_bundle),
        read_coco(path),
        batch_size=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert report.map_50_95 == pytest.approx(1.0)
    assert [c.label for c in report.per_class] == ["cat", "dog"]
    assert calls == [(1, 2), (2, 2)]
    assert report.variant == "fp32"


def test_evaluate_detection_with_displaced_truth(detector_bundle: Bundle, tmp_path: Path) -> None:
    path = write_coco(tmp_path, [("cat", [8, 8, 16, 16]), ("dog", [2, 2, 24, 28])])
    report = evaluate_detection(InferenceSession.open(detector_bundle), read_coco(path))
    rows = {c.label: c for c in report.per_class}
    assert rows["cat"].ap == pytest.approx(1.0)
    assert rows["dog"].ap == pytest.approx(0.0)
    assert report.map_50_95 == pytest.approx(0.5)
