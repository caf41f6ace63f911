"""OIP v2 REST bodies <-> data plane types, JSON and the binary tensor data extension.

Binary extension: the body is a JSON header of ``Inference-Header-Content-Length`` bytes
followed by the raw tensors, in input order, each input declaring its size in
``parameters.binary_data_size``. Responses put outputs asked for with ``binary_data: true`` (or
the request-level ``binary_data_output: true``) after the JSON header the same way.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from visionyard.errors import InvalidInputError
from visionyard.serving.codec import check_shape, from_list, from_raw, to_list, to_raw
from visionyard.serving.types import InferRequest, InferResponse, RequestedOutput, Tensor

HEADER_LENGTH = "inference-header-content-length"


def parse_infer(
    body: bytes, header_length: str | None, model: str, version: str | None
) -> InferRequest:
    """Parse an infer request body (JSON, or JSON header + binary tensors)."""
    split = _header_length(header_length, len(body))
    header = _json_object(body[:split])
    view = memoryview(body)[split:]
    inputs, used = _inputs(header.get("inputs"), view)
    if used != len(view):
        raise InvalidInputError(
            f"the binary tensors declare {used} bytes but {len(view)} follow the JSON header"
        )
    return InferRequest(
        model_name=model,
        model_version=version,
        inputs=inputs,
        outputs=_outputs(header.get("outputs"), _params(header).get("binary_data_output")),
        id=_string(header.get("id", ""), "id"),
        parameters=_params(header),
    )


def encode_infer(response: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header's length."""
    default = bool(request.parameters.get("binary_data_output", False))
    binary = {o.name: (default if o.binary is None else o.binary) for o in request.outputs}
    header: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in response.outputs:
        item: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if binary.get(tensor.name, default):
            blob = to_raw(tensor.data)
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = to_list(tensor.data)
        header.append(item)
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": header,
    }
    if response.id:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    text = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return (text + b"".join(blobs), len(text)) if blobs else (text, None)


def _header_length(value: str | None, body_length: int) -> int:
    if value is None:
        return body_length
    try:
        length = int(value)
    except ValueError as exc:
        raise InvalidInputError(
            f"Inference-Header-Content-Length {value!r} is not a number"
        ) from exc
    if not 0 < length <= body_length:
        raise InvalidInputError(
            f"Inference-Header-Content-Length {length} does not fit a body of {body_length} bytes"
        )
    return length


def _json_object(data: bytes | memoryview) -> dict[str, Any]:
    try:
        value = json.loads(bytes(data), parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError are too
        raise InvalidInputError(f"the request is not valid JSON: {json_problem(exc)}") from exc
    if not isinstance(value, dict):
        raise InvalidInputError("the request must be a JSON object")
    return value


def json_problem(exc: Exception) -> str:
    """What ``json.loads`` refused in a client's body, in the client's terms.

    An integer of more digits than Python converts (``sys.get_int_max_str_digits``, 4300) is a
    plain ``ValueError`` whose text tells the reader to raise that limit, advice for the server's
    code, not for its client: it becomes one line about the number instead."""
    text = str(exc)
    if isinstance(exc, ValueError) and "integer string conversion" in text:
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return text


def _not_json(literal: str) -> Any:
    """``NaN``/``Infinity``: Python's json reads them, but they are not valid JSON."""
    raise InvalidInputError(
        f"{literal} is not valid JSON; send non-finite values as the strings "
        '"NaN", "Infinity" or "-Infinity" (to a model that accepts them)'
    )


def _inputs(value: Any, binary: memoryview) -> tuple[list[Tensor], int]:
    if not isinstance(value, list) or not value:
        raise InvalidInputError("'inputs' must be a non-empty array")
    tensors, offset = [], 0
    for item in value:
        tensor, size = _input(item, binary, offset)
        tensors.append(tensor)
        offset += size
    return tensors, offset


def _input(item: Any, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(item, dict):
        raise InvalidInputError("each input must be a JSON object")
    name = _string(item.get("name"), "input name")
    datatype = _string(item.get("datatype"), f"datatype of input {name!r}")
    shape = _shape(item.get("shape"), name)
    params = _params(item)
    size = params.get("binary_data_size")
    if size is not None:
        data = _binary_slice(size, binary, offset, name)
        return Tensor(name, datatype, shape, from_raw(datatype, shape, data), params), len(data)
    if "data" not in item:
        raise InvalidInputError(f"input {name!r} has neither 'data' nor binary_data_size")
    b64 = params.get("content_type") == "base64"
    array = from_list(datatype, shape, item["data"], base64_bytes=b64)
    return Tensor(name, datatype, shape, array, params), 0


def _binary_slice(size: Any, binary: memoryview, offset: int, name: str) -> memoryview:
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInputError(f"binary_data_size of input {name!r} must be an integer >= 0")
    if offset + size > len(binary):
        raise InvalidInputError(
            f"input {name!r} declares {size} binary bytes but only {len(binary) - offset} remain"
        )
    return binary[offset : offset + size]


def _outputs(value: Any, default_binary: Any) -> list[RequestedOutput]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInputError("'outputs' must be an array")
    outputs = []
    for item in value:
        if not isinstance(item, dict):
            raise InvalidInputError("each requested output must be a JSON object")
        params = _params(item)
        binary = params.get("binary_data", default_binary)
        count = params.get("classification", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise InvalidInputError("parameter 'classification' must be an integer >= 0")
        name = _string(item.get("name"), "output name")
        outputs.append(RequestedOutput(name, None if binary is None else bool(binary), count))
    return outputs


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InvalidInputError(f"shape of input {name!r} must be an array of integers")
    return check_shape(value)


def _params(item: dict[str, Any]) -> dict[str, Any]:
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInputError("'parameters' must be a JSON object")
    return params


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string")
    return value
