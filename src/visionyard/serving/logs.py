"""Structured JSON logs: one object per line; ``extra={"fields": {...}}`` adds keys.

:func:`configure_logging` (``visionyard serve``) puts the JSON handler on the root logger, so
every line the server writes to stderr is JSON: visionyard's own, uvicorn's (its loggers
propagate: the server gives uvicorn no ``log_config`` of its own, see
:func:`visionyard.serving.app._uvicorn`), Python warnings and MLflow's (told not to install its
own handler). Access lines (``visionyard.access``, one per REST request and gRPC call) carry
``request_id``, ``protocol``, ``model``, ``version``, ``client``, ``status`` and
``duration_ms``; a client error is logged at warning and a server error at error, both with the
domain ``error_code`` and the ``error`` message the client got.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
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


def adopt_request_id(oip_id: str | None) -> str | None:
    """The OIP request ``id`` as the current request's id (when the client sent no
    ``X-Request-ID``), if it is sane; else None (the id given earlier stays)."""
    if oip_id and _REQUEST_ID.match(oip_id):
        _CURRENT.set(oip_id)
        return oip_id
    return None


def peer_host(peer: str) -> str:
    """The client's address from a gRPC peer (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer


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
    """Every log line of the process as JSON to ``stream`` (stderr): visionyard's and uvicorn's
    at ``level``, other libraries' from warning up; returns the handler."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # no handler of its own
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm bars
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("visionyard", "uvicorn"):
        logging.getLogger(name).setLevel(level.upper())
    logging.captureWarnings(True)
    return handler


def access(fields: dict[str, Any]) -> None:
    """One access line; a client error at warning, a server error at error."""
    ACCESS.log(_level(fields), "request", extra={"fields": fields})


#: Statuses that are the client's doing (REST 4xx; gRPC codes the adapter maps client errors
#: to); 503 (busy, draining) is logged at warning too: the server is working as designed.
_CLIENT_GRPC = frozenset(
    {"INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
     "UNAVAILABLE", "ALREADY_EXISTS", "FAILED_PRECONDITION", "OUT_OF_RANGE", "CANCELLED"}
)  # fmt: skip


def _level(fields: dict[str, Any]) -> int:
    status = fields.get("status")
    if isinstance(status, int):
        if status < 400:
            return logging.INFO
        return logging.WARNING if status < 500 or status == 503 else logging.ERROR
    if status in (None, "OK"):
        return logging.INFO
    return logging.WARNING if status in _CLIENT_GRPC else logging.ERROR
