"""Serving's domain errors (defined in the one tree in :mod:`visionyard.errors`), and the
client's view of an error: absolute server paths are kept for the logs, not sent to clients."""

import re

from visionyard.errors import (
    AdminDisabledError,
    BodyTooLargeError,
    ModelUnavailableError,
    ServerBusyError,
    UnauthorizedError,
)

__all__ = [
    "AdminDisabledError",
    "BodyTooLargeError",
    "ModelUnavailableError",
    "ServerBusyError",
    "UnauthorizedError",
    "client_message",
    "redact_paths",
]

#: An absolute POSIX path of two or more parts (``/v2`` or ``3/4`` are left alone).
_PATH = re.compile(r"(?<![\w.~:/])(?:/[^\s'\"/:,;()\[\]<>]+){2,}/?")


def redact_paths(text: str) -> str:
    """``/srv/cache/m/7/model.onnx`` -> ``…/model.onnx``: the server's layout stays private."""
    return _PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def client_message(exc: BaseException) -> str:
    """What a client is told about ``exc`` (its message without absolute server paths)."""
    return redact_paths(str(exc))
