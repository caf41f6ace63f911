"""Structured JSON logs: one object per line; ``extra={"fields": {...}}`` adds keys."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

ACCESS = logging.getLogger("visionyard.access")


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
