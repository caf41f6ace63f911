"""Parsing REST infer bodies: non-standard JSON is refused with a clear message."""

from __future__ import annotations

import pytest

from visionyard.errors import InvalidInputError
from visionyard.serving.rest.codec import parse_infer


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_literals_are_refused(literal: str) -> None:
    body = f'{{"inputs":[{{"name":"input","datatype":"FP32","shape":[1],"data":[{literal}]}}]}}'
    with pytest.raises(InvalidInputError, match=f"{literal}.*not valid JSON"):
        parse_infer(body.encode(), None, "m", None)


def test_an_integer_past_the_digit_limit_is_invalid_input_without_pythons_hint() -> None:
    body = b'{"id":1' + b"0" * 5000 + b',"inputs":[]}'
    with pytest.raises(InvalidInputError, match="more than 4300 digits") as info:
        parse_infer(body, None, "m", None)
    assert "set_int_max_str_digits" not in str(info.value)
