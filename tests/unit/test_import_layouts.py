"""``visionyard import`` of a detector: the output layout read from the ONNX output shapes (the
default boxes + per-class scores, one YOLO tensor, post-NMS outputs in the EfficientNMS,
torchvision and TF styles), and ONE clear refusal naming the shapes when none fits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from visionyard.contract.schema import DetectionDecoding, VisionContract
from visionyard.errors import ContractError
from visionyard.importer.contract_spec import ContractSpec, build_contract, parse_set
from visionyard.importer.layouts import detection_outputs
from visionyard.runtime.signature import TensorMeta

FACTS = {"input_name": "images", "preprocessing": {"input_size": {"height": 64, "width": 64}}}


def meta(name: str, *shape: int | str, dtype: str = "float32") -> TensorMeta:
    return TensorMeta(name, tuple(shape), dtype)


def imported(outputs: Sequence[TensorMeta], *sets: str, preset: str = "yolo") -> VisionContract:
    spec = ContractSpec(preset=preset, overrides=parse_set(list(sets)))
    return build_contract(spec, FACTS, outputs)


def decoding(contract: VisionContract) -> DetectionDecoding:
    assert isinstance(contract.decoding, DetectionDecoding)
    return contract.decoding


def test_one_yolo_tensor_is_the_yolo_layout_with_cxcywh_boxes() -> None:
    contract = imported([meta("output0", 1, 84, 8400)])
    found = decoding(contract)
    assert (found.layout, found.output, found.box_format) == ("yolo", "output0", "cxcywh")
    assert contract.output_names == ["output0"]
    dynamic = imported([meta("preds", "batch", 7, "anchors")])
    assert decoding(dynamic).output == "preds"


def test_flags_still_win_over_what_the_shapes_say() -> None:
    contract = imported([meta("output0", 1, 84, 8400)], "decoding.box_format=xywh")
    assert decoding(contract).box_format == "xywh"


@pytest.mark.parametrize(
    ("outputs", "want"),
    [
        (  # TensorRT EfficientNMS / Ultralytics "nms=True" style
            [meta("num_dets", "N", 1, dtype="int32"), meta("det_boxes", "N", 100, 4),
             meta("det_scores", "N", 100), meta("det_classes", "N", 100, dtype="int32")],
            ("det_boxes", "det_scores", "det_classes", "num_dets"),
        ),
        (  # torchvision style: no count, int64 labels
            [meta("boxes", 1, "D", 4), meta("scores", 1, "D"),
             meta("labels", 1, "D", dtype="int64")],
            ("boxes", "scores", "labels", None),
        ),
        (  # TF object detection style: float classes and a float count, told apart by name
            [meta("detection_boxes", "N", 100, 4), meta("detection_classes", "N", 100),
             meta("detection_scores", "N", 100), meta("num_detections", "N")],
            ("detection_boxes", "detection_scores", "detection_classes", "num_detections"),
        ),
    ],
)  # fmt: skip
def test_post_nms_outputs_are_recognised(
    outputs: list[TensorMeta], want: tuple[str, str, str, str | None]
) -> None:
    found = decoding(imported(outputs))
    assert found.layout == "nms"
    assert (found.boxes_output, found.scores_output, found.classes_output, found.count_output) == (
        want
    )


@pytest.mark.parametrize("rows", [300, "D"])
def test_one_tensor_of_six_columns_is_the_end2end_layout(rows: int | str) -> None:
    found = decoding(imported([meta("output0", 1, rows, 6)]))
    assert (found.layout, found.output, found.box_format) == ("end2end", "output0", "xyxy")


def test_boxes_and_per_class_scores_stay_the_default_layout() -> None:
    found = decoding(imported([meta("b", "N", 100, 4), meta("s", "N", 100, 3)]))
    assert (found.layout, found.boxes_output, found.scores_output) == ("boxes_scores", "b", "s")
    written = imported([meta("boxes", "N", 100, 4), meta("scores", "N", 100, 3)]).to_json()
    assert "layout" not in json.loads(written)["decoding"]


@pytest.mark.parametrize(
    "outputs",
    [
        [meta("logits", "N", 10)],
        [meta("output0", 1, 8400, 84)],  # transposed YOLO: anchors before channels
        [meta("a", "N", 100, 4), meta("b", "N", 100, 4)],  # which one holds the boxes?
        [meta("boxes", "N", 100, 4), meta("scores", "N", 100), meta("x", "N", 100),
         meta("y", "N", 100)],
    ],
)  # fmt: skip
def test_outputs_that_fit_no_layout_are_refused_naming_their_shapes(
    outputs: list[TensorMeta],
) -> None:
    with pytest.raises(ContractError) as info:
        imported(outputs)
    assert info.value.field == "decoding.layout"
    for output in outputs:
        assert output.describe() in info.value.problem
    assert "YOLO [N, 4 + C, K]" in info.value.problem
    assert "\n" not in str(info.value)


def test_a_stated_layout_is_not_guessed() -> None:
    outputs = [meta("preds", 1, 8400, 84)]
    contract = imported(outputs, "decoding.layout=yolo", "decoding.output=preds")
    assert decoding(contract).layout == "yolo"
    with pytest.raises(ContractError, match=r"layout 'nms'.*preds \[1, 8400, 84\]"):
        imported(outputs, "decoding.layout=nms")


def test_named_outputs_without_a_layout_are_taken_as_given() -> None:
    outputs = [meta("a", "N", 100, 4), meta("b", "N", 100, 4)]
    contract = imported(outputs, "decoding.boxes_output=a", "decoding.scores_output=b")
    assert contract.output_names == ["a", "b"]


def test_the_embedding_output_is_not_part_of_the_layout() -> None:
    outputs = [meta("output0", 1, 7, 500), meta("emb", 1, 32)]
    contract = imported(outputs, "embedding_output=emb")
    assert contract.output_names == ["output0", "emb"]


def test_classification_models_are_untouched() -> None:
    contract = imported([meta("probs", "N", 10)], preset="imagenet")
    assert contract.output_names == ["probs"]


def test_detection_outputs_gives_the_decoding_fields() -> None:
    want: dict[str, Any] = {"layout": "yolo", "output": "output0", "box_format": "cxcywh"}
    assert detection_outputs([meta("output0", 1, 84, 8400)], {}) == want
