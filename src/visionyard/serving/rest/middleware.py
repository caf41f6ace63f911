"""ASGI middleware for the REST adapter: request id, body size limit and the access log.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) so that it adds no task per request. The
body limit is checked on ``Content-Length`` up front and again while the body streams in (for
chunked uploads); the streaming check raises :class:`BodyTooLargeError` into the endpoint that
reads the body, which the REST error table turns into 413.

The request id is the client's ``X-Request-ID``, else a new one; an endpoint may replace it
before it answers (``state["request_id"]``: the OIP infer body's ``id``). An error answer's
JSON body (``{"error", "code"}``) is read back into the access line (``error``,
``error_code``), so every route's errors are logged alike, without each route logging them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionyard.serving.errors import BodyTooLargeError
from visionyard.serving.logs import access, request_id

log = logging.getLogger("visionyard.serving")


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers as a dict (lower-case names), decoded once per request."""
    state = scope.setdefault("state", {})
    headers: dict[str, str] | None = state.get("headers")
    if headers is None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        state["headers"] = headers
    return headers


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = request_headers(scope)
        rid = request_id(headers.get("x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        record: dict[str, Any] = {"status": 500, "started": time.perf_counter()}
        try:
            if _declared(headers) > self.limit:
                await _too_large(send, rid, self.limit, record)
                return
            await self.app(scope, self._limited(receive), _tagged(send, state, record))
        except Exception as exc:  # a bug the app did not answer, or answered and re-raised
            await _internal(send, exc, record)
        finally:
            access(_fields(scope, state.get("request_id", rid), record))

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLargeError(self.limit)
            return message

        return wrapped


def _declared(headers: dict[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0


def _tagged(send: Send, state: dict[str, Any], record: dict[str, Any]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            record["status"] = message["status"]
            record["answered"] = True
            rid = state["request_id"].encode()
            message["headers"] = [*message.get("headers", []), (b"x-request-id", rid)]
        elif record["status"] >= 400 and "error" not in record:
            record["error"] = message.get("body", b"")[:_ERROR_BYTES]
        await send(message)

    return wrapped


_ERROR_BYTES = 4096  # of an error answer's body read back for the access line


def _error_fields(body: bytes | None) -> dict[str, Any]:
    """``error`` and ``error_code`` from an error answer's JSON body (or nothing)."""
    try:
        value = json.loads(body) if body else None
    except ValueError:
        return {}
    if not isinstance(value, dict) or not isinstance(value.get("error"), str):
        return {}
    return {"error_code": value.get("code"), "error": value["error"]}


async def _too_large(send: Send, rid: str, limit: int, record: dict[str, Any]) -> None:
    error = BodyTooLargeError(limit)
    body = json.dumps({"error": str(error), "code": error.code}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode()),
        (b"connection", b"close"),
    ]
    record["status"] = 413
    record["error"] = body
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _internal(send: Send, exc: Exception, record: dict[str, Any]) -> None:
    """An exception out of the app: answered already (FastAPI's handler answered and logged
    it, :func:`~visionyard.serving.rest.hot.internal_reply`, and Starlette re-raises it), or
    answered here, JSON 500 as every error, and logged once with its traceback. Never
    re-raised: uvicorn would log it again and, unanswered, send a plain-text 500."""
    if record.get("answered"):
        return
    log.error("internal error", exc_info=exc)
    body = json.dumps({"error": "internal server error", "code": "internal"}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    record["status"] = 500
    record["error"] = body
    try:
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # the connection is gone: nothing to answer
        return


def _fields(scope: Scope, rid: str, record: dict[str, Any]) -> dict[str, Any]:
    state = scope.get("state", {})
    return {
        "request_id": rid,
        "protocol": "rest",
        "method": scope.get("method"),
        "path": scope.get("path"),
        "status": record["status"],
        "duration_ms": round((time.perf_counter() - record["started"]) * 1000, 3),
        "model": state.get("model"),
        "version": state.get("version"),
        "client": (scope.get("client") or ("", 0))[0],
        **_error_fields(record.get("error")),
    }
