"""Serving's domain errors; defined in the one tree in :mod:`visionyard.errors`."""

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
]
