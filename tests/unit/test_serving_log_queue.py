"""The server's log writer (:class:`visionyard.serving.logs.QueuedHandler`): a blocked stream
never blocks the caller; what does not fit waits is dropped, counted and reported once the
stream moves; an exception's traceback is rendered where it was logged."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from visionyard.serving import logs
from visionyard.serving.logs import JsonFormatter, QueuedHandler


class _BlockedStream(io.StringIO):
    """A stream whose writes wait until ``flowing`` is set (a pipe nobody reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = threading.Event()
        self.entered = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.flowing.wait(30)
        return super().write(text)


def _handler(stream: io.StringIO, capacity: int) -> QueuedHandler:
    writer = logging.StreamHandler(stream)
    writer.setFormatter(JsonFormatter())
    return QueuedHandler(writer, capacity)


def _record(message: str, **fields: object) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "visionyard.access", "levelno": logging.INFO, "levelname": "INFO",
         "msg": message, "fields": fields}
    )  # fmt: skip


def test_a_blocked_stream_drops_and_counts_then_reports_once_it_moves() -> None:
    stream = _BlockedStream()
    handler = _handler(stream, capacity=3)
    try:
        handler.handle(_record("first", n=0))
        assert stream.entered.wait(10)  # the writer thread is stuck on the first line
        caller = threading.Thread(  # 3 wait, 7 are dropped; none of these calls blocks
            target=lambda: [handler.handle(_record("line %d", n=n)) for n in range(1, 11)]
        )
        caller.start()
        caller.join(10)
        assert not caller.is_alive(), "logging blocked on the stream"
        stream.flowing.set()
        handler.flush()  # what waited is written, with the count after the first of it
        handler.handle(_record("after", n=11))
        handler.flush()
    finally:
        stream.flowing.set()
        handler.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    kept = [line["n"] for line in lines if "n" in line]
    assert kept == [0, 1, 2, 3, 11]
    warnings = [line for line in lines if line["level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["dropped_lines"] == 7
    assert "7 log lines dropped" in warnings[0]["message"]


def test_arguments_and_tracebacks_are_rendered_where_they_are_logged() -> None:
    stream = io.StringIO()
    handler = _handler(stream, capacity=100)
    logger = logging.getLogger("visionyard.test_log_queue")
    seen: list[logging.LogRecord] = []
    after = logging.Handler()
    after.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.addHandler(after)
    logger.propagate = False
    items = ["before"]
    try:
        logger.warning("items: %s", items)
        items.append("after")  # changed after the call: the line keeps what it was
        try:
            raise ValueError("broken image")
        except ValueError:
            logger.exception("request failed")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(after)
        logger.propagate = True
        handler.close()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert seen[1].exc_info is not None  # a handler after it still gets the traceback
    assert seen[0].args == (items,)
    assert first["message"] == "items: ['before']"
    assert second["level"] == "error"
    assert "ValueError: broken image" in second["exception"]
    assert "Traceback" in second["exception"]


def test_close_returns_while_the_stream_stays_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "CLOSE_WAIT_S", 0.2)
    stream = _BlockedStream()
    handler = _handler(stream, capacity=2)
    handler.handle(_record("stuck", n=0))
    assert stream.entered.wait(10)
    for n in range(1, 5):
        handler.handle(_record("queued", n=n))
    closer = threading.Thread(target=handler.close)
    closer.start()
    closer.join(30)  # close waits a bounded time for the writer, never for ever
    alive = closer.is_alive()
    stream.flowing.set()
    assert not alive


def test_access_lines_skip_logging_machinery_yet_read_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the server's handler is the only one, an access line goes straight to its queue
    (no ``LogRecord`` on the event loop) and reads as the same JSON as one logged the usual way;
    once another handler is added (a test's caplog, a user's), lines go through logging."""
    stream = io.StringIO()
    levels = [(n, logging.getLogger(n).level) for n in ("", "visionyard", "uvicorn")]
    handler = logs.configure_logging("INFO", stream)
    fast = {"request_id": "fast", "status": 200, "duration_ms": 1.5, "model": "m"}
    client_error = {"request_id": "bad", "status": 400, "error_code": "inference.invalid_input"}
    seen: list[logging.LogRecord] = []
    try:
        with monkeypatch.context() as patch:
            patch.setattr(logging.root, "handlers", [handler])

            def no_records(*args: object, **kwargs: object) -> None:
                raise AssertionError("an access line was made into a LogRecord")

            patch.setattr(logs.ACCESS, "log", no_records)
            logs.access(dict(fast))
            logs.access(dict(client_error))
        other = logging.Handler()
        other.emit = seen.append  # type: ignore[method-assign]
        monkeypatch.setattr(logging.root, "handlers", [handler, other])
        logs.access(dict(fast, request_id="slow"))
        handler.flush()
    finally:
        logging.root.removeHandler(handler)
        handler.close()
        logging.captureWarnings(False)
        for name, level in levels:
            logging.getLogger(name).setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["fast", "bad", "slow"]
    assert [r.fields["request_id"] for r in seen] == ["slow"]  # type: ignore[attr-defined]
    first, second, slow = lines
    assert second["level"] == "warning"
    assert second["error_code"] == "inference.invalid_input"
    assert first.keys() == slow.keys()
    assert {k: v for k, v in first.items() if k not in ("ts", "request_id")} == {
        k: v for k, v in slow.items() if k not in ("ts", "request_id")
    }
    assert first["ts"].endswith("Z")
    assert len(first["ts"]) == len(slow["ts"]) == 24
