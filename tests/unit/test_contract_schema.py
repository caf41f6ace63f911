"""The contract schema: defaults, JSON round trip, digest, and one ContractError per problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from visionyard.contract import (
    ClassificationDecoding,
    DetectionDecoding,
    InputSize,
    Preprocessing,
    VisionContract,
    load_contract,
    parse_contract,
)
from visionyard.errors import ContractError


def minimal(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "contract_version": "1",
        "task": "classification",
        "preprocessing": {"input_size": {"height": 224, "width": 224}},
        "labels": ["cat", "dog"],
        "decoding": {},
    }
    return {**data, **changes}


def test_minimal_contract_gets_documented_defaults() -> None:
    contract = parse_contract(minimal())
    pre = contract.preprocessing
    assert (pre.resize, pre.interpolation, pre.color_order, pre.layout) == (
        "resize", "bilinear", "RGB", "NCHW",
    )  # fmt: skip
    assert (pre.dtype, pre.scale, pre.exif) == ("float32", 1 / 255, "apply")
    assert pre.conversion.alpha == "composite"
    assert pre.conversion.background == (255, 255, 255)
    assert contract.input_name == "input"
    assert contract.decoding == ClassificationDecoding(output="logits", scores="logits", top_k=5)
    assert contract.output_names == ["logits"]


def test_center_crop_writes_its_shorter_side_into_the_contract() -> None:
    pre = {"input_size": {"height": 240, "width": 200}, "resize": "center_crop"}
    contract = parse_contract(minimal(preprocessing=pre))
    assert contract.preprocessing.resize_shorter == round(240 * 256 / 224) == 274
    assert json.loads(contract.to_json())["preprocessing"]["resize_shorter"] == 274


def test_center_crop_default_also_from_model_objects() -> None:
    pre = Preprocessing(input_size=InputSize(height=112, width=112), resize="center_crop")
    assert pre.resize_shorter == 128


def test_detection_helper_and_output_names() -> None:
    contract = VisionContract.detection(
        ["car"], input_size=(480, 640), decoding={"box_format": "cxcywh", "nms_iou": 0.6},
        input_name="images", embedding_output="emb",
    )  # fmt: skip
    assert isinstance(contract.decoding, DetectionDecoding)
    assert contract.decoding.box_format == "cxcywh"
    assert contract.decoding.nms_iou == 0.6
    assert contract.preprocessing.input_size.width == 640
    assert contract.preprocessing.resize == "letterbox"
    assert contract.input_name == "images"
    assert contract.output_names == ["boxes", "scores", "emb"]


def test_json_round_trip_and_load_from_file_or_text(tmp_path: Path) -> None:
    contract = VisionContract.classification(["a", "b", "c"], input_size=(96, 128))
    path = tmp_path / "contract.json"
    path.write_text(contract.to_json())
    assert load_contract(path) == contract
    assert load_contract(str(path)) == contract
    assert load_contract(contract.to_json()) == contract
    assert parse_contract(contract.to_json().encode()) == contract


def test_digest_is_canonical_and_sensitive() -> None:
    a = parse_contract(minimal())
    reordered = dict(reversed(list(minimal(decoding={"top_k": 5}).items())))
    assert parse_contract(reordered).digest() == a.digest()
    assert a.digest().startswith("sha256:")
    assert len(a.digest()) == len("sha256:") + 64
    assert parse_contract(minimal(labels=["dog", "cat"])).digest() != a.digest()


def test_contract_is_immutable() -> None:
    contract = parse_contract(minimal())
    with pytest.raises(ValueError, match="frozen"):
        contract.task = "detection"  # type: ignore[misc]


def pre(**changes: Any) -> dict[str, Any]:
    return {"input_size": {"height": 224, "width": 224}, **changes}


INVALID = [
    (minimal(labels=["cat", "dog", "cat"]), "labels", "duplicate label 'cat' at 0 and 2"),
    (minimal(labels=["cat", "  "]), "labels.1", "empty label name"),
    (minimal(labels=[]), "labels", "at least 1"),
    (
        minimal(preprocessing={"input_size": {"height": 0, "width": 5}}),
        "preprocessing.input_size.height",
        "must be > 0",
    ),
    (
        minimal(preprocessing={"input_size": {"height": 5, "width": -3}}),
        "preprocessing.input_size.width",
        "must be > 0",
    ),
    (minimal(preprocessing=pre(std=[0.2, 0, 0.2])), "preprocessing.std.1", "must be > 0"),
    (minimal(preprocessing=pre(scale=0)), "preprocessing.scale", "must be > 0"),
    (minimal(preprocessing=pre(pad_value=256)), "preprocessing.pad_value", "must be <= 255"),
    (minimal(preprocessing=pre(layout="CHW")), "preprocessing.layout", "'NCHW' or 'NHWC'"),
    (minimal(preprocessing=pre(dtype="uint8")), "preprocessing.scale", "uint8 input takes raw"),
    (
        minimal(preprocessing=pre(resize="center_crop", resize_shorter=200)),
        "preprocessing.resize_shorter",
        "must be >= the larger input side (224)",
    ),
    (
        minimal(preprocessing=pre(resize_shorter=256)),
        "preprocessing.resize_shorter",
        "only used with resize='center_crop'",
    ),
    (
        minimal(preprocessing=pre(conversion={"background": [0, 0, 300]})),
        "preprocessing.conversion.background.2",
        "must be <= 255",
    ),
    (
        minimal(decoding={"kind": "detection"}),
        "decoding.kind",
        "task is 'classification' but the decoding is for 'detection'",
    ),
    (minimal(decoding={"boxes_output": "b"}), "decoding.boxes_output", "unknown field"),
    (minimal(decoding={"top_k": 0}), "decoding.top_k", "must be >= 1"),
    (minimal(decoding={"kind": "segmentation"}), "decoding.kind", "must be one of"),
    (minimal(task="detection", decoding={"nms_iou": 1.5}), "decoding.nms_iou", "must be <= 1"),
    (
        minimal(task="detection", decoding={"score_threshold": -0.1}),
        "decoding.score_threshold",
        "must be >= 0",
    ),
    (minimal(task="segmentation"), "task", "'classification' or 'detection'"),
    (minimal(contract_version="2"), "contract_version", "must be '1'"),
    (minimal(input_name=""), "input_name", "must not be empty"),
    (minimal(colour="RGB"), "colour", "unknown field"),
]


@pytest.mark.parametrize(("data", "field", "problem"), INVALID)
def test_invalid_contract_names_the_field(data: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_contract(data)
    assert info.value.field == field
    assert problem in info.value.problem
    assert str(info.value).startswith(f"invalid vision contract: {field}: ")


def test_missing_section_is_reported() -> None:
    data = minimal()
    del data["preprocessing"]
    with pytest.raises(ContractError, match="preprocessing: required field is missing"):
        parse_contract(data)


def test_helpers_raise_contract_errors_too() -> None:
    with pytest.raises(ContractError, match=r"preprocessing\.std\.0: must be > 0"):
        VisionContract.classification(["a"], std=(0, 1, 1))
    with pytest.raises(ContractError, match=r"decoding\.top_k: unknown field"):
        VisionContract.detection(["a"], decoding={"top_k": 3})


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"\(json\): not valid JSON") as info:
        parse_contract('{"task": ')
    assert info.value.field == "(json)"
    missing = tmp_path / "nope.json"
    with pytest.raises(ContractError, match="cannot read the contract file") as info:
        load_contract(missing)
    assert info.value.field == str(missing)
