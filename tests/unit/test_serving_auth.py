"""Bearer tokens, request ids and JSON log lines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from visionyard.serving.auth import bearer, check_admin, check_inference, token_matches
from visionyard.serving.errors import AdminDisabledError, UnauthorizedError
from visionyard.serving.logs import JsonFormatter, configure_logging, request_id


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        (None, None),
        ("", None),
    ],
)
def test_bearer(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


def test_token_compare() -> None:
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret", "s3cre")
    assert not token_matches("s3cret", None)


def test_admin_needs_a_configured_token() -> None:
    with pytest.raises(AdminDisabledError, match="ADMIN_TOKEN"):
        check_admin(None, "Bearer x")
    with pytest.raises(UnauthorizedError):
        check_admin("t", "Bearer x")
    check_admin("t", "Bearer t")


def test_inference_token_is_optional() -> None:
    check_inference(None, None)
    with pytest.raises(UnauthorizedError):
        check_inference("t", None)
    check_inference("t", "Bearer t")


def test_request_id_accepts_sane_ids_only() -> None:
    assert request_id("abc-123_x.y:z") == "abc-123_x.y:z"
    assert len(request_id("bad id\n")) == 32
    assert len(request_id("x" * 200)) == 32
    assert request_id(None) != request_id(None)


def test_json_log_lines() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", stream)
    try:
        logging.getLogger("visionyard.access").info(
            "request", extra={"fields": {"request_id": "r"}}
        )
    finally:
        logging.getLogger("visionyard").removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["request_id"] == "r"
    assert line["logger"] == "visionyard.access"
    assert line["level"] == "info"
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)
