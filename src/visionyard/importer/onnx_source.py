"""An ONNX file as an import source: load it, check it, and read what it says about itself.

The file is stored in the bundle byte for byte (so its sha256 is the bundle's ``model.onnx``
digest), unless its weights live in external data files: then it is re-serialised as one
self-contained model, as every bundle holds. What the model states is read from its graph (the
image input's name, layout, size and dtype; the output names) and its ``metadata_props``
(labels). onnxruntime loads it once to prove that it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from visionyard.errors import ConfigError, ContractError
from visionyard.runtime.signature import ONNX_DTYPES, TensorMeta

_ELEM_TYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.UINT8: "uint8",
}


@dataclass(frozen=True)
class OnnxSource:
    """A loaded ONNX model: its bytes, metadata and signature."""

    path: Path
    model_bytes: bytes
    metadata: dict[str, str]
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]

    @property
    def image_input(self) -> TensorMeta:
        return self.inputs[0]


def load_onnx_source(path: Path) -> OnnxSource:
    """Load and check ``path``; ONE clear error for a file that is not a usable image model."""
    model = _load(path)
    data = path.read_bytes()
    if _has_external_data(model):
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the external weights of {path}: {exc}") from exc
        data = model.SerializeToString()
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_meta(i) for i in model.graph.input if i.name not in initializers)
    outputs = tuple(_meta(o) for o in model.graph.output)
    source = OnnxSource(path, data, {p.key: p.value for p in model.metadata_props}, inputs, outputs)
    check_image_input(source)
    return source


def _load(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ConfigError(f"{path} is not an ONNX model ({type(exc).__name__})") from exc
    if not model.graph.node and not model.graph.output:
        raise ConfigError(f"{path} is not an ONNX model (no graph)")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path} is not a valid ONNX model: {first}") from exc
    return model


def _has_external_data(model: Any) -> bool:
    return any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer)


def _meta(value: Any) -> TensorMeta:
    tensor = value.type.tensor_type
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or None)
    dtype = _ELEM_TYPES.get(tensor.elem_type)
    if dtype is None:
        name = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
        dtype = ONNX_DTYPES.get(f"tensor({name})", name)
    return TensorMeta(value.name, tuple(dims), dtype)


def check_image_input(source: OnnxSource) -> None:
    """Exactly one input, of rank 4, with 3 channels first or last, and an image dtype."""
    if len(source.inputs) != 1:
        names = ", ".join(i.name for i in source.inputs) or "none"
        raise ContractError(
            "input_name",
            f"{source.path.name} has {len(source.inputs)} inputs ({names}); an image model "
            "takes exactly one image tensor [N, 3, H, W] or [N, H, W, 3]",
        )
    image = source.image_input
    if len(image.shape) != 4 or infer_layout(image) is None:
        raise ContractError(
            "input_name",
            f"{source.path.name}'s input {image.describe()} is not image-shaped; an image model "
            "takes [N, 3, H, W] (NCHW) or [N, H, W, 3] (NHWC)",
        )
    if image.dtype not in ("float32", "float16", "uint8"):
        raise ContractError(
            "preprocessing.dtype",
            f"{source.path.name}'s input {image.describe()} is {image.dtype}; images go in as "
            "float32, float16 or uint8",
        )


def infer_layout(image: TensorMeta) -> str | None:
    """NCHW when axis 1 has 3 channels, NHWC when axis 3 has, None when neither can be."""
    first, last = image.fixed(1), image.fixed(3)
    if first == 3 and last != 3:
        return "NCHW"
    if last == 3 and first != 3:
        return "NHWC"
    if first == 3 and last == 3:
        return "NCHW"
    if first is None and last is None:
        return "NCHW"  # fully dynamic: the usual PyTorch layout; --layout overrides
    return None


def model_facts(source: OnnxSource) -> dict[str, Any]:
    """What the model itself fixes: input name, dtype, layout and (if fixed) input size."""
    image = source.image_input
    layout = infer_layout(image) or "NCHW"
    facts: dict[str, Any] = {
        "input_name": image.name,
        "preprocessing": {"dtype": image.dtype, "layout": layout},
    }
    h_axis, w_axis = (2, 3) if layout == "NCHW" else (1, 2)
    height, width = image.fixed(h_axis), image.fixed(w_axis)
    if height is not None and width is not None:
        facts["preprocessing"]["input_size"] = {"height": height, "width": width}
    return facts
