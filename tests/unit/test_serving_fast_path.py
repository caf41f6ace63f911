"""The REST fast path: which requests it serves itself and which go on to the FastAPI app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from visionyard.errors import InvalidInputError, VisionyardError
from visionyard.serving.rest_fast import InferFastPath


async def _handler(request: Request, name: str, version: str | None) -> Response:
    if name == "bad":
        raise InvalidInputError("no")
    return JSONResponse({"name": name, "version": version, "path": request.url.path})


async def _on_error(request: Request, exc: VisionyardError) -> Response:
    return JSONResponse({"code": exc.code}, 400)


def _call(method: str, path: str) -> tuple[int, bytes]:
    fallthrough: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        fallthrough.append(scope["path"])
        await Response(b"app", 404)(scope, receive, send)

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    fast = InferFastPath(app, _handler, _handler, _on_error)
    asyncio.run(fast(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v2/models/m/infer", b'{"name":"m","version":null,"path":"/v2/models/m/infer"}'),
        ("/v2/models/m/versions/3/infer", b'"version":"3"'),
        ("/v1/models/m:predict", b'{"name":"m","version":null'),
    ],
)
def test_inference_paths_are_served_directly(path: str, body: bytes) -> None:
    status, content = _call("POST", path)
    assert status == 200
    assert body in content


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v2/models/m/infer"), ("POST", "/v2/models/m"), ("POST", "/v2/models/a/b/infer")],
)
def test_everything_else_goes_on_to_the_app(method: str, path: str) -> None:
    assert _call(method, path) == (404, b"app")


def test_domain_errors_use_the_error_handler() -> None:
    assert _call("POST", "/v2/models/bad/infer") == (400, b'{"code":"inference.invalid_input"}')
