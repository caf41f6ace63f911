"""Structured JSON logs: one object per line; ``extra={"fields": {...}}`` adds keys."""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import sys
import time
import uuid
from typing import IO, Any

ACCESS = logging.getLogger("visionyard.access")
_REQUEST_ID = re.compile(r"^[\w.\-:]{1,128}$")
#: New request ids: 16 random hex digits fixed per process + a 16-digit counter (32 in all,
#: like a UUID's hex): unique without a random-number system call per request.
_ID_PREFIX = uuid.uuid4().hex[:16]
_ID_COUNTER = itertools.count(1)
#: The id of the request the current task serves (set by :func:`request_id`; read by the
#: monitor, which names captured images after it).
_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("visionyard_request_id")


def request_id(given: str | None) -> str:
    """The client's ``X-Request-ID`` (or gRPC metadata) when it is sane, else a new one; it
    becomes the current task's :func:`current_request_id`."""
    rid = given if given and _REQUEST_ID.match(given) else f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
    _CURRENT.set(rid)
    return rid


def current_request_id() -> str:
    """The id of the request this task serves (a new one outside a request)."""
    rid = _CURRENT.get(None)
    return rid if rid is not None else f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Send ``visionyard.*`` logs as JSON lines to ``stream`` (stderr); returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("visionyard")
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def access(fields: dict[str, Any]) -> None:
    ACCESS.info("request", extra={"fields": fields})
