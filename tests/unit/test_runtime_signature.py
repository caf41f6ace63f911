"""Model signature vs contract: every mismatch names the contract field to fix."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.runtime import colour_contract, detector_contract
from visionyard.errors import ContractError, InvalidInputError
from visionyard.runtime.signature import (
    TensorMeta,
    check_signature,
    check_tensor,
    expected_input_shape,
)

IMAGE = TensorMeta("input", ("N", 3, 8, 8), "float32")
LOGITS = TensorMeta("logits", ("N", 5), "float32")


def test_matching_signature_returns_the_image_input() -> None:
    assert check_signature(colour_contract(), [IMAGE], [LOGITS]) == IMAGE


def test_dynamic_spatial_dims_are_accepted() -> None:
    image = TensorMeta("input", (None, 3, "h", "w"), "float32")
    assert check_signature(colour_contract(), [image], [LOGITS]) == image


@pytest.mark.parametrize(
    ("image", "field"),
    [
        (TensorMeta("input", ("N", 3, 16, 8), "float32"), "preprocessing.input_size.height"),
        (TensorMeta("input", ("N", 3, 8, 16), "float32"), "preprocessing.input_size.width"),
        (TensorMeta("input", ("N", 1, 8, 8), "float32"), "preprocessing.layout"),
        (TensorMeta("input", ("N", 8, 8, 3), "float32"), "preprocessing.layout"),
        (TensorMeta("input", ("N", 3, 8), "float32"), "preprocessing.layout"),
        (TensorMeta("input", ("N", 3, 8, 8), "uint8"), "preprocessing.dtype"),
        (TensorMeta("pixels", ("N", 3, 8, 8), "float32"), "input_name"),
    ],
)
def test_input_mismatch_names_the_field(image: TensorMeta, field: str) -> None:
    with pytest.raises(ContractError) as caught:
        check_signature(colour_contract(), [image], [LOGITS])
    assert caught.value.field == field


def test_nhwc_contract_checks_the_last_axis() -> None:
    contract = colour_contract(layout="NHWC")
    nhwc = TensorMeta("input", ("N", 8, 8, 3), "float32")
    assert check_signature(contract, [nhwc], [LOGITS]) == nhwc
    with pytest.raises(ContractError, match="preprocessing.input_size.width"):
        check_signature(contract, [TensorMeta("input", ("N", 8, 4, 3), "float32")], [LOGITS])


def test_two_inputs_are_refused() -> None:
    other = TensorMeta("mask", ("N", 1), "float32")
    with pytest.raises(ContractError, match="2 inputs"):
        check_signature(colour_contract(), [IMAGE, other], [LOGITS])


def test_missing_output_and_class_count() -> None:
    with pytest.raises(ContractError, match=r"decoding.output: .*no output 'logits'"):
        check_signature(colour_contract(), [IMAGE], [TensorMeta("probs", ("N", 5), "float32")])
    with pytest.raises(ContractError, match=r"labels: .*5 labels.* scores 4 classes"):
        check_signature(colour_contract(), [IMAGE], [TensorMeta("logits", ("N", 4), "float32")])


def test_detection_outputs() -> None:
    image = TensorMeta("input", ("N", 3, 64, 64), "float32")
    boxes = TensorMeta("boxes", ("N", 2, 4), "float32")
    with pytest.raises(ContractError, match="decoding.scores_output"):
        check_signature(detector_contract(), [image], [boxes])
    scores = TensorMeta("scores", ("N", 2, 3), "float32")
    with pytest.raises(ContractError, match="2 labels"):
        check_signature(detector_contract(), [image], [boxes, scores])


def test_expected_input_shape_follows_the_layout() -> None:
    assert expected_input_shape(colour_contract(), 2) == (2, 3, 8, 8)
    assert expected_input_shape(colour_contract(layout="NHWC")) == (1, 8, 8, 3)


def test_check_tensor_names_the_expected_shape() -> None:
    contract = colour_contract()
    good = np.zeros((2, 3, 8, 8), np.float32)
    assert check_tensor(good, IMAGE, contract) is good
    with pytest.raises(InvalidInputError, match=r"\[1, 3, 8, 9\], the model takes \[N, 3, 8, 8\]"):
        check_tensor(np.zeros((1, 3, 8, 9), np.float32), IMAGE, contract)
    with pytest.raises(InvalidInputError, match="dtype is float64"):
        check_tensor(good.astype(np.float64), IMAGE, contract)
    with pytest.raises(InvalidInputError, match=r"shape is \[0, 3, 8, 8\]"):
        check_tensor(good[:0], IMAGE, contract)
    with pytest.raises(InvalidInputError, match="numpy array"):
        check_tensor(good.tolist(), IMAGE, contract)


def test_tensor_meta_describe_and_fixed() -> None:
    assert IMAGE.describe() == "input [?, 3, 8, 8] float32"
    assert IMAGE.fixed(0) is None
    assert IMAGE.fixed(-1) == 8
    assert IMAGE.fixed(7) is None


def test_yolo_layout_output_and_its_class_count() -> None:
    image = TensorMeta("input", ("N", 3, 64, 64), "float32")
    contract = detector_contract(decoding={"layout": "yolo"})
    yolo = TensorMeta("output0", ("N", 6, 84), "float32")
    assert check_signature(contract, [image], [yolo]) == image
    dynamic = TensorMeta("output0", ("N", "c", "k"), "float32")
    assert check_signature(contract, [image], [dynamic]) == image
    with pytest.raises(ContractError, match=r"labels: .*2 labels.* scores 3 classes"):
        check_signature(contract, [image], [TensorMeta("output0", ("N", 7, 84), "float32")])
    with pytest.raises(ContractError, match=r"decoding.output: .*no output 'output0'"):
        check_signature(contract, [image], [TensorMeta("boxes", ("N", 6, 84), "float32")])
    with pytest.raises(ContractError, match=r"decoding.output: .*rank 2.*\[N, 4 \+ C, K\]"):
        check_signature(contract, [image], [TensorMeta("output0", ("N", 6), "float32")])


def test_nms_layout_outputs_and_their_ranks() -> None:
    image = TensorMeta("input", ("N", 3, 64, 64), "float32")
    contract = detector_contract(decoding={"layout": "nms", "classes_output": "labels"})
    boxes = TensorMeta("boxes", ("N", 100, 4), "float32")
    scores = TensorMeta("scores", ("N", 100), "float32")
    labels = TensorMeta("labels", ("N", 100), "int64")
    assert check_signature(contract, [image], [boxes, scores, labels]) == image
    with pytest.raises(ContractError, match=r"decoding.classes_output: .*no output 'labels'"):
        check_signature(contract, [image], [boxes, scores])
    flat = TensorMeta("scores", ("N", 100, 2), "float32")
    with pytest.raises(ContractError, match=r"decoding.scores_output: .*rank 3"):
        check_signature(contract, [image], [boxes, flat, labels])
