"""A plain-ASGI fast path for the two inference endpoints of the REST adapter.

``POST /v2/models/{name}[/versions/{version}]/infer`` and ``POST /v1/models/{name}:predict`` are
matched with one regular expression each and handed straight to their handlers, skipping
FastAPI's router, exception middleware and dependency machinery (about half of the event loop's
time per request, measured with ``py-spy --gil``). It sits INSIDE
:class:`~visionyard.serving.rest_middleware.RequestContextMiddleware`, so request ids, the body
limit and the access log are the same for every request; domain errors go through the same
handler as FastAPI's (:func:`visionyard.serving.rest.error_response`). Everything else (other
paths, other methods) goes on to the FastAPI app unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from visionyard.errors import VisionyardError

Handler = Callable[[Request, str, str | None], Awaitable[Response]]
ErrorHandler = Callable[[Request, VisionyardError], Awaitable[Response]]

_INFER = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer")
_PREDICT = re.compile(r"/v1/models/(?P<name>[^/]+):predict")


class InferFastPath:
    def __init__(
        self, app: ASGIApp, infer: Handler, predict: Handler, on_error: ErrorHandler
    ) -> None:
        self.app = app
        self._routes = ((_INFER, infer), (_PREDICT, predict))
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _match(self._routes, scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        handler, name, version = found
        request = Request(scope, receive, send)
        try:
            response = await handler(request, name, version)
        except VisionyardError as exc:
            response = await self._on_error(request, exc)
        await response(scope, receive, send)


def _match(
    routes: tuple[tuple[re.Pattern[str], Handler], ...], scope: Scope
) -> tuple[Handler, str, str | None] | None:
    if scope["method"] != "POST" or scope.get("root_path"):
        return None
    path = scope["path"]
    for pattern, handler in routes:
        if (match := pattern.fullmatch(path)) is not None:
            return handler, match["name"], match.groupdict().get("version")
    return None
