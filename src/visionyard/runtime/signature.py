"""The model's input/output signature, checked against the vision contract and against tensors.

ONNX Runtime reports a mismatch only when a request arrives, in terms of node names and
dimension indices ("Got invalid dimensions for input: input for the following indices index: 2
Got: 112 Expected: 224"). These checks run once when a session opens and name the contract
field to fix instead; the per-request check names the expected shape in contract terms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionyard.contract.schema import ClassificationDecoding, VisionContract
from visionyard.errors import ContractError, InvalidInputError

Dim = int | str | None
ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


@dataclass(frozen=True)
class TensorMeta:
    """One model input or output: name, shape (``int`` fixed, ``str``/``None`` dynamic), dtype."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str

    @classmethod
    def from_ort(cls, arg: Any) -> TensorMeta:
        """From an ``onnxruntime.NodeArg``."""
        return cls(arg.name, tuple(arg.shape or ()), ONNX_DTYPES.get(arg.type, arg.type))

    def fixed(self, axis: int) -> int | None:
        dim = self.shape[axis] if -len(self.shape) <= axis < len(self.shape) else None
        return dim if isinstance(dim, int) and dim > 0 else None

    def describe(self) -> str:
        dims = ", ".join("?" if self.fixed(i) is None else str(d) for i, d in enumerate(self.shape))
        return f"{self.name} [{dims}] {self.dtype}"


def expected_input_shape(contract: VisionContract, batch: int = 1) -> tuple[int, int, int, int]:
    """The input shape the contract produces, in its layout (channels are always 3)."""
    pre = contract.preprocessing
    height, width = pre.input_size.height, pre.input_size.width
    return (batch, 3, height, width) if pre.layout == "NCHW" else (batch, height, width, 3)


def check_signature(
    contract: VisionContract, inputs: Sequence[TensorMeta], outputs: Sequence[TensorMeta]
) -> TensorMeta:
    """Raise :class:`ContractError` naming the field when model and contract disagree.

    Returns the model's image input.
    """
    image = _image_input(contract, inputs)
    _check_input_dtype(contract, image)
    _check_input_shape(contract, image)
    _check_outputs(contract, {o.name: o for o in outputs})
    return image


def _image_input(contract: VisionContract, inputs: Sequence[TensorMeta]) -> TensorMeta:
    names = [i.name for i in inputs]
    if len(inputs) != 1:
        raise ContractError(
            "input_name",
            f"the model has {len(inputs)} inputs ({', '.join(names)}); "
            "a visionyard model takes exactly one image tensor",
        )
    if inputs[0].name != contract.input_name:
        raise ContractError(
            "input_name",
            f"the contract says {contract.input_name!r} but the model's input is {names[0]!r}",
        )
    return inputs[0]


def _check_input_dtype(contract: VisionContract, image: TensorMeta) -> None:
    wanted = contract.preprocessing.dtype
    if image.dtype != wanted:
        raise ContractError(
            "preprocessing.dtype",
            f"the contract says {wanted} but the model's input {image.name!r} is {image.dtype}",
        )


def _check_input_shape(contract: VisionContract, image: TensorMeta) -> None:
    if len(image.shape) != 4:
        raise ContractError(
            "preprocessing.layout",
            f"the model's input {image.describe()} has rank {len(image.shape)}, "
            "but an image batch has rank 4",
        )
    expected = expected_input_shape(contract)
    fields = _shape_fields(contract)
    for axis in range(1, 4):
        have = image.fixed(axis)
        if have is not None and have != expected[axis]:
            raise ContractError(
                fields[axis],
                f"the contract gives {expected[axis]} but the model's input {image.describe()} "
                f"takes {have} at axis {axis}",
            )


def _shape_fields(contract: VisionContract) -> dict[int, str]:
    size = "preprocessing.input_size"
    if contract.preprocessing.layout == "NCHW":
        return {1: "preprocessing.layout", 2: f"{size}.height", 3: f"{size}.width"}
    return {1: f"{size}.height", 2: f"{size}.width", 3: "preprocessing.layout"}


def check_output_names(contract: VisionContract, outputs: Mapping[str, TensorMeta]) -> None:
    """Every output the contract reads exists, with a rank its layout can read."""
    fields = _output_fields(contract)
    for field, name in fields.items():
        if name not in outputs:
            have = ", ".join(outputs) or "none"
            raise ContractError(field, f"the model has no output {name!r} (outputs: {have})")
    _check_ranks(contract, {f: outputs[n] for f, n in fields.items()})


def _check_outputs(contract: VisionContract, outputs: dict[str, TensorMeta]) -> None:
    check_output_names(contract, outputs)
    scored = _scored_classes(contract, outputs)
    if scored is None:
        return
    output, classes = scored
    if classes is not None and classes != len(contract.labels):
        raise ContractError(
            "labels",
            f"the contract lists {len(contract.labels)} labels but the model's output "
            f"{output.describe()} scores {classes} classes",
        )


def _scored_classes(
    contract: VisionContract, outputs: dict[str, TensorMeta]
) -> tuple[TensorMeta, int | None] | None:
    """The output that scores the classes and its (fixed) class count; None when no output's
    shape states it (post-NMS outputs give one class index per box)."""
    decoding = contract.decoding
    if isinstance(decoding, ClassificationDecoding):
        return outputs[decoding.output], outputs[decoding.output].fixed(-1)
    if decoding.layout == "yolo":
        assert decoding.output is not None
        rows = outputs[decoding.output].fixed(1)
        return outputs[decoding.output], None if rows is None else rows - 4
    if decoding.layout in ("nms", "end2end"):
        return None
    return outputs[decoding.scores_output], outputs[decoding.scores_output].fixed(-1)


#: Ranks of the outputs of the detection layouts other than the default (when ORT knows them).
_RANKS = {
    "yolo": {"output": (3, "[N, 4 + C, K]")},
    "end2end": {"output": (3, "[N, D, 6]")},
    "nms": {
        "boxes_output": (3, "[N, D, 4]"),
        "scores_output": (2, "[N, D]"),
        "classes_output": (2, "[N, D]"),
    },
}


def _check_ranks(contract: VisionContract, outputs: dict[str, TensorMeta]) -> None:
    decoding = contract.decoding
    if isinstance(decoding, ClassificationDecoding):
        return
    for field, (rank, shape) in _RANKS.get(decoding.layout, {}).items():
        have = outputs[f"decoding.{field}"]
        if have.shape and len(have.shape) != rank:
            raise ContractError(
                f"decoding.{field}",
                f"the model's output {have.describe()} has rank {len(have.shape)}; layout "
                f"{decoding.layout!r} reads {shape} there",
            )


def _output_fields(contract: VisionContract) -> dict[str, str]:
    decoding = contract.decoding
    if isinstance(decoding, ClassificationDecoding):
        fields = {"decoding.output": decoding.output}
    else:
        fields = {f"decoding.{f}": name for f, name in decoding.output_fields.items()}
    if contract.embedding_output:
        fields["embedding_output"] = contract.embedding_output
    return fields


def check_tensor(tensor: Any, image: TensorMeta, contract: VisionContract) -> np.ndarray:
    """Refuse a tensor the model cannot take, naming the expected shape and dtype."""
    if not isinstance(tensor, np.ndarray):
        raise InvalidInputError(f"expected a numpy array, got {type(tensor).__name__}")
    expected = expected_input_shape(contract)
    wanted = _shape_text(expected, image)
    if tensor.dtype != np.dtype(image.dtype):
        raise InvalidInputError(f"tensor dtype is {tensor.dtype}, the model takes {wanted}")
    if tensor.ndim != 4 or tensor.shape[0] == 0:
        raise InvalidInputError(f"tensor shape is {list(tensor.shape)}, the model takes {wanted}")
    for axis in range(1, 4):
        if tensor.shape[axis] != expected[axis]:
            raise InvalidInputError(
                f"tensor shape is {list(tensor.shape)}, the model takes {wanted}"
            )
    return tensor


def _shape_text(expected: tuple[int, ...], image: TensorMeta) -> str:
    batch = image.fixed(0)
    dims = [str(batch) if batch is not None else "N", *(str(d) for d in expected[1:])]
    return f"[{', '.join(dims)}] {image.dtype} (input {image.name!r})"
