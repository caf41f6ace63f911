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
