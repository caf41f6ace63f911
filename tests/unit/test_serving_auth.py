"""Bearer tokens, request ids and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from visionyard.serving.auth import bearer, check_admin, check_inference, token_matches
from visionyard.serving.errors import AdminDisabledError, UnauthorizedError
from visionyard.serving.logs import (
    JsonFormatter,
    access,
    adopt_request_id,
    configure_logging,
    peer_host,
    request_id,
)


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


def test_json_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every logger's lines (visionyard's, uvicorn's, a library's warning) as JSON; a client
    error's access line at warning with its code and message."""
    monkeypatch.setenv("MLFLOW_CONFIGURE_LOGGING", "true")  # restored after the test
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    stream = io.StringIO()
    root = logging.getLogger()
    levels = [(n, logging.getLogger(n).level) for n in ("", "visionyard", "uvicorn")]
    handler = configure_logging("INFO", stream)
    try:
        access({"request_id": "r", "status": 200})
        access({"request_id": "bad", "status": 400, "error_code": "inference.invalid_input"})
        access({"request_id": "g", "status": "INVALID_ARGUMENT"})
        access({"request_id": "boom", "status": 500})
        logging.getLogger("uvicorn.error").info("Started server process")
        logging.getLogger("some.library").warning("careful")
    finally:
        root.removeHandler(handler)
        handler.close()  # the lines are written by a thread: this writes what waits
        logging.captureWarnings(False)
        for name, level in levels:
            logging.getLogger(name).setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x.get("request_id"), x["level"]) for x in lines] == [
        ("r", "info"), ("bad", "warning"), ("g", "warning"), ("boom", "error"),
        (None, "info"), (None, "warning"),
    ]  # fmt: skip
    assert lines[0]["logger"] == "visionyard.access"
    assert lines[4]["message"] == "Started server process"
    assert os.environ["MLFLOW_CONFIGURE_LOGGING"] == "true"  # set by the user: kept
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


def test_peer_host_and_oip_id() -> None:
    assert peer_host("ipv4:10.0.0.7:5123") == "10.0.0.7"
    assert peer_host("ipv6:[::1]:5123") == "::1"
    assert peer_host("unix:/tmp/s") == "unix:/tmp/s"
    assert adopt_request_id("oip-7") == "oip-7"
    assert adopt_request_id("bad id\n") is None
