"""REST: Triton's model configuration and statistics extensions, and errors in ``{"error"}``.

``GET /v2/models/{name}[/versions/{v}]/config`` (:mod:`visionyard.serving.model_config`) and
``GET /v2/models[/{name}[/versions/{v}]]/stats`` (:mod:`visionyard.serving.statistics`) need
the inference token when one is set, like model metadata (they show the registry reference).

Every error the REST adapter answers has the protocol's shape ``{"error": "..."}``: FastAPI
answers its own errors (unknown route 404, method not allowed 405, a body that fails
validation) with ``{"detail": ...}``, so :func:`error_handlers` replaces both of its handlers.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from visionyard.serving.auth import check_inference
from visionyard.serving.dataplane import DataPlane
from visionyard.serving.model_config import model_config
from visionyard.serving.statistics import model_statistics
from visionyard.settings import ServingSettings


def triton_routes(app: FastAPI, plane: DataPlane, settings: ServingSettings) -> None:
    """Register BEFORE ``/v2/models/{name}``, which ``/v2/models/stats`` would match."""

    def allowed(request: Request) -> None:
        check_inference(settings.inference_token, request.headers.get("authorization"))

    @app.get("/v2/models/stats")
    @app.get("/v2/models/{name}/stats")
    @app.get("/v2/models/{name}/versions/{version}/stats")
    async def stats(
        request: Request, name: str | None = None, version: str | None = None
    ) -> JSONResponse:
        allowed(request)
        return JSONResponse(model_statistics(plane.pool, name, version))

    @app.get("/v2/models/{name}/config")
    @app.get("/v2/models/{name}/versions/{version}/config")
    async def config(request: Request, name: str, version: str | None = None) -> JSONResponse:
        allowed(request)
        return JSONResponse(model_config(plane.pool, name, version))


def error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        message = f"{message}: no route {request.method} {request.url.path}"
    return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', '')}"
        for error in exc.errors()
    )
    return JSONResponse({"error": f"invalid request: {problems}"}, 400)
