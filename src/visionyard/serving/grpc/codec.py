"""OIP v2 gRPC messages <-> data plane types: typed ``contents`` and ``raw_*_contents``.

Responses mirror the request: raw output contents when the request sent raw input contents (as
Triton's clients do), typed contents otherwise (FP16 has no typed field, so it is always raw).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from visionyard.errors import InvalidInputError
from visionyard.serving.codec import (
    check_shape,
    element_count,
    from_list,
    from_raw,
    object_array,
    to_raw,
)
from visionyard.serving.proto import grpc_service_pb2 as pb
from visionyard.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor

CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parse_infer(message: pb.ModelInferRequest) -> tuple[InferRequest, bool]:
    """The request, and whether it used raw input contents."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise InvalidInputError(
            f"{len(raw)} raw_input_contents for {len(message.inputs)} inputs; "
            "send one per input, or none and use typed contents"
        )
    inputs = [_input(item, raw[i] if raw else None) for i, item in enumerate(message.inputs)]
    outputs = [
        RequestedOutput(o.name, None, _count(parameters(o.parameters))) for o in message.outputs
    ]
    request = InferRequest(
        message.model_name,
        message.model_version or None,
        inputs,
        outputs,
        message.id,
        parameters(message.parameters),
    )
    return request, bool(raw)


def encode_infer(response: InferResponse, raw: bool) -> pb.ModelInferResponse:
    raw = raw or any(t.datatype not in CONTENTS for t in response.outputs)
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for key, value in response.parameters.items():
        _set_parameter(message.parameters[key], value)
    for tensor in response.outputs:
        out = message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            message.raw_output_contents.append(to_raw(tensor.data))
        else:
            _fill(out.contents, tensor)
    return message


def parameters(values: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def _set_parameter(target: pb.InferParameter, value: Any) -> None:
    """A response parameter: bool, int or (anything else, as text) string."""
    if isinstance(value, bool):
        target.bool_param = value
    elif isinstance(value, int):
        target.int64_param = value
    else:
        target.string_param = str(value)


def _input(item: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> Tensor:
    shape = check_shape(list(item.shape))
    params = parameters(item.parameters)
    if raw is not None:
        if item.HasField("contents"):
            raise InvalidInputError(f"input {item.name!r} has both contents and raw contents")
        return Tensor(item.name, item.datatype, shape, from_raw(item.datatype, shape, raw), params)
    return Tensor(item.name, item.datatype, shape, _typed(item, shape), params)


def _typed(item: pb.ModelInferRequest.InferInputTensor, shape: tuple[int, ...]) -> np.ndarray:
    field = CONTENTS.get(item.datatype)
    if field is None:
        raise InvalidInputError(
            f"input {item.name!r}: datatype {item.datatype!r} has no typed contents; "
            "send it in raw_input_contents"
        )
    values = getattr(item.contents, field)
    if item.datatype == "BYTES":
        array = object_array(list(values))
        if array.size != element_count(shape):
            raise InvalidInputError(f"{array.size} elements of data for shape {list(shape)}")
        return array.reshape(shape)
    return from_list(item.datatype, shape, list(values))


def _fill(contents: pb.InferTensorContents, tensor: Tensor) -> None:
    values = getattr(contents, CONTENTS[tensor.datatype])
    flat = tensor.data.reshape(-1)
    values.extend(list(flat) if tensor.datatype == "BYTES" else flat.tolist())


def _count(params: dict[str, Any]) -> int:
    value = params.get("classification", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError("parameter 'classification' must be an integer >= 0")
    return value
