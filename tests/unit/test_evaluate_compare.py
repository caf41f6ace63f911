"""compare_reports deltas, and prediction agreement between two sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.runtime import COLOURS, colour_classifier_onnx, flat_png, write_colour_bundle
from visionyard.bundle.store import Bundle
from visionyard.contract.postprocess import Detection
from visionyard.errors import ContractError
from visionyard.evaluate import (
    ClassificationReport,
    ImageTruth,
    TruthBox,
    classification_report,
    compare_reports,
    detection_agreement,
    detection_report,
    prediction_agreement,
)
from visionyard.runtime import InferenceSession

LABELS = ["a", "b", "c"]
TRUTH = np.array([0, 0, 1, 1, 2, 2])


def report_for(
    predicted: list[int], labels: list[str] = LABELS, digest: str | None = "d1"
) -> ClassificationReport:
    probs = np.full((len(predicted), len(labels)), 0.1)
    probs[np.arange(len(predicted)), predicted] = 0.8
    return classification_report(TRUTH, probs, labels, dataset_digest=digest)


def test_classification_deltas() -> None:
    before = report_for([0, 0, 1, 1, 2, 2])  # perfect
    after = report_for([0, 0, 1, 2, 2, 2])  # one b -> c
    comparison = compare_reports(before, after)
    assert comparison.metric == "accuracy"
    assert (comparison.before, comparison.after) == (1.0, pytest.approx(5 / 6))
    assert comparison.delta == pytest.approx(-1 / 6)
    assert comparison.metrics["macro_f1"].delta == pytest.approx(after.macro_f1 - 1.0)
    rows = {r.label: r for r in comparison.per_class}
    assert rows["a"].delta == 0.0
    assert rows["b"].after == pytest.approx(2 / 3)  # precision 1, recall 1/2
    assert rows["c"].after == pytest.approx(0.8)  # precision 2/3, recall 1
    assert comparison.worst_class() == rows["b"]
    assert [r.label for r in comparison.regressions(0.25)] == ["b"]
    assert [r.label for r in comparison.regressions()] == ["b", "c"]
    assert comparison.same_dataset is True


def test_labels_are_matched_by_name() -> None:
    before = report_for([0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    after = report_for([0, 0, 1, 1, 2, 2], ["c", "b", "a"], digest="d2")
    comparison = compare_reports(before, after)
    assert [r.label for r in comparison.per_class] == ["a", "b", "c"]
    assert all(r.delta == 0.0 for r in comparison.per_class)
    assert comparison.same_dataset is False


def test_a_class_on_one_side_only_has_no_delta() -> None:
    before = report_for([0, 0, 1, 1, 2, 2])
    after = report_for([0, 0, 1, 1, 2, 2], ["a", "b", "c", "d"], digest=None)
    comparison = compare_reports(before, after)
    assert comparison.per_class[-1].label == "d"
    assert comparison.per_class[-1].delta is None
    assert comparison.same_dataset is None


def test_detection_comparison_and_task_mismatch() -> None:
    truth = [ImageTruth(1, 100, 100, (TruthBox((10, 10, 30, 30), 0),))]
    perfect = detection_report(truth, [[Detection((10, 10, 40, 40), 0.9, 0, "a")]], LABELS)
    shifted = detection_report(truth, [[Detection((12, 12, 42, 42), 0.9, 0, "a")]], LABELS)
    comparison = compare_reports(perfect, shifted)
    assert (comparison.metric, comparison.class_metric) == ("map_50_95", "ap")
    assert comparison.delta == pytest.approx(-0.4)
    assert comparison.per_class[0].delta == pytest.approx(-0.4)
    assert comparison.per_class[1].before is None
    with pytest.raises(ContractError, match="cannot compare"):
        compare_reports(perfect, report_for([0, 0, 1, 1, 2, 2]))


def test_detection_agreement() -> None:
    a = Detection((0, 0, 10, 10), 0.9, 0, "a")
    near = Detection((1, 1, 10, 10), 0.8, 0, "a")
    other_label = Detection((0, 0, 10, 10), 0.8, 1, "b")
    assert detection_agreement([], []) == 1.0
    assert detection_agreement([a], [near]) == 1.0
    assert detection_agreement([a], [other_label]) == 0.0
    assert detection_agreement([a, other_label], [near]) == pytest.approx(2 / 3)


def test_prediction_agreement_between_variants(tmp_path: Path) -> None:
    swapped = list(COLOURS.values())
    swapped[0], swapped[1] = swapped[1], swapped[0]  # "red" scores green images and back
    bundle = write_colour_bundle(
        tmp_path / "b",
        variants={
            "soft": colour_classifier_onnx(sharpness=5.0),
            "swapped": colour_classifier_onnx(swapped),
        },
    )
    images = [flat_png(c) for c in COLOURS.values()]
    reference = InferenceSession.open(bundle, variant="fp32")
    soft = prediction_agreement(reference, InferenceSession.open(bundle, variant="soft"), images)
    assert soft.agreement == 1.0
    assert soft.image_count == 5
    # largest gap: the white logit of the white image, 10 * (2*3 - 3) = 30 vs 15
    assert soft.max_abs_diff["logits"] == pytest.approx(15.0, rel=1e-4)
    swapped_session = InferenceSession.open(bundle, variant="swapped")
    assert prediction_agreement(reference, swapped_session, images, batch_size=2).agreement == 0.6


def test_prediction_agreement_refuses_mixed_tasks(
    colour_bundle: Bundle, detector_bundle: Bundle
) -> None:
    with pytest.raises(ContractError, match="classifier with a detector"):
        prediction_agreement(
            InferenceSession.open(colour_bundle), InferenceSession.open(detector_bundle), []
        )


def test_detector_agrees_with_itself(detector_bundle: Bundle) -> None:
    session = InferenceSession.open(detector_bundle)
    image = flat_png((0, 0, 0), (64, 64))
    agreement = prediction_agreement(session, session, [image, image])
    assert agreement.agreement == 1.0
    assert agreement.max_abs_diff == {"boxes": 0.0, "scores": 0.0}
