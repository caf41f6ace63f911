"""Detection output layouts: the default (boxes + per-class scores), the raw YOLO tensor
``[N, 4 + C, K]`` and the post-NMS outputs (boxes, scores, classes, count): the schema field,
its serialisation (existing contracts unchanged) and the decoding to original-image boxes."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

from tests.fixtures.images import random_rgb
from visionyard.contract import ImageMeta, VisionContract, diff_contracts, parse_contract
from visionyard.contract.postprocess import detect_outputs, postprocess
from visionyard.contract.preprocess import preprocess_image
from visionyard.errors import ContractError

LABELS = ["cat", "dog", "bird"]
#: the decoding keys every contract written before layouts existed holds (and still holds)
CLASSIC_KEYS = {
    "kind", "boxes_output", "scores_output", "scores", "box_format", "coordinates",
    "score_threshold", "nms_iou", "max_detections",
}  # fmt: skip
ORIGINAL = np.array([[10.0, 20.0, 110.0, 90.0], [150.0, 5.0, 299.0, 179.5]])


def detector(**decoding: Any) -> VisionContract:
    return VisionContract.detection(LABELS, input_size=(320, 480), decoding=decoding)


def letterboxed() -> tuple[VisionContract, ImageMeta]:
    """A 300x180 image letterboxed into 480x320 (16 px of padding on top)."""
    contract = detector(layout="yolo")
    _, meta = preprocess_image(random_rgb(300, 180), contract)
    assert (meta.offset_x, meta.offset_y) == (0.0, 16.0)
    return contract, meta


# -- schema -----------------------------------------------------------------------------------


def test_the_default_layout_is_not_written_so_existing_contracts_keep_their_bytes() -> None:
    contract = detector()
    assert contract.decoding.layout == "boxes_scores"  # type: ignore[union-attr]
    written = json.loads(contract.to_json())["decoding"]
    assert set(written) == CLASSIC_KEYS
    assert set(contract.model_dump(mode="json")["decoding"]) == CLASSIC_KEYS
    again = parse_contract(contract.to_json())
    assert again == contract
    assert again.digest() == contract.digest()
    assert contract.output_names == ["boxes", "scores"]


def test_yolo_layout_defaults_and_what_it_writes() -> None:
    contract = detector(layout="yolo")
    decoding = contract.decoding
    assert (decoding.output, decoding.box_format) == ("output0", "cxcywh")  # type: ignore[union-attr]
    assert contract.output_names == ["output0"]
    written = json.loads(contract.to_json())["decoding"]
    assert written["layout"] == "yolo"
    assert written["output"] == "output0"
    assert "boxes_output" not in written  # not read by this layout: not written
    assert parse_contract(contract.to_json()) == contract
    named = detector(layout="yolo", output="preds", box_format="xywh")
    assert named.output_names == ["preds"]
    assert named.decoding.box_format == "xywh"  # type: ignore[union-attr]


def test_nms_layout_names_its_outputs_and_needs_the_classes() -> None:
    contract = detector(
        layout="nms", boxes_output="det_boxes", scores_output="det_scores",
        classes_output="det_classes", count_output="num_dets",
    )  # fmt: skip
    assert contract.output_names == ["det_boxes", "det_scores", "det_classes", "num_dets"]
    assert parse_contract(contract.to_json()) == contract
    without_count = detector(layout="nms", classes_output="labels")
    assert without_count.output_names == ["boxes", "scores", "labels"]
    with pytest.raises(ContractError) as info:
        detector(layout="nms")
    assert info.value.field == "decoding.classes_output"
    with pytest.raises(ContractError) as info:
        detector(layout="ssd")
    assert info.value.field == "decoding.layout"


def test_changing_the_layout_is_a_breaking_contract_change() -> None:
    diff = diff_contracts(detector(), detector(layout="yolo"))
    assert diff.breaking
    assert "decoding.layout" in {c.path for c in diff.changes}


# -- the YOLO layout --------------------------------------------------------------------------


def yolo_tensor(input_boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``[1, 4 + C, K]``: cx, cy, w, h in input pixels, then the per-class scores."""
    x1, y1, x2, y2 = input_boxes.T
    cxcywh = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    return np.concatenate([cxcywh, scores.T]).astype(np.float32)[np.newaxis]


def test_yolo_tensor_is_transposed_nms_ed_and_mapped_back_through_the_letterbox() -> None:
    contract, meta = letterboxed()
    forward = meta.to_input(ORIGINAL)
    nudged = forward[0] + np.array([1.0, 1.0, 1.0, 1.0])  # overlaps box 0: suppressed
    boxes = np.concatenate([forward, nudged[np.newaxis], forward[:1]])
    scores = np.array(
        [[0.9, 0.0, 0.1], [0.0, 0.1, 0.8], [0.7, 0.0, 0.0], [0.0, 0.6, 0.0]]
    )  # the last: the same place as box 0 but another class, kept
    (found,) = detect_outputs({"output0": yolo_tensor(boxes, scores)}, contract, [meta])
    assert [(d.label, round(d.score, 6)) for d in found] == [
        ("cat", 0.9), ("bird", 0.8), ("dog", 0.6),
    ]  # fmt: skip
    got = np.array([d.box for d in found])
    np.testing.assert_allclose(got, ORIGINAL[[0, 1, 0]], atol=1e-3)


def test_yolo_image_without_objects_is_an_empty_result_per_image() -> None:
    contract, meta = letterboxed()
    quiet = np.zeros((2, 4 + len(LABELS), 50), dtype=np.float32)
    quiet[1, :4, 7] = [100, 100, 20, 20]
    quiet[1, 4 + 1, 7] = 0.5
    results = postprocess({"output0": quiet}, contract, [meta, meta])
    assert results[0].detections == []
    assert [d.label for d in results[1].detections] == ["dog"]


def test_yolo_logits_and_thresholds_follow_the_contract() -> None:
    contract = detector(layout="yolo", scores="logits", score_threshold=0.6)
    tensor = yolo_tensor(np.array([[0.0, 0.0, 10.0, 10.0]] * 2), np.array([[0.0, 2.0, -3.0]] * 2))
    (found,) = detect_outputs({"output0": tensor}, contract, [ImageMeta(480, 320, 1, 1, 0, 0)])
    assert [(d.label, round(d.score, 6)) for d in found] == [("dog", 0.880797)]


@pytest.mark.parametrize(
    ("shape", "problem"),
    [
        ((1, 4 + 2, 10), "2 classes but the contract lists 3"),
        ((1, 7), "expected one output [N, 4 + C, K]"),
        ((2, 7, 10), "does not match 1 image"),
    ],
)
def test_yolo_shape_errors(shape: tuple[int, ...], problem: str) -> None:
    meta = ImageMeta(9, 9, 1, 1, 0, 0)
    with pytest.raises(ContractError, match=re.escape(problem)):
        detect_outputs({"output0": np.zeros(shape)}, detector(layout="yolo"), [meta])


# -- the post-NMS layout ----------------------------------------------------------------------


def nms_contract(**decoding: Any) -> VisionContract:
    names = {"classes_output": "labels", "count_output": "num_dets"}
    return detector(layout="nms", **{**names, **decoding})


def nms_outputs(meta: ImageMeta) -> dict[str, np.ndarray]:
    """Two real detections (same class, overlapping: NMS is the model's business), one under
    the threshold, a padding row (class -1) and a row past ``num_dets``."""
    forward = meta.to_input(ORIGINAL)
    boxes = np.zeros((1, 6, 4), np.float32)
    boxes[0, :2] = forward
    boxes[0, 2] = forward[0] + 2.0
    boxes[0, 3] = [5, 5, 9, 9]
    boxes[0, 5] = [50, 50, 90, 90]
    scores = np.array([[0.95, 0.6, 0.7, 0.1, 0.0, 0.99]], np.float32)
    classes = np.array([[1, 2, 1, 0, -1, 0]], np.int64)
    return {"boxes": boxes, "scores": scores, "labels": classes, "num_dets": np.array([5])}


def test_post_nms_outputs_are_read_as_they_are_and_mapped_back() -> None:
    _, meta = letterboxed()
    (found,) = detect_outputs(nms_outputs(meta), nms_contract(), [meta])
    assert [(d.label, round(d.score, 6)) for d in found] == [
        ("dog", 0.95), ("dog", 0.7), ("bird", 0.6),
    ]  # fmt: skip
    np.testing.assert_allclose(found[0].box, ORIGINAL[0], atol=1e-3)
    np.testing.assert_allclose(found[2].box, ORIGINAL[1], atol=1e-3)


def test_post_nms_without_a_count_output_and_with_a_limit() -> None:
    _, meta = letterboxed()
    outputs = nms_outputs(meta)
    del outputs["num_dets"]
    contract = nms_contract(count_output=None, max_detections=2)
    (found,) = detect_outputs(outputs, contract, [meta])
    assert [d.score for d in found] == pytest.approx([0.99, 0.95])  # the row past 5 counts now
    count_as_column = {**nms_outputs(meta), "num_dets": np.array([[2]], np.int32)}
    (two,) = detect_outputs(count_as_column, nms_contract(), [meta])
    assert [d.label for d in two] == ["dog", "bird"]


def test_post_nms_empty_image_and_bad_class_index() -> None:
    _, meta = letterboxed()
    empty: dict[str, np.ndarray] = {
        "boxes": np.zeros((1, 0, 4), np.float32), "scores": np.zeros((1, 0), np.float32),
        "labels": np.zeros((1, 0), np.int64), "num_dets": np.zeros(1, np.int64),
    }  # fmt: skip
    assert detect_outputs(empty, nms_contract(), [meta]) == [[]]
    outputs = nms_outputs(meta)
    outputs["labels"][0, 0] = 3
    with pytest.raises(ContractError, match="class index 3 but the contract lists 3 labels"):
        detect_outputs(outputs, nms_contract(), [meta])
    outputs = nms_outputs(meta)
    outputs["scores"] = outputs["scores"][:, :4]
    with pytest.raises(ContractError, match="do not match"):
        detect_outputs(outputs, nms_contract(), [meta])


def test_post_nms_names_a_missing_output() -> None:
    with pytest.raises(ContractError) as info:
        postprocess({"boxes": np.zeros((1, 1, 4))}, nms_contract(), [ImageMeta(9, 9, 1, 1, 0, 0)])
    assert info.value.field == "decoding.scores_output"


# -- the end-to-end layout: one [N, D, 6] tensor after NMS --------------------------------------


def test_end2end_tensor_is_read_as_post_nms_rows() -> None:
    contract = detector(layout="end2end")
    assert contract.output_names == ["output0"]
    assert contract.decoding.box_format == "xyxy"  # type: ignore[union-attr]
    assert parse_contract(contract.to_json()) == contract
    _, meta = letterboxed()
    nms = nms_outputs(meta)
    rows = np.concatenate(
        [nms["boxes"], nms["scores"][..., None], nms["labels"][..., None].astype(np.float32)],
        axis=2,
    )[:, :5]  # [1, 5, 6]: no count; the padding row has class -1
    (found,) = detect_outputs({"output0": rows}, contract, [meta])
    assert [(d.label, round(d.score, 6)) for d in found] == [
        ("dog", 0.95), ("dog", 0.7), ("bird", 0.6),
    ]  # fmt: skip
    np.testing.assert_allclose(found[0].box, ORIGINAL[0], atol=1e-3)
    with pytest.raises(ContractError, match=re.escape("expected one output [N, D, 6]")):
        detect_outputs({"output0": rows[..., :5]}, contract, [meta])


def test_post_nms_rows_that_are_not_finite_or_lie_in_the_padding_are_dropped() -> None:
    _, meta = letterboxed()  # 16 px of padding on top
    outputs = nms_outputs(meta)
    outputs["boxes"][0, 1] = [np.nan, 0, 10, 10]  # the 0.6 "bird" row: a NaN coordinate
    outputs["boxes"][0, 2] = [1, 1, 5, 5]  # the 0.7 "dog" row: wholly in the top padding
    outputs["scores"][0, 3] = np.inf  # the "cat" row's score is not a number either
    (found,) = detect_outputs(outputs, nms_contract(), [meta])
    assert [(d.label, round(d.score, 6)) for d in found] == [("dog", 0.95)]
    np.testing.assert_allclose(found[0].box, ORIGINAL[0], atol=1e-3)
