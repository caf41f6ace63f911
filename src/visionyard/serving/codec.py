"""OIP v2 datatypes <-> numpy, and the raw (binary) tensor encoding shared by REST and gRPC.

Raw encoding, as the protocol defines it: numeric tensors are their elements in row-major order,
little-endian; ``BYTES`` tensors are each element as a 4-byte little-endian length followed by
the bytes. Every size mismatch is an :class:`~visionyard.errors.InvalidInputError`.

Element counts are computed with Python integers (no wrap-around) and capped at
:data:`MAX_ELEMENTS`, so a shape such as ``[2**32, 2**32]`` is refused instead of wrapping to 0.

Non-finite numbers in JSON: ``NaN`` and ``Infinity`` are not valid JSON (RFC 8259), so JSON
tensor data writes them as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (the form
protobuf's JSON mapping uses) and reads the same strings back for floating-point inputs.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from visionyard.errors import InvalidInputError

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_BY_NUMPY = {dtype.str[1:]: name for name, dtype in DTYPES.items() if name != "BYTES"}
_BY_NUMPY["b1"] = "BOOL"
_LENGTH = struct.Struct("<I")
#: The most elements one tensor may declare (far above what any request body can carry).
MAX_ELEMENTS = 2**40
#: Non-finite floats as JSON strings (outputs) and the strings read back as them (inputs).
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def datatype_of(dtype: np.dtype[Any] | str) -> str:
    """The OIP datatype of a numpy dtype (``float32`` -> ``FP32``)."""
    value = np.dtype(dtype)
    if value == np.dtype(object):
        return "BYTES"
    return _BY_NUMPY[value.str[1:]]


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    if datatype not in DTYPES:
        known = ", ".join(DTYPES)
        raise InvalidInputError(f"unknown datatype {datatype!r} (known: {known})")
    return DTYPES[datatype]


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(shape)
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in dims):
        raise InvalidInputError(f"shape {list(dims)} must hold non-negative integers")
    if len(dims) > 8:
        raise InvalidInputError(f"shape {list(dims)} has more than 8 dimensions")
    if max(dims, default=0) > MAX_ELEMENTS or math.prod(dims) > MAX_ELEMENTS:
        raise InvalidInputError(
            f"shape {list(dims)} declares too many elements (at most {MAX_ELEMENTS})"
        )
    return dims


def element_count(shape: Sequence[int]) -> int:
    """The number of elements of a shape (exact: Python integers, checked by check_shape)."""
    return math.prod(check_shape(shape))


def from_raw(datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> np.ndarray:
    """Decode one raw tensor; the byte size must match the shape exactly."""
    dtype, count = numpy_dtype(datatype), element_count(shape)
    if datatype == "BYTES":
        return _reshape(object_array(split_bytes(raw)), shape)
    if len(raw) != count * dtype.itemsize:
        raise InvalidInputError(
            f"{len(raw)} bytes of data for shape {list(shape)} {datatype}: expected "
            f"{count * dtype.itemsize} ({count} x {dtype.itemsize} bytes)"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape))


def to_raw(array: np.ndarray) -> bytes:
    """The raw encoding of a tensor (numeric little-endian, or length-prefixed BYTES)."""
    if array.dtype == np.dtype(object):
        return join_bytes([_as_bytes(v) for v in array.reshape(-1)])
    dtype = DTYPES[datatype_of(array.dtype)]
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def split_bytes(raw: bytes | memoryview) -> list[bytes]:
    """Length-prefixed BYTES elements -> a list; truncated or overlong data is refused."""
    view, items, pos = memoryview(raw), [], 0
    while pos < len(view):
        if pos + 4 > len(view):
            raise InvalidInputError("BYTES data ends inside an element's 4-byte length prefix")
        (size,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if pos + size > len(view):
            raise InvalidInputError(
                f"BYTES element of {size} bytes runs past the end of the data "
                f"({len(view) - pos} bytes left)"
            )
        items.append(bytes(view[pos : pos + size]))
        pos += size
    return items


def join_bytes(items: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(item)) + item for item in items)


def from_list(
    datatype: str, shape: Sequence[int], data: Any, *, base64_bytes: bool = False
) -> np.ndarray:
    """Decode JSON tensor data (flat or nested, row-major) of the given shape."""
    dtype = numpy_dtype(datatype)
    flat = _flatten(data)
    if datatype == "BYTES":
        array = object_array([_json_bytes(v, base64_bytes) for v in flat])
    else:
        array = _numeric(flat, dtype, datatype)
    return _reshape(array, shape)


def object_array(items: Sequence[Any]) -> np.ndarray:
    """A 1-D object array of the items (numpy would otherwise split equal-length sequences)."""
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


def to_list(array: np.ndarray) -> list[Any]:
    """Flat JSON data (BYTES as UTF-8 text, or base64 when not valid UTF-8)."""
    flat = array.reshape(-1)
    if array.dtype == np.dtype(object):
        return [_text(_as_bytes(v)) for v in flat]
    values = list(flat.tolist())
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        return [json_number(v) for v in values]
    return values


def json_number(value: float) -> float | str:
    """A float as JSON allows it: itself when finite, else ``"NaN"``/``"Infinity"``/...."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _numeric(flat: list[Any], dtype: np.dtype[Any], datatype: str) -> np.ndarray:
    if dtype.kind == "f" and any(isinstance(v, str) for v in flat):
        flat = [NON_FINITE.get(v, v) if isinstance(v, str) else v for v in flat]
    if any(isinstance(v, str | bytes | dict | list) or v is None for v in flat):
        raise InvalidInputError(f"{datatype} data must hold numbers only")
    if datatype == "BOOL" and any(not isinstance(v, bool) for v in flat):
        raise InvalidInputError("BOOL data must hold true/false only")
    try:
        values = np.array(flat, dtype=np.float64 if dtype.kind == "f" else object)
        return values.astype(dtype, casting="unsafe") if dtype.kind == "f" else _ints(flat, dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"{datatype} data cannot be read: {exc}") from exc


def _ints(flat: list[Any], dtype: np.dtype[Any]) -> np.ndarray:
    if dtype.kind == "b":
        return np.array(flat, dtype=bool)
    if any(isinstance(v, float) and not v.is_integer() for v in flat):
        raise InvalidInputError(f"{dtype} data must hold whole numbers")
    info = np.iinfo(dtype)
    if any(not info.min <= int(v) <= info.max for v in flat):
        raise InvalidInputError(f"data out of range for {dtype} ({info.min}..{info.max})")
    return np.array([int(v) for v in flat], dtype=dtype)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidInputError("tensor data must be a JSON array")
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _reshape(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    count = element_count(shape)
    if array.size != count:
        raise InvalidInputError(
            f"{array.size} elements of data for shape {list(shape)}, which holds {count}"
        )
    return array.reshape(tuple(shape))


def _json_bytes(value: Any, base64_bytes: bool) -> bytes:
    if not isinstance(value, str):
        raise InvalidInputError("BYTES data in JSON must be strings")
    if not base64_bytes:
        return value.encode("utf-8")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"BYTES element is not valid base64: {exc}") from exc


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")
