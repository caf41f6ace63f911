"""The two inference endpoints of the REST adapter, and a plain-ASGI front that serves them.

``POST /v2/models/{name}[/versions/{v}]/infer`` and ``POST /v1/models/{name}:predict`` are
implemented once here, as functions from (headers, body) to a :class:`Reply`. The FastAPI
routes of the same paths (:mod:`visionyard.serving.rest.routes`) call them, which documents them
in the OpenAPI schema and serves multipart uploads; :class:`HotPath`, an ASGI app in front of
FastAPI, calls them directly for every other request to these paths.

Why the front: the event loop that runs both protocols shares the interpreter lock with the
threads that decode images and run the model, so every millisecond it spends per request is
taken from them. FastAPI's per-request machinery (its middleware stack, routing, dependency
resolution, request and response objects) was about half of the loop's time per request here,
and a profile of the lock showed the loop holding it more than both inference threads together.
``bench/bench_serving.py`` measures the result.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from visionyard.errors import InvalidInputError, VisionyardError
from visionyard.serving.auth import check_inference
from visionyard.serving.dataplane import DRAINING, DataPlane
from visionyard.serving.errors import (
    BodyTooLargeError,
    ModelUnavailableError,
    ServerBusyError,
    client_message,
)
from visionyard.serving.logs import adopt_request_id
from visionyard.serving.metrics import INTERNAL
from visionyard.serving.predict import (
    is_v1,
    parse_v1,
    parse_v1_elsewhere,
    predict_request,
    to_json,
    to_v1_json,
)
from visionyard.serving.rest.codec import HEADER_LENGTH, encode_infer
from visionyard.serving.rest.middleware import request_headers
from visionyard.serving.rest.parse import (
    INLINE_JSON_BYTES,
    BodyParser,
    check_json_size,
    json_limit,
    json_size,
)
from visionyard.settings import ServingSettings

log = logging.getLogger("visionyard.serving")

#: The REST adapter's mapping from domain codes to HTTP status codes (default 500).
HTTP_STATUS: dict[str, int] = {
    "inference.invalid_input": 400,
    "image.invalid": 400,
    "image.too_large": 413,
    "not_found": 404,
    "serving.unauthorized": 401,
    "serving.forbidden": 403,
    "serving.body_too_large": 413,
    "serving.busy": 503,
    "serving.unavailable": 503,
}
_INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")
_PREDICT = re.compile(r"^/v1/models/(?P<name>[^/]+):predict$")
JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(exc: VisionyardError) -> Reply:
    """A domain error as its status, a JSON body ``{"error", "code"}`` and its headers."""
    status = HTTP_STATUS.get(exc.code, 500)
    headers = {}
    if isinstance(exc, ServerBusyError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, ModelUnavailableError) and exc.state == DRAINING:
        headers["Connection"] = "close"  # the server is stopping: reconnect elsewhere
    body = {"error": client_message(exc), "code": exc.code}
    return Reply(status, _json(body), headers=headers)


def internal_reply(plane: DataPlane, scope: Scope, exc: Exception) -> Reply:
    """A bug (an exception that is no domain error): logged here with its traceback, counted as
    ``status="internal"`` when it is an inference request (:func:`authorize` named the model),
    answered 500 with a generic message (its text may hold server paths)."""
    log.error("internal error", exc_info=exc, extra={"fields": {"path": scope.get("path")}})
    state = scope.get("state", {})
    if (name := state.get("model")) is not None:
        plane.failed_on_bug(name, state.get("requested_version"), "rest")
    return Reply(500, _json({"error": "internal server error", "code": INTERNAL}))


def authorize(
    plane: DataPlane,
    settings: ServingSettings,
    state: dict[str, Any],
    name: str,
    headers: Mapping[str, str],
    version: str | None = None,
) -> None:
    """The inference token, when one is configured: checked before the body is read."""
    state["model"] = name
    state["requested_version"] = version
    try:
        check_inference(settings.inference_token, headers.get("authorization"))
    except VisionyardError as exc:
        plane.refused(name, None, "rest", exc)
        raise


def check_declared_size(
    plane: DataPlane, settings: ServingSettings, name: str, version: str | None, size: int | None
) -> None:
    """Refuse a JSON body larger than the model's largest batch can be (413), unread."""
    try:
        model = plane.pool.current(name, version)
        limit = json_limit(model, plane.pool.config.limits, settings.max_body_bytes)
        check_json_size(model, size, limit)
    except VisionyardError as exc:
        plane.refused(name, version, "rest", exc)
        raise


async def infer_reply(
    plane: DataPlane,
    parser: BodyParser,
    state: dict[str, Any],
    request: tuple[str, str | None, Mapping[str, str]],
    body: bytes,
) -> Reply:
    """OIP v2 infer of ``(name, version, headers)``, JSON or binary tensors (after
    :func:`authorize` and :func:`check_declared_size`); raises domain errors."""
    name, version, headers = request
    try:
        parsed = await parser.parse(body, headers.get(HEADER_LENGTH), name, version)
    except VisionyardError as exc:
        plane.refused(name, version, "rest", exc)
        raise
    if "x-request-id" not in headers and (rid := adopt_request_id(parsed.id)):
        state["request_id"] = rid  # the OIP request id names the request (logs, capture)
    response = await plane.infer(parsed, "rest", headers)
    state["version"] = response.model_version
    content, header_length = encode_infer(response, parsed)
    if header_length is None:
        return Reply(200, content)
    extra = {"Inference-Header-Content-Length": str(header_length)}
    return Reply(200, content, "application/octet-stream", extra)


async def predict_reply(
    plane: DataPlane,
    state: dict[str, Any],
    name: str,
    images: list[bytes],
    headers: Mapping[str, str] | None = None,
    *,
    v1: bool = False,
) -> Reply:
    """``:predict`` (after :func:`authorize`): encoded images in, the contract's decoding out
    (KServe v1's ``predictions`` with ``v1``); ``headers`` are read only by a sticky canary."""
    try:
        parsed = predict_request(name, images, plane.pool.current(name).session.contract)
    except VisionyardError as exc:
        plane.refused(name, None, "rest", exc)
        raise
    response = await plane.infer(parsed, "rest", headers)
    state["version"] = response.model_version
    return Reply(200, _json(to_v1_json(response) if v1 else to_json(response)))


async def v1_reply(
    plane: DataPlane,
    parser: BodyParser,
    state: dict[str, Any],
    request: tuple[str, Mapping[str, str]],
    body: bytes,
) -> Reply:
    """``:predict`` of ``(name, headers)`` with a KServe v1 ``{"instances": [...]}`` body
    (after :func:`authorize`); a big body is parsed in the helper process."""
    name, headers = request
    limit = plane.pool.config.limits.max_images
    try:
        if len(body) <= INLINE_JSON_BYTES:
            images = parse_v1(body, limit)
        else:
            _, value = await parser.elsewhere(parse_v1_elsewhere, body, limit)
            if not isinstance(value, list):
                raise InvalidInputError(value)
            images = value
    except VisionyardError as exc:
        plane.refused(name, None, "rest", exc)
        raise
    return await predict_reply(plane, state, name, images, headers, v1=True)


class HotPath:
    """Serves infer and raw-body ``:predict`` without FastAPI; passes everything else on."""

    def __init__(
        self, app: ASGIApp, plane: DataPlane, settings: ServingSettings, parser: BodyParser
    ) -> None:
        self.app = app
        self.plane = plane
        self.settings = settings
        self.parser = parser

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if match := _INFER.match(path):
                await self._serve(scope, receive, send, match, predict=False)
                return
            multipart = request_headers(scope).get("content-type", "").lower()
            if (match := _PREDICT.match(path)) and not multipart.startswith("multipart/"):
                await self._serve(scope, receive, send, match, predict=True)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, match: re.Match[str], *, predict: bool
    ) -> None:
        headers = request_headers(scope)
        state = scope.setdefault("state", {})
        try:
            name, version = match["name"], None if predict else match["version"]
            authorize(self.plane, self.settings, state, name, headers, version)
            if not predict:
                size = json_size(headers.get("content-length"), headers.get(HEADER_LENGTH))
                check_declared_size(self.plane, self.settings, name, version, size)
            body = await _read_body(receive)
            if body is None:
                return  # the client went away
            if predict and is_v1(headers.get("content-type", "")):
                reply = await v1_reply(self.plane, self.parser, state, (name, headers), body)
            elif predict:
                reply = await predict_reply(self.plane, state, name, [body], headers)
            else:
                request = (name, version, headers)
                reply = await infer_reply(self.plane, self.parser, state, request, body)
        except VisionyardError as exc:
            reply = error_reply(exc)
            if isinstance(exc, BodyTooLargeError):
                reply.headers["Connection"] = "close"  # the unread body is not drained
        except Exception as exc:  # a bug: answer 500, log it, keep serving
            reply = internal_reply(self.plane, scope, exc)
        await _send(send, reply)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (the request context middleware enforces its size limit)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
