"""OIP datatypes, raw and JSON tensor encodings, and their errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from visionyard.errors import InvalidInputError
from visionyard.serving.codec import (
    datatype_of,
    from_list,
    from_raw,
    join_bytes,
    object_array,
    to_list,
    to_raw,
)


@pytest.mark.parametrize(
    ("dtype", "name"),
    [
        ("float32", "FP32"),
        ("float16", "FP16"),
        ("uint8", "UINT8"),
        ("int64", "INT64"),
        ("bool", "BOOL"),
        ("float64", "FP64"),
        ("object", "BYTES"),
    ],
)
def test_datatype_names(dtype: str, name: str) -> None:
    assert datatype_of(np.dtype(dtype)) == name


def test_raw_round_trip_numeric() -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.array_equal(from_raw("FP32", [2, 3, 4], to_raw(array)), array)
    assert to_raw(array.astype(">f4")) == to_raw(array)  # always little-endian


def test_raw_round_trip_bytes() -> None:
    items = object_array([b"a", b"", b"\x00\xff" * 3])
    raw = to_raw(items)
    assert raw[:4] == struct.pack("<I", 1)
    assert list(from_raw("BYTES", [3], raw)) == [b"a", b"", b"\x00\xff" * 3]


def test_object_array_keeps_equal_length_items_whole() -> None:
    assert object_array([b"ab", b"cd"]).shape == (2,)


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "needle"),
    [
        ("FP32", [2], b"\0" * 7, "expected 8"),
        ("FP32", [-1], b"", "non-negative"),
        ("NOPE", [1], b"", "unknown datatype"),
        ("BYTES", [1], b"\x05\x00", "length prefix"),
        ("BYTES", [1], struct.pack("<I", 9) + b"abc", "runs past"),
        ("BYTES", [2], join_bytes([b"x"]), "1 elements"),
    ],
)
def test_raw_errors(datatype: str, shape: list[int], raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        from_raw(datatype, shape, raw)


def test_json_nested_and_flat_data() -> None:
    nested = from_list("INT32", [2, 2], [[1, 2], [3, 4]])
    flat = from_list("INT32", [2, 2], [1, 2, 3, 4])
    assert np.array_equal(nested, flat)
    assert nested.dtype == np.int32


def test_json_bytes_text_and_base64() -> None:
    assert list(from_list("BYTES", [1], ["héllo"])) == ["héllo".encode()]
    assert list(from_list("BYTES", [1], ["aGk="], base64_bytes=True)) == [b"hi"]
    assert to_list(object_array([b"ok", b"\xff\xfe"])) == ["ok", "//4="]


@pytest.mark.parametrize(
    ("datatype", "data", "needle"),
    [
        ("FP32", ["a"], "numbers only"),
        ("FP32", {"x": 1}, "JSON array"),
        ("INT8", [300], "out of range"),
        ("INT32", [1.5], "whole numbers"),
        ("BOOL", [1], "true/false"),
        ("BYTES", [1], "must be strings"),
        ("FP32", [1.0, 2.0, 3.0], "3 elements"),
    ],
)
def test_json_errors(datatype: str, data: object, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle):
        from_list(datatype, [2], data)


def test_invalid_base64_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="base64"):
        from_list("BYTES", [1], ["***"], base64_bytes=True)


@pytest.mark.parametrize(
    "shape", [[4294967296, 4294967296], [2**62, 4], [2**63 - 1, 2**63 - 1, 0, 2**40]]
)
def test_shapes_that_overflow_are_refused(shape: list[int]) -> None:
    with pytest.raises(InvalidInputError, match="too many elements"):
        from_list("FP32", shape, [])
    with pytest.raises(InvalidInputError, match="too many elements"):
        from_raw("FP32", shape, b"")


def test_non_finite_outputs_are_written_as_strings() -> None:
    array = np.array([[np.nan, np.inf], [-np.inf, 0.5]], dtype=np.float32)
    assert to_list(array) == ["NaN", "Infinity", "-Infinity", 0.5]
    assert to_list(np.array([1.5], dtype=np.float16)) == [1.5]


def test_non_finite_inputs_can_be_sent_as_strings() -> None:
    array = from_list("FP32", [3], ["NaN", "Infinity", "-Infinity"])
    assert np.isnan(array[0])
    assert list(array[1:]) == [np.inf, -np.inf]
    with pytest.raises(InvalidInputError, match="numbers only"):
        from_list("FP32", [1], ["nan please"])
    with pytest.raises(InvalidInputError, match="numbers only"):
        from_list("INT32", [1], ["NaN"])
