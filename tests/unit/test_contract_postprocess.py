"""Postprocessing: softmax/top-k, Triton strings, box decoding, NMS, mapping to the original."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.fixtures.images import random_rgb
from visionyard.contract import (
    ImageMeta,
    Prediction,
    VisionContract,
    classify,
    detect,
    postprocess,
    preprocess_image,
    triton_strings,
)
from visionyard.contract.postprocess import batched_nms, nms, softmax, to_xyxy
from visionyard.errors import ContractError

LABELS = ["cat", "dog", "bird"]
ORIGINAL_BOXES = np.array([[10.0, 20.0, 110.0, 90.0], [150.0, 5.0, 299.0, 179.5]])


def classifier(**decoding: Any) -> VisionContract:
    return VisionContract.classification(LABELS, decoding=decoding)


def detector(**decoding: Any) -> VisionContract:
    return VisionContract.detection(LABELS, input_size=(320, 480), decoding=decoding)


# -- classification ---------------------------------------------------------------------------


def test_softmax_of_logits_and_top_k_order() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    preds = classify(logits, classifier(top_k=2))
    e = np.exp([1.0, 3.0, 2.0])
    assert [(p.index, p.label) for p in preds[0]] == [(1, "dog"), (2, "bird")]
    assert preds[0][0].score == pytest.approx(e[1] / e.sum(), abs=1e-12)
    assert preds[0][1].score == pytest.approx(e[2] / e.sum(), abs=1e-12)
    assert preds[1][0].label == "bird"


def test_softmax_is_stable_for_huge_logits() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0.0]], atol=1e-12)


def test_probabilities_are_not_renormalised() -> None:
    preds = classify(np.array([0.1, 0.3, 0.2]), classifier(scores="probabilities", top_k=3))
    assert [(p.index, p.score) for p in preds[0]] == [(1, 0.3), (2, 0.2), (0, 0.1)]


def test_convolutional_head_shape_is_flattened() -> None:
    preds = classify(
        np.array([0.1, 0.7, 0.2]).reshape(1, 3, 1, 1), classifier(scores="probabilities")
    )
    assert preds[0][0] == Prediction(1, "dog", 0.7)


def test_top_k_is_capped_by_class_count_and_overridable() -> None:
    scores = np.array([[0.2, 0.5, 0.3]])
    assert len(classify(scores, classifier(top_k=10))[0]) == 3
    assert len(classify(scores, classifier(top_k=10), top_k=1)[0]) == 1


def test_ties_keep_label_order() -> None:
    preds = classify(np.zeros((1, 3)), classifier(top_k=3))
    assert [p.index for p in preds[0]] == [0, 1, 2]


def test_triton_string_form() -> None:
    preds = classify(np.array([[0.25, 0.75, 0.0]]), classifier(scores="probabilities", top_k=2))
    assert triton_strings(preds) == [["0.750000:1:dog", "0.250000:0:cat"]]


def test_class_count_mismatch_names_labels() -> None:
    with pytest.raises(ContractError, match="4 classes but the contract lists 3") as info:
        classify(np.zeros((1, 4)), classifier())
    assert info.value.field == "labels"


def test_postprocess_classification_with_embedding() -> None:
    contract = VisionContract.classification(LABELS, embedding_output="features")
    outputs = {"logits": np.array([[0.0, 9.0, 0.0]]), "features": np.arange(6.0).reshape(1, 2, 3)}
    (result,) = postprocess(outputs, contract, [ImageMeta(10, 10, 1, 1, 0, 0)])
    assert result.predictions[0].label == "dog"
    assert result.detections == []
    assert result.embedding is not None
    np.testing.assert_array_equal(result.embedding, np.arange(6.0, dtype=np.float32))


def test_postprocess_names_a_missing_output() -> None:
    with pytest.raises(ContractError, match="no output 'logits'") as info:
        postprocess({"probs": np.zeros((1, 3))}, classifier(), [ImageMeta(1, 1, 1, 1, 0, 0)])
    assert info.value.field == "decoding.output"


# -- detection: exact mapping back to the original image --------------------------------------


def encode_boxes(xyxy: np.ndarray, box_format: str) -> np.ndarray:
    x1, y1, x2, y2 = xyxy.T
    if box_format == "xywh":
        return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    if box_format == "cxcywh":
        return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)
    return xyxy


def one_hot_scores(classes: list[int], score: float = 0.9) -> np.ndarray:
    scores = np.zeros((1, len(classes), len(LABELS)))
    scores[0, np.arange(len(classes)), classes] = score
    return scores


@pytest.mark.parametrize(
    ("resize", "scale", "offset"),
    [
        # a 300x180 image into 480x320 (w x h): letterbox ratio 1.6 -> 480x288, 16 px pad on top
        ("letterbox", (480 / 300, 288 / 180), (0.0, 16.0)),
        ("resize", (480 / 300, 320 / 180), (0.0, 0.0)),
    ],
)
@pytest.mark.parametrize("box_format", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("coordinates", ["input_pixels", "normalized"])
def test_boxes_map_back_exactly(
    resize: str,
    scale: tuple[float, float],
    offset: tuple[float, float],
    box_format: str,
    coordinates: str,
) -> None:
    contract = VisionContract.detection(
        LABELS,
        input_size=(320, 480),
        resize=resize,  # type: ignore[arg-type]
        decoding={"box_format": box_format, "coordinates": coordinates},
    )
    _, meta = preprocess_image(random_rgb(300, 180), contract)
    assert (meta.scale_x, meta.scale_y, meta.offset_x, meta.offset_y) == (*scale, *offset)
    forward = ORIGINAL_BOXES * np.array(scale * 2) + np.array(offset * 2)
    if coordinates == "normalized":
        forward = forward / np.array([480, 320, 480, 320])
    boxes = encode_boxes(forward, box_format)[np.newaxis]
    (found,) = detect(boxes, one_hot_scores([0, 2]), contract, [meta])
    assert [d.label for d in found] == ["cat", "bird"]
    got = np.array([d.box for d in found])
    np.testing.assert_allclose(got, ORIGINAL_BOXES, rtol=0, atol=1e-9)


def test_center_crop_boxes_map_back_and_clip() -> None:
    contract = VisionContract.detection(LABELS, input_size=64, resize="center_crop")
    # 120x80, shorter side to 73: 109x73, crop offsets round(22.5) = 22 and round(4.5) = 4
    _, meta = preprocess_image(random_rgb(120, 80), contract)
    assert (meta.offset_x, meta.offset_y) == (-22.0, -4.0)
    inside = np.array([[30.0, 10.0, 80.0, 60.0]])
    forward = inside * np.array([109 / 120, 73 / 80] * 2) + np.array([-22.0, -4.0] * 2)
    beyond = np.array([[-30.0, -10.0, 70.0, 70.0]])  # past the crop: clipped to the image
    boxes = np.concatenate([forward, beyond])[np.newaxis]
    (found,) = detect(boxes, one_hot_scores([0, 1]), contract, [meta])
    np.testing.assert_allclose(found[0].box, inside[0], atol=1e-9)
    x1, y1, x2, y2 = found[1].box
    assert (x1, y1) == (0.0, 0.0)
    assert x2 == pytest.approx((70 + 22) * 120 / 109)
    assert y2 == pytest.approx(80.0)  # (70 + 4) * 80 / 73 > 80: clipped to the height


# -- detection: thresholds, NMS, limits ---------------------------------------------------------

META = ImageMeta(480, 320, 1.0, 1.0, 0.0, 0.0)


def test_score_threshold_is_inclusive_and_per_class() -> None:
    boxes = np.array([[[0, 0, 10, 10], [100, 100, 150, 150]]], dtype=np.float32)
    scores = np.array([[[0.5, 0.49, 0.0], [0.1, 0.2, 0.7]]])
    (found,) = detect(boxes, scores, detector(score_threshold=0.5), [META])
    assert [(d.index, d.score) for d in found] == [(2, 0.7), (0, 0.5)]


def test_nms_suppresses_same_class_overlaps_only() -> None:
    boxes = np.array([[[0, 0, 100, 100], [5, 5, 100, 100], [0, 0, 100, 100]]], dtype=float)
    scores = np.zeros((1, 3, 3))
    scores[0, 0, 0], scores[0, 1, 0], scores[0, 2, 1] = 0.9, 0.8, 0.6  # IoU(0, 1) = 0.9025
    (found,) = detect(boxes, scores, detector(nms_iou=0.5), [META])
    assert [(d.label, d.score) for d in found] == [("cat", 0.9), ("dog", 0.6)]
    (loose,) = detect(boxes, scores, detector(nms_iou=0.95), [META])
    assert [d.score for d in loose] == [0.9, 0.8, 0.6]


def test_nms_matches_a_brute_force_reference() -> None:
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 100, (60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (60, 2))], axis=1)
    scores = rng.uniform(0, 1, 60)

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
        return inter / (area - inter)

    want: list[int] = []
    for i in sorted(range(60), key=lambda i: -scores[i]):
        if all(iou(boxes[i], boxes[j]) <= 0.3 for j in want):
            want.append(i)
    assert nms(boxes, scores, 0.3).tolist() == want
    assert 5 < len(want) < 60


def test_batched_nms_never_crosses_classes() -> None:
    boxes = np.array([[0, 0, 10, 10]] * 4, dtype=float)
    kept = batched_nms(boxes, np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 1, 0, 2]), 0.5)
    assert kept.tolist() == [0, 1, 3]


def test_max_detections_keeps_the_best() -> None:
    boxes = np.array([[[i * 20, 0, i * 20 + 10, 10] for i in range(10)]], dtype=float)
    scores = np.zeros((1, 10, 3))
    scores[0, :, 1] = np.linspace(0.3, 0.9, 10)
    (found,) = detect(boxes, scores, detector(max_detections=3), [META])
    assert [d.score for d in found] == pytest.approx([0.9, 0.9 - 0.6 / 9, 0.9 - 1.2 / 9])


def test_logit_scores_go_through_a_sigmoid() -> None:
    boxes = np.array([[[0, 0, 10, 10]]], dtype=float)
    scores = np.array([[[0.0, -5.0, 2.0]]])
    (found,) = detect(boxes, scores, detector(scores="logits", score_threshold=0.4), [META])
    assert [(d.index, round(d.score, 6)) for d in found] == [(2, 0.880797), (0, 0.5)]


def test_empty_detections_and_batch() -> None:
    boxes = np.zeros((2, 5, 4))
    scores = np.zeros((2, 5, 3))
    scores[1, 0, 0] = 0.9
    boxes[1, 0] = [1, 2, 3, 4]
    found = detect(boxes, scores, detector(), [META, META])
    assert found[0] == []
    assert [d.box for d in found[1]] == [(1.0, 2.0, 3.0, 4.0)]


def test_to_xyxy_formats() -> None:
    box = np.array([[10.0, 20.0, 4.0, 6.0]])
    np.testing.assert_array_equal(to_xyxy(box, "xywh"), [[10, 20, 14, 26]])
    np.testing.assert_array_equal(to_xyxy(box, "cxcywh"), [[8, 17, 12, 23]])
    np.testing.assert_array_equal(to_xyxy(box, "xyxy"), box)


@pytest.mark.parametrize(
    ("boxes", "scores", "problem"),
    [
        (np.zeros((1, 5, 4)), np.zeros((1, 5, 2)), "2 classes but the contract lists 3"),
        (np.zeros((1, 5, 5)), np.zeros((1, 5, 3)), "expected boxes"),
        (np.zeros((1, 4, 4)), np.zeros((1, 5, 3)), "do not match"),
    ],
)
def test_detection_shape_errors(boxes: np.ndarray, scores: np.ndarray, problem: str) -> None:
    with pytest.raises(ContractError, match=problem):
        detect(boxes, scores, detector(), [META])


def test_postprocess_detection_outputs_by_name() -> None:
    contract = detector()
    outputs = {"boxes": np.array([[[0.0, 0.0, 10.0, 10.0]]]), "scores": np.array([[[0, 1, 0.0]]])}
    (result,) = postprocess(outputs, contract, [META])
    assert [(d.label, d.box) for d in result.detections] == [("dog", (0.0, 0.0, 10.0, 10.0))]
    assert result.embedding is None
    with pytest.raises(ContractError, match="this is a detection contract"):
        classify(np.zeros((1, 3)), contract)


# -- non-finite and degenerate boxes (a model's bad rows must not reach users or NMS) ----------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_box_is_dropped_and_nms_still_suppresses(bad: float) -> None:
    boxes = np.array([[[bad, 0, 10, 10], [20, 26, 40, 42], [21, 26, 41, 42]]], dtype=np.float32)
    scores = np.zeros((1, 3, 3))
    scores[0, :, 0] = [0.3, 0.9, 0.85]  # the two real boxes: IoU ~0.9, same class
    (found,) = detect(boxes, scores, detector(nms_iou=0.5), [META])
    assert [(d.score, d.box) for d in found] == [(0.9, (20.0, 26.0, 40.0, 42.0))]


def test_batched_nms_ignores_non_finite_rows() -> None:
    boxes = np.array([[np.nan, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10]], dtype=float)
    kept = batched_nms(boxes, np.array([0.95, 0.9, 0.8]), np.array([0, 0, 0]), 0.5)
    assert kept.tolist() == [1]


def test_non_finite_scores_are_not_detections() -> None:
    boxes = np.array([[[0, 0, 10, 10], [20, 20, 30, 30]]], dtype=float)
    scores = np.zeros((1, 2, 3))
    scores[0, 0, 0], scores[0, 1, 1] = np.inf, 0.8
    (found,) = detect(boxes, scores, detector(), [META])
    assert [(d.label, d.score) for d in found] == [("dog", 0.8)]


def test_a_box_wholly_outside_the_image_is_not_a_detection() -> None:
    # letterboxed 480x160 into 480x320: 80 px pad above; a box in the pad has no area once
    # mapped back and clipped, and must not come back as a zero-height detection
    meta = ImageMeta(480, 160, 1.0, 1.0, 0.0, 80.0)
    boxes = np.array([[[1, 1, 5, 5], [10, 90, 50, 130]]], dtype=float)
    scores = np.zeros((1, 2, 3))
    scores[0, :, 2] = [0.8, 0.7]
    (found,) = detect(boxes, scores, detector(), [meta])
    assert [(d.score, d.box) for d in found] == [(0.7, (10.0, 10.0, 50.0, 50.0))]
