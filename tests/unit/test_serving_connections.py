"""The REST listener's connection limits: the cap fits the process's file limit, and a flood
of accept errors (out of file descriptors) is logged once in a while, not once per try."""

from __future__ import annotations

import asyncio
import logging

import pytest

from visionyard.serving.rest.connections import connection_cap, quiet_accept_errors


def test_the_connection_cap_leaves_file_descriptors_for_everything_else() -> None:
    assert connection_cap(1000, 1_048_576) == 1000
    assert connection_cap(1000, 1024) < 1024 - 100
    assert connection_cap(1000, 256) >= 16


def test_accept_errors_are_logged_once_in_a_while(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        quiet_accept_errors(loop)
        context = {
            "message": "socket.accept() out of system resource",
            "exception": OSError(24, "Too many open files"),
        }
        with caplog.at_level(logging.WARNING):
            for _ in range(5000):
                loop.call_exception_handler(context)
            loop.call_exception_handler({"message": "something else"})
    finally:
        loop.close()
    accept = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(accept) == 1, len(accept)
    assert any("something else" in r.getMessage() for r in caplog.records)
