"""Serving-only domain errors (same tree: subclasses of :class:`VisionyardError`)."""

from __future__ import annotations

from visionyard.errors import VisionyardError


class ServerBusyError(VisionyardError):
    """A model's queue is full: the client should retry after ``retry_after_s`` seconds."""

    code = "serving.busy"

    def __init__(self, model: str, limit: int, retry_after_s: int) -> None:
        super().__init__(
            f"model {model!r} has {limit} requests in flight (its queue limit); retry in "
            f"{retry_after_s}s or raise VISIONYARD_SERVING__MAX_QUEUE_SIZE"
        )
        self.retry_after_s = retry_after_s


class ModelUnavailableError(VisionyardError):
    """The model is known but has no loaded version (still loading, failed, or unloaded)."""

    code = "serving.unavailable"

    def __init__(self, model: str, state: str, detail: str = "") -> None:
        suffix = f": {detail}" if detail else ""
        super().__init__(f"model {model!r} is not ready ({state}){suffix}")
        self.state = state


class UnauthorizedError(VisionyardError):
    """A missing or wrong bearer token."""

    code = "serving.unauthorized"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs a valid bearer token (Authorization: Bearer <token>)")


class AdminDisabledError(VisionyardError):
    code = "serving.forbidden"

    def __init__(self) -> None:
        super().__init__(
            "the admin API is disabled: set VISIONYARD_SERVING__ADMIN_TOKEN to enable it"
        )


class BodyTooLargeError(VisionyardError):
    code = "serving.body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body is larger than {limit} bytes (VISIONYARD_SERVING__MAX_BODY_BYTES)"
        )
        self.limit = limit
